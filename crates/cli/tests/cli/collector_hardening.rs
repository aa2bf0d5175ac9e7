//! `dspans collector` and `dspans view` against broken conditions and
//! hostile input, as processes: a file size limit hit mid-write, forged
//! spans with known ids, damaged files, running out of file descriptors,
//! listening beyond loopback, bearer tokens and TLS.

use std::io::{BufRead as _, BufReader, Read as _, Write as _};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::{mpsc, Arc, Mutex};
use std::time::{Duration, Instant};

use dspans_otlp::proto::collector::trace::v1::ExportTraceServiceRequest;
use dspans_otlp::proto::common::v1::{any_value, AnyValue, KeyValue};
use dspans_otlp::proto::trace::v1::{ResourceSpans, ScopeSpans, Span};
use dspans_otlp::receiver::spans_of;
use dspans_otlp::{read_json_lines, request_to_json_line};
use dspans_test_support::process::{send_signal, wait_for_exit, Running};
use dspans_test_support::{wait_for, TestReceiver};

use crate::support::DSPANS;

/// Generous bound for things that normally take milliseconds.
const WAIT: Duration = Duration::from_secs(30);

const TRACE_HEX: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const SPAN_HEX: &str = "00f067aa0ba902b7";

/// A collector process started by a test, its announced HTTP address (as
/// reachable on loopback) and everything it logged so far.
struct Spawned {
    process: Running,
    http: SocketAddr,
    log: Arc<Mutex<String>>,
}

impl Spawned {
    /// Starts `command` (a `dspans collector`, possibly behind `prlimit`)
    /// with stdout and stderr piped (a pipe, not a file, so that a file
    /// size limit does not hit the log), and waits for its addresses.
    fn start(mut command: Command) -> Spawned {
        command
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = command.spawn().expect("the collector starts");
        let (stdout, stderr) = (child.stdout.take().unwrap(), child.stderr.take().unwrap());
        let process = Running(child);
        let log = Arc::new(Mutex::new(String::new()));
        let sink = log.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                let mut log = sink.lock().unwrap();
                log.push_str(&line);
                log.push('\n');
            }
        });
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let addr = |protocol: &str| {
            let line = rx.recv_timeout(WAIT).unwrap_or_else(|_| {
                panic!(
                    "no {protocol} address announced; log:\n{}",
                    log.lock().unwrap()
                )
            });
            let (name, addr) = line.split_once(' ').unwrap();
            assert_eq!(name, protocol, "{line}");
            let mut addr: SocketAddr = addr.parse().unwrap();
            if addr.ip().is_unspecified() {
                addr.set_ip([127, 0, 0, 1].into());
            }
            addr
        };
        let _grpc = addr("grpc");
        let http = addr("http");
        Spawned { process, http, log }
    }

    fn log(&self) -> String {
        self.log.lock().unwrap().clone()
    }

    /// Waits until the log has `text`.
    fn wait_for_log(&self, text: &str) {
        wait_for(
            text,
            WAIT,
            || self.log(),
            || self.log().contains(text).then_some(()),
        );
    }

    /// SIGTERM, and a clean exit.
    fn stop(mut self) -> String {
        send_signal(&self.process.0, "TERM");
        let status = wait_for_exit(&mut self.process.0, WAIT).expect("exits after SIGTERM");
        assert!(
            status.success(),
            "exit status {status}; log:\n{}",
            self.log()
        );
        self.log()
    }
}

/// Space comes back: the collector's file size limit is lifted.
fn lift_file_size_limit(collector: &Spawned) {
    let status = Command::new("prlimit")
        .args(["--pid", &collector.process.0.id().to_string()])
        .arg("--fsize=unlimited:unlimited")
        .status()
        .unwrap();
    assert!(status.success());
}

/// `dspans collector --grpc GRPC --http HTTP --out OUT ARGS…`.
fn collector(grpc: &str, http: &str, out: &Path, args: &[&str]) -> Command {
    let mut command = Command::new(DSPANS);
    command
        .args(["collector", "--grpc", grpc, "--http", http, "--out"])
        .arg(out)
        .args(args);
    command
}

