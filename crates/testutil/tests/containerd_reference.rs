//! Proves the containerd harness with Debian's reference CNI plugins (`ptp` + `host-local`): real
//! `ctr run --cni` containers get addresses, reach each other, and leave nothing behind.
//!
//! Needs root, containerd, runc, busybox-static and containernetworking-plugins (scripts/setup.sh).

use std::fs;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use calico_testutil::containerd::{Containerd, copy_reference_plugins};
use calico_testutil::netns::TestNetns;
use tempfile::TempDir;

/// Machine paths the harness must never create (it mounts over them only in its own namespace).
const HOST_CNI_PATHS: &[&str] = &["/etc/cni", "/opt/cni", "/var/lib/cni"];

/// A test's CNI dirs: config, plugins and host-local's data dir.
struct CniDirs {
    _root: TempDir,
    conf: PathBuf,
    bin: PathBuf,
    ipam: PathBuf,
}

/// Writes a ptp + host-local conflist for `subnet` and copies the reference plugins.
fn reference_cni(network: &str, subnet: &str) -> CniDirs {
    let root = tempfile::tempdir().expect("temp dir");
    let (conf, bin, ipam) = (
        root.path().join("net.d"),
        root.path().join("bin"),
        root.path().join("ipam"),
    );
    for dir in [&conf, &bin, &ipam] {
        fs::create_dir(dir).expect("create dir");
    }
    copy_reference_plugins(&bin, &["ptp", "host-local"]).unwrap_or_else(|err| panic!("{err}"));
    let conflist = format!(
        r#"{{
  "cniVersion": "1.0.0",
  "name": "{network}",
  "plugins": [
    {{
      "type": "ptp",
      "ipam": {{"type": "host-local", "subnet": "{subnet}", "dataDir": "{ipam}"}}
    }}
  ]
}}"#,
        ipam = ipam.display()
    );
    fs::write(conf.join("10-reference.conflist"), conflist).expect("write conflist");
    CniDirs {
        _root: root,
        conf,
        bin,
        ipam,
    }
}

fn start(host: &TestNetns, cni: &CniDirs) -> Containerd {
    Containerd::start(host.name(), &cni.conf, &cni.bin)
        .unwrap_or_else(|err| panic!("cannot start containerd: {err}"))
}

/// The IPv4 address in a line of `ip -4 -o addr show dev eth0`.
fn parse_eth0_address(line: &str) -> Ipv4Addr {
    let mut words = line.split_whitespace();
    words
        .by_ref()
        .find(|word| *word == "inet")
        .unwrap_or_else(|| panic!("no inet address in {line:?}"));
    words
        .next()
        .and_then(|cidr| cidr.split('/').next())
        .and_then(|address| address.parse().ok())
        .unwrap_or_else(|| panic!("no IPv4 address in {line:?}"))
}

fn in_subnet(address: Ipv4Addr, network: Ipv4Addr, prefix: u32) -> bool {
    let mask = u32::MAX << (32 - prefix);
    u32::from(address) & mask == u32::from(network) & mask
}

/// host-local allocation files (named after the address) left in its data dir.
fn ipam_allocations(ipam: &Path, network: &str) -> Vec<String> {
    let Ok(entries) = fs::read_dir(ipam.join(network)) else {
        return Vec::new();
    };
    entries
        .flatten()
        .map(|entry| entry.file_name().to_string_lossy().into_owned())
        .filter(|name| name.parse::<Ipv4Addr>().is_ok())
        .collect()
}

