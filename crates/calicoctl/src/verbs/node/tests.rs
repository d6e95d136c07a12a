use std::net::IpAddr;

use calico_contracts::node_status::{PeerKind, ProtocolState, SessionState};
use time::{Date, Month, Time};

use super::*;

/// `at(2021, 3, 1, 6, 48, 39)`: that time in UTC.
fn at(year: i32, month: u8, day: u8, hour: u8, minute: u8, second: u8) -> OffsetDateTime {
    let month = Month::try_from(month).unwrap();
    Date::from_calendar_date(year, month, day)
        .unwrap()
        .with_time(Time::from_hms(hour, minute, second).unwrap())
        .assume_utc()
}

fn utc(_: OffsetDateTime) -> UtcOffset {
    UtcOffset::UTC
}

fn system_time(t: OffsetDateTime) -> SystemTime {
    t.into()
}

fn peer(address: &str, kind: PeerKind, since: OffsetDateTime) -> PeerRow {
    let address: IpAddr = address.parse().unwrap();
    PeerRow {
        address,
        port: 179,
        kind,
        family: Family::of(address),
        state: ProtocolState::Up,
        since: system_time(since),
        session: SessionState::Established,
        last_error: None,
    }
}

fn running(peers: Vec<PeerRow>) -> NodeBgpStatus {
    NodeBgpStatus {
        speaker_running: true,
        peers,
    }
}

// The expected texts are the seed article's `calicoctl node status` outputs, copied from the article
// (tests/seed/). Calico's calicoctl ends with one more blank line after the tables; the article shows
// it after its first and third outputs.

#[test]
fn seed_full_mesh() {
    // In the order calico-node sends them (by address); calicoctl keeps it.
    let status = running(vec![
        peer("192.168.179.103", PeerKind::Mesh, at(2021, 3, 1, 6, 49, 37)),
        peer("192.168.179.104", PeerKind::Mesh, at(2021, 3, 1, 6, 48, 39)),
    ]);
    let now = system_time(at(2021, 3, 1, 9, 0, 0));
    assert_eq!(
        render(&status, now, utc),
        include_str!("../../../tests/seed/node-status-mesh.txt")
    );
}

#[test]
fn seed_no_peers() {
    let now = system_time(at(2021, 3, 1, 9, 0, 0));
    assert_eq!(
        render(&running(Vec::new()), now, utc),
        include_str!("../../../tests/seed/node-status-no-peers.txt")
    );
}

#[test]
fn seed_route_reflector() {
    let status = running(vec![peer(
        "192.168.179.104",
        PeerKind::Node,
        at(2021, 3, 1, 8, 18, 0),
    )]);
    let now = system_time(at(2021, 3, 1, 8, 30, 0));
    assert_eq!(
        render(&status, now, utc),
        include_str!("../../../tests/seed/node-status-rr.txt")
    );
}

/// A session that does not come up: the INFO cell is longer than 30 and wrapped as tablewriter wraps
/// it. The expected table is one a user published (a Calico node that could not reach its peer).
#[test]
fn long_info_wraps() {
    let mut row = peer("172.18.0.1", PeerKind::Mesh, at(2021, 3, 1, 1, 56, 41));
    row.state = ProtocolState::Start;
    row.session = SessionState::Connect;
    row.last_error = Some("Socket: Network unreachable".into());
    let now = system_time(at(2021, 3, 1, 2, 0, 0));
    let expected = "\
Calico process is running.

IPv4 BGP status
+--------------+-------------------+-------+----------+--------------------------------+
| PEER ADDRESS |     PEER TYPE     | STATE |  SINCE   |              INFO              |
+--------------+-------------------+-------+----------+--------------------------------+
| 172.18.0.1   | node-to-node mesh | start | 01:56:41 | Connect Socket: Network        |
|              |                   |       |          | unreachable                    |
+--------------+-------------------+-------+----------+--------------------------------+

IPv6 BGP status
No IPv6 peers found.

";
    assert_eq!(render(&running(vec![row]), now, utc), expected);
}

#[test]
fn ipv6_peers_get_their_own_table_and_old_sessions_show_the_date() {
    let mut down = peer("fd00::3", PeerKind::Global, at(2021, 2, 27, 23, 10, 0));
    down.state = ProtocolState::Start;
    down.session = SessionState::Active;
    down.last_error = Some("Socket: Connection refused".into());
    let status = running(vec![
        peer("fd00::2", PeerKind::Mesh, at(2021, 3, 1, 8, 0, 0)),
        down,
    ]);
    let now = system_time(at(2021, 3, 1, 9, 0, 0));
    // The INFO column is 30 wide although its longest line is 25: a wrapped cell takes the limit.
    let expected = "\
Calico process is running.

IPv4 BGP status
No IPv4 peers found.

IPv6 BGP status
+--------------+-------------------+-------+------------+--------------------------------+
| PEER ADDRESS |     PEER TYPE     | STATE |   SINCE    |              INFO              |
+--------------+-------------------+-------+------------+--------------------------------+
| fd00::2      | node-to-node mesh | up    | 08:00:00   | Established                    |
| fd00::3      | global            | start | 2021-02-27 | Active Socket: Connection      |
|              |                   |       |            | refused                        |
+--------------+-------------------+-------+------------+--------------------------------+

";
    assert_eq!(render(&status, now, utc), expected);
}

#[test]
fn since_follows_birds_rule_in_local_time() {
    let since = system_time(at(2021, 3, 1, 6, 48, 39));
    let plus_two = |_: OffsetDateTime| UtcOffset::from_hms(2, 0, 0).unwrap();
    // Under 20 hours: the local time of day.
    let now = system_time(at(2021, 3, 2, 2, 48, 38));
    assert_eq!(since_text(since, now, &utc), "06:48:39");
    assert_eq!(since_text(since, now, &plus_two), "08:48:39");
    // From 20 hours on: the local date.
    let now = system_time(at(2021, 3, 2, 2, 48, 39));
    assert_eq!(since_text(since, now, &utc), "2021-03-01");
    let late = system_time(at(2021, 3, 1, 23, 0, 0));
    let now = system_time(at(2021, 3, 3, 0, 0, 0));
    assert_eq!(since_text(late, now, &plus_two), "2021-03-02");
    // Ahead of now.
    assert_eq!(since_text(now, since, &utc), "00:00:00");
}

#[test]
fn speaker_not_running() {
    let status = NodeBgpStatus {
        speaker_running: false,
        peers: Vec::new(),
    };
    assert_eq!(
        render(&status, SystemTime::now(), utc),
        "Calico process is running.\n\nThe BGP backend process (BIRD) is not running.\n\n"
    );
}
