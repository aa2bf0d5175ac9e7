//! The terminal waterfall.

use std::fmt::Write as _;

use super::model::{format_duration, Row, Trace, TraceSet, ViewSpan};
use super::KEY_ATTRIBUTES;

/// Width of the bar column, in characters.
const BAR_WIDTH: usize = 32;
/// Widest name column (indentation included).
const MAX_NAME_WIDTH: usize = 48;

/// Text with control characters (escape sequences, newlines) replaced, so
/// span data cannot drive the terminal.
fn clean(text: &str) -> String {
    text.chars()
        .map(|c| if c.is_control() { '\u{fffd}' } else { c })
        .collect()
}

/// `text` cut or padded to exactly `width` characters.
fn fit(text: &str, width: usize) -> String {
    let n = text.chars().count();
    if n <= width {
        format!("{text}{}", " ".repeat(width - n))
    } else {
        let mut s: String = text.chars().take(width.saturating_sub(1)).collect();
        s.push('…');
        s
    }
}

/// The bar of a span within its trace's time range.
fn bar(span: &ViewSpan, start: u64, total: u64) -> String {
    let (from, len) = if total == 0 {
        (0, BAR_WIDTH)
    } else {
        let scale = |ns: u64| ((ns as f64 / total as f64) * BAR_WIDTH as f64) as usize;
        let from = scale(span.start_ns.saturating_sub(start)).min(BAR_WIDTH - 1);
        let to = scale(span.end_ns.max(span.start_ns).saturating_sub(start)).min(BAR_WIDTH);
        (from, to.saturating_sub(from).max(1))
    };
    let fill = if span.is_error() { '▓' } else { '█' };
    let mut s = String::with_capacity(BAR_WIDTH * 3);
    s.extend(std::iter::repeat_n(' ', from));
    s.extend(std::iter::repeat_n(fill, len));
    s.extend(std::iter::repeat_n(' ', BAR_WIDTH - from - len));
    s
}

/// `service@host`, either part omitted when unknown.
pub(super) fn origin(span: &ViewSpan) -> String {
    match (&span.service, &span.host) {
        (Some(s), Some(h)) => format!("{s}@{h}"),
        (Some(s), None) => s.clone(),
        (None, Some(h)) => format!("@{h}"),
        (None, None) => String::new(),
    }
}

/// `key=value` for the [`KEY_ATTRIBUTES`] a span has.
pub(super) fn key_attributes(span: &ViewSpan) -> Vec<String> {
    KEY_ATTRIBUTES
        .iter()
        .filter_map(|k| span.attribute(k).map(|v| format!("{k}={v}")))
        .collect()
}

/// The bracketed flags of a row (missing parent, duplicate id, loop, error).
pub(super) fn flags(row: &Row, span: &ViewSpan) -> Vec<String> {
    let mut out = Vec::new();
    if row.missing_parent {
        let parent = span.parent_span_id.as_deref().unwrap_or("");
        out.push(format!("missing parent {parent}"));
    }
    if row.duplicate {
        out.push(format!("duplicate span id {}", span.span_id));
    }
    if row.in_loop {
        out.push("parent loop".to_string());
    }
    if span.is_error() {
        if span.status_message.is_empty() {
            out.push("error".to_string());
        } else {
            out.push(format!("error: {}", span.status_message));
        }
    }
    out
}

/// One trace's waterfall: a header line, then one line per span.
pub fn render_trace_terminal(trace: &Trace) -> String {
    let summary = trace.summary();
    let mut out = String::new();
    let _ = write!(
        out,
        "trace {}  {}  {} span{}  {}",
        trace.trace_id,
        clean(trace.name()),
        summary.spans,
        if summary.spans == 1 { "" } else { "s" },
        format_duration(trace.duration_ns()),
    );
    if !summary.missing_parent.is_empty() {
        let _ = write!(out, "  [{} missing parent]", summary.missing_parent.len());
    }
    if !summary.duplicate_span_ids.is_empty() {
        let _ = write!(
            out,
            "  [{} duplicate span id]",
            summary.duplicate_span_ids.len()
        );
    }
    out.push('\n');
    let labels: Vec<String> = trace
        .rows
        .iter()
        .map(|r| {
            format!(
                "{}{}",
                "  ".repeat(r.depth),
                clean(&trace.spans[r.span].name)
            )
        })
        .collect();
    let width = labels
        .iter()
        .map(|l| l.chars().count())
        .max()
        .unwrap_or(0)
        .clamp(8, MAX_NAME_WIDTH);
    let (start, total) = (trace.start_ns(), trace.duration_ns());
    for (row, label) in trace.rows.iter().zip(&labels) {
        let span = &trace.spans[row.span];
        let mut line = format!(
            "  {} │{}│ {:>8}",
            fit(label, width),
            bar(span, start, total),
            format_duration(span.duration_ns()),
        );
        let origin = origin(span);
        if !origin.is_empty() {
            line.push_str("  ");
            line.push_str(&clean(&origin));
        }
        for kv in key_attributes(span) {
            line.push_str("  ");
            line.push_str(&clean(&kv));
        }
        for flag in flags(row, span) {
            let _ = write!(line, "  [{}]", clean(&flag));
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

/// Every trace's waterfall, separated by blank lines; a note when there are
/// no spans.
pub fn render_terminal(set: &TraceSet) -> String {
    if set.traces().is_empty() {
        return "no spans\n".to_string();
    }
    set.traces()
        .iter()
        .map(render_trace_terminal)
        .collect::<Vec<_>>()
        .join("\n")
}
