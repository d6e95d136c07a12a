//! The BGP speaker beside BIRD 2 (root): an injector of pre-encoded UPDATEs, written with our
//! codec, feeds our speaker (`Speaker`, run in-process in a namespace of its own) and BIRD in
//! the same run, in test network namespaces:
//!
//! ```text
//!   inj ns: 198.18.1.2/30 ──veth── 198.18.1.1/30 ours ns (our speaker, port 179)
//!           198.18.2.2/30 ──veth── 198.18.2.1/30 bird ns (bird -f, port 179)
//!           lo: 198.19.0.1, .2, ... one /32 per peer or route-reflector client
//! ```
//!
//! - Ingest: 1 peer × N and P peers × N IPv4 /26s over iBGP: time from the first UPDATE written
//!   to the receiver holding every path (BIRD: `birdc show route count`; ours: every path
//!   accepted, per `Speaker::status()`, and a best path for every prefix read from its route
//!   stream), and resident memory per path (RSS after minus before). Neither side writes
//!   kernel routes.
//! - Best-path stream: the changes our route stream gave during the ingest runs.
//! - Route reflection: C iBGP clients of one reflector (ours, then BIRD), all Established;
//!   every client announces one route of its own (next hop its address); time until every
//!   client holds all the others' routes (the reflector does not send a client its own), as
//!   the clients count them from the UPDATEs they read. Then one client announces one new
//!   prefix; time until every other client has it.
//!
//! Ours is `calico_bgp::speaker::Speaker`, the API calico-node runs: its figures come from
//! `Speaker::status()` (established sessions, accepted paths) and its best-path stream.
//!
//! Our RSS is the whole bench process's (the injector runs in it too, its UPDATEs encoded
//! before the baseline is taken); BIRD's is its own process's.

use std::collections::HashSet;
use std::fs::File;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, anyhow, bail};
use calico_bgp::session::State;
use calico_bgp::speaker::{PeerSettings, RouteChange, Speaker, SpeakerConfig};
use calico_bgp::wire::{
    AsPath, Capability, Context, Family, Message, Nlri, Open, Origin, PathAttributes, Update,
    decode, frame,
};
use calico_testutil::netns::{TestNetns, require_binary, require_root, veth_pair};
use ipnet::{IpNet, Ipv4Net};
use nix::sched::{CloneFlags, setns};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpSocket;
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::sync::oneshot;

use crate::report::{Goal, Table, ratio, thousands};

#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Part {
    Ingest,
    Rr,
}

#[derive(clap::Args, Clone, Debug)]
pub struct BgpArgs {
    /// IPv4 prefixes each injecting peer sends in the ingest part.
    #[arg(long, default_value_t = 100_000)]
    pub prefixes: u32,
    /// Peers of the multi-peer ingest case (each sends the same prefixes).
    #[arg(long, default_value_t = 10)]
    pub peers: usize,
    /// Route-reflector clients.
    #[arg(long, default_value_t = 2_500)]
    pub clients: usize,
    /// Run only these parts (comma-separated).
    #[arg(long, value_enum, value_delimiter = ',')]
    pub only: Vec<Part>,
    /// Ingest runs per receiver and case, ours and BIRD alternating; the tables give the
    /// median run (a single run of tens of milliseconds swings with the machine's other load).
    #[arg(long, default_value_t = 5)]
    pub rounds: usize,
}

const AS: u32 = 64512;
const OURS: Ipv4Addr = Ipv4Addr::new(198, 18, 1, 1);
const INJ_OURS: Ipv4Addr = Ipv4Addr::new(198, 18, 1, 2);
const BIRD: Ipv4Addr = Ipv4Addr::new(198, 18, 2, 1);
const INJ_BIRD: Ipv4Addr = Ipv4Addr::new(198, 18, 2, 2);
/// Peer and client addresses: 198.19.0.1 onwards, inside 198.19.0.0/18.
const CLIENT_BASE: u32 = u32::from_be_bytes([198, 19, 0, 1]);
const CLIENT_NET: &str = "198.19.0.0/18";
const MAX_CLIENTS: usize = 16_000;
/// Prefixes per UPDATE: /26s take 5 octets each, so 700 fit a 4,096-octet message.
const PER_UPDATE: u32 = 700;
/// The issue's goals.
const RATE_FACTOR: f64 = 2.0;
const RR_GOAL: Duration = Duration::from_secs(10);
const INGEST_TIMEOUT: Duration = Duration::from_secs(120);
const RR_TIMEOUT: Duration = Duration::from_secs(60);

static CANCELLED: AtomicBool = AtomicBool::new(false);

fn check_cancelled() -> Result<()> {
    if CANCELLED.load(Ordering::Relaxed) {
        bail!("interrupted");
    }
    Ok(())
}

/// Runs the section on a blocking thread; an interrupt makes it stop and clean up.
pub async fn run_async(args: &BgpArgs) -> Result<(String, Vec<Goal>)> {
    let interrupt_watch = tokio::spawn(async {
        crate::interrupt::wait_for_interrupt().await;
        CANCELLED.store(true, Ordering::Relaxed);
        eprintln!("calico-bench bgp: interrupted; stopping BIRD and removing the namespaces");
    });
    let args = args.clone();
    let outcome = tokio::task::spawn_blocking(move || run(&args))
        .await
        .map_err(|e| anyhow!("the bgp benchmark thread failed: {e}"));
    interrupt_watch.abort();
    outcome?
}

fn wants(args: &BgpArgs, part: Part) -> bool {
    args.only.is_empty() || args.only.contains(&part)
}

pub fn run(args: &BgpArgs) -> Result<(String, Vec<Goal>)> {
    require_root().map_err(|e| anyhow!(e))?;
    let bird = require_binary("bird", "bird2").map_err(|e| anyhow!(e))?;
    let birdc = require_binary("birdc", "bird2").map_err(|e| anyhow!(e))?;
    if args.clients > MAX_CLIENTS || args.peers > MAX_CLIENTS || args.clients < 2 {
        bail!("--clients must be 2 to {MAX_CLIENTS}, --peers at most {MAX_CLIENTS}");
    }
    let addresses = args.clients.max(args.peers);
    let lab = Lab::new(addresses)?;
    let tools = BirdTools { bird, birdc };
    let mut text = String::new();
    let mut goals = Vec::new();
    if wants(args, Part::Ingest) {
        let (tables, section_goals) = ingest(&lab, &tools, args)?;
        for t in tables {
            text.push_str(&t.render());
        }
        goals.extend(section_goals);
    }
    if wants(args, Part::Rr) {
        let (table, section_goals) = reflection(&lab, &tools, args.clients)?;
        text.push_str(&table.render());
        goals.extend(section_goals);
    }
    Ok((text, goals))
}

