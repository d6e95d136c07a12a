//! Policy and endpoint kinds: decoding, defaults, validation paths and JSON round trips.

use calico_api::documents::decode_documents;
use calico_api::spec::policy::{PolicyType, StagedAction};
use calico_api::spec::rule::{Action, Port, Protocol};
use calico_api::{FieldErrors, Resource, Spec};
use serde_json::{Value, json};

fn decode(value: Value) -> Resource {
    match Resource::from_value(value) {
        Ok(r) => r,
        Err(e) => panic!("decode failed: {e}"),
    }
}

/// Decode, default and validate; return the errors (empty when valid).
fn errors_of(value: Value) -> FieldErrors {
    let mut r = decode(value);
    r.apply_defaults();
    r.validate().err().unwrap_or_default()
}

fn assert_valid(value: Value) -> Resource {
    let mut r = decode(value);
    r.apply_defaults();
    if let Err(e) = r.validate() {
        panic!("expected valid, got:\n{e}");
    }
    r
}

#[track_caller]
fn assert_error(errs: &FieldErrors, path: &str, fragment: &str) {
    assert!(
        errs.iter()
            .any(|e| e.path == path && e.message.contains(fragment)),
        "expected an error at {path} containing {fragment:?}, got:\n{errs}"
    );
}

fn np(spec: Value) -> Value {
    json!({
        "apiVersion": "projectcalico.org/v3",
        "kind": "NetworkPolicy",
        "metadata": {"name": "allow-tcp-6379", "namespace": "production"},
        "spec": spec,
    })
}

fn gnp(spec: Value) -> Value {
    json!({
        "apiVersion": "projectcalico.org/v3",
        "kind": "GlobalNetworkPolicy",
        "metadata": {"name": "allow-ping"},
        "spec": spec,
    })
}

fn ingress_rule(rule: Value) -> Value {
    np(json!({"selector": "role == 'database'", "ingress": [rule]}))
}

// ---- realistic documents ----

const DOCS_YAML: &str = r#"
apiVersion: projectcalico.org/v3
kind: NetworkPolicy
metadata:
  name: allow-tcp-6379
  namespace: production
spec:
  tier: default
  order: 100
  selector: role == 'database'
  types:
    - Ingress
    - Egress
  ingress:
    - action: Allow
      metadata:
        annotations:
          from: frontend
          to: database
      protocol: TCP
      source:
        selector: role == 'frontend'
      destination:
        ports:
          - 6379
    - action: Allow
      protocol: ICMP
      icmp:
        type: 8
        code: 0
  egress:
    - action: Allow
---
apiVersion: projectcalico.org/v3
kind: GlobalNetworkPolicy
metadata:
  name: deny-blue
spec:
  order: 10.5
  selector: color == 'red'
  namespaceSelector: has(projectcalico.org/name)
  ingress:
    - action: Deny
      protocol: 6
      source:
        namespaceSelector: global()
        notNets: [10.0.0.0/8]
      destination:
        ports: [80, "8080:8090", http]
    - action: Allow
      ipVersion: 6
      protocol: ICMPv6
      notICMP:
        type: 128
  egress:
    - action: Allow
      protocol: UDP
      destination:
        nets: [169.254.0.0/16]
        notPorts: [53]
    - action: Allow
      destination:
        services:
          name: kube-dns
          namespace: kube-system
---
apiVersion: projectcalico.org/v3
kind: GlobalNetworkPolicy
metadata:
  name: allow-cluster-internal-ingress
spec:
  order: 10
  preDNAT: true
  applyOnForward: true
  ingress:
    - action: Allow
      source:
        nets: [10.240.0.0/16, 192.168.0.0/16]
  selector: has(host-endpoint)
---
apiVersion: projectcalico.org/v3
kind: Tier
metadata:
  name: security
spec:
  order: 300
---
apiVersion: projectcalico.org/v3
kind: HostEndpoint
metadata:
  name: some.name
  labels:
    type: production
spec:
  interfaceName: eth0
  node: myhost
  expectedIPs:
    - 192.168.0.1
    - 192.168.0.2
  profiles:
    - profile1
    - profile2
  ports:
    - name: some-port
      port: 1234
      protocol: TCP
    - name: another-port
      port: 5432
      protocol: UDP
---
apiVersion: projectcalico.org/v3
kind: NetworkSet
metadata:
  name: external-database
  namespace: staging
  labels:
    role: db
