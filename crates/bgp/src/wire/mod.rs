//! The BGP-4 message codec, free of I/O.
//!
//! [`frame`] finds message boundaries in a byte stream; [`decode`] turns one message into a
//! [`Message`] or a [`DecodeError`] that says what RFC 4271 §6 and RFC 7606 require: the
//! NOTIFICATION to send before closing, or (for UPDATEs) treat-as-withdraw with the prefixes
//! affected. Attribute discards are reported beside the decoded message. [`encode`] writes a
//! message for the negotiated [`Context`].

mod attr;
mod capability;
mod notification;
mod open;
mod reader;
mod update;

pub use attr::{
    AS_TRANS, Aggregator, AsPath, AsSegment, LargeCommunity, Origin, PathAttributes, RawAttribute,
    SegmentKind,
};
pub use capability::{
    AddPathFamily, AddPathMode, CAP_ADD_PATH, CAP_EXTENDED_MESSAGE, CAP_FOUR_OCTET_AS,
    CAP_GRACEFUL_RESTART, CAP_MULTIPROTOCOL, CAP_ROUTE_REFRESH, Capability, GrFamily,
    GracefulRestart,
};
pub use notification::{Notification, code};
pub use open::Open;
pub use update::{MpReach, MpUnreach, NextHop, Nlri, Update};

use reader::Reader;

/// Message header: 16-octet marker, 2-octet length, 1-octet type.
pub const HEADER_LEN: usize = 19;
/// Largest message without the extended-message capability (RFC 4271).
pub const MAX_MESSAGE_LEN: usize = 4096;
/// Largest message when both sides advertised extended messages (RFC 8654).
pub const MAX_EXTENDED_MESSAGE_LEN: usize = 65535;

pub const MSG_OPEN: u8 = 1;
pub const MSG_UPDATE: u8 = 2;
pub const MSG_NOTIFICATION: u8 = 3;
pub const MSG_KEEPALIVE: u8 = 4;
pub const MSG_ROUTE_REFRESH: u8 = 5;

pub const AFI_IPV4: u16 = 1;
pub const AFI_IPV6: u16 = 2;
pub const SAFI_UNICAST: u8 = 1;

/// An address family and subsequent address family (RFC 4760). Kept as raw numbers so that
/// capabilities for families we do not speak still round-trip.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Family {
    pub afi: u16,
    pub safi: u8,
}

impl Family {
    pub const IPV4_UNICAST: Family = Family {
        afi: AFI_IPV4,
        safi: SAFI_UNICAST,
    };
    pub const IPV6_UNICAST: Family = Family {
        afi: AFI_IPV6,
        safi: SAFI_UNICAST,
    };

    /// Whether this codec can parse NLRI of this family.
    pub fn is_supported(self) -> bool {
        self == Family::IPV4_UNICAST || self == Family::IPV6_UNICAST
    }
}

/// What was negotiated for one direction of a session; decoding and encoding depend on it.
/// Before the OPEN exchange completes, use `Context::default()`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Context {
    /// Both sides advertised the 4-octet AS capability (RFC 6793).
    pub four_octet_as: bool,
    /// Both sides advertised extended messages (RFC 8654).
    pub extended_message: bool,
    /// Families whose NLRI carry a path identifier in this direction (RFC 7911).
    pub add_path: Vec<Family>,
}

impl Context {
    /// The largest UPDATE, NOTIFICATION or ROUTE-REFRESH allowed in this context.
    pub fn max_message_len(&self) -> usize {
        if self.extended_message {
            MAX_EXTENDED_MESSAGE_LEN
        } else {
            MAX_MESSAGE_LEN
        }
    }

    pub fn add_path(&self, family: Family) -> bool {
        self.add_path.contains(&family)
    }
}

/// ROUTE-REFRESH (RFC 2918); the subtype is RFC 7313's (0 for a plain request).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RouteRefresh {
    pub family: Family,
    pub subtype: u8,
}

// UPDATEs are most of the traffic: boxing them would cost an allocation per message to save
// stack space in the rarer ones.
#[allow(clippy::large_enum_variant)]
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Message {
    Open(Open),
    Update(Update),
    Notification(Notification),
    Keepalive,
    RouteRefresh(RouteRefresh),
}

impl Message {
    pub fn kind(&self) -> &'static str {
        match self {
            Message::Open(_) => "OPEN",
            Message::Update(_) => "UPDATE",
            Message::Notification(_) => "NOTIFICATION",
            Message::Keepalive => "KEEPALIVE",
            Message::RouteRefresh(_) => "ROUTE-REFRESH",
        }
    }

    /// Encodes to a fresh buffer.
    pub fn to_bytes(&self, ctx: &Context) -> Result<Vec<u8>, EncodeError> {
        let mut out = Vec::new();
        encode(self, ctx, &mut out)?;
        Ok(out)
    }
}

