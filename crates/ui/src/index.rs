//! [`TraceIndex`]: the viewer's traces in memory, finished and running.
//!
//! # Lifecycle of a span in the index
//!
//! 1. While its work runs, the span is an open saved span in the store: the
//!    live poll lists it ([`TraceIndex::set_running`]) as a [`RunningSpan`],
//!    orphaned when the object owning it is gone.
//! 2. When it ends and its finished form arrives (OTLP or a followed file,
//!    [`TraceIndex::ingest`]), that form is shown and the running one is
//!    not, even before the next poll drops it.
//! 3. A span that arrives again with the same ids and content is ignored.

use std::collections::{BTreeSet, HashMap, HashSet};

use dspans_otlp::proto::collector::trace::v1::ExportTraceServiceRequest;
use dspans_otlp::view::{view_spans, ViewSpan};

/// One trace in the list.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct ListRow {
    /// Hex trace id.
    pub trace_id: String,
    /// The first root span's name.
    pub name: String,
    /// What the trace is about (pipeline, project, change), maybe empty.
    pub subject: String,
    /// Earliest start, Unix ns.
    pub start_ns: u64,
    /// Latest end of a finished span, Unix ns (0 when none finished).
    pub end_ns: u64,
    /// Finished spans.
    pub spans: usize,
    /// Finished spans with status ERROR.
    pub errors: usize,
    /// Running spans (their finished form not yet here).
    pub running: usize,
    /// Running spans whose owner is gone.
    pub orphaned: usize,
    /// Service names, sorted.
    pub services: Vec<String>,
}

/// A saved span still open in the store.
#[derive(Debug, Clone, PartialEq)]
pub struct RunningSpan {
    /// The span as far as it is known: no end, no status, no resource.
    pub span: ViewSpan,
    /// The store path of the object that owns it.
    pub owner: String,
    /// True when that object is gone: the orphan sweep will end the span.
    pub orphaned: bool,
}

/// One trace's spans and what the list needs of them.
#[derive(Debug, Default)]
pub(crate) struct TraceEntry {
    pub(crate) finished: Vec<ViewSpan>,
    /// Span ids of `finished`.
    pub(crate) ids: HashSet<String>,
    pub(crate) running: Vec<RunningSpan>,
    /// The list row and search terms, computed when first asked for after
    /// a change.
    pub(crate) cached: Option<Cached>,
}

/// What searching a trace looks at, computed once per change.
#[derive(Debug)]
pub(crate) struct Cached {
    pub(crate) row: ListRow,
    /// `key=value` of every attribute (span and resource), lowercase.
    pub(crate) pairs: HashSet<String>,
    /// Span names, services, instances and the subject, lowercase, one per
    /// line: free text is searched in it.
    pub(crate) text: String,
}

impl TraceEntry {
    /// The running spans whose finished form has not arrived.
    pub(crate) fn still_running(&self) -> impl Iterator<Item = &RunningSpan> {
        self.running
            .iter()
            .filter(|r| !self.ids.contains(&r.span.span_id))
    }
}

/// The viewer's traces by hex trace id, and a version that changes with
/// every change of them (pages wait on it).
#[derive(Debug, Default)]
pub struct TraceIndex {
    pub(crate) traces: HashMap<String, TraceEntry>,
    version: u64,
    spans: usize,
}

impl TraceIndex {
    /// Adds the spans of `request`; a span already held with the same ids
    /// and content is skipped. Returns how many were added.
    pub fn ingest(&mut self, request: &ExportTraceServiceRequest) -> usize {
        self.ingest_spans(view_spans(request))
    }

    /// [`TraceIndex::ingest`] of spans already read.
    pub fn ingest_spans(&mut self, spans: impl IntoIterator<Item = ViewSpan>) -> usize {
        let mut added = 0;
        for span in spans {
            let entry = self.traces.entry(span.trace_id.clone()).or_default();
            if entry.ids.contains(&span.span_id) && entry.finished.contains(&span) {
                continue;
            }
            entry.ids.insert(span.span_id.clone());
            entry.finished.push(span);
            entry.cached = None;
            added += 1;
        }
        if added > 0 {
            self.spans += added;
            self.version += 1;
        }
        added
    }

    /// Replaces the running spans with `running` (all traces); the version
    /// changes only when they differ from the last ones.
    pub fn set_running(&mut self, running: Vec<RunningSpan>) {
        let mut by_trace: HashMap<String, Vec<RunningSpan>> = HashMap::new();
        for span in running {
            by_trace
                .entry(span.span.trace_id.clone())
                .or_default()
                .push(span);
        }
        let touched: BTreeSet<String> = self
            .traces
            .iter()
            .filter(|(_, e)| !e.running.is_empty())
            .map(|(id, _)| id.clone())
            .chain(by_trace.keys().cloned())
            .collect();
        let mut changed = false;
        for id in touched {
            let new = by_trace.remove(&id).unwrap_or_default();
            let entry = self.traces.entry(id.clone()).or_default();
            if entry.running != new {
                entry.running = new;
                entry.cached = None;
                changed = true;
            }
            if entry.finished.is_empty() && entry.running.is_empty() {
                self.traces.remove(&id);
            }
        }
        if changed {
            self.version += 1;
        }
    }

    /// Changes with every change of the traces.
    pub fn version(&self) -> u64 {
        self.version
    }

    /// Finished spans held.
    pub fn span_count(&self) -> usize {
        self.spans
    }

    /// Traces held.
    pub fn trace_count(&self) -> usize {
        self.traces.len()
    }

    /// Whether a trace with this hex id is held.
    pub fn contains(&self, trace_id: &str) -> bool {
        self.traces.contains_key(trace_id)
    }
}
