//! A BGP speaker process: runs a [`Speaker`] from a JSON config file so that tests can start,
//! SIGKILL and restart it like calico-node.
//!
//! Usage: `calico-bgp-speaker CONFIG.json [--restarting]`
//!
//! Commands, one per line on stdin: `originate PREFIX [NEXT_HOP] [COMMUNITY...]` (each community
//! `aa:nn`, or `aa:nn:mm` for a large one), `withdraw PREFIX`, `status`, `listen ADDR:PORT|none`
//! (move the listener; answered by `{"event":"listening","listen":…}` or
//! `{"event":"listen_failed","message":…}`),
//! `reload` (read the config file again and apply its peers and identity). Output, one JSON
//! object per line on stdout: `{"event":"started","listen":…}`, `{"event":"route",…}` for
//! every best-path change, `{"event":"status","peers":[…]}`, `{"event":"error","message":…}`.
//! SIGTERM or the end of stdin stops it with a Cease to every peer.

use std::collections::BTreeSet;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::OnceLock;
use std::time::{Duration, UNIX_EPOCH};

use calico_bgp::policy::{Community, Filter, FilterRule, MatchOperator, Operation, RuleAction};
use calico_bgp::rib::NextHopMode;
use calico_bgp::speaker::{
    Communities, PeerSettings, PeerStatus, RouteChange, RouteStream, Speaker, SpeakerConfig,
};
use calico_bgp::wire::LargeCommunity;
use ipnet::IpNet;
use serde::Deserialize;
use serde_json::json;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::signal::unix::{SignalKind, signal};
use tokio::sync::{mpsc, oneshot};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Config {
    local_as: u32,
    router_id: Ipv4Addr,
    /// `null` for no listener.
    #[serde(default = "default_listen")]
    listen: Option<SocketAddr>,
    #[serde(default)]
    cluster_id: Option<Ipv4Addr>,
    #[serde(default)]
    restarting: bool,
    #[serde(default)]
    peers: Vec<PeerEntry>,
    /// Prefixes originated at start, with our address as next hop.
    #[serde(default)]
    originate: Vec<IpNet>,
}

