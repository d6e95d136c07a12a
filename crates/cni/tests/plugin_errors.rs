//! Bad input and failures reach the runtime as a CNI error (JSON on stdout, non-zero exit) with the code
//! the spec assigns, and leave nothing half-written: no interfaces or routes on the host, nothing in the
//! pod, no endpoint, no address held.

mod common;

use std::io::Write;
use std::net::IpAddr;
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use common::{Call, Datastore, Host, Pod, assert_ok, calicoctl, create_pool, json_of, with_ipam};
use serde_json::{Value, json};

const NETWORK: &str = "enet";
const CNI_VARS: [&str; 6] = [
    "CNI_COMMAND",
    "CNI_CONTAINERID",
    "CNI_NETNS",
    "CNI_IFNAME",
    "CNI_ARGS",
    "CNI_PATH",
];

// ---------------------------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------------------------

fn host_with_pool(prefix: &str, cidr: &str, block_size: u8) -> (Host, Datastore) {
    let host = Host::new(prefix, "enode");
    let ds = Datastore::created_embedded(host.dir.path().join("calico.db"));
    create_pool(&ds, "pool1", cidr, block_size);
    (host, ds)
}

/// Run `calico` in the host namespace with exactly the given CNI variables (others removed) and raw
/// bytes on stdin, killed after 60 s.
fn invoke_raw(host: &Host, vars: &[(&str, &str)], stdin: &[u8]) -> Output {
    let mut cmd = Command::new("ip");
    cmd.args(["netns", "exec", host.netns.name()])
        .arg(host.bin_dir().join("calico"))
        .env_remove("DATASTORE_TYPE")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for var in CNI_VARS {
        cmd.env_remove(var);
    }
    for (key, value) in vars {
        cmd.env(key, value);
    }
    let mut child = cmd.spawn().expect("start plugin");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(stdin)
        .expect("write stdin");
    let pid = child.id();
    let waiter = std::thread::spawn(move || child.wait_with_output());
    let deadline = Instant::now() + Duration::from_secs(60);
    while !waiter.is_finished() {
        if Instant::now() > deadline {
            let _ = Command::new("kill").args(["-9", &pid.to_string()]).status();
            panic!("plugin did not finish within 60 s");
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    waiter.join().expect("waiter").expect("plugin output")
}

/// CNI variables and their values.
type Vars = Vec<(&'static str, String)>;

/// The CNI variables libcni sets for ADD of container `ctr1` into `pod`.
fn add_vars(pod: &Pod, bin: &str) -> Vec<(&'static str, String)> {
    vec![
        ("CNI_COMMAND", "ADD".to_string()),
        ("CNI_CONTAINERID", "ctr1".to_string()),
        ("CNI_NETNS", pod.path().display().to_string()),
        ("CNI_IFNAME", "eth0".to_string()),
        ("CNI_ARGS", String::new()),
        ("CNI_PATH", bin.to_string()),
    ]
}

fn without<'a>(vars: &[(&'a str, String)], key: &str) -> Vec<(&'a str, String)> {
    vars.iter().filter(|(k, _)| *k != key).cloned().collect()
}

fn replaced<'a>(vars: &[(&'a str, String)], key: &'a str, value: &str) -> Vec<(&'a str, String)> {
    let mut vars = without(vars, key);
    vars.push((key, value.to_string()));
    vars
}