// ---------------------------------------------------------------------------------------------
// Namespaces

struct Lab {
    inj: TestNetns,
    ours: TestNetns,
    bird: TestNetns,
}

fn client(i: usize) -> Ipv4Addr {
    Ipv4Addr::from(CLIENT_BASE + i as u32)
}

impl Lab {
    fn new(addresses: usize) -> Result<Lab> {
        let e = |e: String| anyhow!(e);
        let inj = TestNetns::new("bgpb-inj").map_err(e)?;
        let ours = TestNetns::new("bgpb-ours").map_err(e)?;
        let bird = TestNetns::new("bgpb-bird").map_err(e)?;
        veth_pair(
            &inj,
            "to-ours",
            &format!("{INJ_OURS}/30"),
            &ours,
            "from-inj",
            &format!("{OURS}/30"),
        )
        .map_err(e)?;
        veth_pair(
            &inj,
            "to-bird",
            &format!("{INJ_BIRD}/30"),
            &bird,
            "from-inj",
            &format!("{BIRD}/30"),
        )
        .map_err(e)?;
        ours.ip(&["route", "add", CLIENT_NET, "via", &INJ_OURS.to_string()])
            .map_err(e)?;
        bird.ip(&["route", "add", CLIENT_NET, "via", &INJ_BIRD.to_string()])
            .map_err(e)?;
        // The peers' addresses on the injector's loopback, added in one batch.
        let batch = tempfile::NamedTempFile::new().context("batch file")?;
        let lines: String = (0..addresses)
            .map(|i| format!("addr add {}/32 dev lo\n", client(i)))
            .collect();
        std::fs::write(batch.path(), lines).context("batch file")?;
        let path = batch.path().to_string_lossy().into_owned();
        inj.ip(&["-batch", &path]).map_err(e)?;
        Ok(Lab { inj, ours, bird })
    }
}

/// Runs `f` on a new thread that has entered `ns`'s network namespace; every socket it opens
/// (and every thread it starts) lives there.
fn in_netns<T: Send + 'static>(
    ns: &TestNetns,
    name: &str,
    f: impl FnOnce() -> Result<T> + Send + 'static,
) -> Result<JoinHandle<Result<T>>> {
    let path = ns.path();
    thread::Builder::new()
        .name(name.to_string())
        .spawn(move || {
            let file = File::open(&path).with_context(|| format!("open {}", path.display()))?;
            setns(&file, CloneFlags::CLONE_NEWNET).context("setns")?;
            f()
        })
        .context("thread")
}

fn join<T>(handle: JoinHandle<Result<T>>) -> Result<T> {
    handle
        .join()
        .map_err(|_| anyhow!("a benchmark thread panicked"))?
}

// ---------------------------------------------------------------------------------------------
// The wire, as the injector speaks it

/// Both sides advertise 4-octet AS; the injector does not ask for extended messages.
fn ctx() -> Context {
    Context {
        four_octet_as: true,
        extended_message: false,
        add_path: Vec::new(),
    }
}

fn prefix(i: u32) -> IpNet {
    // /26 blocks of 10.0.0.0/8, as Calico's IPAM blocks are: route data only, never addresses.
    IpNet::V4(Ipv4Net::new(Ipv4Addr::from(0x0a00_0000 + (i << 6)), 26).expect("valid /26"))
}

fn announcement(next_hop: Ipv4Addr, prefixes: impl Iterator<Item = IpNet>) -> Update {
    Update {
        attributes: PathAttributes {
            origin: Some(Origin::Igp),
            as_path: Some(AsPath::default()),
            next_hop: Some(next_hop),
            local_pref: Some(100),
            ..PathAttributes::default()
        },
        nlri: prefixes.map(Nlri::new).collect(),
        ..Update::default()
    }
}

/// `count` prefixes as back-to-back UPDATE messages.
fn encoded_routes(count: u32, next_hop: Ipv4Addr) -> Result<Vec<u8>> {
    let mut out = Vec::new();
    for start in (0..count).step_by(PER_UPDATE as usize) {
        let end = (start + PER_UPDATE).min(count);
        let m = Message::Update(announcement(next_hop, (start..end).map(prefix)));
        calico_bgp::wire::encode(&m, &ctx(), &mut out).context("encode UPDATE")?;
    }
    Ok(out)
}

struct Conn {
    reader: MessageReader,
    w: OwnedWriteHalf,
}

/// Reads one session's messages, decoding each with our codec; the buffer is compacted once
/// per read rather than once per message, since a client gets thousands of small UPDATEs.
struct MessageReader {
    r: OwnedReadHalf,
    buf: Vec<u8>,
    start: usize,
}

impl MessageReader {
    async fn next(&mut self) -> Result<Option<Message>> {
        loop {
            match frame(&self.buf[self.start..], &ctx()) {
                Ok(Some(len)) => {
                    let bytes = &self.buf[self.start..self.start + len];
                    let decoded = decode(bytes, &ctx()).map_err(|e| anyhow!("bad message: {e}"))?;
                    self.start += len;
                    return Ok(Some(decoded.message));
                }
                Ok(None) => {}
                Err(n) => bail!("bad framing: {n:?}"),
            }
            self.buf.drain(..self.start);
            self.start = 0;
            // Into the spare capacity: no zeroed chunk per read.
            self.buf.reserve(65536);
            match self.r.read_buf(&mut self.buf).await {
                Ok(0) | Err(_) => return Ok(None),
                Ok(_) => {}
            }
        }
    }
}

