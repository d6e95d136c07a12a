//! Types and checks shared by the infrastructure kinds (IP pools, BGP, nodes, Felix configuration).

use std::fmt;
use std::net::IpAddr;

use serde::de::{self, Visitor};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::error::FieldErrors;

/// A BGP AS number. Accepted as a number, a decimal string (`"64512"`) or asdot notation
/// (`"1.10"` = 1·65536 + 10), as Calico's `numorstring.ASNumber`; written back as a number.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ASNumber(pub u32);

/// Parse an AS number written as a decimal or in asdot notation.
pub fn parse_as_number(s: &str) -> Option<u32> {
    if let Ok(n) = s.parse::<u32>() {
        return Some(n);
    }
    let (high, low) = s.split_once('.')?;
    let high: u16 = high.parse().ok()?;
    let low: u16 = low.parse().ok()?;
    Some((u32::from(high) << 16) | u32::from(low))
}

impl Serialize for ASNumber {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_u32(self.0)
    }
}

impl<'de> Deserialize<'de> for ASNumber {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct AsnVisitor;
        impl Visitor<'_> for AsnVisitor {
            type Value = ASNumber;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("an AS number (0-4294967295, or asdot \"<0-65535>.<0-65535>\")")
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<ASNumber, E> {
                u32::try_from(v).map(ASNumber).map_err(|_| {
                    E::custom(format!("invalid AS number {v}: must be at most 4294967295"))
                })
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<ASNumber, E> {
                u64::try_from(v)
                    .map_err(|_| E::custom(format!("invalid AS number {v}: must not be negative")))
                    .and_then(|v| self.visit_u64(v))
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<ASNumber, E> {
                Err(E::custom(format!(
                    "invalid AS number {v}: write asdot values as a quoted string, e.g. \"1.10\""
                )))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<ASNumber, E> {
                parse_as_number(v)
                    .map(ASNumber)
                    .ok_or_else(|| E::custom(format!("invalid AS number format ({v})")))
            }
        }
        deserializer.deserialize_any(AsnVisitor)
    }
}

/// serde adapter for `Option<u32>` AS number fields (`#[serde(with = ...)]`).
pub mod opt_as_number {
    use serde::{Deserialize, Deserializer, Serializer};

    use super::ASNumber;

    pub fn serialize<S: Serializer>(value: &Option<u32>, serializer: S) -> Result<S::Ok, S::Error> {
        match value {
            Some(v) => serializer.serialize_u32(*v),
            None => serializer.serialize_none(),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(
        deserializer: D,
    ) -> Result<Option<u32>, D::Error> {
        Ok(Option::<ASNumber>::deserialize(deserializer)?.map(|a| a.0))
    }
}

/// A port, port range or named port (Calico's `numorstring.Port`): `80`, `"80"`, `"30000:32767"`
/// or `"http"`. A single port is written back as a number, a range as `"min:max"`.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum PortSpec {
    Single(u16),
    Range(u16, u16),
    Named(String),
}

impl PortSpec {
    /// Parse the string form. Errors name what is wrong.
    pub fn parse(s: &str) -> Result<PortSpec, String> {
        if s.chars().all(|c| c.is_ascii_digit()) && !s.is_empty() {
            return s
                .parse::<u16>()
                .map(PortSpec::Single)
                .map_err(|_| format!("invalid port format ({s})"));
        }
        if let Some((lo, hi)) = s.split_once(':')
            && !lo.is_empty()
            && !hi.is_empty()
            && lo.chars().chain(hi.chars()).all(|c| c.is_ascii_digit())
        {
            let lo: u16 = lo
                .parse()
                .map_err(|_| format!("invalid minimum port number in range ({s})"))?;
            let hi: u16 = hi
                .parse()
                .map_err(|_| format!("invalid maximum port number in range ({s})"))?;
            if lo > hi {
                return Err(format!(
                    "minimum port number ({lo}) is greater than maximum port number ({hi}) in port range"
                ));
            }
            return Ok(PortSpec::Range(lo, hi));
        }
        if crate::validate::is_port_name(s) {
            Ok(PortSpec::Named(s.to_string()))
        } else {
            Err(format!("invalid port format ({s})"))
        }
    }

