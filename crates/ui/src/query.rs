//! The trace list: [`ListQuery`] (search, errors only, sort) and the rows
//! of one page of it ([`ListPage`]).
//!
//! A query is words separated by spaces; a trace matches when every word
//! does:
//! - `key=value`: a span of the trace (or its resource) has that attribute
//!   with exactly that value, e.g. `ref_number=2`, `service.name=zuul`;
//! - any other word: part of a span name, service, instance or the trace's
//!   subject, or the start of the trace id.
//!
//! Case is ignored. Traces with running spans come first, then the newest
//! (or the longest) first.

use std::collections::{BTreeSet, HashSet};

use dspans_otlp::view::Trace;

use crate::index::{Cached, ListRow, TraceEntry, TraceIndex};

/// Rows per page of the list.
pub const PAGE_SIZE: usize = 50;

/// Order of the list after the traces with running spans.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Sort {
    /// Newest start first (the default).
    #[default]
    Start,
    /// Longest first.
    Duration,
}

/// A search of the trace list.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ListQuery {
    /// Lowercase `key=value` words.
    pairs: Vec<String>,
    /// Lowercase other words.
    words: Vec<String>,
    /// Only traces with an error span.
    pub errors_only: bool,
    /// The order.
    pub sort: Sort,
}

impl ListQuery {
    /// The query of the search box's text (see the module doc).
    pub fn parse(text: &str) -> ListQuery {
        let mut query = ListQuery::default();
        for word in text.split_whitespace().map(str::to_lowercase) {
            if word.contains('=') {
                query.pairs.push(word);
            } else {
                query.words.push(word);
            }
        }
        query
    }

    fn matches(&self, trace_id: &str, cached: &Cached) -> bool {
        (!self.errors_only || cached.row.errors > 0)
            && self.pairs.iter().all(|p| cached.pairs.contains(p))
            && self
                .words
                .iter()
                .all(|w| trace_id.starts_with(w.as_str()) || cached.text.contains(w.as_str()))
    }
}

/// One page of the list.
#[derive(Debug, Clone, serde::Serialize)]
pub struct ListPage {
    /// Matching traces in all.
    pub total: usize,
    /// This page's number, from 0.
    pub page: usize,
    /// Rows per page.
    pub page_size: usize,
    /// The rows of this page.
    pub rows: Vec<ListRow>,
}

impl TraceIndex {
    /// Page `page` (from 0) of the traces matching `query`.
    pub fn list(&mut self, query: &ListQuery, page: usize) -> ListPage {
        let mut found: Vec<&ListRow> = Vec::new();
        for (id, entry) in &mut self.traces {
            if entry.cached.is_none() {
                entry.cached = Some(cache(id, entry));
            }
            if let Some(cached) = &entry.cached {
                if query.matches(id, cached) {
                    found.push(&cached.row);
                }
            }
        }
        let key = |r: &ListRow| match query.sort {
            Sort::Start => r.start_ns,
            Sort::Duration => r.end_ns.saturating_sub(r.start_ns),
        };
        found.sort_by(|a, b| {
            (b.running > 0, key(b), &b.trace_id).cmp(&(a.running > 0, key(a), &a.trace_id))
        });
        let total = found.len();
        let rows = found
            .into_iter()
            .skip(page.saturating_mul(PAGE_SIZE))
            .take(PAGE_SIZE)
            .cloned()
            .collect();
        ListPage {
            total,
            page,
            page_size: PAGE_SIZE,
            rows,
        }
    }
}

/// The list row and search terms of `entry`.
pub(crate) fn cache(trace_id: &str, entry: &TraceEntry) -> Cached {
    let running: Vec<_> = entry.still_running().collect();
    let mut spans: Vec<_> = entry.finished.clone();
    spans.extend(running.iter().map(|r| r.span.clone()));
    let trace = Trace::new(trace_id.to_string(), spans);
    let mut pairs = HashSet::new();
    let mut text = BTreeSet::new();
    for span in &trace.spans {
        text.insert(span.name.to_lowercase());
        for (key, value) in span.attributes.iter().chain(&span.resource_attributes) {
            pairs.insert(format!("{key}={value}").to_lowercase());
            // Zuul writes some attributes as lists (`ref_number` is `[2]`):
            // each item matches on its own.
            if let Some(items) = value.strip_prefix('[').and_then(|v| v.strip_suffix(']')) {
                for item in items.split(", ") {
                    pairs.insert(format!("{key}={item}").to_lowercase());
                }
            }
            if key == "service.instance.id" || key == "service.name" {
                text.insert(value.to_lowercase());
            }
        }
    }
    let subject = trace.subject();
    text.insert(subject.to_lowercase());
    let finished = &entry.finished;
    let row = ListRow {
        trace_id: trace_id.to_string(),
        name: trace.name().to_string(),
        subject,
        start_ns: trace.start_ns(),
        end_ns: finished.iter().map(|s| s.end_ns).max().unwrap_or(0),
        spans: finished.len(),
        errors: finished.iter().filter(|s| s.is_error()).count(),
        running: running.len(),
        orphaned: running.iter().filter(|r| r.orphaned).count(),
        services: finished
            .iter()
            .filter_map(|s| s.service.clone())
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect(),
    };
    Cached {
        row,
        pairs,
        text: text.into_iter().collect::<Vec<_>>().join("\n"),
    }
}
