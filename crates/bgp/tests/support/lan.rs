//! A LAN of test namespaces: a hub namespace holding a bridge, and nodes each joined to it by
//! a veth pair (`eth0` inside the node) with 198.18.`net`.`host`/24.

use std::net::Ipv4Addr;

use calico_testutil::netns::TestNetns;

pub struct Lan {
    tag: String,
    net: u8,
    hub: TestNetns,
}

pub struct Node {
    pub ns: TestNetns,
    pub addr: Ipv4Addr,
}

impl Lan {
    pub fn new(tag: &str, net: u8) -> Lan {
        let hub = TestNetns::new(&format!("bgp-{tag}-hub")).expect("hub namespace");
        hub.ip(&["link", "add", "br0", "type", "bridge"])
            .expect("bridge");
        hub.ip(&["link", "set", "br0", "up"]).expect("bridge up");
        Lan {
            tag: tag.to_string(),
            net,
            hub,
        }
    }

    /// A node at 198.18.`net`.`host`.
    pub fn node(&self, host: u8) -> Node {
        let ns = TestNetns::new(&format!("bgp-{}-n{host}", self.tag)).expect("node namespace");
        let port = format!("p{host}");
        self.hub
            .ip(&[
                "link",
                "add",
                &port,
                "type",
                "veth",
                "peer",
                "name",
                "eth0",
                "netns",
                ns.name(),
            ])
            .expect("veth");
        self.hub
            .ip(&["link", "set", &port, "master", "br0", "up"])
            .expect("bridge port");
        let addr = Ipv4Addr::new(198, 18, self.net, host);
        ns.ip(&["addr", "add", &format!("{addr}/24"), "dev", "eth0"])
            .expect("node address");
        ns.ip(&["link", "set", "eth0", "up"]).expect("eth0 up");
        Node { ns, addr }
    }
}
