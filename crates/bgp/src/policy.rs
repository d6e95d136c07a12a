//! Route filters of the kind Calico's `BGPFilter` expresses: ordered rules, the first whose
//! conditions all hold deciding (Accept or Reject), an Accept rule changing the route as its
//! operations say. IPv4 rules only see IPv4 prefixes and IPv6 rules IPv6 ones.
//!
//! The conditions are those Calico renders into BIRD's filter functions: the prefix against a
//! CIDR (Equal, NotEqual, In, NotIn), with a range of prefix lengths (BIRD's
//! `net ~ [ cidr{min,max} ]`); the route's source (learnt from a BGP peer, Calico's
//! `source: RemotePeers`, BIRD's `source ~ [ RTS_BGP ]`); a community it carries; and the AS
//! numbers its AS_PATH begins with (`bgp_path ~ [= a b * =]`). The operations add a community
//! and prepend AS numbers to the AS_PATH.

use ipnet::IpNet;

use crate::wire::{LargeCommunity, PathAttributes};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MatchOperator {
    /// The prefix is exactly the CIDR.
    Equal,
    /// The prefix is not exactly the CIDR.
    NotEqual,
    /// The prefix lies within the CIDR (the CIDR itself included).
    In,
    /// The prefix does not lie within the CIDR.
    NotIn,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RuleAction {
    Accept,
    Reject,
}

/// A standard (RFC 1997, `aa << 16 | nn`) or large (RFC 8092) community.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Community {
    Standard(u32),
    Large(LargeCommunity),
}

/// A change an Accept rule makes to the route it accepts.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Operation {
    /// Adds the community (unless the route has it already).
    AddCommunity(Community),
    /// Puts these AS numbers, in this order, in front of the AS_PATH.
    PrependAsPath(Vec<u32>),
}

/// The part of a route a rule looks at.
#[derive(Clone, Copy, Debug)]
pub struct RouteView<'a> {
    pub prefix: &'a IpNet,
    /// Learnt from a BGP peer (not originated by this speaker).
    pub from_peer: bool,
    pub attrs: &'a PathAttributes,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FilterRule {
    /// The CIDR the prefix is tested against; its family is the rule's (a rule of Calico's
    /// without a CIDR has the whole family, `0.0.0.0/0` or `::/0`, with In).
    pub cidr: IpNet,
    pub operator: MatchOperator,
    /// The lengths (inclusive) a prefix must have to count as matching the CIDR; `None`: any.
    /// With In and NotIn the prefix must lie within the CIDR and have such a length (NotIn
    /// being the opposite); with Equal and NotEqual the CIDR's own length must be in range.
    pub prefix_length: Option<(u8, u8)>,
    /// Only routes learnt from a BGP peer match.
    pub from_peers_only: bool,
    /// Only routes carrying this community match.
    pub community: Option<Community>,
    /// Only routes whose AS_PATH begins with these AS numbers match (none: any path).
    pub as_path_prefix: Vec<u32>,
    pub action: RuleAction,
    /// Applied, in order, to a route this rule accepts.
    pub operations: Vec<Operation>,
}

impl FilterRule {
    /// A rule testing only the prefix against `cidr`.
    pub fn new(cidr: IpNet, operator: MatchOperator, action: RuleAction) -> FilterRule {
        FilterRule {
            cidr,
            operator,
            prefix_length: None,
            from_peers_only: false,
            community: None,
            as_path_prefix: Vec::new(),
            action,
            operations: Vec::new(),
        }
    }

