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
pub mod k8s_networkpolicy;
pub mod networkset;
pub mod node;
pub mod policy;
pub mod profile;
pub mod rule;
pub mod tier;
pub mod workloadendpoint;
