//! `calicoctl node status`: asks this host's calico-node on its status socket and prints Calico's
//! layout: whether calico-node runs, then a table of BGP peers per family, boxed as Go's tablewriter
//! (olekukonko/tablewriter v0.0.x, used by calicoctl up to 3.32) draws it.

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result, bail};
use calico_contracts::node_status::{
    Family, IO_TIMEOUT, NodeBgpStatus, PeerRow, Reply, Request, node_status_socket_from,
};
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

/// The most of a reply read: far more than any node's peers take, and a bound on a broken server.
const MAX_REPLY_BYTES: u64 = 16 << 20;

fn status(args: StatusArgs) -> Result<()> {
    let path = args
        .socket
        .unwrap_or_else(|| node_status_socket_from(|name| std::env::var(name).ok()));
    let status = ask(&path)?;
    let now = SystemTime::now();
    // BIRD shows times in its local time; so does this, where the time zone can be read.
    let local = |t: OffsetDateTime| UtcOffset::local_offset_at(t).unwrap_or(UtcOffset::UTC);
    let text = render(&status, now, local);
    let mut stdout = std::io::stdout().lock();
    stdout.write_all(text.as_bytes())?;
    stdout.flush()?;
    Ok(())
}

fn ask(path: &Path) -> Result<NodeBgpStatus> {
    let mut stream = match UnixStream::connect(path) {
        Ok(stream) => stream,
        // Nothing listens: calico-node is not running here (or left a socket behind when killed).
        Err(e)
            if matches!(
                e.kind(),
                std::io::ErrorKind::NotFound | std::io::ErrorKind::ConnectionRefused
            ) =>
        {
            bail!("Calico process is not running.")
        }
        // The socket is root's (mode 0600), as BIRD's is for Calico's calicoctl.
        Err(e) if e.kind() == std::io::ErrorKind::PermissionDenied => {
            bail!("Need super user privileges: Operation not permitted")
        }
        Err(e) => {
            return Err(e).with_context(|| {
                format!(
                    "Error querying calico-node: connecting to {}",
                    path.display()
                )
            });
        }
    };
    let context = || format!("Error querying calico-node on {}", path.display());
    stream
        .set_read_timeout(Some(IO_TIMEOUT))
        .with_context(context)?;
    stream
        .set_write_timeout(Some(IO_TIMEOUT))
        .with_context(context)?;
    let mut request = serde_json::to_vec(&Request::BgpStatus)?;
    request.push(b'\n');
    stream.write_all(&request).with_context(context)?;
    let mut reply = Vec::new();
    stream
        .take(MAX_REPLY_BYTES)
        .read_to_end(&mut reply)
        .with_context(context)?;
    let reply: Reply = serde_json::from_slice(&reply)
        .with_context(|| format!("{}: not a status reply", context()))?;
    match reply {
        Reply::BgpStatus(status) => Ok(status),
        Reply::Error(e) => bail!("{}: {e}", context()),
    }
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
                out.push_str(&boxed_table(
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

/// The widest a cell grows before its text is wrapped (tablewriter's MAX_ROW_WIDTH).
const MAX_CELL_WIDTH: usize = 30;

/// A table as tablewriter draws it by default: `+---+` rules above and below the upper-cased,
/// centred header and below the rows; cells padded by one space, left-aligned unless numeric; each
/// column as wide as its widest cell, a cell over 30 wide wrapped at spaces into lines of about 30.
fn boxed_table(headers: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths = vec![0; headers.len()];
    let mut wrap = |column: usize, text: &str| {
        let (lines, width) = wrap_cell(text);
        widths[column] = widths[column].max(width);
        lines
    };
    let headers: Vec<Vec<String>> = headers
        .iter()
        .enumerate()
        .map(|(i, h)| wrap(i, h))
        .collect();
    let rows: Vec<Vec<Vec<String>>> = rows
        .iter()
        .map(|row| row.iter().enumerate().map(|(i, c)| wrap(i, c)).collect())
        .collect();

    let rule = {
        let mut line = String::from("+");
        for w in &widths {
            line.push_str(&"-".repeat(w + 2));
            line.push('+');
        }
        line.push('\n');
        line
    };
    let mut out = rule.clone();
    print_lines(&mut out, &headers, &widths, |text, width| {
        centred(&text.to_uppercase(), width)
    });
    out.push_str(&rule);
    for row in &rows {
        print_lines(&mut out, row, &widths, |text, width| {
            if is_numeric(text.trim()) {
                format!("{text:>width$}")
            } else {
                format!("{text:<width$}")
            }
        });
    }
    out.push_str(&rule);
    out
}

/// One table row, as many lines as its tallest cell.
fn print_lines(
    out: &mut String,
    cells: &[Vec<String>],
    widths: &[usize],
    pad: impl Fn(&str, usize) -> String,
) {
    let height = cells.iter().map(Vec::len).max().unwrap_or(0);
    for line in 0..height {
        out.push('|');
        for (cell, width) in cells.iter().zip(widths) {
            let text = cell.get(line).map_or("", String::as_str);
            out.push(' ');
            out.push_str(&pad(text, *width));
            out.push_str(" |");
        }
        out.push('\n');
    }
}

/// Centred with the odd space on the right.
fn centred(text: &str, width: usize) -> String {
    let gap = width.saturating_sub(text.chars().count());
    let left = gap / 2;
    format!("{}{text}{}", " ".repeat(left), " ".repeat(gap - left))
}

/// tablewriter's test for right-aligning: a decimal number (`1,234.5`, `-7`) or a percentage.
fn is_numeric(text: &str) -> bool {
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    let unsigned = text.strip_prefix('-').unwrap_or(text);
    if let Some(number) = unsigned.strip_suffix('%') {
        // `\d+\.?\d*%`
        let (whole, fraction) = number.split_once('.').unwrap_or((number, ""));
        return digits(whole) && (fraction.is_empty() || digits(fraction));
    }
    // `(\d{1,3}(,\d{3})*|\d+)(\.\d+)?`
    let (whole, fraction) = match unsigned.split_once('.') {
        Some((whole, fraction)) => (whole, Some(fraction)),
        None => (unsigned, None),
    };
    if fraction.is_some_and(|f| !digits(f)) {
        return false;
    }
    let mut groups = whole.split(',');
    let first = groups.next().unwrap_or("");
    let rest: Vec<&str> = groups.collect();
    if rest.is_empty() {
        return digits(first);
    }
    digits(first) && first.len() <= 3 && rest.iter().all(|g| g.len() == 3 && digits(g))
}

/// A cell's lines and the width its column needs: the cell's lines joined into one paragraph and
/// wrapped to the cell's width capped at 30 (a word longer than that widens the column).
fn wrap_cell(text: &str) -> (Vec<String>, usize) {
    let widest = text.split('\n').map(width).max().unwrap_or(0);
    let limit = widest.min(MAX_CELL_WIDTH);
    let paragraph = text.split('\n').collect::<Vec<_>>().join(" ");
    let lines = wrap_paragraph(&paragraph, limit);
    let needed = lines.iter().map(|l| width(l)).max().unwrap_or(0).max(limit);
    (lines, needed)
}

fn width(text: &str) -> usize {
    text.chars().count()
}

/// Lines of at most `limit` (or the longest word) with the least raggedness: the sum over all lines
/// but the last of the square of the room left, found by dynamic programming from the end, the first
/// of equally good breaks taken.
fn wrap_paragraph(text: &str, limit: usize) -> Vec<String> {
    const TOO_LONG: usize = 100_000;
    let words: Vec<&str> = text.split(' ').collect();
    let limit = words.iter().map(|w| width(w)).max().unwrap_or(0).max(limit);
    let n = words.len();
    // span(i, j): the width of words i..=j on one line.
    let prefix: Vec<usize> = std::iter::once(0)
        .chain(words.iter().scan(0, |sum, w| {
            *sum += width(w);
            Some(*sum)
        }))
        .collect();
    let span = |i: usize, j: usize| prefix[j + 1] - prefix[i] + (j - i);
    let mut cost = vec![usize::MAX; n];
    let mut next_break = vec![n; n];
    for i in (0..n).rev() {
        if span(i, n - 1) <= limit {
            cost[i] = 0;
            continue;
        }
        for j in i + 1..n {
            let line = span(i, j - 1);
            let room = limit.abs_diff(line);
            let mut c = (room * room).saturating_add(cost[j]);
            if line > limit {
                c = c.saturating_add(TOO_LONG);
            }
            if c < cost[i] {
                cost[i] = c;
                next_break[i] = j;
            }
        }
    }
    let mut lines = Vec::new();
    let mut i = 0;
    while i < n {
        lines.push(words[i..next_break[i]].join(" "));
        i = next_break[i];
    }
    lines
}

#[cfg(test)]
mod tests;
