//! FelixConfiguration's per-field validation as a table: each rule names a field's path, the kind of
//! check and its bounds. The checks that relate several fields, or look inside structured values, are
//! written out in `felixconfig.rs`.

use super::{FelixConfigurationFields, ProtoPort};
use crate::FieldErrors;
use crate::error::{index, join};
use crate::spec::infra_common::{LOG_LEVELS, check_one_of, check_one_of_ignore_case, check_range};
use crate::validate;

type Fields = FelixConfigurationFields;

/// The largest Go `int32`, the bound of Calico's MTU and size fields.
const I32_MAX: i64 = i32::MAX as i64;

/// Which addresses a field takes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Family {
    V4,
    V6,
    Any,
}

/// The kind of check, with the accessor that reads the field from the spec.
pub(super) enum Check {
    /// A Go duration (`90s`, `1m30s`); empty means unset.
    Duration(fn(&Fields) -> &Option<String>),
    /// One of the choices, in any letter case; empty means unset.
    OneOfAnyCase(fn(&Fields) -> &Option<String>, &'static [&'static str]),
    /// One of the choices exactly; empty means unset.
    OneOf(fn(&Fields) -> &Option<String>, &'static [&'static str]),
    /// An integer from `min` to `max` inclusive.
    Range(fn(&Fields) -> Option<i64>, i64, i64),
    /// `key=value,key=value`, as Felix's feature gates and overrides take them.
    KeyValueList(fn(&Fields) -> &Option<String>),
    /// `protocol` and `net` of each failsafe port.
    ProtoPorts(fn(&Fields) -> &Option<Vec<ProtoPort>>),
    /// One address of the family (`V4` or `V6`); empty means unset.
    Address(fn(&Fields) -> &Option<String>, Family),
    /// A list of CIDRs, of IPv4 only (`V4`) or of either family (`Any`).
    Cidrs(fn(&Fields) -> &Option<Vec<String>>, Family),
}

pub(super) struct Rule {
    /// The field's path in the document, as errors name it.
    pub path: &'static str,
    pub check: Check,
}

impl Check {
    pub(super) fn run(&self, fields: &Fields, path: &str, errs: &mut FieldErrors) {
        match *self {
            Check::Duration(get) => {
                if let Some(v) = get(fields).as_deref().filter(|v| !v.is_empty()) {
                    validate::go_duration(errs, path, v);
                }
            }
            Check::OneOfAnyCase(get, allowed) => {
                if let Some(v) = get(fields) {
                    check_one_of_ignore_case(errs, path, v, allowed);
                }
            }
            Check::OneOf(get, allowed) => {
                if let Some(v) = get(fields).as_deref().filter(|v| !v.is_empty()) {
                    check_one_of(errs, path, v, allowed);
                }
            }
            Check::Range(get, min, max) => {
                if let Some(v) = get(fields) {
                    check_range(errs, path, v, min, max);
                }
            }
            Check::KeyValueList(get) => check_key_value_list(errs, path, get(fields)),
            Check::ProtoPorts(get) => check_proto_ports(errs, path, get(fields)),
            Check::Address(get, family) => {
                if let Some(v) = get(fields).as_deref().filter(|v| !v.is_empty()) {
                    if family == Family::V6 {
                        validate::ipv6_address(errs, path, v);
                    } else {
                        validate::ipv4_address(errs, path, v);
                    }
                }
            }
            Check::Cidrs(get, family) => check_cidr_list(errs, path, get(fields), family),
        }
    }
}

fn check_key_value_list(errs: &mut FieldErrors, path: &str, value: &Option<String>) {
    let Some(value) = value else { return };
    for item in value.split(',').filter(|i| !i.trim().is_empty()) {
        let ok = item.split_once('=').is_some_and(|(k, _)| {
            let k = k.trim_start();
            !k.is_empty()
                && k.chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
        });
        if !ok {
            errs.push(
                path,
                format!("invalid entry {item:?}: expected a comma-separated list of key=value"),
            );
        }
    }
}

fn check_cidr_list(
    errs: &mut FieldErrors,
    path: &str,
    value: &Option<Vec<String>>,
    family: Family,
) {
    for (i, cidr) in value.iter().flatten().enumerate() {
        match validate::parse_cidr(cidr) {
            Some(net) if family == Family::V4 && net.addr().is_ipv6() => {
                errs.push(index(path, i), format!("{cidr:?} is not an IPv4 CIDR"))
            }
            Some(_) => {}
            None => errs.push(index(path, i), format!("invalid CIDR {cidr:?}")),
        }
    }
}

