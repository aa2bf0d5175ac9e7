//! The self-contained HTML waterfall: inline CSS and JS, no network.
//!
//! Each span is one `<div class="span-row" data-span-id=… data-trace-id=…>`
//! followed by its hidden `<div class="span-detail">` (ids, parent,
//! attributes, events, links, resource), shown by a click on the row.

use std::fmt::Write as _;

use super::model::{format_duration, Trace, TraceSet, ViewSpan};
use super::terminal::{flags, key_attributes, origin};

const STYLE: &str = r#"
body{font:13px/1.4 system-ui,sans-serif;margin:1em 2em;color:#222}
h1{font-size:1.3em}h2{font-size:1.05em;margin:1.5em 0 .4em;font-family:monospace}
.summary{color:#555}.trace{border-top:1px solid #ccc}
.span-row{display:grid;grid-template-columns:minmax(14em,28em) 1fr 6em minmax(8em,14em);
 gap:.6em;align-items:center;padding:1px 4px;cursor:pointer;border-radius:3px}
.span-row:hover,.span-row:focus{background:#eef3ff;outline:none}
.span-row.open{background:#dde7ff}
.name{white-space:nowrap;overflow:hidden;text-overflow:ellipsis}
.track{position:relative;height:12px;background:#f3f3f3;border-radius:2px}
.bar{position:absolute;top:0;height:12px;min-width:2px;background:#4a7bd8;border-radius:2px}
.error .bar{background:#d84a4a}.dur{text-align:right;font-family:monospace}
.origin{color:#555;white-space:nowrap;overflow:hidden;text-overflow:ellipsis}
.flag{color:#b00;font-weight:bold;margin-left:.5em}.keys{color:#666;margin-left:.5em}
.span-detail{margin:2px 0 8px 2em;padding:6px 10px;background:#fafafa;border-left:3px solid #4a7bd8}
.span-detail table{border-collapse:collapse}.span-detail td{padding:1px 8px;vertical-align:top;
 font-family:monospace;white-space:pre-wrap;word-break:break-all}
.span-detail th{text-align:left;padding-top:6px}
"#;

const SCRIPT: &str = r#"
document.querySelectorAll('.span-row').forEach(function (row) {
  function toggle() {
    var detail = row.nextElementSibling;
    if (!detail || !detail.classList.contains('span-detail')) { return; }
    detail.hidden = !detail.hidden;
    row.classList.toggle('open', !detail.hidden);
  }
  row.addEventListener('click', toggle);
  row.addEventListener('keydown', function (e) {
    if (e.key === 'Enter' || e.key === ' ') { e.preventDefault(); toggle(); }
  });
});
"#;

/// Escapes text for HTML element content and quoted attribute values.
pub(super) fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

fn table(out: &mut String, title: &str, rows: &[(String, String)]) {
    if rows.is_empty() {
        return;
    }
    let _ = write!(out, "<tr><th colspan=\"2\">{}</th></tr>", escape(title));
    for (k, v) in rows {
        let _ = write!(out, "<tr><td>{}</td><td>{}</td></tr>", escape(k), escape(v));
    }
}

fn detail(out: &mut String, span: &ViewSpan, trace_start: u64) {
    out.push_str("<div class=\"span-detail\" hidden><table>");
    let mut ids = vec![
        ("name".to_string(), span.name.clone()),
        ("trace id".to_string(), span.trace_id.clone()),
        ("span id".to_string(), span.span_id.clone()),
        (
            "parent span id".to_string(),
            span.parent_span_id
                .clone()
                .unwrap_or_else(|| "(root)".into()),
        ),
        ("kind".to_string(), span.kind.clone()),
        ("status".to_string(), span.status_code.clone()),
    ];
    if !span.status_message.is_empty() {
        ids.push(("status message".into(), span.status_message.clone()));
    }
    ids.push((
        "start".into(),
        format!(
            "+{} ({} Unix ns)",
            format_duration(span.start_ns.saturating_sub(trace_start)),
            span.start_ns
        ),
    ));
    ids.push(("duration".into(), format_duration(span.duration_ns())));
    if !span.scope.is_empty() {
        ids.push(("scope".into(), span.scope.clone()));
    }
    table(out, "Span", &ids);
    table(out, "Attributes", &span.attributes);
    for (i, e) in span.events.iter().enumerate() {
        let mut rows = vec![(
            "time".to_string(),
            format!(
                "+{}",
                format_duration(e.time_ns.saturating_sub(trace_start))
            ),
        )];
        rows.extend(e.attributes.iter().cloned());
        table(out, &format!("Event {}: {}", i + 1, e.name), &rows);
    }
    for (i, l) in span.links.iter().enumerate() {
        let mut rows = vec![
            ("trace id".to_string(), l.trace_id.clone()),
            ("span id".to_string(), l.span_id.clone()),
        ];
        rows.extend(l.attributes.iter().cloned());
        table(out, &format!("Link {}", i + 1), &rows);
    }
    table(out, "Resource", &span.resource_attributes);
    out.push_str("</table></div>\n");
}

fn trace_section(out: &mut String, trace: &Trace) {
    let summary = trace.summary();
    let _ = write!(
        out,
        "<section class=\"trace\" data-trace-id=\"{id}\">\n<h2>trace {id}</h2>\n\
         <p class=\"summary\">{name} · {n} span{s} · {dur}",
        id = escape(&trace.trace_id),
        name = escape(trace.name()),
        n = summary.spans,
        s = if summary.spans == 1 { "" } else { "s" },
        dur = format_duration(trace.duration_ns()),
    );
    if !summary.missing_parent.is_empty() {
        let _ = write!(
            out,
            "<span class=\"flag\">{} missing parent</span>",
            summary.missing_parent.len()
        );
    }
    if !summary.duplicate_span_ids.is_empty() {
        let _ = write!(
            out,
            "<span class=\"flag\">{} duplicate span id</span>",
            summary.duplicate_span_ids.len()
        );
    }
    out.push_str("</p>\n<div class=\"waterfall\">\n");
    let (start, total) = (trace.start_ns(), trace.duration_ns());
    let pct = |ns: u64| {
        if total == 0 {
            0.0
        } else {
            (ns as f64 / total as f64 * 100.0).clamp(0.0, 100.0)
        }
    };
    for row in &trace.rows {
        let span = &trace.spans[row.span];
        let left = pct(span.start_ns.saturating_sub(start));
        let width = if total == 0 {
            100.0
        } else {
            pct(span.duration_ns()).min(100.0 - left)
        };
        let _ = write!(
            out,
            "<div class=\"span-row{err}\" tabindex=\"0\" data-trace-id=\"{t}\" data-span-id=\"{s}\" \
             data-parent-span-id=\"{p}\" data-depth=\"{d}\">\
             <div class=\"name\" style=\"padding-left:{indent}em\" title=\"{name}\">{name}",
            err = if span.is_error() { " error" } else { "" },
            t = escape(&span.trace_id),
            s = escape(&span.span_id),
            p = escape(span.parent_span_id.as_deref().unwrap_or("")),
            d = row.depth,
            indent = row.depth as f64 * 1.2,
            name = escape(&span.name),
        );
        for flag in flags(row, span) {
            let _ = write!(out, "<span class=\"flag\">[{}]</span>", escape(&flag));
        }
        let keys = key_attributes(span).join("  ");
        if !keys.is_empty() {
            let _ = write!(out, "<span class=\"keys\">{}</span>", escape(&keys));
        }
        let _ = writeln!(
            out,
            "</div><div class=\"track\"><div class=\"bar\" style=\"left:{left:.3}%;width:{width:.3}%\"></div></div>\
             <div class=\"dur\">{dur}</div><div class=\"origin\">{origin}</div></div>",
            dur = format_duration(span.duration_ns()),
            origin = escape(&origin(span)),
        );
        detail(out, span, start);
    }
    out.push_str("</div>\n</section>\n");
}

/// One self-contained HTML page with every trace's waterfall. A click (or
/// Enter) on a span row shows its ids, parent, attributes, events, links
/// and resource.
pub fn render_html(set: &TraceSet) -> String {
    let summary = set.summary();
    let mut out = String::with_capacity(4096 + summary.spans * 1024);
    let _ = write!(
        out,
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n\
         <meta name=\"viewport\" content=\"width=device-width\">\n\
         <link rel=\"icon\" href=\"data:,\">\n<title>dspans traces</title>\n\
         <style>{STYLE}</style>\n</head>\n<body>\n<h1>dspans traces</h1>\n\
         <p class=\"summary\" id=\"summary\">{t} trace{ts} · {s} span{ss} · \
         {m} with a missing parent · {d} duplicate span ids · click a span for details</p>\n",
        t = summary.traces.len(),
        ts = if summary.traces.len() == 1 { "" } else { "s" },
        s = summary.spans,
        ss = if summary.spans == 1 { "" } else { "s" },
        m = summary.missing_parent,
        d = summary.duplicate_span_ids,
    );
    for trace in set.traces() {
        trace_section(&mut out, trace);
    }
    let _ = write!(out, "<script>{SCRIPT}</script>\n</body>\n</html>\n");
    out
}
