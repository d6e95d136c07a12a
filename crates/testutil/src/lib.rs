//! Test support: a real `etcd` on loopback, free ports and temporary directories.
//!
//! Tests use the real `etcd` binary (Debian `etcd-server`) rather than a fake, so the etcd backend is
//! checked against the server it will talk to in production. A missing binary is a hard failure, not a
//! skip: a test that silently does nothing would report success it has not earned.

use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use tempfile::TempDir;

pub mod containerd;
pub mod netns;

/// Where Debian's `etcd-server` installs the server.
const DEFAULT_ETCD_BINARY: &str = "/usr/bin/etcd";

/// How long a freshly started etcd may take to answer `/health`.
const READY_TIMEOUT: Duration = Duration::from_secs(10);

/// Ports handed out by [`free_port`] in this process, so two callers never get the same one even if the
/// first has not bound it yet.
static HANDED_OUT_PORTS: Mutex<Vec<u16>> = Mutex::new(Vec::new());

/// A loopback TCP port that is free right now and has not been handed out before in this process.
///
/// The kernel picks the port (bind to port 0), so parallel test processes rarely collide; another
/// process could still take it before the caller binds it, which callers that start servers handle by
/// retrying (see [`EtcdServer::start`]).
pub fn free_port() -> u16 {
    loop {
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
            .unwrap_or_else(|err| panic!("cannot bind a loopback port: {err}"));
        let port = listener
            .local_addr()
            .unwrap_or_else(|err| panic!("cannot read the bound loopback port: {err}"))
            .port();
        let mut handed_out = HANDED_OUT_PORTS
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if !handed_out.contains(&port) {
            handed_out.push(port);
            return port;
        }
    }
}

/// The etcd binary to run: `$ETCD_BINARY` if set, else `/usr/bin/etcd`, else `etcd` on `$PATH`.
pub fn etcd_binary() -> Option<PathBuf> {
    if let Some(path) = std::env::var_os("ETCD_BINARY") {
        let path = PathBuf::from(path);
        return path.is_file().then_some(path);
    }
    let default = PathBuf::from(DEFAULT_ETCD_BINARY);
    if default.is_file() {
        return Some(default);
    }
    calico_process::find_program("etcd")
}

/// A single-member etcd server on 127.0.0.1 with its own ports and data directory.
///
/// Dropping it kills the process and removes the data directory (also when a test panics, since the
/// drop runs during unwinding).
pub struct EtcdServer {
    child: Child,
    client_port: u16,
    tls: bool,
    data_dir: TempDir,
    log_path: PathBuf,
}

impl EtcdServer {
    /// Starts etcd with default settings. Panics with a clear message if etcd is missing or does not
    /// become healthy within ten seconds.
    pub fn start() -> EtcdServer {
        Self::start_with_args(&[])
    }

    /// Starts etcd with extra command-line arguments (for example `--auto-compaction-retention=0`).
    pub fn start_with_args(extra_args: &[&str]) -> EtcdServer {
        let binary = etcd_binary().unwrap_or_else(|| {
            panic!("etcd not found: install etcd-server (scripts/setup.sh does)")
        });
        // A port picked by `free_port` can be taken by another process before etcd binds it; etcd then
        // exits at once, so try a few fresh port pairs before giving up.
        let mut last_failure = String::new();
        for _attempt in 0..3 {
            match Self::try_start(&binary, extra_args, None) {
                Ok(server) => return server,
                Err(failure) => last_failure = failure,
            }
        }
        panic!("etcd did not start: {last_failure}");
    }

    /// Starts etcd serving clients over TLS with `certificates`, requiring client certificates signed by
    /// their CA.
    pub fn start_tls(certificates: &TestCertificates) -> EtcdServer {
        let binary = etcd_binary().unwrap_or_else(|| {
            panic!("etcd not found: install etcd-server (scripts/setup.sh does)")
        });
        let mut last_failure = String::new();
        for _attempt in 0..3 {
            match Self::try_start(&binary, &[], Some(certificates)) {
                Ok(server) => return server,
                Err(failure) => last_failure = failure,
            }
        }
        panic!("etcd did not start: {last_failure}");
    }

