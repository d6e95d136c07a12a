//! Decision process, Adj-RIB-In/Loc-RIB and export rules, each asserted on hand-built paths.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;

use ipnet::IpNet;

use super::*;
use crate::policy::{Community, FilterRule, MatchOperator, Operation, RuleAction};
use crate::wire::{AsPath, AsSegment, Origin, SegmentKind};

const LOCAL_AS: u32 = 64512;
const ROUTER_ID: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 1);

fn net(s: &str) -> IpNet {
    s.parse().unwrap()
}

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

fn peer(n: u8, asn: u32) -> PeerInfo {
    PeerInfo {
        address: IpAddr::V4(Ipv4Addr::new(198, 18, 1, n)),
        router_id: Ipv4Addr::new(198, 18, 2, n),
        asn,
        ibgp: asn == LOCAL_AS,
        rr_client: false,
        next_hop: NextHopMode::Auto,
        self_v4: Some(ROUTER_ID),
        self_v6: None,
        import: Filter::default(),
        export: Filter::default(),
        allow_local_as: 0,
    }
}

fn attrs(as_path: &[u32]) -> PathAttributes {
    PathAttributes {
        origin: Some(Origin::Igp),
        as_path: Some(AsPath::sequence(as_path.to_vec())),
        ..PathAttributes::default()
    }
}

fn path(source: Source, a: PathAttributes, next_hop: &str) -> Path {
    Path {
        source,
        path_id: 0,
        attrs: Arc::new(a),
        next_hop: ip(next_hop),
        stale: false,
    }
}

fn peers(list: &[(PeerId, PeerInfo)]) -> BTreeMap<PeerId, PeerInfo> {
    list.iter().cloned().collect()
}

/// Index of the best of `paths`.
fn best_of(paths: &[Path], peers: &BTreeMap<PeerId, PeerInfo>) -> usize {
    select(paths, peers).expect("a selection").best
}

// ---- decision process ----

#[test]
fn higher_local_pref_wins_over_a_shorter_path() {
    let ps = peers(&[(1, peer(1, LOCAL_AS)), (2, peer(2, LOCAL_AS))]);
    let a = path(
        Source::Peer(1),
        PathAttributes {
            local_pref: Some(200),
            ..attrs(&[1, 2, 3])
        },
        "198.18.1.1",
    );
    let b = path(
        Source::Peer(2),
        PathAttributes {
            local_pref: Some(100),
            ..attrs(&[1])
        },
        "198.18.1.2",
    );
    assert_eq!(best_of(&[b.clone(), a.clone()], &ps), 1);
    assert_eq!(best_of(&[a, b], &ps), 0);
}

#[test]
fn shorter_as_path_wins_with_sets_counting_one_and_confeds_nothing() {
    let ps = peers(&[(1, peer(1, LOCAL_AS)), (2, peer(2, LOCAL_AS))]);
    // [1 {2 3 4 5}] counts 2; [ (confed 9 9 9) 1 2 3 ] counts 3.
    let with_set = AsPath {
        segments: vec![
            AsSegment {
                kind: SegmentKind::Sequence,
                asns: vec![1],
            },
            AsSegment {
                kind: SegmentKind::Set,
                asns: vec![2, 3, 4, 5],
            },
        ],
    };
    let with_confed = AsPath {
        segments: vec![
            AsSegment {
                kind: SegmentKind::ConfedSequence,
                asns: vec![9, 9, 9],
            },
            AsSegment {
                kind: SegmentKind::Sequence,
                asns: vec![1, 2, 3],
            },
        ],
    };
    let a = path(
        Source::Peer(1),
        PathAttributes {
            as_path: Some(with_confed),
            ..attrs(&[])
        },
        "198.18.1.1",
    );
    let b = path(
        Source::Peer(2),
        PathAttributes {
            as_path: Some(with_set),
            ..attrs(&[])
        },
        "198.18.1.2",
    );
    assert_eq!(best_of(&[a, b], &ps), 1);
}

#[test]
fn lower_origin_wins() {
    let ps = peers(&[(1, peer(1, LOCAL_AS)), (2, peer(2, LOCAL_AS))]);
    let a = path(
        Source::Peer(1),
        PathAttributes {
            origin: Some(Origin::Incomplete),
            ..attrs(&[1])
        },
        "198.18.1.1",
    );
    let b = path(
        Source::Peer(2),
        PathAttributes {
            origin: Some(Origin::Egp),
            ..attrs(&[1])
        },
        "198.18.1.2",
    );
    assert_eq!(best_of(&[a, b], &ps), 1);
}

#[test]
fn med_is_compared_only_within_a_neighbouring_as() {
    let ps = peers(&[
        (1, peer(1, LOCAL_AS)),
        (2, peer(2, LOCAL_AS)),
        (3, peer(3, LOCAL_AS)),
    ]);
    // Same neighbour AS 7: the lower MED wins although its router id is higher.
    let a = path(
        Source::Peer(1),
        PathAttributes {
            med: Some(50),
            ..attrs(&[7])
        },
        "198.18.1.1",
    );
    let b = path(
        Source::Peer(2),
        PathAttributes {
            med: Some(10),
            ..attrs(&[7])
        },
        "198.18.1.2",
    );
    assert_eq!(best_of(&[a.clone(), b.clone()], &ps), 1);
    // A missing MED is the lowest.
    let c = path(Source::Peer(2), attrs(&[7]), "198.18.1.2");
    assert_eq!(best_of(&[a.clone(), c], &ps), 1);
    // Different neighbour ASes: MED is ignored; the lower router id (peer 1) wins.
    let d = path(
        Source::Peer(2),
        PathAttributes {
            med: Some(10),
            ..attrs(&[8])
        },
        "198.18.1.2",
    );
    assert_eq!(best_of(&[a, d], &ps), 0);
}

#[test]
fn med_elimination_is_not_fooled_by_pairwise_cycles() {
    // A (AS 1, MED 100, id .1), B (AS 2, MED 50, id .2), C (AS 1, MED 10, id .3).
    // Pairwise, A beats B (router id), C beats A (MED), B beats C (router id): a cycle.
    // RFC 4271: C removes A within AS 1; then B beats C on router id.
    let ps = peers(&[
        (1, peer(1, LOCAL_AS)),
        (2, peer(2, LOCAL_AS)),
        (3, peer(3, LOCAL_AS)),
    ]);
    let a = path(
        Source::Peer(1),
        PathAttributes {
            med: Some(100),
            ..attrs(&[1])
        },
        "198.18.1.1",
    );
    let b = path(
        Source::Peer(2),
        PathAttributes {
            med: Some(50),
            ..attrs(&[2])
        },
        "198.18.1.2",
    );
    let c = path(
        Source::Peer(3),
        PathAttributes {
            med: Some(10),
            ..attrs(&[1])
        },
        "198.18.1.3",
    );
    for order in [[0, 1, 2], [2, 1, 0], [1, 0, 2], [1, 2, 0]] {
        let all = [a.clone(), b.clone(), c.clone()];
        let paths: Vec<Path> = order.iter().map(|&i| all[i].clone()).collect();
        let best = best_of(&paths, &ps);
        assert_eq!(paths[best].source, Source::Peer(2), "order {order:?}");
    }
}

#[test]
fn ebgp_wins_over_ibgp() {
    let ps = peers(&[(1, peer(1, LOCAL_AS)), (2, peer(2, 65000))]);
    let a = path(Source::Peer(1), attrs(&[65000]), "198.18.1.1");
    let b = path(Source::Peer(2), attrs(&[65000]), "198.18.1.2");
    let s = select(&[a, b], &ps).unwrap();
    assert_eq!(
        s,
        Selection {
            best: 1,
            multipath: smallvec::smallvec![1]
        },
        "the iBGP path is not even a multipath"
    );
}

