//! The NETLINK_ROUTE socket: request/reply exchange, multipart dumps, ACKs and kernel errors.

use std::time::Duration;

use netlink_packet_core::{
    NLM_F_ACK, NLM_F_ACK_TLVS, NLM_F_CAPPED, NLM_F_DUMP, NLM_F_DUMP_INTR, NLM_F_REQUEST,
    NLMSG_DONE, NLMSG_ERROR, NetlinkBuffer, NetlinkHeader, NetlinkMessage, NetlinkPayload,
};
use netlink_packet_route::RouteNetlinkMessage;
use netlink_sys::{SocketAddr, protocols::NETLINK_ROUTE};
use nix::sys::socket::{setsockopt, sockopt::ReceiveTimeout};
use nix::sys::time::TimeVal;

use crate::{NetlinkError, Netns};

/// A kernel that has not answered within this time is treated as an error rather than hanging the caller.
const REPLY_TIMEOUT: Duration = Duration::from_secs(15);
/// Large enough that big dumps (many routes/neighbours) are not dropped with ENOBUFS.
const RECEIVE_BUFFER_BYTES: usize = 4 << 20;
/// A dump the kernel reports as inconsistent (NLM_F_DUMP_INTR) is retried this many times.
const DUMP_ATTEMPTS: usize = 5;
/// Length of `struct nlmsghdr`.
const NLMSG_HEADER_LEN: usize = 16;
/// `NLMSGERR_ATTR_MSG`: the extended-ACK attribute holding a human-readable message.
const NLMSGERR_ATTR_MSG: u16 = 1;

/// A NETLINK_ROUTE socket, bound to the network namespace it was opened in.
///
/// Not shared between threads; give each thread its own (sockets are cheap) or wrap it in a mutex.
pub struct Netlink {
    socket: netlink_sys::Socket,
    sequence: u32,
    /// Requests sent to the kernel (each write, and each dump, counts one).
    sent: u64,
}

/// Why an exchange failed, before the caller names the operation.
#[derive(Debug)]
pub(crate) enum Failure {
    Errno { errno: i32, detail: Option<String> },
    Io(String),
    DumpInterrupted,
}

impl Failure {
    pub(crate) fn into_error(self, op: String) -> NetlinkError {
        match self {
            Failure::Errno { errno, detail } => {
                NetlinkError::from_errno_with_detail(op, errno, detail)
            }
            Failure::Io(message) => NetlinkError::Io(format!("{op}: {message}")),
            Failure::DumpInterrupted => NetlinkError::Io(format!(
                "{op}: the kernel's dump was interrupted by concurrent changes {DUMP_ATTEMPTS} times"
            )),
        }
    }

    pub(crate) fn errno(&self) -> Option<i32> {
        match self {
            Failure::Errno { errno, .. } => Some(*errno),
            _ => None,
        }
    }
}

impl Netlink {
    /// Opens a socket in the calling thread's network namespace.
    pub fn new() -> Result<Self, NetlinkError> {
        let io = |what: &str, e: std::io::Error| {
            NetlinkError::Io(format!("open netlink socket: {what}: {e}"))
        };
        let mut socket = netlink_sys::Socket::new(NETLINK_ROUTE).map_err(|e| io("socket", e))?;
        socket.bind_auto().map_err(|e| io("bind", e))?;
        // Best effort: these only improve error messages and resilience; old kernels may lack them.
        let _ = socket.set_ext_ack(true);
        let _ = socket.set_cap_ack(true);
        let _ = socket.set_rx_buf_sz(RECEIVE_BUFFER_BYTES);
        // Strict checking: dump requests that name a table, link or interface are filtered by the
        // kernel, which then sends only what matches instead of the whole table. A kernel without it
        // (before 4.20) sends everything, so callers filter the replies as well.
        let _ = socket.set_netlink_get_strict_chk(true);
        let timeout = TimeVal::new(REPLY_TIMEOUT.as_secs() as _, 0);
        setsockopt(&socket, ReceiveTimeout, &timeout).map_err(|e| {
            NetlinkError::Io(format!("open netlink socket: set receive timeout: {e}"))
        })?;
        Ok(Self {
            socket,
            sequence: 0,
            sent: 0,
        })
    }

