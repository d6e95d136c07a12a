//! `calico-lab serve-pod`: the small server every pod runs so `calico-lab probe` can tell which pods
//! reach which. Inside the pod's namespace it answers on each of its ports, TCP, UDP and SCTP: a TCP
//! connection gets the pod's name and is closed; a UDP datagram is answered with the pod's name; an
//! SCTP INIT is answered, from a raw socket (the kernel may have no SCTP), with an INIT-ACK whose State
//! Cookie is the pod's name, or with an ABORT when the port is not one of its SCTP ports. One
//! process per pod, on plain threads (a few hundred kilobytes each), stopped when the pod is deleted
//! so it never keeps a deleted pod's namespace alive.

use std::io::Write;
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4, TcpListener, UdpSocket};
use std::os::fd::{AsRawFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use anyhow::{Context, Result};
use nix::sys::socket::{
    AddressFamily, MsgFlags, SockFlag, SockProtocol, SockType, SockaddrIn, recvfrom, sendto, socket,
};

use crate::netns;
use crate::paths::Lab;
use crate::procs;
use crate::sctp;
use crate::state::{PodState, SERVED_PORT, Transport};

/// How long a server may take to listen on its ports.
const START_LIMIT: Duration = Duration::from_secs(10);

/// What the server of `pod` listens on: [`SERVED_PORT`] over TCP, UDP and SCTP, and its named ports.
pub fn ports_of(pod: &PodState) -> Vec<(u16, Transport)> {
    let mut ports = vec![
        (SERVED_PORT, Transport::Tcp),
        (SERVED_PORT, Transport::Udp),
        (SERVED_PORT, Transport::Sctp),
    ];
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
                .with_context(|| format!("{item:?}: protocol is not tcp, udp or sctp"))?;
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
    let ready = ready_file(lab, &pod.name);
    let pid = procs::spawn_until_ready(
        command,
        &lab.name,
        &lab.dir().join(format!("{}.server.log", pod.name)),
        &ready,
        START_LIMIT,
        &format!("the probe server of {}", pod.name),
    )?;
    let _ = std::fs::remove_file(&ready);
    Ok(pid)
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
    let name = pod.as_bytes().to_vec();
    ns.run(move || serve(&greeting, &name, &ports, &ready))?
}

fn serve(greeting: &[u8], name: &[u8], ports: &[(u16, Transport)], ready: &Path) -> Result<()> {
    let mut workers = Vec::new();
    // One raw socket answers every SCTP INIT to the pod: an INIT-ACK on its SCTP ports, an ABORT on
    // the others, so the kernel (which answers SCTP with ICMP protocol unreachable while no raw
    // socket takes it) never does.
    let sctp_ports: Vec<u16> = ports
        .iter()
        .filter(|(_, t)| *t == Transport::Sctp)
        .map(|(p, _)| *p)
        .collect();
    let socket = sctp_socket().context("opening a raw SCTP socket")?;
    let cookie = name.to_vec();
    workers.push(std::thread::spawn(move || {
        answer_sctp(&socket, &sctp_ports, &cookie)
    }));
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
            // Answered by the raw socket above.
            Transport::Sctp => {}
        }
    }
    std::fs::write(ready, std::process::id().to_string())
        .with_context(|| format!("writing {}", ready.display()))?;
    for worker in workers {
        let _ = worker.join();
    }
    Ok(())
}

/// A raw IPv4 socket for protocol 132: every SCTP packet to the namespace, IP header included.
pub fn sctp_socket() -> Result<OwnedFd> {
    socket(
        AddressFamily::Inet,
        SockType::Raw,
        SockFlag::SOCK_CLOEXEC,
        SockProtocol::Sctp,
    )
    .context("socket(AF_INET, SOCK_RAW, IPPROTO_SCTP)")
}

fn answer_sctp(socket: &OwnedFd, ports: &[u16], cookie: &[u8]) {
    let mut buf = [0u8; 2048];
    loop {
        let n = match recvfrom::<SockaddrIn>(socket.as_raw_fd(), &mut buf) {
            Ok((n, _)) => n,
            Err(e) => {
                eprintln!("receive on the raw SCTP socket: {e}");
                std::thread::sleep(Duration::from_millis(50));
                continue;
            }
        };
        let Some(packet) = sctp::parse_ipv4(&buf[..n]) else {
            continue;
        };
        if packet.verification_tag != 0 {
            continue;
        }
        let answer = if ports.contains(&packet.destination_port) {
            sctp::init_ack(&packet, rand::random::<u32>() | 1, cookie)
        } else {
            sctp::abort(&packet)
        };
        let Some(answer) = answer else {
            continue;
        };
        let to = SockaddrIn::from(SocketAddrV4::new(packet.source, 0));
        if let Err(e) = sendto(socket.as_raw_fd(), &answer, &to, MsgFlags::empty()) {
            eprintln!("answering {} over SCTP: {e}", packet.source);
        }
    }
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
        assert_eq!(
            parse_ports_arg("80/sctp").unwrap(),
            vec![(80, Transport::Sctp)]
        );
        assert!(parse_ports_arg("80/icmp").is_err());
        assert!(parse_ports_arg("x/tcp").is_err());
    }
}
