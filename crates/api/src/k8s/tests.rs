//! Kubernetes' documented NetworkPolicy examples, and the Calico objects kube-controllers makes of
//! them, written out by hand.

use serde_json::{Value, json};

use super::*;
use crate::documents::decode_documents;

/// Decode one YAML document, apply defaults as calicoctl does, and convert it.
fn convert(yaml: &str) -> Result<Resource, FieldErrors> {
    let mut docs = decode_documents(yaml).expect("test YAML parses");
    assert_eq!(docs.len(), 1, "one document per test");
    let mut resource = docs.remove(0).resource?;
    resource.apply_defaults();
    to_calico(resource)
}

/// The converted object as the user sees it with `calicoctl get -o yaml` (as JSON).
fn converted(yaml: &str) -> Value {
    let resource = convert(yaml).unwrap_or_else(|e| panic!("conversion failed: {e}"));
    // What calicoctl then stores must pass Calico's own validation.
    if let Err(e) = resource.validate() {
        panic!("the converted resource is not a valid Calico resource: {e}");
    }
    resource.to_value()
}

fn spec_of(yaml: &str) -> Value {
    converted(yaml)["spec"].clone()
}

fn k8s_policy(name: &str, spec: &str) -> String {
    format!(
        "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata:\n  name: {name}\n  namespace: default\nspec:\n{spec}"
    )
}

const ANY_K8S_POD: &str = "projectcalico.org/orchestrator == 'k8s'";

#[test]
fn reference_example_test_network_policy() {
    let yaml = k8s_policy(
        "test-network-policy",
        "  podSelector:
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
",
    );
    let policy = converted(&yaml);
    assert_eq!(policy["apiVersion"], "projectcalico.org/v3");
    assert_eq!(policy["kind"], "NetworkPolicy");
    assert_eq!(
        policy["metadata"],
        json!({"name": "knp.default.test-network-policy", "namespace": "default"})
    );
    assert_eq!(
        policy["spec"],
        json!({
            "tier": "default",
            "order": 1000,
            "selector": "projectcalico.org/orchestrator == 'k8s' && role == 'db'",
            "types": ["Ingress", "Egress"],
            "ingress": [
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
            ],
            "egress": [
                {"action": "Allow", "protocol": "TCP",
                 "destination": {"nets": ["10.0.0.0/24"], "ports": [5978]}},
            ],
        })
    );
}

#[test]
fn default_deny_ingress_selects_every_pod_and_allows_nothing() {
    let spec = spec_of(&k8s_policy(
        "default-deny-ingress",
        "  podSelector: {}\n  policyTypes:\n  - Ingress\n",
    ));
    assert_eq!(
        spec,
        json!({"tier": "default", "order": 1000, "selector": ANY_K8S_POD, "types": ["Ingress"]})
    );
}

#[test]
fn allow_all_ingress_is_one_rule_without_peers_or_ports() {
    let spec = spec_of(&k8s_policy(
        "allow-all-ingress",
        "  podSelector: {}\n  ingress:\n  - {}\n  policyTypes:\n  - Ingress\n",
    ));
    assert_eq!(spec["ingress"], json!([{"action": "Allow"}]));
    assert_eq!(spec["types"], json!(["Ingress"]));
}

#[test]
fn default_deny_all_covers_both_directions() {
    let spec = spec_of(&k8s_policy(
        "default-deny-all",
        "  podSelector: {}\n  policyTypes:\n  - Ingress\n  - Egress\n",
    ));
    assert_eq!(spec["types"], json!(["Ingress", "Egress"]));
    assert_eq!(spec.get("ingress"), None);
    assert_eq!(spec.get("egress"), None);
}

