//! The VXLAN MAC of a node that has none in its Node resource must be the one Calico's Felix derives, or a
//! host running Calico and one running calico-rs would program different MACs for the same VTEP.
//!
//! Calico derives it in felix/calc/vxlan_resolver.go (`vtepMACForHost`): the byte `'f'` (0x66) followed
//! by the first five bytes of SHA-1 of the node name (IPv4; IPv6 hashes `<name>-v6`). The expected values
//! below are the ones Calico's own calculation-graph tests pin for its canned host names
//! (felix/calc/states_for_test.go, with the names from felix/calc/resources_for_test.go).

use calico_felix::desired::derived_vxlan_mac;

fn printed(mac: [u8; 6]) -> String {
    mac.iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(":")
}

#[test]
fn derived_vxlan_mac_is_calicos_for_its_test_hosts() {
    assert_eq!(
        printed(derived_vxlan_mac("remotehostname")),
        "66:3e:ca:a4:db:65"
    );
    assert_eq!(
        printed(derived_vxlan_mac("remotehostname2")),
        "66:40:18:59:1f:16"
    );
}
