//! Byte-exact codec tests. Every expected byte string is written by hand from the RFC layouts
//! (RFC 4271 §4, RFC 4760 §3-4, RFC 5492, RFC 6793, RFC 7911, RFC 4724), never produced by the
//! encoder under test.

use std::net::{Ipv4Addr, Ipv6Addr};

use calico_bgp::wire::{
    AddPathFamily, AddPathMode, Aggregator, AsPath, AsSegment, Capability, Context, DecodeError,
    Decoded, Family, GrFamily, GracefulRestart, Message, MpReach, MpUnreach, NextHop, Nlri,
    Notification, Open, Origin, RawAttribute, RouteRefresh, SegmentKind, Update, decode, encode,
    frame,
};

/// Hex with free whitespace; `M` stands for the 16-octet all-ones marker.
fn hex(s: &str) -> Vec<u8> {
    let s = s.replace('M', &"ff".repeat(16));
    let digits: Vec<u8> = s.bytes().filter(|b| !b.is_ascii_whitespace()).collect();
    assert!(digits.len().is_multiple_of(2), "odd hex in test");
    digits
        .chunks(2)
        .map(|p| u8::from_str_radix(std::str::from_utf8(p).unwrap(), 16).unwrap())
        .collect()
}

/// A message with its header; the length field counts the bytes given.
fn msg(kind: u8, body: &str) -> Vec<u8> {
    let body = hex(body);
    let mut m = vec![0xff; 16];
    m.extend_from_slice(&u16::try_from(19 + body.len()).unwrap().to_be_bytes());
    m.push(kind);
    m.extend_from_slice(&body);
    m
}

/// An UPDATE from its three sections; both section lengths count the bytes given.
fn upd(withdrawn: &str, attrs: &str, nlri: &str) -> Vec<u8> {
    let (w, a) = (hex(withdrawn), hex(attrs));
    let body = format!("{:04x} {withdrawn} {:04x} {attrs} {nlri}", w.len(), a.len());
    msg(2, &body)
}

fn ctx4() -> Context {
    Context {
        four_octet_as: true,
        ..Context::default()
    }
}

fn decoded(bytes: &[u8], ctx: &Context) -> Decoded {
    match decode(bytes, ctx) {
        Ok(d) => d,
        Err(e) => panic!("decode failed: {e}"),
    }
}

fn update_of(bytes: &[u8], ctx: &Context) -> Update {
    let d = decoded(bytes, ctx);
    assert!(
        d.discarded.is_empty(),
        "unexpected discards: {:?}",
        d.discarded
    );
    match d.message {
        Message::Update(u) => u,
        other => panic!("expected UPDATE, got {}", other.kind()),
    }
}

fn reset_of(bytes: &[u8], ctx: &Context) -> Notification {
    match decode(bytes, ctx) {
        Err(DecodeError::Reset(n)) => n,
        other => panic!("expected a session reset, got {other:?}"),
    }
}

fn withdraw_of(bytes: &[u8], ctx: &Context) -> (Vec<Nlri>, Notification) {
    match decode(bytes, ctx) {
        Err(DecodeError::TreatAsWithdraw { withdrawn, reason }) => (withdrawn, reason),
        other => panic!("expected treat-as-withdraw, got {other:?}"),
    }
}

fn n(code: u8, subcode: u8, data: &[u8]) -> Notification {
    Notification::new(code, subcode, data)
}

fn v4(s: &str) -> Nlri {
    Nlri::new(s.parse().unwrap())
}

// An OPEN as BIRD 2 sends it with Calico's template (graceful restart, add paths on):
// AS 64512, hold 240, router id 198.18.0.1, one capabilities parameter holding
// MP IPv4 unicast, route refresh, graceful restart (120 s, IPv4 unicast forwarding kept),
// 4-octet AS 64512, ADD-PATH IPv4 unicast send/receive, enhanced route refresh (70).
const BIRD_OPEN: &str = "M 003d 01
    04 fc00 00f0 c6120001 20
    02 1e
       01 04 0001 00 01
       02 00
       40 06 0078 0001 01 80
       41 04 0000fc00
       45 04 0001 01 03
       46 00";

fn bird_open() -> Open {
    Open {
        my_as: 64512,
        hold_time: 240,
        bgp_id: Ipv4Addr::new(198, 18, 0, 1),
        capabilities: vec![
            Capability::Multiprotocol(Family::IPV4_UNICAST),
            Capability::RouteRefresh,
            Capability::GracefulRestart(GracefulRestart {
                restarting: false,
                notification: false,
                restart_time: 120,
                families: vec![GrFamily {
                    family: Family::IPV4_UNICAST,
                    forwarding_preserved: true,
                }],
            }),
            Capability::FourOctetAs(64512),
            Capability::AddPath(vec![AddPathFamily {
                family: Family::IPV4_UNICAST,
                mode: AddPathMode::Both,
            }]),
            Capability::Unknown {
                code: 70,
                value: vec![],
            },
        ],
    }
}