/// A decoded message, with the attributes RFC 7606 says to discard (each with the error that
/// RFC 4271 would have sent, for logs).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Decoded {
    pub message: Message,
    pub discarded: Vec<Notification>,
}

/// Why a message could not be accepted as it is.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    /// Send this NOTIFICATION and close the session (RFC 4271 §6; RFC 7606 "session reset").
    #[error("session reset: {0}")]
    Reset(Notification),
    /// RFC 7606 treat-as-withdraw: the session stays up and every prefix the UPDATE carried,
    /// reachable or not, is withdrawn. `reason` is the error RFC 4271 would have sent.
    #[error("treat-as-withdraw of {} prefixes: {reason}", withdrawn.len())]
    TreatAsWithdraw {
        withdrawn: Vec<Nlri>,
        reason: Notification,
    },
}

impl DecodeError {
    pub(crate) fn reset(code: u8, subcode: u8, data: impl Into<Vec<u8>>) -> Self {
        DecodeError::Reset(Notification::new(code, subcode, data))
    }
}

#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum EncodeError {
    #[error("{kind} of {len} bytes exceeds the maximum of {max}")]
    TooLong {
        kind: &'static str,
        len: usize,
        max: usize,
    },
    #[error("{0}")]
    Invalid(&'static str),
}

/// Looks for one complete message at the start of `buf` (a stream of received bytes).
/// Returns its length once it is all there, `None` while more bytes are needed, or the
/// NOTIFICATION to send when the header is already wrong (bad marker or length field).
pub fn frame(buf: &[u8], ctx: &Context) -> Result<Option<usize>, Notification> {
    if buf.len() < HEADER_LEN {
        // A wrong marker can be seen before the header is complete.
        if buf.iter().take(16).any(|&b| b != 0xff) {
            return Err(Notification::new(
                code::MESSAGE_HEADER,
                code::CONNECTION_NOT_SYNCHRONIZED,
                [],
            ));
        }
        return Ok(None);
    }
    check_header(buf, ctx)?;
    let len = usize::from(u16::from_be_bytes([buf[16], buf[17]]));
    Ok(if buf.len() >= len { Some(len) } else { None })
}

/// Marker, length bounds for the type, and a known type.
fn check_header(buf: &[u8], ctx: &Context) -> Result<(), Notification> {
    if buf[..16].iter().any(|&b| b != 0xff) {
        return Err(Notification::new(
            code::MESSAGE_HEADER,
            code::CONNECTION_NOT_SYNCHRONIZED,
            [],
        ));
    }
    let len_field = [buf[16], buf[17]];
    let len = usize::from(u16::from_be_bytes(len_field));
    let kind = buf[18];
    let bad_len = || Notification::new(code::MESSAGE_HEADER, code::BAD_MESSAGE_LENGTH, len_field);
    let (min, max) = match kind {
        MSG_OPEN => (29, MAX_MESSAGE_LEN),
        MSG_UPDATE => (23, ctx.max_message_len()),
        MSG_NOTIFICATION => (21, ctx.max_message_len()),
        MSG_KEEPALIVE => (HEADER_LEN, HEADER_LEN),
        MSG_ROUTE_REFRESH => (23, 23),
        other => {
            // The length is checked first: a bad length makes the type byte untrustworthy.
            if !(HEADER_LEN..=ctx.max_message_len()).contains(&len) {
                return Err(bad_len());
            }
            return Err(Notification::new(
                code::MESSAGE_HEADER,
                code::BAD_MESSAGE_TYPE,
                [other],
            ));
        }
    };
    if len < min || len > max {
        return Err(bad_len());
    }
    Ok(())
}

