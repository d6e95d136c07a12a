//! Validators shared by the resource kinds. Each pushes a [`FieldError`](crate::FieldError) naming the
//! field rather than failing fast, so one pass reports every problem in a document.

use ipnet::IpNet;

use crate::error::FieldErrors;
use crate::selector::Selector;

/// A DNS-1123 label: `[a-z0-9]([-a-z0-9]*[a-z0-9])?`, at most 63 characters.
pub fn is_dns1123_label(s: &str) -> bool {
    let b = s.as_bytes();
    !b.is_empty()
        && b.len() <= 63
        && b.iter()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'-')
        && b[0] != b'-'
        && b[b.len() - 1] != b'-'
}

/// A DNS-1123 subdomain: labels joined by `.`, at most 253 characters.
pub fn is_dns1123_subdomain(s: &str) -> bool {
    !s.is_empty() && s.len() <= 253 && s.split('.').all(is_dns1123_label)
}

/// Check a generic resource name (DNS-1123 subdomain).
pub fn name(errs: &mut FieldErrors, path: &str, value: &str) {
    if value.is_empty() {
        errs.push(path, "name is required");
    } else if !is_dns1123_subdomain(value) {
        errs.push(
            path,
            format!(
                "invalid name {value:?}: must consist of lower case alphanumeric characters, '-' or '.', \
                 and must start and end with an alphanumeric character"
            ),
        );
    }
}

/// Parse a CIDR that must be masked (no host bits set): `10.0.0.1/24` is rejected, `10.0.0.0/24` is fine.
/// A bare address is accepted as a host route (/32 or /128).
pub fn masked_cidr(errs: &mut FieldErrors, path: &str, value: &str) -> Option<IpNet> {
    match parse_cidr(value) {
        Some(net) if net.trunc() == net => Some(net),
        Some(net) => {
            errs.push(
                path,
                format!(
                    "CIDR {value:?} is not masked: did you mean {}?",
                    net.trunc()
                ),
            );
            None
        }
        None => {
            errs.push(path, format!("invalid CIDR {value:?}"));
            None
        }
    }
}

/// Parse a CIDR or a bare address (as /32 or /128), without checking host bits.
pub fn parse_cidr(value: &str) -> Option<IpNet> {
    value
        .parse::<IpNet>()
        .ok()
        .or_else(|| value.parse::<std::net::IpAddr>().ok().map(IpNet::from))
}

/// Check that a selector parses (empty is allowed and means `all()`).
pub fn selector(errs: &mut FieldErrors, path: &str, value: &str) -> Option<Selector> {
    match Selector::parse(value) {
        Ok(s) => Some(s),
        Err(e) => {
            errs.push(path, format!("invalid selector {value:?}: {e}"));
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        assert!(is_dns1123_subdomain("default-ipv4-ippool"));
        assert!(is_dns1123_subdomain("a.b-c.d"));
        assert!(!is_dns1123_subdomain("Upper"));
        assert!(!is_dns1123_subdomain("-lead"));
        assert!(!is_dns1123_subdomain("a..b"));
        assert!(!is_dns1123_subdomain(&"a".repeat(254)));
        assert!(!is_dns1123_label("a.b"));
    }

    #[test]
    fn cidrs() {
        let mut errs = FieldErrors::new();
        assert!(masked_cidr(&mut errs, "spec.cidr", "10.244.0.0/16").is_some());
        assert!(masked_cidr(&mut errs, "spec.cidr", "10.244.0.1").is_some());
        assert!(errs.is_empty());
        assert!(masked_cidr(&mut errs, "spec.cidr", "10.244.0.1/16").is_none());
        assert!(masked_cidr(&mut errs, "spec.cidr", "nonsense").is_none());
        assert_eq!(errs.0.len(), 2);
        assert!(errs.0[0].message.contains("10.244.0.0/16"));
    }
}