spec:
  nets:
    - 198.51.100.0/28
    - 203.0.113.0/24
---
apiVersion: projectcalico.org/v3
kind: GlobalNetworkSet
metadata:
  name: a-name-for-the-set
  labels:
    role: external-database
spec:
  nets:
    - 198.51.100.0/28
    - 203.0.113.0/24
---
apiVersion: projectcalico.org/v3
kind: Profile
metadata:
  name: dev-apps
spec:
  ingress:
    - action: Deny
      source:
        nets:
          - 10.0.20.0/24
    - action: Allow
      source:
        selector: stage == 'development'
  egress:
    - action: Allow
  labelsToApply:
    stage: development
---
apiVersion: projectcalico.org/v3
kind: WorkloadEndpoint
metadata:
  name: node1-k8s-my--nginx--b1337a-eth0
  namespace: default
  labels:
    app: frontend
    projectcalico.org/namespace: default
    projectcalico.org/orchestrator: k8s
spec:
  node: node1
  orchestrator: k8s
  pod: my-nginx-b1337a
  endpoint: eth0
  containerID: "1337495556942031415926535"
  interfaceName: cali0ef24ba
  mac: ca:fe:1d:52:bb:e9
  ipNetworks:
    - 192.168.0.0/32
  ipNATs:
    - internalIP: 192.168.0.0
      externalIP: 203.0.113.7
  profiles:
    - kns.default
  ports:
    - name: connect
      port: 8080
      protocol: TCP
    - name: ''
      port: 80
      protocol: TCP
      hostPort: 8080
      hostIP: 0.0.0.0
---
apiVersion: projectcalico.org/v3
kind: StagedNetworkPolicy
metadata:
  name: staged-allow
  namespace: production
spec:
  selector: app == 'web'
  ingress:
    - action: Allow
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata:
  name: test-network-policy
  namespace: default
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
          port: 32000
          endPort: 32768
"#;

#[test]
fn documented_examples_decode_validate_and_round_trip() {
    let docs = decode_documents(DOCS_YAML).expect("yaml parses");
    assert_eq!(docs.len(), 11);
    for doc in docs {
        let resource = match doc.resource {
            Ok(r) => r,
            Err(e) => panic!(
                "document {} ({}) failed to decode:\n{e}",
                doc.index, doc.kind
            ),
        };
        // Round trip before defaulting: the encoded object decodes to the same thing.
        let encoded = resource.to_value();
        let again = decode(encoded.clone());
        assert_eq!(again, resource, "round trip of {}", doc.name);
        assert_eq!(again.to_value(), encoded);

        let mut defaulted = resource.clone();
        defaulted.apply_defaults();
        if let Err(e) = defaulted.validate() {
            panic!("document {} ({}) invalid:\n{e}", doc.name, doc.kind);
        }
    }
}

#[test]
fn round_trip_keeps_the_written_forms() {
    let input = np(json!({
        "tier": "default",
        "order": 100,
        "selector": "role == 'database'",
        "types": ["Ingress"],
        "ingress": [{
            "action": "Allow",
            "protocol": 6,
            "notProtocol": "UDP",
            "source": {"notSelector": "x == 'y'", "serviceAccounts": {"names": ["api"], "selector": "a == 'b'"}},
            "destination": {"ports": [80, "443", "8080:8090", "http"], "notNets": ["10.1.0.0/16"]},
        }],
    }));
    let r = assert_valid(input.clone());
    assert_eq!(r.to_value(), input);
    let Spec::NetworkPolicy(spec) = &r.spec else {
        panic!("wrong kind")
    };
    let rule = &spec.ingress[0];
    assert_eq!(rule.action, Action::Allow);
    assert_eq!(rule.protocol, Some(Protocol::Number(6)));
    assert_eq!(rule.destination.ports[0], Port::Number(80));
    assert_eq!(rule.destination.ports[2].bounds(), Some((8080, 8090)));
    assert_eq!(rule.destination.ports[3].name(), Some("http"));
}

// ---- defaults ----

