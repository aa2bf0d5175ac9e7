//! `dspans view --follow`: keeps reading a file a collector appends to, and
//! prints each trace again whenever new spans of it arrive.

use std::collections::BTreeSet;
use std::io::{Read as _, Seek as _, SeekFrom, Write as _};
use std::path::Path;
use std::time::Duration;

use anyhow::Context as _;
use dspans_otlp::proto::collector::trace::v1::ExportTraceServiceRequest;
use dspans_otlp::view::{hex, render_terminal_with, TerminalOptions, TraceSet};

/// How often the file is looked at for new lines.
const POLL: Duration = Duration::from_millis(300);

/// The hex ids of the traces `requests` hold spans of.
fn traces_of(requests: &[ExportTraceServiceRequest]) -> BTreeSet<String> {
    requests
        .iter()
        .flat_map(|r| &r.resource_spans)
        .flat_map(|rs| &rs.scope_spans)
        .flat_map(|ss| &ss.spans)
        .map(|span| hex(&span.trace_id))
        .collect()
}

/// Prints the traces of `set` whose ids are in `touched` (and that
/// `only`, a trace id prefix, selects).
fn print(
    set: &TraceSet,
    touched: &BTreeSet<String>,
    only: Option<&str>,
    options: &TerminalOptions,
) -> std::io::Result<()> {
    let only = only.map(str::to_ascii_lowercase);
    let shown: Vec<_> = set
        .traces()
        .iter()
        .filter(|t| touched.contains(&t.trace_id))
        .filter(|t| only.as_deref().is_none_or(|p| t.trace_id.starts_with(p)))
        .cloned()
        .collect();
    if shown.is_empty() {
        return Ok(());
    }
    let text = render_terminal_with(&TraceSet::from_traces(shown), options);
    let mut stdout = std::io::stdout().lock();
    stdout.write_all(text.as_bytes())?;
    stdout.write_all(b"\n")?;
    stdout.flush()
}

/// Prints every trace of `path`, then, until interrupted, each trace again
/// when new spans of it are appended. A file that shrinks (replaced or
/// truncated) is read again from its start.
pub fn follow(path: &Path, only: Option<&str>, options: &TerminalOptions) -> anyhow::Result<()> {
    let mut requests: Vec<ExportTraceServiceRequest> = Vec::new();
    let mut offset = 0u64;
    loop {
        let mut file =
            std::fs::File::open(path).with_context(|| format!("cannot read {}", path.display()))?;
        let length = file.metadata()?.len();
        if length < offset {
            eprintln!("dspans view: {} shrank; reading it again", path.display());
            requests.clear();
            offset = 0;
        }
        file.seek(SeekFrom::Start(offset))?;
        let mut bytes = Vec::new();
        file.read_to_end(&mut bytes)?;
        let (new, used) = dspans_otlp::parse_complete_lines(&bytes);
        offset += used as u64;
        if !new.is_empty() {
            let touched = traces_of(&new);
            requests.extend(new);
            let set = TraceSet::from_requests(&requests);
            match print(&set, &touched, only, options) {
                Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => return Ok(()),
                other => other.context("cannot write to stdout")?,
            }
        }
        std::thread::sleep(POLL);
    }
}
