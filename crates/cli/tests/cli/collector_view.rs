//! `dspans collector` and `dspans view` as processes: the project's
//! exporters send to a collector process, which writes OTLP-JSON lines;
//! `view` renders such a file.

use std::io::{Read as _, Write as _};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use dspans_otlp::receiver::spans_of;
use dspans_otlp::{read_json_lines, Protocol};
use dspans_test_support::process::{send_signal, wait_for_exit};
use opentelemetry::trace::{Span as _, TraceContextExt as _, Tracer as _, TracerProvider as _};
use opentelemetry::KeyValue;
use opentelemetry_sdk::trace::SdkTracerProvider;

use crate::support::{exporting_provider, report_span_ids, wait_for_spans, Collector, DSPANS};

/// Generous bound for things that normally take milliseconds.
const WAIT: Duration = Duration::from_secs(30);

fn provider(protocol: Protocol, addr: SocketAddr) -> SdkTracerProvider {
    let service = format!("cli-{}", protocol.as_str());
    exporting_provider(protocol, addr, &service, 5_000, Vec::new())
}

/// Ends a parent and a child span; returns the trace id (hex).
fn emit(provider: &SdkTracerProvider, name: &str) -> String {
    let tracer = provider.tracer("collector-view-test");
    let parent = tracer.start(format!("{name}-parent"));
    let trace_id = parent.span_context().trace_id().to_string();
    let cx = opentelemetry::Context::current_with_span(parent);
    let mut child = tracer.start_with_context(format!("{name}-child"), &cx);
    child.set_attribute(KeyValue::new("result", "SUCCESS"));
    child.end();
    cx.span().end();
    trace_id
}

/// A raw HTTP/1.1 POST; returns the status line.
fn raw_post(addr: SocketAddr, content_type: &str, body: &[u8]) -> String {
    let mut stream = TcpStream::connect(addr).unwrap();
    stream.set_read_timeout(Some(WAIT)).unwrap();
    let head = format!(
        "POST /v1/traces HTTP/1.1\r\nHost: {addr}\r\nContent-Type: {content_type}\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes()).unwrap();
    stream.write_all(body).unwrap();
    let mut response = String::new();
    let _ = stream.read_to_string(&mut response);
    response.lines().next().unwrap_or("").to_string()
}

#[test]
fn collector_receives_grpc_and_http_refuses_garbage_and_stops_on_sigterm() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("traces.jsonl");
    let mut collector = Collector::start_anywhere(&out);
    let (grpc, http) = (collector.grpc, collector.http);

    let grpc_provider = provider(Protocol::Grpc, grpc);
    let grpc_trace = emit(&grpc_provider, "grpc");
    grpc_provider.shutdown().unwrap();

    // Malformed requests get the protocol's error; serving goes on.
    let status = raw_post(http, "application/x-protobuf", b"\xff\xff\xff not protobuf");
    assert!(status.starts_with("HTTP/1.1 400"), "{status}");
    let status = raw_post(http, "application/json", b"{\"resourceSpans\": 7}");
    assert!(status.starts_with("HTTP/1.1 400"), "{status}");

    let http_provider = provider(Protocol::HttpProtobuf, http);
    let http_trace = emit(&http_provider, "http");
    http_provider.shutdown().unwrap();
    wait_for_spans(&out, 4, WAIT);

    send_signal(&collector.process.0, "TERM");
    let status =
        wait_for_exit(&mut collector.process.0, WAIT).expect("the collector exits after SIGTERM");
    assert!(status.success(), "collector exit status {status}");

    // Complete: every line whole, newline-terminated, one per request.
    let text = std::fs::read_to_string(&out).unwrap();
    assert!(text.ends_with('\n'));
    assert_eq!(text.lines().count(), 4, "{text}");
    let requests = read_json_lines(&out).unwrap();
    let spans = spans_of(&requests);
    let names: Vec<_> = spans.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(
        names,
        ["grpc-child", "grpc-parent", "http-child", "http-parent"]
    );

    // And `view` shows both traces from the collected file.
    let view = Command::new(DSPANS).arg("view").arg(&out).output().unwrap();
    assert!(
        view.status.success(),
        "{}",
        String::from_utf8_lossy(&view.stderr)
    );
    let text = String::from_utf8(view.stdout).unwrap();
    for (trace, name) in [(&grpc_trace, "grpc"), (&http_trace, "http")] {
        assert!(
            text.contains(&format!("trace {trace}  {name}-parent  2 spans")),
            "{text}"
        );
        assert!(text.contains(&format!("\n    {name}-child ")), "{text}");
        assert!(text.contains(&format!(
            "cli-{}",
            if name == "grpc" {
                "grpc"
            } else {
                "http/protobuf"
            }
        )));
    }
    assert!(!text.contains("missing parent"), "{text}");
}

