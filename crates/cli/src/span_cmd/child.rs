//! `dspans span child`: a child span, ended at once or saved.

use clap::Args;
use durable_spans::{parent_context, ChildOptions, SavedSpanOptions, Timestamp};
use opentelemetry::trace::Span as _;

use super::{
    check_end_time, inherited_context, key_value, parse_kv, print_span, resolve_context, KindArg,
    PrintArg, StatusArgs,
};
use crate::export_args::{ExportArgs, Session};

const EXAMPLE: &str = "\
Examples:
  dspans span child deploy --context build.json --start-time 1700000000.5 --attr env=prod
  # in a job or CI step where TRACEPARENT is set:
  dspans span child lint --status error --status-description \"3 warnings\"";

/// `dspans span child`.
#[derive(Args, Debug)]
#[command(after_help = EXAMPLE)]
pub struct ChildArgs {
    /// Span name.
    pub name: String,
    /// Parent span context: Zuul JSON, a traceparent, or a FILE holding
    /// either. Default: TRACEPARENT from the environment, else none.
    #[arg(long, value_name = "JSON|FILE|TRACEPARENT")]
    pub context: Option<String>,
    /// Do not take the parent from TRACEPARENT.
    #[arg(long)]
    pub no_env_context: bool,
    /// Start time: float seconds or integer nanoseconds. Default: now.
    #[arg(long, value_name = "T", allow_hyphen_values = true)]
    pub start_time: Option<Timestamp>,
    /// End time: float seconds or integer nanoseconds. Default: now.
    #[arg(
        long,
        value_name = "T",
        allow_hyphen_values = true,
        conflicts_with = "save"
    )]
    pub end_time: Option<Timestamp>,
    /// Attribute K=V (string); repeatable.
    #[arg(long, value_name = "K=V", value_parser = key_value)]
    pub attr: Vec<String>,
    /// Print the child's span info instead of ending it.
    #[arg(long)]
    pub save: bool,
    /// With --save: persist the attributes in the span info.
    #[arg(long, requires = "save")]
    pub include_attributes: bool,
    /// With --save: what to print (the span info, its traceparent, or its ids in hex).
    #[arg(long, value_enum, default_value_t = PrintArg::Json, requires = "save")]
    pub print: PrintArg,
    /// Span kind; with --save, saved in the span info.
    #[arg(long, value_enum, default_value_t = KindArg::Internal)]
    pub kind: KindArg,
    #[command(flatten)]
    pub status: StatusArgs,
    #[command(flatten)]
    pub export: ExportArgs,
}

pub(super) async fn run(args: ChildArgs) -> anyhow::Result<()> {
    let ctx = match &args.context {
        Some(value) => Some(resolve_context(value)?),
        None => inherited_context(args.no_env_context),
    };
    let attributes = parse_kv(&args.attr)?;
    let status = args.status.status()?;
    check_end_time(
        args.start_time.unwrap_or_else(Timestamp::now),
        args.end_time,
    )?;
    let session = Session::new(&args.export)?;
    if args.save {
        let mut options = SavedSpanOptions::new()
            .parent(parent_context(ctx.as_ref()))
            .kind(args.kind.into());
        options.start_time = args.start_time;
        options.attributes = attributes;
        options.include_attributes = args.include_attributes;
        let info = session
            .tracer
            .start_saved_span(args.name, options)
            .map_err(|e| anyhow::anyhow!("{e} (pass --include-attributes)"))?;
        print_span(&info, args.print);
        return Ok(());
    }
    let options = ChildOptions {
        start_time: args.start_time,
        attributes,
        kind: Some(args.kind.into()),
        ..ChildOptions::default()
    };
    let mut span = session
        .tracer
        .start_span_in_context(ctx.as_ref(), args.name, options);
    span.set_status(status);
    let end = args.end_time.unwrap_or_else(Timestamp::now);
    span.end_with_timestamp(end.to_system_time());
    session.export().await?;
    Ok(())
}
