//! Every calicoctl verb, flag and output format, run as a user would.

mod common;

use common::{Ctl, row, table};

const POLICIES: &str = r#"
apiVersion: projectcalico.org/v3
kind: NetworkPolicy
metadata:
  name: allow-dns
  namespace: prod
spec:
  order: 100
  selector: app == 'web'
  egress:
  - action: Allow
    protocol: UDP
    destination:
      ports: [53]
---
apiVersion: projectcalico.org/v3
kind: NetworkPolicy
metadata:
  name: deny-all
spec:
  selector: all()
  types: [Ingress]
"#;

const POOL: &str = "apiVersion: projectcalico.org/v3\nkind: IPPool\nmetadata:\n  name: pool-a\nspec:\n  cidr: 198.18.0.0/20\n";

#[test]
fn create_get_replace_delete_cycle() {
    for ctl in [Ctl::embedded(), Ctl::etcd()] {
        let pool = ctl.write("pool.yaml", POOL);
        assert_eq!(
            ctl.ok(&["create", "-f", &pool]),
            "Successfully created 1 'IPPool' resource(s)\n"
        );
        let (_, stderr) = ctl.fails(&["create", "-f", &pool]);
        assert!(
            stderr.contains("resource already exists: IPPool(pool-a)"),
            "{stderr}"
        );
        assert_eq!(
            ctl.ok(&["create", "-f", &pool, "--skip-exists"]),
            "Successfully created 1 'IPPool' resource(s)\n"
        );

        // get by name prints the object; JSON carries Kubernetes-style metadata.
        let json: serde_json::Value =
            serde_json::from_str(&ctl.ok(&["get", "ippool", "pool-a", "-o", "json"])).unwrap();
        assert_eq!(json["kind"], "IPPool");
        assert_eq!(json["spec"]["blockSize"], 26);
        assert!(
            json["metadata"]["uid"]
                .as_str()
                .is_some_and(|u| u.len() == 36)
        );
        assert!(
            json["metadata"]["creationTimestamp"]
                .as_str()
                .is_some_and(|t| t.ends_with('Z'))
        );
        let rv = json["metadata"]["resourceVersion"]
            .as_str()
            .unwrap()
            .to_string();

        // replace with a stale resourceVersion is a conflict; with the current one it works.
        let mut obj = json.clone();
        obj["spec"]["natOutgoing"] = true.into();
        obj["metadata"]["resourceVersion"] = "1".into();
        ctl.write("stale.json", &obj.to_string());
        if rv != "1" {
            let (_, stderr) = ctl.fails(&["replace", "-f", "stale.json"]);
            assert!(stderr.contains("update conflict"), "{stderr}");
        }
        obj["metadata"]["resourceVersion"] = rv.clone().into();
        ctl.write("current.json", &obj.to_string());
        assert_eq!(
            ctl.ok(&["replace", "-f", "current.json"]),
            "Successfully replaced 1 'IPPool' resource(s)\n"
        );
        let again: serde_json::Value =
            serde_json::from_str(&ctl.ok(&["get", "ippool", "pool-a", "-o", "json"])).unwrap();
        assert_eq!(again["spec"]["natOutgoing"], true);
        assert_eq!(
            again["metadata"]["uid"], json["metadata"]["uid"],
            "uid survives updates"
        );
        assert_ne!(
            again["metadata"]["resourceVersion"],
            json["metadata"]["resourceVersion"]
        );

        assert_eq!(
            ctl.ok(&["delete", "ippool", "pool-a"]),
            "Successfully deleted 1 'IPPool' resource(s)\n"
        );
        let (_, stderr) = ctl.fails(&["delete", "ippool", "pool-a"]);
        assert!(
            stderr.contains("resource does not exist: IPPool(pool-a)"),
            "{stderr}"
        );
        assert_eq!(
            ctl.ok(&["delete", "ippool", "pool-a", "-s"]),
            "Successfully deleted 1 'IPPool' resource(s)\n"
        );
        let (_, stderr) = ctl.fails(&["get", "ippool", "pool-a"]);
        assert!(
            stderr.contains("resource does not exist: IPPool(pool-a)"),
            "{stderr}"
        );
    }
}

