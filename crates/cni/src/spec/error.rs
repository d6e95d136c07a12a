//! The CNI error result: a numeric code, a short message and optional details.

use serde_json::{Map, Value, json};

/// An error as a CNI plugin reports it: printed as JSON on stdout with a non-zero exit status.
///
/// Codes 0-99 are reserved by the spec (see the associated constants); 100 and above are
/// plugin specific.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{msg}{}", if details.is_empty() { String::new() } else { format!(": {details}") })]
pub struct CniError {
    pub code: u32,
    pub msg: String,
    pub details: String,
}

impl CniError {
    /// The configuration's `cniVersion` is not one this plugin speaks, or the verb does not
    /// exist in that version.
    pub const INCOMPATIBLE_CNI_VERSION: u32 = 1;
    /// A network-config field holds a value the plugin does not support.
    pub const UNSUPPORTED_FIELD: u32 = 2;
    /// The container is unknown or gone; the runtime need not clean up after it.
    pub const UNKNOWN_CONTAINER: u32 = 3;
    /// A required `CNI_*` environment variable is missing or invalid.
    pub const INVALID_ENVIRONMENT_VARIABLES: u32 = 4;
    /// Reading or writing failed (stdin, files, child processes).
    pub const IO_FAILURE: u32 = 5;
    /// Content could not be decoded (bad JSON, a result that does not parse).
    pub const DECODING_FAILURE: u32 = 6;
    /// The network configuration failed validation.
    pub const INVALID_NETWORK_CONFIG: u32 = 7;
    /// A transient condition: the runtime may retry later.
    pub const TRY_AGAIN_LATER: u32 = 11;
    /// (STATUS) The plugin cannot service ADD requests.
    pub const PLUGIN_NOT_AVAILABLE: u32 = 50;
    /// (STATUS) The plugin cannot service ADD requests and existing containers may have
    /// limited connectivity.
    pub const PLUGIN_NOT_AVAILABLE_LIMITED_CONNECTIVITY: u32 = 51;

    pub fn new(code: u32, msg: impl Into<String>, details: impl Into<String>) -> Self {
        Self {
            code,
            msg: msg.into(),
            details: details.into(),
        }
    }

    pub fn incompatible_version(msg: impl Into<String>, details: impl Into<String>) -> Self {
        Self::new(Self::INCOMPATIBLE_CNI_VERSION, msg, details)
    }

    pub fn invalid_env(msg: impl Into<String>, details: impl Into<String>) -> Self {
        Self::new(Self::INVALID_ENVIRONMENT_VARIABLES, msg, details)
    }

    pub fn io_failure(msg: impl Into<String>, details: impl Into<String>) -> Self {
        Self::new(Self::IO_FAILURE, msg, details)
    }

    pub fn decoding_failure(msg: impl Into<String>, details: impl Into<String>) -> Self {
        Self::new(Self::DECODING_FAILURE, msg, details)
    }

    pub fn invalid_config(msg: impl Into<String>, details: impl Into<String>) -> Self {
        Self::new(Self::INVALID_NETWORK_CONFIG, msg, details)
    }

    /// The error result JSON for the given protocol version. `details` is always present
    /// (possibly empty) because the spec lists it as one of the error keys.
    pub fn to_json(&self, cni_version: &str) -> Value {
        json!({
            "cniVersion": cni_version,
            "code": self.code,
            "msg": self.msg,
            "details": self.details,
        })
    }

    /// Reads an error result another plugin printed. Returns `None` when the JSON is not an
    /// object with a numeric `code`.
    pub fn from_json(value: &Value) -> Option<Self> {
        let object: &Map<String, Value> = value.as_object()?;
        let code = u32::try_from(object.get("code")?.as_u64()?).ok()?;
        let text = |key: &str| {
            object
                .get(key)
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_owned()
        };
        Some(Self::new(code, text("msg"), text("details")))
    }
}
