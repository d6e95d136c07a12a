//! `calico-lab relay`: makes the root namespace's etcd reachable at 127.0.0.1:<port> inside every host
//! namespace. Each listener is opened inside its namespace (a socket stays in the namespace it was made
//! in); each accepted connection is forwarded to etcd from the relay's own (root) namespace.

use std::net::{Ipv4Addr, SocketAddr};

use anyhow::{Context, Result};
use tokio::net::{TcpListener, TcpStream};

use crate::netns;
use crate::paths::Lab;

pub fn run(lab: &Lab, port: u16, namespaces: &[String]) -> Result<()> {
    let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    let mut listeners = Vec::new();
    for name in namespaces {
        let ns = netns::open(name)?;
        let listener = ns
            .run(|| {
                let listener = std::net::TcpListener::bind(addr)?;
                listener.set_nonblocking(true)?;
                Ok::<_, std::io::Error>(listener)
            })?
            .with_context(|| format!("listening on {addr} in {name}"))?;
        listeners.push((name.clone(), listener));
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    runtime.block_on(async move {
        let mut tasks = Vec::new();
        for (name, listener) in listeners {
            let listener = TcpListener::from_std(listener)
                .with_context(|| format!("registering the listener in {name}"))?;
            tasks.push(tokio::spawn(serve(name, listener, addr)));
        }
        let ready = lab.dir().join("relay.ready");
        std::fs::write(&ready, std::process::id().to_string())
            .with_context(|| format!("writing {}", ready.display()))?;
        eprintln!(
            "relay: forwarding 127.0.0.1:{port} in {} namespaces to etcd",
            tasks.len()
        );
        for task in tasks {
            let _ = task.await;
        }
        Ok(())
    })
}

async fn serve(name: String, listener: TcpListener, upstream: SocketAddr) {
    loop {
        let (mut inbound, _) = match listener.accept().await {
            Ok(conn) => conn,
            Err(e) => {
                eprintln!("relay: accept in {name}: {e}");
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                continue;
            }
        };
        tokio::spawn(async move {
            match TcpStream::connect(upstream).await {
                Ok(mut outbound) => {
                    let _ = inbound.set_nodelay(true);
                    let _ = outbound.set_nodelay(true);
                    let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                }
                Err(e) => eprintln!("relay: connecting to etcd at {upstream}: {e}"),
            }
        });
    }
}