#[test]
fn policy_defaults_tier_and_types() {
    let types_of = |spec: Value| {
        let mut r = decode(np(spec));
        r.apply_defaults();
        match r.spec {
            Spec::NetworkPolicy(s) => (s.tier.clone(), s.types.clone()),
            _ => panic!("wrong kind"),
        }
    };
    let allow = json!({"action": "Allow"});
    assert_eq!(
        types_of(json!({})),
        (Some("default".into()), vec![PolicyType::Ingress])
    );
    assert_eq!(
        types_of(json!({"ingress": [allow]})).1,
        vec![PolicyType::Ingress]
    );
    assert_eq!(
        types_of(json!({"egress": [allow]})).1,
        vec![PolicyType::Egress]
    );
    assert_eq!(
        types_of(json!({"ingress": [allow], "egress": [allow]})).1,
        vec![PolicyType::Ingress, PolicyType::Egress]
    );
    // Explicit types are kept.
    assert_eq!(
        types_of(json!({"types": ["Egress"], "tier": "security"})),
        (Some("security".into()), vec![PolicyType::Egress])
    );
}

#[test]
fn staged_and_tier_defaults() {
    let mut r = decode(json!({
        "apiVersion": "projectcalico.org/v3", "kind": "StagedNetworkPolicy",
        "metadata": {"name": "s", "namespace": "ns"}, "spec": {"egress": [{"action": "Deny"}]},
    }));
    r.apply_defaults();
    let Spec::StagedNetworkPolicy(s) = &r.spec else {
        panic!()
    };
    assert_eq!(s.staged_action, Some(StagedAction::Set));
    assert_eq!(s.types, vec![PolicyType::Egress]);

    let mut t = decode(
        json!({"apiVersion": "projectcalico.org/v3", "kind": "Tier", "metadata": {"name": "t"}}),
    );
    t.apply_defaults();
    assert_eq!(t.to_value()["spec"], json!({"defaultAction": "Deny"}));
}

#[test]
fn k8s_policy_ports_default_to_tcp() {
    let mut r = decode(json!({
        "apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
        "metadata": {"name": "p", "namespace": "default"},
        "spec": {"podSelector": {}, "ingress": [{"ports": [{"port": 80}]}]},
    }));
    r.apply_defaults();
    assert_eq!(
        r.to_value()["spec"]["ingress"][0]["ports"][0],
        json!({"protocol": "TCP", "port": 80})
    );
    assert!(r.validate().is_ok());
}

// ---- decode errors ----

#[test]
fn unknown_fields_are_rejected_with_their_path() {
    let err = Resource::from_value(ingress_rule(
        json!({"action": "Allow", "source": {"bogus": 1}}),
    ))
    .unwrap_err();
    assert!(err.has_path("spec.ingress[0].source.bogus"), "got: {err}");
    assert_error(&err, "spec.ingress[0].source.bogus", "unknown field");

    let err = Resource::from_value(gnp(json!({"preDnat": true}))).unwrap_err();
    assert_error(&err, "spec.preDnat", "unknown field");

    let err = Resource::from_value(json!({
        "apiVersion": "projectcalico.org/v3", "kind": "WorkloadEndpoint",
        "metadata": {"name": "w"}, "spec": {"ipNATs": [{"internalIp": "1.2.3.4"}]},
    }))
    .unwrap_err();
    assert_error(&err, "spec.ipNATs[0].internalIp", "unknown field");
}

#[test]
fn wrong_types_are_rejected_with_their_path() {
    let err = Resource::from_value(np(json!({"order": "first"}))).unwrap_err();
    assert!(err.has_path("spec.order"), "got: {err}");

    let err = Resource::from_value(ingress_rule(json!({"action": "Drop"}))).unwrap_err();
    assert!(err.has_path("spec.ingress[0].action"), "got: {err}");

    let err = Resource::from_value(ingress_rule(json!({"source": {}}))).unwrap_err();
    assert_error(&err, "spec.ingress[0].action", "required");

    let err = Resource::from_value(ingress_rule(
        json!({"action": "Allow", "protocol": "TCP", "destination": {"ports": [80, 70000]}}),
    ))
    .unwrap_err();
    assert!(
        err.has_path("spec.ingress[0].destination.ports[1]"),
        "got: {err}"
    );

    let err = Resource::from_value(np(json!({"types": ["Sideways"]}))).unwrap_err();
    assert!(err.has_path("spec.types[0]"), "got: {err}");

    let err = Resource::from_value(json!({
        "apiVersion": "projectcalico.org/v3", "kind": "HostEndpoint",
        "metadata": {"name": "h"}, "spec": {"node": "n", "expectedIPs": "10.0.0.1"},
    }))
    .unwrap_err();
    assert!(err.has_path("spec.expectedIPs"), "got: {err}");
}

// ---- rule validation ----

