//! Writes the seed corpus (`cargo run --bin seeds -- DIR`): real messages made with our
//! encoder, each as a codec input under the contexts it needs, plus session streams.

use std::net::{Ipv4Addr, Ipv6Addr};
use std::path::PathBuf;

use calico_bgp::wire::{
    AddPathFamily, AddPathMode, Aggregator, AsPath, AsSegment, Capability, Context, Family,
    GrFamily, GracefulRestart, LargeCommunity, Message, MpReach, MpUnreach, NextHop, Nlri,
    Notification, Open, Origin, PathAttributes, RawAttribute, RouteRefresh, SegmentKind, Update,
    code,
};
use calico_bgp_fuzz::{
    ADD_PATH_V4, ADD_PATH_V6, EXTENDED_MESSAGE, FOUR_OCTET_AS, SESSION, context,
};

fn net(s: &str) -> Nlri {
    Nlri::new(s.parse().expect("prefix"))
}

fn with_id(s: &str, id: u32) -> Nlri {
    Nlri {
        path_id: Some(id),
        ..net(s)
    }
}

fn open() -> Message {
    Message::Open(Open::new(
        4_200_000_001,
        90,
        Ipv4Addr::new(198, 18, 0, 2),
        vec![
            Capability::Multiprotocol(Family::IPV4_UNICAST),
            Capability::Multiprotocol(Family::IPV6_UNICAST),
            Capability::RouteRefresh,
            Capability::ExtendedMessage,
            Capability::GracefulRestart(GracefulRestart {
                restarting: true,
                notification: false,
                restart_time: 120,
                families: vec![GrFamily {
                    family: Family::IPV4_UNICAST,
                    forwarding_preserved: true,
                }],
            }),
            Capability::FourOctetAs(4_200_000_001),
            Capability::AddPath(vec![AddPathFamily {
                family: Family::IPV4_UNICAST,
                mode: AddPathMode::Both,
            }]),
            Capability::Unknown {
                code: 73,
                value: b"host".to_vec(),
            },
        ],
    ))
}

/// Every attribute we know, and an unknown optional transitive one.
fn all_attributes(wide_as: bool) -> PathAttributes {
    let far = if wide_as { 4_200_000_001 } else { 65001 };
    PathAttributes {
        origin: Some(Origin::Incomplete),
        as_path: Some(AsPath {
            segments: vec![
                AsSegment {
                    kind: SegmentKind::Sequence,
                    asns: vec![64513, far],
                },
                AsSegment {
                    kind: SegmentKind::Set,
                    asns: vec![65010, 65011],
                },
            ],
        }),
        next_hop: Some(Ipv4Addr::new(198, 18, 0, 2)),
        med: Some(50),
        local_pref: Some(200),
        atomic_aggregate: true,
        aggregator: Some(Aggregator {
            asn: far,
            address: Ipv4Addr::new(198, 18, 0, 9),
        }),
        communities: vec![0xfde8_0064, 0xffff_ff01],
        large_communities: vec![LargeCommunity {
            global_admin: 64512,
            local_data_1: 1,
            local_data_2: 2,
        }],
        originator_id: Some(Ipv4Addr::new(198, 18, 0, 7)),
        cluster_list: vec![Ipv4Addr::new(198, 18, 0, 1), Ipv4Addr::new(198, 18, 0, 3)],
        unknown: vec![RawAttribute {
            flags: 0xc0,
            type_code: 99,
            value: vec![1, 2, 3, 4],
        }],
    }
}

fn ibgp_attributes() -> PathAttributes {
    PathAttributes {
        origin: Some(Origin::Igp),
        as_path: Some(AsPath::default()),
        next_hop: Some(Ipv4Addr::new(198, 18, 0, 2)),
        local_pref: Some(100),
        ..PathAttributes::default()
    }
}

fn v4_update(wide_as: bool) -> Message {
    Message::Update(Update {
        withdrawn: vec![net("198.19.1.0/26")],
        attributes: all_attributes(wide_as),
        nlri: vec![
            net("198.19.0.0/26"),
            net("198.19.0.64/26"),
            net("10.0.0.0/8"),
        ],
        ..Update::default()
    })
}

fn mp_v6(link_local: bool) -> Message {
    Message::Update(Update {
        attributes: PathAttributes {
            next_hop: None,
            ..ibgp_attributes()
        },
        mp_reach: Some(MpReach {
            family: Family::IPV6_UNICAST,
            next_hop: NextHop::V6 {
                global: Ipv6Addr::new(0x2001, 2, 0, 1, 0, 0, 0, 2),
                link_local: link_local.then(|| Ipv6Addr::new(0xfe80, 0, 0, 0, 0, 0, 0, 2)),
            },
            nlri: vec![net("2001:2:0:100::/64"), net("2001:2:0:200::/122")],
        }),
        mp_unreach: Some(MpUnreach {
            family: Family::IPV6_UNICAST,
            nlri: vec![net("2001:2:0:300::/64")],
        }),
        ..Update::default()
    })
}

fn mp_v4() -> Message {
    Message::Update(Update {
        attributes: PathAttributes {
            next_hop: None,
            ..ibgp_attributes()
        },
        mp_reach: Some(MpReach {
            family: Family::IPV4_UNICAST,
            next_hop: NextHop::V4(Ipv4Addr::new(198, 18, 0, 2)),
            nlri: vec![net("198.19.2.0/26")],
        }),
        ..Update::default()
    })
}

