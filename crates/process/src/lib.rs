//! Running a short external command (`nft`, `ip`, a CNI plugin, `calico-lab`) to completion.
//!
//! - Input goes to stdin and stdout/stderr are drained on their own threads, so a chatty child can
//!   never block on a full pipe while we wait for it.
//! - The caller blocks until the child exits, so the exit time is exact (no polling delay).
//! - A watchdog kills the child with SIGKILL at the time limit, or when a cancel flag is raised. The
//!   child is not reaped until the watchdog has stood down, so a pid is never killed after reuse.

mod find;

pub use find::{SYSTEM_BIN_DIRS, find_program, path_with_system_dirs};

use std::io::{self, Read, Write};
use std::process::{Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError, mpsc};
use std::thread;
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::sys::signal::{Signal, kill};
use nix::sys::wait::{Id, WaitPidFlag, waitid};
use nix::unistd::Pid;

/// How long output is awaited after the child exited (its pipes may be held by a grandchild).
const OUTPUT_GRACE: Duration = Duration::from_secs(2);

/// What a finished command produced.
#[derive(Debug)]
pub struct Finished {
    pub status: ExitStatus,
    pub stdout: Vec<u8>,
    pub stderr: Vec<u8>,
    /// The moment the child was seen to exit.
    pub exited_at: Instant,
    /// From spawn to exit.
    pub elapsed: Duration,
}

impl Finished {
    pub fn stdout_text(&self) -> String {
        String::from_utf8_lossy(&self.stdout).into_owned()
    }

    pub fn stderr_text(&self) -> String {
        String::from_utf8_lossy(&self.stderr).into_owned()
    }

    /// Both outputs, trimmed, stdout first.
    pub fn text(&self) -> String {
        format!(
            "{}{}",
            String::from_utf8_lossy(&self.stdout).trim(),
            String::from_utf8_lossy(&self.stderr).trim()
        )
    }
}

#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error("cannot start {program}: {source}")]
    Spawn { program: String, source: io::Error },
    #[error("waiting for {program}: {source}")]
    Wait { program: String, source: io::Error },
    /// Killed at the time limit; what it printed until then is in `output`.
    #[error("{program} did not finish within {limit:?} and was killed")]
    TimedOut {
        program: String,
        limit: Duration,
        output: Box<Finished>,
    },
    /// Killed because the cancel flag was raised.
    #[error("{program} was stopped: the run was cancelled")]
    Cancelled { program: String },
}

impl RunError {
    /// The spawn error's kind, when the command could not be started at all.
    pub fn spawn_error_kind(&self) -> Option<io::ErrorKind> {
        match self {
            RunError::Spawn { source, .. } => Some(source.kind()),
            _ => None,
        }
    }
}

/// Runs `command` to the end with `input` on stdin (none: stdin is /dev/null); SIGKILL after `limit`.
pub fn run(
    command: &mut Command,
    input: Option<&[u8]>,
    limit: Duration,
) -> Result<Finished, RunError> {
    run_cancellable(command, input, limit, None)
}