#[test]
fn bird_open_decodes_and_encodes_byte_exact() {
    let bytes = hex(BIRD_OPEN);
    let d = decoded(&bytes, &Context::default());
    let Message::Open(open) = d.message else {
        panic!("not an OPEN")
    };
    assert_eq!(open, bird_open());
    assert_eq!(open.asn(), 64512);
    assert_eq!(open.families(), vec![Family::IPV4_UNICAST]);
    assert_eq!(
        Message::Open(bird_open())
            .to_bytes(&Context::default())
            .unwrap(),
        bytes
    );
}

#[test]
fn open_with_one_parameter_per_capability_decodes_the_same() {
    // FRR style: each capability in its own optional parameter; 4-octet AS 4200000001 with
    // AS_TRANS in the header; an IPv6 MP capability.
    let bytes = msg(
        1,
        "04 5ba0 00b4 c6120002 1c
        02 06 01 04 0002 00 01
        02 06 41 04 fa56ea01
        02 02 02 00
        02 06 45 04 0002 01 01",
    );
    let Message::Open(open) = decoded(&bytes, &Context::default()).message else {
        panic!("not an OPEN")
    };
    assert_eq!(open.my_as, 23456);
    assert_eq!(open.asn(), 4_200_000_001);
    assert_eq!(open.families(), vec![Family::IPV6_UNICAST]);
    assert_eq!(
        open.add_path(),
        vec![AddPathFamily {
            family: Family::IPV6_UNICAST,
            mode: AddPathMode::Receive
        }]
    );
    assert!(open.graceful_restart().is_none());
}

#[test]
fn open_without_multiprotocol_implies_ipv4_unicast() {
    let bytes = hex("M 001d 01 04 fde8 005a 01020304 00");
    let Message::Open(open) = decoded(&bytes, &Context::default()).message else {
        panic!("not an OPEN")
    };
    assert_eq!(open.families(), vec![Family::IPV4_UNICAST]);
    assert_eq!(open.asn(), 65000);
    assert_eq!(open.hold_time, 90);
}

#[test]
fn open_with_extended_optional_parameters() {
    // RFC 9072: 255, 255, 2-octet length, then type + 2-octet length per parameter.
    let bytes = msg(
        1,
        "04 fde8 005a 01020304 ff ff 0009 02 0006 01 04 0002 00 01",
    );
    let Message::Open(open) = decoded(&bytes, &Context::default()).message else {
        panic!("not an OPEN")
    };
    assert_eq!(
        open.capabilities,
        vec![Capability::Multiprotocol(Family::IPV6_UNICAST)]
    );
}

#[test]
fn keepalive_notification_and_route_refresh() {
    assert_eq!(
        decoded(&hex("M 0013 04"), &Context::default()).message,
        Message::Keepalive
    );
    assert_eq!(
        Message::Keepalive.to_bytes(&Context::default()).unwrap(),
        hex("M 0013 04")
    );

    let notif = hex("M 0017 03 06 02 6279"); // Cease / administrative shutdown, data "by"
    let expected = Message::Notification(n(6, 2, b"by"));
    assert_eq!(decoded(&notif, &Context::default()).message, expected);
    assert_eq!(expected.to_bytes(&Context::default()).unwrap(), notif);

    let rr = hex("M 0017 05 0002 00 01");
    let expected = Message::RouteRefresh(RouteRefresh {
        family: Family::IPV6_UNICAST,
        subtype: 0,
    });
    assert_eq!(decoded(&rr, &Context::default()).message, expected);
    assert_eq!(expected.to_bytes(&Context::default()).unwrap(), rr);
}

// ORIGIN IGP, AS_PATH (4-octet) sequence 64512, NEXT_HOP 198.18.0.1, MED 100, LOCAL_PREF 100,
// COMMUNITIES 64512:1; NLRI 198.19.0.64/26 and 198.18.1.0/24.
const IPV4_UPDATE: &str = "M 0049 02
    0000
    0029
      40 01 01 00
      40 02 06 02 01 0000fc00
      40 03 04 c6120001
      80 04 04 00000064
      40 05 04 00000064
      c0 08 04 fc000001
    1a c6130040
    18 c61201";

fn ipv4_update() -> Update {
    let mut u = Update::default();
    u.attributes.origin = Some(Origin::Igp);
    u.attributes.as_path = Some(AsPath::sequence([64512]));
    u.attributes.next_hop = Some(Ipv4Addr::new(198, 18, 0, 1));
    u.attributes.med = Some(100);
    u.attributes.local_pref = Some(100);
    u.attributes.communities = vec![0xfc00_0001];
    u.nlri = vec![v4("198.19.0.64/26"), v4("198.18.1.0/24")];
    u
}

#[test]
fn ipv4_update_byte_exact() {
    let bytes = hex(IPV4_UPDATE);
    assert_eq!(update_of(&bytes, &ctx4()), ipv4_update());
    assert_eq!(
        Message::Update(ipv4_update()).to_bytes(&ctx4()).unwrap(),
        bytes
    );
}

