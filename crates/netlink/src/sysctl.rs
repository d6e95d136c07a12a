//! Kernel parameters under /proc/sys.
//!
//! Entries under `net/` belong to the network namespace of the *calling thread*, so to change a value in a
//! container's namespace call these inside [`crate::Netns::run`].

use std::path::{Component, Path, PathBuf};

use crate::NetlinkError;

/// Writes `value` to `/proc/sys/<key>`, e.g. `set("net/ipv4/conf/cali0123/proxy_arp", "1")`.
pub fn set(key: &str, value: &str) -> Result<(), NetlinkError> {
    let path = sysctl_path(key)?;
    std::fs::write(&path, value)
        .map_err(|e| NetlinkError::Io(format!("set sysctl {key} to {value:?}: {e}")))
}

/// Reads `/proc/sys/<key>`, without the trailing newline.
pub fn get(key: &str) -> Result<String, NetlinkError> {
    let path = sysctl_path(key)?;
    let text = std::fs::read_to_string(&path)
        .map_err(|e| NetlinkError::Io(format!("get sysctl {key}: {e}")))?;
    Ok(text.trim_end_matches('\n').to_string())
}

/// Keys are relative, slash-separated paths (interface names may contain dots, so dotted keys are ambiguous);
/// anything that could leave /proc/sys is refused.
fn sysctl_path(key: &str) -> Result<PathBuf, NetlinkError> {
    let relative = Path::new(key);
    let plain = relative
        .components()
        .all(|c| matches!(c, Component::Normal(_)));
    if key.is_empty() || !plain || key.contains('\0') {
        return Err(NetlinkError::Invalid(format!(
            "sysctl key {key:?}: expected a relative path like net/ipv4/conf/eth0/proxy_arp"
        )));
    }
    Ok(Path::new("/proc/sys").join(relative))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_must_stay_under_proc_sys() {
        assert_eq!(
            sysctl_path("net/ipv4/ip_forward").ok(),
            Some(PathBuf::from("/proc/sys/net/ipv4/ip_forward"))
        );
        for bad in ["", "/etc/passwd", "net/../../etc/passwd", "./net/ipv4"] {
            let error = sysctl_path(bad).expect_err(bad);
            assert!(matches!(error, NetlinkError::Invalid(_)), "{bad}: {error}");
        }
    }

    #[test]
    fn reads_a_value_without_newline() {
        let value = get("kernel/ostype").expect("read kernel/ostype");
        assert_eq!(value, "Linux");
    }
}
