//! `dspans bench ui`: how fast the viewer takes spans from one OTLP sender,
//! answers a search over many traces, and (with Chromium and the test
//! driver of `crates/ui/tests/browser`) draws one big trace.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _};
use clap::Args;
use dspans_otlp::proto::collector::trace::v1::ExportTraceServiceRequest;
use dspans_otlp::proto::common::v1::{any_value, AnyValue, KeyValue};
use dspans_otlp::proto::trace::v1::{ResourceSpans, ScopeSpans, Span};
use dspans_otlp::{ExportOptions, RequestSender};
use dspans_ui::{serve, UiOptions};

/// Options of `dspans bench ui`.
#[derive(Args, Debug)]
#[command(
    after_help = "Example (from the repository, after `npm ci --prefix crates/ui/tests/browser`):\n  dspans bench ui --traces 10000 --big-trace 10000"
)]
pub struct BenchUiArgs {
    /// Traces of 5 spans each to send (and search).
    #[arg(long, default_value_t = 10_000)]
    pub traces: u64,
    /// Spans of the one big trace drawn in the browser.
    #[arg(long, default_value_t = 10_000)]
    pub big_trace: u64,
    /// Spans per OTLP request.
    #[arg(long, default_value_t = 500)]
    pub batch: usize,
    /// The browser driver (check.mjs, with playwright-core installed);
    /// without it the browser figure is skipped and says so.
    #[arg(long, value_name = "DIR", default_value = "crates/ui/tests/browser")]
    pub driver: PathBuf,
}

/// The big trace's id: above every generated trace's.
const BIG: u128 = 0xb16 << 64;

fn string(key: &str, value: String) -> KeyValue {
    KeyValue {
        key: key.into(),
        value: Some(AnyValue {
            value: Some(any_value::Value::StringValue(value)),
        }),
        ..Default::default()
    }
}

/// Trace `t`'s 5 spans (a QueueItem, a BuildSet and three Builds), or the
/// big trace's span `t` (all under its first span).
fn spans(t: u64, big: bool) -> Vec<Span> {
    let start = 1_700_000_000_000_000_000 + t * 1_000_000;
    let span = |trace: u128, id: u64, parent: u64, name: &str, attrs: Vec<KeyValue>| Span {
        trace_id: trace.to_be_bytes().to_vec(),
        span_id: id.to_be_bytes().to_vec(),
        parent_span_id: if parent == 0 {
            Vec::new()
        } else {
            parent.to_be_bytes().to_vec()
        },
        name: name.into(),
        start_time_unix_nano: start + id % 1000,
        end_time_unix_nano: start + 5_000_000,
        attributes: attrs,
        ..Default::default()
    };
    if big {
        let parent = if t == 0 { 0 } else { 1 };
        return vec![span(
            BIG,
            t + 1,
            parent,
            "Build",
            vec![string("n", t.to_string())],
        )];
    }
    let trace = u128::from(t) + 1;
    let id = t * 10 + 1;
    let mut out = vec![span(
        trace,
        id,
        0,
        "QueueItem",
        vec![string("ref_number", format!("[{t}]"))],
    )];
    out.push(span(trace, id + 1, id, "BuildSet", Vec::new()));
    for job in 0..3 {
        out.push(span(
            trace,
            id + 2 + job,
            id + 1,
            "Build",
            vec![string("job", format!("job-{job}"))],
        ));
    }
    out
}

fn request(spans: Vec<Span>) -> ExportTraceServiceRequest {
    ExportTraceServiceRequest {
        resource_spans: vec![ResourceSpans {
            resource: Some(dspans_otlp::proto::resource::v1::Resource {
                attributes: vec![string("service.name", "bench".into())],
                ..Default::default()
            }),
            scope_spans: vec![ScopeSpans {
                spans,
                ..Default::default()
            }],
            ..Default::default()
        }],
    }
}