#[test]
fn host_bits_past_the_prefix_length_are_ignored() {
    // 198.18.1.255/28 on the wire means 198.18.1.240/28.
    let bytes = upd("1c c61201ff", "", "");
    assert_eq!(
        update_of(&bytes, &ctx4()).withdrawn,
        vec![v4("198.18.1.240/28")]
    );
    let bytes = upd("17 c613ff", "", "");
    assert_eq!(
        update_of(&bytes, &ctx4()).withdrawn,
        vec![v4("198.19.254.0/23")]
    );
}

#[test]
fn ipv6_mp_reach_with_link_local_next_hop_and_mp_unreach() {
    // MP_REACH: AFI 2 SAFI 1, next hop length 32 (2001:db8::1 and fe80::1), reserved,
    // NLRI 2001:db8:1::/48. MP_UNREACH: AFI 2 SAFI 1, 2001:db8:2::/64.
    let bytes = upd(
        "",
        "
        80 0e 2c 0002 01 20
            20010db8000000000000000000000001
            fe800000000000000000000000000001
            00
            30 20010db80001
        80 0f 0c 0002 01 40 20010db800020000
        40 01 01 02
        40 02 00",
        "",
    );
    let u = update_of(&bytes, &ctx4());
    let expected = Update {
        mp_reach: Some(MpReach {
            family: Family::IPV6_UNICAST,
            next_hop: NextHop::V6 {
                global: "2001:db8::1".parse::<Ipv6Addr>().unwrap(),
                link_local: Some("fe80::1".parse().unwrap()),
            },
            nlri: vec![Nlri::new("2001:db8:1::/48".parse().unwrap())],
        }),
        mp_unreach: Some(MpUnreach {
            family: Family::IPV6_UNICAST,
            nlri: vec![Nlri::new("2001:db8:2::/64".parse().unwrap())],
        }),
        attributes: calico_bgp::wire::PathAttributes {
            origin: Some(Origin::Incomplete),
            as_path: Some(AsPath::default()),
            ..Default::default()
        },
        ..Update::default()
    };
    assert_eq!(u, expected);
    assert_eq!(Message::Update(expected).to_bytes(&ctx4()).unwrap(), bytes);
}

#[test]
fn ipv6_mp_reach_with_global_next_hop_only() {
    let bytes = upd(
        "",
        "
        80 0e 1c 0002 01 10 20010db8000000000000000000000001 00 30 20010db80001
        40 01 01 00
        40 02 06 02 01 0000fde8",
        "",
    );
    let u = update_of(&bytes, &ctx4());
    let mp = u.mp_reach.unwrap();
    assert_eq!(
        mp.next_hop,
        NextHop::V6 {
            global: "2001:db8::1".parse().unwrap(),
            link_local: None
        }
    );
}

#[test]
fn end_of_rib_markers_for_both_families() {
    let v4_eor = hex("M 0017 02 0000 0000");
    let v6_eor = hex("M 001d 02 0000 0006 80 0f 03 0002 01");
    assert_eq!(
        update_of(&v4_eor, &ctx4()).end_of_rib_family(),
        Some(Family::IPV4_UNICAST)
    );
    assert_eq!(
        update_of(&v6_eor, &ctx4()).end_of_rib_family(),
        Some(Family::IPV6_UNICAST)
    );
    assert_eq!(
        Message::Update(Update::end_of_rib(Family::IPV4_UNICAST))
            .to_bytes(&ctx4())
            .unwrap(),
        v4_eor
    );
    assert_eq!(
        Message::Update(Update::end_of_rib(Family::IPV6_UNICAST))
            .to_bytes(&ctx4())
            .unwrap(),
        v6_eor
    );
    assert_eq!(ipv4_update().end_of_rib_family(), None);
}

#[test]
fn add_path_identifiers_only_when_negotiated_for_the_family() {
    // Withdrawn: path id 1, 198.18.1.0/24; path id 7, 198.18.2.0/24.
    let bytes = upd("00000001 18 c61201 00000007 18 c61202", "", "");
    let ctx = Context {
        add_path: vec![Family::IPV4_UNICAST],
        ..ctx4()
    };
    let u = update_of(&bytes, &ctx);
    let expected = vec![
        Nlri {
            prefix: "198.18.1.0/24".parse().unwrap(),
            path_id: Some(1),
        },
        Nlri {
            prefix: "198.18.2.0/24".parse().unwrap(),
            path_id: Some(7),
        },
    ];
    assert_eq!(u.withdrawn, expected);
    assert_eq!(Message::Update(u).to_bytes(&ctx).unwrap(), bytes);
    // Read without path identifiers, the same bytes reach a prefix length of 198: invalid.
    let only_v6 = Context {
        add_path: vec![Family::IPV6_UNICAST],
        ..ctx4()
    };
    assert!(decode(&bytes, &only_v6).is_err());
}

