//! BGPFilter resources as the speaker's import and export [`Filter`]s.
//!
//! Calico turns a peer's `filters` into BIRD functions called in order, the first matching rule
//! deciding; with no match a route is imported, and exported if Calico's own export rules allow
//! it. The speaker's filters are ordered CIDR rules (Equal, In, NotIn; Accept or Reject) whose
//! default is to let the route through, so:
//!
//! - the v4 and v6 lists of every filter are concatenated in order (a rule only ever matches its
//!   own family, so their relative order does not matter);
//! - a rule without `cidr` matches every route of its family (`0.0.0.0/0` or `::/0`, In);
//! - `peerType` is decided here, per peer: a rule for the other type is dropped;
//! - `NotEqual` is rewritten into Equal and In rules with the same outcome;
//! - conditions the speaker cannot test (`prefixLength` ranges, `source`, `interface`,
//!   `communities`, `asPathPrefix`, `priority`) are approximated towards fewer routes: an
//!   Accept rule is dropped (or narrowed), a Reject rule is widened to its CIDR (or to the whole
//!   family); each such rule, and `operations` that cannot be applied, is reported.
//!
//! Dropping an Accept and widening a Reject can only turn an accepted route into a rejected
//! one, never the reverse, since the default is to accept.

use calico_api::spec::bgpfilter::{
    BGPFilterRule, BGPFilterSpec, FilterAction, MatchOperator, PeerType,
};
use calico_bgp::policy::{self, Filter, FilterRule, RuleAction};
use ipnet::{IpNet, Ipv4Net, Ipv6Net};

use crate::{ConfdProblem, Named};

/// A CIDR test, with the NotEqual the speaker lacks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Op {
    Equal,
    NotEqual,
    In,
    NotIn,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Rule {
    cidr: IpNet,
    op: Op,
    action: RuleAction,
}

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
    (lower(import), lower(export))
}

/// One rule, or `None` when it can never match for this peer (or is invalid).
fn convert(
    rule: &BGPFilterRule,
    v6: bool,
    ibgp: bool,
    filter: &str,
    path: &str,
    problems: &mut Vec<ConfdProblem>,
) -> Option<Rule> {
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
    let whole = Rule {
        cidr: family(v6),
        op: Op::In,
        action,
    };

    // The CIDR test: exact, or the narrower and wider tests around it.
    let (mut narrow, wide, mut exact) = if rule.cidr.is_empty() {
        if rule.match_operator.is_some() {
            problem(
                ".cidr",
                "matchOperator without cidr: the rule is left out".into(),
            );
            return None;
        }
        (Some(whole), whole, true)
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
        let op = match op {
            MatchOperator::Equal => Op::Equal,
            MatchOperator::NotEqual => Op::NotEqual,
            MatchOperator::In => Op::In,
            MatchOperator::NotIn => Op::NotIn,
        };
        let rule_of = |op| Rule { cidr, op, action };
        // Calico's range: at least the CIDR's own length, at most the family's.
        let max_len = if v6 { 128 } else { 32 };
        let own = i32::from(cidr.prefix_len());
        let (lo, hi) = rule.prefix_length.as_ref().map_or((own, max_len), |p| {
            (
                p.min.map_or(own, |m| m.max(own)),
                p.max.map_or(max_len, |m| m.min(max_len)),
            )
        });
        if (lo, hi) == (own, max_len) {
            (Some(rule_of(op)), rule_of(op), true)
        } else {
            match op {
                // Only the CIDR itself lies in [own, own].
                Op::In | Op::Equal if lo <= own && hi == own => {
                    (Some(rule_of(Op::Equal)), rule_of(Op::Equal), true)
                }
                Op::In => (None, rule_of(Op::In), false),
                Op::Equal => (
                    (lo..=hi).contains(&own).then(|| rule_of(Op::Equal)),
                    rule_of(Op::In),
                    false,
                ),
                Op::NotIn => (Some(rule_of(Op::NotIn)), whole, false),
                Op::NotEqual => (None, whole, false),
            }
        }
    };
    if !exact {
        let what = "a prefixLength range";
        problem(
            ".prefixLength",
            approximation(what, accept, narrow.is_some()),
        );
    }

    // Tests on a route's origin or attributes, which the speaker cannot make.
    let untestable: Vec<&str> = [
        (rule.source.is_some(), "source"),
        (!rule.interface.is_empty(), "interface"),
        (rule.communities.is_some(), "communities"),
        (!rule.as_path_prefix.is_empty(), "asPathPrefix"),
        (rule.priority.is_some(), "priority"),
    ]
    .into_iter()
    .filter_map(|(set, name)| set.then_some(name))
    .collect();
    if !untestable.is_empty() {
        exact = false;
        narrow = None;
        problem("", approximation(&untestable.join(", "), accept, false));
    }
    if !rule.operations.is_empty() {
        problem(
            ".operations",
            "the speaker cannot change a route's attributes: the rule accepts without its operations"
                .into(),
        );
    }
    if exact || !accept {
        Some(if accept { narrow.unwrap_or(wide) } else { wide })
    } else {
        narrow
    }
}

fn approximation(what: &str, accept: bool, narrowed: bool) -> String {
    let outcome = match (accept, narrowed) {
        (true, true) => "it accepts only the routes it certainly matches",
        (true, false) => "it is left out (such routes go on to the next rule)",
        (false, _) => "it rejects every route of its CIDR (or family) instead",
    };
    format!("calico-rs's speaker cannot test {what}: {outcome}")
}

/// The speaker's rules for `rules`, NotEqual rewritten: `NotEqual c → A` followed by rules R
/// acts as `Equal c → (what R does with c)` then `In <family> → A`. R is lowered first, so "what R
/// does" is one evaluation; with no rule of R matching, the route passes, i.e. Accept.
fn lower(rules: Vec<Rule>) -> Filter {
    let mut out: Vec<FilterRule> = Vec::new();
    for rule in rules.into_iter().rev() {
        let speaker = |cidr, operator, action| FilterRule {
            cidr,
            operator,
            action,
        };
        let mut head = match rule.op {
            Op::Equal => vec![speaker(
                rule.cidr,
                policy::MatchOperator::Equal,
                rule.action,
            )],
            Op::In => vec![speaker(rule.cidr, policy::MatchOperator::In, rule.action)],
            Op::NotIn => vec![speaker(
                rule.cidr,
                policy::MatchOperator::NotIn,
                rule.action,
            )],
            Op::NotEqual => {
                let rest = Filter { rules: out.clone() };
                let for_cidr = rest.evaluate(&rule.cidr).unwrap_or(RuleAction::Accept);
                let all = family(matches!(rule.cidr, IpNet::V6(_)));
                vec![
                    speaker(rule.cidr, policy::MatchOperator::Equal, for_cidr),
                    speaker(all, policy::MatchOperator::In, rule.action),
                ]
            }
        };
        head.append(&mut out);
        out = head;
    }
    Filter { rules: out }
}
