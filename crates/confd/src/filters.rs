//! BGPFilter resources as the speaker's import and export [`Filter`]s.
//!
//! Calico turns a peer's `filters` into BIRD functions called in order, the first matching rule
//! deciding; with no match a route is imported, and exported if Calico's own export rules allow
//! it. The speaker's filters are ordered rules of the same kind whose default is to let the
//! route through, so:
//!
//! - the v4 and v6 lists of every filter are concatenated in order (a rule only ever matches its
//!   own family, so their relative order does not matter);
//! - a rule without `cidr` matches every route of its family (`0.0.0.0/0` or `::/0`, In);
//! - `peerType` is decided here, per peer: a rule for the other type is dropped;
//! - `cidr` with `matchOperator` and `prefixLength` (the range as Calico renders it: at least
//!   the CIDR's own length, at most the family's), `source: RemotePeers`, `communities` and
//!   `asPathPrefix` are conditions the speaker tests exactly, and the `addCommunity` and
//!   `prependASPath` operations are applied as BIRD applies them; `prefixLength` with Equal or
//!   NotEqual becomes what BIRD makes of Calico's rendering (`net = [ set ]`, never true: the
//!   rule never matches, or with NotEqual its CIDR test always holds), reported;
//! - `priority` tests the kernel metric (`krt_metric`), which none of the speaker's routes has
//!   (`setPriority`, which would give them one, is not applied and is reported): such a rule
//!   never matches and is left out, reported;
//! - `interface` tests the interface a route leaves by: the speaker's own routes have none, as
//!   in BIRD, but it does not know that of routes learnt from peers. That is approximated towards
//!   fewer routes: an Accept rule with one is left out, a Reject rule rejects every learnt route
//!   its other conditions match; reported.
//!
//! Leaving an Accept out and widening a Reject can only turn an accepted route into a rejected
//! one, never the reverse, since the default is to accept.

use calico_api::spec::bgpfilter::{
    BGPFilterRule, BGPFilterSpec, FilterAction, MatchOperator, PeerType,
};
use calico_bgp::policy::{Filter, FilterRule, Operation, RuleAction};
use ipnet::{IpNet, Ipv4Net, Ipv6Net};

use crate::prefixes::parse_community;
use crate::{ConfdProblem, Named};

/// The whole family of `v6`'s addresses.
fn family(v6: bool) -> IpNet {
    if v6 {
        IpNet::V6(Ipv6Net::default())
    } else {
        IpNet::V4(Ipv4Net::default())
    }
}

/// A BGPPeer's `filters` as (import, export). `ibgp`: the peer is in our AS.
pub(crate) fn peer_filters(
    names: &[String],
    peer: &str,
    ibgp: bool,
    filters: &[Named<BGPFilterSpec>],
    problems: &mut Vec<ConfdProblem>,
) -> (Filter, Filter) {
    let mut import = Vec::new();
    let mut export = Vec::new();
    for (i, name) in names.iter().enumerate() {
        let Some(filter) = filters.iter().find(|f| &f.name == name) else {
            problems.push(ConfdProblem::new(
                "BGPPeer",
                peer,
                format!("spec.filters[{i}]"),
                format!("no BGPFilter {name:?}: the peering goes ahead without it"),
            ));
            continue;
        };
        let spec = &filter.spec;
        for (field, rules, v6, is_import) in [
            ("importV4", &spec.import_v4, false, true),
            ("importV6", &spec.import_v6, true, true),
            ("exportV4", &spec.export_v4, false, false),
            ("exportV6", &spec.export_v6, true, false),
        ] {
            let out = if is_import { &mut import } else { &mut export };
            for (j, rule) in rules.iter().enumerate() {
                let path = format!("spec.{field}[{j}]");
                if let Some(r) = convert(rule, v6, ibgp, &filter.name, &path, problems) {
                    out.push(r);
                }
            }
        }
    }
    (Filter { rules: import }, Filter { rules: export })
}