#[test]
fn as4_path_toward_and_from_a_two_octet_peer() {
    // Path 65001 65536 with aggregator 4200000001/198.18.0.9: a 2-octet peer gets AS_TRANS in
    // AS_PATH and AGGREGATOR, and the real numbers in AS4_PATH and AS4_AGGREGATOR.
    let bytes = upd(
        "",
        "
        40 01 01 00
        40 02 06 02 02 fde9 5ba0
        40 03 04 c6120001
        c0 07 06 5ba0 c6120009
        c0 11 0a 02 02 0000fde9 00010000
        c0 12 08 fa56ea01 c6120009",
        "18 c61201",
    );
    let mut expected = Update::default();
    expected.attributes.origin = Some(Origin::Igp);
    expected.attributes.as_path = Some(AsPath::sequence([65001, 65536]));
    expected.attributes.next_hop = Some(Ipv4Addr::new(198, 18, 0, 1));
    expected.attributes.aggregator = Some(Aggregator {
        asn: 4_200_000_001,
        address: Ipv4Addr::new(198, 18, 0, 9),
    });
    expected.nlri = vec![v4("198.18.1.0/24")];
    let two = Context::default();
    assert_eq!(update_of(&bytes, &two), expected);
    assert_eq!(Message::Update(expected).to_bytes(&two).unwrap(), bytes);
}

#[test]
fn as4_path_rebuild_keeps_ases_prepended_by_old_speakers() {
    // An old speaker (AS 100) prepended itself: AS_PATH 100 65001 AS_TRANS, AS4_PATH
    // 65001 65536 -> 100 65001 65536 (RFC 6793 §4.2.3).
    let bytes = upd(
        "",
        "
        40 01 01 00
        40 02 08 02 03 0064 fde9 5ba0
        40 03 04 c6120001
        c0 11 0a 02 02 0000fde9 00010000",
        "18 c61201",
    );
    let u = update_of(&bytes, &Context::default());
    assert_eq!(
        u.attributes.as_path,
        Some(AsPath::sequence([100, 65001, 65536]))
    );
}

#[test]
fn as4_path_ignored_when_longer_or_when_an_old_speaker_aggregated() {
    // AS4_PATH with more ASes than AS_PATH: ignored.
    let longer = upd(
        "",
        "
        40 01 01 00
        40 02 04 02 01 5ba0
        40 03 04 c6120001
        c0 11 0a 02 02 0000fde9 00010000",
        "18 c61201",
    );
    assert_eq!(
        update_of(&longer, &Context::default()).attributes.as_path,
        Some(AsPath::sequence([23456]))
    );
    // AGGREGATOR from AS 100 (not AS_TRANS): AS4_PATH and AS4_AGGREGATOR are ignored.
    let aggregated = upd(
        "",
        "
        40 01 01 00
        40 02 04 02 01 5ba0
        40 03 04 c6120001
        c0 07 06 0064 c6120009
        c0 11 06 02 01 00010000
        c0 12 08 fa56ea01 c6120009",
        "18 c61201",
    );
    let u = update_of(&aggregated, &Context::default());
    assert_eq!(u.attributes.as_path, Some(AsPath::sequence([23456])));
    assert_eq!(
        u.attributes.aggregator,
        Some(Aggregator {
            asn: 100,
            address: Ipv4Addr::new(198, 18, 0, 9)
        })
    );
}

#[test]
fn as4_path_between_four_octet_speakers_is_dropped() {
    let bytes = upd(
        "",
        "
        40 01 01 00
        40 02 06 02 01 0000fde9
        40 03 04 c6120001
        c0 11 06 02 01 00010000",
        "18 c61201",
    );
    assert_eq!(
        update_of(&bytes, &ctx4()).attributes.as_path,
        Some(AsPath::sequence([65001]))
    );
}

#[test]
fn confederation_and_set_segments() {
    let bytes = upd(
        "",
        "
        40 01 01 00
        40 02 1a 03 01 0000fde8 02 02 0000fde9 0000fdea 01 02 0000fdeb 0000fdec
        40 03 04 c6120001",
        "18 c61201",
    );
    let path = update_of(&bytes, &ctx4()).attributes.as_path.unwrap();
    assert_eq!(
        path.segments,
        vec![
            AsSegment {
                kind: SegmentKind::ConfedSequence,
                asns: vec![65000]
            },
            AsSegment {
                kind: SegmentKind::Sequence,
                asns: vec![65001, 65002]
            },
            AsSegment {
                kind: SegmentKind::Set,
                asns: vec![65003, 65004]
            },
        ]
    );
    assert_eq!(path.decision_len(), 3);
}

