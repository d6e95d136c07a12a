//! `calico-lab serve-pod`: the small server every pod runs so `calico-lab probe` can tell which pods
//! reach which. Inside the pod's namespace it answers on each of its ports, TCP and UDP: a TCP
//! connection gets the pod's name and is closed; a UDP datagram is answered with the pod's name. One
//! process per pod, on plain threads (a few hundred kilobytes each), stopped when the pod is deleted
//! so it never keeps a deleted pod's namespace alive.

use std::io::Write;
use std::net::{Ipv4Addr, SocketAddr, TcpListener, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

use crate::netns;
use crate::paths::Lab;
use crate::procs;
use crate::state::{PodState, SERVED_PORT, Transport};

/// How long a server may take to listen on its ports.
const START_LIMIT: Duration = Duration::from_secs(10);

/// What the server of `pod` listens on: [`SERVED_PORT`] over TCP and UDP, and its named ports.
pub fn ports_of(pod: &PodState) -> Vec<(u16, Transport)> {
    let mut ports = vec![(SERVED_PORT, Transport::Tcp), (SERVED_PORT, Transport::Udp)];
    ports.extend(pod.ports.iter().map(|p| (p.port, p.protocol)));
    ports.sort();
    ports.dedup();
    ports
}

/// `80/tcp,80/udp,8080/tcp`, as `serve-pod --ports` takes it.
pub fn ports_arg(ports: &[(u16, Transport)]) -> String {
    ports
        .iter()
        .map(|(port, t)| format!("{port}/{}", t.name()))
        .collect::<Vec<_>>()
        .join(",")
}

/// Parses `serve-pod --ports`.
pub fn parse_ports_arg(text: &str) -> Result<Vec<(u16, Transport)>> {
    text.split(',')
        .filter(|item| !item.is_empty())
        .map(|item| {
            let (port, protocol) = item
                .split_once('/')
                .with_context(|| format!("{item:?}: expected port/protocol"))?;
            let port: u16 = port
                .parse()
                .with_context(|| format!("{item:?}: not a port"))?;
            let protocol = Transport::parse(protocol)
                .with_context(|| format!("{item:?}: protocol is not tcp or udp"))?;
            Ok((port, protocol))
        })
        .collect()
}

fn ready_file(lab: &Lab, pod: &str) -> PathBuf {
    lab.dir().join(format!("{pod}.server-ready"))
}

/// Starts `pod`'s server and waits until it listens; its pid.
pub fn start(lab: &Lab, pod: &PodState) -> Result<u32> {
    let exe = std::env::current_exe().context("locating calico-lab")?;
    let ready = ready_file(lab, &pod.name);
    let _ = std::fs::remove_file(&ready);
    let log = lab.dir().join(format!("{}.server.log", pod.name));
    let mut command = Command::new(exe);
    command.args([
        "serve-pod",
        "--name",
        &lab.name,
        "--pod",
        &pod.name,
        "--netns",
        &pod.namespace,
        "--ports",
        &ports_arg(&ports_of(pod)),
    ]);
    let mut child = procs::spawn_detached(command, &lab.name, &log)?;
    let deadline = Instant::now() + START_LIMIT;
    loop {
        if let Some(status) = child.try_wait()? {
            bail!(
                "the probe server of {} exited with {status}; see {}",
                pod.name,
                log.display()
            );
        }
        if ready.exists() {
            let _ = std::fs::remove_file(&ready);
            return Ok(child.id());
        }
        if Instant::now() >= deadline {
            procs::kill_now(&[child.id()]);
            bail!(
                "the probe server of {} did not listen within {START_LIMIT:?}; see {}",
                pod.name,
                log.display()
            );
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Stops `pod`'s server, if it runs (and is this lab's).
pub fn stop(lab: &Lab, pod: &PodState) {
    if let Some(pid) = pod
        .server_pid
        .filter(|pid| procs::belongs_to(*pid, &lab.name))
    {
        procs::stop(&[pid], Duration::from_secs(2));
    }
}

/// The server itself (`calico-lab serve-pod`): listens inside `netns_name`, says it is ready, and
/// answers until it is stopped.
pub fn run(lab: &Lab, pod: &str, netns_name: &str, ports: &[(u16, Transport)]) -> Result<()> {
    let ns = netns::open(netns_name)?;
    let ready = ready_file(lab, pod);
    let greeting = format!("{pod}\n").into_bytes();
    let ports = ports.to_vec();
    ns.run(move || serve(&greeting, &ports, &ready))?
}

fn serve(greeting: &[u8], ports: &[(u16, Transport)], ready: &Path) -> Result<()> {
    let mut workers = Vec::new();
    for &(port, transport) in ports {
        let addr = SocketAddr::from((Ipv4Addr::UNSPECIFIED, port));
        let greeting = greeting.to_vec();
        // Threads made here start in the pod's namespace, where their sockets were made.
        match transport {
            Transport::Tcp => {
                let listener =
                    TcpListener::bind(addr).with_context(|| format!("listening on {addr}/tcp"))?;
                workers.push(std::thread::spawn(move || {
                    for stream in listener.incoming() {
                        match stream {
                            Ok(mut stream) => {
                                let _ = stream.set_write_timeout(Some(Duration::from_secs(1)));
                                let _ = stream.write_all(&greeting);
                            }
                            Err(e) => {
                                eprintln!("accept on {addr}/tcp: {e}");
                                std::thread::sleep(Duration::from_millis(50));
                            }
                        }
                    }
                }));
            }
            Transport::Udp => {
                let socket =
                    UdpSocket::bind(addr).with_context(|| format!("listening on {addr}/udp"))?;
                workers.push(std::thread::spawn(move || {
                    let mut buf = [0u8; 2048];
                    loop {
                        match socket.recv_from(&mut buf) {
                            Ok((_, from)) => {
                                let _ = socket.send_to(&greeting, from);
                            }
                            Err(e) => {
                                eprintln!("receive on {addr}/udp: {e}");
                                std::thread::sleep(Duration::from_millis(50));
                            }
                        }
                    }
                }));
            }
        }
    }
    std::fs::write(ready, std::process::id().to_string())
        .with_context(|| format!("writing {}", ready.display()))?;
    for worker in workers {
        let _ = worker.join();
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_ports_argument_round_trips() {
        let ports = vec![
            (80, Transport::Tcp),
            (80, Transport::Udp),
            (8080, Transport::Tcp),
        ];
        assert_eq!(ports_arg(&ports), "80/tcp,80/udp,8080/tcp");
        assert_eq!(parse_ports_arg("80/tcp,80/udp,8080/tcp").unwrap(), ports);
        assert!(parse_ports_arg("80").is_err());
        assert!(parse_ports_arg("80/sctp").is_err());
        assert!(parse_ports_arg("x/tcp").is_err());
    }
}
