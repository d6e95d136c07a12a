//! Pods through the real `calico` CNI plugin, run the way a container runtime runs it: inside the host's
//! namespace, CNI_* variables in the environment, the network config on stdin.

use std::collections::BTreeMap;
use std::io::Read;
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use calico_api::spec::rule::Protocol;
use calico_api::spec::workloadendpoint::WorkloadEndpointPort;
use calico_api::{Kind, Spec};
use calico_cni::spec::CniResult;
use serde_json::{Value, json};

use crate::datastore;
use crate::netns;
use crate::paths::netns_path;
use crate::state::{DatastoreKind, DatastoreState, HostState, PodPort, PodState};

pub const NETWORK: &str = "k8s-pod-network";
pub const POD_NAMESPACE: &str = "default";

/// The network config for one host.
pub fn network_config(host: &HostState, ds: &DatastoreState) -> Value {
    let dir = Path::new(&host.state_dir);
    let mut conf = json!({
        "cniVersion": "1.0.0",
        "name": NETWORK,
        "type": "calico",
        "log_level": "info",
        "log_file_path": dir.join("cni.log"),
        "ipam_lock_file": dir.join("ipam.lock"),
        "nodename_file": dir.join("nodename"),
        "mtu_file": dir.join("mtu"),
        "mtu": 0,
        "ipam": {"type": "calico-ipam"},
    });
    if let Value::Object(map) = &mut conf {
        match ds.kind {
            DatastoreKind::Embedded => {
                map.insert("datastore_type".into(), "embedded".into());
                map.insert("datastore_path".into(), json!(ds.path));
            }
            DatastoreKind::Etcd => {
                map.insert("datastore_type".into(), "etcdv3".into());
                map.insert("etcd_endpoints".into(), json!(ds.endpoint));
            }
        }
    }
    conf
}

/// Writes a host's network config to its `cni_conf` path.
pub fn write_config(host: &HostState, ds: &DatastoreState) -> Result<()> {
    let text = serde_json::to_string_pretty(&network_config(host, ds))?;
    std::fs::write(&host.cni_conf, text).with_context(|| format!("writing {}", host.cni_conf))
}

/// A container id like a runtime's: 64 random hex digits.
pub fn new_container_id() -> Result<String> {
    let mut bytes = [0u8; 32];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut bytes))
        .context("reading /dev/urandom")?;
    Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
}

#[allow(clippy::too_many_arguments)]
fn invoke(
    plugin: &Path,
    host: &HostState,
    verb: &str,
    k8s_namespace: &str,
    pod: &str,
    container_id: &str,
    netns: &str,
    limit: Duration,
) -> Result<calico_process::Finished> {
    let conf =
        std::fs::read(&host.cni_conf).with_context(|| format!("reading {}", host.cni_conf))?;
    let cni_path = plugin
        .parent()
        .map(|p| p.display().to_string())
        .unwrap_or_default();
    let mut command = netns::exec_command(&host.namespace, plugin)?;
    command
        .env("CNI_COMMAND", verb)
        .env("CNI_CONTAINERID", container_id)
        .env("CNI_NETNS", netns)
        .env("CNI_IFNAME", "eth0")
        .env("CNI_PATH", cni_path)
        .env(
            "CNI_ARGS",
            format!(
                "K8S_POD_NAMESPACE={k8s_namespace};K8S_POD_NAME={pod};K8S_POD_INFRA_CONTAINER_ID={container_id}"
            ),
        )
        // The config says where the datastore is; the caller's environment must not override it.
        .env_remove("DATASTORE_TYPE")
        .env_remove("ETCD_ENDPOINTS")
        .env_remove("CALICO_DATASTORE_PATH");
    Ok(calico_process::run(&mut command, Some(&conf), limit)?)
}

/// The plugin's CNI error (`{"code":..,"msg":..,"details":..}`) or whatever it printed.
fn plugin_error(out: &calico_process::Finished) -> String {
    match serde_json::from_slice::<Value>(&out.stdout) {
        Ok(v) if v.get("msg").is_some() => {
            let code = v.get("code").cloned().unwrap_or(Value::Null);
            let msg = v.get("msg").and_then(Value::as_str).unwrap_or_default();
            let details = v.get("details").and_then(Value::as_str).unwrap_or_default();
            format!(
                "CNI error {code}: {msg}{}",
                if details.is_empty() {
                    String::new()
                } else {
                    format!(": {details}")
                }
            )
        }
        _ => format!(
            "exit {}: {}{}",
            out.status,
            out.stdout_text().trim(),
            out.stderr_text().trim()
        ),
    }
}

