//! Connection settings shared by every process: calicoctl's `CalicoAPIConfig` file or the environment.
//!
//! The contract: `DATASTORE_TYPE=etcdv3` with `ETCD_ENDPOINTS` (and `ETCD_CA_CERT_FILE`, `ETCD_CERT_FILE`,
//! `ETCD_KEY_FILE`), or `DATASTORE_TYPE=embedded` with `CALICO_DATASTORE_PATH`
//! (default `/var/lib/calico/calico.db`). With nothing configured, the embedded store is used.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::Deserialize;

pub use crate::embedded::OpenMode;
use crate::embedded::{EmbeddedOptions, EmbeddedStore};
use crate::etcd::{EtcdConfig, EtcdStore};
use crate::{Store, StoreError};

/// Where the embedded store lives unless told otherwise.
pub const DEFAULT_EMBEDDED_PATH: &str = "/var/lib/calico/calico.db";
/// calicoctl's default connection file.
pub const DEFAULT_CONFIG_FILE: &str = "/etc/calico/calicoctl.cfg";

/// Which datastore to use and how to reach it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DatastoreConfig {
    Etcd(EtcdConfig),
    Embedded { path: PathBuf },
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("reading {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("{path}: {message}")]
    Invalid { path: String, message: String },
    #[error("{0}")]
    Env(String),
}

impl Default for DatastoreConfig {
    fn default() -> Self {
        DatastoreConfig::Embedded {
            path: PathBuf::from(DEFAULT_EMBEDDED_PATH),
        }
    }
}

