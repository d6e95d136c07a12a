//! calico-lab end to end: the real binary builds labs (hosts and pods as network namespaces, calico-node per
//! host, pods through the calico CNI plugin), and `down` leaves nothing behind.
//!
//! Needs root and the workspace's other binaries (calico-node, calico, calicoctl) built next to calico-lab:
//! `cargo build --workspace` (scripts/test.sh does it first).

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use serde_json::Value;

static NEXT: AtomicU32 = AtomicU32::new(0);

fn lab_binary() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_calico-lab"))
}

/// A sibling binary of calico-lab in the target directory; missing means the workspace was not built.
fn sibling(name: &str) -> PathBuf {
    let path = lab_binary()
        .parent()
        .map(|dir| dir.join(name))
        .unwrap_or_default();
    assert!(
        path.is_file(),
        "{} is missing: build the whole workspace first (`cargo build --workspace`; scripts/test.sh does)",
        path.display()
    );
    path
}

fn require_prerequisites() {
    let status = std::fs::read_to_string("/proc/self/status").expect("read /proc/self/status");
    let euid = status
        .lines()
        .find_map(|l| l.strip_prefix("Uid:"))
        .and_then(|ids| ids.split_whitespace().nth(1))
        .expect("Uid line");
    assert_eq!(euid, "0", "calico-lab tests need root (network namespaces)");
    for name in ["calico-node", "calico", "calicoctl"] {
        sibling(name);
    }
}

/// A unique lab name for this test (lowercase, digits, underscores).
fn unique_name(tag: &str) -> String {
    format!(
        "t{}_{}{}",
        std::process::id(),
        tag,
        NEXT.fetch_add(1, Ordering::Relaxed)
    )
}

