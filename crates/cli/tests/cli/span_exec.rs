//! `dspans span exec`, the TRACEPARENT carrier, env files between CI
//! steps, one end per file, events, status and `span check`: separate
//! processes and a real OTLP receiver.

use std::path::Path;
use std::process::Output;
use std::time::Duration;

use dspans_otlp::proto::common::v1::any_value::Value;
use dspans_otlp::proto::trace::v1::span::SpanKind;
use dspans_otlp::proto::trace::v1::status::StatusCode;
use dspans_otlp::proto::trace::v1::Span;
use dspans_test_support::{attr, string, TestReceiver};
use durable_spans::SpanContext;

const WAIT: Duration = Duration::from_secs(20);

fn dspans(args: &[&str], stdin: Option<&str>, env: &[(&str, &str)]) -> Output {
    crate::support::dspans_with(args, stdin, env)
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn status_of(span: &Span) -> StatusCode {
    span.status.as_ref().map_or(StatusCode::Unset, |s| s.code())
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The traceparent a command saw, from the environment it wrote out.
fn traceparent_in(env_dump: &Path) -> SpanContext {
    let env = std::fs::read_to_string(env_dump).unwrap();
    let line = env
        .lines()
        .find_map(|l| l.strip_prefix("TRACEPARENT="))
        .unwrap_or_else(|| panic!("no TRACEPARENT in {env}"));
    SpanContext::from_traceparent(line).unwrap()
}

#[test]
fn exec_times_the_command_records_its_exit_and_hands_it_traceparent() {
    let otlp = TestReceiver::start();
    let endpoint = otlp.endpoint();
    let dir = tempfile::tempdir().unwrap();
    let env_dump = dir.path().join("env");
    let script = format!(
        "env > {}; read line; echo \"got $line\"; sleep 0.3; exit 3",
        env_dump.display()
    );
    let out = dspans(
        &[
            "span",
            "exec",
            "unit",
            "--otlp-endpoint",
            &endpoint,
            "--",
            "sh",
            "-c",
            &script,
        ],
        Some("hello\n"),
        &[],
    );
    assert_eq!(out.status.code(), Some(3), "{}", text(&out.stderr));
    assert_eq!(
        text(&out.stdout),
        "got hello\n",
        "stdin and stdout pass through"
    );
    let spans = otlp.wait_for_spans(1, WAIT);
    let span = &spans[0];
    assert_eq!(span.name, "unit");
    assert!(
        span.end_time_unix_nano - span.start_time_unix_nano >= 300_000_000,
        "the span lasts as long as the command"
    );
    assert_eq!(status_of(span), StatusCode::Error);
    assert_eq!(
        attr(&span.attributes, "process.exit.code"),
        Some(&Value::IntValue(3))
    );
    let seen = traceparent_in(&env_dump);
    assert_eq!(seen.trace_id.to_be_bytes().to_vec(), span.trace_id);
    assert_eq!(seen.span_id.to_be_bytes().to_vec(), span.span_id);

    // Killed by a signal: 128 + 15, and an error.
    let out = dspans(
        &[
            "span",
            "exec",
            "killed",
            "--otlp-endpoint",
            &endpoint,
            "--",
            "sh",
            "-c",
            "kill -TERM $$",
        ],
        None,
        &[],
    );
    assert_eq!(out.status.code(), Some(143), "{}", text(&out.stderr));
    let spans = otlp.wait_for_spans(2, WAIT);
    let killed = spans.iter().find(|s| s.name == "killed").unwrap();
    assert_eq!(status_of(killed), StatusCode::Error);

    // A collector that is away changes nothing but a warning.
    let out = dspans(
        &[
            "span",
            "exec",
            "offline",
            "--otlp-endpoint",
            "http://127.0.0.1:9",
            "--",
            "true",
        ],
        None,
        &[],
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert!(
        text(&out.stderr).contains("not exported"),
        "{}",
        text(&out.stderr)
    );
}

#[test]
fn the_parent_comes_from_traceparent_and_an_invalid_one_is_ignored() {
    let otlp = TestReceiver::start();
    let endpoint = otlp.endpoint();
    let parent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
    let out = dspans(
        &["span", "child", "step", "--otlp-endpoint", &endpoint],
        None,
        &[("TRACEPARENT", parent)],
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    let out = dspans(
        &["span", "child", "orphan", "--otlp-endpoint", &endpoint],
        None,
        &[("TRACEPARENT", "00-not-a-context")],
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(
        text(&out.stderr).contains("invalid TRACEPARENT"),
        "{}",
        text(&out.stderr)
    );
    let spans = otlp.wait_for_spans(2, WAIT);
    let step = spans.iter().find(|s| s.name == "step").unwrap();
    assert_eq!(hex(&step.trace_id), "4bf92f3577b34da6a3ce929d0e0e4736");
    assert_eq!(hex(&step.parent_span_id), "00f067aa0ba902b7");
    let orphan = spans.iter().find(|s| s.name == "orphan").unwrap();
    assert!(orphan.parent_span_id.is_empty(), "a root span");
    assert_ne!(hex(&orphan.trace_id), "4bf92f3577b34da6a3ce929d0e0e4736");
}

/// The README's three CI steps, each its own process with its own
/// environment: only the env file passes between them.
#[test]
fn three_ci_steps_share_one_trace_through_an_env_file() {
    let otlp = TestReceiver::start();
    let endpoint = otlp.endpoint();
    let dir = tempfile::tempdir().unwrap();
    let env_file = dir.path().join("github_env");
    let env_path = env_file.to_str().unwrap();
    // Step 1: the pipeline's root span.
    let out = dspans(
        &[
            "span",
            "start",
            "pipeline",
            "--kind",
            "server",
            "--env-file",
            env_path,
            "--print",
            "hex",
        ],
        None,
        &[],
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    let printed = text(&out.stdout);
    let (root_trace, root_span) = printed.trim().split_once(' ').unwrap();
    // The runner loads the env file into the next steps' environments.
    let vars: Vec<(String, String)> = std::fs::read_to_string(&env_file)
        .unwrap()
        .lines()
        .map(|l| {
            let (k, v) = l.split_once('=').unwrap();
            (k.to_string(), v.to_string())
        })
        .collect();
    let env: Vec<(&str, &str)> = vars.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    // Step 2, on another runner: a command as a child span.
    let out = dspans(
        &[
            "span",
            "exec",
            "build",
            "--otlp-endpoint",
            &endpoint,
            "--",
            "true",
        ],
        None,
        &env,
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    // Step 3: ends the root, from the span info the env file carries.
    let info = vars.iter().find(|(k, _)| k == "DSPANS_SPAN_INFO").unwrap();
    let out = dspans(
        &["span", "end", "-", "--otlp-endpoint", &endpoint],
        Some(&info.1),
        &env,
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    let spans = otlp.wait_for_spans(2, WAIT);
    let root = spans.iter().find(|s| s.name == "pipeline").unwrap();
    let build = spans.iter().find(|s| s.name == "build").unwrap();
    assert_eq!(
        (hex(&root.trace_id).as_str(), hex(&root.span_id).as_str()),
        (root_trace, root_span)
    );
    assert_eq!(root.kind(), SpanKind::Server);
    assert_eq!(build.trace_id, root.trace_id, "one trace");
    assert_eq!(build.parent_span_id, root.span_id);
}

#[test]
fn a_file_ends_once_and_carries_its_events_and_status() {
    let otlp = TestReceiver::start();
    let endpoint = otlp.endpoint();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("build.json");
    let path = file.to_str().unwrap();
    let out = dspans(
        &["span", "start", "Build", "--kind", "client", "--save", path],
        None,
        &[],
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    for (name, extra) in [
        ("checkout", "--attr=ref=main"),
        ("cache-miss", "--attr-json={\"bytes\": 512}"),
    ] {
        let out = dspans(&["span", "event", path, name, extra], None, &[]);
        assert!(out.status.success(), "{}", text(&out.stderr));
    }
    let end = |force: bool| {
        let mut args = vec!["span", "end", path, "--otlp-endpoint", &endpoint];
        args.extend([
            "--status",
            "error",
            "--status-description",
            "unit tests failed",
        ]);
        if force {
            args.push("--force");
        }
        dspans(&args, None, &[])
    };
    let first = end(false);
    assert!(first.status.success(), "{}", text(&first.stderr));
    let spans = otlp.wait_for_spans(1, WAIT);
    let again = end(false);
    assert!(again.status.success());
    assert!(
        text(&again.stderr).contains("already ended"),
        "{}",
        text(&again.stderr)
    );
    let late = dspans(&["span", "event", path, "late"], None, &[]);
    assert!(!late.status.success(), "no event on an ended span");
    // Only --force exports again.
    assert!(end(true).status.success());
    let all = otlp.wait_for_spans(2, WAIT);
    assert_eq!(all.len(), 2, "one export, then one forced");
    let span = &spans[0];
    assert_eq!(span.kind(), SpanKind::Client);
    assert_eq!(status_of(span), StatusCode::Error);
    assert_eq!(span.status.as_ref().unwrap().message, "unit tests failed");
    let events: Vec<&str> = span.events.iter().map(|e| e.name.as_str()).collect();
    assert_eq!(events, ["checkout", "cache-miss"]);
    assert_eq!(
        attr(&span.events[0].attributes, "ref"),
        Some(&string("main"))
    );
    assert_eq!(
        attr(&span.events[1].attributes, "bytes"),
        Some(&Value::IntValue(512))
    );
}

#[test]
fn check_says_where_the_test_span_went_or_why_not() {
    let otlp = TestReceiver::start();
    let endpoint = otlp.endpoint();
    let out = dspans(&["span", "check", "--otlp-endpoint", &endpoint], None, &[]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(
        text(&out.stdout).contains(&endpoint),
        "{}",
        text(&out.stdout)
    );
    let spans = otlp.wait_for_spans(1, WAIT);
    assert_eq!(spans[0].name, "dspans.check");
    let out = dspans(
        &["span", "check", "--otlp-endpoint", "http://127.0.0.1:9"],
        None,
        &[],
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("127.0.0.1:9"),
        "{}",
        text(&out.stderr)
    );
}

/// `exec --save` writes the span before the command starts: when the
/// runner dies mid-command, a later step ends the span from the file.
#[test]
fn a_span_saved_by_exec_can_be_ended_after_the_runner_dies() {
    let otlp = TestReceiver::start();
    let endpoint = otlp.endpoint();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("step.json");
    let started = dir.path().join("started");
    let mut runner = std::process::Command::new(crate::support::DSPANS)
        .args(["span", "exec", "step", "--save"])
        .arg(&file)
        .args(["--otlp-endpoint", &endpoint, "--", "sh", "-c"])
        .arg(format!("echo $$ > {}; exec sleep 30", started.display()))
        .stdin(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let command_pid =
        dspans_test_support::wait_for("the command started", WAIT, String::new, || {
            let pid = std::fs::read_to_string(&started).ok()?;
            pid.trim().parse::<u32>().ok()
        });
    runner.kill().unwrap();
    runner.wait().unwrap();
    let path = file.to_str().unwrap();
    let out = dspans(
        &[
            "span",
            "end",
            path,
            "--status-description",
            "runner died",
            "--otlp-endpoint",
            &endpoint,
        ],
        None,
        &[],
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    let spans = otlp.wait_for_spans(1, WAIT);
    assert_eq!(spans[0].name, "step");
    assert_eq!(status_of(&spans[0]), StatusCode::Error);
    // The command outlived its runner; it goes with the test.
    let _ = std::process::Command::new("kill")
        .arg(command_pid.to_string())
        .status();
}
