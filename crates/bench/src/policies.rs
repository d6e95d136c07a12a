//! Realistic `projectcalico.org/v3` NetworkPolicy objects for the apply benchmark.

use calico_api::documents::RenderError;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::{Value, json};

/// Every generated policy lives in this namespace.
pub const NAMESPACE: &str = "bench";

const APPS: &[&str] = &[
    "web", "api", "db", "cache", "worker", "gateway", "auth", "billing",
];
const TEAMS: &[&str] = &["payments", "search", "identity", "platform", "growth"];
const TCP_PORTS: &[u16] = &[80, 443, 8080, 8443, 9090, 3000, 5000, 6379];

/// The name of policy number `index` (zero-padded so key order matches generation order).
pub fn policy_name(index: usize) -> String {
    format!("bench-policy-{index:05}")
}

/// `count` distinct policies, the same for the same `seed`: each has a selector, two ingress rules (ports,
/// selectors, nets) and one egress rule, with content varied across policies.
pub fn generate(count: usize, seed: u64) -> Vec<Value> {
    let mut rng = StdRng::seed_from_u64(seed);
    (0..count).map(|index| policy(index, &mut rng)).collect()
}

fn pick<'a>(rng: &mut StdRng, items: &[&'a str]) -> &'a str {
    items[rng.random_range(0..items.len())]
}

fn policy(index: usize, rng: &mut StdRng) -> Value {
    let app = pick(rng, APPS);
    let peer_app = pick(rng, APPS);
    let team = pick(rng, TEAMS);
    let first_port = TCP_PORTS[rng.random_range(0..TCP_PORTS.len())];
    let range_start: u16 = rng.random_range(10_000..20_000);
    let range_end = range_start + rng.random_range(1..500);
    let ingress_action = if index.is_multiple_of(11) {
        "Deny"
    } else {
        "Allow"
    };
    json!({
        "apiVersion": "projectcalico.org/v3",
        "kind": "NetworkPolicy",
        "metadata": {
            "name": policy_name(index),
            "namespace": NAMESPACE,
            "labels": {
                "bench.calico-rs/suite": "foundation",
                "team": team,
            },
        },
        "spec": {
            "order": 100 + (index % 50) * 10,
            "selector": format!(
                "app == \"{app}-{}\" && tier in {{\"frontend\", \"backend\"}} && !has(quarantine)",
                index % 97
            ),
            "types": ["Ingress", "Egress"],
            "ingress": [
                {
                    "action": "Allow",
                    "protocol": "TCP",
                    "source": {
                        "selector": format!("app == \"{peer_app}\" && role != \"debug\""),
                        "nets": [
                            format!("10.{}.{}.0/24", rng.random_range(0..=255), rng.random_range(0..=255)),
                            format!("10.{}.0.0/16", rng.random_range(0..=255)),
                        ],
                    },
                    "destination": {
                        "ports": [first_port, 8081, format!("{range_start}:{range_end}")],
                    },
                },
                {
                    "action": ingress_action,
                    "protocol": "UDP",
                    "source": {
                        "namespaceSelector": format!("projectcalico.org/name == \"ns-{}\"", rng.random_range(0..40)),
                        "notNets": [format!("172.16.{}.0/22", rng.random_range(0..64_u16) * 4)],
                    },
                    "destination": {
                        "ports": [53, 5353],
                    },
                },
            ],
            "egress": [
                {
                    "action": "Allow",
                    "protocol": "TCP",
                    "destination": {
                        "selector": format!("app == \"db\" && shard in {{\"{}\", \"{}\"}}", index % 8, (index + 1) % 8),
                        "nets": [format!("10.200.{}.0/24", index % 256)],
                        "ports": [5432, 6432],
                    },
                },
            ],
        },
    })
}

