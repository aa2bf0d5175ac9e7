//! `dspans span`: saved spans from shell scripts and CI steps. The saved
//! JSON is the whole state: no daemon, no store.

use std::io::Read as _;
use std::path::Path;

use anyhow::{bail, Context as _};
use clap::{ArgMatches, Args, Subcommand, ValueEnum};
use durable_spans::{
    parent_context, parse_attribute_object, ChildOptions, EndOptions, SavedSpanOptions,
    SpanContext, SpanInfo, Timestamp,
};
use opentelemetry::trace::{Link, Span as _, SpanKind, TraceContextExt as _};
use opentelemetry::{Context, KeyValue};

use crate::export_args::{ExportArgs, Session};

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
}

/// `dspans span start`.
#[derive(Args, Debug)]
pub struct StartArgs {
    /// Span name.
    pub name: String,
    /// Start time: float seconds (1700000000.5) or integer nanoseconds. Default: now.
    #[arg(long, value_name = "T", allow_hyphen_values = true)]
    pub start_time: Option<Timestamp>,
    /// Parent: a saved span info (FILE, or - for stdin), restored as Zuul's restoreSpan does.
    #[arg(long, value_name = "FILE", conflicts_with = "parent_context")]
    pub parent_info: Option<String>,
    /// Parent: a span context as Zuul JSON, a traceparent, or a FILE holding either.
    #[arg(long, value_name = "JSON|FILE")]
    pub parent_context: Option<String>,
    /// Link to a span context (Zuul JSON, traceparent or FILE); repeatable.
    #[arg(long, value_name = "JSON")]
    pub link_context: Vec<String>,
    /// Attribute K=V of the link given just before; repeatable.
    #[arg(long, value_name = "K=V", value_parser = key_value)]
    pub link_attr: Vec<String>,
    /// Start attribute K=V (string); refused unless --include-attributes.
    #[arg(long, value_name = "K=V", value_parser = key_value)]
    pub attr: Vec<String>,
    /// Persist start attributes in the span info (by default attributes belong at the end).
    #[arg(long)]
    pub include_attributes: bool,
    /// Span kind, saved in the span info and exported when the span ends
    /// (a CI/CD pipeline run is `server`).
    #[arg(long, value_enum, default_value_t = KindArg::Internal)]
    pub kind: KindArg,
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

/// `dspans span end`.
#[derive(Args, Debug)]
pub struct EndArgs {
    /// Span info to end: a FILE, or - for stdin.
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
    pub export: ExportArgs,
}

/// `dspans span context`.
#[derive(Args, Debug)]
pub struct ContextArgs {
    /// Span info: a FILE, or - for stdin.
    #[arg(default_value = "-")]
    pub input: String,
    /// Output format.
    #[arg(long, default_value = "zuul", value_parser = ["zuul", "traceparent"])]
    pub format: String,
}

/// `dspans span child`.
#[derive(Args, Debug)]
pub struct ChildArgs {
    /// Span name.
    pub name: String,
    /// Parent span context: Zuul JSON, a traceparent, or a FILE holding either.
    #[arg(long, value_name = "JSON|FILE|TRACEPARENT")]
    pub context: String,
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
    /// Span kind; with --save, saved in the span info.
    #[arg(long, value_enum, default_value_t = KindArg::Internal)]
    pub kind: KindArg,
    #[command(flatten)]
    pub export: ExportArgs,
}

/// Runs a span subcommand; `matches` are the subcommand's own, used to pair
/// each --link-attr with the --link-context before it.
pub async fn run(cmd: SpanCommand, matches: Option<&ArgMatches>) -> anyhow::Result<()> {
    match cmd {
        SpanCommand::Start(args) => start(args, matches),
        SpanCommand::End(args) => end(args).await,
        SpanCommand::Context(args) => context(args),
        SpanCommand::Child(args) => child(args).await,
    }
}

fn start(args: StartArgs, matches: Option<&ArgMatches>) -> anyhow::Result<()> {
    let session = Session::new(&ExportArgs::default())?;
    let parent = match (&args.parent_info, &args.parent_context) {
        (Some(source), _) => {
            let text = read_source(source)?;
            let info = decode_info(&text, source)?;
            if info.is_none() {
                tracing::warn!("parent span info is null; starting a new trace");
            }
            match info {
                Some(info) => Context::new().with_span(session.tracer.restore(Some(&info))),
                None => Context::new(),
            }
        }
        (None, Some(value)) => parent_context(Some(&resolve_context(value)?)),
        (None, None) => Context::new(),
    };
    let mut options = SavedSpanOptions::new()
        .parent(parent)
        .kind(args.kind.into());
    options.start_time = args.start_time;
    options.links = links(&args, matches)?;
    options.attributes = parse_kv(&args.attr)?;
    options.include_attributes = args.include_attributes;
    let info = session
        .tracer
        .start_saved_span(args.name, options)
        .map_err(|e| anyhow::anyhow!("{e} (pass --include-attributes)"))?;
    println!("{}", info.to_json());
    Ok(())
}

/// Pairs each --link-attr with the closest --link-context before it.
fn links(args: &StartArgs, matches: Option<&ArgMatches>) -> anyhow::Result<Vec<Link>> {
    let context_at: Vec<usize> = matches
        .and_then(|m| m.indices_of("link_context"))
        .map(|i| i.collect())
        .unwrap_or_default();
    let attr_at: Vec<usize> = matches
        .and_then(|m| m.indices_of("link_attr"))
        .map(|i| i.collect())
        .unwrap_or_default();
    let mut links = Vec::new();
    for (n, value) in args.link_context.iter().enumerate() {
        let ctx = resolve_context(value)?;
        let here = context_at.get(n).copied().unwrap_or(0);
        let next = context_at.get(n + 1).copied().unwrap_or(usize::MAX);
        let attrs: Vec<String> = args
            .link_attr
            .iter()
            .zip(attr_at.iter().copied().chain(std::iter::repeat(usize::MAX)))
            .filter(|(_, at)| *at > here && *at < next)
            .map(|(kv, _)| kv.clone())
            .collect();
        links.push(Link::new(ctx.to_otel(true), parse_kv(&attrs)?, 0));
    }
    if !args.link_attr.is_empty() && args.link_context.is_empty() {
        bail!("--link-attr needs a --link-context before it");
    }
    if let (Some(first_attr), Some(first_ctx)) = (attr_at.first(), context_at.first()) {
        if first_attr < first_ctx {
            bail!("--link-attr needs a --link-context before it");
        }
    }
    Ok(links)
}

async fn end(args: EndArgs) -> anyhow::Result<()> {
    let text = read_source(&args.input)?;
    let Some(info) = decode_info(&text, &args.input)? else {
        eprintln!("dspans: span info is null; nothing to end");
        return Ok(());
    };
    let mut attributes = parse_kv(&args.attr)?;
    if let Some(json) = &args.attr_json {
        attributes.extend(parse_attribute_object(json).context("--attr-json")?);
    }
    check_end_time(info.start_time, args.end_time)?;
    let session = Session::new(&args.export)?;
    let mut end = EndOptions::new().attributes(attributes);
    end.end_time = args.end_time;
    session.tracer.end_saved_span(Some(&info), end);
    session.export().await?;
    Ok(())
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

async fn child(args: ChildArgs) -> anyhow::Result<()> {
    let ctx = resolve_context(&args.context)?;
    let attributes = parse_kv(&args.attr)?;
    check_end_time(
        args.start_time.unwrap_or_else(Timestamp::now),
        args.end_time,
    )?;
    let session = Session::new(&args.export)?;
    if args.save {
        let mut options = SavedSpanOptions::new()
            .parent(parent_context(Some(&ctx)))
            .kind(args.kind.into());
        options.start_time = args.start_time;
        options.attributes = attributes;
        options.include_attributes = args.include_attributes;
        let info = session
            .tracer
            .start_saved_span(args.name, options)
            .map_err(|e| anyhow::anyhow!("{e} (pass --include-attributes)"))?;
        println!("{}", info.to_json());
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
        .start_span_in_context(Some(&ctx), args.name, options);
    let end = args.end_time.unwrap_or_else(Timestamp::now);
    span.end_with_timestamp(end.to_system_time());
    session.export().await?;
    Ok(())
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
