//! UPDATE (RFC 4271 §4.3) with MP_REACH/MP_UNREACH (RFC 4760), ADD-PATH path identifiers
//! (RFC 7911) and End-of-RIB markers (RFC 4724 §2).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use ipnet::{IpNet, Ipv4Net, Ipv6Net};

use super::attr::{self, PathAttributes};
use super::reader::Reader;
use super::{AFI_IPV4, AFI_IPV6, Context, DecodeError, EncodeError, Family, Notification, code};

/// One prefix, with its path identifier when ADD-PATH is in use for its family and direction.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Nlri {
    pub prefix: IpNet,
    pub path_id: Option<u32>,
}

impl Nlri {
    pub fn new(prefix: IpNet) -> Self {
        Nlri {
            prefix,
            path_id: None,
        }
    }

    pub fn family(&self) -> Family {
        match self.prefix {
            IpNet::V4(_) => Family::IPV4_UNICAST,
            IpNet::V6(_) => Family::IPV6_UNICAST,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum NextHop {
    V4(Ipv4Addr),
    /// 16 bytes (global) or 32 bytes (global and link-local) on the wire.
    V6 {
        global: Ipv6Addr,
        link_local: Option<Ipv6Addr>,
    },
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MpReach {
    pub family: Family,
    pub next_hop: NextHop,
    pub nlri: Vec<Nlri>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MpUnreach {
    pub family: Family,
    pub nlri: Vec<Nlri>,
}

/// An UPDATE. `withdrawn` and `nlri` are the IPv4 fields of RFC 4271; other families travel in
/// `mp_reach`/`mp_unreach`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Update {
    pub withdrawn: Vec<Nlri>,
    pub attributes: PathAttributes,
    pub nlri: Vec<Nlri>,
    pub mp_reach: Option<MpReach>,
    pub mp_unreach: Option<MpUnreach>,
}

impl Update {
    /// The End-of-RIB marker for `family` (RFC 4724 §2): an empty UPDATE for IPv4 unicast,
    /// an empty MP_UNREACH otherwise.
    pub fn end_of_rib(family: Family) -> Self {
        if family == Family::IPV4_UNICAST {
            Update::default()
        } else {
            Update {
                mp_unreach: Some(MpUnreach {
                    family,
                    nlri: Vec::new(),
                }),
                ..Update::default()
            }
        }
    }

    /// The family this UPDATE marks the End-of-RIB of, if it is such a marker.
    pub fn end_of_rib_family(&self) -> Option<Family> {
        if !self.withdrawn.is_empty()
            || !self.nlri.is_empty()
            || self.mp_reach.is_some()
            || !self.attributes.is_empty()
        {
            return None;
        }
        match &self.mp_unreach {
            None => Some(Family::IPV4_UNICAST),
            Some(mp) if mp.nlri.is_empty() => Some(mp.family),
            Some(_) => None,
        }
    }

    /// Every prefix the UPDATE names, reachable or withdrawn.
    pub fn all_prefixes(&self) -> Vec<Nlri> {
        let mut all = self.withdrawn.clone();
        all.extend_from_slice(&self.nlri);
        if let Some(mp) = &self.mp_reach {
            all.extend_from_slice(&mp.nlri);
        }
        if let Some(mp) = &self.mp_unreach {
            all.extend_from_slice(&mp.nlri);
        }
        all
    }
}

/// Parses a run of prefixes of one family; `None` if any is malformed.
fn parse_nlri(buf: &[u8], family: Family, add_path: bool) -> Option<Vec<Nlri>> {
    let mut r = Reader::new(buf);
    let mut out = Vec::new();
    let v6 = family.afi == AFI_IPV6;
    let max_len = if v6 { 128 } else { 32 };
    while !r.is_empty() {
        let path_id = if add_path { Some(r.u32()?) } else { None };
        let len = r.u8()?;
        if len > max_len {
            return None;
        }
        let bytes = r.take(usize::from(len).div_ceil(8))?;
        // Bits past the prefix length are ignored (trunc), as RFC 4271 §4.3 allows.
        let prefix = if v6 {
            let mut octets = [0u8; 16];
            octets[..bytes.len()].copy_from_slice(bytes);
            IpNet::V6(Ipv6Net::new(Ipv6Addr::from(octets), len).ok()?.trunc())
        } else {
            let mut octets = [0u8; 4];
            octets[..bytes.len()].copy_from_slice(bytes);
            IpNet::V4(Ipv4Net::new(Ipv4Addr::from(octets), len).ok()?.trunc())
        };
        out.push(Nlri { prefix, path_id });
    }
    Some(out)
}

fn encode_nlri(
    nlri: &[Nlri],
    family: Family,
    ctx: &Context,
    out: &mut Vec<u8>,
) -> Result<(), EncodeError> {
    let add_path = ctx.add_path(family);
    for n in nlri {
        if n.family() != family {
            return Err(EncodeError::Invalid("prefix of another family in NLRI"));
        }
        if add_path {
            out.extend_from_slice(&n.path_id.unwrap_or(0).to_be_bytes());
        }
        let len = n.prefix.prefix_len();
        out.push(len);
        let bytes = usize::from(len).div_ceil(8);
        match n.prefix.trunc().addr() {
            IpAddr::V4(a) => out.extend_from_slice(&a.octets()[..bytes]),
            IpAddr::V6(a) => out.extend_from_slice(&a.octets()[..bytes]),
        }
    }
    Ok(())
}

/// MP_REACH_NLRI value. `Ok(None)` for a family this speaker does not parse; `Err` when
/// malformed (a session reset, RFC 7606 §7.11).
pub(crate) fn decode_mp_reach(value: &[u8], ctx: &Context) -> Result<Option<MpReach>, ()> {
    let mut r = Reader::new(value);
    let afi = r.u16().ok_or(())?;
    let safi = r.u8().ok_or(())?;
    let family = Family { afi, safi };
    let nh_len = r.u8().ok_or(())?;
    let nh = r.take(usize::from(nh_len)).ok_or(())?;
    let _reserved = r.u8().ok_or(())?;
    if !family.is_supported() {
        return Ok(None);
    }
    let next_hop = match (afi, nh.len()) {
        (AFI_IPV4, 4) => NextHop::V4(Ipv4Addr::new(nh[0], nh[1], nh[2], nh[3])),
        (AFI_IPV6, 16 | 32) => {
            let mut g = [0u8; 16];
            g.copy_from_slice(&nh[..16]);
            let link_local = (nh.len() == 32).then(|| {
                let mut l = [0u8; 16];
                l.copy_from_slice(&nh[16..]);
                Ipv6Addr::from(l)
            });
            NextHop::V6 {
                global: Ipv6Addr::from(g),
                link_local,
            }
        }
        _ => return Err(()),
    };
    let nlri = parse_nlri(r.rest(), family, ctx.add_path(family)).ok_or(())?;
    Ok(Some(MpReach {
        family,
        next_hop,
        nlri,
    }))
}

pub(crate) fn decode_mp_unreach(value: &[u8], ctx: &Context) -> Result<Option<MpUnreach>, ()> {
    let mut r = Reader::new(value);
    let afi = r.u16().ok_or(())?;
    let safi = r.u8().ok_or(())?;
    let family = Family { afi, safi };
    if !family.is_supported() {
        return Ok(None);
    }
    let nlri = parse_nlri(r.rest(), family, ctx.add_path(family)).ok_or(())?;
    Ok(Some(MpUnreach { family, nlri }))
}

pub(crate) fn encode_mp_reach(
    mp: &MpReach,
    ctx: &Context,
    out: &mut Vec<u8>,
) -> Result<(), EncodeError> {
    if !mp.family.is_supported() {
        return Err(EncodeError::Invalid(
            "MP_REACH_NLRI for an unsupported family",
        ));
    }
    out.extend_from_slice(&mp.family.afi.to_be_bytes());
    out.push(mp.family.safi);
    match (mp.family.afi, mp.next_hop) {
        (AFI_IPV4, NextHop::V4(a)) => {
            out.push(4);
            out.extend_from_slice(&a.octets());
        }
        (AFI_IPV6, NextHop::V6 { global, link_local }) => {
            out.push(if link_local.is_some() { 32 } else { 16 });
            out.extend_from_slice(&global.octets());
            if let Some(l) = link_local {
                out.extend_from_slice(&l.octets());
            }
        }
        _ => {
            return Err(EncodeError::Invalid(
                "MP_REACH_NLRI next hop of another family",
            ));
        }
    }
    out.push(0);
    encode_nlri(&mp.nlri, mp.family, ctx, out)
}

pub(crate) fn encode_mp_unreach(
    mp: &MpUnreach,
    ctx: &Context,
    out: &mut Vec<u8>,
) -> Result<(), EncodeError> {
    if !mp.family.is_supported() {
        return Err(EncodeError::Invalid(
            "MP_UNREACH_NLRI for an unsupported family",
        ));
    }
    out.extend_from_slice(&mp.family.afi.to_be_bytes());
    out.push(mp.family.safi);
    encode_nlri(&mp.nlri, mp.family, ctx, out)
}

pub(crate) fn decode(
    body: &[u8],
    ctx: &Context,
) -> Result<(Update, Vec<Notification>), DecodeError> {
    let mut r = Reader::new(body);
    let malformed_list =
        || DecodeError::reset(code::UPDATE_MESSAGE, code::MALFORMED_ATTRIBUTE_LIST, []);
    let invalid_network =
        || DecodeError::reset(code::UPDATE_MESSAGE, code::INVALID_NETWORK_FIELD, []);
    // RFC 4271 §6.3 / RFC 7606 §4: section lengths that overrun the message reset the session.
    let withdrawn_len = r.u16().ok_or_else(malformed_list)?;
    let withdrawn = r
        .take(usize::from(withdrawn_len))
        .ok_or_else(malformed_list)?;
    let attrs_len = r.u16().ok_or_else(malformed_list)?;
    let attrs = r.take(usize::from(attrs_len)).ok_or_else(malformed_list)?;
    let nlri = r.rest();

    let v4_add_path = ctx.add_path(Family::IPV4_UNICAST);
    let withdrawn =
        parse_nlri(withdrawn, Family::IPV4_UNICAST, v4_add_path).ok_or_else(invalid_network)?;
    let nlri = parse_nlri(nlri, Family::IPV4_UNICAST, v4_add_path).ok_or_else(invalid_network)?;
    let parsed = attr::decode(attrs, ctx)?;
    let update = Update {
        withdrawn,
        attributes: parsed.attrs,
        nlri,
        mp_reach: parsed.mp_reach,
        mp_unreach: parsed.mp_unreach,
    };
    let mut reason = parsed.withdraw_reason;

    // Well-known mandatory attributes, needed only when something is announced
    // (RFC 4271 §5, RFC 4760 §3; missing ones are treat-as-withdraw, RFC 7606 §3(d)).
    let announces = !update.nlri.is_empty()
        || update
            .mp_reach
            .as_ref()
            .is_some_and(|mp| !mp.nlri.is_empty());
    if announces && reason.is_none() {
        let a = &update.attributes;
        let missing = if a.origin.is_none() {
            Some(attr::ATTR_ORIGIN)
        } else if a.as_path.is_none() {
            Some(attr::ATTR_AS_PATH)
        } else if a.next_hop.is_none() && !update.nlri.is_empty() {
            Some(attr::ATTR_NEXT_HOP)
        } else {
            None
        };
        if let Some(t) = missing {
            reason = Some(Notification::new(
                code::UPDATE_MESSAGE,
                code::MISSING_WELL_KNOWN_ATTRIBUTE,
                [t],
            ));
        }
    }
    if let Some(reason) = reason {
        let withdrawn = update.all_prefixes();
        return Err(DecodeError::TreatAsWithdraw { withdrawn, reason });
    }
    Ok((update, parsed.discarded))
}

pub(crate) fn encode(u: &Update, ctx: &Context, out: &mut Vec<u8>) -> Result<(), EncodeError> {
    let start = out.len();
    out.extend_from_slice(&[0, 0]);
    encode_nlri(&u.withdrawn, Family::IPV4_UNICAST, ctx, out)?;
    let withdrawn_len = out.len() - start - 2;
    let attrs_start = out.len();
    out.extend_from_slice(&[0, 0]);
    attr::encode(
        &u.attributes,
        u.mp_reach.as_ref(),
        u.mp_unreach.as_ref(),
        ctx,
        out,
    )?;
    let attrs_len = out.len() - attrs_start - 2;
    encode_nlri(&u.nlri, Family::IPV4_UNICAST, ctx, out)?;
    let too_long = EncodeError::TooLong {
        kind: "UPDATE",
        len: out.len() - start,
        max: ctx.max_message_len(),
    };
    let wl = u16::try_from(withdrawn_len).map_err(|_| too_long.clone())?;
    let al = u16::try_from(attrs_len).map_err(|_| too_long)?;
    out[start..start + 2].copy_from_slice(&wl.to_be_bytes());
    out[attrs_start..attrs_start + 2].copy_from_slice(&al.to_be_bytes());
    Ok(())
}
