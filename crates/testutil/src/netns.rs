//! Throw-away network namespaces for tests, and small process helpers shared with [`crate::containerd`].
//!
//! Every namespace gets a name no other test uses (prefix, process id and a counter), is created with
//! `ip netns add` and deleted again when its [`TestNetns`] is dropped, also when a test panics. Nothing
//! here touches the machine's root network namespace: links are created from inside test namespaces.

use backon::{BackoffBuilder, ExponentialBuilder};
use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::mpsc::{self, Receiver};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

/// Where `ip netns` keeps its namespace files.
pub const NETNS_DIR: &str = "/var/run/netns";

/// How long one `ip` invocation may take before we call it hung.
const IP_TIMEOUT: Duration = Duration::from_secs(10);

/// Counter that makes namespace names unique within this process.
static NEXT_NETNS: AtomicU32 = AtomicU32::new(0);

pub use calico_process::{find_program as find_binary, path_with_system_dirs};

/// Like [`find_binary`] (`$PATH`, then the system sbin/bin directories), but a missing binary is an error
/// that names the Debian package to install.
pub fn require_binary(name: &str, package: &str) -> Result<PathBuf, String> {
    find_binary(name).ok_or_else(|| {
        format!("`{name}` not found on $PATH or in sbin directories: install the Debian package `{package}` (scripts/setup.sh does)")
    })
}

/// Fails unless this process runs as root (effective uid 0), which namespaces and mounts need.
pub fn require_root() -> Result<(), String> {
    let status = std::fs::read_to_string("/proc/self/status")
        .map_err(|err| format!("cannot read /proc/self/status: {err}"))?;
    let effective_uid = status
        .lines()
        .find_map(|line| line.strip_prefix("Uid:"))
        .and_then(|ids| ids.split_whitespace().nth(1))
        .ok_or("no Uid line in /proc/self/status")?;
    if effective_uid == "0" {
        Ok(())
    } else {
        Err(format!(
            "this test needs root (network namespaces, mounts); running as uid {effective_uid}"
        ))
    }
}

/// A child process whose stdout is read line by line on a thread and whose stderr is collected, so
/// neither pipe can fill up and block it.
pub struct ReadChild {
    child: Child,
    lines: Receiver<String>,
    stdout_reader: Option<JoinHandle<()>>,
    stderr_reader: Option<JoinHandle<Vec<u8>>>,
    /// Every stdout line received so far, in order.
    seen: Vec<String>,
}

impl ReadChild {
    /// Spawns `command` with stdin closed and stdout/stderr piped.
    pub fn spawn(command: &mut Command) -> Result<ReadChild, String> {
        let mut child = command
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|err| format!("cannot start {command:?}: {err}"))?;
        let (sender, lines) = mpsc::channel();
        let stdout_reader = child.stdout.take().map(|stdout| {
            thread::spawn(move || {
                for line in BufReader::new(stdout).lines() {
                    let Ok(line) = line else { break };
                    if sender.send(line).is_err() {
                        break;
                    }
                }
            })
        });
        let stderr_reader = child.stderr.take().map(|mut stderr| {
            thread::spawn(move || {
                let mut collected = Vec::new();
                // A read error just ends the collection; what was read so far is still useful.
                let _ = stderr.read_to_end(&mut collected);
                collected
            })
        });
        Ok(ReadChild {
            child,
            lines,
            stdout_reader,
            stderr_reader,
            seen: Vec::new(),
        })
    }

    /// The process id of the child.
    pub fn id(&self) -> u32 {
        self.child.id()
    }

    /// The next stdout line, waiting at most `timeout`. `None` on timeout or when stdout has closed.
    pub fn next_line(&mut self, timeout: Duration) -> Option<String> {
        let line = self.lines.recv_timeout(timeout).ok()?;
        self.seen.push(line.clone());
        Some(line)
    }

    /// Whether the child has exited (and its status, if so).
    pub fn try_wait(&mut self) -> Option<ExitStatus> {
        self.child.try_wait().ok().flatten()
    }

    /// Waits up to `timeout` for the child to exit; `None` if it is still running.
    pub fn wait_timeout(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + timeout;
        // Most commands finish in milliseconds: poll fast at first, then back off (1 ms doubling to 20 ms).
        const MAX_PAUSE: Duration = Duration::from_millis(20);
        let mut pauses = ExponentialBuilder::new()
            .with_min_delay(Duration::from_millis(1))
            .with_max_delay(MAX_PAUSE)
            .with_factor(2.0)
            .without_max_times()
            .build();
        loop {
            if let Some(status) = self.try_wait() {
                return Some(status);
            }
            if Instant::now() >= deadline {
                return None;
            }
            thread::sleep(pauses.next().unwrap_or(MAX_PAUSE));
        }
    }

    /// Sends SIGKILL to the child (not to anything it started) and reaps it.
    pub fn kill(&mut self) {
        // Errors mean it has already exited, which is what we want.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// The output of an exited child: all of stdout (also lines already returned by
    /// [`next_line`](Self::next_line)) and stderr. Call after the child has exited.
    pub fn into_output(mut self, status: ExitStatus) -> Output {
        if let Some(reader) = self.stdout_reader.take() {
            let _ = reader.join();
        }
        while let Ok(line) = self.lines.try_recv() {
            self.seen.push(line);
        }
        let stderr = self
            .stderr_reader
            .take()
            .and_then(|reader| reader.join().ok())
            .unwrap_or_default();
        let mut stdout = self.seen.join("\n").into_bytes();
        if !stdout.is_empty() {
            stdout.push(b'\n');
        }
        Output {
            status,
            stdout,
            stderr,
        }
    }
}

