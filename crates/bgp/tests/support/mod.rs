//! Interop harness: two test-made network namespaces joined by a veth pair, our speaker in one
//! (a thread that has entered it, running the crate's session driver and RIB), a real BGP daemon
//! in the other with its config, sockets and pid file in a tempdir. Daemons are killed and
//! namespaces deleted on drop, also when a test fails.

// Each interop test binary uses a different part of this module.
#![allow(dead_code)]

pub mod bird;
pub mod frr;
pub mod gobgp;
pub mod lan;
pub mod ours;

use std::collections::BTreeMap;
use std::fs::File;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::{Path as FsPath, PathBuf};
use std::process::Command;
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use calico_bgp::net::listener::{ListenerStats, PeerTable, listen};
use calico_bgp::net::{self, SessionEvent, TcpOptions};
use calico_bgp::policy::Filter;
use calico_bgp::rib::{self, AdjRibOut, NextHopMode, PeerInfo, Rib, RibConfig, Source};
use calico_bgp::session::{Negotiated, PeerConfig, Reason};
use calico_bgp::wire::{Context, PathAttributes, Update};
use calico_testutil::netns::{ReadChild, TestNetns, require_binary, veth_pair};
use ipnet::IpNet;
use nix::sched::{CloneFlags, setns};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use tokio::sync::mpsc;

/// How long any one expected change may take to show.
pub const WAIT: Duration = Duration::from_secs(20);

/// Polls `probe` until it returns `Some`, or fails the test with `what` and the last
/// observation.
pub fn eventually<T>(what: &str, mut probe: impl FnMut() -> Result<T, String>) -> T {
    let deadline = Instant::now() + WAIT;
    loop {
        match probe() {
            Ok(v) => return v,
            Err(last) if Instant::now() >= deadline => {
                panic!("{what}: not seen within {WAIT:?}; last: {last}")
            }
            Err(_) => thread::sleep(Duration::from_millis(100)),
        }
    }
}

/// Two namespaces, ours at 198.18.`net`.1/30 and the daemon's at 198.18.`net`.2/30.
pub struct Pair {
    pub ours: TestNetns,
    pub theirs: TestNetns,
    pub our_addr: Ipv4Addr,
    pub their_addr: Ipv4Addr,
}

impl Pair {
    pub fn new(tag: &str, net: u8) -> Pair {
        let ours = TestNetns::new(&format!("bgp-{tag}-us")).expect("our namespace");
        let theirs = TestNetns::new(&format!("bgp-{tag}-them")).expect("daemon namespace");
        let our_addr = Ipv4Addr::new(198, 18, net, 1);
        let their_addr = Ipv4Addr::new(198, 18, net, 2);
        veth_pair(
            &ours,
            "bgp-us",
            &format!("{our_addr}/30"),
            &theirs,
            "bgp-them",
            &format!("{their_addr}/30"),
        )
        .expect("veth pair");
        Pair {
            ours,
            theirs,
            our_addr,
            their_addr,
        }
    }

    /// Adds 2001:2:0:`net`::1/64 (ours) and ::2/64 (the daemon's) to the link: the IPv6
    /// benchmarking range (RFC 5180), the counterpart of 198.18.0.0/15. Without duplicate
    /// address detection, so they are usable at once.
    pub fn add_v6(&self, net: u8) -> (Ipv6Addr, Ipv6Addr) {
        let ours = Ipv6Addr::new(0x2001, 2, 0, u16::from(net), 0, 0, 0, 1);
        let theirs = Ipv6Addr::new(0x2001, 2, 0, u16::from(net), 0, 0, 0, 2);
        self.ours
            .ip(&[
                "-6",
                "addr",
                "add",
                &format!("{ours}/64"),
                "dev",
                "bgp-us",
                "nodad",
            ])
            .expect("our IPv6 address");
        self.theirs
            .ip(&[
                "-6",
                "addr",
                "add",
                &format!("{theirs}/64"),
                "dev",
                "bgp-them",
                "nodad",
            ])
            .expect("daemon's IPv6 address");
        (ours, theirs)
    }
}

