//! FelixConfiguration: Felix's settings, cluster-wide (`default`), per node (`node.<name>`) or for the
//! nodes a `nodeSelector` picks. Every field Calico's API defines is accepted (plus a few removed ones
//! that old manifests still carry); unset fields take Felix's built-in defaults at runtime, so nothing
//! is defaulted into the stored object.

use std::collections::BTreeMap;
use std::ops::{Deref, DerefMut};

use serde::{Deserialize, Serialize};

use super::infra_common::IntOrString;
pub use super::infra_common::PortSpec;
use crate::error::{index, join};
use crate::{FieldErrors, ObjectMeta, SpecType, validate};

mod rules;
use rules::RULES;

/// A failsafe port: traffic to/from it is always allowed on host endpoints.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ProtoPort {
    /// `TCP` (the default when empty), `UDP` or `SCTP`.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub protocol: String,
    pub port: u16,
    /// Restrict to this CIDR (default: any address).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub net: String,
}

impl ProtoPort {
    /// The protocol, with the default applied.
    pub fn protocol(&self) -> &str {
        if self.protocol.is_empty() {
            "TCP"
        } else {
            &self.protocol
        }
    }
}

/// Override of one health reporter's timeout.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct HealthTimeoutOverride {
    pub name: String,
    /// Go duration string.
    pub timeout: String,
}

/// Deprecated single routing-table range (indices 1–250).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RouteTableRange {
    pub min: i64,
    pub max: i64,
}

/// One routing-table index range of `routeTableRanges`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RouteTableIDRange {
    pub min: i64,
    pub max: i64,
}

/// BPF conntrack timeouts: each a Go duration or `Auto`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct BPFConntrackTimeouts {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub creation_grace_period: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tcp_syn_sent: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tcp_established: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tcp_fins_seen: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tcp_reset_seen: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub udp_timeout: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub generic_timeout: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub icmp_timeout: Option<String>,
}

