//! The verdict for one packet at one local endpoint: the single implementation of Calico's
//! evaluation order that `explain` and what-if use.

use std::net::IpAddr;

use calico_api::spec::rule::{Action, Direction};

use crate::compile::{CompiledEntity, CompiledRule, IpVersion};
use crate::model::{EndpointKey, ModelError, PolicyKey, PolicyModel};

/// A packet as policy sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Packet {
    pub source: IpAddr,
    pub destination: IpAddr,
    /// IP protocol number (6 TCP, 17 UDP, 1 ICMP, ...).
    pub protocol: u8,
    /// Ports, for protocols that have them.
    pub source_port: Option<u16>,
    pub destination_port: Option<u16>,
    /// ICMP type and code, for ICMP packets.
    pub icmp_type: Option<u8>,
    pub icmp_code: Option<u8>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum VerdictAction {
    Allow,
    Deny,
}

/// What decided the verdict.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Decision {
    /// An Allow or Deny rule of a policy.
    PolicyRule {
        tier: String,
        policy: PolicyKey,
        index: usize,
    },
    /// A tier in which policies applied but none allowed, denied or passed: its defaultAction
    /// (Deny; a Pass tier never decides).
    TierDefault { tier: String },
    /// An Allow or Deny rule of a profile.
    ProfileRule { profile: String, index: usize },
    /// No policy and no profile allowed the packet.
    DefaultDeny,
}

/// One step of the walk.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TraceStep {
    /// A policy was tried: the Log rules that matched, then the rule that ended it, if any
    /// (`None`: no rule matched, evaluation went on to the next policy).
    Policy {
        tier: String,
        policy: PolicyKey,
        logged: Vec<usize>,
        matched: Option<(usize, Action)>,
    },
    /// The end of a tier was reached without a decision or a Pass.
    TierEnd {
        tier: String,
        default_action: Action,
    },
    Profile {
        profile: String,
        logged: Vec<usize>,
        matched: Option<(usize, Action)>,
    },
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Verdict {
    pub action: VerdictAction,
    pub decision: Decision,
    pub trace: Vec<TraceStep>,
}

/// How a list of rules ended.
struct ListOutcome {
    logged: Vec<usize>,
    matched: Option<(usize, Action)>,
}

impl PolicyModel {
    /// The verdict for `packet` crossing `endpoint` in `direction` (ingress: towards it; egress:
    /// from it). Calico's order: tiers in order, in each the applicable policies in order, the first
    /// matching rule decides (Allow and Deny are final, Pass leaves the tier, Log goes on); a tier
    /// with applicable policies that decides nothing ends in its defaultAction; then the profiles;
    /// then deny.
    pub fn evaluate(
        &self,
        endpoint: &EndpointKey,
        direction: Direction,
        packet: &Packet,
    ) -> Result<Verdict, ModelError> {
        let active = self
            .active_policies(endpoint, direction)
            .ok_or_else(|| ModelError::UnknownEndpoint(endpoint.clone()))?;
        let mut trace = Vec::new();
        for tier in &active.tiers {
            let mut passed = false;
            for key in &tier.policies {
                let Some(policy) = self.policy(key) else {
                    continue;
                };
                let rules = match direction {
                    Direction::Ingress => &policy.rules.ingress,
                    Direction::Egress => &policy.rules.egress,
                };
                let outcome = self.walk_rules(rules, packet);
                trace.push(TraceStep::Policy {
                    tier: tier.name.clone(),
                    policy: key.clone(),
                    logged: outcome.logged,
                    matched: outcome.matched,
                });
                match outcome.matched {
                    Some((index, action @ (Action::Allow | Action::Deny))) => {
                        return Ok(Verdict {
                            action: final_action(action),
                            decision: Decision::PolicyRule {
                                tier: tier.name.clone(),
                                policy: key.clone(),
                                index,
                            },
                            trace,
                        });
                    }
                    Some((_, _)) => {
                        passed = true;
                        break;
                    }
                    None => {}
                }
            }
            if !passed {
                trace.push(TraceStep::TierEnd {
                    tier: tier.name.clone(),
                    default_action: tier.default_action,
                });
                if tier.default_action != Action::Pass {
                    return Ok(Verdict {
                        action: VerdictAction::Deny,
                        decision: Decision::TierDefault {
                            tier: tier.name.clone(),
                        },
                        trace,
                    });
                }
            }
        }
        for profile in &active.profiles {
            let rules = self.profile(profile).map(|compiled| match direction {
                Direction::Ingress => &compiled.ingress,
                Direction::Egress => &compiled.egress,
            });
            let outcome = self.walk_rules(rules.map_or(&[][..], Vec::as_slice), packet);
            trace.push(TraceStep::Profile {
                profile: profile.clone(),
                logged: outcome.logged,
                matched: outcome.matched,
            });
            // A Pass in a profile only ends that profile; the next one is tried.
            if let Some((index, action @ (Action::Allow | Action::Deny))) = outcome.matched {
                return Ok(Verdict {
                    action: final_action(action),
                    decision: Decision::ProfileRule {
                        profile: profile.clone(),
                        index,
                    },
                    trace,
                });
            }
        }
        Ok(Verdict {
            action: VerdictAction::Deny,
            decision: Decision::DefaultDeny,
            trace,
        })
    }