fn dir_entries(dir: &Path) -> Vec<String> {
    fs::read_dir(dir)
        .map(|entries| {
            entries
                .flatten()
                .map(|entry| entry.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default()
}

fn stdout_of(output: &std::process::Output) -> String {
    format!(
        "stdout:\n{}\nstderr:\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

fn missing_host_paths() -> Vec<&'static str> {
    HOST_CNI_PATHS
        .iter()
        .copied()
        .filter(|path| !Path::new(path).exists())
        .collect()
}

#[test]
fn ctr_run_cni_with_reference_plugins_connects_containers_and_cleans_up() {
    let missing_before = missing_host_paths();
    let host = TestNetns::new("ctrd-ref").unwrap_or_else(|err| panic!("{err}"));
    let cni = reference_cni("reference", "198.18.200.0/24");

    let clock = Instant::now();
    let containerd = start(&host, &cni);
    let start_time = clock.elapsed();
    let clock = Instant::now();
    containerd
        .import_busybox()
        .unwrap_or_else(|err| panic!("import: {err}"));
    let import_time = clock.elapsed();
    // No namespace files are bound in the harness's mount namespace, not even other tests'.
    assert_eq!(
        containerd.nsfs_mounts().expect("mountinfo"),
        Vec::<String>::new()
    );

    // One plain run, to measure what a `ctr run --cni` (ADD + start + DEL) costs.
    let clock = Instant::now();
    let plain = containerd
        .run("ref-true", &["true"], Duration::from_secs(20))
        .expect("ctr run true");
    let run_time = clock.elapsed();
    assert!(
        plain.status.success(),
        "ctr run true: {}",
        stdout_of(&plain)
    );

    let mut server = containerd
        .spawn(
            "ref-a",
            &["sh", "-c", "ip -4 -o addr show dev eth0 && exec sleep 8"],
        )
        .expect("spawn container a");
    let line = server
        .next_line(Duration::from_secs(15))
        .unwrap_or_else(|err| panic!("{err}\ncontainerd log:\n{}", containerd.log_tail()));
    let server_address = parse_eth0_address(&line);
    assert!(
        in_subnet(server_address, Ipv4Addr::new(198, 18, 200, 0), 24),
        "container a got {server_address}, outside the configured subnet"
    );
    // While a runs: ptp's host-side veth is in the host netns, host-local has recorded the address
    // and libcni has cached the ADD result.
    assert_eq!(host.link_names().expect("links").len(), 2, "lo + a's veth");
    assert_eq!(
        ipam_allocations(&cni.ipam, "reference"),
        [server_address.to_string()]
    );
    assert_eq!(
        dir_entries(&containerd.cni_cache_dir().join("results")).len(),
        1,
        "one cached CNI result while a runs"
    );

    let target = server_address.to_string();
    let ping = containerd
        .run(
            "ref-b",
            &["ping", "-c", "3", "-W", "2", &target],
            Duration::from_secs(20),
        )
        .expect("ctr run ping");
    assert!(
        ping.status.success(),
        "container b could not ping a at {target}: {}",
        stdout_of(&ping)
    );
    assert!(
        String::from_utf8_lossy(&ping.stdout).contains("3 packets received"),
        "{}",
        stdout_of(&ping)
    );

    let server_output = server
        .wait(Duration::from_secs(20))
        .expect("container a exits");
    assert!(
        server_output.status.success(),
        "container a: {}",
        stdout_of(&server_output)
    );

    // `--rm` ran DEL for every container: nothing is left. (A veth whose peer was in a container
    // netns is destroyed by the kernel asynchronously once that netns is gone: allow a moment.)
    let deadline = Instant::now() + Duration::from_secs(5);
    while host.link_names().expect("links").len() > 1 && Instant::now() < deadline {
        thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(host.link_names().expect("links"), ["lo"], "veths left");
    assert_eq!(
        ipam_allocations(&cni.ipam, "reference"),
        Vec::<String>::new(),
        "host-local allocations left"
    );
    assert_eq!(
        dir_entries(&containerd.cni_cache_dir().join("results")),
        Vec::<String>::new(),
        "cached CNI results left"
    );
    assert_eq!(
        containerd.nsfs_mounts().expect("mountinfo"),
        Vec::<String>::new(),
        "namespace mounts left"
    );
    assert_eq!(
        containerd.list_ids("tasks").expect("tasks"),
        Vec::<String>::new()
    );
    assert_eq!(
        containerd.list_ids("containers").expect("containers"),
        Vec::<String>::new()
    );
    assert_eq!(
        containerd.cgroup_dirs(),
        Vec::<PathBuf>::new(),
        "cgroups left"
    );

    drop(containerd);
    drop(host);
    assert_eq!(
        missing_host_paths(),
        missing_before,
        "the harness created CNI paths on the machine"
    );
    eprintln!(
        "containerd harness cost: start {start_time:?}, busybox import {import_time:?}, one `ctr run --cni --rm true` {run_time:?}"
    );
}

#[test]
fn parallel_harnesses_see_only_their_own_cni_config_and_plugins() {
    let missing_before = missing_host_paths();
    let host_one = TestNetns::new("ctrd-one").unwrap_or_else(|err| panic!("{err}"));
    let host_two = TestNetns::new("ctrd-two").unwrap_or_else(|err| panic!("{err}"));
    let host_bare = TestNetns::new("ctrd-bare").unwrap_or_else(|err| panic!("{err}"));
    let cni_one = reference_cni("net-one", "198.18.210.0/24");
    let cni_two = reference_cni("net-two", "198.18.211.0/24");
    // Same config, but no plugins: ctr must not fall back to the machine's /usr/lib/cni.
    let cni_bare = reference_cni("net-bare", "198.18.212.0/24");
    for plugin in dir_entries(&cni_bare.bin) {
        fs::remove_file(cni_bare.bin.join(plugin)).expect("remove plugin");
    }

    let one = start(&host_one, &cni_one);
    let two = start(&host_two, &cni_two);
    let bare = start(&host_bare, &cni_bare);
    for containerd in [&one, &two, &bare] {
        containerd
            .import_busybox()
            .unwrap_or_else(|err| panic!("import: {err}"));
    }

    // Both containers run at the same time, each configured by its own harness's conflist.
    let print_address = ["sh", "-c", "ip -4 -o addr show dev eth0"];
    let first = one.spawn("same-id", &print_address).expect("spawn in one");
    let second = two.spawn("same-id", &print_address).expect("spawn in two");
    let first = first.wait(Duration::from_secs(20)).expect("run in one");
    let second = second.wait(Duration::from_secs(20)).expect("run in two");
    assert!(first.status.success(), "{}", stdout_of(&first));
    assert!(second.status.success(), "{}", stdout_of(&second));
    let first_address = parse_eth0_address(&String::from_utf8_lossy(&first.stdout));
    let second_address = parse_eth0_address(&String::from_utf8_lossy(&second.stdout));
    assert!(
        in_subnet(first_address, Ipv4Addr::new(198, 18, 210, 0), 24),
        "harness one's container got {first_address}"
    );
    assert!(
        in_subnet(second_address, Ipv4Addr::new(198, 18, 211, 0), 24),
        "harness two's container got {second_address}"
    );

    let without_plugins = bare
        .run("no-plugin", &["true"], Duration::from_secs(20))
        .expect("ctr run");
    assert!(
        !without_plugins.status.success(),
        "ctr ran a CNI container with an empty plugin dir: {}",
        stdout_of(&without_plugins)
    );
    assert!(
        String::from_utf8_lossy(&without_plugins.stderr).contains("ptp"),
        "expected a missing-plugin error naming ptp: {}",
        stdout_of(&without_plugins)
    );

    // ctr leaves the container behind when ADD fails; the harness removes it.
    assert_eq!(
        bare.list_ids("containers").expect("containers"),
        Vec::<String>::new()
    );
    drop((one, two, bare));
    drop((host_one, host_two, host_bare));
    assert_eq!(missing_host_paths(), missing_before);
}

/// What a panicking test left, to check after its thread has unwound.
struct Leftovers {
    netns_path: PathBuf,
    harness_dir: PathBuf,
    daemon_pid: u32,
    mount_ns: PathBuf,
    cgroups: Vec<PathBuf>,
}

fn processes_in_mount_ns(mount_ns: &Path) -> Vec<String> {
    dir_entries(Path::new("/proc"))
        .into_iter()
        .filter(|pid| pid.parse::<u32>().is_ok())
        .filter(|pid| fs::read_link(format!("/proc/{pid}/ns/mnt")).is_ok_and(|ns| ns == mount_ns))
        .map(|pid| {
            let name = fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default();
            format!("{pid} ({})", name.trim())
        })
        .collect()
}

#[test]
fn a_panicking_test_leaves_no_process_namespace_cgroup_or_file() {
    let (sender, receiver) = mpsc::channel();
    let outcome = thread::spawn(move || {
        let host = TestNetns::new("ctrd-panic").unwrap_or_else(|err| panic!("{err}"));
        let cni = reference_cni("net-panic", "198.18.213.0/24");
        let containerd = start(&host, &cni);
        containerd
            .import_busybox()
            .unwrap_or_else(|err| panic!("import: {err}"));
        // One container ctr has let go of (no DEL will come) and one still attached to ctr.
        containerd
            .run_detached("detached", &["sleep", "60"])
            .unwrap_or_else(|err| panic!("{err}"));
        let mut attached = containerd
            .spawn("attached", &["sh", "-c", "echo up && exec sleep 60"])
            .expect("spawn");
        assert_eq!(
            attached.next_line(Duration::from_secs(15)).as_deref(),
            Ok("up")
        );
        let daemon_pid = containerd.daemon_pid().expect("containerd runs");
        let leftovers = Leftovers {
            netns_path: host.path(),
            harness_dir: containerd.dir().to_path_buf(),
            daemon_pid,
            mount_ns: fs::read_link(format!("/proc/{daemon_pid}/ns/mnt")).expect("mount ns"),
            cgroups: containerd.cgroup_dirs(),
        };
        sender.send(leftovers).expect("send");
        panic!("deliberate panic while two containers run");
    })
    .join();
    assert!(outcome.is_err(), "the thread was meant to panic");
    let leftovers = receiver
        .recv()
        .expect("the thread got as far as running containers");

    assert!(
        !leftovers.cgroups.is_empty(),
        "the running containers had cgroups"
    );
    for cgroup in &leftovers.cgroups {
        assert!(!cgroup.exists(), "cgroup {} left", cgroup.display());
    }
    assert_eq!(
        processes_in_mount_ns(&leftovers.mount_ns),
        Vec::<String>::new(),
        "processes (containerd, shims, holder) left in the harness's mount namespace"
    );
    assert!(
        !Path::new(&format!("/proc/{}", leftovers.daemon_pid)).exists(),
        "containerd still runs"
    );
    assert!(!leftovers.netns_path.exists(), "host netns left");
    assert!(!leftovers.harness_dir.exists(), "harness temp dir left");
}
