//! calico-node's settings: flags, each also read from the environment variable Calico uses.

use std::path::PathBuf;
use std::time::Duration;

use clap::Parser;
use clap::builder::BoolishValueParser;

#[derive(Clone, Debug, Parser)]
#[command(
    name = "calico-node",
    version,
    about = "Runs on every host: registers the node, then keeps the kernel's routes, VXLAN tunnel and \
             NAT in step with the datastore"
)]
pub struct Settings {
    /// This node's name (default: the name in <state-dir>/nodename, else the hostname).
    #[arg(long, env = "NODENAME")]
    pub nodename: Option<String>,

    /// Where calico-node writes `nodename` and `mtu` for the CNI plugin.
    #[arg(long, env = "CALICO_STATE_DIR", default_value = calico_contracts::state::DEFAULT_STATE_DIR)]
    pub state_dir: PathBuf,

    /// The node's IPv4 address: `autodetect`, `none`, or an address with prefix (`10.0.0.5/24`).
    #[arg(long = "ip", env = "IP", default_value = "autodetect")]
    pub ip: String,

    /// How to autodetect: first-found, can-reach=DEST, interface=REGEX,..., skip-interface=REGEX,...,
    /// cidr=CIDR,...
    #[arg(long, env = "IP_AUTODETECTION_METHOD", default_value = "first-found")]
    pub ip_autodetection_method: String,

    /// The default IPv4 pool created when no pool exists.
    #[arg(long, env = "CALICO_IPV4POOL_CIDR", default_value = "192.168.0.0/16")]
    pub ipv4_pool_cidr: String,

    #[arg(long, env = "CALICO_IPV4POOL_BLOCK_SIZE", default_value = "26")]
    pub ipv4_pool_block_size: String,

    /// Never, Always or CrossSubnet.
    #[arg(long, env = "CALICO_IPV4POOL_VXLAN", default_value = "Never")]
    pub ipv4_pool_vxlan: String,

    /// Never, Always or CrossSubnet (this kernel family has no ipip: Never is the default here).
    #[arg(long, env = "CALICO_IPV4POOL_IPIP", default_value = "Never")]
    pub ipv4_pool_ipip: String,

    #[arg(long, env = "CALICO_IPV4POOL_NAT_OUTGOING", default_value = "true",
          value_parser = BoolishValueParser::new(), action = clap::ArgAction::Set)]
    pub ipv4_pool_nat_outgoing: bool,

    #[arg(long, env = "CALICO_IPV4POOL_NODE_SELECTOR", default_value = "all()")]
    pub ipv4_pool_node_selector: String,

    /// Do not create the default pool.
    #[arg(long, env = "NO_DEFAULT_POOLS", default_value = "false",
          value_parser = BoolishValueParser::new(), action = clap::ArgAction::Set)]
    pub no_default_pools: bool,

    /// Written into ClusterInformation when calico-node creates it.
    #[arg(long, env = "CLUSTER_TYPE", default_value = "calico-rs")]
    pub cluster_type: String,

    #[arg(long, env = "FELIX_HEALTHENABLED", default_value = "true",
          value_parser = BoolishValueParser::new(), action = clap::ArgAction::Set)]
    pub health_enabled: bool,

    #[arg(long, env = "FELIX_HEALTHHOST", default_value = "localhost")]
    pub health_host: String,

    #[arg(long, env = "FELIX_HEALTHPORT", default_value = "9099")]
    pub health_port: u16,

    #[arg(long, env = "FELIX_PROMETHEUSMETRICSENABLED", default_value = "false",
          value_parser = BoolishValueParser::new(), action = clap::ArgAction::Set)]
    pub metrics_enabled: bool,

    #[arg(long, env = "FELIX_PROMETHEUSMETRICSHOST", default_value = "0.0.0.0")]
    pub metrics_host: String,

    #[arg(long, env = "FELIX_PROMETHEUSMETRICSPORT", default_value = "9091")]
    pub metrics_port: u16,

    /// Seconds between full reconciliations of routes, devices and NAT with the kernel.
    #[arg(long, env = "FELIX_ROUTEREFRESHINTERVAL", default_value = "90")]
    pub route_refresh_interval: f64,

    /// Seconds between status reports written to the datastore (0: no reports), as Felix.
    #[arg(long, env = "FELIX_REPORTINGINTERVALSECS", default_value = "30")]
    pub reporting_interval_secs: u64,

    /// Seconds a status report lives without being renewed, so a dead host's report disappears.
    #[arg(long, env = "FELIX_REPORTINGTTLSECS", default_value = "90")]
    pub reporting_ttl_secs: u64,

    /// trace, debug, info, warning, error (Felix's names; `none` silences).
    #[arg(long, env = "FELIX_LOGSEVERITYSCREEN", default_value = "info")]
    pub log_severity: String,

    /// `bird`: calico-node runs its BGP speaker (Calico's BIRD and confd roles) and routes pools
    /// without encapsulation over BGP; `vxlan` or `none`: no BGP, as Calico.
    #[arg(long, env = "CALICO_NETWORKING_BACKEND", default_value = "bird",
          value_parser = ["bird", "vxlan", "none"])]
    pub networking_backend: String,

    /// Where BGP passwords (`password.secretKeyRef`) are read: `<dir>/<secret name>/<key>`.
    /// Default: `<state dir>/secrets`.
    #[arg(long, env = "CALICO_SECRETS_DIR")]
    pub secrets_dir: Option<PathBuf>,

    /// The BGP router id (default: this node's IPv4 address).
    #[arg(long, env = "CALICO_ROUTER_ID")]
    pub router_id: Option<std::net::Ipv4Addr>,
}

impl Settings {
    /// Whether calico-node runs its BGP speaker.
    pub fn bgp(&self) -> bool {
        self.networking_backend == "bird"
    }

    pub fn secrets_dir(&self) -> PathBuf {
        self.secrets_dir
            .clone()
            .unwrap_or_else(|| self.state_dir.join("secrets"))
    }

    pub fn route_refresh(&self) -> Duration {
        if self.route_refresh_interval.is_finite() && self.route_refresh_interval > 0.0 {
            Duration::from_secs_f64(self.route_refresh_interval)
        } else {
            Duration::from_secs(90)
        }
    }

    /// `tracing` filter text for Felix's severity names.
    pub fn log_filter(&self) -> String {
        match self.log_severity.to_ascii_lowercase().as_str() {
            "trace" => "trace",
            "debug" => "debug",
            "warning" | "warn" => "warn",
            "error" | "fatal" | "panic" => "error",
            "none" => "off",
            _ => "info",
        }
        .to_string()
    }
}