/// A pod just added, and when the plugin's ADD returned (the lab benchmark times reachability from it).
pub struct Added {
    pub pod: PodState,
    pub plugin_returned_at: Instant,
    pub plugin_took: Duration,
}

/// Creates the pod's namespace (loopback up) and runs CNI ADD for it. If anything fails after the namespace
/// exists, the pod is taken down again as a runtime does after a failed ADD (CNI DEL, then the namespace),
/// so a failed `add-pod` leaves nothing behind.
pub fn add_pod(
    plugin: &Path,
    lab_prefix: &str,
    host: &HostState,
    k8s_namespace: &str,
    pod: &str,
) -> Result<Added> {
    let namespace = format!("{lab_prefix}{pod}");
    let container_id = new_container_id()?;
    netns::add(std::slice::from_ref(&namespace))?;
    add_in_namespace(plugin, host, k8s_namespace, pod, &namespace, &container_id).map_err(
        |failed| {
            remove_failed_pod(
                plugin,
                host,
                k8s_namespace,
                pod,
                &namespace,
                &container_id,
                failed,
            )
        },
    )
}

/// Undoes a pod whose ADD failed: DEL (the plugin cleans up after itself, but an ADD that succeeded with a
/// result we could not use holds an address and interfaces), then the namespace. Returns the ADD's error,
/// with any cleanup failure added so it is not lost.
fn remove_failed_pod(
    plugin: &Path,
    host: &HostState,
    k8s_namespace: &str,
    pod: &str,
    namespace: &str,
    container_id: &str,
    failed: anyhow::Error,
) -> anyhow::Error {
    let netns_file = netns_path(namespace).display().to_string();
    let mut problems = Vec::new();
    match invoke(
        plugin,
        host,
        "DEL",
        k8s_namespace,
        pod,
        container_id,
        &netns_file,
        Duration::from_secs(60),
    ) {
        Ok(out) if out.status.success() => {}
        Ok(out) => problems.push(format!("CNI DEL: {}", plugin_error(&out))),
        Err(e) => problems.push(format!("CNI DEL: {e:#}")),
    }
    if let Err(e) = netns::delete(&[namespace.to_string()]) {
        problems.push(format!("{e:#}"));
    }
    if problems.is_empty() {
        failed
    } else {
        failed.context(format!(
            "cleaning up after the failed ADD of {pod} also failed: {}",
            problems.join("; ")
        ))
    }
}

fn add_in_namespace(
    plugin: &Path,
    host: &HostState,
    k8s_namespace: &str,
    pod: &str,
    namespace: &str,
    container_id: &str,
) -> Result<Added> {
    let ns = netns::open(namespace)?;
    let mut nl = calico_netlink::Netlink::in_netns(&ns)?;
    if let Some(lo) = nl.link_by_name("lo")? {
        nl.set_link_up(lo.index)?;
    }
    let netns_file = netns_path(namespace).display().to_string();
    let out = invoke(
        plugin,
        host,
        "ADD",
        k8s_namespace,
        pod,
        container_id,
        &netns_file,
        Duration::from_secs(60),
    )
    .with_context(|| format!("CNI ADD for {pod}"))?;
    if !out.status.success() {
        bail!(
            "CNI ADD for {pod} on {} failed: {} (plugin log: {}/cni.log)",
            host.name,
            plugin_error(&out),
            host.state_dir
        );
    }
    let value: Value = serde_json::from_slice(&out.stdout).with_context(|| {
        format!(
            "CNI ADD for {pod} printed no JSON result: {}",
            out.stdout_text()
        )
    })?;
    let result = CniResult::from_json(&value)
        .with_context(|| format!("CNI ADD for {pod} printed no CNI result: {value}"))?;
    let ip = result
        .ips
        .first()
        .map(|ip| ip.address.addr())
        .with_context(|| format!("CNI ADD for {pod}: no address in the result"))?;
    Ok(Added {
        pod: PodState {
            name: pod.to_string(),
            host: host.name.clone(),
            namespace: namespace.to_string(),
            netns: netns_file,
            ip,
            container_id: container_id.to_string(),
            labels: BTreeMap::new(),
            k8s_namespace: k8s_namespace.to_string(),
            ports: Vec::new(),
            server_pid: None,
        },
        plugin_returned_at: out.exited_at,
        plugin_took: out.elapsed,
    })
}