#[test]
fn namespaces_and_columns() {
    let ctl = Ctl::embedded();
    let file = ctl.write("policies.yaml", POLICIES);
    assert_eq!(
        ctl.ok(&["apply", "-f", &file]),
        "Successfully applied 2 'NetworkPolicy' resource(s)\n"
    );

    // Default namespace only, then one namespace with the NAMESPACE column, then all.
    assert_eq!(
        table(&ctl.ok(&["get", "networkpolicy"])),
        vec![row(&["NAME", "TIER"]), row(&["deny-all", "default"])]
    );
    assert_eq!(
        table(&ctl.ok(&["get", "np", "-n", "prod", "-o", "wide"])),
        vec![
            row(&["NAMESPACE", "NAME", "TIER", "ORDER", "SELECTOR"]),
            row(&["prod", "allow-dns", "default", "100", "app == 'web'"]),
        ]
    );
    assert_eq!(
        table(&ctl.ok(&["get", "policies", "-A"])),
        vec![
            row(&["NAMESPACE", "NAME", "TIER"]),
            row(&["default", "deny-all", "default"]),
            row(&["prod", "allow-dns", "default"])
        ]
    );
    assert_eq!(
        table(&ctl.ok(&["get", "pol", "-A", "-o", "custom-columns=NAME,SELECTOR"])),
        vec![
            row(&["NAME", "SELECTOR"]),
            row(&["deny-all", "all()"]),
            row(&["allow-dns", "app == 'web'"])
        ]
    );
    let (_, stderr) = ctl.fails(&["get", "pol", "-o", "custom-columns=NOPE"]);
    assert!(stderr.contains("unknown column \"NOPE\""), "{stderr}");

    // -n fills in a missing namespace; a conflicting one is refused.
    let one = ctl.write(
        "one.yaml",
        "apiVersion: projectcalico.org/v3\nkind: NetworkPolicy\nmetadata:\n  name: x\nspec:\n  selector: all()\n",
    );
    ctl.ok(&["apply", "-f", &one, "-n", "staging"]);
    assert_eq!(
        table(&ctl.ok(&["get", "np", "-n", "staging"]))[1],
        row(&["staging", "x", "default"])
    );
    let (_, stderr) = ctl.fails(&["apply", "-f", &file, "-n", "other"]);
    assert!(
        stderr.contains("does not match the namespace given with -n"),
        "{stderr}"
    );

    // Delete by file.
    assert_eq!(
        ctl.ok(&["delete", "-f", &file]),
        "Successfully deleted 2 'NetworkPolicy' resource(s)\n"
    );
    assert_eq!(table(&ctl.ok(&["get", "np", "-A"])).len(), 2);
}

#[test]
fn files_directories_stdin_and_lists() {
    let ctl = Ctl::embedded();
    std::fs::create_dir_all(ctl.path("manifests/nested")).unwrap();
    ctl.write("manifests/pool.yaml", POOL);
    ctl.write(
        "manifests/nested/set.json",
        r#"{"apiVersion":"projectcalico.org/v3","kind":"GlobalNetworkSet","metadata":{"name":"ext","labels":{"role":"ext"}},"spec":{"nets":["198.19.0.0/24"]}}"#,
    );
    ctl.write("manifests/README.txt", "not a manifest");
    // Without -R only the top directory is read.
    assert_eq!(
        ctl.ok(&["apply", "-f", "manifests"]),
        "Successfully applied 1 'IPPool' resource(s)\n"
    );
    assert_eq!(
        ctl.ok(&["apply", "-f", "manifests", "-R"]),
        "Successfully applied 2 resource(s)\n"
    );
    assert_eq!(
        table(&ctl.ok(&["get", "gnetsets", "-o", "wide"])),
        vec![row(&["NAME", "NETS"]), row(&["ext", "198.19.0.0/24"])]
    );

    // stdin, and a List as `get -o yaml` prints it.
    let yaml = ctl.ok(&["get", "ippool", "-o", "yaml"]);
    assert!(yaml.contains("kind: IPPoolList"), "{yaml}");
    let out = ctl.run_stdin(&["apply", "-f", "-"], &yaml);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "Successfully applied 1 'IPPool' resource(s)\n"
    );

    // validate writes nothing.
    let np = ctl.write("np.yaml", POLICIES);
    assert_eq!(
        ctl.ok(&["validate", "-f", &np]),
        "Successfully validated 2 'NetworkPolicy' resource(s)\n"
    );
    assert_eq!(table(&ctl.ok(&["get", "np", "-A"])).len(), 1);

    // Empty input.
    let empty = ctl.write("empty.yaml", "# nothing here\n");
    let (_, stderr) = ctl.fails(&["apply", "-f", &empty]);
    assert!(stderr.contains("no resources specified"), "{stderr}");
    ctl.ok(&["apply", "-f", &empty, "--skip-empty"]);

    // get -f prints what the file names.
    let out = ctl.ok(&["get", "-f", "manifests/pool.yaml"]);
    assert_eq!(
        table(&out),
        vec![
            row(&["NAME", "CIDR", "SELECTOR"]),
            row(&["pool-a", "198.18.0.0/20", "all()"])
        ]
    );
}

