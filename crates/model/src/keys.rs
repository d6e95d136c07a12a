//! Calico's etcdv3 key layout, so `etcdctl get --prefix /calico/` shows what a Calico operator expects.
//! IPAM's keys (blocks, affinities, handles) are built in [`crate::ipam::model`].

use calico_api::Kind;

/// Every v3 resource lives under this prefix.
pub const RESOURCES_PREFIX: &str = "/calico/resources/v3/";
/// IPAM's own objects (blocks, affinities, handles, config).
pub const IPAM_PREFIX: &str = "/calico/ipam/v2/";
/// Where the IPAMConfiguration singleton is stored, in IPAM's own JSON form.
pub const IPAM_CONFIG_KEY: &str = "/calico/ipam/v2/config";

/// Where Felix reports each host's status (Calico's layout; the region is always `no-region`).
pub const FELIX_HOST_STATUS_PREFIX: &str = "/calico/felix/v2/no-region/host/";

/// `/calico/felix/v2/no-region/host/<node>/status`: the node's last status report.
pub fn felix_status_key(node: &str) -> String {
    format!("{FELIX_HOST_STATUS_PREFIX}{node}/status")
}

/// Prefix of every object of `kind`, or of one namespace of a namespaced kind.
pub fn kind_prefix(kind: Kind, namespace: Option<&str>) -> String {
    let mut key = format!("{RESOURCES_PREFIX}{}/{}/", kind.group(), kind.plural());
    if kind.namespaced()
        && let Some(ns) = namespace
    {
        key.push_str(ns);
        key.push('/');
    }
    key
}

/// The key of one object.
pub fn resource_key(kind: Kind, namespace: Option<&str>, name: &str) -> String {
    if kind == Kind::IPAMConfiguration {
        return IPAM_CONFIG_KEY.to_string();
    }
    let mut key = kind_prefix(kind, None);
    if kind.namespaced() {
        key.push_str(namespace.unwrap_or("default"));
        key.push('/');
    }
    key.push_str(name);
    key
}

/// Identity parsed back from a resource key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ResourceId {
    pub kind: Kind,
    pub namespace: Option<String>,
    pub name: String,
}

/// Parse a key written by [`resource_key`]; `None` for keys outside the resource layout.
pub fn parse_resource_key(key: &str) -> Option<ResourceId> {
    if key == IPAM_CONFIG_KEY {
        return Some(ResourceId {
            kind: Kind::IPAMConfiguration,
            namespace: None,
            name: "default".into(),
        });
    }
    let rest = key.strip_prefix(RESOURCES_PREFIX)?;
    let mut parts = rest.split('/');
    let group = parts.next()?;
    let plural = parts.next()?;
    let kind = Kind::ALL
        .iter()
        .copied()
        .find(|k| k.group() == group && k.plural() == plural)?;
    let (namespace, name) = if kind.namespaced() {
        (Some(parts.next()?.to_string()), parts.next()?.to_string())
    } else {
        (None, parts.next()?.to_string())
    };
    if parts.next().is_some() || name.is_empty() {
        return None;
    }
    Some(ResourceId {
        kind,
        namespace,
        name,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_follow_calico_layout() {
        assert_eq!(
            resource_key(Kind::IPPool, None, "default-ipv4-ippool"),
            "/calico/resources/v3/projectcalico.org/ippools/default-ipv4-ippool"
        );
        assert_eq!(
            resource_key(Kind::NetworkPolicy, Some("prod"), "allow-dns"),
            "/calico/resources/v3/projectcalico.org/networkpolicies/prod/allow-dns"
        );
        assert_eq!(
            resource_key(Kind::ClusterInformation, None, "default"),
            "/calico/resources/v3/projectcalico.org/clusterinformations/default"
        );
        assert_eq!(
            resource_key(Kind::IPAMConfiguration, None, "default"),
            "/calico/ipam/v2/config"
        );
    }

    #[test]
    fn every_kind_round_trips_through_its_key() {
        for &kind in Kind::ALL {
            let ns = kind.namespaced().then_some("ns1");
            let key = resource_key(kind, ns, "default");
            let id = parse_resource_key(&key).expect("key parses");
            assert_eq!(id.kind, kind);
            assert_eq!(id.namespace.as_deref(), ns);
            assert_eq!(id.name, "default");
        }
        assert_eq!(
            parse_resource_key("/calico/resources/v3/projectcalico.org/ippools/a/b"),
            None
        );
        assert_eq!(parse_resource_key("/calico/felix/v2/x"), None);
    }
}
