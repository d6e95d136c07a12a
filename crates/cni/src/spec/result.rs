//! The ADD success result, modelled in its 1.x shape and rendered for any supported version.

use std::net::IpAddr;

use ipnet::IpNet;
use serde::Deserialize;
use serde_json::{Map, Value, json};

use super::error::CniError;
use super::version::CniVersion;

/// A CNI success result. The same model serves for plugin results, IPAM results (which have
/// no interfaces and no `interface` indexes) and `prevResult`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CniResult {
    pub cni_version: CniVersion,
    pub interfaces: Vec<Interface>,
    pub ips: Vec<IpConfig>,
    pub routes: Vec<RouteConf>,
    pub dns: Dns,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Interface {
    pub name: String,
    pub mac: Option<String>,
    /// Rendered from 1.0.0 on (libcni's 1.x result type carries it; the 0.x types have none).
    pub mtu: Option<u32>,
    /// The netns path for interfaces inside the container; `None` for host interfaces.
    pub sandbox: Option<String>,
    /// Rendered for 1.1.0 only.
    pub socket_path: Option<String>,
    /// Rendered for 1.1.0 only.
    pub pci_id: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IpConfig {
    /// The address with its prefix length, e.g. `10.1.0.5/16`.
    pub address: IpNet,
    pub gateway: Option<IpAddr>,
    /// Index into [`CniResult::interfaces`]; absent in IPAM results.
    pub interface: Option<usize>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouteConf {
    pub dst: IpNet,
    pub gw: Option<IpAddr>,
    /// The fields below exist from spec 1.1.0 on and are rendered only for it.
    pub mtu: Option<u32>,
    pub advmss: Option<u32>,
    pub priority: Option<u32>,
    pub table: Option<u32>,
    /// 0 global, 253 link, 254 host.
    pub scope: Option<u32>,
}

impl RouteConf {
    /// A route with only a destination and an optional next hop.
    pub fn new(dst: IpNet, gw: Option<IpAddr>) -> Self {
        Self {
            dst,
            gw,
            mtu: None,
            advmss: None,
            priority: None,
            table: None,
            scope: None,
        }
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(default)]
pub struct Dns {
    pub nameservers: Vec<String>,
    pub domain: Option<String>,
    pub search: Vec<String>,
    pub options: Vec<String>,
}

impl Dns {
    pub fn is_empty(&self) -> bool {
        self.nameservers.is_empty()
            && self.domain.as_deref().is_none_or(str::is_empty)
            && self.search.is_empty()
            && self.options.is_empty()
    }

    fn to_json(&self) -> Value {
        let mut object = Map::new();
        if !self.nameservers.is_empty() {
            object.insert("nameservers".into(), json!(self.nameservers));
        }
        if let Some(domain) = self.domain.as_deref().filter(|domain| !domain.is_empty()) {
            object.insert("domain".into(), json!(domain));
        }
        if !self.search.is_empty() {
            object.insert("search".into(), json!(self.search));
        }
        if !self.options.is_empty() {
            object.insert("options".into(), json!(self.options));
        }
        Value::Object(object)
    }
}

impl CniResult {
    pub fn new(cni_version: CniVersion) -> Self {
        Self {
            cni_version,
            interfaces: Vec::new(),
            ips: Vec::new(),
            routes: Vec::new(),
            dns: Dns::default(),
        }
    }

    /// Renders the result in the shape `version` defines. Empty lists, unset fields and an
    /// empty `dns` are omitted; fields a version does not define are left out.
    pub fn to_json(&self, version: CniVersion) -> Value {
        let mut object = Map::new();
        object.insert("cniVersion".into(), json!(version.as_str()));
        if !self.interfaces.is_empty() {
            let interfaces = self
                .interfaces
                .iter()
                .map(|interface| interface.to_json(version))
                .collect();
            object.insert("interfaces".into(), Value::Array(interfaces));
        }
        if !self.ips.is_empty() {
            let ips = self.ips.iter().map(|ip| ip.to_json(version)).collect();
            object.insert("ips".into(), Value::Array(ips));
        }
        if !self.routes.is_empty() {
            let routes = self
                .routes
                .iter()
                .map(|route| route.to_json(version))
                .collect();
            object.insert("routes".into(), Value::Array(routes));
        }
        if !self.dns.is_empty() {
            object.insert("dns".into(), self.dns.to_json());
        }
        Value::Object(object)
    }

    /// Renders the result in its own `cni_version`.
    pub fn to_json_own_version(&self) -> Value {
        self.to_json(self.cni_version)
    }

    /// Parses a result of any supported version (a `prevResult`, or a delegated IPAM plugin's
    /// output). Without a `cniVersion` the version is inferred: 0.4.0 if any IP carries a
    /// `version` tag, else 1.1.0. An unsupported `cniVersion` is error code 1; anything that
    /// does not decode is error code 6 naming the JSON path.
    pub fn from_json(value: &Value) -> Result<Self, CniError> {
        let wire: WireResult = serde_path_to_error::deserialize(value).map_err(|error| {
            CniError::decoding_failure(
                format!(
                    "failed to decode CNI result: {}: {}",
                    error.path(),
                    error.inner()
                ),
                value.to_string(),
            )
        })?;
        let cni_version = match wire.cni_version.as_deref() {
            Some(text) if !text.is_empty() => CniVersion::parse(text)?,
            _ if wire.ips.iter().any(|ip| ip.version.is_some()) => CniVersion::V0_4_0,
            _ => CniVersion::LATEST,
        };
        Ok(Self {
            cni_version,
            interfaces: wire
                .interfaces
                .into_iter()
                .map(|wire| Interface {
                    name: wire.name,
                    mac: non_empty(wire.mac),
                    mtu: wire.mtu.filter(|mtu| *mtu != 0),
                    sandbox: non_empty(wire.sandbox),
                    socket_path: non_empty(wire.socket_path),
                    pci_id: non_empty(wire.pci_id),
                })
                .collect(),
            ips: wire
                .ips
                .into_iter()
                .map(|wire| IpConfig {
                    address: wire.address,
                    gateway: wire.gateway,
                    interface: wire.interface,
                })
                .collect(),
            routes: wire
                .routes
                .into_iter()
                .map(|wire| RouteConf {
                    dst: wire.dst,
                    gw: wire.gw,
                    mtu: wire.mtu,
                    advmss: wire.advmss,
                    priority: wire.priority,
                    table: wire.table,
                    scope: wire.scope,
                })
                .collect(),
            dns: wire.dns,
        })
    }
}

impl Interface {
    fn to_json(&self, version: CniVersion) -> Value {
        let mut object = Map::new();
        object.insert("name".into(), json!(self.name));
        if let Some(mac) = self.mac.as_deref().filter(|mac| !mac.is_empty()) {
            object.insert("mac".into(), json!(mac));
        }
        if version >= CniVersion::V1_0_0
            && let Some(mtu) = self.mtu
        {
            object.insert("mtu".into(), json!(mtu));
        }
        if let Some(sandbox) = self
            .sandbox
            .as_deref()
            .filter(|sandbox| !sandbox.is_empty())
        {
            object.insert("sandbox".into(), json!(sandbox));
        }
        if version >= CniVersion::V1_1_0 {
            if let Some(path) = self.socket_path.as_deref().filter(|path| !path.is_empty()) {
                object.insert("socketPath".into(), json!(path));
            }
            if let Some(pci_id) = self.pci_id.as_deref().filter(|pci_id| !pci_id.is_empty()) {
                object.insert("pciID".into(), json!(pci_id));
            }
        }
        Value::Object(object)
    }
}

impl IpConfig {
    fn to_json(&self, version: CniVersion) -> Value {
        let mut object = Map::new();
        if version.ips_carry_version() {
            let family = match self.address {
                IpNet::V4(_) => "4",
                IpNet::V6(_) => "6",
            };
            object.insert("version".into(), json!(family));
        }
        object.insert("address".into(), json!(self.address.to_string()));
        if let Some(gateway) = self.gateway {
            object.insert("gateway".into(), json!(gateway.to_string()));
        }
        if let Some(interface) = self.interface {
            object.insert("interface".into(), json!(interface));
        }
        Value::Object(object)
    }
}

impl RouteConf {
    fn to_json(&self, version: CniVersion) -> Value {
        let mut object = Map::new();
        object.insert("dst".into(), json!(self.dst.to_string()));
        if let Some(gw) = self.gw {
            object.insert("gw".into(), json!(gw.to_string()));
        }
        if version >= CniVersion::V1_1_0 {
            let extras = [
                ("mtu", self.mtu),
                ("advmss", self.advmss),
                ("priority", self.priority),
                ("table", self.table),
                ("scope", self.scope),
            ];
            for (key, value) in extras {
                if let Some(value) = value {
                    object.insert(key.into(), json!(value));
                }
            }
        }
        Value::Object(object)
    }
}

fn non_empty(text: Option<String>) -> Option<String> {
    text.filter(|text| !text.is_empty())
}

/// The union of every supported version's result fields, for decoding.
#[derive(Deserialize)]
struct WireResult {
    #[serde(rename = "cniVersion", default)]
    cni_version: Option<String>,
    #[serde(default, deserialize_with = "null_as_default")]
    interfaces: Vec<WireInterface>,
    #[serde(default, deserialize_with = "null_as_default")]
    ips: Vec<WireIp>,
    #[serde(default, deserialize_with = "null_as_default")]
    routes: Vec<WireRoute>,
    #[serde(default, deserialize_with = "null_as_default")]
    dns: Dns,
}

#[derive(Deserialize)]
struct WireInterface {
    name: String,
    #[serde(default)]
    mac: Option<String>,
    #[serde(default)]
    mtu: Option<u32>,
    #[serde(default)]
    sandbox: Option<String>,
    #[serde(rename = "socketPath", default)]
    socket_path: Option<String>,
    #[serde(rename = "pciID", default)]
    pci_id: Option<String>,
}

#[derive(Deserialize)]
struct WireIp {
    /// Present before 1.0.0; the address itself tells the family, so it is only used to
    /// infer the version of an unversioned result.
    #[serde(default)]
    version: Option<String>,
    address: IpNet,
    #[serde(default)]
    gateway: Option<IpAddr>,
    #[serde(default)]
    interface: Option<usize>,
}

#[derive(Deserialize)]
struct WireRoute {
    dst: IpNet,
    #[serde(default)]
    gw: Option<IpAddr>,
    #[serde(default)]
    mtu: Option<u32>,
    #[serde(default)]
    advmss: Option<u32>,
    #[serde(default)]
    priority: Option<u32>,
    #[serde(default)]
    table: Option<u32>,
    #[serde(default)]
    scope: Option<u32>,
}

/// Go plugins may print `null` for an empty list or object.
fn null_as_default<'de, D, T>(deserializer: D) -> Result<T, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Deserialize<'de> + Default,
{
    Ok(Option::<T>::deserialize(deserializer)?.unwrap_or_default())
}