#[test]
fn all_attributes_of_route_reflection_and_large_communities() {
    let bytes = upd(
        "",
        "
        40 01 01 01
        40 02 00
        40 03 04 c6120001
        40 06 00
        c0 07 08 0000fde8 c6120009
        80 09 04 c6120002
        80 0a 08 c6120003 c6120004
        c0 20 0c 0000fde8 00000001 00000002
        e0 63 02 abcd",
        "18 c61201",
    );
    let u = update_of(&bytes, &ctx4());
    let a = &u.attributes;
    assert_eq!(a.origin, Some(Origin::Egp));
    assert!(a.atomic_aggregate);
    assert_eq!(
        a.aggregator,
        Some(Aggregator {
            asn: 65000,
            address: Ipv4Addr::new(198, 18, 0, 9)
        })
    );
    assert_eq!(a.originator_id, Some(Ipv4Addr::new(198, 18, 0, 2)));
    assert_eq!(
        a.cluster_list,
        vec![Ipv4Addr::new(198, 18, 0, 3), Ipv4Addr::new(198, 18, 0, 4)]
    );
    assert_eq!(a.large_communities.len(), 1);
    assert_eq!(a.large_communities[0].local_data_2, 2);
    assert_eq!(
        a.unknown,
        vec![RawAttribute {
            flags: 0xe0,
            type_code: 0x63,
            value: vec![0xab, 0xcd]
        }]
    );
    assert_eq!(Message::Update(u).to_bytes(&ctx4()).unwrap(), bytes);
}

#[test]
fn unknown_optional_transitive_is_passed_on_with_the_partial_bit() {
    // Received without the partial bit (0xc0), sent on with it (0xe0).
    let received = upd(
        "",
        "40 01 01 00 40 02 00 40 03 04 c6120001 c0 63 00",
        "18 c61201",
    );
    let sent = upd(
        "",
        "40 01 01 00 40 02 00 40 03 04 c6120001 e0 63 00",
        "18 c61201",
    );
    let u = update_of(&received, &ctx4());
    assert_eq!(Message::Update(u).to_bytes(&ctx4()).unwrap(), sent);
}

#[test]
fn unknown_optional_non_transitive_is_dropped() {
    let bytes = upd(
        "",
        "40 01 01 00 40 02 00 40 03 04 c6120001 80 63 01 ff",
        "18 c61201",
    );
    assert!(update_of(&bytes, &ctx4()).attributes.unknown.is_empty());
}

// ---- Message header errors (RFC 4271 §6.1) ----

#[test]
fn bad_marker_is_connection_not_synchronized() {
    let mut bytes = hex("M 0013 04");
    bytes[3] = 0xfe;
    assert_eq!(reset_of(&bytes, &Context::default()), n(1, 1, &[]));
    assert_eq!(frame(&bytes[..5], &Context::default()), Err(n(1, 1, &[])));
}

#[test]
fn bad_lengths_are_bad_message_length_with_the_length_as_data() {
    let ctx = Context::default();
    // Shorter than a header.
    assert_eq!(frame(&hex("M 0012 04"), &ctx), Err(n(1, 2, &[0x00, 0x12])));
    // KEEPALIVE must be exactly 19.
    assert_eq!(reset_of(&hex("M 0014 04 00"), &ctx), n(1, 2, &[0x00, 0x14]));
    // OPEN shorter than 29.
    assert_eq!(
        reset_of(&hex("M 001c 01 04 fde8 005a 01020304"), &ctx),
        n(1, 2, &[0x00, 0x1c])
    );
    // UPDATE shorter than 23.
    assert_eq!(
        reset_of(&hex("M 0016 02 0000 00"), &ctx),
        n(1, 2, &[0x00, 0x16])
    );
    // NOTIFICATION shorter than 21.
    assert_eq!(reset_of(&hex("M 0014 03 06"), &ctx), n(1, 2, &[0x00, 0x14]));
    // ROUTE-REFRESH must be 23.
    assert_eq!(
        reset_of(&hex("M 0018 05 0001 00 01 00"), &ctx),
        n(1, 2, &[0x00, 0x18])
    );
    // Length field disagrees with the bytes given.
    assert_eq!(
        reset_of(&hex("M 0018 02 0000 0000"), &ctx),
        n(1, 2, &[0x00, 0x18])
    );
}

#[test]
fn messages_over_4096_need_extended_messages() {
    // A 5000-byte UPDATE (0x1388): one unknown optional transitive attribute filling it.
    let value_len = 5000 - 19 - 4 - 4;
    let mut bytes = hex(&format!(
        "M 1388 02 0000 {:04x} d0 63 {:04x}",
        value_len + 4,
        value_len
    ));
    bytes.resize(5000, 0x5a);
    assert_eq!(
        frame(&bytes, &Context::default()),
        Err(n(1, 2, &[0x13, 0x88]))
    );
    let ext = Context {
        extended_message: true,
        ..ctx4()
    };
    assert_eq!(frame(&bytes, &ext), Ok(Some(5000)));
    let u = update_of(&bytes, &ext);
    assert_eq!(u.attributes.unknown[0].value.len(), value_len);
    // Our encoder refuses what the peer could not take.
    assert!(Message::Update(u.clone()).to_bytes(&ctx4()).is_err());
    assert_eq!(Message::Update(u).to_bytes(&ext).unwrap().len(), 5000);
    // OPEN stays limited to 4096 even with extended messages (RFC 8654 §4).
    let mut open = hex("M 1388 01");
    open.resize(5000, 0);
    assert_eq!(frame(&open, &ext), Err(n(1, 2, &[0x13, 0x88])));
}

