//! Building resources and packets for the tests, from the JSON users write.

#![allow(dead_code)]

use std::net::IpAddr;

use calico_api::Resource;
use calico_policy::{EndpointKey, Packet, PolicyModel};
use serde_json::{Value, json};

pub const TCP: u8 = 6;
pub const UDP: u8 = 17;
pub const ICMP: u8 = 1;

/// A resource from its `kind`, namespace, name, labels and spec, as a user would write it.
pub fn resource(
    kind: &str,
    namespace: Option<&str>,
    name: &str,
    labels: Value,
    spec: Value,
) -> Resource {
    let mut metadata = json!({ "name": name, "labels": labels });
    if let Some(ns) = namespace {
        metadata["namespace"] = json!(ns);
    }
    let object = json!({
        "apiVersion": "projectcalico.org/v3",
        "kind": kind,
        "metadata": metadata,
        "spec": spec,
    });
    match Resource::from_value(object.clone()) {
        Ok(resource) => resource,
        Err(errors) => panic!("test resource {object} does not decode: {errors:?}"),
    }
}

/// A Kubernetes-style workload endpoint on node `node-a` with one address and the namespace's profile.
pub fn pod(namespace: &str, name: &str, ip: &str, labels: Value) -> Resource {
    resource(
        "WorkloadEndpoint",
        Some(namespace),
        name,
        labels,
        json!({
            "orchestrator": "k8s",
            "node": "node-a",
            "pod": name,
            "endpoint": "eth0",
            "interfaceName": format!("cali{name}"),
            "ipNetworks": [format!("{ip}/32")],
            "profiles": [format!("kns.{namespace}")],
        }),
    )
}

pub fn pod_key(namespace: &str, name: &str) -> EndpointKey {
    EndpointKey::Workload {
        namespace: namespace.into(),
        name: name.into(),
    }
}

pub fn ip(text: &str) -> IpAddr {
    match text.parse() {
        Ok(ip) => ip,
        Err(e) => panic!("test address {text}: {e}"),
    }
}

pub fn tcp(source: &str, destination: &str, port: u16) -> Packet {
    Packet {
        source: ip(source),
        destination: ip(destination),
        protocol: TCP,
        source_port: Some(40000),
        destination_port: Some(port),
        icmp_type: None,
        icmp_code: None,
    }
}

pub fn icmp(source: &str, destination: &str, icmp_type: u8, code: u8) -> Packet {
    Packet {
        source: ip(source),
        destination: ip(destination),
        protocol: ICMP,
        source_port: None,
        destination_port: None,
        icmp_type: Some(icmp_type),
        icmp_code: Some(code),
    }
}

pub fn upsert(model: &mut PolicyModel, resource: &Resource) {
    if let Err(e) = model.upsert(resource) {
        panic!(
            "upsert of {} {} failed: {e}",
            resource.kind().name(),
            resource.name()
        );
    }
}

pub fn namespace(model: &mut PolicyModel, name: &str, labels: Value) {
    let labels = serde_json::from_value(labels).unwrap_or_else(|e| panic!("labels: {e}"));
    if let Err(e) = model.upsert_namespace(name, &labels) {
        panic!("namespace {name}: {e}");
    }
}