impl Drop for ReadChild {
    fn drop(&mut self) {
        if self.try_wait().is_none() {
            self.kill();
        }
    }
}

/// Runs `command` to completion, killing it if it takes longer than `timeout`.
pub fn run_with_timeout(command: &mut Command, timeout: Duration) -> Result<Output, String> {
    let mut child = ReadChild::spawn(command)?;
    match child.wait_timeout(timeout) {
        Some(status) => Ok(child.into_output(status)),
        None => {
            child.kill();
            Err(format!("{command:?} did not finish within {timeout:?}"))
        }
    }
}

/// Stdout of a command that must succeed; otherwise an error carrying its stderr.
pub fn checked_stdout(output: Output, what: &str) -> Result<String, String> {
    if output.status.success() {
        Ok(String::from_utf8_lossy(&output.stdout).into_owned())
    } else {
        Err(format!(
            "{what} failed ({}): {}{}",
            output.status,
            String::from_utf8_lossy(&output.stderr),
            String::from_utf8_lossy(&output.stdout)
        ))
    }
}

fn ip(args: &[&str]) -> Result<String, String> {
    let ip = require_binary("ip", "iproute2")?;
    let output = run_with_timeout(Command::new(ip).args(args), IP_TIMEOUT)?;
    checked_stdout(output, &format!("ip {}", args.join(" ")))
}

/// A network namespace owned by one test, deleted on drop.
#[derive(Debug)]
pub struct TestNetns {
    name: String,
}

impl TestNetns {
    /// Creates `<prefix>-<pid>-<n>` with `ip netns add` and brings its loopback up.
    pub fn new(prefix: &str) -> Result<TestNetns, String> {
        require_root()?;
        let pid = std::process::id();
        // A namespace left by a crashed earlier run with the same pid must not make us fail or
        // share it: take the next counter value instead.
        for _ in 0..100 {
            let name = format!(
                "{prefix}-{pid}-{}",
                NEXT_NETNS.fetch_add(1, Ordering::Relaxed)
            );
            if Path::new(NETNS_DIR).join(&name).exists() {
                continue;
            }
            ip(&["netns", "add", &name])?;
            let netns = TestNetns { name };
            ip(&["-n", &netns.name, "link", "set", "lo", "up"])?;
            return Ok(netns);
        }
        Err(format!(
            "no free network namespace name with prefix {prefix}"
        ))
    }

    /// The name `ip netns` knows it by.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The namespace file, usable with `nsenter --net=` or as a CNI_NETNS.
    pub fn path(&self) -> PathBuf {
        Path::new(NETNS_DIR).join(&self.name)
    }

    /// Runs `cmd` inside the namespace (`ip netns exec`) and returns its output, whatever its status.
    pub fn exec(&self, cmd: &[&str]) -> Result<Output, String> {
        self.exec_timeout(cmd, IP_TIMEOUT)
    }

