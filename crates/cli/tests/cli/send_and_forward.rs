//! Traces into the user's own backend: `dspans send` replays a file,
//! `dspans demo` forwards its traces to OTEL_EXPORTER_OTLP_ENDPOINT, and
//! export mistakes (a wrong port, TLS to a plaintext collector) get hints.

use std::collections::BTreeSet;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use dspans_otlp::proto::trace::v1::Span;
use dspans_test_support::TestReceiver;

use crate::support::{dspans_with, DSPANS};

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// Each span's ids, once.
fn ids(spans: &[Span]) -> BTreeSet<(Vec<u8>, Vec<u8>)> {
    spans
        .iter()
        .map(|s| (s.trace_id.clone(), s.span_id.clone()))
        .collect()
}

fn demo(dir: &Path, env: &[(&str, &str)]) -> std::process::Output {
    let mut command = Command::new(DSPANS);
    command
        .args(["demo", "--items", "2", "--dir"])
        .arg(dir)
        .env_remove("OTEL_EXPORTER_OTLP_ENDPOINT")
        .envs(env.iter().copied());
    command.output().unwrap()
}

#[test]
fn the_demo_forwards_its_traces_and_send_replays_them() {
    let backend = TestReceiver::start();
    let dir = tempfile::tempdir().unwrap();
    let run = dir.path().join("run");
    let out = demo(
        &run,
        &[("OTEL_EXPORTER_OTLP_ENDPOINT", &backend.endpoint())],
    );
    assert!(
        out.status.success(),
        "{}\n{}",
        text(&out.stdout),
        text(&out.stderr)
    );
    let requests = dspans_otlp::read_json_lines(run.join("traces.jsonl")).unwrap();
    let in_file = dspans_otlp::receiver::spans_of(&requests);
    assert!(text(&out.stdout).contains(&format!("sent {} spans", in_file.len())));
    let forwarded = backend.spans();
    assert_eq!(forwarded.len(), in_file.len(), "each span once");
    assert_eq!(ids(&forwarded), ids(&in_file));

    // The same file, replayed into another backend: the same spans.
    let other = TestReceiver::start();
    let traces = run.join("traces.jsonl");
    let out = dspans_with(
        &[
            "send",
            traces.to_str().unwrap(),
            "--otlp-endpoint",
            &other.endpoint(),
        ],
        None,
        &[],
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(text(&out.stdout).contains(&format!("sent {} span(s)", in_file.len())));
    assert_eq!(
        other.requests(),
        backend.requests(),
        "the same requests: spans, resources and scopes"
    );

    // A second run in the same directory is refused: it never mixes runs.
    let again = demo(&run, &[]);
    assert_eq!(again.status.code(), Some(2), "{}", text(&again.stderr));
    assert!(text(&again.stderr).contains("earlier demo run"));
}

#[test]
fn a_demo_whose_backend_is_away_says_so_and_fails() {
    let dir = tempfile::tempdir().unwrap();
    let started = Instant::now();
    let out = demo(
        &dir.path().join("run"),
        &[("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:9")],
    );
    assert!(!out.status.success());
    assert!(started.elapsed() < Duration::from_secs(60));
    let stderr = text(&out.stderr);
    assert!(stderr.contains("127.0.0.1:9"), "{stderr}");
    // The demo's own traces are complete all the same.
    assert!(text(&out.stdout).contains("saved spans left open:                 0"));
}

#[test]
fn export_mistakes_get_a_hint() {
    let receiver = TestReceiver::start();
    let check = |args: &[&str]| {
        let mut all = vec!["span", "check"];
        all.extend_from_slice(args);
        let out = dspans_with(&all, None, &[]);
        assert_eq!(out.status.code(), Some(1), "{}", text(&out.stdout));
        text(&out.stderr)
    };
    let grpc_to_http = check(&["--otlp-endpoint", &receiver.http_endpoint()]);
    assert!(grpc_to_http.contains("OTLP/HTTP port"), "{grpc_to_http}");
    let http_to_grpc = check(&[
        "--otlp-protocol",
        "http/protobuf",
        "--otlp-endpoint",
        &receiver.endpoint(),
    ]);
    assert!(http_to_grpc.contains("OTLP/gRPC port"), "{http_to_grpc}");
    let schemeless = receiver.grpc_addr().to_string();
    let tls_to_plaintext = check(&["--otlp-endpoint", &schemeless]);
    assert!(
        tls_to_plaintext.contains("does not speak TLS"),
        "{tls_to_plaintext}"
    );
}
