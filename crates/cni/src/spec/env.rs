//! The `CNI_*` environment variables a runtime invokes a plugin with, and `CNI_ARGS`.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::net::IpAddr;
use std::path::PathBuf;
use std::str::FromStr;

use super::error::CniError;

pub const CNI_COMMAND: &str = "CNI_COMMAND";
pub const CNI_CONTAINERID: &str = "CNI_CONTAINERID";
pub const CNI_NETNS: &str = "CNI_NETNS";
pub const CNI_IFNAME: &str = "CNI_IFNAME";
pub const CNI_ARGS: &str = "CNI_ARGS";
pub const CNI_PATH: &str = "CNI_PATH";

/// Linux limits interface names to 15 bytes (IFNAMSIZ minus the NUL).
const MAX_IFNAME_LEN: usize = 15;

/// A CNI verb, as passed in `CNI_COMMAND`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Command {
    Add,
    Del,
    Check,
    Version,
    Status,
    Gc,
}

impl Command {
    pub fn as_str(self) -> &'static str {
        match self {
            Command::Add => "ADD",
            Command::Del => "DEL",
            Command::Check => "CHECK",
            Command::Version => "VERSION",
            Command::Status => "STATUS",
            Command::Gc => "GC",
        }
    }

    /// The environment variables the spec requires for this verb (besides `CNI_COMMAND`).
    pub fn required_vars(self) -> &'static [&'static str] {
        match self {
            Command::Add | Command::Check => &[CNI_CONTAINERID, CNI_NETNS, CNI_IFNAME],
            Command::Del => &[CNI_CONTAINERID, CNI_IFNAME],
            Command::Gc => &[CNI_PATH],
            Command::Version | Command::Status => &[],
        }
    }
}

impl fmt::Display for Command {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Command {
    type Err = CniError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        match text {
            "ADD" => Ok(Command::Add),
            "DEL" => Ok(Command::Del),
            "CHECK" => Ok(Command::Check),
            "VERSION" => Ok(Command::Version),
            "STATUS" => Ok(Command::Status),
            "GC" => Ok(Command::Gc),
            other => Err(CniError::invalid_env(
                format!("unknown CNI_COMMAND {other:?}"),
                "CNI_COMMAND must be one of ADD, DEL, CHECK, VERSION, STATUS, GC",
            )),
        }
    }
}

/// The invocation parameters, validated for the verb.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CniEnv {
    pub command: Command,
    /// `CNI_CONTAINERID`; empty for verbs that take none (VERSION, STATUS, GC).
    pub container_id: String,
    /// `CNI_NETNS`; optional for DEL (the namespace may already be gone).
    pub netns: Option<String>,
    /// `CNI_IFNAME`; empty for verbs that take none.
    pub ifname: String,
    /// `CNI_ARGS` exactly as given (passed through unchanged to delegated plugins).
    pub args_raw: String,
    pub args: CniArgs,
    /// `CNI_PATH` exactly as given.
    pub path_raw: String,
    /// `CNI_PATH` split into directories (empty entries dropped).
    pub path: Vec<PathBuf>,
}

impl CniEnv {
    /// Parses the variables from a map, so callers (and tests) need not touch the process
    /// environment. Empty values count as unset, as in libcni.
    pub fn from_map(vars: &HashMap<String, String>) -> Result<Self, CniError> {
        Self::from_lookup(|name| vars.get(name).cloned())
    }

    /// Parses the calling process's environment. A variable that is not valid UTF-8 is an
    /// invalid-environment error naming it.
    pub fn from_process_env() -> Result<Self, CniError> {
        let mut vars = HashMap::new();
        for name in [
            CNI_COMMAND,
            CNI_CONTAINERID,
            CNI_NETNS,
            CNI_IFNAME,
            CNI_ARGS,
            CNI_PATH,
        ] {
            if let Some(value) = std::env::var_os(name) {
                let value = value.into_string().map_err(|_| {
                    CniError::invalid_env(format!("{name} is not valid UTF-8"), name)
                })?;
                vars.insert(name.to_owned(), value);
            }
        }
        Self::from_map(&vars)
    }

    fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Self, CniError> {
        let get = |name: &str| lookup(name).filter(|value| !value.is_empty());

        let command: Command = get(CNI_COMMAND)
            .ok_or_else(|| {
                CniError::invalid_env(
                    "required env variables [CNI_COMMAND] missing",
                    "CNI_COMMAND",
                )
            })?
            .parse()?;

        let missing: Vec<&str> = command
            .required_vars()
            .iter()
            .copied()
            .filter(|name| get(name).is_none())
            .collect();
        if !missing.is_empty() {
            return Err(CniError::invalid_env(
                format!(
                    "required env variables [{}] missing for {command}",
                    missing.join(", ")
                ),
                missing.join(", "),
            ));
        }

        let container_id = get(CNI_CONTAINERID).unwrap_or_default();
        if !container_id.is_empty() {
            validate_container_id(&container_id)?;
        }
        let ifname = get(CNI_IFNAME).unwrap_or_default();
        if !ifname.is_empty() {
            validate_ifname(&ifname)?;
        }
        let args_raw = get(CNI_ARGS).unwrap_or_default();
        let args = CniArgs::parse(&args_raw)?;
        let path_raw = get(CNI_PATH).unwrap_or_default();
        let path = path_raw
            .split(':')
            .filter(|dir| !dir.is_empty())
            .map(PathBuf::from)
            .collect();

        Ok(Self {
            command,
            container_id,
            netns: get(CNI_NETNS),
            ifname,
            args_raw,
            args,
            path_raw,
            path,
        })
    }

