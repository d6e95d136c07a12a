//! TCP-MD5 signatures (RFC 2385) for BGP sessions, through Linux's `TCP_MD5SIG` socket option.
//!
//! A key belongs to one peer address and is set on the socket before anything is sent: on a
//! socket before `connect`, or on a listening socket (accepted connections inherit it). The
//! kernel then signs every segment to that peer and drops unsigned or wrongly signed segments
//! from it, so a mismatched password never gets past the SYN.
//!
//! The key's address must be of the socket's family: for a dual-stack (`[::]`) socket, pass an
//! IPv4 peer as its IPv4-mapped IPv6 address ([`peer_for_socket`] does this).

use std::io;
use std::mem::size_of;
use std::net::IpAddr;
use std::os::fd::{AsFd, AsRawFd};

/// The kernel's limit on a key (`TCP_MD5SIG_MAXKEYLEN`).
pub const MAX_KEY_LEN: usize = 80;

#[derive(Debug, thiserror::Error)]
pub enum Md5Error {
    #[error("TCP-MD5 key of {0} bytes: the kernel takes at most {MAX_KEY_LEN}")]
    KeyTooLong(usize),
    #[error("setsockopt TCP_MD5SIG: {0}")]
    Os(#[from] io::Error),
}

/// `struct __kernel_sockaddr_storage`: 128 bytes, pointer-aligned.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(C, align(8))]
struct SockaddrStorage([u8; 128]);

/// `struct tcp_md5sig` from `linux/tcp.h`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(C)]
struct TcpMd5Sig {
    addr: SockaddrStorage,
    flags: u8,
    prefixlen: u8,
    keylen: u16,
    ifindex: i32,
    key: [u8; MAX_KEY_LEN],
}

// The layout the kernel reads: 128 + 1 + 1 + 2 + 4 + 80 bytes.
const _: () = assert!(size_of::<TcpMd5Sig>() == 216);

/// The option value for `peer` and `key` (an empty key removes the peer's key).
fn option_value(peer: IpAddr, key: &[u8]) -> Result<TcpMd5Sig, Md5Error> {
    if key.len() > MAX_KEY_LEN {
        return Err(Md5Error::KeyTooLong(key.len()));
    }
    let mut addr = [0u8; 128];
    match peer {
        IpAddr::V4(a) => {
            // struct sockaddr_in: family, port (0), address in network order.
            addr[0..2].copy_from_slice(&(libc::AF_INET as u16).to_ne_bytes());
            addr[4..8].copy_from_slice(&a.octets());
        }
        IpAddr::V6(a) => {
            // struct sockaddr_in6: family, port (0), flow info (0), address, scope id (0).
            addr[0..2].copy_from_slice(&(libc::AF_INET6 as u16).to_ne_bytes());
            addr[8..24].copy_from_slice(&a.octets());
        }
    }
    let mut k = [0u8; MAX_KEY_LEN];
    k[..key.len()].copy_from_slice(key);
    Ok(TcpMd5Sig {
        addr: SockaddrStorage(addr),
        flags: 0,
        prefixlen: 0,
        // At most 80, checked above.
        keylen: key.len() as u16,
        ifindex: 0,
        key: k,
    })
}

/// The address to key `peer` under on a socket of `socket_is_ipv6`'s family.
pub fn peer_for_socket(peer: IpAddr, socket_is_ipv6: bool) -> IpAddr {
    match peer {
        IpAddr::V4(a) if socket_is_ipv6 => IpAddr::V6(a.to_ipv6_mapped()),
        IpAddr::V6(a) if !socket_is_ipv6 => a.to_ipv4_mapped().map_or(peer, IpAddr::V4),
        other => other,
    }
}

/// Signs traffic with `peer` on `socket` with `key` (1 to 80 bytes).
pub fn set_key(socket: &impl AsFd, peer: IpAddr, key: &[u8]) -> Result<(), Md5Error> {
    setsockopt(socket, &option_value(peer, key)?)
}

/// Stops signing traffic with `peer` on `socket`.
pub fn remove_key(socket: &impl AsFd, peer: IpAddr) -> Result<(), Md5Error> {
    setsockopt(socket, &option_value(peer, &[])?)
}

fn setsockopt(socket: &impl AsFd, value: &TcpMd5Sig) -> Result<(), Md5Error> {
    let fd = socket.as_fd();
    // The one unsafe call of this crate (see Cargo.toml for why it exists at all).
    #[allow(unsafe_code)]
    // SAFETY: `fd` is a descriptor borrowed for the duration of the call; the pointer and
    // length describe `value`, a live `repr(C)` struct with the kernel's `tcp_md5sig`
    // layout, which the kernel only reads.
    let rc = unsafe {
        libc::setsockopt(
            fd.as_raw_fd(),
            libc::IPPROTO_TCP,
            libc::TCP_MD5SIG,
            (value as *const TcpMd5Sig).cast::<libc::c_void>(),
            size_of::<TcpMd5Sig>() as libc::socklen_t,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(Md5Error::Os(io::Error::last_os_error()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::{Ipv4Addr, Ipv6Addr};

    #[test]
    fn ipv4_peer_is_a_sockaddr_in() {
        let v = option_value(IpAddr::V4(Ipv4Addr::new(198, 18, 0, 2)), b"s3cret").unwrap();
        let mut want = [0u8; 128];
        // AF_INET is 2 on Linux, in host byte order; the address in network order.
        want[0..2].copy_from_slice(&2u16.to_ne_bytes());
        want[4..8].copy_from_slice(&[198, 18, 0, 2]);
        assert_eq!(v.addr.0, want);
        assert_eq!(v.keylen, 6);
        assert_eq!(&v.key[..6], b"s3cret");
        assert!(v.key[6..].iter().all(|b| *b == 0));
        assert_eq!((v.flags, v.prefixlen, v.ifindex), (0, 0, 0));
    }

    #[test]
    fn ipv6_peer_is_a_sockaddr_in6() {
        let a: Ipv6Addr = "fd00::2".parse().unwrap();
        let v = option_value(IpAddr::V6(a), b"k").unwrap();
        let mut want = [0u8; 128];
        // AF_INET6 is 10 on Linux.
        want[0..2].copy_from_slice(&10u16.to_ne_bytes());
        want[8..24].copy_from_slice(&[0xfd, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2]);
        assert_eq!(v.addr.0, want);
    }

    #[test]
    fn key_length_is_bounded_and_empty_removes() {
        let peer = IpAddr::V4(Ipv4Addr::LOCALHOST);
        assert!(option_value(peer, &[7u8; 80]).is_ok());
        assert!(matches!(
            option_value(peer, &[7u8; 81]),
            Err(Md5Error::KeyTooLong(81))
        ));
        assert_eq!(option_value(peer, &[]).unwrap().keylen, 0);
    }

    #[test]
    fn dual_stack_sockets_key_ipv4_peers_as_mapped() {
        let v4 = IpAddr::V4(Ipv4Addr::new(198, 18, 0, 2));
        let mapped = IpAddr::V6(Ipv4Addr::new(198, 18, 0, 2).to_ipv6_mapped());
        assert_eq!(peer_for_socket(v4, true), mapped);
        assert_eq!(peer_for_socket(v4, false), v4);
        assert_eq!(peer_for_socket(mapped, false), v4);
        let v6: IpAddr = "fd00::2".parse().unwrap();
        assert_eq!(peer_for_socket(v6, true), v6);
    }
}