fn default_listen() -> Option<SocketAddr> {
    Some(SocketAddr::from((Ipv4Addr::UNSPECIFIED, 179)))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct PeerEntry {
    address: IpAddr,
    #[serde(default = "default_port")]
    port: u16,
    remote_as: u32,
    #[serde(default)]
    password: Option<String>,
    #[serde(default)]
    passive: bool,
    #[serde(default)]
    rr_client: bool,
    /// `auto`, `self` or `keep`.
    #[serde(default)]
    next_hop: NextHopEntry,
    /// Seconds; `null` turns graceful restart off for this peer.
    #[serde(default = "default_restart_time")]
    graceful_restart_time: Option<u16>,
    #[serde(default = "default_hold")]
    hold_time: u16,
    #[serde(default)]
    keepalive: Option<u16>,
    #[serde(default)]
    local_address: Option<IpAddr>,
    /// TTL for a peer not directly connected; absent: 1 for eBGP, 64 for iBGP.
    #[serde(default)]
    multihop: Option<u8>,
    #[serde(default = "default_retry")]
    connect_retry_secs: u64,
    #[serde(default = "default_retry")]
    error_wait_secs: u64,
    #[serde(default)]
    import: Vec<RuleEntry>,
    #[serde(default)]
    export: Vec<RuleEntry>,
    /// Times our AS may appear in a received AS_PATH (BIRD's `allow local as`).
    #[serde(default)]
    allow_local_as: u32,
}

fn default_port() -> u16 {
    179
}
fn default_restart_time() -> Option<u16> {
    Some(120)
}
fn default_hold() -> u16 {
    90
}
fn default_retry() -> u64 {
    5
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
enum NextHopEntry {
    #[default]
    Auto,
    #[serde(rename = "self")]
    OurAddress,
    Keep,
}

/// One rule of a Calico `BGPFilter`: `cidr`, `matchOperator`, `action`, and optionally
/// `prefixLength`, `source`, a `community`, `asPathPrefix`, and the operations `addCommunity`
/// (values) and `prependASPath` (AS numbers).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct RuleEntry {
    cidr: IpNet,
    match_operator: OperatorEntry,
    action: ActionEntry,
    #[serde(default)]
    prefix_length: Option<LengthEntry>,
    #[serde(default)]
    source: Option<SourceEntry>,
    #[serde(default)]
    community: Option<String>,
    #[serde(default, rename = "asPathPrefix")]
    as_path_prefix: Vec<u32>,
    #[serde(default)]
    add_community: Vec<String>,
    #[serde(default, rename = "prependASPath")]
    prepend_as_path: Vec<u32>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct LengthEntry {
    min: u8,
    max: u8,
}

#[derive(Debug, Deserialize)]
enum SourceEntry {
    RemotePeers,
}

#[derive(Debug, Deserialize)]
enum OperatorEntry {
    Equal,
    NotEqual,
    In,
    NotIn,
}

#[derive(Debug, Deserialize)]
enum ActionEntry {
    Accept,
    Reject,
}

/// `aa:nn` or `aa:nn:mm`.
fn community(text: &str) -> Option<Community> {
    let parts: Vec<u32> = text
        .split(':')
        .map(str::parse::<u32>)
        .collect::<Result<_, _>>()
        .ok()?;
    match parts.as_slice() {
        [a, n] if *a <= 0xffff && *n <= 0xffff => Some(Community::Standard(a << 16 | n)),
        [a, b, c] => Some(Community::Large(LargeCommunity {
            global_admin: *a,
            local_data_1: *b,
            local_data_2: *c,
        })),
        _ => None,
    }
}

fn filter(rules: &[RuleEntry]) -> Result<Filter, String> {
    let community_of = |text: &str| community(text).ok_or(format!("{text} is not a community"));
    let mut out = Vec::new();
    for r in rules {
        let operator = match r.match_operator {
            OperatorEntry::Equal => MatchOperator::Equal,
            OperatorEntry::NotEqual => MatchOperator::NotEqual,
            OperatorEntry::In => MatchOperator::In,
            OperatorEntry::NotIn => MatchOperator::NotIn,
        };
        let action = match r.action {
            ActionEntry::Accept => RuleAction::Accept,
            ActionEntry::Reject => RuleAction::Reject,
        };
        let mut operations = Vec::new();
        for value in &r.add_community {
            operations.push(Operation::AddCommunity(community_of(value)?));
        }
        if !r.prepend_as_path.is_empty() {
            operations.push(Operation::PrependAsPath(r.prepend_as_path.clone()));
        }
        out.push(FilterRule {
            prefix_length: r.prefix_length.as_ref().map(|l| (l.min, l.max)),
            from_peers_only: r.source.is_some(),
            community: r.community.as_deref().map(community_of).transpose()?,
            as_path_prefix: r.as_path_prefix.clone(),
            operations,
            ..FilterRule::new(r.cidr, operator, action)
        });
    }
    Ok(Filter { rules: out })
}

impl PeerEntry {
    fn settings(&self) -> Result<PeerSettings, String> {
        Ok(PeerSettings {
            port: self.port,
            password: self.password.clone(),
            passive: self.passive,
            rr_client: self.rr_client,
            next_hop: match self.next_hop {
                NextHopEntry::Auto => NextHopMode::Auto,
                NextHopEntry::OurAddress => NextHopMode::OurAddress,
                NextHopEntry::Keep => NextHopMode::Keep,
            },
            graceful_restart_time: self.graceful_restart_time,
            hold_time: self.hold_time,
            keepalive: self.keepalive,
            local_address: self.local_address,
            multihop: self.multihop,
            connect_retry: Duration::from_secs(self.connect_retry_secs),
            error_wait: Duration::from_secs(self.error_wait_secs),
            import: filter(&self.import)?,
            export: filter(&self.export)?,
            allow_local_as: self.allow_local_as,
            ..PeerSettings::new(self.address, self.remote_as)
        })
    }
}

fn read_config(path: &Path) -> Result<Config, String> {
    let text =
        std::fs::read_to_string(path).map_err(|e| format!("read {}: {e}", path.display()))?;
    serde_json::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))
}

/// Lines for stdout, written by the output thread (see [`spawn_output`]).
static OUTPUT: OnceLock<mpsc::UnboundedSender<Output>> = OnceLock::new();

enum Output {
    Line(serde_json::Value),
    /// Everything before this is written: the thread ends.
    End,
}

/// Prints one JSON line, through the output thread once it runs.
fn emit(value: serde_json::Value) {
    match OUTPUT.get() {
        Some(out) => {
            if let Err(mpsc::error::SendError(Output::Line(v))) = out.send(Output::Line(value)) {
                println!("{v}");
            }
        }
        None => println!("{value}"),
    }
}

