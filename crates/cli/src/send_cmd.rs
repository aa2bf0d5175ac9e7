//! `dspans send`: replays OTLP-JSON lines files (ours, or the
//! OpenTelemetry Collector's file exporter's) into an OTLP backend,
//! request by request, resources and scopes as they are.

use std::path::{Path, PathBuf};

use anyhow::Context as _;
use clap::Args;
use dspans_otlp::proto::collector::trace::v1::ExportTraceServiceRequest;
use dspans_otlp::receiver::span_count;
use dspans_otlp::{scan_json_lines, RequestSender};

use crate::export_args::OtlpArgs;

const EXAMPLE: &str = "\
Example, a demo's traces into a local Jaeger or Tempo:
  dspans send /tmp/dspans-demo-*/traces.jsonl --otlp-endpoint http://localhost:4317";

/// Requests read ahead of the one being sent.
const READ_AHEAD: usize = 64;

/// `dspans send`.
#[derive(Args, Debug)]
#[command(after_help = EXAMPLE)]
pub struct SendArgs {
    /// OTLP-JSON lines files, one export request per line.
    #[arg(required = true, value_name = "FILE")]
    pub files: Vec<PathBuf>,
    #[command(flatten)]
    pub otlp: OtlpArgs,
}

/// What one file gave.
#[derive(Default)]
struct Sent {
    requests: usize,
    spans: usize,
    unreadable: u64,
}

/// Sends every readable request of every file; stops at the first the
/// collector refuses, naming the file and the request.
pub async fn run(args: SendArgs) -> anyhow::Result<()> {
    let options = args.otlp.options()?;
    let mut sender = RequestSender::new(&options)?;
    let mut total = Sent::default();
    for file in &args.files {
        let sent = send_file(&mut sender, file).await?;
        if sent.unreadable > 0 {
            eprintln!(
                "dspans: {}: {} unreadable line(s) skipped",
                file.display(),
                sent.unreadable
            );
        }
        total.requests += sent.requests;
        total.spans += sent.spans;
        total.unreadable += sent.unreadable;
    }
    println!(
        "sent {} span(s) in {} request(s) from {} file(s) to {}",
        total.spans,
        total.requests,
        args.files.len(),
        sender.endpoint()
    );
    Ok(())
}

/// Reads the file on a thread of its own (in bounded memory) while the
/// requests it yields are sent, in file order.
async fn send_file(sender: &mut RequestSender, file: &Path) -> anyhow::Result<Sent> {
    let (tx, mut rx) = tokio::sync::mpsc::channel::<ExportTraceServiceRequest>(READ_AHEAD);
    let path = file.to_path_buf();
    let reader = tokio::task::spawn_blocking(move || {
        scan_json_lines(&path, |request| {
            // The receiver is gone only when a send failed: stop reading.
            let _ = tx.blocking_send(request);
        })
    });
    let mut sent = Sent::default();
    while let Some(request) = rx.recv().await {
        let spans = span_count(&request);
        sender.send(request).await.map_err(|error| {
            anyhow::anyhow!(
                "{}: request {} (after {} spans sent): {error}",
                file.display(),
                sent.requests + 1,
                sent.spans
            )
        })?;
        sent.requests += 1;
        sent.spans += spans;
    }
    let read = reader
        .await
        .context("the file reader stopped abnormally")?
        .with_context(|| format!("cannot read {}", file.display()))?;
    sent.unreadable = read.unreadable;
    Ok(sent)
}
