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
//! A later layer drives these over TCP with tokio; the RIB and decision process build on the
//! same types.

pub mod policy;
pub mod rib;
pub mod session;
pub mod wire;
