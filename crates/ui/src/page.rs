//! One trace's page data ([`TraceIndex::trace_page`]) and the page itself:
//! served by the viewer, or written whole with the data inside
//! ([`snapshot_html`]).

use std::collections::BTreeMap;

use dspans_otlp::view::{Row, Trace, ViewSpan};
use serde_json::{json, Value};

use crate::index::TraceIndex;
use crate::query::cache;

const PAGE: &str = include_str!("../assets/page.html");
const STYLE: &str = include_str!("../assets/page.css");
const SCRIPT: &str = include_str!("../assets/page.js");

/// A span as the waterfall draws it: its fields, its place in the tree,
/// and times in ms from the trace's start.
#[derive(serde::Serialize)]
struct PageRow<'a> {
    #[serde(flatten)]
    span: &'a ViewSpan,
    row: Row,
    /// Rows right under this one.
    children: usize,
    at_ms: f64,
    dur_ms: f64,
    error: bool,
    running: bool,
    orphaned: bool,
    /// The owner's store path, while running.
    owner: Option<&'a str>,
}

/// One trace's page data.
#[derive(serde::Serialize)]
struct TracePage<'a> {
    trace_id: &'a str,
    name: &'a str,
    subject: String,
    start_ms: f64,
    dur_ms: f64,
    /// Spans still running.
    running: usize,
    spans: Vec<PageRow<'a>>,
    /// Linked trace ids, and whether each is here.
    linked: BTreeMap<&'a str, bool>,
}

/// Unix time now, in nanoseconds.
pub(crate) fn now_ns() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0)
}

fn ms(ns: u64) -> f64 {
    ns as f64 / 1e6
}

impl TraceIndex {
    /// The waterfall of trace `trace_id` (hex), as JSON text: its spans in
    /// tree order, running ones included, with times in ms from the trace's
    /// start. `None` when no trace has that id.
    pub fn trace_page(&self, trace_id: &str) -> Option<String> {
        let entry = self.traces.get(trace_id)?;
        let now = now_ns();
        let running: BTreeMap<&str, (&str, bool)> = entry
            .still_running()
            .map(|r| (r.span.span_id.as_str(), (r.owner.as_str(), r.orphaned)))
            .collect();
        let mut spans = entry.finished.clone();
        spans.extend(entry.still_running().map(|r| r.span.clone()));
        let trace = Trace::new(trace_id.to_string(), spans);
        let start = trace.start_ns();
        let mut children = vec![0usize; trace.rows.len()];
        let mut stack: Vec<(usize, usize)> = Vec::new();
        for (at, row) in trace.rows.iter().enumerate() {
            while stack.last().is_some_and(|&(_, depth)| depth >= row.depth) {
                stack.pop();
            }
            if let Some(&(parent, _)) = stack.last() {
                children[parent] += 1;
            }
            stack.push((at, row.depth));
        }
        let rows: Vec<PageRow<'_>> = trace
            .rows
            .iter()
            .zip(children)
            .map(|(row, children)| {
                let span = &trace.spans[row.span];
                let live = running.get(span.span_id.as_str());
                let end = if live.is_some() { now } else { span.end_ns };
                PageRow {
                    span,
                    row: *row,
                    children,
                    at_ms: ms(span.start_ns.saturating_sub(start)),
                    dur_ms: ms(end.saturating_sub(span.start_ns)),
                    error: span.is_error(),
                    running: live.is_some(),
                    orphaned: live.is_some_and(|(_, orphaned)| *orphaned),
                    owner: live.map(|(owner, _)| *owner),
                }
            })
            .collect();
        let linked: BTreeMap<&str, bool> = trace
            .spans
            .iter()
            .flat_map(|s| &s.links)
            .map(|l| (l.trace_id.as_str(), self.contains(&l.trace_id)))
            .collect();
        let end = trace
            .spans
            .iter()
            .map(|s| {
                if running.contains_key(s.span_id.as_str()) {
                    now
                } else {
                    s.end_ns
                }
            })
            .max()
            .unwrap_or(start);
        let page = TracePage {
            trace_id,
            name: trace.name(),
            subject: trace.subject(),
            start_ms: ms(start),
            dur_ms: ms(end.saturating_sub(start)),
            running: running.len(),
            spans: rows,
            linked,
        };
        // Serializing plain structs into a String cannot fail.
        serde_json::to_string(&page).ok()
    }
}

/// The viewer's page; `data` (JSON text), when given, is embedded and read
/// instead of asking the server.
pub(crate) fn page_html(data: Option<&str>) -> String {
    // `<` escaped, so that no text in the data can close the script.
    let data = data.unwrap_or("null").replace('<', "\\u003c");
    PAGE.replace("/*STYLE*/", STYLE)
        .replace("/*SCRIPT*/", SCRIPT)
        .replace("/*DATA*/", &data)
}

/// The viewer's page with every trace of `index` inside: one file that
/// works without a server or a network (no live part). The search works
/// as in the viewer.
pub fn snapshot_html(index: &mut TraceIndex) -> String {
    let mut list = Vec::new();
    let mut traces = Vec::new();
    let ids: Vec<String> = index.traces.keys().cloned().collect();
    for id in ids {
        let Some(entry) = index.traces.get(&id) else {
            continue;
        };
        let cached = cache(&id, entry);
        let mut row = json!(cached.row);
        row["pairs"] = json!(cached.pairs);
        row["text"] = json!(cached.text);
        list.push(row);
        if let Some(page) = index.trace_page(&id) {
            traces.push(format!("{}:{page}", json!(id)));
        }
    }
    let data = format!(
        r#"{{"list":{},"traces":{{{}}}}}"#,
        Value::from(list),
        traces.join(",")
    );
    page_html(Some(&data))
}
