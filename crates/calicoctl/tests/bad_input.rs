//! Bad input: every problem gets one clear line naming the document and field path, the exit code is
//! non-zero, and nothing is written.

mod common;

use std::time::{Duration, Instant};

use common::Ctl;

const GOOD_POOL: &str = "apiVersion: projectcalico.org/v3\nkind: IPPool\nmetadata:\n  name: good\nspec:\n  cidr: 198.18.0.0/20\n";

/// Nothing at all was written: every kind we might have touched is empty.
fn assert_nothing_written(ctl: &Ctl) {
    for kind in ["ippool", "networkpolicy", "globalnetworkpolicy", "bgppeer"] {
        let out = ctl.ok(&["get", kind, "-A", "-o", "json"]);
        assert!(out.contains("\"items\": []"), "{kind} was written:\n{out}");
    }
}

fn check(ctl: &Ctl, name: &str, text: &str, expected: &[&str]) {
    let file = ctl.write(name, text);
    let (stdout, stderr) = ctl.fails(&["apply", "-f", &file]);
    assert!(
        stdout.is_empty(),
        "nothing should be reported as applied: {stdout}"
    );
    for e in expected {
        assert!(
            stderr.contains(e),
            "stderr for {name} lacks {e:?}:\n{stderr}"
        );
    }
    assert_nothing_written(ctl);
}

#[test]
fn each_problem_is_named_and_nothing_is_written() {
    let ctl = Ctl::embedded();
    check(
        &ctl,
        "malformed.yaml",
        "apiVersion: projectcalico.org/v3\nkind: IPPool\nmetadata: [unclosed\n",
        &["invalid YAML"],
    );
    check(
        &ctl,
        "unknown-kind.yaml",
        &format!(
            "{GOOD_POOL}---\napiVersion: projectcalico.org/v3\nkind: IPPoolz\nmetadata:\n  name: x\n"
        ),
        &["document 1 (IPPoolz \"x\"): kind: unknown resource kind \"IPPoolz\""],
    );
    check(
        &ctl,
        "unknown-field.yaml",
        &format!(
            "{GOOD_POOL}---\napiVersion: projectcalico.org/v3\nkind: IPPool\nmetadata:\n  name: p2\nspec:\n  cidr: 198.18.16.0/20\n  bogus: 1\n"
        ),
        &["document 1 (IPPool \"p2\"): spec.bogus: unknown field"],
    );
    check(
        &ctl,
        "wrong-type.yaml",
        "apiVersion: projectcalico.org/v3\nkind: IPPool\nmetadata:\n  name: p\nspec:\n  cidr: 198.18.0.0/20\n  blockSize: big\n",
        &["document 0 (IPPool \"p\"): spec.blockSize: invalid type"],
    );
    check(
        &ctl,
        "block-size.yaml",
        "apiVersion: projectcalico.org/v3\nkind: IPPool\nmetadata:\n  name: p\nspec:\n  cidr: 198.18.0.0/20\n  blockSize: 33\n",
        &["spec.blockSize: must be between 20 and 32"],
    );
    check(
        &ctl,
        "unmasked.yaml",
        "apiVersion: projectcalico.org/v3\nkind: IPPool\nmetadata:\n  name: p\nspec:\n  cidr: 198.18.0.1/20\n",
        &["spec.cidr:", "198.18.0.0/20"],
    );
    check(
        &ctl,
        "bad-selector.yaml",
        "apiVersion: projectcalico.org/v3\nkind: GlobalNetworkPolicy\nmetadata:\n  name: p\nspec:\n  selector: role == \n",
        &["document 0 (GlobalNetworkPolicy \"p\"): spec.selector: invalid selector"],
    );
    check(
        &ctl,
        "overlap-in-file.yaml",
        &format!(
            "{GOOD_POOL}---\napiVersion: projectcalico.org/v3\nkind: IPPool\nmetadata:\n  name: inner\nspec:\n  cidr: 198.18.1.0/24\n"
        ),
        &["spec.cidr: IPPool inner (198.18.1.0/24) overlaps with IPPool good (198.18.0.0/20)"],
    );
    check(
        &ctl,
        "several.yaml",
        "apiVersion: projectcalico.org/v3\nkind: IPPool\nmetadata:\n  name: a\nspec:\n  cidr: 198.18.0.1/20\n  nodeSelector: \"zone ==\"\n---\napiVersion: projectcalico.org/v3\nkind: BGPPeer\nmetadata:\n  name: b\nspec:\n  peerIP: 198.18.0.300\n",
        &[
            "document 0 (IPPool \"a\"): spec.cidr",
            "document 0 (IPPool \"a\"): spec.nodeSelector",
            "document 1 (BGPPeer \"b\"): spec.peerIP",
        ],
    );
}