fn check_proto_ports(errs: &mut FieldErrors, path: &str, value: &Option<Vec<ProtoPort>>) {
    for (i, pp) in value.iter().flatten().enumerate() {
        let item = index(path, i);
        if !pp.protocol.is_empty() && !matches!(pp.protocol.as_str(), "TCP" | "UDP" | "SCTP") {
            errs.push(
                join(&item, "protocol"),
                format!(
                    "invalid protocol {:?}: must be TCP, UDP or SCTP",
                    pp.protocol
                ),
            );
        }
        if !pp.net.is_empty() && validate::parse_cidr(&pp.net).is_none() {
            errs.push(join(&item, "net"), format!("invalid CIDR {:?}", pp.net));
        }
    }
}

/// Every per-field rule, in the order Calico's API lists the fields.
pub(super) const RULES: &[Rule] = &[
    Rule {
        path: "spec.dataplaneWatchdogTimeout",
        check: Check::Duration(|f| &f.dataplane_watchdog_timeout),
    },
    Rule {
        path: "spec.routeRefreshInterval",
        check: Check::Duration(|f| &f.route_refresh_interval),
    },
    Rule {
        path: "spec.interfaceRefreshInterval",
        check: Check::Duration(|f| &f.interface_refresh_interval),
    },
    Rule {
        path: "spec.iptablesRefreshInterval",
        check: Check::Duration(|f| &f.iptables_refresh_interval),
    },
    Rule {
        path: "spec.iptablesPostWriteCheckInterval",
        check: Check::Duration(|f| &f.iptables_post_write_check_interval),
    },
    Rule {
        path: "spec.iptablesLockProbeInterval",
        check: Check::Duration(|f| &f.iptables_lock_probe_interval),
    },
    Rule {
        path: "spec.ipsetsRefreshInterval",
        check: Check::Duration(|f| &f.ipsets_refresh_interval),
    },
    Rule {
        path: "spec.iptablesBackend",
        check: Check::OneOfAnyCase(|f| &f.iptables_backend, &["Auto", "Legacy", "NFT"]),
    },
    Rule {
        path: "spec.xdpRefreshInterval",
        check: Check::Duration(|f| &f.xdp_refresh_interval),
    },
    Rule {
        path: "spec.netlinkTimeout",
        check: Check::Duration(|f| &f.netlink_timeout),
    },
    Rule {
        path: "spec.chainInsertMode",
        check: Check::OneOfAnyCase(|f| &f.chain_insert_mode, &["Insert", "Append"]),
    },
    Rule {
        path: "spec.defaultEndpointToHostAction",
        check: Check::OneOfAnyCase(
            |f| &f.default_endpoint_to_host_action,
            &["Drop", "Accept", "Return"],
        ),
    },
    Rule {
        path: "spec.iptablesFilterAllowAction",
        check: Check::OneOfAnyCase(|f| &f.iptables_filter_allow_action, &["Accept", "Return"]),
    },
    Rule {
        path: "spec.iptablesMangleAllowAction",
        check: Check::OneOfAnyCase(|f| &f.iptables_mangle_allow_action, &["Accept", "Return"]),
    },
    Rule {
        path: "spec.iptablesFilterDenyAction",
        check: Check::OneOfAnyCase(|f| &f.iptables_filter_deny_action, &["Drop", "Reject"]),
    },
    Rule {
        path: "spec.logActionRateLimitBurst",
        check: Check::Range(|f| f.log_action_rate_limit_burst, 0, 9999),
    },
    Rule {
        path: "spec.logSeverityFile",
        check: Check::OneOfAnyCase(|f| &f.log_severity_file, LOG_LEVELS),
    },
    Rule {
        path: "spec.logSeverityScreen",
        check: Check::OneOfAnyCase(|f| &f.log_severity_screen, LOG_LEVELS),
    },
    Rule {
        path: "spec.logSeveritySys",
        check: Check::OneOfAnyCase(|f| &f.log_severity_sys, LOG_LEVELS),
    },
    Rule {
        path: "spec.reportingInterval",
        check: Check::Duration(|f| &f.reporting_interval),
    },
    Rule {
        path: "spec.reportingTTL",
        check: Check::Duration(|f| &f.reporting_ttl),
    },
    Rule {
        path: "spec.endpointReportingDelay",
        check: Check::Duration(|f| &f.endpoint_reporting_delay),
    },
    Rule {
        path: "spec.iptablesMarkMask",
        check: Check::Range(|f| f.iptables_mark_mask, 0, 4294967295),
    },
    Rule {
        path: "spec.prometheusMetricsClientAuth",
        check: Check::OneOf(
            |f| &f.prometheus_metrics_client_auth,
            &[
                "RequireAndVerifyClientCert",
                "RequireAnyClientCert",
                "VerifyClientCertIfGiven",
                "NoClientCert",
            ],
        ),
    },
    Rule {
        path: "spec.usageReportingInitialDelay",
        check: Check::Duration(|f| &f.usage_reporting_initial_delay),
    },
    Rule {
        path: "spec.usageReportingInterval",
        check: Check::Duration(|f| &f.usage_reporting_interval),
    },
    Rule {
        path: "spec.natOutgoingExclusions",
        check: Check::OneOf(
            |f| &f.nat_outgoing_exclusions,
            &["IPPoolsOnly", "IPPoolsAndHostIPs"],
        ),
    },
    Rule {
        path: "spec.programClusterRoutes",
        check: Check::OneOf(
            |f| &f.program_cluster_routes,
            &[
                "Enabled",
                "Disabled",
                "EnabledIPIPOnly",
                "EnabledNoEncapOnly",
            ],
        ),
    },
    Rule {
        path: "spec.ipForwarding",
        check: Check::OneOf(|f| &f.ip_forwarding, &["Enabled", "Disabled"]),
    },
    Rule {
        path: "spec.debugSimulateCalcGraphHangAfter",
        check: Check::Duration(|f| &f.debug_simulate_calc_graph_hang_after),
    },
    Rule {
        path: "spec.debugSimulateDataplaneHangAfter",
        check: Check::Duration(|f| &f.debug_simulate_dataplane_hang_after),
    },
    Rule {
        path: "spec.debugSimulateDataplaneApplyDelay",
        check: Check::Duration(|f| &f.debug_simulate_dataplane_apply_delay),
    },
    Rule {
        path: "spec.debugPort",
        check: Check::Range(|f| f.debug_port, 0, 65535),
    },
    Rule {
        path: "spec.nftablesMode",
        check: Check::OneOf(|f| &f.nftables_mode, &["Disabled", "Enabled", "Auto"]),
    },
    Rule {
        path: "spec.nftablesFlowTableOffload",
        check: Check::OneOf(|f| &f.nftables_flow_table_offload, &["All", "Disabled"]),
    },
    Rule {
        path: "spec.nftablesRefreshInterval",
        check: Check::Duration(|f| &f.nftables_refresh_interval),
    },
    Rule {
        path: "spec.nftablesFilterAllowAction",
        check: Check::OneOfAnyCase(|f| &f.nftables_filter_allow_action, &["Accept", "Return"]),
    },
    Rule {
        path: "spec.nftablesMangleAllowAction",
        check: Check::OneOfAnyCase(|f| &f.nftables_mangle_allow_action, &["Accept", "Return"]),
    },
    Rule {
        path: "spec.nftablesFilterDenyAction",
        check: Check::OneOfAnyCase(|f| &f.nftables_filter_deny_action, &["Drop", "Reject"]),
    },
    Rule {
        path: "spec.nftablesMarkMask",
        check: Check::Range(|f| f.nftables_mark_mask, 0, 4294967295),
    },
    Rule {
        path: "spec.bpfOverlayHostSourceIP",
        check: Check::OneOf(
            |f| &f.bpf_overlay_host_source_ip,
            &["TunnelAddress", "HostAddress"],
        ),
    },
    Rule {
        path: "spec.bpfJITHardening",
        check: Check::OneOf(|f| &f.bpf_jit_hardening, &["Auto", "Strict"]),
    },
    Rule {
        path: "spec.bpfLogLevel",
        check: Check::OneOfAnyCase(|f| &f.bpf_log_level, &["Off", "Info", "Debug"]),
    },
    Rule {
        path: "spec.bpfConntrackLogLevel",
        check: Check::OneOf(|f| &f.bpf_conntrack_log_level, &["Off", "Debug"]),
    },
    Rule {
        path: "spec.bpfConntrackMode",
        check: Check::OneOf(
            |f| &f.bpf_conntrack_mode,
            &["Auto", "Userspace", "BPFProgram"],
        ),
    },
    Rule {
        path: "spec.bpfIPFragTimeout",
        check: Check::Duration(|f| &f.bpf_ip_frag_timeout),
    },
    Rule {
        path: "spec.bpfConnectTimeLoadBalancing",
        check: Check::OneOf(
            |f| &f.bpf_connect_time_load_balancing,
            &["TCP", "Enabled", "Disabled"],
        ),
    },
    Rule {
        path: "spec.bpfHostNetworkedNATWithoutCTLB",
        check: Check::OneOf(
            |f| &f.bpf_host_networked_nat_without_ctlb,
            &["Enabled", "Disabled"],
        ),
    },
    Rule {
        path: "spec.bpfExternalServiceMode",
        check: Check::OneOfAnyCase(|f| &f.bpf_external_service_mode, &["Tunnel", "DSR"]),
    },
    Rule {
        path: "spec.bpfExtToServiceConnmark",
        check: Check::Range(|f| f.bpf_ext_to_service_connmark, 0, 4294967295),
    },
    Rule {
        path: "spec.bpfKubeProxyMinSyncPeriod",
        check: Check::Duration(|f| &f.bpf_kube_proxy_min_sync_period),
    },
    Rule {
        path: "spec.bpfKubeProxyHealthzPort",
        check: Check::Range(|f| f.bpf_kube_proxy_healthz_port, 0, 65535),
    },
    Rule {
        path: "spec.bpfMapSizeConntrackScaling",
        check: Check::OneOfAnyCase(
            |f| &f.bpf_map_size_conntrack_scaling,
            &["Disabled", "DoubleIfFull"],
        ),
    },
    Rule {
        path: "spec.bpfMapSizeConntrackCleanupQueue",
        check: Check::Range(|f| f.bpf_map_size_conntrack_cleanup_queue, 1, i64::MAX),
    },
    Rule {
        path: "spec.bpfEnforceRPF",
        check: Check::OneOfAnyCase(|f| &f.bpf_enforce_rpf, &["Disabled", "Strict", "Loose"]),
    },
    Rule {
        path: "spec.istioAmbientMode",
        check: Check::OneOf(|f| &f.istio_ambient_mode, &["Enabled", "Disabled"]),
    },
    Rule {
        path: "spec.flowLogsPolicyEvaluationMode",
        check: Check::OneOf(
            |f| &f.flow_logs_policy_evaluation_mode,
            &["None", "Continuous"],
        ),
    },
    Rule {
        path: "spec.bpfRedirectToPeer",
        check: Check::OneOf(|f| &f.bpf_redirect_to_peer, &["Enabled", "Disabled"]),
    },
    Rule {
        path: "spec.bpfAttachType",
        check: Check::OneOf(|f| &f.bpf_attach_type, &["TC", "TCX", "Netkit"]),
    },
    Rule {
        path: "spec.flowLogsFlushInterval",
        check: Check::Duration(|f| &f.flow_logs_flush_interval),
    },
    Rule {
        path: "spec.flowLogsLocalReporter",
        check: Check::OneOf(|f| &f.flow_logs_local_reporter, &["Disabled", "Enabled"]),
    },
    Rule {
        path: "spec.bpfProfiling",
        check: Check::OneOf(|f| &f.bpf_profiling, &["Enabled", "Disabled"]),
    },
    Rule {
        path: "spec.routeSource",
        check: Check::OneOfAnyCase(|f| &f.route_source, &["WorkloadIPs", "CalicoIPAM"]),
    },
    Rule {
        path: "spec.ipv4NormalRoutePriority",
        check: Check::Range(|f| f.ipv4_normal_route_priority, 1, 2147483646),
    },
    Rule {
        path: "spec.ipv4ElevatedRoutePriority",
        check: Check::Range(|f| f.ipv4_elevated_route_priority, 1, 2147483646),
    },
    Rule {
        path: "spec.ipv6NormalRoutePriority",
        check: Check::Range(|f| f.ipv6_normal_route_priority, 1, 2147483646),
    },
    Rule {
        path: "spec.ipv6ElevatedRoutePriority",
        check: Check::Range(|f| f.ipv6_elevated_route_priority, 1, 2147483646),
    },
    Rule {
        path: "spec.liveMigrationRouteConvergenceTime",
        check: Check::Duration(|f| &f.live_migration_route_convergence_time),
    },
    Rule {
        path: "spec.wireguardListeningPort",
        check: Check::Range(|f| f.wireguard_listening_port, 1, 65535),
    },
    Rule {
        path: "spec.wireguardListeningPortV6",
        check: Check::Range(|f| f.wireguard_listening_port_v6, 1, 65535),
    },
    Rule {
        path: "spec.wireguardRoutingRulePriority",
        check: Check::Range(|f| f.wireguard_routing_rule_priority, 1, 32765),
    },
    Rule {
        path: "spec.wireguardKeepAlive",
        check: Check::Duration(|f| &f.wireguard_keep_alive),
    },
    Rule {
        path: "spec.awsSrcDstCheck",
        check: Check::OneOf(
            |f| &f.aws_src_dst_check,
            &["DoNothing", "Enable", "Disable"],
        ),
    },
    Rule {
        path: "spec.serviceLoopPrevention",
        check: Check::OneOfAnyCase(
            |f| &f.service_loop_prevention,
            &["Drop", "Reject", "Disabled"],
        ),
    },
    Rule {
        path: "spec.workloadSourceSpoofing",
        check: Check::OneOfAnyCase(|f| &f.workload_source_spoofing, &["Disabled", "Any"]),
    },
    Rule {
        path: "spec.floatingIPs",
        check: Check::OneOf(|f| &f.floating_ips, &["Enabled", "Disabled"]),
    },
    Rule {
        path: "spec.localSubnetL2Reachability",
        check: Check::OneOf(
            |f| &f.local_subnet_l2_reachability,
            &["Disabled", "PodsAndLoadBalancers"],
        ),
    },
    Rule {
        path: "spec.localSubnetL2ReachabilityRefreshInterval",
        check: Check::Duration(|f| &f.local_subnet_l2_reachability_refresh_interval),
    },
    Rule {
        path: "spec.windowsManageFirewallRules",
        check: Check::OneOf(
            |f| &f.windows_manage_firewall_rules,
            &["Enabled", "Disabled"],
        ),
    },
    Rule {
        path: "spec.goGCThreshold",
        check: Check::Range(|f| f.go_gc_threshold, -1, i64::MAX),
    },
    Rule {
        path: "spec.goMemoryLimitMB",
        check: Check::Range(|f| f.go_memory_limit_mb, -1, i64::MAX),
    },
    Rule {
        path: "spec.goMaxProcs",
        check: Check::Range(|f| f.go_max_procs, -1, i64::MAX),
    },
    Rule {
        path: "spec.bpfMaglevMaxEndpointsPerService",
        check: Check::Range(|f| f.bpf_maglev_max_endpoints_per_service, 1, 3000),
    },
    Rule {
        path: "spec.bpfMaglevMaxServices",
        check: Check::Range(|f| f.bpf_maglev_max_services, 1, 3000),
    },
    Rule {
        path: "spec.iptablesLockTimeout",
        check: Check::Duration(|f| &f.iptables_lock_timeout),
    },
    Rule {
        path: "spec.healthPort",
        check: Check::Range(|f| f.health_port, 0, 65535),
    },
    Rule {
        path: "spec.prometheusMetricsPort",
        check: Check::Range(|f| f.prometheus_metrics_port, 0, 65535),
    },
    Rule {
        path: "spec.metadataPort",
        check: Check::Range(|f| f.metadata_port, 0, 65535),
    },
    Rule {
        path: "spec.vxlanPort",
        check: Check::Range(|f| f.vxlan_port, 0, 65535),
    },
    Rule {
        path: "spec.ipipMTU",
        check: Check::Range(|f| f.ipip_mtu, 0, I32_MAX),
    },
    Rule {
        path: "spec.vxlanMTU",
        check: Check::Range(|f| f.vxlan_mtu, 0, I32_MAX),
    },
    Rule {
        path: "spec.vxlanMTUV6",
        check: Check::Range(|f| f.vxlan_mtuv6, 0, I32_MAX),
    },
    Rule {
        path: "spec.wireguardMTU",
        check: Check::Range(|f| f.wireguard_mtu, 0, I32_MAX),
    },
    Rule {
        path: "spec.wireguardMTUV6",
        check: Check::Range(|f| f.wireguard_mtuv6, 0, I32_MAX),
    },
    Rule {
        path: "spec.maxIpsetSize",
        check: Check::Range(|f| f.max_ipset_size, 0, I32_MAX),
    },
    Rule {
        path: "spec.deviceRouteProtocol",
        check: Check::Range(|f| f.device_route_protocol, 0, I32_MAX),
    },
    Rule {
        path: "spec.vxlanVNI",
        check: Check::Range(|f| f.vxlan_vni, 0, (1 << 24) - 1),
    },
    Rule {
        path: "spec.featureDetectOverride",
        check: Check::KeyValueList(|f| &f.feature_detect_override),
    },
    Rule {
        path: "spec.featureGates",
        check: Check::KeyValueList(|f| &f.feature_gates),
    },
    Rule {
        path: "spec.failsafeInboundHostPorts",
        check: Check::ProtoPorts(|f| &f.failsafe_inbound_host_ports),
    },
    Rule {
        path: "spec.failsafeOutboundHostPorts",
        check: Check::ProtoPorts(|f| &f.failsafe_outbound_host_ports),
    },
    Rule {
        path: "spec.natOutgoingAddress",
        check: Check::Address(|f| &f.nat_outgoing_address, Family::V4),
    },
    Rule {
        path: "spec.deviceRouteSourceAddress",
        check: Check::Address(|f| &f.device_route_source_address, Family::V4),
    },
    Rule {
        path: "spec.deviceRouteSourceAddressIPv6",
        check: Check::Address(|f| &f.device_route_source_address_ipv6, Family::V6),
    },
    Rule {
        path: "spec.externalNodesList",
        check: Check::Cidrs(|f| &f.external_nodes_list, Family::V4),
    },
    Rule {
        path: "spec.bpfDSROptoutCIDRs",
        check: Check::Cidrs(|f| &f.bpf_dsr_optout_cidrs, Family::Any),
    },
    Rule {
        path: "spec.bpfExcludeCIDRsFromNAT",
        check: Check::Cidrs(|f| &f.bpf_exclude_cidrs_from_nat, Family::Any),
    },
];

