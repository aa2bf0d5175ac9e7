//! `dspans span` as a user runs it: separate processes, a real OTLP
//! receiver, and the saved JSON as the only state between them.

use std::path::Path;
use std::process::Output;
use std::time::Duration;

use dspans_test_support::TestReceiver;
use durable_spans::{SpanInfo, Timestamp};

fn dspans(args: &[&str], stdin: Option<&str>, env: &[(&str, &str)]) -> Output {
    crate::support::dspans_with(args, stdin, env)
}

fn ok(output: Output) -> String {
    assert!(
        output.status.success(),
        "dspans failed: {}\n{}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).unwrap()
}

/// How long a test waits for spans to arrive.
const WAIT: Duration = Duration::from_secs(20);

fn write(dir: &Path, name: &str, text: &str) -> String {
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path.to_str().unwrap().to_string()
}

fn secs(t: f64) -> u64 {
    Timestamp::from_secs_f64(t).unwrap().as_nanos() as u64
}

#[test]
fn a_span_started_in_one_process_is_ended_in_another() {
    let collector = TestReceiver::start();
    let dir = tempfile::tempdir().unwrap();
    let buildset = ok(dspans(
        &["span", "start", "BuildSet", "--start-time", "1700000000.5"],
        None,
        &[],
    ));
    let buildset_file = write(dir.path(), "buildset.json", &buildset);
    let build = ok(dspans(
        &[
            "span",
            "start",
            "Build",
            "--parent-info",
            &buildset_file,
            "--start-time",
            "1700000010.25",
        ],
        None,
        &[],
    ));
    assert_eq!(build.lines().count(), 1, "one line of JSON");
    let saved = SpanInfo::from_json(&build).unwrap().unwrap();
    let parent = SpanInfo::from_json(&buildset).unwrap().unwrap();
    assert_eq!(saved.start_time.as_nanos() as u64, secs(1_700_000_010.25));
    assert!(
        build.contains("\"start_time\":1700000010249999872"),
        "integer nanoseconds: {build}"
    );
    assert!(collector.spans().is_empty(), "starting exports nothing");

    let endpoint = collector.endpoint();
    ok(dspans(
        &[
            "span",
            "end",
            "-",
            "--end-time",
            "1700000070.25",
            "--attr",
            "result=SUCCESS",
            "--otlp-endpoint",
            &endpoint,
            "--service-name",
            "ci",
        ],
        Some(&build),
        &[],
    ));
    let spans = collector.wait_for_spans(1, WAIT);
    assert_eq!(spans.len(), 1);
    let span = &spans[0];
    assert_eq!(span.name, "Build");
    assert_eq!(span.trace_id, parent.trace_id.to_be_bytes());
    assert_eq!(span.span_id, saved.span_id.to_be_bytes());
    assert_eq!(span.parent_span_id, parent.span_id.to_be_bytes());
    assert_eq!(
        span.flags & 0x300,
        0x300,
        "restored like restoreSpan: the parent is remote"
    );
    assert_eq!(span.start_time_unix_nano, secs(1_700_000_010.25));
    assert_eq!(span.end_time_unix_nano, secs(1_700_000_070.25));
    let request = &collector.requests()[0];
    let resource = request.resource_spans[0].resource.as_ref().unwrap();
    assert_eq!(resource.attributes[0].key, "service.name");
}

#[test]
fn children_in_a_context_and_http_via_the_environment() {
    let collector = TestReceiver::start();
    let info = ok(dspans(&["span", "start", "Build"], None, &[]));
    let traceparent = ok(dspans(
        &["span", "context", "--format", "traceparent"],
        Some(&info),
        &[],
    ));
    let zuul_context = ok(dspans(&["span", "context"], Some(&info), &[]));
    assert!(zuul_context.len() <= 101, "{zuul_context}");
    let saved = SpanInfo::from_json(&info).unwrap().unwrap();
    let env = [
        ("OTEL_EXPORTER_OTLP_ENDPOINT", collector.http_endpoint()),
        ("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf".into()),
    ];
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    ok(dspans(
        &[
            "span",
            "child",
            "JobExecution",
            "--context",
            traceparent.trim(),
            "--start-time",
            "1700000011",
            "--end-time",
            "1700000012.5",
            "--attr",
            "hostname=ze01",
        ],
        None,
        &env,
    ));
    ok(dspans(
        &[
            "span",
            "child",
            "MergerJob",
            "--context",
            zuul_context.trim(),
        ],
        None,
        &env,
    ));
    let spans = collector.wait_for_spans(2, WAIT);
    for span in &spans {
        assert_eq!(span.trace_id, saved.trace_id.to_be_bytes(), "{}", span.name);
        assert_eq!(
            span.parent_span_id,
            saved.span_id.to_be_bytes(),
            "{}",
            span.name
        );
    }
    let job = spans.iter().find(|s| s.name == "JobExecution").unwrap();
    assert_eq!(job.start_time_unix_nano, 1_700_000_011);
    assert_eq!(job.end_time_unix_nano, secs(1_700_000_012.5));

    let saved_child = ok(dspans(
        &[
            "span",
            "child",
            "JobRun",
            "--context",
            traceparent.trim(),
            "--save",
        ],
        None,
        &[],
    ));
    let child = SpanInfo::from_json(&saved_child).unwrap().unwrap();
    assert_eq!(child.parent.unwrap().span_id, saved.span_id);
    assert!(child.parent.unwrap().is_remote);
}

#[test]
fn the_kind_given_at_start_is_exported_at_the_end() {
    use dspans_otlp::proto::trace::v1::span::SpanKind;

    let collector = TestReceiver::start();
    let endpoint = collector.endpoint();
    let internal = ok(dspans(&["span", "start", "Build"], None, &[]));
    assert!(!internal.contains("\"kind\""), "Zuul's format: {internal}");
    let item = ok(dspans(
        &["span", "start", "QueueItem", "--kind", "server"],
        None,
        &[],
    ));
    assert!(item.trim_end().ends_with(r#","kind":"server"}"#), "{item}");
    ok(dspans(
        &["span", "end", "-", "--otlp-endpoint", &endpoint],
        Some(&item),
        &[],
    ));
    let context = ok(dspans(&["span", "context"], Some(&item), &[]));
    let child = [
        "span",
        "child",
        "fetch",
        "--context",
        context.trim(),
        "--kind",
        "client",
    ];
    ok(dspans(
        &[&child[..], &["--otlp-endpoint", &endpoint]].concat(),
        None,
        &[],
    ));
    let saved_child = ok(dspans(&[&child[..], &["--save"]].concat(), None, &[]));
    let saved_child = SpanInfo::from_json(&saved_child).unwrap().unwrap();
    assert_eq!(saved_child.kind, durable_spans::Kind::Client);

    let spans = collector.wait_for_spans(2, WAIT);
    let kind_of = |name: &str| spans.iter().find(|s| s.name == name).unwrap().kind;
    assert_eq!(kind_of("QueueItem"), SpanKind::Server as i32);
    assert_eq!(kind_of("fetch"), SpanKind::Client as i32);
}

#[test]
fn null_is_a_no_op_and_output_files_hold_otlp_json() {
    let dir = tempfile::tempdir().unwrap();
    let out = dspans(
        &["span", "end", "--otlp-endpoint", "http://127.0.0.1:9"],
        Some("null\n"),
        &[],
    );
    assert!(
        out.status.success(),
        "null exits 0 without contacting anyone"
    );

    let file = dir.path().join("traces.jsonl");
    let file_arg = file.to_str().unwrap();
    let info = ok(dspans(&["span", "start", "QueueItem"], None, &[]));
    ok(dspans(
        &[
            "span",
            "end",
            "--output",
            file_arg,
            "--attr-json",
            r#"{"ref_number": ["1"], "attempt": 2, "ok": true, "ratio": 0.5, "empty": [], "gone": null}"#,
        ],
        Some(&info),
        &[],
    ));
    let requests = dspans_otlp::read_json_lines(&file).unwrap();
    assert_eq!(requests.len(), 1);
    let span = &requests[0].resource_spans[0].scope_spans[0].spans[0];
    let keys: Vec<&str> = span.attributes.iter().map(|kv| kv.key.as_str()).collect();
    assert_eq!(keys, ["ref_number", "attempt", "ok", "ratio", "empty"]);
    let text = std::fs::read_to_string(&file).unwrap();
    let saved = SpanInfo::from_json(&info).unwrap().unwrap();
    assert!(
        text.contains(&format!("\"traceId\":\"{:032x}\"", saved.trace_id)),
        "hex ids: {text}"
    );
}

#[test]
fn errors_are_clear_and_exit_non_zero() {
    let info = ok(dspans(&["span", "start", "QueueItem"], None, &[]));
    let cases: [(&[&str], Option<&str>, &str); 6] = [
        (
            &["span", "end", "--otlp-endpoint", "http://127.0.0.1:9"],
            Some(&info),
            "could not export to http://127.0.0.1:9",
        ),
        (
            &["span", "start", "X", "--attr", "a=b"],
            None,
            "--include-attributes",
        ),
        (
            &[
                "span",
                "end",
                "--output",
                "/dev/null",
                "--attr-json",
                r#"{"m": [1, "a"]}"#,
            ],
            Some(&info),
            "list items",
        ),
        (
            &["span", "end", "--output", "/dev/null"],
            Some("{\"name\": 1}"),
            "span info from stdin",
        ),
        (
            &[
                "span",
                "child",
                "X",
                "--context",
                "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            ],
            None,
            "all-zero",
        ),
        (
            &["span", "start", "X", "--start-time", "yesterday"],
            None,
            "float seconds",
        ),
    ];
    for (args, stdin, message) in cases {
        let out = dspans(args, stdin, &[]);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{args:?} must fail");
        assert!(stderr.contains(message), "{args:?}: {stderr}");
    }
    let with_attrs = ok(dspans(
        &[
            "span",
            "start",
            "X",
            "--attr",
            "a=b",
            "--include-attributes",
        ],
        None,
        &[],
    ));
    assert!(with_attrs.contains("\"attributes\":{\"a\":\"b\"}"));
}

/// Mistakes in the arguments are usage errors (exit status 2, as clap's own)
/// that say what was wrong; nothing is exported.
#[test]
fn argument_mistakes_exit_2_and_say_what_is_wrong() {
    let dir = tempfile::tempdir().unwrap();
    let out_file = dir.path().join("out.jsonl");
    let out_arg = out_file.display().to_string();
    let info = ok(dspans(
        &["span", "start", "deploy", "--start-time", "1700000100.0"],
        None,
        &[],
    ));
    let saved = write(dir.path(), "deploy.json", &info);
    let context = r#"{"trace_id": 1, "span_id": 2, "trace_flags": 1}"#;
    let cases: Vec<(Vec<&str>, &str)> = vec![
        (
            vec!["span", "end", &saved, "--attr", "novalue"],
            "KEY=VALUE",
        ),
        (vec!["span", "end", &saved, "--attr", "=x"], "KEY=VALUE"),
        (vec!["span", "start", "X", "--attr", "a"], "KEY=VALUE"),
        (vec!["span", "start", "X", "--kind", "gateway"], "--kind"),
        (
            vec![
                "span",
                "start",
                "X",
                "--link-context",
                context,
                "--link-attr",
                "rel",
            ],
            "KEY=VALUE",
        ),
        (
            vec![
                "span",
                "end",
                &saved,
                "--end-time",
                "1700000099.5",
                "--output",
                &out_arg,
            ],
            "before the span's start",
        ),
        (
            vec![
                "span",
                "child",
                "c",
                "--context",
                context,
                "--start-time",
                "1700000100.0",
                "--end-time",
                "1700000050.0",
                "--output",
                &out_arg,
            ],
            "before the span's start",
        ),
    ];
    for (args, message) in cases {
        let out = dspans(&args, None, &[]);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {stderr}");
        assert!(stderr.contains(message), "{args:?}: {stderr}");
    }
    assert!(!out_file.exists(), "a refused command exported a span");
}
