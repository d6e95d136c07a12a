//! Running a delegated plugin (normally IPAM) the way libcni does: look the binary up in
//! `CNI_PATH`, run it with our `CNI_*` environment (verb overridable) and the complete network
//! configuration on stdin, and read its result or error from stdout.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::thread;
use std::time::{Duration, Instant};

use calico_process::{Finished, RunError};
use serde_json::Value;

use crate::spec::env::{CniEnv, Command};
use crate::spec::error::CniError;
use crate::spec::result::CniResult;

/// How long a delegated plugin may run before it is killed.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(60);

/// How often a plugin that is still being written ("text file busy") is retried.
const BUSY_RETRIES: u32 = 5;

/// Runs `plugin_type` with CNI_COMMAND=ADD and returns its (IPAM) result.
pub fn add(plugin_type: &str, config: &[u8], env: &CniEnv) -> Result<CniResult, CniError> {
    let stdout = exec(plugin_type, Command::Add, config, env, DEFAULT_TIMEOUT)?;
    parse_result(plugin_type, &stdout)
}

/// Runs `plugin_type` with CNI_COMMAND=DEL.
pub fn del(plugin_type: &str, config: &[u8], env: &CniEnv) -> Result<(), CniError> {
    exec(plugin_type, Command::Del, config, env, DEFAULT_TIMEOUT).map(drop)
}

/// What [`del_if_present`] did.
#[derive(Debug)]
pub enum Deleted {
    /// The plugin ran and succeeded.
    Ran,
    /// The plugin cannot be found (or its name is not one that can be looked up): nothing ran.
    Absent(CniError),
}

/// Runs `plugin_type` with CNI_COMMAND=DEL if it can be found. DEL is best effort: a plugin that is not
/// installed cannot release anything, so its absence is reported to the caller rather than as a failure.
pub fn del_if_present(plugin_type: &str, config: &[u8], env: &CniEnv) -> Result<Deleted, CniError> {
    match find_plugin(plugin_type, &env.path, Command::Del) {
        Err(absent) => Ok(Deleted::Absent(absent)),
        Ok(_) => del(plugin_type, config, env).map(|()| Deleted::Ran),
    }
}

/// Runs `plugin_type` with CNI_COMMAND=CHECK.
pub fn check(plugin_type: &str, config: &[u8], env: &CniEnv) -> Result<(), CniError> {
    exec(plugin_type, Command::Check, config, env, DEFAULT_TIMEOUT).map(drop)
}

/// Runs `plugin_type` with CNI_COMMAND=STATUS.
pub fn status(plugin_type: &str, config: &[u8], env: &CniEnv) -> Result<(), CniError> {
    exec(plugin_type, Command::Status, config, env, DEFAULT_TIMEOUT).map(drop)
}

/// Runs `plugin_type` with CNI_COMMAND=GC.
pub fn gc(plugin_type: &str, config: &[u8], env: &CniEnv) -> Result<(), CniError> {
    exec(plugin_type, Command::Gc, config, env, DEFAULT_TIMEOUT).map(drop)
}

/// Decodes a delegated plugin's success output.
pub fn parse_result(plugin_type: &str, stdout: &[u8]) -> Result<CniResult, CniError> {
    let value: Value = serde_json::from_slice(stdout).map_err(|error| {
        CniError::decoding_failure(
            format!("failed to decode the result of plugin {plugin_type:?}: {error}"),
            String::from_utf8_lossy(stdout),
        )
    })?;
    CniResult::from_json(&value)
}

/// Finds the executable `plugin_type` in the `CNI_PATH` directories. Not finding it is error
/// code 5 (50 for STATUS, where the spec defines "plugin not available") naming CNI_PATH.
pub fn find_plugin(
    plugin_type: &str,
    cni_path: &[PathBuf],
    command: Command,
) -> Result<PathBuf, CniError> {
    if plugin_type.is_empty()
        || plugin_type.contains('/')
        || plugin_type == "."
        || plugin_type == ".."
    {
        return Err(CniError::invalid_config(
            format!("invalid plugin type {plugin_type:?}: it must be a plain file name"),
            "",
        ));
    }
    let found = cni_path
        .iter()
        .map(|dir| dir.join(plugin_type))
        .find(|candidate| is_executable_file(candidate));
    found.ok_or_else(|| {
        let code = if command == Command::Status {
            CniError::PLUGIN_NOT_AVAILABLE
        } else {
            CniError::IO_FAILURE
        };
        let dirs: Vec<String> = cni_path
            .iter()
            .map(|dir| dir.display().to_string())
            .collect();
        CniError::new(
            code,
            format!("failed to find plugin {plugin_type:?} in CNI_PATH"),
            format!("CNI_PATH=[{}]", dirs.join(", ")),
        )
    })
}

