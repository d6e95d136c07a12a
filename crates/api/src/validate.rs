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

// --- policy kinds ---

/// Emptiness and length problems shared by the policy name checks.
fn policy_name_problem(value: &str) -> Option<String> {
    if value.is_empty() {
        return Some("name is required".into());
    }
    if value.len() > 253 {
        return Some(format!("name is too long by {} bytes", value.len() - 253));
    }
    None
}

/// NetworkPolicy / StagedNetworkPolicy names: `label`, `label.label`, or `knp.default.<subdomain>` /
/// `ossg.default.<subdomain>` (the names Calico gives Kubernetes-derived policies); at most 253 characters.
pub fn is_network_policy_name(value: &str) -> bool {
    if value.len() > 253 {
        return false;
    }
    for prefix in ["knp.default.", "ossg.default."] {
        if let Some(rest) = value.strip_prefix(prefix)
            && is_dns1123_subdomain(rest)
        {
            return true;
        }
    }
    is_global_network_policy_name(value)
}

/// GlobalNetworkPolicy names: `label` or `label.label`.
pub fn is_global_network_policy_name(value: &str) -> bool {
    let mut parts = value.split('.');
    let first_ok = parts.next().is_some_and(is_dns1123_label);
    let second_ok = parts.next().is_none_or(is_dns1123_label);
    first_ok && second_ok && parts.next().is_none()
}

/// Check a NetworkPolicy/StagedNetworkPolicy name (`global` = GlobalNetworkPolicy rules instead).
pub fn policy_name(errs: &mut FieldErrors, path: &str, value: &str, global: bool) {
    if let Some(problem) = policy_name_problem(value) {
        errs.push(path, problem);
        return;
    }
    let ok = if global {
        is_global_network_policy_name(value)
    } else {
        is_network_policy_name(value)
    };
    if !ok {
        let forms = if global {
            "\"<label>\" or \"<label>.<label>\""
        } else {
            "\"<label>\", \"<label>.<label>\" or \"knp.default.<name>\""
        };
        errs.push(
            path,
            format!(
                "invalid name {value:?}: must be {forms}, where a label consists of lower case alphanumeric \
                 characters or '-' and starts and ends with an alphanumeric character"
            ),
        );
    }
}

/// Check a Tier name: a single DNS-1123 label (no dots), at most 63 characters.
pub fn tier_name(errs: &mut FieldErrors, path: &str, value: &str) {
    if value.is_empty() {
        errs.push(path, "name is required");
    } else if value.len() > 63 {
        errs.push(
            path,
            format!(
                "invalid name {value:?}: name is too long by {} bytes",
                value.len() - 63
            ),
        );
    } else if !is_dns1123_label(value) {
        errs.push(
            path,
            format!(
                "invalid name {value:?}: must consist of lower case alphanumeric characters or '-' \
                 (no dots), and must start and end with an alphanumeric character"
            ),
        );
    }
}

/// A Linux interface name as Calico accepts it: `^[a-zA-Z0-9_.-]{1,15}$`.
pub fn is_interface_name(value: &str) -> bool {
    is_interface_pattern(value, false)
}

/// An interface name, or with `allow_glob` a pattern using `*` (BGP ignored interfaces, filters).
pub fn is_interface_pattern(value: &str, allow_glob: bool) -> bool {
    (1..=15).contains(&value.len())
        && value.bytes().all(|c| {
            c.is_ascii_alphanumeric()
                || matches!(c, b'_' | b'.' | b'-')
                || (allow_glob && c == b'*')
        })
}

/// A container ID: `[a-zA-Z0-9]([-a-zA-Z0-9]*[a-zA-Z0-9])?`.
pub fn is_container_id(value: &str) -> bool {
    let b = value.as_bytes();
    !b.is_empty()
        && b.iter().all(|c| c.is_ascii_alphanumeric() || *c == b'-')
        && b[0] != b'-'
        && b[b.len() - 1] != b'-'
}

/// A MAC address in one of the forms Go's `net.ParseMAC` accepts: 6, 8 or 20 octets as two hex digits
/// separated by `:` or `-`, or groups of four hex digits separated by `.`.
pub fn is_mac(value: &str) -> bool {
    let hex_group =
        |g: &str, len: usize| g.len() == len && g.bytes().all(|c| c.is_ascii_hexdigit());
    let octets_ok = |count: usize| matches!(count, 6 | 8 | 20);
    for sep in [':', '-'] {
        if value.contains(sep) {
            let groups: Vec<&str> = value.split(sep).collect();
            return octets_ok(groups.len()) && groups.iter().all(|g| hex_group(g, 2));
        }
    }
    let groups: Vec<&str> = value.split('.').collect();
    octets_ok(groups.len() * 2) && groups.iter().all(|g| hex_group(g, 4))
}

/// A Kubernetes port name (IANA service name): at most 15 characters of `[a-z0-9-]`, at least one
/// letter, no leading, trailing or doubled `-`.
pub fn is_port_name(value: &str) -> bool {
    let b = value.as_bytes();
    !b.is_empty()
        && b.len() <= 15
        && b.iter()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'-')
        && b.iter().any(u8::is_ascii_lowercase)
        && b[0] != b'-'
        && b[b.len() - 1] != b'-'
        && !value.contains("--")
}

/// A Kubernetes qualified name (label key): optional DNS subdomain prefix and `/`, then at most 63
/// characters of `[A-Za-z0-9_.-]` starting and ending alphanumeric.
pub fn is_qualified_name(value: &str) -> bool {
    let (prefix, name) = match value.rsplit_once('/') {
        Some((p, n)) => (Some(p), n),
        None => (None, value),
    };
    prefix.is_none_or(is_dns1123_subdomain) && !name.is_empty() && is_label_value(name)
}