/// Runs a command, killing it after `limit`.
fn run_limited(command: &mut Command, limit: Duration) -> Output {
    let child = command
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start command");
    let pid = child.id();
    let waiter = std::thread::spawn(move || child.wait_with_output());
    let deadline = Instant::now() + limit;
    while !waiter.is_finished() {
        if Instant::now() > deadline {
            let _ = Command::new("kill").args(["-9", &pid.to_string()]).status();
            panic!("{command:?} did not finish within {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    waiter.join().expect("waiter").expect("command output")
}

fn text(out: &Output) -> String {
    format!(
        "status {}\nstdout:\n{}\nstderr:\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// One lab under test; `down` runs on drop, also when the test fails.
struct Lab {
    name: String,
}

impl Lab {
    fn new(tag: &str) -> Lab {
        require_prerequisites();
        Lab {
            name: unique_name(tag),
        }
    }

    fn cmd(&self, args: &[&str]) -> Output {
        let mut command = Command::new(lab_binary());
        command
            .arg(args[0])
            .args(["--name", &self.name])
            .args(&args[1..]);
        run_limited(&mut command, Duration::from_secs(240))
    }

    fn ok(&self, args: &[&str]) -> Output {
        let out = self.cmd(args);
        assert!(
            out.status.success(),
            "calico-lab {args:?} failed: {}",
            text(&out)
        );
        out
    }

    fn up(&self, args: &[&str]) -> Value {
        let mut all = vec!["up", "--json"];
        all.extend_from_slice(args);
        let out = self.ok(&all);
        serde_json::from_slice(&out.stdout)
            .unwrap_or_else(|e| panic!("up --json printed no JSON ({e}): {}", text(&out)))
    }

    fn status(&self) -> Value {
        let out = self.ok(&["status", "--json"]);
        serde_json::from_slice(&out.stdout)
            .unwrap_or_else(|e| panic!("status --json printed no JSON ({e}): {}", text(&out)))
    }

    fn ping(&self, from: &str, to: &str) {
        let out = self.cmd(&["ping", from, to]);
        let shown = text(&out);
        assert!(out.status.success(), "ping {from} -> {to} failed: {shown}");
        assert!(
            shown.contains("3 packets received"),
            "ping {from} -> {to}: {shown}"
        );
    }

    fn calicoctl(&self, status: &Value, args: &[&str]) -> Output {
        let mut command = Command::new(sibling("calicoctl"));
        command.args(args).env_remove("DATASTORE_TYPE");
        let env = status["calicoctl_env"].as_object().expect("calicoctl_env");
        for (k, v) in env {
            command.env(k, v.as_str().expect("env value"));
        }
        run_limited(&mut command, Duration::from_secs(60))
    }

    fn dir(&self) -> PathBuf {
        Path::new("/run/calico-lab").join(&self.name)
    }

    fn down(&self) {
        self.ok(&["down"]);
    }

    /// Nothing of this lab is left: namespaces, processes, state directory.
    fn assert_gone(&self) {
        let prefix = format!("clab-{}-", self.name);
        let namespaces: Vec<String> = std::fs::read_dir("/run/netns")
            .map(|entries| {
                entries
                    .filter_map(|e| e.ok()?.file_name().into_string().ok())
                    .filter(|n| n.starts_with(&prefix))
                    .collect()
            })
            .unwrap_or_default();
        assert!(namespaces.is_empty(), "namespaces left: {namespaces:?}");
        assert!(!self.dir().exists(), "{} left", self.dir().display());
        let processes = lab_processes(&self.name);
        assert!(processes.is_empty(), "processes left: {processes:?}");
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        let out = Command::new(lab_binary())
            .args(["down", "--name", &self.name])
            .output();
        if let Ok(out) = out
            && !out.status.success()
        {
            eprintln!("warning: down of {} failed: {}", self.name, text(&out));
        }
    }
}

/// Live processes that belong to lab `name`: the marker calico-lab sets, calico-node's state dir, or the
/// lab's directory anywhere in the command line (etcd's data dir).
fn lab_processes(name: &str) -> Vec<(u32, String)> {
    let dir = format!("/run/calico-lab/{name}/");
    let marker = format!("CALICO_LAB={name}");
    let me = std::process::id();
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc").expect("read /proc").flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|s| s.parse::<u32>().ok())
        else {
            continue;
        };
        if pid == me {
            continue;
        }
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
        let zombie = stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().next())
            .is_none_or(|state| state == "Z" || state == "X");
        if zombie {
            continue;
        }
        let environ = std::fs::read(format!("/proc/{pid}/environ")).unwrap_or_default();
        let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
        let env_hit = environ.split(|b| *b == 0).any(|e| {
            e == marker.as_bytes()
                || String::from_utf8_lossy(e).starts_with(&format!("CALICO_STATE_DIR={dir}"))
        });
        let cmd = String::from_utf8_lossy(&cmdline).replace('\0', " ");
        if env_hit || cmd.contains(&dir) {
            found.push((pid, cmd));
        }
    }
    found
}

fn pods_of(state: &Value) -> Vec<Value> {
    state["pods"].as_array().expect("pods").clone()
}

fn pod_ip(state: &Value, pod: &str) -> String {
    pods_of(state)
        .iter()
        .find(|p| p["name"] == pod)
        .and_then(|p| p["ip"].as_str())
        .unwrap_or_else(|| panic!("no pod {pod} in {state}"))
        .to_string()
}

fn assert_hosts_ready(status: &Value, count: usize) {
    let hosts = status["hosts"].as_array().expect("hosts");
    assert_eq!(hosts.len(), count, "{status}");
    for h in hosts {
        assert_eq!(
            h["calico_node_running"], true,
            "calico-node not running: {h}"
        );
        assert_eq!(h["calico_node_ready"], true, "calico-node not ready: {h}");
        // Each calico-node reports its status to the datastore as Felix does, from its start.
        let report = &h["last_status_report"];
        assert!(
            report["time"].as_str().is_some_and(|t| t.contains('T'))
                && report["uptime"].as_f64().is_some_and(|u| u >= 0.0)
                && report["first_update"].is_boolean(),
            "no status report for {}: {report}",
            h["name"]
        );
    }
}

#[test]
fn three_hosts_embedded_up_ping_down() {
    let lab = Lab::new("emb");
    let state = lab.up(&["--nodes", "3", "--pods-per-node", "2"]);

    let hosts = state["hosts"].as_array().expect("hosts");
    let addresses: Vec<&str> = hosts.iter().filter_map(|h| h["address"].as_str()).collect();
    assert_eq!(addresses, ["198.18.0.11", "198.18.0.12", "198.18.0.13"]);
    let pods = pods_of(&state);
    let names: Vec<&str> = pods.iter().filter_map(|p| p["name"].as_str()).collect();
    assert_eq!(
        names,
        [
            "node1-pod1",
            "node1-pod2",
            "node2-pod1",
            "node2-pod2",
            "node3-pod1",
            "node3-pod2"
        ]
    );
    let mut ips: Vec<String> = pods
        .iter()
        .map(|p| p["ip"].as_str().expect("ip").to_string())
        .collect();
    for ip in &ips {
        assert!(
            ip.starts_with("198.19."),
            "pod address {ip} outside the lab pool"
        );
    }
    ips.sort();
    ips.dedup();
    assert_eq!(ips.len(), 6, "pod addresses are not unique: {ips:?}");
    for stage in [
        "underlay",
        "datastore",
        "calico_node",
        "pods",
        "reachability",
        "total",
    ] {
        assert!(
            state["timings_ms"][stage].is_u64(),
            "no timing for {stage}: {state}"
        );
    }

    let status = lab.status();
    assert_hosts_ready(&status, 3);
    for p in &pods_of(&status) {
        assert_eq!(p["namespace_exists"], true, "{p}");
    }

    // The address the plugin reported is the one on the pod's eth0.
    let out = lab.ok(&[
        "exec",
        "node2-pod1",
        "--",
        "ip",
        "-4",
        "-o",
        "addr",
        "show",
        "dev",
        "eth0",
    ]);
    let shown = String::from_utf8_lossy(&out.stdout);
    assert!(
        shown.contains(&format!("{}/32", pod_ip(&state, "node2-pod1"))),
        "eth0 of node2-pod1: {shown}"
    );
    // exec passes the exit status through.
    let out = lab.cmd(&["exec", "node1", "--", "sh", "-c", "exit 3"]);
    assert_eq!(out.status.code(), Some(3), "{}", text(&out));

    // Real pings across hosts (BGP mode, the default) and on one host.
    lab.ping("node1-pod1", "node2-pod1");
    lab.ping("node2-pod2", "node3-pod1");
    lab.ping("node3-pod2", "node1-pod2");
    lab.ping("node1-pod1", "node1-pod2");

    // calicoctl sees what calico-node registered, through the exported environment.
    let out = lab.calicoctl(&status, &["get", "nodes"]);
    let shown = String::from_utf8_lossy(&out.stdout);
    for node in ["node1", "node2", "node3"] {
        assert!(shown.contains(node), "calicoctl get nodes: {}", text(&out));
    }
    let out = lab.calicoctl(&status, &["get", "ippool", "-o", "wide"]);
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("198.19.0.0/16"),
        "calicoctl get ippool: {}",
        text(&out)
    );

    // A second `up` of a running lab is refused.
    let again = lab.cmd(&["up", "--nodes", "1"]);
    assert!(!again.status.success());
    assert!(
        String::from_utf8_lossy(&again.stderr).contains("calico-lab down"),
        "{}",
        text(&again)
    );

    lab.down();
    lab.assert_gone();
    // down is idempotent.
    lab.down();
}

#[test]
fn two_hosts_etcd_up_ping_down() {
    let lab = Lab::new("etcd");
    let state = lab.up(&[
        "--nodes",
        "2",
        "--pods-per-node",
        "1",
        "--datastore",
        "etcd",
    ]);
    assert_eq!(state["datastore"]["kind"], "etcd");
    let endpoint = state["datastore"]["endpoint"].as_str().expect("endpoint");
    assert!(endpoint.starts_with("http://127.0.0.1:"), "{endpoint}");

    let status = lab.status();
    assert_hosts_ready(&status, 2);
    assert_eq!(status["etcd_running"], true, "{status}");
    assert_eq!(status["relay_running"], true, "{status}");
    assert_eq!(status["calicoctl_env"]["ETCD_ENDPOINTS"], endpoint);

    lab.ping("node1-pod1", "node2-pod1");
    lab.ping("node2-pod1", "node1-pod1");

    let out = lab.calicoctl(
        &status,
        &["get", "workloadendpoints", "--all-namespaces", "-o", "wide"],
    );
    let shown = String::from_utf8_lossy(&out.stdout);
    for wep in ["node1-k8s-node1--pod1-eth0", "node2-k8s-node2--pod1-eth0"] {
        assert!(shown.contains(wep), "calicoctl get wep: {}", text(&out));
    }

    lab.down();
    lab.assert_gone();
}

#[test]
fn down_cleans_up_after_a_crash() {
    let lab = Lab::new("crash");
    lab.up(&["--nodes", "2", "--pods-per-node", "1"]);
    assert!(
        !lab_processes(&lab.name).is_empty(),
        "no calico-node running"
    );

    // As if calico-lab and everything it started died: SIGKILL the lab's processes, lose the state file.
    let crash = |lab: &Lab| {
        for (pid, _) in lab_processes(&lab.name) {
            let _ = Command::new("kill").args(["-9", &pid.to_string()]).status();
        }
        std::fs::remove_file(lab.dir().join("state.json")).expect("remove state.json");
    };
    crash(&lab);

    // `up` over the leftovers cleans them and builds a fresh lab.
    let state = lab.up(&["--nodes", "2", "--pods-per-node", "1"]);
    assert_eq!(pods_of(&state).len(), 2);
    assert_hosts_ready(&lab.status(), 2);

    crash(&lab);
    lab.down();
    lab.assert_gone();
}

#[test]
fn add_and_delete_pods() {
    let lab = Lab::new("pods");
    lab.up(&["--nodes", "2", "--pods-per-node", "1"]);

    let out = lab.ok(&["add-pod", "node2", "--labels", "app=web,tier=db"]);
    let printed = String::from_utf8_lossy(&out.stdout).to_string();
    let mut words = printed.split_whitespace();
    assert_eq!(words.next(), Some("node2-pod2"), "{printed}");
    let ip = words.next().expect("address printed").to_string();

    let status = lab.status();
    assert_eq!(pod_ip(&status, "node2-pod2"), ip);
    let pod = pods_of(&status)
        .into_iter()
        .find(|p| p["name"] == "node2-pod2")
        .expect("pod in status");
    assert_eq!(pod["labels"]["app"], "web", "{pod}");
    assert!(
        Path::new("/run/netns")
            .join(format!("clab-{}-node2-pod2", lab.name))
            .exists()
    );

    // The labels are on the WorkloadEndpoint, where policy selectors look for them.
    let out = lab.calicoctl(
        &status,
        &[
            "get",
            "workloadendpoint",
            "node2-k8s-node2--pod2-eth0",
            "-n",
            "default",
            "-o",
            "json",
        ],
    );
    assert!(out.status.success(), "{}", text(&out));
    let wep: Value = serde_json::from_slice(&out.stdout).expect("wep json");
    assert_eq!(wep["metadata"]["labels"]["app"], "web", "{wep}");
    assert_eq!(wep["metadata"]["labels"]["tier"], "db", "{wep}");
    assert_eq!(wep["spec"]["ipNetworks"][0], format!("{ip}/32"), "{wep}");

    lab.ping("node1-pod1", "node2-pod2");

    let unknown = lab.cmd(&["add-pod", "node9"]);
    assert!(!unknown.status.success());
    assert!(
        String::from_utf8_lossy(&unknown.stderr).contains("node9"),
        "{}",
        text(&unknown)
    );

    lab.ok(&["del-pod", "node2-pod2"]);
    let status = lab.status();
    assert!(
        pods_of(&status).iter().all(|p| p["name"] != "node2-pod2"),
        "{status}"
    );
    assert!(
        !Path::new("/run/netns")
            .join(format!("clab-{}-node2-pod2", lab.name))
            .exists()
    );
    let out = lab.calicoctl(
        &status,
        &[
            "get",
            "workloadendpoint",
            "node2-k8s-node2--pod2-eth0",
            "-n",
            "default",
        ],
    );
    assert!(
        !out.status.success(),
        "endpoint still there after del-pod: {}",
        text(&out)
    );
    // The address went back to IPAM: the next pod on that host may get it again, and the slot is reused.
    let out = lab.ok(&["add-pod", "node2"]);
    assert!(
        String::from_utf8_lossy(&out.stdout).starts_with("node2-pod2 "),
        "{}",
        text(&out)
    );

    lab.down();
    lab.assert_gone();
}

#[test]
fn add_pod_whose_cni_add_fails_leaves_no_namespace() {
    let lab = Lab::new("addfail");
    lab.up(&["--nodes", "1", "--pods-per-node", "0"]);
    let status = lab.status();
    // With the only pool disabled the plugin has nowhere to take an address from: ADD fails.
    let out = lab.calicoctl(
        &status,
        &[
            "patch",
            "ippool",
            "default-ipv4-ippool",
            "-p",
            r#"{"spec":{"disabled":true}}"#,
        ],
    );
    assert!(out.status.success(), "disabling the pool: {}", text(&out));

    let out = lab.cmd(&["add-pod", "node1"]);
    assert!(
        !out.status.success(),
        "add-pod should fail without an enabled pool: {}",
        text(&out)
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("CNI ADD for node1-pod1"), "{}", text(&out));
    assert!(
        !Path::new("/run/netns")
            .join(format!("clab-{}-node1-pod1", lab.name))
            .exists(),
        "the failed pod's namespace was left behind"
    );
    assert!(pods_of(&lab.status()).is_empty(), "{}", lab.status());

    // Once the pool is back the same slot works, so nothing of the failed attempt is in the way.
    let out = lab.calicoctl(
        &status,
        &[
            "patch",
            "ippool",
            "default-ipv4-ippool",
            "-p",
            r#"{"spec":{"disabled":false}}"#,
        ],
    );
    assert!(out.status.success(), "enabling the pool: {}", text(&out));
    let out = lab.ok(&["add-pod", "node1"]);
    assert!(
        String::from_utf8_lossy(&out.stdout).starts_with("node1-pod1 "),
        "{}",
        text(&out)
    );

    lab.down();
    lab.assert_gone();
}
