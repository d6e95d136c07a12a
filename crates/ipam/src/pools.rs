//! Which pools a request may draw from (pure).

use std::collections::BTreeMap;
use std::net::IpAddr;

use calico_api::spec::ippool::{AllowedUse, AssignmentMode};
use calico_api::{Resource, Selector, Spec};
use ipnet::IpNet;

use crate::IpamError;

/// A pool's `nodeSelector` that does not parse.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BadSelector {
    pub selector: String,
    pub reason: String,
}

/// An IP pool as IPAM needs it.
#[derive(Clone, Debug, PartialEq)]
pub struct Pool {
    pub name: String,
    pub cidr: IpNet,
    pub block_prefix: u8,
    pub disabled: bool,
    /// The parsed `nodeSelector`, or why it does not parse (a pool written past validation, e.g. by
    /// another tool): such a pool is reported when a request would consider it, never dropped.
    pub node_selector: Result<Selector, BadSelector>,
    pub allowed_uses: Vec<AllowedUse>,
    /// Used only when a request names it.
    pub manual: bool,
}

impl Pool {
    /// The pool a stored IPPool describes; `None` for other kinds or an unusable CIDR or block size.
    pub fn from_resource(res: &Resource) -> Option<Pool> {
        let Spec::IPPool(spec) = &res.spec else {
            return None;
        };
        let cidr = spec.net()?;
        let block_prefix = u8::try_from(spec.effective_block_size()).ok()?;
        Some(Pool {
            name: res.name().to_string(),
            cidr,
            block_prefix,
            disabled: spec.disabled,
            node_selector: Selector::parse(spec.effective_node_selector()).map_err(|e| {
                BadSelector {
                    selector: spec.effective_node_selector().to_string(),
                    reason: e.to_string(),
                }
            }),
            allowed_uses: spec.effective_allowed_uses(),
            manual: spec.assignment_mode == Some(AssignmentMode::Manual),
        })
    }

    pub fn is_ipv4(&self) -> bool {
        matches!(self.cidr, IpNet::V4(_))
    }
}

/// The pools a request for `family_v4` addresses with `use_` on a node with `node_labels` may use.
///
/// `requested` (pool names or CIDRs, from the CNI config or annotations) narrows the choice; each must exist
/// and be enabled. Of the candidates, only enabled pools whose node selector matches the node and whose
/// allowed uses include `use_` remain; `Manual` pools only when requested.
pub fn select_pools(
    all: &[Pool],
    requested: &[String],
    node_labels: &BTreeMap<String, String>,
    use_: AllowedUse,
    family_v4: bool,
) -> Result<Vec<Pool>, IpamError> {
    let mut wanted: Vec<&Pool> = Vec::new();
    for want in requested {
        let found = all
            .iter()
            .find(|p| p.name == *want || want.parse::<IpNet>().is_ok_and(|n| n.trunc() == p.cidr));
        let pool = found.ok_or_else(|| IpamError::PoolNotFound(want.clone()))?;
        if pool.disabled {
            return Err(IpamError::PoolDisabled(want.clone()));
        }
        if pool.is_ipv4() != family_v4 {
            return Err(IpamError::PoolWrongFamily(want.clone()));
        }
        wanted.push(pool);
    }
    let candidates: Vec<&Pool> = if requested.is_empty() {
        all.iter().filter(|p| !p.manual).collect()
    } else {
        wanted
    };
    let mut out = Vec::new();
    for p in candidates {
        if p.disabled || p.is_ipv4() != family_v4 || !p.allowed_uses.contains(&use_) {
            continue;
        }
        let selector = p
            .node_selector
            .as_ref()
            .map_err(|bad| IpamError::BadNodeSelector {
                pool: p.name.clone(),
                selector: bad.selector.clone(),
                reason: bad.reason.clone(),
            })?;
        if selector.matches(node_labels) {
            out.push(p.clone());
        }
    }
    Ok(out)
}

/// The pool containing `ip`.
pub fn pool_of(all: &[Pool], ip: IpAddr) -> Option<&Pool> {
    all.iter().find(|p| p.cidr.contains(&ip))
}

