//! Runs the real calicoctl binary against a fresh datastore of either backend.

#![allow(dead_code)]

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use calico_testutil::EtcdServer;

pub enum Backend {
    Embedded,
    Etcd(EtcdServer),
}

pub struct Ctl {
    pub dir: tempfile::TempDir,
    backend: Backend,
}

impl Ctl {
    /// An embedded store created as calico-node creates it on a machine (calicoctl only opens a store
    /// that exists).
    pub fn embedded() -> Ctl {
        let ctl = Ctl {
            dir: tempfile::tempdir().expect("temp dir"),
            backend: Backend::Embedded,
        };
        calico_datastore::embedded::EmbeddedStore::open(ctl.db_path())
            .unwrap_or_else(|e| panic!("creating {}: {e}", ctl.db_path().display()));
        ctl
    }

    pub fn etcd() -> Ctl {
        Ctl {
            dir: tempfile::tempdir().expect("temp dir"),
            backend: Backend::Etcd(EtcdServer::start()),
        }
    }

    pub fn db_path(&self) -> PathBuf {
        self.dir.path().join("calico.db")
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    pub fn command(&self) -> Command {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_calicoctl"));
        // A config file on the machine would take precedence over the environment: point at none.
        cmd.env_remove("ETCD_ENDPOINTS")
            .env_remove("DATASTORE_TYPE")
            .env_remove("CALICO_DATASTORE_PATH");
        match &self.backend {
            Backend::Embedded => {
                cmd.env("DATASTORE_TYPE", "embedded")
                    .env("CALICO_DATASTORE_PATH", self.db_path());
            }
            Backend::Etcd(server) => {
                cmd.env("DATASTORE_TYPE", "etcdv3")
                    .env("ETCD_ENDPOINTS", server.endpoint());
            }
        }
        cmd.current_dir(self.dir.path());
        cmd
    }

    pub fn run(&self, args: &[&str]) -> Output {
        assert!(
            !Path::new("/etc/calico/calicoctl.cfg").exists(),
            "/etc/calico/calicoctl.cfg exists and would override the test's datastore settings"
        );
        self.command().args(args).output().expect("run calicoctl")
    }

    pub fn run_stdin(&self, args: &[&str], stdin: &str) -> Output {
        let mut child = self
            .command()
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn calicoctl");
        child
            .stdin
            .take()
            .expect("stdin")
            .write_all(stdin.as_bytes())
            .expect("write stdin");
        child.wait_with_output().expect("wait calicoctl")
    }

    /// Run and require success; returns stdout.
    pub fn ok(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert!(
            out.status.success(),
            "calicoctl {args:?} failed:\nstdout: {}\nstderr: {}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Run and require failure; returns (stdout, stderr).
    pub fn fails(&self, args: &[&str]) -> (String, String) {
        let out = self.run(args);
        assert!(
            !out.status.success(),
            "calicoctl {args:?} should have failed:\nstdout: {}",
            String::from_utf8_lossy(&out.stdout)
        );
        (
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }

    pub fn write(&self, name: &str, text: &str) -> String {
        let p = self.path(name);
        std::fs::write(&p, text).expect("write file");
        p.display().to_string()
    }
}

/// Split a table into rows of cells (whitespace separated), keeping empty cells in place by
/// cutting each line at the header's column starts.
pub fn table(text: &str) -> Vec<Vec<String>> {
    let mut lines = text.lines();
    let Some(header) = lines.next() else {
        return vec![];
    };
    let mut starts = Vec::new();
    let mut prev_space = true;
    for (i, c) in header.char_indices() {
        if c != ' ' && prev_space {
            starts.push(i);
        }
        prev_space = c == ' ';
    }
    std::iter::once(header)
        .chain(lines)
        .map(|line| {
            starts
                .iter()
                .enumerate()
                .map(|(n, &s)| {
                    let e = starts
                        .get(n + 1)
                        .copied()
                        .unwrap_or(line.len())
                        .min(line.len());
                    line.get(s.min(line.len())..e)
                        .unwrap_or("")
                        .trim()
                        .to_string()
                })
                .collect()
        })
        .collect()
}

pub fn row(cells: &[&str]) -> Vec<String> {
    cells.iter().map(|s| s.to_string()).collect()
}