/// One multi-document YAML text of `policies`, as `calicoctl apply -f` reads it.
pub fn to_multi_document_yaml(policies: &[Value]) -> Result<String, RenderError> {
    let mut text = String::new();
    for policy in policies {
        if !text.is_empty() {
            text.push_str("---\n");
        }
        text.push_str(&calico_api::documents::to_yaml(policy)?);
        if !text.ends_with('\n') {
            text.push('\n');
        }
    }
    Ok(text)
}

/// The same policies as one `NetworkPolicyList` document, which calicoctl expands into its items.
pub fn to_list_yaml(policies: &[Value]) -> Result<String, RenderError> {
    calico_api::documents::to_yaml(&json!({
        "apiVersion": "projectcalico.org/v3",
        "kind": "NetworkPolicyList",
        "items": policies,
    }))
}

/// How many NetworkPolicy objects a `calicoctl get -o yaml` output holds (one `kind:` line per item).
pub fn count_items(yaml: &str) -> usize {
    yaml.lines()
        .filter(|line| line.trim_start().trim_start_matches("- ") == "kind: NetworkPolicy")
        .count()
}

#[cfg(test)]
mod tests {
    use super::*;
    use calico_api::Kind;
    use std::collections::BTreeSet;

    #[test]
    fn generated_policies_decode_and_validate_as_calicoctl_would() {
        let policies = generate(300, 7);
        let yaml = to_multi_document_yaml(&policies).unwrap();
        let documents = calico_api::documents::decode_documents(&yaml).expect("valid YAML");
        assert_eq!(documents.len(), 300);
        let mut names = BTreeSet::new();
        for document in documents {
            let mut resource = document
                .resource
                .unwrap_or_else(|errors| panic!("document {}: {errors:?}", document.index));
            assert_eq!(resource.kind(), Kind::NetworkPolicy);
            assert_eq!(resource.namespace(), Some(NAMESPACE));
            resource.apply_defaults();
            resource
                .validate()
                .unwrap_or_else(|errors| panic!("{}: {errors:?}", resource.name()));
            names.insert(resource.name().to_string());
        }
        assert_eq!(names.len(), 300, "names are distinct");
    }

    #[test]
    fn list_form_decodes_to_the_same_policies() {
        let policies = generate(40, 9);
        let from_list = calico_api::documents::decode_documents(&to_list_yaml(&policies).unwrap())
            .expect("valid YAML");
        let from_documents =
            calico_api::documents::decode_documents(&to_multi_document_yaml(&policies).unwrap())
                .expect("valid YAML");
        assert_eq!(from_list.len(), 40);
        for (a, b) in from_list.iter().zip(&from_documents) {
            assert_eq!(a.name, b.name);
            assert_eq!(
                a.resource.as_ref().map(|r| r.to_value()).ok(),
                b.resource.as_ref().map(|r| r.to_value()).ok()
            );
        }
    }

    #[test]
    fn generation_is_seeded_and_varied() {
        assert_eq!(generate(20, 1), generate(20, 1));
        assert_ne!(generate(20, 1), generate(20, 2));
        let policies = generate(50, 3);
        let selectors: BTreeSet<&str> = policies
            .iter()
            .filter_map(|p| p["spec"]["selector"].as_str())
            .collect();
        assert!(selectors.len() > 10, "selectors vary: {selectors:?}");
    }

    #[test]
    fn item_counting_sees_list_items_not_the_list_kind() {
        let policies = generate(3, 1);
        let list = json!({
            "apiVersion": "projectcalico.org/v3",
            "kind": "NetworkPolicyList",
            "items": policies,
            "metadata": {"resourceVersion": "9"},
        });
        let yaml = calico_api::documents::to_yaml(&list).unwrap();
        assert_eq!(count_items(&yaml), 3, "{yaml}");
        assert_eq!(
            count_items(&to_multi_document_yaml(&generate(4, 1)).unwrap()),
            4
        );
        assert_eq!(count_items(&to_list_yaml(&generate(5, 1)).unwrap()), 5);
    }
}
