//! CNI_* environment parsing and validation, and CNI_ARGS.

use std::collections::HashMap;
use std::net::IpAddr;
use std::path::PathBuf;

use calico_cni::spec::{CniArgs, CniEnv, CniError, Command};

fn vars(pairs: &[(&str, &str)]) -> HashMap<String, String> {
    pairs
        .iter()
        .map(|(key, value)| (key.to_string(), value.to_string()))
        .collect()
}

fn add_vars() -> Vec<(&'static str, &'static str)> {
    vec![
        ("CNI_COMMAND", "ADD"),
        ("CNI_CONTAINERID", "3f2a9c0d_b.e-1"),
        ("CNI_NETNS", "/var/run/netns/test"),
        ("CNI_IFNAME", "eth0"),
        (
            "CNI_ARGS",
            "IgnoreUnknown=1;K8S_POD_NAMESPACE=default;K8S_POD_NAME=web-0;K8S_POD_INFRA_CONTAINER_ID=3f2a9c0d",
        ),
        ("CNI_PATH", "/opt/cni/bin::/usr/lib/cni"),
    ]
}

fn with(mut map: HashMap<String, String>, key: &str, value: &str) -> HashMap<String, String> {
    map.insert(key.to_owned(), value.to_owned());
    map
}

fn without(mut map: HashMap<String, String>, key: &str) -> HashMap<String, String> {
    map.remove(key);
    map
}

#[test]
fn parses_a_complete_add_environment() {
    let env = CniEnv::from_map(&vars(&add_vars())).unwrap();
    assert_eq!(env.command, Command::Add);
    assert_eq!(env.container_id, "3f2a9c0d_b.e-1");
    assert_eq!(env.netns.as_deref(), Some("/var/run/netns/test"));
    assert_eq!(env.ifname, "eth0");
    assert_eq!(
        env.path,
        vec![PathBuf::from("/opt/cni/bin"), PathBuf::from("/usr/lib/cni")]
    );
    assert_eq!(env.args.k8s_pod_namespace.as_deref(), Some("default"));
    assert_eq!(env.args.k8s_pod_name.as_deref(), Some("web-0"));
    assert_eq!(
        env.args.k8s_pod_infra_container_id.as_deref(),
        Some("3f2a9c0d")
    );
    assert!(env.args.ignore_unknown);
    assert!(env.args.is_kubernetes());
}

#[test]
fn missing_command_and_unknown_command_are_invalid_environment() {
    let error = CniEnv::from_map(&without(vars(&add_vars()), "CNI_COMMAND")).unwrap_err();
    assert_eq!(error.code, CniError::INVALID_ENVIRONMENT_VARIABLES);
    assert!(error.msg.contains("CNI_COMMAND"), "{error:?}");

    let error = CniEnv::from_map(&with(vars(&add_vars()), "CNI_COMMAND", "UPDATE")).unwrap_err();
    assert_eq!(error.code, CniError::INVALID_ENVIRONMENT_VARIABLES);
    assert!(error.msg.contains("UPDATE"), "{error:?}");
}

#[test]
fn each_verb_requires_its_own_variables() {
    for (command, var) in [
        ("ADD", "CNI_CONTAINERID"),
        ("ADD", "CNI_NETNS"),
        ("ADD", "CNI_IFNAME"),
        ("CHECK", "CNI_NETNS"),
        ("DEL", "CNI_CONTAINERID"),
        ("DEL", "CNI_IFNAME"),
        ("GC", "CNI_PATH"),
    ] {
        let mut map = with(vars(&add_vars()), "CNI_COMMAND", command);
        map.remove(var);
        let error = CniEnv::from_map(&map).unwrap_err();
        assert_eq!(
            error.code,
            CniError::INVALID_ENVIRONMENT_VARIABLES,
            "{command} {var}"
        );
        assert!(error.msg.contains(var), "{command}: {error:?}");
        assert!(error.msg.contains(command), "{command}: {error:?}");

        // An empty value counts as missing.
        let mut map = with(vars(&add_vars()), "CNI_COMMAND", command);
        map.insert(var.to_owned(), String::new());
        assert_eq!(
            CniEnv::from_map(&map).unwrap_err().code,
            CniError::INVALID_ENVIRONMENT_VARIABLES
        );
    }
}

#[test]
fn all_missing_variables_are_named_together() {
    let error = CniEnv::from_map(&vars(&[("CNI_COMMAND", "ADD")])).unwrap_err();
    for var in ["CNI_CONTAINERID", "CNI_NETNS", "CNI_IFNAME"] {
        assert!(error.msg.contains(var), "{error:?}");
    }
}

#[test]
fn del_works_without_a_netns_and_version_status_need_nothing() {
    let del = with(vars(&add_vars()), "CNI_COMMAND", "DEL");
    let env = CniEnv::from_map(&without(del, "CNI_NETNS")).unwrap();
    assert_eq!(env.command, Command::Del);
    assert_eq!(env.netns, None);

    for command in ["VERSION", "STATUS"] {
        let env = CniEnv::from_map(&vars(&[("CNI_COMMAND", command)])).unwrap();
        assert_eq!(env.command.as_str(), command);
        assert!(env.container_id.is_empty() && env.ifname.is_empty() && env.path.is_empty());
    }
    let env = CniEnv::from_map(&vars(&[
        ("CNI_COMMAND", "GC"),
        ("CNI_PATH", "/usr/lib/cni"),
    ]))
    .unwrap();
    assert_eq!(env.command, Command::Gc);
}