#[test]
fn router_id_then_originator_id_then_cluster_list_then_address() {
    let ps = peers(&[(1, peer(1, LOCAL_AS)), (2, peer(2, LOCAL_AS))]);
    let a = path(Source::Peer(1), attrs(&[]), "198.18.1.1");
    let b = path(Source::Peer(2), attrs(&[]), "198.18.1.2");
    // Peer 1's router id 198.18.2.1 is lower.
    assert_eq!(best_of(&[b.clone(), a.clone()], &ps), 1);
    // ORIGINATOR_ID replaces the router id: 198.18.2.0 beats peer 1.
    let b_reflected = path(
        Source::Peer(2),
        PathAttributes {
            originator_id: Some(Ipv4Addr::new(198, 18, 2, 0)),
            ..attrs(&[])
        },
        "198.18.1.2",
    );
    assert_eq!(best_of(&[a.clone(), b_reflected], &ps), 1);
    // Same originator: the shorter CLUSTER_LIST wins.
    let o = Some(Ipv4Addr::new(198, 18, 9, 9));
    let long = path(
        Source::Peer(1),
        PathAttributes {
            originator_id: o,
            cluster_list: vec![Ipv4Addr::new(1, 1, 1, 1), Ipv4Addr::new(2, 2, 2, 2)],
            ..attrs(&[])
        },
        "198.18.1.1",
    );
    let short = path(
        Source::Peer(2),
        PathAttributes {
            originator_id: o,
            cluster_list: vec![Ipv4Addr::new(3, 3, 3, 3)],
            ..attrs(&[])
        },
        "198.18.1.2",
    );
    assert_eq!(best_of(&[long, short], &ps), 1);
    // Everything equal but the peer address.
    let mut p3 = peer(3, LOCAL_AS);
    p3.router_id = Ipv4Addr::new(198, 18, 2, 1);
    p3.address = ip("198.18.1.0");
    let ps = peers(&[(1, peer(1, LOCAL_AS)), (3, p3)]);
    let c = path(Source::Peer(3), attrs(&[]), "198.18.1.3");
    assert_eq!(best_of(&[a, c], &ps), 1);
}

#[test]
fn local_origination_and_freshness_come_first() {
    let ps = peers(&[(1, peer(1, LOCAL_AS))]);
    let learned = path(
        Source::Peer(1),
        PathAttributes {
            local_pref: Some(1000),
            ..attrs(&[])
        },
        "198.18.1.1",
    );
    let local = path(Source::Local, attrs(&[]), "0.0.0.0");
    assert_eq!(best_of(&[learned.clone(), local], &ps), 1);
    let ps = peers(&[(1, peer(1, LOCAL_AS)), (2, peer(2, LOCAL_AS))]);
    let stale = Path {
        stale: true,
        ..learned
    };
    let fresh = path(Source::Peer(2), attrs(&[1, 2, 3]), "198.18.1.2");
    assert_eq!(best_of(&[stale, fresh], &ps), 1);
}

#[test]
fn equal_ebgp_paths_form_the_multipath_set() {
    let ps = peers(&[
        (1, peer(1, 65001)),
        (2, peer(2, 65002)),
        (3, peer(3, 65003)),
    ]);
    let a = path(Source::Peer(2), attrs(&[65002, 9]), "198.18.1.2");
    let b = path(Source::Peer(1), attrs(&[65001, 9]), "198.18.1.1");
    let longer = path(Source::Peer(3), attrs(&[65003, 8, 9]), "198.18.1.3");
    let s = select(&[a, b, longer], &ps).unwrap();
    assert_eq!(
        s,
        Selection {
            best: 1,
            multipath: smallvec::smallvec![1, 0]
        }
    );
}

#[test]
fn paths_from_unknown_peers_are_not_candidates() {
    let ps = peers(&[]);
    assert_eq!(
        select(&[path(Source::Peer(9), attrs(&[]), "198.18.1.9")], &ps),
        None
    );
    assert_eq!(select::<Path>(&[], &ps), None);
}

// ---- Adj-RIB-In and Loc-RIB ----

fn rib() -> Rib {
    Rib::new(RibConfig {
        local_as: LOCAL_AS,
        router_id: ROUTER_ID,
        cluster_id: None,
    })
}

fn announce(prefixes: &[&str], a: PathAttributes, next_hop: &str) -> Update {
    Update {
        attributes: PathAttributes {
            next_hop: Some(next_hop.parse().unwrap()),
            ..a
        },
        nlri: prefixes.iter().map(|p| Nlri::new(net(p))).collect(),
        ..Update::default()
    }
}

fn withdrawal(prefixes: &[&str]) -> Update {
    Update {
        withdrawn: prefixes.iter().map(|p| Nlri::new(net(p))).collect(),
        ..Update::default()
    }
}

#[test]
fn announcements_and_withdrawals_move_the_best_path() {
    let mut r = rib();
    r.set_peer(1, peer(1, LOCAL_AS));
    r.set_peer(2, peer(2, LOCAL_AS));
    let c = r.apply_update(1, &announce(&["198.19.0.0/26"], attrs(&[]), "198.18.1.1"));
    assert_eq!(c.len(), 1);
    assert_eq!(c[0].next_hops.as_slice(), [ip("198.18.1.1")]);
    // A better path (higher LOCAL_PREF) from peer 2 takes over.
    let better = PathAttributes {
        local_pref: Some(200),
        ..attrs(&[])
    };
    let c = r.apply_update(2, &announce(&["198.19.0.0/26"], better, "198.18.1.2"));
    assert_eq!(c[0].best.as_ref().map(|p| p.source), Some(Source::Peer(2)));
    // The same again changes nothing.
    let better = PathAttributes {
        local_pref: Some(200),
        ..attrs(&[])
    };
    assert!(
        r.apply_update(2, &announce(&["198.19.0.0/26"], better, "198.18.1.2"))
            .is_empty()
    );
    // Withdrawn: back to peer 1's path, then gone.
    let c = r.apply_update(2, &withdrawal(&["198.19.0.0/26"]));
    assert_eq!(c[0].best.as_ref().map(|p| p.source), Some(Source::Peer(1)));
    let c = r.apply_update(1, &withdrawal(&["198.19.0.0/26"]));
    assert_eq!(
        c,
        vec![BestChange {
            prefix: net("198.19.0.0/26"),
            best: None,
            next_hops: smallvec::smallvec![],
            previous: Some(Source::Peer(1)),
        }]
    );
    assert!(r.best(&net("198.19.0.0/26")).is_none());
    assert_eq!(r.received_count(1), 0);
}

#[test]
fn loops_and_bad_first_as_are_refused_and_withdraw_the_old_path() {
    let mut r = rib();
    r.set_peer(1, peer(1, 65001));
    r.apply_update(
        1,
        &announce(&["198.19.0.0/26"], attrs(&[65001]), "198.18.1.1"),
    );
    assert!(r.best(&net("198.19.0.0/26")).is_some());
    // Our own AS in the path: the new announcement is refused and the old path goes.
    let c = r.apply_update(
        1,
        &announce(&["198.19.0.0/26"], attrs(&[65001, LOCAL_AS]), "198.18.1.1"),
    );
    assert_eq!(c[0].best, None);
    assert_eq!(
        r.check_import(&peer(1, 65001), &attrs(&[65001, LOCAL_AS])),
        Some(Rejected::AsPathLoop)
    );
    // An eBGP path must start with the peer's AS.
    assert_eq!(
        r.check_import(&peer(1, 65001), &attrs(&[65002])),
        Some(Rejected::FirstAsNotPeer)
    );
    assert!(
        r.apply_update(
            1,
            &announce(&["198.19.0.0/26"], attrs(&[65002]), "198.18.1.1")
        )
        .is_empty()
    );
}

