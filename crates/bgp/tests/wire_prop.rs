//! Property tests for the codec: every message we can build decodes to itself under the same
//! context, and decoding never panics on arbitrary or mutated input.

use std::net::{Ipv4Addr, Ipv6Addr};

use calico_bgp::wire::{
    AddPathFamily, AddPathMode, Aggregator, AsPath, AsSegment, Capability, Context, Family,
    GrFamily, GracefulRestart, LargeCommunity, Message, MpReach, MpUnreach, NextHop, Nlri,
    Notification, Open, Origin, PathAttributes, RawAttribute, RouteRefresh, SegmentKind, Update,
    decode, frame,
};
use ipnet::{IpNet, Ipv4Net, Ipv6Net};
use proptest::collection::vec;
use proptest::option;
use proptest::prelude::*;

fn context() -> impl Strategy<Value = Context> {
    (any::<bool>(), any::<bool>(), any::<bool>(), any::<bool>()).prop_map(
        |(four, ext, ap4, ap6)| {
            let mut add_path = Vec::new();
            if ap4 {
                add_path.push(Family::IPV4_UNICAST);
            }
            if ap6 {
                add_path.push(Family::IPV6_UNICAST);
            }
            Context {
                four_octet_as: four,
                extended_message: ext,
                add_path,
            }
        },
    )
}

fn family() -> impl Strategy<Value = Family> {
    prop_oneof![
        Just(Family::IPV4_UNICAST),
        Just(Family::IPV6_UNICAST),
        (any::<u16>(), any::<u8>()).prop_map(|(afi, safi)| Family { afi, safi }),
    ]
}

fn capability() -> impl Strategy<Value = Capability> {
    prop_oneof![
        family().prop_map(Capability::Multiprotocol),
        Just(Capability::RouteRefresh),
        Just(Capability::ExtendedMessage),
        any::<u32>().prop_map(Capability::FourOctetAs),
        (
            any::<bool>(),
            any::<bool>(),
            0u16..=4095,
            vec((family(), any::<bool>()), 0..4)
        )
            .prop_map(|(restarting, notification, restart_time, fams)| {
                Capability::GracefulRestart(GracefulRestart {
                    restarting,
                    notification,
                    restart_time,
                    families: fams
                        .into_iter()
                        .map(|(family, forwarding_preserved)| GrFamily {
                            family,
                            forwarding_preserved,
                        })
                        .collect(),
                })
            }),
        vec(
            (
                family(),
                prop_oneof![
                    Just(AddPathMode::Receive),
                    Just(AddPathMode::Send),
                    Just(AddPathMode::Both)
                ]
            ),
            1..4
        )
        .prop_map(|f| Capability::AddPath(
            f.into_iter()
                .map(|(family, mode)| AddPathFamily { family, mode })
                .collect()
        )),
        // Codes this codec does not interpret.
        (
            prop_oneof![Just(5u8), Just(70), Just(71), Just(73), 128u8..=255],
            vec(any::<u8>(), 0..40)
        )
            .prop_map(|(code, value)| Capability::Unknown { code, value }),
    ]
}

fn open() -> impl Strategy<Value = Open> {
    (
        any::<u16>(),
        prop_oneof![Just(0u16), 3u16..],
        1u32..,
        // Enough capabilities to need RFC 9072's extended parameters now and then.
        vec(capability(), 0..30),
    )
        .prop_map(|(my_as, hold_time, id, capabilities)| Open {
            my_as,
            hold_time,
            bgp_id: Ipv4Addr::from(id),
            capabilities,
        })
}

fn prefix(v6: bool) -> BoxedStrategy<IpNet> {
    if v6 {
        (any::<u128>(), 0u8..=128)
            .prop_map(|(a, len)| IpNet::V6(Ipv6Net::new(Ipv6Addr::from(a), len).unwrap().trunc()))
            .boxed()
    } else {
        (any::<u32>(), 0u8..=32)
            .prop_map(|(a, len)| IpNet::V4(Ipv4Net::new(Ipv4Addr::from(a), len).unwrap().trunc()))
            .boxed()
    }
}

fn nlri(v6: bool, add_path: bool, max: usize) -> impl Strategy<Value = Vec<Nlri>> {
    vec((prefix(v6), any::<u32>()), 0..max).prop_map(move |v| {
        v.into_iter()
            .map(|(prefix, id)| Nlri {
                prefix,
                path_id: add_path.then_some(id),
            })
            .collect()
    })
}