fn route_json(change: RouteChange) -> serde_json::Value {
    match change {
        RouteChange::Best { prefix, next_hops } => json!({
            "event": "route",
            "prefix": prefix.to_string(),
            "next_hops": next_hops.iter().map(|h| h.to_string()).collect::<Vec<_>>(),
        }),
        RouteChange::Withdrawn { prefix } => json!({
            "event": "route",
            "prefix": prefix.to_string(),
            "next_hops": [],
        }),
    }
}

/// Stdout is written by a thread of its own: a reader that falls behind blocks only it, never
/// a runtime worker (the sessions' timers run there). Routes stay in the speaker's bounded
/// stream meanwhile (it coalesces them); the other lines are few. `stopped` is told when the
/// speaker's route stream ends.
fn spawn_output(
    mut routes: RouteStream,
    stopped: oneshot::Sender<()>,
) -> std::io::Result<std::thread::JoinHandle<()>> {
    let (tx, mut lines) = mpsc::unbounded_channel();
    let _ = OUTPUT.set(tx);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    std::thread::Builder::new()
        .name("output".into())
        .spawn(move || {
            rt.block_on(async move {
                let mut stopped = Some(stopped);
                loop {
                    tokio::select! {
                        biased;
                        line = lines.recv() => match line {
                            Some(Output::Line(v)) => println!("{v}"),
                            Some(Output::End) | None => return,
                        },
                        change = routes.recv(), if stopped.is_some() => match change {
                            Some(c) => println!("{}", route_json(c)),
                            None => {
                                if let Some(s) = stopped.take() {
                                    let _ = s.send(());
                                }
                            }
                        },
                    }
                }
            });
        })
}

fn status_json(peers: &[PeerStatus]) -> serde_json::Value {
    let peers: Vec<serde_json::Value> = peers
        .iter()
        .map(|p| {
            json!({
                "address": p.address.to_string(),
                "port": p.port,
                "remote_as": p.remote_as,
                "state": format!("{:?}", p.state),
                "since_unix_ms": p.since.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis()),
                "last_error": p.last_error,
                "router_id": p.router_id.map(|r| r.to_string()),
                "received": p.received,
                "accepted": p.accepted,
                "advertised": p.advertised,
                "initial_routes_received": p.initial_routes_received,
            })
        })
        .collect();
    json!({ "event": "status", "peers": peers })
}

async fn apply(speaker: &Speaker, config: &Config, known: &mut BTreeSet<IpAddr>) {
    if let Err(e) = speaker
        .set_identity(config.local_as, config.router_id, config.cluster_id)
        .await
    {
        emit(json!({ "event": "error", "message": e.to_string() }));
    }
    let wanted: BTreeSet<IpAddr> = config.peers.iter().map(|p| p.address).collect();
    for gone in known.difference(&wanted) {
        if let Err(e) = speaker.remove_peer(*gone).await {
            emit(json!({ "event": "error", "message": e.to_string() }));
        }
    }
    for peer in &config.peers {
        let result = match peer.settings() {
            Ok(settings) => speaker.set_peer(settings).await.map_err(|e| e.to_string()),
            Err(e) => Err(format!("peer {}: {e}", peer.address)),
        };
        if let Err(message) = result {
            emit(json!({ "event": "error", "message": message }));
        }
    }
    *known = wanted;
}

/// The words after `originate PREFIX`: an optional next hop, then communities.
fn origin_args(words: &[&str]) -> Result<(Option<IpAddr>, Communities), String> {
    let mut next_hop = None;
    let mut communities = Communities::default();
    for (i, word) in words.iter().enumerate() {
        if i == 0
            && let Ok(nh) = word.parse::<IpAddr>()
        {
            next_hop = Some(nh);
            continue;
        }
        match community(word) {
            Some(Community::Standard(c)) => communities.standard.push(c),
            Some(Community::Large(c)) => communities.large.push(c),
            None => return Err(format!("{word} is neither a next hop nor a community")),
        }
    }
    Ok((next_hop, communities))
}