/// Where the session runs: the peer's address (either family) and ours of each family, the
/// next hops the peer is sent for our own routes.
#[derive(Clone, Copy, Debug)]
struct Endpoints {
    remote: IpAddr,
    self_v4: Ipv4Addr,
    self_v6: Option<Ipv6Addr>,
}

/// A test-speed peer configuration: retries every second so the daemon's start-up does not
/// cost the default 5 s.
pub fn fast_peer(local_as: u32, local_id: Ipv4Addr, peer_as: u32) -> PeerConfig {
    PeerConfig {
        connect_retry: Duration::from_secs(1),
        connect_retry_max: Duration::from_secs(2),
        idle_hold: Duration::from_secs(1),
        idle_hold_max: Duration::from_secs(2),
        ..PeerConfig::new(local_as, local_id, peer_as)
    }
}

/// What our speaker has seen so far.
#[derive(Debug, Default)]
pub struct SpeakerState {
    /// The session parameters while it is established.
    pub up: Option<Negotiated>,
    /// Every time the session went down, why.
    pub downs: Vec<Reason>,
    /// How many times it came up.
    pub ups: usize,
    /// Sockets that could not be set up as configured.
    pub socket_errors: Vec<String>,
    /// A passive speaker's listener counters.
    pub listener: Option<Arc<ListenerStats>>,
    /// Best paths learnt from the peer: prefix to (next hop, attributes).
    pub learnt: BTreeMap<IpNet, (IpAddr, PathAttributes)>,
    /// The ADD-PATH identifiers of every path the peer sent per prefix (0 without ADD-PATH).
    pub path_ids: BTreeMap<IpNet, Vec<u32>>,
    /// The harness itself failed (entering the namespace, building the runtime).
    pub error: Option<String>,
}

enum Cmd {
    Originate(IpNet),
    Withdraw(IpNet),
    Stop,
}

const PEER: rib::PeerId = 1;

/// Our speaker with one peer, run on a thread inside `ns`.
pub struct Speaker {
    cmds: mpsc::UnboundedSender<Cmd>,
    state: Arc<Mutex<SpeakerState>>,
    thread: Option<JoinHandle<()>>,
}

impl Speaker {
    /// Starts a session to `remote` on port 179 with `cfg`; `self_addr` is our address on the
    /// link (the next hop the peer is sent for our own routes).
    pub fn start(ns: &TestNetns, cfg: PeerConfig, remote: Ipv4Addr, self_addr: Ipv4Addr) -> Self {
        Self::start_with(ns, cfg, remote, self_addr, TcpOptions::default())
    }

    /// A session over IPv6 to `remote`; `self_v6` is our address on the link and `self_v4`
    /// the IPv4 one (for IPv4 routes, if the session carries them).
    pub fn start_v6(
        ns: &TestNetns,
        cfg: PeerConfig,
        remote: Ipv6Addr,
        self_v6: Ipv6Addr,
        self_v4: Ipv4Addr,
    ) -> Self {
        let ends = Endpoints {
            remote: IpAddr::V6(remote),
            self_v4,
            self_v6: Some(self_v6),
        };
        Self::spawn(ns, cfg, ends, TcpOptions::default())
    }

    /// Like [`start`](Self::start), connecting as `tcp` says (TCP-MD5 key, source address).
    pub fn start_with(
        ns: &TestNetns,
        cfg: PeerConfig,
        remote: Ipv4Addr,
        self_addr: Ipv4Addr,
        tcp: TcpOptions,
    ) -> Self {
        let ends = Endpoints {
            remote: IpAddr::V4(remote),
            self_v4: self_addr,
            self_v6: None,
        };
        Self::spawn(ns, cfg, ends, tcp)
    }

    fn spawn(ns: &TestNetns, cfg: PeerConfig, ends: Endpoints, tcp: TcpOptions) -> Self {
        let state = Arc::new(Mutex::new(SpeakerState::default()));
        let (cmds, rx) = mpsc::unbounded_channel();
        let ns_path = ns.path();
        let shared = Arc::clone(&state);
        let thread = thread::spawn(move || {
            if let Err(e) = run_in_namespace(&ns_path, cfg, ends, tcp, rx, &shared) {
                lock(&shared).error = Some(e);
            }
        });
        Speaker {
            cmds,
            state,
            thread: Some(thread),
        }
    }

