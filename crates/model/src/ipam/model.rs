//! Stored forms of affinities, handles and IPAM's configuration, and the keys they live under
//! (Calico's etcd layout, so `etcdctl get --prefix /calico/ipam/v2/` reads as it does for Calico).

use std::collections::BTreeMap;

use ipnet::IpNet;
use serde::{Deserialize, Serialize};

use crate::ipam::addr::{cidr_key, parse_cidr_key};

pub use crate::keys::IPAM_PREFIX;
/// Where IPAM's configuration is stored: the IPAMConfiguration resource's key.
pub const CONFIG_KEY: &str = crate::keys::IPAM_CONFIG_KEY;
pub const BLOCK_PREFIX: &str = "/calico/ipam/v2/assignment/";
pub const HANDLE_PREFIX: &str = "/calico/ipam/v2/handle/";
pub const HOST_PREFIX: &str = "/calico/ipam/v2/host/";

fn family(net: IpNet) -> &'static str {
    match net {
        IpNet::V4(_) => "ipv4",
        IpNet::V6(_) => "ipv6",
    }
}

/// `/calico/ipam/v2/assignment/ipv4/block/198.18.0.64-26`
pub fn block_key(cidr: IpNet) -> String {
    format!("{BLOCK_PREFIX}{}/block/{}", family(cidr), cidr_key(cidr))
}

/// The block CIDR a block key names.
pub fn parse_block_key(key: &str) -> Option<IpNet> {
    let rest = key.strip_prefix(BLOCK_PREFIX)?;
    let (_, cidr) = rest.split_once("/block/")?;
    parse_cidr_key(cidr)
}

/// `/calico/ipam/v2/host/<node>/ipv4/block/198.18.0.64-26`
pub fn affinity_key(host: &str, cidr: IpNet) -> String {
    format!(
        "{HOST_PREFIX}{host}/{}/block/{}",
        family(cidr),
        cidr_key(cidr)
    )
}

/// Prefix of every affinity of `host` (both families).
pub fn host_affinities_prefix(host: &str) -> String {
    format!("{HOST_PREFIX}{host}/")
}

/// `(host, block)` of an affinity key.
pub fn parse_affinity_key(key: &str) -> Option<(String, IpNet)> {
    let rest = key.strip_prefix(HOST_PREFIX)?;
    let (host, rest) = rest.split_once('/')?;
    let (_, cidr) = rest.split_once("/block/")?;
    Some((host.to_string(), parse_cidr_key(cidr)?))
}

/// `/calico/ipam/v2/handle/<id>`
pub fn handle_key(handle: &str) -> String {
    format!("{HANDLE_PREFIX}{handle}")
}

/// Where a host's claim on a block stands. Only `confirmed` affinities own a block for routing; the others
/// are steps of a claim or a release.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum AffinityState {
    Pending,
    Confirmed,
    PendingDeletion,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Affinity {
    pub state: AffinityState,
    #[serde(default)]
    pub deleted: bool,
}

impl Affinity {
    pub fn confirmed() -> Affinity {
        Affinity {
            state: AffinityState::Confirmed,
            deleted: false,
        }
    }

    /// The stored form. An error (never an empty value) if it cannot be encoded.
    pub fn encode(&self) -> Result<Vec<u8>, EncodeError> {
        encode_json("affinity", self)
    }

    /// [`Affinity::encode`] for fixtures that build stored data by hand; panics where `encode` errs.
    pub fn to_json(&self) -> Vec<u8> {
        fixture(self.encode())
    }
}

/// How many addresses a handle holds in each block: lets release-by-handle visit only those blocks.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Handle {
    #[serde(rename = "handleID", default, skip_serializing_if = "String::is_empty")]
    pub handle_id: String,
    #[serde(default)]
    pub block: BTreeMap<String, u64>,
    #[serde(default)]
    pub deleted: bool,
}

impl Handle {
    /// The stored form. An error (never an empty value) if it cannot be encoded.
    pub fn encode(&self) -> Result<Vec<u8>, EncodeError> {
        encode_json("handle", self)
    }

    pub fn total(&self) -> u64 {
        self.block.values().sum()
    }
}

/// IPAM's cluster-wide settings (the IPAMConfiguration resource, stored at [`CONFIG_KEY`]).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct IpamConfig {
    #[serde(rename = "strict_affinity", default)]
    pub strict_affinity: bool,
    #[serde(rename = "auto_allocate_blocks", default = "yes")]
    pub auto_allocate_blocks: bool,
    /// 0 = no limit beyond the default of 20 a request uses.
    #[serde(rename = "maxBlocksPerHost", default)]
    pub max_blocks_per_host: u32,
    #[serde(rename = "ipCooldownSeconds", default)]
    pub ip_cooldown_seconds: u64,
}

fn yes() -> bool {
    true
}

impl Default for IpamConfig {
    fn default() -> Self {
        IpamConfig {
            strict_affinity: false,
            auto_allocate_blocks: true,
            max_blocks_per_host: 0,
            ip_cooldown_seconds: 0,
        }
    }
}

/// A value IPAM was about to store could not be encoded; nothing was written.
#[derive(Debug, thiserror::Error)]
#[error("cannot encode the {what} to store: {source}")]
pub struct EncodeError {
    pub what: &'static str,
    #[source]
    pub source: serde_json::Error,
}

/// Encode a stored value, naming it in the error.
pub fn encode_json<T: Serialize>(what: &'static str, value: &T) -> Result<Vec<u8>, EncodeError> {
    serde_json::to_vec(value).map_err(|source| EncodeError { what, source })
}

/// For fixtures only: the plain structs here always encode, and a test wants the bytes directly.
pub(crate) fn fixture(encoded: Result<Vec<u8>, EncodeError>) -> Vec<u8> {
    match encoded {
        Ok(bytes) => bytes,
        Err(e) => panic!("{e}"),
    }
}

/// Blocks a host may own when neither the configuration nor the request says otherwise.
pub const DEFAULT_MAX_BLOCKS_PER_HOST: u32 = 20;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_follow_calicos_layout_and_parse_back() {
        let b: IpNet = "198.18.0.64/26".parse().unwrap();
        assert_eq!(
            block_key(b),
            "/calico/ipam/v2/assignment/ipv4/block/198.18.0.64-26"
        );
        assert_eq!(parse_block_key(&block_key(b)), Some(b));
        assert_eq!(
            affinity_key("node-1", b),
            "/calico/ipam/v2/host/node-1/ipv4/block/198.18.0.64-26"
        );
        assert_eq!(
            parse_affinity_key(&affinity_key("node-1", b)),
            Some(("node-1".to_string(), b))
        );
        let v6: IpNet = "fd00::40/122".parse().unwrap();
        assert_eq!(
            block_key(v6),
            "/calico/ipam/v2/assignment/ipv6/block/fd00::40-122"
        );
        assert_eq!(parse_block_key(&block_key(v6)), Some(v6));
        assert_eq!(
            handle_key("k8s-pod-network.abc"),
            "/calico/ipam/v2/handle/k8s-pod-network.abc"
        );
    }

    #[test]
    fn stored_values_use_calicos_field_names() {
        assert_eq!(
            String::from_utf8(Affinity::confirmed().to_json()).unwrap(),
            r#"{"state":"confirmed","deleted":false}"#
        );
        let cfg: IpamConfig =
            serde_json::from_str(r#"{"strict_affinity":true,"maxBlocksPerHost":3}"#).unwrap();
        assert!(cfg.strict_affinity && cfg.auto_allocate_blocks);
        assert_eq!(cfg.max_blocks_per_host, 3);
    }
}
