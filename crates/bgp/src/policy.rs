//! Route filters of the kind Calico's `BGPFilter` expresses: ordered rules matching a prefix
//! against a CIDR (Equal, In, NotIn) with Accept or Reject; the first matching rule decides.
//! IPv4 rules only see IPv4 prefixes and IPv6 rules IPv6 ones.

use ipnet::IpNet;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MatchOperator {
    /// The prefix is exactly the CIDR.
    Equal,
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

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FilterRule {
    pub cidr: IpNet,
    pub operator: MatchOperator,
    pub action: RuleAction,
}

impl FilterRule {
    pub fn matches(&self, prefix: &IpNet) -> bool {
        let same_family = matches!(
            (self.cidr, prefix),
            (IpNet::V4(_), IpNet::V4(_)) | (IpNet::V6(_), IpNet::V6(_))
        );
        if !same_family {
            return false;
        }
        match self.operator {
            MatchOperator::Equal => self.cidr.trunc() == prefix.trunc(),
            MatchOperator::In => self.cidr.contains(prefix),
            MatchOperator::NotIn => !self.cidr.contains(prefix),
        }
    }
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Filter {
    pub rules: Vec<FilterRule>,
}

impl Filter {
    /// The action of the first rule matching `prefix`, if any.
    pub fn evaluate(&self, prefix: &IpNet) -> Option<RuleAction> {
        self.rules
            .iter()
            .find(|r| r.matches(prefix))
            .map(|r| r.action)
    }

    /// Whether `prefix` passes, with `default` deciding when no rule matches.
    pub fn accepts(&self, prefix: &IpNet, default: bool) -> bool {
        match self.evaluate(prefix) {
            Some(RuleAction::Accept) => true,
            Some(RuleAction::Reject) => false,
            None => default,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(cidr: &str, operator: MatchOperator, action: RuleAction) -> FilterRule {
        FilterRule {
            cidr: cidr.parse().unwrap(),
            operator,
            action,
        }
    }

    fn net(s: &str) -> IpNet {
        s.parse().unwrap()
    }

    #[test]
    fn operators() {
        let eq = rule("198.18.0.0/16", MatchOperator::Equal, RuleAction::Accept);
        assert!(eq.matches(&net("198.18.0.0/16")));
        assert!(!eq.matches(&net("198.18.1.0/24")));
        assert!(!eq.matches(&net("198.18.0.0/15")));
        let within = rule("198.18.0.0/16", MatchOperator::In, RuleAction::Accept);
        assert!(within.matches(&net("198.18.0.0/16")));
        assert!(within.matches(&net("198.18.1.0/24")));
        assert!(!within.matches(&net("198.19.1.0/24")));
        assert!(
            !within.matches(&net("198.18.0.0/15")),
            "a wider prefix is not in"
        );
        let not_in = rule("198.18.0.0/16", MatchOperator::NotIn, RuleAction::Reject);
        assert!(not_in.matches(&net("198.19.1.0/24")));
        assert!(!not_in.matches(&net("198.18.7.0/24")));
    }

    #[test]
    fn families_do_not_mix() {
        let v4_not_in = rule("198.18.0.0/16", MatchOperator::NotIn, RuleAction::Reject);
        assert!(!v4_not_in.matches(&net("2001:db8::/64")));
        let v6_in = rule("2001:db8::/32", MatchOperator::In, RuleAction::Accept);
        assert!(v6_in.matches(&net("2001:db8:1::/48")));
        assert!(!v6_in.matches(&net("198.18.0.0/24")));
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
        assert_eq!(Filter::default().evaluate(&net("10.0.0.0/8")), None);
    }
}
