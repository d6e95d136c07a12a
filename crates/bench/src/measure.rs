//! Running a child process and measuring its wall time and peak resident memory.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Instant;

use anyhow::{Context, Result};

/// GNU time (Debian package `time`): reports the child's peak RSS from the kernel's own accounting.
const GNU_TIME: &str = "/usr/bin/time";

/// Environment variables that pick a datastore; cleared so only the ones a run sets apply.
const DATASTORE_ENV: &[&str] = &[
    "DATASTORE_TYPE",
    "ETCD_ENDPOINTS",
    "ETCD_CA_CERT_FILE",
    "ETCD_CERT_FILE",
    "ETCD_KEY_FILE",
    "CALICO_DATASTORE_PATH",
];

/// What one child run took.
pub struct ChildRun {
    pub seconds: f64,
    /// Peak RSS in KiB, when GNU time is available.
    pub peak_rss_kib: Option<u64>,
    pub success: bool,
    pub exit_description: String,
    pub stdout: Vec<u8>,
    pub stderr: String,
}

/// A command to run: program, arguments, environment, and where its stdout goes.
pub struct ChildCommand {
    pub program: PathBuf,
    pub args: Vec<OsString>,
    pub env: Vec<(String, OsString)>,
    /// Write stdout here instead of capturing it (large outputs).
    pub stdout_file: Option<PathBuf>,
}

/// Run `command` to completion under GNU time if present; `scratch` holds GNU time's report file.
pub async fn run_child(command: &ChildCommand, scratch: &Path) -> Result<ChildRun> {
    let rss_report = scratch.join(format!(
        "rss-{}.txt",
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or_default()
    ));
    let use_gnu_time = Path::new(GNU_TIME).is_file();
    let mut process = if use_gnu_time {
        let mut p = tokio::process::Command::new(GNU_TIME);
        p.arg("-f")
            .arg("%M")
            .arg("-o")
            .arg(&rss_report)
            .arg(&command.program);
        p
    } else {
        tokio::process::Command::new(&command.program)
    };
    process.args(&command.args).stdin(Stdio::null());
    for name in DATASTORE_ENV {
        process.env_remove(name);
    }
    for (name, value) in &command.env {
        process.env(name, value);
    }
    match &command.stdout_file {
        Some(path) => {
            let file = std::fs::File::create(path)
                .with_context(|| format!("creating {}", path.display()))?;
            process.stdout(Stdio::from(file));
        }
        None => {
            process.stdout(Stdio::piped());
        }
    }
    process.stderr(Stdio::piped()).kill_on_drop(true);
    let started = Instant::now();
    let output = process
        .spawn()
        .with_context(|| format!("running {}", command.program.display()))?
        .wait_with_output()
        .await
        .with_context(|| format!("waiting for {}", command.program.display()))?;
    let seconds = started.elapsed().as_secs_f64();
    let peak_rss_kib = if use_gnu_time {
        let report = std::fs::read_to_string(&rss_report).unwrap_or_default();
        let _ = std::fs::remove_file(&rss_report);
        parse_gnu_time_rss(&report)
    } else {
        None
    };
    Ok(ChildRun {
        seconds,
        peak_rss_kib,
        success: output.status.success(),
        exit_description: output.status.to_string(),
        stdout: output.stdout,
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    })
}

/// GNU time writes `%M` on the last line (after a "Command exited with non-zero status" line on failure).
fn parse_gnu_time_rss(report: &str) -> Option<u64> {
    report.lines().last()?.trim().parse().ok()
}

/// The value at percentile `p` (0–100) of sorted `values`, by the nearest-rank method.
pub fn percentile(sorted: &[f64], p: f64) -> Option<f64> {
    if sorted.is_empty() {
        return None;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    Some(sorted[rank.clamp(1, sorted.len()) - 1])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rss_is_read_from_the_last_line() {
        assert_eq!(parse_gnu_time_rss("12345\n"), Some(12345));
        assert_eq!(
            parse_gnu_time_rss("Command exited with non-zero status 1\n2048\n"),
            Some(2048)
        );
        assert_eq!(parse_gnu_time_rss(""), None);
    }

    #[test]
    fn nearest_rank_percentiles() {
        let values: Vec<f64> = (1..=100).map(f64::from).collect();
        assert_eq!(percentile(&values, 50.0), Some(50.0));
        assert_eq!(percentile(&values, 99.0), Some(99.0));
        assert_eq!(percentile(&values, 100.0), Some(100.0));
        assert_eq!(percentile(&[7.0], 99.0), Some(7.0));
        assert_eq!(percentile(&[], 50.0), None);
    }

    #[tokio::test]
    async fn child_time_and_memory_are_measured() {
        let scratch = tempfile::tempdir().unwrap();
        let run = run_child(
            &ChildCommand {
                program: "/bin/sh".into(),
                args: vec!["-c".into(), "sleep 0.2; echo done".into()],
                env: vec![],
                stdout_file: None,
            },
            scratch.path(),
        )
        .await
        .unwrap();
        assert!(run.success);
        assert_eq!(run.stdout, b"done\n");
        assert!(run.seconds >= 0.2, "{}", run.seconds);
        if Path::new(GNU_TIME).is_file() {
            assert!(run.peak_rss_kib.is_some_and(|kib| kib > 0));
        }
    }
}