/// `kind: CalicoAPIConfig` as calicoctl reads it (only the fields calico-rs uses are interpreted;
/// Kubernetes-datastore fields are accepted and rejected with a clear message).
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct ApiConfigFile {
    #[serde(default)]
    api_version: Option<String>,
    kind: String,
    #[serde(default)]
    spec: ApiConfigSpec,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct ApiConfigSpec {
    #[serde(default)]
    datastore_type: Option<String>,
    #[serde(default)]
    etcd_endpoints: Option<String>,
    #[serde(default, rename = "etcdCACertFile")]
    etcd_ca_cert_file: Option<String>,
    #[serde(default)]
    etcd_cert_file: Option<String>,
    #[serde(default)]
    etcd_key_file: Option<String>,
    #[serde(default)]
    datastore_path: Option<String>,
}

impl DatastoreConfig {
    /// calicoctl's rule: the config file if it exists, else the environment, else the embedded default.
    pub fn load(config_file: Option<&Path>) -> Result<Self, ConfigError> {
        let path = config_file.unwrap_or(Path::new(DEFAULT_CONFIG_FILE));
        if path.exists() {
            let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
                path: path.display().to_string(),
                source,
            })?;
            return Self::from_config_text(&text).map_err(|message| ConfigError::Invalid {
                path: path.display().to_string(),
                message,
            });
        }
        if config_file.is_some() {
            return Err(ConfigError::Read {
                path: path.display().to_string(),
                source: std::io::Error::new(std::io::ErrorKind::NotFound, "file not found"),
            });
        }
        Self::from_env(std::env::vars().collect())
    }

    /// Settings from environment variables (given as a map so tests need not touch the process env).
    pub fn from_env(env: BTreeMap<String, String>) -> Result<Self, ConfigError> {
        let get = |k: &str| env.get(k).map(String::as_str).filter(|v| !v.is_empty());
        let default_type = if get("ETCD_ENDPOINTS").is_some() {
            "etcdv3"
        } else {
            "embedded"
        };
        let kind = get("DATASTORE_TYPE").unwrap_or(default_type);
        Self::build(
            kind,
            get("ETCD_ENDPOINTS"),
            get("ETCD_CA_CERT_FILE"),
            get("ETCD_CERT_FILE"),
            get("ETCD_KEY_FILE"),
            get("CALICO_DATASTORE_PATH"),
        )
        .map_err(ConfigError::Env)
    }

    /// Parse a `CalicoAPIConfig` document.
    pub fn from_config_text(text: &str) -> Result<Self, String> {
        let file: ApiConfigFile =
            serde_saphyr::from_str(text).map_err(|e| format!("invalid config: {e}"))?;
        if file.kind != "CalicoAPIConfig" {
            return Err(format!("kind must be CalicoAPIConfig, not {:?}", file.kind));
        }
        if let Some(v) = &file.api_version
            && v != "projectcalico.org/v3"
        {
            return Err(format!(
                "apiVersion must be projectcalico.org/v3, not {v:?}"
            ));
        }
        let s = file.spec;
        let default_type = if s.etcd_endpoints.is_some() {
            "etcdv3"
        } else {
            "embedded"
        };
        Self::build(
            s.datastore_type.as_deref().unwrap_or(default_type),
            s.etcd_endpoints.as_deref(),
            s.etcd_ca_cert_file.as_deref(),
            s.etcd_cert_file.as_deref(),
            s.etcd_key_file.as_deref(),
            s.datastore_path.as_deref(),
        )
    }

    fn build(
        kind: &str,
        endpoints: Option<&str>,
        ca: Option<&str>,
        cert: Option<&str>,
        key: Option<&str>,
        path: Option<&str>,
    ) -> Result<Self, String> {
        match kind {
            "etcdv3" => {
                let endpoints: Vec<String> = endpoints
                    .unwrap_or("http://127.0.0.1:2379")
                    .split(',')
                    .map(str::trim)
                    .filter(|e| !e.is_empty())
                    .map(String::from)
                    .collect();
                if cert.is_some() != key.is_some() {
                    return Err("ETCD_CERT_FILE and ETCD_KEY_FILE must be given together".into());
                }
                Ok(DatastoreConfig::Etcd(EtcdConfig {
                    endpoints,
                    ca_cert_file: ca.map(PathBuf::from),
                    cert_file: cert.map(PathBuf::from),
                    key_file: key.map(PathBuf::from),
                    ..EtcdConfig::default()
                }))
            }
            "embedded" => Ok(DatastoreConfig::Embedded {
                path: PathBuf::from(path.unwrap_or(DEFAULT_EMBEDDED_PATH)),
            }),
            "kubernetes" => Err(
                "datastore type \"kubernetes\" is not supported by calico-rs: use \"etcdv3\" or \"embedded\"".into(),
            ),
            other => Err(format!("unknown datastore type {other:?}: use \"etcdv3\" or \"embedded\"")),
        }
    }

    /// Open the configured store. `mode` says whether an embedded store may be created (calico-node and
    /// calico-lab) or must already exist (every client); etcd ignores it.
    pub async fn connect(&self, mode: OpenMode) -> Result<Arc<dyn Store>, StoreError> {
        match self {
            DatastoreConfig::Etcd(cfg) => Ok(Arc::new(EtcdStore::connect(cfg).await?)),
            DatastoreConfig::Embedded { path } => {
                // Opening may wait for the file's lock (up to the busy timeout): not on an async worker.
                let path = path.clone();
                let store = tokio::task::spawn_blocking(move || open_embedded(&path, mode))
                    .await
                    .map_err(|err| {
                        StoreError::Other(format!("opening the store failed: {err}"))
                    })??;
                Ok(Arc::new(store))
            }
        }
    }

    /// Open the configured store without a round trip to prove an etcd cluster answers (see
    /// [`EtcdStore::connect_unverified`]); `mode` as for [`DatastoreConfig::connect`].
    pub async fn connect_unverified(&self, mode: OpenMode) -> Result<Arc<dyn Store>, StoreError> {
        match self {
            DatastoreConfig::Etcd(cfg) => Ok(Arc::new(EtcdStore::connect_unverified(cfg).await?)),
            DatastoreConfig::Embedded { path } => Ok(Arc::new(open_embedded(path, mode)?)),
        }
    }

    /// Short description for messages and `calicoctl version`.
    pub fn describe(&self) -> String {
        match self {
            DatastoreConfig::Etcd(cfg) => format!("etcdv3 ({})", cfg.endpoints.join(",")),
            DatastoreConfig::Embedded { path } => format!("embedded ({})", path.display()),
        }
    }
}

