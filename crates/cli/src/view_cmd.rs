//! `dspans view`: the traces of an OTLP-JSON lines file as a terminal
//! waterfall, and optionally as one self-contained HTML page.

use std::io::Write as _;
use std::path::PathBuf;

use anyhow::Context as _;
use clap::Args;
use dspans_otlp::view::{render_html, render_terminal, TraceSet};

/// Show the traces of an OTLP-JSON lines file as waterfalls.
///
/// Spans are indented under their parent, with a bar scaled to the trace's
/// duration, the duration, service@host and key attributes; spans whose
/// parent is not in the file are flagged `[missing parent ID]`.
#[derive(Args, Debug, Clone)]
pub struct ViewArgs {
    /// The OTLP-JSON lines file (as written by `dspans collector`); a partial
    /// last line is ignored, and a line that is not an OTLP-JSON trace
    /// request is skipped with a warning (the exit status stays 0).
    #[arg(value_name = "FILE")]
    pub file: PathBuf,
    /// Show only this trace (hex trace id).
    #[arg(long, value_name = "ID")]
    pub trace: Option<String>,
    /// Also write a self-contained HTML page (click a span for its details).
    #[arg(long, value_name = "OUT")]
    pub html: Option<PathBuf>,
}

/// Prints the waterfall and writes the HTML page if asked.
pub fn run(args: ViewArgs) -> anyhow::Result<()> {
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
        std::fs::write(out, render_html(&set))
            .with_context(|| format!("cannot write {}", out.display()))?;
    }
    let text = render_terminal(&set);
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