fn add_path_update() -> Message {
    Message::Update(Update {
        withdrawn: vec![with_id("198.19.3.0/26", 7)],
        attributes: ibgp_attributes(),
        nlri: vec![with_id("198.19.0.0/26", 1), with_id("198.19.0.0/26", 2)],
        ..Update::default()
    })
}

fn withdraw_only() -> Message {
    Message::Update(Update {
        withdrawn: vec![net("198.19.0.0/26"), net("198.19.0.64/26")],
        ..Update::default()
    })
}

fn bytes(m: &Message, ctx: &Context) -> Vec<u8> {
    m.to_bytes(ctx).expect("seed message encodes")
}

fn main() {
    let dir = PathBuf::from(std::env::args().nth(1).unwrap_or_else(|| "seeds".into()));
    std::fs::create_dir_all(&dir).expect("seed directory");
    let mut n = 0;
    let mut write = |name: &str, flags: u8, payload: Vec<u8>| {
        let mut data = vec![flags];
        data.extend(payload);
        std::fs::write(dir.join(format!("{n:02}-{name}")), data).expect("write seed");
        n += 1;
    };
    let plain = 0;
    let four = FOUR_OCTET_AS | EXTENDED_MESSAGE;
    let eor_v6 = Message::Update(Update::end_of_rib(Family::IPV6_UNICAST));
    let eor_v4 = Message::Update(Update::end_of_rib(Family::IPV4_UNICAST));
    let refresh = Message::RouteRefresh(RouteRefresh {
        family: Family::IPV4_UNICAST,
        subtype: 0,
    });
    let notification = Message::Notification(Notification::new(
        code::CEASE,
        code::CEASE_ADMINISTRATIVE_SHUTDOWN,
        b"maintenance".to_vec(),
    ));
    let messages: Vec<(&str, u8, Message)> = vec![
        ("open", plain, open()),
        ("update-all-attrs-4oct", four, v4_update(true)),
        // Old peer: 4-octet ASNs travel as AS_TRANS plus AS4_PATH and AS4_AGGREGATOR.
        ("update-all-attrs-as4path", plain, v4_update(true)),
        ("update-2oct", plain, v4_update(false)),
        ("mp-reach-v6", four, mp_v6(false)),
        ("mp-reach-v6-ll", four, mp_v6(true)),
        ("mp-reach-v4", four, mp_v4()),
        ("add-path-v4", four | ADD_PATH_V4, add_path_update()),
        ("withdraw", four, withdraw_only()),
        ("eor-v4", four, eor_v4.clone()),
        ("eor-v6", four, eor_v6.clone()),
        ("route-refresh", plain, refresh.clone()),
        ("notification", plain, notification.clone()),
        ("keepalive", plain, Message::Keepalive),
    ];
    for (name, flags, m) in &messages {
        write(name, *flags, bytes(m, &context(*flags)));
    }
    // Codec: several messages in one stream.
    let ctx = context(four);
    let mut stream = Vec::new();
    for m in [open(), Message::Keepalive, v4_update(true), eor_v4.clone()] {
        stream.extend(bytes(&m, &ctx));
    }
    write("stream", four, stream);

    // Sessions: a peer's traffic after Established, ending in a clean close or a bad message.
    for (name, flags, msgs) in [
        (
            "session-routes",
            SESSION | FOUR_OCTET_AS | EXTENDED_MESSAGE | 0x30,
            vec![
                v4_update(true),
                mp_v6(true),
                Message::Keepalive,
                refresh.clone(),
                withdraw_only(),
                eor_v4.clone(),
                eor_v6.clone(),
            ],
        ),
        (
            "session-add-path",
            SESSION | FOUR_OCTET_AS | ADD_PATH_V4 | ADD_PATH_V6 | 0x70,
            vec![add_path_update(), Message::Keepalive, eor_v4.clone()],
        ),
        (
            "session-old-peer",
            SESSION,
            vec![v4_update(true), Message::Keepalive, notification.clone()],
        ),
        (
            "session-open-again",
            SESSION | FOUR_OCTET_AS,
            vec![mp_v4(), open()],
        ),
    ] {
        let ctx = context(flags);
        let mut stream = Vec::new();
        for m in &msgs {
            stream.extend(bytes(m, &ctx));
        }
        write(name, flags, stream);
    }
    // Session streams that end in a bad UPDATE. ORIGIN marked optional is an attribute flags
    // error, which RFC 7606 turns into treat-as-withdraw (the session stays up); a withdrawn
    // routes length past the end of the message is a reset the session must answer with its
    // NOTIFICATION.
    let flags = SESSION | FOUR_OCTET_AS;
    let good = bytes(&v4_update(false), &context(flags));
    let mut stream = bytes(&Message::Keepalive, &context(flags));
    let mut bad = good.clone();
    // Header, withdrawn length, one /26 (length octet and 4 octets), attributes length.
    let origin_at = 19 + 2 + 5 + 2;
    bad[origin_at] |= 0x80;
    stream.extend(bad);
    stream.extend(bytes(&Message::Keepalive, &context(flags)));
    write("session-treat-as-withdraw", flags, stream);
    let mut stream = bytes(&Message::Keepalive, &context(flags));
    let mut bad = good;
    bad[19..21].copy_from_slice(&0x0fffu16.to_be_bytes());
    stream.extend(bad);
    write("session-reset", flags, stream);
    eprintln!("{n} seeds in {}", dir.display());
}
