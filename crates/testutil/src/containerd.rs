//! A private containerd + runc for tests that need a real CNI client: `ctr run --cni`.
//!
//! `ctr run --cni` runs the CNI plugins itself, in its own network namespace, reading the network
//! config only from `/etc/cni/net.d` and plugins only from `/opt/cni/bin` and `/usr/lib/cni`. To let
//! tests choose those without touching the machine (and run in parallel with different configs),
//! each [`Containerd`] owns one private mount namespace, kept alive by a holder process, in which:
//!
//! - the test's CNI config dir is bind-mounted at `/etc/cni/net.d` and its plugin dir at
//!   `/opt/cni/bin` (and over `/usr/lib/cni` when that exists);
//! - a temp dir is bind-mounted at `/var/lib/cni`, where libcni caches ADD results;
//! - a fresh tmpfs covers `/run`, so runc's state, shim sockets and IO fifos (all under
//!   `/run/containerd`) are private too.
//!
//! A mount point that does not exist on the machine (e.g. `/etc/cni`) is made inside the namespace
//! by covering its nearest existing parent with an overlayfs whose upper layer is in the temp dir:
//! nothing is ever created on the machine's own filesystems. containerd and every `ctr` run inside
//! that mount namespace and in the test's "host" network namespace; containerd's root, state and
//! socket live in the temp dir. Containers get cgroup paths with a per-harness prefix.
//!
//! The container network namespace is made by runc (ctr hands the plugins `/proc/<pid>/ns/net`), so
//! no namespace file is mounted for it and it disappears with the container. `ctr run --rm` calls
//! CNI DEL (with an empty netns path) when the container exits.
//!
//! Dropping a [`Containerd`] removes leftover containers, stops containerd (SIGTERM, then SIGKILL),
//! kills anything still running in its mount namespace or cgroups, kills the holder (which discards
//! every mount) and removes the temp dir: also when a test panics.

use std::fs;
use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU32, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use tempfile::TempDir;

use crate::netns::{
    NETNS_DIR, ReadChild, checked_stdout, path_with_system_dirs, require_binary, require_root,
    run_with_timeout,
};

/// The reference under which [`Containerd::import_busybox`] imports its image.
pub const BUSYBOX_IMAGE: &str = "docker.io/calico-testutil/busybox:latest";

/// Where the busybox-static package installs the statically linked busybox the image is built from.
const BUSYBOX_BINARY: &str = "/bin/busybox";

/// Commands linked to busybox in the image's `/bin`, separated by spaces.
const BUSYBOX_APPLETS: &str = "sh ash ping ping6 ip ifconfig route arping traceroute netstat nslookup \
    sleep cat echo printf nc wget httpd ls mkdir rm touch head tail cut tr wc awk grep sed env \
    hostname id kill ps test true false timeout seq date uname";

/// The containerd namespace all containers are created in (the daemon is private anyway).
const CTR_NAMESPACE: &str = "default";

/// How long containerd may take to answer after it was started.
const READY_TIMEOUT: Duration = Duration::from_secs(10);

/// How long housekeeping `ctr` and `mount` commands may take.
const COMMAND_TIMEOUT: Duration = Duration::from_secs(20);

/// How long a `ctr run` gets to finish its CNI DEL and clean-up after its task was killed.
const KILL_GRACE: Duration = Duration::from_secs(10);

/// Counter that makes the cgroup prefix unique within this process.
static NEXT_HARNESS: AtomicU32 = AtomicU32::new(0);

/// Binaries the harness runs, resolved once.
struct Tools {
    containerd: PathBuf,
    ctr: PathBuf,
    nsenter: PathBuf,
}

/// A containerd daemon with a private config, root, state, socket and mount namespace. See the
/// module documentation.
pub struct Containerd {
    tools: Tools,
    dir: TempDir,
    host_netns: PathBuf,
    holder: Option<Child>,
    /// `mnt:[inode]` of the holder's mount namespace, to find processes left in it.
    mount_ns: String,
    daemon: Option<Child>,
    cgroup_prefix: String,
    image: OnceLock<String>,
}