    /// The `CNI_*` variables to hand a delegated plugin: the same as ours, with the verb
    /// replaced by `command`. Variables we were not given are listed with `None` so the caller
    /// can remove them from an inherited environment.
    pub fn delegate_vars(&self, command: Command) -> Vec<(&'static str, Option<String>)> {
        let non_empty = |value: &str| (!value.is_empty()).then(|| value.to_owned());
        vec![
            (CNI_COMMAND, Some(command.as_str().to_owned())),
            (CNI_CONTAINERID, non_empty(&self.container_id)),
            (CNI_NETNS, self.netns.clone()),
            (CNI_IFNAME, non_empty(&self.ifname)),
            (CNI_ARGS, non_empty(&self.args_raw)),
            (CNI_PATH, non_empty(&self.path_raw)),
        ]
    }
}

/// Checks `CNI_CONTAINERID`: an alphanumeric first character, then alphanumerics, `_`, `.`
/// or `-`.
pub fn validate_container_id(container_id: &str) -> Result<(), CniError> {
    let mut chars = container_id.chars();
    let valid = chars
        .next()
        .is_some_and(|first| first.is_ascii_alphanumeric())
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'));
    if valid {
        Ok(())
    } else {
        Err(CniError::invalid_env(
            "invalid characters in CNI_CONTAINERID",
            container_id,
        ))
    }
}

/// Checks `CNI_IFNAME` against the kernel's rules: 1-15 bytes, not `.` or `..`, no `/`, `:`
/// or whitespace.
pub fn validate_ifname(ifname: &str) -> Result<(), CniError> {
    let problem = if ifname.is_empty() {
        Some("CNI_IFNAME is empty".to_owned())
    } else if ifname.len() > MAX_IFNAME_LEN {
        Some(format!(
            "CNI_IFNAME is too long: {} bytes, at most {MAX_IFNAME_LEN} allowed",
            ifname.len()
        ))
    } else if ifname == "." || ifname == ".." {
        Some("CNI_IFNAME must not be \".\" or \"..\"".to_owned())
    } else if ifname
        .chars()
        .any(|c| c == '/' || c == ':' || c.is_whitespace())
    {
        Some("CNI_IFNAME must not contain '/', ':' or whitespace".to_owned())
    } else {
        None
    };
    match problem {
        Some(msg) => Err(CniError::invalid_env(msg, ifname)),
        None => Ok(()),
    }
}

/// `CNI_ARGS` (`K=V;K2=V2`) with the keys Calico understands. Unknown keys are kept in
/// `other` and otherwise ignored, as Calico does.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CniArgs {
    pub k8s_pod_namespace: Option<String>,
    pub k8s_pod_name: Option<String>,
    pub k8s_pod_infra_container_id: Option<String>,
    /// An explicitly requested address for the container.
    pub ip: Option<IpAddr>,
    pub ignore_unknown: bool,
    pub other: BTreeMap<String, String>,
}

impl CniArgs {
    /// Parses `CNI_ARGS`. Empty segments (e.g. a trailing `;`) are skipped; a segment without
    /// `=` or with an empty key, a bad `IP` or a bad `IgnoreUnknown` is error code 4 naming it.
    pub fn parse(text: &str) -> Result<Self, CniError> {
        let mut args = Self::default();
        for pair in text.split(';').filter(|pair| !pair.is_empty()) {
            let Some((key, value)) = pair.split_once('=').filter(|(key, _)| !key.is_empty()) else {
                return Err(CniError::invalid_env(
                    format!("CNI_ARGS: invalid pair {pair:?}"),
                    "each CNI_ARGS entry must look like KEY=VALUE",
                ));
            };
            match key {
                "K8S_POD_NAMESPACE" => args.k8s_pod_namespace = Some(value.to_owned()),
                "K8S_POD_NAME" => args.k8s_pod_name = Some(value.to_owned()),
                "K8S_POD_INFRA_CONTAINER_ID" => {
                    args.k8s_pod_infra_container_id = Some(value.to_owned());
                }
                "IP" => {
                    let ip = value.parse().map_err(|_| {
                        CniError::invalid_env(
                            format!("CNI_ARGS: invalid pair {pair:?}"),
                            "IP must be an IPv4 or IPv6 address",
                        )
                    })?;
                    args.ip = Some(ip);
                }
                "IgnoreUnknown" => {
                    args.ignore_unknown = parse_bool(value).ok_or_else(|| {
                        CniError::invalid_env(
                            format!("CNI_ARGS: invalid pair {pair:?}"),
                            "IgnoreUnknown must be 1, 0, true or false",
                        )
                    })?;
                }
                _ => {
                    args.other.insert(key.to_owned(), value.to_owned());
                }
            }
        }
        Ok(args)
    }

    /// Pod arguments present means Kubernetes invoked us (Calico's `k8s` orchestrator).
    pub fn is_kubernetes(&self) -> bool {
        self.k8s_pod_namespace.is_some() && self.k8s_pod_name.is_some()
    }
}

fn parse_bool(text: &str) -> Option<bool> {
    match text.to_ascii_lowercase().as_str() {
        "1" | "true" => Some(true),
        "0" | "false" => Some(false),
        _ => None,
    }
}
