//! Shared harness for tests that drive the real plugin executable the way a runtime does: CNI variables in
//! the environment, the network config on stdin, run inside a "host" network namespace the test created.
#![allow(dead_code)]

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::Duration;

pub mod state;

use calico_testutil::netns::{TestNetns, require_root, run_with_timeout};
use serde_json::{Value, json};

/// The plugin under test (`calico`; a `calico-ipam` link to it sits next to it in [`Host::bin_dir`]).
pub fn plugin_binary() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_calico"))
}

/// Where the datastore lives.
#[derive(Clone, Debug)]
pub enum Datastore {
    Embedded(PathBuf),
    Etcd(String),
}

impl Datastore {
    /// An embedded store at `path`, created as calico-node creates it on a host (the plugin and calicoctl
    /// only open a store that exists).
    pub fn created_embedded(path: PathBuf) -> Datastore {
        calico_datastore::embedded::EmbeddedStore::open(&path)
            .unwrap_or_else(|e| panic!("creating {}: {e}", path.display()));
        Datastore::Embedded(path)
    }

    /// Config fields selecting this datastore.
    pub fn conf_fields(&self) -> Value {
        match self {
            Datastore::Embedded(path) => {
                json!({"datastore_type": "embedded", "datastore_path": path})
            }
            Datastore::Etcd(endpoint) => {
                json!({"datastore_type": "etcdv3", "etcd_endpoints": endpoint})
            }
        }
    }

    /// Environment for calicoctl to reach the same store.
    pub fn calicoctl_env(&self) -> Vec<(String, String)> {
        match self {
            Datastore::Embedded(path) => vec![
                ("DATASTORE_TYPE".into(), "embedded".into()),
                ("CALICO_DATASTORE_PATH".into(), path.display().to_string()),
            ],
            Datastore::Etcd(endpoint) => vec![
                ("DATASTORE_TYPE".into(), "etcdv3".into()),
                ("ETCD_ENDPOINTS".into(), endpoint.clone()),
            ],
        }
    }
}

/// A simulated host: a network namespace set up like a real node for proxy ARP (a route to 169.254.1.1
/// through another interface), a temp dir for logs and locks, and a bin dir with `calico` and `calico-ipam`.
pub struct Host {
    pub netns: TestNetns,
    pub node: String,
    pub dir: tempfile::TempDir,
}

impl Host {
    pub fn new(prefix: &str, node: &str) -> Host {
        require_root().unwrap_or_else(|e| panic!("{e}"));
        let netns = TestNetns::new(prefix).unwrap_or_else(|e| panic!("{e}"));
        netns
            .ip(&["route", "add", "169.254.1.1/32", "dev", "lo"])
            .unwrap_or_else(|e| panic!("{e}"));
        let dir = tempfile::tempdir().expect("temp dir");
        let bin = dir.path().join("bin");
        std::fs::create_dir_all(&bin).expect("bin dir");
        std::os::unix::fs::symlink(plugin_binary(), bin.join("calico")).expect("link calico");
        std::os::unix::fs::symlink(plugin_binary(), bin.join("calico-ipam"))
            .expect("link calico-ipam");
        Host {
            netns,
            node: node.to_string(),
            dir,
        }
    }

    pub fn bin_dir(&self) -> PathBuf {
        self.dir.path().join("bin")
    }

    pub fn log_file(&self) -> PathBuf {
        self.dir.path().join("cni.log")
    }

    /// A network config for this host (version, network name, datastore); `extra` fields are merged in.
    pub fn conf(&self, version: &str, network: &str, ds: &Datastore, extra: Value) -> Value {
        let mut conf = json!({
            "cniVersion": version,
            "name": network,
            "type": "calico",
            "nodename": self.node,
            "log_file_path": self.log_file(),
            "log_level": "debug",
            "ipam_lock_file": self.dir.path().join("ipam.lock"),
            "mtu": 1450,
            "ipam": {"type": "calico-ipam"},
        });
        merge(&mut conf, ds.conf_fields());
        merge(&mut conf, extra);
        conf
    }

