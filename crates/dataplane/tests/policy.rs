//! Network policy rendered by `calico_felix::policy_nft` into the `calico` table of a router namespace
//! with two workloads behind `cali*` interfaces, checked with real connections: a policy selecting the
//! web workload admits the client on port 80 only; traffic a policy does not govern goes through the
//! namespace's profile; the table reads back exactly as rendered, so a resync writes nothing. Needs
//! root, iproute2 and nftables.

mod dataplane_support;

use std::time::Duration;

use calico_api::documents::decode_documents;
use calico_felix::desired::Nat;
use calico_felix::{nat, policy_nft};
use calico_nft::{Family, Nft, Table, plan};
use calico_policy::PolicyModel;
use calico_testutil::netns::veth_pair;
use dataplane_support::Ns;

const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);

const RESOURCES: &str = r#"
apiVersion: projectcalico.org/v3
kind: Profile
metadata: {name: kns.default}
spec:
  ingress: [{action: Allow}]
  egress: [{action: Allow}]
---
apiVersion: projectcalico.org/v3
kind: WorkloadEndpoint
metadata:
  name: n1-k8s-web-eth0
  namespace: default
  labels: {app: web}
spec: {node: n1, orchestrator: k8s, pod: web, endpoint: eth0, interfaceName: caliweb, ipNetworks: [198.19.9.2/32], profiles: [kns.default]}
---
apiVersion: projectcalico.org/v3
kind: WorkloadEndpoint
metadata:
  name: n1-k8s-client-eth0
  namespace: default
  labels: {app: client}
spec: {node: n1, orchestrator: k8s, pod: client, endpoint: eth0, interfaceName: caliclient, ipNetworks: [198.19.8.2/32], profiles: [kns.default]}
---
apiVersion: projectcalico.org/v3
kind: NetworkPolicy
metadata: {name: web, namespace: default}
spec:
  selector: app == 'web'
  ingress:
  - action: Allow
    protocol: TCP
    source: {selector: app == 'client'}
    destination: {ports: [80]}
"#;

fn model() -> PolicyModel {
    let mut model = PolicyModel::new(Some("n1".to_string()));
    for doc in decode_documents(RESOURCES).expect("the resources parse") {
        let mut resource = doc.resource.expect("a valid resource");
        resource.apply_defaults();
        model.upsert(&resource).expect("the model takes it");
    }
    model
}

/// The whole `calico` table: NAT (empty) plus the policy objects.
fn table(model: &PolicyModel) -> Table {
    let policy = policy_nft::render(model);
    assert!(policy.problems.is_empty(), "{:?}", policy.problems);
    let mut table = nat::nat_table(&Nat::default());
    for set in policy.sets {
        table = table.with_set(set).expect("set");
    }
    for map in policy.maps {
        table = table.with_map(map).expect("map");
    }
    for chain in policy.chains {
        table = table.with_chain(chain).expect("chain");
    }
    table
}

#[test]
fn a_policy_admits_only_what_it_allows_and_the_profile_the_rest() {
    let web = Ns::new("fx-pol-web");
    let client = Ns::new("fx-pol-cli");
    let router = Ns::new("fx-pol-rtr");
    veth_pair(
        &router.netns,
        "caliweb",
        "198.19.9.1/24",
        &web.netns,
        "eth0",
        "198.19.9.2/24",
    )
    .unwrap_or_else(|e| panic!("veth: {e}"));
    veth_pair(
        &router.netns,
        "caliclient",
        "198.19.8.1/24",
        &client.netns,
        "eth0",
        "198.19.8.2/24",
    )
    .unwrap_or_else(|e| panic!("veth: {e}"));
    web.ip(&["route", "add", "default", "via", "198.19.9.1"]);
    client.ip(&["route", "add", "default", "via", "198.19.8.1"]);
    router
        .run(|| calico_netlink::sysctl::set("net/ipv4/ip_forward", "1"))
        .expect("enable forwarding in the router");
    let _web80 = web.listen("198.19.9.2:80");
    let _web81 = web.listen("198.19.9.2:81");
    let _client80 = client.listen("198.19.8.2:80");

    // Before any policy table: everything connects.
    assert!(client.connect("198.19.9.2:81", CONNECT_TIMEOUT));

    let model = model();
    let desired = table(&model);
    let load = plan(&desired, None);
    router
        .run(|| Nft::find().and_then(|nft| nft.apply(&load)))
        .unwrap_or_else(|e| panic!("{e}\n{}", load.render()));

    assert!(
        client.connect("198.19.9.2:80", CONNECT_TIMEOUT),
        "the policy allows the client to web on port 80"
    );
    assert!(
        !client.connect("198.19.9.2:81", CONNECT_TIMEOUT),
        "web's ingress is governed by the policy, which allows port 80 only"
    );
    assert!(
        web.connect("198.19.8.2:80", CONNECT_TIMEOUT),
        "no policy governs web's egress or the client's ingress: the profile allows it"
    );

    let listed = router.exec_ok(&["nft", "list", "table", "ip", "calico"]);
    for needle in [
        "chain cali-FORWARD",
        "chain cali-tw-caliweb",
        "chain cali-fw-caliclient",
        "chain cali-pi-np/default/web",
        "chain cali-pri-kns.default",
        "End of tier default. Drop if no policies passed packet",
        "NetworkPolicy default/web ingress rule 0",
    ] {
        assert!(listed.contains(needle), "{needle} missing:\n{listed}");
    }
    // Read back, the table is what was rendered: a periodic resync has nothing to write.
    let observed = router
        .run(|| Nft::find().and_then(|nft| nft.read_table(Family::Ip, desired.name())))
        .expect("read back")
        .expect("the table exists");
    assert!(plan(&desired, Some(&observed)).is_empty(), "{observed:?}");
}
