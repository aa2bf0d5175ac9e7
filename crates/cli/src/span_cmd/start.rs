//! `dspans span start`: a saved span, printed or saved, and handed to the
//! next CI steps through an env file.

use std::io::Write as _;
use std::path::PathBuf;

use anyhow::{bail, Context as _};
use clap::{ArgMatches, Args};
use durable_spans::{parent_context, SavedSpanOptions, SpanInfo, Timestamp};
use opentelemetry::trace::{Link, TraceContextExt as _};
use opentelemetry::Context;

use super::file::SpanFile;
use super::{
    decode_info, inherited_context, key_value, parse_kv, print_span, read_source, resolve_context,
    KindArg, PrintArg,
};
use crate::export_args::{ExportArgs, Session};

const EXAMPLE: &str = "\
Examples:
  dspans span start build --kind server > build.json
  # a root span for a CI pipeline: later steps inherit TRACEPARENT, the last ends it
  dspans span start pipeline --env-file \"$GITHUB_ENV\" --print hex";

/// `dspans span start`.
#[derive(Args, Debug)]
#[command(after_help = EXAMPLE)]
pub struct StartArgs {
    /// Span name.
    pub name: String,
    /// Start time: float seconds (1700000000.5) or integer nanoseconds. Default: now.
    #[arg(long, value_name = "T", allow_hyphen_values = true)]
    pub start_time: Option<Timestamp>,
    /// Parent: a saved span info (FILE, or - for stdin), restored as Zuul's restoreSpan does.
    #[arg(long, value_name = "FILE", conflicts_with = "parent_context")]
    pub parent_info: Option<String>,
    /// Parent: a span context as Zuul JSON, a traceparent, or a FILE holding
    /// either. Default: TRACEPARENT from the environment, else none.
    #[arg(long, value_name = "JSON|FILE")]
    pub parent_context: Option<String>,
    /// Do not take the parent from TRACEPARENT.
    #[arg(long)]
    pub no_env_context: bool,
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
    /// Also write the span info to FILE (whole or not at all).
    #[arg(long, value_name = "FILE")]
    pub save: Option<PathBuf>,
    /// What to print: the span info, its traceparent, or its ids in hex.
    #[arg(long, value_enum, default_value_t = PrintArg::Json)]
    pub print: PrintArg,
    /// Append `TRACEPARENT=…`, `DSPANS_SPAN_INFO=` the span info (and
    /// `DSPANS_SPAN_FILE=` the --save FILE) to FILE in dotenv form, as GitHub
    /// Actions' $GITHUB_ENV and GitLab's dotenv reports read it: later
    /// steps' spans become its children, and the last step can end it with
    /// `echo "$DSPANS_SPAN_INFO" | dspans span end -`.
    #[arg(long, value_name = "FILE")]
    pub env_file: Option<PathBuf>,
}

/// Starts the span and prints (and saves, and hands on) it.
pub(super) fn run(args: StartArgs, matches: Option<&ArgMatches>) -> anyhow::Result<()> {
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
        (None, None) => parent_context(inherited_context(args.no_env_context).as_ref()),
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
        .start_saved_span(args.name.clone(), options)
        .map_err(|e| anyhow::anyhow!("{e} (pass --include-attributes)"))?;
    if let Some(path) = &args.save {
        saved(&info).write(path)?;
    }
    if let Some(env_file) = &args.env_file {
        append_env(env_file, &info, args.save.as_deref())?;
    }
    print_span(&info, args.print);
    Ok(())
}

/// A new span file holding `info`.
pub(super) fn saved(info: &SpanInfo) -> SpanFile {
    SpanFile {
        info: Some(info.clone()),
        events: Vec::new(),
        ended_at: None,
    }
}

/// Appends the span's carrier lines to a dotenv file.
fn append_env(
    env_file: &std::path::Path,
    info: &SpanInfo,
    saved: Option<&std::path::Path>,
) -> anyhow::Result<()> {
    let mut lines = format!(
        "TRACEPARENT={}\nDSPANS_SPAN_INFO={}\n",
        info.span_context().to_traceparent(),
        info.to_json()
    );
    if let Some(path) = saved {
        let path = std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf());
        lines.push_str(&format!("DSPANS_SPAN_FILE={}\n", path.display()));
    }
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(env_file)
        .with_context(|| format!("cannot open the env file {}", env_file.display()))?;
    file.write_all(lines.as_bytes())
        .with_context(|| format!("cannot append to {}", env_file.display()))?;
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
