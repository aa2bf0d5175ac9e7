//! `dspans span check`: one test span sent with the current settings.

use clap::Args;
use durable_spans::ChildOptions;
use opentelemetry::trace::Span as _;

use crate::export_args::{ExportArgs, Session};

const EXAMPLE: &str = "\
Example:
  OTEL_EXPORTER_OTLP_ENDPOINT=http://tempo:4317 dspans span check";

/// `dspans span check`.
#[derive(Args, Debug)]
#[command(after_help = EXAMPLE)]
pub struct CheckArgs {
    #[command(flatten)]
    pub export: ExportArgs,
}

/// Sends a `dspans.check` span; says where it went (exit 0) or why it
/// could not (exit 1).
pub(super) async fn run(args: CheckArgs) -> anyhow::Result<()> {
    let session = Session::new(&args.export)?;
    let destination = session.destination();
    let mut span =
        session
            .tracer
            .start_span_in_context(None, "dspans.check", ChildOptions::default());
    let ctx = durable_spans::span_context_of(&span);
    span.end();
    session.export().await?;
    println!(
        "sent a test span to {destination}: trace {:032x} span {:016x}",
        ctx.trace_id, ctx.span_id
    );
    Ok(())
}