#[test]
fn ports_need_a_port_protocol() {
    let errs = errors_of(np(json!({
        "ingress": [
            {"action": "Allow", "protocol": "TCP", "destination": {"ports": [80]}},
            {"action": "Allow", "protocol": "ICMP", "destination": {"ports": [80]}},
            {"action": "Allow", "destination": {"ports": ["8080:8090"]}},
            {"action": "Allow", "destination": {"ports": ["http"]}},
            {"action": "Allow", "protocol": 17, "source": {"notPorts": [0, "90:80"]}},
        ],
    })));
    assert!(!errs.has_path("spec.ingress[0].destination.ports[0]"));
    assert_error(
        &errs,
        "spec.ingress[1].destination.ports[0]",
        "ports are only valid with protocol TCP, UDP or SCTP",
    );
    assert_error(
        &errs,
        "spec.ingress[2].destination.ports[0]",
        "only valid with protocol TCP, UDP or SCTP",
    );
    // Named ports without a protocol are allowed.
    assert!(!errs.has_path("spec.ingress[3].destination.ports[0]"));
    assert_error(
        &errs,
        "spec.ingress[4].source.notPorts[0]",
        "between 1 and 65535",
    );
    assert_error(&errs, "spec.ingress[4].source.notPorts[1]", "range invalid");
    assert_eq!(errs.0.len(), 4, "got:\n{errs}");
}

#[test]
fn protocols_and_icmp() {
    let errs = errors_of(np(json!({
        "ingress": [
            {"action": "Allow", "protocol": "tcp"},
            {"action": "Allow", "protocol": 0},
            {"action": "Allow", "protocol": "ICMP", "icmp": {"code": 1}},
            {"action": "Allow", "protocol": "TCP", "icmp": {"type": 8}},
            {"action": "Allow", "protocol": "UDP", "notICMP": {"type": 3}},
            {"action": "Allow", "protocol": "ICMP", "ipVersion": 6},
            {"action": "Allow", "protocol": "ICMPv6", "icmp": {"type": 255, "code": 256}},
            {"action": "Allow", "ipVersion": 5},
        ],
    })));
    assert_error(&errs, "spec.ingress[0].protocol", "invalid protocol");
    assert_error(&errs, "spec.ingress[1].protocol", "protocol number invalid");
    assert_error(
        &errs,
        "spec.ingress[2].icmp.code",
        "ICMP code specified without an ICMP type",
    );
    assert_error(
        &errs,
        "spec.ingress[3].icmp",
        "requires protocol to be ICMP",
    );
    assert_error(
        &errs,
        "spec.ingress[4].notICMP",
        "requires protocol to be ICMP",
    );
    assert_error(&errs, "spec.ingress[5].protocol", "requires ipVersion 4");
    assert_error(&errs, "spec.ingress[6].icmp.type", "between 0 and 254");
    assert_error(&errs, "spec.ingress[6].icmp.code", "between 0 and 255");
    assert_error(&errs, "spec.ingress[7].ipVersion", "must be 4 or 6");
}

#[test]
fn nets_are_checked() {
    let errs = errors_of(np(json!({
        "egress": [
            {"action": "Allow"},
            {"action": "Allow", "destination": {"nets": ["10.0.0.0/8"]}},
            {"action": "Allow", "destination": {"nets": ["not-a-cidr", "10.0.0.1/8"]}},
            {"action": "Allow", "ipVersion": 6, "source": {"nets": ["10.0.0.0/8"]}},
            {"action": "Allow", "source": {"nets": ["10.0.0.0/8"]}, "destination": {"nets": ["fd00::/64"]}},
            {"action": "Allow", "source": {"notNets": ["0.0.0.0/0"]}},
        ],
    })));
    assert!(!errs.has_path("spec.egress[1].destination.nets[0]"));
    assert_error(&errs, "spec.egress[2].destination.nets[0]", "invalid CIDR");
    assert_error(&errs, "spec.egress[2].destination.nets[1]", "not masked");
    assert_error(
        &errs,
        "spec.egress[3].source.nets",
        "rule IP version doesn't match CIDR version",
    );
    assert_error(
        &errs,
        "spec.egress[4].destination.nets",
        "both IPv4 and IPv6",
    );
    assert_error(&errs, "spec.egress[5].source.notNets[0]", "catch-all");
}

