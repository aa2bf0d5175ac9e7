//! `dspans span`: saved spans from shell scripts and CI steps. The saved
//! JSON is the whole state: no daemon, no store.
//!
//! Every command that starts a span takes its parent from the command line,
//! else from the `TRACEPARENT` environment variable (the OpenTelemetry
//! environment carrier, as jobs and CI steps get it), else starts a trace.

mod check;
mod child;
mod end;
mod event;
mod exec;
mod file;
mod start;

use std::io::Read as _;
use std::path::Path;

use anyhow::{bail, Context as _};
use clap::{ArgMatches, Args, Subcommand, ValueEnum};
use durable_spans::{SpanContext, SpanInfo, Timestamp};
use opentelemetry::trace::{SpanKind, Status};
use opentelemetry::KeyValue;

pub use check::CheckArgs;
pub use child::ChildArgs;
pub use end::EndArgs;
pub use event::EventArgs;
pub use exec::ExecArgs;
pub use start::StartArgs;

/// Save, restore and end spans across processes.
#[derive(Subcommand, Debug)]
pub enum SpanCommand {
    /// Start a saved span and print its span info as one JSON line. Nothing is exported.
    Start(StartArgs),
    /// Restore a saved span and end it, exporting it. Input `null` does nothing.
    End(EndArgs),
    /// Print the span context of a saved span (what remote workers need to start children).
    Context(ContextArgs),
    /// Start a child in a span context and end it (or, with --save, print its span info).
    Child(ChildArgs),
    /// Run a command as a span: timed, its exit status recorded, TRACEPARENT handed to it.
    Exec(ExecArgs),
    /// Add an event to a saved span's file; it is exported when the span ends.
    Event(EventArgs),
    /// Send one test span with the current settings and say where it went.
    Check(CheckArgs),
}

/// `dspans span context`.
#[derive(Args, Debug)]
#[command(after_help = "Example:\n  dspans span context build.json --format traceparent")]
pub struct ContextArgs {
    /// Span info: a FILE, or - for stdin.
    #[arg(default_value = "-")]
    pub input: String,
    /// Output format.
    #[arg(long, default_value = "zuul", value_parser = ["zuul", "traceparent"])]
    pub format: String,
}

/// An OpenTelemetry span kind, as named on the command line.
#[derive(ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum KindArg {
    /// An operation inside the application (the default).
    Internal,
    /// The server side of a request, or a run such as a CI/CD pipeline's.
    Server,
    /// The client side of a request.
    Client,
    /// The sender of a message.
    Producer,
    /// The receiver of a message.
    Consumer,
}

impl From<KindArg> for SpanKind {
    fn from(kind: KindArg) -> SpanKind {
        match kind {
            KindArg::Internal => SpanKind::Internal,
            KindArg::Server => SpanKind::Server,
            KindArg::Client => SpanKind::Client,
            KindArg::Producer => SpanKind::Producer,
            KindArg::Consumer => SpanKind::Consumer,
        }
    }
}

/// A span status, as named on the command line.
#[derive(ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum StatusArg {
    /// The work succeeded (an explicit OK).
    Ok,
    /// The work failed: backends show the span in red.
    Error,
}

/// `--status` and `--status-description`: a description alone means error.
#[derive(Args, Debug, Clone, Default)]
pub struct StatusArgs {
    /// The span's status.
    #[arg(long, value_enum)]
    pub status: Option<StatusArg>,
    /// What went wrong (implies --status error).
    #[arg(long, value_name = "TEXT")]
    pub status_description: Option<String>,
}

impl StatusArgs {
    /// The status asked for; unset when none.
    pub fn status(&self) -> anyhow::Result<Status> {
        match (self.status, &self.status_description) {
            (Some(StatusArg::Ok), Some(_)) => Err(crate::UsageError(
                "--status-description goes with --status error, not ok".into(),
            )
            .into()),
            (Some(StatusArg::Ok), None) => Ok(Status::Ok),
            (Some(StatusArg::Error) | None, Some(text)) => Ok(Status::error(text.clone())),
            (Some(StatusArg::Error), None) => Ok(Status::error("")),
            (None, None) => Ok(Status::Unset),
        }
    }
}

/// How a started span is printed: its span info (`json`), its
/// `traceparent`, or its ids in hex (`hex`: `TRACE_ID SPAN_ID`, what
/// Jaeger and Tempo search by).
#[derive(ValueEnum, Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum PrintArg {
    /// The span info, one JSON line (what `end` takes).
    #[default]
    Json,
    /// The W3C traceparent of the span.
    Traceparent,
    /// Trace id and span id in hex.
    Hex,
}

/// Prints a started span as `print` asks.
fn print_span(info: &SpanInfo, print: PrintArg) {
    match print {
        PrintArg::Json => println!("{}", info.to_json()),
        PrintArg::Traceparent => println!("{}", info.span_context().to_traceparent()),
        PrintArg::Hex => println!("{}", hex_ids(info)),
    }
}

/// `TRACE_ID SPAN_ID` in hex, how messages name a span.
fn hex_ids(info: &SpanInfo) -> String {
    format!("{:032x} {:016x}", info.trace_id, info.span_id)
}

