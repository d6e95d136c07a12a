//! Kubernetes NetworkPolicy and Namespace documents through calicoctl: stored as the Calico policy
//! `knp.default.<name>` and profile `kns.<name>` that kube-controllers would sync, and removed by
//! `delete -f` of the same file.

mod common;

use common::{Ctl, row, table};
use serde_json::{Value, json};

/// Kubernetes' NetworkPolicy reference example, in namespace `shop`.
const TEST_NETWORK_POLICY: &str = "apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata:
  name: test-network-policy
  namespace: shop
spec:
  podSelector:
    matchLabels:
      role: db
  policyTypes:
  - Ingress
  - Egress
  ingress:
  - from:
    - ipBlock:
        cidr: 172.17.0.0/16
        except:
        - 172.17.1.0/24
    - namespaceSelector:
        matchLabels:
          project: myproject
    - podSelector:
        matchLabels:
          role: frontend
    ports:
    - protocol: TCP
      port: 6379
  egress:
  - to:
    - ipBlock:
        cidr: 10.0.0.0/24
    ports:
    - protocol: TCP
      port: 5978
";

const SHOP_NAMESPACE: &str = "apiVersion: v1
kind: Namespace
metadata:
  name: shop
  labels:
    team: payments
";

fn json_of(ctl: &Ctl, args: &[&str]) -> Value {
    let text = ctl.ok(args);
    serde_json::from_str(&text)
        .unwrap_or_else(|e| panic!("{args:?} printed no JSON ({e}):\n{text}"))
}

fn no_policies_anywhere(ctl: &Ctl) -> bool {
    json_of(ctl, &["get", "networkpolicy", "-A", "-o", "json"])["items"] == json!([])
}

#[test]
fn a_kubernetes_policy_is_stored_as_knp_default_and_deleted_by_the_same_file() {
    for ctl in [Ctl::embedded(), Ctl::etcd()] {
        policy_round_trip(&ctl);
    }
}

fn policy_round_trip(ctl: &Ctl) {
    let file = ctl.write("policy.yaml", TEST_NETWORK_POLICY);
    assert_eq!(
        ctl.ok(&["apply", "-f", &file]),
        "Successfully applied 1 'NetworkPolicy' resource(s)\n"
    );
    assert_eq!(
        table(&ctl.ok(&["get", "networkpolicy", "-n", "shop", "-o", "wide"])),
        vec![
            row(&["NAMESPACE", "NAME", "TIER", "ORDER", "SELECTOR"]),
            row(&[
                "shop",
                "knp.default.test-network-policy",
                "default",
                "1000",
                "projectcalico.org/orchestrator == 'k8s' && role == 'db'"
            ]),
        ]
    );
    let policy = json_of(
        ctl,
        &[
            "get",
            "networkpolicy",
            "knp.default.test-network-policy",
            "-n",
            "shop",
            "-o",
            "json",
        ],
    );
    assert_eq!(policy["apiVersion"], "projectcalico.org/v3");
    assert_eq!(policy["spec"]["types"], json!(["Ingress", "Egress"]));
    assert_eq!(
        policy["spec"]["ingress"],
        json!([
            {"action": "Allow", "protocol": "TCP",
             "source": {"nets": ["172.17.0.0/16"], "notNets": ["172.17.1.0/24"]},
             "destination": {"ports": [6379]}},
            {"action": "Allow", "protocol": "TCP",
             "source": {"selector": "projectcalico.org/orchestrator == 'k8s'",
                        "namespaceSelector": "project == 'myproject'"},
             "destination": {"ports": [6379]}},
            {"action": "Allow", "protocol": "TCP",
             "source": {"selector": "projectcalico.org/orchestrator == 'k8s' && role == 'frontend'"},
             "destination": {"ports": [6379]}},
        ])
    );
    assert_eq!(
        policy["spec"]["egress"],
        json!([{"action": "Allow", "protocol": "TCP",
                "destination": {"nets": ["10.0.0.0/24"], "ports": [5978]}}])
    );

    // Applying again updates in place; create of the same file finds it there.
    assert_eq!(
        ctl.ok(&["apply", "-f", &file]),
        "Successfully applied 1 'NetworkPolicy' resource(s)\n"
    );
    let (_, stderr) = ctl.fails(&["create", "-f", &file]);
    assert!(
        stderr.contains("knp.default.test-network-policy"),
        "{stderr}"
    );
    assert_eq!(
        ctl.ok(&["replace", "-f", &file]),
        "Successfully replaced 1 'NetworkPolicy' resource(s)\n"
    );

    assert_eq!(
        ctl.ok(&["delete", "-f", &file]),
        "Successfully deleted 1 'NetworkPolicy' resource(s)\n"
    );
    assert!(no_policies_anywhere(ctl));
    let (_, stderr) = ctl.fails(&["delete", "-f", &file]);
    assert!(
        stderr.contains("knp.default.test-network-policy"),
        "{stderr}"
    );
    assert_eq!(
        ctl.ok(&["delete", "-f", &file, "--skip-not-exists"]),
        "Successfully deleted 1 'NetworkPolicy' resource(s)\n"
    );
}

