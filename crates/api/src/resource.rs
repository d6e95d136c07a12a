//! A resource of any kind: decoding from a JSON/YAML value with field paths, defaulting, validation and
//! encoding back to the `projectcalico.org/v3` object form.

use std::fmt::Debug;

use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::{Map, Value};

use crate::error::{FieldErrors, join};
use crate::kind::Kind;
use crate::meta::ObjectMeta;
use crate::spec::*;
use crate::validate;

/// What every kind's `spec` type provides.
pub trait SpecType: Serialize + DeserializeOwned + Default + Clone + Debug + PartialEq {
    /// Fill in Calico's defaults for unset fields (called before validation on every write).
    fn apply_defaults(&mut self, _meta: &ObjectMeta) {}

    /// Push one error per problem. Paths start at `spec.` (or `metadata.` for name rules).
    /// The generic name rules (DNS-1123 subdomain, singleton names) are checked by [`Resource::validate`];
    /// kinds with stricter name rules check them here.
    fn validate(&self, meta: &ObjectMeta, errs: &mut FieldErrors);
}

macro_rules! specs {
    ($($kind:ident => $ty:ty),* $(,)?) => {
        /// The typed `spec` of a resource.
        #[derive(Clone, Debug, PartialEq)]
        pub enum Spec {
            $($kind($ty),)*
        }

        impl Spec {
            pub fn kind(&self) -> Kind {
                match self {
                    $(Spec::$kind(_) => Kind::$kind,)*
                }
            }

            /// The default (empty) spec of `kind`.
            pub fn empty(kind: Kind) -> Spec {
                match kind {
                    $(Kind::$kind => Spec::$kind(<$ty>::default()),)*
                }
            }

            fn decode(kind: Kind, value: Value) -> Result<Spec, FieldErrors> {
                match kind {
                    $(Kind::$kind => decode_typed::<$ty>(value, "spec").map(Spec::$kind),)*
                }
            }

            /// The spec as JSON for display; `null` in the (never seen) case it cannot be encoded. Anything
            /// that stores the value uses [`Spec::try_to_value`].
            pub fn to_value(&self) -> Value {
                self.try_to_value().unwrap_or(Value::Null)
            }

            /// The spec as JSON, or serde_json's error.
            pub fn try_to_value(&self) -> Result<Value, serde_json::Error> {
                match self {
                    $(Spec::$kind(s) => serde_json::to_value(s),)*
                }
            }

            fn apply_defaults(&mut self, meta: &ObjectMeta) {
                match self {
                    $(Spec::$kind(s) => s.apply_defaults(meta),)*
                }
            }

            fn serialize_inner<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                match self {
                    $(Spec::$kind(s) => s.serialize(serializer),)*
                }
            }

            fn validate(&self, meta: &ObjectMeta, errs: &mut FieldErrors) {
                match self {
                    $(Spec::$kind(s) => s.validate(meta, errs),)*
                }
            }
        }
    };
}

specs! {
    IPPool => ippool::IPPoolSpec,
    IPReservation => ipreservation::IPReservationSpec,
    IPAMConfiguration => ipamconfig::IPAMConfigurationSpec,
    BGPConfiguration => bgpconfig::BGPConfigurationSpec,
    BGPPeer => bgppeer::BGPPeerSpec,
    BGPFilter => bgpfilter::BGPFilterSpec,
    Node => node::NodeSpec,
    FelixConfiguration => felixconfig::FelixConfigurationSpec,
    NetworkPolicy => policy::NetworkPolicySpec,
    GlobalNetworkPolicy => policy::GlobalNetworkPolicySpec,
    StagedNetworkPolicy => policy::StagedNetworkPolicySpec,
    Tier => tier::TierSpec,
    NetworkSet => networkset::NetworkSetSpec,
    GlobalNetworkSet => networkset::GlobalNetworkSetSpec,
    HostEndpoint => hostendpoint::HostEndpointSpec,
    WorkloadEndpoint => workloadendpoint::WorkloadEndpointSpec,
    Profile => profile::ProfileSpec,
    ClusterInformation => clusterinfo::ClusterInformationSpec,
    KubernetesNetworkPolicy => k8s_networkpolicy::KubernetesNetworkPolicySpec,
    KubernetesNamespace => k8s_namespace::KubernetesNamespaceSpec,
}

/// One resource of any kind.
#[derive(Clone, Debug, PartialEq)]
pub struct Resource {
    pub metadata: ObjectMeta,
    pub spec: Spec,
    /// Status is written by the system, never validated, and kept as it came.
    pub status: Option<Value>,
}

impl Resource {
    pub fn new(metadata: ObjectMeta, spec: Spec) -> Self {
        Self {
            metadata,
            spec,
            status: None,
        }
    }

    pub fn kind(&self) -> Kind {
        self.spec.kind()
    }

    pub fn name(&self) -> &str {
        &self.metadata.name
    }

