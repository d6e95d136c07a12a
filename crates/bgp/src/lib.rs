//! calico-rs's own BGP-4 speaker.
//!
//! The protocol core is free of I/O so that every rule can be tested without sockets:
//!
//! - [`wire`]: the message codec (RFC 4271 messages, RFC 2918 route refresh, the capabilities and
//!   path attributes of RFC 4760, 6793, 4724, 7911, 8654, 1997, 8092 and 4456). Decoding never
//!   panics; a malformed message yields the NOTIFICATION to send or the RFC 7606 outcome.
//! - [`session`]: the RFC 4271 finite state machine for one peer. Events (start/stop, TCP
//!   connection changes, decoded messages, timer expiries) go in with the current time; actions
//!   (send, arm or cancel a timer, close, session up/down, routes received) come out.
//!
//! - [`rib`]: Adj-RIB-In per peer, the Loc-RIB with the RFC 4271 decision process and ECMP,
//!   graceful-restart stale handling, and per-peer export (iBGP split horizon, RFC 4456 route
//!   reflection, next-hop and AS-path rules) with an Adj-RIB-Out and UPDATE packing.
//! - [`policy`]: route filters of the kind Calico's `BGPFilter` expresses (prefix, source,
//!   community and AS-path conditions; community and AS-path operations).
//! - [`speaker`]: the API calico-node uses: a [`speaker::Speaker`] with its peers, originated
//!   prefixes, a stream of best-path changes and per-peer status, on a RIB task and one task
//!   per session.
//!
//! A later layer drives these over TCP with tokio: it frames and decodes bytes with the
//! negotiated [`wire::Context`], feeds [`session::Session`], passes received routes to
//! [`rib::Rib`], and sends what [`rib::export()`] and [`rib::pack()`] produce.

pub mod net;
pub mod policy;
pub mod rib;
pub mod session;
pub mod speaker;
pub mod wire;
