//! `calicoctl ipam show | check | release | configure` against real IPAM state: addresses are handed out
//! with the IPAM library (as the CNI plugin would), endpoints and nodes are written with calicoctl, and
//! the commands are run as a user would.

mod common;

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::sync::Arc;

use calico_datastore::Store;
use calico_datastore::config::{DatastoreConfig, OpenMode};
use calico_ipam::{AssignRequest, Ipam};
use common::Ctl;

const POOL: &str = "apiVersion: projectcalico.org/v3\nkind: IPPool\nmetadata:\n  name: pool-a\nspec:\n  cidr: 198.18.0.0/24\n  blockSize: 29\n";

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio runtime")
}

/// IPAM over the same datastore the harness points calicoctl at.
fn ipam_for(ctl: &Ctl, rt: &tokio::runtime::Runtime) -> Ipam {
    let env: BTreeMap<String, String> = ctl
        .command()
        .get_envs()
        .filter_map(|(k, v)| {
            Some((
                k.to_string_lossy().into_owned(),
                v?.to_string_lossy().into_owned(),
            ))
        })
        .collect();
    let config = DatastoreConfig::from_env(env).expect("datastore config");
    let store: Arc<dyn Store> = rt
        .block_on(config.connect(OpenMode::MustExist))
        .expect("connect");
    Ipam::new(store)
}

/// One address for a pod on `host`, as the CNI plugin asks for it.
fn assign_pod(
    rt: &tokio::runtime::Runtime,
    ipam: &Ipam,
    host: &str,
    pod: &str,
    max_blocks: Option<u32>,
) -> Result<IpAddr, calico_ipam::IpamError> {
    let mut req = AssignRequest::workload(1, &format!("k8s-pod-network.{pod}"), host);
    req.attrs.insert("namespace".into(), "ns1".into());
    req.attrs.insert("pod".into(), pod.into());
    req.max_blocks_per_host = max_blocks;
    let got = rt.block_on(ipam.auto_assign(&req))?;
    assert_eq!(got.v4.len(), 1);
    Ok(got.v4[0].addr())
}

fn workload_yaml(node: &str, pod: &str, ip: IpAddr) -> String {
    format!(
        "apiVersion: projectcalico.org/v3\nkind: WorkloadEndpoint\nmetadata:\n  name: {node}-k8s-{pod}-eth0\n  namespace: ns1\nspec:\n  orchestrator: k8s\n  node: {node}\n  pod: {pod}\n  endpoint: eth0\n  interfaceName: cali{pod}\n  ipNetworks:\n  - {ip}/32\n"
    )
}

/// Rows of a `+---+` box table, each cell trimmed (border and header lines dropped).
fn box_rows(text: &str) -> Vec<Vec<String>> {
    text.lines()
        .filter(|l| l.starts_with('|'))
        .map(|l| {
            l.trim_matches('|')
                .split('|')
                .map(|c| c.trim().to_string())
                .collect()
        })
        .collect()
}

fn cells(row: &[&str]) -> Vec<String> {
    row.iter().map(|s| s.to_string()).collect()
}

fn block_of(ip: IpAddr) -> String {
    let net = ipnet::IpNet::new(ip, 29).unwrap().trunc();
    net.to_string()
}

