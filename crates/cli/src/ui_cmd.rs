//! `dspans ui`: the trace viewer in a browser, live.

use std::io::Write as _;
use std::net::SocketAddr;
use std::path::PathBuf;

use clap::Args;
use dspans_pipeline::Layout;
use dspans_ui::{serve, UiOptions};

use crate::pipeline_cmd::{load, open_store};

/// Open a trace viewer in the browser: a trace list with search, and a
/// waterfall per trace where the spans still running (open saved spans of
/// a store, with --config) grow as they run.
///
/// It receives OTLP (gRPC and HTTP, as `dspans collector` does) and reads
/// OTLP-JSON lines files, following them as they grow. Open pages update
/// without a reload. Everything is served from 127.0.0.1 and embedded in
/// the binary; no network is needed.
///
/// Examples:
///   dspans ui traces.jsonl --config dspans.toml
///   dspans ui --listen 127.0.0.1:9000 --grpc 127.0.0.1:14317 --http 127.0.0.1:14318
#[derive(Args, Debug)]
pub struct UiArgs {
    /// OTLP-JSON lines files to show (as written by `dspans collector`).
    #[arg(value_name = "FILE")]
    pub files: Vec<PathBuf>,
    /// Where to serve the viewer.
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:8686")]
    pub listen: SocketAddr,
    /// A pipeline config: the open saved spans of its store are shown in
    /// their traces as running (orphaned when their owner is gone).
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Receive OTLP/gRPC here.
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:4317")]
    pub grpc: SocketAddr,
    /// Receive OTLP/HTTP here.
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:4318")]
    pub http: SocketAddr,
    /// Do not receive OTLP (show only the files and the store).
    #[arg(long)]
    pub no_otlp: bool,
}

/// Serves until Ctrl-C or SIGTERM.
pub async fn run(args: UiArgs) -> anyhow::Result<()> {
    let store = match &args.config {
        Some(path) => {
            let config = load(path)?;
            Some((open_store(&config).await?, Layout::default().spans()))
        }
        None => None,
    };
    let options = UiOptions {
        listen: args.listen,
        grpc: (!args.no_otlp).then_some(args.grpc),
        http: (!args.no_otlp).then_some(args.http),
        files: args.files.clone(),
        store,
    };
    let stop = dspans_pipeline::component::termination()?;
    let server = serve(options).await?;
    // Where to look, for a person and for scripts (the first line); the
    // viewer goes on when nobody reads its output any more.
    let mut lines = vec![format!("dspans ui: {}", server.url())];
    let (grpc, http) = server.otlp_addrs();
    if let Some(grpc) = grpc {
        lines.push(format!("  OTLP/gRPC: http://{grpc}"));
    }
    if let Some(http) = http {
        lines.push(format!("  OTLP/HTTP: http://{http}/v1/traces"));
    }
    for file in &args.files {
        lines.push(format!("  following {}", file.display()));
    }
    if let Some(config) = &args.config {
        lines.push(format!(
            "  running spans from the store of {}",
            config.display()
        ));
    }
    lines.push("Ctrl-C stops it.".to_string());
    let mut stdout = std::io::stdout().lock();
    let _ = writeln!(stdout, "{}", lines.join("\n")).and_then(|()| stdout.flush());
    drop(stdout);
    stop.await;
    server.shutdown().await;
    Ok(())
}
