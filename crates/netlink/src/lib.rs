//! The one place where calico-rs writes kernel network state.
//!
//! A small, synchronous wrapper over `netlink-packet-route` and `netlink-sys`: links (veth, vxlan, bridge),
//! addresses, routes, neighbours and the bridge FDB, plus network namespaces ([`Netns`]) and sysctls
//! ([`sysctl`]). Every error names the operation and the object it was applied to, e.g.
//! `add route 198.18.1.2/32 dev cali1234: File exists`.

mod addr;
mod link;
mod neigh;
mod netns;
mod route;
mod socket;
pub mod sysctl;

pub use addr::Address;
pub use link::{Link, VxlanInfo, VxlanSpec};
pub use neigh::{FdbEntry, Neighbour};
pub use netns::Netns;
pub use route::{
    NextHop, RTPROT_BOOT, RTPROT_KERNEL, RTPROT_STATIC, Route, RouteKind, RouteScope, TABLE_MAIN,
};
pub use socket::Netlink;

use nix::errno::Errno;

/// Which address families a listing covers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Family {
    V4,
    V6,
    All,
}

/// Errors of this crate. Each message starts with the operation and the object, e.g.
/// `delete route 198.18.5.0/24 table 100: not found`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NetlinkError {
    /// The object to create already exists (EEXIST).
    #[error("{0}: File exists")]
    Exists(String),
    /// The object (or the device it refers to) does not exist (ENOENT, ESRCH, ENODEV, EADDRNOTAVAIL).
    #[error("{0}: not found")]
    NotFound(String),
    /// Any other error the kernel reported.
    #[error("{op}: {message}")]
    Kernel {
        op: String,
        errno: i32,
        message: String,
    },
    /// Socket or file I/O failed, or a reply could not be decoded.
    #[error("{0}")]
    Io(String),
    /// Opening or entering a network namespace failed.
    #[error("{0}")]
    Namespace(String),
    /// The caller passed something unusable (bad name, mixed address families, ...).
    #[error("{0}")]
    Invalid(String),
}

impl NetlinkError {
    /// Classifies a (positive) errno returned by the kernel for operation `op`.
    pub fn from_errno(op: impl Into<String>, errno: i32) -> Self {
        Self::from_errno_with_detail(op.into(), errno, None)
    }

    /// Like [`NetlinkError::from_errno`], adding the kernel's extended-ACK text (if any) to the message.
    pub(crate) fn from_errno_with_detail(op: String, errno: i32, detail: Option<String>) -> Self {
        let code = Errno::from_raw(errno);
        match code {
            Errno::EEXIST => Self::Exists(op),
            Errno::ENOENT | Errno::ESRCH | Errno::ENODEV | Errno::EADDRNOTAVAIL => {
                Self::NotFound(op)
            }
            _ => {
                let mut message = code.desc().to_string();
                if let Some(detail) = detail.filter(|d| !d.is_empty()) {
                    message = format!("{message} ({detail})");
                }
                Self::Kernel { op, errno, message }
            }
        }
    }

    pub fn is_exists(&self) -> bool {
        matches!(self, Self::Exists(_))
    }

    pub fn is_not_found(&self) -> bool {
        matches!(self, Self::NotFound(_))
    }
}

/// Formats a MAC address as `aa:bb:cc:dd:ee:ff`.
pub fn format_mac(mac: [u8; 6]) -> String {
    calico_contracts::mac::format(mac)
}

/// Parses `aa:bb:cc:dd:ee:ff` (case-insensitive, exactly six two-digit hex groups).
pub fn parse_mac(s: &str) -> Result<[u8; 6], NetlinkError> {
    calico_contracts::mac::parse(s).map_err(|e| NetlinkError::Invalid(format!("parse {e}")))
}

/// Interface names are at most 15 bytes (IFNAMSIZ - 1) and may not contain '/', whitespace or ':'.
pub(crate) fn check_ifname(op: &str, name: &str) -> Result<(), NetlinkError> {
    let bad_char = name
        .chars()
        .any(|c| c == '/' || c == ':' || c.is_whitespace() || c.is_control());
    if name.is_empty() || name.len() > 15 || bad_char || name == "." || name == ".." {
        return Err(NetlinkError::Invalid(format!(
            "{op}: invalid interface name {name:?}"
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_name_the_operation_and_the_kernel_reason() {
        let exists =
            NetlinkError::from_errno("add route 198.18.1.2/32 dev cali1234", nix::libc::EEXIST);
        assert!(exists.is_exists());
        assert_eq!(
            exists.to_string(),
            "add route 198.18.1.2/32 dev cali1234: File exists"
        );

        let missing =
            NetlinkError::from_errno("delete route 198.18.5.0/24 table 100", nix::libc::ESRCH);
        assert!(missing.is_not_found());
        assert_eq!(
            missing.to_string(),
            "delete route 198.18.5.0/24 table 100: not found"
        );

        let detail = Some("Nexthop has invalid gateway".to_string());
        let kernel = NetlinkError::from_errno_with_detail(
            "add route 198.18.3.0/24 via 198.18.9.9".into(),
            nix::libc::ENETUNREACH,
            detail,
        );
        assert_eq!(
            kernel,
            NetlinkError::Kernel {
                op: "add route 198.18.3.0/24 via 198.18.9.9".into(),
                errno: nix::libc::ENETUNREACH,
                message: "Network is unreachable (Nexthop has invalid gateway)".into(),
            }
        );
        assert_eq!(
            kernel.to_string(),
            "add route 198.18.3.0/24 via 198.18.9.9: Network is unreachable (Nexthop has invalid gateway)"
        );
    }

    #[test]
    fn macs_parse_and_format() {
        let mac = parse_mac("02:00:C6:12:00:0a").expect("valid MAC");
        assert_eq!(mac, [0x02, 0x00, 0xc6, 0x12, 0x00, 0x0a]);
        assert_eq!(format_mac(mac), "02:00:c6:12:00:0a");
        for bad in [
            "",
            "02:00:c6:12:00",
            "02:00:c6:12:00:0a:0b",
            "02-00-c6-12-00-0a",
            "2:00:c6:12:00:0a",
            "02:00:c6:12:00:zz",
            "02:00:c6:12:00:+a",
        ] {
            let error = parse_mac(bad).expect_err(bad);
            assert!(matches!(error, NetlinkError::Invalid(_)), "{bad}: {error}");
            assert!(error.to_string().contains("parse MAC address"), "{error}");
        }
    }

    #[test]
    fn interface_names_are_checked() {
        assert!(check_ifname("add veth", "cali0123456789a").is_ok());
        for bad in ["", "cali0123456789ab", "a/b", "a b", "a:b", ".."] {
            let error = check_ifname("add veth", bad).expect_err(bad);
            assert!(
                error
                    .to_string()
                    .starts_with("add veth: invalid interface name"),
                "{error}"
            );
        }
    }
}
