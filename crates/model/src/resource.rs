//! Stored v3 resources: the JSON a resource is written as, and the resource read back from a key-value.

use calico_api::{Kind, ObjectMeta, Resource};
use serde_json::{Map, Value};

use crate::KeyValue;
use crate::keys::{self, IPAM_CONFIG_KEY};

/// A resource that cannot be turned into its stored form, or a stored value that is not a resource.
#[derive(Debug, thiserror::Error)]
pub enum CodecError {
    #[error("{kind}({name}) cannot be encoded for storage: {message}")]
    Encode {
        kind: Kind,
        name: String,
        message: String,
    },
    #[error("stored object at {key} cannot be read: {message}")]
    Decode { key: String, message: String },
}

/// `Namespace/name` for messages, or the name alone for cluster-scoped kinds.
pub fn display_name(kind: Kind, namespace: Option<&str>, name: &str) -> String {
    match namespace {
        Some(ns) if kind.namespaced() => format!("{ns}/{name}"),
        _ => name.to_string(),
    }
}

/// The key a resource is stored under.
pub fn resource_key_of(r: &Resource) -> String {
    let kind = r.kind();
    keys::resource_key(
        kind,
        kind.namespaced()
            .then(|| r.namespace().unwrap_or("default")),
        r.name(),
    )
}

/// The stored JSON: the whole v3 object without `resourceVersion` (that is the key's mod revision).
/// IPAMConfiguration is stored in IPAM's own form at `/calico/ipam/v2/config`. An object that cannot
/// be encoded is an error, so no empty value is ever written.
pub fn encode_resource(res: &Resource) -> Result<Vec<u8>, CodecError> {
    let encoded = if res.kind() == Kind::IPAMConfiguration {
        res.try_to_value().and_then(|mut value| {
            if let Some(meta) = value.get_mut("metadata").and_then(Value::as_object_mut) {
                meta.remove("resourceVersion");
            }
            serde_json::to_vec(&ipam_config_to_storage(&value))
        })
    } else {
        res.to_stored_json()
    };
    encoded.map_err(|e| CodecError::Encode {
        kind: res.kind(),
        name: display_name(res.kind(), res.namespace(), res.name()),
        message: e.to_string(),
    })
}

/// [`encode_resource`] for fixtures that build stored data by hand; panics where it errs.
pub fn encode(res: &Resource) -> Vec<u8> {
    match encode_resource(res) {
        Ok(bytes) => bytes,
        Err(e) => panic!("{e}"),
    }
}

/// Decode a stored key-value into a resource with `resourceVersion` set.
pub fn decode_kv(kv: &KeyValue) -> Result<Resource, CodecError> {
    let decode_err = |message: String| CodecError::Decode {
        key: kv.key.clone(),
        message,
    };
    let mut value: Value =
        serde_json::from_slice(&kv.value).map_err(|e| decode_err(e.to_string()))?;
    if kv.key == IPAM_CONFIG_KEY {
        value = ipam_config_from_storage(&value);
    }
    let mut res = Resource::from_value(value).map_err(|e| decode_err(e.to_string()))?;
    res.metadata.resource_version = Some(kv.mod_revision.to_string());
    Ok(res)
}

/// IPAM's field names for the IPAMConfiguration singleton.
const IPAM_CONFIG_FIELDS: &[(&str, &str)] = &[
    ("strictAffinity", "strict_affinity"),
    ("autoAllocateBlocks", "auto_allocate_blocks"),
    ("maxBlocksPerHost", "maxBlocksPerHost"),
    ("ipCooldownSeconds", "ipCooldownSeconds"),
    (
        "kubeVirtVMAddressPersistence",
        "kubeVirtVMAddressPersistence",
    ),
];

fn ipam_config_to_storage(obj: &Value) -> Value {
    let mut out = Map::new();
    let spec = obj.get("spec").cloned().unwrap_or(Value::Null);
    for (api, stored) in IPAM_CONFIG_FIELDS {
        if let Some(v) = spec.get(*api) {
            out.insert((*stored).into(), v.clone());
        }
    }
    // Keep the object's identity so a read shows the same uid and creation time.
    if let Some(meta) = obj.get("metadata") {
        out.insert("metadata".into(), meta.clone());
    }
    Value::Object(out)
}

fn ipam_config_from_storage(stored: &Value) -> Value {
    let mut spec = Map::new();
    for (api, field) in IPAM_CONFIG_FIELDS {
        if let Some(v) = stored.get(*field) {
            spec.insert((*api).into(), v.clone());
        }
    }
    let metadata = stored.get("metadata").cloned().unwrap_or_else(|| {
        serde_json::to_value(ObjectMeta::named("default")).unwrap_or(Value::Null)
    });
    serde_json::json!({
        "apiVersion": "projectcalico.org/v3",
        "kind": "IPAMConfiguration",
        "metadata": metadata,
        "spec": Value::Object(spec),
    })
}
