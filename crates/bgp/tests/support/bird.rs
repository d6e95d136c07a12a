//! BIRD 2 in a test namespace, started from a config text, queried with `birdc`.

use std::process::Command;
use std::time::Duration;

use calico_testutil::netns::{TestNetns, checked_stdout, run_with_timeout};

use super::{Daemon, daemon_dir, eventually, need};

pub struct Bird {
    pub daemon: Daemon,
    pub socket: String,
    birdc: String,
}

impl Bird {
    /// Starts BIRD in `ns` with `config` (and `extra` arguments such as `-R`), once its control
    /// socket answers.
    pub fn start(ns: &TestNetns, config: &str, extra: &[&str]) -> Bird {
        let bird = need("bird", "bird2");
        let birdc = need("birdc", "bird2");
        let dir = daemon_dir("bird");
        let conf = dir.path().join("bird.conf");
        let socket = dir.path().join("bird.ctl").to_string_lossy().into_owned();
        let pid = dir.path().join("bird.pid").to_string_lossy().into_owned();
        std::fs::write(&conf, config).expect("bird.conf");
        let conf = conf.to_string_lossy().into_owned();
        let mut argv = vec![bird.as_str(), "-f", "-c", &conf, "-s", &socket, "-P", &pid];
        argv.extend_from_slice(extra);
        let daemon = Daemon::spawn("bird", ns, dir, &argv);
        let b = Bird {
            daemon,
            socket,
            birdc,
        };
        eventually("BIRD's control socket", || b.birdc(&["show", "status"]));
        b
    }

    pub fn birdc(&self, args: &[&str]) -> Result<String, String> {
        let out = run_with_timeout(
            Command::new(&self.birdc)
                .args(["-s", &self.socket])
                .args(args),
            Duration::from_secs(10),
        )?;
        checked_stdout(out, "birdc")
    }

    /// `show route for PREFIX all`, or the error (`Network not found` when it has none).
    pub fn route(&self, prefix: &str) -> Result<String, String> {
        self.birdc(&["show", "route", "for", prefix, "all"])
    }

    /// Waits until BIRD's protocol `name` is Established.
    pub fn wait_established(&mut self, name: &str) {
        eventually(&format!("BIRD's {name} Established"), || {
            self.daemon.check_running();
            let out = self.birdc(&["show", "protocols", name])?;
            if out.contains("Established") {
                Ok(())
            } else {
                Err(out)
            }
        });
    }
}

/// The BIRD config common to these tests (next hops resolve through each BGP protocol's
/// `direct`): router id, device scan, routes learnt by BGP
/// exported to the kernel table (scan 1 s), `statics` as blackholes, then `protocols`.
pub fn config(router_id: std::net::Ipv4Addr, statics: &[&str], protocols: &str) -> String {
    let routes: String = statics
        .iter()
        .map(|p| format!("  route {p} blackhole;\n"))
        .collect();
    format!(
        r#"log stderr all;
router id {router_id};
protocol device {{ scan time 1; }}
protocol kernel {{
  scan time 1;
  ipv4 {{ export where source = RTS_BGP; }};
}}
protocol static {{
  ipv4;
{routes}}}
{protocols}
"#
    )
}

/// A BIRD iBGP protocol toward a directly connected `peer` (AS 64512 on both sides) with
/// test timers and `extra`.
pub fn ibgp_peer(
    name: &str,
    local: std::net::Ipv4Addr,
    peer: std::net::Ipv4Addr,
    extra: &str,
) -> String {
    bgp_peer(name, local, 64512, peer, &format!("direct;\n  {extra}"))
}

/// A BIRD BGP protocol from `local` in `local_as` toward `peer` in AS 64512, with test timers
/// and `extra` (`direct;`, `multihop 2;`, `passive on;` ...).
pub fn bgp_peer(
    name: &str,
    local: std::net::Ipv4Addr,
    local_as: u32,
    peer: std::net::Ipv4Addr,
    extra: &str,
) -> String {
    format!(
        r#"protocol bgp {name} {{
  local {local} as {local_as};
  neighbor {peer} as 64512;
  hold time 3;
  connect delay time 1;
  connect retry time 1;
  error wait time 1, 2;
  {extra}
  ipv4 {{ import all; export all; }};
}}
"#
    )
}