#[test]
fn services_rules() {
    let errs = errors_of(np(json!({
        "ingress": [
            {"action": "Allow", "source": {"services": {"name": "web"}, "nets": ["10.0.0.0/8"]}},
            {"action": "Allow", "destination": {"services": {"name": "web"}}},
            {"action": "Allow", "source": {"services": {"namespace": "x"}, "selector": "a == 'b'"}},
        ],
        "egress": [
            {"action": "Allow", "protocol": "TCP", "destination": {"services": {"name": "db"}, "ports": [5432]}},
            {"action": "Allow", "source": {"services": {"name": "db"}}},
        ],
    })));
    assert_error(&errs, "spec.ingress[0].source.services", "nets/notNets");
    assert_error(
        &errs,
        "spec.ingress[1].destination.services",
        "not allowed in ingress rule destination",
    );
    assert_error(
        &errs,
        "spec.ingress[2].source.services.name",
        "must specify a service name",
    );
    assert_error(
        &errs,
        "spec.ingress[2].source.services",
        "selector/notSelector",
    );
    assert_error(
        &errs,
        "spec.egress[0].destination.services",
        "ports and notPorts cannot be specified with services",
    );
    assert_error(
        &errs,
        "spec.egress[1].source.services",
        "not allowed in egress rule source",
    );

    // Global policies must name the service's namespace.
    let errs = errors_of(gnp(json!({
        "egress": [{"action": "Allow", "destination": {"services": {"name": "db"}}}],
    })));
    assert_error(
        &errs,
        "spec.egress[0].destination.services.namespace",
        "must specify a namespace",
    );
}

#[test]
fn http_and_selector_rules() {
    let errs = errors_of(np(json!({
        "selector": "global()",
        "ingress": [
            {"action": "Deny", "http": {"methods": ["GET"]}},
            {"action": "Allow", "protocol": "UDP", "http": {"paths": [{"exact": "/a", "prefix": "/b"}, {"exact": "no-slash"}]}},
            {"action": "Allow", "source": {"selector": "global()", "namespaceSelector": "global() && a == 'b'"}},
        ],
        "egress": [{"action": "Allow", "http": {"methods": ["GET", "GET"]}}],
    })));
    assert_error(&errs, "spec.selector", "global()");
    assert_error(&errs, "spec.ingress[0].http", "only valid on Allow rules");
    assert_error(&errs, "spec.ingress[1].http", "protocol TCP or unset");
    assert_error(&errs, "spec.ingress[1].http.paths[0]", "both");
    assert_error(
        &errs,
        "spec.ingress[1].http.paths[1]",
        "must start with '/'",
    );
    assert_error(&errs, "spec.ingress[2].source.selector", "global()");
    assert_error(
        &errs,
        "spec.ingress[2].source.namespaceSelector",
        "cannot be combined",
    );
    assert_error(&errs, "spec.egress[0].http", "not allowed in egress rules");
    assert_error(&errs, "spec.egress[0].http.methods", "duplicates");
}

/// Needs the real selector parser (crates/api/src/selector); the placeholder accepts everything.
#[test]
fn invalid_selectors_are_rejected() {
    let errs = errors_of(np(json!({
        "selector": "role == ",
        "ingress": [{"action": "Allow", "source": {"selector": "a ==", "notSelector": "has(", "namespaceSelector": "&&"}}],
    })));
    assert_error(&errs, "spec.selector", "invalid selector");
    assert_error(&errs, "spec.ingress[0].source.selector", "invalid selector");
    assert_error(
        &errs,
        "spec.ingress[0].source.notSelector",
        "invalid selector",
    );
    assert_error(
        &errs,
        "spec.ingress[0].source.namespaceSelector",
        "invalid selector",
    );
}

#[test]
fn too_many_rules() {
    let rules: Vec<Value> = (0..1025).map(|_| json!({"action": "Allow"})).collect();
    let errs = errors_of(np(json!({"ingress": rules})));
    assert_error(&errs, "spec.ingress", "at most 1024");
    let rules: Vec<Value> = (0..1024).map(|_| json!({"action": "Allow"})).collect();
    assert!(errors_of(np(json!({"egress": rules}))).is_empty());
}

// ---- policy-level rules ----