    /// Whether the prefix test alone holds for `prefix`.
    pub fn matches_prefix(&self, prefix: &IpNet) -> bool {
        let same_family = matches!(
            (self.cidr, prefix),
            (IpNet::V4(_), IpNet::V4(_)) | (IpNet::V6(_), IpNet::V6(_))
        );
        if !same_family {
            return false;
        }
        let in_range = |len: u8| {
            self.prefix_length
                .is_none_or(|(lo, hi)| (lo..=hi).contains(&len))
        };
        let equal = self.cidr.trunc() == prefix.trunc() && in_range(self.cidr.prefix_len());
        let within = self.cidr.contains(prefix) && in_range(prefix.prefix_len());
        match self.operator {
            MatchOperator::Equal => equal,
            MatchOperator::NotEqual => !equal,
            MatchOperator::In => within,
            MatchOperator::NotIn => !within,
        }
    }

    /// Whether every condition holds for `route`.
    pub fn matches(&self, route: &RouteView<'_>) -> bool {
        self.matches_prefix(route.prefix)
            && (!self.from_peers_only || route.from_peer)
            && self.community.is_none_or(|c| has_community(route.attrs, c))
            && (self.as_path_prefix.is_empty()
                || path_begins_with(route.attrs, &self.as_path_prefix))
    }
}

fn has_community(attrs: &PathAttributes, c: Community) -> bool {
    match c {
        Community::Standard(v) => attrs.communities.contains(&v),
        Community::Large(l) => attrs.large_communities.contains(&l),
    }
}

/// The AS_PATH's AS numbers, in order, begin with `prefix`.
fn path_begins_with(attrs: &PathAttributes, prefix: &[u32]) -> bool {
    let Some(path) = &attrs.as_path else {
        return false;
    };
    let mut asns = path.segments.iter().flat_map(|s| s.asns.iter().copied());
    prefix.iter().all(|want| asns.next() == Some(*want))
}

/// Applies `operations`, in order, to `attrs`.
pub fn apply(operations: &[Operation], attrs: &mut PathAttributes) {
    for op in operations {
        match op {
            Operation::AddCommunity(Community::Standard(v)) => {
                if !attrs.communities.contains(v) {
                    attrs.communities.push(*v);
                }
            }
            Operation::AddCommunity(Community::Large(l)) => {
                if !attrs.large_communities.contains(l) {
                    attrs.large_communities.push(*l);
                }
            }
            Operation::PrependAsPath(asns) => {
                let path = attrs.as_path.get_or_insert_with(Default::default);
                for asn in asns.iter().rev() {
                    path.prepend(*asn);
                }
            }
        }
    }
}