/// A span with the test's ids, `name` and a `result` attribute, whose
/// `padding` attribute makes the request about `padding` bytes larger.
fn request(name: &str, result: &str, padding: usize) -> ExportTraceServiceRequest {
    let attribute = |key: &str, value: String| KeyValue {
        key: key.into(),
        value: Some(AnyValue {
            value: Some(any_value::Value::StringValue(value)),
        }),
        ..Default::default()
    };
    let hex = |text: &str| -> Vec<u8> {
        (0..text.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&text[i..i + 2], 16).unwrap())
            .collect()
    };
    ExportTraceServiceRequest {
        resource_spans: vec![ResourceSpans {
            scope_spans: vec![ScopeSpans {
                spans: vec![Span {
                    trace_id: hex(TRACE_HEX),
                    span_id: hex(SPAN_HEX),
                    name: name.into(),
                    start_time_unix_nano: 1_700_000_000_000_000_000,
                    end_time_unix_nano: 1_700_000_001_000_000_000,
                    attributes: vec![
                        attribute("result", result.into()),
                        attribute("padding", "p".repeat(padding)),
                    ],
                    ..Default::default()
                }],
                ..Default::default()
            }],
            ..Default::default()
        }],
    }
}

/// POSTs `request` as OTLP/JSON with an optional bearer token; returns the
/// status code.
fn post(addr: SocketAddr, request: &ExportTraceServiceRequest, token: Option<&str>) -> u16 {
    let body = request_to_json_line(request);
    let mut stream = TcpStream::connect(addr).unwrap();
    stream.set_read_timeout(Some(WAIT)).unwrap();
    let auth = token
        .map(|t| format!("Authorization: Bearer {t}\r\n"))
        .unwrap_or_default();
    let head = format!(
        "POST /v1/traces HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\n\
         {auth}Content-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes()).unwrap();
    stream.write_all(body.as_bytes()).unwrap();
    let mut response = String::new();
    let _ = stream.read_to_string(&mut response);
    let status = response.split(' ').nth(1).unwrap_or("");
    status
        .parse()
        .unwrap_or_else(|_| panic!("no status in {response:?}"))
}

/// Names and results of the spans of an OTLP-JSON lines file (which must
/// read back whole).
fn written(out: &Path) -> Vec<(String, String)> {
    let requests = read_json_lines(out).expect("every line reads back");
    spans_of(&requests)
        .into_iter()
        .map(|span| {
            let result = span
                .attributes
                .iter()
                .find(|kv| kv.key == "result")
                .and_then(|kv| kv.value.as_ref()?.value.clone());
            let result = match result {
                Some(any_value::Value::StringValue(s)) => s,
                other => format!("{other:?}"),
            };
            (span.name, result)
        })
        .collect()
}

/// Finding: with the disk full the collector answered 503 (good) but left
/// the partial line, and the next accepted request was appended to it,
/// making the file unreadable. A file size limit stands in for the full
/// disk: a write past it fails part way, with EFBIG, the collector
/// handling the SIGXFSZ that would otherwise kill it.
#[test]
fn a_write_that_fails_part_way_leaves_no_partial_line() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("traces.jsonl");
    let limit = 16 * 1024;
    let mut command = Command::new("prlimit");
    command.arg(format!("--fsize={limit}:unlimited")).arg("--");
    let inner = collector("127.0.0.1:0", "127.0.0.1:0", &out, &[]);
    command.arg(inner.get_program()).args(inner.get_args());
    let collector = Spawned::start(command);

    assert_eq!(
        post(collector.http, &request("first", "ok", 100), None),
        200
    );
    let before = std::fs::read(&out).unwrap();
    let big = request("big", "ok", 2 * limit);
    assert_eq!(post(collector.http, &big, None), 503, "the limit is hit");
    assert_eq!(
        std::fs::read(&out).unwrap(),
        before,
        "no partial line left behind"
    );
    collector.wait_for_log("cannot append received spans");

    // Space comes back: the big request, sent again, is written (it was
    // not taken for a repeat), and so is the next.
    lift_file_size_limit(&collector);
    assert_eq!(post(collector.http, &big, None), 200);
    assert_eq!(post(collector.http, &request("last", "ok", 100), None), 200);
    collector.stop();

    let names: Vec<String> = written(&out).into_iter().map(|(n, _)| n).collect();
    assert_eq!(names, ["first", "big", "last"]);
    let view = Command::new(DSPANS).arg("view").arg(&out).output().unwrap();
    assert!(view.status.success());
    assert!(
        view.stderr.is_empty(),
        "{}",
        String::from_utf8_lossy(&view.stderr)
    );
}