#[test]
fn unknown_type_is_bad_message_type() {
    assert_eq!(
        reset_of(&hex("M 0013 07"), &Context::default()),
        n(1, 3, &[7])
    );
}

#[test]
fn frame_waits_for_the_whole_message() {
    let ctx = Context::default();
    let bytes = hex(IPV4_UPDATE);
    assert_eq!(frame(&bytes[..10], &ctx), Ok(None));
    assert_eq!(frame(&bytes[..40], &ctx), Ok(None));
    let mut two = bytes.clone();
    two.extend_from_slice(&hex("M 0013 04"));
    assert_eq!(frame(&two, &ctx), Ok(Some(bytes.len())));
}

// ---- OPEN message errors (RFC 4271 §6.2, RFC 5492) ----

#[test]
fn open_version_3_is_unsupported_version_with_4_as_data() {
    assert_eq!(
        reset_of(
            &hex("M 001d 01 03 fde8 005a 01020304 00"),
            &Context::default()
        ),
        n(2, 1, &[0, 4])
    );
}

#[test]
fn open_hold_time_1_or_2_is_unacceptable() {
    assert_eq!(
        reset_of(
            &hex("M 001d 01 04 fde8 0001 01020304 00"),
            &Context::default()
        ),
        n(2, 6, &[])
    );
    assert_eq!(
        reset_of(
            &hex("M 001d 01 04 fde8 0002 01020304 00"),
            &Context::default()
        ),
        n(2, 6, &[])
    );
    // 0 and 3 are fine.
    assert!(
        decode(
            &hex("M 001d 01 04 fde8 0000 01020304 00"),
            &Context::default()
        )
        .is_ok()
    );
    assert!(
        decode(
            &hex("M 001d 01 04 fde8 0003 01020304 00"),
            &Context::default()
        )
        .is_ok()
    );
}

#[test]
fn open_zero_identifier_is_bad_bgp_identifier() {
    assert_eq!(
        reset_of(
            &hex("M 001d 01 04 fde8 005a 00000000 00"),
            &Context::default()
        ),
        n(2, 3, &[])
    );
}

#[test]
fn open_unknown_optional_parameter_is_unsupported() {
    // Parameter type 1 (the deprecated authentication parameter).
    assert_eq!(
        reset_of(
            &hex("M 0020 01 04 fde8 005a 01020304 03 01 01 00"),
            &Context::default()
        ),
        n(2, 4, &[])
    );
}

#[test]
fn open_parameter_length_mismatch_and_malformed_capability() {
    // Optional parameters length says 4, only 3 bytes follow.
    assert_eq!(
        reset_of(
            &hex("M 0020 01 04 fde8 005a 01020304 04 02 01 02"),
            &Context::default()
        ),
        n(2, 0, &[])
    );
    // 4-octet AS capability with 3 bytes of value: unspecific, carrying the capability.
    assert_eq!(
        reset_of(
            &hex("M 0022 01 04 fde8 005a 01020304 05 02 03 41 01 00"),
            &Context::default()
        ),
        n(2, 0, &[0x41, 0x01, 0x00])
    );
}

#[test]
fn open_unknown_capability_is_kept_not_refused() {
    let bytes = hex("M 0022 01 04 fde8 005a 01020304 05 02 03 49 01 61");
    let Message::Open(open) = decoded(&bytes, &Context::default()).message else {
        panic!("not an OPEN")
    };
    assert_eq!(
        open.capabilities,
        vec![Capability::Unknown {
            code: 0x49,
            value: vec![0x61]
        }]
    );
}

// ---- UPDATE message errors (RFC 4271 §6.3 as revised by RFC 7606) ----

#[test]
fn withdrawn_length_overrun_resets_with_malformed_attribute_list() {
    assert_eq!(reset_of(&hex("M 0017 02 0005 0000"), &ctx4()), n(3, 1, &[]));
}

#[test]
fn total_attribute_length_overrun_resets_with_malformed_attribute_list() {
    assert_eq!(
        reset_of(&hex("M 001b 02 0000 0009 40 01 01 00"), &ctx4()),
        n(3, 1, &[])
    );
}

#[test]
fn nlri_prefix_longer_than_32_is_invalid_network_field() {
    assert_eq!(
        reset_of(&upd("", "", "21 c6120001"), &ctx4()),
        n(3, 10, &[])
    );
    // A prefix whose bytes run past the end of the field.
    assert_eq!(
        reset_of(&hex("M 0019 02 0000 0000 18 c6"), &ctx4()),
        n(3, 10, &[])
    );
}

#[test]
fn unrecognized_well_known_attribute_resets_with_the_attribute() {
    let bytes = upd(
        "",
        "40 01 01 00 40 02 00 40 03 04 c6120001 40 63 01 ff",
        "18 c61201",
    );
    assert_eq!(
        reset_of(&bytes, &ctx4()),
        n(3, 2, &[0x40, 0x63, 0x01, 0xff])
    );
}