#[test]
fn allow_all_egress_and_types_listed_egress_first() {
    let spec = spec_of(&k8s_policy(
        "allow-all-egress",
        "  podSelector: {}\n  egress:\n  - {}\n  policyTypes:\n  - Egress\n",
    ));
    assert_eq!(spec["types"], json!(["Egress"]));
    assert_eq!(spec["egress"], json!([{"action": "Allow"}]));

    let spec = spec_of(&k8s_policy(
        "both",
        "  podSelector: {}\n  policyTypes:\n  - Egress\n  - Ingress\n",
    ));
    assert_eq!(spec["types"], json!(["Ingress", "Egress"]));
}

#[test]
fn policy_types_default_to_ingress_plus_egress_when_there_are_egress_rules() {
    let egress_only_rules = spec_of(&k8s_policy(
        "p",
        "  podSelector: {}\n  egress:\n  - ports:\n    - port: 53\n      protocol: UDP\n",
    ));
    assert_eq!(egress_only_rules["types"], json!(["Ingress", "Egress"]));
    assert_eq!(egress_only_rules.get("ingress"), None);

    let no_rules = spec_of(&k8s_policy("p", "  podSelector: {}\n"));
    assert_eq!(no_rules["types"], json!(["Ingress"]));
}

#[test]
fn multi_port_egress_end_port_becomes_a_range() {
    let spec = spec_of(&k8s_policy(
        "multi-port-egress",
        "  podSelector:
    matchLabels:
      role: db
  policyTypes:
  - Egress
  egress:
  - to:
    - ipBlock:
        cidr: 10.0.0.0/24
    ports:
    - protocol: TCP
      port: 32000
      endPort: 32768
",
    ));
    assert_eq!(
        spec["egress"],
        json!([{"action": "Allow", "protocol": "TCP",
                "destination": {"nets": ["10.0.0.0/24"], "ports": ["32000:32768"]}}])
    );
    assert_eq!(spec["types"], json!(["Egress"]));
}

#[test]
fn pod_and_namespace_selector_in_one_peer_are_anded() {
    let spec = spec_of(&k8s_policy(
        "and",
        "  podSelector: {}
  ingress:
  - from:
    - namespaceSelector:
        matchLabels:
          user: alice
      podSelector:
        matchLabels:
          role: client
",
    ));
    assert_eq!(
        spec["ingress"],
        json!([{"action": "Allow", "source": {
            "selector": "projectcalico.org/orchestrator == 'k8s' && role == 'client'",
            "namespaceSelector": "user == 'alice'"}}])
    );
}

#[test]
fn separate_peers_are_ored_and_each_protocol_gets_its_own_rules() {
    let spec = spec_of(&k8s_policy(
        "or",
        "  podSelector: {}
  ingress:
  - from:
    - namespaceSelector:
        matchLabels:
          user: alice
    - podSelector:
        matchLabels:
          role: client
    ports:
    - port: 53
      protocol: UDP
    - port: 53
    - port: 80
",
    ));
    let alice = json!({"selector": ANY_K8S_POD, "namespaceSelector": "user == 'alice'"});
    let client = json!({"selector": "projectcalico.org/orchestrator == 'k8s' && role == 'client'"});
    assert_eq!(
        spec["ingress"],
        json!([
            {"action": "Allow", "protocol": "TCP", "source": alice, "destination": {"ports": [53, 80]}},
            {"action": "Allow", "protocol": "TCP", "source": client, "destination": {"ports": [53, 80]}},
            {"action": "Allow", "protocol": "UDP", "source": alice, "destination": {"ports": [53]}},
            {"action": "Allow", "protocol": "UDP", "source": client, "destination": {"ports": [53]}},
        ])
    );
}

#[test]
fn empty_namespace_selector_means_every_namespace() {
    let spec = spec_of(&k8s_policy(
        "all-namespaces",
        "  podSelector: {}\n  ingress:\n  - from:\n    - namespaceSelector: {}\n",
    ));
    assert_eq!(
        spec["ingress"],
        json!([{"action": "Allow", "source": {"selector": ANY_K8S_POD, "namespaceSelector": "all()"}}])
    );
}