/// Finding: a relay that also writes a file (`--forward` with `--out`)
/// refused a request whose file write failed after its spool took it; the
/// sender's resend went into the spool again, and upstream twice. Each
/// output now drops the spans it already took.
#[test]
fn a_resend_after_a_failed_file_write_goes_upstream_once() {
    let dir = tempfile::tempdir().unwrap();
    let (out, spool) = (dir.path().join("traces.jsonl"), dir.path().join("spool"));
    let limit = 16 * 1024;
    // The file holds 12 KiB of an earlier run, the spool nothing: a
    // request of 6 KiB fits the spool, not the file.
    let earlier = request_to_json_line(&request("earlier", "ok", 12 * 1024));
    std::fs::write(&out, format!("{earlier}\n")).unwrap();
    let upstream = TestReceiver::start();
    let mut command = Command::new("prlimit");
    command.arg(format!("--fsize={limit}:unlimited")).arg("--");
    let forward = ["--forward", &upstream.endpoint(), "--spool"];
    let inner = collector("127.0.0.1:0", "127.0.0.1:0", &out, &forward);
    command
        .arg(inner.get_program())
        .args(inner.get_args())
        .arg(&spool);
    let collector = Spawned::start(command);

    let big = request("big", "ok", 6 * 1024);
    assert_eq!(post(collector.http, &big, None), 503, "the file is full");
    lift_file_size_limit(&collector);
    assert_eq!(post(collector.http, &big, None), 200, "the resend");
    wait_for(
        "the spool forwarded",
        WAIT,
        || collector.log(),
        || {
            let there = upstream.spans().iter().any(|s| s.name == "big");
            (there && dspans_otlp::relay::forwarded_everything(&spool)).then_some(())
        },
    );
    collector.stop();
    let upstream_names: Vec<String> = upstream.spans().into_iter().map(|s| s.name).collect();
    assert_eq!(upstream_names, ["big"]);
    let names: Vec<String> = written(&out).into_iter().map(|(n, _)| n).collect();
    assert_eq!(names, ["earlier", "big"]);
}

/// Finding: a span forged with a JobRun's ids (known to the job from
/// `$TRACEPARENT`) and sent first replaced the real one.
#[test]
fn a_span_forged_with_known_ids_is_logged_as_a_conflict_and_both_are_kept() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("traces.jsonl");
    let collector = Spawned::start(collector("127.0.0.1:0", "127.0.0.1:0", &out, &[]));
    assert_eq!(
        post(collector.http, &request("JobRun", "SUCCESS", 0), None),
        200
    );
    assert_eq!(
        post(collector.http, &request("JobRun", "FAILURE", 0), None),
        200
    );
    assert_eq!(
        post(collector.http, &request("JobRun", "FAILURE", 0), None),
        200
    );
    let log = collector.stop();
    let conflict = log
        .lines()
        .find(|l| l.contains("WARN") && l.contains("conflict"))
        .unwrap_or_else(|| panic!("no conflict warning in\n{log}"));
    assert!(
        conflict.contains(TRACE_HEX) && conflict.contains(SPAN_HEX),
        "{conflict}"
    );
    assert_eq!(
        written(&out),
        [
            ("JobRun".to_string(), "SUCCESS".to_string()),
            ("JobRun".to_string(), "FAILURE".to_string())
        ],
        "both kept, the resend dropped"
    );
    // The view shows both, flagged.
    let view = Command::new(DSPANS).arg("view").arg(&out).output().unwrap();
    let text = String::from_utf8(view.stdout).unwrap();
    assert!(
        text.contains("result=SUCCESS") && text.contains("result=FAILURE"),
        "{text}"
    );
    assert!(text.contains("duplicate"), "{text}");
}

