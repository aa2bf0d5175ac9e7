//! The terminal waterfall.

use std::fmt::Write as _;

use super::model::{format_duration, Row, Trace, TraceSet, ViewSpan};
use super::KEY_ATTRIBUTES;

/// Width of the bar column, in characters, on a wide enough line.
const BAR_WIDTH: usize = 32;
/// The narrowest bar column.
const MIN_BAR_WIDTH: usize = 10;
/// Widest name column (indentation included).
const MAX_NAME_WIDTH: usize = 48;

/// Which attributes are shown beside each span.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum Shown {
    /// The [`KEY_ATTRIBUTES`] (the default).
    #[default]
    Key,
    /// These keys, in this order, when a span has them.
    Only(Vec<String>),
    /// Every attribute.
    All,
}

/// How the terminal waterfall is drawn.
///
/// ```
/// use dspans_otlp::view::{Shown, TerminalOptions};
/// let options = TerminalOptions { width: Some(80), color: false, shown: Shown::All };
/// assert_eq!(TerminalOptions::default().width, None);
/// # let _ = options;
/// ```
#[derive(Debug, Clone, Default)]
pub struct TerminalOptions {
    /// Cut lines to this many columns (`None`: no limit); the bar narrows
    /// first.
    pub width: Option<usize>,
    /// ANSI colour: errors red, trace headers bold.
    pub color: bool,
    /// The attributes shown.
    pub shown: Shown,
}

const RED: &str = "\x1b[31m";
const BOLD: &str = "\x1b[1m";
const RESET: &str = "\x1b[0m";

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

/// The bar of a span within its trace's time range, `width` wide.
fn bar(span: &ViewSpan, start: u64, total: u64, width: usize) -> String {
    let (from, len) = if total == 0 {
        (0, width)
    } else {
        let scale = |ns: u64| ((ns as f64 / total as f64) * width as f64) as usize;
        let from = scale(span.start_ns.saturating_sub(start)).min(width - 1);
        let to = scale(span.end_ns.max(span.start_ns).saturating_sub(start)).min(width);
        (from, to.saturating_sub(from).max(1))
    };
    let fill = if span.is_error() { '▓' } else { '█' };
    let mut s = String::with_capacity(width * 3);
    s.extend(std::iter::repeat_n(' ', from));
    s.extend(std::iter::repeat_n(fill, len));
    s.extend(std::iter::repeat_n(' ', width - from - len));
    s
}

/// The attributes of `span` that `shown` asks for, as `key=value`.
fn shown_attributes(span: &ViewSpan, shown: &Shown) -> Vec<String> {
    match shown {
        Shown::Key => key_attributes(span),
        Shown::Only(keys) => keys
            .iter()
            .filter_map(|k| span.attribute(k).map(|v| format!("{k}={v}")))
            .collect(),
        Shown::All => span
            .attributes
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect(),
    }
}

/// `line` cut to `width` columns (one per character here), with `…`.
fn cut(line: String, width: Option<usize>) -> String {
    match width {
        Some(width) if line.chars().count() > width => {
            let mut cut: String = line.chars().take(width.saturating_sub(1)).collect();
            cut.push('…');
            cut
        }
        _ => line,
    }
}

/// `text` in `style` when colour is on.
fn paint(text: String, style: &str, color: bool) -> String {
    if color {
        format!("{style}{text}{RESET}")
    } else {
        text
    }
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
    render_trace_with(trace, &TerminalOptions::default())
}

/// One trace's waterfall as `options` ask: the header names the trace by
/// its root and subject (pipeline, project, change).
fn render_trace_with(trace: &Trace, options: &TerminalOptions) -> String {
    let summary = trace.summary();
    let mut header = String::new();
    let subject = trace.subject();
    let _ = write!(
        header,
        "trace {}  {}{}  {} span{}  {}",
        trace.trace_id,
        clean(trace.name()),
        if subject.is_empty() {
            String::new()
        } else {
            format!(" ({})", clean(&subject))
        },
        summary.spans,
        if summary.spans == 1 { "" } else { "s" },
        format_duration(trace.duration_ns()),
    );
    if !summary.missing_parent.is_empty() {
        let _ = write!(
            header,
            "  [{} missing parent]",
            summary.missing_parent.len()
        );
    }
    if !summary.duplicate_span_ids.is_empty() {
        let _ = write!(
            header,
            "  [{} duplicate span id]",
            summary.duplicate_span_ids.len()
        );
    }
    let mut out = paint(cut(header, options.width), BOLD, options.color);
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
    // The bar gives way first on a narrow terminal, then the name.
    let bar_width = match options.width {
        Some(columns) => columns
            .saturating_sub(width + 16)
            .clamp(MIN_BAR_WIDTH, BAR_WIDTH),
        None => BAR_WIDTH,
    };
    let (start, total) = (trace.start_ns(), trace.duration_ns());
    for (row, label) in trace.rows.iter().zip(&labels) {
        let span = &trace.spans[row.span];
        let mut line = format!(
            "  {} │{}│ {:>8}",
            fit(label, width),
            bar(span, start, total, bar_width),
            format_duration(span.duration_ns()),
        );
        let origin = origin(span);
        if !origin.is_empty() {
            line.push_str("  ");
            line.push_str(&clean(&origin));
        }
        for flag in flags(row, span) {
            let _ = write!(line, "  [{}]", clean(&flag));
        }
        for kv in shown_attributes(span, &options.shown) {
            line.push_str("  ");
            line.push_str(&clean(&kv));
        }
        let line = cut(line.trim_end().to_string(), options.width);
        let style = if span.is_error() { RED } else { "" };
        out.push_str(&paint(line, style, options.color && span.is_error()));
        out.push('\n');
    }
    out
}

/// Every trace's waterfall, separated by blank lines; a note when there are
/// no spans.
pub fn render_terminal(set: &TraceSet) -> String {
    render_terminal_with(set, &TerminalOptions::default())
}

/// [`render_terminal`] as `options` ask (width, colour, attributes).
pub fn render_terminal_with(set: &TraceSet, options: &TerminalOptions) -> String {
    if set.traces().is_empty() {
        return "no spans\n".to_string();
    }
    set.traces()
        .iter()
        .map(|trace| render_trace_with(trace, options))
        .collect::<Vec<_>>()
        .join("\n")
}