    /// The lowest and highest port, or `None` for a named port.
    pub fn bounds(&self) -> Option<(u16, u16)> {
        match self {
            PortSpec::Single(p) => Some((*p, *p)),
            PortSpec::Range(lo, hi) => Some((*lo, *hi)),
            PortSpec::Named(_) => None,
        }
    }
}

impl fmt::Display for PortSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PortSpec::Single(p) => write!(f, "{p}"),
            PortSpec::Range(lo, hi) => write!(f, "{lo}:{hi}"),
            PortSpec::Named(n) => f.write_str(n),
        }
    }
}

impl Serialize for PortSpec {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self {
            PortSpec::Single(p) => serializer.serialize_u16(*p),
            other => serializer.serialize_str(&other.to_string()),
        }
    }
}

impl<'de> Deserialize<'de> for PortSpec {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct PortVisitor;
        impl Visitor<'_> for PortVisitor {
            type Value = PortSpec;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a port number, a range \"min:max\" or a port name")
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<PortSpec, E> {
                u16::try_from(v).map(PortSpec::Single).map_err(|_| {
                    E::custom(format!("invalid port {v}: must be between 0 and 65535"))
                })
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<PortSpec, E> {
                u64::try_from(v)
                    .map_err(|_| {
                        E::custom(format!("invalid port {v}: must be between 0 and 65535"))
                    })
                    .and_then(|v| self.visit_u64(v))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<PortSpec, E> {
                PortSpec::parse(v).map_err(E::custom)
            }
        }
        deserializer.deserialize_any(PortVisitor)
    }
}

/// A value that may be written as an integer or a string (Calico's `numorstring` types such as DSCP).
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(untagged)]
pub enum IntOrString {
    Int(i64),
    String(String),
}

/// Reference to a key in a Kubernetes Secret (BGP passwords).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SecretKeySelector {
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub name: String,
    pub key: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub optional: Option<bool>,
}

/// A BGP password, read from a Secret.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct BGPPassword {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_key_ref: Option<SecretKeySelector>,
}

impl BGPPassword {
    /// A secret reference must name its key. `path` is the password field's own path.
    pub fn validate(&self, errs: &mut FieldErrors, path: &str) {
        if let Some(secret) = &self.secret_key_ref
            && secret.key.is_empty()
        {
            errs.push(
                format!("{path}.secretKeyRef.key"),
                "required field is missing",
            );
        }
    }
}

/// Why a BGP community value is invalid, or `Ok` for `aa:nn` (16-bit parts) and `aa:nn:mm`
/// (32-bit parts).
pub fn check_community_value(value: &str) -> Result<(), String> {
    let parts: Vec<&str> = value.split(':').collect();
    let well_formed = (parts.len() == 2 || parts.len() == 3)
        && parts
            .iter()
            .all(|p| !p.is_empty() && p.bytes().all(|c| c.is_ascii_digit()));
    if !well_formed {
        return Err(format!(
            "invalid community value {value:?}: must be aa:nn (standard) or aa:nn:mm (large)"
        ));
    }
    let fits = |p: &&str| {
        if parts.len() == 2 {
            p.parse::<u16>().is_ok()
        } else {
            p.parse::<u32>().is_ok()
        }
    };
    if parts.iter().all(fits) {
        Ok(())
    } else {
        let bits = if parts.len() == 2 { 16 } else { 32 };
        Err(format!(
            "invalid community value {value:?}: expected {bits} bit values"
        ))
    }
}

/// Split a BGP peer address: `a.b.c.d`, `a.b.c.d:port`, `v6` or `[v6]:port` (port 1–65535).
pub fn parse_ip_port(value: &str) -> Option<(IpAddr, Option<u16>)> {
    if let Ok(ip) = value.parse::<IpAddr>() {
        return Some((ip, None));
    }
    let (host, port) = if let Some(rest) = value.strip_prefix('[') {
        let (host, port) = rest.split_once("]:")?;
        (
            host.parse::<std::net::Ipv6Addr>().ok().map(IpAddr::V6)?,
            port,
        )
    } else {
        let (host, port) = value.rsplit_once(':')?;
        (
            host.parse::<std::net::Ipv4Addr>().ok().map(IpAddr::V4)?,
            port,
        )
    };
    if port.is_empty() || !port.bytes().all(|c| c.is_ascii_digit()) {
        return None;
    }
    match port.parse::<u16>() {
        Ok(p) if p >= 1 => Some((host, Some(p))),
        _ => None,
    }
}

