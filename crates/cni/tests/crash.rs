//! A plugin killed with SIGKILL in the middle of ADD (a node losing power, the runtime's timeout, OOM)
//! must leave nothing that the runtime's DEL cannot clean up, and a leak it leaves when no DEL comes is
//! found by `calicoctl ipam check` and freed by `calicoctl ipam release --from-report`.

mod common;

use std::collections::BTreeMap;
use std::io::Write;
use std::process::{Child, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use common::state::{StoreState, assert_ipam_check_problems};
use common::{Call, Datastore, Host, Pod, assert_ok, calicoctl, create_pool};
use rand::Rng;
use serde_json::{Value, json};

/// This file's pool (no other test file uses it).
const POOL: &str = "198.18.128.0/20";
const POOL_PREFIX: &str = "198.18.";
const NETWORK: &str = "crashnet";
const ITERATIONS: usize = 30;
/// Longest a killed plugin may take to be reaped.
const REAP_LIMIT: Duration = Duration::from_secs(10);

/// The tests of this file take turns: each times the plugin, and the other's ADDs would skew that.
static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

fn take_turn() -> std::sync::MutexGuard<'static, ()> {
    ONE_AT_A_TIME
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

#[test]
fn sigkill_during_add_leaves_nothing_del_cannot_clean() {
    let _turn = take_turn();
    let host = Host::new("cni-crash-h", "crash-node");
    let ds = Datastore::created_embedded(host.dir.path().join("calico.db"));
    create_pool(&ds, "crash", POOL, 26);
    let conf = host.conf("1.0.0", NETWORK, &ds, json!({}));
    let typical = typical_add_duration(&host, &conf);
    println!("a complete ADD takes about {typical:?}");

    let mut rng = rand::rng();
    let mut landed: BTreeMap<Stage, usize> = BTreeMap::new();
    for i in 0..ITERATIONS {
        let id = format!("k{i}");
        let pod = Pod::new("cni-crash-p");
        // Stratified: iteration i kills somewhere in the i-th slice of [0, typical], so the kills
        // spread over the whole ADD instead of clustering by chance.
        let slice = typical.as_secs_f64() / ITERATIONS as f64;
        let delay = Duration::from_secs_f64(slice * (i as f64 + rng.random_range(0.0..1.0)));
        let finished_first = start_and_kill(&host, &id, &pod, &conf, delay);
        let stage = Stage::observe(&host, &ds, &id, finished_first);
        *landed.entry(stage).or_default() += 1;

        // What a runtime does next: DEL the attachment it could not complete.
        assert_ok(
            &host.del(&id, Some(&pod), &conf),
            &host,
            &format!("DEL {id}"),
        );
        let after = StoreState::read(&ds);
        assert!(
            after.handle_ips(&format!("{NETWORK}.{id}")).is_empty(),
            "addresses of {id} still allocated after DEL (killed at {delay:?}, {stage:?})"
        );
        assert!(
            !after.has_endpoint_of(&id),
            "endpoint of {id} left after DEL ({stage:?})"
        );
        assert_eq!(
            host.links(),
            vec!["lo".to_string()],
            "links left after DEL of {id} ({stage:?})"
        );
    }
    println!("where the {ITERATIONS} SIGKILLs landed:");
    for (stage, count) in &landed {
        println!("  {count:3} {}", stage.describe());
    }
    let count = |stages: &[Stage]| -> usize { stages.iter().filter_map(|s| landed.get(s)).sum() };
    let before_ipam = count(&[Stage::BeforeAssignment]);
    let inside_window = count(&[
        Stage::AssignedNotWired,
        Stage::WiredNoEndpoint,
        Stage::EndpointWritten,
    ]);
    println!(
        "  => {before_ipam} before IPAM assignment, {} after it ({inside_window} while the plugin still ran)",
        ITERATIONS - before_ipam
    );
    assert!(
        before_ipam > 0 && inside_window > 0,
        "the kills must land both before the assignment and between it and the plugin's exit: {landed:?}"
    );

    assert_eq!(host.links(), vec!["lo".to_string()]);
    let routes = host.routes();
    assert!(!routes.contains(POOL_PREFIX), "pool routes left:\n{routes}");
    let state = StoreState::read(&ds);
    state.assert_nothing_allocated();
    assert_ipam_check_problems(&ds, 0);
}

#[test]
fn sigkill_after_ipam_assignment_leak_is_found_and_released_from_report() {
    let _turn = take_turn();
    let host = Host::new("cni-crash-h", "crash-leak-node");
    let ds = Datastore::created_embedded(host.dir.path().join("calico.db"));
    create_pool(&ds, "crash", POOL, 26);
    let conf = host.conf("1.0.0", NETWORK, &ds, json!({}));
    let typical = typical_add_duration(&host, &conf);

    // Search for a kill that lands after the address was assigned but before the endpoint was written:
    // too early moves the lower bound up, too late (endpoint written) moves the upper bound down.
    let mut rng = rand::rng();
    let (mut low, mut high) = (0.0, typical.as_secs_f64() * 1.2);
    let mut leak = None;
    let mut tries = Vec::new();
    for attempt in 0..40 {
        let id = format!("leak{attempt}");
        let pod = Pod::new("cni-crash-p");
        let delay = Duration::from_secs_f64(rng.random_range(low..=high));
        let finished_first = start_and_kill(&host, &id, &pod, &conf, delay);
        let stage = Stage::observe(&host, &ds, &id, finished_first);
        tries.push(format!("{delay:?}: {stage:?}"));
        match stage {
            Stage::AssignedNotWired | Stage::WiredNoEndpoint => {
                leak = Some((id, pod, stage));
                break;
            }
            Stage::BeforeAssignment => low = delay.as_secs_f64(),
            Stage::EndpointWritten | Stage::Completed => high = delay.as_secs_f64(),
        }
        if high - low < 0.002 {
            (low, high) = ((low - 0.010).max(0.0), high + 0.010);
        }
        // Not the crash we look for: clean up as a runtime would and try again.
        assert_ok(&host.del(&id, Some(&pod), &conf), &host, "DEL");
    }
    let (id, pod, stage) =
        leak.unwrap_or_else(|| panic!("no kill landed between assignment and endpoint: {tries:?}"));
    println!(
        "after {} kills, {id} was killed {} (tries: {tries:?})",
        tries.len(),
        stage.describe()
    );
    let handle = format!("{NETWORK}.{id}");
    let leaked = StoreState::read(&ds).handle_ips(&handle);
    assert_eq!(leaked.len(), 1, "the killed ADD holds one address");
    let leaked_ip = leaked[0];

    // No DEL: an operator finds the leak...
    let dir = tempfile::tempdir().expect("temp dir");
    let report = dir.path().join("report.json");
    let report_arg = report.display().to_string();
    let out = calicoctl(&ds, &["ipam", "check", "-o", &report_arg]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "ipam check failed: {stdout}");
    assert!(
        stdout.contains("Found 1 IPs that are allocated in IPAM but not actually in use."),
        "ipam check does not see the leak:\n{stdout}"
    );
    let text = std::fs::read_to_string(&report).expect("report written");
    let parsed: Value = serde_json::from_str(&text).expect("report is JSON");
    let entry = &parsed["allocations"][leaked_ip.to_string()][0];
    assert_eq!(entry["inUse"], json!(false), "report entry: {entry}");
    assert_eq!(entry["handle"], json!(handle), "report entry: {entry}");

    // ...and releases it from the report (the store is not locked, hence --force).
    let out = calicoctl(
        &ds,
        &[
            "ipam",
            "release",
            &format!("--from-report={report_arg}"),
            "--force",
        ],
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "ipam release failed: {stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains("Released 1 IPs successfully"),
        "ipam release output:\n{stdout}"
    );
    let state = StoreState::read(&ds);
    assert!(
        state.handle_ips(&handle).is_empty(),
        "{leaked_ip} still allocated"
    );
    state.assert_nothing_allocated();
    assert_ipam_check_problems(&ds, 0);

    // The interfaces a killed ADD may have made are the runtime's DEL to remove; it still works.
    assert_ok(
        &host.del(&id, Some(&pod), &conf),
        &host,
        "DEL after release",
    );
    assert_eq!(host.links(), vec!["lo".to_string()]);
    assert!(!host.routes().contains(POOL_PREFIX), "{}", host.routes());
    assert_ipam_check_problems(&ds, 0);
}

/// How long a complete ADD takes here, started and waited for the way the kills below are: the median
/// of five, after one that claims the host's first block and creates the network's profile.
fn typical_add_duration(host: &Host, conf: &Value) -> Duration {
    let mut times = Vec::new();
    for i in 0..6 {
        let pod = Pod::new("cni-crash-p");
        let id = format!("measure{i}");
        let started = Instant::now();
        let mut plugin = Reaped(spawn_plugin(
            host,
            &Call::new("ADD", &id, Some(pod.path())),
            conf,
        ));
        let status = loop {
            if let Some(status) = plugin.0.try_wait().expect("poll plugin") {
                break status;
            }
            assert!(
                started.elapsed() < Duration::from_secs(60),
                "ADD {id} did not finish within 60 s"
            );
            std::thread::sleep(Duration::from_millis(1));
        };
        times.push(started.elapsed());
        assert!(status.success(), "ADD {id} failed:\n{}", host.log_tail());
        assert_ok(&host.del(&id, Some(&pod), conf), host, "DEL");
    }
    times.remove(0);
    times.sort();
    times[times.len() / 2]
}

/// Start ADD for `id` the way a runtime does, SIGKILL it after `delay` and reap it. True if it had
/// already finished by then.
fn start_and_kill(host: &Host, id: &str, pod: &Pod, conf: &Value, delay: Duration) -> bool {
    let call = Call::new("ADD", id, Some(pod.path()));
    let mut plugin = Reaped(spawn_plugin(host, &call, conf));
    std::thread::sleep(delay);
    let finished_first = plugin.0.try_wait().expect("poll plugin").is_some();
    // `ip netns exec` has become the plugin (it execs), so this kill hits the plugin itself.
    let _ = plugin.0.kill();
    let deadline = Instant::now() + REAP_LIMIT;
    while plugin.0.try_wait().expect("poll plugin").is_none() {
        assert!(Instant::now() < deadline, "killed plugin not reaped");
        std::thread::sleep(Duration::from_millis(2));
    }
    finished_first
}

/// The plugin as `Host::invoke` starts it, with the config already on its stdin.
fn spawn_plugin(host: &Host, call: &Call, conf: &Value) -> Child {
    let mut child = host
        .command(call)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start plugin");
    // Far smaller than a pipe buffer: never waits for the plugin. Dropping stdin closes it.
    let mut stdin = child.stdin.take().expect("stdin");
    if let Err(e) = stdin.write_all(conf.to_string().as_bytes()) {
        let _ = child.kill();
        let _ = child.wait();
        panic!("write config: {e}");
    }
    child
}

/// A child that is killed and reaped when dropped (also when the test panics).
struct Reaped(Child);

impl Drop for Reaped {
    fn drop(&mut self) {
        // Errors mean it has already exited; wait() reaps it either way.
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// How far an ADD got before its SIGKILL.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Stage {
    BeforeAssignment,
    AssignedNotWired,
    WiredNoEndpoint,
    EndpointWritten,
    Completed,
}

impl Stage {
    fn observe(host: &Host, ds: &Datastore, id: &str, finished_first: bool) -> Stage {
        let probe = StoreState::read(ds);
        let assigned = !probe.handle_ips(&format!("{NETWORK}.{id}")).is_empty();
        let wired = host.links().iter().any(|l| l.starts_with("cali"));
        let endpoint = probe.has_endpoint_of(id);
        if finished_first {
            assert!(
                assigned && wired && endpoint,
                "ADD {id} exited before its kill but did not complete (address {assigned}, interfaces {wired}, endpoint {endpoint}); log:\n{}",
                host.log_tail()
            );
            Stage::Completed
        } else if endpoint {
            Stage::EndpointWritten
        } else if wired {
            assert!(assigned, "interfaces of {id} exist without an address");
            Stage::WiredNoEndpoint
        } else if assigned {
            Stage::AssignedNotWired
        } else {
            Stage::BeforeAssignment
        }
    }

    fn describe(self) -> &'static str {
        match self {
            Stage::BeforeAssignment => "before IPAM assignment",
            Stage::AssignedNotWired => "after IPAM assignment, before the interfaces existed",
            Stage::WiredNoEndpoint => "after wiring, before the endpoint was written",
            Stage::EndpointWritten => "after the endpoint was written, before the plugin exited",
            Stage::Completed => "after ADD had finished",
        }
    }
}
