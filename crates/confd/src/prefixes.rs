//! The prefixes this node originates: its affine IPAM blocks (BIRD's `bird_aggr.cfg` blackholes
//! them and exports them whole), the addresses it borrowed from other nodes' blocks (the kernel's
//! /32 or /128 routes to its pods, exported since no block of its own covers them), and the
//! service CIDRs of BGPConfiguration; never anything from a pool with `disableBGPExport`, and
//! no block outside every pool (BIRD's export filter only accepts pool routes), and IPv6 ones
//! only when the node has an IPv6 address. Communities
//! come from `prefixAdvertisements`, the node's own BGPConfiguration's list replacing the
//! cluster's.

use std::net::IpAddr;

use calico_api::spec::bgpconfig::{BGPConfigurationSpec, ServiceIPBlock};
use calico_bgp::policy::Community;
use calico_bgp::wire::LargeCommunity;
use ipnet::IpNet;

use crate::{ConfdProblem, Context, Named, OriginKind, Origination};

/// Nodes with this label set to `true` advertise no service CIDRs (as kube-proxy's load
/// balancers leave them out).
const EXCLUDE_LB_LABEL: &str = "node.kubernetes.io/exclude-from-external-load-balancers";

pub(crate) fn originations(
    ctx: &Context<'_>,
    problems: &mut Vec<ConfdProblem>,
) -> Vec<Origination> {
    let Some(me) = ctx.me() else {
        return Vec::new();
    };
    let mut out: Vec<(IpNet, OriginKind)> = Vec::new();

    for block in ctx.input.blocks {
        if block.affinity.as_deref() == Some(me.name) {
            if exportable(ctx, block.cidr) {
                out.push((block.cidr.trunc(), OriginKind::Block));
            }
            continue;
        }
        for (ip, node) in &block.borrowed {
            if node == me.name {
                let host = IpNet::from(*ip);
                if exportable(ctx, host) {
                    out.push((host, OriginKind::Borrowed));
                }
            }
        }
    }

    let excluded = me.labels.get(EXCLUDE_LB_LABEL).map(String::as_str) == Some("true");
    if let Some(global) = ctx.global.filter(|_| !excluded) {
        for (field, blocks, kind) in [
            (
                "serviceClusterIPs",
                &global.service_cluster_ips,
                OriginKind::ServiceClusterIP,
            ),
            (
                "serviceExternalIPs",
                &global.service_external_ips,
                OriginKind::ServiceExternalIP,
            ),
            (
                "serviceLoadBalancerIPs",
                &global.service_load_balancer_ips,
                OriginKind::ServiceLoadBalancerIP,
            ),
        ] {
            out.extend(
                service_cidrs(ctx.global_name, field, blocks, problems)
                    .into_iter()
                    .map(|n| (n, kind)),
            );
        }
    }

    // One origination per prefix: the first reason found (blocks, borrowed, services). IPv6
    // only with an IPv6 address of our own (without one, Calico renders no bird6 config).
    let mut seen = std::collections::HashSet::new();
    out.retain(|(p, _)| (matches!(p, IpNet::V4(_)) || me.v6.is_some()) && seen.insert(*p));
    out.sort_by_key(|(p, _)| *p);

    let advertisements = match ctx
        .mine
        .filter(|c| !c.spec.prefix_advertisements.is_empty())
    {
        Some(mine) => Some(mine),
        None => ctx
            .input
            .bgp_configurations
            .iter()
            .find(|c| c.name == "default"),
    };
    let rules = advertisements.map_or_else(Vec::new, |c| community_rules(c, problems));
    out.into_iter()
        .map(|(prefix, kind)| {
            let mut communities = Vec::new();
            let mut large_communities = Vec::new();
            for (cidr, standard, large) in &rules {
                if cidr.contains(&prefix) {
                    communities.extend_from_slice(standard);
                    large_communities.extend_from_slice(large);
                }
            }
            communities.sort_unstable();
            communities.dedup();
            large_communities.sort_unstable();
            large_communities.dedup();
            Origination {
                prefix,
                kind,
                communities,
                large_communities,
            }
        })
        .collect()
}

