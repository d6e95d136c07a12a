//! A top-of-rack router for the lab: BIRD or FRR in the underlay namespace (the router between the
//! lab's L2 segments), peering over eBGP with every host, as Calico clusters peer with their racks'
//! switches. The hosts see it through one global BGPPeer; it learns every host's blocks and installs
//! them in the underlay's kernel, so pods on different segments reach each other without
//! encapsulation.

use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use calico_api::Resource;
use clap::ValueEnum;

use crate::datastore;
use crate::netns;
use crate::paths::{Lab, system_binary};
use crate::procs;
use crate::state::DatastoreState;
use crate::underlay::GATEWAY;

/// The router's AS: a private one, different from Calico's default 64512 (eBGP, as a ToR).
pub const TOR_AS: u32 = 65000;
/// The hosts' AS: calico-node's default (no BGPConfiguration sets another in the lab).
pub const HOST_AS: u32 = 64512;
/// Name of the global BGPPeer the hosts reach the router with.
pub const TOR_PEER: &str = "tor";

/// Which routing daemon runs in the router namespace.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Tor {
    Bird,
    Frr,
}

impl Tor {
    pub fn name(self) -> &'static str {
        match self {
            Tor::Bird => "bird",
            Tor::Frr => "frr",
        }
    }
}

/// The router's peerings: one eBGP session per host address, sourced from 198.18.0.1 (the address
/// the hosts' BGPPeer names, reached across segments through the router itself).
pub fn bird_config(hosts: &[Ipv4Addr], host_as: u32) -> String {
    let mut conf = format!(
        "log stderr all;\n\
         router id {GATEWAY};\n\
         protocol device {{ scan time 1; }}\n\
         protocol direct {{ ipv4; interface \"br*\"; }}\n\
         # What the hosts announce goes into this namespace's kernel: the router forwards pod traffic.\n\
         protocol kernel {{ ipv4 {{ export where source = RTS_BGP; }}; merge paths on; }}\n\
         template bgp host {{\n  local {GATEWAY} as {TOR_AS};\n  multihop;\n  graceful restart;\n  ipv4 {{ import all; export none; }};\n}}\n"
    );
    for (i, host) in hosts.iter().enumerate() {
        conf.push_str(&format!(
            "protocol bgp host{} from host {{ neighbor {host} as {host_as}; }}\n",
            i + 1
        ));
    }
    conf
}

/// FRR's configuration for the same peerings (bgpd with zebra, which installs the routes).
pub fn frr_config(hosts: &[Ipv4Addr], host_as: u32) -> String {
    let mut conf = format!(
        "hostname calico-lab-tor\n\
         router bgp {TOR_AS}\n bgp router-id {GATEWAY}\n no bgp ebgp-requires-policy\n no bgp network import-check\n"
    );
    for host in hosts {
        conf.push_str(&format!(
            " neighbor {host} remote-as {host_as}\n neighbor {host} ebgp-multihop 64\n neighbor {host} update-source {GATEWAY}\n"
        ));
    }
    conf.push_str(" address-family ipv4 unicast\n");
    for host in hosts {
        conf.push_str(&format!(
            "  neighbor {host} activate\n  neighbor {host} route-map NONE out\n"
        ));
    }
    conf.push_str(" exit-address-family\n!\nroute-map NONE deny 10\n!\n");
    conf
}

/// Where the router's files live.
pub fn dir(lab: &Lab) -> PathBuf {
    lab.dir().join("tor")
}

/// Starts the router's daemon(s) in the underlay namespace; returns their pids (torn down with the
/// lab: they carry its marker).
pub fn start(lab: &Lab, tor: Tor, hosts: &[Ipv4Addr], host_as: u32) -> Result<Vec<u32>> {
    let dir = dir(lab);
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let ns = lab.underlay_ns();
    let log = dir.join(format!("{}.log", tor.name()));
    match tor {
        Tor::Bird => {
            let bird = system_binary("bird", "bird2")?;
            let conf = dir.join("bird.conf");
            std::fs::write(&conf, bird_config(hosts, host_as))
                .with_context(|| format!("writing {}", conf.display()))?;
            let mut command = netns::exec_command(&ns, bird)?;
            command
                .arg("-f")
                .arg("-c")
                .arg(&conf)
                .arg("-s")
                .arg(dir.join("bird.ctl"))
                .arg("-P")
                .arg(dir.join("bird.pid"));
            Ok(vec![procs::spawn_detached(command, &lab.name, &log)?.id()])
        }
        Tor::Frr => {
            let zebra = frr_daemon("zebra")?;
            let bgpd = frr_daemon("bgpd")?;
            let conf = dir.join("frr.conf");
            std::fs::write(&conf, frr_config(hosts, host_as))
                .with_context(|| format!("writing {}", conf.display()))?;
            let zconf = dir.join("zebra.conf");
            std::fs::write(&zconf, "hostname calico-lab-tor\n")
                .with_context(|| format!("writing {}", zconf.display()))?;
            chown_to_frr(&[&dir, &conf, &zconf])?;
            let zsock = dir.join("zserv.api");
            let mut z = netns::exec_command(&ns, zebra)?;
            z.arg("-f")
                .arg(&zconf)
                .arg("-i")
                .arg(dir.join("zebra.pid"))
                .arg("-z")
                .arg(&zsock)
                .arg("--vty_socket")
                .arg(&dir)
                .args(["-u", "frr", "-g", "frr"]);
            let zebra_pid = procs::spawn_detached(z, &lab.name, &dir.join("zebra.log"))?.id();
            let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
            while !zsock.exists() {
                if std::time::Instant::now() > deadline {
                    bail!("FRR's zebra did not open {} within 10 s", zsock.display());
                }
                std::thread::sleep(std::time::Duration::from_millis(20));
            }
            let mut b = netns::exec_command(&ns, bgpd)?;
            b.arg("-f")
                .arg(&conf)
                .arg("-i")
                .arg(dir.join("bgpd.pid"))
                .arg("-z")
                .arg(&zsock)
                .arg("--vty_socket")
                .arg(&dir)
                .args(["-P", "0", "-u", "frr", "-g", "frr"]);
            let bgpd_pid = procs::spawn_detached(b, &lab.name, &log)?.id();
            Ok(vec![zebra_pid, bgpd_pid])
        }
    }
}