#[cfg(test)]
mod tests {
    use serde_json::{Value, json};

    use super::*;
    use crate::Resource;

    /// Values each kind of check must refuse (several where a type might not take the first).
    fn bad_values(check: &Check) -> Vec<Value> {
        match check {
            Check::Duration(_) => vec![json!("soon")],
            Check::OneOfAnyCase(..) | Check::OneOf(..) => vec![json!("NoSuchChoice")],
            Check::Range(_, min, max) => [min.checked_sub(1), max.checked_add(1)]
                .into_iter()
                .flatten()
                .map(Value::from)
                .collect(),
            Check::KeyValueList(_) => vec![json!("=x")],
            Check::ProtoPorts(_) => vec![json!([{"protocol": "ICMP", "port": 1}])],
            Check::Address(..) => vec![json!("not-an-address")],
            Check::Cidrs(..) => vec![json!(["not-a-cidr"])],
        }
    }

    /// Each rule reads the field its path names: a bad value written at that path (through the JSON
    /// a user writes) is reported at that path by validation, not only by decoding.
    #[test]
    fn every_rule_checks_the_field_its_path_names() {
        let mut paths = std::collections::BTreeSet::new();
        for rule in RULES {
            assert!(paths.insert(rule.path), "{} has two rules", rule.path);
            let field = rule.path.strip_prefix("spec.").unwrap();
            let mut reported = false;
            for bad in bad_values(&rule.check) {
                let doc = json!({"apiVersion": "projectcalico.org/v3", "kind": "FelixConfiguration",
                    "metadata": {"name": "default"}, "spec": {field: bad}});
                let Ok(res) = Resource::from_value(doc) else {
                    continue;
                };
                let errs = res.validate().unwrap_err();
                assert!(
                    errs.iter().all(|e| e.path.starts_with(rule.path)),
                    "{}: {errs}",
                    rule.path
                );
                reported = true;
            }
            assert!(reported, "{}: no bad value decodes", rule.path);
        }
    }

    #[test]
    fn choices_and_bounds_keep_calicos_messages() {
        let doc = json!({"apiVersion": "projectcalico.org/v3", "kind": "FelixConfiguration",
            "metadata": {"name": "default"},
            "spec": {"logSeverityScreen": "Loud", "vxlanVNI": 16777216, "chainInsertMode": "Prepend"}});
        let errs = Resource::from_value(doc).unwrap().validate().unwrap_err();
        assert_eq!(
            errs.to_string(),
            "spec.chainInsertMode: invalid value \"Prepend\": must be one of Insert, Append\n\
             spec.logSeverityScreen: invalid value \"Loud\": must be one of Trace, Debug, Info, Warning, Error, Fatal\n\
             spec.vxlanVNI: must be between 0 and 16777215"
        );
    }
}