/// Runs CNI DEL for a pod (the namespace may already be gone: DEL must still release the address).
pub fn del_pod(plugin: &Path, host: &HostState, pod: &PodState, limit: Duration) -> Result<()> {
    let netns_file = if netns::exists(&pod.namespace) {
        pod.netns.clone()
    } else {
        String::new()
    };
    let out = invoke(
        plugin,
        host,
        "DEL",
        &pod.k8s_namespace,
        &pod.name,
        &pod.container_id,
        &netns_file,
        limit,
    )?;
    if !out.status.success() {
        bail!("CNI DEL for {} failed: {}", pod.name, plugin_error(&out));
    }
    Ok(())
}

/// The WorkloadEndpoint name Calico gives a k8s pod's eth0 (each segment's dashes doubled).
pub fn workload_endpoint_name(host: &str, pod: &str) -> String {
    format!(
        "{}-k8s-{}-eth0",
        host.replace('-', "--"),
        pod.replace('-', "--")
    )
}

/// Adds `labels` and named `ports` to a pod's WorkloadEndpoint (a Kubernetes pod's labels and container
/// ports reach Calico this way; the lab has no API server to take them from).
pub fn annotate_pod(
    ds: &DatastoreState,
    pod: &PodState,
    labels: &BTreeMap<String, String>,
    ports: &[PodPort],
) -> Result<()> {
    let name = workload_endpoint_name(&pod.host, &pod.name);
    datastore::with_client(ds, |client| async move {
        // Compare-and-swap on the version read: retry if calico-node or the plugin wrote in between.
        for _attempt in 0..5 {
            let mut wep = client
                .get(Kind::WorkloadEndpoint, Some(&pod.k8s_namespace), &name)
                .await
                .with_context(|| format!("reading WorkloadEndpoint {name}"))?;
            let mut merged = wep.metadata.labels.clone().unwrap_or_default();
            merged.extend(labels.iter().map(|(k, v)| (k.clone(), v.clone())));
            wep.metadata.labels = Some(merged);
            if let Spec::WorkloadEndpoint(spec) = &mut wep.spec {
                for port in ports {
                    spec.ports
                        .retain(|p| p.name.as_deref() != Some(port.name.as_str()));
                    spec.ports.push(WorkloadEndpointPort {
                        name: Some(port.name.clone()),
                        protocol: Protocol::Name(port.protocol.calico_name().to_string()),
                        port: port.port,
                        host_port: None,
                        host_ip: None,
                    });
                }
            }
            match client.replace(wep).await {
                Ok(_) => return Ok(()),
                Err(calico_datastore::client::ClientError::Conflict { .. }) => continue,
                Err(e) => {
                    return Err(e).with_context(|| format!("updating WorkloadEndpoint {name}"));
                }
            }
        }
        bail!("updating WorkloadEndpoint {name}: kept conflicting with other writers")
    })
}

/// Parses `k=v,k2=v2`.
pub fn parse_labels(text: &str) -> Result<BTreeMap<String, String>> {
    let mut labels = BTreeMap::new();
    for item in text.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        let (key, value) = item
            .split_once('=')
            .with_context(|| format!("label {item:?} is not key=value"))?;
        if key.is_empty() {
            bail!("label {item:?} has an empty key");
        }
        labels.insert(key.to_string(), value.to_string());
    }
    Ok(labels)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoint_names_double_dashes() {
        assert_eq!(
            workload_endpoint_name("node1", "node1-pod2"),
            "node1-k8s-node1--pod2-eth0"
        );
    }

    #[test]
    fn labels_parse() {
        let l = parse_labels("app=web, tier=front").unwrap();
        assert_eq!(l.get("app").map(String::as_str), Some("web"));
        assert_eq!(l.len(), 2);
        assert!(parse_labels("novalue").is_err());
        assert!(parse_labels("=x").is_err());
    }
}