    /// Runs rules in order: Log rules are noted and skipped over, the first other match ends.
    fn walk_rules(&self, rules: &[CompiledRule], packet: &Packet) -> ListOutcome {
        let mut logged = Vec::new();
        for (index, rule) in rules.iter().enumerate() {
            if !self.rule_matches(rule, packet) {
                continue;
            }
            if rule.action == Action::Log {
                logged.push(index);
                continue;
            }
            return ListOutcome {
                logged,
                matched: Some((index, rule.action)),
            };
        }
        ListOutcome {
            logged,
            matched: None,
        }
    }

    /// Whether every criterion of `rule` holds for `packet`.
    pub fn rule_matches(&self, rule: &CompiledRule, packet: &Packet) -> bool {
        if rule
            .ip_version
            .is_some_and(|version| version != IpVersion::of(packet.source))
        {
            return false;
        }
        if rule.protocol.is_some_and(|p| p != packet.protocol)
            || rule.not_protocol.is_some_and(|p| p == packet.protocol)
        {
            return false;
        }
        let icmp_is = |icmp: &crate::compile::IcmpMatch| {
            packet.icmp_type == Some(icmp.icmp_type)
                && icmp.code.is_none_or(|code| packet.icmp_code == Some(code))
        };
        if rule.icmp.as_ref().is_some_and(|icmp| !icmp_is(icmp))
            || rule.not_icmp.as_ref().is_some_and(icmp_is)
        {
            return false;
        }
        self.entity_matches(
            &rule.source,
            packet.source,
            packet.source_port,
            packet.protocol,
        ) && self.entity_matches(
            &rule.destination,
            packet.destination,
            packet.destination_port,
            packet.protocol,
        )
    }

    fn entity_matches(
        &self,
        entity: &CompiledEntity,
        address: IpAddr,
        port: Option<u16>,
        protocol: u8,
    ) -> bool {
        if !entity.nets.is_empty() && !entity.nets.iter().any(|net| net.contains(&address)) {
            return false;
        }
        if entity.not_nets.iter().any(|net| net.contains(&address)) {
            return false;
        }
        if entity
            .selector
            .as_ref()
            .is_some_and(|set| !self.set_contains_ip(set, address))
        {
            return false;
        }
        if entity
            .not_selector
            .as_ref()
            .is_some_and(|set| self.set_contains_ip(set, address))
        {
            return false;
        }
        let port_in =
            |ranges: &[crate::compile::PortRange], named: &[crate::index::SetId], port: u16| {
                ranges.iter().any(|range| range.contains(port))
                    || named
                        .iter()
                        .any(|set| self.set_contains_ip_port(set, address, protocol, port))
            };
        let wants_ports = !entity.ports.is_empty() || !entity.named_ports.is_empty();
        match port {
            // A packet without ports matches no port list, and no notPorts list excludes it.
            None => !wants_ports,
            Some(port) => {
                (!wants_ports || port_in(&entity.ports, &entity.named_ports, port))
                    && !port_in(&entity.not_ports, &entity.not_named_ports, port)
            }
        }
    }
}

fn final_action(action: Action) -> VerdictAction {
    if action == Action::Allow {
        VerdictAction::Allow
    } else {
        VerdictAction::Deny
    }
}