#[test]
fn namespace_by_name_uses_the_metadata_name_label() {
    let spec = spec_of(&k8s_policy(
        "from-monitoring",
        "  podSelector: {}
  ingress:
  - from:
    - namespaceSelector:
        matchLabels:
          kubernetes.io/metadata.name: monitoring
",
    ));
    assert_eq!(
        spec["ingress"][0]["source"]["namespaceSelector"],
        "kubernetes.io/metadata.name == 'monitoring'"
    );
}

#[test]
fn match_expressions_become_set_and_has_terms() {
    let spec = spec_of(&k8s_policy(
        "exprs",
        "  podSelector:
    matchLabels:
      tier: web
      app: shop
    matchExpressions:
    - key: env
      operator: In
      values: [prod, staging]
    - key: canary
      operator: NotIn
      values: ['true']
    - key: owner
      operator: Exists
    - key: legacy
      operator: DoesNotExist
",
    ));
    assert_eq!(
        spec["selector"],
        "projectcalico.org/orchestrator == 'k8s' && app == 'shop' && tier == 'web' \
         && env in { 'prod', 'staging' } && canary not in { 'true' } && has(owner) && ! has(legacy)"
    );
}

#[test]
fn named_ports_pass_through_and_numbers_merge_into_ranges() {
    let spec = spec_of(&k8s_policy(
        "ports",
        "  podSelector: {}
  ingress:
  - ports:
    - port: 8081
    - port: http
    - port: 8080
    - port: 8082
      endPort: 8090
    - port: 9000
",
    ));
    assert_eq!(
        spec["ingress"],
        json!([{"action": "Allow", "protocol": "TCP",
                "destination": {"ports": ["http", "8080:8090", 9000]}}])
    );
}

#[test]
fn a_protocol_without_a_port_allows_all_its_ports() {
    let spec = spec_of(&k8s_policy(
        "all-udp",
        "  podSelector: {}
  egress:
  - ports:
    - port: 53
      protocol: UDP
    - protocol: UDP
    - protocol: SCTP
",
    ));
    assert_eq!(
        spec["egress"],
        json!([
            {"action": "Allow", "protocol": "SCTP"},
            {"action": "Allow", "protocol": "UDP"},
        ])
    );
}

