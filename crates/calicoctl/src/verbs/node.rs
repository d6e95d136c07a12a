//! `calicoctl node status`: asks this host's calico-node on its status socket and prints Calico's
//! layout: whether calico-node runs, then a table of BGP peers per family, boxed as Go's tablewriter
//! (olekukonko/tablewriter v0.0.x, used by calicoctl up to 3.32) draws it.

use std::io::Write;
use std::path::PathBuf;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::Result;
use calico_contracts::node_status::{Family, NodeBgpStatus, PeerRow, node_status_socket_from};
use clap::{Args, Subcommand};
use time::{OffsetDateTime, UtcOffset};

#[derive(Args)]
pub struct NodeArgs {
    #[command(subcommand)]
    pub command: NodeCommand,
}

#[derive(Subcommand)]
pub enum NodeCommand {
    /// View the current status of a Calico node.
    Status(StatusArgs),
}

#[derive(Args)]
pub struct StatusArgs {
    /// calico-node's status socket (default: $CALICO_NODE_STATUS_SOCKET, else node-status.sock in
    /// $CALICO_STATE_DIR, else /var/lib/calico/node-status.sock).
    #[arg(long = "socket")]
    pub socket: Option<PathBuf>,
}

pub fn run(args: NodeArgs) -> Result<()> {
    match args.command {
        NodeCommand::Status(args) => status(args),
    }
}

fn status(args: StatusArgs) -> Result<()> {
    let path = args
        .socket
        .unwrap_or_else(|| node_status_socket_from(|name| std::env::var(name).ok()));
    let status = calico_contracts::node_status::query(&path)?;
    let now = SystemTime::now();
    // BIRD shows times in its local time; so does this, where the time zone can be read.
    let local = |t: OffsetDateTime| UtcOffset::local_offset_at(t).unwrap_or(UtcOffset::UTC);
    let text = render(&status, now, local);
    let mut stdout = std::io::stdout().lock();
    stdout.write_all(text.as_bytes())?;
    stdout.flush()?;
    Ok(())
}

/// The whole output, as Calico's calicoctl prints it (a blank line ends it, as there).
pub fn render(
    status: &NodeBgpStatus,
    now: SystemTime,
    local: impl Fn(OffsetDateTime) -> UtcOffset,
) -> String {
    let mut out = String::from("Calico process is running.\n");
    if status.speaker_running {
        for family in [Family::IPv4, Family::IPv6] {
            out.push_str(&format!("\n{family} BGP status\n"));
            let rows: Vec<Vec<String>> = status
                .peers
                .iter()
                .filter(|p| p.family == family)
                .map(|p| cells(p, now, &local))
                .collect();
            if rows.is_empty() {
                out.push_str(&format!("No {family} peers found.\n"));
            } else {
                out.push_str(&crate::table::box_table(
                    &["Peer address", "Peer type", "State", "Since", "Info"],
                    &rows,
                ));
            }
        }
    } else {
        out.push_str("\nThe BGP backend process (BIRD) is not running.\n");
    }
    out.push('\n');
    out
}

fn cells(
    peer: &PeerRow,
    now: SystemTime,
    local: &impl Fn(OffsetDateTime) -> UtcOffset,
) -> Vec<String> {
    vec![
        peer.address.to_string(),
        peer.kind.display_name().to_string(),
        peer.state.to_string(),
        since_text(peer.since, now, local),
        peer.info(),
    ]
}

/// BIRD's default protocol time format: the time of day if less than 20 hours ago, else the date.
fn since_text(
    since: SystemTime,
    now: SystemTime,
    local: &impl Fn(OffsetDateTime) -> UtcOffset,
) -> String {
    const RECENT: Duration = Duration::from_secs(20 * 3600);
    let Some(t) = since
        .duration_since(UNIX_EPOCH)
        .ok()
        .and_then(|d| i64::try_from(d.as_secs()).ok())
        .and_then(|secs| OffsetDateTime::from_unix_timestamp(secs).ok())
    else {
        return "?".to_string();
    };
    let t = t.checked_to_offset(local(t)).unwrap_or(t);
    // A time ahead of now (clocks adjusted) is shown as recent, as BIRD does.
    let recent = now.duration_since(since).map_or(true, |ago| ago < RECENT);
    if recent {
        format!("{:02}:{:02}:{:02}", t.hour(), t.minute(), t.second())
    } else {
        format!("{:04}-{:02}-{:02}", t.year(), u8::from(t.month()), t.day())
    }
}

#[cfg(test)]
mod tests;
