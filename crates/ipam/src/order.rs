//! The order in which a host tries a pool's blocks when it claims a new one.
//!
//! As in Calico, a host starts at a pseudo-random block seeded by a hash of its name and walks on from
//! there, wrapping around: each host retries the same sequence (so a crash and retry lands on the same
//! block), while different hosts start in different places and rarely race for the same block.

use calico_model::ipam::addr::{block_count, nth_block};
use ipnet::IpNet;

/// FNV-1 32-bit hash (the variant Go's `hash/fnv.New32` computes).
pub fn fnv1_32(data: &[u8]) -> u32 {
    let mut hash: u32 = 0x811c_9dc5;
    for &b in data {
        hash = hash.wrapping_mul(0x0100_0193);
        hash ^= u32::from(b);
    }
    hash
}

/// One step of SplitMix64: a small, well-mixed generator for the start index.
fn splitmix64(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// Every block of `pool` (of `block_prefix`), starting at the host's seeded position and wrapping around.
pub fn candidate_blocks(
    pool: IpNet,
    block_prefix: u8,
    host: &str,
) -> impl Iterator<Item = IpNet> + use<> {
    let count = block_count(pool, block_prefix);
    let mut state = u64::from(fnv1_32(host.as_bytes()));
    let wide = (u128::from(splitmix64(&mut state)) << 64) | u128::from(splitmix64(&mut state));
    let start = if count == 0 { 0 } else { wide % count };
    (0..count).filter_map(move |i| {
        let n = (start + i) % count;
        nth_block(pool, block_prefix, n)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fnv_matches_known_values() {
        // FNV-1 32 of the empty string is the offset basis; of "a" it is 0x050c5d7e.
        assert_eq!(fnv1_32(b""), 0x811c_9dc5);
        assert_eq!(fnv1_32(b"a"), 0x050c_5d7e);
    }

    #[test]
    fn every_block_once_same_order_per_host_different_between_hosts() {
        let pool: IpNet = "198.18.0.0/20".parse().unwrap();
        let a: Vec<IpNet> = candidate_blocks(pool, 26, "node-a").collect();
        assert_eq!(a.len(), 64);
        let mut sorted = a.clone();
        sorted.sort();
        sorted.dedup();
        assert_eq!(sorted.len(), 64);
        assert_eq!(a, candidate_blocks(pool, 26, "node-a").collect::<Vec<_>>());
        let starts: std::collections::BTreeSet<IpNet> = (0..20)
            .filter_map(|i| candidate_blocks(pool, 26, &format!("node-{i}")).next())
            .collect();
        assert!(
            starts.len() > 5,
            "hosts should start at different blocks: {starts:?}"
        );
    }

    #[test]
    fn huge_ipv6_pools_are_walked_lazily() {
        let pool: IpNet = "fd00::/48".parse().unwrap();
        let first: Vec<IpNet> = candidate_blocks(pool, 122, "n").take(3).collect();
        assert_eq!(first.len(), 3);
        assert!(
            first
                .iter()
                .all(|b| pool.contains(b) && b.prefix_len() == 122)
        );
    }

    #[test]
    fn a_block_larger_than_the_pool_yields_nothing() {
        let pool: IpNet = "198.18.0.0/28".parse().unwrap();
        assert_eq!(candidate_blocks(pool, 26, "n").count(), 0);
    }
}