#[test]
fn our_as_is_accepted_in_a_path_as_often_as_the_peer_allows() {
    let mut r = rib();
    let from = |allow_local_as| PeerInfo {
        allow_local_as,
        ..peer(1, 65001)
    };
    let once = attrs(&[65001, LOCAL_AS]);
    let twice = attrs(&[65001, LOCAL_AS, 65002, LOCAL_AS]);
    assert_eq!(r.check_import(&from(0), &once), Some(Rejected::AsPathLoop));
    assert_eq!(r.check_import(&from(1), &once), None);
    assert_eq!(r.check_import(&from(1), &twice), Some(Rejected::AsPathLoop));
    assert_eq!(r.check_import(&from(2), &twice), None);
    // In an AS_SET as well.
    let in_set = PathAttributes {
        as_path: Some(AsPath {
            segments: vec![
                AsSegment {
                    kind: SegmentKind::Sequence,
                    asns: vec![65001],
                },
                AsSegment {
                    kind: SegmentKind::Set,
                    asns: vec![LOCAL_AS, 65003],
                },
            ],
        }),
        ..attrs(&[])
    };
    assert_eq!(
        r.check_import(&from(0), &in_set),
        Some(Rejected::AsPathLoop)
    );
    assert_eq!(r.check_import(&from(1), &in_set), None);

    // Held while allowed; dropped when the allowance goes back to 0.
    r.set_peer(1, from(1));
    let c = r.apply_update(1, &announce(&["198.19.0.0/26"], once, "198.18.1.1"));
    assert_eq!(c[0].best.as_ref().map(|p| p.source), Some(Source::Peer(1)));
    r.set_peer(1, from(0));
    let c = r.refilter(1);
    assert_eq!(c.len(), 1);
    assert_eq!(c[0].best, None);
    assert_eq!(r.refused_count(1), 1);
}

#[test]
fn reflection_loops_are_refused() {
    let r = rib();
    let ibgp = peer(1, LOCAL_AS);
    let from_us = PathAttributes {
        originator_id: Some(ROUTER_ID),
        ..attrs(&[])
    };
    assert_eq!(
        r.check_import(&ibgp, &from_us),
        Some(Rejected::OriginatorIsUs)
    );
    let through_us = PathAttributes {
        cluster_list: vec![Ipv4Addr::new(9, 9, 9, 9), ROUTER_ID],
        ..attrs(&[])
    };
    assert_eq!(
        r.check_import(&ibgp, &through_us),
        Some(Rejected::ClusterLoop)
    );
    let mut r = Rib::new(RibConfig {
        cluster_id: Some(Ipv4Addr::new(198, 18, 255, 1)),
        ..r.config().clone()
    });
    r.set_peer(1, ibgp.clone());
    let through_cluster = PathAttributes {
        cluster_list: vec![Ipv4Addr::new(198, 18, 255, 1)],
        ..attrs(&[])
    };
    assert!(
        r.apply_update(
            1,
            &announce(&["198.19.0.0/26"], through_cluster, "198.18.1.1")
        )
        .is_empty()
    );
    assert_eq!(r.check_import(&ibgp, &attrs(&[])), None);
}

#[test]
fn import_filter_and_ebgp_local_pref() {
    let mut r = rib();
    let mut p = peer(1, 65001);
    p.import = Filter {
        rules: vec![FilterRule::new(
            net("198.19.0.0/24"),
            MatchOperator::In,
            RuleAction::Reject,
        )],
    };
    r.set_peer(1, p);
    let a = PathAttributes {
        local_pref: Some(900),
        ..attrs(&[65001])
    };
    let c = r.apply_update(
        1,
        &announce(&["198.19.0.0/26", "198.19.1.0/26"], a, "198.18.1.1"),
    );
    assert_eq!(
        c.iter().map(|c| c.prefix).collect::<Vec<_>>(),
        vec![net("198.19.1.0/26")]
    );
    // LOCAL_PREF from an eBGP peer is not kept.
    assert_eq!(
        r.best(&net("198.19.1.0/26")).unwrap().attrs.local_pref,
        None
    );
}

#[test]
fn add_path_keeps_each_path_identifier() {
    let mut r = rib();
    r.set_peer(1, peer(1, LOCAL_AS));
    let mut u = announce(&[], attrs(&[]), "198.18.1.1");
    u.nlri = vec![
        Nlri {
            prefix: net("198.19.0.0/26"),
            path_id: Some(1),
        },
        Nlri {
            prefix: net("198.19.0.0/26"),
            path_id: Some(2),
        },
    ];
    r.apply_update(1, &u);
    assert_eq!(r.paths(&net("198.19.0.0/26")).len(), 2);
    assert_eq!(r.received_count(1), 2);
    let w = Update {
        withdrawn: vec![Nlri {
            prefix: net("198.19.0.0/26"),
            path_id: Some(1),
        }],
        ..Update::default()
    };
    r.apply_update(1, &w);
    assert_eq!(
        r.paths(&net("198.19.0.0/26"))
            .iter()
            .map(|p| p.path_id)
            .collect::<Vec<_>>(),
        vec![2]
    );
}

#[test]
fn ecmp_next_hops_are_reported_once_each() {
    let mut r = rib();
    r.set_peer(1, peer(1, 65001));
    r.set_peer(2, peer(2, 65002));
    r.set_peer(3, peer(3, 65003));
    r.apply_update(
        1,
        &announce(&["198.19.0.0/26"], attrs(&[65001]), "198.18.1.1"),
    );
    let c = r.apply_update(
        2,
        &announce(&["198.19.0.0/26"], attrs(&[65002]), "198.18.1.2"),
    );
    assert_eq!(
        c[0].next_hops.as_slice(),
        [ip("198.18.1.1"), ip("198.18.1.2")]
    );
    // Peer 3 uses the same next hop as peer 2: one next hop, and no change to report.
    let c = r.apply_update(
        3,
        &announce(&["198.19.0.0/26"], attrs(&[65003]), "198.18.1.2"),
    );
    assert!(c.is_empty());
}

#[test]
fn peer_down_removes_its_paths() {
    let mut r = rib();
    r.set_peer(1, peer(1, LOCAL_AS));
    r.set_peer(2, peer(2, LOCAL_AS));
    r.apply_update(
        1,
        &announce(
            &["198.19.0.0/26", "198.19.1.0/26"],
            attrs(&[]),
            "198.18.1.1",
        ),
    );
    r.apply_update(2, &announce(&["198.19.0.0/26"], attrs(&[]), "198.18.1.2"));
    let mut c = r.peer_down(1);
    c.sort_by_key(|c| c.prefix);
    assert_eq!(c.len(), 2);
    assert_eq!(c[0].best.as_ref().map(|p| p.source), Some(Source::Peer(2)));
    assert_eq!(c[1].best, None);
}

#[test]
fn graceful_restart_stale_paths_stay_until_end_of_rib() {
    let mut r = rib();
    r.set_peer(1, peer(1, LOCAL_AS));
    r.apply_update(
        1,
        &announce(
            &["198.19.0.0/26", "198.19.1.0/26"],
            attrs(&[]),
            "198.18.1.1",
        ),
    );
    let v6 = Update {
        attributes: attrs(&[]),
        mp_reach: Some(crate::wire::MpReach {
            family: Family::IPV6_UNICAST,
            next_hop: NextHop::V6 {
                global: "2001:db8::1".parse().unwrap(),
                link_local: None,
            },
            nlri: vec![Nlri::new(net("2001:db8:1::/48"))],
        }),
        ..Update::default()
    };
    r.apply_update(1, &v6);
    // The peer kept IPv4 forwarding only: IPv6 goes now, IPv4 stays (stale).
    let c = r.mark_stale(1, &[Family::IPV4_UNICAST]);
    assert!(
        c.iter()
            .any(|c| c.prefix == net("2001:db8:1::/48") && c.best.is_none())
    );
    assert!(r.best(&net("198.19.0.0/26")).is_some_and(|p| p.stale));
    // After the restart it re-announces one prefix, then End-of-RIB: the other goes.
    r.apply_update(1, &announce(&["198.19.0.0/26"], attrs(&[]), "198.18.1.1"));
    assert!(r.best(&net("198.19.0.0/26")).is_some_and(|p| !p.stale));
    let c = r.sweep_stale(1, Family::IPV4_UNICAST);
    assert_eq!(
        c,
        vec![BestChange {
            prefix: net("198.19.1.0/26"),
            best: None,
            next_hops: smallvec::smallvec![],
            previous: Some(Source::Peer(1)),
        }]
    );
    assert!(r.best(&net("198.19.0.0/26")).is_some());
}