#[test]
fn show_check_and_release_agree_with_what_was_allocated() {
    let rt = runtime();
    for ctl in [Ctl::embedded(), Ctl::etcd()] {
        let pool = ctl.write("pool.yaml", POOL);
        ctl.ok(&["apply", "-f", &pool]);
        ctl.write(
            "clusterinfo.yaml",
            "apiVersion: projectcalico.org/v3\nkind: ClusterInformation\nmetadata:\n  name: default\nspec:\n  clusterGUID: 5ca1ab1e0000\n  clusterType: k8s,bgp\n",
        );
        ctl.ok(&["apply", "-f", "clusterinfo.yaml"]);
        let ipam = ipam_for(&ctl, &rt);

        // nodea: three pods and its VXLAN tunnel address; nodeb: two pods.
        let a1 = assign_pod(&rt, &ipam, "nodea", "poda1", None).unwrap();
        let a2 = assign_pod(&rt, &ipam, "nodea", "poda2", None).unwrap();
        let a3 = assign_pod(&rt, &ipam, "nodea", "poda3", None).unwrap();
        let mut tunnel_req = AssignRequest::workload(1, "vxlan-tunnel-addr-nodea", "nodea");
        tunnel_req
            .attrs
            .insert("type".into(), "vxlanTunnelAddress".into());
        tunnel_req.intended_use = calico_api::spec::ippool::AllowedUse::Tunnel;
        let tunnel = rt.block_on(ipam.auto_assign(&tunnel_req)).unwrap().v4[0].addr();
        let b1 = assign_pod(&rt, &ipam, "nodeb", "podb1", None).unwrap();
        let b2 = assign_pod(&rt, &ipam, "nodeb", "podb2", None).unwrap();
        assert_eq!(block_of(a1), block_of(tunnel));
        assert_ne!(block_of(a1), block_of(b1));

        // Endpoints exist for poda1, poda2 and podb1; poda3 and podb2 are leaks.
        let weps = [
            workload_yaml("nodea", "poda1", a1),
            workload_yaml("nodea", "poda2", a2),
            workload_yaml("nodeb", "podb1", b1),
        ]
        .join("---\n");
        ctl.write("weps.yaml", &weps);
        ctl.ok(&["apply", "-f", "weps.yaml"]);
        ctl.write(
            "node.yaml",
            &format!(
                "apiVersion: projectcalico.org/v3\nkind: Node\nmetadata:\n  name: nodea\nspec:\n  ipv4VXLANTunnelAddr: {tunnel}\n"
            ),
        );
        ctl.ok(&["apply", "-f", "node.yaml"]);

        // Usage per pool, then per block.
        let show = ctl.ok(&["ipam", "show"]);
        assert_eq!(
            show,
            "+----------+---------------+-----------+------------+-----------+\n\
             | GROUPING |     CIDR      | IPS TOTAL | IPS IN USE | IPS FREE  |\n\
             +----------+---------------+-----------+------------+-----------+\n\
             | IP Pool  | 198.18.0.0/24 |       256 | 6 (2%)     | 250 (98%) |\n\
             +----------+---------------+-----------+------------+-----------+\n"
        );
        let rows = box_rows(&ctl.ok(&["ipam", "show", "--show-blocks"]));
        assert_eq!(rows.len(), 4, "{rows:?}");
        assert_eq!(rows[1][0], "IP Pool");
        let mut block_rows: Vec<Vec<String>> = rows[2..].to_vec();
        block_rows.sort();
        let mut expected = vec![
            cells(&["Block", &block_of(a1), "8", "4 (50%)", "4 (50%)"]),
            cells(&["Block", &block_of(b1), "8", "2 (25%)", "6 (75%)"]),
        ];
        expected.sort();
        assert_eq!(block_rows, expected);

        // One address.
        let shown = ctl.ok(&["ipam", "show", &format!("--ip={a1}")]);
        let lines: Vec<&str> = shown.lines().collect();
        assert_eq!(lines[0], format!("IP {a1} is in use"));
        assert_eq!(lines[1], "Handle ID: k8s-pod-network.poda1");
        assert_eq!(lines[2], "Active Owner Attributes:");
        assert_eq!(
            &lines[3..6],
            &["  namespace: ns1", "  node: nodea", "  pod: poda1"]
        );
        assert!(lines[6].starts_with("  timestamp: "), "{shown}");
        assert_eq!(
            ctl.ok(&["ipam", "show", "--ip", "198.18.0.250"]),
            "198.18.0.250 is not assigned\n"
        );
        let (_, err) = ctl.fails(&["ipam", "show", "--ip", "not-an-ip"]);
        assert!(err.contains("invalid IP address"), "{err}");

        // The check finds exactly the two leaks and says which they are.
        let report = ctl.path("report.json");
        let out = ctl.ok(&[
            "ipam",
            "check",
            "--show-problem-ips",
            "-o",
            report.to_str().unwrap(),
        ]);
        assert!(
            out.starts_with("Checking IPAM for inconsistencies...\n"),
            "{out}"
        );
        assert!(out.contains("Found 2 IPAM blocks.\n"), "{out}");
        assert!(out.contains("IPAM blocks record 6 allocations.\n"), "{out}");
        assert!(out.contains("Found 1 node tunnel IPs.\n"), "{out}");
        assert!(out.contains("Found 3 workload IPs.\n"), "{out}");
        assert!(out.contains("  nodea has 4 allocations\n"), "{out}");
        assert!(
            out.contains(&format!(
                "  {a3} leaked; attrs Main:k8s-pod-network.poda3 Extra:namespace=ns1,node=nodea,pod=poda3,timestamp="
            )),
            "{out}"
        );
        assert!(
            out.contains(&format!("  {b2} leaked; attrs Main:k8s-pod-network.podb2")),
            "{out}"
        );
        assert!(
            out.contains("Found 2 IPs that are allocated in IPAM but not actually in use.\n"),
            "{out}"
        );
        assert!(
            out.contains("Found 0 handles with no matching IPs (and 6 handles with matches).\n"),
            "{out}"
        );
        assert!(
            out.ends_with("Check complete; found 2 problems.\n"),
            "{out}"
        );

        let json: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(&report).unwrap()).unwrap();
        assert_eq!(json["clusterGUID"], "5ca1ab1e0000");
        assert_eq!(json["clusterType"], "k8s,bgp");
        let leaked: Vec<String> = json["allocations"]
            .as_object()
            .unwrap()
            .values()
            .flat_map(|v| v.as_array().unwrap().clone())
            .filter(|a| a["inUse"] == false)
            .map(|a| a["ip"].as_str().unwrap().to_string())
            .collect();
        let mut want = vec![a3.to_string(), b2.to_string()];
        want.sort();
        let mut leaked_sorted = leaked.clone();
        leaked_sorted.sort();
        assert_eq!(leaked_sorted, want);
        let tunnel_alloc = &json["allocations"][tunnel.to_string()][0];
        assert_eq!(tunnel_alloc["owners"][0], "Node(nodea)");
        assert_eq!(tunnel_alloc["type"], "vxlanTunnelAddress");

        // A report from another cluster is refused, whatever the flags.
        let mut foreign = json.clone();
        foreign["clusterGUID"] = "0ther0000000".into();
        ctl.write("foreign.json", &foreign.to_string());
        let (_, err) = ctl.fails(&["ipam", "release", "--from-report=foreign.json", "--force"]);
        assert!(
            err.contains("mismatched cluster GUID. Refusing to release"),
            "{err}"
        );
        // Without a datastore lock, releasing needs --force.
        let report_arg = format!("--from-report={}", report.display());
        let (_, err) = ctl.fails(&["ipam", "release", &report_arg]);
        assert!(err.contains("data store is not locked"), "{err}");

        let out = ctl.ok(&["ipam", "release", &report_arg, "--force"]);
        assert!(
            out.contains("Releasing 2 old IPs...\nReleased 2 IPs successfully\n"),
            "{out}"
        );
        assert!(
            out.contains("Report didn't contain any handles to clean up.\n"),
            "{out}"
        );
        assert!(
            out.ends_with("You may now unlock the data store.\n"),
            "{out}"
        );
        assert_eq!(
            ctl.ok(&["ipam", "show", &format!("--ip={a3}")]),
            format!("{a3} is not assigned\n")
        );
        let out = ctl.ok(&["ipam", "check"]);
        assert!(
            out.ends_with("Check complete; found 0 problems.\n"),
            "{out}"
        );
        assert!(
            out.contains("Found 0 handles with no matching IPs (and 4 handles with matches).\n"),
            "{out}"
        );

        // Releasing one address by hand: poda1's endpoint then uses an address IPAM no longer holds.
        assert_eq!(
            ctl.ok(&["ipam", "release", &format!("--ip={a1}")]),
            format!("Successfully released IP address {a1}\n")
        );
        let (_, err) = ctl.fails(&["ipam", "release", &format!("--ip={a1}")]);
        assert!(
            err.contains(&format!("IP address {a1} is not assigned")),
            "{err}"
        );
        let out = ctl.ok(&["ipam", "check", "--show-problem-ips"]);
        assert!(
            out.contains(&format!(
                "  {a1} in use by Workload(ns1/nodea-k8s-poda1-eth0) and in active IPAM pool but has no IPAM allocation.\n"
            )),
            "{out}"
        );
        assert!(
            out.ends_with("Check complete; found 1 problems.\n"),
            "{out}"
        );
        let rows = box_rows(&ctl.ok(&["ipam", "show"]));
        assert_eq!(rows[1][3], "3 (1%)");
    }
}

