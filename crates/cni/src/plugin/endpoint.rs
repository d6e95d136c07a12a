//! The WorkloadEndpoint the plugin records for each attachment (and, for plain CNI containers, the Profile
//! named after the network that lets its members talk to each other).

use std::sync::Arc;

use calico_api::{Kind, Resource, Spec};
use calico_datastore::Store;
use calico_datastore::client::{Client, ClientError};
use ipnet::IpNet;
use serde_json::json;

use crate::spec::CniError;

use super::context::{failure, store_error};
use super::names::Workload;

/// Everything that goes into the endpoint.
pub struct EndpointFacts<'a> {
    pub name: &'a str,
    pub node: &'a str,
    pub workload: &'a Workload,
    pub network: &'a str,
    pub container_id: &'a str,
    pub endpoint: &'a str,
    pub host_iface: &'a str,
    pub mac: &'a str,
    pub ips: &'a [IpNet],
}

fn client_error(what: &str, e: ClientError) -> CniError {
    match e {
        ClientError::Store(s) => store_error(what, &s),
        other => failure(format!("{what}: {other}"), ""),
    }
}

/// The endpoint as Calico writes it to etcd.
pub fn build(f: &EndpointFacts) -> Result<Resource, CniError> {
    let namespace = f.workload.namespace();
    let orchestrator = f.workload.orchestrator();
    let (pod, workload, profiles) = match f.workload {
        Workload::Kubernetes { namespace, pod } => {
            (Some(pod.clone()), None, vec![format!("kns.{namespace}")])
        }
        Workload::Cni { container_id } => (
            None,
            Some(container_id.clone()),
            vec![f.network.to_string()],
        ),
    };
    let value = json!({
        "apiVersion": "projectcalico.org/v3",
        "kind": "WorkloadEndpoint",
        "metadata": {
            "name": f.name,
            "namespace": namespace,
            "labels": {
                "projectcalico.org/namespace": namespace,
                "projectcalico.org/orchestrator": orchestrator,
            },
        },
        "spec": {
            "orchestrator": orchestrator,
            "node": f.node,
            "pod": pod,
            "workload": workload,
            "containerID": f.container_id,
            "endpoint": f.endpoint,
            "interfaceName": f.host_iface,
            "mac": f.mac,
            "ipNetworks": f.ips.iter().map(ToString::to_string).collect::<Vec<_>>(),
            "profiles": profiles,
        },
    });
    Resource::from_value(strip_nulls(value))
        .map_err(|e| failure("building the WorkloadEndpoint", e.to_string()))
}

fn strip_nulls(v: serde_json::Value) -> serde_json::Value {
    match v {
        serde_json::Value::Object(map) => serde_json::Value::Object(
            map.into_iter()
                .filter(|(_, v)| !v.is_null())
                .map(|(k, v)| (k, strip_nulls(v)))
                .collect(),
        ),
        other => other,
    }
}

/// Create the endpoint, or update it if it exists (a repeated ADD, a restarted sandbox): creating first
/// costs one round trip in the usual case instead of a read and a write.
pub async fn write(store: &Arc<dyn Store>, wep: Resource) -> Result<Resource, CniError> {
    let client = Client::new(store.clone());
    match client.create(wep.clone()).await {
        Ok(r) => Ok(r),
        Err(ClientError::AlreadyExists { .. }) => client
            .apply(wep)
            .await
            .map_err(|e| client_error("writing the WorkloadEndpoint", e)),
        Err(e) => Err(client_error("writing the WorkloadEndpoint", e)),
    }
}

/// The endpoint, if it exists.
pub async fn get(
    store: &Arc<dyn Store>,
    namespace: &str,
    name: &str,
) -> Result<Option<Resource>, CniError> {
    match Client::new(store.clone())
        .get(Kind::WorkloadEndpoint, Some(namespace), name)
        .await
    {
        Ok(r) => Ok(Some(r)),
        Err(ClientError::NotFound { .. }) => Ok(None),
        Err(e) => Err(client_error("reading the WorkloadEndpoint", e)),
    }
}

/// Delete the endpoint if it still belongs to `container_id` (a newer sandbox of the same pod keeps its
/// endpoint). Missing is fine.
pub async fn delete_if_owned(
    store: &Arc<dyn Store>,
    namespace: &str,
    name: &str,
    container_id: &str,
) -> Result<(), CniError> {
    let Some(wep) = get(store, namespace, name).await? else {
        return Ok(());
    };
    if let Spec::WorkloadEndpoint(spec) = &wep.spec
        && spec
            .container_id
            .as_deref()
            .is_some_and(|c| !c.is_empty() && c != container_id)
    {
        tracing::info!(%name, "endpoint belongs to another container; left in place");
        return Ok(());
    }
    match Client::new(store.clone())
        .delete(
            Kind::WorkloadEndpoint,
            Some(namespace),
            name,
            wep.metadata.resource_version.as_deref(),
        )
        .await
    {
        Ok(_) | Err(ClientError::NotFound { .. }) => Ok(()),
        Err(e) => Err(client_error("deleting the WorkloadEndpoint", e)),
    }
}

/// For plain CNI containers Calico creates a Profile named after the network: members get the label
/// `<network>: ""`, may send anywhere, and accept traffic from other members.
pub async fn ensure_network_profile(store: &Arc<dyn Store>, network: &str) -> Result<(), CniError> {
    let client = Client::new(store.clone());
    match client.get(Kind::Profile, None, network).await {
        Ok(_) => return Ok(()),
        Err(ClientError::NotFound { .. }) => {}
        Err(e) => return Err(client_error("reading the network's Profile", e)),
    }
    let profile = Resource::from_value(json!({
        "apiVersion": "projectcalico.org/v3",
        "kind": "Profile",
        "metadata": {"name": network},
        "spec": {
            "labelsToApply": {network: ""},
            "ingress": [{"action": "Allow", "source": {"selector": format!("has({network})")}}],
            "egress": [{"action": "Allow"}],
        },
    }))
    .map_err(|e| {
        failure(
            format!("building the Profile for network {network}"),
            e.to_string(),
        )
    })?;
    match client.create(profile).await {
        Ok(_) | Err(ClientError::AlreadyExists { .. }) => Ok(()),
        Err(e) => Err(client_error("creating the network's Profile", e)),
    }
}