fn frr_daemon(name: &str) -> Result<PathBuf> {
    let path = Path::new("/usr/lib/frr").join(name);
    if !path.is_file() {
        bail!(
            "{} not found: install FRR (apt-get install frr)",
            path.display()
        );
    }
    Ok(path)
}

/// FRR's daemons drop to user frr and then need their files.
fn chown_to_frr(paths: &[&Path]) -> Result<()> {
    let user = nix::unistd::User::from_name("frr")
        .ok()
        .flatten()
        .context("user frr missing: install FRR (apt-get install frr)")?;
    let group = nix::unistd::Group::from_name("frr")
        .ok()
        .flatten()
        .context("group frr missing: install FRR (apt-get install frr)")?;
    for path in paths {
        std::os::unix::fs::chown(path, Some(user.uid.as_raw()), Some(group.gid.as_raw()))
            .with_context(|| format!("handing {} to user frr", path.display()))?;
    }
    Ok(())
}

/// The global BGPPeer every host reaches the router with.
pub fn peer_resource() -> Result<Resource> {
    let value = serde_json::json!({
        "apiVersion": "projectcalico.org/v3",
        "kind": "BGPPeer",
        "metadata": {"name": TOR_PEER},
        // Every host also passes on the blocks it learned from the others over the mesh; with
        // their original next hops kept the router forwards to each block's own host, not to
        // whichever host announced it (which would send it back to the router).
        "spec": {"peerIP": GATEWAY.to_string(), "asNumber": TOR_AS, "keepOriginalNextHop": true},
    });
    Resource::from_value(value).map_err(|e| anyhow::anyhow!("the ToR's BGPPeer: {e}"))
}

/// Writes the router's BGPPeer into the lab's datastore.
pub fn configure(ds: &DatastoreState) -> Result<()> {
    let peer = peer_resource()?;
    datastore::with_client(ds, |client| async move {
        client
            .apply(peer)
            .await
            .context("writing the ToR's BGPPeer")?;
        Ok(())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bird_peers_with_every_host_from_the_address_the_hosts_name() {
        let conf = bird_config(
            &[Ipv4Addr::new(198, 18, 0, 11), Ipv4Addr::new(198, 18, 1, 12)],
            64512,
        );
        assert!(conf.contains("local 198.18.0.1 as 65000;"), "{conf}");
        assert!(conf.contains("protocol bgp host1 from host { neighbor 198.18.0.11 as 64512; }"));
        assert!(conf.contains("protocol bgp host2 from host { neighbor 198.18.1.12 as 64512; }"));
    }

    #[test]
    fn frr_peers_with_every_host_multihop_from_the_gateway() {
        let conf = frr_config(&[Ipv4Addr::new(198, 18, 1, 12)], 64512);
        for line in [
            "router bgp 65000",
            " neighbor 198.18.1.12 remote-as 64512",
            " neighbor 198.18.1.12 ebgp-multihop 64",
            " neighbor 198.18.1.12 update-source 198.18.0.1",
            "  neighbor 198.18.1.12 activate",
        ] {
            assert!(conf.lines().any(|l| l == line), "{line:?} in\n{conf}");
        }
    }

    #[test]
    fn the_hosts_peer_is_global_at_the_gateway() {
        let peer = peer_resource().expect("valid");
        let calico_api::Spec::BGPPeer(spec) = &peer.spec else {
            panic!("a BGPPeer: {peer:?}");
        };
        assert_eq!(spec.peer_ip, "198.18.0.1");
        assert_eq!(spec.as_number, Some(65000));
        assert!(
            spec.node.is_empty() && spec.node_selector.is_empty(),
            "global"
        );
    }
}
