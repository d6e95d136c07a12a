//! The peer set: the node-to-node mesh, then BGPPeers as confd turns them into peerings (global
//! ones first, node-specific ones that would duplicate a global one suppressed, then the reverse
//! peerings that make a peering between two Calico nodes symmetric), then BIRD's per-protocol
//! settings.

use std::collections::HashSet;
use std::net::IpAddr;

use calico_api::Selector;
use calico_api::spec::bgppeer::{BGPPassword, BGPPeerSpec, NextHopMode, SourceAddress};
use calico_api::validate::parse_go_duration;
use calico_bgp::rib::NextHopMode as SpeakerNextHop;
use calico_bgp::speaker::PeerSettings;

use crate::filters::peer_filters;
use crate::{ConfdProblem, Context, DesiredPeer, Named, NodeFacts, PeerKind, SecretReader};

/// BIRD's TTL for `multihop` without a number; Calico's template always says `multihop`.
const MULTIHOP_TTL: u8 = 64;
/// Outgoing TTL under `ttl security` (RFC 5082).
const GTSM_TTL: u8 = 255;
/// The restart time field of the graceful restart capability has 12 bits (RFC 4724).
const MAX_RESTART_TIME: u64 = 4095;

/// One peering confd would write for this node (its `peer_v4`/`peer_v6` entries).
#[derive(Clone, Debug)]
struct Candidate<'a> {
    kind: PeerKind,
    ip: IpAddr,
    /// The BGPPeer's port, or the peer node's listen port.
    port: Option<u16>,
    remote_as: u32,
    /// The peer node's cluster id, for peers that are Calico nodes found by selector.
    rr_cluster_id: Option<&'a str>,
    /// Written by `peerIP` and at a Calico node's address: the lower address waits.
    calico_node: bool,
    /// From `peerSelector` or a reverse peering, rather than a written `peerIP`.
    from_selector: bool,
    res: &'a Named<BGPPeerSpec>,
}

pub(crate) fn desired_peers(
    ctx: &Context<'_>,
    secrets: SecretReader<'_>,
    problems: &mut Vec<ConfdProblem>,
) -> Vec<DesiredPeer> {
    let mut peers = mesh(ctx, secrets, problems);
    for c in candidates(ctx, problems) {
        if let Some(p) = build(ctx, &c, secrets, problems) {
            peers.push(p);
        }
    }

    // The speaker holds one session per address. BIRD would run both protocols; keep the one
    // configured most explicitly (global, node-specific, mesh) and say so.
    peers.sort_by_key(|p| {
        let rank = match p.kind {
            PeerKind::Global => 0,
            PeerKind::NodeSpecific => 1,
            PeerKind::Mesh => 2,
        };
        (rank, p.name.clone())
    });
    let mut seen: Vec<(IpAddr, String)> = Vec::new();
    peers.retain(|p| {
        if let Some((_, kept)) = seen.iter().find(|(a, _)| *a == p.settings.address) {
            let (kind, resource) = match &p.source {
                Some(r) => ("BGPPeer", r.as_str()),
                None => ("Node", ctx.input.node_name),
            };
            problems.push(ConfdProblem::new(
                kind,
                resource,
                "spec",
                format!(
                    "{} duplicates {kept} (same address {}): only {kept} is kept",
                    p.name, p.settings.address
                ),
            ));
            return false;
        }
        seen.push((p.settings.address, p.name.clone()));
        true
    });
    peers.sort_by(|a, b| a.name.cmp(&b.name));
    peers
}

/// BIRD's protocol name.
fn protocol_name(kind: PeerKind, ip: IpAddr, port: Option<u16>) -> String {
    let ip = ip.to_string().replace(['.', ':'], "_");
    match port {
        Some(p) if kind != PeerKind::Mesh => format!("{}_{ip}_port_{p}", kind.name_prefix()),
        _ => format!("{}_{ip}", kind.name_prefix()),
    }
}

/// Whether we wait for the peer: the side whose address compares lower (as a string, like
/// confd's templates) waits, so the two never race to connect.
fn we_wait(peer: IpAddr, ours: IpAddr) -> bool {
    peer.to_string() > ours.to_string()
}