impl Containerd {
    /// Starts containerd inside network namespace `host_netns` (a name under `/var/run/netns`), with
    /// `cni_conf_dir` bind-mounted at `/etc/cni/net.d` and `cni_bin_dir` at `/opt/cni/bin` (and over
    /// `/usr/lib/cni`) in its private mount namespace. Both dirs are used live: a test may change
    /// their contents before each `ctr run`.
    pub fn start(
        host_netns: &str,
        cni_conf_dir: &Path,
        cni_bin_dir: &Path,
    ) -> Result<Containerd, String> {
        require_root()?;
        let tools = Tools {
            containerd: require_binary("containerd", "containerd")?,
            ctr: require_binary("ctr", "containerd")?,
            nsenter: require_binary("nsenter", "util-linux")?,
        };
        require_binary("runc", "runc")?;
        let unshare = require_binary("unshare", "util-linux")?;
        let sleep = require_binary("sleep", "coreutils")?;
        let host_netns_path = Path::new(NETNS_DIR).join(host_netns);
        if !host_netns_path.exists() {
            return Err(format!(
                "host network namespace {} does not exist",
                host_netns_path.display()
            ));
        }
        for (what, dir) in [("CNI config", cni_conf_dir), ("CNI plugin", cni_bin_dir)] {
            if !dir.is_dir() {
                return Err(format!("{what} dir {} is not a directory", dir.display()));
            }
        }
        let dir = tempfile::Builder::new()
            .prefix("calico-containerd-")
            .tempdir()
            .map_err(|err| format!("cannot create a temp dir: {err}"))?;

        // The holder only keeps the mount namespace alive; everything else enters it with nsenter.
        let holder = Command::new(unshare)
            .args(["--mount", "--propagation", "private", "--"])
            .arg(sleep)
            .arg("infinity")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|err| format!("cannot start the mount namespace holder (unshare): {err}"))?;

