//! `[tracing]` parsing, validation and environment overrides.

use std::collections::HashMap;

use dspans_otlp::{build_exporter, Compression, ExportOptions, OptionsError, Protocol};

fn parse(toml_text: &str) -> Result<ExportOptions, toml::de::Error> {
    toml::from_str(toml_text)
}

fn env(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
    let map: HashMap<String, String> = pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    move |k| map.get(k).cloned()
}

#[test]
fn zuul_table_parses_with_defaults() {
    let o = parse(
        r#"
        enabled = true
        endpoint = "http://localhost:4317"
        service_name = "zuultest"
        "#,
    )
    .unwrap();
    o.validate().unwrap();
    assert!(o.enabled);
    assert_eq!(o.protocol, Protocol::Grpc);
    assert_eq!(o.service_name(), "zuultest");
    assert_eq!(o.timeout().as_millis(), 10_000);
    assert_eq!(o.traces_endpoint(), "http://localhost:4317");

    let d = parse("").unwrap();
    assert!(!d.enabled);
    assert_eq!(d.service_name(), "dspans");
    assert_eq!(d.traces_endpoint(), "http://localhost:4317");
}

#[test]
fn enabled_follows_zuuls_truth_rule() {
    for yes in ["\"1\"", "\"on\"", "\"Yes\"", "\"TRUE\"", "true", "1"] {
        assert!(parse(&format!("enabled = {yes}")).unwrap().enabled, "{yes}");
    }
    for no in ["\"0\"", "\"off\"", "\"nope\"", "false", "0"] {
        assert!(!parse(&format!("enabled = {no}")).unwrap().enabled, "{no}");
    }
}

#[test]
fn all_options_parse() {
    let o = parse(
        r#"
        enabled = "yes"
        protocol = "grpc"
        endpoint = "https://collector:4317"
        service_name = "svc"
        tls_ca = "/etc/ca.pem"
        tls_cert = "/etc/cert.pem"
        tls_key = "/etc/key.pem"
        insecure = "false"
        timeout = "2500"
        compression = "gzip"
        "#,
    )
    .unwrap();
    o.validate().unwrap();
    assert_eq!(o.timeout().as_millis(), 2500);
    assert_eq!(o.compression, Some(Compression::Gzip));
    assert_eq!(o.insecure, Some(false));
}

#[test]
fn unknown_fields_and_values_are_refused() {
    let e = parse("enabled = true\nendpont = \"x\"").unwrap_err();
    assert!(e.to_string().contains("endpont"), "{e}");
    let e = parse("protocol = \"http/json\"").unwrap_err();
    assert!(e.to_string().contains("unknown OTLP protocol"), "{e}");
    let e = parse("compression = \"brotli\"").unwrap_err();
    assert!(e.to_string().contains("compression"), "{e}");
    let e = parse("timeout = -5").unwrap_err();
    assert!(e.to_string().contains("negative"), "{e}");
    let e = parse("timeout = \"soon\"").unwrap_err();
    assert!(e.to_string().contains("milliseconds"), "{e}");
}

#[test]
fn protocol_specific_options_are_checked() {
    let cases = [
        (
            "protocol = \"http/protobuf\"\ntls_ca = \"ca.pem\"",
            "tls_ca",
        ),
        (
            "protocol = \"http/protobuf\"\ntls_cert = \"c.pem\"",
            "tls_cert",
        ),
        (
            "protocol = \"http/protobuf\"\ntls_key = \"k.pem\"",
            "tls_key",
        ),
        ("protocol = \"http/protobuf\"\ninsecure = true", "insecure"),
        (
            "protocol = \"grpc\"\ncertificate_file = \"ca.pem\"",
            "certificate_file",
        ),
        ("certificate_file = \"ca.pem\"", "certificate_file"),
    ];
    for (text, option) in cases {
        let o = parse(text).unwrap();
        match o.validate() {
            Err(e @ OptionsError::WrongProtocol { .. }) => {
                assert!(e.to_string().contains(option), "{e}")
            }
            other => panic!("{text}: expected WrongProtocol, got {other:?}"),
        }
        // build_exporter validates too.
        assert!(build_exporter(&o).is_err());
    }
    let conflicts = [
        "tls_cert = \"c.pem\"",
        "insecure = true\ntls_ca = \"ca.pem\"",
        "timeout = 0",
    ];
    for text in conflicts {
        assert!(
            matches!(
                parse(text).unwrap().validate(),
                Err(OptionsError::Conflict(_))
            ),
            "{text}"
        );
    }
    let bad_endpoints = [
        "protocol = \"http/protobuf\"\nendpoint = \"collector:4318\"",
        "endpoint = \"ftp://collector\"",
        "endpoint = \"http://\"",
    ];
    for text in bad_endpoints {
        assert!(
            matches!(
                parse(text).unwrap().validate(),
                Err(OptionsError::Endpoint { .. })
            ),
            "{text}"
        );
    }
    // certificate_file is fine with http.
    parse("protocol = \"http/protobuf\"\ncertificate_file = \"ca.pem\"")
        .unwrap()
        .validate()
        .unwrap();
}