#[test]
fn policy_names() {
    let named = |kind: &str, name: &str| {
        let mut doc = json!({
            "apiVersion": "projectcalico.org/v3", "kind": kind,
            "metadata": {"name": name, "namespace": "ns"}, "spec": {},
        });
        if kind == "GlobalNetworkPolicy" {
            doc["metadata"].as_object_mut().unwrap().remove("namespace");
        }
        errors_of(doc)
    };
    for ok in ["allow-dns", "security.allow-dns", "knp.default.my.policy"] {
        assert!(named("NetworkPolicy", ok).is_empty(), "{ok}");
        assert!(named("StagedNetworkPolicy", ok).is_empty(), "{ok}");
    }
    for bad in ["Bad_Name", "a.b.c", "-x", ""] {
        assert!(
            named("NetworkPolicy", bad).has_path("metadata.name"),
            "{bad}"
        );
    }
    assert_error(
        &named("NetworkPolicy", "Bad_Name"),
        "metadata.name",
        "invalid name \"Bad_Name\"",
    );
    assert!(named("GlobalNetworkPolicy", "tier1.allow").is_empty());
    assert!(named("GlobalNetworkPolicy", "knp.default.x").has_path("metadata.name"));
    assert!(named("NetworkPolicy", &"a".repeat(64)).has_path("metadata.name"));
}

#[test]
fn policy_fields() {
    let errs = errors_of(np(json!({
        "tier": "Not_A_Tier",
        "types": ["Ingress", "Ingress"],
        "performanceHints": ["AssumeNeededOnEveryNode", "AssumeNeededOnEveryNode"],
        "serviceAccountSelector": "global()",
    })));
    assert_error(&errs, "spec.tier", "invalid name");
    assert_error(&errs, "spec.types[1]", "more than once");
    assert_error(&errs, "spec.performanceHints[1]", "more than once");
    assert_error(&errs, "spec.serviceAccountSelector", "global()");
}

#[test]
fn global_policy_forwarding_flags() {
    let errs = errors_of(gnp(json!({
        "preDNAT": true,
        "doNotTrack": true,
        "types": ["Ingress", "Egress"],
        "egress": [{"action": "Allow"}],
        "namespaceSelector": "global()",
    })));
    assert_error(&errs, "spec.preDNAT", "cannot both be true");
    assert_error(&errs, "spec.egress", "cannot have any egress rules");
    assert_error(&errs, "spec.types[1]", "cannot have 'Egress' type");
    assert_error(&errs, "spec.applyOnForward", "must be true");
    assert_error(&errs, "spec.namespaceSelector", "global()");

    assert!(
        errors_of(gnp(
            json!({"doNotTrack": true, "applyOnForward": true, "ingress": [{"action": "Allow"}]})
        ))
        .is_empty()
    );
}

#[test]
fn staged_delete_must_have_empty_body() {
    let doc = |spec: Value| {
        json!({
            "apiVersion": "projectcalico.org/v3", "kind": "StagedNetworkPolicy",
            "metadata": {"name": "gone", "namespace": "ns"}, "spec": spec,
        })
    };
    assert!(errors_of(doc(json!({"stagedAction": "Delete", "tier": "default"}))).is_empty());
    let errs = errors_of(doc(json!({"stagedAction": "Delete", "selector": "all()"})));
    assert_error(&errs, "spec", "must all be empty");
}

// ---- tiers ----

#[test]
fn tiers() {
    let tier = |name: &str, spec: Value| {
        errors_of(
            json!({"apiVersion": "projectcalico.org/v3", "kind": "Tier", "metadata": {"name": name}, "spec": spec}),
        )
    };
    assert!(tier("default", json!({"order": 1000000})).is_empty());
    assert_error(
        &tier("default", json!({"order": 5})),
        "spec.order",
        "must be 1000000",
    );
    assert_error(
        &tier(
            "default",
            json!({"order": 1000000, "defaultAction": "Pass"}),
        ),
        "spec.defaultAction",
        "'Deny'",
    );
    assert!(
        tier(
            "kube-admin",
            json!({"order": 1000, "defaultAction": "Pass"})
        )
        .is_empty()
    );
    assert_error(
        &tier("kube-admin", json!({"order": 1000})),
        "spec.defaultAction",
        "'Pass'",
    );
    assert_error(
        &tier(
            "kube-baseline",
            json!({"order": 1000, "defaultAction": "Pass"}),
        ),
        "spec.order",
        "10000000",
    );
    assert_error(&tier("a.b", json!({})), "metadata.name", "invalid name");
    assert_error(
        &tier("security", json!({"defaultAction": "Allow"})),
        "spec.defaultAction",
        "must be Deny or Pass",
    );
}

// ---- endpoints and sets ----

fn hep(spec: Value) -> Value {
    json!({"apiVersion": "projectcalico.org/v3", "kind": "HostEndpoint", "metadata": {"name": "h"}, "spec": spec})
}

