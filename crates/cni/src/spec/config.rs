//! The network configuration the runtime passes on stdin, with Calico's fields.
//!
//! Unknown fields are tolerated (the runtime may add its own); the original JSON is kept in
//! [`NetConf::raw`] so it can be handed on unchanged to a delegated IPAM plugin.

use std::net::IpAddr;

use ipnet::IpNet;
use serde::{Deserialize, Deserializer};
use serde_json::Value;

use super::error::CniError;
use super::result::{CniResult, Dns};
use super::version::CniVersion;

/// Where the plugin keeps its state.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
pub enum DatastoreType {
    /// An external etcd v3 cluster (`etcd_endpoints`).
    #[serde(rename = "etcdv3")]
    Etcdv3,
    /// Our embedded store file (`datastore_path`).
    #[default]
    #[serde(rename = "embedded")]
    Embedded,
}

#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
pub struct NetConf {
    /// The version string as given; [`NetConf::parse`] has checked it is supported.
    #[serde(rename = "cniVersion", default)]
    pub cni_version: String,
    #[serde(default)]
    pub name: String,
    #[serde(rename = "type", default)]
    pub plugin_type: String,

    /// `vxlan` makes the plugin ensure the node's VXLAN tunnel address.
    #[serde(default)]
    pub mode: Option<String>,
    #[serde(default)]
    pub vxlan_mac_prefix: Option<String>,
    #[serde(default)]
    pub vxlan_vni: Option<u32>,

    #[serde(default)]
    pub ipam: IpamConf,
    /// The network's `dns` (well-known key).
    #[serde(default)]
    pub dns: Option<Dns>,

    /// 0 means: use the MTU Felix wrote to its MTU file.
    #[serde(default)]
    pub mtu: u32,
    #[serde(default)]
    pub require_mtu_file: bool,
    /// Transmit queues on the veth; 0 means the default (1).
    #[serde(default)]
    pub num_queues: u32,

    #[serde(default)]
    pub nodename: Option<String>,
    #[serde(default)]
    pub nodename_file: Option<String>,
    #[serde(default)]
    pub nodename_file_optional: bool,
    #[serde(default)]
    pub ipam_lock_file: Option<String>,

    #[serde(default)]
    pub datastore_type: DatastoreType,
    /// Comma-separated etcd URLs.
    #[serde(default)]
    pub etcd_endpoints: Option<String>,
    #[serde(default)]
    pub etcd_discovery_srv: Option<String>,
    #[serde(default)]
    pub etcd_scheme: Option<String>,
    #[serde(default)]
    pub etcd_key_file: Option<String>,
    #[serde(default)]
    pub etcd_cert_file: Option<String>,
    #[serde(default)]
    pub etcd_ca_cert_file: Option<String>,
    /// The embedded store's file.
    #[serde(default)]
    pub datastore_path: Option<String>,

    #[serde(default)]
    pub log_level: Option<String>,
    #[serde(default)]
    pub log_file_path: Option<String>,
    #[serde(default)]
    pub log_file_max_size: Option<u64>,
    #[serde(default)]
    pub log_file_max_age: Option<u64>,
    #[serde(default)]
    pub log_file_max_count: Option<u64>,

    #[serde(default)]
    pub policy: Option<PolicyConf>,
    #[serde(default)]
    pub kubernetes: Option<KubernetesConf>,
    #[serde(default)]
    pub feature_control: FeatureControl,
    #[serde(default)]
    pub container_settings: ContainerSettings,
    #[serde(default)]
    pub include_default_routes: bool,
    /// `veth` (default) or `netkit`.
    #[serde(default)]
    pub device_type: Option<String>,
    #[serde(default)]
    pub policy_setup_timeout_seconds: Option<u64>,
    #[serde(default)]
    pub endpoint_status_dir: Option<String>,

    /// The previous plugin's (or the ADD's) result, as JSON; see [`NetConf::prev_result`].
    #[serde(rename = "prevResult", default)]
    pub prev_result: Option<Value>,
    #[serde(rename = "runtimeConfig", default)]
    pub runtime_config: Option<Value>,
    #[serde(default)]
    pub args: Option<Value>,

    /// GC's still-valid attachments under the key the 1.1.0 spec release used.
    #[serde(rename = "cni.dev/attachments", default)]
    pub attachments: Option<Vec<GcAttachment>>,
    /// GC's still-valid attachments under the key the current spec text uses.
    #[serde(rename = "cni.dev/valid-attachments", default)]
    pub valid_attachments: Option<Vec<GcAttachment>>,

    /// The whole configuration exactly as received.
    #[serde(skip)]
    pub raw: Value,
}

#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
pub struct IpamConf {
    /// The IPAM plugin binary: `calico-ipam`, `host-local`, ...
    #[serde(rename = "type", default)]
    pub ipam_type: String,
    /// For host-local; `usePodCidr`/`usePodCidrIPv6` stand for the node's pod CIDRs.
    #[serde(default)]
    pub subnet: Option<String>,
    /// Calico writes these as the strings `"true"`/`"false"`; JSON booleans are accepted too.
    #[serde(default, deserialize_with = "string_or_bool")]
    pub assign_ipv4: Option<bool>,
    #[serde(default, deserialize_with = "string_or_bool")]
    pub assign_ipv6: Option<bool>,
    /// Pool names or CIDRs.
    #[serde(default)]
    pub ipv4_pools: Vec<String>,
    #[serde(default)]
    pub ipv6_pools: Vec<String>,
    #[serde(default)]
    pub routes: Vec<IpamRoute>,
    /// The whole `ipam` object exactly as received.
    #[serde(skip)]
    pub raw: Value,
}