const T1: &str = "0af7651916cd43dd8448eb211c80319c";
const T2: &str = "4bf92f3577b34da6a3ce929d0e0e4736";

/// A known file: a root, its child (with `<script>` in an attribute), a
/// span whose parent is missing, another trace, and a partial last line.
fn known_file(dir: &Path) -> std::path::PathBuf {
    let span = |trace: &str,
                id: &str,
                parent: &str,
                name: &str,
                start: u64,
                end: u64,
                attrs: &str| {
        format!(
            r#"{{"traceId":"{trace}","spanId":"{id}","parentSpanId":"{parent}","name":"{name}","startTimeUnixNano":"{start}","endTimeUnixNano":"{end}","attributes":[{attrs}]}}"#
        )
    };
    let s = 1_700_000_000_000_000_000u64;
    let spans = [
        span(T1, "b7ad6b7169203331", "", "item", s, s + 2_000_000_000, ""),
        span(
            T1,
            "00f067aa0ba902b7",
            "b7ad6b7169203331",
            "job build",
            s + 500_000_000,
            s + 1_500_000_000,
            r#"{"key":"result","value":{"stringValue":"FAILURE"}},{"key":"log","value":{"stringValue":"<script>alert(1)</script>"}}"#,
        ),
        span(
            T1,
            "5555555555555555",
            "1a2b3c4d5e6f7081",
            "lost child",
            s + 100_000_000,
            s + 200_000_000,
            "",
        ),
        span(
            T2,
            "7777777777777777",
            "",
            "other trace",
            s + 3_000_000_000,
            s + 3_000_001_000,
            "",
        ),
    ];
    let line = format!(
        r#"{{"resourceSpans":[{{"resource":{{"attributes":[{{"key":"service.name","value":{{"stringValue":"zuul"}}}},{{"key":"host.name","value":{{"stringValue":"sched1"}}}}]}},"scopeSpans":[{{"spans":[{}]}}]}}]}}"#,
        spans.join(",")
    );
    let path = dir.join("known.jsonl");
    std::fs::write(&path, format!("{line}\n{{\"resourceSpans\":[{{\"res")).unwrap();
    path
}

fn view(args: &[&str], file: &Path) -> std::process::Output {
    Command::new(DSPANS)
        .arg("view")
        .arg(file)
        .args(args)
        .output()
        .unwrap()
}

#[test]
fn view_prints_the_tree_and_flags_a_missing_parent() {
    let dir = tempfile::tempdir().unwrap();
    let file = known_file(dir.path());
    let output = view(&[], &file);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let text = String::from_utf8(output.stdout).unwrap();
    let lines: Vec<_> = text.lines().collect();
    // Depth-first: the root's subtree, then the span whose parent is missing.
    assert!(
        lines[0].starts_with(&format!(
            "trace {T1}  item  3 spans  2.00s  [1 missing parent]"
        )),
        "{text}"
    );
    assert!(
        lines[1].starts_with("  item ") && lines[1].contains("2.00s  zuul@sched1"),
        "{text}"
    );
    assert!(
        lines[3].starts_with("  lost child ")
            && lines[3].ends_with("[missing parent 1a2b3c4d5e6f7081]"),
        "{text}"
    );
    assert!(
        lines[2].starts_with("    job build ") && lines[2].contains("result=FAILURE"),
        "{text}"
    );
    assert!(
        text.contains(&format!("trace {T2}  other trace  1 span")),
        "{text}"
    );

    let output = view(&["--trace", T2], &file);
    assert!(output.status.success());
    let text = String::from_utf8(output.stdout).unwrap();
    assert!(
        text.starts_with(&format!("trace {T2}")) && !text.contains(T1),
        "{text}"
    );

    let output = view(&["--trace", "ffffffffffffffffffffffffffffffff"], &file);
    assert_eq!(output.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&output.stderr).contains("no trace"));
}

