//! Our speaker as a process (`calico-bgp-speaker`) in a test namespace: configured with JSON,
//! driven through its stdin, observed through the JSON lines it prints, and killable with any
//! signal (SIGKILL for graceful restart, SIGSTOP for hold timers).

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
use std::net::Ipv4Addr;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use calico_testutil::netns::TestNetns;
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use serde_json::{Value, json};

use super::{eventually, lock_or_recover};

/// What the process has printed so far.
#[derive(Debug, Default)]
pub struct Seen {
    /// Prefix to its equal-cost next hops, for every prefix with a best path from a peer.
    pub routes: BTreeMap<String, Vec<String>>,
    /// Every route change in order, with when it was read.
    pub changes: Vec<(Instant, String, Vec<String>)>,
    /// The latest status report and how many there were.
    pub status: Option<Value>,
    pub status_count: usize,
    pub errors: Vec<String>,
    /// The answers to `listen` commands: where it listens now, or why it could not move.
    pub listen_results: Vec<Result<Option<String>, String>>,
    pub started: bool,
    /// Its stdout closed: it exited.
    pub ended: bool,
}

pub struct Ours {
    pub name: &'static str,
    child: Child,
    stdin: Option<ChildStdin>,
    seen: Arc<Mutex<Seen>>,
    reader: Option<JoinHandle<()>>,
    config: tempfile::TempDir,
    /// Waited for: its pid may belong to another process by now.
    reaped: bool,
}

/// A test-fast peer entry: retries every second, hold 3 s, graceful restart `restart` s.
pub fn peer(address: Ipv4Addr, remote_as: u32) -> Value {
    json!({
        "address": address.to_string(),
        "remote_as": remote_as,
        "hold_time": 3,
        "connect_retry_secs": 1,
        "error_wait_secs": 1,
        "graceful_restart_time": 30,
    })
}

/// A speaker configuration with the listener on port 179.
pub fn config(local_as: u32, router_id: Ipv4Addr, peers: Vec<Value>, originate: &[&str]) -> Value {
    json!({
        "local_as": local_as,
        "router_id": router_id.to_string(),
        "listen": "0.0.0.0:179",
        "peers": peers,
        "originate": originate,
    })
}

impl Ours {
    pub fn start(name: &'static str, ns: &TestNetns, config: &Value) -> Ours {
        Self::start_with(name, ns, config, false)
    }