/// Connects from `source` and completes the OPEN exchange (hold time 0: no keepalives).
async fn open_session(source: Ipv4Addr, target: SocketAddr) -> Result<Conn> {
    let mut last = None;
    for _ in 0..20 {
        let socket = TcpSocket::new_v4()?;
        socket.bind(SocketAddr::new(IpAddr::V4(source), 0))?;
        match tokio::time::timeout(Duration::from_secs(5), socket.connect(target)).await {
            Ok(Ok(stream)) => {
                let (r, w) = stream.into_split();
                let mut c = Conn {
                    reader: MessageReader {
                        r,
                        buf: Vec::new(),
                        start: 0,
                    },
                    w,
                };
                match tokio::time::timeout(Duration::from_secs(30), handshake(&mut c, source)).await
                {
                    Ok(Ok(())) => return Ok(c),
                    Ok(Err(e)) => last = Some(e),
                    Err(_) => last = Some(anyhow!("no OPEN exchange within 30 s")),
                }
            }
            Ok(Err(e)) => last = Some(e.into()),
            Err(_) => last = Some(anyhow!("connect timed out")),
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    Err(last.unwrap_or_else(|| anyhow!("no attempt")))
        .with_context(|| format!("session from {source} to {target}"))
}

async fn handshake(c: &mut Conn, id: Ipv4Addr) -> Result<()> {
    let open = Open::new(
        AS,
        0,
        id,
        vec![
            Capability::Multiprotocol(Family::IPV4_UNICAST),
            Capability::FourOctetAs(AS),
        ],
    );
    c.w.write_all(&Message::Open(open).to_bytes(&ctx())?)
        .await?;
    let mut got_open = false;
    loop {
        match c.reader.next().await? {
            Some(Message::Open(_)) => {
                got_open = true;
                c.w.write_all(&Message::Keepalive.to_bytes(&ctx())?).await?;
            }
            Some(Message::Keepalive) if got_open => return Ok(()),
            Some(Message::Notification(n)) => bail!("NOTIFICATION {n:?}"),
            Some(_) => {}
            None => bail!("closed during the OPEN exchange"),
        }
    }
}

/// Opens sessions from `sources` to `target`, at most 200 connects at a time.
async fn open_all(sources: Vec<Ipv4Addr>, target: SocketAddr) -> Result<Vec<Conn>> {
    let gate = Arc::new(tokio::sync::Semaphore::new(200));
    let mut tasks = Vec::new();
    for s in sources {
        let gate = Arc::clone(&gate);
        tasks.push(tokio::spawn(async move {
            let _permit = gate.acquire_owned().await?;
            open_session(s, target).await
        }));
    }
    let mut conns = Vec::new();
    for t in tasks {
        conns.push(t.await??);
    }
    Ok(conns)
}

/// Reads and drops whatever the receiver sends (keepalives, End-of-RIB) so it never blocks.
fn drain(mut r: OwnedReadHalf) {
    tokio::spawn(async move {
        let mut chunk = vec![0u8; 16384];
        while let Ok(n) = r.read(&mut chunk).await {
            if n == 0 {
                break;
            }
        }
    });
}

fn runtime(workers: usize) -> Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(workers)
        .enable_all()
        .build()
        .context("runtime")
}

// ---------------------------------------------------------------------------------------------
// Our speaker: `calico_bgp::speaker::Speaker`, as calico-node runs it

#[derive(Default)]
struct SpeakerStats {
    /// Sessions Established, from `Speaker::status()`.
    established: AtomicUsize,
    /// Paths accepted into the Loc-RIB, all peers together, from `Speaker::status()`.
    paths: AtomicUsize,
    /// Best-path changes read from the route stream (what calico-node's dataplane gets).
    best_changes: AtomicUsize,
    /// Prefixes whose latest change on the stream is a best path.
    best_prefixes: AtomicUsize,
    /// Stop polling the status: the figure being taken no longer needs it.
    quiet: AtomicBool,
    failed: AtomicBool,
}

/// How often the speaker's status is read. Each read is a request the RIB task answers with
/// every peer's status, so it costs the RIB task per peer: with a few peers every millisecond
/// (the probe then adds no more delay than BIRD's, which is polled as often), with thousands
/// every 5 ms.
fn status_poll(peers: usize) -> Duration {
    if peers <= 100 {
        Duration::from_millis(1)
    } else {
        Duration::from_millis(5)
    }
}

struct Ours {
    stats: Arc<SpeakerStats>,
    stop: Option<oneshot::Sender<()>>,
    thread: Option<JoinHandle<Result<()>>>,
}

impl Ours {
    fn start(ns: &TestNetns, peers: Vec<Ipv4Addr>, reflector: bool) -> Result<Ours> {
        let stats = Arc::new(SpeakerStats::default());
        let (stop, stopped) = oneshot::channel();
        let s = Arc::clone(&stats);
        let thread = in_netns(ns, "bgp-ours", move || {
            let result =
                runtime(2)?.block_on(run_speaker(peers, reflector, Arc::clone(&s), stopped));
            if result.is_err() {
                s.failed.store(true, Ordering::Relaxed);
            }
            result
        })?;
        Ok(Ours {
            stats,
            stop: Some(stop),
            thread: Some(thread),
        })
    }

    fn check(&mut self) -> Result<()> {
        if self.stats.failed.load(Ordering::Relaxed) {
            return self.finish();
        }
        Ok(())
    }

    fn finish(&mut self) -> Result<()> {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        match self.thread.take() {
            Some(t) => join(t),
            None => Ok(()),
        }
    }
}

impl Drop for Ours {
    fn drop(&mut self) {
        let _ = self.finish();
    }
}

/// The route stream's reader: which prefixes have a best path. The bench's prefixes are /26s
/// of 10.0.0.0/8, held as one bit each (as a dataplane indexing its blocks would), so that the
/// reader's own memory hardly shows in the speaker's figure; any other prefix goes in a set.
#[derive(Default)]
struct BestPrefixes {
    blocks: Vec<u64>,
    others: HashSet<IpNet>,
    len: usize,
}

impl BestPrefixes {
    fn set(&mut self, prefix: IpNet, has_best: bool) {
        let was = match block_index(&prefix) {
            Some(i) => {
                if self.blocks.len() <= i / 64 {
                    self.blocks.resize(i / 64 + 1, 0);
                }
                let bit = 1u64 << (i % 64);
                let was = self.blocks[i / 64] & bit != 0;
                if has_best {
                    self.blocks[i / 64] |= bit;
                } else {
                    self.blocks[i / 64] &= !bit;
                }
                was
            }
            None if has_best => !self.others.insert(prefix),
            None => self.others.remove(&prefix),
        };
        match (was, has_best) {
            (false, true) => self.len += 1,
            (true, false) => self.len -= 1,
            _ => {}
        }
    }
}

/// `i` for `prefix(i)`, the bench's /26s of 10.0.0.0/8.
fn block_index(prefix: &IpNet) -> Option<usize> {
    match prefix {
        IpNet::V4(n) if n.prefix_len() == 26 && n.addr().octets()[0] == 10 => {
            Some(((u32::from(n.addr()) - 0x0a00_0000) >> 6) as usize)
        }
        _ => None,
    }
}

/// Runs the speaker with one passive iBGP peer per address (route-reflection clients when
/// `reflector`), reads its route stream and polls its status into `stats` until `stop`.
async fn run_speaker(
    peers: Vec<Ipv4Addr>,
    reflector: bool,
    stats: Arc<SpeakerStats>,
    mut stop: oneshot::Receiver<()>,
) -> Result<()> {
    let cfg = SpeakerConfig {
        listen: Some(SocketAddr::new(IpAddr::V4(OURS), 179)),
        cluster_id: reflector.then_some(OURS),
        ..SpeakerConfig::new(AS, OURS)
    };
    let (speaker, mut routes) = Speaker::start(cfg)
        .await
        .context("start our speaker on 179")?;
    let reader_stats = Arc::clone(&stats);
    let reader = tokio::spawn(async move {
        let mut best = BestPrefixes::default();
        while let Some(batch) = routes.recv_batch().await {
            reader_stats
                .best_changes
                .fetch_add(batch.len(), Ordering::Relaxed);
            for change in batch {
                match change {
                    RouteChange::Best { prefix, .. } => best.set(prefix, true),
                    RouteChange::Withdrawn { prefix } => best.set(prefix, false),
                }
            }
            reader_stats
                .best_prefixes
                .store(best.len, Ordering::Relaxed);
        }
    });
    let result = async {
        let poll = status_poll(peers.len());
        for addr in &peers {
            let settings = PeerSettings {
                passive: true,
                rr_client: reflector,
                hold_time: 240,
                ..PeerSettings::new(IpAddr::V4(*addr), AS)
            };
            speaker
                .set_peer(settings)
                .await
                .with_context(|| format!("add peer {addr}"))?;
        }
        loop {
            tokio::select! {
                _ = &mut stop => return Ok(()),
                _ = tokio::time::sleep(poll) => {}
            }
            if stats.quiet.load(Ordering::Relaxed) {
                continue;
            }
            let status = speaker.status().await.context("speaker status")?;
            let up = status
                .iter()
                .filter(|p| p.state == State::Established)
                .count();
            stats.established.store(up, Ordering::Relaxed);
            stats
                .paths
                .store(status.iter().map(|p| p.accepted).sum(), Ordering::Relaxed);
        }
    }
    .await;
    speaker.shutdown().await;
    reader.abort();
    result
}

// ---------------------------------------------------------------------------------------------
// BIRD

struct BirdTools {
    bird: PathBuf,
    birdc: PathBuf,
}

struct Bird {
    child: Child,
    socket: PathBuf,
    birdc: PathBuf,
    _dir: tempfile::TempDir,
}

impl Bird {
    fn start(
        tools: &BirdTools,
        ns: &TestNetns,
        peers: &[Ipv4Addr],
        reflector: bool,
    ) -> Result<Bird> {
        let dir = tempfile::tempdir().context("BIRD directory")?;
        let conf = dir.path().join("bird.conf");
        let socket = dir.path().join("bird.ctl");
        let rr = if reflector {
            format!("  rr client;\n  rr cluster id {BIRD};\n")
        } else {
            String::new()
        };
        // Reflected routes' next hops are the clients' own addresses: BIRD resolves an iBGP
        // next hop through its table, which must then hold the clients' net (it is also
        // sent to the clients, outside the 10.0.0.0/8 they count).
        let client_net = if reflector {
            format!("protocol static {{ ipv4; route {CLIENT_NET} via {INJ_BIRD}; }}\n")
        } else {
            String::new()
        };
        let mut text = format!(
            "router id {BIRD};\n\
             protocol device {{ scan time 60; }}\n\
             protocol direct {{ ipv4; interface \"from-inj\"; }}\n{client_net}\
             template bgp inj {{\n  local {BIRD} as {AS};\n  passive on;\n{rr}  \
             ipv4 {{ import all; export all; }};\n}}\n"
        );
        for (i, p) in peers.iter().enumerate() {
            text.push_str(&format!(
                "protocol bgp p{i} from inj {{ neighbor {p} as {AS}; }}\n"
            ));
        }
        std::fs::write(&conf, text).context("bird.conf")?;
        let child = Command::new("ip")
            .args(["netns", "exec", ns.name()])
            .arg(&tools.bird)
            .arg("-f")
            .arg("-c")
            .arg(&conf)
            .arg("-s")
            .arg(&socket)
            .arg("-P")
            .arg(dir.path().join("bird.pid"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .context("start bird")?;
        let mut bird = Bird {
            child,
            socket,
            birdc: tools.birdc.clone(),
            _dir: dir,
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        while bird.birdc(&["show", "status"]).is_err() {
            if let Ok(Some(status)) = bird.child.try_wait() {
                bail!("bird exited at start: {status}");
            }
            if Instant::now() > deadline {
                bail!("bird did not answer on its control socket within 30 s");
            }
            check_cancelled()?;
            thread::sleep(Duration::from_millis(50));
        }
        Ok(bird)
    }

    fn birdc(&self, args: &[&str]) -> Result<String> {
        let out = Command::new(&self.birdc)
            .arg("-s")
            .arg(&self.socket)
            .args(args)
            .stdin(Stdio::null())
            .output()
            .context("birdc")?;
        if !out.status.success() {
            bail!("birdc {}: {}", args.join(" "), out.status);
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// Routes in the IPv4 table: the first figure of `N of M routes for K networks`.
    fn route_count(&self) -> Result<usize> {
        let out = self.birdc(&["show", "route", "count"])?;
        let line = out
            .lines()
            .find(|l| l.contains("routes for"))
            .ok_or_else(|| anyhow!("no count in {out:?}"))?;
        line.split_whitespace()
            .next()
            .and_then(|n| n.parse().ok())
            .ok_or_else(|| anyhow!("no count in {line:?}"))
    }

    fn established(&self) -> Result<usize> {
        let out = self.birdc(&["show", "protocols"])?;
        Ok(out.lines().filter(|l| l.contains("Established")).count())
    }

    fn rss(&self) -> Option<u64> {
        rss_of(&format!("/proc/{}/statm", self.child.id()))
    }
}

impl Drop for Bird {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Resident bytes from a statm file.
fn rss_of(statm: &str) -> Option<u64> {
    let text = std::fs::read_to_string(statm).ok()?;
    let pages: u64 = text.split_whitespace().nth(1)?.parse().ok()?;
    Some(pages * 4096)
}

// ---------------------------------------------------------------------------------------------
// Ingest

struct IngestRun {
    routes: usize,
    seconds: Option<f64>,
    rss_bytes: Option<i64>,
    /// Ours: best-path changes read from the route stream.
    best_changes: Option<usize>,
}

/// Starts the injector: sessions from `sources` to `target`; once they are up, `ready` gets
/// a message; on `go` every session writes `stream` (the start time goes to `started`); it
/// holds the sessions until `stop`.
fn injector(
    lab: &Lab,
    sources: Vec<Ipv4Addr>,
    target: Ipv4Addr,
    stream: Arc<Vec<u8>>,
) -> Result<Injector> {
    let (ready_tx, ready) = std::sync::mpsc::channel();
    let (go, go_rx) = oneshot::channel::<()>();
    let (stop, stop_rx) = oneshot::channel::<()>();
    let thread = in_netns(&lab.inj, "bgp-injector", move || {
        runtime(1)?.block_on(async move {
            let conns = match open_all(sources, SocketAddr::new(IpAddr::V4(target), 179)).await {
                Ok(c) => c,
                Err(e) => {
                    let _ = ready_tx.send(Err(anyhow!("{e:#}")));
                    return Ok(());
                }
            };
            let _ = ready_tx.send(Ok(None));
            if go_rx.await.is_err() {
                return Ok(());
            }
            let _ = ready_tx.send(Ok(Some(Instant::now())));
            let mut writers = Vec::new();
            for c in conns {
                drain(c.reader.r);
                let stream = Arc::clone(&stream);
                let mut w = c.w;
                writers.push(tokio::spawn(async move {
                    let _ = w.write_all(&stream).await;
                    w
                }));
            }
            let mut held = Vec::new();
            for t in writers {
                held.push(t.await?);
            }
            let _ = stop_rx.await;
            drop(held);
            Ok(())
        })
    })?;
    Ok(Injector {
        ready,
        go: Some(go),
        stop: Some(stop),
        thread: Some(thread),
    })
}

struct Injector {
    ready: std::sync::mpsc::Receiver<Result<Option<Instant>>>,
    go: Option<oneshot::Sender<()>>,
    stop: Option<oneshot::Sender<()>>,
    thread: Option<JoinHandle<Result<()>>>,
}

impl Injector {
    fn wait_ready(&self, timeout: Duration) -> Result<()> {
        match self.ready.recv_timeout(timeout) {
            Ok(Ok(None)) => Ok(()),
            Ok(Ok(Some(_))) => bail!("injector out of order"),
            Ok(Err(e)) => Err(e),
            Err(_) => bail!("the injector's sessions did not come up within {timeout:?}"),
        }
    }

    fn go(&mut self) -> Result<Instant> {
        if let Some(go) = self.go.take() {
            let _ = go.send(());
        }
        match self.ready.recv_timeout(Duration::from_secs(10)) {
            Ok(Ok(Some(t0))) => Ok(t0),
            _ => bail!("the injector did not start"),
        }
    }
}

impl Drop for Injector {
    fn drop(&mut self) {
        drop(self.go.take());
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = join(t);
        }
    }
}

/// `routes` paths over `prefixes` distinct prefixes: done once every path is accepted and the
/// route stream has given a best path for every prefix.
fn ingest_ours(
    lab: &Lab,
    peers: usize,
    stream: Arc<Vec<u8>>,
    routes: usize,
    prefixes: usize,
) -> Result<IngestRun> {
    let sources: Vec<Ipv4Addr> = (0..peers).map(client).collect();
    let mut ours = Ours::start(&lab.ours, sources.clone(), false)?;
    let mut inj = injector(lab, sources, OURS, stream)?;
    inj.wait_ready(Duration::from_secs(60))?;
    wait_until(Duration::from_secs(30), || {
        ours.check()?;
        Ok(ours.stats.established.load(Ordering::Relaxed) == peers)
    })
    .context("our sessions Established")?;
    thread::sleep(Duration::from_millis(200));
    let before = rss_of("/proc/self/statm");
    let t0 = inj.go()?;
    let done = wait_until(INGEST_TIMEOUT, || {
        ours.check()?;
        let s = &ours.stats;
        Ok(s.paths.load(Ordering::Relaxed) >= routes
            && s.best_prefixes.load(Ordering::Relaxed) >= prefixes)
    });
    let seconds = done.ok().map(|t| (t - t0).as_secs_f64());
    let after = rss_of("/proc/self/statm");
    let s = &ours.stats;
    let run = IngestRun {
        routes: s.paths.load(Ordering::Relaxed),
        seconds,
        rss_bytes: before.zip(after).map(|(b, a)| a as i64 - b as i64),
        best_changes: Some(s.best_changes.load(Ordering::Relaxed)),
    };
    drop(inj);
    ours.finish()?;
    Ok(run)
}

fn ingest_bird(
    lab: &Lab,
    tools: &BirdTools,
    peers: usize,
    stream: Arc<Vec<u8>>,
    routes: usize,
) -> Result<IngestRun> {
    let sources: Vec<Ipv4Addr> = (0..peers).map(client).collect();
    let bird = Bird::start(tools, &lab.bird, &sources, false)?;
    let inj = injector(lab, sources, BIRD, stream)?;
    let mut inj = inj;
    inj.wait_ready(Duration::from_secs(60))?;
    wait_until(Duration::from_secs(30), || Ok(bird.established()? == peers))
        .context("BIRD's sessions Established")?;
    thread::sleep(Duration::from_millis(200));
    // The table already holds the link's direct route.
    let baseline = bird.route_count()?;
    let before = bird.rss();
    let t0 = inj.go()?;
    let done = wait_until(INGEST_TIMEOUT, || {
        Ok(bird.route_count()? >= baseline + routes)
    });
    let seconds = done.ok().map(|t| (t - t0).as_secs_f64());
    let after = bird.rss();
    let run = IngestRun {
        routes: bird.route_count().unwrap_or(0).saturating_sub(baseline),
        seconds,
        rss_bytes: before.zip(after).map(|(b, a)| a as i64 - b as i64),
        best_changes: None,
    };
    drop(inj);
    drop(bird);
    Ok(run)
}

/// The run of median time (a run that timed out counts as slowest), so that its other figures
/// (paths held, memory, changes read) come from the same run.
fn median_run(mut runs: Vec<IngestRun>) -> IngestRun {
    runs.sort_by(|a, b| {
        let key = |r: &IngestRun| r.seconds.unwrap_or(f64::INFINITY);
        key(a).total_cmp(&key(b))
    });
    let middle = runs.len() / 2;
    runs.swap_remove(middle)
}

/// "fastest–slowest" seconds of the runs, for the table.
fn spread_of(runs: &[IngestRun]) -> String {
    let times: Vec<f64> = runs.iter().filter_map(|r| r.seconds).collect();
    let min = times.iter().copied().fold(f64::INFINITY, f64::min);
    let max = times.iter().copied().fold(0.0, f64::max);
    match (times.len(), runs.len()) {
        (0, _) => "timeout".into(),
        (t, n) if t < n => format!("{min:.3}–{max:.3} ({} timed out)", n - t),
        _ => format!("{min:.3}–{max:.3}"),
    }
}

/// Polls `probe` every millisecond (cheap probes) until it is true; when it became true.
fn wait_until(timeout: Duration, mut probe: impl FnMut() -> Result<bool>) -> Result<Instant> {
    let deadline = Instant::now() + timeout;
    loop {
        if probe()? {
            return Ok(Instant::now());
        }
        check_cancelled()?;
        if Instant::now() > deadline {
            bail!("not reached within {timeout:?}");
        }
        thread::sleep(Duration::from_millis(1));
    }
}

fn ingest(lab: &Lab, tools: &BirdTools, args: &BgpArgs) -> Result<(Vec<Table>, Vec<Goal>)> {
    let to_ours = Arc::new(encoded_routes(args.prefixes, INJ_OURS)?);
    let to_bird = Arc::new(encoded_routes(args.prefixes, INJ_BIRD)?);
    let mut table = Table::new(
        "BGP ingest: iBGP, IPv4 /26s, pre-encoded UPDATEs, no kernel routes (median of the runs; memory from the first)",
        &[
            "case",
            "receiver",
            "paths held",
            "time s (median)",
            "min–max s",
            "paths/s",
            "RSS delta MiB",
            "B/path",
            "rate vs BIRD",
        ],
    );
    let mut decision = Table::new(
        "BGP best-path stream (ours, read during the ingest runs)",
        &["case", "paths accepted", "best-path changes read"],
    );
    let mut goals = Vec::new();
    let mut cases = vec![1];
    if args.peers > 1 {
        cases.push(args.peers);
    }
    for peers in cases {
        check_cancelled()?;
        let routes = peers * args.prefixes as usize;
        let case = format!("{peers} × {}", thousands(f64::from(args.prefixes)));
        let (mut all_ours, mut all_bird) = (Vec::new(), Vec::new());
        for _ in 0..args.rounds.max(1) {
            check_cancelled()?;
            all_ours.push(ingest_ours(
                lab,
                peers,
                Arc::clone(&to_ours),
                routes,
                args.prefixes as usize,
            )?);
            all_bird.push(ingest_bird(
                lab,
                tools,
                peers,
                Arc::clone(&to_bird),
                routes,
            )?);
        }
        let spread = |runs: &[IngestRun]| spread_of(runs);
        let (ours_spread, bird_spread) = (spread(&all_ours), spread(&all_bird));
        // Memory from each receiver's first run: ours runs in this process, where a later
        // run may reuse pages an earlier one freed.
        let first_rss = |runs: &[IngestRun]| runs.first().and_then(|r| r.rss_bytes);
        let (ours_rss, bird_rss) = (first_rss(&all_ours), first_rss(&all_bird));
        let ours = IngestRun {
            rss_bytes: ours_rss,
            ..median_run(all_ours)
        };
        let bird = IngestRun {
            rss_bytes: bird_rss,
            ..median_run(all_bird)
        };
        let rate = |r: &IngestRun| r.seconds.map(|s| r.routes as f64 / s);
        let per_path = |r: &IngestRun| {
            r.rss_bytes
                .filter(|_| r.routes > 0)
                .map(|b| b as f64 / r.routes as f64)
        };
        let (our_rate, bird_rate) = (rate(&ours), rate(&bird));
        let vs = our_rate.zip(bird_rate).map(|(o, b)| o / b);
        for (name, r, vs, spread) in [
            ("ours", &ours, vs, &ours_spread),
            ("BIRD 2", &bird, Some(1.0), &bird_spread),
        ] {
            table.push(vec![
                case.clone(),
                name.into(),
                thousands(r.routes as f64),
                r.seconds.map_or("timeout".into(), |s| format!("{s:.3}")),
                spread.clone(),
                rate(r).map_or("n/a".into(), thousands),
                r.rss_bytes
                    .map_or("n/a".into(), |b| format!("{:.1}", b as f64 / 1048576.0)),
                per_path(r).map_or("n/a".into(), |b| format!("{b:.0}")),
                vs.map_or("n/a".into(), ratio),
            ]);
        }
        decision.push(vec![
            case.clone(),
            thousands(ours.routes as f64),
            ours.best_changes
                .map_or("n/a".into(), |n| thousands(n as f64)),
        ]);
        goals.push(Goal {
            name: format!("bgp ingest {case}: at least {RATE_FACTOR}× BIRD's rate"),
            met: vs.map(|v| v >= RATE_FACTOR),
            informational: false,
            detail: match (our_rate, bird_rate) {
                (Some(o), Some(b)) => format!(
                    "ours {} paths/s, BIRD {} paths/s, {}",
                    thousands(o),
                    thousands(b),
                    ratio(o / b)
                ),
                _ => "a receiver did not hold every path in time".into(),
            },
        });
        let (op, bp) = (per_path(&ours), per_path(&bird));
        goals.push(Goal {
            name: format!("bgp memory per path {case}: no more than BIRD's"),
            met: op.zip(bp).map(|(o, b)| o <= b),
            informational: false,
            detail: format!(
                "ours {} B, BIRD {} B (RSS after minus before, per path)",
                op.map_or("n/a".into(), |b| format!("{b:.0}")),
                bp.map_or("n/a".into(), |b| format!("{b:.0}"))
            ),
        });
    }
    Ok((vec![table, decision], goals))
}

// ---------------------------------------------------------------------------------------------
// Route reflection

/// The prefix client 0 announces once every client holds every route (the earlier figure:
/// one new prefix reflected to all); outside the clients' own prefixes.
const NEW_PREFIX: &str = "10.255.255.0/26";
/// Every client's own route is inside this; only these are counted.
const RR_ROUTES: &str = "10.0.0.0/8";

/// Client `i`'s route: a /26 of 10.0.0.0/8 (the same blocks as the ingest prefixes).
fn rr_prefix(i: usize) -> IpNet {
    prefix(i as u32)
}

/// Client `i`'s announcement of its own route, next hop its own address.
fn rr_announcement(i: usize) -> Result<Vec<u8>> {
    Message::Update(announcement(client(i), std::iter::once(rr_prefix(i))))
        .to_bytes(&ctx())
        .context("encode a client's UPDATE")
}

/// What the reflector case's injector is told to do.
enum RrStep {
    /// Every client announces its own route.
    All,
    /// Client 0 announces `NEW_PREFIX`.
    New,
}

/// The reflector case's injector: `clients` sessions to the reflector, each reading what it
/// is sent and counting the distinct client routes it holds.
struct RrInjector {
    /// The time the sessions started opening, once they are all open; then the start of each
    /// step.
    ready: std::sync::mpsc::Receiver<Result<Instant>>,
    steps: tokio::sync::mpsc::UnboundedSender<RrStep>,
    stop: Option<oneshot::Sender<()>>,
    thread: Option<JoinHandle<Result<()>>>,
    /// Clients that hold every other client's route.
    complete: Arc<AtomicUsize>,
    /// Clients other than 0 that got `NEW_PREFIX`.
    reached: Arc<AtomicUsize>,
}

impl RrInjector {
    fn step(&self, step: RrStep) -> Result<Instant> {
        self.steps
            .send(step)
            .map_err(|_| anyhow!("the injector has stopped"))?;
        match self.ready.recv_timeout(Duration::from_secs(10)) {
            Ok(Ok(t0)) => Ok(t0),
            Ok(Err(e)) => Err(e),
            Err(_) => bail!("the injector did not start the step"),
        }
    }
}

impl Drop for RrInjector {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = join(t);
        }
    }
}

/// Counts what client `i` holds of the other clients' routes (and whether it has
/// `NEW_PREFIX`) until its session ends.
async fn rr_reader(
    i: usize,
    clients: usize,
    mut reader: MessageReader,
    complete: Arc<AtomicUsize>,
    reached: Arc<AtomicUsize>,
) -> Result<()> {
    let routes: IpNet = RR_ROUTES.parse().context("RR_ROUTES")?;
    let new: IpNet = NEW_PREFIX.parse().context("NEW_PREFIX")?;
    let mut held = HashSet::new();
    let (mut is_complete, mut has_new) = (false, false);
    while let Some(m) = reader.next().await? {
        let Message::Update(u) = m else { continue };
        for n in &u.withdrawn {
            held.remove(&n.prefix);
        }
        for n in &u.nlri {
            if n.prefix == new {
                if !has_new && i != 0 {
                    has_new = true;
                    reached.fetch_add(1, Ordering::Relaxed);
                }
            } else if routes.contains(&n.prefix) {
                held.insert(n.prefix);
            }
        }
        // Its own route is not sent back to it: the others' are all it can hold.
        if !is_complete && held.len() >= clients - 1 {
            is_complete = true;
            complete.fetch_add(1, Ordering::Relaxed);
        }
    }
    Ok(())
}

fn rr_injector(lab: &Lab, clients: usize, target: Ipv4Addr) -> Result<RrInjector> {
    let (ready_tx, ready) = std::sync::mpsc::channel();
    let (steps, mut steps_rx) = tokio::sync::mpsc::unbounded_channel();
    let (stop, mut stop_rx) = oneshot::channel::<()>();
    let complete = Arc::new(AtomicUsize::new(0));
    let reached = Arc::new(AtomicUsize::new(0));
    let (c, r) = (Arc::clone(&complete), Arc::clone(&reached));
    let own: Vec<Vec<u8>> = (0..clients).map(rr_announcement).collect::<Result<_>>()?;
    let new: IpNet = NEW_PREFIX.parse().context("NEW_PREFIX")?;
    let new_bytes = Message::Update(announcement(client(0), std::iter::once(new)))
        .to_bytes(&ctx())
        .context("encode the new prefix's UPDATE")?;
    // Two workers: decoding 2,500 × 2,499 UPDATEs is most of the injector's work.
    let thread = in_netns(&lab.inj, "bgp-rr-injector", move || {
        runtime(2)?.block_on(async move {
            let sources: Vec<Ipv4Addr> = (0..clients).map(client).collect();
            let started = Instant::now();
            let opening = open_all(sources, SocketAddr::new(IpAddr::V4(target), 179));
            // Stopping is possible while sessions are still opening (a slow reflector).
            let conns = tokio::select! {
                c = opening => c,
                _ = &mut stop_rx => return Ok(()),
            };
            let conns = match conns {
                Ok(c) => c,
                Err(e) => {
                    let _ = ready_tx.send(Err(anyhow!("{e:#}")));
                    return Ok(());
                }
            };
            let _ = ready_tx.send(Ok(started));
            let mut writers = Vec::new();
            for (i, conn) in conns.into_iter().enumerate() {
                writers.push(conn.w);
                tokio::spawn(rr_reader(
                    i,
                    clients,
                    conn.reader,
                    Arc::clone(&c),
                    Arc::clone(&r),
                ));
            }
            loop {
                let step = tokio::select! {
                    s = steps_rx.recv() => s,
                    _ = &mut stop_rx => None,
                };
                let Some(step) = step else { break };
                let t0 = Instant::now();
                let _ = ready_tx.send(Ok(t0));
                match step {
                    RrStep::All => {
                        for (w, bytes) in writers.iter_mut().zip(&own) {
                            w.write_all(bytes)
                                .await
                                .context("a client's announcement")?;
                        }
                    }
                    RrStep::New => {
                        if let Some(w) = writers.first_mut() {
                            w.write_all(&new_bytes).await.context("the new prefix")?;
                        }
                    }
                }
            }
            drop(writers);
            Ok(())
        })
    })?;
    Ok(RrInjector {
        ready,
        steps,
        stop: Some(stop),
        thread: Some(thread),
        complete,
        reached,
    })
}

#[derive(Default)]
struct RrRun {
    up_seconds: Option<f64>,
    /// From every client announcing to every client holding every route.
    all_seconds: Option<f64>,
    complete: usize,
    /// From client 0 announcing `NEW_PREFIX` to every other client having it.
    new_seconds: Option<f64>,
    reached: usize,
}

/// How long the clients' sessions may take to come up (BIRD took about 64 s for 2,500).
const RR_UP_TIMEOUT: Duration = Duration::from_secs(150);

fn rr_case(
    lab: &Lab,
    clients: usize,
    target: Ipv4Addr,
    established: &mut dyn FnMut() -> Result<usize>,
) -> Result<RrRun> {
    let inj = rr_injector(lab, clients, target)?;
    let mut run = RrRun::default();
    // Waited for in short steps, so that an interrupt is noticed.
    let deadline = Instant::now() + RR_UP_TIMEOUT;
    let opened = loop {
        check_cancelled()?;
        match inj.ready.recv_timeout(Duration::from_millis(200)) {
            Err(std::sync::mpsc::RecvTimeoutError::Timeout) if Instant::now() < deadline => {}
            other => break other,
        }
    };
    let started = match opened {
        Ok(Ok(t)) => t,
        Ok(Err(e)) => return Err(e),
        Err(_) => {
            eprintln!(
                "calico-bench bgp: the {clients} client sessions did not open within {RR_UP_TIMEOUT:?}"
            );
            return Ok(run);
        }
    };
    let Ok(up) = wait_until(Duration::from_secs(60), || Ok(established()? >= clients)) else {
        eprintln!("calico-bench bgp: not every client Established at the reflector");
        return Ok(run);
    };
    run.up_seconds = Some((up - started).as_secs_f64());
    let t0 = inj.step(RrStep::All)?;
    let done = wait_until(RR_TIMEOUT, || {
        Ok(inj.complete.load(Ordering::Relaxed) >= clients)
    });
    run.all_seconds = done.ok().map(|t| (t - t0).as_secs_f64());
    run.complete = inj.complete.load(Ordering::Relaxed);
    if run.all_seconds.is_none() {
        return Ok(run);
    }
    let t0 = inj.step(RrStep::New)?;
    let done = wait_until(RR_TIMEOUT, || {
        Ok(inj.reached.load(Ordering::Relaxed) >= clients - 1)
    });
    run.new_seconds = done.ok().map(|t| (t - t0).as_secs_f64());
    run.reached = inj.reached.load(Ordering::Relaxed);
    Ok(run)
}

fn reflection(lab: &Lab, tools: &BirdTools, clients: usize) -> Result<(Table, Vec<Goal>)> {
    let sources: Vec<Ipv4Addr> = (0..clients).map(client).collect();
    let mut table = Table::new(
        &format!(
            "BGP route reflector: {} iBGP clients, one route each (next hop the client)",
            thousands(clients as f64)
        ),
        &[
            "reflector",
            "all Established s",
            "every client holds every route s",
            "clients complete",
            "then one new prefix to all s",
            "clients reached",
        ],
    );
    let ours_run = {
        let mut ours = Ours::start(&lab.ours, sources.clone(), true)?;
        let stats = Arc::clone(&ours.stats);
        let run = rr_case(lab, clients, OURS, &mut || {
            ours.check()?;
            let up = stats.established.load(Ordering::Relaxed);
            // From here the figures are the clients' own: polling would only slow the
            // reflector down.
            if up >= clients {
                stats.quiet.store(true, Ordering::Relaxed);
            }
            Ok(up)
        });
        ours.finish()?;
        run?
    };
    eprintln!(
        "calico-bench bgp: ours: every client holds every route in {}",
        ours_run
            .all_seconds
            .map_or("(timeout)".into(), |s| format!("{s:.3} s"))
    );
    check_cancelled()?;
    let bird_run = {
        let bird = Bird::start(tools, &lab.bird, &sources, true)?;
        rr_case(lab, clients, BIRD, &mut || bird.established())?
    };
    let secs = |s: Option<f64>| s.map_or("timeout".into(), |s| format!("{s:.3}"));
    let of = |n: usize, of: usize| format!("{} of {}", thousands(n as f64), thousands(of as f64));
    for (name, r) in [("ours", &ours_run), ("BIRD 2", &bird_run)] {
        table.push(vec![
            name.into(),
            secs(r.up_seconds),
            secs(r.all_seconds),
            of(r.complete, clients),
            secs(r.new_seconds),
            of(r.reached, clients - 1),
        ]);
    }
    let detail = |r: &RrRun| {
        r.all_seconds
            .map_or("did not reach every client".into(), |s| format!("{s:.3} s"))
    };
    let goals = vec![Goal {
        name: format!(
            "bgp route reflection: every one of {} clients holds every route within {} s",
            thousands(clients as f64),
            RR_GOAL.as_secs()
        ),
        met: Some(
            ours_run
                .all_seconds
                .is_some_and(|s| s <= RR_GOAL.as_secs_f64()),
        ),
        informational: false,
        detail: format!("ours {}, BIRD {}", detail(&ours_run), detail(&bird_run)),
    }];
    Ok((table, goals))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encoded_routes_decode_to_every_prefix_once() {
        let bytes = encoded_routes(1_500, INJ_OURS).expect("encode");
        let mut rest = bytes.as_slice();
        let mut seen = Vec::new();
        while !rest.is_empty() {
            let len = frame(rest, &ctx()).expect("frame").expect("whole message");
            let (msg, tail) = rest.split_at(len);
            match decode(msg, &ctx()).expect("decode").message {
                Message::Update(u) => {
                    assert_eq!(u.attributes.next_hop, Some(INJ_OURS));
                    seen.extend(u.nlri.iter().map(|n| n.prefix));
                }
                other => panic!("not an UPDATE: {other:?}"),
            }
            rest = tail;
        }
        let expected: Vec<IpNet> = (0..1_500).map(prefix).collect();
        assert_eq!(seen, expected);
    }

    #[test]
    fn the_reader_counts_each_prefix_with_a_best_path_once() {
        let mut best = BestPrefixes::default();
        let other: IpNet = "198.19.0.0/24".parse().expect("prefix");
        for p in [prefix(0), prefix(200_000), prefix(0), other, other] {
            best.set(p, true);
        }
        assert_eq!(best.len, 3);
        assert_eq!(block_index(&prefix(200_000)), Some(200_000));
        best.set(prefix(0), false);
        best.set(prefix(0), false);
        best.set(other, false);
        best.set(prefix(7), false);
        assert_eq!(best.len, 1);
    }

    #[test]
    fn client_addresses_stay_in_their_net() {
        let net: Ipv4Net = CLIENT_NET.parse().expect("net");
        assert!(net.contains(&client(0)));
        assert!(net.contains(&client(MAX_CLIENTS - 1)));
        assert!(!net.contains(&OURS) && !net.contains(&BIRD));
    }
}
