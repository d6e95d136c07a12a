//! Delegating to IPAM plugins: Debian's real `host-local`, and small shell-script plugins for
//! the failure modes.

use std::collections::HashMap;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use calico_cni::delegate;
use calico_cni::spec::{CniEnv, CniError, CniVersion, Command};
use ipnet::IpNet;
use serde_json::json;

const CNI_BIN_DIR: &str = "/usr/lib/cni";

fn require_host_local() {
    let plugin = Path::new(CNI_BIN_DIR).join("host-local");
    assert!(
        plugin.is_file(),
        "{} is missing: install containernetworking-plugins (scripts/setup.sh)",
        plugin.display()
    );
}

/// A network/container name unique to this test process and call.
fn unique(prefix: &str) -> String {
    static COUNTER: AtomicU32 = AtomicU32::new(0);
    format!(
        "{prefix}-{}-{}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    )
}

fn env(command: &str, container_id: &str, cni_path: &str) -> CniEnv {
    let vars: HashMap<String, String> = [
        ("CNI_COMMAND", command),
        ("CNI_CONTAINERID", container_id),
        ("CNI_NETNS", "/var/run/netns/not-needed-by-host-local"),
        ("CNI_IFNAME", "eth0"),
        ("CNI_ARGS", "IgnoreUnknown=1;K8S_POD_NAME=p"),
        ("CNI_PATH", cni_path),
    ]
    .into_iter()
    .map(|(key, value)| (key.to_owned(), value.to_owned()))
    .collect();
    CniEnv::from_map(&vars).unwrap()
}

fn host_local_config(version: &str, network: &str, subnet: &str, data_dir: &Path) -> Vec<u8> {
    json!({
        "cniVersion": version,
        "name": network,
        "type": "calico",
        "ipam": {"type": "host-local", "subnet": subnet, "dataDir": data_dir}
    })
    .to_string()
    .into_bytes()
}

#[test]
fn host_local_add_then_del() {
    require_host_local();
    let data_dir = tempfile::tempdir().unwrap();
    let network = unique("delegate-net");
    let container = unique("ctr");
    let config = host_local_config("1.0.0", &network, "198.18.100.0/24", data_dir.path());
    let subnet: IpNet = "198.18.100.0/24".parse().unwrap();

    let result =
        delegate::add("host-local", &config, &env("ADD", &container, CNI_BIN_DIR)).unwrap();
    assert_eq!(result.cni_version, CniVersion::V1_0_0);
    assert_eq!(result.ips.len(), 1);
    let ip = &result.ips[0];
    assert!(subnet.contains(&ip.address.addr()), "{ip:?}");
    assert_eq!(ip.address.prefix_len(), 24);
    assert_eq!(ip.gateway, Some("198.18.100.1".parse().unwrap()));
    assert_ne!(ip.address.addr(), ip.gateway.unwrap());
    assert!(
        result.interfaces.is_empty(),
        "IPAM results carry no interfaces"
    );

    // host-local records the reservation as <dataDir>/<network>/<ip> holding the container ID.
    let reservation = data_dir
        .path()
        .join(&network)
        .join(ip.address.addr().to_string());
    let owner = fs::read_to_string(&reservation).unwrap();
    assert!(owner.contains(&container), "{owner:?}");

    // DEL goes through the same env with the verb overridden.
    delegate::del("host-local", &config, &env("ADD", &container, CNI_BIN_DIR)).unwrap();
    assert!(
        !reservation.exists(),
        "DEL should release {}",
        reservation.display()
    );
    // DEL is idempotent.
    delegate::del("host-local", &config, &env("DEL", &container, CNI_BIN_DIR)).unwrap();
}

#[test]
fn host_local_result_in_0_3_1_is_converted() {
    require_host_local();
    let data_dir = tempfile::tempdir().unwrap();
    let network = unique("delegate-old");
    let container = unique("ctr");
    let config = host_local_config("0.3.1", &network, "198.18.101.0/24", data_dir.path());
    let env = env("ADD", &container, CNI_BIN_DIR);

    let result = delegate::add("host-local", &config, &env).unwrap();
    assert_eq!(result.cni_version, CniVersion::V0_3_1);
    let rendered = result.to_json(CniVersion::V1_1_0);
    let ip = rendered["ips"][0].as_object().unwrap();
    assert!(!ip.contains_key("version"), "{rendered}");
    assert!(
        ip["address"].as_str().unwrap().starts_with("198.18.101."),
        "{rendered}"
    );

    delegate::del("host-local", &config, &env).unwrap();
}

#[test]
fn a_failing_plugins_error_comes_through_with_its_code() {
    require_host_local();
    let data_dir = tempfile::tempdir().unwrap();
    let config = host_local_config("1.0.0", &unique("bad"), "198.18.100.0/33", data_dir.path());
    let error = delegate::add(
        "host-local",
        &config,
        &env("ADD", &unique("ctr"), CNI_BIN_DIR),
    )
    .unwrap_err();
    // host-local reports bad config with its own plugin-specific code.
    assert_eq!(error.code, 999, "{error:?}");
    assert!(error.msg.contains("198.18.100.0/33"), "{error:?}");
}

#[test]
fn a_missing_plugin_names_cni_path() {
    let empty_dir = tempfile::tempdir().unwrap();
    let cni_path = format!("{}:{CNI_BIN_DIR}", empty_dir.path().display());
    let config =
        br#"{"cniVersion":"1.0.0","name":"n","type":"calico","ipam":{"type":"no-such-ipam"}}"#;

    let error = delegate::add("no-such-ipam", config, &env("ADD", "c1", &cni_path)).unwrap_err();
    assert_eq!(error.code, CniError::IO_FAILURE);
    assert!(error.msg.contains("no-such-ipam"), "{error:?}");
    assert!(error.msg.contains("CNI_PATH"), "{error:?}");
    assert!(
        error
            .details
            .contains(&empty_dir.path().display().to_string()),
        "{error:?}"
    );
    assert!(error.details.contains(CNI_BIN_DIR), "{error:?}");

    // In STATUS the spec's "plugin not available" applies.
    let error =
        delegate::status("no-such-ipam", config, &env("STATUS", "c1", &cni_path)).unwrap_err();
    assert_eq!(error.code, CniError::PLUGIN_NOT_AVAILABLE);

    // A type that is a path is refused before any lookup.
    let error = delegate::add("../host-local", config, &env("ADD", "c1", CNI_BIN_DIR)).unwrap_err();
    assert_eq!(error.code, CniError::INVALID_NETWORK_CONFIG);
}

/// Writes an executable shell script plugin into `dir`.
fn script_plugin(dir: &Path, name: &str, body: &str) -> PathBuf {
    let path = dir.join(name);
    fs::write(&path, format!("#!/bin/sh\n{body}\n")).unwrap();
    fs::set_permissions(&path, fs::Permissions::from_mode(0o755)).unwrap();
    path
}

#[test]
fn passes_the_environment_and_config_through() {
    let dir = tempfile::tempdir().unwrap();
    let record = dir.path().join("record");
    script_plugin(
        dir.path(),
        "recorder",
        &format!(
            "cat > '{0}.stdin'\nenv | grep '^CNI_' | sort > '{0}.env'",
            record.display()
        ),
    );
    let config = br#"{"cniVersion":"1.1.0","name":"n","type":"calico","ipam":{"type":"recorder","x":[1,2]}}"#;
    let cni_path = dir.path().display().to_string();

    delegate::check("recorder", config, &env("ADD", "ctr-7", &cni_path)).unwrap();

    assert_eq!(fs::read(record.with_extension("stdin")).unwrap(), config);
    let recorded_env = fs::read_to_string(record.with_extension("env")).unwrap();
    for line in [
        "CNI_COMMAND=CHECK",
        "CNI_CONTAINERID=ctr-7",
        "CNI_IFNAME=eth0",
        "CNI_NETNS=/var/run/netns/not-needed-by-host-local",
        "CNI_ARGS=IgnoreUnknown=1;K8S_POD_NAME=p",
        &format!("CNI_PATH={cni_path}"),
    ] {
        assert!(
            recorded_env.lines().any(|l| l == line),
            "{line} missing in:\n{recorded_env}"
        );
    }
}

#[test]
fn a_plugin_that_prints_no_error_json_is_described_from_stderr() {
    let dir = tempfile::tempdir().unwrap();
    script_plugin(
        dir.path(),
        "crasher",
        "echo 'segfault-ish trouble' >&2\nexit 3",
    );
    let error = delegate::del(
        "crasher",
        b"{}",
        &env("DEL", "c1", &dir.path().display().to_string()),
    )
    .unwrap_err();
    assert_eq!(error.code, CniError::IO_FAILURE);
    assert!(error.msg.contains("crasher"), "{error:?}");
    assert!(error.details.contains("segfault-ish trouble"), "{error:?}");
}

#[test]
fn an_undecodable_add_result_is_a_decoding_failure() {
    let dir = tempfile::tempdir().unwrap();
    script_plugin(
        dir.path(),
        "garbler",
        "cat > /dev/null\necho 'this is not json'",
    );
    let error = delegate::add(
        "garbler",
        b"{}",
        &env("ADD", "c1", &dir.path().display().to_string()),
    )
    .unwrap_err();
    assert_eq!(error.code, CniError::DECODING_FAILURE);
    assert!(error.msg.contains("garbler"), "{error:?}");
}

#[test]
fn a_hanging_plugin_is_killed_at_the_timeout() {
    let dir = tempfile::tempdir().unwrap();
    let pid_file = dir.path().join("pid");
    script_plugin(
        dir.path(),
        "sleeper",
        &format!("echo $$ > '{}'\nexec sleep 30", pid_file.display()),
    );
    let started = Instant::now();
    let error = delegate::exec(
        "sleeper",
        Command::Add,
        b"{}",
        &env("ADD", "c1", &dir.path().display().to_string()),
        Duration::from_millis(500),
    )
    .unwrap_err();
    assert_eq!(error.code, CniError::TRY_AGAIN_LATER, "{error:?}");
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "took {:?}",
        started.elapsed()
    );
    // The process is gone (killed and reaped), not left running.
    let pid = fs::read_to_string(&pid_file).unwrap();
    assert!(
        !Path::new(&format!("/proc/{}", pid.trim())).exists(),
        "plugin pid {} still exists",
        pid.trim()
    );
}