/// As [`run`], and also killed as soon as `cancel` becomes true (checked every 100 ms).
pub fn run_cancellable(
    command: &mut Command,
    input: Option<&[u8]>,
    limit: Duration,
    cancel: Option<&'static AtomicBool>,
) -> Result<Finished, RunError> {
    let program = command.get_program().to_string_lossy().into_owned();
    let started = Instant::now();
    let mut child = command
        .stdin(if input.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|source| RunError::Spawn {
            program: program.clone(),
            source,
        })?;
    let writer = match (input, child.stdin.take()) {
        (Some(input), Some(mut pipe)) => {
            let input = input.to_vec();
            // A child that exits without reading its input gives EPIPE; its status tells more.
            Some(thread::spawn(move || {
                let _ = pipe.write_all(&input);
            }))
        }
        _ => None,
    };
    let stdout = child.stdout.take().map(drain);
    let stderr = child.stderr.take().map(drain);

    let pid = Pid::from_raw(i32::try_from(child.id()).unwrap_or(i32::MAX));
    let (done, stand_down) = mpsc::channel::<()>();
    let watchdog = thread::spawn(move || watch(pid, limit, cancel, &stand_down));

    // Wait for the exit without reaping: until the watchdog has stood down, the pid stays ours.
    let exited = loop {
        match waitid(Id::Pid(pid), WaitPidFlag::WEXITED | WaitPidFlag::WNOWAIT) {
            Err(Errno::EINTR) => continue,
            other => break other,
        }
    };
    let exited_at = Instant::now();
    drop(done);
    let verdict = watchdog.join().unwrap_or(Verdict::Exited);
    let status = child.wait();
    if let Some(writer) = writer {
        let _ = writer.join();
    }
    // A grandchild that inherited the pipes may keep them open after the child is gone: take what
    // arrived within a short grace and leave the reader behind rather than hang.
    let output_deadline = Instant::now() + OUTPUT_GRACE;
    let collect =
        |reader: Option<Drained>| reader.map(|r| r.take(output_deadline)).unwrap_or_default();
    let (stdout, stderr) = (collect(stdout), collect(stderr));
    let status = match (exited, status) {
        (Ok(_), Ok(status)) => status,
        (Err(errno), _) => {
            return Err(RunError::Wait {
                program,
                source: io::Error::from(errno),
            });
        }
        (_, Err(source)) => return Err(RunError::Wait { program, source }),
    };
    let finished = Finished {
        status,
        stdout,
        stderr,
        exited_at,
        elapsed: exited_at - started,
    };
    match verdict {
        Verdict::Exited => Ok(finished),
        Verdict::TimedOut => Err(RunError::TimedOut {
            program,
            limit,
            output: Box::new(finished),
        }),
        Verdict::Cancelled => Err(RunError::Cancelled { program }),
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Verdict {
    Exited,
    TimedOut,
    Cancelled,
}

/// Waits for the stand-down signal; kills `pid` at the deadline or on cancellation.
fn watch(
    pid: Pid,
    limit: Duration,
    cancel: Option<&'static AtomicBool>,
    stand_down: &mpsc::Receiver<()>,
) -> Verdict {
    let deadline = Instant::now() + limit;
    loop {
        let now = Instant::now();
        let verdict = if now >= deadline {
            Some(Verdict::TimedOut)
        } else if cancel.is_some_and(|flag| flag.load(Ordering::Relaxed)) {
            Some(Verdict::Cancelled)
        } else {
            None
        };
        if let Some(verdict) = verdict {
            // Not reaped yet, so this is still our child (at worst a zombie, which ignores it).
            let _ = kill(pid, Signal::SIGKILL);
            return verdict;
        }
        let wait = (deadline - now).min(Duration::from_millis(100));
        match stand_down.recv_timeout(wait) {
            Err(mpsc::RecvTimeoutError::Timeout) => continue,
            _ => return Verdict::Exited,
        }
    }
}

/// Output read from a pipe on its own thread: the bytes so far, and a signal once the pipe closed.
struct Drained {
    bytes: Arc<Mutex<Vec<u8>>>,
    closed: mpsc::Receiver<()>,
}

impl Drained {
    /// Everything once the pipe closes, or what arrived by `deadline`.
    fn take(self, deadline: Instant) -> Vec<u8> {
        let _ = self
            .closed
            .recv_timeout(deadline.saturating_duration_since(Instant::now()));
        std::mem::take(&mut *self.bytes.lock().unwrap_or_else(PoisonError::into_inner))
    }
}

fn drain(mut pipe: impl Read + Send + 'static) -> Drained {
    let bytes = Arc::new(Mutex::new(Vec::new()));
    let (closed_tx, closed) = mpsc::channel();
    let sink = bytes.clone();
    thread::spawn(move || {
        let mut chunk = [0u8; 16 * 1024];
        loop {
            match pipe.read(&mut chunk) {
                Ok(0) => break,
                Ok(n) => sink
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .extend_from_slice(&chunk[..n]),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(_) => break,
            }
        }
        let _ = closed_tx.send(());
    });
    Drained { bytes, closed }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sh(script: &str) -> Command {
        let mut command = Command::new("/bin/sh");
        command.args(["-c", script]);
        command
    }

    #[test]
    fn input_goes_in_and_both_outputs_come_back() {
        let out = run(
            &mut sh("cat; echo oops >&2; exit 3"),
            Some(b"hello"),
            Duration::from_secs(10),
        )
        .expect("runs");
        assert_eq!(out.stdout_text(), "hello");
        assert_eq!(out.stderr_text(), "oops\n");
        assert_eq!(out.status.code(), Some(3));
        assert!(out.elapsed < Duration::from_secs(10));
    }

    #[test]
    fn a_large_output_does_not_block_on_a_full_pipe() {
        // 1 MiB on stdout before reading any input: the pipe buffer is 64 KiB.
        let input = vec![b'x'; 1 << 20];
        let out = run(
            &mut sh("head -c 1048576 /dev/zero; wc -c"),
            Some(&input),
            Duration::from_secs(20),
        )
        .expect("runs");
        assert_eq!(out.stdout.len(), (1 << 20) + "1048576\n".len());
    }

    #[test]
    fn a_grandchild_holding_the_pipes_does_not_hold_up_the_result() {
        let started = Instant::now();
        let out = run(
            &mut sh("echo parent; sleep 30 & exit 0"),
            None,
            Duration::from_secs(10),
        )
        .expect("runs");
        assert!(out.status.success());
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "waited for the grandchild"
        );
    }

    #[test]
    fn a_command_over_its_limit_is_killed_with_its_output_kept() {
        let started = Instant::now();
        let err = run(
            &mut sh("echo started; sleep 30"),
            None,
            Duration::from_millis(300),
        )
        .expect_err("killed");
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "not killed in time"
        );
        match err {
            RunError::TimedOut { output, limit, .. } => {
                assert_eq!(limit, Duration::from_millis(300));
                assert_eq!(output.stdout_text(), "started\n");
                assert!(!output.status.success());
            }
            other => panic!("expected a timeout, got {other}"),
        }
    }

    #[test]
    fn raising_the_cancel_flag_stops_the_command() {
        static CANCEL: AtomicBool = AtomicBool::new(false);
        let raiser = thread::spawn(|| {
            thread::sleep(Duration::from_millis(200));
            CANCEL.store(true, Ordering::Relaxed);
        });
        let started = Instant::now();
        let err = run_cancellable(
            &mut sh("sleep 30"),
            None,
            Duration::from_secs(60),
            Some(&CANCEL),
        )
        .expect_err("cancelled");
        let _ = raiser.join();
        assert!(matches!(err, RunError::Cancelled { .. }), "{err}");
        assert!(started.elapsed() < Duration::from_secs(5));
    }

    #[test]
    fn a_missing_program_is_a_spawn_error() {
        let err = run(
            &mut Command::new("/nonexistent/calico-test-binary"),
            None,
            Duration::from_secs(1),
        )
        .expect_err("no such program");
        assert_eq!(err.spawn_error_kind(), Some(io::ErrorKind::NotFound));
        assert!(err.to_string().contains("/nonexistent/calico-test-binary"));
    }
}