    pub fn originate(&self, prefix: &str) {
        self.cmds
            .send(Cmd::Originate(prefix.parse().expect("prefix")))
            .expect("speaker thread gone");
    }

    pub fn withdraw(&self, prefix: &str) {
        self.cmds
            .send(Cmd::Withdraw(prefix.parse().expect("prefix")))
            .expect("speaker thread gone");
    }

    /// Polls our state until `probe` accepts it.
    pub fn wait_for<T>(&self, what: &str, probe: impl Fn(&SpeakerState) -> Option<T>) -> T {
        eventually(what, || {
            let st = lock(&self.state);
            if let Some(e) = &st.error {
                panic!("speaker failed: {e}");
            }
            probe(&st).ok_or_else(|| format!("{st:?}"))
        })
    }

    /// Waits for the session, failing at once if `daemon` exits (a config it refused).
    pub fn wait_established(&self, daemon: &mut Daemon) -> Negotiated {
        eventually("our session Established", || {
            daemon.check_running();
            let st = lock(&self.state);
            if let Some(e) = &st.error {
                panic!("speaker failed: {e}");
            }
            st.up.clone().ok_or_else(|| format!("{st:?}"))
        })
    }
}

impl Drop for Speaker {
    fn drop(&mut self) {
        let _ = self.cmds.send(Cmd::Stop);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn lock(m: &Mutex<SpeakerState>) -> MutexGuard<'_, SpeakerState> {
    lock_or_recover(m)
}

/// A panic elsewhere must not hide what was seen.
pub fn lock_or_recover<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

fn run_in_namespace(
    ns_path: &FsPath,
    cfg: PeerConfig,
    ends: Endpoints,
    tcp: TcpOptions,
    cmds: mpsc::UnboundedReceiver<Cmd>,
    state: &Arc<Mutex<SpeakerState>>,
) -> Result<(), String> {
    // setns changes only this thread's network namespace; every socket the single-threaded
    // runtime below opens lives in the test namespace.
    let f = File::open(ns_path).map_err(|e| format!("open {}: {e}", ns_path.display()))?;
    setns(&f, CloneFlags::CLONE_NEWNET).map_err(|e| format!("setns: {e}"))?;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("runtime: {e}"))?;
    rt.block_on(drive(cfg, ends, tcp, cmds, Arc::clone(state)))
}