/// A Kubernetes label value: empty, or at most 63 characters of `[A-Za-z0-9_.-]` starting and ending
/// alphanumeric.
pub fn is_label_value(value: &str) -> bool {
    let b = value.as_bytes();
    b.is_empty()
        || (b.len() <= 63
            && b.iter()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'-' | b'_' | b'.'))
            && b[0].is_ascii_alphanumeric()
            && b[b.len() - 1].is_ascii_alphanumeric())
}

/// Check a reference to another resource by name (DNS-1123 subdomain), e.g. a node or profile name.
pub fn reference_name(errs: &mut FieldErrors, path: &str, value: &str) {
    if !is_dns1123_subdomain(value) {
        errs.push(
            path,
            format!(
                "invalid name {value:?}: must consist of lower case alphanumeric characters, '-' or '.', \
                 and must start and end with an alphanumeric character"
            ),
        );
    }
}

// --- end policy kinds ---

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

// --- infrastructure kinds ---

/// Parse a Go-style duration (`90s`, `1m30s`, `1.5h`, `250ms`, `0`), as Calico's `metav1.Duration`
/// fields take them. Negative durations are rejected.
pub fn parse_go_duration(value: &str) -> Option<std::time::Duration> {
    if value == "0" {
        return Some(std::time::Duration::ZERO);
    }
    let mut rest = value;
    let mut total = 0f64;
    if rest.is_empty() {
        return None;
    }
    while !rest.is_empty() {
        let num_len = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        let number = &rest[..num_len];
        if number.is_empty() || number == "." || number.matches('.').count() > 1 {
            return None;
        }
        let amount: f64 = number.parse().ok()?;
        rest = &rest[num_len..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let nanos_per_unit = match &rest[..unit_len] {
            "ns" => 1e0,
            "us" | "\u{b5}s" | "\u{3bc}s" => 1e3,
            "ms" => 1e6,
            "s" => 1e9,
            "m" => 60e9,
            "h" => 3600e9,
            _ => return None,
        };
        rest = &rest[unit_len..];
        total += amount * nanos_per_unit;
    }
    if !total.is_finite() || total > u64::MAX as f64 {
        return None;
    }
    Some(std::time::Duration::from_nanos(total as u64))
}

/// Check a Go-style duration field.
pub fn go_duration(errs: &mut FieldErrors, path: &str, value: &str) -> Option<std::time::Duration> {
    let parsed = parse_go_duration(value);
    if parsed.is_none() {
        errs.push(
            path,
            format!(
                "invalid duration {value:?}: expected a number and unit, e.g. 90s, 1m30s, 500ms"
            ),
        );
    }
    parsed
}

/// Check a bare IPv4 address (no prefix length).
pub fn ipv4_address(errs: &mut FieldErrors, path: &str, value: &str) -> Option<std::net::Ipv4Addr> {
    let parsed = value.parse::<std::net::Ipv4Addr>().ok();
    if parsed.is_none() {
        errs.push(path, format!("invalid IPv4 address {value:?}"));
    }
    parsed
}

/// Check a bare IPv6 address (no prefix length).
pub fn ipv6_address(errs: &mut FieldErrors, path: &str, value: &str) -> Option<std::net::Ipv6Addr> {
    let parsed = value.parse::<std::net::Ipv6Addr>().ok();
    if parsed.is_none() {
        errs.push(path, format!("invalid IPv6 address {value:?}"));
    }
    parsed
}

/// Check a bare IP address of either family.
pub fn ip_address(errs: &mut FieldErrors, path: &str, value: &str) -> Option<std::net::IpAddr> {
    let parsed = value.parse::<std::net::IpAddr>().ok();
    if parsed.is_none() {
        errs.push(path, format!("invalid IP address {value:?}"));
    }
    parsed
}

/// Check a MAC address field.
pub fn mac_address(errs: &mut FieldErrors, path: &str, value: &str) {
    if !is_mac(value) {
        errs.push(path, format!("invalid MAC address {value:?}"));
    }
}

#[cfg(test)]
mod infra_tests {
    use super::*;

    #[test]
    fn go_durations() {
        let secs = |s: &str| parse_go_duration(s).map(|d| d.as_secs_f64());
        assert_eq!(secs("90s"), Some(90.0));
        assert_eq!(secs("1m30s"), Some(90.0));
        assert_eq!(secs("1.5h"), Some(5400.0));
        assert_eq!(secs("250ms"), Some(0.25));
        assert_eq!(secs("0"), Some(0.0));
        for bad in ["", "90", "s", "1x", "-5s", "1..5s", "ten seconds"] {
            assert_eq!(parse_go_duration(bad), None, "{bad}");
        }
    }

    #[test]
    fn macs_and_addresses() {
        assert!(is_mac("66:a1:b2:c3:d4:e5"));
        assert!(is_mac("66-A1-B2-C3-D4-E5"));
        assert!(!is_mac("66:a1:b2:c3:d4"));
        assert!(!is_mac("zz:a1:b2:c3:d4:e5"));
        let mut errs = FieldErrors::new();
        assert!(ipv4_address(&mut errs, "a", "10.0.0.1").is_some());
        assert!(ipv4_address(&mut errs, "b", "10.0.0.1/32").is_none());
        assert!(ipv6_address(&mut errs, "c", "10.0.0.1").is_none());
        assert_eq!(errs.0.len(), 2);
        assert_eq!(errs.0[0].path, "b");
    }
}