#[test]
fn host_endpoints() {
    assert!(errors_of(hep(json!({"node": "n1", "interfaceName": "*"}))).is_empty());
    assert!(errors_of(hep(json!({"node": "n1", "expectedIPs": ["fd00::1"]}))).is_empty());
    let errs = errors_of(hep(json!({})));
    assert_error(&errs, "spec.node", "node must be specified");
    assert_error(
        &errs,
        "spec.interfaceName",
        "at least one of interfaceName or expectedIPs",
    );
    let errs = errors_of(hep(json!({
        "node": "n1",
        "interfaceName": "this-name-is-too-long",
        "expectedIPs": ["10.0.0.0/24"],
        "profiles": ["Bad"],
        "ports": [{"name": "HTTP", "protocol": "ICMP", "port": 0}],
    })));
    assert_error(&errs, "spec.interfaceName", "invalid interface name");
    assert_error(&errs, "spec.expectedIPs[0]", "invalid IP address");
    assert_error(&errs, "spec.profiles[0]", "invalid name");
    assert_error(&errs, "spec.ports[0].name", "invalid port name");
    assert_error(&errs, "spec.ports[0].protocol", "TCP, UDP or SCTP");
    assert_error(&errs, "spec.ports[0].port", "between 1 and 65535");
}

fn wep(name: &str, spec: Value) -> Value {
    json!({
        "apiVersion": "projectcalico.org/v3", "kind": "WorkloadEndpoint",
        "metadata": {"name": name, "namespace": "default"}, "spec": spec,
    })
}

#[test]
fn workload_endpoints() {
    let good = json!({
        "node": "kube-node-0", "orchestrator": "k8s", "pod": "nginx-5c7588df-4g2b9", "endpoint": "eth0",
        "interfaceName": "cali1234567890a", "ipNetworks": ["10.244.1.5/32", "fd00::5"],
    });
    assert!(
        errors_of(wep(
            "kube--node--0-k8s-nginx--5c7588df--4g2b9-eth0",
            good.clone()
        ))
        .is_empty()
    );
    assert_error(
        &errors_of(wep("kube-node-0-k8s-nginx-eth0", good)),
        "metadata.name",
        "expected name kube--node--0-k8s-nginx--5c7588df--4g2b9-eth0",
    );

    let errs = errors_of(wep(
        "w",
        json!({
            "interfaceName": "eth0!",
            "ipNetworks": ["10.0.0.0/24", "bogus"],
            "ipNATs": [{"internalIP": "10.9.9.9", "externalIP": "fd00::1"}],
            "ipv4Gateway": "fd00::1",
            "mac": "zz:zz:zz:zz:zz:zz",
            "containerID": "-abc",
            "ports": [{"protocol": "TCP", "port": 80}],
            "allowSpoofedSourcePrefixes": ["nope"],
            "qosControls": {"ingressBandwidth": 10, "dscp": "AF99"},
        }),
    ));
    assert_error(&errs, "spec.interfaceName", "invalid interface name");
    assert_error(&errs, "spec.ipNetworks[0]", "contains multiple addresses");
    assert_error(&errs, "spec.ipNetworks[1]", "invalid CIDR");
    assert_error(&errs, "spec.ipNATs[0].externalIP", "mismatched IP versions");
    assert_error(
        &errs,
        "spec.ipNATs[0].internalIP",
        "not in the endpoint networks",
    );
    assert_error(&errs, "spec.ipv4Gateway", "invalid IPv4 gateway");
    assert_error(&errs, "spec.mac", "invalid MAC");
    assert_error(&errs, "spec.containerID", "invalid container ID");
    assert_error(
        &errs,
        "spec.ports[0].name",
        "must not be empty if no hostPort",
    );
    assert_error(&errs, "spec.allowSpoofedSourcePrefixes[0]", "invalid CIDR");
    assert_error(&errs, "spec.qosControls.ingressBandwidth", "between 1000");
    assert_error(&errs, "spec.qosControls.dscp", "invalid DSCP");

    assert_error(
        &errors_of(wep("w", json!({}))),
        "spec.interfaceName",
        "required",
    );
}