#[test]
fn local_origination() {
    let mut r = rib();
    let c = r.originate(
        net("198.19.0.0/26"),
        PathAttributes::default(),
        ip("0.0.0.0"),
    );
    let best = c[0].best.as_ref().unwrap();
    assert_eq!(best.source, Source::Local);
    assert_eq!(best.attrs.origin, Some(Origin::Igp));
    assert_eq!(best.attrs.as_path, Some(AsPath::default()));
    let c = r.withdraw_local(net("198.19.0.0/26"));
    assert_eq!(c[0].best, None);
    assert!(r.withdraw_local(net("198.19.0.0/26")).is_empty());
}

// ---- export ----

fn exported(r: &Rib, prefix: &str, best: &Path, to_id: PeerId, to: &PeerInfo) -> Option<Exported> {
    export(r.config(), &net(prefix), best, r.peers(), to_id, to)
}

#[test]
fn never_back_to_the_sender_and_no_ibgp_to_ibgp_without_reflection() {
    let mut r = rib();
    r.set_peer(1, peer(1, LOCAL_AS));
    r.set_peer(2, peer(2, LOCAL_AS));
    let p = path(Source::Peer(1), attrs(&[]), "198.18.1.1");
    assert_eq!(
        exported(&r, "198.19.0.0/26", &p, 1, &peer(1, LOCAL_AS)),
        None
    );
    assert_eq!(
        exported(&r, "198.19.0.0/26", &p, 2, &peer(2, LOCAL_AS)),
        None
    );
}

#[test]
fn reflection_follows_rfc_4456() {
    let mut r = Rib::new(RibConfig {
        cluster_id: Some(Ipv4Addr::new(198, 18, 255, 1)),
        ..rib().config().clone()
    });
    let client = |n| PeerInfo {
        rr_client: true,
        ..peer(n, LOCAL_AS)
    };
    r.set_peer(1, client(1));
    r.set_peer(2, client(2));
    r.set_peer(3, peer(3, LOCAL_AS));
    r.set_peer(4, peer(4, LOCAL_AS));
    let from_client = path(Source::Peer(1), attrs(&[]), "198.18.1.1");
    // Client -> client and client -> non-client: reflected, next hop unchanged.
    for (id, to) in [(2, client(2)), (3, peer(3, LOCAL_AS))] {
        let e = exported(&r, "198.19.0.0/26", &from_client, id, &to).expect("reflected");
        assert_eq!(e.next_hop, ip("198.18.1.1"));
        assert_eq!(e.attrs.originator_id, Some(Ipv4Addr::new(198, 18, 2, 1)));
        assert_eq!(e.attrs.cluster_list, vec![Ipv4Addr::new(198, 18, 255, 1)]);
        assert_eq!(e.attrs.local_pref, Some(100));
    }
    // Non-client -> client only.
    let from_non_client = PathAttributes {
        originator_id: Some(Ipv4Addr::new(10, 0, 0, 1)),
        cluster_list: vec![Ipv4Addr::new(10, 9, 9, 9)],
        ..attrs(&[])
    };
    let p = path(Source::Peer(3), from_non_client, "198.18.1.3");
    let e = exported(&r, "198.19.0.0/26", &p, 2, &client(2)).expect("to a client");
    assert_eq!(
        e.attrs.originator_id,
        Some(Ipv4Addr::new(10, 0, 0, 1)),
        "an existing ORIGINATOR_ID stays"
    );
    assert_eq!(
        e.attrs.cluster_list,
        vec![Ipv4Addr::new(198, 18, 255, 1), Ipv4Addr::new(10, 9, 9, 9)]
    );
    assert_eq!(
        exported(&r, "198.19.0.0/26", &p, 4, &peer(4, LOCAL_AS)),
        None
    );
    // Not back to the originator.
    let to_origin = PathAttributes {
        originator_id: Some(Ipv4Addr::new(198, 18, 2, 2)),
        ..attrs(&[])
    };
    let p = path(Source::Peer(1), to_origin, "198.18.1.1");
    assert_eq!(exported(&r, "198.19.0.0/26", &p, 2, &client(2)), None);
}

#[test]
fn ebgp_export_prepends_sets_next_hop_and_drops_internal_attributes() {
    let mut r = rib();
    r.set_peer(1, peer(1, LOCAL_AS));
    let a = PathAttributes {
        local_pref: Some(300),
        med: Some(5),
        originator_id: Some(Ipv4Addr::new(10, 0, 0, 1)),
        cluster_list: vec![Ipv4Addr::new(10, 0, 0, 2)],
        ..attrs(&[65010])
    };
    let p = path(Source::Peer(1), a, "198.18.1.1");
    let e = exported(&r, "198.19.0.0/26", &p, 7, &peer(7, 65007)).unwrap();
    assert_eq!(e.attrs.as_path, Some(AsPath::sequence([LOCAL_AS, 65010])));
    assert_eq!(e.next_hop, IpAddr::V4(ROUTER_ID));
    assert_eq!(
        (e.attrs.local_pref, e.attrs.med, e.attrs.originator_id),
        (None, None, None)
    );
    assert!(e.attrs.cluster_list.is_empty());
    // next hop keep.
    let keep = PeerInfo {
        next_hop: NextHopMode::Keep,
        ..peer(7, 65007)
    };
    assert_eq!(
        exported(&r, "198.19.0.0/26", &p, 7, &keep)
            .unwrap()
            .next_hop,
        ip("198.18.1.1")
    );
    // Our own MED goes out.
    let local = path(
        Source::Local,
        PathAttributes {
            med: Some(5),
            ..attrs(&[])
        },
        "0.0.0.0",
    );
    let e = exported(&r, "198.19.0.0/26", &local, 7, &peer(7, 65007)).unwrap();
    assert_eq!(
        (e.attrs.med, e.attrs.as_path),
        (Some(5), Some(AsPath::sequence([LOCAL_AS])))
    );
}

#[test]
fn ibgp_export_next_hop_modes() {
    let mut r = rib();
    r.set_peer(1, peer(1, 65001));
    let learned = path(Source::Peer(1), attrs(&[65001]), "198.18.1.1");
    let e = exported(&r, "198.19.0.0/26", &learned, 2, &peer(2, LOCAL_AS)).unwrap();
    assert_eq!(e.next_hop, ip("198.18.1.1"));
    assert_eq!(
        e.attrs.as_path,
        Some(AsPath::sequence([65001])),
        "no prepend inside the AS"
    );
    let self_mode = PeerInfo {
        next_hop: NextHopMode::OurAddress,
        ..peer(2, LOCAL_AS)
    };
    assert_eq!(
        exported(&r, "198.19.0.0/26", &learned, 2, &self_mode)
            .unwrap()
            .next_hop,
        IpAddr::V4(ROUTER_ID)
    );
    // Our own route without a next hop gets our address; with no address for the family, it
    // cannot be sent.
    let local = path(Source::Local, attrs(&[]), "0.0.0.0");
    assert_eq!(
        exported(&r, "198.19.0.0/26", &local, 2, &peer(2, LOCAL_AS))
            .unwrap()
            .next_hop,
        IpAddr::V4(ROUTER_ID)
    );
    let no_v4 = PeerInfo {
        self_v4: None,
        ..peer(2, LOCAL_AS)
    };
    assert_eq!(exported(&r, "198.19.0.0/26", &local, 2, &no_v4), None);
}

#[test]
fn well_known_communities_limit_export() {
    let r = rib();
    let with = |c: u32| {
        path(
            Source::Local,
            PathAttributes {
                communities: vec![1, c],
                ..attrs(&[])
            },
            "198.18.0.1",
        )
    };
    // NO_EXPORT (65535:65281) and NO_EXPORT_SUBCONFED (65535:65283): inside the AS only.
    for c in [0xFFFF_FF01, 0xFFFF_FF03] {
        assert!(exported(&r, "198.19.0.0/26", &with(c), 2, &peer(2, LOCAL_AS)).is_some());
        assert_eq!(
            exported(&r, "198.19.0.0/26", &with(c), 7, &peer(7, 65007)),
            None
        );
    }
    // NO_ADVERTISE (65535:65282): to nobody.
    assert_eq!(
        exported(
            &r,
            "198.19.0.0/26",
            &with(0xFFFF_FF02),
            2,
            &peer(2, LOCAL_AS)
        ),
        None
    );
    assert_eq!(
        exported(&r, "198.19.0.0/26", &with(0xFFFF_FF02), 7, &peer(7, 65007)),
        None
    );
    // Other communities travel.
    let e = exported(&r, "198.19.0.0/26", &with(7), 7, &peer(7, 65007)).unwrap();
    assert_eq!(e.attrs.communities, vec![1, 7]);
}