#[test]
fn wrong_flags_on_origin_is_treat_as_withdraw() {
    let bytes = upd("", "c0 01 01 00 40 02 00 40 03 04 c6120001", "18 c61201");
    let (withdrawn, reason) = withdraw_of(&bytes, &ctx4());
    assert_eq!(withdrawn, vec![v4("198.18.1.0/24")]);
    assert_eq!(reason, n(3, 4, &[0xc0, 0x01, 0x01, 0x00]));
}

#[test]
fn invalid_origin_value_is_treat_as_withdraw() {
    let bytes = upd("", "40 01 01 03 40 02 00 40 03 04 c6120001", "18 c61201");
    let (withdrawn, reason) = withdraw_of(&bytes, &ctx4());
    assert_eq!(withdrawn, vec![v4("198.18.1.0/24")]);
    assert_eq!(reason, n(3, 6, &[0x40, 0x01, 0x01, 0x03]));
}

#[test]
fn next_hop_of_wrong_length_or_value_is_treat_as_withdraw() {
    let bytes = upd("", "40 01 01 00 40 02 00 40 03 05 c612000100", "18 c61201");
    assert_eq!(withdraw_of(&bytes, &ctx4()).1.subcode, 5);
    // A multicast next hop (224.0.0.1).
    let bytes = upd("", "40 01 01 00 40 02 00 40 03 04 e0000001", "18 c61201");
    assert_eq!(
        withdraw_of(&bytes, &ctx4()).1,
        n(3, 8, &[0x40, 0x03, 0x04, 0xe0, 0, 0, 1])
    );
}

#[test]
fn missing_well_known_attributes_are_treat_as_withdraw_with_the_type() {
    // No AS_PATH.
    let bytes = upd("", "40 01 01 00 40 03 04 c6120001", "18 c61201");
    assert_eq!(
        withdraw_of(&bytes, &ctx4()),
        (vec![v4("198.18.1.0/24")], n(3, 3, &[2]))
    );
    // No NEXT_HOP with traditional NLRI.
    let bytes = upd("", "40 01 01 00 40 02 00", "18 c61201");
    assert_eq!(withdraw_of(&bytes, &ctx4()).1, n(3, 3, &[3]));
    // No ORIGIN.
    let bytes = upd("", "40 02 00 40 03 04 c6120001", "18 c61201");
    assert_eq!(withdraw_of(&bytes, &ctx4()).1, n(3, 3, &[1]));
    // Withdrawals alone need no attributes.
    assert!(decode(&upd("18 c61201", "", ""), &ctx4()).is_ok());
}

#[test]
fn malformed_as_path_is_treat_as_withdraw() {
    // A zero-length segment (RFC 7606 §7.2).
    let bytes = upd(
        "",
        "40 01 01 00 40 02 02 02 00 40 03 04 c6120001",
        "18 c61201",
    );
    assert_eq!(withdraw_of(&bytes, &ctx4()).1.subcode, 11);
    // Segment type 5 does not exist.
    let bytes = upd(
        "",
        "40 01 01 00 40 02 06 05 01 0000fde8 40 03 04 c6120001",
        "18 c61201",
    );
    assert_eq!(withdraw_of(&bytes, &ctx4()).1.subcode, 11);
    // A segment that runs past the attribute (2 ASNs announced, 1 present).
    let bytes = upd(
        "",
        "40 01 01 00 40 02 06 02 02 0000fde8 40 03 04 c6120001",
        "18 c61201",
    );
    assert_eq!(withdraw_of(&bytes, &ctx4()).1.subcode, 11);
}

#[test]
fn attribute_running_past_the_attribute_section_is_treat_as_withdraw() {
    // NEXT_HOP claims 9 bytes; the section has 4 left. The NLRI is still found.
    let bytes = upd("", "40 01 01 00 40 02 00 40 03 09 c6120001", "18 c61201");
    let (withdrawn, reason) = withdraw_of(&bytes, &ctx4());
    assert_eq!(withdrawn, vec![v4("198.18.1.0/24")]);
    assert_eq!(reason.subcode, 5);
    // One lone byte left where an attribute header should be.
    let bytes = upd("", "40 01 01 00 40 02 00 40 03 04 c6120001 40", "18 c61201");
    assert_eq!(withdraw_of(&bytes, &ctx4()).0, vec![v4("198.18.1.0/24")]);
}

#[test]
fn bad_lengths_of_optional_attributes_are_treat_as_withdraw() {
    let base = "40 01 01 00 40 02 00 40 03 04 c6120001";
    for attr in [
        "80 04 03 000064",           // MED, 3 bytes
        "40 05 05 0000006400",       // LOCAL_PREF, 5 bytes
        "c0 08 03 fc0000",           // COMMUNITIES, not a multiple of 4
        "c0 08 00",                  // COMMUNITIES, empty
        "80 09 03 c61200",           // ORIGINATOR_ID, 3 bytes
        "80 0a 06 c6120003c612",     // CLUSTER_LIST, not a multiple of 4
        "c0 20 08 0000fde800000001", // LARGE_COMMUNITY, not a multiple of 12
    ] {
        let bytes = upd("", &format!("{base} {attr}"), "18 c61201");
        let (withdrawn, reason) = withdraw_of(&bytes, &ctx4());
        assert_eq!(withdrawn, vec![v4("198.18.1.0/24")], "{attr}");
        assert_eq!((reason.code, reason.subcode), (3, 5), "{attr}");
    }
}