#[test]
fn a_namespace_is_stored_as_its_kns_profile() {
    let ctl = Ctl::embedded();
    let file = ctl.write("namespace.yaml", SHOP_NAMESPACE);
    assert_eq!(
        ctl.ok(&["apply", "-f", &file]),
        "Successfully applied 1 'Profile' resource(s)\n"
    );
    let profile = json_of(&ctl, &["get", "profile", "kns.shop", "-o", "json"]);
    assert_eq!(
        profile["spec"],
        json!({
            "ingress": [{"action": "Allow"}],
            "egress": [{"action": "Allow"}],
            "labelsToApply": {
                "pcns.team": "payments",
                "pcns.kubernetes.io/metadata.name": "shop",
                "pcns.projectcalico.org/name": "shop",
            },
        })
    );
    assert_eq!(
        ctl.ok(&["delete", "-f", &file]),
        "Successfully deleted 1 'Profile' resource(s)\n"
    );
    let (_, stderr) = ctl.fails(&["get", "profile", "kns.shop"]);
    assert!(stderr.contains("kns.shop"), "{stderr}");
}

#[test]
fn kubernetes_documents_mix_with_calico_ones_in_files_and_lists() {
    let ctl = Ctl::embedded();
    let mixed = format!(
        "{SHOP_NAMESPACE}---\n{TEST_NETWORK_POLICY}---
apiVersion: projectcalico.org/v3
kind: NetworkPolicy
metadata:
  name: allow-dns
  namespace: shop
spec:
  selector: all()
  egress:
  - action: Allow
    protocol: UDP
    destination:
      ports: [53]
"
    );
    let file = ctl.write("mixed.yaml", &mixed);
    assert_eq!(
        ctl.ok(&["apply", "-f", &file]),
        "Successfully applied 3 resource(s)\n"
    );
    assert_eq!(
        table(&ctl.ok(&["get", "networkpolicy", "-n", "shop"])),
        vec![
            row(&["NAMESPACE", "NAME", "TIER"]),
            row(&["shop", "allow-dns", "default"]),
            row(&["shop", "knp.default.test-network-policy", "default"]),
        ]
    );
    assert_eq!(
        ctl.ok(&["delete", "-f", &file]),
        "Successfully deleted 3 resource(s)\n"
    );
    assert!(no_policies_anywhere(&ctl));

    // A `kind: List` as `kubectl get -o yaml` prints it, namespaces filled in by -n.
    let list = ctl.write(
        "list.yaml",
        "apiVersion: v1
kind: List
items:
- apiVersion: networking.k8s.io/v1
  kind: NetworkPolicy
  metadata:
    name: default-deny-ingress
  spec:
    podSelector: {}
    policyTypes:
    - Ingress
- apiVersion: networking.k8s.io/v1
  kind: NetworkPolicy
  metadata:
    name: allow-all-egress
  spec:
    podSelector: {}
    egress:
    - {}
    policyTypes:
    - Egress
",
    );
    assert_eq!(
        ctl.ok(&["create", "-f", &list, "-n", "shop"]),
        "Successfully created 2 'NetworkPolicy' resource(s)\n"
    );
    let deny = json_of(
        &ctl,
        &[
            "get",
            "networkpolicy",
            "knp.default.default-deny-ingress",
            "-n",
            "shop",
            "-o",
            "json",
        ],
    );
    assert_eq!(
        deny["spec"],
        json!({"tier": "default", "order": 1000,
               "selector": "projectcalico.org/orchestrator == 'k8s'", "types": ["Ingress"]})
    );
    let allow = json_of(
        &ctl,
        &[
            "get",
            "networkpolicy",
            "knp.default.allow-all-egress",
            "-n",
            "shop",
            "-o",
            "json",
        ],
    );
    assert_eq!(allow["spec"]["types"], json!(["Egress"]));
    assert_eq!(allow["spec"]["egress"], json!([{"action": "Allow"}]));
    assert_eq!(
        ctl.ok(&["delete", "-f", &list, "-n", "shop"]),
        "Successfully deleted 2 'NetworkPolicy' resource(s)\n"
    );
    assert!(no_policies_anywhere(&ctl));
}

#[test]
fn invalid_kubernetes_documents_are_refused_by_field_path_and_nothing_is_written() {
    let ctl = Ctl::embedded();
    let bad = ctl.write(
        "bad.yaml",
        &format!(
            "{SHOP_NAMESPACE}---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata:
  name: bad
  namespace: shop
spec:
  podSelector: {{}}
  ingress:
  - from:
    - podSelector: {{}}
    - ipBlock:
        cidr: 10.0.0.300/8
    ports:
    - port: 8080
      endPort: 80
---
apiVersion: v1
kind: Namespace
metadata:
  name: Not_A_Label
"
        ),
    );
    for verb in ["apply", "create", "validate"] {
        let (stdout, stderr) = ctl.fails(&[verb, "-f", &bad]);
        assert!(stdout.is_empty(), "{verb}: {stdout}");
        for expected in [
            "document 1 (NetworkPolicy \"bad\"): spec.ingress[0].from[1].ipBlock.cidr: invalid CIDR \"10.0.0.300/8\"",
            "document 1 (NetworkPolicy \"bad\"): spec.ingress[0].ports[0].endPort: must be greater than or equal to `port`",
            "document 2 (Namespace \"Not_A_Label\"): metadata.name: invalid namespace name",
            "nothing was written",
        ] {
            assert!(
                stderr.contains(expected),
                "{verb}: no {expected:?} in:\n{stderr}"
            );
        }
    }
    assert!(no_policies_anywhere(&ctl));
    assert_eq!(
        json_of(&ctl, &["get", "profile", "-o", "json"])["items"],
        json!([])
    );
}

#[test]
fn validate_accepts_kubernetes_documents_without_writing() {
    let ctl = Ctl::embedded();
    let file = ctl.write("policy.yaml", TEST_NETWORK_POLICY);
    assert_eq!(
        ctl.ok(&["validate", "-f", &file]),
        "Successfully validated 1 'NetworkPolicy' resource(s)\n"
    );
    assert!(no_policies_anywhere(&ctl));
}