#[test]
fn release_from_report_leaves_readdressed_ips_alone() {
    let rt = runtime();
    let ctl = Ctl::embedded();
    let pool = ctl.write("pool.yaml", POOL);
    ctl.ok(&["apply", "-f", &pool]);
    let ipam = ipam_for(&ctl, &rt);
    let x = assign_pod(&rt, &ipam, "nodea", "podx", None).unwrap();
    let y = assign_pod(&rt, &ipam, "nodea", "pody", None).unwrap();
    let out = ctl.ok(&["ipam", "check", "-o", "old.json"]);
    assert!(
        out.ends_with("Check complete; found 2 problems.\n"),
        "{out}"
    );

    // Since the report, x was released and handed to a new pod: the report's leak is stale for x.
    ctl.ok(&["ipam", "release", &format!("--ip={x}")]);
    let attrs = BTreeMap::from([("node".to_string(), "nodea".to_string())]);
    rt.block_on(ipam.assign_ip(x, "k8s-pod-network.podnew", &attrs, "nodea", None))
        .unwrap();

    let out = ctl.ok(&["ipam", "release", "--from-report=old.json", "--force"]);
    assert!(out.contains("Released 1 IPs successfully\n"), "{out}");
    assert!(
        out.contains("1 addresses marked as leaked in the report had already been cleaned up.\n"),
        "{out}"
    );
    assert!(
        ctl.ok(&["ipam", "show", &format!("--ip={x}")])
            .starts_with(&format!("IP {x} is in use\n"))
    );
    assert_eq!(
        ctl.ok(&["ipam", "show", &format!("--ip={y}")]),
        format!("{y} is not assigned\n")
    );
    // The new holder is what remains; it is a leak of its own (no endpoint), and its handle is intact.
    let out = ctl.ok(&["ipam", "check"]);
    assert!(
        out.contains("Found 0 handles with no matching IPs (and 1 handles with matches).\n"),
        "{out}"
    );
    assert!(
        out.ends_with("Check complete; found 1 problems.\n"),
        "{out}"
    );
}