impl BPFConntrackTimeouts {
    fn entries(&self) -> [(&'static str, &Option<String>); 8] {
        [
            ("creationGracePeriod", &self.creation_grace_period),
            ("tcpSynSent", &self.tcp_syn_sent),
            ("tcpEstablished", &self.tcp_established),
            ("tcpFinsSeen", &self.tcp_fins_seen),
            ("tcpResetSeen", &self.tcp_reset_seen),
            ("udpTimeout", &self.udp_timeout),
            ("genericTimeout", &self.generic_timeout),
            ("icmpTimeout", &self.icmp_timeout),
        ]
    }
}

/// The `spec` of a FelixConfiguration. The ~190 fields live behind a box (reach them through
/// `Deref`/`DerefMut`, e.g. `spec.bpf_enabled`) so that every resource does not pay for their size.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct FelixConfigurationSpec(pub Box<FelixConfigurationFields>);

impl Deref for FelixConfigurationSpec {
    type Target = FelixConfigurationFields;
    fn deref(&self) -> &FelixConfigurationFields {
        &self.0
    }
}

impl DerefMut for FelixConfigurationSpec {
    fn deref_mut(&mut self) -> &mut FelixConfigurationFields {
        &mut self.0
    }
}

/// Every field of Calico's `FelixConfigurationSpec`, named exactly as in its JSON.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FelixConfigurationFields {
    #[serde(
        default,
        rename = "nodeSelector",
        skip_serializing_if = "Option::is_none"
    )]
    pub node_selector: Option<String>,
    #[serde(
        default,
        rename = "useInternalDataplaneDriver",
        skip_serializing_if = "Option::is_none"
    )]
    pub use_internal_dataplane_driver: Option<bool>,
    #[serde(
        default,
        rename = "dataplaneDriver",
        skip_serializing_if = "Option::is_none"
    )]
    pub dataplane_driver: Option<String>,
    #[serde(
        default,
        rename = "dataplaneWatchdogTimeout",
        skip_serializing_if = "Option::is_none"
    )]
    pub dataplane_watchdog_timeout: Option<String>,
    #[serde(
        default,
        rename = "ipv6Support",
        skip_serializing_if = "Option::is_none"
    )]
    pub ipv6_support: Option<bool>,
    #[serde(
        default,
        rename = "routeRefreshInterval",
        skip_serializing_if = "Option::is_none"
    )]
    pub route_refresh_interval: Option<String>,
    #[serde(
        default,
        rename = "interfaceRefreshInterval",
        skip_serializing_if = "Option::is_none"
    )]
    pub interface_refresh_interval: Option<String>,
    #[serde(
        default,
        rename = "iptablesRefreshInterval",
        skip_serializing_if = "Option::is_none"
    )]
    pub iptables_refresh_interval: Option<String>,
    #[serde(
        default,
        rename = "iptablesPostWriteCheckInterval",
        skip_serializing_if = "Option::is_none"
    )]
    pub iptables_post_write_check_interval: Option<String>,
    #[serde(
        default,
        rename = "iptablesLockProbeInterval",
        skip_serializing_if = "Option::is_none"
    )]
    pub iptables_lock_probe_interval: Option<String>,
    #[serde(
        default,
        rename = "featureDetectOverride",
        skip_serializing_if = "Option::is_none"
    )]
    pub feature_detect_override: Option<String>,
    #[serde(
        default,
        rename = "featureGates",
        skip_serializing_if = "Option::is_none"
    )]
    pub feature_gates: Option<String>,
    #[serde(
        default,
        rename = "ipsetsRefreshInterval",
        skip_serializing_if = "Option::is_none"
    )]
    pub ipsets_refresh_interval: Option<String>,
    #[serde(
        default,
        rename = "maxIpsetSize",
        skip_serializing_if = "Option::is_none"
    )]
    pub max_ipset_size: Option<i64>,
    #[serde(
        default,
        rename = "iptablesBackend",
        skip_serializing_if = "Option::is_none"
    )]
    pub iptables_backend: Option<String>,
    #[serde(
        default,
        rename = "xdpRefreshInterval",
        skip_serializing_if = "Option::is_none"
    )]
    pub xdp_refresh_interval: Option<String>,
    #[serde(
        default,
        rename = "netlinkTimeout",
        skip_serializing_if = "Option::is_none"
    )]
    pub netlink_timeout: Option<String>,
    #[serde(
        default,
        rename = "metadataAddr",
        skip_serializing_if = "Option::is_none"
    )]
    pub metadata_addr: Option<String>,
    #[serde(
        default,
        rename = "metadataPort",
        skip_serializing_if = "Option::is_none"
    )]
    pub metadata_port: Option<i64>,
    #[serde(
        default,
        rename = "openstackRegion",
        skip_serializing_if = "Option::is_none"
    )]
    pub openstack_region: Option<String>,
    #[serde(
        default,
        rename = "interfacePrefix",
        skip_serializing_if = "Option::is_none"
    )]
    pub interface_prefix: Option<String>,
    #[serde(
        default,
        rename = "interfaceExclude",
        skip_serializing_if = "Option::is_none"
    )]
    pub interface_exclude: Option<String>,
    #[serde(
        default,
        rename = "chainInsertMode",
        skip_serializing_if = "Option::is_none"
    )]
    pub chain_insert_mode: Option<String>,
    #[serde(
        default,
        rename = "defaultEndpointToHostAction",
        skip_serializing_if = "Option::is_none"
    )]
    pub default_endpoint_to_host_action: Option<String>,
    #[serde(
        default,
        rename = "iptablesFilterAllowAction",
        skip_serializing_if = "Option::is_none"
    )]
    pub iptables_filter_allow_action: Option<String>,
    #[serde(
        default,
        rename = "iptablesMangleAllowAction",
        skip_serializing_if = "Option::is_none"
    )]
    pub iptables_mangle_allow_action: Option<String>,
    #[serde(
        default,
        rename = "iptablesFilterDenyAction",
        skip_serializing_if = "Option::is_none"
    )]
    pub iptables_filter_deny_action: Option<String>,
    #[serde(default, rename = "logPrefix", skip_serializing_if = "Option::is_none")]
    pub log_prefix: Option<String>,
    #[serde(
        default,
        rename = "logActionRateLimit",
        skip_serializing_if = "Option::is_none"
    )]
    pub log_action_rate_limit: Option<String>,
    #[serde(
        default,
        rename = "logActionRateLimitBurst",
        skip_serializing_if = "Option::is_none"
    )]
    pub log_action_rate_limit_burst: Option<i64>,
    #[serde(
        default,
        rename = "logFilePath",
        skip_serializing_if = "Option::is_none"
    )]
    pub log_file_path: Option<String>,
    #[serde(
        default,
        rename = "logSeverityFile",
        skip_serializing_if = "Option::is_none"
    )]
    pub log_severity_file: Option<String>,
    #[serde(
        default,
        rename = "logSeverityScreen",
        skip_serializing_if = "Option::is_none"
    )]
    pub log_severity_screen: Option<String>,
    #[serde(
        default,
        rename = "logSeveritySys",
        skip_serializing_if = "Option::is_none"
    )]
    pub log_severity_sys: Option<String>,
    #[serde(
        default,
        rename = "logDebugFilenameRegex",
        skip_serializing_if = "Option::is_none"
    )]
    pub log_debug_filename_regex: Option<String>,
    #[serde(
        default,
        rename = "ipipEnabled",
        skip_serializing_if = "Option::is_none"
    )]
    pub ipip_enabled: Option<bool>,
    #[serde(default, rename = "ipipMTU", skip_serializing_if = "Option::is_none")]
    pub ipip_mtu: Option<i64>,
    #[serde(
        default,
        rename = "vxlanEnabled",
        skip_serializing_if = "Option::is_none"
    )]
    pub vxlan_enabled: Option<bool>,
    #[serde(default, rename = "vxlanMTU", skip_serializing_if = "Option::is_none")]
    pub vxlan_mtu: Option<i64>,
    #[serde(
        default,
        rename = "vxlanMTUV6",
        skip_serializing_if = "Option::is_none"
    )]
    pub vxlan_mtuv6: Option<i64>,
    #[serde(default, rename = "vxlanPort", skip_serializing_if = "Option::is_none")]
    pub vxlan_port: Option<i64>,
    #[serde(default, rename = "vxlanVNI", skip_serializing_if = "Option::is_none")]
    pub vxlan_vni: Option<i64>,
    #[serde(
        default,
        rename = "allowVXLANPacketsFromWorkloads",
        skip_serializing_if = "Option::is_none"
    )]
    pub allow_vxlan_packets_from_workloads: Option<bool>,
    #[serde(
        default,
        rename = "allowIPIPPacketsFromWorkloads",
        skip_serializing_if = "Option::is_none"
    )]
    pub allow_ipip_packets_from_workloads: Option<bool>,
    #[serde(
        default,
        rename = "reportingInterval",
        skip_serializing_if = "Option::is_none"
    )]
    pub reporting_interval: Option<String>,
    #[serde(
        default,
        rename = "reportingTTL",
        skip_serializing_if = "Option::is_none"
    )]
    pub reporting_ttl: Option<String>,
    #[serde(
        default,
        rename = "endpointReportingEnabled",
        skip_serializing_if = "Option::is_none"
    )]
    pub endpoint_reporting_enabled: Option<bool>,
    #[serde(
        default,
        rename = "endpointReportingDelay",
        skip_serializing_if = "Option::is_none"
    )]
    pub endpoint_reporting_delay: Option<String>,
    #[serde(
        default,
        rename = "endpointStatusPathPrefix",
        skip_serializing_if = "Option::is_none"
    )]
    pub endpoint_status_path_prefix: Option<String>,
    #[serde(
        default,
        rename = "iptablesMarkMask",
        skip_serializing_if = "Option::is_none"
    )]
    pub iptables_mark_mask: Option<i64>,
    #[serde(
        default,
        rename = "disableConntrackInvalidCheck",
        skip_serializing_if = "Option::is_none"
    )]
    pub disable_conntrack_invalid_check: Option<bool>,
    #[serde(
        default,
        rename = "healthEnabled",
        skip_serializing_if = "Option::is_none"
    )]
    pub health_enabled: Option<bool>,
    #[serde(
        default,
        rename = "healthHost",
        skip_serializing_if = "Option::is_none"
    )]
    pub health_host: Option<String>,
    #[serde(
        default,
        rename = "healthPort",
        skip_serializing_if = "Option::is_none"
    )]
    pub health_port: Option<i64>,
    #[serde(
        default,
        rename = "healthTimeoutOverrides",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub health_timeout_overrides: Vec<HealthTimeoutOverride>,
    #[serde(
        default,
        rename = "prometheusMetricsEnabled",
        skip_serializing_if = "Option::is_none"
    )]
    pub prometheus_metrics_enabled: Option<bool>,
    #[serde(
        default,
        rename = "prometheusMetricsHost",
        skip_serializing_if = "Option::is_none"
    )]
    pub prometheus_metrics_host: Option<String>,
    #[serde(
        default,
        rename = "prometheusMetricsPort",
        skip_serializing_if = "Option::is_none"
    )]
    pub prometheus_metrics_port: Option<i64>,
    #[serde(
        default,
        rename = "prometheusGoMetricsEnabled",
        skip_serializing_if = "Option::is_none"
    )]
    pub prometheus_go_metrics_enabled: Option<bool>,
    #[serde(
        default,
        rename = "prometheusProcessMetricsEnabled",
        skip_serializing_if = "Option::is_none"
    )]
    pub prometheus_process_metrics_enabled: Option<bool>,
    #[serde(
        default,
        rename = "prometheusWireGuardMetricsEnabled",
        skip_serializing_if = "Option::is_none"
    )]
    pub prometheus_wire_guard_metrics_enabled: Option<bool>,
    #[serde(
        default,
        rename = "prometheusMetricsCAFile",
        skip_serializing_if = "Option::is_none"
    )]
    pub prometheus_metrics_ca_file: Option<String>,
    #[serde(
        default,
        rename = "prometheusMetricsCertFile",
        skip_serializing_if = "Option::is_none"
    )]
    pub prometheus_metrics_cert_file: Option<String>,
    #[serde(
        default,
        rename = "prometheusMetricsKeyFile",
        skip_serializing_if = "Option::is_none"
    )]
    pub prometheus_metrics_key_file: Option<String>,
    #[serde(
        default,
        rename = "prometheusMetricsClientAuth",
        skip_serializing_if = "Option::is_none"
    )]
    pub prometheus_metrics_client_auth: Option<String>,
    #[serde(
        default,
        rename = "failsafeInboundHostPorts",
        skip_serializing_if = "Option::is_none"
    )]
    pub failsafe_inbound_host_ports: Option<Vec<ProtoPort>>,
    #[serde(
        default,
        rename = "failsafeOutboundHostPorts",
        skip_serializing_if = "Option::is_none"
    )]
    pub failsafe_outbound_host_ports: Option<Vec<ProtoPort>>,
    #[serde(
        default,
        rename = "kubeNodePortRanges",
        skip_serializing_if = "Option::is_none"
    )]
    pub kube_node_port_ranges: Option<Vec<PortSpec>>,
    #[serde(
        default,
        rename = "policySyncPathPrefix",
        skip_serializing_if = "Option::is_none"
    )]
    pub policy_sync_path_prefix: Option<String>,
    #[serde(
        default,
        rename = "usageReportingEnabled",
        skip_serializing_if = "Option::is_none"
    )]
    pub usage_reporting_enabled: Option<bool>,
    #[serde(
        default,
        rename = "usageReportingInitialDelay",
        skip_serializing_if = "Option::is_none"
    )]
    pub usage_reporting_initial_delay: Option<String>,
    #[serde(
        default,
        rename = "usageReportingInterval",
        skip_serializing_if = "Option::is_none"
    )]
    pub usage_reporting_interval: Option<String>,
    #[serde(
        default,
        rename = "natPortRange",
        skip_serializing_if = "Option::is_none"
    )]
    pub nat_port_range: Option<PortSpec>,
    #[serde(
        default,
        rename = "natOutgoingAddress",
        skip_serializing_if = "Option::is_none"
    )]
    pub nat_outgoing_address: Option<String>,
    #[serde(
        default,
        rename = "natOutgoingExclusions",
        skip_serializing_if = "Option::is_none"
    )]
    pub nat_outgoing_exclusions: Option<String>,
    #[serde(
        default,
        rename = "deviceRouteSourceAddress",
        skip_serializing_if = "Option::is_none"
    )]
    pub device_route_source_address: Option<String>,
    #[serde(
        default,
        rename = "deviceRouteSourceAddressIPv6",
        skip_serializing_if = "Option::is_none"
    )]
    pub device_route_source_address_ipv6: Option<String>,
    #[serde(
        default,
        rename = "deviceRouteProtocol",
        skip_serializing_if = "Option::is_none"
    )]
    pub device_route_protocol: Option<i64>,
    #[serde(
        default,
        rename = "removeExternalRoutes",
        skip_serializing_if = "Option::is_none"
    )]
    pub remove_external_routes: Option<bool>,
    #[serde(
        default,
        rename = "programClusterRoutes",
        skip_serializing_if = "Option::is_none"
    )]
    pub program_cluster_routes: Option<String>,
    #[serde(
        default,
        rename = "ipForwarding",
        skip_serializing_if = "Option::is_none"
    )]
    pub ip_forwarding: Option<String>,
    #[serde(
        default,
        rename = "externalNodesList",
        skip_serializing_if = "Option::is_none"
    )]
    pub external_nodes_list: Option<Vec<String>>,
    #[serde(
        default,
        rename = "debugMemoryProfilePath",
        skip_serializing_if = "Option::is_none"
    )]
    pub debug_memory_profile_path: Option<String>,
    #[serde(
        default,
        rename = "debugDisableLogDropping",
        skip_serializing_if = "Option::is_none"
    )]
    pub debug_disable_log_dropping: Option<bool>,
    #[serde(
        default,
        rename = "debugSimulateCalcGraphHangAfter",
        skip_serializing_if = "Option::is_none"
    )]
    pub debug_simulate_calc_graph_hang_after: Option<String>,
    #[serde(
        default,
        rename = "debugSimulateDataplaneHangAfter",
        skip_serializing_if = "Option::is_none"
    )]
    pub debug_simulate_dataplane_hang_after: Option<String>,
    #[serde(
        default,
        rename = "debugSimulateDataplaneApplyDelay",
        skip_serializing_if = "Option::is_none"
    )]
    pub debug_simulate_dataplane_apply_delay: Option<String>,
    #[serde(default, rename = "debugHost", skip_serializing_if = "Option::is_none")]
    pub debug_host: Option<String>,
    #[serde(default, rename = "debugPort", skip_serializing_if = "Option::is_none")]
    pub debug_port: Option<i64>,
    #[serde(
        default,
        rename = "iptablesNATOutgoingInterfaceFilter",
        skip_serializing_if = "Option::is_none"
    )]
    pub iptables_nat_outgoing_interface_filter: Option<String>,
    #[serde(
        default,
        rename = "sidecarAccelerationEnabled",
        skip_serializing_if = "Option::is_none"
    )]
    pub sidecar_acceleration_enabled: Option<bool>,
    #[serde(
        default,
        rename = "xdpEnabled",
        skip_serializing_if = "Option::is_none"
    )]
    pub xdp_enabled: Option<bool>,
    #[serde(
        default,
        rename = "genericXDPEnabled",
        skip_serializing_if = "Option::is_none"
    )]
    pub generic_xdp_enabled: Option<bool>,
    #[serde(
        default,
        rename = "nftablesMode",
        skip_serializing_if = "Option::is_none"
    )]
    pub nftables_mode: Option<String>,
    #[serde(
        default,
        rename = "nftablesFlowTableOffload",
        skip_serializing_if = "Option::is_none"
    )]
    pub nftables_flow_table_offload: Option<String>,
    #[serde(
        default,
        rename = "nftablesFlowTableDataIfacePattern",
        skip_serializing_if = "Option::is_none"
    )]
    pub nftables_flow_table_data_iface_pattern: Option<String>,
    #[serde(
        default,
        rename = "nftablesRefreshInterval",
        skip_serializing_if = "Option::is_none"
    )]
    pub nftables_refresh_interval: Option<String>,
    #[serde(
        default,
        rename = "nftablesFilterAllowAction",
        skip_serializing_if = "Option::is_none"
    )]
    pub nftables_filter_allow_action: Option<String>,
    #[serde(
        default,
        rename = "nftablesMangleAllowAction",
        skip_serializing_if = "Option::is_none"
    )]
    pub nftables_mangle_allow_action: Option<String>,
    #[serde(
        default,
        rename = "nftablesFilterDenyAction",
        skip_serializing_if = "Option::is_none"
    )]
    pub nftables_filter_deny_action: Option<String>,
    #[serde(
        default,
        rename = "nftablesMarkMask",
        skip_serializing_if = "Option::is_none"
    )]
    pub nftables_mark_mask: Option<i64>,
    #[serde(
        default,
        rename = "bpfEnabled",
        skip_serializing_if = "Option::is_none"
    )]
    pub bpf_enabled: Option<bool>,
    #[serde(
        default,
        rename = "bpfOverlayHostSourceIP",
        skip_serializing_if = "Option::is_none"
    )]
    pub bpf_overlay_host_source_ip: Option<String>,
    #[serde(
        default,
        rename = "bpfDisableUnprivileged",
        skip_serializing_if = "Option::is_none"
    )]
    pub bpf_disable_unprivileged: Option<bool>,
    #[serde(
        default,
        rename = "bpfJITHardening",
        skip_serializing_if = "Option::is_none"
    )]
    pub bpf_jit_hardening: Option<String>,
    #[serde(
        default,
        rename = "bpfLogLevel",
        skip_serializing_if = "Option::is_none"
    )]
    pub bpf_log_level: Option<String>,
    #[serde(
        default,
        rename = "bpfConntrackLogLevel",
        skip_serializing_if = "Option::is_none"
    )]
    pub bpf_conntrack_log_level: Option<String>,
    #[serde(
        default,
        rename = "bpfConntrackMode",
        skip_serializing_if = "Option::is_none"
    )]
    pub bpf_conntrack_mode: Option<String>,
    #[serde(
        default,
        rename = "bpfConntrackTimeouts",
        skip_serializing_if = "Option::is_none"
    )]
    pub bpf_conntrack_timeouts: Option<BPFConntrackTimeouts>,
    #[serde(
        default,
        rename = "bpfIPFragTimeout",
        skip_serializing_if = "Option::is_none"
    )]
    pub bpf_ip_frag_timeout: Option<String>,
    #[serde(
        default,
        rename = "bpfLogFilters",
        skip_serializing_if = "Option::is_none"
    )]
    pub bpf_log_filters: Option<BTreeMap<String, String>>,
    #[serde(
        default,
        rename = "bpfCTLBLogFilter",
        skip_serializing_if = "Option::is_none"
    )]
    pub bpf_ctlb_log_filter: Option<String>,
    #[serde(
        default,
        rename = "bpfDataIfacePattern",
        skip_serializing_if = "Option::is_none"
    )]
    pub bpf_data_iface_pattern: Option<String>,
    #[serde(
        default,
        rename = "bpfL3IfacePattern",
        skip_serializing_if = "Option::is_none"
    )]
    pub bpf_l3_iface_pattern: Option<String>,
    #[serde(
        default,
        rename = "bpfConnectTimeLoadBalancingEnabled",
        skip_serializing_if = "Option::is_none"
    )]
    pub bpf_connect_time_load_balancing_enabled: Option<bool>,
    #[serde(
        default,
        rename = "bpfConnectTimeLoadBalancing",
        skip_serializing_if = "Option::is_none"
    )]
    pub bpf_connect_time_load_balancing: Option<String>,
    #[serde(
        default,
        rename = "bpfHostNetworkedNATWithoutCTLB",
        skip_serializing_if = "Option::is_none"
    )]
    pub bpf_host_networked_nat_without_ctlb: Option<String>,
    #[serde(
        default,
        rename = "bpfExternalServiceMode",
        skip_serializing_if = "Option::is_none"
    )]
    pub bpf_external_service_mode: Option<String>,
    #[serde(
        default,
        rename = "bpfDSROptoutCIDRs",
        skip_serializing_if = "Option::is_none"
    )]
    pub bpf_dsr_optout_cidrs: Option<Vec<String>>,
    #[serde(
        default,
        rename = "bpfExtToServiceConnmark",
        skip_serializing_if = "Option::is_none"
    )]
    pub bpf_ext_to_service_connmark: Option<i64>,
    #[serde(
        default,
        rename = "bpfKubeProxyIptablesCleanupEnabled",
        skip_serializing_if = "Option::is_none"
    )]
    pub bpf_kube_proxy_iptables_cleanup_enabled: Option<bool>,
    #[serde(
        default,
        rename = "bpfKubeProxyMinSyncPeriod",
        skip_serializing_if = "Option::is_none"
    )]
    pub bpf_kube_proxy_min_sync_period: Option<String>,
    #[serde(
        default,
        rename = "bpfKubeProxyHealthzPort",
        skip_serializing_if = "Option::is_none"
    )]
    pub bpf_kube_proxy_healthz_port: Option<i64>,
    #[serde(
        default,
        rename = "bpfPSNATPorts",
        skip_serializing_if = "Option::is_none"
    )]
    pub bpf_psnat_ports: Option<PortSpec>,
    #[serde(
        default,
        rename = "bpfMapSizeNATFrontend",
        skip_serializing_if = "Option::is_none"
    )]
    pub bpf_map_size_nat_frontend: Option<i64>,
    #[serde(
        default,
        rename = "bpfMapSizeNATBackend",
        skip_serializing_if = "Option::is_none"
    )]
    pub bpf_map_size_nat_backend: Option<i64>,
    #[serde(
        default,
        rename = "bpfMapSizeNATAffinity",
        skip_serializing_if = "Option::is_none"
    )]
    pub bpf_map_size_nat_affinity: Option<i64>,
    #[serde(
        default,
        rename = "bpfMapSizeRoute",
        skip_serializing_if = "Option::is_none"
    )]
    pub bpf_map_size_route: Option<i64>,
    #[serde(
        default,
        rename = "bpfMapSizeConntrack",
        skip_serializing_if = "Option::is_none"
    )]
    pub bpf_map_size_conntrack: Option<i64>,
    #[serde(
        default,
        rename = "bpfMapSizePerCpuConntrack",
        skip_serializing_if = "Option::is_none"
    )]
    pub bpf_map_size_per_cpu_conntrack: Option<i64>,
    #[serde(
        default,
        rename = "bpfMapSizeConntrackScaling",
        skip_serializing_if = "Option::is_none"
    )]
    pub bpf_map_size_conntrack_scaling: Option<String>,
    #[serde(
        default,
        rename = "bpfMapSizeConntrackCleanupQueue",
        skip_serializing_if = "Option::is_none"
    )]
    pub bpf_map_size_conntrack_cleanup_queue: Option<i64>,
    #[serde(
        default,
        rename = "bpfMapSizeIPSets",
        skip_serializing_if = "Option::is_none"
    )]
    pub bpf_map_size_ip_sets: Option<i64>,
    #[serde(
        default,
        rename = "bpfMapSizeIfState",
        skip_serializing_if = "Option::is_none"
    )]
    pub bpf_map_size_if_state: Option<i64>,
    #[serde(
        default,
        rename = "bpfHostConntrackBypass",
        skip_serializing_if = "Option::is_none"
    )]
    pub bpf_host_conntrack_bypass: Option<bool>,
    #[serde(
        default,
        rename = "bpfIPFragmentReassemblyEnabled",
        skip_serializing_if = "Option::is_none"
    )]
    pub bpf_ip_fragment_reassembly_enabled: Option<bool>,
    #[serde(
        default,
        rename = "bpfEnforceRPF",
        skip_serializing_if = "Option::is_none"
    )]
    pub bpf_enforce_rpf: Option<String>,
    #[serde(
        default,
        rename = "bpfPolicyDebugEnabled",
        skip_serializing_if = "Option::is_none"
    )]
    pub bpf_policy_debug_enabled: Option<bool>,
    #[serde(
        default,
        rename = "bpfForceTrackPacketsFromIfaces",
        skip_serializing_if = "Option::is_none"
    )]
    pub bpf_force_track_packets_from_ifaces: Option<Vec<String>>,
    #[serde(
        default,
        rename = "bpfDisableGROForIfaces",
        skip_serializing_if = "Option::is_none"
    )]
    pub bpf_disable_gro_for_ifaces: Option<String>,
    #[serde(
        default,
        rename = "bpfExcludeCIDRsFromNAT",
        skip_serializing_if = "Option::is_none"
    )]
    pub bpf_exclude_cidrs_from_nat: Option<Vec<String>>,
    #[serde(
        default,
        rename = "bpfExportBufferSizeMB",
        skip_serializing_if = "Option::is_none"
    )]
    pub bpf_export_buffer_size_mb: Option<i64>,
    #[serde(
        default,
        rename = "istioAmbientMode",
        skip_serializing_if = "Option::is_none"
    )]
    pub istio_ambient_mode: Option<String>,
    #[serde(
        default,
        rename = "istioDSCPMark",
        skip_serializing_if = "Option::is_none"
    )]
    pub istio_dscp_mark: Option<IntOrString>,
    #[serde(
        default,
        rename = "cgroupV2Path",
        skip_serializing_if = "Option::is_none"
    )]
    pub cgroup_v2_path: Option<String>,
    #[serde(
        default,
        rename = "flowLogsPolicyEvaluationMode",
        skip_serializing_if = "Option::is_none"
    )]
    pub flow_logs_policy_evaluation_mode: Option<String>,
    #[serde(
        default,
        rename = "bpfRedirectToPeer",
        skip_serializing_if = "Option::is_none"
    )]
    pub bpf_redirect_to_peer: Option<String>,
    #[serde(
        default,
        rename = "bpfAttachType",
        skip_serializing_if = "Option::is_none"
    )]
    pub bpf_attach_type: Option<String>,
    #[serde(
        default,
        rename = "flowLogsFlushInterval",
        skip_serializing_if = "Option::is_none"
    )]
    pub flow_logs_flush_interval: Option<String>,
    #[serde(
        default,
        rename = "flowLogsCollectorDebugTrace",
        skip_serializing_if = "Option::is_none"
    )]
    pub flow_logs_collector_debug_trace: Option<bool>,
    #[serde(
        default,
        rename = "flowLogsGoldmaneServer",
        skip_serializing_if = "Option::is_none"
    )]
    pub flow_logs_goldmane_server: Option<String>,
    #[serde(
        default,
        rename = "flowLogsLocalReporter",
        skip_serializing_if = "Option::is_none"
    )]
    pub flow_logs_local_reporter: Option<String>,
    #[serde(
        default,
        rename = "bpfProfiling",
        skip_serializing_if = "Option::is_none"
    )]
    pub bpf_profiling: Option<String>,
    #[serde(
        default,
        rename = "routeSource",
        skip_serializing_if = "Option::is_none"
    )]
    pub route_source: Option<String>,
    #[serde(
        default,
        rename = "routeTableRanges",
        skip_serializing_if = "Option::is_none"
    )]
    pub route_table_ranges: Option<Vec<RouteTableIDRange>>,
    #[serde(
        default,
        rename = "routeTableRange",
        skip_serializing_if = "Option::is_none"
    )]
    pub route_table_range: Option<RouteTableRange>,
    #[serde(
        default,
        rename = "routeSyncDisabled",
        skip_serializing_if = "Option::is_none"
    )]
    pub route_sync_disabled: Option<bool>,
    #[serde(
        default,
        rename = "ipv4NormalRoutePriority",
        skip_serializing_if = "Option::is_none"
    )]
    pub ipv4_normal_route_priority: Option<i64>,
    #[serde(
        default,
        rename = "ipv4ElevatedRoutePriority",
        skip_serializing_if = "Option::is_none"
    )]
    pub ipv4_elevated_route_priority: Option<i64>,
    #[serde(
        default,
        rename = "ipv6NormalRoutePriority",
        skip_serializing_if = "Option::is_none"
    )]
    pub ipv6_normal_route_priority: Option<i64>,
    #[serde(
        default,
        rename = "ipv6ElevatedRoutePriority",
        skip_serializing_if = "Option::is_none"
    )]
    pub ipv6_elevated_route_priority: Option<i64>,
    #[serde(
        default,
        rename = "liveMigrationRouteConvergenceTime",
        skip_serializing_if = "Option::is_none"
    )]
    pub live_migration_route_convergence_time: Option<String>,
    #[serde(
        default,
        rename = "wireguardEnabled",
        skip_serializing_if = "Option::is_none"
    )]
    pub wireguard_enabled: Option<bool>,
    #[serde(
        default,
        rename = "wireguardEnabledV6",
        skip_serializing_if = "Option::is_none"
    )]
    pub wireguard_enabled_v6: Option<bool>,
    #[serde(
        default,
        rename = "wireguardThreadingEnabled",
        skip_serializing_if = "Option::is_none"
    )]
    pub wireguard_threading_enabled: Option<bool>,
    #[serde(
        default,
        rename = "wireguardListeningPort",
        skip_serializing_if = "Option::is_none"
    )]
    pub wireguard_listening_port: Option<i64>,
    #[serde(
        default,
        rename = "wireguardListeningPortV6",
        skip_serializing_if = "Option::is_none"
    )]
    pub wireguard_listening_port_v6: Option<i64>,
    #[serde(
        default,
        rename = "wireguardRoutingRulePriority",
        skip_serializing_if = "Option::is_none"
    )]
    pub wireguard_routing_rule_priority: Option<i64>,
    #[serde(
        default,
        rename = "wireguardInterfaceName",
        skip_serializing_if = "Option::is_none"
    )]
    pub wireguard_interface_name: Option<String>,
    #[serde(
        default,
        rename = "wireguardInterfaceNameV6",
        skip_serializing_if = "Option::is_none"
    )]
    pub wireguard_interface_name_v6: Option<String>,
    #[serde(
        default,
        rename = "wireguardMTU",
        skip_serializing_if = "Option::is_none"
    )]
    pub wireguard_mtu: Option<i64>,
    #[serde(
        default,
        rename = "wireguardMTUV6",
        skip_serializing_if = "Option::is_none"
    )]
    pub wireguard_mtuv6: Option<i64>,
    #[serde(
        default,
        rename = "wireguardHostEncryptionEnabled",
        skip_serializing_if = "Option::is_none"
    )]
    pub wireguard_host_encryption_enabled: Option<bool>,
    #[serde(
        default,
        rename = "wireguardKeepAlive",
        skip_serializing_if = "Option::is_none"
    )]
    pub wireguard_keep_alive: Option<String>,
    #[serde(
        default,
        rename = "awsSrcDstCheck",
        skip_serializing_if = "Option::is_none"
    )]
    pub aws_src_dst_check: Option<String>,
    #[serde(
        default,
        rename = "serviceLoopPrevention",
        skip_serializing_if = "Option::is_none"
    )]
    pub service_loop_prevention: Option<String>,
    #[serde(
        default,
        rename = "workloadSourceSpoofing",
        skip_serializing_if = "Option::is_none"
    )]
    pub workload_source_spoofing: Option<String>,
    #[serde(
        default,
        rename = "mtuIfacePattern",
        skip_serializing_if = "Option::is_none"
    )]
    pub mtu_iface_pattern: Option<String>,
    #[serde(
        default,
        rename = "floatingIPs",
        skip_serializing_if = "Option::is_none"
    )]
    pub floating_ips: Option<String>,
    #[serde(
        default,
        rename = "localSubnetL2Reachability",
        skip_serializing_if = "Option::is_none"
    )]
    pub local_subnet_l2_reachability: Option<String>,
    #[serde(
        default,
        rename = "localSubnetL2ReachabilityRefreshInterval",
        skip_serializing_if = "Option::is_none"
    )]
    pub local_subnet_l2_reachability_refresh_interval: Option<String>,
    #[serde(
        default,
        rename = "windowsManageFirewallRules",
        skip_serializing_if = "Option::is_none"
    )]
    pub windows_manage_firewall_rules: Option<String>,
    #[serde(
        default,
        rename = "goGCThreshold",
        skip_serializing_if = "Option::is_none"
    )]
    pub go_gc_threshold: Option<i64>,
    #[serde(
        default,
        rename = "goMemoryLimitMB",
        skip_serializing_if = "Option::is_none"
    )]
    pub go_memory_limit_mb: Option<i64>,
    #[serde(
        default,
        rename = "goMaxProcs",
        skip_serializing_if = "Option::is_none"
    )]
    pub go_max_procs: Option<i64>,
    #[serde(
        default,
        rename = "requireMTUFile",
        skip_serializing_if = "Option::is_none"
    )]
    pub require_mtu_file: Option<bool>,
    #[serde(
        default,
        rename = "bpfMaglevMaxEndpointsPerService",
        skip_serializing_if = "Option::is_none"
    )]
    pub bpf_maglev_max_endpoints_per_service: Option<i64>,
    #[serde(
        default,
        rename = "bpfMaglevMaxServices",
        skip_serializing_if = "Option::is_none"
    )]
    pub bpf_maglev_max_services: Option<i64>,
    /// Deprecated: accepted for compatibility with older Calico releases, ignored.
    #[serde(
        default,
        rename = "iptablesLockFilePath",
        skip_serializing_if = "Option::is_none"
    )]
    pub iptables_lock_file_path: Option<String>,
    /// Deprecated: accepted for compatibility with older Calico releases, ignored.
    #[serde(
        default,
        rename = "iptablesLockTimeout",
        skip_serializing_if = "Option::is_none"
    )]
    pub iptables_lock_timeout: Option<String>,
    /// Deprecated: accepted for compatibility with older Calico releases, ignored.
    #[serde(
        default,
        rename = "bpfKubeProxyEndpointSlicesEnabled",
        skip_serializing_if = "Option::is_none"
    )]
    pub bpf_kube_proxy_endpoint_slices_enabled: Option<bool>,
}

