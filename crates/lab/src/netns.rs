//! Network namespaces by name: creating and deleting them with `ip netns` (in batches, one process for
//! many), listing a lab's, and opening one for calico-netlink.

use std::process::Command;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use calico_netlink::Netns;

use crate::paths::{NETNS_DIR, netns_path, system_binary};

fn ip_command() -> Result<Command> {
    Ok(Command::new(system_binary("ip", "iproute2")?))
}

/// Runs `ip -batch -` with one command per line.
fn ip_batch(lines: &[String], force: bool) -> Result<()> {
    if lines.is_empty() {
        return Ok(());
    }
    let mut command = ip_command()?;
    if force {
        command.arg("-force");
    }
    command.args(["-batch", "-"]);
    let input = lines.join("\n") + "\n";
    let out = calico_process::run(
        &mut command,
        Some(input.as_bytes()),
        Duration::from_secs(60),
    )?;
    if !out.status.success() && !force {
        bail!("ip -batch failed: {}", out.stderr_text().trim());
    }
    Ok(())
}

/// Creates the named namespaces (which must not exist yet).
pub fn add(names: &[String]) -> Result<()> {
    let lines: Vec<String> = names.iter().map(|n| format!("netns add {n}")).collect();
    ip_batch(&lines, false).context("creating network namespaces")
}

/// Deletes the named namespaces, ignoring ones already gone.
pub fn delete(names: &[String]) -> Result<()> {
    let lines: Vec<String> = names.iter().map(|n| format!("netns delete {n}")).collect();
    ip_batch(&lines, true)?;
    let left: Vec<&String> = names.iter().filter(|n| exists(n)).collect();
    if !left.is_empty() {
        bail!("could not delete network namespaces: {left:?}");
    }
    Ok(())
}

pub fn exists(name: &str) -> bool {
    crate::state::exists(&netns_path(name))
}

/// Namespaces whose names start with `prefix`, sorted.
pub fn with_prefix(prefix: &str) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(NETNS_DIR)
        .map(|entries| {
            entries
                .filter_map(|e| e.ok()?.file_name().into_string().ok())
                .filter(|n| n.starts_with(prefix))
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    names
}

/// Opens a namespace by name.
pub fn open(name: &str) -> Result<Netns> {
    Netns::open(&netns_path(name)).with_context(|| format!("opening network namespace {name}"))
}

/// `ip netns exec <ns> <program> <args>` as a command to adjust and run.
pub fn exec_command(ns: &str, program: impl AsRef<std::ffi::OsStr>) -> Result<Command> {
    let mut command = ip_command()?;
    command.args(["netns", "exec", ns]).arg(program);
    Ok(command)
}

/// Runs `work` on each of `items` from inside namespace `name`, at most `in_flight` at once, on a
/// runtime of its own whose sockets are made in that namespace; the results in `items`' order (a
/// task that panicked leaves its result out).
pub fn run_concurrently<T, R, F, Fut>(
    name: &str,
    items: Vec<T>,
    in_flight: usize,
    work: F,
) -> Result<Vec<R>>
where
    T: Send,
    R: Send + 'static,
    F: Fn(T) -> Fut + Send,
    Fut: std::future::Future<Output = R> + Send + 'static,
{
    let ns = open(name)?;
    ns.run(move || -> Result<Vec<R>> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .context("starting the async runtime")?;
        Ok(runtime.block_on(async move {
            let mut results: Vec<Option<R>> = Vec::new();
            results.resize_with(items.len(), || None);
            let mut queue = items.into_iter().enumerate();
            let mut running = tokio::task::JoinSet::new();
            loop {
                while running.len() < in_flight.max(1)
                    && let Some((i, item)) = queue.next()
                {
                    let task = work(item);
                    running.spawn(async move { (i, task.await) });
                }
                match running.join_next().await {
                    Some(Ok((i, result))) => results[i] = Some(result),
                    Some(Err(_)) => {}
                    None => break,
                }
            }
            results.into_iter().flatten().collect()
        }))
    })?
}
