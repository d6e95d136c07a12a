//! Running `nft` (in the calling thread's network namespace) with a time limit.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use crate::json::{ParseError, parse_table};
use crate::plan::Transaction;
use crate::table::{Family, Table};
use crate::value::Name;

/// How long one `nft` run may take before it is killed and reported as hung.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);

/// Where nft lives when it is not on `$PATH` (a non-login root shell may lack the sbin directories).
const FALLBACK_DIRS: [&str; 2] = ["/usr/sbin", "/sbin"];

#[derive(Debug, thiserror::Error)]
pub enum NftError {
    #[error("nft not found on $PATH or in /usr/sbin, /sbin: install the nftables package")]
    Missing,
    #[error("run nft: {0}")]
    Spawn(String),
    #[error("nft {what} did not finish within {}s and was killed", limit.as_secs())]
    Timeout { what: String, limit: Duration },
    /// nft refused; `line` is the transaction line its error names (1-based) and that line's text.
    #[error("nft {what} failed ({status}): {stderr}{}", line.as_ref().map(|(n, text)| format!(" [transaction line {n}: {text}]")).unwrap_or_default())]
    Failed {
        what: String,
        status: String,
        stderr: String,
        line: Option<(usize, String)>,
    },
    #[error("reading table {table}: {source}")]
    Parse {
        table: String,
        #[source]
        source: ParseError,
    },
}

/// The `nft` binary and a time limit per run.
#[derive(Clone, Debug)]
pub struct Nft {
    binary: PathBuf,
    timeout: Duration,
}

impl Nft {
    /// Finds `nft` on `$PATH`, else in /usr/sbin or /sbin.
    pub fn find() -> Result<Nft, NftError> {
        let binary = which::which("nft")
            .ok()
            .or_else(|| {
                FALLBACK_DIRS
                    .iter()
                    .map(|dir| Path::new(dir).join("nft"))
                    .find(|candidate| candidate.is_file())
            })
            .ok_or(NftError::Missing)?;
        Ok(Nft::with_binary(binary))
    }

    pub fn with_binary(binary: PathBuf) -> Nft {
        Nft {
            binary,
            timeout: DEFAULT_TIMEOUT,
        }
    }

    pub fn with_timeout(mut self, timeout: Duration) -> Nft {
        self.timeout = timeout;
        self
    }

    pub fn binary(&self) -> &Path {
        &self.binary
    }

    /// Applies the transaction atomically (`nft -f -`); an empty one runs nothing.
    pub fn apply(&self, transaction: &Transaction) -> Result<(), NftError> {
        if transaction.is_empty() {
            return Ok(());
        }
        self.run_script(&transaction.render())
    }

    /// Runs nft input text (as rendered by [`Transaction::render`]) as one transaction.
    pub fn run_script(&self, script: &str) -> Result<(), NftError> {
        self.run(&["-f", "-"], Some(script), "-f -").map(drop)
    }

    /// Checks nft input text without applying it (`nft --check -f -`).
    pub fn check_script(&self, script: &str) -> Result<(), NftError> {
        self.run(&["--check", "-f", "-"], Some(script), "--check -f -")
            .map(drop)
    }

    /// Reads one table back; `None` when it does not exist.
    pub fn read_table(&self, family: Family, name: &Name) -> Result<Option<Table>, NftError> {
        let table = format!("{} {name}", family.nft_name());
        let listed = self.run(
            // -p: protocols as numbers, not names from /etc/protocols (which we could not map back).
            &[
                "-j",
                "-p",
                "list",
                "table",
                family.nft_name(),
                name.as_str(),
            ],
            None,
            &format!("-j list table {table}"),
        );
        let text = match listed {
            Ok(text) => text,
            Err(NftError::Failed { stderr, .. })
                if stderr.contains("No such file or directory") =>
            {
                return Ok(None);
            }
            Err(other) => return Err(other),
        };
        parse_table(&text)
            .map(Some)
            .map_err(|source| NftError::Parse { table, source })
    }

    fn run(&self, args: &[&str], stdin: Option<&str>, what: &str) -> Result<String, NftError> {
        let finished = calico_process::run(
            Command::new(&self.binary).args(args),
            stdin.map(str::as_bytes),
            self.timeout,
        )
        .map_err(|e| match e {
            calico_process::RunError::TimedOut { limit, .. } => NftError::Timeout {
                what: what.to_string(),
                limit,
            },
            other => NftError::Spawn(other.to_string()),
        })?;
        if finished.status.success() {
            return Ok(finished.stdout_text());
        }
        let stderr = finished.stderr_text().trim().to_string();
        let line = stdin.and_then(|script| failed_line(&stderr, script));
        Err(NftError::Failed {
            what: what.to_string(),
            status: finished.status.to_string(),
            stderr,
            line,
        })
    }
}

/// The first input line nft's error names (`/dev/stdin:3:9-12: Error: ...`), with its text.
fn failed_line(stderr: &str, script: &str) -> Option<(usize, String)> {
    let rest = stderr.split("/dev/stdin:").nth(1)?;
    let number: usize = rest.split(':').next()?.parse().ok()?;
    let text = script.lines().nth(number.checked_sub(1)?)?;
    Some((number, text.trim().to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_failed_line_is_found_in_nfts_complaint() {
        let script = "table ip t {\n\tchain c {\n\t\tbogus rule\n\t}\n}\n";
        let stderr = "/dev/stdin:3:9-12: Error: syntax error, unexpected rule\n\t\tbogus rule\n\t\t      ^^^^";
        assert_eq!(
            failed_line(stderr, script),
            Some((3, "bogus rule".to_string()))
        );
        assert_eq!(
            failed_line("Error: No such file or directory", script),
            None
        );
        assert_eq!(failed_line("/dev/stdin:99:1-2: Error: x", script), None);
    }
}