/// Parse an IPReservation entry: a CIDR or a bare address.
pub fn parse_reserved(entry: &str) -> Option<IpNet> {
    entry
        .parse::<IpNet>()
        .map(|n| n.trunc())
        .or_else(|_| entry.parse::<IpAddr>().map(IpNet::from))
        .ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pool(name: &str, cidr: &str) -> Pool {
        Pool {
            name: name.into(),
            cidr: cidr.parse().unwrap(),
            block_prefix: 26,
            disabled: false,
            node_selector: Ok(Selector::all()),
            allowed_uses: vec![AllowedUse::Workload, AllowedUse::Tunnel],
            manual: false,
        }
    }

    #[test]
    fn selection_follows_disabled_selector_uses_and_requests() {
        let mut disabled = pool("off", "198.18.8.0/24");
        disabled.disabled = true;
        let mut rack = pool("rack", "198.18.9.0/24");
        rack.node_selector = Ok(Selector::parse("rack == 'a'").unwrap());
        let mut tunnel_only = pool("tun", "198.18.10.0/24");
        tunnel_only.allowed_uses = vec![AllowedUse::Tunnel];
        let mut manual = pool("man", "198.18.11.0/24");
        manual.manual = true;
        let v6 = pool("v6", "fd00:198::/64");
        let all = vec![
            pool("a", "198.18.0.0/24"),
            disabled,
            rack,
            tunnel_only,
            manual,
            v6,
        ];
        let no_labels = BTreeMap::new();
        let names = |v: Vec<Pool>| v.into_iter().map(|p| p.name).collect::<Vec<_>>();

        let got = select_pools(&all, &[], &no_labels, AllowedUse::Workload, true).unwrap();
        assert_eq!(names(got), vec!["a"]);
        let rack_a = BTreeMap::from([("rack".to_string(), "a".to_string())]);
        let got = select_pools(&all, &[], &rack_a, AllowedUse::Workload, true).unwrap();
        assert_eq!(names(got), vec!["a", "rack"]);
        let got = select_pools(&all, &[], &no_labels, AllowedUse::Tunnel, true).unwrap();
        assert_eq!(names(got), vec!["a", "tun"]);
        let got = select_pools(
            &all,
            &["man".into()],
            &no_labels,
            AllowedUse::Workload,
            true,
        )
        .unwrap();
        assert_eq!(names(got), vec!["man"]);
        let got = select_pools(
            &all,
            &["198.18.0.0/24".into()],
            &no_labels,
            AllowedUse::Workload,
            true,
        )
        .unwrap();
        assert_eq!(names(got), vec!["a"]);
        let got = select_pools(&all, &[], &no_labels, AllowedUse::Workload, false).unwrap();
        assert_eq!(names(got), vec!["v6"]);

        assert!(matches!(
            select_pools(
                &all,
                &["nope".into()],
                &no_labels,
                AllowedUse::Workload,
                true
            ),
            Err(IpamError::PoolNotFound(_))
        ));
        assert!(matches!(
            select_pools(
                &all,
                &["off".into()],
                &no_labels,
                AllowedUse::Workload,
                true
            ),
            Err(IpamError::PoolDisabled(_))
        ));
        assert!(matches!(
            select_pools(&all, &["v6".into()], &no_labels, AllowedUse::Workload, true),
            Err(IpamError::PoolWrongFamily(_))
        ));
    }

    #[test]
    fn reservations_accept_cidrs_and_addresses() {
        assert_eq!(
            parse_reserved("198.18.0.5").unwrap().to_string(),
            "198.18.0.5/32"
        );
        assert_eq!(
            parse_reserved("198.18.0.0/30").unwrap().to_string(),
            "198.18.0.0/30"
        );
        assert!(parse_reserved("nope").is_none());
    }

    #[test]
    fn a_bad_selector_is_an_error_naming_the_pool_only_when_the_pool_is_a_candidate() {
        let mut broken = pool("broken", "198.18.1.0/24");
        broken.node_selector = Err(BadSelector {
            selector: "rack ==".into(),
            reason: "unexpected end".into(),
        });
        let all = vec![pool("a", "198.18.0.0/24"), broken.clone()];
        let err = select_pools(&all, &[], &BTreeMap::new(), AllowedUse::Workload, true)
            .unwrap_err()
            .to_string();
        assert_eq!(
            err,
            "IP pool broken has an invalid nodeSelector \"rack ==\": unexpected end"
        );
        // Not a candidate: another family, another use, disabled, or another pool requested.
        let got = select_pools(&all, &[], &BTreeMap::new(), AllowedUse::Workload, false).unwrap();
        assert!(got.is_empty());
        let mut tunnel_only = broken.clone();
        tunnel_only.allowed_uses = vec![AllowedUse::Tunnel];
        let mut disabled = broken.clone();
        disabled.disabled = true;
        for other in [tunnel_only, disabled] {
            let all = vec![pool("a", "198.18.0.0/24"), other];
            let got =
                select_pools(&all, &[], &BTreeMap::new(), AllowedUse::Workload, true).unwrap();
            assert_eq!(got.len(), 1);
        }
        let got = select_pools(
            &all,
            &["a".into()],
            &BTreeMap::new(),
            AllowedUse::Workload,
            true,
        )
        .unwrap();
        assert_eq!(got.len(), 1);
    }
}
