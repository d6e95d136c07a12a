//! Capabilities advertised in OPEN (RFC 5492) and the ones this speaker understands.

use super::reader::Reader;
use super::{DecodeError, Family, code};

pub const CAP_MULTIPROTOCOL: u8 = 1;
pub const CAP_ROUTE_REFRESH: u8 = 2;
pub const CAP_EXTENDED_MESSAGE: u8 = 6;
pub const CAP_GRACEFUL_RESTART: u8 = 64;
pub const CAP_FOUR_OCTET_AS: u8 = 65;
pub const CAP_ADD_PATH: u8 = 69;

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Capability {
    /// RFC 4760: one family per capability.
    Multiprotocol(Family),
    /// RFC 2918.
    RouteRefresh,
    /// RFC 8654.
    ExtendedMessage,
    /// RFC 4724.
    GracefulRestart(GracefulRestart),
    /// RFC 6793: the speaker's real AS number.
    FourOctetAs(u32),
    /// RFC 7911.
    AddPath(Vec<AddPathFamily>),
    /// Anything else, kept as received (RFC 5492: ignored, not an error).
    Unknown { code: u8, value: Vec<u8> },
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GracefulRestart {
    /// R bit: the sender has restarted (its routes may be stale until its End-of-RIB).
    pub restarting: bool,
    /// N bit (RFC 8538): graceful restart also applies to NOTIFICATIONs.
    pub notification: bool,
    /// Seconds the peer should keep our routes while we restart (12 bits: 0..=4095).
    pub restart_time: u16,
    pub families: Vec<GrFamily>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct GrFamily {
    pub family: Family,
    /// F bit: forwarding state for this family was preserved across the restart.
    pub forwarding_preserved: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AddPathMode {
    Receive = 1,
    Send = 2,
    Both = 3,
}

impl AddPathMode {
    pub fn can_send(self) -> bool {
        matches!(self, AddPathMode::Send | AddPathMode::Both)
    }
    pub fn can_receive(self) -> bool {
        matches!(self, AddPathMode::Receive | AddPathMode::Both)
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AddPathFamily {
    pub family: Family,
    pub mode: AddPathMode,
}

impl Capability {
    pub fn code(&self) -> u8 {
        match self {
            Capability::Multiprotocol(_) => CAP_MULTIPROTOCOL,
            Capability::RouteRefresh => CAP_ROUTE_REFRESH,
            Capability::ExtendedMessage => CAP_EXTENDED_MESSAGE,
            Capability::GracefulRestart(_) => CAP_GRACEFUL_RESTART,
            Capability::FourOctetAs(_) => CAP_FOUR_OCTET_AS,
            Capability::AddPath(_) => CAP_ADD_PATH,
            Capability::Unknown { code, .. } => *code,
        }
    }

    /// Appends code, length and value.
    pub(crate) fn encode(&self, out: &mut Vec<u8>) -> Result<(), super::EncodeError> {
        out.push(self.code());
        let len_at = out.len();
        out.push(0);
        match self {
            Capability::Multiprotocol(f) => {
                out.extend_from_slice(&f.afi.to_be_bytes());
                out.push(0);
                out.push(f.safi);
            }
            Capability::RouteRefresh | Capability::ExtendedMessage => {}
            Capability::GracefulRestart(gr) => {
                if gr.restart_time > 0x0fff {
                    return Err(super::EncodeError::Invalid(
                        "graceful restart time exceeds 4095 s",
                    ));
                }
                let mut flags_time = gr.restart_time;
                if gr.restarting {
                    flags_time |= 0x8000;
                }
                if gr.notification {
                    flags_time |= 0x4000;
                }
                out.extend_from_slice(&flags_time.to_be_bytes());
                for f in &gr.families {
                    out.extend_from_slice(&f.family.afi.to_be_bytes());
                    out.push(f.family.safi);
                    out.push(if f.forwarding_preserved { 0x80 } else { 0 });
                }
            }
            Capability::FourOctetAs(asn) => out.extend_from_slice(&asn.to_be_bytes()),
            Capability::AddPath(families) => {
                for f in families {
                    out.extend_from_slice(&f.family.afi.to_be_bytes());
                    out.push(f.family.safi);
                    out.push(f.mode as u8);
                }
            }
            Capability::Unknown { value, .. } => out.extend_from_slice(value),
        }
        let len = out.len() - len_at - 1;
        out[len_at] = u8::try_from(len)
            .map_err(|_| super::EncodeError::Invalid("capability longer than 255 bytes"))?;
        Ok(())
    }

    /// Decodes one capability value. A known capability with a malformed value is an OPEN
    /// message error; RFC 5492 names no subcode for it, so it is sent as unspecific (2/0)
    /// carrying the capability.
    pub(crate) fn decode(cap_code: u8, value: &[u8]) -> Result<Capability, DecodeError> {
        let malformed = || {
            let mut data = vec![cap_code, value.len() as u8];
            data.extend_from_slice(value);
            DecodeError::reset(code::OPEN_MESSAGE, code::UNSPECIFIC, data)
        };
        let mut r = Reader::new(value);
        let cap = match cap_code {
            CAP_MULTIPROTOCOL => {
                if value.len() != 4 {
                    return Err(malformed());
                }
                let afi = r.u16().ok_or_else(malformed)?;
                let _reserved = r.u8();
                let safi = r.u8().ok_or_else(malformed)?;
                Capability::Multiprotocol(Family { afi, safi })
            }
            CAP_ROUTE_REFRESH if value.is_empty() => Capability::RouteRefresh,
            CAP_EXTENDED_MESSAGE if value.is_empty() => Capability::ExtendedMessage,
            CAP_ROUTE_REFRESH | CAP_EXTENDED_MESSAGE => return Err(malformed()),
            CAP_GRACEFUL_RESTART => {
                if value.len() < 2 || !(value.len() - 2).is_multiple_of(4) {
                    return Err(malformed());
                }
                let flags_time = r.u16().ok_or_else(malformed)?;
                let mut families = Vec::new();
                while !r.is_empty() {
                    let afi = r.u16().ok_or_else(malformed)?;
                    let safi = r.u8().ok_or_else(malformed)?;
                    let flags = r.u8().ok_or_else(malformed)?;
                    families.push(GrFamily {
                        family: Family { afi, safi },
                        forwarding_preserved: flags & 0x80 != 0,
                    });
                }
                Capability::GracefulRestart(GracefulRestart {
                    restarting: flags_time & 0x8000 != 0,
                    notification: flags_time & 0x4000 != 0,
                    restart_time: flags_time & 0x0fff,
                    families,
                })
            }
            CAP_FOUR_OCTET_AS => {
                if value.len() != 4 {
                    return Err(malformed());
                }
                Capability::FourOctetAs(r.u32().ok_or_else(malformed)?)
            }
            CAP_ADD_PATH => {
                if value.is_empty() || !value.len().is_multiple_of(4) {
                    return Err(malformed());
                }
                let mut families = Vec::new();
                while !r.is_empty() {
                    let afi = r.u16().ok_or_else(malformed)?;
                    let safi = r.u8().ok_or_else(malformed)?;
                    let mode = match r.u8().ok_or_else(malformed)? {
                        1 => AddPathMode::Receive,
                        2 => AddPathMode::Send,
                        3 => AddPathMode::Both,
                        _ => return Err(malformed()),
                    };
                    families.push(AddPathFamily {
                        family: Family { afi, safi },
                        mode,
                    });
                }
                Capability::AddPath(families)
            }
            other => Capability::Unknown {
                code: other,
                value: value.to_vec(),
            },
        };
        Ok(cap)
    }
}
