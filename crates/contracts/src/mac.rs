//! MAC addresses in the text form every component writes and reads (`aa:bb:cc:dd:ee:ff`): in
//! WorkloadEndpoints, Node `vxlanTunnelMACAddr`, and for the kernel.

use std::fmt;

/// A MAC address that is not six two-digit hex groups separated by colons.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BadMac(pub String);

impl fmt::Display for BadMac {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "MAC address {:?}: expected six hex pairs like 02:00:c0:a8:01:02",
            self.0
        )
    }
}

impl std::error::Error for BadMac {}

/// Formats a MAC address as `aa:bb:cc:dd:ee:ff`.
pub fn format(mac: [u8; 6]) -> String {
    mac.iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(":")
}

/// Parses `aa:bb:cc:dd:ee:ff` (case-insensitive, exactly six two-digit hex groups).
pub fn parse(text: &str) -> Result<[u8; 6], BadMac> {
    let invalid = || BadMac(text.to_string());
    let mut mac = [0u8; 6];
    let mut groups = text.split(':');
    for byte in &mut mac {
        let group = groups.next().ok_or_else(invalid)?;
        // from_str_radix alone would also accept a sign ("+a").
        if group.len() != 2 || !group.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(invalid());
        }
        *byte = u8::from_str_radix(group, 16).map_err(|_| invalid())?;
    }
    if groups.next().is_some() {
        return Err(invalid());
    }
    Ok(mac)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn macs_round_trip_and_bad_ones_are_named() {
        assert_eq!(
            parse("EE:ee:ee:ee:ee:0A"),
            Ok([0xee, 0xee, 0xee, 0xee, 0xee, 0x0a])
        );
        assert_eq!(
            format([0x66, 0, 0x1, 0xab, 0xcd, 0xef]),
            "66:00:01:ab:cd:ef"
        );
        for bad in [
            "",
            "ee:ee:ee:ee:ee",
            "ee:ee:ee:ee:ee:ee:ee",
            "+e:ee:ee:ee:ee:ee",
            "eee:e:ee:ee:ee:ee",
        ] {
            let err = parse(bad).expect_err(bad);
            assert!(err.to_string().contains(&format!("{bad:?}")), "{err}");
        }
    }
}
