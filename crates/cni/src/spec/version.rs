//! CNI spec versions this plugin speaks, and which verbs each of them defines.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::{Value, json};

use super::env::Command;
use super::error::CniError;

/// A CNI spec version this plugin supports. Ordered oldest first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum CniVersion {
    V0_3_0,
    V0_3_1,
    V0_4_0,
    V1_0_0,
    V1_1_0,
}

impl CniVersion {
    /// Every supported version, oldest first (the order `supportedVersions` lists them in).
    pub const ALL: [CniVersion; 5] = [
        CniVersion::V0_3_0,
        CniVersion::V0_3_1,
        CniVersion::V0_4_0,
        CniVersion::V1_0_0,
        CniVersion::V1_1_0,
    ];

    /// The newest version; used when the input names none (e.g. a bare VERSION request).
    pub const LATEST: CniVersion = CniVersion::V1_1_0;

    pub fn as_str(self) -> &'static str {
        match self {
            CniVersion::V0_3_0 => "0.3.0",
            CniVersion::V0_3_1 => "0.3.1",
            CniVersion::V0_4_0 => "0.4.0",
            CniVersion::V1_0_0 => "1.0.0",
            CniVersion::V1_1_0 => "1.1.0",
        }
    }

    /// Parses a `cniVersion` string; anything unsupported is error code 1 naming the version
    /// and the supported list.
    pub fn parse(text: &str) -> Result<Self, CniError> {
        Self::ALL
            .into_iter()
            .find(|version| version.as_str() == text)
            .ok_or_else(|| {
                CniError::incompatible_version(
                    format!("incompatible CNI version {text:?}"),
                    format!("supported versions: {}", supported_versions().join(", ")),
                )
            })
    }

    /// Parses the `cniVersion` of a network config; an absent version means 0.1.0 in the
    /// spec's history, which this plugin does not support.
    pub fn parse_config_field(text: Option<&str>) -> Result<Self, CniError> {
        match text {
            Some(text) if !text.is_empty() => Self::parse(text),
            _ => Err(CniError::incompatible_version(
                "incompatible CNI version: the network config has no cniVersion (implies 0.1.0)",
                format!("supported versions: {}", supported_versions().join(", ")),
            )),
        }
    }

    /// Results before 1.0.0 tag each IP with `"version": "4"|"6"`.
    pub fn ips_carry_version(self) -> bool {
        self < CniVersion::V1_0_0
    }

    /// The version that introduced a verb.
    pub fn introducing(command: Command) -> Option<CniVersion> {
        match command {
            Command::Add | Command::Del | Command::Version => None,
            Command::Check => Some(CniVersion::V0_4_0),
            Command::Status | Command::Gc => Some(CniVersion::V1_1_0),
        }
    }

    /// Whether `command` exists in this version of the spec.
    pub fn defines(self, command: Command) -> bool {
        Self::introducing(command).is_none_or(|first| self >= first)
    }

    /// Fails with error code 1 when the config's version predates `command`, the way libcni's
    /// plugin skeleton refuses e.g. CHECK for a 0.3.1 config.
    pub fn check_command(self, command: Command) -> Result<(), CniError> {
        match Self::introducing(command) {
            Some(first) if self < first => Err(CniError::incompatible_version(
                format!("config version {self} does not allow {}", command.as_str()),
                format!("{} needs cniVersion {first} or later", command.as_str()),
            )),
            _ => Ok(()),
        }
    }
}

impl fmt::Display for CniVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for CniVersion {
    type Err = CniError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        Self::parse(text)
    }
}

impl Serialize for CniVersion {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for CniVersion {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        Self::parse(&text).map_err(serde::de::Error::custom)
    }
}

/// The supported versions as strings, oldest first.
pub fn supported_versions() -> Vec<&'static str> {
    CniVersion::ALL
        .iter()
        .map(|version| version.as_str())
        .collect()
}

/// The VERSION command's output. `requested` is the `cniVersion` from stdin, if any; like
/// libcni plugins, the output echoes it, or names the latest version when none was given.
pub fn version_json(requested: Option<&str>) -> Value {
    let cni_version = requested
        .filter(|text| !text.is_empty())
        .unwrap_or(CniVersion::LATEST.as_str());
    json!({
        "cniVersion": cni_version,
        "supportedVersions": supported_versions(),
    })
}

/// The `cniVersion` named by a VERSION request's stdin (which may be empty or lack the key).
/// Malformed JSON is error code 6.
pub fn requested_version(stdin: &[u8]) -> Result<Option<String>, CniError> {
    if stdin.iter().all(u8::is_ascii_whitespace) {
        return Ok(None);
    }
    let value: Value = serde_json::from_slice(stdin).map_err(|error| {
        CniError::decoding_failure("failed to decode the VERSION request", error.to_string())
    })?;
    Ok(value
        .get("cniVersion")
        .and_then(Value::as_str)
        .map(str::to_owned))
}
