//! Random tables through the kernel: whatever the table held before, applying the plan against what
//! nft lists makes it list exactly the desired table, and planning again yields nothing. Needs root,
//! iproute2 and nftables.

mod support;

use calico_nft::{
    BaseChain, Chain, ChainType, Comment, CtState, DataType, Family, Field, Hook, IcmpType, Key,
    L4Proto, LogPrefix, Map, MapData, MapValue, Match, Operand, Policy, PortEnd, PortProto,
    Priority, PriorityName, Rule, Set, SetFlags, Statement, Table, Value, Verdict, plan,
};
use proptest::prelude::*;
use support::{NftNs, ifname, name, net};

fn interval() -> SetFlags {
    SetFlags {
        interval: true,
        ..SetFlags::default()
    }
}

/// A verdict; jumps to the optional chain `extra` only when the table has it.
fn verdict(n: u8, extra: bool) -> Verdict {
    match n % 6 {
        0 => Verdict::Accept,
        1 => Verdict::Drop,
        2 => Verdict::Return,
        3 => Verdict::Jump(name("c1")),
        4 => Verdict::Goto(name("c2")),
        _ if extra => Verdict::Jump(name("extra")),
        _ => Verdict::Accept,
    }
}

/// Match kinds that name a protocol (a rule may hold only one, as nft allows).
const PROTOCOL_KINDS: [u8; 6] = [3, 4, 5, 9, 10, 12];

/// One match from a pool of kinds, chosen and parameterised by two numbers.
fn a_match(kind: u8, n: u8, extra: bool) -> Match {
    let port = |n: u8| u16::from(n) * 7 + 1;
    let result = match kind % 13 {
        0 => Match::eq(Field::IpSaddr, net(&format!("198.18.{n}.0/24"))),
        1 => Match::ne(Field::IpDaddr, Value::addr([198, 19, 0, n].into())),
        2 => Match::in_named(Field::IpSaddr, n.is_multiple_of(2), &name("nets")),
        3 => Match::eq(
            Field::Port(PortProto::Tcp, PortEnd::Dport),
            Value::port(port(n)),
        ),
        4 => Match::in_set(
            Field::Port(PortProto::Udp, PortEnd::Sport),
            n % 2 == 1,
            vec![
                Value::port(port(n)),
                Value::port_range(1000, 1000 + u16::from(n) + 1).expect("range"),
            ],
        ),
        5 => Match::in_named(
            Field::Port(PortProto::Sctp, PortEnd::Dport),
            false,
            &name("ports"),
        ),
        6 => Match::eq(
            Field::Iifname,
            Value::ifname(&format!("cali{n}")).expect("name"),
        ),
        7 => Match::eq(
            Field::Oifname,
            Value::ifname_prefix(&format!("tap{n}")).expect("name"),
        ),
        8 => Match::eq(
            Field::CtState,
            Value::ct_states(match n % 3 {
                0 => &[CtState::New][..],
                1 => &[CtState::Established, CtState::Related][..],
                _ => &[CtState::Invalid, CtState::Untracked][..],
            })
            .expect("states"),
        ),
        9 => Match::eq(Field::L4Proto, Value::Proto(L4Proto::from_number(n))),
        10 => Match::eq(
            Field::IcmpType,
            Value::Icmp(if n.is_multiple_of(2) {
                IcmpType::EchoRequest
            } else {
                IcmpType::DestinationUnreachable
            }),
        ),
        11 => Match::ne(Field::Mark, Value::Mark(u32::from(n) << 4)),
        _ if extra => Match::new(
            vec![Field::IpDaddr, Field::Port(PortProto::Tcp, PortEnd::Dport)],
            n.is_multiple_of(2),
            Operand::Named(name("svc")),
        ),
        _ => Match::eq(
            Field::Port(PortProto::Tcp, PortEnd::Sport),
            Value::port(port(n)),
        ),
    };
    result.expect("valid match")
}

fn a_rule(matches: &[(u8, u8)], more: u8, end: u8, extra: bool) -> Rule {
    let mut statements = match more % 5 {
        0 => vec![],
        1 => vec![Statement::Counter],
        2 => vec![Statement::SetMark(u32::from(end) << 8)],
        3 => vec![Statement::Log {
            prefix: Some(LogPrefix::new(&format!("calico {more}: ")).expect("prefix")),
            group: None,
        }],
        _ => vec![Statement::Nftrace, Statement::Counter],
    };
    match end % 3 {
        0 => statements.push(Statement::Verdict(verdict(end / 3, extra))),
        1 => statements.push(Statement::Vmap {
            key: Field::Iifname,
            map: name("by-if"),
        }),
        _ => statements.push(Statement::Log {
            prefix: None,
            group: Some(u16::from(end)),
        }),
    }
    // At most one match that names a protocol: nft refuses conflicting ones (so does Rule::new).
    let mut protocol_seen = false;
    let matches = matches.iter().filter(|(kind, _)| {
        let names_protocol = PROTOCOL_KINDS.contains(&(kind % 13));
        let keep = !(names_protocol && protocol_seen);
        protocol_seen |= names_protocol;
        keep
    });
    Rule::new(
        matches.map(|(k, n)| a_match(*k, *n, extra)).collect(),
        statements,
        match more % 3 {
            0 => None,
            1 => Some(Comment::new(&format!("policy {end}: allow, tier 1")).expect("comment")),
            _ => Some(Comment::new("calico-rs").expect("comment")),
        },
    )
    .expect("valid rule")
}