#[test]
fn container_id_must_start_alphanumeric_and_use_safe_characters() {
    for bad in [
        "-abc", "_abc", ".abc", "abc/def", "abc def", "abc:1", "ünicode",
    ] {
        let mut map = vars(&add_vars());
        map.insert("CNI_CONTAINERID".into(), bad.into());
        let error = CniEnv::from_map(&map).unwrap_err();
        assert_eq!(error.code, CniError::INVALID_ENVIRONMENT_VARIABLES, "{bad}");
        assert!(error.msg.contains("CNI_CONTAINERID"), "{error:?}");
        assert_eq!(error.details, bad);
    }
    for good in ["a", "0", "A-b_c.d", "k8s_POD_web-0_default_1234"] {
        let mut map = vars(&add_vars());
        map.insert("CNI_CONTAINERID".into(), good.into());
        assert_eq!(CniEnv::from_map(&map).unwrap().container_id, good);
    }
}

#[test]
fn ifname_follows_the_kernel_rules() {
    for bad in [
        ".",
        "..",
        "eth/0",
        "eth:0",
        "eth 0",
        "eth\t0",
        "sixteen-chars-xx",
    ] {
        let mut map = vars(&add_vars());
        map.insert("CNI_IFNAME".into(), bad.into());
        let error = CniEnv::from_map(&map).unwrap_err();
        assert_eq!(
            error.code,
            CniError::INVALID_ENVIRONMENT_VARIABLES,
            "{bad:?}"
        );
        assert!(error.msg.contains("CNI_IFNAME"), "{error:?}");
    }
    // Exactly 15 bytes is the longest allowed.
    let mut map = vars(&add_vars());
    map.insert("CNI_IFNAME".into(), "fifteen-chars-x".into());
    assert_eq!(CniEnv::from_map(&map).unwrap().ifname, "fifteen-chars-x");
}

#[test]
fn delegate_vars_override_the_command_and_drop_unset_variables() {
    let env = CniEnv::from_map(&without(vars(&add_vars()), "CNI_ARGS")).unwrap();
    let delegated: HashMap<&str, Option<String>> =
        env.delegate_vars(Command::Del).into_iter().collect();
    assert_eq!(delegated["CNI_COMMAND"].as_deref(), Some("DEL"));
    assert_eq!(
        delegated["CNI_CONTAINERID"].as_deref(),
        Some("3f2a9c0d_b.e-1")
    );
    assert_eq!(
        delegated["CNI_PATH"].as_deref(),
        Some("/opt/cni/bin::/usr/lib/cni")
    );
    assert_eq!(delegated["CNI_ARGS"], None);
}

#[test]
fn cni_args_parse_known_keys_and_keep_unknown_ones() {
    let args = CniArgs::parse("IP=198.18.5.7;K8S_POD_NAME=db;FOO=bar;;ABC=1=2").unwrap();
    assert_eq!(args.ip, Some("198.18.5.7".parse::<IpAddr>().unwrap()));
    assert_eq!(args.k8s_pod_name.as_deref(), Some("db"));
    assert_eq!(args.k8s_pod_namespace, None);
    assert!(!args.is_kubernetes());
    assert!(!args.ignore_unknown);
    assert_eq!(args.other.get("FOO").map(String::as_str), Some("bar"));
    assert_eq!(args.other.get("ABC").map(String::as_str), Some("1=2"));

    let v6 = CniArgs::parse("IP=fd00:198:18::7;IgnoreUnknown=true").unwrap();
    assert_eq!(v6.ip, Some("fd00:198:18::7".parse::<IpAddr>().unwrap()));
    assert!(v6.ignore_unknown);

    assert_eq!(CniArgs::parse("").unwrap(), CniArgs::default());
}

#[test]
fn malformed_cni_args_are_invalid_environment_naming_the_pair() {
    for (text, pair) in [
        ("K8S_POD_NAME=db;NOEQUALS", "NOEQUALS"),
        ("=value", "=value"),
        ("IP=198.18.5.300", "IP=198.18.5.300"),
        ("IP=198.18.5.0/24", "IP=198.18.5.0/24"),
        ("IgnoreUnknown=maybe", "IgnoreUnknown=maybe"),
    ] {
        let error = CniArgs::parse(text).unwrap_err();
        assert_eq!(
            error.code,
            CniError::INVALID_ENVIRONMENT_VARIABLES,
            "{text}"
        );
        assert!(error.msg.contains(pair), "{text}: {error:?}");
    }
    // Through the whole environment, too.
    let mut map = vars(&add_vars());
    map.insert("CNI_ARGS".into(), "BROKEN".into());
    let error = CniEnv::from_map(&map).unwrap_err();
    assert!(
        error.msg.contains("CNI_ARGS") && error.msg.contains("BROKEN"),
        "{error:?}"
    );
}