        // From here on, Drop cleans up whatever has been set up if a later step fails.
        let mut containerd = Containerd {
            tools,
            dir,
            host_netns: host_netns_path,
            holder: Some(holder),
            mount_ns: String::new(),
            daemon: None,
            cgroup_prefix: format!(
                "calico-testutil-{}-{}",
                std::process::id(),
                NEXT_HARNESS.fetch_add(1, Ordering::Relaxed)
            ),
            image: OnceLock::new(),
        };
        containerd.mount_ns = containerd.wait_for_holder()?;
        containerd.set_up_mounts(cni_conf_dir, cni_bin_dir)?;
        containerd.start_daemon()?;
        Ok(containerd)
    }

    /// Waits until the holder has its own mount namespace and has become `sleep` (so unshare has
    /// also made every mount private). Returns the namespace's `mnt:[inode]`.
    fn wait_for_holder(&self) -> Result<String, String> {
        let pid = self.holder_pid()?;
        let own = fs::read_link("/proc/self/ns/mnt")
            .map_err(|err| format!("cannot read own mount namespace: {err}"))?;
        let deadline = Instant::now() + READY_TIMEOUT;
        while Instant::now() < deadline {
            let ns = fs::read_link(format!("/proc/{pid}/ns/mnt"));
            let comm = fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default();
            if let Ok(ns) = ns
                && ns != own
                && comm.trim() == "sleep"
            {
                return Ok(ns.to_string_lossy().into_owned());
            }
            thread::sleep(Duration::from_millis(10));
        }
        Err("the mount namespace holder (unshare --mount) did not start".to_string())
    }

    fn holder_pid(&self) -> Result<u32, String> {
        self.holder
            .as_ref()
            .map(Child::id)
            .ok_or_else(|| "the mount namespace holder is gone".to_string())
    }

    /// `nsenter` into the private mount namespace (and, with `with_net`, the host netns).
    fn enter(&self, with_net: bool) -> Result<Command, String> {
        let pid = self.holder_pid()?;
        let mut command = Command::new(&self.tools.nsenter);
        command.arg(format!("--mount=/proc/{pid}/ns/mnt"));
        if with_net {
            // nsenter opens this path before it enters the mount namespace, where /run is covered.
            command.arg(format!("--net={}", self.host_netns.display()));
        }
        command.arg("--").env("PATH", path_with_system_dirs());
        Ok(command)
    }

    /// Runs `cmd` inside the private mount namespace and the host network namespace (for inspection:
    /// e.g. `ls /etc/cni/net.d` shows what `ctr` sees). Returns its output whatever its status.
    pub fn exec_in_mount_ns(&self, cmd: &[&str]) -> Result<Output, String> {
        run_with_timeout(self.enter(true)?.args(cmd), COMMAND_TIMEOUT)
    }

    /// Like [`exec_in_mount_ns`](Self::exec_in_mount_ns), but `cmd` must succeed; returns stdout.
    fn exec_ok(&self, cmd: &[&str]) -> Result<String, String> {
        let output = self.exec_in_mount_ns(cmd)?;
        checked_stdout(
            output,
            &format!("{} (in the private mount namespace)", cmd.join(" ")),
        )
    }

    fn set_up_mounts(&self, cni_conf_dir: &Path, cni_bin_dir: &Path) -> Result<(), String> {
        let cache_dir = self.cni_cache_dir();
        fs::create_dir_all(&cache_dir)
            .map_err(|err| format!("cannot create {}: {err}", cache_dir.display()))?;
        let mut overlays = 0;
        self.bind_mount(cni_conf_dir, "/etc/cni/net.d", &mut overlays)?;
        self.bind_mount(cni_bin_dir, "/opt/cni/bin", &mut overlays)?;
        self.bind_mount(&cache_dir, "/var/lib/cni", &mut overlays)?;
        // Debian's ctr also looks in /usr/lib/cni: there it must find the test's plugins or none.
        if self.exists_in_mount_ns("/usr/lib/cni")? {
            self.bind_mount(cni_bin_dir, "/usr/lib/cni", &mut overlays)?;
        }
        // The namespace started with copies of every `ip netns` mount on the machine, which would
        // keep other tests' network namespaces alive: detach them (the host netns is entered by a
        // path nsenter opens outside this namespace).
        // Another test may delete its namespace while the recursive unmount walks the tree, which fails that
        // walk ("no mount point specified"): try again until nothing is left.
        let mut last_error = String::new();
        for _ in 0..5 {
            if !self.is_mount_point("/run/netns")? {
                break;
            }
            if let Err(e) = self.exec_ok(&["umount", "--recursive", "--lazy", "/run/netns"]) {
                last_error = e;
            }
        }
        if self.is_mount_point("/run/netns")? {
            return Err(format!(
                "cannot detach the inherited /run/netns mounts: {last_error}"
            ));
        }
        self.exec_ok(&["mount", "-t", "tmpfs", "-o", "mode=0755", "tmpfs", "/run"])?;
        Ok(())
    }

    fn is_mount_point(&self, path: &str) -> Result<bool, String> {
        let mountinfo = self.exec_ok(&["cat", "/proc/self/mountinfo"])?;
        Ok(mountinfo
            .lines()
            .any(|line| line.split(' ').nth(4) == Some(path)))
    }

    fn exists_in_mount_ns(&self, path: &str) -> Result<bool, String> {
        Ok(self
            .exec_in_mount_ns(&["test", "-d", path])?
            .status
            .success())
    }

    /// Bind-mounts `source` at `target` in the private mount namespace. If `target` is missing, its
    /// nearest existing parent is first covered by an overlay whose upper layer is in the temp dir,
    /// so that creating the mount point changes nothing on the machine.
    fn bind_mount(&self, source: &Path, target: &str, overlays: &mut u32) -> Result<(), String> {
        if !self.exists_in_mount_ns(target)? {
            let mut existing = None;
            for ancestor in Path::new(target).ancestors().skip(1) {
                let ancestor = ancestor.to_string_lossy().into_owned();
                if self.exists_in_mount_ns(&ancestor)? {
                    existing = Some(ancestor);
                    break;
                }
            }
            let existing = match existing {
                Some(dir) if dir != "/" => dir,
                _ => return Err(format!("refusing to overlay / to create {target}")),
            };
            *overlays += 1;
            let layer = self.dir.path().join(format!("overlay-{overlays}"));
            let (upper, work) = (layer.join("upper"), layer.join("work"));
            for dir in [&upper, &work] {
                fs::create_dir_all(dir)
                    .map_err(|err| format!("cannot create {}: {err}", dir.display()))?;
            }
            let options = format!(
                "lowerdir={existing},upperdir={},workdir={}",
                upper.display(),
                work.display()
            );
            self.exec_ok(&[
                "mount", "-t", "overlay", "overlay", "-o", &options, &existing,
            ])?;
            self.exec_ok(&["mkdir", "-p", target])?;
        }
        let source = source.to_string_lossy();
        self.exec_ok(&["mount", "--bind", &source, target])?;
        Ok(())
    }

    fn start_daemon(&mut self) -> Result<(), String> {
        let root = self.dir.path();
        let config = format!(
            r#"version = 2
root = "{root}/root"
state = "{root}/state"
disabled_plugins = [
  "io.containerd.grpc.v1.cri",
  "io.containerd.internal.v1.opt",
  "io.containerd.snapshotter.v1.aufs",
  "io.containerd.snapshotter.v1.btrfs",
  "io.containerd.snapshotter.v1.devmapper",
  "io.containerd.snapshotter.v1.zfs",
  "io.containerd.tracing.processor.v1.otlp",
]

[grpc]
  address = "{socket}"

[ttrpc]
  address = "{socket}.ttrpc"

[debug]
  address = ""

[metrics]
  address = ""
"#,
            root = root.display(),
            socket = self.socket_path().display(),
        );
        let config_path = root.join("config.toml");
        fs::write(&config_path, config)
            .map_err(|err| format!("cannot write {}: {err}", config_path.display()))?;
        let log = fs::File::create(self.log_path())
            .map_err(|err| format!("cannot create the containerd log: {err}"))?;
        let log_for_stderr = log
            .try_clone()
            .map_err(|err| format!("cannot share the containerd log: {err}"))?;
        let daemon = self
            .enter(true)?
            .arg(&self.tools.containerd)
            .arg("--config")
            .arg(&config_path)
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(log_for_stderr)
            .spawn()
            .map_err(|err| format!("cannot start containerd: {err}"))?;
        self.daemon = Some(daemon);

        let deadline = Instant::now() + READY_TIMEOUT;
        loop {
            if let Some(daemon) = self.daemon.as_mut()
                && let Ok(Some(status)) = daemon.try_wait()
            {
                return Err(format!(
                    "containerd exited ({status}) at start-up:\n{}",
                    self.log_tail()
                ));
            }
            if self.socket_path().exists()
                && self.ctr(&["version"]).is_ok_and(|out| out.status.success())
            {
                return Ok(());
            }
            if Instant::now() >= deadline {
                return Err(format!(
                    "containerd did not answer within {READY_TIMEOUT:?}:\n{}",
                    self.log_tail()
                ));
            }
            thread::sleep(Duration::from_millis(25));
        }
    }

    /// containerd's gRPC socket.
    pub fn socket_path(&self) -> PathBuf {
        self.dir.path().join("containerd.sock")
    }

    /// The temp dir mounted at `/var/lib/cni` in the private mount namespace, where libcni caches the
    /// results of ADD (under `results/`) until DEL.
    pub fn cni_cache_dir(&self) -> PathBuf {
        self.dir.path().join("cni-cache")
    }

    fn log_path(&self) -> PathBuf {
        self.dir.path().join("containerd.log")
    }

    /// The last lines of containerd's log, for failure messages.
    pub fn log_tail(&self) -> String {
        let log = fs::read_to_string(self.log_path()).unwrap_or_default();
        let lines: Vec<&str> = log.lines().collect();
        lines[lines.len().saturating_sub(30)..].join("\n")
    }

    /// A `ctr` command against this containerd, inside its mount and host network namespaces.
    fn ctr_command(&self, args: &[&str]) -> Result<Command, String> {
        let mut command = self.enter(true)?;
        command
            .arg(&self.tools.ctr)
            .arg("--address")
            .arg(self.socket_path())
            .args(["--namespace", CTR_NAMESPACE])
            .args(args);
        Ok(command)
    }

    /// Runs `ctr ARGS` against this containerd (e.g. `["tasks", "ls"]`); output whatever the status.
    pub fn ctr(&self, args: &[&str]) -> Result<Output, String> {
        run_with_timeout(&mut self.ctr_command(args)?, COMMAND_TIMEOUT)
    }

    /// IDs printed by `ctr <kind> ls -q` (`kind` is `tasks` or `containers`).
    pub fn list_ids(&self, kind: &str) -> Result<Vec<String>, String> {
        let output = self.ctr(&[kind, "ls", "-q"])?;
        let listing = checked_stdout(output, &format!("ctr {kind} ls"))?;
        Ok(listing
            .lines()
            .map(str::trim)
            .filter(|line| !line.is_empty())
            .map(str::to_string)
            .collect())
    }

    /// Mount points of type `nsfs` (bound namespace files) in the private mount namespace.
    pub fn nsfs_mounts(&self) -> Result<Vec<String>, String> {
        let mountinfo = self.exec_ok(&["cat", "/proc/self/mountinfo"])?;
        Ok(mountinfo
            .lines()
            .filter(|line| {
                line.split(" - ")
                    .nth(1)
                    .is_some_and(|tail| tail.starts_with("nsfs "))
            })
            .filter_map(|line| line.split(' ').nth(4).map(str::to_string))
            .collect())
    }

    /// Builds a one-layer image from the machine's static busybox (with `/bin/sh`, `ping`, `ip`,
    /// `nc`, `wget`, ... linked to it) and imports it. Returns the image reference; later calls
    /// return it again without re-importing.
    pub fn import_busybox(&self) -> Result<String, String> {
        if let Some(image) = self.image.get() {
            return Ok(image.clone());
        }
        let archive = self.build_busybox_archive()?;
        let archive = archive.to_string_lossy();
        let output = self.ctr(&["images", "import", &archive])?;
        checked_stdout(output, "ctr images import")?;
        Ok(self.image.get_or_init(|| BUSYBOX_IMAGE.to_string()).clone())
    }

    /// Writes a docker-archive tar (manifest.json, config, one layer) and returns its path.
    fn build_busybox_archive(&self) -> Result<PathBuf, String> {
        if !Path::new(BUSYBOX_BINARY).is_file() {
            return Err(format!(
                "{BUSYBOX_BINARY} not found: install the Debian package busybox-static"
            ));
        }
        let tar = require_binary("tar", "tar")?;
        let sha256sum = require_binary("sha256sum", "coreutils")?;
        let image_dir = self.dir.path().join("image");
        let rootfs = image_dir.join("rootfs");
        let io = |what: &str, err: std::io::Error| format!("busybox image: {what}: {err}");
        for sub in ["bin", "etc", "tmp", "proc", "sys", "dev", "root", "var"] {
            fs::create_dir_all(rootfs.join(sub)).map_err(|err| io(sub, err))?;
        }
        fs::copy(BUSYBOX_BINARY, rootfs.join("bin/busybox")).map_err(|err| io("copy", err))?;
        for applet in BUSYBOX_APPLETS.split_whitespace() {
            symlink("busybox", rootfs.join("bin").join(applet)).map_err(|err| io(applet, err))?;
        }
        fs::write(rootfs.join("etc/passwd"), "root:x:0:0:root:/root:/bin/sh\n")
            .map_err(|err| io("passwd", err))?;
        fs::write(rootfs.join("etc/group"), "root:x:0:\n").map_err(|err| io("group", err))?;

        let layer = image_dir.join("layer.tar");
        let output = run_with_timeout(
            Command::new(tar)
                .args(["--numeric-owner", "--owner=0", "--group=0", "-C"])
                .arg(&rootfs)
                .arg("-cf")
                .arg(&layer)
                .arg("."),
            COMMAND_TIMEOUT,
        )?;
        checked_stdout(output, "tar (image layer)")?;
        let output = run_with_timeout(Command::new(sha256sum).arg(&layer), COMMAND_TIMEOUT)?;
        let digest = checked_stdout(output, "sha256sum")?;
        let digest = digest
            .split_whitespace()
            .next()
            .ok_or("sha256sum printed nothing")?
            .to_string();

        let architecture = match std::env::consts::ARCH {
            "x86_64" => "amd64",
            "aarch64" => "arm64",
            other => other,
        };
        let config = format!(
            r#"{{"architecture":"{architecture}","os":"linux","config":{{"Env":["PATH=/bin"],"Cmd":["sh"]}},"rootfs":{{"type":"layers","diff_ids":["sha256:{digest}"]}}}}"#
        );
        fs::write(image_dir.join("config.json"), config).map_err(|err| io("config", err))?;
        let reference = BUSYBOX_IMAGE.trim_start_matches("docker.io/");
        let manifest = format!(
            r#"[{{"Config":"config.json","RepoTags":["{reference}"],"Layers":["layer.tar"]}}]"#
        );
        fs::write(image_dir.join("manifest.json"), manifest).map_err(|err| io("manifest", err))?;

        let archive = image_dir.join("busybox.tar");
        let output = run_with_timeout(
            Command::new(require_binary("tar", "tar")?)
                .arg("-C")
                .arg(&image_dir)
                .arg("-cf")
                .arg(&archive)
                .args(["manifest.json", "config.json", "layer.tar"]),
            COMMAND_TIMEOUT,
        )?;
        checked_stdout(output, "tar (image archive)")?;
        Ok(archive)
    }

    fn image(&self) -> Result<&str, String> {
        self.image
            .get()
            .map(String::as_str)
            .ok_or_else(|| "no image: call import_busybox() first".to_string())
    }

    /// The cgroup path (under each hierarchy root) of container `id`: one level, unique to this
    /// harness, so runc removes it entirely when the container is deleted.
    fn cgroup_path(&self, id: &str) -> String {
        format!("/{}-{id}", self.cgroup_prefix)
    }

    /// `ctr run --cni --rm IMAGE ID CMD...` to completion, killing the container if it runs longer
    /// than `timeout`. The status is the container's exit status, or ctr's failure (e.g. CNI ADD
    /// failed: the error is on stderr, and the harness removes the container ctr left behind).
    pub fn run(&self, id: &str, cmd: &[&str], timeout: Duration) -> Result<Output, String> {
        self.spawn(id, cmd)?.wait(timeout)
    }

    /// `ctr run --cni --rm IMAGE ID CMD...` in the background. The container's stdout can be read
    /// line by line from the handle (e.g. to learn its address) before waiting for it.
    pub fn spawn(&self, id: &str, cmd: &[&str]) -> Result<RunningContainer<'_>, String> {
        let image = self.image()?;
        let cgroup = self.cgroup_path(id);
        let mut args = vec!["run", "--cni", "--rm", "--cgroup", &cgroup, image, id];
        args.extend_from_slice(cmd);
        let child = ReadChild::spawn(&mut self.ctr_command(&args)?)?;
        Ok(RunningContainer {
            containerd: self,
            id: id.to_string(),
            child: Some(child),
        })
    }

    /// Sends SIGKILL to the task of container `id`.
    pub fn kill_task(&self, id: &str) -> Result<(), String> {
        let output = self.ctr(&["tasks", "kill", "--signal", "SIGKILL", id])?;
        checked_stdout(output, &format!("ctr tasks kill {id}")).map(drop)
    }

    /// `ctr run --cni -d IMAGE ID CMD...`: ctr runs CNI ADD, starts the container and returns. No
    /// CNI DEL ever follows: stop it with [`remove_container`](Self::remove_container), which is how
    /// a container that disappeared without DEL looks to a CNI plugin.
    pub fn run_detached(&self, id: &str, cmd: &[&str]) -> Result<(), String> {
        let image = self.image()?;
        let cgroup = self.cgroup_path(id);
        let mut args = vec!["run", "--cni", "--detach", "--cgroup", &cgroup, image, id];
        args.extend_from_slice(cmd);
        let output = self.ctr(&args)?;
        checked_stdout(output, &format!("ctr run --detach {id}")).map(drop)
    }

    /// Kills and deletes container `id` (task and container), without CNI DEL.
    pub fn remove_container(&self, id: &str) -> Result<(), String> {
        let tasks = self.list_ids("tasks")?;
        if tasks.iter().any(|task| task == id) {
            let output = self.ctr(&["tasks", "delete", "--force", id])?;
            checked_stdout(output, &format!("ctr tasks delete {id}"))?;
        }
        let output = self.ctr(&["containers", "delete", id])?;
        checked_stdout(output, &format!("ctr containers delete {id}")).map(drop)
    }

    /// Removes containers the test left behind (without CNI DEL: the host netns goes anyway).
    fn remove_leftover_containers(&self) {
        for id in self.list_ids("containers").unwrap_or_default() {
            if let Err(err) = self.remove_container(&id) {
                eprintln!("warning: cannot remove leftover container {id}: {err}");
            }
        }
    }

    /// The harness's temp dir (containerd root, state, socket, log, overlay layers); removed on drop.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// containerd's process id while it runs.
    pub fn daemon_pid(&self) -> Option<u32> {
        self.daemon.as_ref().map(Child::id)
    }

    fn stop_daemon(&mut self) {
        let Some(mut daemon) = self.daemon.take() else {
            return;
        };
        if let Ok(pid) = i32::try_from(daemon.id()) {
            let _ = kill(Pid::from_raw(pid), Signal::SIGTERM);
        }
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = daemon.try_wait() {
                return;
            }
            thread::sleep(Duration::from_millis(20));
        }
        let _ = daemon.kill();
        let _ = daemon.wait();
    }

    /// Kills processes still in the private mount namespace (shims) other than the holder, and
    /// anything in this harness's cgroups, then removes those cgroups.
    fn kill_stragglers(&self) {
        let holder = self.holder.as_ref().map(Child::id);
        if !self.mount_ns.is_empty() {
            // Shims exit on their own shortly after their container is deleted, and a killed
            // process takes a moment to die: repeat until none is left, within a bound.
            let deadline = Instant::now() + Duration::from_secs(5);
            loop {
                let stragglers: Vec<u32> = pids()
                    .into_iter()
                    .filter(|pid| Some(*pid) != holder)
                    .filter(|pid| {
                        fs::read_link(format!("/proc/{pid}/ns/mnt"))
                            .is_ok_and(|ns| ns.to_string_lossy() == self.mount_ns)
                    })
                    .collect();
                if stragglers.is_empty() || Instant::now() >= deadline {
                    break;
                }
                stragglers.into_iter().for_each(send_kill);
                thread::sleep(Duration::from_millis(20));
            }
        }
        for cgroup in self.own_cgroups() {
            let procs = fs::read_to_string(cgroup.join("cgroup.procs")).unwrap_or_default();
            for pid in procs.lines().filter_map(|line| line.trim().parse().ok()) {
                send_kill(pid);
            }
            // A cgroup can be removed only once its last process is gone.
            for _ in 0..50 {
                if fs::remove_dir(&cgroup).is_ok() || !cgroup.exists() {
                    break;
                }
                thread::sleep(Duration::from_millis(20));
            }
        }
    }

    /// Cgroup dirs (v1 controllers or v2) whose name carries this harness's prefix.
    fn own_cgroups(&self) -> Vec<PathBuf> {
        let root = Path::new("/sys/fs/cgroup");
        let mut hierarchies = vec![root.to_path_buf()];
        if let Ok(entries) = fs::read_dir(root) {
            hierarchies.extend(entries.flatten().map(|entry| entry.path()));
        }
        hierarchies
            .iter()
            .filter_map(|hierarchy| fs::read_dir(hierarchy).ok())
            .flat_map(|entries| entries.flatten())
            .filter(|entry| {
                entry
                    .file_name()
                    .to_string_lossy()
                    .starts_with(&self.cgroup_prefix)
            })
            .map(|entry| entry.path())
            .collect()
    }

    /// Cgroup dirs that runc created for this harness's containers and has not removed yet (runc
    /// removes a container's cgroups when it is deleted), for leak checks.
    pub fn cgroup_dirs(&self) -> Vec<PathBuf> {
        self.own_cgroups()
    }
}