/// A Go duration as whole seconds (rounded, as confd does), within `max`.
fn seconds(value: &str, max: u64) -> Result<u64, String> {
    let d = parse_go_duration(value)
        .ok_or_else(|| format!("{value:?} is not a duration (e.g. 120s, 2m)"))?;
    let secs = d
        .as_secs()
        .saturating_add(u64::from(d.subsec_millis() >= 500));
    if secs > max {
        return Err(format!("{value} is more than {max} s"));
    }
    Ok(secs)
}

fn password(
    password: Option<&BGPPassword>,
    secrets: SecretReader<'_>,
) -> Result<Option<String>, String> {
    match password.and_then(|p| p.secret_key_ref.as_ref()) {
        None => Ok(None),
        Some(sel) => match secrets(sel) {
            Ok(p) => Ok(Some(p)),
            // An optional reference (as in Kubernetes) allows going without.
            Err(_) if sel.optional == Some(true) => Ok(None),
            Err(e) => Err(format!(
                "cannot read key {:?} of Secret {:?}: {e}",
                sel.key, sel.name
            )),
        },
    }
}

/// The node-to-node mesh: every other node with an address of a family we have, except route
/// reflectors; none at all on a route reflector or with the mesh disabled.
fn mesh(
    ctx: &Context<'_>,
    secrets: SecretReader<'_>,
    problems: &mut Vec<ConfdProblem>,
) -> Vec<DesiredPeer> {
    let Some(me) = ctx.me() else {
        return Vec::new();
    };
    let enabled = ctx.global.is_none_or(|g| g.mesh_enabled());
    if !enabled || me.cluster_id.is_some() {
        return Vec::new();
    }
    let global = ctx.global;
    let mut problem = |field: &str, message: String| {
        problems.push(ConfdProblem::new(
            "BGPConfiguration",
            ctx.global_name,
            field,
            message,
        ));
    };
    let password = match password(global.and_then(|g| g.node_mesh_password.as_ref()), secrets) {
        Ok(p) => p,
        Err(e) => {
            problem(
                "spec.nodeMeshPassword",
                format!("{e}; the mesh is left out"),
            );
            return Vec::new();
        }
    };
    let restart = match global.and_then(|g| g.node_mesh_max_restart_time.as_deref()) {
        None => None,
        Some(t) => match seconds(t, MAX_RESTART_TIME) {
            Ok(s) => Some(s as u16),
            Err(e) => {
                problem(
                    "spec.nodeMeshMaxRestartTime",
                    format!("{e}; the mesh is left out"),
                );
                return Vec::new();
            }
        },
    };

    let mut out = Vec::new();
    for node in &ctx.nodes {
        if node.name == me.name || node.cluster_id.is_some() {
            continue;
        }
        let pairs = [
            (node.v4.map(IpAddr::V4), me.v4.map(IpAddr::V4)),
            (node.v6.map(IpAddr::V6), me.v6.map(IpAddr::V6)),
        ];
        for (theirs, ours) in pairs {
            let (Some(ip), Some(ours)) = (theirs, ours) else {
                continue;
            };
            if ip == ours {
                continue;
            }
            let mut s = PeerSettings::new(ip, node.asn);
            s.port = node.listen_port.unwrap_or(179);
            s.password.clone_from(&password);
            s.passive = we_wait(ip, ours);
            s.local_address = Some(ours);
            s.multihop = Some(MULTIHOP_TTL);
            // Mesh peers are our own nodes, which configure each other at about the same moment:
            // the first connection is often refused because the other side has not added us yet.
            // Calico's BIRD template retries after 5 s; starting at a quarter of a second (the wait
            // doubles after each failure, up to a minute) costs a few SYNs and brings a mesh, or a
            // mesh turned back on, up within a second.
            s.connect_retry = MESH_CONNECT_RETRY;
            s.error_wait = MESH_CONNECT_RETRY;
            if let Some(r) = restart {
                s.graceful_restart_time = Some(r);
            }
            out.push(DesiredPeer {
                name: protocol_name(PeerKind::Mesh, ip, None),
                kind: PeerKind::Mesh,
                settings: s,
                source: None,
                reachable_by: None,
            });
        }
    }
    out
}

/// How soon a mesh peer's refused or failed connection (or a session that just failed) is tried
/// again.
pub const MESH_CONNECT_RETRY: std::time::Duration = std::time::Duration::from_millis(250);