/// Valid, non-empty AS segments; confederation segments only lead the path, as RFC 5065
/// places them; toward a 2-octet peer they hold 2-octet numbers (AS4_PATH cannot carry them).
fn as_path(four: bool) -> impl Strategy<Value = AsPath> {
    let confed_asn = if four {
        any::<u32>().boxed()
    } else {
        (0u32..=0xffff).boxed()
    };
    let confed = vec(
        (
            prop_oneof![
                Just(SegmentKind::ConfedSequence),
                Just(SegmentKind::ConfedSet)
            ],
            vec(confed_asn, 1..5),
        ),
        0..2,
    );
    let main = vec(
        (
            prop_oneof![Just(SegmentKind::Sequence), Just(SegmentKind::Set)],
            vec(any::<u32>(), 1..40),
        ),
        0..4,
    );
    (confed, main).prop_map(|(c, m)| AsPath {
        segments: c
            .into_iter()
            .chain(m)
            .map(|(kind, asns)| AsSegment { kind, asns })
            .collect(),
    })
}

fn next_hop_v4() -> impl Strategy<Value = Ipv4Addr> {
    any::<u32>()
        .prop_map(Ipv4Addr::from)
        .prop_filter("a usable next hop", |a| {
            !a.is_unspecified() && !a.is_multicast() && !a.is_broadcast()
        })
}

fn attributes(four: bool) -> impl Strategy<Value = PathAttributes> {
    // Toward a 2-octet peer an aggregator with a 2-octet AS other than AS_TRANS means "an old
    // speaker aggregated" and voids AS4_PATH (RFC 6793 §4.2.3), so only 4-octet ones there.
    let aggregator_asn = if four {
        any::<u32>().boxed()
    } else {
        (0x1_0000u32..).boxed()
    };
    (
        (
            option::of(prop_oneof![
                Just(Origin::Igp),
                Just(Origin::Egp),
                Just(Origin::Incomplete)
            ]),
            option::of(as_path(four)),
            option::of(next_hop_v4()),
            option::of(any::<u32>()),
            option::of(any::<u32>()),
            any::<bool>(),
            option::of((aggregator_asn, any::<u32>())),
        ),
        (
            vec(any::<u32>(), 0..5),
            vec(any::<(u32, u32, u32)>(), 0..4),
            option::of(any::<u32>()),
            vec(any::<u32>(), 0..4),
            // Unknown optional transitive attributes: distinct codes this codec does not know.
            proptest::sample::subsequence(vec![11u8, 12, 16, 22, 25, 29, 99, 128, 200, 255], 0..3),
            vec(any::<u8>(), 0..300),
        ),
    )
        .prop_map(
            |(
                (origin, as_path, next_hop, med, local_pref, atomic, agg),
                (comm, large, orig, clusters, codes, value),
            )| {
                PathAttributes {
                    origin,
                    as_path,
                    next_hop,
                    med,
                    local_pref,
                    atomic_aggregate: atomic,
                    aggregator: agg.map(|(asn, a)| Aggregator {
                        asn,
                        address: Ipv4Addr::from(a),
                    }),
                    communities: comm,
                    large_communities: large
                        .into_iter()
                        .map(|(g, l1, l2)| LargeCommunity {
                            global_admin: g,
                            local_data_1: l1,
                            local_data_2: l2,
                        })
                        .collect(),
                    originator_id: orig.map(Ipv4Addr::from),
                    cluster_list: clusters.into_iter().map(Ipv4Addr::from).collect(),
                    unknown: codes
                        .into_iter()
                        .enumerate()
                        .map(|(i, type_code)| RawAttribute {
                            // What we send: optional, transitive, partial.
                            flags: 0xe0,
                            type_code,
                            value: value[..value.len() / (i + 1)].to_vec(),
                        })
                        .collect(),
                }
            },
        )
}

fn update(ctx: &Context) -> impl Strategy<Value = Update> + use<> {
    let ap4 = ctx.add_path(Family::IPV4_UNICAST);
    let ap6 = ctx.add_path(Family::IPV6_UNICAST);
    let mp_reach = option::of(prop_oneof![
        (next_hop_v4(), nlri(false, ap4, 10)).prop_map(|(nh, nlri)| MpReach {
            family: Family::IPV4_UNICAST,
            next_hop: NextHop::V4(nh),
            nlri
        }),
        (
            any::<u128>(),
            option::of(any::<u128>()),
            nlri(true, ap6, 10)
        )
            .prop_map(|(g, l, nlri)| MpReach {
                family: Family::IPV6_UNICAST,
                next_hop: NextHop::V6 {
                    global: Ipv6Addr::from(g),
                    link_local: l.map(Ipv6Addr::from)
                },
                nlri
            }),
    ]);
    let mp_unreach = option::of(prop_oneof![
        nlri(false, ap4, 10).prop_map(|nlri| MpUnreach {
            family: Family::IPV4_UNICAST,
            nlri
        }),
        nlri(true, ap6, 10).prop_map(|nlri| MpUnreach {
            family: Family::IPV6_UNICAST,
            nlri
        }),
    ]);
    (
        nlri(false, ap4, 20),
        attributes(ctx.four_octet_as),
        nlri(false, ap4, 20),
        mp_reach,
        mp_unreach,
    )
        .prop_map(|(withdrawn, mut attributes, nlri, mp_reach, mp_unreach)| {
            // Announcements need ORIGIN and AS_PATH, and NEXT_HOP for IPv4 NLRI (RFC 4271 §5).
            let announces =
                !nlri.is_empty() || mp_reach.as_ref().is_some_and(|m| !m.nlri.is_empty());
            if announces {
                attributes.origin.get_or_insert(Origin::Igp);
                attributes.as_path.get_or_insert_with(AsPath::default);
            }
            if !nlri.is_empty() {
                attributes
                    .next_hop
                    .get_or_insert(Ipv4Addr::new(198, 18, 0, 1));
            }
            Update {
                withdrawn,
                attributes,
                nlri,
                mp_reach,
                mp_unreach,
            }
        })
}

