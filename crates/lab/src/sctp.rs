//! Just enough SCTP (RFC 9260) for `calico-lab probe --protocol sctp` on a kernel without SCTP sockets:
//! the first two packets of an association. The prober sends an INIT; the pod's probe server answers
//! with an INIT-ACK whose State Cookie carries the pod's name (a port it serves) or an ABORT (a port
//! it does not serve). Both ends use raw IP sockets (protocol 132), which see every SCTP packet of
//! their namespace, so everything received is parsed here, purely, and matched on addresses, ports
//! and verification tag. Parsing never panics: a packet that is short, malformed or carries a wrong
//! checksum is `None`.

use std::net::Ipv4Addr;

/// IP protocol number of SCTP.
pub const PROTOCOL: i32 = 132;

const INIT: u8 = 1;
const INIT_ACK: u8 = 2;
const ABORT: u8 = 6;
/// INIT and INIT-ACK parameter type of the State Cookie.
const STATE_COOKIE: u16 = 7;
/// ABORT flag: the verification tag is the receiver's own (reflected).
const T_BIT: u8 = 0x01;
/// Common header: source port, destination port, verification tag, checksum.
const COMMON_HEADER: usize = 12;
/// INIT and INIT-ACK up to their parameters: type, flags, length, initiate tag, a_rwnd, streams, TSN.
const INIT_FIXED: usize = 20;
/// What we offer in our INIT and INIT-ACK: receive window and stream counts.
const A_RWND: u32 = 65_536;
const STREAMS: u16 = 1;

/// The first chunk of an SCTP packet, as far as the probe cares.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Chunk {
    Init { initiate_tag: u32 },
    InitAck { initiate_tag: u32, cookie: Vec<u8> },
    Abort { reflected: bool },
    Other(u8),
}

/// A received SCTP packet with the addresses of the IPv4 header it came in.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Packet {
    pub source: Ipv4Addr,
    pub destination: Ipv4Addr,
    pub source_port: u16,
    pub destination_port: u16,
    pub verification_tag: u32,
    pub chunk: Chunk,
}

fn u16_at(bytes: &[u8], at: usize) -> Option<u16> {
    let b = bytes.get(at..at.checked_add(2)?)?;
    Some(u16::from_be_bytes([b[0], b[1]]))
}