/// A selector field of a BGPPeer, parsed; a problem when it does not parse.
fn selector(
    res: &Named<BGPPeerSpec>,
    field: &str,
    value: &str,
    problems: &mut Vec<ConfdProblem>,
) -> Option<Selector> {
    match Selector::parse(value) {
        Ok(s) => Some(s),
        Err(e) => {
            problems.push(ConfdProblem::new(
                "BGPPeer",
                &res.name,
                format!("spec.{field}"),
                format!("invalid selector {value:?}: {e}; the BGPPeer is left out"),
            ));
            None
        }
    }
}

/// A Calico node as peer(s), at its addresses of the families asked for.
fn node_as_peers<'a>(
    node: &NodeFacts<'a>,
    v4: bool,
    v6: bool,
    kind: PeerKind,
    res: &'a Named<BGPPeerSpec>,
) -> Vec<Candidate<'a>> {
    let ips = [
        node.v4.filter(|_| v4).map(IpAddr::V4),
        node.v6.filter(|_| v6).map(IpAddr::V6),
    ];
    ips.into_iter()
        .flatten()
        .map(|ip| Candidate {
            kind,
            ip,
            port: node.listen_port,
            remote_as: node.asn,
            rr_cluster_id: node.cluster_id,
            // confd only marks peers written by address as Calico nodes (for `passive`).
            calico_node: false,
            from_selector: true,
            res,
        })
        .collect()
}

/// Nodes at `ip` in AS `asn` (the cluster's when 0), listening on `port` if given.
fn nodes_at<'c, 'a>(
    ctx: &'c Context<'a>,
    ip: IpAddr,
    asn: u32,
    port: Option<u16>,
) -> impl Iterator<Item = &'c NodeFacts<'a>> {
    let asn = if asn == 0 { ctx.global_as } else { asn };
    ctx.nodes.iter().filter(move |n| {
        n.has_ip(ip) && n.asn == asn && port.is_none_or(|p| n.listen_port.unwrap_or(179) == p)
    })
}

/// The remote side of a BGPPeer: the nodes its `peerSelector` picks, or its `peerIP`.
fn remote_side<'a>(
    ctx: &Context<'a>,
    res: &'a Named<BGPPeerSpec>,
    kind: PeerKind,
    problems: &mut Vec<ConfdProblem>,
) -> Vec<Candidate<'a>> {
    let spec = &res.spec;
    let mut problem = |field: &str, message: String| {
        problems.push(ConfdProblem::new("BGPPeer", &res.name, field, message));
    };
    if !spec.peer_selector.is_empty() {
        let Some(sel) = selector(res, "peerSelector", &spec.peer_selector, problems) else {
            return Vec::new();
        };
        return ctx
            .nodes
            .iter()
            .filter(|n| sel.matches(n.labels))
            .flat_map(|n| node_as_peers(n, true, true, kind, res))
            .collect();
    }
    if spec.peer_ip.is_empty() {
        let message = if spec.local_workload_selector.is_empty() {
            "neither peerIP nor peerSelector is set: the BGPPeer is left out"
        } else {
            "localWorkloadSelector peerings are not supported by calico-rs yet: the BGPPeer is left out"
        };
        problem("spec.peerIP", message.into());
        return Vec::new();
    }
    let Some((ip, port)) = spec.peer_address() else {
        problem(
            "spec.peerIP",
            format!(
                "invalid peerIP {:?}: must be \"<IP>\", \"<IPv4>:<port>\" or \"[<IPv6>]:<port>\"; the BGPPeer is left out",
                spec.peer_ip
            ),
        );
        return Vec::new();
    };
    let asn = spec.as_number.unwrap_or(0);
    // A peer that is a Calico node is reached at its listen port unless a port is written.
    let port = port.or_else(|| nodes_at(ctx, ip, asn, None).next()?.listen_port);
    vec![Candidate {
        kind,
        ip,
        port,
        remote_as: asn,
        rr_cluster_id: None,
        calico_node: ctx.nodes.iter().any(|n| n.has_ip(ip)),
        from_selector: false,
        res,
    }]
}

/// Whether a node-specific BGPPeer applies to this node (`node`, or `nodeSelector`).
fn applies_to(
    res: &Named<BGPPeerSpec>,
    node: &NodeFacts<'_>,
    problems: &mut Vec<ConfdProblem>,
) -> Option<bool> {
    if !res.spec.node.is_empty() {
        return Some(res.spec.node == node.name);
    }
    let sel = selector(res, "nodeSelector", &res.spec.node_selector, problems)?;
    Some(sel.matches(node.labels))
}

