//! OPEN (RFC 4271 §4.2) with capabilities in optional parameters (RFC 5492), including the
//! extended optional parameters length of RFC 9072.

use std::net::Ipv4Addr;

use super::attr::AS_TRANS;
use super::capability::{AddPathFamily, Capability, GracefulRestart};
use super::reader::Reader;
use super::{DecodeError, EncodeError, Family, code};

const PARAM_CAPABILITIES: u8 = 2;
/// RFC 9072: a non-extended parameters length of 255 with this first type means the
/// extended encoding (2-octet lengths) follows.
const PARAM_EXTENDED: u8 = 255;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Open {
    /// The 2-octet "My Autonomous System" field: AS_TRANS for 4-octet ASNs.
    pub my_as: u16,
    pub hold_time: u16,
    pub bgp_id: Ipv4Addr,
    pub capabilities: Vec<Capability>,
}

impl Open {
    /// An OPEN for `asn`: the header field gets AS_TRANS if `asn` needs 4 octets. The caller
    /// lists the capabilities (including [`Capability::FourOctetAs`]).
    pub fn new(asn: u32, hold_time: u16, bgp_id: Ipv4Addr, capabilities: Vec<Capability>) -> Self {
        let my_as = u16::try_from(asn).unwrap_or(AS_TRANS);
        Open {
            my_as,
            hold_time,
            bgp_id,
            capabilities,
        }
    }

    /// The 4-octet AS capability's ASN, if advertised.
    pub fn four_octet_as(&self) -> Option<u32> {
        self.capabilities.iter().find_map(|c| match c {
            Capability::FourOctetAs(asn) => Some(*asn),
            _ => None,
        })
    }

    /// The sender's AS: from the 4-octet capability when present (RFC 6793), else the header.
    pub fn asn(&self) -> u32 {
        self.four_octet_as().unwrap_or(u32::from(self.my_as))
    }

    /// Families advertised with the multiprotocol capability; without any, IPv4 unicast is
    /// implied (RFC 4760 §8).
    pub fn families(&self) -> Vec<Family> {
        let mut families: Vec<Family> = self
            .capabilities
            .iter()
            .filter_map(|c| match c {
                Capability::Multiprotocol(f) => Some(*f),
                _ => None,
            })
            .collect();
        if families.is_empty() {
            families.push(Family::IPV4_UNICAST);
        }
        families.sort();
        families.dedup();
        families
    }

    pub fn has(&self, code: u8) -> bool {
        self.capabilities.iter().any(|c| c.code() == code)
    }

    pub fn graceful_restart(&self) -> Option<&GracefulRestart> {
        self.capabilities.iter().find_map(|c| match c {
            Capability::GracefulRestart(gr) => Some(gr),
            _ => None,
        })
    }

    pub fn add_path(&self) -> Vec<AddPathFamily> {
        self.capabilities
            .iter()
            .filter_map(|c| match c {
                Capability::AddPath(f) => Some(f.iter().copied()),
                _ => None,
            })
            .flatten()
            .collect()
    }
}

pub(crate) fn encode(open: &Open, out: &mut Vec<u8>) -> Result<(), EncodeError> {
    out.push(4);
    out.extend_from_slice(&open.my_as.to_be_bytes());
    out.extend_from_slice(&open.hold_time.to_be_bytes());
    out.extend_from_slice(&open.bgp_id.octets());
    let mut caps = Vec::new();
    for cap in &open.capabilities {
        cap.encode(&mut caps)?;
    }
    if caps.is_empty() {
        out.push(0);
    } else if caps.len() + 2 <= 255 {
        // One capabilities parameter holding them all.
        out.push((caps.len() + 2) as u8);
        out.push(PARAM_CAPABILITIES);
        out.push(caps.len() as u8);
        out.extend_from_slice(&caps);
    } else {
        // RFC 9072 extended optional parameters.
        let cap_len =
            u16::try_from(caps.len()).map_err(|_| EncodeError::Invalid("capabilities too long"))?;
        let params_len = cap_len
            .checked_add(3)
            .ok_or(EncodeError::Invalid("capabilities too long"))?;
        out.push(255);
        out.push(PARAM_EXTENDED);
        out.extend_from_slice(&params_len.to_be_bytes());
        out.push(PARAM_CAPABILITIES);
        out.extend_from_slice(&cap_len.to_be_bytes());
        out.extend_from_slice(&caps);
    }
    Ok(())
}

pub(crate) fn decode(body: &[u8]) -> Result<Open, DecodeError> {
    let mut r = Reader::new(body);
    let unspecific = || DecodeError::reset(code::OPEN_MESSAGE, code::UNSPECIFIC, []);
    // The header check guarantees at least 10 body bytes; stay defensive anyway.
    let version = r.u8().ok_or_else(unspecific)?;
    if version != 4 {
        // Data: the largest version we support (RFC 4271 §6.2).
        return Err(DecodeError::reset(
            code::OPEN_MESSAGE,
            code::UNSUPPORTED_VERSION,
            4u16.to_be_bytes(),
        ));
    }
    let my_as = r.u16().ok_or_else(unspecific)?;
    let hold_time = r.u16().ok_or_else(unspecific)?;
    let bgp_id = Ipv4Addr::from(r.u32().ok_or_else(unspecific)?);
    let opt_len = r.u8().ok_or_else(unspecific)?;
    if hold_time == 1 || hold_time == 2 {
        return Err(DecodeError::reset(
            code::OPEN_MESSAGE,
            code::UNACCEPTABLE_HOLD_TIME,
            [],
        ));
    }
    // RFC 6286: any non-zero value is a valid identifier.
    if bgp_id.is_unspecified() {
        return Err(DecodeError::reset(
            code::OPEN_MESSAGE,
            code::BAD_BGP_IDENTIFIER,
            [],
        ));
    }
    let rest = r.rest();
    let extended = opt_len == 255 && rest.first() == Some(&PARAM_EXTENDED);
    let params = if extended {
        let mut r = Reader::new(&rest[1..]);
        let len = r.u16().ok_or_else(unspecific)?;
        let params = r.take(usize::from(len)).ok_or_else(unspecific)?;
        if !r.is_empty() {
            return Err(unspecific());
        }
        params
    } else {
        if usize::from(opt_len) != rest.len() {
            return Err(unspecific());
        }
        rest
    };
    let mut capabilities = Vec::new();
    let mut r = Reader::new(params);
    while !r.is_empty() {
        let kind = r.u8().ok_or_else(unspecific)?;
        let len = if extended {
            r.u16()
        } else {
            r.u8().map(u16::from)
        }
        .ok_or_else(unspecific)?;
        let value = r.take(usize::from(len)).ok_or_else(unspecific)?;
        if kind != PARAM_CAPABILITIES {
            return Err(DecodeError::reset(
                code::OPEN_MESSAGE,
                code::UNSUPPORTED_OPTIONAL_PARAMETER,
                [],
            ));
        }
        let mut caps = Reader::new(value);
        while !caps.is_empty() {
            let cap_code = caps.u8().ok_or_else(unspecific)?;
            let cap_len = caps.u8().ok_or_else(unspecific)?;
            let cap_value = caps.take(usize::from(cap_len)).ok_or_else(unspecific)?;
            capabilities.push(Capability::decode(cap_code, cap_value)?);
        }
    }
    Ok(Open {
        my_as,
        hold_time,
        bgp_id,
        capabilities,
    })
}
