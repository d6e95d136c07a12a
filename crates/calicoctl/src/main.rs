//! calicoctl: create, read, update and delete `projectcalico.org/v3` resources in the calico-rs
//! datastore, with the verbs, flags, messages and table layouts Calico users know.

mod input;
mod ipam;
mod output;
mod table;
mod verbs;

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::{Context, Result};
use calico_datastore::Store;
use calico_datastore::client::{Client, WriteMode};
use calico_datastore::config::{DEFAULT_CONFIG_FILE, DatastoreConfig};
use clap::{Parser, Subcommand};

// Parsing and validating thousands of documents is allocation-heavy: mimalloc makes it markedly faster.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

const VERSION: &str = concat!("v", env!("CARGO_PKG_VERSION"));

#[derive(Parser)]
#[command(name = "calicoctl", version = VERSION, about = "Manage calico-rs (Calico-compatible) resources")]
struct Cli {
    /// Path to the connection configuration file (CalicoAPIConfig).
    #[arg(short = 'c', long = "config", global = true)]
    config: Option<PathBuf>,
    /// Log level: panic, fatal, error, warn, info, debug.
    #[arg(
        short = 'l',
        long = "log-level",
        global = true,
        default_value = "panic"
    )]
    log_level: String,
    /// Accepted for compatibility; calico-rs does not check versions.
    #[arg(long = "allow-version-mismatch", global = true)]
    allow_version_mismatch: bool,
    /// Accepted for compatibility (Kubernetes contexts are not used).
    #[arg(long = "context", global = true)]
    context: Option<String>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Create resources by file name or stdin.
    Create(verbs::write::WriteArgs),
    /// Create or update resources by file name or stdin.
    Apply(verbs::write::WriteArgs),
    /// Replace existing resources by file name or stdin.
    Replace(verbs::write::WriteArgs),
    /// Delete resources identified by file, stdin, or kind and names.
    Delete(verbs::delete::DeleteArgs),
    /// Check resources in a file without writing anything.
    Validate(verbs::write::WriteArgs),
    /// Display one or many resources.
    Get(verbs::get::GetArgs),
    /// Update fields of a resource with a JSON patch.
    Patch(verbs::patch::PatchArgs),
    /// Add, change or remove a label on a resource.
    Label(verbs::label::LabelArgs),
    /// Print the client and cluster versions.
    Version(verbs::version::VersionArgs),
    /// IP address management: show, check, release, configure.
    Ipam(ipam::IpamArgs),
    /// Node specific commands: status.
    Node(verbs::node::NodeArgs),
}

/// The status a Unix tool leaves when its reader goes away (killed by SIGPIPE: 128 + 13), which is what
/// a shell reports for `calicoctl get ... | head`.
const EXIT_BROKEN_PIPE: u8 = 141;

/// Whether an error comes from writing to a closed stdout (the reader, e.g. `head`, has exited).
fn is_broken_pipe(e: &anyhow::Error) -> bool {
    e.chain().any(|cause| {
        cause
            .downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
    })
}

/// `println!` panics when stdout is a closed pipe. That is not a failure of calicoctl, so end quietly
/// with the broken-pipe status, as Unix tools do, instead of printing a panic; other panics are
/// reported as usual.
fn end_quietly_on_closed_stdout() {
    let default = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        let message = info
            .payload()
            .downcast_ref::<String>()
            .map(String::as_str)
            .or_else(|| info.payload().downcast_ref::<&str>().copied())
            .unwrap_or("");
        // std's message ends with the OS error; EPIPE is 32 on Linux.
        let closed_stdout =
            message.starts_with("failed printing to stdout") && message.ends_with("(os error 32)");
        if closed_stdout {
            std::process::exit(i32::from(EXIT_BROKEN_PIPE));
        }
        default(info);
    }));
}

fn main() -> ExitCode {
    end_quietly_on_closed_stdout();
    let cli = Cli::parse();
    init_logging(&cli.log_level);
    // Needs no datastore, and runs before any runtime thread exists: reading the local time zone is
    // only sound while the process has one thread.
    let cli = match cli.command {
        Command::Node(args) => return exit_code(verbs::node::run(args)),
        command => Cli { command, ..cli },
    };
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("Failed to start: {e}");
            return ExitCode::FAILURE;
        }
    };
    exit_code(runtime.block_on(run(cli)))
}

fn exit_code(result: Result<()>) -> ExitCode {
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) if is_broken_pipe(&e) => ExitCode::from(EXIT_BROKEN_PIPE),
        Err(e) => {
            eprintln!("{e:#}");
            ExitCode::FAILURE
        }
    }
}

fn init_logging(level: &str) {
    let filter = match level.to_ascii_lowercase().as_str() {
        "panic" | "fatal" => "off",
        "error" => "error",
        "warn" | "warning" => "warn",
        "info" => "info",
        "debug" | "trace" => "debug",
        _ => "off",
    };
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::new(filter))
        .with_writer(std::io::stderr)
        .try_init();
}

async fn run(cli: Cli) -> Result<()> {
    let config = DatastoreConfig::load(cli.config.as_deref()).with_context(|| {
        format!(
            "Failed to load the datastore configuration (from {} or the environment)",
            cli.config
                .as_deref()
                .map_or(DEFAULT_CONFIG_FILE.into(), |p| p.display().to_string())
        )
    })?;
    match cli.command {
        Command::Validate(args) => verbs::write::validate(args),
        Command::Version(args) => verbs::version::version(&config, args).await,
        // `main` answers it before loading any configuration; here only for completeness.
        Command::Node(args) => verbs::node::run(args),
        command => {
            let client = connect(&config).await?;
            match command {
                Command::Create(args) => {
                    verbs::write::write(&client, args, WriteMode::Create).await
                }
                Command::Apply(args) => verbs::write::write(&client, args, WriteMode::Apply).await,
                Command::Replace(args) => {
                    verbs::write::write(&client, args, WriteMode::Replace).await
                }
                Command::Delete(args) => verbs::delete::delete(&client, args).await,
                Command::Get(args) => verbs::get::get(&client, args).await,
                Command::Patch(args) => verbs::patch::patch(&client, args).await,
                Command::Label(args) => verbs::label::label(&client, args).await,
                Command::Ipam(args) => ipam::run(&client, args, VERSION).await,
                Command::Validate(_) | Command::Version(_) | Command::Node(_) => Ok(()),
            }
        }
    }
}

pub async fn connect(config: &DatastoreConfig) -> Result<Client> {
    let store: Arc<dyn Store> = config
        .connect(calico_datastore::config::OpenMode::MustExist)
        .await
        .with_context(|| format!("Failed to connect to the {} datastore", config.describe()))?;
    Ok(Client::new(store))
}