/// The peerings confd emits for this node, in its order: global, node-specific, reverse.
fn candidates<'a>(ctx: &Context<'a>, problems: &mut Vec<ConfdProblem>) -> Vec<Candidate<'a>> {
    let Some(me) = ctx.me() else {
        return Vec::new();
    };
    let mut bgp_peers: Vec<&Named<BGPPeerSpec>> = ctx.input.bgp_peers.iter().collect();
    bgp_peers.sort_by(|a, b| a.name.cmp(&b.name));

    let mut out: Vec<Candidate<'a>> = Vec::new();
    let mut keys: HashSet<(PeerKind, IpAddr, Option<u16>)> = HashSet::new();
    // An existing entry wins; a node-specific one never duplicates a global one.
    let mut emit = |c: Candidate<'a>| {
        if keys.contains(&(c.kind, c.ip, c.port))
            || keys.contains(&(PeerKind::Global, c.ip, c.port))
        {
            return;
        }
        keys.insert((c.kind, c.ip, c.port));
        out.push(c);
    };

    // Selectors that do not parse leave their BGPPeer out of every pass; report them once.
    let usable: Vec<&Named<BGPPeerSpec>> = bgp_peers
        .into_iter()
        .filter(|res| {
            let spec = &res.spec;
            let mut ok = true;
            for (field, value) in [
                ("nodeSelector", &spec.node_selector),
                ("peerSelector", &spec.peer_selector),
            ] {
                if !value.is_empty() && selector(res, field, value, problems).is_none() {
                    ok = false;
                }
            }
            ok
        })
        .collect();

    for res in usable.iter().filter(|r| r.spec.is_global()) {
        for c in remote_side(ctx, res, PeerKind::Global, problems) {
            emit(c);
        }
    }
    for res in usable.iter().filter(|r| !r.spec.is_global()) {
        if applies_to(res, me, problems) == Some(true) {
            for c in remote_side(ctx, res, PeerKind::NodeSpecific, problems) {
                emit(c);
            }
        }
    }

    // Reverse peerings: when this node is the remote side of a BGPPeer (picked by its
    // peerSelector, or at its peerIP with its AS), it peers back with the nodes on the local
    // side, so that both ends of a peering between Calico nodes are configured.
    let mut scratch = Vec::new();
    for res in &usable {
        let spec = &res.spec;
        let (is_remote, v4, v6) = if !spec.peer_selector.is_empty() {
            let Ok(sel) = Selector::parse(&spec.peer_selector) else {
                continue;
            };
            (sel.matches(me.labels), true, true)
        } else if let Some((ip, port)) = spec.peer_address() {
            let here =
                nodes_at(ctx, ip, spec.as_number.unwrap_or(0), port).any(|n| n.name == me.name);
            (here, ip.is_ipv4(), ip.is_ipv6())
        } else {
            continue;
        };
        if !is_remote {
            continue;
        }
        for node in &ctx.nodes {
            let local_side = if spec.is_global() {
                Some(true)
            } else {
                applies_to(res, node, &mut scratch)
            };
            if local_side == Some(true) {
                for c in node_as_peers(node, v4, v6, PeerKind::NodeSpecific, res) {
                    emit(c);
                }
            }
        }
    }
    out
}