/// Finding: one unreadable line made `dspans view` reject the whole file.
#[test]
fn view_skips_unreadable_lines_and_says_how_many() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("damaged.jsonl");
    let good = request_to_json_line(&request("kept", "SUCCESS", 0));
    std::fs::write(
        &file,
        format!("{good}\ngarbage\n{good}\n{{\"resourceSpans\": 7}}\n"),
    )
    .unwrap();
    let view = Command::new(DSPANS)
        .arg("view")
        .arg(&file)
        .output()
        .unwrap();
    let (stdout, stderr) = (
        String::from_utf8(view.stdout).unwrap(),
        String::from_utf8(view.stderr).unwrap(),
    );
    assert!(view.status.success(), "{stderr}");
    assert!(
        stdout.contains(&format!("trace {TRACE_HEX}  kept  2 spans")),
        "{stdout}"
    );
    assert!(stderr.contains("skipped 2 of 4 lines"), "{stderr}");
    assert!(
        stderr.contains("line=2") && stderr.contains("line=4"),
        "{stderr}"
    );
}

/// Finding: when accepting failed (out of file descriptors) the collector
/// said nothing. Now it logs an error, and serves again once descriptors
/// are free.
#[test]
fn running_out_of_file_descriptors_is_logged_and_survived() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("traces.jsonl");
    let mut command = Command::new("prlimit");
    command.arg("--nofile=48:48").arg("--");
    let inner = collector("127.0.0.1:0", "127.0.0.1:0", &out, &[]);
    command.arg(inner.get_program()).args(inner.get_args());
    let collector = Spawned::start(command);
    let held: Vec<TcpStream> = (0..80)
        .map(|_| TcpStream::connect(collector.http).unwrap())
        .collect();
    collector.wait_for_log("cannot accept connections");
    assert!(
        collector.log().contains("Too many open files"),
        "{}",
        collector.log()
    );
    drop(held);
    let ok = request("after", "SUCCESS", 0);
    wait_for(
        "a request served after descriptors were freed",
        WAIT,
        || collector.log(),
        || (post(collector.http, &ok, None) == 200).then_some(()),
    );
    collector.stop();
    assert_eq!(written(&out)[0].0, "after");
}

/// Finding: binding 0.0.0.0 went without a word. Now a warning; with a
/// bearer token, requests without it get 401.
#[test]
fn listening_beyond_loopback_is_warned_about_and_a_token_is_required() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("traces.jsonl");
    let open = Spawned::start(collector("0.0.0.0:0", "127.0.0.1:0", &out, &[]));
    let log = open.stop();
    assert!(
        log.contains("WARN") && log.contains("beyond loopback without authentication"),
        "{log}"
    );

    let token = dir.path().join("token");
    std::fs::write(&token, "  s3cret-token\n").unwrap();
    let guarded = Spawned::start(collector(
        "127.0.0.1:0",
        "0.0.0.0:0",
        &out,
        &["--auth-token-file", token.to_str().unwrap()],
    ));
    let span = request("guarded", "SUCCESS", 0);
    assert_eq!(post(guarded.http, &span, None), 401);
    assert_eq!(post(guarded.http, &span, Some("guessed")), 401);
    assert_eq!(post(guarded.http, &span, Some("s3cret-token")), 200);
    let log = guarded.stop();
    assert!(!log.contains("without authentication"), "{log}");
    assert!(log.contains("without TLS"), "{log}");
    assert_eq!(written(&out), [("guarded".into(), "SUCCESS".into())]);

    // A token file that cannot be a header is refused at start.
    std::fs::write(&token, "two words\n").unwrap();
    let refused = collector(
        "127.0.0.1:0",
        "127.0.0.1:0",
        &out,
        &["--auth-token-file", token.to_str().unwrap()],
    )
    .output()
    .unwrap();
    assert_eq!(refused.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&refused.stderr).contains("visible ASCII"));
}