    fn try_start(
        binary: &Path,
        extra_args: &[&str],
        tls: Option<&TestCertificates>,
    ) -> Result<EtcdServer, String> {
        let client_port = free_port();
        let peer_port = free_port();
        let data_dir = tempfile::Builder::new()
            .prefix("calico-test-etcd-")
            .tempdir()
            .map_err(|err| format!("cannot create a temporary data directory: {err}"))?;
        let log_path = data_dir.path().join("etcd.log");
        let log = std::fs::File::create(&log_path)
            .map_err(|err| format!("cannot create {}: {err}", log_path.display()))?;
        let log_for_stderr = log
            .try_clone()
            .map_err(|err| format!("cannot duplicate the log file handle: {err}"))?;
        let scheme = if tls.is_some() { "https" } else { "http" };
        let client_url = format!("{scheme}://127.0.0.1:{client_port}");
        let peer_url = format!("http://127.0.0.1:{peer_port}");
        let mut command = Command::new(binary);
        if let Some(certificates) = tls {
            command
                .arg(format!(
                    "--cert-file={}",
                    certificates.server_cert.display()
                ))
                .arg(format!("--key-file={}", certificates.server_key.display()))
                .arg(format!(
                    "--trusted-ca-file={}",
                    certificates.ca_cert.display()
                ))
                .arg("--client-cert-auth");
        }
        let child = command
            .arg("--name=default")
            .arg(format!(
                "--data-dir={}",
                data_dir.path().join("data").display()
            ))
            .arg(format!("--listen-client-urls={client_url}"))
            .arg(format!("--advertise-client-urls={client_url}"))
            .arg(format!("--listen-peer-urls={peer_url}"))
            .arg(format!("--initial-advertise-peer-urls={peer_url}"))
            .arg(format!("--initial-cluster=default={peer_url}"))
            .arg("--initial-cluster-state=new")
            .args(extra_args)
            .stdin(Stdio::null())
            .stdout(Stdio::from(log))
            .stderr(Stdio::from(log_for_stderr))
            .spawn()
            .map_err(|err| format!("cannot run {}: {err}", binary.display()))?;
        let mut server = EtcdServer {
            child,
            client_port,
            tls: tls.is_some(),
            data_dir,
            log_path,
        };
        server.wait_until_healthy()?;
        Ok(server)
    }

