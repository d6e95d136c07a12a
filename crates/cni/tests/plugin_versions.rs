//! The `calico` and `calico-ipam` executables driven the way libcni drives them, in every CNI spec version
//! the plugin speaks (0.3.0, 0.3.1, 0.4.0, 1.0.0, 1.1.0): VERSION, ADD (result shape and kernel state),
//! CHECK, STATUS, GC and DEL, Kubernetes and plain-CNI naming, a requested address, direct `calico-ipam`
//! use, delegation to host-local and the MTU file.

mod common;

use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::process::Output;
use std::time::{Duration, Instant};

use calico_testutil::netns::TestNetns;
use common::{Call, Datastore, Host, Pod, assert_ok, calicoctl, create_pool, json_of, with_ipam};
use serde_json::{Value, json};
use sha1::{Digest, Sha1};

const VERSIONS: [&str; 5] = ["0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0"];
const HOST_MAC: &str = "ee:ee:ee:ee:ee:ee";
const NETWORK: &str = "vnet";

// ---------------------------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------------------------

/// A host namespace with its own embedded datastore holding one pool.
fn host_with_pool(prefix: &str, node: &str, cidr: &str, block_size: u8) -> (Host, Datastore) {
    let host = Host::new(prefix, node);
    let ds = Datastore::created_embedded(host.dir.path().join("calico.db"));
    create_pool(&ds, "pool1", cidr, block_size);
    (host, ds)
}

fn is_1x(version: &str) -> bool {
    version.starts_with("1.")
}

/// A verb without container (VERSION, STATUS, GC), with the empty variables libcni sets for them.
fn bare_call(command: &str) -> Call {
    let mut call = Call::new(command, "", None);
    call.ifname = String::new();
    call
}

fn with_args(mut call: Call, args: &str) -> Call {
    call.args = args.to_string();
    call
}

/// `conf` with more fields merged in.
fn merged(conf: &Value, extra: Value) -> Value {
    let mut conf = conf.clone();
    if let (Some(base), Value::Object(extra)) = (conf.as_object_mut(), extra) {
        base.extend(extra);
    }
    conf
}

/// The CNI error a failed invocation printed; panics if it succeeded or printed no error object.
fn cni_error(out: &Output, what: &str) -> Value {
    assert!(
        !out.status.success(),
        "{what} should have failed but succeeded: stdout={}",
        String::from_utf8_lossy(&out.stdout)
    );
    let err = json_of(out);
    assert!(
        err["code"].is_u64() && err["msg"].is_string(),
        "{what}: not a CNI error object: {err}"
    );
    err
}

fn assert_code(out: &Output, code: u64, what: &str) -> Value {
    let err = cni_error(out, what);
    assert_eq!(err["code"], code, "{what}: wrong error code in {err}");
    err
}

/// A successful verb that has no result (DEL, CHECK, STATUS, GC) prints nothing.
fn assert_silent_ok(out: &Output, host: &Host, what: &str) {
    assert_ok(out, host, what);
    assert!(
        out.stdout.iter().all(u8::is_ascii_whitespace),
        "{what} printed {}",
        String::from_utf8_lossy(&out.stdout)
    );
}

