//! Shared by the nft tests: a test-owned network namespace to run `nft` in, and sample tables that
//! use every kind of object, match and statement the crate models.
#![allow(dead_code)] // each test binary uses a different subset

use std::net::IpAddr;

use calico_netlink::Netns;
use calico_nft::{
    BaseChain, Chain, ChainType, Comment, CtState, DataType, Family, Field, Hook, IcmpType, Key,
    L4Proto, LogPrefix, Map, MapData, MapValue, Match, Name, Nft, NftError, Operand, Policy,
    PortEnd, PortProto, Priority, PriorityName, Rule, Set, SetFlags, Statement, Table, Value,
    Verdict,
};
use calico_testutil::netns::{TestNetns, require_binary};

/// A namespace this test created (removed on drop) and `nft` to run inside it.
pub struct NftNs {
    pub netns: TestNetns,
    handle: Netns,
    pub nft: Nft,
}

impl NftNs {
    pub fn new(prefix: &str) -> NftNs {
        for (binary, package) in [("ip", "iproute2"), ("nft", "nftables")] {
            if let Err(message) = require_binary(binary, package) {
                panic!("{message}");
            }
        }
        let netns = TestNetns::new(prefix).unwrap_or_else(|e| panic!("create netns: {e}"));
        let handle = Netns::open(&netns.path()).expect("open the test netns");
        let nft = Nft::find().unwrap_or_else(|e| panic!("{e}"));
        NftNs { netns, handle, nft }
    }

    /// Runs `f` with the driver on a thread inside the namespace.
    pub fn run<T: Send>(&self, f: impl FnOnce(&Nft) -> T + Send) -> T {
        let nft = &self.nft;
        self.handle.run(|| f(nft)).expect("enter the test netns")
    }

    pub fn read(&self, family: Family, table: &Name) -> Option<Table> {
        self.run(|nft| nft.read_table(family, table))
            .unwrap_or_else(|e| panic!("read back: {e}"))
    }

    pub fn apply_text(&self, text: &str) -> Result<(), NftError> {
        self.run(|nft| nft.run_script(text))
    }
}

pub fn name(s: &str) -> Name {
    Name::new(s).expect("valid name")
}

pub fn ip(s: &str) -> IpAddr {
    s.parse().expect("address")
}

pub fn net(s: &str) -> Value {
    Value::net(s.parse().expect("prefix"))
}

pub fn ifname(s: &str) -> Value {
    Value::ifname(s).expect("interface name")
}

pub fn rule(matches: Vec<Match>, statements: Vec<Statement>, comment: Option<&str>) -> Rule {
    Rule::new(
        matches,
        statements,
        comment.map(|c| Comment::new(c).expect("comment")),
    )
    .expect("valid rule")
}

fn m(field: Field, value: Value) -> Match {
    Match::eq(field, value).expect("match")
}

fn accept() -> Statement {
    Statement::Verdict(Verdict::Accept)
}

fn tcp(end: PortEnd) -> Field {
    Field::Port(PortProto::Tcp, end)
}