#[test]
fn ip_block_cidrs_are_masked_and_ipv6_works() {
    let spec = spec_of(&k8s_policy(
        "v6",
        "  podSelector: {}
  ingress:
  - from:
    - ipBlock:
        cidr: 2001:db8::1/32
        except: [\"2001:db8:1::5/48\"]
    - ipBlock:
        cidr: 192.168.1.7/24
",
    ));
    assert_eq!(
        spec["ingress"],
        json!([
            {"action": "Allow", "source": {"nets": ["2001:db8::/32"], "notNets": ["2001:db8:1::/48"]}},
            {"action": "Allow", "source": {"nets": ["192.168.1.0/24"]}},
        ])
    );
}

#[test]
fn the_policy_stays_in_its_namespace_and_keeps_its_creation_time() {
    let policy = converted(
        "apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata:
  name: web
  namespace: shop
  creationTimestamp: \"2026-01-02T03:04:05Z\"
  labels: {team: a}
  resourceVersion: \"77\"
spec:
  podSelector: {}
",
    );
    assert_eq!(
        policy["metadata"],
        json!({"name": "knp.default.web", "namespace": "shop",
               "creationTimestamp": "2026-01-02T03:04:05Z"})
    );
}

#[test]
fn invalid_policies_are_refused_with_kubernetes_paths() {
    let err = convert(&k8s_policy(
        "bad",
        "  podSelector: {}
  ingress:
  - from:
    - podSelector: {}
    - ipBlock:
        cidr: 10.0.0.0/33
",
    ))
    .unwrap_err();
    assert!(
        err.has_path("spec.ingress[0].from[1].ipBlock.cidr"),
        "{err}"
    );

    let err = convert(&k8s_policy(
        "bad",
        "  podSelector: {}
  egress:
  - ports:
    - port: 100
      endPort: 90
",
    ))
    .unwrap_err();
    assert!(err.has_path("spec.egress[0].ports[0].endPort"), "{err}");
}

#[test]
fn namespace_becomes_an_allow_all_profile_with_pcns_labels() {
    let profile = converted(
        "apiVersion: v1
kind: Namespace
metadata:
  name: shop
  labels:
    team: payments
    example.com/tier: gold
",
    );
    assert_eq!(
        profile,
        json!({
            "apiVersion": "projectcalico.org/v3",
            "kind": "Profile",
            "metadata": {"name": "kns.shop"},
            "spec": {
                "ingress": [{"action": "Allow"}],
                "egress": [{"action": "Allow"}],
                "labelsToApply": {
                    "pcns.team": "payments",
                    "pcns.example.com/tier": "gold",
                    "pcns.kubernetes.io/metadata.name": "shop",
                    "pcns.projectcalico.org/name": "shop",
                },
            },
        })
    );
}

#[test]
fn namespace_names_must_be_dns_labels() {
    let err = convert("apiVersion: v1\nkind: Namespace\nmetadata:\n  name: a.b\n").unwrap_err();
    assert!(err.has_path("metadata.name"), "{err}");
    let err = convert(
        "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: shop\n  labels:\n    'bad key!': x\n",
    )
    .unwrap_err();
    assert!(err.has_path("metadata.labels.bad key!"), "{err}");
}

#[test]
fn calico_resources_pass_through_unchanged() {
    let yaml = "apiVersion: projectcalico.org/v3\nkind: NetworkPolicy\nmetadata:\n  name: x\nspec:\n  selector: all()\n";
    let mut docs = decode_documents(yaml).unwrap();
    let mut original = docs.remove(0).resource.unwrap();
    original.apply_defaults();
    assert_eq!(to_calico(original.clone()).unwrap(), original);
}

#[test]
fn stored_identities() {
    assert_eq!(
        stored_identity(Kind::KubernetesNetworkPolicy, "web"),
        Some((Kind::NetworkPolicy, "knp.default.web".to_string()))
    );
    assert_eq!(
        stored_identity(Kind::KubernetesNamespace, "shop"),
        Some((Kind::Profile, "kns.shop".to_string()))
    );
    assert_eq!(stored_identity(Kind::NetworkPolicy, "x"), None);
}

#[test]
fn a_wrong_api_version_names_the_ones_that_exist() {
    let docs = decode_documents("apiVersion: v2\nkind: Namespace\nmetadata:\n  name: x\n").unwrap();
    let err = docs[0].resource.as_ref().unwrap_err().to_string();
    assert_eq!(
        err,
        "apiVersion: unsupported apiVersion \"v2\" for kind \"Namespace\" (want v1)"
    );
    let docs = decode_documents("apiVersion: v1\nkind: NetworkPolicy\n").unwrap();
    let err = docs[0].resource.as_ref().unwrap_err().to_string();
    assert!(
        err.ends_with("(want projectcalico.org/v3 or networking.k8s.io/v1)"),
        "{err}"
    );
}

#[test]
fn egress_rules_stay_but_only_the_listed_types_apply() {
    let spec = spec_of(&k8s_policy(
        "ingress-only",
        "  podSelector: {}
  policyTypes:
  - Ingress
  egress:
  - to:
    - podSelector:
        matchLabels:
          app: dns
",
    ));
    assert_eq!(spec["types"], json!(["Ingress"]));
    assert_eq!(
        spec["egress"],
        json!([{"action": "Allow", "destination": {
            "selector": "projectcalico.org/orchestrator == 'k8s' && app == 'dns'"}}])
    );
}
