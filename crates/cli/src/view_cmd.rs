//! `dspans view`: the traces of an OTLP-JSON lines file as a terminal
//! waterfall, and optionally as one self-contained HTML page.

use std::io::{IsTerminal as _, Write as _};
use std::path::PathBuf;

use anyhow::Context as _;
use clap::Args;
use dspans_otlp::view::{render_terminal_with, Shown, TerminalOptions, TraceSet};

/// Show the traces of an OTLP-JSON lines file as waterfalls.
///
/// Spans are indented under their parent, with a bar scaled to the trace's
/// duration, the duration, service@host and key attributes; spans whose
/// parent is not in the file are flagged `[missing parent ID]`. Each trace
/// is titled by its root and subject (pipeline, project, change). Lines fit
/// the terminal; errors are red on a colour terminal.
///
/// Example:
///   dspans view traces.jsonl --trace 4bf9 --attrs all --width 160
#[derive(Args, Debug, Clone)]
pub struct ViewArgs {
    /// The OTLP-JSON lines file (as written by `dspans collector`); a partial
    /// last line is ignored, and a line that is not an OTLP-JSON trace
    /// request is skipped with a warning (the exit status stays 0).
    #[arg(value_name = "FILE")]
    pub file: PathBuf,
    /// Show only this trace (its hex id, or the start of it).
    #[arg(long, value_name = "ID")]
    pub trace: Option<String>,
    /// Attributes shown beside each span: `key` (result, job, exit code, …),
    /// `all`, or a comma-separated list of keys.
    #[arg(long, value_name = "KEYS", default_value = "key")]
    pub attrs: String,
    /// Cut lines to N columns (default: the terminal's width; none when
    /// the output is not a terminal).
    #[arg(long, value_name = "N")]
    pub width: Option<usize>,
    /// Colour: errors red, trace headers bold (`auto`: on a terminal,
    /// unless NO_COLOR is set).
    #[arg(long, value_name = "WHEN", default_value = "auto", value_parser = ["auto", "always", "never"])]
    pub color: String,
    /// Keep reading the file as a collector appends to it, printing each
    /// trace again when new spans of it arrive (until Ctrl-C).
    #[arg(long, conflicts_with = "html")]
    pub follow: bool,
    /// Also write the viewer's page (as `dspans ui` shows it: trace list,
    /// search, waterfalls, span details) as one self-contained file.
    #[arg(long, value_name = "OUT")]
    pub html: Option<PathBuf>,
}

/// The waterfall's options from the flags and the terminal.
fn terminal_options(args: &ViewArgs) -> TerminalOptions {
    let tty = std::io::stdout().is_terminal();
    let color = match args.color.as_str() {
        "always" => true,
        "never" => false,
        _ => tty && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty()),
    };
    let width = args.width.or_else(|| {
        tty.then(|| terminal_size::terminal_size().map(|(w, _)| usize::from(w.0)))
            .flatten()
    });
    let shown = match args.attrs.as_str() {
        "key" => Shown::Key,
        "all" => Shown::All,
        list => Shown::Only(
            list.split(',')
                .map(str::trim)
                .filter(|k| !k.is_empty())
                .map(str::to_string)
                .collect(),
        ),
    };
    TerminalOptions {
        width,
        color,
        shown,
    }
}

/// Prints the waterfall and writes the HTML page if asked.
pub fn run(args: ViewArgs) -> anyhow::Result<()> {
    if args.follow {
        return crate::view_follow::follow(
            &args.file,
            args.trace.as_deref(),
            &terminal_options(&args),
        );
    }
    // The library's messages already name their cause: no chain.
    let (mut set, read) = TraceSet::scan(&args.file).map_err(|e| anyhow::anyhow!("{e}"))?;
    if read.unreadable > 0 {
        eprintln!(
            "dspans view: skipped {} of {} lines of {}: not OTLP-JSON trace requests",
            read.unreadable,
            read.unreadable + read.requests,
            args.file.display()
        );
    }
    if let Some(id) = &args.trace {
        set = set.only(id).map_err(|e| anyhow::anyhow!("{e}"))?;
    }
    if let Some(out) = &args.html {
        write_html(&set, out)?;
    }
    let text = render_terminal_with(&set, &terminal_options(&args));
    let mut stdout = std::io::stdout().lock();
    match stdout
        .write_all(text.as_bytes())
        .and_then(|()| stdout.flush())
    {
        // `dspans view … | head` is fine.
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        other => other.context("cannot write to stdout"),
    }
}

/// Writes `set` as a snapshot of the viewer's page to `out`.
pub(crate) fn write_html(set: &TraceSet, out: &std::path::Path) -> anyhow::Result<()> {
    let mut index = dspans_ui::TraceIndex::default();
    index.ingest_spans(set.traces().iter().flat_map(|t| t.spans.iter().cloned()));
    std::fs::write(out, dspans_ui::snapshot_html(&mut index))
        .with_context(|| format!("cannot write {}", out.display()))
}