#[test]
fn export_filter() {
    let r = rib();
    let to = PeerInfo {
        export: Filter {
            rules: vec![FilterRule::new(
                net("198.19.0.0/16"),
                MatchOperator::NotIn,
                RuleAction::Reject,
            )],
        },
        ..peer(2, LOCAL_AS)
    };
    let local = path(Source::Local, attrs(&[]), "198.18.0.1");
    assert!(exported(&r, "198.19.0.0/26", &local, 2, &to).is_some());
    assert_eq!(exported(&r, "10.0.0.0/26", &local, 2, &to), None);
}

#[test]
fn import_filter_operations_change_only_what_their_rule_accepts() {
    let mut r = rib();
    let mut p = peer(1, 65001);
    p.import = Filter {
        rules: vec![FilterRule {
            prefix_length: Some((26, 26)),
            operations: vec![
                Operation::AddCommunity(Community::Standard(65001 << 16 | 100)),
                Operation::PrependAsPath(vec![65009]),
            ],
            ..FilterRule::new(net("198.19.0.0/16"), MatchOperator::In, RuleAction::Accept)
        }],
    };
    r.set_peer(1, p);
    let a = PathAttributes {
        communities: vec![1],
        ..attrs(&[65001])
    };
    r.apply_update(
        1,
        &announce(&["198.19.0.0/26", "198.19.1.0/24"], a, "198.18.1.1"),
    );
    let changed = r.best(&net("198.19.0.0/26")).unwrap();
    assert_eq!(changed.attrs.communities, [1, 65001 << 16 | 100]);
    assert_eq!(
        changed.attrs.as_path,
        Some(AsPath::sequence([65009, 65001]))
    );
    let unchanged = r.best(&net("198.19.1.0/24")).unwrap();
    assert_eq!(unchanged.attrs.communities, [1]);
    assert_eq!(unchanged.attrs.as_path, Some(AsPath::sequence([65001])));
    // The same announcement again changes nothing.
    let a = PathAttributes {
        communities: vec![1],
        ..attrs(&[65001])
    };
    assert!(
        r.apply_update(1, &announce(&["198.19.0.0/26"], a, "198.18.1.1"))
            .is_empty()
    );
}

#[test]
fn a_changed_import_filter_that_changes_routes_is_left_to_the_refresh() {
    let mut r = rib();
    let prepending = |asn| Filter {
        rules: vec![
            FilterRule {
                as_path_prefix: vec![65001],
                operations: vec![Operation::PrependAsPath(vec![asn])],
                ..FilterRule::new(net("0.0.0.0/0"), MatchOperator::In, RuleAction::Accept)
            },
            FilterRule::new(net("0.0.0.0/0"), MatchOperator::In, RuleAction::Reject),
        ],
    };
    let mut p = peer(1, 65001);
    p.import = prepending(65009);
    r.set_peer(1, p.clone());
    let update = || announce(&["198.19.0.0/26"], attrs(&[65001]), "198.18.1.1");
    r.apply_update(1, &update());
    let held = r.best(&net("198.19.0.0/26")).unwrap();
    assert_eq!(held.attrs.as_path, Some(AsPath::sequence([65009, 65001])));
    // What is held no longer starts with 65001, but the route as received does: testing the
    // held path again would drop it; it stays until the peer sends it again.
    p.import = prepending(65008);
    r.set_peer(1, p);
    assert!(r.refilter(1).is_empty());
    let c = r.apply_update(1, &update());
    let best = c[0].best.as_ref().unwrap();
    assert_eq!(best.attrs.as_path, Some(AsPath::sequence([65008, 65001])));
}

#[test]
fn export_filter_sees_the_source_and_changes_what_it_accepts() {
    let r = rib();
    let to = PeerInfo {
        export: Filter {
            rules: vec![
                // Routes learnt from peers are not passed on.
                FilterRule {
                    from_peers_only: true,
                    ..FilterRule::new(net("0.0.0.0/0"), MatchOperator::In, RuleAction::Reject)
                },
                FilterRule {
                    operations: vec![
                        Operation::AddCommunity(Community::Standard(65001 << 16 | 100)),
                        Operation::PrependAsPath(vec![65010, 65011]),
                    ],
                    ..FilterRule::new(net("198.19.0.0/16"), MatchOperator::In, RuleAction::Accept)
                },
            ],
        },
        ..peer(2, 65002)
    };
    let from = peer(1, LOCAL_AS);
    let all = peers(&[(1, from), (2, to.clone())]);
    let local = path(Source::Local, attrs(&[]), "0.0.0.0");
    let e = export(&r.cfg, &net("198.19.0.0/26"), &local, &all, 2, &to).unwrap();
    assert_eq!(e.attrs.communities, [65001 << 16 | 100]);
    // The filter's prepending comes first, then our AS toward the eBGP peer.
    assert_eq!(
        e.attrs.as_path,
        Some(AsPath::sequence([LOCAL_AS, 65010, 65011]))
    );
    // Outside the rule's CIDR: sent unchanged.
    let e = export(&r.cfg, &net("10.0.0.0/26"), &local, &all, 2, &to).unwrap();
    assert!(e.attrs.communities.is_empty());
    assert_eq!(e.attrs.as_path, Some(AsPath::sequence([LOCAL_AS])));
    // A route from a peer is kept back.
    let learnt = path(Source::Peer(1), attrs(&[]), "198.18.1.1");
    assert_eq!(
        export(&r.cfg, &net("198.19.0.0/26"), &learnt, &all, 2, &to),
        None
    );
}

mod properties {
    use super::*;
    use proptest::prelude::*;
    use std::collections::HashMap;

    /// Attributes from a small domain, so that ties happen often.
    fn small_attrs() -> impl Strategy<Value = PathAttributes> {
        (
            prop::sample::select(vec![None, Some(100u32), Some(200)]),
            prop::collection::vec(prop::sample::select(vec![65001u32, 65002, 65003]), 0..3),
            prop::sample::select(vec![Origin::Igp, Origin::Egp, Origin::Incomplete]),
            prop::sample::select(vec![None, Some(0u32), Some(10), Some(20)]),
            prop::sample::select(vec![
                None,
                Some(Ipv4Addr::new(198, 18, 7, 1)),
                Some(Ipv4Addr::new(198, 18, 7, 2)),
            ]),
            0usize..3,
        )
            .prop_map(|(local_pref, path, origin, med, originator_id, clusters)| {
                PathAttributes {
                    local_pref,
                    as_path: Some(AsPath::sequence(path)),
                    origin: Some(origin),
                    med,
                    originator_id,
                    cluster_list: (0..clusters)
                        .map(|i| Ipv4Addr::new(10, 0, 0, i as u8))
                        .collect(),
                    ..PathAttributes::default()
                }
            })
    }

    /// Peers 1-3 iBGP, 4-6 eBGP (AS 65001-65003).
    fn test_peers() -> BTreeMap<PeerId, PeerInfo> {
        (1u8..=6)
            .map(|n| {
                (
                    PeerId::from(n),
                    peer(
                        n,
                        if n <= 3 {
                            LOCAL_AS
                        } else {
                            65000 + u32::from(n) - 3
                        },
                    ),
                )
            })
            .collect()
    }