fn u32_at(bytes: &[u8], at: usize) -> Option<u32> {
    let b = bytes.get(at..at.checked_add(4)?)?;
    Some(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
}

/// The CRC32c of an SCTP packet with its checksum field taken as zero (RFC 9260 Appendix A).
fn checksum(sctp: &[u8]) -> u32 {
    let head = sctp.get(..8).unwrap_or(sctp);
    let crc = crc32c::crc32c(head);
    let crc = crc32c::crc32c_append(crc, &[0; 4]);
    crc32c::crc32c_append(crc, sctp.get(COMMON_HEADER..).unwrap_or(&[]))
}

/// Fills in the checksum of a packet built with a zero one; the CRC goes out in little-endian byte
/// order, as RFC 9260's reference code and every implementation puts it.
fn seal(mut sctp: Vec<u8>) -> Vec<u8> {
    let crc = checksum(&sctp);
    if let Some(field) = sctp.get_mut(8..COMMON_HEADER) {
        field.copy_from_slice(&crc.to_le_bytes());
    }
    sctp
}

fn common_header(source_port: u16, destination_port: u16, verification_tag: u32) -> Vec<u8> {
    let mut out = Vec::with_capacity(64);
    out.extend_from_slice(&source_port.to_be_bytes());
    out.extend_from_slice(&destination_port.to_be_bytes());
    out.extend_from_slice(&verification_tag.to_be_bytes());
    out.extend_from_slice(&[0; 4]);
    out
}

fn init_fixed(out: &mut Vec<u8>, kind: u8, length: u16, initiate_tag: u32, tsn: u32) {
    out.push(kind);
    out.push(0);
    out.extend_from_slice(&length.to_be_bytes());
    out.extend_from_slice(&initiate_tag.to_be_bytes());
    out.extend_from_slice(&A_RWND.to_be_bytes());
    out.extend_from_slice(&STREAMS.to_be_bytes());
    out.extend_from_slice(&STREAMS.to_be_bytes());
    out.extend_from_slice(&tsn.to_be_bytes());
}

/// An INIT from `source_port` to `destination_port` (verification tag 0, as for every INIT).
/// `initiate_tag` must not be 0.
pub fn init(source_port: u16, destination_port: u16, initiate_tag: u32) -> Vec<u8> {
    let mut out = common_header(source_port, destination_port, 0);
    init_fixed(
        &mut out,
        INIT,
        INIT_FIXED as u16,
        initiate_tag,
        initiate_tag,
    );
    seal(out)
}

/// The INIT-ACK answering `init` (an [`Chunk::Init`] packet): addressed with the INIT's initiate
/// tag, offering `own_tag`, with `cookie` as its State Cookie. `None` if `init` is not an INIT or
/// the cookie is too long for one parameter.
pub fn init_ack(init: &Packet, own_tag: u32, cookie: &[u8]) -> Option<Vec<u8>> {
    let Chunk::Init { initiate_tag } = init.chunk else {
        return None;
    };
    let parameter_length = u16::try_from(4 + cookie.len()).ok()?;
    let chunk_length = parameter_length.checked_add(INIT_FIXED as u16)?;
    let mut out = common_header(init.destination_port, init.source_port, initiate_tag);
    init_fixed(&mut out, INIT_ACK, chunk_length, own_tag, own_tag);
    out.extend_from_slice(&STATE_COOKIE.to_be_bytes());
    out.extend_from_slice(&parameter_length.to_be_bytes());
    out.extend_from_slice(cookie);
    while !out.len().is_multiple_of(4) {
        out.push(0);
    }
    Some(seal(out))
}

/// The ABORT answering an INIT to a port nothing serves: the INIT's initiate tag as verification
/// tag, T bit clear (RFC 9260 §8.4). `None` if `init` is not an INIT.
pub fn abort(init: &Packet) -> Option<Vec<u8>> {
    let Chunk::Init { initiate_tag } = init.chunk else {
        return None;
    };
    let mut out = common_header(init.destination_port, init.source_port, initiate_tag);
    out.extend_from_slice(&[ABORT, 0, 0, 4]);
    Some(seal(out))
}

/// Parses an IPv4 packet carrying SCTP, as a raw socket receives it (IP header included). `None`
/// for anything else: not IPv4, not SCTP, a fragment, truncated, a wrong checksum, a first chunk
/// whose length runs past the packet, an INIT or INIT-ACK without its fixed fields.
pub fn parse_ipv4(packet: &[u8]) -> Option<Packet> {
    let first = *packet.first()?;
    if first >> 4 != 4 {
        return None;
    }
    let header_length = usize::from(first & 0x0f) * 4;
    let total_length = usize::from(u16_at(packet, 2)?);
    let flags_fragment = u16_at(packet, 6)?;
    if header_length < 20
        || total_length < header_length
        || total_length > packet.len()
        || *packet.get(9)? != PROTOCOL as u8
        // A fragment (more fragments, or an offset) is not a whole SCTP packet.
        || flags_fragment & 0x3fff != 0
    {
        return None;
    }
    let source = Ipv4Addr::from(u32_at(packet, 12)?);
    let destination = Ipv4Addr::from(u32_at(packet, 16)?);
    let sctp = packet.get(header_length..total_length)?;
    parse_sctp(sctp).map(
        |(source_port, destination_port, verification_tag, chunk)| Packet {
            source,
            destination,
            source_port,
            destination_port,
            verification_tag,
            chunk,
        },
    )
}

/// Ports, verification tag and first chunk of an SCTP packet with a correct checksum.
fn parse_sctp(sctp: &[u8]) -> Option<(u16, u16, u32, Chunk)> {
    let source_port = u16_at(sctp, 0)?;
    let destination_port = u16_at(sctp, 2)?;
    let verification_tag = u32_at(sctp, 4)?;
    let stored = u32::from_le_bytes(sctp.get(8..12)?.try_into().ok()?);
    if stored != checksum(sctp) {
        return None;
    }
    let chunk = sctp.get(COMMON_HEADER..)?;
    let kind = *chunk.first()?;
    let flags = *chunk.get(1)?;
    let length = usize::from(u16_at(chunk, 2)?);
    if length < 4 || length > chunk.len() {
        return None;
    }
    let chunk = &chunk[..length];
    let parsed = match kind {
        INIT => {
            if length < INIT_FIXED {
                return None;
            }
            Chunk::Init {
                initiate_tag: u32_at(chunk, 4)?,
            }
        }
        INIT_ACK => {
            if length < INIT_FIXED {
                return None;
            }
            Chunk::InitAck {
                initiate_tag: u32_at(chunk, 4)?,
                cookie: state_cookie(&chunk[INIT_FIXED..])?,
            }
        }
        ABORT => Chunk::Abort {
            reflected: flags & T_BIT != 0,
        },
        other => Chunk::Other(other),
    };
    Some((source_port, destination_port, verification_tag, parsed))
}

/// The State Cookie among an INIT-ACK's parameters (each padded to 4 bytes), `None` if there is
/// none or a parameter's length is wrong.
fn state_cookie(mut parameters: &[u8]) -> Option<Vec<u8>> {
    while !parameters.is_empty() {
        let kind = u16_at(parameters, 0)?;
        let length = usize::from(u16_at(parameters, 2)?);
        if length < 4 {
            return None;
        }
        let value = parameters.get(4..length)?;
        if kind == STATE_COOKIE {
            return Some(value.to_vec());
        }
        let padded = length.div_ceil(4) * 4;
        parameters = parameters.get(padded.min(parameters.len())..)?;
    }
    None
}

/// Source port, destination port and verification tag at the start of an SCTP packet quoted in an
/// ICMP error (whose quote may be cut short after them, so no checksum is checked).
pub fn quoted_header(sctp: &[u8]) -> Option<(u16, u16, u32)> {
    Some((u16_at(sctp, 0)?, u16_at(sctp, 2)?, u32_at(sctp, 4)?))
}

#[cfg(test)]
mod tests {
    use super::*;

    const CLIENT: Ipv4Addr = Ipv4Addr::new(198, 18, 1, 2);
    const SERVER: Ipv4Addr = Ipv4Addr::new(198, 18, 2, 3);

    /// `sctp` wrapped in an IPv4 header from `source` to `destination`.
    fn ipv4(source: Ipv4Addr, destination: Ipv4Addr, sctp: &[u8]) -> Vec<u8> {
        let total = (20 + sctp.len()) as u16;
        let mut out = vec![0x45, 0];
        out.extend_from_slice(&total.to_be_bytes());
        out.extend_from_slice(&[0, 0, 0x40, 0, 64, PROTOCOL as u8, 0, 0]);
        out.extend_from_slice(&source.octets());
        out.extend_from_slice(&destination.octets());
        out.extend_from_slice(sctp);
        out
    }

    fn received_init() -> Packet {
        parse_ipv4(&ipv4(CLIENT, SERVER, &init(40000, 9000, 0xdead_beef))).expect("an INIT")
    }

    #[test]
    fn the_checksum_is_crc32c_in_little_endian_order() {
        // RFC 3720 B.4: 32 zero bytes have the CRC32c 0x8a9136aa, sent as aa 36 91 8a.
        assert_eq!(crc32c::crc32c(&[0; 32]), 0x8a91_36aa);
        let packet = init(1, 2, 3);
        let crc = checksum(&packet);
        assert_eq!(packet[8..12], crc.to_le_bytes());
    }

    #[test]
    fn an_init_parses_back_with_its_addresses_ports_and_tag() {
        let packet = received_init();
        assert_eq!(
            packet,
            Packet {
                source: CLIENT,
                destination: SERVER,
                source_port: 40000,
                destination_port: 9000,
                verification_tag: 0,
                chunk: Chunk::Init {
                    initiate_tag: 0xdead_beef
                },
            }
        );
    }

    #[test]
    fn the_init_ack_goes_back_to_the_initiator_with_its_tag_and_the_cookie() {
        let init = received_init();
        let answer = init_ack(&init, 77, b"node2-pod1").expect("an INIT-ACK");
        assert_eq!(answer.len() % 4, 0, "padded to 4 bytes");
        let back = parse_ipv4(&ipv4(SERVER, CLIENT, &answer)).expect("parses");
        assert_eq!(back.source_port, 9000);
        assert_eq!(back.destination_port, 40000);
        assert_eq!(back.verification_tag, 0xdead_beef);
        assert_eq!(
            back.chunk,
            Chunk::InitAck {
                initiate_tag: 77,
                cookie: b"node2-pod1".to_vec()
            }
        );
        let refusal = abort(&init).expect("an ABORT");
        let back = parse_ipv4(&ipv4(SERVER, CLIENT, &refusal)).expect("parses");
        assert_eq!(back.verification_tag, 0xdead_beef);
        assert_eq!(back.chunk, Chunk::Abort { reflected: false });
        assert_eq!(init_ack(&back, 1, b"x"), None, "only an INIT is answered");
        assert_eq!(abort(&back), None);
    }

    #[test]
    fn truncated_packets_are_rejected() {
        let answer = init_ack(&received_init(), 77, b"node2-pod1").expect("an INIT-ACK");
        let whole = ipv4(SERVER, CLIENT, &answer);
        for cut in 0..whole.len() {
            assert_eq!(parse_ipv4(&whole[..cut]), None, "cut at {cut}");
        }
        // The IP header claims less than the SCTP packet holds: cut too.
        let mut short = whole.clone();
        short[2..4].copy_from_slice(&((whole.len() - 4) as u16).to_be_bytes());
        assert_eq!(parse_ipv4(&short), None);
    }

    #[test]
    fn a_wrong_checksum_is_rejected() {
        let mut packet = ipv4(CLIENT, SERVER, &init(40000, 9000, 5));
        assert!(parse_ipv4(&packet).is_some());
        packet[20 + 8] ^= 1;
        assert_eq!(parse_ipv4(&packet), None, "checksum changed");
        let mut packet = ipv4(CLIENT, SERVER, &init(40000, 9000, 5));
        packet[20 + 12 + 4] ^= 1;
        assert_eq!(parse_ipv4(&packet), None, "content changed");
    }

    #[test]
    fn foreign_packets_are_rejected_or_told_apart() {
        let sctp = init(40000, 9000, 5);
        let mut udp = ipv4(CLIENT, SERVER, &sctp);
        udp[9] = 17;
        assert_eq!(parse_ipv4(&udp), None, "not SCTP");
        let mut v6 = ipv4(CLIENT, SERVER, &sctp);
        v6[0] = 0x60;
        assert_eq!(parse_ipv4(&v6), None, "not IPv4");
        let mut fragment = ipv4(CLIENT, SERVER, &sctp);
        fragment[6] = 0x20;
        assert_eq!(parse_ipv4(&fragment), None, "a fragment");
        // A COOKIE-ECHO (type 10) of someone else's association: parsed, and not ours to answer.
        let mut other = common_header(1, 2, 3);
        other.extend_from_slice(&[10, 0, 0, 8, 1, 2, 3, 4]);
        let other = parse_ipv4(&ipv4(CLIENT, SERVER, &seal(other))).expect("parses");
        assert_eq!(other.chunk, Chunk::Other(10));
        assert_eq!(init_ack(&other, 1, b"x"), None);
        // An INIT-ACK without a State Cookie, or with a parameter length past its end.
        let mut no_cookie = common_header(9000, 40000, 5);
        init_fixed(&mut no_cookie, INIT_ACK, 20, 9, 9);
        assert_eq!(parse_ipv4(&ipv4(SERVER, CLIENT, &seal(no_cookie))), None);
        let mut long_parameter = common_header(9000, 40000, 5);
        init_fixed(&mut long_parameter, INIT_ACK, 28, 9, 9);
        long_parameter.extend_from_slice(&[0, 7, 0, 200, b'a', b'b', b'c', b'd']);
        assert_eq!(
            parse_ipv4(&ipv4(SERVER, CLIENT, &seal(long_parameter))),
            None
        );
    }

    #[test]
    fn a_quoted_header_needs_only_its_first_eight_bytes() {
        let sctp = init(40000, 9000, 5);
        assert_eq!(quoted_header(&sctp[..8]), Some((40000, 9000, 0)));
        assert_eq!(quoted_header(&sctp[..7]), None);
    }

    proptest::proptest! {
        #[test]
        fn random_bytes_never_panic(bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..200)) {
            let _ = parse_ipv4(&bytes);
            let _ = quoted_header(&bytes);
            // The same bytes behind a valid IPv4 header reach the SCTP parser.
            let _ = parse_ipv4(&ipv4(CLIENT, SERVER, &bytes));
            // And with their checksum made right, the chunk parser.
            let _ = parse_ipv4(&ipv4(CLIENT, SERVER, &seal(bytes)));
        }

        #[test]
        fn damaged_answers_never_panic(cut in 0usize..80, at in 0usize..80, bit in 0u8..8) {
            let answer = init_ack(&received_init(), 77, b"node2-pod1").expect("an INIT-ACK");
            let mut whole = ipv4(SERVER, CLIENT, &answer);
            if let Some(byte) = whole.get_mut(at) {
                *byte ^= 1 << bit;
            }
            whole.truncate(cut.min(whole.len()));
            let _ = parse_ipv4(&whole);
        }
    }
}
