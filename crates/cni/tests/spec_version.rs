//! VERSION output, version parsing, verb gating per version, and the error JSON.

use calico_cni::spec::version::{requested_version, supported_versions, version_json};
use calico_cni::spec::{CniError, CniVersion, Command};
use serde_json::json;

#[test]
fn version_output_echoes_the_requested_version() {
    assert_eq!(
        version_json(Some("0.4.0")),
        json!({
            "cniVersion": "0.4.0",
            "supportedVersions": ["0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0"]
        })
    );
}

#[test]
fn version_output_defaults_to_the_latest_version() {
    assert_eq!(version_json(None)["cniVersion"], json!("1.1.0"));
    assert_eq!(version_json(Some(""))["cniVersion"], json!("1.1.0"));
}

#[test]
fn requested_version_reads_stdin_leniently() {
    assert_eq!(requested_version(b"").unwrap(), None);
    assert_eq!(requested_version(b"  \n").unwrap(), None);
    assert_eq!(requested_version(b"{}").unwrap(), None);
    assert_eq!(
        requested_version(br#"{"cniVersion":"1.0.0"}"#).unwrap(),
        Some("1.0.0".to_owned())
    );
    let error = requested_version(b"{not json").unwrap_err();
    assert_eq!(error.code, CniError::DECODING_FAILURE);
}

#[test]
fn parses_supported_versions_and_rejects_others_naming_them() {
    for text in supported_versions() {
        assert_eq!(CniVersion::parse(text).unwrap().as_str(), text);
    }
    for text in ["0.1.0", "0.2.0", "1.2.0", "2.0.0", "1.0", "latest"] {
        let error = CniVersion::parse(text).unwrap_err();
        assert_eq!(error.code, CniError::INCOMPATIBLE_CNI_VERSION, "{text}");
        assert!(error.msg.contains(text), "{error:?}");
        assert!(
            error.details.contains("0.3.0, 0.3.1, 0.4.0, 1.0.0, 1.1.0"),
            "{error:?}"
        );
    }
}

#[test]
fn a_config_without_cni_version_is_incompatible() {
    let error = CniVersion::parse_config_field(None).unwrap_err();
    assert_eq!(error.code, CniError::INCOMPATIBLE_CNI_VERSION);
    assert!(error.msg.contains("no cniVersion"), "{error:?}");
}

#[test]
fn verbs_exist_from_the_version_that_introduced_them() {
    use CniVersion::*;
    for version in CniVersion::ALL {
        assert!(version.check_command(Command::Add).is_ok());
        assert!(version.check_command(Command::Del).is_ok());
        assert!(version.check_command(Command::Version).is_ok());
    }
    for version in [V0_3_0, V0_3_1] {
        let error = version.check_command(Command::Check).unwrap_err();
        assert_eq!(error.code, CniError::INCOMPATIBLE_CNI_VERSION);
        assert!(error.msg.contains("CHECK"), "{error:?}");
        assert!(error.details.contains("0.4.0"), "{error:?}");
    }
    for version in [V0_4_0, V1_0_0, V1_1_0] {
        assert!(version.check_command(Command::Check).is_ok(), "{version}");
    }
    for command in [Command::Status, Command::Gc] {
        for version in [V0_3_0, V0_3_1, V0_4_0, V1_0_0] {
            let error = version.check_command(command).unwrap_err();
            assert_eq!(error.code, CniError::INCOMPATIBLE_CNI_VERSION);
            assert!(error.msg.contains(command.as_str()), "{error:?}");
            assert!(!version.defines(command));
        }
        assert!(V1_1_0.check_command(command).is_ok());
    }
}

#[test]
fn error_json_has_the_spec_keys() {
    let error = CniError::invalid_config(
        "Invalid Configuration",
        "Network 198.18.0.0/31 too small to allocate from.",
    );
    assert_eq!(
        error.to_json("1.1.0"),
        json!({
            "cniVersion": "1.1.0",
            "code": 7,
            "msg": "Invalid Configuration",
            "details": "Network 198.18.0.0/31 too small to allocate from."
        })
    );
    assert_eq!(CniError::from_json(&error.to_json("1.1.0")), Some(error));
}

#[test]
fn error_codes_match_the_spec_table() {
    assert_eq!(CniError::INCOMPATIBLE_CNI_VERSION, 1);
    assert_eq!(CniError::UNSUPPORTED_FIELD, 2);
    assert_eq!(CniError::UNKNOWN_CONTAINER, 3);
    assert_eq!(CniError::INVALID_ENVIRONMENT_VARIABLES, 4);
    assert_eq!(CniError::IO_FAILURE, 5);
    assert_eq!(CniError::DECODING_FAILURE, 6);
    assert_eq!(CniError::INVALID_NETWORK_CONFIG, 7);
    assert_eq!(CniError::TRY_AGAIN_LATER, 11);
    assert_eq!(CniError::PLUGIN_NOT_AVAILABLE, 50);
    assert_eq!(CniError::PLUGIN_NOT_AVAILABLE_LIMITED_CONNECTIVITY, 51);
}

#[test]
fn error_from_json_needs_a_numeric_code() {
    assert_eq!(CniError::from_json(&json!({"msg": "no code"})), None);
    assert_eq!(CniError::from_json(&json!("text")), None);
    let parsed = CniError::from_json(&json!({"code": 999, "msg": "boom"})).unwrap();
    assert_eq!(
        (parsed.code, parsed.msg.as_str(), parsed.details.as_str()),
        (999, "boom", "")
    );
}