fn message(ctx: &Context) -> impl Strategy<Value = Message> + use<> {
    prop_oneof![
        open().prop_map(Message::Open),
        update(ctx).prop_map(Message::Update),
        (any::<u8>(), any::<u8>(), vec(any::<u8>(), 0..64))
            .prop_map(|(c, s, d)| Message::Notification(Notification::new(c, s, d))),
        Just(Message::Keepalive),
        (family(), any::<u8>())
            .prop_map(|(family, subtype)| Message::RouteRefresh(RouteRefresh { family, subtype })),
    ]
}

fn context_and_message() -> impl Strategy<Value = (Context, Message)> {
    context().prop_flat_map(|ctx| {
        let m = message(&ctx);
        (Just(ctx), m)
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

    #[test]
    fn every_message_decodes_to_itself((ctx, msg) in context_and_message()) {
        let bytes = msg.to_bytes(&ctx).expect("generated messages fit");
        prop_assert_eq!(frame(&bytes, &ctx), Ok(Some(bytes.len())));
        let decoded = decode(&bytes, &ctx).expect("our own message decodes");
        prop_assert!(decoded.discarded.is_empty());
        prop_assert_eq!(decoded.message, msg);
    }

    #[test]
    fn decode_never_panics_on_arbitrary_bytes(ctx in context(), body in vec(any::<u8>(), 0..600), kind in 0u8..7) {
        // A valid header in front, so the body parsers are reached.
        let mut bytes = vec![0xff; 16];
        bytes.extend_from_slice(&u16::try_from(19 + body.len()).unwrap().to_be_bytes());
        bytes.push(kind);
        bytes.extend_from_slice(&body);
        let _ = decode(&bytes, &ctx);
        let _ = frame(&bytes, &ctx);
        let _ = decode(&body, &ctx);
        let _ = frame(&body, &ctx);
    }

    #[test]
    fn decode_never_panics_on_mutated_messages(
        (ctx, msg) in context_and_message(),
        flips in vec((any::<prop::sample::Index>(), any::<u8>()), 1..6),
        cut in any::<prop::sample::Index>(),
        truncate in any::<bool>(),
    ) {
        let mut bytes = msg.to_bytes(&ctx).expect("generated messages fit");
        // Mutate past the marker most of the time, where the parsers are.
        for (at, value) in flips {
            let i = at.index(bytes.len());
            bytes[i] = value;
        }
        if truncate {
            bytes.truncate(cut.index(bytes.len() + 1));
        }
        let _ = frame(&bytes, &ctx);
        if let Ok(d) = decode(&bytes, &ctx) {
            // Whatever decodes must encode again (perhaps to other bytes: canonical flags).
            let _ = d.message.to_bytes(&ctx);
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 500, ..ProptestConfig::default() })]

    /// A stream of messages cut into arbitrary pieces comes out whole and in order.
    #[test]
    fn framing_a_stream_cut_anywhere(
        (ctx, msgs) in context().prop_flat_map(|ctx| {
            let m = vec(message(&ctx), 1..6);
            (Just(ctx), m)
        }),
        cuts in vec(any::<prop::sample::Index>(), 0..10),
    ) {
        let mut stream = Vec::new();
        for m in &msgs {
            stream.extend_from_slice(&m.to_bytes(&ctx).expect("generated messages fit"));
        }
        let mut points: Vec<usize> = cuts.iter().map(|c| c.index(stream.len() + 1)).collect();
        points.push(stream.len());
        points.sort_unstable();
        let mut buf: Vec<u8> = Vec::new();
        let mut out = Vec::new();
        let mut from = 0;
        for to in points {
            buf.extend_from_slice(&stream[from..to]);
            from = to;
            while let Some(len) = frame(&buf, &ctx).expect("valid stream") {
                out.push(decode(&buf[..len], &ctx).expect("valid message").message);
                buf.drain(..len);
            }
        }
        prop_assert!(buf.is_empty());
        prop_assert_eq!(out, msgs);
    }
}
