//! What the lab's end-to-end test binaries share: preconditions, the workspace's binaries, running
//! commands with a time limit, and small facts about the lab's addressing.

// Each test binary uses its own subset.
#![allow(dead_code)]

use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::process::{Command, Output};
use std::time::Duration;

use calico_testutil::netns::{require_binary, require_root, run_with_timeout};

/// Root, the tools the labs use, and the workspace's binaries; panics with what to do otherwise.
pub fn preconditions() {
    if let Err(e) = require_root() {
        panic!("these tests build network namespaces and need root: {e}");
    }
    for (tool, package) in [
        ("ip", "iproute2"),
        ("ss", "iproute2"),
        ("nft", "nftables"),
        ("busybox", "busybox-static"),
    ] {
        if let Err(e) = require_binary(tool, package) {
            panic!("{e}");
        }
    }
    for name in ["calico-node", "calico", "calicoctl"] {
        workspace_binary(name);
    }
}

pub fn lab_binary() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_calico-lab"))
}

/// A binary built by the workspace, next to `calico-lab` in the target directory.
pub fn workspace_binary(name: &str) -> PathBuf {
    let lab = lab_binary();
    let dir = lab.parent().expect("calico-lab has a parent directory");
    let path = dir.join(name);
    assert!(
        path.is_file(),
        "`{name}` is missing from {}: run `cargo build --workspace --bins` before these tests",
        dir.display()
    );
    path
}

/// A system tool, or a panic naming the package that provides it.
pub fn tool(name: &str, package: &str) -> PathBuf {
    require_binary(name, package).unwrap_or_else(|e| panic!("{e}"))
}

pub fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

pub fn describe(output: &Output) -> String {
    format!(
        "{}\nstdout:\n{}\nstderr:\n{}",
        output.status,
        text(&output.stdout),
        text(&output.stderr)
    )
}

/// Runs a command with a time limit; panics if it cannot start or hangs.
pub fn run(command: &mut Command, limit: Duration) -> Output {
    run_with_timeout(command, limit).unwrap_or_else(|e| panic!("{e}"))
}

/// Runs a command that must succeed; returns its stdout.
pub fn run_ok(command: &mut Command, limit: Duration) -> String {
    let what = format!("{command:?}");
    let output = run(command, limit);
    assert!(
        output.status.success(),
        "{what} failed: {}",
        describe(&output)
    );
    text(&output.stdout)
}

/// The /26 IPAM block holding pod address `ip` (the lab's pools use Calico's default block size).
pub fn block_of(ip: &str) -> String {
    let ip: Ipv4Addr = ip.parse().expect("pod address");
    format!("{}/26", Ipv4Addr::from(u32::from(ip) & !0x3f))
}
