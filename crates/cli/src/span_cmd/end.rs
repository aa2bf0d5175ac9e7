//! `dspans span end`: ends a saved span once per file.

use std::path::Path;

use clap::Args;
use durable_spans::{EndOptions, Timestamp};

use super::file::SpanFile;
use super::{attributes, check_end_time, hex_ids, key_value, read_source, StatusArgs};
use crate::export_args::{ExportArgs, Session};

const EXAMPLE: &str = "\
Examples:
  dspans span end build.json --attr result=SUCCESS
  dspans span end build.json --status error --status-description \"unit tests failed\"
  echo \"$DSPANS_SPAN_INFO\" | dspans span end -";

/// `dspans span end`.
#[derive(Args, Debug)]
#[command(after_help = EXAMPLE)]
pub struct EndArgs {
    /// Span info to end: a FILE, or - for stdin. A file is marked as ended,
    /// so ending it again exports nothing.
    #[arg(default_value = "-")]
    pub input: String,
    /// End time: float seconds or integer nanoseconds. Default: now.
    #[arg(long, value_name = "T", allow_hyphen_values = true)]
    pub end_time: Option<Timestamp>,
    /// End attribute K=V (string); repeatable; overrides persisted start attributes.
    #[arg(long, value_name = "K=V", value_parser = key_value)]
    pub attr: Vec<String>,
    /// End attributes with types, as a JSON object: strings, integers, floats,
    /// booleans and lists of one of them. null values are dropped with a warning.
    #[arg(long, value_name = "JSON_OBJECT")]
    pub attr_json: Option<String>,
    #[command(flatten)]
    pub status: StatusArgs,
    /// Export the span again although its file says it was ended.
    #[arg(long)]
    pub force: bool,
    #[command(flatten)]
    pub export: ExportArgs,
}

pub(super) async fn run(args: EndArgs) -> anyhow::Result<()> {
    let what = if args.input == "-" {
        "stdin"
    } else {
        &args.input
    };
    let mut file = SpanFile::parse(&read_source(&args.input)?, what)?;
    let Some(info) = file.info.clone() else {
        eprintln!("dspans: span info is null; nothing to end");
        return Ok(());
    };
    if let (Some(at), false) = (file.ended_at, args.force) {
        eprintln!(
            "dspans: {what}: span {} ({}) was already ended at {} ns; nothing exported \
             (--force exports it again)",
            info.name,
            hex_ids(&info),
            at.as_nanos()
        );
        return Ok(());
    }
    let attributes = attributes(&args.attr, args.attr_json.as_deref())?;
    check_end_time(info.start_time, args.end_time)?;
    let status = args.status.status()?;
    let session = Session::new(&args.export)?;
    let end_time = args
        .end_time
        .unwrap_or_else(Timestamp::now)
        .max(info.start_time);
    let end = EndOptions::new()
        .attributes(attributes)
        .status(status)
        .events(file.events.clone())
        .end_time(end_time);
    session.tracer.end_saved_span(Some(&info), end);
    session.export().await?;
    if args.input != "-" {
        file.ended_at = Some(end_time);
        file.write(Path::new(&args.input))?;
    }
    Ok(())
}
