//! Processes: starting detached daemons, finding the ones a lab started (by the marker in their
//! environment), and stopping them. (Short commands run through `calico_process::run`.)

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

use crate::paths::LAB_MARKER_ENV;

/// Starts `command` detached from our terminal and session (via `setsid`, which execs in place so the pid
/// is the daemon's), with stdout and stderr appended to `log` and the lab's marker in its environment.
pub fn spawn_detached(command: Command, lab: &str, log: &Path) -> Result<Child> {
    let setsid = crate::paths::system_binary("setsid", "util-linux")?;
    let out = std::fs::File::options()
        .create(true)
        .append(true)
        .open(log)
        .with_context(|| format!("opening log {}", log.display()))?;
    let err = out.try_clone()?;
    let program = command.get_program().to_owned();
    let args: Vec<_> = command.get_args().map(ToOwned::to_owned).collect();
    let envs: Vec<_> = command
        .get_envs()
        .map(|(k, v)| (k.to_owned(), v.map(ToOwned::to_owned)))
        .collect();
    let mut wrapped = Command::new(setsid);
    wrapped.arg(&program).args(&args);
    for (key, value) in envs {
        match value {
            Some(value) => wrapped.env(key, value),
            None => wrapped.env_remove(key),
        };
    }
    // No process_group(0) here: setsid(1) forks (and the pid would be wrong) when it already leads a group.
    wrapped
        .env(LAB_MARKER_ENV, lab)
        .stdin(Stdio::null())
        .stdout(Stdio::from(out))
        .stderr(Stdio::from(err));
    wrapped
        .spawn()
        .with_context(|| format!("starting {}", program.to_string_lossy()))
}

/// [`spawn_detached`], then waits until the daemon creates `ready` (removed first, so an old one
/// does not count); its pid. A daemon that exits or is not ready within `limit` is an error naming
/// `what` and its log (and is stopped in the second case).
pub fn spawn_until_ready(
    command: Command,
    lab: &str,
    log: &Path,
    ready: &Path,
    limit: Duration,
    what: &str,
) -> Result<u32> {
    let _ = std::fs::remove_file(ready);
    let mut child = spawn_detached(command, lab, log)?;
    let deadline = Instant::now() + limit;
    loop {
        if let Some(status) = child.try_wait()? {
            anyhow::bail!("{what} exited with {status}; see {}", log.display());
        }
        if ready.exists() {
            return Ok(child.id());
        }
        if Instant::now() >= deadline {
            kill_now(&[child.id()]);
            anyhow::bail!(
                "{what} did not get ready within {limit:?}; see {}",
                log.display()
            );
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Whether `pid` is a live (not zombie) process.
pub fn alive(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        // The state letter follows the parenthesised command name.
        Ok(stat) => stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().next())
            .is_some_and(|state| state != "Z" && state != "X"),
        Err(_) => false,
    }
}

/// Whether `pid` carries the marker of lab `lab` in its environment.
pub fn belongs_to(pid: u32, lab: &str) -> bool {
    let Ok(environ) = std::fs::read(format!("/proc/{pid}/environ")) else {
        return false;
    };
    let wanted = format!("{LAB_MARKER_ENV}={lab}");
    environ
        .split(|b| *b == 0)
        .any(|entry| entry == wanted.as_bytes())
}

/// Every live process started for lab `lab` (except this one).
pub fn lab_processes(lab: &str) -> Vec<u32> {
    let me = std::process::id();
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| *pid != me && belongs_to(*pid, lab) && alive(*pid))
        .collect()
}

/// SIGKILL, no grace: what a crash looks like. Waits (bounded) until they are gone.
pub fn kill_now(pids: &[u32]) {
    for pid in pids {
        if alive(*pid) {
            let _ = kill(Pid::from_raw(*pid as i32), Signal::SIGKILL);
        }
    }
    wait_gone(pids, Duration::from_secs(3));
}

/// SIGTERM, then SIGKILL for whatever is still alive after `grace`; waits (bounded) until they are gone.
pub fn stop(pids: &[u32], grace: Duration) {
    let signal_all = |signal: Signal| {
        for pid in pids {
            if alive(*pid) {
                // Already gone is fine.
                let _ = kill(Pid::from_raw(*pid as i32), signal);
            }
        }
    };
    signal_all(Signal::SIGTERM);
    if wait_gone(pids, grace) {
        return;
    }
    signal_all(Signal::SIGKILL);
    wait_gone(pids, Duration::from_secs(3));
}

fn wait_gone(pids: &[u32], limit: Duration) -> bool {
    let deadline = Instant::now() + limit;
    loop {
        if !pids.iter().any(|pid| alive(*pid)) {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}