    /// Run the plugin (as `calico` or `calico-ipam`) with a verb, inside this host's namespace.
    /// The plugin process for `call` as a runtime starts it: inside this host's namespace, with the CNI
    /// variables set and stdin piped (the config goes there); stdout and stderr are the caller's to choose.
    pub fn command(&self, call: &Call) -> Command {
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", self.netns.name()])
            .arg(self.bin_dir().join(call.plugin))
            .env("CNI_COMMAND", &call.command)
            .env("CNI_CONTAINERID", &call.container_id)
            .env(
                "CNI_NETNS",
                call.netns
                    .as_ref()
                    .map(|p| p.display().to_string())
                    .unwrap_or_default(),
            )
            .env("CNI_IFNAME", &call.ifname)
            .env("CNI_ARGS", &call.args)
            .env("CNI_PATH", self.bin_dir())
            .env_remove("DATASTORE_TYPE")
            .stdin(Stdio::piped());
        cmd
    }

    /// Run the plugin (as `calico` or `calico-ipam`) with a verb, inside this host's namespace.
    pub fn invoke(&self, call: &Call, conf: &Value) -> Output {
        let command = &call.command;
        let container_id = &call.container_id;
        let mut cmd = self.command(call);
        cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
        let mut child = cmd.spawn().expect("start plugin");
        child
            .stdin
            .take()
            .expect("stdin")
            .write_all(conf.to_string().as_bytes())
            .expect("write config");
        let pid = child.id();
        // Bounded: a hung plugin fails the test instead of hanging it.
        let waiter = std::thread::spawn(move || child.wait_with_output());
        let deadline = std::time::Instant::now() + Duration::from_secs(60);
        while !waiter.is_finished() {
            if std::time::Instant::now() > deadline {
                let _ = Command::new("kill").args(["-9", &pid.to_string()]).status();
                panic!("plugin {command} {container_id} did not finish within 60 s");
            }
            std::thread::sleep(Duration::from_millis(2));
        }
        waiter.join().expect("waiter").expect("plugin output")
    }

    pub fn add(&self, container_id: &str, pod: &Pod, conf: &Value) -> Output {
        self.invoke(&Call::new("ADD", container_id, Some(pod.path())), conf)
    }

    pub fn del(&self, container_id: &str, pod: Option<&Pod>, conf: &Value) -> Output {
        self.invoke(&Call::new("DEL", container_id, pod.map(Pod::path)), conf)
    }

    pub fn check(&self, container_id: &str, pod: &Pod, conf: &Value) -> Output {
        self.invoke(&Call::new("CHECK", container_id, Some(pod.path())), conf)
    }

    /// Names of the links in the host namespace.
    pub fn links(&self) -> Vec<String> {
        self.netns.link_names().unwrap_or_else(|e| panic!("{e}"))
    }

    /// `ip route` in the host namespace.
    pub fn routes(&self) -> String {
        self.netns.ip(&["route"]).unwrap_or_else(|e| panic!("{e}"))
    }

    pub fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(self.log_file()).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(40)..].join("\n")
    }
}

/// One plugin invocation: which executable, the verb and the CNI variables.
#[derive(Clone, Debug)]
pub struct Call {
    /// `calico` or `calico-ipam`.
    pub plugin: &'static str,
    pub command: String,
    pub container_id: String,
    pub netns: Option<PathBuf>,
    pub ifname: String,
    /// `CNI_ARGS`.
    pub args: String,
}

impl Call {
    pub fn new(command: &str, container_id: &str, netns: Option<PathBuf>) -> Call {
        Call {
            plugin: "calico",
            command: command.to_string(),
            container_id: container_id.to_string(),
            netns,
            ifname: "eth0".to_string(),
            args: String::new(),
        }
    }
}

/// A pod's network namespace (created empty, as a runtime would before ADD).
pub struct Pod {
    pub netns: TestNetns,
}