async fn drive(
    cfg: PeerConfig,
    ends: Endpoints,
    tcp: TcpOptions,
    mut cmds: mpsc::UnboundedReceiver<Cmd>,
    state: Arc<Mutex<SpeakerState>>,
) -> Result<(), String> {
    let mut rib = Rib::new(RibConfig {
        local_as: cfg.local_as,
        router_id: cfg.local_id,
        cluster_id: None,
    });
    let mut peer = PeerInfo {
        address: ends.remote,
        // Replaced by the identifier in its OPEN once the session is up.
        router_id: cfg.local_id,
        asn: cfg.peer_as,
        ibgp: cfg.is_ibgp(),
        rr_client: false,
        next_hop: NextHopMode::Auto,
        self_v4: Some(ends.self_v4),
        self_v6: ends.self_v6,
        import: Filter::default(),
        export: Filter::default(),
        allow_local_as: 0,
    };
    rib.set_peer(PEER, peer.clone());
    let mut out = AdjRibOut::default();
    let mut encode: Option<Context> = None;
    let passive = cfg.passive;
    let mut h = net::spawn_with(cfg, SocketAddr::new(ends.remote, 179), tcp)
        .map_err(|e| format!("session config: {e}"))?;
    // A passive speaker takes the peer's connection on its own port 179, through the shared
    // listener that refuses every other source.
    let listener = if passive {
        let table = PeerTable::new();
        table.insert(ends.remote, h.inbound.clone());
        // Every address, as in production: the source address decides, not the one dialled.
        let l = listen(
            SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), 179),
            table,
        )
        .await
        .map_err(|e| format!("listen on 0.0.0.0:179: {e}"))?;
        lock(&state).listener = Some(Arc::clone(&l.stats));
        Some(l)
    } else {
        None
    };

    let send = |h: &net::SessionHandle, updates: Vec<Update>| {
        for u in updates {
            let _ = h.commands.send(net::Command::Send(u));
        }
    };
    loop {
        tokio::select! {
            ev = h.events.recv() => {
                let Some(ev) = ev else { return Err("session task ended".into()) };
                match ev {
                    SessionEvent::Up(n) => {
                        peer.router_id = n.peer_id;
                        rib.set_peer(PEER, peer.clone());
                        let packed = rib.initial_updates(PEER, &n.families, &mut out, &n.encode);
                        send(&h, packed.updates);
                        encode = Some(n.encode.clone());
                        let mut st = lock(&state);
                        st.up = Some(n);
                        st.ups += 1;
                    }
                    SessionEvent::Down { reason, .. } => {
                        rib.peer_down(PEER);
                        out.clear();
                        encode = None;
                        let mut st = lock(&state);
                        st.up = None;
                        st.downs.push(reason);
                    }
                    SessionEvent::Update(u) => {
                        rib.apply_update(PEER, &u);
                    }
                    SessionEvent::Withdraw(w) => {
                        rib.withdraw(PEER, &w);
                    }
                    SessionEvent::SocketSetup(e) => lock(&state).socket_errors.push(e),
                    _ => {}
                }
            }
            cmd = cmds.recv() => {
                let changes = match cmd {
                    // An unspecified next hop: each peer gets our address on its session.
                    Some(Cmd::Originate(p)) => {
                        let unspecified = match p {
                            IpNet::V4(_) => IpAddr::V4(Ipv4Addr::UNSPECIFIED),
                            IpNet::V6(_) => IpAddr::V6(Ipv6Addr::UNSPECIFIED),
                        };
                        rib.originate(p, PathAttributes::default(), unspecified)
                    }
                    Some(Cmd::Withdraw(p)) => rib.withdraw_local(p),
                    Some(Cmd::Stop) | None => {
                        if let Some(l) = &listener {
                            l.task.abort();
                        }
                        let _ = h.commands.send(net::Command::Shutdown);
                        let _ = (&mut h.task).await;
                        return Ok(());
                    }
                };
                if let Some(ctx) = &encode {
                    let out_changes = rib.sync_peer(PEER, changes.iter().map(|c| c.prefix), &mut out);
                    send(&h, rib::pack(&out_changes, ctx).updates);
                }
            }
        }
        let learnt = rib
            .best_paths()
            .filter(|(_, p)| p.source == Source::Peer(PEER))
            .map(|(prefix, p)| (prefix, (p.next_hop, (*p.attrs).clone())))
            .collect();
        let path_ids = rib
            .best_paths()
            .map(|(prefix, _)| {
                let ids = rib
                    .paths(&prefix)
                    .iter()
                    .filter(|p| p.source == Source::Peer(PEER))
                    .map(|p| p.path_id)
                    .collect::<Vec<u32>>();
                (prefix, ids)
            })
            .filter(|(_, ids)| !ids.is_empty())
            .collect();
        let mut st = lock(&state);
        st.learnt = learnt;
        st.path_ids = path_ids;
    }
}

/// A daemon process in a namespace, killed on drop; its files live in `dir`.
pub struct Daemon {
    pub name: &'static str,
    pub dir: tempfile::TempDir,
    child: ReadChild,
}

impl Daemon {
    /// Starts `argv` inside `ns` (`ip netns exec` replaces itself with the daemon, so the
    /// child we hold is the daemon).
    pub fn spawn(
        name: &'static str,
        ns: &TestNetns,
        dir: tempfile::TempDir,
        argv: &[&str],
    ) -> Self {
        Self::spawn_with_env(name, ns, dir, argv, &[])
    }