/// Check a number lies in `min..=max`, pushing `must be between min and max` otherwise.
pub fn check_range(errs: &mut FieldErrors, path: &str, value: i64, min: i64, max: i64) {
    if value < min || value > max {
        errs.push(path, format!("must be between {min} and {max}"));
    }
}

/// Check a string is one of `allowed` (exact case), naming the choices otherwise.
pub fn check_one_of(errs: &mut FieldErrors, path: &str, value: &str, allowed: &[&str]) {
    if !allowed.contains(&value) {
        errs.push(
            path,
            format!(
                "invalid value {value:?}: must be one of {}",
                allowed.join(", ")
            ),
        );
    }
}

/// Check a string is one of `allowed` ignoring case (Felix and BGP log levels, actions), or empty.
pub fn check_one_of_ignore_case(errs: &mut FieldErrors, path: &str, value: &str, allowed: &[&str]) {
    if !value.is_empty() && !allowed.iter().any(|a| a.eq_ignore_ascii_case(value)) {
        errs.push(
            path,
            format!(
                "invalid value {value:?}: must be one of {}",
                allowed.join(", ")
            ),
        );
    }
}

/// The log levels Calico components accept (case-insensitive).
pub const LOG_LEVELS: &[&str] = &["Trace", "Debug", "Info", "Warning", "Error", "Fatal"];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn as_numbers() {
        assert_eq!(parse_as_number("64512"), Some(64512));
        assert_eq!(parse_as_number("1.10"), Some(65546));
        assert_eq!(parse_as_number("1.70000"), None);
        assert_eq!(parse_as_number("abc"), None);
        let a: ASNumber = serde_json::from_value(serde_json::json!("1.10")).unwrap();
        assert_eq!(serde_json::to_value(a).unwrap(), serde_json::json!(65546));
        assert!(serde_json::from_value::<ASNumber>(serde_json::json!(-1)).is_err());
        assert!(serde_json::from_value::<ASNumber>(serde_json::json!(4294967296u64)).is_err());
    }

    #[test]
    fn ports() {
        assert_eq!(PortSpec::parse("80"), Ok(PortSpec::Single(80)));
        assert_eq!(
            PortSpec::parse("30000:32767"),
            Ok(PortSpec::Range(30000, 32767))
        );
        assert_eq!(PortSpec::parse("http"), Ok(PortSpec::Named("http".into())));
        assert!(PortSpec::parse("70000").is_err());
        assert!(PortSpec::parse("200:100").is_err());
        let range: PortSpec = serde_json::from_value(serde_json::json!("30000:32767")).unwrap();
        assert_eq!(
            serde_json::to_value(&range).unwrap(),
            serde_json::json!("30000:32767")
        );
        let single: PortSpec = serde_json::from_value(serde_json::json!(22)).unwrap();
        assert_eq!(
            serde_json::to_value(&single).unwrap(),
            serde_json::json!(22)
        );
    }

    #[test]
    fn communities() {
        assert!(check_community_value("65001:100").is_ok());
        assert!(check_community_value("4200000000:1:2").is_ok());
        assert!(
            check_community_value("70000:1")
                .unwrap_err()
                .contains("16 bit")
        );
        assert!(check_community_value("a:b").is_err());
        assert!(check_community_value("1:2:3:4").is_err());
    }

    #[test]
    fn peer_addresses() {
        let v4: IpAddr = "10.0.0.1".parse().unwrap();
        assert_eq!(parse_ip_port("10.0.0.1"), Some((v4, None)));
        assert_eq!(parse_ip_port("10.0.0.1:1179"), Some((v4, Some(1179))));
        let v6: IpAddr = "fd00::1".parse().unwrap();
        assert_eq!(parse_ip_port("fd00::1"), Some((v6, None)));
        assert_eq!(parse_ip_port("[fd00::1]:179"), Some((v6, Some(179))));
        for bad in [
            "10.0.0.1:0",
            "10.0.0.1:70000",
            "[fd00::1]",
            "fd00::1:x",
            "host:179",
            "",
        ] {
            assert_eq!(parse_ip_port(bad), None, "{bad}");
        }
    }
}
