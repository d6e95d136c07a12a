//! The one HTTP request the lab needs (a GET for a health endpoint), spoken by hand over a TCP stream,
//! optionally opened inside a network namespace.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use anyhow::{Context, Result};
use calico_netlink::Netns;

/// GET `path` from `addr`; returns the status code. The connection is opened inside `ns` when given (the
/// socket belongs to the namespace it was created in, so the rest can happen on this thread).
pub fn get_status(
    ns: Option<&Netns>,
    addr: SocketAddr,
    path: &str,
    limit: Duration,
) -> Result<u16> {
    let connect = || TcpStream::connect_timeout(&addr, limit);
    let mut stream = match ns {
        Some(ns) => ns.run(connect)?,
        None => connect(),
    }
    .with_context(|| format!("connecting to {addr}"))?;
    stream.set_read_timeout(Some(limit))?;
    stream.set_write_timeout(Some(limit))?;
    let request = format!(
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nUser-Agent: calico-lab\r\n\r\n"
    );
    stream.write_all(request.as_bytes())?;
    let mut head = Vec::new();
    let mut buf = [0u8; 512];
    // The status line is all we need.
    while !head.contains(&b'\n') {
        let n = stream.read(&mut buf)?;
        if n == 0 {
            break;
        }
        head.extend_from_slice(&buf[..n]);
    }
    let text = String::from_utf8_lossy(&head);
    let line = text.lines().next().unwrap_or_default();
    line.split_whitespace()
        .nth(1)
        .and_then(|code| code.parse().ok())
        .with_context(|| format!("bad HTTP response from {addr}{path}: {line:?}"))
}