impl Pod {
    pub fn new(prefix: &str) -> Pod {
        Pod {
            netns: TestNetns::new(prefix).unwrap_or_else(|e| panic!("{e}")),
        }
    }

    pub fn path(&self) -> PathBuf {
        self.netns.path()
    }

    /// The pod's first IPv4 address on eth0.
    pub fn ipv4(&self) -> Option<String> {
        let out = self
            .netns
            .ip(&["-4", "-o", "addr", "show", "dev", "eth0"])
            .ok()?;
        let word = out.split_whitespace().skip_while(|w| *w != "inet").nth(1)?;
        Some(word.split('/').next()?.to_string())
    }

    /// Ping `ip` from this pod (bounded), true if replies came back.
    pub fn ping(&self, ip: &str) -> bool {
        let out = self.netns.exec_timeout(
            &["busybox", "ping", "-c", "2", "-W", "1", ip],
            Duration::from_secs(10),
        );
        out.is_ok_and(|o| o.status.success())
    }
}

/// Run calicoctl (built from this workspace) against a datastore.
pub fn calicoctl(ds: &Datastore, args: &[&str]) -> Output {
    let exe = calicoctl_binary();
    let mut cmd = Command::new(exe);
    cmd.args(args);
    for (k, v) in ds.calicoctl_env() {
        cmd.env(k, v);
    }
    run_with_timeout(&mut cmd, Duration::from_secs(60)).unwrap_or_else(|e| panic!("{e}"))
}

/// `target/<profile>/calicoctl`, next to the plugin binary (built by `cargo build`/`cargo test --workspace`).
pub fn calicoctl_binary() -> PathBuf {
    let dir = plugin_binary()
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_default();
    let exe = dir.join("calicoctl");
    assert!(
        exe.exists(),
        "{} is missing: build it first (cargo build -p calicoctl)",
        exe.display()
    );
    exe
}

/// Run `f` with IPAM over the test's embedded store file (tests read what the plugin wrote through the same
/// library it uses).
pub fn with_ipam<T>(ds: &Datastore, f: impl AsyncFnOnce(calico_ipam::Ipam) -> T) -> T {
    let Datastore::Embedded(path) = ds else {
        panic!("with_ipam reads embedded stores only");
    };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    runtime.block_on(async {
        let store = calico_datastore::config::DatastoreConfig::Embedded { path: path.clone() }
            .connect(calico_datastore::config::OpenMode::MustExist)
            .await
            .expect("open the store");
        f(calico_ipam::Ipam::new(store)).await
    })
}

/// Create an IP pool with calicoctl.
pub fn create_pool(ds: &Datastore, name: &str, cidr: &str, block_size: u8) {
    let dir = tempfile::tempdir().expect("temp dir");
    let file = dir.path().join("pool.yaml");
    std::fs::write(
        &file,
        format!(
            "apiVersion: projectcalico.org/v3\nkind: IPPool\nmetadata:\n  name: {name}\nspec:\n  cidr: {cidr}\n  blockSize: {block_size}\n"
        ),
    )
    .expect("write pool");
    let out = calicoctl(ds, &["apply", "-f", &file.display().to_string()]);
    assert!(
        out.status.success(),
        "calicoctl apply failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Parse the plugin's stdout as JSON, with the output in the panic message if it is not.
pub fn json_of(out: &Output) -> Value {
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "plugin printed no JSON ({e}): stdout={} stderr={}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    })
}

/// Assert success, showing stdout, stderr and what the plugin logged when it failed.
pub fn assert_ok(out: &Output, host: &Host, what: &str) {
    assert!(
        out.status.success(),
        "{what} failed: stdout={} stderr={}\nlog:\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
        host.log_tail()
    );
}

fn merge(base: &mut Value, extra: Value) {
    if let (Value::Object(b), Value::Object(e)) = (base, extra) {
        for (k, v) in e {
            b.insert(k, v);
        }
    }
}