#[test]
fn atomic_aggregate_and_aggregator_of_wrong_length_are_discarded() {
    // ATOMIC_AGGREGATE with one byte, AGGREGATOR with 6 bytes on a 4-octet session.
    let bytes = upd(
        "",
        "40 01 01 00 40 02 00 40 03 04 c6120001
        40 06 01 00
        c0 07 06 fde8 c6120009",
        "18 c61201",
    );
    let d = decoded(&bytes, &ctx4());
    let Message::Update(u) = d.message else {
        panic!("not an UPDATE")
    };
    assert!(!u.attributes.atomic_aggregate);
    assert_eq!(u.attributes.aggregator, None);
    assert_eq!(u.nlri, vec![v4("198.18.1.0/24")]);
    assert_eq!(
        d.discarded,
        vec![
            n(3, 5, &hex("40 06 01 00")),
            n(3, 5, &hex("c0 07 06 fde8 c6120009"))
        ]
    );
}

#[test]
fn duplicate_attribute_keeps_the_first() {
    let bytes = upd(
        "",
        "40 01 01 00 40 01 01 02 40 02 00 40 03 04 c6120001",
        "18 c61201",
    );
    let d = decoded(&bytes, &ctx4());
    let Message::Update(u) = d.message else {
        panic!("not an UPDATE")
    };
    assert_eq!(u.attributes.origin, Some(Origin::Igp));
    assert_eq!(d.discarded, vec![n(3, 1, &hex("40 01 01 02"))]);
}

#[test]
fn duplicate_mp_reach_resets() {
    let mp = "80 0e 0d 0001 01 04 c6120001 00 18 c61201";
    let bytes = upd("", &format!("{mp} {mp}"), "");
    assert_eq!(reset_of(&bytes, &ctx4()).subcode, 1);
}

#[test]
fn malformed_mp_reach_resets_with_optional_attribute_error() {
    // IPv6 next hop of 8 bytes.
    let bytes = upd(
        "",
        "80 0e 14 0002 01 08 20010db800000000 00 30 20010db80001 40 01 01 00",
        "",
    );
    assert_eq!(reset_of(&bytes, &ctx4()).subcode, 9);
    // A /129 in MP_UNREACH.
    let bytes = upd("", "80 0f 05 0002 01 81 20", "");
    assert_eq!(reset_of(&bytes, &ctx4()).subcode, 9);
    // Wrong flags (transitive) on MP_REACH.
    let bytes = upd("", "c0 0e 0d 0001 01 04 c6120001 00 18 c61201", "");
    assert_eq!(reset_of(&bytes, &ctx4()).subcode, 4);
}

#[test]
fn treat_as_withdraw_lists_every_prefix_of_every_family() {
    // MP_REACH IPv6 2001:db8:1::/48, MP_UNREACH 2001:db8:2::/64, withdrawn 198.18.2.0/24,
    // NLRI 198.18.1.0/24, and a bad ORIGIN.
    let bytes = upd(
        "18 c61202",
        "
        80 0e 1c 0002 01 10 20010db8000000000000000000000001 00 30 20010db80001
        80 0f 0c 0002 01 40 20010db800020000
        40 01 01 09
        40 02 00
        40 03 04 c6120001",
        "18 c61201",
    );
    let (mut withdrawn, reason) = withdraw_of(&bytes, &ctx4());
    withdrawn.sort();
    let mut expected = vec![
        v4("198.18.2.0/24"),
        v4("198.18.1.0/24"),
        Nlri::new("2001:db8:1::/48".parse().unwrap()),
        Nlri::new("2001:db8:2::/64".parse().unwrap()),
    ];
    expected.sort();
    assert_eq!(withdrawn, expected);
    assert_eq!(reason.subcode, 6);
}

#[test]
fn encoder_refuses_inconsistent_messages() {
    let u = Update {
        nlri: vec![Nlri::new("2001:db8::/32".parse().unwrap())],
        ..Update::default()
    };
    assert!(Message::Update(u).to_bytes(&ctx4()).is_err());
    let mut u = Update::default();
    u.attributes.unknown = vec![RawAttribute {
        flags: 0xc0,
        type_code: 1,
        value: vec![0],
    }];
    assert!(Message::Update(u).to_bytes(&ctx4()).is_err());
    let mut out = vec![1, 2, 3];
    let bad = Message::Update(Update {
        mp_reach: Some(MpReach {
            family: Family::IPV6_UNICAST,
            next_hop: NextHop::V4(Ipv4Addr::new(198, 18, 0, 1)),
            nlri: vec![],
        }),
        ..Update::default()
    });
    assert!(encode(&bad, &ctx4(), &mut out).is_err());
    assert_eq!(out, vec![1, 2, 3], "nothing half-written is left behind");
}
