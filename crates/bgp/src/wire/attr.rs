//! Path attributes (RFC 4271 §4.3, §5) and their RFC 7606 error handling, with the 4-octet AS
//! transition of RFC 6793 (AS4_PATH, AS4_AGGREGATOR, AS_TRANS).

use std::net::Ipv4Addr;

use super::reader::Reader;
use super::update::{self, MpReach, MpUnreach};
use super::{Context, DecodeError, EncodeError, Notification, code};

/// The 2-octet stand-in for a 4-octet AS number (RFC 6793).
pub const AS_TRANS: u16 = 23456;

pub(crate) const FLAG_OPTIONAL: u8 = 0x80;
pub(crate) const FLAG_TRANSITIVE: u8 = 0x40;
pub(crate) const FLAG_PARTIAL: u8 = 0x20;
pub(crate) const FLAG_EXTENDED_LENGTH: u8 = 0x10;

pub(crate) const ATTR_ORIGIN: u8 = 1;
pub(crate) const ATTR_AS_PATH: u8 = 2;
pub(crate) const ATTR_NEXT_HOP: u8 = 3;
pub(crate) const ATTR_MED: u8 = 4;
pub(crate) const ATTR_LOCAL_PREF: u8 = 5;
pub(crate) const ATTR_ATOMIC_AGGREGATE: u8 = 6;
pub(crate) const ATTR_AGGREGATOR: u8 = 7;
pub(crate) const ATTR_COMMUNITIES: u8 = 8;
pub(crate) const ATTR_ORIGINATOR_ID: u8 = 9;
pub(crate) const ATTR_CLUSTER_LIST: u8 = 10;
pub(crate) const ATTR_MP_REACH: u8 = 14;
pub(crate) const ATTR_MP_UNREACH: u8 = 15;
pub(crate) const ATTR_AS4_PATH: u8 = 17;
pub(crate) const ATTR_AS4_AGGREGATOR: u8 = 18;
pub(crate) const ATTR_LARGE_COMMUNITIES: u8 = 32;

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Origin {
    Igp = 0,
    Egp = 1,
    Incomplete = 2,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum SegmentKind {
    Set = 1,
    Sequence = 2,
    ConfedSequence = 3,
    ConfedSet = 4,
}

impl SegmentKind {
    fn from_u8(v: u8) -> Option<Self> {
        Some(match v {
            1 => SegmentKind::Set,
            2 => SegmentKind::Sequence,
            3 => SegmentKind::ConfedSequence,
            4 => SegmentKind::ConfedSet,
            _ => return None,
        })
    }

    pub fn is_confed(self) -> bool {
        matches!(self, SegmentKind::ConfedSequence | SegmentKind::ConfedSet)
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct AsSegment {
    pub kind: SegmentKind,
    pub asns: Vec<u32>,
}

/// AS_PATH with every AS number held as 4 octets, whatever the session's encoding.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct AsPath {
    pub segments: Vec<AsSegment>,
}

impl AsPath {
    pub fn sequence(asns: impl Into<Vec<u32>>) -> Self {
        let asns = asns.into();
        if asns.is_empty() {
            return AsPath::default();
        }
        AsPath {
            segments: vec![AsSegment {
                kind: SegmentKind::Sequence,
                asns,
            }],
        }
    }

    /// Path length as the decision process counts it (RFC 4271 §9.1.2.2): an AS_SET counts
    /// one, confederation segments count nothing (RFC 5065).
    pub fn decision_len(&self) -> usize {
        self.segments
            .iter()
            .map(|s| match s.kind {
                SegmentKind::Sequence => s.asns.len(),
                SegmentKind::Set => 1,
                SegmentKind::ConfedSequence | SegmentKind::ConfedSet => 0,
            })
            .sum()
    }

    pub fn contains(&self, asn: u32) -> bool {
        self.segments.iter().any(|s| s.asns.contains(&asn))
    }

    /// How many times `asn` appears, in every kind of segment.
    pub fn count(&self, asn: u32) -> usize {
        self.segments
            .iter()
            .flat_map(|s| &s.asns)
            .filter(|&&a| a == asn)
            .count()
    }

    /// Prepends `asn` to the leading AS_SEQUENCE, or adds one.
    pub fn prepend(&mut self, asn: u32) {
        match self.segments.first_mut() {
            Some(s) if s.kind == SegmentKind::Sequence && s.asns.len() < 255 => {
                s.asns.insert(0, asn)
            }
            _ => self.segments.insert(
                0,
                AsSegment {
                    kind: SegmentKind::Sequence,
                    asns: vec![asn],
                },
            ),
        }
    }

    /// The neighbouring AS: the first AS of a leading AS_SEQUENCE.
    pub fn first_asn(&self) -> Option<u32> {
        match self.segments.first() {
            Some(s) if s.kind == SegmentKind::Sequence => s.asns.first().copied(),
            _ => None,
        }
    }

    fn has_wide_asn(&self) -> bool {
        self.segments
            .iter()
            .flat_map(|s| &s.asns)
            .any(|&a| a > 0xffff)
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Aggregator {
    pub asn: u32,
    pub address: Ipv4Addr,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct LargeCommunity {
    pub global_admin: u32,
    pub local_data_1: u32,
    pub local_data_2: u32,
}

/// An optional transitive attribute this speaker does not know, passed on unchanged except for
/// the partial bit, which is set whenever it is sent (RFC 4271 §5).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct RawAttribute {
    pub flags: u8,
    pub type_code: u8,
    pub value: Vec<u8>,
}

/// The path attributes of an UPDATE other than MP_REACH/MP_UNREACH (which carry NLRI and live
/// on [`super::Update`]). Empty lists stand for absent attributes: RFC 7606 treats an empty
/// COMMUNITIES, LARGE_COMMUNITY or CLUSTER_LIST as malformed, so none is ever sent.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct PathAttributes {
    pub origin: Option<Origin>,
    pub as_path: Option<AsPath>,
    pub next_hop: Option<Ipv4Addr>,
    pub med: Option<u32>,
    pub local_pref: Option<u32>,
    pub atomic_aggregate: bool,
    pub aggregator: Option<Aggregator>,
    pub communities: Vec<u32>,
    pub large_communities: Vec<LargeCommunity>,
    pub originator_id: Option<Ipv4Addr>,
    pub cluster_list: Vec<Ipv4Addr>,
    pub unknown: Vec<RawAttribute>,
}

impl PathAttributes {
    pub fn is_empty(&self) -> bool {
        *self == PathAttributes::default()
    }
}

/// What RFC 7606 says to do with a malformed attribute.
#[derive(Clone, Copy, PartialEq, Eq)]
enum OnError {
    TreatAsWithdraw,
    Discard,
    Reset,
}

/// (optional, transitive) flag bits each known attribute must carry, and its RFC 7606 handling.
fn spec(type_code: u8) -> Option<(bool, bool, OnError)> {
    use OnError::*;
    Some(match type_code {
        ATTR_ORIGIN | ATTR_AS_PATH | ATTR_NEXT_HOP | ATTR_LOCAL_PREF => {
            (false, true, TreatAsWithdraw)
        }
        ATTR_ATOMIC_AGGREGATE => (false, true, Discard),
        ATTR_MED | ATTR_ORIGINATOR_ID | ATTR_CLUSTER_LIST => (true, false, TreatAsWithdraw),
        ATTR_AGGREGATOR | ATTR_AS4_PATH | ATTR_AS4_AGGREGATOR => (true, true, Discard),
        ATTR_COMMUNITIES | ATTR_LARGE_COMMUNITIES => (true, true, TreatAsWithdraw),
        ATTR_MP_REACH | ATTR_MP_UNREACH => (true, false, Reset),
        _ => return None,
    })
}

/// Everything the attribute section of one UPDATE yielded.
pub(crate) struct ParsedAttributes {
    pub attrs: PathAttributes,
    pub mp_reach: Option<MpReach>,
    pub mp_unreach: Option<MpUnreach>,
    /// The first error that calls for treat-as-withdraw.
    pub withdraw_reason: Option<Notification>,
    pub discarded: Vec<Notification>,
}

fn parse_as_path(value: &[u8], four_octet: bool, allow_confed: bool) -> Option<AsPath> {
    let mut r = Reader::new(value);
    let mut segments = Vec::new();
    while !r.is_empty() {
        let kind = SegmentKind::from_u8(r.u8()?)?;
        if kind.is_confed() && !allow_confed {
            return None;
        }
        let count = usize::from(r.u8()?);
        // RFC 7606 §7.2: a zero-length segment is malformed.
        if count == 0 {
            return None;
        }
        let mut asns = Vec::with_capacity(count);
        for _ in 0..count {
            asns.push(if four_octet {
                r.u32()?
            } else {
                u32::from(r.u16()?)
            });
        }
        segments.push(AsSegment { kind, asns });
    }
    Some(AsPath { segments })
}

/// RFC 6793 §4.2.3: rebuild the path from AS_PATH (2-octet, with AS_TRANS) and AS4_PATH.
fn merge_as4_path(as_path: &AsPath, as4_path: &AsPath) -> AsPath {
    let n = as_path.decision_len();
    let n4 = as4_path.decision_len();
    if n < n4 {
        // An AS4_PATH longer than AS_PATH is ignored.
        return as_path.clone();
    }
    let mut need = n - n4;
    let mut out: Vec<AsSegment> = Vec::new();
    for seg in &as_path.segments {
        match seg.kind {
            // Confederation segments count nothing and lead the path: keep them.
            SegmentKind::ConfedSequence | SegmentKind::ConfedSet => out.push(seg.clone()),
            _ if need == 0 => break,
            SegmentKind::Set => {
                out.push(seg.clone());
                need -= 1;
            }
            SegmentKind::Sequence => {
                let take = need.min(seg.asns.len());
                out.push(AsSegment {
                    kind: SegmentKind::Sequence,
                    asns: seg.asns[..take].to_vec(),
                });
                need -= take;
            }
        }
    }
    // Drop an empty sequence left by taking nothing from it.
    out.retain(|s| !s.asns.is_empty());
    let mut rest = as4_path.segments.iter();
    // Join the two parts where a sequence meets a sequence; AS4_PATH is kept as it came.
    if let (Some(last), Some(first)) = (out.last_mut(), as4_path.segments.first())
        && last.kind == SegmentKind::Sequence
        && first.kind == SegmentKind::Sequence
        && last.asns.len() + first.asns.len() <= 255
    {
        last.asns.extend_from_slice(&first.asns);
        rest.next();
    }
    out.extend(rest.cloned());
    AsPath { segments: out }
}

/// Parses the path attributes of an UPDATE. `Err` is a session reset; the RFC 7606 softer
/// outcomes are reported in the result.
pub(crate) fn decode(buf: &[u8], ctx: &Context) -> Result<ParsedAttributes, DecodeError> {
    let mut out = ParsedAttributes {
        attrs: PathAttributes::default(),
        mp_reach: None,
        mp_unreach: None,
        withdraw_reason: None,
        discarded: Vec::new(),
    };
    let mut seen = [false; 256];
    let mut as4_path: Option<AsPath> = None;
    let mut as4_aggregator: Option<Aggregator> = None;
    let mut r = Reader::new(buf);
    let four = ctx.four_octet_as;

    while !r.is_empty() {
        let whole_start = buf.len() - r.remaining();
        let header = (r.u8(), r.u8());
        let (Some(flags), Some(type_code)) = header else {
            // RFC 7606 §4: too few octets left for an attribute header.
            set_twa(
                &mut out,
                Notification::new(code::UPDATE_MESSAGE, code::MALFORMED_ATTRIBUTE_LIST, []),
            );
            break;
        };
        let len = if flags & FLAG_EXTENDED_LENGTH != 0 {
            r.u16()
        } else {
            r.u8().map(u16::from)
        };
        let Some(value) = len.and_then(|len| r.take(usize::from(len))) else {
            // RFC 7606 §4: the attribute overruns the attribute section; the section length
            // still locates the NLRI, so treat-as-withdraw.
            set_twa(
                &mut out,
                Notification::new(code::UPDATE_MESSAGE, code::ATTRIBUTE_LENGTH_ERROR, []),
            );
            break;
        };
        let whole = &buf[whole_start..buf.len() - r.remaining()];

        if seen[usize::from(type_code)] {
            // RFC 7606 §3(g): duplicates are discarded, except MP_(UN)REACH which reset.
            let n = Notification::new(code::UPDATE_MESSAGE, code::MALFORMED_ATTRIBUTE_LIST, whole);
            if type_code == ATTR_MP_REACH || type_code == ATTR_MP_UNREACH {
                return Err(DecodeError::Reset(n));
            }
            out.discarded.push(n);
            continue;
        }
        seen[usize::from(type_code)] = true;

        let Some((optional, transitive, on_error)) = spec(type_code) else {
            if flags & FLAG_OPTIONAL == 0 {
                return Err(DecodeError::reset(
                    code::UPDATE_MESSAGE,
                    code::UNRECOGNIZED_WELL_KNOWN_ATTRIBUTE,
                    whole,
                ));
            }
            if flags & FLAG_TRANSITIVE != 0 {
                // The extended-length bit describes this encoding only.
                out.attrs.unknown.push(RawAttribute {
                    flags: flags & !FLAG_EXTENDED_LENGTH,
                    type_code,
                    value: value.to_vec(),
                });
            }
            // Unknown optional non-transitive attributes are quietly ignored (RFC 4271 §5).
            continue;
        };

        let fail = |out: &mut ParsedAttributes, subcode: u8| -> Result<(), DecodeError> {
            let n = Notification::new(code::UPDATE_MESSAGE, subcode, whole);
            match on_error {
                OnError::Reset => return Err(DecodeError::Reset(n)),
                OnError::TreatAsWithdraw => set_twa(out, n),
                OnError::Discard => out.discarded.push(n),
            }
            Ok(())
        };

        if (flags & FLAG_OPTIONAL != 0) != optional || (flags & FLAG_TRANSITIVE != 0) != transitive
        {
            fail(&mut out, code::ATTRIBUTE_FLAGS_ERROR)?;
            continue;
        }

        let mut v = Reader::new(value);
        let a = &mut out.attrs;
        match type_code {
            ATTR_ORIGIN => match value {
                [0] => a.origin = Some(Origin::Igp),
                [1] => a.origin = Some(Origin::Egp),
                [2] => a.origin = Some(Origin::Incomplete),
                [_] => fail(&mut out, code::INVALID_ORIGIN_ATTRIBUTE)?,
                _ => fail(&mut out, code::ATTRIBUTE_LENGTH_ERROR)?,
            },
            ATTR_AS_PATH => match parse_as_path(value, four, true) {
                Some(p) => a.as_path = Some(p),
                None => fail(&mut out, code::MALFORMED_AS_PATH)?,
            },
            ATTR_NEXT_HOP => match v.u32() {
                Some(nh) if value.len() == 4 => {
                    let nh = Ipv4Addr::from(nh);
                    // Syntactically impossible next hops (RFC 4271 §6.3).
                    if nh.is_unspecified() || nh.is_multicast() || nh.is_broadcast() {
                        fail(&mut out, code::INVALID_NEXT_HOP_ATTRIBUTE)?;
                    } else {
                        a.next_hop = Some(nh);
                    }
                }
                _ => fail(&mut out, code::ATTRIBUTE_LENGTH_ERROR)?,
            },
            ATTR_MED | ATTR_LOCAL_PREF | ATTR_ORIGINATOR_ID => match v.u32() {
                Some(x) if value.len() == 4 => match type_code {
                    ATTR_MED => a.med = Some(x),
                    ATTR_LOCAL_PREF => a.local_pref = Some(x),
                    _ => a.originator_id = Some(Ipv4Addr::from(x)),
                },
                _ => fail(&mut out, code::ATTRIBUTE_LENGTH_ERROR)?,
            },
            ATTR_ATOMIC_AGGREGATE => {
                if value.is_empty() {
                    a.atomic_aggregate = true;
                } else {
                    fail(&mut out, code::ATTRIBUTE_LENGTH_ERROR)?;
                }
            }
            ATTR_AGGREGATOR => {
                let asn = if four {
                    v.u32()
                } else {
                    v.u16().map(u32::from)
                };
                match (asn, v.u32(), v.is_empty()) {
                    (Some(asn), Some(addr), true) => {
                        a.aggregator = Some(Aggregator {
                            asn,
                            address: Ipv4Addr::from(addr),
                        })
                    }
                    _ => fail(&mut out, code::ATTRIBUTE_LENGTH_ERROR)?,
                }
            }
            ATTR_COMMUNITIES => {
                if value.is_empty() || !value.len().is_multiple_of(4) {
                    fail(&mut out, code::ATTRIBUTE_LENGTH_ERROR)?;
                } else {
                    a.communities = value
                        .chunks_exact(4)
                        .map(|c| u32::from_be_bytes([c[0], c[1], c[2], c[3]]))
                        .collect();
                }
            }
            ATTR_LARGE_COMMUNITIES => {
                if value.is_empty() || !value.len().is_multiple_of(12) {
                    fail(&mut out, code::ATTRIBUTE_LENGTH_ERROR)?;
                } else {
                    a.large_communities = value
                        .chunks_exact(12)
                        .map(|c| LargeCommunity {
                            global_admin: u32::from_be_bytes([c[0], c[1], c[2], c[3]]),
                            local_data_1: u32::from_be_bytes([c[4], c[5], c[6], c[7]]),
                            local_data_2: u32::from_be_bytes([c[8], c[9], c[10], c[11]]),
                        })
                        .collect();
                }
            }
            ATTR_CLUSTER_LIST => {
                if value.is_empty() || !value.len().is_multiple_of(4) {
                    fail(&mut out, code::ATTRIBUTE_LENGTH_ERROR)?;
                } else {
                    a.cluster_list = value
                        .chunks_exact(4)
                        .map(|c| Ipv4Addr::new(c[0], c[1], c[2], c[3]))
                        .collect();
                }
            }
            ATTR_MP_REACH => match update::decode_mp_reach(value, ctx) {
                Ok(Some(mp)) => out.mp_reach = Some(mp),
                Ok(None) => out.discarded.push(Notification::new(
                    code::UPDATE_MESSAGE,
                    code::OPTIONAL_ATTRIBUTE_ERROR,
                    whole,
                )),
                Err(()) => fail(&mut out, code::OPTIONAL_ATTRIBUTE_ERROR)?,
            },
            ATTR_MP_UNREACH => match update::decode_mp_unreach(value, ctx) {
                Ok(Some(mp)) => out.mp_unreach = Some(mp),
                Ok(None) => out.discarded.push(Notification::new(
                    code::UPDATE_MESSAGE,
                    code::OPTIONAL_ATTRIBUTE_ERROR,
                    whole,
                )),
                Err(()) => fail(&mut out, code::OPTIONAL_ATTRIBUTE_ERROR)?,
            },
            // RFC 6793 §4.1: between 4-octet speakers AS4_PATH and AS4_AGGREGATOR are ignored.
            ATTR_AS4_PATH if four => {}
            ATTR_AS4_AGGREGATOR if four => {}
            ATTR_AS4_PATH => match parse_as_path(value, true, false) {
                Some(p) => as4_path = Some(p),
                None => fail(&mut out, code::OPTIONAL_ATTRIBUTE_ERROR)?,
            },
            ATTR_AS4_AGGREGATOR => match (v.u32(), v.u32(), v.is_empty()) {
                (Some(asn), Some(addr), true) => {
                    as4_aggregator = Some(Aggregator {
                        asn,
                        address: Ipv4Addr::from(addr),
                    })
                }
                _ => fail(&mut out, code::ATTRIBUTE_LENGTH_ERROR)?,
            },
            _ => {}
        }
    }

    if !four {
        // RFC 6793 §4.2.3: an AGGREGATOR from an AS other than AS_TRANS means an old speaker
        // aggregated, and both AS4_ attributes are ignored.
        let trans_aggregator = out
            .attrs
            .aggregator
            .is_none_or(|ag| ag.asn == u32::from(AS_TRANS));
        if trans_aggregator {
            if let (Some(ag), Some(ag4)) = (out.attrs.aggregator.as_mut(), as4_aggregator) {
                *ag = ag4;
            }
            if let (Some(path), Some(path4)) = (out.attrs.as_path.as_mut(), as4_path.as_ref()) {
                *path = merge_as4_path(path, path4);
            }
        }
    }
    Ok(out)
}

fn set_twa(out: &mut ParsedAttributes, reason: Notification) {
    if out.withdraw_reason.is_none() {
        out.withdraw_reason = Some(reason);
    }
}

/// Appends one attribute, choosing the extended length only when needed.
fn put(out: &mut Vec<u8>, flags: u8, type_code: u8, value: &[u8]) -> Result<(), EncodeError> {
    let flags = flags & !FLAG_EXTENDED_LENGTH;
    if let Ok(len) = u8::try_from(value.len()) {
        out.extend_from_slice(&[flags, type_code, len]);
    } else {
        let len = u16::try_from(value.len())
            .map_err(|_| EncodeError::Invalid("attribute longer than 65535 bytes"))?;
        out.extend_from_slice(&[flags | FLAG_EXTENDED_LENGTH, type_code]);
        out.extend_from_slice(&len.to_be_bytes());
    }
    out.extend_from_slice(value);
    Ok(())
}

fn as_path_bytes(path: &AsPath, four_octet: bool, skip_confed: bool) -> Vec<u8> {
    let mut v = Vec::new();
    for seg in &path.segments {
        if skip_confed && seg.kind.is_confed() {
            continue;
        }
        // Segments hold at most 255 ASNs on the wire; longer ones are split.
        for chunk in seg.asns.chunks(255) {
            v.push(seg.kind as u8);
            v.push(chunk.len() as u8);
            for &asn in chunk {
                if four_octet {
                    v.extend_from_slice(&asn.to_be_bytes());
                } else {
                    v.extend_from_slice(&u16::try_from(asn).unwrap_or(AS_TRANS).to_be_bytes());
                }
            }
        }
    }
    v
}

/// Appends the attributes, MP_REACH/MP_UNREACH first (RFC 7606 §5.1), then by type code.
pub(crate) fn encode(
    a: &PathAttributes,
    mp_reach: Option<&MpReach>,
    mp_unreach: Option<&MpUnreach>,
    ctx: &Context,
    out: &mut Vec<u8>,
) -> Result<(), EncodeError> {
    const WK: u8 = FLAG_TRANSITIVE;
    const OPT: u8 = FLAG_OPTIONAL;
    const OPT_T: u8 = FLAG_OPTIONAL | FLAG_TRANSITIVE;
    let four = ctx.four_octet_as;
    let mut v = Vec::new();
    if let Some(mp) = mp_reach {
        update::encode_mp_reach(mp, ctx, &mut v)?;
        put(out, OPT, ATTR_MP_REACH, &v)?;
    }
    if let Some(mp) = mp_unreach {
        v.clear();
        update::encode_mp_unreach(mp, ctx, &mut v)?;
        put(out, OPT, ATTR_MP_UNREACH, &v)?;
    }
    if a.unknown.iter().any(|u| spec(u.type_code).is_some()) {
        return Err(EncodeError::Invalid(
            "unknown attribute with a known type code",
        ));
    }
    let mut unknown: Vec<&RawAttribute> = a.unknown.iter().collect();
    unknown.sort_by_key(|u| u.type_code);
    let mut unknown = unknown.into_iter().peekable();
    let mut flush_unknown_below = |limit: u16, out: &mut Vec<u8>| -> Result<(), EncodeError> {
        while let Some(u) = unknown.next_if(|u| u16::from(u.type_code) < limit) {
            put(
                out,
                u.flags | FLAG_OPTIONAL | FLAG_TRANSITIVE | FLAG_PARTIAL,
                u.type_code,
                &u.value,
            )?;
        }
        Ok(())
    };

    flush_unknown_below(u16::from(ATTR_ORIGIN), out)?;
    if let Some(o) = a.origin {
        put(out, WK, ATTR_ORIGIN, &[o as u8])?;
    }
    flush_unknown_below(u16::from(ATTR_AS_PATH), out)?;
    if let Some(p) = &a.as_path {
        put(out, WK, ATTR_AS_PATH, &as_path_bytes(p, four, false))?;
    }
    flush_unknown_below(u16::from(ATTR_NEXT_HOP), out)?;
    if let Some(nh) = a.next_hop {
        put(out, WK, ATTR_NEXT_HOP, &nh.octets())?;
    }
    flush_unknown_below(u16::from(ATTR_MED), out)?;
    if let Some(med) = a.med {
        put(out, OPT, ATTR_MED, &med.to_be_bytes())?;
    }
    flush_unknown_below(u16::from(ATTR_LOCAL_PREF), out)?;
    if let Some(lp) = a.local_pref {
        put(out, WK, ATTR_LOCAL_PREF, &lp.to_be_bytes())?;
    }
    flush_unknown_below(u16::from(ATTR_ATOMIC_AGGREGATE), out)?;
    if a.atomic_aggregate {
        put(out, WK, ATTR_ATOMIC_AGGREGATE, &[])?;
    }
    flush_unknown_below(u16::from(ATTR_AGGREGATOR), out)?;
    if let Some(ag) = a.aggregator {
        v.clear();
        if four {
            v.extend_from_slice(&ag.asn.to_be_bytes());
        } else {
            v.extend_from_slice(&u16::try_from(ag.asn).unwrap_or(AS_TRANS).to_be_bytes());
        }
        v.extend_from_slice(&ag.address.octets());
        put(out, OPT_T, ATTR_AGGREGATOR, &v)?;
    }
    flush_unknown_below(u16::from(ATTR_COMMUNITIES), out)?;
    if !a.communities.is_empty() {
        v.clear();
        a.communities
            .iter()
            .for_each(|c| v.extend_from_slice(&c.to_be_bytes()));
        put(out, OPT_T, ATTR_COMMUNITIES, &v)?;
    }
    flush_unknown_below(u16::from(ATTR_ORIGINATOR_ID), out)?;
    if let Some(id) = a.originator_id {
        put(out, OPT, ATTR_ORIGINATOR_ID, &id.octets())?;
    }
    flush_unknown_below(u16::from(ATTR_CLUSTER_LIST), out)?;
    if !a.cluster_list.is_empty() {
        v.clear();
        a.cluster_list
            .iter()
            .for_each(|c| v.extend_from_slice(&c.octets()));
        put(out, OPT, ATTR_CLUSTER_LIST, &v)?;
    }
    flush_unknown_below(u16::from(ATTR_AS4_PATH), out)?;
    if !four {
        // RFC 6793 §4.2.2: toward a 2-octet peer, AS4_PATH (without confederation segments)
        // and AS4_AGGREGATOR carry the real numbers when any needs 4 octets.
        if let Some(p) = a.as_path.as_ref().filter(|p| p.has_wide_asn()) {
            let bytes = as_path_bytes(p, true, true);
            if !bytes.is_empty() {
                put(out, OPT_T, ATTR_AS4_PATH, &bytes)?;
            }
        }
        if let Some(ag) = a.aggregator.filter(|ag| ag.asn > 0xffff) {
            v.clear();
            v.extend_from_slice(&ag.asn.to_be_bytes());
            v.extend_from_slice(&ag.address.octets());
            put(out, OPT_T, ATTR_AS4_AGGREGATOR, &v)?;
        }
    }
    flush_unknown_below(u16::from(ATTR_LARGE_COMMUNITIES), out)?;
    if !a.large_communities.is_empty() {
        v.clear();
        for c in &a.large_communities {
            v.extend_from_slice(&c.global_admin.to_be_bytes());
            v.extend_from_slice(&c.local_data_1.to_be_bytes());
            v.extend_from_slice(&c.local_data_2.to_be_bytes());
        }
        put(out, OPT_T, ATTR_LARGE_COMMUNITIES, &v)?;
    }
    flush_unknown_below(256, out)?;
    Ok(())
}
