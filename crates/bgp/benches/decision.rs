//! Decision-process microbenchmark: µs per prefix for the RIB ingesting paths from several
//! peers (paths that differ, then ten equal-cost paths per prefix as in the ingest
//! benchmark), and for `select` alone over a prefix's candidates. Runs in a few seconds:
//! `cargo bench -p calico-bgp --bench decision`.

use std::collections::BTreeMap;
use std::hint::black_box;
use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;
use std::time::Instant;

use calico_bgp::policy::Filter;
use calico_bgp::rib::{NextHopMode, Path, PeerInfo, Rib, RibConfig, Source, select};
use calico_bgp::wire::{AsPath, Nlri, Origin, PathAttributes, Update};
use ipnet::{IpNet, Ipv4Net};

const PREFIXES: u32 = 100_000;
const PEERS: u32 = 4;
const PER_UPDATE: usize = 500;

fn peer(n: u32) -> PeerInfo {
    PeerInfo {
        address: IpAddr::V4(Ipv4Addr::from(0xc612_0100 + n)),
        router_id: Ipv4Addr::from(0xc612_0200 + n),
        asn: 64512,
        ibgp: true,
        rr_client: false,
        next_hop: NextHopMode::Auto,
        self_v4: None,
        self_v6: None,
        import: Filter::default(),
        export: Filter::default(),
        allow_local_as: 0,
    }
}

fn attrs(n: u32) -> PathAttributes {
    PathAttributes {
        origin: Some(Origin::Igp),
        as_path: Some(AsPath::sequence(vec![65000 + n % 2])),
        next_hop: Some(Ipv4Addr::from(0xc612_0300 + n)),
        local_pref: Some(100),
        med: Some(n % 3),
        ..PathAttributes::default()
    }
}

fn prefix(i: u32) -> IpNet {
    // 100.64.0.0/10 cut into /26 blocks, as Calico's IPAM blocks are.
    IpNet::V4(Ipv4Net::new(Ipv4Addr::from(0x6440_0000 + (i << 6)), 26).expect("valid /26"))
}

/// Resident memory of this process in bytes (Linux), for a rough bytes-per-route figure.
fn rss() -> Option<u64> {
    let statm = std::fs::read_to_string("/proc/self/statm").ok()?;
    let pages: u64 = statm.split_whitespace().nth(1)?.parse().ok()?;
    Some(pages * 4096)
}

/// A RIB with iBGP peers 1..=`peers`.
fn rib_with_peers(peers: u32) -> Rib {
    let mut rib = Rib::new(RibConfig {
        local_as: 64512,
        router_id: Ipv4Addr::new(198, 18, 0, 1),
        cluster_id: None,
    });
    for n in 1..=peers {
        rib.set_peer(n, peer(n));
    }
    rib
}

/// Applies `updates` in order: how long that took and how many best-path changes it made.
fn apply_all(rib: &mut Rib, updates: &[(u32, Update)]) -> (std::time::Duration, usize) {
    let start = Instant::now();
    let changes = updates
        .iter()
        .map(|(n, u)| rib.apply_update(*n, u).len())
        .sum();
    (start.elapsed(), changes)
}

fn main() {
    let mut rib = rib_with_peers(PEERS);
    let updates: Vec<(u32, Update)> = (1..=PEERS)
        .flat_map(|n| {
            let all: Vec<Nlri> = (0..PREFIXES).map(|i| Nlri::new(prefix(i))).collect();
            all.chunks(PER_UPDATE)
                .map(|c| {
                    (
                        n,
                        Update {
                            attributes: attrs(n),
                            nlri: c.to_vec(),
                            ..Update::default()
                        },
                    )
                })
                .collect::<Vec<_>>()
        })
        .collect();

    let before = rss();
    let (ingest, mut changes) = apply_all(&mut rib, &updates);
    let paths = f64::from(PREFIXES * PEERS);
    println!(
        "ingest: {PREFIXES} prefixes x {PEERS} peers in {:.3} s: {:.3} µs per path, {:.3} µs per prefix; {changes} best-path changes",
        ingest.as_secs_f64(),
        ingest.as_secs_f64() * 1e6 / paths,
        ingest.as_secs_f64() * 1e6 / f64::from(PREFIXES),
    );

    if let (Some(b), Some(a)) = (before, rss()) {
        println!(
            "resident memory: +{} KiB for {} paths, {:.0} B per path, {:.0} B per prefix",
            a.saturating_sub(b) / 1024,
            PREFIXES * PEERS,
            a.saturating_sub(b) as f64 / paths,
            a.saturating_sub(b) as f64 / f64::from(PREFIXES),
        );
    }
    let start = Instant::now();
    for i in 0..PREFIXES {
        changes += rib.withdraw(1, &[Nlri::new(prefix(i))]).len();
    }
    let w = start.elapsed();
    println!(
        "withdraw of the best path's peer: {:.3} µs per prefix",
        w.as_secs_f64() * 1e6 / f64::from(PREFIXES)
    );

    let peers: BTreeMap<u32, PeerInfo> = (1..=PEERS).map(|n| (n, peer(n))).collect();
    let candidates: Vec<Path> = (1..=PEERS)
        .map(|n| Path {
            source: Source::Peer(n),
            path_id: 0,
            attrs: Arc::new(attrs(n)),
            next_hop: IpAddr::V4(Ipv4Addr::from(0xc612_0300 + n)),
            stale: false,
        })
        .collect();
    let rounds = 1_000_000u32;
    let start = Instant::now();
    for _ in 0..rounds {
        black_box(select(black_box(&candidates), &peers));
    }
    let s = start.elapsed();
    println!(
        "select over {PEERS} candidates: {:.3} µs per prefix",
        s.as_secs_f64() * 1e6 / f64::from(rounds)
    );
    black_box(changes);
    ingest_equal_cost();
}

/// Ten iBGP peers announce the same prefixes with the same attributes (each its own next
/// hop): every prefix ends with ten equal-cost paths, the case of the speaker's 10-peer
/// ingest benchmark.
fn ingest_equal_cost() {
    const EQUAL_PEERS: u32 = 10;
    let mut rib = rib_with_peers(EQUAL_PEERS);
    let all: Vec<Nlri> = (0..PREFIXES).map(|i| Nlri::new(prefix(i))).collect();
    let updates: Vec<(u32, Update)> = all
        .chunks(PER_UPDATE)
        .flat_map(|chunk| {
            (1..=EQUAL_PEERS).map(move |n| {
                let attributes = PathAttributes {
                    origin: Some(Origin::Igp),
                    as_path: Some(AsPath::default()),
                    next_hop: Some(Ipv4Addr::from(0xc612_0100 + n)),
                    local_pref: Some(100),
                    ..PathAttributes::default()
                };
                (
                    n,
                    Update {
                        attributes,
                        nlri: chunk.to_vec(),
                        ..Update::default()
                    },
                )
            })
        })
        .collect();
    let (took, changes) = apply_all(&mut rib, &updates);
    let paths = f64::from(PREFIXES * EQUAL_PEERS);
    println!(
        "ingest, {EQUAL_PEERS} equal-cost paths per prefix: {PREFIXES} prefixes x {EQUAL_PEERS} peers in {:.3} s: {:.3} µs per path; {changes} best-path changes",
        took.as_secs_f64(),
        took.as_secs_f64() * 1e6 / paths,
    );
}
