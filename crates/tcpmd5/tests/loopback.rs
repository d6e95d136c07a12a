//! TCP-MD5 on loopback: with the same key on both ends the connection opens and carries data;
//! with a different key, or none, the listener's kernel drops the SYNs and no connection
//! opens (we give it 3 s, more than the first SYN retransmission at 1 s).

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Duration;

use calico_tcpmd5::{remove_key, set_key};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpSocket, TcpStream};

const LO: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);

async fn keyed_listener(key: &[u8]) -> TcpListener {
    let socket = TcpSocket::new_v4().expect("socket");
    socket.bind(SocketAddr::new(LO, 0)).expect("bind");
    set_key(&socket, LO, key).expect("TCP_MD5SIG on the listener (kernel CONFIG_TCP_MD5SIG)");
    socket.listen(16).expect("listen")
}

async fn connect(to: SocketAddr, key: Option<&[u8]>) -> std::io::Result<TcpStream> {
    let socket = TcpSocket::new_v4()?;
    if let Some(k) = key {
        set_key(&socket, LO, k).expect("TCP_MD5SIG on the client");
    }
    socket.connect(to).await
}

#[tokio::test]
async fn matching_keys_connect_and_carry_data() {
    let listener = keyed_listener(b"calico-bgp-test").await;
    let addr = listener.local_addr().expect("addr");
    let (client, server) = tokio::join!(connect(addr, Some(b"calico-bgp-test")), listener.accept());
    let mut client = client.expect("signed connect");
    let (mut server, _) = server.expect("accept");
    client.write_all(b"OPEN").await.expect("write");
    let mut buf = [0u8; 4];
    server.read_exact(&mut buf).await.expect("read");
    assert_eq!(&buf, b"OPEN");
}

#[tokio::test]
async fn a_wrong_key_or_none_never_connects() {
    let listener = keyed_listener(b"calico-bgp-test").await;
    let addr = listener.local_addr().expect("addr");
    for key in [Some(&b"another-password"[..]), None] {
        let attempt = tokio::time::timeout(Duration::from_secs(3), connect(addr, key)).await;
        assert!(
            attempt.is_err(),
            "connect with key {key:?} finished: {attempt:?}"
        );
    }
    // Nothing was queued for accept either.
    let accepted = tokio::time::timeout(Duration::from_millis(100), listener.accept()).await;
    assert!(accepted.is_err(), "{accepted:?}");
}

#[tokio::test]
async fn a_removed_key_lets_unsigned_peers_in() {
    let listener = keyed_listener(b"calico-bgp-test").await;
    remove_key(&listener, LO).expect("remove key");
    let addr = listener.local_addr().expect("addr");
    let (client, server) = tokio::join!(connect(addr, None), listener.accept());
    client.expect("unsigned connect after removal");
    server.expect("accept");
}
