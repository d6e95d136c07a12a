//! Address arithmetic over IPv4 and IPv6 alike, as offsets from a prefix's first address.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use ipnet::{IpNet, Ipv4Net, Ipv6Net};

fn to_u128(ip: IpAddr) -> u128 {
    match ip {
        IpAddr::V4(v4) => u128::from(u32::from(v4)),
        IpAddr::V6(v6) => u128::from(v6),
    }
}

fn max_prefix(net: IpNet) -> u8 {
    match net {
        IpNet::V4(_) => 32,
        IpNet::V6(_) => 128,
    }
}

/// Number of addresses in `net` (saturating for an IPv6 /0).
pub fn net_size(net: IpNet) -> u128 {
    let host_bits = u32::from(max_prefix(net) - net.prefix_len());
    1u128.checked_shl(host_bits).unwrap_or(u128::MAX)
}

/// The `n`th address of `net`, if it is inside.
pub fn nth_addr(net: IpNet, n: u128) -> Option<IpAddr> {
    if n >= net_size(net) {
        return None;
    }
    let v = to_u128(net.network()).checked_add(n)?;
    Some(match net {
        IpNet::V4(_) => IpAddr::V4(Ipv4Addr::from(u32::try_from(v).ok()?)),
        IpNet::V6(_) => IpAddr::V6(Ipv6Addr::from(v)),
    })
}

/// Offset of `ip` from the start of `net`, if `net` contains it.
pub fn offset_of(net: IpNet, ip: IpAddr) -> Option<u128> {
    if !net.contains(&ip) {
        return None;
    }
    Some(to_u128(ip) - to_u128(net.network()))
}

/// The prefix of length `prefix_len` containing `ip`.
pub fn containing(ip: IpAddr, prefix_len: u8) -> Option<IpNet> {
    let net = match ip {
        IpAddr::V4(v4) => IpNet::V4(Ipv4Net::new(v4, prefix_len).ok()?),
        IpAddr::V6(v6) => IpNet::V6(Ipv6Net::new(v6, prefix_len).ok()?),
    };
    Some(net.trunc())
}

/// How many blocks of `block_prefix` fit in `pool` (0 if the block is bigger than the pool).
pub fn block_count(pool: IpNet, block_prefix: u8) -> u128 {
    if block_prefix < pool.prefix_len() || block_prefix > max_prefix(pool) {
        return 0;
    }
    1u128
        .checked_shl(u32::from(block_prefix - pool.prefix_len()))
        .unwrap_or(u128::MAX)
}

/// The `n`th block of `block_prefix` inside `pool`.
pub fn nth_block(pool: IpNet, block_prefix: u8, n: u128) -> Option<IpNet> {
    let host_bits = u32::from(max_prefix(pool) - block_prefix);
    let offset = n.checked_mul(1u128.checked_shl(host_bits)?)?;
    let first = nth_addr(pool, offset)?;
    containing(first, block_prefix)
}

/// The same address as a host prefix (/32 or /128): what the pod gets.
pub fn host_net(ip: IpAddr) -> IpNet {
    IpNet::from(ip)
}

/// The block-mask form of an address, e.g. `10.244.1.5/26`, as Calico's IPAM returns it.
pub fn with_prefix(ip: IpAddr, prefix_len: u8) -> IpNet {
    IpNet::new(ip, prefix_len).unwrap_or_else(|_| IpNet::from(ip))
}

/// A key-safe form of a CIDR: `/` replaced by `-` (and `:` kept), as in Calico's etcd keys.
pub fn cidr_key(net: IpNet) -> String {
    net.to_string().replace('/', "-")
}

/// Inverse of [`cidr_key`].
pub fn parse_cidr_key(s: &str) -> Option<IpNet> {
    let (addr, len) = s.rsplit_once('-')?;
    format!("{addr}/{len}").parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arithmetic() {
        let pool: IpNet = "198.18.0.0/16".parse().unwrap();
        assert_eq!(block_count(pool, 26), 1024);
        assert_eq!(
            nth_block(pool, 26, 1).unwrap().to_string(),
            "198.18.0.64/26"
        );
        assert_eq!(
            nth_block(pool, 26, 1023).unwrap().to_string(),
            "198.18.255.192/26"
        );
        assert_eq!(nth_block(pool, 26, 1024), None);
        let b: IpNet = "198.18.0.64/26".parse().unwrap();
        assert_eq!(offset_of(b, "198.18.0.70".parse().unwrap()), Some(6));
        assert_eq!(offset_of(b, "198.18.0.1".parse().unwrap()), None);
        assert_eq!(nth_addr(b, 63).unwrap().to_string(), "198.18.0.127");
        assert_eq!(nth_addr(b, 64), None);
        assert_eq!(cidr_key(b), "198.18.0.64-26");
        assert_eq!(parse_cidr_key("198.18.0.64-26"), Some(b));
        let v6: IpNet = "fd00::/48".parse().unwrap();
        assert_eq!(block_count(v6, 122), 1 << 74);
        assert_eq!(parse_cidr_key(&cidr_key(v6)), Some(v6));
        assert_eq!(
            with_prefix("198.18.0.70".parse().unwrap(), 26).to_string(),
            "198.18.0.70/26"
        );
    }
}
