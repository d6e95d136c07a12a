//! Helpers shared by the dataplane and NAT kernel tests: namespaces this test owns, commands inside them,
//! pings and TCP connections that report who the peer saw. Needs root, iproute2, nftables and busybox.
#![allow(dead_code)] // each test binary uses a different subset

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::process::Output;
use std::time::{Duration, Instant};

use calico_netlink::Netns;
use calico_testutil::netns::{TestNetns, require_binary};

/// A test-owned network namespace (deleted on drop) with an open handle to run code inside it.
pub struct Ns {
    pub netns: TestNetns,
    pub handle: Netns,
}

impl Ns {
    pub fn new(prefix: &str) -> Ns {
        for (binary, package) in [
            ("ip", "iproute2"),
            ("nft", "nftables"),
            ("busybox", "busybox-static"),
        ] {
            if let Err(message) = require_binary(binary, package) {
                panic!("{message}");
            }
        }
        let netns = TestNetns::new(prefix).unwrap_or_else(|e| panic!("create netns: {e}"));
        let handle = Netns::open(&netns.path()).expect("open the test netns");
        Ns { netns, handle }
    }

    pub fn name(&self) -> &str {
        self.netns.name()
    }

    /// `ip -n NS ARGS`; must succeed.
    pub fn ip(&self, args: &[&str]) -> String {
        self.netns
            .ip(args)
            .unwrap_or_else(|e| panic!("in {}: {e}", self.name()))
    }

    /// A command inside the namespace, whatever its status.
    pub fn exec(&self, cmd: &[&str]) -> Output {
        self.netns
            .exec(cmd)
            .unwrap_or_else(|e| panic!("in {}: {e}", self.name()))
    }

    /// A command inside the namespace that must succeed; its stdout.
    pub fn exec_ok(&self, cmd: &[&str]) -> String {
        self.netns
            .exec_ok(cmd)
            .unwrap_or_else(|e| panic!("in {}: {e}", self.name()))
    }

    /// Runs `f` on a thread inside the namespace.
    pub fn run<T: Send, F: FnOnce() -> T + Send>(&self, f: F) -> T {
        self.handle.run(f).expect("enter the test netns")
    }

    /// One ICMP echo to `to` answered within `wait_seconds`.
    pub fn ping(&self, to: &str, wait_seconds: u32) -> bool {
        let wait = wait_seconds.to_string();
        self.exec(&["busybox", "ping", "-c", "1", "-W", &wait, to])
            .status
            .success()
    }

    /// Pings until one answer arrives or `attempts` pings went unanswered (the first packets of a
    /// fresh path may wait for ARP).
    pub fn ping_eventually(&self, to: &str, attempts: u32) -> bool {
        (0..attempts).any(|_| self.ping(to, 1))
    }

    /// A sysctl value inside the namespace.
    pub fn sysctl(&self, key: &str) -> String {
        self.run(|| calico_netlink::sysctl::get(key))
            .unwrap_or_else(|e| panic!("in {}: {e}", self.name()))
    }

    /// A TCP listener bound inside the namespace (the socket stays there).
    pub fn listen(&self, address: &str) -> TcpListener {
        let address: SocketAddr = address.parse().expect("socket address");
        let listener = self
            .run(|| TcpListener::bind(address))
            .unwrap_or_else(|e| panic!("listen on {address} in {}: {e}", self.name()));
        listener
            .set_nonblocking(true)
            .expect("nonblocking listener");
        listener
    }

    /// Connects from inside the namespace; whether the handshake completed within `timeout`.
    pub fn connect(&self, address: &str, timeout: Duration) -> bool {
        let address: SocketAddr = address.parse().expect("socket address");
        self.run(|| TcpStream::connect_timeout(&address, timeout))
            .is_ok()
    }
}

/// The source address of the next connection `listener` accepts within `timeout`.
pub fn accepted_peer(listener: &TcpListener, timeout: Duration) -> Option<SocketAddr> {
    let deadline = Instant::now() + timeout;
    loop {
        match listener.accept() {
            Ok((_, peer)) => return Some(peer),
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                if Instant::now() >= deadline {
                    return None;
                }
                std::thread::sleep(Duration::from_millis(10));
            }
            Err(e) => panic!("accept: {e}"),
        }
    }
}

/// Output lines with surrounding whitespace removed (iproute2 leaves trailing spaces).
pub fn lines(text: &str) -> Vec<String> {
    text.lines()
        .map(|line| line.trim().to_string())
        .filter(|line| !line.is_empty())
        .collect()
}
