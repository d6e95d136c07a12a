//! GoBGP in a test namespace: gobgpd with its config in a tempdir and its API on the namespace's
//! loopback, and the `gobgp` CLI pointed at it.

use calico_testutil::netns::TestNetns;
use serde_json::Value;

use super::{Daemon, daemon_dir, eventually, exec, need};

/// gobgpd's API port, on the daemon namespace's loopback.
const API_PORT: &str = "50051";

/// gobgpd in `ns` with the TOML `conf_text`.
pub fn start(ns: &TestNetns, conf_text: &str) -> Daemon {
    let gobgpd = need("gobgpd", "gobgpd");
    let dir = daemon_dir("gobgp");
    let conf = dir.path().join("gobgpd.toml");
    std::fs::write(&conf, conf_text).expect("gobgpd.toml");
    let conf = conf.to_string_lossy().into_owned();
    let api = format!("127.0.0.1:{API_PORT}");
    Daemon::spawn(
        "gobgpd",
        ns,
        dir,
        &[
            &gobgpd,
            "-f",
            &conf,
            "-t",
            "toml",
            "--api-hosts",
            &api,
            "--pprof-disable",
        ],
    )
}

/// `gobgp args…` against the gobgpd in `ns`.
pub fn cli(ns: &TestNetns, args: &[&str]) -> Result<String, String> {
    let bin = need("gobgp", "gobgpd");
    let mut argv = vec![bin.as_str(), "-u", "127.0.0.1", "-p", API_PORT];
    argv.extend_from_slice(args);
    exec(ns, &argv)
}

/// GoBGP's IPv4 global RIB: prefix to its paths.
pub fn rib(ns: &TestNetns) -> Result<serde_json::Map<String, Value>, String> {
    let text = cli(ns, &["global", "rib", "-a", "ipv4", "-j"])?;
    // An empty RIB prints nothing or `{}`.
    if text.trim().is_empty() {
        return Ok(serde_json::Map::new());
    }
    match serde_json::from_str(&text) {
        Ok(Value::Object(m)) => Ok(m),
        other => Err(format!("{other:?}: {text}")),
    }
}

/// The attribute of `type_code` in one GoBGP path's `attrs`.
pub fn attr(path: &Value, type_code: u64) -> Option<&Value> {
    path["attrs"]
        .as_array()?
        .iter()
        .find(|a| a["type"].as_u64() == Some(type_code))
}

/// Adds `prefix` (origin IGP) to the global RIB of the gobgpd in `ns`, once its API answers.
pub fn add(ns: &TestNetns, prefix: &str) {
    eventually(&format!("GoBGP takes {prefix}"), || {
        cli(
            ns,
            &[
                "global", "rib", "add", "-a", "ipv4", prefix, "origin", "igp",
            ],
        )
    });
}
