//! The `spec` of each kind: fields, Calico's defaults and validation rules.

pub mod bgpconfig;
pub mod bgpfilter;
pub mod bgppeer;
pub mod clusterinfo;
pub mod felixconfig;
pub mod hostendpoint;
pub(crate) mod infra_common;
pub mod ipamconfig;
pub mod ippool;
pub mod ipreservation;
pub mod k8s_namespace;
pub mod k8s_networkpolicy;
pub mod networkset;
pub mod node;
pub mod policy;
pub mod profile;
pub mod rule;
pub mod tier;
pub mod workloadendpoint;

/// Serialize an optional float as Go's encoding/json does: `100` rather than `100.0` when it is whole,
/// so stored objects and `calicoctl get -o yaml` read as Calico's do.
pub(crate) fn serialize_go_float<S: serde::Serializer>(
    v: &Option<f64>,
    s: S,
) -> Result<S::Ok, S::Error> {
    match v {
        Some(f) if f.fract() == 0.0 && f.abs() < 9.0e15 => s.serialize_i64(*f as i64),
        Some(f) => s.serialize_f64(*f),
        None => s.serialize_none(),
    }
}