    pub fn namespace(&self) -> Option<&str> {
        self.metadata.namespace.as_deref()
    }

    /// Decode one object (`apiVersion`, `kind`, `metadata`, `spec`, optional `status`).
    /// Unknown fields, wrong types and unknown kinds are reported with their paths.
    pub fn from_value(value: Value) -> Result<Resource, FieldErrors> {
        let Value::Object(mut obj) = value else {
            return Err(FieldErrors::single(
                "",
                "expected a mapping with apiVersion, kind, metadata and spec",
            ));
        };
        let kind = document_kind(&obj)?;
        let mut errs = FieldErrors::new();
        for key in obj.keys() {
            if !matches!(
                key.as_str(),
                "apiVersion" | "kind" | "metadata" | "spec" | "status"
            ) {
                errs.push(key.clone(), "unknown field");
            }
        }
        let metadata = match obj.remove("metadata") {
            None | Some(Value::Null) => Ok(ObjectMeta::default()),
            Some(m) => decode_typed::<ObjectMeta>(m, "metadata"),
        };
        let spec = match obj.remove("spec") {
            None | Some(Value::Null) => Ok(Spec::empty(kind)),
            Some(s) => Spec::decode(kind, s),
        };
        let status = obj.remove("status").filter(|s| !s.is_null());
        match (metadata, spec) {
            (Ok(metadata), Ok(spec)) if errs.is_empty() => Ok(Resource {
                metadata,
                spec,
                status,
            }),
            (m, s) => {
                if let Err(e) = m {
                    errs.extend(e);
                }
                if let Err(e) = s {
                    errs.extend(e);
                }
                Err(errs)
            }
        }
    }

    /// The object as JSON, keys sorted (as Calico prints them), for display: a part that cannot be
    /// encoded shows as empty. Anything that stores the value uses [`Resource::try_to_value`].
    pub fn to_value(&self) -> Value {
        let mut obj = Map::new();
        obj.insert("apiVersion".into(), Value::from(self.kind().api_version()));
        obj.insert("kind".into(), Value::from(self.kind().name()));
        obj.insert(
            "metadata".into(),
            serde_json::to_value(&self.metadata).unwrap_or(Value::Object(Map::new())),
        );
        obj.insert("spec".into(), self.spec.to_value());
        if let Some(status) = &self.status {
            obj.insert("status".into(), status.clone());
        }
        Value::Object(obj)
    }

    /// The object as JSON, or serde_json's error if a part cannot be encoded.
    pub fn try_to_value(&self) -> Result<Value, serde_json::Error> {
        let mut obj = Map::new();
        obj.insert("apiVersion".into(), Value::from(self.kind().api_version()));
        obj.insert("kind".into(), Value::from(self.kind().name()));
        obj.insert("metadata".into(), serde_json::to_value(&self.metadata)?);
        obj.insert("spec".into(), self.spec.try_to_value()?);
        if let Some(status) = &self.status {
            obj.insert("status".into(), status.clone());
        }
        Ok(Value::Object(obj))
    }

    /// The object as JSON bytes, written straight from the typed form (no intermediate tree).
    /// `resourceVersion` is left out: in the datastore it is the key's modification revision.
    /// An error (never empty bytes) if the object cannot be encoded.
    pub fn to_stored_json(&self) -> Result<Vec<u8>, serde_json::Error> {
        let metadata = ObjectMeta {
            resource_version: None,
            ..self.metadata.clone()
        };
        let stored = Stored {
            resource: self,
            metadata: &metadata,
        };
        serde_json::to_vec(&stored)
    }

    /// Fill in Calico's defaults (namespace `default` for namespaced kinds, then the kind's own).
    pub fn apply_defaults(&mut self) {
        if self.kind().namespaced() {
            if self.metadata.namespace.as_deref().unwrap_or("").is_empty() {
                self.metadata.namespace = Some("default".into());
            }
        } else {
            self.metadata.namespace = None;
        }
        let meta = self.metadata.clone();
        self.spec.apply_defaults(&meta);
    }

    /// Every problem with this resource, with field paths.
    pub fn validate(&self) -> Result<(), FieldErrors> {
        let mut errs = FieldErrors::new();
        let kind = self.kind();
        let name = &self.metadata.name;
        if kind.singleton() {
            let per_node = matches!(kind, Kind::FelixConfiguration | Kind::BGPConfiguration)
                && name
                    .strip_prefix("node.")
                    .is_some_and(validate::is_dns1123_subdomain);
            if name != "default" && !per_node {
                let allowed = if matches!(kind, Kind::FelixConfiguration | Kind::BGPConfiguration) {
                    "\"default\" or \"node.<nodename>\""
                } else {
                    "\"default\""
                };
                errs.push(
                    "metadata.name",
                    format!("{kind} is a singleton: its name must be {allowed}"),
                );
            }
        } else if !has_own_name_rules(kind) {
            validate::name(&mut errs, "metadata.name", name);
        }
        if kind.namespaced()
            && let Some(ns) = &self.metadata.namespace
            && !ns.is_empty()
            && !validate::is_dns1123_label(ns)
        {
            errs.push(
                "metadata.namespace",
                format!("invalid namespace {ns:?}: must be a DNS-1123 label"),
            );
        }
        if let Some(labels) = &self.metadata.labels {
            for (k, v) in labels {
                check_label(&mut errs, &join("metadata.labels", k), k, v);
            }
        }
        self.spec.validate(&self.metadata, &mut errs);
        errs.into_result()
    }
}

