//! FRR in a test namespace: bgpd (with or without zebra) run as user frr, with its config, pid files
//! and vty sockets in tempdirs, and `vtysh` pointed at them.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use calico_testutil::netns::{TestNetns, checked_stdout, run_with_timeout};
use nix::unistd::{Group, User};

use super::{Daemon, daemon_dir, eventually, need};

/// The daemons drop to user frr and then need their files.
fn chown_to_frr(paths: &[&Path]) {
    let user = User::from_name("frr")
        .ok()
        .flatten()
        .expect("user frr (Debian package frr)");
    let group = Group::from_name("frr")
        .ok()
        .flatten()
        .expect("group frr (Debian package frr)");
    for p in paths {
        std::os::unix::fs::chown(p, Some(user.uid.as_raw()), Some(group.gid.as_raw()))
            .expect("chown to frr");
    }
}

fn text(path: &Path) -> String {
    path.to_string_lossy().into_owned()
}

/// bgpd in `ns` with `conf_text`, and its vty directory. With `zebra` (its API socket and the vty
/// directory zebra uses) it talks to that zebra; without, it runs BGP only (`-Z`: nothing reaches the
/// kernel) with its vty socket in its own directory.
fn spawn_bgpd(ns: &TestNetns, conf_text: &str, zebra: Option<(&str, &Path)>) -> (Daemon, PathBuf) {
    let bgpd = need("/usr/lib/frr/bgpd", "frr");
    let dir = daemon_dir("frr");
    let conf = dir.path().join("frr.conf");
    std::fs::write(&conf, conf_text).expect("frr.conf");
    chown_to_frr(&[dir.path(), &conf]);
    let own_zsock = text(&dir.path().join("zserv.api"));
    let (zsock, vty) = match zebra {
        Some((zsock, vty)) => (zsock.to_string(), vty.to_path_buf()),
        None => (own_zsock, dir.path().to_path_buf()),
    };
    let (conf, pid, vty_s) = (text(&conf), text(&dir.path().join("bgpd.pid")), text(&vty));
    let mut args = vec![
        bgpd.as_str(),
        "-f",
        &conf,
        "-i",
        &pid,
        "-z",
        &zsock,
        "--vty_socket",
        &vty_s,
        "-P",
        "0",
        "-u",
        "frr",
        "-g",
        "frr",
    ];
    if zebra.is_none() {
        args.push("-Z");
    }
    (Daemon::spawn("bgpd", ns, dir, &args), vty)
}

/// FRR's bgpd alone (no zebra) in `ns` with `conf_text`, and the vty directory for [`vtysh`].
pub fn start_bgpd(ns: &TestNetns, conf_text: &str) -> (Daemon, PathBuf) {
    spawn_bgpd(ns, conf_text, None)
}

/// FRR in `ns`: zebra (which installs bgpd's best paths into the namespace's kernel table), then
/// bgpd with `conf_text`. Returns both daemons (bgpd first) and the vty directory they share.
pub fn start_with_zebra(ns: &TestNetns, conf_text: &str) -> (Daemon, Daemon, PathBuf) {
    let zebra = need("/usr/lib/frr/zebra", "frr");
    let zdir = daemon_dir("zebra");
    let vty = zdir.path().to_path_buf();
    let zconf = zdir.path().join("zebra.conf");
    std::fs::write(&zconf, "hostname calico-bgp-zebra\n").expect("zebra.conf");
    chown_to_frr(&[zdir.path(), &zconf]);
    let zsock = text(&zdir.path().join("zserv.api"));
    let (zconf, zpid, vty_s) = (
        text(&zconf),
        text(&zdir.path().join("zebra.pid")),
        text(&vty),
    );
    let mut zd = Daemon::spawn(
        "zebra",
        ns,
        zdir,
        &[
            &zebra,
            "-f",
            &zconf,
            "-i",
            &zpid,
            "-z",
            &zsock,
            "--vty_socket",
            &vty_s,
            "-u",
            "frr",
            "-g",
            "frr",
        ],
    );
    eventually("zebra's API socket", || {
        zd.check_running();
        if Path::new(&zsock).exists() {
            Ok(())
        } else {
            Err("not yet".into())
        }
    });
    let (bd, vty) = spawn_bgpd(ns, conf_text, Some((&zsock, &vty)));
    (bd, zd, vty)
}

/// `vtysh -c command` against the daemons whose vty sockets are in `vty`.
pub fn vtysh(vty: &Path, command: &str) -> Result<String, String> {
    let out = run_with_timeout(
        Command::new(need("vtysh", "frr"))
            .arg("--vty_socket")
            .arg(vty)
            .args(["-c", command]),
        Duration::from_secs(10),
    )?;
    checked_stdout(out, "vtysh")
}