    /// Opens a socket inside `ns` (on a short-lived thread that entered it). The socket stays bound to `ns`
    /// and can be used from any thread afterwards.
    pub fn in_netns(ns: &Netns) -> Result<Self, NetlinkError> {
        ns.run(Netlink::new)?
    }

    /// How many requests this socket has sent to the kernel (writes and dumps alike).
    pub fn requests_sent(&self) -> u64 {
        self.sent
    }

    /// Sends a request that expects an ACK (or replies followed by an ACK) and returns the replies.
    pub(crate) fn request(
        &mut self,
        message: RouteNetlinkMessage,
        flags: u16,
    ) -> Result<Vec<RouteNetlinkMessage>, Failure> {
        self.exchange(message, flags | NLM_F_ACK, false)
    }

    /// Dumps a table, retrying when the kernel marks the dump inconsistent.
    pub(crate) fn dump(
        &mut self,
        message: RouteNetlinkMessage,
    ) -> Result<Vec<RouteNetlinkMessage>, Failure> {
        for _ in 0..DUMP_ATTEMPTS {
            match self.exchange(message.clone(), NLM_F_DUMP, true) {
                Err(Failure::DumpInterrupted) => continue,
                other => return other,
            }
        }
        Err(Failure::DumpInterrupted)
    }

    /// Converts a failure into an error naming the operation; `describe` runs only on failure, so it may
    /// itself query the kernel (e.g. to turn an interface index into a name).
    pub(crate) fn named<T>(
        &mut self,
        result: Result<T, Failure>,
        describe: impl FnOnce(&mut Self) -> String,
    ) -> Result<T, NetlinkError> {
        match result {
            Ok(value) => Ok(value),
            Err(failure) => Err(failure.into_error(describe(self))),
        }
    }

    fn exchange(
        &mut self,
        message: RouteNetlinkMessage,
        flags: u16,
        dump: bool,
    ) -> Result<Vec<RouteNetlinkMessage>, Failure> {
        self.sequence = self.sequence.wrapping_add(1).max(1);
        let sequence = self.sequence;
        let mut header = NetlinkHeader::default();
        header.flags = NLM_F_REQUEST | flags;
        header.sequence_number = sequence;
        let mut packet = NetlinkMessage::new(header, NetlinkPayload::InnerMessage(message));
        packet.finalize();
        let mut bytes = vec![0u8; packet.buffer_len()];
        packet.serialize(&mut bytes);
        let kernel = SocketAddr::new(0, 0);
        self.socket
            .send_to(&bytes, &kernel, 0)
            .map_err(|e| Failure::Io(format!("send to kernel: {e}")))?;
        self.sent += 1;

        let mut replies = Vec::new();
        let mut decode_error = None;
        let mut interrupted = false;
        loop {
            let (datagram, _) = self.socket.recv_from_full().map_err(|e| match e.kind() {
                std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut => {
                    Failure::Io(format!(
                        "no reply from the kernel within {}s",
                        REPLY_TIMEOUT.as_secs()
                    ))
                }
                _ => Failure::Io(format!("receive from kernel: {e}")),
            })?;
            let mut offset = 0;
            // One datagram may carry several messages, each padded to 4 bytes.
            while datagram.len() - offset >= NLMSG_HEADER_LEN {
                let rest = &datagram[offset..];
                let buffer = NetlinkBuffer::new_checked(rest)
                    .map_err(|e| Failure::Io(format!("malformed netlink message: {e}")))?;
                let length = buffer.length() as usize;
                let (message_type, message_flags) = (buffer.message_type(), buffer.flags());
                offset += (length + 3) & !3;
                if buffer.sequence_number() != sequence {
                    // A late reply to an earlier request that was abandoned (e.g. after a timeout).
                    continue;
                }
                if message_flags & NLM_F_DUMP_INTR != 0 {
                    interrupted = true;
                }
                let parsed = NetlinkMessage::<RouteNetlinkMessage>::deserialize(&rest[..length]);
                let payload = match parsed {
                    Ok(message) => message.payload,
                    Err(e) if message_type == NLMSG_ERROR || message_type == NLMSG_DONE => {
                        return Err(Failure::Io(format!("malformed reply from the kernel: {e}")));
                    }
                    Err(e) => {
                        // Keep reading to the end of the reply so the socket stays in step, then report.
                        decode_error.get_or_insert_with(|| {
                            format!("cannot decode a reply from the kernel: {e}")
                        });
                        continue;
                    }
                };
                match payload {
                    NetlinkPayload::InnerMessage(inner) => replies.push(inner),
                    NetlinkPayload::Error(error) => {
                        if let Some(code) = error.code {
                            let detail = extended_ack_after_request(&error.header, message_flags);
                            return Err(Failure::Errno {
                                errno: code.get().abs(),
                                detail,
                            });
                        }
                        return finish(replies, decode_error, interrupted);
                    }
                    NetlinkPayload::Done(done) if dump => {
                        if done.code != 0 {
                            let detail = extended_ack_message(&done.extended_ack);
                            return Err(Failure::Errno {
                                errno: done.code.abs(),
                                detail,
                            });
                        }
                        return finish(replies, decode_error, interrupted);
                    }
                    NetlinkPayload::Overrun(_) => {
                        return Err(Failure::Io(
                            "the kernel reported a receive buffer overrun".to_string(),
                        ));
                    }
                    _ => {}
                }
            }
        }
    }
}