fn sha1_hex(text: &str) -> String {
    Sha1::digest(text.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// `cat` of a /proc/sys file as seen inside `netns`.
fn proc_sys(netns: &TestNetns, path: &str) -> String {
    netns
        .exec_ok(&["cat", &format!("/proc/sys/{path}")])
        .unwrap_or_else(|e| panic!("{e}"))
        .trim()
        .to_string()
}

/// `ip -o link show <name>` inside `netns`.
fn link_line(netns: &TestNetns, name: &str) -> String {
    netns
        .ip(&["-o", "link", "show", name])
        .unwrap_or_else(|e| panic!("{e}"))
}

/// The MAC the kernel reports for `name` inside `netns`.
fn link_mac(netns: &TestNetns, name: &str) -> String {
    let line = link_line(netns, name);
    line.split_whitespace()
        .skip_while(|w| *w != "link/ether")
        .nth(1)
        .unwrap_or_else(|| panic!("no MAC in {line}"))
        .to_string()
}

fn link_mtu(netns: &TestNetns, name: &str) -> u32 {
    let line = link_line(netns, name);
    line.split_whitespace()
        .skip_while(|w| *w != "mtu")
        .nth(1)
        .and_then(|m| m.parse().ok())
        .unwrap_or_else(|| panic!("no MTU in {line}"))
}

fn pod_routes(pod: &Pod) -> String {
    pod.netns.ip(&["route"]).unwrap_or_else(|e| panic!("{e}"))
}

/// Every WorkloadEndpoint, as calicoctl lists them.
fn weps(ds: &Datastore) -> Vec<Value> {
    let out = calicoctl(
        ds,
        &["get", "workloadendpoints", "--all-namespaces", "-o", "json"],
    );
    assert!(
        out.status.success(),
        "calicoctl get workloadendpoints: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let list: Value = serde_json::from_slice(&out.stdout).expect("calicoctl prints JSON");
    list["items"].as_array().cloned().unwrap_or_default()
}

fn wep_names(ds: &Datastore) -> Vec<String> {
    weps(ds)
        .iter()
        .map(|w| {
            w["metadata"]["name"]
                .as_str()
                .unwrap_or_default()
                .to_string()
        })
        .collect()
}

/// What `calicoctl ipam show --ip=<ip>` says.
fn ipam_show(ds: &Datastore, ip: &str) -> String {
    let out = calicoctl(ds, &["ipam", "show", &format!("--ip={ip}")]);
    assert!(
        out.status.success(),
        "calicoctl ipam show --ip={ip}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn assert_ip_free(ds: &Datastore, ip: &str) {
    let shown = ipam_show(ds, ip);
    assert!(shown.contains("not assigned"), "{ip} still in use: {shown}");
}

fn assert_ip_in_use(ds: &Datastore, ip: &str) {
    let shown = ipam_show(ds, ip);
    assert!(!shown.contains("not assigned"), "{ip} not in use: {shown}");
}

/// The addresses IPAM holds for a handle (read with the IPAM library over the same store file).
fn handle_ips(ds: &Datastore, handle: &str) -> Vec<IpAddr> {
    with_ipam(ds, async |ipam| {
        ipam.ips_by_handle(handle).await.expect("read the handle")
    })
}

fn handle(container_id: &str) -> String {
    format!("{NETWORK}.{container_id}")
}

/// Waits (bounded) for `done`; the kernel destroys devices of a deleted namespace asynchronously.
fn eventually(what: &str, timeout: Duration, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The host-side interface named in an ADD result.
fn host_iface_of(result: &Value) -> String {
    result["interfaces"][0]["name"]
        .as_str()
        .expect("interfaces[0].name")
        .to_string()
}

/// The pod address (without prefix length) of an ADD result.
fn pod_ip_of(result: &Value) -> String {
    let address = result["ips"][0]["address"]
        .as_str()
        .expect("ips[0].address");
    address.split('/').next().unwrap_or(address).to_string()
}

fn keys(v: &Value) -> Vec<String> {
    v.as_object()
        .map(|o| o.keys().cloned().collect())
        .unwrap_or_default()
}

fn assert_keys_within(v: &Value, allowed: &[&str], what: &str) {
    for key in keys(v) {
        assert!(
            allowed.contains(&key.as_str()),
            "{what} has key {key:?}, not defined here: {v}"
        );
    }
}

/// The ADD result has exactly the shape `version` defines and describes `pod`'s real interfaces.
fn assert_add_result(version: &str, result: &Value, pod: &Pod, mtu: u32) {
    assert_eq!(result["cniVersion"], version, "{result}");
    assert_keys_within(
        result,
        &["cniVersion", "interfaces", "ips", "routes", "dns"],
        "result",
    );
    let interfaces = result["interfaces"].as_array().expect("interfaces");
    assert_eq!(interfaces.len(), 2, "{result}");
    let iface_keys: &[&str] = match version {
        "1.1.0" => &["name", "mac", "mtu", "sandbox", "socketPath", "pciID"],
        "1.0.0" => &["name", "mac", "mtu", "sandbox"],
        _ => &["name", "mac", "sandbox"],
    };
    let (host_if, pod_if) = (&interfaces[0], &interfaces[1]);
    assert_keys_within(host_if, iface_keys, "host interface");
    assert_keys_within(pod_if, iface_keys, "pod interface");

    let host_name = host_if["name"].as_str().expect("host name");
    assert!(
        host_name.starts_with("cali") && host_name.len() == 15,
        "host interface {host_name}"
    );
    assert_eq!(host_if["mac"], HOST_MAC);
    assert!(
        host_if.get("sandbox").is_none(),
        "host interface has a sandbox"
    );

    assert_eq!(pod_if["name"], "eth0");
    assert_eq!(pod_if["sandbox"], pod.path().display().to_string());
    assert_eq!(pod_if["mac"], link_mac(&pod.netns, "eth0"), "pod MAC");
    if version == "1.1.0" {
        assert_eq!(pod_if["mtu"], mtu, "1.1.0 reports the interface MTU");
    } else if let Some(reported) = pod_if.get("mtu") {
        assert_eq!(reported, mtu);
    }

    let ips = result["ips"].as_array().expect("ips");
    assert_eq!(ips.len(), 1, "{result}");
    let ip = &ips[0];
    let pod_ip = pod.ipv4().expect("pod has an IPv4 address");
    assert_eq!(ip["address"], format!("{pod_ip}/32"));
    assert_eq!(ip["interface"], 1);
    if is_1x(version) {
        assert_keys_within(ip, &["address", "gateway", "interface"], "ip");
        assert!(ip.get("version").is_none(), "1.x ips carry no version");
    } else {
        assert_keys_within(ip, &["version", "address", "gateway", "interface"], "ip");
        assert_eq!(ip["version"], "4");
    }
    let routes = result["routes"].as_array().expect("routes");
    assert!(
        routes
            .iter()
            .any(|r| r["dst"] == "0.0.0.0/0" && r["gw"] == "169.254.1.1"),
        "no default route via 169.254.1.1 in {result}"
    );
}

/// The kernel holds what ADD reported: the host route, proxy ARP on the host end, the pod's routes.
fn assert_wired(host: &Host, pod: &Pod, host_iface: &str, pod_ip: &str, mtu: u32) {
    let routes = host.routes();
    assert!(
        routes
            .lines()
            .any(|l| l.starts_with(&format!("{pod_ip} dev {host_iface} "))
                && l.contains("scope link")),
        "no host route {pod_ip} dev {host_iface} scope link:\n{routes}"
    );
    assert_eq!(link_mac(&host.netns, host_iface), HOST_MAC);
    assert_eq!(
        proc_sys(
            &host.netns,
            &format!("net/ipv4/conf/{host_iface}/proxy_arp")
        ),
        "1"
    );
    assert_eq!(
        proc_sys(
            &host.netns,
            &format!("net/ipv4/neigh/{host_iface}/proxy_delay")
        ),
        "0"
    );
    let routes = pod_routes(pod);
    assert!(
        routes.contains("default via 169.254.1.1 dev eth0"),
        "{routes}"
    );
    assert!(
        routes
            .lines()
            .any(|l| l.starts_with("169.254.1.1 dev eth0") && l.contains("scope link")),
        "{routes}"
    );
    assert_eq!(link_mtu(&pod.netns, "eth0"), mtu);
}

// ---------------------------------------------------------------------------------------------------------
// VERSION
// ---------------------------------------------------------------------------------------------------------

#[test]
fn version_lists_all_five_versions_in_every_version() {
    let host = Host::new("cni-ver-v", "vnode");
    for version in VERSIONS {
        let out = host.invoke(&bare_call("VERSION"), &json!({"cniVersion": version}));
        assert_ok(&out, &host, "VERSION");
        let reply = json_of(&out);
        assert_eq!(reply["cniVersion"], version, "{reply}");
        let supported: Vec<&str> = reply["supportedVersions"]
            .as_array()
            .expect("supportedVersions")
            .iter()
            .filter_map(Value::as_str)
            .collect();
        for wanted in VERSIONS {
            assert!(supported.contains(&wanted), "{wanted} missing in {reply}");
        }
    }
}

// ---------------------------------------------------------------------------------------------------------
// ADD / CHECK / STATUS / GC refusal / DEL, per version
// ---------------------------------------------------------------------------------------------------------

/// One version's life cycle: two pods that reach each other, CHECK that notices breakage, and every way
/// of calling DEL leaving nothing behind.
fn lifecycle(version: &str, pool: &str) {
    let (host, ds) = host_with_pool("cni-ver-h", "vnode", pool, 26);
    let conf = host.conf(version, NETWORK, &ds, json!({}));
    let pods = [
        Pod::new("cni-ver-p"),
        Pod::new("cni-ver-p"),
        Pod::new("cni-ver-p"),
    ];
    let ids = ["ctra", "ctrb", "ctrc"];

    let mut results = Vec::new();
    for (id, pod) in ids.iter().zip(&pods) {
        let out = host.add(id, pod, &conf);
        assert_ok(&out, &host, &format!("ADD {id} ({version})"));
        let result = json_of(&out);
        assert_add_result(version, &result, pod, 1450);
        let (iface, ip) = (host_iface_of(&result), pod_ip_of(&result));
        assert!(
            ip.starts_with(pool.trim_end_matches(".0/24")),
            "{ip} not from {pool}"
        );
        assert_wired(&host, pod, &iface, &ip, 1450);
        results.push(result);
    }
    let ip_b = pod_ip_of(&results[1]);
    assert!(
        pods[0].ping(&ip_b),
        "{version}: pod a cannot reach pod b at {ip_b}"
    );
    let ip_a = pod_ip_of(&results[0]);
    assert!(
        pods[1].ping(&ip_a),
        "{version}: pod b cannot reach pod a at {ip_a}"
    );

    // CHECK
    let check_conf = merged(&conf, json!({"prevResult": results[0].clone()}));
    let check = || host.check(ids[0], &pods[0], &check_conf);
    if version.starts_with("0.3") {
        let err = assert_code(&check(), 1, "CHECK in 0.3.x");
        assert!(
            err["msg"].as_str().unwrap_or_default().contains("CHECK"),
            "{err}"
        );
    } else {
        assert_silent_ok(&check(), &host, "CHECK on a healthy pod");
        let iface = host_iface_of(&results[0]);
        let ip = pod_ip_of(&results[0]);

        pods[0]
            .netns
            .ip(&["route", "del", "default"])
            .expect("delete pod default route");
        let err = assert_code(&check(), 100, "CHECK without pod default route");
        assert!(
            err["msg"]
                .as_str()
                .unwrap_or_default()
                .contains("default route"),
            "{err}"
        );
        pods[0]
            .netns
            .ip(&[
                "route",
                "add",
                "default",
                "via",
                "169.254.1.1",
                "dev",
                "eth0",
            ])
            .expect("restore pod default route");
        assert_silent_ok(&check(), &host, "CHECK after restoring the route");

        host.netns
            .ip(&["route", "del", &format!("{ip}/32"), "dev", &iface])
            .expect("delete host route");
        let err = assert_code(&check(), 100, "CHECK without host route");
        let msg = err["msg"].as_str().unwrap_or_default();
        assert!(msg.contains("host route") && msg.contains(&ip), "{err}");
        host.netns
            .ip(&[
                "route",
                "add",
                &format!("{ip}/32"),
                "dev",
                &iface,
                "scope",
                "link",
            ])
            .expect("restore host route");
        assert_silent_ok(&check(), &host, "CHECK after restoring the host route");

        host.netns
            .ip(&["link", "set", &iface, "address", "ee:ee:ee:ee:ee:01"])
            .expect("change host MAC");
        let err = assert_code(&check(), 100, "CHECK with a changed host MAC");
        let msg = err["msg"].as_str().unwrap_or_default();
        assert!(
            msg.contains("MAC") && msg.contains("ee:ee:ee:ee:ee:01"),
            "{err}"
        );
        host.netns
            .ip(&["link", "set", &iface, "address", HOST_MAC])
            .expect("restore host MAC");
        assert_silent_ok(&check(), &host, "CHECK after restoring the MAC");
    }

    // STATUS and GC exist from 1.1.0 on (tested in depth below).
    if version != "1.1.0" {
        for verb in ["STATUS", "GC"] {
            let err = assert_code(
                &host.invoke(&bare_call(verb), &conf),
                1,
                &format!("{verb} in {version}"),
            );
            assert!(
                err["msg"].as_str().unwrap_or_default().contains(verb),
                "{err}"
            );
        }
    }

    // DEL twice with the netns.
    let iface_a = host_iface_of(&results[0]);
    for round in 1..=2 {
        assert_silent_ok(
            &host.del(ids[0], Some(&pods[0]), &conf),
            &host,
            &format!("DEL a #{round}"),
        );
    }
    assert!(!host.links().contains(&iface_a), "{:?}", host.links());
    assert!(
        pods[0].netns.link_names().expect("links") == ["lo"],
        "pod a keeps interfaces"
    );
    assert_ip_free(&ds, &ip_a);
    assert!(handle_ips(&ds, &handle(ids[0])).is_empty());
    assert!(pods[1].ping(&pod_ip_of(&results[2])), "pod b lost pod c");

    // DEL with an empty CNI_NETNS (the runtime no longer knows it).
    let iface_b = host_iface_of(&results[1]);
    assert_silent_ok(&host.del(ids[1], None, &conf), &host, "DEL b without netns");
    assert!(!host.links().contains(&iface_b), "{:?}", host.links());
    assert_ip_free(&ds, &ip_b);

    // DEL with a netns path that is gone.
    let [_, _, pod_c] = pods;
    let gone: PathBuf = pod_c.path();
    drop(pod_c);
    assert!(!gone.exists());
    let out = host.invoke(&Call::new("DEL", ids[2], Some(gone)), &conf);
    assert_silent_ok(&out, &host, "DEL c with a vanished netns");
    assert_ip_free(&ds, &pod_ip_of(&results[2]));

    // Nothing is left.
    eventually("host links to go", Duration::from_secs(5), || {
        host.links() == ["lo"]
    });
    let routes = host.routes();
    assert!(!routes.contains("198.18."), "{routes}");
    assert!(wep_names(&ds).is_empty(), "{:?}", wep_names(&ds));
    for id in ids {
        assert!(
            handle_ips(&ds, &handle(id)).is_empty(),
            "{id} keeps addresses"
        );
    }
}

#[test]
fn lifecycle_0_3_0() {
    lifecycle("0.3.0", "198.18.48.0/24");
}

#[test]
fn lifecycle_0_3_1() {
    lifecycle("0.3.1", "198.18.49.0/24");
}

#[test]
fn lifecycle_0_4_0() {
    lifecycle("0.4.0", "198.18.50.0/24");
}

#[test]
fn lifecycle_1_0_0() {
    lifecycle("1.0.0", "198.18.51.0/24");
}

#[test]
fn lifecycle_1_1_0() {
    lifecycle("1.1.0", "198.18.52.0/24");
}

// ---------------------------------------------------------------------------------------------------------
// STATUS and GC (1.1.0)
// ---------------------------------------------------------------------------------------------------------

#[test]
fn status_needs_an_enabled_pool() {
    let (host, ds) = host_with_pool("cni-ver-s", "vnode", "198.18.53.0/26", 26);
    let conf = host.conf("1.1.0", NETWORK, &ds, json!({}));
    assert_silent_ok(
        &host.invoke(&bare_call("STATUS"), &conf),
        &host,
        "STATUS with a pool",
    );

    let fresh = Datastore::created_embedded(host.dir.path().join("fresh.db"));
    let conf = host.conf("1.1.0", NETWORK, &fresh, json!({}));
    let err = assert_code(
        &host.invoke(&bare_call("STATUS"), &conf),
        50,
        "STATUS without a pool",
    );
    assert!(
        err["msg"].as_str().unwrap_or_default().contains("pool"),
        "{err}"
    );
}

/// GC with `key` listing only `keep` removes the other containers' endpoints, veths and addresses.
fn gc_removes_unlisted(key: &str, pool: &str) {
    let (host, ds) = host_with_pool("cni-ver-g", "vnode", pool, 26);
    let conf = host.conf("1.1.0", NETWORK, &ds, json!({}));
    let ids = ["a", "b", "c"];
    let pods: Vec<Pod> = ids.iter().map(|_| Pod::new("cni-ver-gp")).collect();
    let mut results = Vec::new();
    for (id, pod) in ids.iter().zip(&pods) {
        let out = host.add(id, pod, &conf);
        assert_ok(&out, &host, "ADD");
        results.push(json_of(&out));
    }
    assert_eq!(wep_names(&ds).len(), 3);

    let gc_conf = merged(
        &conf,
        json!({key: [{"containerID": "a", "ifname": "eth0"}]}),
    );
    assert_silent_ok(&host.invoke(&bare_call("GC"), &gc_conf), &host, "GC");

    let wanted_wep = "vnode-cni-a-eth0".to_string();
    assert_eq!(wep_names(&ds), vec![wanted_wep]);
    let links = host.links();
    assert!(links.contains(&host_iface_of(&results[0])), "{links:?}");
    for (i, id) in ids.iter().enumerate().skip(1) {
        assert!(!links.contains(&host_iface_of(&results[i])), "{links:?}");
        assert!(
            handle_ips(&ds, &handle(id)).is_empty(),
            "{id} keeps its addresses"
        );
        assert_ip_free(&ds, &pod_ip_of(&results[i]));
        assert!(
            !host
                .routes()
                .contains(&format!("{} ", pod_ip_of(&results[i]))),
            "{}",
            host.routes()
        );
    }
    assert_eq!(handle_ips(&ds, &handle("a")).len(), 1);
    assert_ip_in_use(&ds, &pod_ip_of(&results[0]));
    // The kept container still works.
    let check_conf = merged(&conf, json!({"prevResult": results[0].clone()}));
    assert_silent_ok(
        &host.check("a", &pods[0], &check_conf),
        &host,
        "CHECK a after GC",
    );
}

#[test]
fn gc_removes_attachments_not_in_valid_attachments() {
    gc_removes_unlisted("cni.dev/valid-attachments", "198.18.53.64/26");
}

#[test]
fn gc_honours_the_older_attachments_key() {
    gc_removes_unlisted("cni.dev/attachments", "198.18.53.128/26");
}

// ---------------------------------------------------------------------------------------------------------
// Naming: Kubernetes pods and plain CNI containers
// ---------------------------------------------------------------------------------------------------------

#[test]
fn kubernetes_and_plain_cni_naming_in_every_version() {
    let (host, ds) = host_with_pool("cni-ver-k", "vnode", "198.18.54.0/24", 26);
    for version in VERSIONS {
        let tag = version.replace('.', "");
        let conf = host.conf(version, NETWORK, &ds, json!({}));

        // Kubernetes pod.
        let (ns, pod_name) = (format!("shop{tag}"), format!("web{tag}"));
        let pod = Pod::new("cni-ver-kp");
        let id = format!("k8s{tag}");
        let args = format!("IgnoreUnknown=1;K8S_POD_NAMESPACE={ns};K8S_POD_NAME={pod_name}");
        let call = with_args(Call::new("ADD", &id, Some(pod.path())), &args);
        let out = host.invoke(&call, &conf);
        assert_ok(&out, &host, "ADD pod");
        let result = json_of(&out);
        let expected_iface = format!("cali{}", &sha1_hex(&format!("{ns}.{pod_name}"))[..11]);
        assert_eq!(host_iface_of(&result), expected_iface);
        assert!(host.links().contains(&expected_iface));
        let wep_name = format!("vnode-k8s-{pod_name}-eth0");
        let wep = weps(&ds)
            .into_iter()
            .find(|w| w["metadata"]["name"] == wep_name.as_str())
            .unwrap_or_else(|| panic!("no WEP {wep_name}: {:?}", wep_names(&ds)));
        assert_eq!(wep["metadata"]["namespace"], ns.as_str());
        let labels = &wep["metadata"]["labels"];
        assert_eq!(labels["projectcalico.org/namespace"], ns.as_str());
        assert_eq!(labels["projectcalico.org/orchestrator"], "k8s");
        assert_eq!(wep["spec"]["profiles"], json!([format!("kns.{ns}")]));
        assert_eq!(wep["spec"]["pod"], pod_name.as_str());
        assert_eq!(wep["spec"]["interfaceName"], expected_iface.as_str());
        assert_eq!(wep["spec"]["containerID"], id.as_str());
        let del = with_args(Call::new("DEL", &id, Some(pod.path())), &args);
        assert_silent_ok(&host.invoke(&del, &conf), &host, "DEL pod");
        assert!(!host.links().contains(&expected_iface));

        // Plain CNI container.
        let network = format!("plain{tag}");
        let conf = host.conf(version, &network, &ds, json!({}));
        let id = format!("cni{tag}");
        let out = host.add(&id, &pod, &conf);
        assert_ok(&out, &host, "ADD plain");
        let wep_name = format!("vnode-cni-{id}-eth0");
        let wep = weps(&ds)
            .into_iter()
            .find(|w| w["metadata"]["name"] == wep_name.as_str())
            .unwrap_or_else(|| panic!("no WEP {wep_name}: {:?}", wep_names(&ds)));
        assert_eq!(wep["metadata"]["namespace"], "default");
        assert_eq!(wep["spec"]["orchestrator"], "cni");
        assert_eq!(
            wep["metadata"]["labels"]["projectcalico.org/orchestrator"],
            "cni"
        );
        assert_eq!(wep["spec"]["profiles"], json!([network.clone()]));
        let profile = calicoctl(&ds, &["get", "profile", &network, "-o", "json"]);
        assert!(
            profile.status.success(),
            "no Profile {network}: {}",
            String::from_utf8_lossy(&profile.stderr)
        );
        let profile: Value = serde_json::from_slice(&profile.stdout).expect("profile JSON");
        assert_eq!(profile["metadata"]["name"], network.as_str());
        assert_silent_ok(&host.del(&id, Some(&pod), &conf), &host, "DEL plain");
        assert!(wep_names(&ds).is_empty(), "{:?}", wep_names(&ds));
    }
}

// ---------------------------------------------------------------------------------------------------------
// A requested address (CNI_ARGS IP=)
// ---------------------------------------------------------------------------------------------------------

#[test]
fn requested_ip_is_given_exactly_once_in_every_version() {
    let (host, ds) = host_with_pool("cni-ver-ip", "vnode", "198.18.48.0/24", 26);
    let wanted = "198.18.48.77";
    for version in VERSIONS {
        let tag = version.replace('.', "");
        let conf = host.conf(version, NETWORK, &ds, json!({}));
        let owner = Pod::new("cni-ver-ipp");
        let owner_id = format!("own{tag}");
        let add = with_args(
            Call::new("ADD", &owner_id, Some(owner.path())),
            &format!("IP={wanted}"),
        );
        let out = host.invoke(&add, &conf);
        assert_ok(&out, &host, "ADD with IP=");
        let result = json_of(&out);
        assert_eq!(pod_ip_of(&result), wanted);
        assert_eq!(owner.ipv4().as_deref(), Some(wanted));

        let links_before = host.links();
        let routes_before = host.routes();
        let other = Pod::new("cni-ver-ipp");
        let other_id = format!("oth{tag}");
        let again = with_args(
            Call::new("ADD", &other_id, Some(other.path())),
            &format!("IP={wanted}"),
        );
        let err = cni_error(&host.invoke(&again, &conf), "second ADD with the same IP=");
        let text = format!("{} {}", err["msg"], err["details"]);
        assert!(
            text.contains(wanted) && text.contains("already assigned"),
            "error does not say {wanted} is taken: {err}"
        );
        assert_eq!(host.links(), links_before, "the failed ADD left links");
        assert_eq!(
            host.routes(),
            routes_before,
            "the failed ADD changed routes"
        );
        assert_eq!(other.netns.link_names().expect("links"), ["lo"]);
        assert!(handle_ips(&ds, &handle(&other_id)).is_empty());
        assert_eq!(wep_names(&ds), vec![format!("vnode-cni-{owner_id}-eth0")]);
        // The owner keeps it.
        assert_eq!(
            handle_ips(&ds, &handle(&owner_id)),
            vec![wanted.parse::<IpAddr>().expect("ip")]
        );
        assert_silent_ok(
            &host.del(&owner_id, Some(&owner), &conf),
            &host,
            "DEL owner",
        );
        assert_ip_free(&ds, wanted);
    }
}

// ---------------------------------------------------------------------------------------------------------
// calico-ipam invoked directly, as a delegating plugin would
// ---------------------------------------------------------------------------------------------------------

#[test]
fn calico_ipam_directly_returns_block_masked_addresses_in_every_version() {
    let (host, ds) = host_with_pool("cni-ver-i", "vnode", "198.18.55.0/24", 26);
    let pod = Pod::new("cni-ver-ip");
    for version in VERSIONS {
        let tag = version.replace('.', "");
        // The delegating plugin's own config, with calico-ipam as its IPAM.
        let conf = merged(
            &host.conf(version, NETWORK, &ds, json!({})),
            json!({"type": "ptp"}),
        );
        let id = format!("ipam{tag}");
        let mut add = Call::new("ADD", &id, Some(pod.path()));
        add.plugin = "calico-ipam";
        let out = host.invoke(&add, &conf);
        assert_ok(&out, &host, "calico-ipam ADD");
        let result = json_of(&out);
        assert_eq!(result["cniVersion"], version);
        assert!(result.get("interfaces").is_none(), "{result}");
        let ips = result["ips"].as_array().expect("ips");
        assert_eq!(ips.len(), 1, "{result}");
        let address = ips[0]["address"].as_str().expect("address");
        let (ip, len) = address.split_once('/').expect("prefix length");
        assert_eq!(len, "26", "the block's mask: {result}");
        assert!(ip.starts_with("198.18.55."), "{address}");
        assert!(ips[0].get("interface").is_none(), "{result}");
        if is_1x(version) {
            assert!(ips[0].get("version").is_none(), "{result}");
        } else {
            assert_eq!(ips[0]["version"], "4");
        }
        assert_ip_in_use(&ds, ip);
        assert_eq!(handle_ips(&ds, &handle(&id)).len(), 1);
        // IPAM touches no interfaces.
        assert_eq!(host.links(), ["lo"]);
        assert_eq!(pod.netns.link_names().expect("links"), ["lo"]);

        let mut del = Call::new("DEL", &id, Some(pod.path()));
        del.plugin = "calico-ipam";
        assert_silent_ok(&host.invoke(&del, &conf), &host, "calico-ipam DEL");
        assert_ip_free(&ds, ip);
        assert!(handle_ips(&ds, &handle(&id)).is_empty());
    }
}

// ---------------------------------------------------------------------------------------------------------
// Delegation to host-local
// ---------------------------------------------------------------------------------------------------------

const HOST_LOCAL: &str = "/usr/lib/cni/host-local";

/// host-local's record of an address: `<dataDir>/<network>/<ip>`.
fn host_local_files(data_dir: &Path, network: &str) -> Vec<String> {
    let dir = data_dir.join(network);
    let mut names: Vec<String> = std::fs::read_dir(&dir)
        .map(|entries| {
            entries
                .filter_map(Result::ok)
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| n.starts_with("198.18."))
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    names
}

#[test]
fn host_local_delegation_in_every_version_it_speaks() {
    assert!(
        Path::new(HOST_LOCAL).exists(),
        "{HOST_LOCAL} is missing: install containernetworking-plugins (scripts/setup.sh does)"
    );
    let host = Host::new("cni-ver-hl", "vnode");
    // No Calico pool at all: the addresses come from host-local alone.
    let ds = Datastore::created_embedded(host.dir.path().join("calico.db"));
    std::os::unix::fs::symlink(HOST_LOCAL, host.bin_dir().join("host-local"))
        .expect("link host-local");
    let data_dir = host.dir.path().join("host-local");
    let pod = Pod::new("cni-ver-hlp");
    // Which versions this host-local speaks (Debian 12's 1.1.1 stops at 1.0.0).
    let host_local_versions = std::process::Command::new(HOST_LOCAL)
        .env("CNI_COMMAND", "VERSION")
        .output()
        .expect("run host-local VERSION");
    let host_local_versions: Value =
        serde_json::from_slice(&host_local_versions.stdout).expect("host-local VERSION JSON");
    for version in VERSIONS {
        let tag = version.replace('.', "");
        let network = format!("hl{tag}");
        let conf = host.conf(
            version,
            &network,
            &ds,
            json!({"ipam": {"type": "host-local", "subnet": "198.18.60.0/24", "dataDir": data_dir}}),
        );
        let id = format!("hl{tag}");
        let out = host.add(&id, &pod, &conf);
        let speaks = host_local_versions["supportedVersions"]
            .as_array()
            .is_some_and(|v| v.iter().any(|s| s == version));
        if !speaks {
            // host-local's own refusal reaches the runtime unchanged, and nothing is wired.
            let err = assert_code(&out, 1, &format!("ADD via host-local in {version}"));
            assert!(
                err["msg"]
                    .as_str()
                    .unwrap_or_default()
                    .contains("incompatible"),
                "{err}"
            );
            assert_eq!(host.links(), ["lo"]);
            assert_eq!(pod.netns.link_names().expect("links"), ["lo"]);
            assert!(host_local_files(&data_dir, &network).is_empty());
            continue;
        }
        assert_ok(&out, &host, &format!("ADD via host-local in {version}"));
        let result = json_of(&out);
        assert_add_result(version, &result, &pod, 1450);
        let ip = pod_ip_of(&result);
        assert!(ip.starts_with("198.18.60."), "{ip}");
        assert_eq!(host_local_files(&data_dir, &network), vec![ip.clone()]);
        assert_wired(&host, &pod, &host_iface_of(&result), &ip, 1450);
        assert_ip_free(&ds, &ip);

        assert_silent_ok(
            &host.del(&id, Some(&pod), &conf),
            &host,
            "DEL via host-local",
        );
        assert!(
            host_local_files(&data_dir, &network).is_empty(),
            "host-local still holds {:?}",
            host_local_files(&data_dir, &network)
        );
        assert_eq!(host.links(), ["lo"]);
        assert_eq!(pod.netns.link_names().expect("links"), ["lo"]);
    }
}

// ---------------------------------------------------------------------------------------------------------
// MTU from the MTU file
// ---------------------------------------------------------------------------------------------------------

#[test]
fn mtu_zero_reads_the_mtu_file_else_1500() {
    let (host, ds) = host_with_pool("cni-ver-m", "vnode", "198.18.57.0/24", 26);
    let mtu_file = host.dir.path().join("mtu");
    std::fs::write(&mtu_file, "1400\n").expect("write MTU file");
    let cases = [
        (mtu_file.clone(), 1400),
        (host.dir.path().join("no-such-mtu-file"), 1500),
    ];
    for version in VERSIONS {
        for (i, (file, want)) in cases.iter().enumerate() {
            let conf = host.conf(version, NETWORK, &ds, json!({"mtu": 0, "mtu_file": file}));
            let pod = Pod::new("cni-ver-mp");
            let id = format!("m{}{i}", version.replace('.', ""));
            let out = host.add(&id, &pod, &conf);
            assert_ok(&out, &host, "ADD with mtu 0");
            let result = json_of(&out);
            assert_eq!(
                link_mtu(&pod.netns, "eth0"),
                *want,
                "{version}, {}",
                file.display()
            );
            assert_eq!(link_mtu(&host.netns, &host_iface_of(&result)), *want);
            if is_1x(version)
                && let Some(reported) = result["interfaces"][1].get("mtu")
            {
                assert_eq!(reported, want);
            }
            assert_silent_ok(&host.del(&id, Some(&pod), &conf), &host, "DEL");
        }
    }
}