/// Decodes exactly one message (header included), as cut by [`frame`].
pub fn decode(msg: &[u8], ctx: &Context) -> Result<Decoded, DecodeError> {
    if msg.len() < HEADER_LEN {
        let len = u16::try_from(msg.len()).unwrap_or(u16::MAX);
        return Err(DecodeError::reset(
            code::MESSAGE_HEADER,
            code::BAD_MESSAGE_LENGTH,
            len.to_be_bytes(),
        ));
    }
    check_header(msg, ctx).map_err(DecodeError::Reset)?;
    let len = usize::from(u16::from_be_bytes([msg[16], msg[17]]));
    if len != msg.len() {
        return Err(DecodeError::reset(
            code::MESSAGE_HEADER,
            code::BAD_MESSAGE_LENGTH,
            [msg[16], msg[17]],
        ));
    }
    let body = &msg[HEADER_LEN..];
    let plain = |message| {
        Ok(Decoded {
            message,
            discarded: Vec::new(),
        })
    };
    match msg[18] {
        MSG_OPEN => plain(Message::Open(open::decode(body)?)),
        MSG_UPDATE => {
            let (update, discarded) = update::decode(body, ctx)?;
            Ok(Decoded {
                message: Message::Update(update),
                discarded,
            })
        }
        MSG_NOTIFICATION => {
            let mut r = Reader::new(body);
            let (Some(code), Some(subcode)) = (r.u8(), r.u8()) else {
                return Err(DecodeError::reset(
                    code::MESSAGE_HEADER,
                    code::BAD_MESSAGE_LENGTH,
                    [msg[16], msg[17]],
                ));
            };
            plain(Message::Notification(Notification::new(
                code,
                subcode,
                r.rest(),
            )))
        }
        MSG_KEEPALIVE => plain(Message::Keepalive),
        MSG_ROUTE_REFRESH => {
            let mut r = Reader::new(body);
            match (r.u16(), r.u8(), r.u8()) {
                (Some(afi), Some(subtype), Some(safi)) => {
                    plain(Message::RouteRefresh(RouteRefresh {
                        family: Family { afi, safi },
                        subtype,
                    }))
                }
                _ => Err(DecodeError::reset(
                    code::MESSAGE_HEADER,
                    code::BAD_MESSAGE_LENGTH,
                    [msg[16], msg[17]],
                )),
            }
        }
        other => Err(DecodeError::reset(
            code::MESSAGE_HEADER,
            code::BAD_MESSAGE_TYPE,
            [other],
        )),
    }
}

/// Appends the encoded message to `out`.
pub fn encode(msg: &Message, ctx: &Context, out: &mut Vec<u8>) -> Result<(), EncodeError> {
    let start = out.len();
    let result = encode_at(msg, ctx, out, start);
    if result.is_err() {
        // Leave no half-written message behind.
        out.truncate(start);
    }
    result
}

/// The encoded length of an UPDATE message, or `None` when it cannot be encoded or is longer
/// than `ctx` allows (as [`encode`] would refuse it); `scratch` is reused, so measuring
/// neither copies the UPDATE nor allocates each time.
pub(crate) fn update_len(u: &Update, ctx: &Context, scratch: &mut Vec<u8>) -> Option<usize> {
    scratch.clear();
    update::encode(u, ctx, scratch).ok()?;
    let len = HEADER_LEN + scratch.len();
    (len <= ctx.max_message_len()).then_some(len)
}

fn encode_at(
    msg: &Message,
    ctx: &Context,
    out: &mut Vec<u8>,
    start: usize,
) -> Result<(), EncodeError> {
    out.extend_from_slice(&[0xff; 16]);
    out.extend_from_slice(&[0, 0]);
    let (kind, max) = match msg {
        Message::Open(o) => {
            out.push(MSG_OPEN);
            open::encode(o, out)?;
            (MSG_OPEN, MAX_MESSAGE_LEN)
        }
        Message::Update(u) => {
            out.push(MSG_UPDATE);
            update::encode(u, ctx, out)?;
            (MSG_UPDATE, ctx.max_message_len())
        }
        Message::Notification(n) => {
            out.push(MSG_NOTIFICATION);
            out.push(n.code);
            out.push(n.subcode);
            out.extend_from_slice(&n.data);
            (MSG_NOTIFICATION, ctx.max_message_len())
        }
        Message::Keepalive => {
            out.push(MSG_KEEPALIVE);
            (MSG_KEEPALIVE, HEADER_LEN)
        }
        Message::RouteRefresh(rr) => {
            out.push(MSG_ROUTE_REFRESH);
            out.extend_from_slice(&rr.family.afi.to_be_bytes());
            out.push(rr.subtype);
            out.push(rr.family.safi);
            (MSG_ROUTE_REFRESH, 23)
        }
    };
    let len = out.len() - start;
    if len > max {
        let kind = match kind {
            MSG_OPEN => "OPEN",
            MSG_UPDATE => "UPDATE",
            _ => "NOTIFICATION",
        };
        return Err(EncodeError::TooLong { kind, len, max });
    }
    // `len <= max <= 65535` here, so the conversion cannot fail.
    let len16 = u16::try_from(len).map_err(|_| EncodeError::Invalid("message length"))?;
    out[start + 16..start + 18].copy_from_slice(&len16.to_be_bytes());
    Ok(())
}