impl IpamConf {
    /// Whether to assign an IPv4 address (default yes).
    pub fn assign_ipv4(&self) -> bool {
        self.assign_ipv4.unwrap_or(true)
    }

    /// Whether to assign an IPv6 address (default no).
    pub fn assign_ipv6(&self) -> bool {
        self.assign_ipv6.unwrap_or(false)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct IpamRoute {
    pub dst: IpNet,
    #[serde(default)]
    pub gw: Option<IpAddr>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
pub struct PolicyConf {
    #[serde(rename = "type", default)]
    pub policy_type: String,
    #[serde(default)]
    pub k8s_api_root: Option<String>,
    #[serde(default)]
    pub k8s_auth_token: Option<String>,
    #[serde(default)]
    pub k8s_client_certificate: Option<String>,
    #[serde(default)]
    pub k8s_client_key: Option<String>,
    #[serde(default)]
    pub k8s_certificate_authority: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
pub struct KubernetesConf {
    #[serde(default)]
    pub kubeconfig: Option<String>,
    #[serde(default)]
    pub k8s_api_root: Option<String>,
    #[serde(default)]
    pub node_name: Option<String>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
pub struct FeatureControl {
    /// Allows the `ipAddrsNoIpam` annotation.
    #[serde(default)]
    pub ip_addrs_no_ipam: bool,
    /// Allows the `floatingIPs` annotation.
    #[serde(default)]
    pub floating_ips: bool,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
pub struct ContainerSettings {
    /// Sets the pod's `ip_forward` sysctl to 1 (else 0).
    #[serde(default)]
    pub allow_ip_forwarding: bool,
}

/// One still-valid attachment in a GC request.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Deserialize)]
pub struct GcAttachment {
    #[serde(rename = "containerID")]
    pub container_id: String,
    pub ifname: String,
}

impl NetConf {
    /// Parses and checks a network configuration: malformed JSON is error code 6; a field of
    /// the wrong type is code 7 naming its path; an unsupported `cniVersion` is code 1; a
    /// missing or malformed `name` is code 7.
    pub fn parse(bytes: &[u8]) -> Result<Self, CniError> {
        let raw: Value = serde_json::from_slice(bytes).map_err(|error| {
            CniError::decoding_failure("failed to decode network config", error.to_string())
        })?;
        let mut conf: NetConf = serde_path_to_error::deserialize(&raw).map_err(|error| {
            CniError::invalid_config(
                format!(
                    "invalid network config: {}: {}",
                    error.path(),
                    error.inner()
                ),
                "",
            )
        })?;
        CniVersion::parse_config_field(Some(conf.cni_version.as_str()))?;
        validate_network_name(&conf.name)?;
        conf.ipam.raw = raw.get("ipam").cloned().unwrap_or(Value::Null);
        conf.raw = raw;
        Ok(conf)
    }

    /// The configuration's spec version (checked by [`NetConf::parse`]).
    pub fn version(&self) -> Result<CniVersion, CniError> {
        CniVersion::parse_config_field(Some(self.cni_version.as_str()))
    }

    /// `prevResult` decoded and converted to the internal model, if present.
    pub fn prev_result(&self) -> Result<Option<CniResult>, CniError> {
        match &self.prev_result {
            None | Some(Value::Null) => Ok(None),
            Some(value) => {
                let mut result = CniResult::from_json(value)?;
                // The runtime hands prevResult over in the config's own version.
                if value.get("cniVersion").is_none() {
                    result.cni_version = self.version()?;
                }
                Ok(Some(result))
            }
        }
    }

    /// The still-valid attachments of a GC request, accepting both spec keys (libcni sends
    /// both). `None` when neither key is present.
    pub fn gc_valid_attachments(&self) -> Option<Vec<GcAttachment>> {
        if self.valid_attachments.is_none() && self.attachments.is_none() {
            return None;
        }
        let mut all: Vec<GcAttachment> = Vec::new();
        for attachment in self
            .valid_attachments
            .iter()
            .chain(self.attachments.iter())
            .flatten()
        {
            if !all.contains(attachment) {
                all.push(attachment.clone());
            }
        }
        Some(all)
    }

    /// The raw configuration with `cniVersion` replaced, e.g. to delegate in a version the
    /// delegate understands.
    pub fn raw_with_version(&self, version: CniVersion) -> Value {
        let mut raw = self.raw.clone();
        if let Some(object) = raw.as_object_mut() {
            object.insert("cniVersion".into(), Value::String(version.as_str().into()));
        }
        raw
    }
}

/// A network name must be non-empty, start alphanumeric and continue with alphanumerics,
/// `_`, `.` or `-` (it ends up in file paths and handle IDs).
pub fn validate_network_name(name: &str) -> Result<(), CniError> {
    if name.is_empty() {
        return Err(CniError::invalid_config(
            "invalid network config: missing network name",
            "name",
        ));
    }
    let mut chars = name.chars();
    let valid = chars
        .next()
        .is_some_and(|first| first.is_ascii_alphanumeric())
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'));
    if valid {
        Ok(())
    } else {
        Err(CniError::invalid_config(
            "invalid network config: invalid characters in network name",
            name,
        ))
    }
}

fn string_or_bool<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<bool>, D::Error> {
    match Option::<Value>::deserialize(deserializer)? {
        None => Ok(None),
        Some(Value::Bool(flag)) => Ok(Some(flag)),
        Some(Value::String(text)) if text == "true" => Ok(Some(true)),
        Some(Value::String(text)) if text == "false" => Ok(Some(false)),
        Some(other) => Err(serde::de::Error::custom(format!(
            "expected \"true\" or \"false\", got {other}"
        ))),
    }
}