    /// Like [`spawn`](Self::spawn) with extra environment variables.
    pub fn spawn_with_env(
        name: &'static str,
        ns: &TestNetns,
        dir: tempfile::TempDir,
        argv: &[&str],
        env: &[(&str, &str)],
    ) -> Self {
        let ip = require_binary("ip", "iproute2").unwrap_or_else(|e| panic!("{e}"));
        let child = ReadChild::spawn(
            Command::new(ip)
                .args(["netns", "exec", ns.name()])
                .args(argv)
                .envs(env.iter().copied()),
        )
        .unwrap_or_else(|e| panic!("{name}: {e}"));
        Daemon { name, dir, child }
    }

    pub fn path(&self, file: &str) -> PathBuf {
        self.dir.path().join(file)
    }

    pub fn pid(&self) -> Pid {
        Pid::from_raw(i32::try_from(self.child.id()).expect("pid"))
    }

    /// SIGKILL, as a crash (continued first in case it was stopped).
    pub fn kill_hard(&mut self) {
        if self.child.try_wait().is_none() {
            let _ = kill(self.pid(), Signal::SIGCONT);
            self.child.kill();
        }
    }

    /// Fails the test if the daemon has exited, with what it wrote.
    pub fn check_running(&mut self) {
        if let Some(status) = self.child.try_wait() {
            let mut out = String::new();
            while let Some(line) = self.child.next_line(Duration::from_millis(10)) {
                out.push_str(&line);
                out.push('\n');
            }
            panic!("{} exited early: {status}; stdout: {out}", self.name);
        }
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        // SIGTERM first: FRR's daemons, for one, remove their /var/tmp/frr/<daemon>.<pid> state
        // only on a clean exit. SIGKILL if that does not end it soon.
        if self.child.try_wait().is_none() {
            if let Ok(pid) = i32::try_from(self.child.id()) {
                // A stopped daemon (hold timer tests) must run to act on SIGTERM.
                let _ = kill(Pid::from_raw(pid), Signal::SIGCONT);
                let _ = kill(Pid::from_raw(pid), Signal::SIGTERM);
            }
            if self.child.wait_timeout(Duration::from_secs(5)).is_none() {
                self.child.kill();
            }
        }
    }
}

/// A tempdir for a daemon's files.
pub fn daemon_dir(name: &str) -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix(&format!("calico-bgp-{name}-"))
        .tempdir()
        .expect("tempdir")
}

/// Runs `argv` in `ns`; its stdout, or the error with its output.
pub fn exec(ns: &TestNetns, argv: &[&str]) -> Result<String, String> {
    let out = ns.exec(argv)?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(format!(
            "{} failed ({}): {}{}",
            argv.join(" "),
            out.status,
            String::from_utf8_lossy(&out.stderr),
            String::from_utf8_lossy(&out.stdout)
        ))
    }
}

/// The binary, or a failure naming the package that provides it.
pub fn need(binary: &str, package: &str) -> String {
    require_binary(binary, package)
        .unwrap_or_else(|e| panic!("{e}"))
        .to_string_lossy()
        .into_owned()
}

/// The IPv4 kernel route for `prefix` in `ns`, empty when there is none.
pub fn kernel_route(ns: &TestNetns, prefix: &str) -> String {
    ns.ip(&["-4", "route", "show", prefix])
        .unwrap_or_else(|e| panic!("ip route: {e}"))
}

/// Waits until `ns`'s kernel routes `prefix` via `via` on eth0 with protocol `proto`.
pub fn wait_kernel_route_via(ns: &TestNetns, prefix: &str, via: Ipv4Addr, proto: &str) {
    eventually(
        &format!("{prefix} via {via} (proto {proto}) in the kernel"),
        || {
            let out = kernel_route(ns, prefix);
            if out.contains(&format!("via {via} dev eth0"))
                && out.contains(&format!("proto {proto}"))
            {
                Ok(())
            } else {
                Err(out)
            }
        },
    );
}

/// Waits until `ns`'s kernel has no route for `prefix`.
pub fn wait_kernel_route_gone(ns: &TestNetns, prefix: &str) {
    eventually(&format!("{prefix} gone from the kernel"), || {
        let out = kernel_route(ns, prefix);
        if out.trim().is_empty() {
            Ok(())
        } else {
            Err(out)
        }
    });
}