/// BIRD's protocol for one candidate, as the speaker's settings.
fn build(
    ctx: &Context<'_>,
    c: &Candidate<'_>,
    secrets: SecretReader<'_>,
    problems: &mut Vec<ConfdProblem>,
) -> Option<DesiredPeer> {
    let spec = &c.res.spec;
    let mut problem = |field: &str, message: String| {
        problems.push(ConfdProblem::new("BGPPeer", &c.res.name, field, message));
    };
    let Some(ours) = ctx.my_ip_like(c.ip) else {
        if !c.from_selector {
            problem(
                "spec.peerIP",
                format!(
                    "{} is IPv6 but this node has no IPv6 address: the peering is left out",
                    c.ip
                ),
            );
        }
        return None;
    };
    // Never peer with ourselves (a selector that picks this node, or our own address).
    if c.ip == ours {
        return None;
    }
    let name = protocol_name(c.kind, c.ip, c.port);
    if c.remote_as == 0 {
        problem(
            "spec.asNumber",
            format!(
                "{name}: AS 0 is not a valid peer AS (asNumber is required with peerIP); the peering is left out"
            ),
        );
        return None;
    }
    let local_as = ctx.local_as();
    if let Some(l) = spec.local_as_number.filter(|l| *l != local_as) {
        problem(
            "spec.localASNumber",
            format!(
                "{name}: the speaker speaks for one AS ({local_as}), not {l}: the peering is left out"
            ),
        );
        return None;
    }

    let mut s = PeerSettings::new(c.ip, c.remote_as);
    s.port = c.port.unwrap_or(179);
    s.password = match password(spec.password.as_ref(), secrets) {
        Ok(p) => p,
        Err(e) => {
            problem(
                "spec.password.secretKeyRef",
                format!("{name}: {e}; the peering is left out"),
            );
            return None;
        }
    };
    if spec.source_address.unwrap_or_default() == SourceAddress::UseNodeIP {
        s.local_address = Some(ours);
    }
    if let Some(t) = &spec.max_restart_time {
        match seconds(t, MAX_RESTART_TIME) {
            Ok(secs) => s.graceful_restart_time = Some(secs as u16),
            Err(e) => {
                problem(
                    "spec.maxRestartTime",
                    format!("{e}; the peering is left out"),
                );
                return None;
            }
        }
    }
    if let Some(t) = &spec.keepalive_time {
        match seconds(t, u64::from(u16::MAX)) {
            Ok(secs) if secs > 0 => s.keepalive = Some(secs as u16),
            Ok(_) => {
                problem(
                    "spec.keepaliveTime",
                    format!("{t} rounds to 0 s; the peering is left out"),
                );
                return None;
            }
            Err(e) => {
                problem(
                    "spec.keepaliveTime",
                    format!("{e}; the peering is left out"),
                );
                return None;
            }
        }
    }
    let ibgp = c.remote_as == local_as;
    s.next_hop = match spec.next_hop_mode {
        Some(NextHopMode::SelfMode) => SpeakerNextHop::OurAddress,
        Some(NextHopMode::Keep) => SpeakerNextHop::Keep,
        // The deprecated flag only ever applied to eBGP peers.
        _ if spec.keep_original_next_hop && !ibgp => SpeakerNextHop::Keep,
        _ => SpeakerNextHop::Auto,
    };
    // A route reflector takes same-AS peers outside its cluster as clients.
    if let Some(ours) = ctx.cluster_id() {
        s.rr_client = ibgp && c.rr_cluster_id != Some(ours);
    }
    s.passive = c.kind == PeerKind::Global && c.calico_node && we_wait(c.ip, ours);
    s.multihop = Some(MULTIHOP_TTL);
    if let Some(hops) = spec.ttl_security.filter(|h| *h > 0) {
        // GTSM: our packets leave with TTL 255, so a peer checking them accepts them; the
        // speaker does not check the TTL of what it receives.
        s.multihop = Some(GTSM_TTL);
        problem(
            "spec.ttlSecurity",
            format!(
                "{name}: ttlSecurity {hops}: packets are sent with TTL 255 but the TTL of received packets is not checked"
            ),
        );
    }
    let (import, export) = peer_filters(
        &spec.filters,
        &c.res.name,
        ibgp,
        ctx.input.bgp_filters,
        problems,
    );
    s.import = import;
    s.export = export;

    let mut problem = |field: &str, message: String| {
        problems.push(ConfdProblem::new("BGPPeer", &c.res.name, field, message));
    };
    let reachable_by = if spec.reachable_by.is_empty() {
        None
    } else {
        match spec.reachable_by.parse::<IpAddr>() {
            Ok(gw) if gw.is_ipv4() == c.ip.is_ipv4() => Some(gw),
            _ => {
                problem(
                    "spec.reachableBy",
                    format!(
                        "{:?} is not an address of the peer's family: the peering is left out",
                        spec.reachable_by
                    ),
                );
                return None;
            }
        }
    };
    // BIRD's `allow local as N`: rendered only for a positive number.
    s.allow_local_as = spec
        .num_allowed_local_as_numbers
        .filter(|n| *n > 0)
        .map_or(0, |n| n.unsigned_abs());
    Some(DesiredPeer {
        name,
        kind: c.kind,
        settings: s,
        source: Some(c.res.name.clone()),
        reachable_by,
    })
}
