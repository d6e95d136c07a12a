//! Shared helpers for the kernel tests: every test works in network namespaces it creates itself.
#![allow(dead_code)] // each test binary uses a different subset

use std::path::PathBuf;
use std::process::{Command, Output};
use std::sync::atomic::{AtomicU32, Ordering};

use calico_netlink::{Netlink, Netns};

static COUNTER: AtomicU32 = AtomicU32::new(0);

/// These tests create namespaces and links, so they need root and iproute2; fail loudly without them.
pub fn require_root() {
    assert!(
        nix::unistd::geteuid().is_root(),
        "calico-netlink kernel tests must run as root: they create network namespaces with `ip netns add`"
    );
    let ip = Command::new("ip").arg("-V").output();
    assert!(
        ip.is_ok_and(|out| out.status.success()),
        "calico-netlink kernel tests need the `ip` command (iproute2; scripts/setup.sh installs it)"
    );
}

/// A network namespace named uniquely for this process and test, deleted on drop (also on panic).
pub struct TestNs {
    pub name: String,
    pub ns: Netns,
}

impl TestNs {
    pub fn new(tag: &str) -> TestNs {
        require_root();
        let n = COUNTER.fetch_add(1, Ordering::SeqCst);
        let name = format!("cnl-{tag}-{}-{n}", std::process::id());
        run_ok("ip", &["netns", "add", &name]);
        // From here on the guard owns the namespace; if opening fails, the guard still removes it.
        let guard = NameGuard(name.clone());
        let ns = Netns::open(&PathBuf::from(format!("/var/run/netns/{name}")))
            .expect("open the test netns");
        std::mem::forget(guard);
        TestNs { name, ns }
    }

    /// A netlink socket inside this namespace.
    pub fn netlink(&self) -> Netlink {
        Netlink::in_netns(&self.ns).expect("open netlink socket in the test netns")
    }

    /// `ip -n NAME ARGS`, which must succeed; returns stdout.
    pub fn ip(&self, args: &[&str]) -> String {
        let mut full = vec!["-n", self.name.as_str()];
        full.extend_from_slice(args);
        run_ok("ip", &full)
    }

    /// `ip -n NAME ARGS`, returning whether it succeeded (for "this does not exist" checks).
    pub fn ip_succeeds(&self, args: &[&str]) -> bool {
        let mut full = vec!["-n", self.name.as_str()];
        full.extend_from_slice(args);
        run("ip", &full).status.success()
    }

    /// `bridge -n NAME ARGS`, which must succeed; returns stdout.
    pub fn bridge(&self, args: &[&str]) -> String {
        let mut full = vec!["-n", self.name.as_str()];
        full.extend_from_slice(args);
        run_ok("bridge", &full)
    }

    /// `ip netns exec NAME PROGRAM ARGS`.
    pub fn exec(&self, program: &str, args: &[&str]) -> Output {
        let mut full = vec!["netns", "exec", self.name.as_str(), program];
        full.extend_from_slice(args);
        run("ip", &full)
    }

    /// The index of link `name` in this namespace (which must exist).
    pub fn index(&self, netlink: &mut Netlink, name: &str) -> u32 {
        netlink
            .link_by_name(name)
            .expect("look up link")
            .unwrap_or_else(|| panic!("link {name} missing in {}", self.name))
            .index
    }
}

impl Drop for TestNs {
    fn drop(&mut self) {
        delete_netns(&self.name);
    }
}

struct NameGuard(String);

impl Drop for NameGuard {
    fn drop(&mut self) {
        delete_netns(&self.0);
    }
}

fn delete_netns(name: &str) {
    let out = run("ip", &["netns", "delete", name]);
    if !out.status.success() {
        eprintln!(
            "warning: could not delete test netns {name}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

pub fn run(program: &str, args: &[&str]) -> Output {
    Command::new(program)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("run {program} {args:?}: {e}"))
}

pub fn run_ok(program: &str, args: &[&str]) -> String {
    let out = run(program, args);
    assert!(
        out.status.success(),
        "{program} {args:?} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Output lines with surrounding whitespace removed (iproute2 leaves trailing spaces).
pub fn lines(text: &str) -> Vec<String> {
    text.lines()
        .map(|line| line.trim().to_string())
        .filter(|line| !line.is_empty())
        .collect()
}

pub fn net(text: &str) -> ipnet::IpNet {
    text.parse().expect("valid prefix in test")
}

pub fn ip(text: &str) -> std::net::IpAddr {
    text.parse().expect("valid IP in test")
}