#[test]
fn patch_and_label() {
    let ctl = Ctl::embedded();
    let pool = ctl.write("pool.yaml", POOL);
    ctl.ok(&["create", "-f", &pool]);
    assert_eq!(
        ctl.ok(&[
            "patch",
            "ippool",
            "pool-a",
            "-p",
            r#"{"spec":{"natOutgoing":true,"disabled":true}}"#
        ]),
        "Successfully patched 1 'IPPool' resource\n"
    );
    assert_eq!(
        table(&ctl.ok(&["get", "ippool", "-o", "wide"]))[1],
        row(&[
            "pool-a",
            "198.18.0.0/20",
            "true",
            "Never",
            "Never",
            "true",
            "all()"
        ])
    );
    ctl.ok(&[
        "patch",
        "ippool",
        "pool-a",
        "-t",
        "json",
        "-p",
        r#"[{"op":"replace","path":"/spec/disabled","value":false}]"#,
    ]);
    assert_eq!(
        table(&ctl.ok(&["get", "ippool", "-o", "wide"]))[1][5],
        "false"
    );
    // A patch producing an invalid object is refused with its path, and nothing changes.
    let (_, stderr) = ctl.fails(&[
        "patch",
        "ippool",
        "pool-a",
        "-p",
        r#"{"spec":{"blockSize":12}}"#,
    ]);
    assert!(stderr.contains("spec.blockSize"), "{stderr}");
    let (_, stderr) = ctl.fails(&[
        "patch",
        "ippool",
        "pool-a",
        "-p",
        r#"{"spec":{"color":"red"}}"#,
    ]);
    assert!(stderr.contains("spec.color: unknown field"), "{stderr}");

    assert_eq!(
        ctl.ok(&["label", "ippool", "pool-a", "zone=west"]),
        "Successfully set label zone on ippool pool-a\n"
    );
    let (_, stderr) = ctl.fails(&["label", "ippool", "pool-a", "zone=east"]);
    assert!(stderr.contains("--overwrite"), "{stderr}");
    ctl.ok(&["label", "ippool", "pool-a", "zone=east", "--overwrite"]);
    let json: serde_json::Value =
        serde_json::from_str(&ctl.ok(&["get", "ippool", "pool-a", "-o", "json"])).unwrap();
    assert_eq!(json["metadata"]["labels"]["zone"], "east");
    assert_eq!(
        ctl.ok(&["label", "ippool", "pool-a", "zone", "--remove"]),
        "Successfully removed label zone from ippool pool-a\n"
    );
    let (_, stderr) = ctl.fails(&["label", "ippool", "pool-a", "zone", "--remove"]);
    assert!(stderr.contains("label zone is not found"), "{stderr}");
}

