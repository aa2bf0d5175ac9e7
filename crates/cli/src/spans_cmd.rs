//! `dspans spans`: the saved spans that are open right now, from the store.

use std::path::PathBuf;

use clap::Args;
use dspans_ledger::Ledger;
use dspans_pipeline::Layout;
use durable_spans::Timestamp;

use crate::pipeline_cmd::{load, open_store};

/// `dspans spans`.
#[derive(Args, Debug)]
pub struct SpansArgs {
    /// The pipeline config file (its [store] section is used).
    #[arg(long, value_name = "FILE", env = "DSPANS_CONFIG")]
    pub config: PathBuf,
    /// Print one JSON object instead of a table.
    #[arg(long)]
    pub json: bool,
}

/// One open span as printed.
#[derive(Debug, serde::Serialize)]
struct OpenSpanRow {
    name: String,
    trace_id: String,
    span_id: String,
    /// Seconds since the span started.
    age_s: f64,
    /// Store path of the object the span belongs to.
    owner: String,
}

/// Lists open saved spans (oldest first) and the outbox size.
pub async fn run(args: SpansArgs) -> anyhow::Result<()> {
    let config = load(&args.config)?;
    let store = open_store(&config).await?;
    let ledger = Ledger::new(store.clone(), Layout::default().spans());
    let listed = async {
        let open = ledger.open_spans().await?;
        let outbox = ledger.outbox_len().await?;
        anyhow::Ok((open, outbox))
    }
    .await;
    let _ = store.close().await;
    let (open, outbox) = listed?;
    let now = Timestamp::now().as_nanos();
    let rows: Vec<OpenSpanRow> = open
        .into_iter()
        .map(|s| OpenSpanRow {
            name: s.span.name,
            trace_id: format!("{:032x}", s.span.trace_id),
            span_id: format!("{:016x}", s.span.span_id),
            age_s: ((now - s.span.start_time.as_nanos()) as f64 / 1e9 * 1000.0).round() / 1000.0,
            owner: s.owner,
        })
        .collect();
    if args.json {
        let doc = serde_json::json!({ "open": rows, "outbox": outbox });
        println!("{doc}");
        return Ok(());
    }
    println!(
        "{} open span(s), {outbox} ended span(s) waiting for export",
        rows.len()
    );
    if rows.is_empty() {
        return Ok(());
    }
    let width = rows.iter().map(|r| r.name.len()).max().unwrap_or(4).max(4);
    println!(
        "{:<width$}  {:>9}  {:<32}  {:<16}  OWNER",
        "NAME", "AGE", "TRACE ID", "SPAN ID"
    );
    for r in &rows {
        println!(
            "{:<width$}  {:>8.1}s  {}  {}  {}",
            r.name, r.age_s, r.trace_id, r.span_id, r.owner
        );
    }
    Ok(())
}