    /// Like [`exec`](Self::exec) with an explicit time limit.
    pub fn exec_timeout(&self, cmd: &[&str], timeout: Duration) -> Result<Output, String> {
        let ip = require_binary("ip", "iproute2")?;
        run_with_timeout(
            Command::new(ip)
                .args(["netns", "exec", &self.name])
                .args(cmd),
            timeout,
        )
    }

    /// Runs `cmd` inside the namespace; it must succeed. Returns its stdout.
    pub fn exec_ok(&self, cmd: &[&str]) -> Result<String, String> {
        let output = self.exec(cmd)?;
        checked_stdout(
            output,
            &format!("{} (in netns {})", cmd.join(" "), self.name),
        )
    }

    /// `ip -n <this namespace> ARGS`; must succeed. Returns its stdout.
    pub fn ip(&self, args: &[&str]) -> Result<String, String> {
        let mut full = vec!["-n", self.name.as_str()];
        full.extend_from_slice(args);
        ip(&full)
    }

    /// Names of the network interfaces in the namespace (without the `@peer` suffix).
    pub fn link_names(&self) -> Result<Vec<String>, String> {
        let listing = self.ip(&["-o", "link", "show"])?;
        Ok(listing
            .lines()
            .filter_map(|line| line.split(": ").nth(1))
            .map(|name| name.split('@').next().unwrap_or(name).to_string())
            .collect())
    }
}

impl Drop for TestNetns {
    fn drop(&mut self) {
        if let Err(err) = ip(&["netns", "delete", &self.name]) {
            eprintln!("warning: could not delete test netns {}: {err}", self.name);
        }
    }
}

/// Connects two test namespaces with a veth pair: `a_ifname` in `a` with `a_cidr` (e.g.
/// `198.18.0.1/30`) and `b_ifname` in `b` with `b_cidr`, both up. Interface names are at most 15
/// bytes. The pair is created from inside `a`, so it never exists in the root namespace; it goes away
/// (asynchronously, shortly after) when either namespace is deleted.
pub fn veth_pair(
    a: &TestNetns,
    a_ifname: &str,
    a_cidr: &str,
    b: &TestNetns,
    b_ifname: &str,
    b_cidr: &str,
) -> Result<(), String> {
    a.ip(&[
        "link",
        "add",
        a_ifname,
        "type",
        "veth",
        "peer",
        "name",
        b_ifname,
        "netns",
        b.name(),
    ])?;
    a.ip(&["addr", "add", a_cidr, "dev", a_ifname])?;
    b.ip(&["addr", "add", b_cidr, "dev", b_ifname])?;
    a.ip(&["link", "set", a_ifname, "up"])?;
    b.ip(&["link", "set", b_ifname, "up"])?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn namespaces_are_unique_connectable_and_removed_on_drop() {
        let a = TestNetns::new("tu-veth").expect("netns a");
        let b = TestNetns::new("tu-veth").expect("netns b");
        assert_ne!(a.name(), b.name());
        assert!(a.path().exists());
        veth_pair(&a, "tu-a", "198.18.201.1/30", &b, "tu-b", "198.18.201.2/30").expect("veth");
        assert_eq!(a.link_names().expect("links"), ["lo", "tu-a"]);
        // busybox-static provides ping; Debian's iputils-ping is not installed everywhere.
        let ping = a
            .exec(&["busybox", "ping", "-c", "1", "-W", "2", "198.18.201.2"])
            .expect("ping runs");
        assert!(
            ping.status.success(),
            "ping across the veth failed: {}",
            String::from_utf8_lossy(&ping.stdout)
        );
        let path = a.path();
        drop(a);
        assert!(!path.exists(), "netns file removed on drop");
        // The kernel destroys a deleted namespace's devices (and their veth peers) asynchronously.
        let deadline = Instant::now() + Duration::from_secs(5);
        while b.link_names().expect("links").len() > 1 && Instant::now() < deadline {
            thread::sleep(Duration::from_millis(20));
        }
        assert_eq!(b.link_names().expect("links"), ["lo"], "peer went with a");
    }

    #[test]
    fn run_with_timeout_kills_a_hung_command() {
        let started = Instant::now();
        let result = run_with_timeout(Command::new("sleep").arg("30"), Duration::from_millis(200));
        assert!(result.is_err());
        assert!(started.elapsed() < Duration::from_secs(5));
    }
}