/// Whether BIRD's export filter lets a route within `net` out: it lies in a pool, and no pool
/// holding it has `disableBGPExport`.
fn exportable(ctx: &Context<'_>, net: IpNet) -> bool {
    let mut in_pool = false;
    for pool in ctx.input.ip_pools {
        if let Some(cidr) = pool.spec.net()
            && cidr.trunc().contains(&net)
        {
            if pool.spec.disable_bgp_export {
                return false;
            }
            in_pool = true;
        }
    }
    in_pool
}

fn service_cidrs(
    config: &str,
    field: &str,
    blocks: &[ServiceIPBlock],
    problems: &mut Vec<ConfdProblem>,
) -> Vec<IpNet> {
    let mut out = Vec::new();
    for (i, block) in blocks.iter().enumerate() {
        if block.cidr.is_empty() {
            continue;
        }
        match block.cidr.parse::<IpNet>() {
            Ok(n) => out.push(n.trunc()),
            // A bare address is advertised as a host route.
            Err(_) => match block.cidr.parse::<IpAddr>() {
                Ok(ip) => out.push(IpNet::from(ip)),
                Err(_) => problems.push(ConfdProblem::new(
                    "BGPConfiguration",
                    config,
                    format!("spec.{field}[{i}].cidr"),
                    format!("{:?} is not a CIDR: it is not advertised", block.cidr),
                )),
            },
        }
    }
    out
}

type CommunityRule = (IpNet, Vec<u32>, Vec<LargeCommunity>);

/// `prefixAdvertisements` with each community resolved to its value.
fn community_rules(
    config: &Named<BGPConfigurationSpec>,
    problems: &mut Vec<ConfdProblem>,
) -> Vec<CommunityRule> {
    let mut out = Vec::new();
    for (i, adv) in config.spec.prefix_advertisements.iter().enumerate() {
        let mut problem = |field: String, message: String| {
            problems.push(ConfdProblem::new(
                "BGPConfiguration",
                &config.name,
                format!("spec.prefixAdvertisements[{i}]{field}"),
                message,
            ));
        };
        let Ok(cidr) = adv.cidr.parse::<IpNet>() else {
            problem(
                ".cidr".into(),
                format!(
                    "{:?} is not a CIDR: its communities are not attached",
                    adv.cidr
                ),
            );
            continue;
        };
        let mut standard = Vec::new();
        let mut large = Vec::new();
        for (j, name) in adv.communities.iter().enumerate() {
            let Some(value) = config.spec.resolve_community(name) else {
                problem(
                    format!(".communities[{j}]"),
                    format!(
                        "{name:?} is neither a community value nor defined in spec.communities: it is not attached"
                    ),
                );
                continue;
            };
            match parse_community(value) {
                Some(Community::Standard(c)) => standard.push(c),
                Some(Community::Large(c)) => large.push(c),
                None => problem(
                    format!(".communities[{j}]"),
                    format!(
                        "{value:?} is not aa:nn (16-bit parts) or aa:nn:mm (32-bit parts): it is not attached"
                    ),
                ),
            }
        }
        out.push((cidr.trunc(), standard, large));
    }
    out
}

/// `aa:nn` (each at most 65535) or `aa:nn:mm`.
pub(crate) fn parse_community(value: &str) -> Option<Community> {
    let parts: Vec<&str> = value.split(':').collect();
    match parts.as_slice() {
        [a, n] => {
            let a: u16 = a.parse().ok()?;
            let n: u16 = n.parse().ok()?;
            Some(Community::Standard(u32::from(a) << 16 | u32::from(n)))
        }
        [a, n, m] => Some(Community::Large(LargeCommunity {
            global_admin: a.parse().ok()?,
            local_data_1: n.parse().ok()?,
            local_data_2: m.parse().ok()?,
        })),
        _ => None,
    }
}