fn is_executable_file(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path)
        .is_ok_and(|meta| meta.is_file() && meta.permissions().mode() & 0o111 != 0)
}

/// Runs the delegated plugin and returns its stdout on success. A non-zero exit returns the
/// error the plugin printed (its code preserved); a plugin still running after `timeout` is
/// killed (error code 11). The plugin's stderr is copied to ours.
pub fn exec(
    plugin_type: &str,
    command: Command,
    config: &[u8],
    env: &CniEnv,
    timeout: Duration,
) -> Result<Vec<u8>, CniError> {
    let plugin = find_plugin(plugin_type, &env.path, command)?;
    let deadline = Instant::now() + timeout;
    let output = run_with_retry(
        &plugin,
        plugin_type,
        command,
        config,
        env,
        deadline,
        timeout,
    )?;
    // Spec: the delegated plugin's stderr goes to the calling plugin's stderr.
    if !output.stderr.is_empty() {
        let _ = std::io::stderr().write_all(&output.stderr);
    }
    if output.status.success() {
        Ok(output.stdout)
    } else {
        Err(plugin_failure(plugin_type, &output))
    }
}

/// Runs the plugin with the config on stdin until it exits or `deadline`. A binary that is being
/// replaced (an installer writing it: "text file busy") is retried, like libcni.
fn run_with_retry(
    plugin: &Path,
    plugin_type: &str,
    command: Command,
    config: &[u8],
    env: &CniEnv,
    deadline: Instant,
    timeout: Duration,
) -> Result<Finished, CniError> {
    let mut attempt = 0;
    loop {
        let mut process = std::process::Command::new(plugin);
        for (name, value) in env.delegate_vars(command) {
            match value {
                Some(value) => process.env(name, value),
                None => process.env_remove(name),
            };
        }
        let limit = deadline.saturating_duration_since(Instant::now());
        match calico_process::run(&mut process, Some(config), limit) {
            Ok(finished) => return Ok(finished),
            Err(error)
                if error.spawn_error_kind() == Some(std::io::ErrorKind::ExecutableFileBusy)
                    && attempt < BUSY_RETRIES
                    && Instant::now() + Duration::from_secs(1) < deadline =>
            {
                attempt += 1;
                thread::sleep(Duration::from_secs(1));
            }
            Err(RunError::TimedOut { .. }) => {
                return Err(CniError::new(
                    CniError::TRY_AGAIN_LATER,
                    format!(
                        "plugin {plugin_type:?} did not finish within {}s and was killed",
                        timeout.as_secs()
                    ),
                    "",
                ));
            }
            Err(error @ RunError::Spawn { .. }) => {
                return Err(CniError::io_failure(
                    format!("failed to run plugin {}", plugin.display()),
                    error.to_string(),
                ));
            }
            Err(error) => {
                return Err(CniError::io_failure(
                    format!("failed to wait for plugin {plugin_type:?}"),
                    error.to_string(),
                ));
            }
        }
    }
}

/// The error a failed plugin reported, or one describing its failure when it printed none.
fn plugin_failure(plugin_type: &str, output: &Finished) -> CniError {
    let printed = serde_json::from_slice::<Value>(&output.stdout)
        .ok()
        .as_ref()
        .and_then(CniError::from_json);
    if let Some(error) = printed {
        return error;
    }
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    let details = if !stdout.trim().is_empty() {
        format!("unparsable output: {}", stdout.trim())
    } else if !stderr.trim().is_empty() {
        format!("stderr: {}", stderr.trim())
    } else {
        "no output".to_owned()
    };
    CniError::io_failure(
        format!("plugin {plugin_type:?} failed ({})", output.status),
        details,
    )
}