#[test]
fn borrowed_addresses_and_configuration() {
    let rt = runtime();
    let ctl = Ctl::embedded();
    // Blocks of 4 addresses.
    ctl.write("pool.yaml", &POOL.replace("blockSize: 29", "blockSize: 30"));
    ctl.ok(&["apply", "-f", "pool.yaml"]);
    let ipam = ipam_for(&ctl, &rt);

    assert_eq!(
        ctl.ok(&["ipam", "show", "--show-borrowed"]),
        "+----+----------------+-------+-------------+------+--------------+\n\
         | IP | BORROWING-NODE | BLOCK | BLOCK OWNER | TYPE | ALLOCATED-TO |\n\
         +----+----------------+-------+-------------+------+--------------+\n\
         +----+----------------+-------+-------------+------+--------------+\n"
    );

    // nodeb owns a block with room; nodea may own one block only and fills it, then borrows.
    let b = assign_pod(&rt, &ipam, "nodeb", "podb", None).unwrap();
    let own: Vec<IpAddr> = (0..4)
        .map(|i| assign_pod(&rt, &ipam, "nodea", &format!("poda{i}"), Some(1)).unwrap())
        .collect();
    assert!(own.iter().all(|ip| block_of30(*ip) == block_of30(own[0])));
    let borrowed = assign_pod(&rt, &ipam, "nodea", "podborrow", Some(1)).unwrap();
    assert_eq!(block_of30(borrowed), block_of30(b));

    let rows = box_rows(&ctl.ok(&["ipam", "show", "--show-borrowed"]));
    assert_eq!(
        rows[1..],
        [cells(&[
            &borrowed.to_string(),
            "nodea",
            &block_of30(b),
            "nodeb",
            "pod",
            "ns1/podborrow",
        ])]
    );

    // Configuration: defaults, then strict affinity and a block cap.
    let config_rows = |ctl: &Ctl| box_rows(&ctl.ok(&["ipam", "show", "--show-configuration"]));
    assert_eq!(
        config_rows(&ctl),
        vec![
            cells(&["PROPERTY", "VALUE"]),
            cells(&["StrictAffinity", "false"]),
            cells(&["AutoAllocateBlocks", "true"]),
            cells(&["MaxBlocksPerHost", "0"]),
        ]
    );
    let (_, err) = ctl.fails(&["ipam", "configure", "--max-blocks-per-host=3"]);
    assert!(
        err.contains("MaxBlocksPerHost requires StrictAffinity to be enabled"),
        "{err}"
    );
    let (_, err) = ctl.fails(&["ipam", "configure", "--strictaffinity=maybe"]);
    assert!(
        err.contains("invalid value. Use true or false to set strictaffinity"),
        "{err}"
    );
    let (_, err) = ctl.fails(&["ipam", "configure", "--max-blocks-per-host=lots"]);
    assert!(err.contains("invalid value for maxblockhost"), "{err}");
    let (_, err) = ctl.fails(&["ipam", "configure"]);
    assert!(
        err.contains("at least one configuration option must be specified"),
        "{err}"
    );

    assert_eq!(
        ctl.ok(&[
            "ipam",
            "configure",
            "--strictaffinity=true",
            "--max-blocks-per-host=3"
        ]),
        "Successfully set StrictAffinity to: true\nSuccessfully set MaxBlocksPerHost to: 3\n"
    );
    assert_eq!(
        config_rows(&ctl)[1..],
        [
            cells(&["StrictAffinity", "true"]),
            cells(&["AutoAllocateBlocks", "true"]),
            cells(&["MaxBlocksPerHost", "3"]),
        ]
    );
    let yaml = ctl.ok(&["get", "ipamconfiguration", "default", "-o", "yaml"]);
    assert!(yaml.contains("  strictAffinity: true\n"), "{yaml}");
    assert!(yaml.contains("  maxBlocksPerHost: 3\n"), "{yaml}");
    // Strict affinity now forbids borrowing: nodea, capped at one block by the request, gets nothing.
    let err = assign_pod(&rt, &ipam, "nodea", "podnone", Some(1)).unwrap_err();
    assert!(
        matches!(err, calico_ipam::IpamError::Exhausted { .. }),
        "{err}"
    );

    // Turning strict affinity off again needs the cap removed first.
    let (_, err) = ctl.fails(&["ipam", "configure", "--strictaffinity=false"]);
    assert!(
        err.contains("MaxBlocksPerHost requires StrictAffinity"),
        "{err}"
    );
    assert_eq!(
        ctl.ok(&[
            "ipam",
            "configure",
            "--max-blocks-per-host=0",
            "--strictaffinity=false"
        ]),
        "Successfully set StrictAffinity to: false\nSuccessfully set MaxBlocksPerHost to: 0\n"
    );
    let yaml = ctl.ok(&["get", "ipamconfiguration", "default", "-o", "yaml"]);
    assert!(yaml.contains("  strictAffinity: false\n"), "{yaml}");
}