/// The whole object with the given metadata, serialized field by field.
struct Stored<'a> {
    resource: &'a Resource,
    metadata: &'a ObjectMeta,
}

impl Serialize for Stored<'_> {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        struct SpecOf<'a>(&'a Spec);
        impl Serialize for SpecOf<'_> {
            fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                self.0.serialize_inner(serializer)
            }
        }
        let kind = self.resource.kind();
        let mut map = serializer.serialize_map(None)?;
        map.serialize_entry("apiVersion", kind.api_version())?;
        map.serialize_entry("kind", kind.name())?;
        map.serialize_entry("metadata", self.metadata)?;
        map.serialize_entry("spec", &SpecOf(&self.resource.spec))?;
        if let Some(status) = &self.resource.status {
            map.serialize_entry("status", status)?;
        }
        map.end()
    }
}

/// Kinds whose name rules differ from the generic DNS-1123 subdomain; their spec validates the name.
fn has_own_name_rules(kind: Kind) -> bool {
    matches!(
        kind,
        Kind::NetworkPolicy
            | Kind::GlobalNetworkPolicy
            | Kind::StagedNetworkPolicy
            | Kind::Tier
            | Kind::WorkloadEndpoint
            | Kind::Profile
            | Kind::KubernetesNamespace
    )
}

/// Kubernetes label rules: an optional DNS subdomain prefix and `/`, then a name of at most 63
/// characters of `[A-Za-z0-9_.-]` starting and ending alphanumeric; values the same (or empty).
fn check_label(errs: &mut FieldErrors, path: &str, key: &str, value: &str) {
    if !validate::is_qualified_name(key) {
        errs.push(path, format!("invalid label key {key:?}"));
    }
    if !validate::is_label_value(value) {
        errs.push(path, format!("invalid label value {value:?}"));
    }
}

/// The kind named by a document's `apiVersion` and `kind`.
pub fn document_kind(obj: &Map<String, Value>) -> Result<Kind, FieldErrors> {
    let api_version = match obj.get("apiVersion") {
        Some(Value::String(s)) => s.as_str(),
        Some(_) => return Err(FieldErrors::single("apiVersion", "must be a string")),
        None => {
            return Err(FieldErrors::single(
                "apiVersion",
                "required field is missing",
            ));
        }
    };
    let kind = match obj.get("kind") {
        Some(Value::String(s)) => s.as_str(),
        Some(_) => return Err(FieldErrors::single("kind", "must be a string")),
        None => return Err(FieldErrors::single("kind", "required field is missing")),
    };
    Kind::from_document(api_version, kind).ok_or_else(|| {
        let known_versions: Vec<&str> = Kind::ALL
            .iter()
            .filter(|k| k.name() == kind)
            .map(|k| k.api_version())
            .collect();
        if !known_versions.is_empty() {
            FieldErrors::single(
                "apiVersion",
                format!(
                    "unsupported apiVersion {api_version:?} for kind {kind:?} (want {})",
                    known_versions.join(" or ")
                ),
            )
        } else {
            FieldErrors::single("kind", format!("unknown resource kind {kind:?}"))
        }
    })
}

/// Deserialize `value` into `T`, turning serde's errors into field errors rooted at `root`.
pub fn decode_typed<T: DeserializeOwned>(value: Value, root: &str) -> Result<T, FieldErrors> {
    serde_path_to_error::deserialize::<_, T>(value).map_err(|err| {
        let inner = err.inner().to_string();
        let mut path = err.path().to_string();
        if path == "." {
            path.clear();
        }
        let mut full = join(root, &path);
        let message = if let Some(rest) = inner.strip_prefix("unknown field `") {
            // Name the offending field itself (the path may or may not already end with it).
            let field = rest.split('`').next().unwrap_or_default();
            if !(full == field || full.ends_with(&format!(".{field}"))) {
                full = join(&full, field);
            }
            "unknown field".to_string()
        } else if let Some(rest) = inner.strip_prefix("missing field `") {
            let field = rest.split('`').next().unwrap_or_default();
            if !(full == field || full.ends_with(&format!(".{field}"))) {
                full = join(&full, field);
            }
            "required field is missing".to_string()
        } else {
            inner
        };
        FieldErrors::single(full, message)
    })
}