prop_compose! {
    fn a_table()(
        nets in proptest::collection::btree_set(0u8..32, 0..6),
        ports in proptest::collection::btree_set(0u16..20, 0..5),
        entries in proptest::collection::btree_map(0u8..8, any::<u8>(), 0..5),
        rules in proptest::collection::vec(
            (proptest::collection::vec((any::<u8>(), 0u8..30), 0..3), any::<u8>(), any::<u8>()),
            0..5,
        ),
        policy_drop in any::<bool>(),
        extra in proptest::option::of(proptest::collection::btree_set((0u8..4, 0u16..3), 0..4)),
        snat in proptest::option::of(0u8..8),
    ) -> Table {
        let has_extra = extra.is_some();
        let nets = Set::new(name("nets"), vec![DataType::Ipv4Addr], interval())
            .and_then(|s| s.with_elements(nets.iter().map(|n| Key::one(net(&format!("198.18.{n}.0/24"))))))
            .expect("set");
        // Ranges on a grid, so they never overlap: k*100 ..= k*100+50, or the single port k*100+75.
        let ports = Set::new(name("ports"), vec![DataType::InetService], interval())
            .and_then(|s| {
                s.with_elements(ports.iter().map(|k| {
                    if k % 2 == 0 {
                        Key::one(Value::port_range(k * 100, k * 100 + 50).expect("range"))
                    } else {
                        Key::one(Value::port(k * 100 + 75))
                    }
                }))
            })
            .expect("set");
        let by_if = Map::new(name("by-if"), vec![DataType::Ifname], MapData::Verdict, false)
            .and_then(|m| {
                m.with_entries(entries.iter().map(|(k, v)| {
                    (Key::one(ifname(&format!("cali{k}"))), MapValue::Verdict(verdict(*v, has_extra)))
                }))
            })
            .expect("map");
        let rules: Vec<Rule> = rules.iter().map(|(m, more, end)| a_rule(m, *more, *end, has_extra)).collect();
        let base = BaseChain {
            chain_type: ChainType::Filter,
            hook: Hook::Forward,
            priority: Priority::Number(0),
            policy: if policy_drop { Policy::Drop } else { Policy::Accept },
        };
        let table = Table::new(Family::Ip, name("calico"))
            .with_set(nets)
            .and_then(|t| t.with_set(ports))
            .and_then(|t| t.with_map(by_if))
            .and_then(|t| t.with_chain(Chain::base(name("forward"), base, rules)))
            .and_then(|t| t.with_chain(Chain::regular(name("c1"), vec![])))
            .and_then(|t| t.with_chain(Chain::regular(name("c2"), vec![])))
            .expect("table");
        // Optional: a concatenated set and a chain that rules and map entries refer to, so plans
        // add and remove objects that others depend on.
        let table = match extra {
            None => table,
            Some(services) => {
                let svc = Set::new(name("svc"), vec![DataType::Ipv4Addr, DataType::InetService], SetFlags::default())
                    .and_then(|s| {
                        s.with_elements(services.iter().map(|(host, port)| {
                            Key::concat(vec![Value::addr([198, 18, 0, *host].into()), Value::port(80 + port)])
                                .expect("key")
                        }))
                    })
                    .expect("set");
                let uses = Rule::new(
                    vec![Match::in_named(Field::IpSaddr, false, &name("nets")).expect("match")],
                    vec![Statement::Counter, Statement::Verdict(Verdict::Goto(name("c2")))],
                    None,
                )
                .expect("rule");
                table
                    .with_set(svc)
                    .and_then(|t| t.with_chain(Chain::regular(name("extra"), vec![uses])))
                    .expect("table")
            }
        };
        // Optional: a NAT chain that source-NATs pool traffic, or masquerades it.
        match snat {
            None => table,
            Some(n) => {
                let postrouting = BaseChain {
                    chain_type: ChainType::Nat,
                    hook: Hook::Postrouting,
                    priority: Priority::Named(PriorityName::Srcnat, i32::from(n)),
                    policy: Policy::Accept,
                };
                let action = if n.is_multiple_of(2) {
                    Statement::Masquerade
                } else {
                    Statement::Snat { addr: [198, 18, 0, n].into(), port: None }
                };
                let rule = Rule::new(
                    vec![Match::in_named(Field::IpSaddr, false, &name("nets")).expect("match")],
                    vec![action],
                    None,
                )
                .expect("rule");
                table
                    .with_chain(Chain::base(name("nat-POSTROUTING"), postrouting, vec![rule]))
                    .expect("table")
            }
        }
    }
}

#[test]
fn random_tables_round_trip_and_plans_converge() {
    let ns = NftNs::new("nft-prop");
    let mut runner = proptest::test_runner::TestRunner::new(ProptestConfig {
        cases: 64,
        failure_persistence: None,
        ..ProptestConfig::default()
    });
    runner
        .run(&a_table(), |desired| {
            let observed = ns.read(Family::Ip, desired.name());
            let tx = plan(&desired, observed.as_ref());
            ns.run(|nft| nft.apply(&tx))
                .map_err(|e| TestCaseError::fail(format!("{e}\n{}", tx.render())))?;
            let listed = ns.read(Family::Ip, desired.name());
            prop_assert_eq!(listed.as_ref(), Some(&desired));
            prop_assert!(plan(&desired, listed.as_ref()).is_empty());
            Ok(())
        })
        .unwrap_or_else(|e| panic!("{e}"));
}
