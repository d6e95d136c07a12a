//! Names and places: the lab's namespaces, its state directory, and the sibling binaries it runs.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};

/// Where every lab keeps its state (one directory per lab).
pub const STATE_ROOT: &str = "/run/calico-lab";
/// Where `ip netns` keeps namespace files.
pub const NETNS_DIR: &str = "/run/netns";
/// Environment variable set on every long-lived process a lab starts, so `down` can find them even
/// without the state file.
pub const LAB_MARKER_ENV: &str = "CALICO_LAB";

/// Lab names end up inside namespace names and paths; a dash would make one lab's `clab-<name>-` prefix a
/// prefix of another's, so names are lowercase letters, digits and underscores.
pub fn validate_lab_name(name: &str) -> Result<()> {
    let ok = !name.is_empty()
        && name.len() <= 24
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_');
    if !ok {
        bail!(
            "invalid lab name {name:?}: use 1-24 lowercase letters, digits or underscores (no dashes)"
        );
    }
    Ok(())
}

/// Names and paths of one lab.
#[derive(Clone, Debug)]
pub struct Lab {
    pub name: String,
}

impl Lab {
    pub fn new(name: &str) -> Result<Lab> {
        validate_lab_name(name)?;
        Ok(Lab {
            name: name.to_string(),
        })
    }

    /// `clab-<name>-`: every namespace of this lab starts with it.
    pub fn prefix(&self) -> String {
        format!("clab-{}-", self.name)
    }

    pub fn underlay_ns(&self) -> String {
        format!("{}ul", self.prefix())
    }

    /// Namespace of a host (`node1`) or a pod (`node1-pod2`).
    pub fn ns(&self, member: &str) -> String {
        format!("{}{member}", self.prefix())
    }

    pub fn dir(&self) -> PathBuf {
        Path::new(STATE_ROOT).join(&self.name)
    }

    pub fn state_file(&self) -> PathBuf {
        self.dir().join("state.json")
    }

    pub fn lock_file(&self) -> PathBuf {
        Path::new(STATE_ROOT).join(format!(".{}.lock", self.name))
    }

    pub fn datastore_file(&self) -> PathBuf {
        self.dir().join("datastore.db")
    }

    pub fn host_dir(&self, host: &str) -> PathBuf {
        self.dir().join(host)
    }

    pub fn etcd_dir(&self) -> PathBuf {
        self.dir().join("etcd")
    }
}

/// Path of a namespace file.
pub fn netns_path(ns: &str) -> PathBuf {
    Path::new(NETNS_DIR).join(ns)
}

/// Host name `nodeI` (1-based).
pub fn host_name(index: usize) -> String {
    format!("node{index}")
}

/// The longest host name: the underlay's bridge port is named after its host, and Linux interface
/// names have at most 15 bytes.
pub const MAX_HOST_NAME: usize = 15;

/// Host names given with `--node-names` become Node names, namespace names and the underlay's port
/// names, and pods are named `<host>-pod<j>`: so DNS-label characters, at most [`MAX_HOST_NAME`]
/// bytes, no name that looks like a pod's or the underlay's, and no duplicates.
pub fn validate_host_names(names: &[String]) -> Result<()> {
    let mut seen = std::collections::BTreeSet::new();
    for name in names {
        let label = !name.is_empty()
            && name.len() <= MAX_HOST_NAME
            && name
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
            && !name.starts_with('-')
            && !name.ends_with('-');
        if !label {
            bail!(
                "invalid host name {name:?}: use 1-{MAX_HOST_NAME} lowercase letters, digits or dashes, not starting or ending with a dash"
            );
        }
        if name == "ul" || name == "underlay" {
            bail!("invalid host name {name:?}: it names the lab's underlay");
        }
        if looks_like_pod(name) {
            bail!("invalid host name {name:?}: names ending in -pod<number> are pods' names");
        }
        if !seen.insert(name.as_str()) {
            bail!("host name {name:?} is given twice");
        }
    }
    Ok(())
}

/// A Kubernetes namespace name: a DNS label (1-63 lowercase letters, digits or dashes, starting and
/// ending with a letter or digit).
pub fn validate_k8s_namespace(name: &str) -> Result<()> {
    let ok = !name.is_empty()
        && name.len() <= 63
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !name.starts_with('-')
        && !name.ends_with('-');
    if !ok {
        bail!(
            "invalid namespace {name:?}: use 1-63 lowercase letters, digits or dashes, not starting or ending with a dash"
        );
    }
    Ok(())
}

/// `<host>-pod<j>`.
fn looks_like_pod(name: &str) -> bool {
    name.rsplit_once("-pod")
        .is_some_and(|(_, j)| !j.is_empty() && j.bytes().all(|b| b.is_ascii_digit()))
}

/// Pod name `nodeI-podJ`.
pub fn pod_name(host: &str, index: usize) -> String {
    format!("{host}-pod{index}")
}

/// A sibling binary of this executable (`target/debug/calico-node` next to `target/debug/calico-lab`),
/// else one on `$PATH` (or in the system directories).
pub fn find_binary(name: &str) -> Result<PathBuf> {
    let sibling = std::env::current_exe()
        .ok()
        .and_then(|exe| exe.parent().map(|dir| dir.join(name)));
    if let Some(path) = sibling.filter(|p| p.is_file()) {
        return Ok(path);
    }
    calico_process::find_program(name).with_context(|| {
        format!(
            "`{name}` not found next to calico-lab or on $PATH: build it with `cargo build --workspace`"
        )
    })
}

/// A system tool (`ip`, `etcd`, ...) on `$PATH` or in the usual system directories.
pub fn system_binary(name: &str, package: &str) -> Result<PathBuf> {
    calico_process::find_program(name)
        .with_context(|| format!("`{name}` not found: install the Debian package `{package}`"))
}

/// Fails unless running as root (namespaces, veths and sysctls need it).
pub fn require_root() -> Result<()> {
    if nix::unistd::geteuid().is_root() {
        Ok(())
    } else {
        bail!(
            "calico-lab must run as root (it creates network namespaces): try `sudo calico-lab ...`"
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_without_dashes_only() {
        assert!(validate_lab_name("lab").is_ok());
        assert!(validate_lab_name("t_12").is_ok());
        for bad in ["", "a-b", "Lab", "a/b", "x".repeat(25).as_str()] {
            assert!(validate_lab_name(bad).is_err(), "{bad}");
        }
        let lab = Lab::new("lab").unwrap();
        assert_eq!(lab.ns("k8s-master"), "clab-lab-k8s-master");
        assert_eq!(lab.underlay_ns(), "clab-lab-ul");
        assert_eq!(lab.ns(&pod_name(&host_name(2), 3)), "clab-lab-node2-pod3");
    }

    #[test]
    fn host_names() {
        let names = |list: &[&str]| list.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert!(validate_host_names(&names(&["k8s-master", "k8s-node1", "k8s-node2"])).is_ok());
        for bad in [
            vec!["a", "a"],
            vec!["Node1"],
            vec!["-a"],
            vec!["a-"],
            vec!["ul"],
            vec!["underlay"],
            vec!["a-pod1"],
            vec![""],
            vec!["a_b"],
            vec!["sixteen-letters1"],
        ] {
            assert!(validate_host_names(&names(&bad)).is_err(), "{bad:?}");
        }
        assert!(validate_host_names(&names(&["a-podcast", "pod1"])).is_ok());
    }
}