/// One rule, or `None` when it can never match for this peer, is invalid, or is an Accept
/// rule the speaker cannot test.
fn convert(
    rule: &BGPFilterRule,
    v6: bool,
    ibgp: bool,
    filter: &str,
    path: &str,
    problems: &mut Vec<ConfdProblem>,
) -> Option<FilterRule> {
    let mut problem = |field: &str, message: String| {
        problems.push(ConfdProblem::new(
            "BGPFilter",
            filter,
            format!("{path}{field}"),
            message,
        ));
    };
    match rule.peer_type {
        Some(PeerType::IBGP) if !ibgp => return None,
        Some(PeerType::EBGP) if ibgp => return None,
        _ => {}
    }
    let action = match rule.action {
        FilterAction::Accept => RuleAction::Accept,
        FilterAction::Reject => RuleAction::Reject,
    };
    let accept = action == RuleAction::Accept;
    let max_len: u8 = if v6 { 128 } else { 32 };

    let mut out = if rule.cidr.is_empty() {
        if rule.match_operator.is_some() {
            problem(
                ".cidr",
                "matchOperator without cidr: the rule is left out".into(),
            );
            return None;
        }
        if rule.prefix_length.is_some() {
            // Calico renders the length range only as part of the CIDR test.
            problem(
                ".prefixLength",
                "prefixLength without cidr has no effect".into(),
            );
        }
        FilterRule::new(family(v6), calico_bgp::policy::MatchOperator::In, action)
    } else {
        let Ok(cidr) = rule.cidr.parse::<IpNet>() else {
            problem(
                ".cidr",
                format!("{:?} is not a CIDR: the rule is left out", rule.cidr),
            );
            return None;
        };
        if matches!(cidr, IpNet::V6(_)) != v6 {
            problem(
                ".cidr",
                format!(
                    "{cidr} is not an IPv{} CIDR: the rule is left out",
                    if v6 { 6 } else { 4 }
                ),
            );
            return None;
        }
        let cidr = cidr.trunc();
        let Some(op) = rule.match_operator else {
            problem(
                ".matchOperator",
                "cidr without matchOperator: the rule is left out".into(),
            );
            return None;
        };
        let operator = match op {
            MatchOperator::Equal => calico_bgp::policy::MatchOperator::Equal,
            MatchOperator::NotEqual => calico_bgp::policy::MatchOperator::NotEqual,
            MatchOperator::In => calico_bgp::policy::MatchOperator::In,
            MatchOperator::NotIn => calico_bgp::policy::MatchOperator::NotIn,
        };
        // Calico renders a length range as `net = [ cidr{min,max} ]` (or `!=`) with Equal and
        // NotEqual too: BIRD never finds a prefix equal to a prefix set, so the CIDR test always
        // fails (Equal) or always holds (NotEqual).
        if rule.prefix_length.is_some() && op == MatchOperator::Equal {
            problem(
                ".prefixLength",
                "with Equal, BIRD compares the route with a prefix set and never finds them equal: the rule never matches and is left out, as in Calico".into(),
            );
            return None;
        }
        if rule.prefix_length.is_some() && op == MatchOperator::NotEqual {
            problem(
                ".prefixLength",
                "with NotEqual, BIRD compares the route with a prefix set and never finds them equal: the CIDR test holds for every route of the family, as in Calico".into(),
            );
            FilterRule::new(family(v6), calico_bgp::policy::MatchOperator::In, action)
        } else {
            let mut r = FilterRule::new(cidr, operator, action);
            // Calico's range: at least the CIDR's own length, at most the family's.
            r.prefix_length = rule.prefix_length.as_ref().map(|p| {
                let own = cidr.prefix_len();
                let clamp =
                    |v: i32| u8::try_from(v.clamp(0, i32::from(max_len))).unwrap_or(max_len);
                (
                    p.min.map_or(own, |m| clamp(m).max(own)),
                    p.max.map_or(max_len, clamp),
                )
            });
            r
        }
    };

    out.from_peers_only = rule.source.is_some();
    if let Some(c) = &rule.communities {
        let Some(value) = c.values.first() else {
            problem(
                ".communities.values",
                "no community value: the rule is left out".into(),
            );
            return None;
        };
        if c.values.len() > 1 {
            problem(
                ".communities.values",
                "more than one value: only the first is tested, as Calico does".into(),
            );
        }
        let Some(community) = parse_community(value) else {
            problem(
                ".communities.values[0]",
                format!("{value:?} is not a community (aa:nn or aa:nn:mm): the rule is left out"),
            );
            return None;
        };
        out.community = Some(community);
    }
    out.as_path_prefix = rule.as_path_prefix.iter().map(|a| a.0).collect();

    for (i, op) in rule.operations.iter().enumerate() {
        let field = format!(".operations[{i}]");
        if let Some(add) = &op.add_community {
            match parse_community(&add.value) {
                Some(c) => out.operations.push(Operation::AddCommunity(c)),
                None => problem(
                    &format!("{field}.addCommunity.value"),
                    format!(
                        "{:?} is not a community (aa:nn or aa:nn:mm): the operation is left out",
                        add.value
                    ),
                ),
            }
        } else if let Some(prepend) = &op.prepend_as_path {
            out.operations.push(Operation::PrependAsPath(
                prepend.prefix.iter().map(|a| a.0).collect(),
            ));
        } else if op.set_priority.is_some() {
            problem(
                &format!("{field}.setPriority"),
                "calico-rs's speaker cannot set the kernel route metric: the operation is left out"
                    .into(),
            );
        }
    }
    if !accept {
        // Operations only take effect on routes the rule accepts.
        out.operations.clear();
    }

    // `priority` is BIRD's `krt_metric = N`: the routes the speaker handles (learnt by BGP,
    // or its own) carry no kernel metric, as in BIRD without a `setPriority`, so the test never
    // holds.
    if rule.priority.is_some() {
        problem(
            ".priority",
            "the speaker's routes carry no kernel metric (setPriority is not applied), so the rule never matches: it is left out".into(),
        );
        return None;
    }
    // `interface` is BIRD's `ifname ~ "glob"`, the interface a route leaves by: our own routes
    // have none (never matching, as in BIRD); for routes learnt from peers the speaker does
    // not know it.
    if !rule.interface.is_empty() {
        let outcome = if accept {
            "the rule is left out (such routes go on to the next rule)"
        } else {
            "the rule rejects every route learnt from a peer that its other conditions match"
        };
        problem(
            ".interface",
            format!(
                "calico-rs's speaker does not know the interface of routes learnt from peers: {outcome}"
            ),
        );
        if accept {
            return None;
        }
        out.from_peers_only = true;
    }
    Some(out)
}