    fn candidate() -> impl Strategy<Value = Path> {
        (1u32..=6, small_attrs(), any::<bool>(), 0u32..2).prop_map(|(p, mut a, stale, path_id)| {
            if p > 3 {
                // An eBGP path starts with its peer's AS.
                let asn = 65000 + p - 3;
                a.as_path.get_or_insert_with(AsPath::default).prepend(asn);
            }
            Path {
                source: Source::Peer(p),
                path_id,
                attrs: Arc::new(a),
                next_hop: IpAddr::V4(Ipv4Addr::new(198, 18, 1, p as u8)),
                stale,
            }
        })
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 4000, ..ProptestConfig::default() })]

        /// Paths added one at a time, each placed by `place_new` where it can be, leave the
        /// same chosen paths in the same order as the full decision over all of them.
        #[test]
        fn placing_added_paths_agrees_with_the_full_decision(
            paths in prop::collection::vec(candidate(), 1..10),
        ) {
            let peers = test_peers();
            let mut dest = Dest::default();
            let mut seen = std::collections::HashSet::new();
            for p in paths {
                if !seen.insert((p.source, p.path_id)) {
                    continue;
                }
                let stored = Stored {
                    route: Arc::new(Route {
                        source: p.source,
                        attrs: Arc::clone(&p.attrs),
                        next_hop: p.next_hop,
                        stale: p.stale,
                    }),
                    path_id: p.path_id,
                };
                dest.modify(|paths| {
                    paths.push(stored);
                    Outcome::Added
                });
                dest.choose_added(&peers);
                let all = dest.paths();
                let expected: Vec<(Source, u32)> = select(all, &peers)
                    .map(|s| s.multipath.iter().map(|&i| (all[i].route.source, all[i].path_id)).collect())
                    .unwrap_or_default();
                let got: Vec<(Source, u32)> =
                    dest.chosen().iter().map(|p| (p.route.source, p.path_id)).collect();
                prop_assert_eq!(got, expected);
            }
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

        #[test]
        fn selection_does_not_depend_on_candidate_order(
            paths in prop::collection::vec(candidate(), 1..8),
            seed in any::<prop::sample::Index>(),
        ) {
            // A prefix holds one path per source and path identifier.
            let mut paths = paths;
            let mut seen = std::collections::HashSet::new();
            paths.retain(|p| seen.insert((p.source, p.path_id)));
            let ps = test_peers();
            let s = select(&paths, &ps).unwrap();
            let mut rotated = paths.clone();
            rotated.rotate_left(seed.index(paths.len()));
            rotated.reverse();
            let r = select(&rotated, &ps).unwrap();
            prop_assert_eq!(&rotated[r.best], &paths[s.best]);
            let mut a: Vec<&Path> = s.multipath.iter().map(|&i| &paths[i]).collect();
            let mut b: Vec<&Path> = r.multipath.iter().map(|&i| &rotated[i]).collect();
            a.sort_by_key(|p| (p.source, p.path_id, p.next_hop));
            b.sort_by_key(|p| (p.source, p.path_id, p.next_hop));
            prop_assert_eq!(a, b);
            prop_assert_eq!(s.multipath[0], s.best);
        }

        #[test]
        fn the_best_has_the_highest_preference_among_fresh_paths(paths in prop::collection::vec(candidate(), 1..8)) {
            let ps = test_peers();
            let s = select(&paths, &ps).unwrap();
            let best = &paths[s.best];
            let pref = |p: &Path| p.attrs.local_pref.unwrap_or(100);
            let any_fresh = paths.iter().any(|p| !p.stale);
            prop_assert_eq!(best.stale, !any_fresh);
            let top = paths.iter().filter(|p| p.stale == best.stale).map(pref).max().unwrap();
            prop_assert_eq!(pref(best), top);
            let shortest = paths
                .iter()
                .filter(|p| p.stale == best.stale && pref(p) == top)
                .map(|p| p.attrs.as_path.as_ref().unwrap().decision_len())
                .min()
                .unwrap();
            prop_assert_eq!(best.attrs.as_path.as_ref().unwrap().decision_len(), shortest);
            // Every multipath member ties with the best up to the eBGP/iBGP step.
            for &i in &s.multipath {
                let p = &paths[i];
                prop_assert_eq!(pref(p), pref(best));
                prop_assert_eq!(p.attrs.origin, best.attrs.origin);
                prop_assert_eq!(p.stale, best.stale);
            }
        }
    }

    #[derive(Clone, Debug)]
    enum Op {
        Announce {
            peer: PeerId,
            prefix: usize,
            attrs: PathAttributes,
            hop: u8,
        },
        Withdraw {
            peer: PeerId,
            prefix: usize,
        },
        PeerDown(PeerId),
        Originate(usize),
        WithdrawLocal(usize),
    }

    const PREFIXES: [&str; 4] = [
        "198.19.0.0/26",
        "198.19.0.64/26",
        "198.19.1.0/24",
        "2001:db8:1::/48",
    ];

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            6 => (1u32..=6, 0usize..4, small_attrs(), 1u8..4).prop_map(|(peer, prefix, mut attrs, hop)| {
                if peer > 3 {
                    attrs.as_path.get_or_insert_with(AsPath::default).prepend(65000 + peer - 3);
                }
                Op::Announce { peer, prefix, attrs, hop }
            }),
            3 => (1u32..=6, 0usize..4).prop_map(|(peer, prefix)| Op::Withdraw { peer, prefix }),
            1 => (1u32..=6).prop_map(Op::PeerDown),
            1 => (0usize..4).prop_map(Op::Originate),
            1 => (0usize..4).prop_map(Op::WithdrawLocal),
        ]
    }

    fn update_for(prefix: IpNet, attrs: PathAttributes, hop: u8) -> Update {
        match prefix {
            IpNet::V4(_) => Update {
                attributes: PathAttributes {
                    next_hop: Some(Ipv4Addr::new(198, 18, 3, hop)),
                    ..attrs
                },
                nlri: vec![Nlri::new(prefix)],
                ..Update::default()
            },
            IpNet::V6(_) => Update {
                attributes: attrs,
                mp_reach: Some(crate::wire::MpReach {
                    family: Family::IPV6_UNICAST,
                    next_hop: NextHop::V6 {
                        global: format!("2001:db8::{hop}").parse().unwrap(),
                        link_local: None,
                    },
                    nlri: vec![Nlri::new(prefix)],
                }),
                ..Update::default()
            },
        }
    }

    /// A reflector (cluster id = router id) with peers 1.. of the given (iBGP, RR client)
    /// roles (`roles[0]` unused), holding one path to 198.19.0.0/26: originated when `from` is
    /// 0, else from peer `from`, with ORIGINATOR_ID the router id of peer `originator`.
    fn reflector_holding_one_path(
        roles: &[(bool, bool)],
        from: u8,
        originator: Option<u8>,
        mut a: PathAttributes,
    ) -> (Rib, IpNet) {
        let mut r = Rib::new(RibConfig {
            local_as: LOCAL_AS,
            router_id: ROUTER_ID,
            cluster_id: Some(ROUTER_ID),
        });
        for (n, (ibgp, rr_client)) in roles.iter().enumerate().skip(1) {
            let n = n as u8;
            let mut info = peer(
                n,
                if *ibgp {
                    LOCAL_AS
                } else {
                    65000 + u32::from(n)
                },
            );
            info.rr_client = *rr_client && *ibgp;
            r.set_peer(PeerId::from(n), info);
        }
        let prefix = net("198.19.0.0/26");
        a.originator_id = originator.map(|n| Ipv4Addr::new(198, 18, 2, n));
        if from == 0 {
            r.originate(prefix, a, ip("198.18.0.1"));
        } else {
            let update = Update {
                attributes: PathAttributes {
                    next_hop: Some(Ipv4Addr::new(198, 18, 1, from)),
                    ..a
                },
                nlri: vec![Nlri::new(prefix)],
                ..Update::default()
            };
            r.apply_update(PeerId::from(from), &update);
        }
        (r, prefix)
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

        /// Exports shared through an `ExportCache` across the peers of one pass are exactly
        /// what each peer gets computed on its own, whatever the peers' roles, the path's
        /// source and its ORIGINATOR_ID.
        #[test]
        fn shared_exports_are_what_each_peer_gets_on_its_own(
            roles in prop::collection::vec((any::<bool>(), any::<bool>()), 6),
            from in 0u8..6,
            originator in prop::option::of(1u8..6),
            order in Just((1u8..6).collect::<Vec<u8>>()).prop_shuffle(),
            a in small_attrs(),
        ) {
            let (r, prefix) = reflector_holding_one_path(&roles, from, originator, a);
            let interner = crate::rib::out::ExportInterner::default();
            let mut cache = ExportCache::default();
            for to in order {
                let to = PeerId::from(to);
                let mut shared_out = AdjRibOut::sharing(&interner);
                let shared = r.sync_peer_shared(to, [prefix], &mut shared_out, &mut cache);
                let own: Vec<OutChange> = r
                    .exported(to, &prefix)
                    .map(|e| OutChange::Announce(prefix, Arc::new(e)))
                    .into_iter()
                    .collect();
                prop_assert_eq!(shared, own, "peer {}", to);
            }
        }

        /// `may_export`'s shortcut never hides a route `export` would send: whenever it says
        /// no, the peer is sent nothing.
        #[test]
        fn may_export_says_no_only_when_nothing_is_sent(
            roles in prop::collection::vec((any::<bool>(), any::<bool>()), 4),
            from in 0u8..4,
            to in 1u8..4,
            originator in prop::option::of(1u8..4),
            a in small_attrs(),
        ) {
            let (r, prefix) = reflector_holding_one_path(&roles, from, originator, a);
            let best = r.best(&prefix);
            let to = PeerId::from(to);
            if !r.may_export(to, best.as_ref().map(|p| p.source)) {
                prop_assert!(r.exported(to, &prefix).is_none());
            }
        }
    }

    proptest! {
        /// The in-place reorder of a prefix's paths moves every item where the order says.
        #[test]
        fn reorder_puts_each_item_where_the_order_says(
            order in (1usize..40).prop_flat_map(|n| Just((0..n).collect::<Vec<usize>>()).prop_shuffle())
        ) {
            let items: Vec<String> = (0..order.len()).map(|i| format!("path {i}")).collect();
            let mut moved = items.clone();
            let mut scratch = order.clone();
            reorder(&mut moved, &mut scratch);
            for (i, &from) in order.iter().enumerate() {
                prop_assert_eq!(&moved[i], &items[from]);
            }
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 1000, ..ProptestConfig::default() })]

        /// After any sequence of operations the RIB holds exactly the paths a plain model
        /// holds, and replaying the reported changes gives the RIB's own best paths.
        #[test]
        fn rib_matches_a_model_and_its_change_stream(ops in prop::collection::vec(op(), 1..40)) {
            let mut r = rib();
            for (id, info) in test_peers() {
                r.set_peer(id, info);
            }
            let mut model: HashMap<(Source, IpNet), ()> = HashMap::new();
            let mut view: HashMap<IpNet, (Path, Vec<IpAddr>)> = HashMap::new();
            for op in ops {
                let changes = match op {
                    Op::Announce { peer, prefix, attrs, hop } => {
                        let prefix = net(PREFIXES[prefix]);
                        model.insert((Source::Peer(peer), prefix), ());
                        r.apply_update(peer, &update_for(prefix, attrs, hop))
                    }
                    Op::Withdraw { peer, prefix } => {
                        let prefix = net(PREFIXES[prefix]);
                        model.remove(&(Source::Peer(peer), prefix));
                        r.withdraw(peer, &[Nlri::new(prefix)])
                    }
                    Op::PeerDown(peer) => {
                        model.retain(|(s, _), _| *s != Source::Peer(peer));
                        r.peer_down(peer)
                    }
                    Op::Originate(prefix) => {
                        let prefix = net(PREFIXES[prefix]);
                        model.insert((Source::Local, prefix), ());
                        r.originate(prefix, PathAttributes::default(), ip("198.18.0.1"))
                    }
                    Op::WithdrawLocal(prefix) => {
                        let prefix = net(PREFIXES[prefix]);
                        model.remove(&(Source::Local, prefix));
                        r.withdraw_local(prefix)
                    }
                };
                for c in changes {
                    // `previous` names the source of the best path the stream showed before.
                    prop_assert_eq!(c.previous, view.get(&c.prefix).map(|(p, _)| p.source));
                    match c.best {
                        Some(best) => {
                            prop_assert!(!c.next_hops.is_empty());
                            prop_assert_eq!(c.next_hops[0], best.next_hop);
                            view.insert(c.prefix, (best, c.next_hops.into_vec()));
                        }
                        None => {
                            prop_assert!(view.remove(&c.prefix).is_some(), "withdrawal of an unknown prefix");
                        }
                    }
                }
                                for peer in 1..=6 {
                    for family in [Family::IPV4_UNICAST, Family::IPV6_UNICAST] {
                        let in_model = model
                            .keys()
                            .filter(|(s, p)| *s == Source::Peer(peer) && Nlri::new(*p).family() == family)
                            .count();
                        prop_assert_eq!(r.received_count_of(peer, family), in_model);
                    }
                }
                for p in PREFIXES {
                    let prefix = net(p);
                    let mut held: Vec<Source> = r.paths(&prefix).iter().map(|p| p.source).collect();
                    held.sort();
                    let mut expected: Vec<Source> =
                        model.keys().filter(|(_, q)| *q == prefix).map(|(s, _)| *s).collect();
                    expected.sort();
                    prop_assert_eq!(held, expected);
                    prop_assert_eq!(r.best(&prefix), view.get(&prefix).map(|(p, _)| p.clone()));
                    // A local origination always wins.
                    if model.contains_key(&(Source::Local, prefix)) {
                        prop_assert_eq!(r.best(&prefix).map(|p| p.source), Some(Source::Local));
                    }
                }
            }
        }
    }
}