#[test]
fn network_sets_and_profiles() {
    let errs = errors_of(json!({
        "apiVersion": "projectcalico.org/v3", "kind": "NetworkSet",
        "metadata": {"name": "s", "namespace": "ns", "labels": {"projectcalico.org/namespace": "x"}},
        "spec": {"nets": ["10.0.0.1/24", "300.0.0.0/8"]},
    }));
    // Host bits are tolerated in network sets.
    assert!(!errs.has_path("spec.nets[0]"));
    assert_error(&errs, "spec.nets[1]", "invalid CIDR");
    assert_error(
        &errs,
        "metadata.labels.projectcalico.org/namespace",
        "not a valid label name",
    );

    let profile = |name: &str, spec: Value| {
        errors_of(
            json!({"apiVersion": "projectcalico.org/v3", "kind": "Profile", "metadata": {"name": name}, "spec": spec}),
        )
    };
    assert!(
        profile(
            "kns.default",
            json!({"ingress": [{"action": "Allow"}], "egress": [{"action": "Allow"}]})
        )
        .is_empty()
    );
    assert!(profile("ksa.default.default", json!({})).is_empty());
    assert_error(
        &profile("Bad_Name", json!({})),
        "metadata.name",
        "invalid name \"Bad_Name\"",
    );
    let errs = profile(
        "p",
        json!({"labelsToApply": {"bad key!": "v"}, "ingress": [{"action": "Allow", "protocol": "ICMP", "destination": {"ports": [1]}}]}),
    );
    assert_error(&errs, "spec.labelsToApply.bad key!", "invalid label key");
    assert_error(
        &errs,
        "spec.ingress[0].destination.ports[0]",
        "only valid with protocol",
    );
}

// ---- Kubernetes NetworkPolicy ----

fn knp(spec: Value) -> Value {
    json!({
        "apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
        "metadata": {"name": "p", "namespace": "default"}, "spec": spec,
    })
}

#[test]
fn kubernetes_network_policy_rules() {
    let errs = errors_of(knp(json!({
        "podSelector": {"matchExpressions": [
            {"key": "app", "operator": "In"},
            {"key": "tier", "operator": "Exists", "values": ["x"]},
            {"key": "env", "operator": "Near", "values": ["x"]},
        ]},
        "policyTypes": ["Ingress", "Ingress"],
        "ingress": [{
            "from": [
                {},
                {"ipBlock": {"cidr": "10.0.0.0/8", "except": ["11.0.0.0/8", "10.0.0.0/8"]}, "podSelector": {}},
                {"ipBlock": {"cidr": "nonsense"}},
            ],
            "ports": [
                {"protocol": "ICMP", "port": 80},
                {"port": 0},
                {"port": "Not_A_Name"},
                {"port": "http", "endPort": 90},
                {"port": 100, "endPort": 90},
                {"endPort": 90},
            ],
        }],
    })));
    assert_error(
        &errs,
        "spec.podSelector.matchExpressions[0].values",
        "must be specified",
    );
    assert_error(
        &errs,
        "spec.podSelector.matchExpressions[1].values",
        "may not be specified",
    );
    assert_error(
        &errs,
        "spec.podSelector.matchExpressions[2].operator",
        "not a valid",
    );
    assert_error(&errs, "spec.policyTypes[1]", "duplicate");
    assert_error(&errs, "spec.ingress[0].from[0]", "must specify a peer");
    assert_error(&errs, "spec.ingress[0].from[1]", "may not specify both");
    assert_error(
        &errs,
        "spec.ingress[0].from[1].ipBlock.except[0]",
        "strict subset",
    );
    assert_error(
        &errs,
        "spec.ingress[0].from[1].ipBlock.except[1]",
        "strict subset",
    );
    assert_error(
        &errs,
        "spec.ingress[0].from[2].ipBlock.cidr",
        "invalid CIDR",
    );
    assert_error(
        &errs,
        "spec.ingress[0].ports[0].protocol",
        "unsupported value",
    );
    assert_error(
        &errs,
        "spec.ingress[0].ports[1].port",
        "between 1 and 65535",
    );
    assert_error(&errs, "spec.ingress[0].ports[2].port", "invalid port name");
    assert_error(&errs, "spec.ingress[0].ports[3].endPort", "non-numeric");
    assert_error(
        &errs,
        "spec.ingress[0].ports[4].endPort",
        "greater than or equal",
    );
    assert_error(&errs, "spec.ingress[0].ports[5].endPort", "not specified");

    let err = Resource::from_value(knp(json!({"podSelector": {"matchLabel": {}}}))).unwrap_err();
    assert_error(&err, "spec.podSelector.matchLabel", "unknown field");
}
