//! The CNI protocol (spec versions 0.3.0 up to 1.1.0), free of I/O apart from reading the
//! process environment in [`env::CniEnv::from_process_env`].

pub mod config;
pub mod env;
pub mod error;
pub mod result;
pub mod version;

pub use config::{
    ContainerSettings, DatastoreType, FeatureControl, GcAttachment, IpamConf, IpamRoute,
    KubernetesConf, NetConf, PolicyConf,
};
pub use env::{CniArgs, CniEnv, Command};
pub use error::CniError;
pub use result::{CniResult, Dns, Interface, IpConfig, RouteConf};
pub use version::CniVersion;