// ---- Adj-RIB-Out and packing ----

fn exp(a: PathAttributes, nh: &str) -> Exported {
    Exported {
        attrs: a,
        next_hop: ip(nh),
    }
}

#[test]
fn adj_rib_out_sends_only_differences() {
    let mut out = AdjRibOut::default();
    let e = exp(attrs(&[LOCAL_AS]), "198.18.0.1");
    assert_eq!(
        out.set(net("198.19.0.0/26"), Some(e.clone())),
        Some(OutChange::Announce(
            net("198.19.0.0/26"),
            Arc::new(e.clone())
        ))
    );
    assert_eq!(out.set(net("198.19.0.0/26"), Some(e.clone())), None);
    let e2 = exp(attrs(&[LOCAL_AS, 1]), "198.18.0.1");
    assert!(out.set(net("198.19.0.0/26"), Some(e2)).is_some());
    assert_eq!(
        out.set(net("198.19.1.0/26"), None),
        None,
        "nothing to withdraw"
    );
    assert_eq!(
        out.set(net("198.19.0.0/26"), None),
        Some(OutChange::Withdraw(net("198.19.0.0/26")))
    );
    assert!(out.is_empty());
}

#[test]
fn packing_splits_at_the_message_size() {
    // 1000 host routes withdrawn: 5 bytes each, 4073 bytes of room per UPDATE -> 2 UPDATEs.
    let changes: Vec<OutChange> = (0..1000u32)
        .map(|i| {
            OutChange::Withdraw(IpNet::V4(
                ipnet::Ipv4Net::new(Ipv4Addr::from(0xc613_0000 + i), 32).unwrap(),
            ))
        })
        .collect();
    let ctx = crate::wire::Context::default();
    let p = pack(&changes, &ctx);
    assert_eq!(p.updates.len(), 2);
    for u in &p.updates {
        let bytes = crate::wire::Message::Update(u.clone())
            .to_bytes(&ctx)
            .unwrap();
        assert!(bytes.len() <= 4096);
    }
    assert_eq!(
        p.updates.iter().map(|u| u.withdrawn.len()).sum::<usize>(),
        1000
    );
    // With extended messages one is enough.
    let ext = crate::wire::Context {
        extended_message: true,
        ..ctx
    };
    assert_eq!(pack(&changes, &ext).updates.len(), 1);
}

