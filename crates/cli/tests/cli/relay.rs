//! `dspans collector --forward URL --spool DIR`, a relay in front of a
//! plain OTLP receiver: a sender pushes 10,000 spans while the relay is
//! SIGKILLed and restarted 5 times and the upstream is down for 10 s; the
//! upstream gets every span exactly once.
//!
//! The relay promises to forward nothing twice that it forwarded and
//! recorded. The kills come after it recorded what it had forwarded, or
//! while the upstream is down. A kill between an upstream's answer and the
//! relay's record (a window of one file write) sends that one request
//! again: no plain OTLP backend lets a sender make the send and its record
//! one step.

use std::collections::HashMap;
use std::io::{BufRead as _, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use dspans_otlp::proto::collector::trace::v1::trace_service_client::TraceServiceClient;
use dspans_otlp::proto::collector::trace::v1::ExportTraceServiceRequest;
use dspans_otlp::proto::trace::v1::{ResourceSpans, ScopeSpans, Span};
use dspans_test_support::process::{send_signal, wait_for_exit, Running};
use dspans_test_support::{free_port, wait_for, TestReceiver};

use crate::support::DSPANS;

const REQUESTS: usize = 100;
const SPANS_PER_REQUEST: usize = 100;
const KILL_AFTER: [usize; 5] = [15, 30, 45, 60, 75];
const UPSTREAM_DOWN_AFTER: usize = 40;
const UPSTREAM_DOWN_FOR: Duration = Duration::from_secs(10);
const DEADLINE: Duration = Duration::from_secs(120);

/// Starts the relay on `port`, forwarding to `upstream` through `spool`;
/// returns once it listens.
fn relay(port: u16, upstream: u16, spool: &Path, log: &Path) -> Running {
    let mut child = Command::new(DSPANS)
        .args([
            "collector",
            "--grpc",
            &format!("127.0.0.1:{port}"),
            "--http",
            "127.0.0.1:0",
        ])
        .args([
            "--forward",
            &format!("http://127.0.0.1:{upstream}"),
            "--spool",
        ])
        .arg(spool)
        .env("RUST_LOG", "info")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(
            std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(log)
                .unwrap(),
        )
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let line = BufReader::new(stdout).lines().next();
    assert!(
        matches!(&line, Some(Ok(l)) if l.starts_with("grpc ")),
        "the relay did not start: {line:?}\n{}",
        std::fs::read_to_string(log).unwrap_or_default()
    );
    Running(child)
}

/// Request `n`: spans with ids no other request has.
fn request(n: usize) -> ExportTraceServiceRequest {
    let spans = (0..SPANS_PER_REQUEST)
        .map(|i| {
            let id = (n * SPANS_PER_REQUEST + i + 1) as u64;
            Span {
                trace_id: [[0x5a; 8], id.to_be_bytes()].concat(),
                span_id: id.to_be_bytes().to_vec(),
                name: format!("span-{id}"),
                start_time_unix_nano: 1_000,
                end_time_unix_nano: 2_000,
                ..Default::default()
            }
        })
        .collect();
    ExportTraceServiceRequest {
        resource_spans: vec![ResourceSpans {
            scope_spans: vec![ScopeSpans {
                spans,
                ..Default::default()
            }],
            ..Default::default()
        }],
    }
}

/// Sends `request` until the relay accepts it (it may be down, restarting
/// or refusing), as an exporter that retries does.
async fn send_until_accepted(port: u16, request: ExportTraceServiceRequest) {
    let started = Instant::now();
    loop {
        let attempt = async {
            let mut client =
                TraceServiceClient::connect(format!("http://127.0.0.1:{port}")).await?;
            client.export(request.clone()).await?;
            Ok::<(), Box<dyn std::error::Error>>(())
        };
        if attempt.await.is_ok() {
            return;
        }
        assert!(
            started.elapsed() < DEADLINE,
            "the relay never accepted a request"
        );
        // An exporter's retry pace; the relay is down or restarting.
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[test]
fn the_relay_forwards_each_span_once_through_kills_and_an_upstream_outage() {
    let dir = tempfile::tempdir().unwrap();
    let (spool, log) = (dir.path().join("spool"), dir.path().join("relay.log"));
    let (port, upstream_port) = (free_port(), free_port());
    let mut upstreams = vec![TestReceiver::start_grpc_on(upstream_port)];
    let mut relay_process = relay(port, upstream_port, &spool, &log);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let mut down_since: Option<Instant> = None;
    for n in 0..REQUESTS {
        runtime.block_on(send_until_accepted(port, request(n)));
        if KILL_AFTER.contains(&n) {
            if down_since.is_none() {
                wait_for(
                    "the relay to record what it forwarded",
                    DEADLINE,
                    || std::fs::read_to_string(&log).unwrap_or_default(),
                    || dspans_otlp::relay::forwarded_everything(&spool).then_some(()),
                );
            }
            send_signal(&relay_process.0, "KILL");
            relay_process.0.wait().unwrap();
            relay_process = relay(port, upstream_port, &spool, &log);
        }
        if n == UPSTREAM_DOWN_AFTER {
            // Stopped: the relay keeps accepting into its spool.
            upstreams.last_mut().unwrap().stop();
            down_since = Some(Instant::now());
        }
        if let Some(since) = down_since {
            if since.elapsed() >= UPSTREAM_DOWN_FOR {
                upstreams.push(TestReceiver::start_grpc_on(upstream_port));
                down_since = None;
            }
        }
    }
    if let Some(since) = down_since {
        // The outage lasts its 10 s even if sending was quicker.
        std::thread::sleep(UPSTREAM_DOWN_FOR.saturating_sub(since.elapsed()));
        upstreams.push(TestReceiver::start_grpc_on(upstream_port));
    }
    let total = REQUESTS * SPANS_PER_REQUEST;
    let received = |upstreams: &[TestReceiver]| -> HashMap<Vec<u8>, usize> {
        let mut seen = HashMap::new();
        for span in upstreams.iter().flat_map(|u| u.spans()) {
            *seen.entry(span.span_id).or_insert(0) += 1;
        }
        seen
    };
    wait_for(
        "every span upstream",
        DEADLINE,
        || std::fs::read_to_string(&log).unwrap_or_default(),
        || (received(&upstreams).len() == total).then_some(()),
    );
    // A clean stop: whatever the relay still had in flight is done.
    send_signal(&relay_process.0, "TERM");
    assert!(wait_for_exit(&mut relay_process.0, Duration::from_secs(20)).is_some());
    let seen = received(&upstreams);
    let duplicates: usize = seen.values().map(|n| n - 1).sum();
    eprintln!(
        "relay: {total} spans, {} kills, upstream down {} s: {} received, {duplicates} duplicates",
        KILL_AFTER.len(),
        UPSTREAM_DOWN_FOR.as_secs(),
        seen.len()
    );
    assert_eq!(seen.len(), total, "every span arrived");
    assert_eq!(duplicates, 0, "spans forwarded twice");
}