fn block_of30(ip: IpAddr) -> String {
    ipnet::IpNet::new(ip, 30).unwrap().trunc().to_string()
}

#[test]
fn show_lists_pools_by_cidr_whatever_their_names() {
    let ctl = Ctl::embedded();
    // Names sort the other way round from the CIDRs, and the file holds them in neither order.
    let pools = [
        ("a-pool", "fd00:198:18::/120"),
        ("c-pool", "198.18.0.0/26"),
        ("b-pool", "198.18.1.0/26"),
        ("d-pool", "198.18.0.128/26"),
    ]
    .iter()
    .map(|(name, cidr)| {
        format!(
            "apiVersion: projectcalico.org/v3\nkind: IPPool\nmetadata:\n  name: {name}\nspec:\n  cidr: {cidr}\n"
        )
    })
    .collect::<Vec<_>>()
    .join("---\n");
    let file = ctl.write("pools.yaml", &pools);
    ctl.ok(&["apply", "-f", &file]);
    let listed: Vec<String> = box_rows(&ctl.ok(&["ipam", "show"]))
        .into_iter()
        .skip(1)
        .map(|row| row[1].clone())
        .collect();
    assert_eq!(
        listed,
        [
            "198.18.0.0/26",
            "198.18.0.128/26",
            "198.18.1.0/26",
            "fd00:198:18::/120"
        ]
    );
}

#[test]
fn show_ip_without_attributes_says_so_and_names_the_handle() {
    let rt = runtime();
    let ctl = Ctl::embedded();
    let pool = ctl.write("pool.yaml", POOL);
    ctl.ok(&["apply", "-f", &pool]);
    let ipam = ipam_for(&ctl, &rt);
    let ip: IpAddr = "198.18.0.77".parse().unwrap();
    rt.block_on(ipam.assign_ip(ip, "bare-handle", &BTreeMap::new(), "nodea", None))
        .unwrap();
    let shown = ctl.ok(&["ipam", "show", &format!("--ip={ip}")]);
    assert!(
        shown.starts_with(&format!("IP {ip} is in use\nHandle ID: bare-handle\n")),
        "{shown}"
    );
}