#[test]
fn http_endpoint_gets_the_traces_path_once() {
    let o = parse("protocol = \"http/protobuf\"\nendpoint = \"http://c:4318/\"").unwrap();
    assert_eq!(o.traces_endpoint(), "http://c:4318/v1/traces");
    let o = parse("protocol = \"http/protobuf\"\nendpoint = \"http://c:4318/v1/traces\"").unwrap();
    assert_eq!(o.traces_endpoint(), "http://c:4318/v1/traces");
    let o = parse("protocol = \"http/protobuf\"\nendpoint = \"http://c/otlp\"").unwrap();
    assert_eq!(o.traces_endpoint(), "http://c/otlp/v1/traces");
    let o = parse("protocol = \"http/protobuf\"").unwrap();
    assert_eq!(o.traces_endpoint(), "http://localhost:4318/v1/traces");
}

#[test]
fn env_overrides_the_file() {
    let mut o = parse(
        r#"
        enabled = true
        protocol = "grpc"
        endpoint = "http://file:4317"
        service_name = "from-file"
        timeout = 1000
        "#,
    )
    .unwrap();
    o.apply_env(env(&[
        ("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf"),
        ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://env:4318"),
        ("OTEL_SERVICE_NAME", "from-env"),
        ("OTEL_EXPORTER_OTLP_TIMEOUT", "3000"),
        ("OTEL_EXPORTER_OTLP_COMPRESSION", "gzip"),
        (
            "OTEL_EXPORTER_OTLP_HEADERS",
            "Authorization=Bearer%20t,x-team=ci",
        ),
    ]))
    .unwrap();
    o.validate().unwrap();
    assert_eq!(o.protocol, Protocol::HttpProtobuf);
    assert_eq!(o.traces_endpoint(), "http://env:4318/v1/traces");
    assert_eq!(o.service_name(), "from-env");
    assert_eq!(o.timeout().as_millis(), 3000);
    assert_eq!(o.compression, Some(Compression::Gzip));
    assert_eq!(o.headers["authorization"], "Bearer t");
    assert_eq!(o.headers["x-team"], "ci");
    assert!(o.enabled, "env does not touch `enabled`");
}

#[test]
fn traces_specific_env_wins_and_is_used_as_is() {
    let mut o = parse("protocol = \"grpc\"\nendpoint = \"http://file:4317\"").unwrap();
    o.apply_env(env(&[
        ("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc"),
        ("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", "http/protobuf"),
        ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://general:4318"),
        (
            "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
            "http://traces:9999/custom",
        ),
        ("OTEL_EXPORTER_OTLP_TIMEOUT", "3000"),
        ("OTEL_EXPORTER_OTLP_TRACES_TIMEOUT", "4000"),
        ("OTEL_EXPORTER_OTLP_COMPRESSION", "gzip"),
        ("OTEL_EXPORTER_OTLP_TRACES_COMPRESSION", "none"),
    ]))
    .unwrap();
    assert_eq!(o.protocol, Protocol::HttpProtobuf);
    assert_eq!(o.traces_endpoint(), "http://traces:9999/custom");
    assert_eq!(o.timeout().as_millis(), 4000);
    assert_eq!(o.compression, None);
}

#[test]
fn empty_env_values_are_unset_and_bad_ones_refused() {
    let mut o = parse("service_name = \"file\"\ntimeout = 700").unwrap();
    o.apply_env(env(&[
        ("OTEL_SERVICE_NAME", ""),
        ("OTEL_EXPORTER_OTLP_TIMEOUT", " "),
    ]))
    .unwrap();
    assert_eq!(o.service_name(), "file");
    assert_eq!(o.timeout().as_millis(), 700);

    for (var, value) in [
        ("OTEL_EXPORTER_OTLP_PROTOCOL", "http/json"),
        ("OTEL_EXPORTER_OTLP_TIMEOUT", "10s"),
        ("OTEL_EXPORTER_OTLP_COMPRESSION", "zstd"),
        ("OTEL_EXPORTER_OTLP_HEADERS", "novalue"),
    ] {
        let mut o = ExportOptions::default();
        match o.apply_env(env(&[(var, value)])) {
            Err(e @ OptionsError::Env { .. }) => assert!(e.to_string().contains(var), "{e}"),
            other => panic!("{var}={value}: {other:?}"),
        }
    }
}

#[test]
fn env_can_make_file_options_invalid() {
    // tls_ca in the file, protocol switched to http by env: refused.
    let mut o = parse("tls_ca = \"ca.pem\"").unwrap();
    o.apply_env(env(&[("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf")]))
        .unwrap();
    assert!(matches!(
        o.validate(),
        Err(OptionsError::WrongProtocol { .. })
    ));
}

#[test]
fn missing_tls_files_give_a_clear_error() {
    let o =
        parse("endpoint = \"https://collector:4317\"\ntls_ca = \"/nonexistent/ca.pem\"").unwrap();
    let e = build_exporter(&o).unwrap_err();
    assert!(e.to_string().contains("tls_ca"), "{e}");
    assert!(e.to_string().contains("/nonexistent/ca.pem"), "{e}");

    let dir = tempfile::tempdir().unwrap();
    let junk = dir.path().join("junk.pem");
    std::fs::write(&junk, "not a certificate").unwrap();
    let o = ExportOptions {
        protocol: Protocol::HttpProtobuf,
        endpoint: Some("https://collector:4318".into()),
        certificate_file: Some(junk),
        ..Default::default()
    };
    let e = build_exporter(&o).unwrap_err();
    assert!(e.to_string().contains("certificate_file"), "{e}");
}