fn as_refs<'a>(vars: &'a [(&'a str, String)]) -> Vec<(&'a str, &'a str)> {
    vars.iter().map(|(k, v)| (*k, v.as_str())).collect()
}

/// The CNI error printed by a failed invocation, checked for the code; returns `msg` and `details`
/// joined for looking into.
fn assert_cni_error(out: &Output, code: u64, what: &str) -> String {
    assert!(
        !out.status.success(),
        "{what} should have failed but succeeded: {}",
        String::from_utf8_lossy(&out.stdout)
    );
    let err = json_of(out);
    assert_eq!(err["code"], code, "{what}: wrong code in {err}");
    assert!(
        err["msg"].as_str().is_some_and(|m| !m.is_empty()),
        "{what}: no message in {err}"
    );
    assert!(
        err["cniVersion"].is_string(),
        "{what}: no cniVersion in {err}"
    );
    format!(
        "{} | {}",
        err["msg"].as_str().unwrap_or_default(),
        err["details"].as_str().unwrap_or_default()
    )
}

fn assert_mentions(text: &str, word: &str, what: &str) {
    assert!(
        text.contains(word),
        "{what}: error does not mention {word:?}: {text}"
    );
}

/// Every WorkloadEndpoint's name.
fn wep_names(ds: &Datastore) -> Vec<String> {
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
    list["items"]
        .as_array()
        .map(|items| {
            items
                .iter()
                .filter_map(|w| w["metadata"]["name"].as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

/// How many addresses IPAM holds for workloads, over all blocks.
fn addresses_in_use(ds: &Datastore) -> usize {
    with_ipam(ds, async |ipam| {
        ipam.blocks()
            .await
            .expect("blocks")
            .iter()
            .map(|b| b.block.in_use_count())
            .sum()
    })
}

fn handle_ips(ds: &Datastore, container_id: &str) -> Vec<IpAddr> {
    let handle = format!("{NETWORK}.{container_id}");
    with_ipam(ds, async |ipam| {
        ipam.ips_by_handle(&handle).await.expect("handle")
    })
}

/// Nothing on the host but its loopback, and no route to any test address.
fn assert_host_clean(host: &Host, what: &str) {
    assert_eq!(host.links(), ["lo"], "{what}: links left on the host");
    let routes = host.routes();
    assert!(!routes.contains("198.18."), "{what}: routes left: {routes}");
}

fn assert_pod_untouched(pod: &Pod, what: &str) {
    assert_eq!(
        pod.netns.link_names().expect("pod links"),
        ["lo"],
        "{what}: interfaces left in the pod"
    );
}

// ---------------------------------------------------------------------------------------------------------
// Bad network config on stdin
// ---------------------------------------------------------------------------------------------------------

#[test]
fn bad_config_is_refused_with_the_spec_codes() {
    let (host, ds) = host_with_pool("cni-err-c", "198.18.56.0/26", 26);
    let pod = Pod::new("cni-err-cp");
    let bin = host.bin_dir().display().to_string();
    let vars = add_vars(&pod, &bin);
    let vars = as_refs(&vars);
    let good = host.conf("1.0.0", NETWORK, &ds, json!({}));

    // Malformed JSON: 6.
    let mut truncated = good.to_string();
    truncated.truncate(truncated.len() / 2);
    let text = assert_cni_error(
        &invoke_raw(&host, &vars, truncated.as_bytes()),
        6,
        "malformed",
    );
    assert_mentions(&text, "decode", "malformed JSON");

    // A field of the wrong type: 7, naming it.
    for (extra, field) in [
        (json!({"mtu": "big"}), "mtu"),
        (json!({"nodename": 42}), "nodename"),
        (
            json!({"ipam": {"type": "calico-ipam", "ipv4_pools": "not-a-list"}}),
            "ipam.ipv4_pools",
        ),
    ] {
        let mut conf = good.clone();
        if let (Some(base), Value::Object(extra)) = (conf.as_object_mut(), extra) {
            base.extend(extra);
        }
        let out = invoke_raw(&host, &vars, conf.to_string().as_bytes());
        let text = assert_cni_error(&out, 7, field);
        assert_mentions(&text, field, "wrong type");
    }

    // Unsupported versions: 1, naming the version.
    for version in ["0.2.0", "9.9.9", "0.1.0"] {
        let mut conf = good.clone();
        conf["cniVersion"] = json!(version);
        let out = invoke_raw(&host, &vars, conf.to_string().as_bytes());
        let text = assert_cni_error(&out, 1, version);
        assert_mentions(&text, version, "unsupported version");
        assert_mentions(
            &text,
            "1.1.0",
            "unsupported version lists the supported ones",
        );
    }

    assert_host_clean(&host, "bad config");
    assert_pod_untouched(&pod, "bad config");
    assert!(wep_names(&ds).is_empty());
    assert_eq!(addresses_in_use(&ds), 0);
    // The good config does work here, so the refusals above were about the input.
    let out = invoke_raw(&host, &vars, good.to_string().as_bytes());
    assert_ok(&out, &host, "ADD with the good config");
}

// ---------------------------------------------------------------------------------------------------------
// Bad CNI_* environment
// ---------------------------------------------------------------------------------------------------------

#[test]
fn bad_environment_is_code_4_naming_the_variable() {
    let (host, ds) = host_with_pool("cni-err-e", "198.18.56.64/26", 26);
    let pod = Pod::new("cni-err-ep");
    let bin = host.bin_dir().display().to_string();
    let conf = host.conf("1.0.0", NETWORK, &ds, json!({})).to_string();
    let vars = add_vars(&pod, &bin);

    let cases: Vec<(&str, Vars, &str)> = vec![
        (
            "missing CNI_COMMAND",
            without(&vars, "CNI_COMMAND"),
            "CNI_COMMAND",
        ),
        (
            "empty CNI_COMMAND",
            replaced(&vars, "CNI_COMMAND", ""),
            "CNI_COMMAND",
        ),
        (
            "unknown CNI_COMMAND",
            replaced(&vars, "CNI_COMMAND", "ATTACH"),
            "CNI_COMMAND",
        ),
        (
            "bad CNI_CONTAINERID",
            replaced(&vars, "CNI_CONTAINERID", "bad/id"),
            "CNI_CONTAINERID",
        ),
        (
            "missing CNI_CONTAINERID",
            without(&vars, "CNI_CONTAINERID"),
            "CNI_CONTAINERID",
        ),
        (
            "missing CNI_NETNS",
            without(&vars, "CNI_NETNS"),
            "CNI_NETNS",
        ),
        (
            "missing CNI_IFNAME",
            without(&vars, "CNI_IFNAME"),
            "CNI_IFNAME",
        ),
        (
            "bad CNI_IFNAME",
            replaced(&vars, "CNI_IFNAME", "a/b"),
            "CNI_IFNAME",
        ),
        (
            "bad CNI_ARGS",
            replaced(&vars, "CNI_ARGS", "IP=not-an-ip"),
            "CNI_ARGS",
        ),
    ];
    for (what, vars, variable) in cases {
        let out = invoke_raw(&host, &as_refs(&vars), conf.as_bytes());
        let text = assert_cni_error(&out, 4, what);
        assert_mentions(&text, variable, what);
    }
    assert_host_clean(&host, "bad env");
    assert_pod_untouched(&pod, "bad env");
    assert!(wep_names(&ds).is_empty());
    assert_eq!(addresses_in_use(&ds), 0);
}

#[test]
fn unreadable_stdin_is_an_io_failure_naming_stdin() {
    let (host, ds) = host_with_pool("cni-err-s", "198.18.57.0/26", 26);
    let pod = Pod::new("cni-err-sp");
    let bin = host.bin_dir().display().to_string();
    // A directory as stdin: opening it works, reading it fails (EISDIR), as a broken pipe from a runtime
    // would.
    let dir = tempfile::tempdir().expect("temp dir");
    let mut cmd = Command::new("ip");
    cmd.args(["netns", "exec", host.netns.name()])
        .arg(host.bin_dir().join("calico"))
        .env_remove("DATASTORE_TYPE")
        .stdin(Stdio::from(
            std::fs::File::open(dir.path()).expect("open dir"),
        ))
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for (key, value) in add_vars(&pod, &bin) {
        cmd.env(key, value);
    }
    let out = cmd.output().expect("run plugin");
    let text = assert_cni_error(&out, 5, "unreadable stdin");
    assert_mentions(&text, "stdin", "unreadable stdin");
    assert_mentions(&text, "directory", "unreadable stdin");
    assert_host_clean(&host, "unreadable stdin");
    assert_pod_untouched(&pod, "unreadable stdin");
    assert!(wep_names(&ds).is_empty());
    assert_eq!(addresses_in_use(&ds), 0);
}

// ---------------------------------------------------------------------------------------------------------
// A datastore file that is missing or empty
// ---------------------------------------------------------------------------------------------------------

#[test]
fn missing_or_empty_embedded_file_is_refused_naming_it_and_nothing_is_created() {
    let host = Host::new("cni-err-m", "enode");
    let pod = Pod::new("cni-err-mp");
    let missing = host.dir.path().join("mistyped").join("calico.db");
    let empty = host.dir.path().join("empty.db");
    std::fs::write(&empty, b"").expect("write empty file");
    for (path, problem) in [(&missing, "does not exist"), (&empty, "empty")] {
        let ds = Datastore::Embedded(path.clone());
        let conf = host.conf("1.1.0", NETWORK, &ds, json!({}));
        let mut status = Call::new("STATUS", "", None);
        status.ifname = String::new();
        let mut ipam_status = status.clone();
        ipam_status.plugin = "calico-ipam";
        let cases = [
            ("STATUS", status, 50),
            ("calico-ipam STATUS", ipam_status, 50),
            ("ADD", Call::new("ADD", "ctr1", Some(pod.path())), 11),
        ];
        for (what, call, code) in cases {
            let what = format!("{what} with {}", path.display());
            let text = assert_cni_error(&host.invoke(&call, &conf), code, &what);
            assert_mentions(&text, &path.display().to_string(), &what);
            assert_mentions(&text, problem, &what);
        }
    }
    assert!(
        !host.dir.path().join("mistyped").exists(),
        "the plugin created the missing file's directory"
    );
    assert_eq!(
        std::fs::metadata(&empty).expect("empty file").len(),
        0,
        "the plugin wrote into the empty file"
    );
    let beside: Vec<String> = std::fs::read_dir(host.dir.path())
        .expect("read dir")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("empty"))
        .collect();
    assert_eq!(beside, ["empty.db"], "files made beside the empty one");
    assert_host_clean(&host, "no datastore");
    assert_pod_untouched(&pod, "no datastore");
}

// ---------------------------------------------------------------------------------------------------------
// Unreachable datastore
// ---------------------------------------------------------------------------------------------------------

/// Two distinct TCP ports on 127.0.0.1 (inside the host namespace nothing listens on any port).
fn two_free_ports() -> (u16, u16) {
    let a = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let b = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    (
        a.local_addr().expect("addr").port(),
        b.local_addr().expect("addr").port(),
    )
}

#[test]
fn unreachable_etcd_is_try_again_later_quickly() {
    let host = Host::new("cni-err-u", "enode");
    let pod = Pod::new("cni-err-up");
    let (refused_port, silent_port) = two_free_ports();
    // A port whose SYNs vanish: connecting hangs instead of being refused.
    for rule in [
        "add table inet cnitest",
        "add chain inet cnitest input { type filter hook input priority 0 ; }",
    ] {
        let mut args = vec!["nft"];
        args.extend(rule.split(' '));
        host.netns.exec_ok(&args).unwrap_or_else(|e| panic!("{e}"));
    }
    host.netns
        .exec_ok(&[
            "nft",
            "add",
            "rule",
            "inet",
            "cnitest",
            "input",
            "tcp",
            "dport",
            &silent_port.to_string(),
            "drop",
        ])
        .unwrap_or_else(|e| panic!("{e}"));

    let cases = [
        ("refused", refused_port, &["ADD", "DEL"][..]),
        ("dropped", silent_port, &["ADD"][..]),
    ];
    for (what, port, commands) in cases {
        let ds = Datastore::Etcd(format!("http://127.0.0.1:{port}"));
        let conf = host.conf("1.0.0", NETWORK, &ds, json!({}));
        for &command in commands {
            let started = Instant::now();
            let out = host.invoke(&Call::new(command, "ctr1", Some(pod.path())), &conf);
            let took = started.elapsed();
            let text = assert_cni_error(&out, 11, &format!("{command}, etcd {what}"));
            assert!(
                took < Duration::from_secs(15),
                "{command} with etcd {what} took {took:?}"
            );
            let case = format!("{command}, etcd {what}");
            assert_mentions(&text, "datastore", &case);
            assert_mentions(&text, &format!("127.0.0.1:{port}"), &case);
            assert_host_clean(&host, "unreachable etcd");
            assert_pod_untouched(&pod, "unreachable etcd");
        }
    }
}

// ---------------------------------------------------------------------------------------------------------
// IPAM failures
// ---------------------------------------------------------------------------------------------------------

#[test]
fn exhausted_pool_fails_the_fifth_add_cleanly() {
    let (host, ds) = host_with_pool("cni-err-x", "198.18.59.0/30", 30);
    let conf = host.conf("1.0.0", NETWORK, &ds, json!({}));
    let pods: Vec<Pod> = (0..5).map(|_| Pod::new("cni-err-xp")).collect();
    for (i, pod) in pods.iter().take(4).enumerate() {
        assert_ok(&host.add(&format!("x{i}"), pod, &conf), &host, "ADD");
    }
    assert_eq!(addresses_in_use(&ds), 4);
    let links_before = host.links();
    let routes_before = host.routes();

    let out = host.add("x4", &pods[4], &conf);
    let text = assert_cni_error(&out, 100, "ADD into a full pool");
    assert_mentions(&text.to_lowercase(), "exhausted", "full pool");
    assert_eq!(host.links(), links_before, "links left by the failed ADD");
    assert_eq!(
        host.routes(),
        routes_before,
        "routes left by the failed ADD"
    );
    assert_pod_untouched(&pods[4], "failed ADD");
    assert!(handle_ips(&ds, "x4").is_empty());
    assert!(!wep_names(&ds).contains(&"enode-cni-x4-eth0".to_string()));
    assert_eq!(wep_names(&ds).len(), 4);
    assert_eq!(addresses_in_use(&ds), 4);

    // Once one pod goes, the next ADD gets its address.
    assert_ok(&host.del("x0", Some(&pods[0]), &conf), &host, "DEL x0");
    assert_ok(&host.add("x4", &pods[4], &conf), &host, "ADD after DEL");
}

/// The kernel refuses the veth (an MTU beyond what it allows) after IPAM handed out the address: the
/// address is released again and nothing is left on the host or in the pod.
#[test]
fn wiring_refused_by_the_kernel_releases_the_address() {
    let (host, ds) = host_with_pool("cni-err-k", "198.18.62.0/26", 26);
    let conf = host.conf("1.0.0", NETWORK, &ds, json!({"mtu": 1_000_000}));
    let pod = Pod::new("cni-err-kp");
    let out = host.add("k1", &pod, &conf);
    let text = assert_cni_error(&out, 100, "ADD with an MTU the kernel refuses");
    assert_mentions(&text, "wire", "wiring failure");
    assert!(
        handle_ips(&ds, "k1").is_empty(),
        "the address is still held"
    );
    assert_eq!(addresses_in_use(&ds), 0, "an address leaked");
    assert_host_clean(&host, "refused wiring");
    assert!(wep_names(&ds).is_empty(), "{:?}", wep_names(&ds));
    assert_pod_untouched(&pod, "refused wiring");
}

/// A second ADD for a container that is already attached changes nothing: the first attachment keeps its
/// address, interfaces and endpoint.
#[test]
fn repeated_add_leaves_the_first_attachment_alone() {
    let (host, ds) = host_with_pool("cni-err-r", "198.18.63.0/26", 26);
    let conf = host.conf("1.0.0", NETWORK, &ds, json!({}));
    let pod = Pod::new("cni-err-rp");
    assert_ok(&host.add("r1", &pod, &conf), &host, "first ADD");
    let ip = pod.ipv4().expect("address after the first ADD");
    let links = host.links();
    let out = host.add("r1", &pod, &conf);
    let text = assert_cni_error(&out, 100, "repeated ADD");
    assert_mentions(&text, "already exists", "repeated ADD");
    assert_eq!(host.links(), links, "the host end was touched");
    assert_eq!(pod.ipv4().as_deref(), Some(ip.as_str()));
    assert_eq!(addresses_in_use(&ds), 1, "the address must still be held");
    assert_eq!(wep_names(&ds).len(), 1);
    assert_ok(
        &host.check("r1", &pod, &conf),
        &host,
        "CHECK after the repeated ADD",
    );
}

#[test]
fn an_interface_already_in_the_pod_is_refused_and_left_alone() {
    let (host, ds) = host_with_pool("cni-err-w", "198.18.61.0/26", 26);
    let conf = host.conf("1.0.0", NETWORK, &ds, json!({}));
    let pod = Pod::new("cni-err-wp");
    // Something already called eth0 in the pod: the veth's pod end cannot take that name.
    pod.netns
        .ip(&["link", "add", "eth0", "type", "bridge"])
        .unwrap_or_else(|e| panic!("{e}"));

    let out = host.add("w1", &pod, &conf);
    let text = assert_cni_error(&out, 100, "ADD into a pod that has an eth0");
    assert_mentions(&text, "already exists", "interface already in the pod");
    assert!(
        handle_ips(&ds, "w1").is_empty(),
        "the address is still held"
    );
    assert_eq!(addresses_in_use(&ds), 0, "an address leaked");
    assert_host_clean(&host, "failed wiring");
    assert!(wep_names(&ds).is_empty(), "{:?}", wep_names(&ds));
    let routes = pod.netns.ip(&["route"]).expect("pod routes");
    assert!(!routes.contains("169.254.1.1"), "{routes}");
    // The pod's own eth0 is not the plugin's to delete: the failed ADD leaves it as it was.
    let eth0 = pod.netns.ip(&["-d", "-o", "link", "show", "eth0"]);
    assert!(
        eth0.as_deref().is_ok_and(|l| l.contains("bridge")),
        "the pod's own eth0 was removed by the failed ADD: {eth0:?}"
    );

    // The runtime's DEL after the failed ADD succeeds, and a retry into a clean pod works.
    assert_ok(
        &host.del("w1", Some(&pod), &conf),
        &host,
        "DEL after failed ADD",
    );
    let clean = Pod::new("cni-err-wp");
    assert_ok(
        &host.add("w2", &clean, &conf),
        &host,
        "ADD into a clean pod",
    );
    assert_eq!(addresses_in_use(&ds), 1);
}

#[test]
fn missing_netns_on_add_allocates_nothing() {
    let (host, ds) = host_with_pool("cni-err-n", "198.18.62.0/26", 26);
    let conf = host.conf("1.0.0", NETWORK, &ds, json!({}));
    let missing = host.dir.path().join("no-such-netns");
    assert!(!Path::new(&missing).exists());
    let out = host.invoke(&Call::new("ADD", "n1", Some(missing.clone())), &conf);
    let text = assert_cni_error(&out, 3, "ADD into a missing netns");
    assert_mentions(&text, &missing.display().to_string(), "missing netns");
    assert_host_clean(&host, "missing netns");
    assert!(handle_ips(&ds, "n1").is_empty());
    assert_eq!(addresses_in_use(&ds), 0);
    assert!(wep_names(&ds).is_empty());
}

// ---------------------------------------------------------------------------------------------------------
// DEL is best effort
// ---------------------------------------------------------------------------------------------------------

const HOST_LOCAL: &str = "/usr/lib/cni/host-local";

#[test]
fn del_succeeds_when_the_delegated_ipam_plugin_is_gone() {
    assert!(
        Path::new(HOST_LOCAL).exists(),
        "{HOST_LOCAL} is missing: install containernetworking-plugins (scripts/setup.sh does)"
    );
    let host = Host::new("cni-err-d", "enode");
    let ds = Datastore::created_embedded(host.dir.path().join("calico.db"));
    let link = host.bin_dir().join("host-local");
    std::os::unix::fs::symlink(HOST_LOCAL, &link).expect("link host-local");
    let conf = host.conf(
        "1.0.0",
        NETWORK,
        &ds,
        json!({"ipam": {"type": "host-local", "subnet": "198.18.58.0/24",
                        "dataDir": host.dir.path().join("host-local")}}),
    );
    let pod = Pod::new("cni-err-dp");
    assert_ok(&host.add("d1", &pod, &conf), &host, "ADD via host-local");
    assert_eq!(wep_names(&ds), ["enode-cni-d1-eth0"]);
    assert_eq!(host.links().len(), 2, "{:?}", host.links());

    // The IPAM plugin is uninstalled before the runtime's DEL comes.
    std::fs::remove_file(&link).expect("remove host-local");
    let out = host.del("d1", Some(&pod), &conf);
    assert_ok(&out, &host, "DEL without the IPAM plugin");
    assert!(out.stdout.is_empty(), "DEL printed a result");
    assert_host_clean(&host, "DEL without the IPAM plugin");
    assert_pod_untouched(&pod, "DEL without the IPAM plugin");
    assert!(
        wep_names(&ds).is_empty(),
        "endpoint left: {:?}",
        wep_names(&ds)
    );
    let log = std::fs::read_to_string(host.log_file()).unwrap_or_default();
    assert!(
        log.contains("host-local") && log.contains("not available"),
        "the skipped release is not logged:\n{}",
        host.log_tail()
    );

    // A DEL repeated (or one for a container whose ADD failed) succeeds as well.
    let out = host.del("d1", Some(&pod), &conf);
    assert_ok(&out, &host, "second DEL without the IPAM plugin");
}