/// One `GET path` to `addr`; returns the time to the whole answer.
async fn get(addr: &str, path: &str) -> anyhow::Result<Duration> {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let started = Instant::now();
    let mut stream = tokio::net::TcpStream::connect(addr).await?;
    let head = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    stream.write_all(head.as_bytes()).await?;
    let mut answer = Vec::new();
    stream.read_to_end(&mut answer).await?;
    if !answer.starts_with(b"HTTP/1.1 200") {
        bail!(
            "GET {path}: {}",
            String::from_utf8_lossy(&answer[..answer.len().min(80)])
        );
    }
    Ok(started.elapsed())
}

/// Runs the bench and prints its figures as one JSON line.
pub async fn run(args: BenchUiArgs) -> anyhow::Result<()> {
    let server = serve(UiOptions {
        listen: "127.0.0.1:0".parse()?,
        grpc: Some("127.0.0.1:0".parse()?),
        ..Default::default()
    })
    .await?;
    let grpc = server.otlp_addrs().0.context("no gRPC receiver")?;
    let mut sender = RequestSender::new(&ExportOptions {
        enabled: true,
        endpoint: Some(format!("http://{grpc}")),
        ..Default::default()
    })?;
    let mut all: Vec<Span> = (0..args.traces).flat_map(|t| spans(t, false)).collect();
    all.extend((0..args.big_trace).flat_map(|t| spans(t, true)));
    let total = all.len();
    let requests: Vec<_> = all
        .chunks(args.batch.max(1))
        .map(|c| request(c.to_vec()))
        .collect();
    eprintln!(
        "bench ui: sending {total} spans in {} requests",
        requests.len()
    );
    let started = Instant::now();
    for request in requests {
        sender.send(request).await.map_err(|e| anyhow::anyhow!(e))?;
    }
    while server.counts().0 < total {
        if started.elapsed() > Duration::from_secs(300) {
            bail!(
                "the viewer took {} of {total} spans in 300 s",
                server.counts().0
            );
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    let ingest_s = started.elapsed().as_secs_f64();
    let addr = server
        .url()
        .trim_start_matches("http://")
        .trim_end_matches('/')
        .to_string();
    let mut searches = Vec::new();
    for n in 0..21 {
        let q = format!(
            "/api/traces?q=ref_number%3D{}",
            (n * 397) % args.traces.max(1)
        );
        searches.push(get(&addr, &q).await?.as_secs_f64() * 1000.0);
    }
    searches.sort_by(f64::total_cmp);
    let big_ms = get(&addr, &format!("/api/traces/{BIG:032x}"))
        .await?
        .as_secs_f64()
        * 1000.0;
    let browser = browser_open(&args, &server.url()).await;
    println!(
        "{}",
        serde_json::json!({
            "traces": args.traces + 1,
            "spans": total,
            "ingest_spans_per_s": (total as f64 / ingest_s).round(),
            "search_ms_median": (searches[searches.len() / 2] * 10.0).round() / 10.0,
            "search_ms_max": (searches[searches.len() - 1] * 10.0).round() / 10.0,
            "big_trace_api_ms": (big_ms * 10.0).round() / 10.0,
            "big_trace_browser": browser,
        })
    );
    server.shutdown().await;
    Ok(())
}

/// `node check.mjs open URL BIG` in the driver's directory: the time from
/// opening the trace's page to its rows and axis drawn.
async fn browser_open(args: &BenchUiArgs, url: &str) -> serde_json::Value {
    if !args.driver.join("node_modules/playwright-core").exists() {
        return serde_json::json!(format!(
            "skipped: no {}/node_modules/playwright-core (npm ci --prefix {})",
            args.driver.display(),
            args.driver.display()
        ));
    }
    let out = tokio::process::Command::new("node")
        .arg("check.mjs")
        .args(["open", url, &format!("{BIG:032x}")])
        .current_dir(&args.driver)
        .output()
        .await;
    match out {
        Ok(out) => serde_json::from_slice(&out.stdout).unwrap_or_else(|_| {
            serde_json::json!(String::from_utf8_lossy(&out.stdout).to_string())
        }),
        Err(error) => serde_json::json!(format!("node: {error}")),
    }
}