/// An `ip` table using every set, map, chain, match and statement kind; `variant` changes a few
/// elements, entries and one chain's rules (for incremental tests).
pub fn sample_table(table: &str, variant: u8) -> Table {
    let v = u8::from(variant > 0);
    let pools = Set::new(
        name("pools"),
        vec![DataType::Ipv4Addr],
        SetFlags {
            interval: true,
            ..SetFlags::default()
        },
    )
    .expect("set")
    .with_elements([
        Key::one(net("198.19.0.0/16")),
        Key::one(net(if v == 0 {
            "198.18.4.0/24"
        } else {
            "198.18.5.0/24"
        })),
        Key::one(net("198.18.0.1/32")),
    ])
    .expect("elements");
    let services = Set::new(
        name("services"),
        vec![DataType::Ipv4Addr, DataType::InetService],
        SetFlags::default(),
    )
    .expect("set")
    .with_elements([
        Key::concat(vec![Value::addr(ip("198.18.0.10")), Value::port(80)]).expect("key"),
        Key::concat(vec![
            Value::addr(ip("198.18.0.11")),
            Value::port(443 + u16::from(v)),
        ])
        .expect("key"),
    ])
    .expect("elements");
    let ports = Set::new(
        name("ports"),
        vec![DataType::InetService],
        SetFlags {
            interval: true,
            ..SetFlags::default()
        },
    )
    .expect("set")
    .with_elements([
        Key::one(Value::port(53)),
        Key::one(Value::port_range(1000, 2000).expect("range")),
    ])
    .expect("elements");
    let marks = Set::new(
        name("marks"),
        vec![DataType::Mark],
        SetFlags {
            constant: true,
            ..SetFlags::default()
        },
    )
    .expect("set")
    .with_elements([Key::one(Value::Mark(0x10)), Key::one(Value::Mark(0x20))])
    .expect("elements");
    let seen = Set::new(
        name("seen"),
        vec![DataType::Ipv4Addr],
        SetFlags {
            timeout: true,
            ..SetFlags::default()
        },
    )
    .expect("set");
    let protos = Set::new(
        name("protos"),
        vec![DataType::InetProto],
        SetFlags::default(),
    )
    .expect("set")
    .with_elements([
        Key::one(Value::Proto(L4Proto::Tcp)),
        Key::one(Value::Proto(L4Proto::Other(47))),
    ])
    .expect("elements");
    let mut to_wl = vec![
        (
            Key::one(ifname("cali1")),
            MapValue::Verdict(Verdict::Jump(name("to-wl-1"))),
        ),
        (
            Key::one(ifname("cali2")),
            MapValue::Verdict(Verdict::Goto(name("to-wl-1"))),
        ),
        (Key::one(ifname("cali3")), MapValue::Verdict(Verdict::Drop)),
    ];
    if v == 1 {
        to_wl[2].1 = MapValue::Verdict(Verdict::Accept);
        to_wl.push((
            Key::one(ifname("cali4")),
            MapValue::Verdict(Verdict::Return),
        ));
    }
    let to_wl = Map::new(
        name("to-wl"),
        vec![DataType::Ifname],
        MapData::Verdict,
        false,
    )
    .expect("map")
    .with_entries(to_wl)
    .expect("entries");
    let marks_by_net = Map::new(
        name("mark-by-net"),
        vec![DataType::Ipv4Addr],
        MapData::Value(DataType::Mark),
        true,
    )
    .expect("map")
    .with_entries([(
        Key::one(net("198.18.8.0/22")),
        MapValue::Value(Value::Mark(7)),
    )])
    .expect("entries");

    let by_service = Map::new(
        name("by-service"),
        vec![DataType::Ipv4Addr, DataType::InetService],
        MapData::Verdict,
        false,
    )
    .expect("map")
    .with_entries([
        (
            Key::concat(vec![Value::addr(ip("198.18.0.10")), Value::port(80)]).expect("key"),
            MapValue::Verdict(Verdict::Jump(name("to-wl-1"))),
        ),
        (
            Key::concat(vec![
                Value::addr(ip("198.18.0.11")),
                Value::port(53 + u16::from(v)),
            ])
            .expect("key"),
            MapValue::Verdict(Verdict::Drop),
        ),
    ])
    .expect("entries");

    let forward = BaseChain {
        chain_type: ChainType::Filter,
        hook: Hook::Forward,
        priority: Priority::Named(PriorityName::Filter, 5),
        policy: Policy::Accept,
    };
    let forward_rules = vec![
        rule(
            vec![m(
                Field::CtState,
                Value::ct_states(&[CtState::Established, CtState::Related]).expect("states"),
            )],
            vec![accept()],
            Some("established flows"),
        ),
        rule(
            vec![m(
                Field::CtState,
                Value::ct_states(&[CtState::Invalid]).expect("states"),
            )],
            vec![Statement::Counter, Statement::Verdict(Verdict::Drop)],
            None,
        ),
        rule(
            vec![],
            vec![Statement::Vmap {
                key: Field::Oifname,
                map: name("to-wl"),
            }],
            Some("to workloads"),
        ),
        rule(
            vec![m(
                Field::Iifname,
                Value::ifname_prefix("cali").expect("prefix"),
            )],
            vec![
                Statement::Counter,
                Statement::Verdict(Verdict::Goto(name("from-wl"))),
            ],
            Some("from workloads"),
        ),
        rule(
            vec![
                Match::ne(Field::Oifname, ifname("eth0")).expect("match"),
                Match::in_named(Field::IpSaddr, false, &name("pools")).expect("match"),
                Match::new(
                    vec![Field::IpDaddr, tcp(PortEnd::Dport)],
                    false,
                    Operand::Named(name("services")),
                )
                .expect("match"),
            ],
            vec![Statement::Verdict(Verdict::Jump(name("to-wl-1")))],
            None,
        ),
    ];
    let from_wl_rules = vec![
        rule(
            vec![
                m(Field::L4Proto, Value::Proto(L4Proto::Tcp)),
                m(tcp(PortEnd::Dport), Value::port(80 + u16::from(v))),
            ],
            vec![accept()],
            Some("tcp 80"),
        ),
        rule(
            vec![m(
                Field::Port(PortProto::Udp, PortEnd::Sport),
                Value::port_range(1000, 2000).expect("range"),
            )],
            vec![accept()],
            None,
        ),
        rule(
            vec![
                Match::in_set(
                    Field::Port(PortProto::Sctp, PortEnd::Dport),
                    false,
                    vec![Value::port(1), Value::port_range(5, 9).expect("range")],
                )
                .expect("match"),
            ],
            vec![accept()],
            None,
        ),
        rule(
            vec![
                m(Field::IpSaddr, net("198.18.0.0/24")),
                Match::in_set(
                    Field::IpDaddr,
                    true,
                    vec![Value::addr(ip("198.18.0.1")), net("198.19.0.0/16")],
                )
                .expect("match"),
            ],
            vec![Statement::Verdict(Verdict::Return)],
            None,
        ),
        rule(
            vec![m(Field::IcmpType, Value::Icmp(IcmpType::EchoRequest))],
            vec![accept()],
            None,
        ),
        rule(
            vec![
                Match::in_named(
                    Field::Port(PortProto::Tcp, PortEnd::Sport),
                    true,
                    &name("ports"),
                )
                .expect("match"),
            ],
            vec![Statement::Verdict(Verdict::Drop)],
            None,
        ),
        rule(
            vec![Match::in_named(Field::Mark, false, &name("marks")).expect("match")],
            vec![
                Statement::Log {
                    prefix: Some(LogPrefix::new("calico-drop: ").expect("prefix")),
                    group: Some(2),
                },
                Statement::Verdict(Verdict::Drop),
            ],
            None,
        ),
        rule(
            vec![m(Field::Mark, Value::Mark(0x40))],
            vec![Statement::SetMark(0x20), Statement::Nftrace],
            Some("trace marked packets"),
        ),
        rule(
            vec![
                Match::ne(
                    Field::CtState,
                    Value::ct_states(&[CtState::New, CtState::Untracked]).expect("states"),
                )
                .expect("match"),
            ],
            vec![Statement::Log {
                prefix: None,
                group: None,
            }],
            None,
        ),
        rule(
            vec![
                Match::in_set(
                    Field::L4Proto,
                    false,
                    vec![Value::Proto(L4Proto::Udp), Value::Proto(L4Proto::Sctp)],
                )
                .expect("match"),
            ],
            vec![Statement::Counter],
            None,
        ),
        rule(
            vec![
                Match::in_set(Field::Iifname, true, vec![ifname("a"), ifname("b")]).expect("match"),
            ],
            vec![Statement::Counter],
            None,
        ),
        rule(
            vec![Match::in_named(Field::L4Proto, false, &name("protos")).expect("match")],
            vec![Statement::Counter],
            None,
        ),
        // Calico's mark bits: clear accept|pass, set accept, test a bit under its mask.
        rule(
            vec![],
            vec![Statement::ClearMarkBits(0x0003_0000)],
            Some("clear accept and pass"),
        ),
        rule(
            vec![m(Field::MarkBits(0x0002_0000), Value::Mark(0))],
            vec![
                Statement::SetMarkBits(0x0001_0000 << v),
                Statement::Verdict(Verdict::Return),
            ],
            None,
        ),
        rule(
            vec![Match::ne(Field::MarkBits(0x0001_0000), Value::Mark(0x0001_0000)).expect("match")],
            vec![Statement::Verdict(Verdict::Drop)],
            None,
        ),
    ];
    let prerouting = BaseChain {
        chain_type: ChainType::Nat,
        hook: Hook::Prerouting,
        priority: Priority::Named(PriorityName::Dstnat, 0),
        policy: Policy::Accept,
    };
    let postrouting = BaseChain {
        chain_type: ChainType::Nat,
        hook: Hook::Postrouting,
        priority: Priority::Named(PriorityName::Srcnat, 10),
        policy: Policy::Accept,
    };
    Table::new(Family::Ip, name(table))
        .with_set(pools)
        .and_then(|t| t.with_set(services))
        .and_then(|t| t.with_set(ports))
        .and_then(|t| t.with_set(marks))
        .and_then(|t| t.with_set(seen))
        .and_then(|t| t.with_set(protos))
        .and_then(|t| t.with_map(to_wl))
        .and_then(|t| t.with_map(marks_by_net))
        .and_then(|t| t.with_map(by_service))
        .and_then(|t| t.with_chain(Chain::base(name("filter-FORWARD"), forward, forward_rules)))
        .and_then(|t| t.with_chain(Chain::regular(name("from-wl"), from_wl_rules)))
        .and_then(|t| {
            t.with_chain(Chain::regular(
                name("to-wl-1"),
                vec![rule(
                    vec![m(Field::IpSaddr, Value::addr(ip("198.18.0.3")))],
                    vec![accept()],
                    None,
                )],
            ))
        })
        .and_then(|t| {
            t.with_chain(Chain::base(
                name("nat-PREROUTING"),
                prerouting,
                vec![rule(
                    vec![
                        m(Field::IpDaddr, Value::addr(ip("198.18.0.3"))),
                        m(tcp(PortEnd::Dport), Value::port(80)),
                    ],
                    vec![Statement::Dnat {
                        addr: ip("198.18.0.4"),
                        port: Some(8080),
                    }],
                    None,
                )],
            ))
        })
        .and_then(|t| {
            t.with_chain(Chain::base(
                name("nat-POSTROUTING"),
                postrouting,
                vec![
                    rule(
                        vec![
                            Match::in_named(Field::IpSaddr, false, &name("pools")).expect("match"),
                            Match::in_named(Field::IpDaddr, true, &name("pools")).expect("match"),
                        ],
                        vec![Statement::Masquerade],
                        Some("nat-outgoing"),
                    ),
                    rule(
                        vec![m(Field::IpDaddr, Value::addr(ip("198.18.0.1")))],
                        vec![Statement::Snat {
                            addr: ip("198.18.0.2"),
                            port: None,
                        }],
                        None,
                    ),
                ],
            ))
        })
        .expect("sample table")
}