#[test]
fn packing_groups_by_attributes_and_reports_what_cannot_be_sent() {
    // Equal exports are one shared allocation, as the interner makes them.
    let a = Arc::new(exp(attrs(&[LOCAL_AS]), "198.18.0.1"));
    let b = Arc::new(exp(attrs(&[LOCAL_AS, 7]), "198.18.0.1"));
    let v6_hop = Arc::new(exp(attrs(&[LOCAL_AS]), "2001:db8::1"));
    let changes = vec![
        OutChange::Announce(net("198.19.0.0/26"), a.clone()),
        OutChange::Announce(net("198.19.1.0/26"), b),
        OutChange::Announce(net("198.19.2.0/26"), a),
        OutChange::Announce(net("2001:db8:1::/48"), v6_hop.clone()),
        OutChange::Announce(net("198.19.3.0/26"), v6_hop),
    ];
    let p = pack(&changes, &crate::wire::Context::default());
    assert_eq!(p.updates.len(), 3);
    assert_eq!(
        p.updates[0].nlri,
        vec![
            Nlri::new(net("198.19.0.0/26")),
            Nlri::new(net("198.19.2.0/26"))
        ]
    );
    assert_eq!(
        p.updates[0].attributes.next_hop,
        Some(Ipv4Addr::new(198, 18, 0, 1))
    );
    assert_eq!(
        p.updates[2].mp_reach.as_ref().unwrap().nlri,
        vec![Nlri::new(net("2001:db8:1::/48"))]
    );
    assert_eq!(p.unsendable, vec![net("198.19.3.0/26")]);
}

#[test]
fn a_new_session_gets_the_table_then_end_of_rib_and_later_only_changes() {
    let mut r = rib();
    r.set_peer(1, peer(1, 65001));
    r.set_peer(2, peer(2, LOCAL_AS));
    r.set_peer(3, peer(3, LOCAL_AS));
    r.apply_update(
        1,
        &announce(
            &["198.19.0.0/26", "198.19.1.0/26"],
            attrs(&[65001]),
            "198.18.1.1",
        ),
    );
    r.apply_update(3, &announce(&["198.19.2.0/26"], attrs(&[]), "198.18.1.3"));
    r.originate(
        net("198.19.9.0/26"),
        PathAttributes::default(),
        ip("0.0.0.0"),
    );
    let ctx = crate::wire::Context {
        four_octet_as: true,
        ..Default::default()
    };
    let mut out = AdjRibOut::default();
    let p = r.initial_updates(
        2,
        &[Family::IPV4_UNICAST, Family::IPV6_UNICAST],
        &mut out,
        &ctx,
    );
    // Peer 3's iBGP route is not for iBGP peer 2 (no reflection).
    let announced: Vec<IpNet> = p
        .updates
        .iter()
        .flat_map(|u| u.nlri.iter().map(|n| n.prefix))
        .collect();
    assert_eq!(announced.len(), 3);
    for want in ["198.19.0.0/26", "198.19.1.0/26", "198.19.9.0/26"] {
        assert!(announced.contains(&net(want)), "{want} missing");
    }
    let n = p.updates.len();
    assert_eq!(
        p.updates[n - 2].end_of_rib_family(),
        Some(Family::IPV4_UNICAST)
    );
    assert_eq!(
        p.updates[n - 1].end_of_rib_family(),
        Some(Family::IPV6_UNICAST)
    );
    assert_eq!(out.len(), 3);
    // Later: peer 1 withdraws one prefix; peer 2 is told exactly that.
    let changes = r.apply_update(1, &withdrawal(&["198.19.1.0/26"]));
    let sent = r.sync_peer(2, changes.iter().map(|c| c.prefix), &mut out);
    assert_eq!(sent, vec![OutChange::Withdraw(net("198.19.1.0/26"))]);
    // Peer 1 itself never hears its own routes back.
    let mut out1 = AdjRibOut::default();
    let p = r.initial_updates(1, &[Family::IPV4_UNICAST], &mut out1, &ctx);
    let to_1: Vec<IpNet> = p
        .updates
        .iter()
        .flat_map(|u| u.nlri.iter().map(|n| n.prefix))
        .collect();
    assert_eq!(to_1, vec![net("198.19.2.0/26"), net("198.19.9.0/26")]);
}

mod packing_properties {
    use super::*;
    use crate::wire::{Context, Message, RawAttribute, decode};
    use proptest::prelude::*;
    use std::collections::BTreeSet;

    fn prefix() -> impl Strategy<Value = IpNet> {
        prop_oneof![
            (any::<u32>(), 8u8..=32).prop_map(|(a, l)| IpNet::V4(
                ipnet::Ipv4Net::new(Ipv4Addr::from(a), l).unwrap().trunc()
            )),
            (any::<u128>(), 16u8..=128)
                .prop_map(|(a, l)| IpNet::V6(ipnet::Ipv6Net::new(a.into(), l).unwrap().trunc())),
        ]
    }

    fn exported() -> impl Strategy<Value = Exported> {
        (0u32..4, 0usize..3000, any::<bool>()).prop_map(|(asn, filler, v6)| {
            let mut a = attrs(&[LOCAL_AS, asn]);
            if filler > 0 {
                // Large attributes leave little room for prefixes.
                a.unknown = vec![RawAttribute {
                    flags: 0xe0,
                    type_code: 99,
                    value: vec![7; filler],
                }];
            }
            exp(a, if v6 { "2001:db8::1" } else { "198.18.0.1" })
        })
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 300, ..ProptestConfig::default() })]

        #[test]
        fn packed_updates_fit_and_carry_exactly_the_changes(
            announced in prop::collection::btree_map(prefix(), exported(), 0..300),
            withdrawn in prop::collection::btree_set(prefix(), 0..300),
            ext in any::<bool>(),
            ap4 in any::<bool>(),
            ap6 in any::<bool>(),
        ) {
            let mut add_path = Vec::new();
            if ap4 { add_path.push(Family::IPV4_UNICAST); }
            if ap6 { add_path.push(Family::IPV6_UNICAST); }
            let ctx = Context { four_octet_as: true, extended_message: ext, add_path };
            let interner = crate::rib::out::ExportInterner::default();
            let withdrawn: BTreeSet<IpNet> = withdrawn.into_iter().filter(|p| !announced.contains_key(p)).collect();
            let mut changes: Vec<OutChange> =
                announced.iter().map(|(p, e)| OutChange::Announce(*p, interner.intern(e))).collect();
            changes.extend(withdrawn.iter().map(|p| OutChange::Withdraw(*p)));
            let packed = pack(&changes, &ctx);

            let mut got_announced = std::collections::BTreeMap::new();
            let mut got_withdrawn = BTreeSet::new();
            for u in &packed.updates {
                let bytes = Message::Update(u.clone()).to_bytes(&ctx).expect("packed UPDATEs encode");
                prop_assert!(bytes.len() <= ctx.max_message_len());
                let Message::Update(d) = decode(&bytes, &ctx).expect("and decode").message else {
                    panic!("not an UPDATE")
                };
                got_withdrawn.extend(d.withdrawn.iter().map(|n| n.prefix));
                if let Some(mp) = &d.mp_unreach { got_withdrawn.extend(mp.nlri.iter().map(|n| n.prefix)); }
                let bare = PathAttributes { next_hop: None, ..d.attributes.clone() };
                if let Some(nh) = d.attributes.next_hop {
                    for n in &d.nlri {
                        got_announced.insert(n.prefix, Exported { attrs: bare.clone(), next_hop: IpAddr::V4(nh) });
                    }
                }
                if let Some(mp) = &d.mp_reach {
                    let NextHop::V6 { global, .. } = mp.next_hop else { panic!("IPv6 next hop expected") };
                    for n in &mp.nlri {
                        got_announced.insert(n.prefix, Exported { attrs: bare.clone(), next_hop: IpAddr::V6(global) });
                    }
                }
            }
            prop_assert_eq!(got_withdrawn, withdrawn);
            let mut expected = announced.clone();
            for p in &packed.unsendable {
                let e = expected.remove(p).expect("only announced prefixes are unsendable");
                prop_assert_ne!(e.next_hop.is_ipv4(), p.addr().is_ipv4(), "left out although sendable");
            }
            prop_assert_eq!(got_announced, expected);
        }
    }
}