/// What a filter does with a route.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict<'a> {
    /// A rule accepted it; these operations change it.
    Accept(&'a [Operation]),
    Reject,
    /// No rule matched.
    NoMatch,
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Filter {
    pub rules: Vec<FilterRule>,
}

impl Filter {
    /// What the first rule matching `route` does.
    pub fn decide(&self, route: &RouteView<'_>) -> Verdict<'_> {
        match self.rules.iter().find(|r| r.matches(route)) {
            Some(r) if r.action == RuleAction::Accept => Verdict::Accept(&r.operations),
            Some(_) => Verdict::Reject,
            None => Verdict::NoMatch,
        }
    }

    /// `route`'s attributes after this filter, or `None` when it rejects the route (a route
    /// no rule matches passes unchanged). Borrows them when no operation changes them.
    pub fn filter<'a>(
        &self,
        route: &RouteView<'a>,
    ) -> Option<std::borrow::Cow<'a, PathAttributes>> {
        match self.decide(route) {
            Verdict::Reject => None,
            Verdict::Accept(ops) if !ops.is_empty() => {
                let mut attrs = route.attrs.clone();
                apply(ops, &mut attrs);
                Some(std::borrow::Cow::Owned(attrs))
            }
            Verdict::Accept(_) | Verdict::NoMatch => Some(std::borrow::Cow::Borrowed(route.attrs)),
        }
    }

    /// Whether a route to `prefix` learnt from a peer, with no attributes, passes (`default`
    /// deciding when no rule matches): the prefix tests alone, for rules that have no others.
    pub fn accepts(&self, prefix: &IpNet, default: bool) -> bool {
        let attrs = PathAttributes::default();
        let route = RouteView {
            prefix,
            from_peer: true,
            attrs: &attrs,
        };
        match self.decide(&route) {
            Verdict::Accept(_) => true,
            Verdict::Reject => false,
            Verdict::NoMatch => default,
        }
    }

    /// Whether a rule may change what it accepts (so the result of [`Filter::filter`] must be
    /// looked at, not only whether there is one).
    pub fn has_operations(&self) -> bool {
        self.rules.iter().any(|r| !r.operations.is_empty())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::{AsPath, AsSegment, SegmentKind};

    fn rule(cidr: &str, operator: MatchOperator, action: RuleAction) -> FilterRule {
        FilterRule::new(cidr.parse().unwrap(), operator, action)
    }

    fn net(s: &str) -> IpNet {
        s.parse().unwrap()
    }

    /// A route learnt from a peer (or originated) with `attrs`.
    fn route<'a>(prefix: &'a IpNet, from_peer: bool, attrs: &'a PathAttributes) -> RouteView<'a> {
        RouteView {
            prefix,
            from_peer,
            attrs,
        }
    }

    fn matches(r: &FilterRule, prefix: &str) -> bool {
        r.matches(&route(&net(prefix), true, &PathAttributes::default()))
    }

    fn large(a: u32, b: u32, c: u32) -> LargeCommunity {
        LargeCommunity {
            global_admin: a,
            local_data_1: b,
            local_data_2: c,
        }
    }

    #[test]
    fn operators() {
        let eq = rule("198.18.0.0/16", MatchOperator::Equal, RuleAction::Accept);
        assert!(matches(&eq, "198.18.0.0/16"));
        assert!(!matches(&eq, "198.18.1.0/24"));
        assert!(!matches(&eq, "198.18.0.0/15"));
        let ne = rule("198.18.0.0/16", MatchOperator::NotEqual, RuleAction::Accept);
        assert!(!matches(&ne, "198.18.0.0/16"));
        assert!(matches(&ne, "198.18.1.0/24"));
        assert!(matches(&ne, "198.18.0.0/15"));
        let within = rule("198.18.0.0/16", MatchOperator::In, RuleAction::Accept);
        assert!(matches(&within, "198.18.0.0/16"));
        assert!(matches(&within, "198.18.1.0/24"));
        assert!(!matches(&within, "198.19.1.0/24"));
        assert!(
            !matches(&within, "198.18.0.0/15"),
            "a wider prefix is not in"
        );
        let not_in = rule("198.18.0.0/16", MatchOperator::NotIn, RuleAction::Reject);
        assert!(matches(&not_in, "198.19.1.0/24"));
        assert!(!matches(&not_in, "198.18.7.0/24"));
    }

    #[test]
    fn families_do_not_mix() {
        let v4_not_in = rule("198.18.0.0/16", MatchOperator::NotIn, RuleAction::Reject);
        assert!(!matches(&v4_not_in, "2001:db8::/64"));
        let v4_not_equal = rule("198.18.0.0/16", MatchOperator::NotEqual, RuleAction::Reject);
        assert!(!matches(&v4_not_equal, "2001:db8::/64"));
        let v6_in = rule("2001:db8::/32", MatchOperator::In, RuleAction::Accept);
        assert!(matches(&v6_in, "2001:db8:1::/48"));
        assert!(!matches(&v6_in, "198.18.0.0/24"));
    }

    #[test]
    fn prefix_length_ranges() {
        // BIRD's `net ~ [ 198.18.0.0/16{24,26} ]`.
        let r = FilterRule {
            prefix_length: Some((24, 26)),
            ..rule("198.18.0.0/16", MatchOperator::In, RuleAction::Accept)
        };
        for (prefix, inside) in [
            ("198.18.0.0/16", false),
            ("198.18.0.0/23", false),
            ("198.18.1.0/24", true),
            ("198.18.1.64/26", true),
            ("198.18.1.64/27", false),
            ("198.18.1.1/32", false),
            ("198.19.1.0/24", false),
        ] {
            assert_eq!(matches(&r, prefix), inside, "In {prefix}");
            let not_in = FilterRule {
                operator: MatchOperator::NotIn,
                ..r.clone()
            };
            assert_eq!(matches(&not_in, prefix), !inside, "NotIn {prefix}");
        }
        // Equal: the CIDR itself, if its own length is in range.
        let eq = FilterRule {
            prefix_length: Some((16, 24)),
            ..rule("198.18.0.0/16", MatchOperator::Equal, RuleAction::Accept)
        };
        assert!(matches(&eq, "198.18.0.0/16"));
        assert!(!matches(&eq, "198.18.1.0/24"));
        let out_of_range = FilterRule {
            prefix_length: Some((20, 24)),
            ..eq.clone()
        };
        assert!(!matches(&out_of_range, "198.18.0.0/16"));
        let ne = FilterRule {
            operator: MatchOperator::NotEqual,
            ..out_of_range
        };
        assert!(matches(&ne, "198.18.0.0/16"));
    }

    #[test]
    fn source_remote_peers() {
        let r = FilterRule {
            from_peers_only: true,
            ..rule("198.18.0.0/15", MatchOperator::In, RuleAction::Reject)
        };
        let attrs = PathAttributes::default();
        let p = net("198.18.1.0/24");
        assert!(r.matches(&route(&p, true, &attrs)), "learnt from a peer");
        assert!(!r.matches(&route(&p, false, &attrs)), "originated here");
    }

    #[test]
    fn communities() {
        let standard = FilterRule {
            community: Some(Community::Standard(65001 << 16 | 100)),
            ..rule("0.0.0.0/0", MatchOperator::In, RuleAction::Reject)
        };
        let big = FilterRule {
            community: Some(Community::Large(large(65001, 7, 9))),
            ..standard.clone()
        };
        let p = net("198.18.1.0/24");
        let none = PathAttributes::default();
        let with = PathAttributes {
            communities: vec![65000 << 16 | 1, 65001 << 16 | 100],
            large_communities: vec![large(65001, 7, 9)],
            ..PathAttributes::default()
        };
        let other = PathAttributes {
            communities: vec![65001 << 16 | 101],
            large_communities: vec![large(65001, 7, 8)],
            ..PathAttributes::default()
        };
        for r in [&standard, &big] {
            assert!(r.matches(&route(&p, true, &with)));
            assert!(!r.matches(&route(&p, true, &none)));
            assert!(!r.matches(&route(&p, true, &other)));
        }
    }

    #[test]
    fn as_path_prefix() {
        let r = FilterRule {
            as_path_prefix: vec![65001, 65002],
            ..rule("0.0.0.0/0", MatchOperator::In, RuleAction::Reject)
        };
        let p = net("198.18.1.0/24");
        let with_path = |asns: &[u32]| PathAttributes {
            as_path: Some(AsPath::sequence(asns.to_vec())),
            ..PathAttributes::default()
        };
        for (asns, begins) in [
            (&[65001, 65002][..], true),
            (&[65001, 65002, 65003][..], true),
            (&[65001][..], false),
            (&[65002, 65001, 65002][..], false),
            (&[65001, 65003, 65002][..], false),
            (&[][..], false),
        ] {
            assert_eq!(
                r.matches(&route(&p, true, &with_path(asns))),
                begins,
                "{asns:?}"
            );
        }
        assert!(
            !r.matches(&route(&p, false, &PathAttributes::default())),
            "no AS_PATH"
        );
        // Across segments.
        let split = PathAttributes {
            as_path: Some(AsPath {
                segments: vec![
                    AsSegment {
                        kind: SegmentKind::Sequence,
                        asns: vec![65001],
                    },
                    AsSegment {
                        kind: SegmentKind::Sequence,
                        asns: vec![65002, 65009],
                    },
                ],
            }),
            ..PathAttributes::default()
        };
        assert!(r.matches(&route(&p, true, &split)));
    }

    #[test]
    fn every_condition_must_hold() {
        let r = FilterRule {
            prefix_length: Some((24, 24)),
            from_peers_only: true,
            community: Some(Community::Standard(7)),
            as_path_prefix: vec![65001],
            ..rule("198.18.0.0/16", MatchOperator::In, RuleAction::Accept)
        };
        let p = net("198.18.1.0/24");
        let good = PathAttributes {
            as_path: Some(AsPath::sequence([65001])),
            communities: vec![7],
            ..PathAttributes::default()
        };
        assert!(r.matches(&route(&p, true, &good)));
        assert!(!r.matches(&route(&net("198.18.1.0/25"), true, &good)));
        assert!(!r.matches(&route(&p, false, &good)));
        let no_community = PathAttributes {
            communities: vec![],
            ..good.clone()
        };
        assert!(!r.matches(&route(&p, true, &no_community)));
        let other_path = PathAttributes {
            as_path: Some(AsPath::sequence([65002])),
            ..good.clone()
        };
        assert!(!r.matches(&route(&p, true, &other_path)));
    }

    #[test]
    fn accepted_routes_are_changed_by_the_rules_operations() {
        let f = Filter {
            rules: vec![
                FilterRule {
                    operations: vec![
                        Operation::AddCommunity(Community::Standard(65001 << 16 | 100)),
                        Operation::AddCommunity(Community::Large(large(65001, 7, 9))),
                        Operation::PrependAsPath(vec![65010, 65011]),
                        // Already there: not added twice.
                        Operation::AddCommunity(Community::Standard(65001 << 16 | 100)),
                    ],
                    ..rule("198.18.0.0/16", MatchOperator::In, RuleAction::Accept)
                },
                rule("0.0.0.0/0", MatchOperator::In, RuleAction::Reject),
            ],
        };
        let p = net("198.18.1.0/24");
        let attrs = PathAttributes {
            as_path: Some(AsPath::sequence([65001])),
            communities: vec![1],
            ..PathAttributes::default()
        };
        let out = f.filter(&route(&p, true, &attrs)).expect("accepted");
        assert_eq!(out.communities, [1, 65001 << 16 | 100]);
        assert_eq!(out.large_communities, [large(65001, 7, 9)]);
        assert_eq!(
            out.as_path,
            Some(AsPath::sequence([65010, 65011, 65001])),
            "prepended in the order given"
        );
        // A route without an AS_PATH gets one.
        let bare = PathAttributes::default();
        let out = f.filter(&route(&p, false, &bare)).expect("accepted");
        assert_eq!(out.as_path, Some(AsPath::sequence([65010, 65011])));
        // Rejected, and passed unchanged when no rule matches.
        assert_eq!(f.filter(&route(&net("10.0.0.0/8"), true, &attrs)), None);
        let other = Filter::default();
        let out = other
            .filter(&route(&p, true, &attrs))
            .expect("no rule: passes");
        assert!(matches!(out, std::borrow::Cow::Borrowed(_)));
        assert!(f.has_operations() && !other.has_operations());
    }

    #[test]
    fn first_match_decides_and_default_applies_otherwise() {
        let f = Filter {
            rules: vec![
                rule("198.18.5.0/24", MatchOperator::Equal, RuleAction::Reject),
                rule("198.18.0.0/16", MatchOperator::In, RuleAction::Accept),
            ],
        };
        assert!(!f.accepts(&net("198.18.5.0/24"), true));
        assert!(f.accepts(&net("198.18.6.0/24"), false));
        assert!(f.accepts(&net("10.0.0.0/8"), true));
        assert!(!f.accepts(&net("10.0.0.0/8"), false));
        let attrs = PathAttributes::default();
        assert_eq!(
            Filter::default().decide(&route(&net("10.0.0.0/8"), true, &attrs)),
            Verdict::NoMatch
        );
    }
}