fn finish(
    replies: Vec<RouteNetlinkMessage>,
    decode_error: Option<String>,
    interrupted: bool,
) -> Result<Vec<RouteNetlinkMessage>, Failure> {
    if interrupted {
        return Err(Failure::DumpInterrupted);
    }
    match decode_error {
        Some(message) => Err(Failure::Io(message)),
        None => Ok(replies),
    }
}

/// The payload of NLMSG_ERROR after the error code: the original request (only its header when
/// NLM_F_CAPPED), followed by extended-ACK attributes when NLM_F_ACK_TLVS is set.
fn extended_ack_after_request(payload: &[u8], flags: u16) -> Option<String> {
    if flags & NLM_F_ACK_TLVS == 0 || payload.len() < NLMSG_HEADER_LEN {
        return None;
    }
    let request_len = if flags & NLM_F_CAPPED != 0 {
        NLMSG_HEADER_LEN
    } else {
        u32::from_ne_bytes([payload[0], payload[1], payload[2], payload[3]]) as usize
    };
    payload
        .get((request_len + 3) & !3..)
        .and_then(extended_ack_message)
}

/// Finds NLMSGERR_ATTR_MSG in a run of netlink attributes.
fn extended_ack_message(mut attributes: &[u8]) -> Option<String> {
    while attributes.len() >= 4 {
        let length = u16::from_ne_bytes([attributes[0], attributes[1]]) as usize;
        let kind = u16::from_ne_bytes([attributes[2], attributes[3]]) & 0x3fff;
        if length < 4 || length > attributes.len() {
            return None;
        }
        if kind == NLMSGERR_ATTR_MSG {
            let text = &attributes[4..length];
            let text = text.split(|b| *b == 0).next().unwrap_or_default();
            return Some(String::from_utf8_lossy(text).into_owned());
        }
        attributes = attributes.get((length + 3) & !3..).unwrap_or_default();
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_extended_ack_message() {
        let mut attributes = Vec::new();
        // An unrelated attribute (NLMSGERR_ATTR_OFFS = 2, u32) first, then the message.
        attributes.extend_from_slice(&8u16.to_ne_bytes());
        attributes.extend_from_slice(&2u16.to_ne_bytes());
        attributes.extend_from_slice(&40u32.to_ne_bytes());
        let text = b"Nexthop has invalid gateway\0";
        attributes.extend_from_slice(&((4 + text.len()) as u16).to_ne_bytes());
        attributes.extend_from_slice(&NLMSGERR_ATTR_MSG.to_ne_bytes());
        attributes.extend_from_slice(text);
        assert_eq!(
            extended_ack_message(&attributes).as_deref(),
            Some("Nexthop has invalid gateway")
        );
        assert_eq!(extended_ack_message(&attributes[..8]), None);
        // A length field pointing past the end is not trusted.
        assert_eq!(extended_ack_message(&[200, 0, 1, 0, b'x']), None);
    }
}