#[test]
fn view_html_has_one_row_per_span_and_escapes_attributes() {
    let dir = tempfile::tempdir().unwrap();
    let file = known_file(dir.path());
    let html_path = dir.path().join("report.html");
    let output = view(&["--html", html_path.to_str().unwrap()], &file);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let html = std::fs::read_to_string(&html_path).unwrap();
    let rows = report_span_ids(&html);
    assert_eq!(rows.len(), 4, "{html}");
    assert!(rows.iter().any(|s| s == "5555555555555555"));
    // The attribute's markup is data: it cannot close the data's script.
    assert!(
        html.contains("\\u003cscript>alert(1)\\u003c/script>"),
        "{html}"
    );
    assert_eq!(
        html.matches("</script>").count(),
        2,
        "only the page's own scripts"
    );
    assert!(!html.contains("http://") && !html.contains("https://"));

    let only = dir.path().join("one.html");
    let output = view(&["--trace", T1, "--html", only.to_str().unwrap()], &file);
    assert!(output.status.success());
    let html = std::fs::read_to_string(&only).unwrap();
    assert_eq!(report_span_ids(&html).len(), 3);
}

/// The terminal waterfall fits a width, shows the attributes asked for,
/// finds a trace by the start of its id, and colours errors only when
/// colour is wanted.
#[test]
fn view_fits_its_width_and_shows_what_is_asked() {
    let dir = tempfile::tempdir().unwrap();
    let file = known_file(dir.path());
    let text = |args: &[&str]| {
        let output = view(args, &file);
        assert!(
            output.status.success(),
            "{}",
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8(output.stdout).unwrap()
    };
    let narrow = text(&["--width", "60"]);
    assert!(narrow.lines().all(|l| l.chars().count() <= 60), "{narrow}");
    let all = text(&["--attrs", "all"]);
    assert!(all.contains("log=<script>alert(1)</script>"), "{all}");
    let listed = text(&["--attrs", "log"]);
    assert!(
        listed.contains("log=") && !listed.contains("result="),
        "{listed}"
    );
    // Output to a pipe: no colour unless asked for.
    assert!(!all.contains('\x1b'));
    let coloured = text(&["--color", "always"]);
    assert!(coloured.contains("\x1b[1mtrace"), "{coloured}");
    let prefix = text(&["--trace", &T2[..6]]);
    assert!(prefix.starts_with(&format!("trace {T2}")), "{prefix}");
}

/// `--follow` prints the file's traces, then a trace again when spans of
/// it are appended, as a collector does while a pipeline runs.
#[test]
fn view_follows_a_growing_file() {
    use std::io::{BufRead as _, BufReader};
    let dir = tempfile::tempdir().unwrap();
    let file = known_file(dir.path());
    // Whole lines only, as a collector leaves its file between requests.
    let mut text = std::fs::read_to_string(&file).unwrap();
    text.truncate(text.rfind('\n').unwrap() + 1);
    std::fs::write(&file, text).unwrap();
    let mut child = Command::new(DSPANS)
        .args(["view", "--follow", "--attrs", "all"])
        .arg(&file)
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut read_until = |text: &str| -> String {
        let mut seen = String::new();
        for line in lines.by_ref() {
            let line = line.unwrap();
            seen.push_str(&line);
            seen.push('\n');
            if line.contains(text) {
                return seen;
            }
        }
        panic!("the output ended without {text:?}:\n{seen}");
    };
    read_until(&format!("trace {T2}"));
    // A span of the second trace arrives: that trace is shown again.
    let late = format!(
        r#"{{"resourceSpans":[{{"scopeSpans":[{{"spans":[{{"traceId":"{T2}","spanId":"8888888888888888","parentSpanId":"7777777777777777","name":"late arrival","startTimeUnixNano":"1700000003000000100","endTimeUnixNano":"1700000003000000200","attributes":[{{"key":"result","value":{{"stringValue":"SUCCESS"}}}}]}}]}}]}}]}}"#
    );
    let mut out = std::fs::OpenOptions::new()
        .append(true)
        .open(&file)
        .unwrap();
    std::io::Write::write_all(&mut out, format!("{late}\n").as_bytes()).unwrap();
    let update = read_until("late arrival");
    assert!(
        update.contains(&format!("trace {T2}  other trace  2 spans")),
        "{update}"
    );
    assert!(update.contains("result=SUCCESS"), "{update}");
    child.kill().unwrap();
    child.wait().unwrap();
}