/// Runs a span subcommand; `matches` are the subcommand's own, used to pair
/// each --link-attr with the --link-context before it.
pub async fn run(cmd: SpanCommand, matches: Option<&ArgMatches>) -> anyhow::Result<()> {
    match cmd {
        SpanCommand::Start(args) => start::run(args, matches),
        SpanCommand::End(args) => end::run(args).await,
        SpanCommand::Context(args) => context(args),
        SpanCommand::Child(args) => child::run(args).await,
        SpanCommand::Exec(args) => exec::run(args).await,
        SpanCommand::Event(args) => event::run(args),
        SpanCommand::Check(args) => check::run(args).await,
    }
}

fn context(args: ContextArgs) -> anyhow::Result<()> {
    let text = read_source(&args.input)?;
    let ctx = decode_info(&text, &args.input)?.map(|info| info.span_context());
    match (args.format.as_str(), ctx) {
        ("traceparent", Some(ctx)) => println!("{}", ctx.to_traceparent()),
        ("traceparent", None) => bail!("span info is null: there is no span context to print"),
        (_, ctx) => println!("{}", ctx.unwrap_or(SpanContext::INVALID).to_json()),
    }
    Ok(())
}

/// The parent a new span inherits from the environment: `TRACEPARENT`
/// when set and valid (an invalid one is ignored with a warning, as the
/// carrier's rules say), unless `ignore` (`--no-env-context`).
fn inherited_context(ignore: bool) -> Option<SpanContext> {
    if ignore {
        return None;
    }
    let value = std::env::var("TRACEPARENT").ok()?;
    let value = value.trim();
    if value.is_empty() {
        return None;
    }
    match SpanContext::from_traceparent(value) {
        Ok(ctx) if ctx.is_valid() => Some(ctx),
        Ok(_) => {
            tracing::warn!(traceparent = %value, "TRACEPARENT names no span; starting a new trace");
            None
        }
        Err(error) => {
            tracing::warn!(traceparent = %value, %error, "ignoring an invalid TRACEPARENT; starting a new trace");
            None
        }
    }
}

/// Reads FILE, or stdin for `-`.
fn read_source(source: &str) -> anyhow::Result<String> {
    if source == "-" {
        let mut text = String::new();
        std::io::stdin()
            .read_to_string(&mut text)
            .context("could not read span info from stdin")?;
        return Ok(text);
    }
    std::fs::read_to_string(Path::new(source)).with_context(|| format!("could not read {source}"))
}

fn decode_info(text: &str, source: &str) -> anyhow::Result<Option<SpanInfo>> {
    let what = if source == "-" { "stdin" } else { source };
    SpanInfo::from_json(text.trim()).with_context(|| format!("span info from {what}"))
}

/// A span context given as Zuul JSON, a traceparent, or a file holding either.
fn resolve_context(value: &str) -> anyhow::Result<SpanContext> {
    let parse = |text: &str| -> anyhow::Result<Option<SpanContext>> {
        let text = text.trim();
        if text.starts_with('{') || text == "null" {
            let ctx = SpanContext::from_json(text)?;
            return Ok(Some(ctx.unwrap_or(SpanContext::INVALID)));
        }
        if text.len() >= 55 && text.as_bytes().get(2) == Some(&b'-') {
            return Ok(Some(SpanContext::from_traceparent(text)?));
        }
        Ok(None)
    };
    if let Some(ctx) = parse(value)? {
        return Ok(ctx);
    }
    let text = std::fs::read_to_string(value).with_context(|| {
        format!(
            "{value:?} is neither a span context (Zuul JSON or traceparent) nor a readable file"
        )
    })?;
    parse(&text)?.with_context(|| format!("{value} holds neither Zuul JSON nor a traceparent"))
}

/// Checks a K=V argument as clap parses it, so a malformed one is a usage
/// error (exit status 2) naming the argument.
fn key_value(pair: &str) -> Result<String, String> {
    match pair.split_once('=') {
        Some((key, _)) if !key.is_empty() => Ok(pair.to_string()),
        _ => Err(format!(
            "{pair:?} is not KEY=VALUE (for example --attr result=SUCCESS)"
        )),
    }
}

/// Refuses an end time before the span's start: OTLP backends show such a
/// span with a negative duration, or drop it.
fn check_end_time(start: Timestamp, end: Option<Timestamp>) -> anyhow::Result<()> {
    match end {
        Some(end) if end < start => Err(crate::UsageError(format!(
            "--end-time {} ns is before the span's start time {} ns",
            end.as_nanos(),
            start.as_nanos()
        ))
        .into()),
        _ => Ok(()),
    }
}

/// K=V pairs as string attributes.
fn parse_kv(pairs: &[String]) -> anyhow::Result<Vec<KeyValue>> {
    pairs
        .iter()
        .map(|pair| match pair.split_once('=') {
            Some((k, v)) if !k.is_empty() => Ok(KeyValue::new(k.to_string(), v.to_string())),
            _ => bail!("attribute {pair:?} must be KEY=VALUE"),
        })
        .collect()
}

/// `--attr K=V` pairs, then the typed ones of `--attr-json`.
fn attributes(pairs: &[String], json: Option<&str>) -> anyhow::Result<Vec<KeyValue>> {
    let mut attributes = parse_kv(pairs)?;
    if let Some(json) = json {
        attributes.extend(durable_spans::parse_attribute_object(json).context("--attr-json")?);
    }
    Ok(attributes)
}