impl FelixConfigurationFields {
    /// Field-by-field rules taken from Calico's API markers (enums, durations, numeric ranges), as
    /// listed in [`RULES`].
    fn validate_fields(&self, errs: &mut FieldErrors) {
        for rule in RULES {
            rule.check.run(self, rule.path, errs);
        }
    }
}

impl FelixConfigurationSpec {
    /// A `nodeSelector` only on FelixConfigurations that are neither `default` nor per-node.
    fn check_node_selector(&self, meta: &ObjectMeta, errs: &mut FieldErrors) {
        if let Some(selector) = &self.node_selector {
            if meta.name == "default" || meta.name.starts_with("node.") {
                errs.push(
                    "spec.nodeSelector",
                    "nodeSelector must not be set on the 'default' or per-node ('node.*') FelixConfiguration",
                );
            } else {
                validate::selector(errs, "spec.nodeSelector", selector);
            }
        }
    }

    /// The rate and prefix of Felix's policy log lines.
    fn check_logging(&self, errs: &mut FieldErrors) {
        if let Some(limit) = &self.log_action_rate_limit {
            let ok = limit.split_once('/').is_some_and(|(n, unit)| {
                (1..=4).contains(&n.len())
                    && !n.starts_with('0')
                    && n.bytes().all(|c| c.is_ascii_digit())
                    && matches!(unit, "second" | "minute" | "hour" | "day")
            });
            if !ok {
                errs.push(
                    "spec.logActionRateLimit",
                    format!("invalid rate {limit:?}: expected <1-9999>/<second|minute|hour|day>"),
                );
            }
        }
        if let Some(prefix) = &self.log_prefix
            && !prefix
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "%: /_-".contains(c))
        {
            errs.push(
                "spec.logPrefix",
                format!("invalid log prefix {prefix:?}: only letters, digits and '%', ':', ' ', '/', '_', '-' are allowed"),
            );
        }
    }

    /// Port ranges: no named ports, at most seven node port ranges.
    fn check_port_ranges(&self, errs: &mut FieldErrors) {
        if let Some(ranges) = &self.kube_node_port_ranges {
            if ranges.len() > 7 {
                errs.push(
                    "spec.kubeNodePortRanges",
                    "node port ranges list is too long (max 7)",
                );
            }
            for (i, r) in ranges.iter().enumerate() {
                if matches!(r, PortSpec::Named(_)) {
                    errs.push(
                        index("spec.kubeNodePortRanges", i),
                        "node port ranges should not contain named ports",
                    );
                }
            }
        }
        for (field, value) in [
            ("natPortRange", &self.nat_port_range),
            ("bpfPSNATPorts", &self.bpf_psnat_ports),
        ] {
            if let Some(PortSpec::Named(name)) = value {
                errs.push(
                    join("spec", field),
                    format!("{name:?} is not a port number or range"),
                );
            }
        }
    }

    /// Names Felix builds kernel or namespace names from, and the health timeout overrides.
    fn check_names(&self, errs: &mut FieldErrors) {
        if let Some(region) = &self.openstack_region
            && !region.is_empty()
        {
            // Used in a namespace name `openstack-region-<region>`, which must be a DNS label.
            const MAX_REGION: usize = 63 - "openstack-region-".len();
            if region.len() > MAX_REGION {
                errs.push(
                    "spec.openstackRegion",
                    format!("is too long (max {MAX_REGION} characters)"),
                );
            } else if !validate::is_dns1123_label(region) {
                errs.push("spec.openstackRegion", "must be a valid DNS label");
            }
        }

        for (field, value) in [
            ("wireguardInterfaceName", &self.wireguard_interface_name),
            (
                "wireguardInterfaceNameV6",
                &self.wireguard_interface_name_v6,
            ),
        ] {
            if let Some(name) = value
                && !name.is_empty()
                && !crate::validate::is_interface_name(name)
            {
                errs.push(
                    join("spec", field),
                    format!("invalid interface name {name:?}"),
                );
            }
        }
        if let Some(filter) = &self.iptables_nat_outgoing_interface_filter
            && !filter.is_empty()
            && !(filter.len() <= 15
                && filter
                    .bytes()
                    .all(|c| c.is_ascii_alphanumeric() || b":._+-".contains(&c)))
        {
            errs.push(
                "spec.iptablesNATOutgoingInterfaceFilter",
                format!("invalid interface filter {filter:?}"),
            );
        }
        for (i, iface) in self
            .bpf_force_track_packets_from_ifaces
            .iter()
            .flatten()
            .enumerate()
        {
            if !(iface.len() <= 15
                && !iface.is_empty()
                && iface
                    .bytes()
                    .all(|c| c.is_ascii_alphanumeric() || b":._+-*".contains(&c)))
            {
                errs.push(
                    index("spec.bpfForceTrackPacketsFromIfaces", i),
                    format!("invalid interface name {iface:?}"),
                );
            }
        }
        if let Some(host) = &self.prometheus_metrics_host
            && !host.is_empty()
            && !(host.len() <= 64
                && host
                    .bytes()
                    .all(|c| c.is_ascii_alphanumeric() || b":._+-".contains(&c)))
        {
            errs.push(
                "spec.prometheusMetricsHost",
                format!("invalid host {host:?}"),
            );
        }

        for (i, hto) in self.health_timeout_overrides.iter().enumerate() {
            let item = index("spec.healthTimeoutOverrides", i);
            if hto.name.is_empty()
                || !hto
                    .name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | ' ' | '-'))
            {
                errs.push(
                    join(&item, "name"),
                    format!(
                        "invalid name {:?}: letters, digits, '_', ' ' and '-' only",
                        hto.name
                    ),
                );
            }
            validate::go_duration(errs, &join(&item, "timeout"), &hto.timeout);
        }
    }

    /// Route table indices: one of the two forms, within the kernel's limits.
    fn check_route_tables(&self, errs: &mut FieldErrors) {
        if self.route_table_range.is_some() && self.route_table_ranges.is_some() {
            errs.push(
                "spec.routeTableRanges",
                "routeTableRange and routeTableRanges cannot both be set",
            );
        }
        if let Some(r) = &self.route_table_range
            && !(r.min >= 1 && r.max >= r.min && r.max <= 250)
        {
            errs.push(
                "spec.routeTableRange",
                "must be a range of route table indices within 1..250",
            );
        }
        let mut designated_tables = 0i64;
        for (i, r) in self.route_table_ranges.iter().flatten().enumerate() {
            let item = index("spec.routeTableRanges", i);
            if r.min < 1 {
                errs.push(join(&item, "min"), "min must be >= 1");
            }
            if r.min > r.max {
                errs.push(&item, "min must not be greater than max");
            }
            if r.max > i64::from(u32::MAX) {
                errs.push(join(&item, "max"), "max index too high");
            }
            designated_tables += (r.max - r.min + 1).max(0);
        }
        if designated_tables > 0xffff {
            errs.push("spec.routeTableRanges", "targets too many tables");
        }
    }

    /// BPF conntrack timeouts (durations or `Auto`) and log filter keys.
    fn check_bpf_settings(&self, errs: &mut FieldErrors) {
        if let Some(timeouts) = &self.bpf_conntrack_timeouts {
            for (field, value) in timeouts.entries() {
                if let Some(v) = value
                    && v != "Auto"
                {
                    validate::go_duration(errs, &join("spec.bpfConntrackTimeouts", field), v);
                }
            }
        }
        if let Some(filters) = &self.bpf_log_filters {
            for key in filters.keys() {
                if key != "all" && !crate::validate::is_interface_name(key) {
                    errs.push(
                        join("spec.bpfLogFilters", key),
                        "keys must be \"all\" or an interface name",
                    );
                }
            }
        }
    }
}

impl SpecType for FelixConfigurationSpec {
    fn validate(&self, meta: &ObjectMeta, errs: &mut FieldErrors) {
        self.validate_fields(errs);
        self.check_node_selector(meta, errs);
        self.check_logging(errs);
        self.check_port_ranges(errs);
        self.check_names(errs);
        self.check_route_tables(errs);
        self.check_bpf_settings(errs);
    }
}
