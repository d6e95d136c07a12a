//! A stalled dependency holds up only the thread or task that waits for it: with `nft` hanging, or with
//! the embedded datastore file locked by another process, `/liveness` keeps answering at once and
//! `/readiness` says what is stuck. Then the stall ends and the node becomes ready.

mod support;

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::time::{Duration, Instant};

use support::{Host, Running, etcd_in, host, open_store, runtime};

/// Polls `/readiness` until its body contains every one of `needles`; returns the body.
fn wait_readiness_saying(host: &Host, needles: &[&str], within: Duration) -> String {
    let deadline = Instant::now() + within;
    let mut last = None;
    while Instant::now() < deadline {
        if let Some((code, body)) = host.http_get("/readiness") {
            if code == 503 && needles.iter().all(|n| body.contains(n)) {
                return body;
            }
            last = Some((code, body));
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    panic!("/readiness never said {needles:?} within {within:?}; last answer: {last:?}");
}

/// `/liveness` answers 200; returns how long the answer took (printed, not asserted against a figure:
/// the bound below only rules out waiting on the stalled work, which takes seconds).
fn liveness_answers(host: &Host) -> Duration {
    let started = Instant::now();
    let answer = host.http_get("/liveness");
    let took = started.elapsed();
    assert_eq!(
        answer.as_ref().map(|(code, _)| *code),
        Some(200),
        "/liveness while stalled: {answer:?}"
    );
    assert!(
        took < Duration::from_secs(1),
        "/liveness took {took:?}: it waited on the stalled work"
    );
    took
}

/// An `nft` that never finishes: it waits while its parent (calico-node) lives, 60 s at most, so it
/// cannot outlive the test.
fn hanging_nft(dir: &Path) {
    let script = dir.join("nft");
    std::fs::write(
        &script,
        "#!/bin/sh\nparent=$PPID\ni=0\nwhile [ $i -lt 300 ] && kill -0 \"$parent\" 2>/dev/null; do sleep 0.2; i=$((i+1)); done\nexit 1\n",
    )
    .expect("write the nft wrapper");
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).expect("chmod");
}

#[test]
fn a_hanging_nft_leaves_liveness_answering_and_readiness_names_it() {
    let host = host(61);
    let wrappers = tempfile::tempdir().expect("tempdir");
    hanging_nft(wrappers.path());
    let path = format!(
        "{}:{}",
        wrappers.path().display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let node = Running::spawn(host.command(&[("PATH", &path)]));
    let body = wait_readiness_saying(
        &host,
        &[
            "the dataplane is stuck",
            "the nftables table ip calico",
            "has been running for",
        ],
        Duration::from_secs(20),
    );
    let took = liveness_answers(&host);
    eprintln!("readiness while nft hangs:\n{body}/liveness answered in {took:?}");
    // The calculation keeps going meanwhile: a route the stalled apply has not written yet is not
    // this test's concern, but the metrics endpoint is on the same runtime and must answer too.
    drop(node);
}

#[test]
fn a_locked_datastore_file_leaves_liveness_answering_and_readiness_names_the_waiting_request() {
    let host = host(62);
    let path = host.datastore();
    // A valid store, then another process's connection (this test's) holding the write lock.
    let rt = runtime();
    drop(rt.block_on(async { open_store(&path) }));
    let locker = rusqlite::Connection::open(&path).expect("open the store file");
    locker
        .execute_batch("BEGIN IMMEDIATE")
        .expect("take the write lock");

    let node = Running::spawn(host.command(&[]));
    let body = wait_readiness_saying(
        &host,
        &["not ready: datastore:", "has been waiting for"],
        Duration::from_secs(20),
    );
    let took = liveness_answers(&host);
    eprintln!("readiness while the file is locked:\n{body}/liveness answered in {took:?}");

    // The lock goes: the waiting write completes (or its retry does) and the node becomes ready.
    locker.execute_batch("ROLLBACK").expect("release the lock");
    assert!(
        host.wait_ready(Duration::from_secs(30)),
        "not ready after the lock was released: {:?}",
        host.http_get("/readiness")
    );
    drop(node);
}

/// Sends `signal` (STOP or CONT) to `pid`.
fn signal(pid: u32, signal: &str) {
    let status = std::process::Command::new("kill")
        .args([&format!("-{signal}"), &pid.to_string()])
        .status()
        .expect("run kill");
    assert!(status.success(), "kill -{signal} {pid}");
}

/// Continues a stopped process when dropped, so a failed assertion never leaves etcd frozen.
struct Thaw(u32);

impl Drop for Thaw {
    fn drop(&mut self) {
        let _ = std::process::Command::new("kill")
            .args(["-CONT", &self.0.to_string()])
            .status();
    }
}

#[test]
fn a_frozen_etcd_makes_readiness_say_so_and_it_recovers_when_etcd_returns() {
    let host = host(63);
    let endpoint = format!("http://127.0.0.1:{}", calico_testutil::free_port());
    let (etcd, _data) = etcd_in(&host, &endpoint);
    let node = Running::spawn(
        host.command(&[("DATASTORE_TYPE", "etcdv3"), ("ETCD_ENDPOINTS", &endpoint)]),
    );
    assert!(
        host.wait_ready(Duration::from_secs(30)),
        "not ready on etcd: {:?}",
        host.http_get("/readiness")
    );
    let pid = etcd.pid().expect("etcd pid");
    signal(pid, "STOP");
    let thaw = Thaw(pid);
    // The probe runs every 5 s and gives up after 3 s.
    let body = wait_readiness_saying(&host, &["not ready: datastore:"], Duration::from_secs(20));
    let took = liveness_answers(&host);
    eprintln!("readiness while etcd is frozen:\n{body}/liveness answered in {took:?}");
    drop(thaw);
    assert!(
        host.wait_ready(Duration::from_secs(20)),
        "not ready after etcd continued: {:?}",
        host.http_get("/readiness")
    );
    drop(node);
}