async fn command(speaker: &Speaker, line: &str, config_path: &Path, known: &mut BTreeSet<IpAddr>) {
    let words: Vec<&str> = line.split_whitespace().collect();
    let result: Result<(), String> = match words.as_slice() {
        [] => Ok(()),
        ["originate", prefix, rest @ ..] => match (prefix.parse::<IpNet>(), origin_args(rest)) {
            (Ok(p), Ok((next_hop, communities))) => speaker
                .originate(p, next_hop, communities)
                .await
                .map_err(|e| e.to_string()),
            (Ok(_), Err(e)) => Err(format!(
                "{e} (usage: originate PREFIX [NEXT_HOP] [COMMUNITY...])"
            )),
            (Err(e), _) => Err(format!("prefix {prefix}: {e}")),
        },
        ["withdraw", prefix] => match prefix.parse::<IpNet>() {
            Ok(p) => speaker.withdraw(p).await.map_err(|e| e.to_string()),
            Err(e) => Err(format!("prefix {prefix}: {e}")),
        },
        ["listen", to] => {
            let listen = match *to {
                "none" => Ok(None),
                addr => addr.parse::<SocketAddr>().map(Some),
            };
            match listen {
                Ok(listen) => {
                    match speaker.set_listen(listen).await {
                        Ok(bound) => emit(json!({
                            "event": "listening",
                            "listen": bound.map(|a| a.to_string()),
                        })),
                        Err(e) => emit(json!({
                            "event": "listen_failed",
                            "message": e.to_string(),
                        })),
                    }
                    Ok(())
                }
                Err(e) => Err(format!("listen {to}: {e}")),
            }
        }
        ["status"] => match speaker.status().await {
            Ok(peers) => {
                emit(status_json(&peers));
                Ok(())
            }
            Err(e) => Err(e.to_string()),
        },
        ["reload"] => match read_config(config_path) {
            Ok(config) => {
                apply(speaker, &config, known).await;
                emit(json!({ "event": "reloaded" }));
                Ok(())
            }
            Err(e) => Err(e),
        },
        _ => Err(format!("unknown command: {line}")),
    };
    if let Err(message) = result {
        emit(json!({ "event": "error", "message": message }));
    }
}

async fn run(config_path: PathBuf, restarting: bool) -> Result<(), String> {
    let config = read_config(&config_path)?;
    let speaker_config = SpeakerConfig {
        listen: config.listen,
        cluster_id: config.cluster_id,
        restarting: restarting || config.restarting,
        ..SpeakerConfig::new(config.local_as, config.router_id)
    };
    let (speaker, routes) = Speaker::start(speaker_config)
        .await
        .map_err(|e| e.to_string())?;
    let (stopped_tx, mut stopped) = oneshot::channel();
    let output = spawn_output(routes, stopped_tx).map_err(|e| format!("output thread: {e}"))?;
    let mut known = BTreeSet::new();
    for prefix in &config.originate {
        speaker
            .originate(*prefix, None, Communities::default())
            .await
            .map_err(|e| e.to_string())?;
    }
    // Everything we originate is in: a restarting speaker may now send End-of-RIB.
    speaker
        .initial_routes_done()
        .await
        .map_err(|e| e.to_string())?;
    apply(&speaker, &config, &mut known).await;
    emit(json!({
        "event": "started",
        "listen": speaker.local_addr().map(|a| a.to_string()),
        "pid": std::process::id(),
    }));
    let mut term = signal(SignalKind::terminate()).map_err(|e| format!("SIGTERM: {e}"))?;
    let mut lines = BufReader::new(tokio::io::stdin()).lines();
    loop {
        tokio::select! {
            _ = &mut stopped => return Err("the speaker stopped".into()),
            line = lines.next_line() => match line {
                Ok(Some(line)) => command(&speaker, &line, &config_path, &mut known).await,
                Ok(None) | Err(_) => break,
            },
            _ = term.recv() => break,
        }
    }
    speaker.shutdown().await;
    if let Some(out) = OUTPUT.get() {
        let _ = out.send(Output::End);
    }
    let _ = output.join();
    Ok(())
}

fn main() -> ExitCode {
    let mut args = std::env::args_os().skip(1);
    let Some(config_path) = args.next().map(PathBuf::from) else {
        eprintln!("usage: calico-bgp-speaker CONFIG.json [--restarting]");
        return ExitCode::from(2);
    };
    let restarting = match args.next() {
        None => false,
        Some(a) if a == "--restarting" => true,
        Some(a) => {
            eprintln!("unknown argument {}", a.to_string_lossy());
            return ExitCode::from(2);
        }
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("tokio runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(config_path, restarting)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("calico-bgp-speaker: {e}");
            ExitCode::FAILURE
        }
    }
}