/// `--tls-cert`, `--tls-key` and `--auth-token-file` together: the
/// project's exporters reach the collector over TLS on both protocols,
/// with the token as a header, trusting a certificate made here.
#[test]
fn tls_and_a_bearer_token_on_both_protocols() {
    use opentelemetry::trace::{Tracer as _, TracerProvider as _};
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("traces.jsonl");
    let certified = rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).unwrap();
    let (cert, key, token) = (
        dir.path().join("cert.pem"),
        dir.path().join("key.pem"),
        dir.path().join("token"),
    );
    std::fs::write(&cert, certified.cert.pem()).unwrap();
    std::fs::write(&key, certified.key_pair.serialize_pem()).unwrap();
    std::fs::write(&token, "s3cret-token").unwrap();
    let path = |p: &Path| p.to_str().unwrap().to_string();
    let args = [
        "--tls-cert".to_string(),
        path(&cert),
        "--tls-key".into(),
        path(&key),
        "--auth-token-file".into(),
        path(&token),
    ];
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let mut command = collector("127.0.0.1:0", "127.0.0.1:0", &out, &args);
    let mut child = command.stdout(Stdio::piped()).spawn().unwrap();
    let announced = BufReader::new(child.stdout.take().unwrap());
    let mut process = Running(child);
    let ports: Vec<u16> = announced
        .lines()
        .take(2)
        .map(|l| l.unwrap().rsplit(':').next().unwrap().parse().unwrap())
        .collect();
    for (protocol, port) in [
        (dspans_otlp::Protocol::Grpc, ports[0]),
        (dspans_otlp::Protocol::HttpProtobuf, ports[1]),
    ] {
        let mut opts = dspans_otlp::ExportOptions {
            enabled: true,
            protocol,
            endpoint: Some(format!("https://localhost:{port}")),
            timeout: Some(5_000),
            ..Default::default()
        };
        match protocol {
            dspans_otlp::Protocol::Grpc => opts.tls_ca = Some(cert.clone()),
            _ => opts.certificate_file = Some(cert.clone()),
        }
        opts.headers
            .insert("authorization".into(), "Bearer s3cret-token".into());
        let provider = opentelemetry_sdk::trace::SdkTracerProvider::builder()
            .with_simple_exporter(dspans_otlp::build_exporter(&opts).unwrap())
            .build();
        provider
            .tracer("tls")
            .in_span(format!("over {}", protocol.as_str()), |_| {});
        provider.shutdown().unwrap();
    }
    crate::support::wait_for_spans(&out, 2, WAIT);
    send_signal(&process.0, "TERM");
    let status = wait_for_exit(&mut process.0, WAIT).expect("exits after SIGTERM");
    assert!(status.success());
    let names: Vec<String> = written(&out).into_iter().map(|(n, _)| n).collect();
    assert_eq!(names, ["over grpc", "over http/protobuf"]);
}

/// Finding: the collector held every connection it was sent (3,000 idle
/// ones for 40 s and more). Now connections beyond `--max-connections` are
/// closed as they are accepted, with a warning, and `--idle-timeout`
/// closes the ones that send nothing.
#[test]
fn connections_beyond_the_limit_are_closed_and_idle_ones_time_out() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("traces.jsonl");
    let limits = [
        "--max-connections",
        "2",
        "--idle-timeout",
        "2",
        "--header-timeout",
        "20",
    ];
    let collector = Spawned::start(collector("127.0.0.1:0", "127.0.0.1:0", &out, &limits));
    let connect = || {
        let stream = TcpStream::connect(collector.http).unwrap();
        stream.set_read_timeout(Some(WAIT)).unwrap();
        stream
    };
    let mut held = [connect(), connect()];
    let started = Instant::now();
    let mut beyond = connect();
    assert_eq!(read_until_closed(&mut beyond), "");
    collector.wait_for_log("at the limit of open connections");
    // The held ones send nothing: closed after 2 s of idleness, long
    // before the header time limit (20 s).
    for stream in &mut held {
        assert_eq!(read_until_closed(stream), "");
    }
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "{:?}",
        started.elapsed()
    );
    let ok = request("after", "SUCCESS", 0);
    assert_eq!(post(collector.http, &ok, None), 200);
    collector.stop();
    assert_eq!(written(&out)[0].0, "after");
}

/// Reads until the collector closes the connection; what it sent.
fn read_until_closed(stream: &mut TcpStream) -> String {
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match stream.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => break,
            Err(e) => panic!("connection still open: {e}"),
        }
    }
    String::from_utf8_lossy(&got).into_owned()
}
