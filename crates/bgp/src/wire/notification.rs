//! NOTIFICATION messages (RFC 4271 §4.5) and the error codes of RFC 4271 §6, RFC 4486 and
//! RFC 6608.

use std::fmt;

/// A NOTIFICATION: error code, subcode and data, exactly as on the wire.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Notification {
    pub code: u8,
    pub subcode: u8,
    pub data: Vec<u8>,
}

/// Error codes and subcodes.
pub mod code {
    pub const MESSAGE_HEADER: u8 = 1;
    pub const OPEN_MESSAGE: u8 = 2;
    pub const UPDATE_MESSAGE: u8 = 3;
    pub const HOLD_TIMER_EXPIRED: u8 = 4;
    pub const FSM: u8 = 5;
    pub const CEASE: u8 = 6;

    /// Subcode 0: no more specific subcode applies.
    pub const UNSPECIFIC: u8 = 0;

    // Message header errors.
    pub const CONNECTION_NOT_SYNCHRONIZED: u8 = 1;
    pub const BAD_MESSAGE_LENGTH: u8 = 2;
    pub const BAD_MESSAGE_TYPE: u8 = 3;

    // OPEN message errors.
    pub const UNSUPPORTED_VERSION: u8 = 1;
    pub const BAD_PEER_AS: u8 = 2;
    pub const BAD_BGP_IDENTIFIER: u8 = 3;
    pub const UNSUPPORTED_OPTIONAL_PARAMETER: u8 = 4;
    pub const UNACCEPTABLE_HOLD_TIME: u8 = 6;
    pub const UNSUPPORTED_CAPABILITY: u8 = 7;

    // UPDATE message errors.
    pub const MALFORMED_ATTRIBUTE_LIST: u8 = 1;
    pub const UNRECOGNIZED_WELL_KNOWN_ATTRIBUTE: u8 = 2;
    pub const MISSING_WELL_KNOWN_ATTRIBUTE: u8 = 3;
    pub const ATTRIBUTE_FLAGS_ERROR: u8 = 4;
    pub const ATTRIBUTE_LENGTH_ERROR: u8 = 5;
    pub const INVALID_ORIGIN_ATTRIBUTE: u8 = 6;
    pub const INVALID_NEXT_HOP_ATTRIBUTE: u8 = 8;
    pub const OPTIONAL_ATTRIBUTE_ERROR: u8 = 9;
    pub const INVALID_NETWORK_FIELD: u8 = 10;
    pub const MALFORMED_AS_PATH: u8 = 11;

    // FSM errors (RFC 6608).
    pub const FSM_UNEXPECTED_IN_OPEN_SENT: u8 = 1;
    pub const FSM_UNEXPECTED_IN_OPEN_CONFIRM: u8 = 2;
    pub const FSM_UNEXPECTED_IN_ESTABLISHED: u8 = 3;

    // Cease subcodes (RFC 4486).
    pub const CEASE_MAX_PREFIXES: u8 = 1;
    pub const CEASE_ADMINISTRATIVE_SHUTDOWN: u8 = 2;
    pub const CEASE_PEER_DECONFIGURED: u8 = 3;
    pub const CEASE_ADMINISTRATIVE_RESET: u8 = 4;
    pub const CEASE_CONNECTION_REJECTED: u8 = 5;
    pub const CEASE_CONNECTION_COLLISION_RESOLUTION: u8 = 7;
}

impl Notification {
    pub fn new(code: u8, subcode: u8, data: impl Into<Vec<u8>>) -> Self {
        Notification {
            code,
            subcode,
            data: data.into(),
        }
    }

    /// A short name for logs and status output.
    pub fn name(&self) -> &'static str {
        use code::*;
        match (self.code, self.subcode) {
            (MESSAGE_HEADER, CONNECTION_NOT_SYNCHRONIZED) => "connection not synchronized",
            (MESSAGE_HEADER, BAD_MESSAGE_LENGTH) => "bad message length",
            (MESSAGE_HEADER, BAD_MESSAGE_TYPE) => "bad message type",
            (MESSAGE_HEADER, _) => "message header error",
            (OPEN_MESSAGE, UNSUPPORTED_VERSION) => "unsupported version number",
            (OPEN_MESSAGE, BAD_PEER_AS) => "bad peer AS",
            (OPEN_MESSAGE, BAD_BGP_IDENTIFIER) => "bad BGP identifier",
            (OPEN_MESSAGE, UNSUPPORTED_OPTIONAL_PARAMETER) => "unsupported optional parameter",
            (OPEN_MESSAGE, UNACCEPTABLE_HOLD_TIME) => "unacceptable hold time",
            (OPEN_MESSAGE, UNSUPPORTED_CAPABILITY) => "unsupported capability",
            (OPEN_MESSAGE, _) => "OPEN message error",
            (UPDATE_MESSAGE, MALFORMED_ATTRIBUTE_LIST) => "malformed attribute list",
            (UPDATE_MESSAGE, UNRECOGNIZED_WELL_KNOWN_ATTRIBUTE) => {
                "unrecognized well-known attribute"
            }
            (UPDATE_MESSAGE, MISSING_WELL_KNOWN_ATTRIBUTE) => "missing well-known attribute",
            (UPDATE_MESSAGE, ATTRIBUTE_FLAGS_ERROR) => "attribute flags error",
            (UPDATE_MESSAGE, ATTRIBUTE_LENGTH_ERROR) => "attribute length error",
            (UPDATE_MESSAGE, INVALID_ORIGIN_ATTRIBUTE) => "invalid ORIGIN attribute",
            (UPDATE_MESSAGE, INVALID_NEXT_HOP_ATTRIBUTE) => "invalid NEXT_HOP attribute",
            (UPDATE_MESSAGE, OPTIONAL_ATTRIBUTE_ERROR) => "optional attribute error",
            (UPDATE_MESSAGE, INVALID_NETWORK_FIELD) => "invalid network field",
            (UPDATE_MESSAGE, MALFORMED_AS_PATH) => "malformed AS_PATH",
            (UPDATE_MESSAGE, _) => "UPDATE message error",
            (HOLD_TIMER_EXPIRED, _) => "hold timer expired",
            (FSM, FSM_UNEXPECTED_IN_OPEN_SENT) => "unexpected message in OpenSent",
            (FSM, FSM_UNEXPECTED_IN_OPEN_CONFIRM) => "unexpected message in OpenConfirm",
            (FSM, FSM_UNEXPECTED_IN_ESTABLISHED) => "unexpected message in Established",
            (FSM, _) => "finite state machine error",
            (CEASE, CEASE_MAX_PREFIXES) => "maximum number of prefixes reached",
            (CEASE, CEASE_ADMINISTRATIVE_SHUTDOWN) => "administrative shutdown",
            (CEASE, CEASE_PEER_DECONFIGURED) => "peer de-configured",
            (CEASE, CEASE_ADMINISTRATIVE_RESET) => "administrative reset",
            (CEASE, CEASE_CONNECTION_REJECTED) => "connection rejected",
            (CEASE, CEASE_CONNECTION_COLLISION_RESOLUTION) => "connection collision resolution",
            (CEASE, _) => "cease",
            _ => "unknown error code",
        }
    }
}

impl fmt::Display for Notification {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{} ({})", self.code, self.subcode, self.name())
    }
}

impl std::error::Error for Notification {}