    /// Starts it with `config`; with `restarting` as after a crash with forwarding kept.
    pub fn start_with(
        name: &'static str,
        ns: &TestNetns,
        config: &Value,
        restarting: bool,
    ) -> Ours {
        let dir = tempfile::Builder::new()
            .prefix(&format!("calico-bgp-{name}-"))
            .tempdir()
            .expect("tempdir");
        let path = dir.path().join("speaker.json");
        std::fs::write(&path, config.to_string()).expect("write config");
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", ns.name()])
            .arg(env!("CARGO_BIN_EXE_calico-bgp-speaker"))
            .arg(&path);
        if restarting {
            cmd.arg("--restarting");
        }
        // `ip netns exec` replaces itself with the speaker: the child is the speaker.
        let mut child = cmd
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start calico-bgp-speaker");
        let stdin = child.stdin.take();
        let stdout = child.stdout.take().expect("stdout piped");
        let seen = Arc::new(Mutex::new(Seen::default()));
        let shared = Arc::clone(&seen);
        let reader = thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                let Ok(v) = serde_json::from_str::<Value>(&line) else {
                    lock_or_recover(&shared)
                        .errors
                        .push(format!("not JSON: {line}"));
                    continue;
                };
                let mut s = lock_or_recover(&shared);
                match v["event"].as_str() {
                    Some("route") => {
                        let prefix = v["prefix"].as_str().unwrap_or_default().to_string();
                        let hops: Vec<String> = v["next_hops"]
                            .as_array()
                            .map(|a| {
                                a.iter()
                                    .filter_map(|h| h.as_str().map(str::to_string))
                                    .collect()
                            })
                            .unwrap_or_default();
                        s.changes
                            .push((Instant::now(), prefix.clone(), hops.clone()));
                        if hops.is_empty() {
                            s.routes.remove(&prefix);
                        } else {
                            s.routes.insert(prefix, hops);
                        }
                    }
                    Some("status") => {
                        s.status = Some(v);
                        s.status_count += 1;
                    }
                    Some("started") => s.started = true,
                    Some("listening") => s
                        .listen_results
                        .push(Ok(v["listen"].as_str().map(str::to_string))),
                    Some("listen_failed") => s
                        .listen_results
                        .push(Err(v["message"].as_str().unwrap_or_default().to_string())),
                    Some("error") => s.errors.push(v["message"].to_string()),
                    _ => {}
                }
            }
            lock_or_recover(&shared).ended = true;
        });
        let ours = Ours {
            name,
            child,
            stdin,
            seen,
            reader: Some(reader),
            config: dir,
            reaped: false,
        };
        ours.wait(&format!("{name} started"), |s| s.started.then_some(()));
        ours
    }

    fn seen(&self) -> MutexGuard<'_, Seen> {
        lock_or_recover(&self.seen)
    }

    pub fn pid(&self) -> Pid {
        Pid::from_raw(i32::try_from(self.child.id()).expect("pid"))
    }

    /// Sends one command line.
    pub fn send(&mut self, line: &str) {
        let stdin = self.stdin.as_mut().expect("stdin open");
        writeln!(stdin, "{line}").expect("write to speaker");
        stdin.flush().expect("flush");
    }

    /// Replaces the config file and has the speaker apply it.
    pub fn reload(&mut self, config: &Value) {
        std::fs::write(self.config.path().join("speaker.json"), config.to_string())
            .expect("write config");
        self.send("reload");
    }

    /// Polls what it printed until `probe` accepts it; fails on an error it reported.
    pub fn wait<T>(&self, what: &str, probe: impl Fn(&Seen) -> Option<T>) -> T {
        eventually(what, || {
            let s = self.seen();
            if let Some(e) = s.errors.first() {
                panic!("{}: reported an error: {e}", self.name);
            }
            if s.ended && !s.started {
                panic!("{}: exited before starting", self.name);
            }
            probe(&s).ok_or_else(|| format!("{s:?}"))
        })
    }

    /// Moves its listener to `to` (`ADDR:PORT` or `none`); the answer.
    pub fn listen(&mut self, to: &str) -> Result<Option<String>, String> {
        let before = self.seen().listen_results.len();
        self.send(&format!("listen {to}"));
        self.wait(&format!("{} answers listen {to}", self.name), |s| {
            s.listen_results.get(before).cloned()
        })
    }

    /// The route stream's current next hops for `prefix`.
    pub fn route(&self, prefix: &str) -> Option<Vec<String>> {
        self.seen().routes.get(prefix).cloned()
    }

    /// How many prefixes the route stream holds now.
    pub fn route_count(&self) -> usize {
        self.seen().routes.len()
    }

    /// Every change of `prefix` seen so far, with when.
    pub fn changes_of(&self, prefix: &str) -> Vec<(Instant, Vec<String>)> {
        self.seen()
            .changes
            .iter()
            .filter(|(_, p, _)| p == prefix)
            .map(|(t, _, h)| (*t, h.clone()))
            .collect()
    }

    /// A fresh status report: every peer's entry.
    pub fn status(&mut self) -> Vec<Value> {
        let before = self.seen().status_count;
        self.send("status");
        let v = self.wait(&format!("{} status", self.name), |s| {
            (s.status_count > before)
                .then(|| s.status.clone())
                .flatten()
        });
        v["peers"].as_array().cloned().unwrap_or_default()
    }

    /// The status entry of the peer at `address`.
    pub fn peer_status(&mut self, address: Ipv4Addr) -> Value {
        self.status()
            .into_iter()
            .find(|p| p["address"] == address.to_string())
            .unwrap_or_else(|| panic!("{}: no peer {address} in status", self.name))
    }

    /// Waits until the session with `address` satisfies `ok`; its status entry.
    pub fn wait_peer(
        &mut self,
        address: Ipv4Addr,
        what: &str,
        ok: impl Fn(&Value) -> bool,
    ) -> Value {
        let deadline = Instant::now() + super::WAIT;
        loop {
            let st = self.peer_status(address);
            if ok(&st) {
                return st;
            }
            assert!(
                Instant::now() < deadline,
                "{}: {what}: last status {st}",
                self.name
            );
            thread::sleep(Duration::from_millis(100));
        }
    }

    pub fn wait_established(&mut self, address: Ipv4Addr) -> Value {
        self.wait_peer(address, "Established", |s| s["state"] == "Established")
    }

    pub fn signal(&self, signal: Signal) {
        kill(self.pid(), signal).expect("signal the speaker");
    }

    /// SIGKILL, as a crash: no Cease goes out, the kernel closes its connections.
    pub fn kill(mut self) {
        self.kill_now();
    }

    fn kill_now(&mut self) {
        if self.reaped {
            return;
        }
        // A stopped process would not die of SIGKILL until continued.
        let _ = kill(self.pid(), Signal::SIGCONT);
        let _ = self.child.kill();
        self.reaped = true;
        let _ = self.child.wait();
        self.stdin = None;
        if let Some(r) = self.reader.take() {
            let _ = r.join();
        }
    }
}

impl Drop for Ours {
    fn drop(&mut self) {
        self.kill_now();
    }
}