#[test]
fn overlap_with_a_stored_pool_is_refused() {
    let ctl = Ctl::embedded();
    let good = ctl.write("good.yaml", GOOD_POOL);
    ctl.ok(&["create", "-f", &good]);
    let other = ctl.write(
        "other.yaml",
        "apiVersion: projectcalico.org/v3\nkind: IPPool\nmetadata:\n  name: other\nspec:\n  cidr: 198.18.0.0/16\n",
    );
    let (_, stderr) = ctl.fails(&["apply", "-f", &other]);
    assert!(
        stderr.contains(
            "spec.cidr: IPPool other (198.18.0.0/16) overlaps with IPPool good (198.18.0.0/20)"
        ),
        "{stderr}"
    );
    let out = ctl.ok(&["get", "ippool"]);
    assert_eq!(out.lines().count(), 2, "only the first pool exists:\n{out}");

    // A document that does not decode and one that clashes with the stored state are reported
    // together, each with its document, and a good third document is not written either.
    let mixed = ctl.write(
        "mixed.yaml",
        "apiVersion: projectcalico.org/v3\nkind: IPPool\nmetadata:\n  name: typo\nspec:\n  cidr: 198.19.0.0/24\n  bogus: 1\n---\napiVersion: projectcalico.org/v3\nkind: IPPool\nmetadata:\n  name: clash\nspec:\n  cidr: 198.18.2.0/24\n---\napiVersion: projectcalico.org/v3\nkind: IPPool\nmetadata:\n  name: fine\nspec:\n  cidr: 198.19.8.0/24\n",
    );
    let (_, stderr) = ctl.fails(&["apply", "-f", &mixed]);
    assert!(
        stderr.contains("document 0 (IPPool \"typo\"): spec.bogus: unknown field"),
        "{stderr}"
    );
    assert!(
        stderr.contains("document 1 (IPPool \"clash\"): spec.cidr: IPPool clash (198.18.2.0/24) overlaps with IPPool good"),
        "{stderr}"
    );
    assert!(stderr.contains("2 problem(s)"), "{stderr}");
    let out = ctl.ok(&["get", "ippool"]);
    assert_eq!(out.lines().count(), 2, "nothing was written:\n{out}");
}

#[test]
fn immutable_pool_fields_are_refused() {
    let ctl = Ctl::embedded();
    let good = ctl.write("good.yaml", GOOD_POOL);
    ctl.ok(&["create", "-f", &good]);
    let changed = ctl.write("changed.yaml", &GOOD_POOL.replace("/20", "/21"));
    let (_, stderr) = ctl.fails(&["apply", "-f", &changed]);
    assert!(stderr.contains("spec.cidr: field is immutable"), "{stderr}");
}

#[test]
fn unreachable_etcd_fails_quickly_and_clearly() {
    let ctl = Ctl::embedded();
    let port = calico_testutil::free_port();
    let start = Instant::now();
    let out = ctl
        .command()
        .env("DATASTORE_TYPE", "etcdv3")
        .env("ETCD_ENDPOINTS", format!("http://127.0.0.1:{port}"))
        .args(["get", "ippool"])
        .output()
        .unwrap();
    let took = start.elapsed();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("datastore unavailable") && stderr.contains(&port.to_string()),
        "{stderr}"
    );
    // Bounded: the connect timeout (5 s) plus process start, never a hang.
    assert!(took < Duration::from_secs(20), "took {took:?}");
}