fn open_embedded(path: &Path, mode: OpenMode) -> Result<EmbeddedStore, StoreError> {
    EmbeddedStore::open_with(
        path,
        EmbeddedOptions {
            open_mode: mode,
            ..EmbeddedOptions::default()
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn nothing_configured_means_embedded_default() {
        assert_eq!(
            DatastoreConfig::from_env(env(&[])).unwrap(),
            DatastoreConfig::Embedded {
                path: DEFAULT_EMBEDDED_PATH.into()
            }
        );
    }

    #[test]
    fn env_selects_etcd_with_tls_files() {
        let cfg = DatastoreConfig::from_env(env(&[
            ("DATASTORE_TYPE", "etcdv3"),
            ("ETCD_ENDPOINTS", "http://127.0.0.1:1,http://127.0.0.1:2"),
            ("ETCD_CA_CERT_FILE", "/ca.pem"),
            ("ETCD_CERT_FILE", "/c.pem"),
            ("ETCD_KEY_FILE", "/k.pem"),
        ]))
        .unwrap();
        let DatastoreConfig::Etcd(e) = cfg else {
            panic!("want etcd")
        };
        assert_eq!(
            e.endpoints,
            vec!["http://127.0.0.1:1", "http://127.0.0.1:2"]
        );
        assert_eq!(e.ca_cert_file.as_deref(), Some(Path::new("/ca.pem")));
        assert_eq!(e.key_file.as_deref(), Some(Path::new("/k.pem")));
    }

    #[test]
    fn env_selects_embedded_path() {
        let cfg = DatastoreConfig::from_env(env(&[
            ("DATASTORE_TYPE", "embedded"),
            ("CALICO_DATASTORE_PATH", "/tmp/x.db"),
        ]))
        .unwrap();
        assert_eq!(
            cfg,
            DatastoreConfig::Embedded {
                path: "/tmp/x.db".into()
            }
        );
    }

    #[test]
    fn bad_settings_are_named() {
        let err = DatastoreConfig::from_env(env(&[("DATASTORE_TYPE", "consul")])).unwrap_err();
        assert!(err.to_string().contains("consul"), "{err}");
        let err = DatastoreConfig::from_env(env(&[
            ("DATASTORE_TYPE", "etcdv3"),
            ("ETCD_CERT_FILE", "/c.pem"),
        ]))
        .unwrap_err();
        assert!(err.to_string().contains("ETCD_KEY_FILE"), "{err}");
    }

    #[test]
    fn calicoctl_cfg_file() {
        let cfg = DatastoreConfig::from_config_text(
            "apiVersion: projectcalico.org/v3\nkind: CalicoAPIConfig\nmetadata:\nspec:\n  datastoreType: \"etcdv3\"\n  etcdEndpoints: \"http://127.0.0.1:2379\"\n",
        )
        .unwrap();
        assert!(
            matches!(cfg, DatastoreConfig::Etcd(ref e) if e.endpoints == ["http://127.0.0.1:2379"])
        );
        let err = DatastoreConfig::from_config_text("kind: Other\n").unwrap_err();
        assert!(err.contains("CalicoAPIConfig"));
    }

    fn entries(dir: &Path) -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    }

    fn refusal(result: Result<Arc<dyn Store>, StoreError>) -> String {
        match result {
            Ok(_) => panic!("opening should have been refused"),
            Err(e) => e.to_string(),
        }
    }

    #[tokio::test]
    async fn must_exist_refuses_a_missing_file_naming_it_and_creates_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub").join("calico.db");
        let cfg = DatastoreConfig::Embedded { path: path.clone() };
        for verified in [true, false] {
            let err = refusal(if verified {
                cfg.connect(OpenMode::MustExist).await
            } else {
                cfg.connect_unverified(OpenMode::MustExist).await
            });
            assert!(err.contains(&path.display().to_string()), "{err}");
            assert!(err.contains("does not exist"), "{err}");
        }
        assert!(entries(dir.path()).is_empty(), "{:?}", entries(dir.path()));
    }

    #[tokio::test]
    async fn must_exist_refuses_an_empty_file_and_leaves_it_empty() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("calico.db");
        std::fs::write(&path, b"").unwrap();
        let cfg = DatastoreConfig::Embedded { path: path.clone() };
        let err = refusal(cfg.connect(OpenMode::MustExist).await);
        assert!(err.contains(&path.display().to_string()), "{err}");
        assert!(err.contains("empty"), "{err}");
        assert_eq!(std::fs::metadata(&path).unwrap().len(), 0);
        assert_eq!(entries(dir.path()), ["calico.db"]);
    }

    #[tokio::test]
    async fn create_makes_the_store_that_must_exist_then_opens() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub").join("calico.db");
        let cfg = DatastoreConfig::Embedded { path: path.clone() };
        let created = cfg.connect(OpenMode::Create).await.unwrap();
        created.create("/k", b"v".to_vec()).await.unwrap();
        drop(created);
        let opened = cfg.connect(OpenMode::MustExist).await.unwrap();
        let value = opened.get("/k").await.unwrap().expect("key written before");
        assert_eq!(value.value, b"v");
    }
}