#[test]
fn config_file_and_version() {
    let server = calico_testutil::EtcdServer::start();
    let ctl = Ctl::embedded();
    let cfg = ctl.write(
        "calicoctl.cfg",
        &format!(
            "apiVersion: projectcalico.org/v3\nkind: CalicoAPIConfig\nmetadata:\nspec:\n  datastoreType: \"etcdv3\"\n  etcdEndpoints: \"{}\"\n",
            server.endpoint()
        ),
    );
    let pool = ctl.write("pool.yaml", POOL);
    ctl.ok(&["-c", &cfg, "create", "-f", &pool]);
    // The pool is in etcd (through the file), not in the embedded store of the environment.
    assert_eq!(table(&ctl.ok(&["-c", &cfg, "get", "ippool"])).len(), 2);
    assert_eq!(table(&ctl.ok(&["get", "ippool"])).len(), 1);
    let (_, stderr) = ctl.fails(&["-c", "/nonexistent/calicoctl.cfg", "get", "ippool"]);
    assert!(stderr.contains("/nonexistent/calicoctl.cfg"), "{stderr}");

    let out = ctl.ok(&["version"]);
    assert!(out.starts_with("Client Version:    v"), "{out}");
    assert!(out.contains("Git commit:        "), "{out}");
    let info = ctl.write(
        "info.yaml",
        "apiVersion: projectcalico.org/v3\nkind: ClusterInformation\nmetadata:\n  name: default\nspec:\n  calicoVersion: v3.28.0\n  clusterType: k8s,bgp\n  datastoreReady: true\n",
    );
    ctl.ok(&["apply", "-f", &info]);
    let out = ctl.ok(&["version"]);
    assert!(
        out.contains("Cluster Version:   v3.28.0\nCluster Type:      k8s,bgp\n"),
        "{out}"
    );
}

#[test]
fn workload_column_shows_the_pod_for_kubernetes_endpoints() {
    let ctl = Ctl::embedded();
    let file = ctl.write(
        "weps.yaml",
        r#"apiVersion: projectcalico.org/v3
kind: WorkloadEndpoint
metadata: {name: node1-k8s-web--1-eth0, namespace: default}
spec: {orchestrator: k8s, node: node1, pod: web-1, endpoint: eth0, interfaceName: cali0123456789a, ipNetworks: [198.19.0.1/32]}
---
apiVersion: projectcalico.org/v3
kind: WorkloadEndpoint
metadata: {name: node1-cni-abc123-eth0, namespace: default}
spec: {orchestrator: cni, node: node1, workload: abc123, endpoint: eth0, interfaceName: caliabc123, ipNetworks: [198.19.0.2/32]}
"#,
    );
    ctl.ok(&["apply", "-f", &file]);
    assert_eq!(
        table(&ctl.ok(&["get", "workloadendpoints"])),
        vec![
            row(&["WORKLOAD", "NODE", "NETWORKS", "INTERFACE"]),
            row(&["abc123", "node1", "198.19.0.2/32", "caliabc123"]),
            row(&["web-1", "node1", "198.19.0.1/32", "cali0123456789a"]),
        ]
    );
}

/// `calicoctl get ... | head -1`: once `head` has read its line and gone, calicoctl ends quietly with the
/// status a Unix tool killed by SIGPIPE leaves (141), not with an error message. The output is far larger
/// than a pipe's buffer, so calicoctl is certainly still writing when `head` exits. Both the streamed
/// `get` output and the `println!`-based `ipam` output are covered.
#[test]
fn a_closed_stdout_ends_calicoctl_quietly() {
    use std::process::Stdio;
    let ctl = Ctl::embedded();
    let pools: Vec<String> = (0..1200)
        .map(|i| {
            format!(
                "apiVersion: projectcalico.org/v3\nkind: IPPool\nmetadata:\n  name: pool-with-a-long-name-for-output-{i:04}\n  labels:\n    purpose: filling-the-pipe-buffer-{i:04}\nspec:\n  cidr: 198.18.{}.{}/28\n  blockSize: 28\n",
                i / 16,
                (i % 16) * 16
            )
        })
        .collect();
    let file = ctl.write("pools.yaml", &pools.join("---\n"));
    ctl.ok(&["apply", "-f", &file]);
    for args in [
        &["get", "ippools", "-o", "yaml"][..],
        &["get", "ippools", "-o", "wide"][..],
        &["ipam", "show"][..],
    ] {
        let mut calicoctl = ctl
            .command()
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("calicoctl starts");
        let head = std::process::Command::new("head")
            .arg("-1")
            .stdin(calicoctl.stdout.take().expect("piped stdout"))
            .output()
            .expect("head runs");
        let out = calicoctl.wait_with_output().expect("calicoctl ends");
        assert_eq!(head.stdout.iter().filter(|b| **b == b'\n').count(), 1);
        assert_eq!(
            String::from_utf8_lossy(&out.stderr),
            "",
            "nothing on stderr for {args:?}"
        );
        assert_eq!(out.status.code(), Some(141), "{args:?}: {:?}", out.status);
    }
}