#[test]
fn damaged_embedded_file_is_reported_never_reset() {
    let ctl = Ctl::embedded();
    let garbage: Vec<u8> = (0..8192u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    std::fs::write(ctl.db_path(), &garbage).unwrap();
    let (_, stderr) = ctl.fails(&["get", "ippool"]);
    assert!(stderr.contains("damaged"), "{stderr}");
    let file = ctl.write("good.yaml", GOOD_POOL);
    let (_, stderr) = ctl.fails(&["apply", "-f", &file]);
    assert!(stderr.contains("damaged"), "{stderr}");
    assert_eq!(
        std::fs::read(ctl.db_path()).unwrap(),
        garbage,
        "the damaged file was modified"
    );
}

#[test]
fn a_missing_or_empty_embedded_file_is_refused_naming_it_and_nothing_is_created() {
    let ctl = Ctl::embedded();
    let good = ctl.write("good.yaml", GOOD_POOL);
    let missing = ctl.path("mistyped").join("calico.db");
    let empty = ctl.path("empty.db");
    std::fs::write(&empty, b"").unwrap();
    for (path, problem) in [(&missing, "does not exist"), (&empty, "empty")] {
        for args in [
            &["get", "ippool"][..],
            &["get", "nodes", "-o", "wide"][..],
            &["apply", "-f", &good][..],
            &["ipam", "show"][..],
        ] {
            let out = ctl
                .command()
                .env("CALICO_DATASTORE_PATH", path)
                .args(args)
                .output()
                .unwrap();
            let stderr = String::from_utf8_lossy(&out.stderr);
            assert!(
                !out.status.success(),
                "calicoctl {args:?} on {} should fail:\n{}",
                path.display(),
                String::from_utf8_lossy(&out.stdout)
            );
            assert!(out.stdout.is_empty(), "{args:?} printed a result");
            assert!(
                stderr.contains(&path.display().to_string()) && stderr.contains(problem),
                "calicoctl {args:?}: the error should name {} and say it {problem}:\n{stderr}",
                path.display()
            );
        }
    }
    assert!(!ctl.path("mistyped").exists(), "a directory was created");
    assert_eq!(
        std::fs::metadata(&empty).unwrap().len(),
        0,
        "the empty file was written"
    );
    let mut entries: Vec<String> = std::fs::read_dir(ctl.dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("empty") || n.starts_with("mistyped"))
        .collect();
    entries.sort();
    assert_eq!(entries, ["empty.db"], "files beside the empty one");
}

#[test]
fn bad_datastore_settings_are_named() {
    let ctl = Ctl::embedded();
    let out = ctl
        .command()
        .env("DATASTORE_TYPE", "consul")
        .args(["get", "ippool"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("unknown datastore type \"consul\""));
}

#[test]
fn unknown_kind_on_the_command_line() {
    let ctl = Ctl::embedded();
    let (_, stderr) = ctl.fails(&["get", "ippoolz"]);
    assert!(
        stderr.contains("resource type 'ippoolz' is not supported"),
        "{stderr}"
    );
    let (_, stderr) = ctl.fails(&["get", "ippool", "-o", "xml"]);
    assert!(
        stderr.contains("unrecognized output format 'xml'"),
        "{stderr}"
    );
}

/// A key given twice in one mapping is refused with its field path, as Calico's parser refuses it,
/// instead of the last value silently winning; in YAML and in JSON.
#[test]
fn duplicate_keys_are_refused_with_their_path() {
    let ctl = Ctl::embedded();
    check(
        &ctl,
        "duplicate-cidr.yaml",
        "apiVersion: projectcalico.org/v3\nkind: IPPool\nmetadata:\n  name: p\nspec:\n  cidr: 198.18.0.0/20\n  cidr: 198.18.16.0/20\n",
        &["invalid YAML", "spec.cidr: duplicate key \"cidr\""],
    );
    check(
        &ctl,
        "duplicate-name.yaml",
        &format!(
            "{GOOD_POOL}---\napiVersion: projectcalico.org/v3\nkind: IPPool\nmetadata:\n  name: p1\n  name: p2\nspec:\n  cidr: 198.18.16.0/20\n"
        ),
        &["metadata.name: duplicate key \"name\""],
    );
    check(
        &ctl,
        "duplicate-name.json",
        r#"{"apiVersion": "projectcalico.org/v3", "kind": "IPPool", "metadata": {"name": "p1", "name": "p2"}, "spec": {"cidr": "198.18.16.0/20"}}"#,
        &["invalid JSON", "metadata.name: duplicate key \"name\""],
    );
}

/// Nesting 100,000 levels deep (flow, compact sequences and JSON alike) is refused by the bound checked
/// before parsing, with a message that says so, and nothing is written.
#[test]
fn absurdly_deep_documents_are_refused_before_parsing() {
    let ctl = Ctl::embedded();
    let deep = 100_000;
    let cases = [
        (
            "deep-flow.yaml",
            format!(
                "{GOOD_POOL}---\napiVersion: projectcalico.org/v3\nkind: IPPool\nmetadata:\n  name: p\nspec:\n  cidr: {}{}\n",
                "[".repeat(deep),
                "]".repeat(deep)
            ),
            "invalid YAML in the document starting at line 7: nesting deeper than 64 levels at line 13",
        ),
        (
            "deep-compact.yaml",
            format!("{GOOD_POOL}---\n{}x\n", "- ".repeat(deep)),
            "nesting deeper than 64 levels at line 8",
        ),
        (
            "deep.json",
            format!("{}{}", "{\"a\": ".repeat(deep), "}".repeat(deep)),
            "invalid JSON: nesting deeper than 64 levels at line 1",
        ),
    ];
    for (name, text, expected) in cases {
        check(&ctl, name, &text, &[expected]);
    }
}

/// Rules Calico accepts but calico-node could not enforce as written (`http` needs an L7 proxy,
/// `services` the Kubernetes API) are refused at apply time, naming the rule's field, beside a good
/// pool in the same file: nothing is written, so nothing is silently enforced as something else.
#[test]
fn policies_calico_node_cannot_enforce_are_refused_with_the_field() {
    let ctl = Ctl::embedded();
    let text = format!(
        "{GOOD_POOL}---
apiVersion: projectcalico.org/v3
kind: NetworkPolicy
metadata:
  name: web
  namespace: default
spec:
  selector: app == 'web'
  ingress:
  - action: Allow
    protocol: TCP
  - action: Allow
    protocol: TCP
    http:
      methods: [GET]
---
apiVersion: projectcalico.org/v3
kind: GlobalNetworkPolicy
metadata:
  name: to-svc
spec:
  selector: all()
  egress:
  - action: Allow
    destination:
      services:
        name: kubernetes
        namespace: default
"
    );
    check(
        &ctl,
        "unenforceable.yaml",
        &text,
        &[
            "spec.ingress[1].http) is not supported",
            "spec.egress[0].destination.services) is not supported",
        ],
    );
    // The same policy without the http rule is stored.
    let plain = ctl.write(
        "plain.yaml",
        "apiVersion: projectcalico.org/v3\nkind: NetworkPolicy\nmetadata:\n  name: web\n  namespace: default\nspec:\n  selector: app == 'web'\n  ingress:\n  - action: Allow\n    protocol: TCP\n",
    );
    ctl.ok(&["apply", "-f", &plain]);
    assert!(
        ctl.ok(&["get", "networkpolicy", "-n", "default"])
            .contains("web")
    );
}
