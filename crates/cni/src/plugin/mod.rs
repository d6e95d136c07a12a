//! The plugin executable: one binary installed as `calico` and as `calico-ipam`, choosing its role from
//! the name it was started under.
//!
//! Output discipline: stdout carries only the CNI result or error JSON; logs go to the configured log file
//! (Calico's `/var/log/calico/cni/cni.log` by default) or, failing that, to stderr.

pub mod calico;
pub mod context;
pub mod dataplane;
pub mod endpoint;
pub mod ipam;
pub mod names;

use std::fs::OpenOptions;
use std::path::Path;
use std::sync::Mutex;

use crate::spec::version::{requested_version, version_json};
use crate::spec::{CniEnv, CniError, CniVersion, Command, NetConf};

use context::Invocation;

pub const DEFAULT_LOG_FILE: &str = "/var/log/calico/cni/cni.log";

/// Which plugin the executable acts as.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    Calico,
    CalicoIpam,
}

impl Role {
    /// From `argv[0]`: a name ending in `calico-ipam` is the IPAM plugin.
    pub fn from_argv0(argv0: &str) -> Role {
        let base = Path::new(argv0)
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or(argv0);
        if base.ends_with("calico-ipam") {
            Role::CalicoIpam
        } else {
            Role::Calico
        }
    }
}

/// What the process prints on stdout and its exit status.
pub struct Outcome {
    pub stdout: String,
    pub exit_code: i32,
}

fn error_outcome(e: &CniError, version: &str) -> Outcome {
    Outcome {
        stdout: e.to_json(version).to_string(),
        exit_code: 1,
    }
}

/// Run one invocation with the process environment and what reading stdin gave.
pub fn run(role: Role, stdin: std::io::Result<Vec<u8>>) -> Outcome {
    let stdin = match stdin {
        Ok(bytes) => bytes,
        // The spec's code for this case: "I/O failure, e.g. failed to read network config bytes from
        // stdin". No config was read, so the reply is in the latest version.
        Err(e) => {
            return error_outcome(
                &CniError::io_failure(
                    "cannot read the network configuration from stdin",
                    e.to_string(),
                ),
                CniVersion::LATEST.as_str(),
            );
        }
    };
    let requested = requested_version(&stdin).ok().flatten();
    let reply_version = requested
        .clone()
        .unwrap_or_else(|| CniVersion::LATEST.as_str().to_string());
    let env = match CniEnv::from_process_env() {
        Ok(env) => env,
        Err(e) => return error_outcome(&e, &reply_version),
    };
    if env.command == Command::Version {
        return Outcome {
            stdout: version_json(requested.as_deref()).to_string(),
            exit_code: 0,
        };
    }
    let conf = match NetConf::parse(&stdin) {
        Ok(c) => c,
        Err(e) => return error_outcome(&e, &reply_version),
    };
    let version = match conf
        .version()
        .and_then(|v| v.check_command(env.command).map(|()| v))
    {
        Ok(v) => v,
        Err(e) => return error_outcome(&e, &reply_version),
    };
    init_logging(&conf);
    let inv = Invocation {
        env,
        conf,
        version,
        stdin,
    };
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            return error_outcome(
                &CniError::io_failure("cannot start the async runtime", e.to_string()),
                version.as_str(),
            );
        }
    };
    let result = runtime.block_on(async {
        match role {
            Role::Calico => calico::run(&inv).await,
            Role::CalicoIpam => ipam::run(&inv).await,
        }
    });
    match result {
        Ok(Some(res)) => Outcome {
            stdout: res.to_json(version).to_string(),
            exit_code: 0,
        },
        Ok(None) => Outcome {
            stdout: String::new(),
            exit_code: 0,
        },
        Err(e) => {
            tracing::error!(code = e.code, msg = %e.msg, details = %e.details, command = inv.env.command.as_str(), "failed");
            error_outcome(&e, version.as_str())
        }
    }
}

/// Logs to the configured file (created if need be), else stderr, at the configured level (default info).
fn init_logging(conf: &NetConf) {
    let level = conf
        .log_level
        .as_deref()
        .map(str::to_ascii_lowercase)
        .map(|l| match l.as_str() {
            "warning" => "warn".to_string(),
            "panic" | "fatal" => "error".to_string(),
            other => other.to_string(),
        })
        .unwrap_or_else(|| "info".to_string());
    let filter = tracing_subscriber::EnvFilter::try_new(&level)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let path = conf
        .log_file_path
        .clone()
        .unwrap_or_else(|| DEFAULT_LOG_FILE.to_string());
    if let Some(dir) = Path::new(&path).parent() {
        let _ = std::fs::create_dir_all(dir);
    }
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(false)
        .with_target(false);
    let _ = match OpenOptions::new().create(true).append(true).open(&path) {
        Ok(file) => builder.with_writer(Mutex::new(file)).try_init(),
        Err(_) => builder.with_writer(std::io::stderr).try_init(),
    };
}