impl Drop for Containerd {
    fn drop(&mut self) {
        if self.daemon.is_some() {
            self.remove_leftover_containers();
        }
        self.stop_daemon();
        self.kill_stragglers();
        if let Some(mut holder) = self.holder.take() {
            let _ = holder.kill();
            let _ = holder.wait();
        }
    }
}

fn pids() -> Vec<u32> {
    fs::read_dir("/proc")
        .map(|entries| {
            entries
                .flatten()
                .filter_map(|entry| entry.file_name().to_string_lossy().parse().ok())
                .collect()
        })
        .unwrap_or_default()
}

fn send_kill(pid: u32) {
    if let Ok(pid) = i32::try_from(pid) {
        let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
    }
}

/// A `ctr run --cni --rm` in progress. Dropping it before the container exits kills the container's
/// task and waits for ctr to finish its CNI DEL.
pub struct RunningContainer<'a> {
    containerd: &'a Containerd,
    id: String,
    child: Option<ReadChild>,
}

impl RunningContainer<'_> {
    /// The container ID (also the CNI container ID).
    pub fn id(&self) -> &str {
        &self.id
    }

    /// The next line the container printed on stdout, waiting at most `timeout`.
    pub fn next_line(&mut self, timeout: Duration) -> Result<String, String> {
        let child = self.child.as_mut().ok_or("container already waited for")?;
        match child.next_line(timeout) {
            Some(line) => Ok(line),
            None => match child.try_wait() {
                Some(status) => Err(format!(
                    "container {} ended ({status}) without printing another line",
                    self.id
                )),
                None => Err(format!(
                    "container {} printed no line within {timeout:?}",
                    self.id
                )),
            },
        }
    }

    /// Waits for the container to exit and `ctr` to finish (including CNI DEL). If that takes longer
    /// than `timeout`, the task is killed and an error returned.
    pub fn wait(mut self, timeout: Duration) -> Result<Output, String> {
        let mut child = self.child.take().ok_or("container already waited for")?;
        if let Some(status) = child.wait_timeout(timeout) {
            if !status.success()
                && let Err(err) = self.remove_if_left()
            {
                eprintln!(
                    "warning: cannot remove container {} after ctr failed: {err}",
                    self.id
                );
            }
            return Ok(child.into_output(status));
        }
        self.stop(&mut child);
        let status = child.try_wait().unwrap_or_default();
        let output = child.into_output(status);
        Err(format!(
            "container {} did not exit within {timeout:?}; killed it. stdout:\n{}\nstderr:\n{}",
            self.id,
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        ))
    }

    /// When CNI ADD fails, ctr runs DEL but leaves the container and its unstarted task in
    /// containerd; remove them so the ID can be used again.
    fn remove_if_left(&self) -> Result<(), String> {
        let containers = self.containerd.list_ids("containers")?;
        if containers.contains(&self.id) {
            self.containerd.remove_container(&self.id)?;
        }
        Ok(())
    }

    /// Kills the task and gives ctr time to run CNI DEL; kills ctr itself as a last resort.
    fn stop(&self, child: &mut ReadChild) {
        let _ = self.containerd.kill_task(&self.id);
        if child.wait_timeout(KILL_GRACE).is_none() {
            child.kill();
        }
    }
}

impl Drop for RunningContainer<'_> {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take()
            && child.try_wait().is_none()
        {
            self.stop(&mut child);
        }
    }
}

/// Copies the named plugins from the machine's CNI plugin dir (`/usr/lib/cni` on Debian, else
/// `/opt/cni/bin`) into `bin_dir`, for tests that use the reference plugins.
pub fn copy_reference_plugins(bin_dir: &Path, plugins: &[&str]) -> Result<(), String> {
    let source_dir = ["/usr/lib/cni", "/opt/cni/bin"]
        .into_iter()
        .map(Path::new)
        .find(|dir| plugins.iter().all(|plugin| dir.join(plugin).is_file()))
        .ok_or_else(|| {
            format!(
                "CNI plugins {plugins:?} not found in /usr/lib/cni or /opt/cni/bin: install the Debian package containernetworking-plugins"
            )
        })?;
    for plugin in plugins {
        fs::copy(source_dir.join(plugin), bin_dir.join(plugin))
            .map_err(|err| format!("cannot copy CNI plugin {plugin}: {err}"))?;
    }
    Ok(())
}
