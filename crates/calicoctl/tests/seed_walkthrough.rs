//! The calicoctl steps of the seed article "Calico: BGP mode / Route Reflector mode", verbatim, on a
//! fresh datastore of each backend. What calico-node would have created (the default pool and three
//! nodes) is created first with `calicoctl create`.

mod common;

use common::{Ctl, row, table};

// The files live in tests/seed/ so scripts/run-main.sh shows the same ones. `cluster.yaml` is what
// calico-node registers on the article's three-node cluster; the other two are the article's files
// byte for byte (including the trailing space after `false`).
const CLUSTER: &str = include_str!("seed/cluster.yaml");
const BGPCONFIG_YAML: &str = include_str!("seed/bgpconfig.yaml");
const BGPPEER_YAML: &str = include_str!("seed/bgppeer.yaml");

fn walkthrough(ctl: Ctl) {
    let cluster = ctl.write("cluster.yaml", CLUSTER);
    let out = ctl.ok(&["create", "-f", &cluster]);
    assert_eq!(out, "Successfully created 4 resource(s)\n");

    // calicoctl get ippool -o wide
    let out = ctl.ok(&["get", "ippool", "-o", "wide"]);
    print!("$ calicoctl get ippool -o wide\n{out}");
    assert_eq!(
        table(&out),
        vec![
            row(&[
                "NAME",
                "CIDR",
                "NAT",
                "IPIPMODE",
                "VXLANMODE",
                "DISABLED",
                "SELECTOR"
            ]),
            row(&[
                "default-ipv4-ippool",
                "10.244.0.0/16",
                "true",
                "Always",
                "Never",
                "false",
                "all()"
            ]),
        ]
    );
    assert!(out.starts_with("NAME                  CIDR            NAT    IPIPMODE   VXLANMODE   DISABLED   SELECTOR   \n"));

    // calicoctl get ippool -o yaml > ippool.yaml ; edit ipipMode: Never ; calicoctl apply -f ippool.yaml
    let yaml = ctl.ok(&["get", "ippool", "-o", "yaml"]);
    assert!(yaml.contains("ipipMode: Always"), "{yaml}");
    let edited = yaml.replace("ipipMode: Always", "ipipMode: Never");
    ctl.write("ippool.yaml", &edited);
    let out = ctl.ok(&["apply", "-f", "ippool.yaml"]);
    print!("$ calicoctl apply -f ippool.yaml\n{out}");
    assert_eq!(out, "Successfully applied 1 'IPPool' resource(s)\n");
    let out = ctl.ok(&["get", "ippool", "-o", "wide"]);
    print!("$ calicoctl get ippool -o wide\n{out}");
    assert_eq!(
        table(&out)[1],
        row(&[
            "default-ipv4-ippool",
            "10.244.0.0/16",
            "true",
            "Never",
            "Never",
            "false",
            "all()"
        ])
    );

    // calicoctl get bgpconfig (none yet: the header only)
    let out = ctl.ok(&["get", "bgpconfig"]);
    print!("$ calicoctl get bgpconfig\n{out}");
    assert_eq!(out, "NAME   LOGSEVERITY   MESHENABLED   ASNUMBER   \n");

    // calicoctl get node -o wide
    let out = ctl.ok(&["get", "node", "-o", "wide"]);
    print!("$ calicoctl get node -o wide\n{out}");
    assert_eq!(
        table(&out),
        vec![
            row(&["NAME", "ASN", "IPV4", "IPV6"]),
            row(&["k8s-master", "(64512)", "192.168.179.102/24", ""]),
            row(&["k8s-node1", "(64512)", "192.168.179.103/24", ""]),
            row(&["k8s-node2", "(64512)", "192.168.179.104/24", ""]),
        ]
    );

    // cat bgpconfig.yaml ; calicoctl apply -f bgpconfig.yaml
    ctl.write("bgpconfig.yaml", BGPCONFIG_YAML);
    let out = ctl.ok(&["apply", "-f", "bgpconfig.yaml"]);
    print!("$ calicoctl apply -f bgpconfig.yaml\n{out}");
    assert_eq!(
        out,
        "Successfully applied 1 'BGPConfiguration' resource(s)\n"
    );
    let out = ctl.ok(&["get", "bgpconfig"]);
    print!("$ calicoctl get bgpconfig\n{out}");
    assert_eq!(
        table(&out),
        vec![
            row(&["NAME", "LOGSEVERITY", "MESHENABLED", "ASNUMBER"]),
            row(&["default", "Info", "false", "64512"])
        ]
    );

    // kubectl label node k8s-node2 route-reflector=true (the calicoctl equivalent)
    let out = ctl.ok(&["label", "node", "k8s-node2", "route-reflector=true"]);
    assert_eq!(
        out,
        "Successfully set label route-reflector on node k8s-node2\n"
    );

    // calicoctl get node k8s-node2 -o yaml > rr-node.yaml ; add routeReflectorClusterID ; apply
    let yaml = ctl.ok(&["get", "node", "k8s-node2", "-o", "yaml"]);
    assert!(
        yaml.starts_with("apiVersion: projectcalico.org/v3\nkind: Node\n"),
        "{yaml}"
    );
    let edited = yaml.replace(
        "    ipv4Address: 192.168.179.104/24\n",
        "    ipv4Address: 192.168.179.104/24\n    routeReflectorClusterID: 244.0.0.1\n",
    );
    assert_ne!(
        edited, yaml,
        "the node's bgp section was not where the article edits it:\n{yaml}"
    );
    ctl.write("rr-node.yaml", &edited);
    let out = ctl.ok(&["apply", "-f", "rr-node.yaml"]);
    print!("$ calicoctl apply -f rr-node.yaml\n{out}");
    assert_eq!(out, "Successfully applied 1 'Node' resource(s)\n");
    let yaml = ctl.ok(&["get", "node", "k8s-node2", "-o", "yaml"]);
    // YAML 1.1 readers could take 244.0.0.1 for a float, so the emitter may quote it: same string.
    assert!(
        yaml.contains("routeReflectorClusterID: 244.0.0.1\n")
            || yaml.contains("routeReflectorClusterID: \"244.0.0.1\"\n"),
        "{yaml}"
    );
    assert!(yaml.contains("route-reflector: \"true\""), "{yaml}");

    // cat bgppeer.yaml ; calicoctl apply -f bgppeer.yaml ; calicoctl get bgppeer
    ctl.write("bgppeer.yaml", BGPPEER_YAML);
    let out = ctl.ok(&["apply", "-f", "bgppeer.yaml"]);
    print!("$ calicoctl apply -f bgppeer.yaml\n{out}");
    assert_eq!(out, "Successfully applied 1 'BGPPeer' resource(s)\n");
    let out = ctl.ok(&["get", "bgppeer"]);
    print!("$ calicoctl get bgppeer\n{out}");
    assert_eq!(
        table(&out),
        vec![
            row(&["NAME", "PEERIP", "NODE", "ASN"]),
            row(&["peer-with-route-reflectors", "", "all()", "0"])
        ]
    );
}

#[test]
fn seed_walkthrough_embedded() {
    walkthrough(Ctl::embedded());
}

#[test]
fn seed_walkthrough_etcd() {
    walkthrough(Ctl::etcd());
}