    fn wait_until_healthy(&mut self) -> Result<(), String> {
        let deadline = Instant::now() + READY_TIMEOUT;
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Err(format!(
                    "etcd exited with {status} before becoming healthy; log:\n{}",
                    self.log_tail()
                ));
            }
            if self.is_ready() {
                return Ok(());
            }
            if Instant::now() >= deadline {
                return Err(format!(
                    "etcd on port {} not healthy after {:?}; log:\n{}",
                    self.client_port,
                    READY_TIMEOUT,
                    self.log_tail()
                ));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn is_ready(&self) -> bool {
        if self.tls {
            // `/health` needs a client certificate; etcd logs this line once it serves clients.
            let address = SocketAddr::from((Ipv4Addr::LOCALHOST, self.client_port));
            TcpStream::connect_timeout(&address, Duration::from_millis(200)).is_ok()
                && std::fs::read_to_string(&self.log_path)
                    .is_ok_and(|log| log.contains("ready to serve client requests"))
        } else {
            health_ok(self.client_port)
        }
    }

    /// The client URL, `http://127.0.0.1:PORT` (`https://` for a TLS server).
    pub fn endpoint(&self) -> String {
        let scheme = if self.tls { "https" } else { "http" };
        format!("{scheme}://127.0.0.1:{}", self.client_port)
    }

    /// The client port.
    pub fn client_port(&self) -> u16 {
        self.client_port
    }

    /// The server's data directory (etcd's own files live in `data/` below it).
    pub fn data_dir(&self) -> &Path {
        self.data_dir.path()
    }

    /// The last lines of etcd's log, for failure messages.
    pub fn log_tail(&self) -> String {
        let log = std::fs::read_to_string(&self.log_path).unwrap_or_default();
        let lines: Vec<&str> = log.lines().collect();
        lines[lines.len().saturating_sub(40)..].join("\n")
    }

    /// Kills the server now (to test how clients behave when etcd goes away). Idempotent.
    pub fn kill(&mut self) {
        // The process may already have exited; either way it is gone afterwards.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for EtcdServer {
    fn drop(&mut self) {
        self.kill();
        // `data_dir` (a TempDir) removes itself after this.
    }
}

/// A throw-away CA with a server certificate for 127.0.0.1 and a client certificate, made with the
/// `openssl` command (PEM files in a temporary directory that is removed on drop).
pub struct TestCertificates {
    pub ca_cert: PathBuf,
    pub server_cert: PathBuf,
    pub server_key: PathBuf,
    pub client_cert: PathBuf,
    pub client_key: PathBuf,
    dir: TempDir,
}

impl TestCertificates {
    /// Generates the certificates. Panics with a clear message if `openssl` is missing or fails.
    pub fn generate() -> TestCertificates {
        let dir = tempfile::Builder::new()
            .prefix("calico-test-certs-")
            .tempdir()
            .unwrap_or_else(|err| panic!("cannot create a temporary directory: {err}"));
        let path = |name: &str| dir.path().join(name);
        let ec_key = [
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
        ];
        let ca_key = path("ca-key.pem");
        let ca_cert = path("ca.pem");
        run_openssl(
            dir.path(),
            &[
                &["req", "-x509", "-days", "2", "-subj", "/CN=calico-test-ca"][..],
                &ec_key,
                &[
                    "-keyout",
                    &ca_key.display().to_string(),
                    "-out",
                    &ca_cert.display().to_string(),
                ],
                &["-addext", "basicConstraints=critical,CA:TRUE"],
                &["-addext", "keyUsage=critical,keyCertSign,cRLSign"],
            ]
            .concat(),
        );
        let issue = |name: &str, common_name: &str, usage: &str| -> (PathBuf, PathBuf) {
            let key = path(&format!("{name}-key.pem"));
            let request = path(&format!("{name}.csr"));
            let cert = path(&format!("{name}.pem"));
            let extensions = path(&format!("{name}.ext"));
            let subject = format!("/CN={common_name}");
            run_openssl(
                dir.path(),
                &[
                    &["req", "-new", "-subj", &subject][..],
                    &ec_key,
                    &[
                        "-keyout",
                        &key.display().to_string(),
                        "-out",
                        &request.display().to_string(),
                    ],
                ]
                .concat(),
            );
            let extension_text = format!(
                "basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature,keyEncipherment\n\
                 extendedKeyUsage={usage}\nsubjectAltName=IP:127.0.0.1,DNS:localhost\n"
            );
            std::fs::write(&extensions, extension_text)
                .unwrap_or_else(|err| panic!("cannot write {}: {err}", extensions.display()));
            run_openssl(
                dir.path(),
                &[
                    "x509",
                    "-req",
                    "-days",
                    "2",
                    "-in",
                    &request.display().to_string(),
                    "-CA",
                    &ca_cert.display().to_string(),
                    "-CAkey",
                    &ca_key.display().to_string(),
                    "-CAcreateserial",
                    "-out",
                    &cert.display().to_string(),
                    "-extfile",
                    &extensions.display().to_string(),
                ],
            );
            (cert, key)
        };
        let (server_cert, server_key) = issue("server", "127.0.0.1", "serverAuth,clientAuth");
        let (client_cert, client_key) = issue("client", "calico-test-client", "clientAuth");
        TestCertificates {
            ca_cert,
            server_cert,
            server_key,
            client_cert,
            client_key,
            dir,
        }
    }

    /// The directory holding the files.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }
}

fn run_openssl(dir: &Path, args: &[&str]) {
    let output = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|err| panic!("cannot run openssl (install the openssl package): {err}"));
    assert!(
        output.status.success(),
        "openssl {} failed: {}",
        args.join(" "),
        String::from_utf8_lossy(&output.stderr)
    );
}

/// True when `GET /health` on the client port answers `"health":"true"`.
fn health_ok(port: u16) -> bool {
    let address = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    let Ok(mut stream) = TcpStream::connect_timeout(&address, Duration::from_millis(200)) else {
        return false;
    };
    let timeout = Some(Duration::from_millis(500));
    if stream.set_read_timeout(timeout).is_err() || stream.set_write_timeout(timeout).is_err() {
        return false;
    }
    let request = format!("GET /health HTTP/1.0\r\nHost: 127.0.0.1:{port}\r\n\r\n");
    if stream.write_all(request.as_bytes()).is_err() {
        return false;
    }
    let mut response = String::new();
    if stream.read_to_string(&mut response).is_err() {
        return false;
    }
    response.starts_with("HTTP/1.") && response.contains("\"health\":\"true\"")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn free_ports_are_distinct_and_bindable() {
        let first = free_port();
        let second = free_port();
        assert_ne!(first, second);
        TcpListener::bind((Ipv4Addr::LOCALHOST, first)).expect("first port is bindable");
        TcpListener::bind((Ipv4Addr::LOCALHOST, second)).expect("second port is bindable");
    }

    #[test]
    fn etcd_starts_answers_health_and_is_cleaned_up() {
        let server = EtcdServer::start();
        let port = server.client_port();
        let data_dir = server.data_dir().to_path_buf();
        assert!(server.endpoint().ends_with(&format!(":{port}")));
        assert!(health_ok(port));
        assert!(data_dir.join("data").is_dir());
        drop(server);
        assert!(!data_dir.exists(), "data directory removed on drop");
        assert!(!health_ok(port), "etcd stopped on drop");
    }

    #[test]
    fn tls_etcd_starts_with_generated_certificates() {
        let certificates = TestCertificates::generate();
        for file in [
            &certificates.ca_cert,
            &certificates.server_cert,
            &certificates.server_key,
            &certificates.client_cert,
            &certificates.client_key,
        ] {
            let text = std::fs::read_to_string(file).expect("PEM file");
            assert!(text.starts_with("-----BEGIN"), "{}", file.display());
        }
        let server = EtcdServer::start_tls(&certificates);
        assert!(server.endpoint().starts_with("https://127.0.0.1:"));
        // Plain HTTP is refused by a TLS-only server.
        assert!(!health_ok(server.client_port()));
    }

    #[test]
    fn killed_etcd_stops_answering() {
        let mut server = EtcdServer::start();
        server.kill();
        assert!(!health_ok(server.client_port()));
    }
}
