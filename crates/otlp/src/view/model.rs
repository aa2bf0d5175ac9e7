//! The trace model behind the views: spans flattened out of OTLP requests,
//! grouped by trace, ordered as a tree.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt::Write as _;
use std::path::Path;

use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::{any_value, AnyValue, KeyValue};
use opentelemetry_proto::tonic::trace::v1::{span, status, Span};

use super::ViewError;
use crate::jsonl::{parse_json_lines, scan_json_lines, LinesRead};

/// Lower-case hex of some id bytes.
pub fn hex(bytes: &[u8]) -> String {
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        let _ = write!(s, "{b:02x}");
    }
    s
}

/// A readable rendering of an attribute value (strings as is, arrays as
/// `[a, b]`, maps as `{k: v}`, bytes as hex).
pub fn value_to_string(value: Option<&AnyValue>) -> String {
    use any_value::Value;
    match value.and_then(|v| v.value.as_ref()) {
        None => String::new(),
        Some(Value::StringValue(s)) => s.clone(),
        Some(Value::BoolValue(b)) => b.to_string(),
        Some(Value::IntValue(i)) => i.to_string(),
        Some(Value::DoubleValue(d)) => d.to_string(),
        Some(Value::BytesValue(b)) => hex(b),
        Some(Value::StringValueStrindex(i)) => format!("(string #{i})"),
        Some(Value::ArrayValue(a)) => {
            let items: Vec<_> = a.values.iter().map(|v| value_to_string(Some(v))).collect();
            format!("[{}]", items.join(", "))
        }
        Some(Value::KvlistValue(kv)) => {
            let items: Vec<_> = kv
                .values
                .iter()
                .map(|kv| format!("{}: {}", kv.key, value_to_string(kv.value.as_ref())))
                .collect();
            format!("{{{}}}", items.join(", "))
        }
    }
}

/// A duration in nanoseconds as `850ns`, `12.3µs`, `12.3ms`, `1.23s` or `2m03s`.
pub fn format_duration(ns: u64) -> String {
    let f = ns as f64;
    if ns < 1_000 {
        format!("{ns}ns")
    } else if ns < 1_000_000 {
        format!("{:.1}µs", f / 1e3)
    } else if ns < 1_000_000_000 {
        format!("{:.1}ms", f / 1e6)
    } else if ns < 60_000_000_000 {
        format!("{:.2}s", f / 1e9)
    } else {
        let s = ns / 1_000_000_000;
        format!("{}m{:02}s", s / 60, s % 60)
    }
}

fn attrs(list: &[KeyValue]) -> Vec<(String, String)> {
    list.iter()
        .map(|kv| (kv.key.clone(), value_to_string(kv.value.as_ref())))
        .collect()
}

fn find<'a>(list: &'a [(String, String)], key: &str) -> Option<&'a str> {
    list.iter()
        .find(|(k, v)| k == key && !v.is_empty())
        .map(|(_, v)| v.as_str())
}

/// A span event.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct ViewEvent {
    /// Unix time in nanoseconds.
    pub time_ns: u64,
    /// Event name.
    pub name: String,
    /// Attributes, rendered.
    pub attributes: Vec<(String, String)>,
}

/// A span link.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct ViewLink {
    /// Linked trace id (hex).
    pub trace_id: String,
    /// Linked span id (hex).
    pub span_id: String,
    /// Attributes, rendered.
    pub attributes: Vec<(String, String)>,
}

/// One span with its resource's service and host, values rendered as text.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct ViewSpan {
    /// Trace id (hex).
    pub trace_id: String,
    /// Span id (hex).
    pub span_id: String,
    /// Parent span id (hex), `None` for a root.
    pub parent_span_id: Option<String>,
    /// Span name.
    pub name: String,
    /// `SPAN_KIND_…` name.
    pub kind: String,
    /// Start, Unix nanoseconds.
    pub start_ns: u64,
    /// End, Unix nanoseconds.
    pub end_ns: u64,
    /// `STATUS_CODE_…` name.
    pub status_code: String,
    /// Status message.
    pub status_message: String,
    /// Resource `service.name`.
    pub service: Option<String>,
    /// Resource `host.name`, else a `hostname` or `merger` span attribute.
    pub host: Option<String>,
    /// Instrumentation scope name.
    pub scope: String,
    /// Span attributes, rendered.
    pub attributes: Vec<(String, String)>,
    /// Resource attributes, rendered.
    pub resource_attributes: Vec<(String, String)>,
    /// Events.
    pub events: Vec<ViewEvent>,
    /// Links.
    pub links: Vec<ViewLink>,
}

impl ViewSpan {
    fn from_proto(span: &Span, resource: &[(String, String)], scope: &str) -> Self {
        let attributes = attrs(&span.attributes);
        let host = find(resource, "host.name")
            .or_else(|| find(&attributes, "hostname"))
            .or_else(|| find(&attributes, "merger"))
            .map(str::to_string);
        let kind = span::SpanKind::try_from(span.kind)
            .map(|k| k.as_str_name().to_string())
            .unwrap_or_else(|_| format!("kind {}", span.kind));
        let (status_code, status_message) = match &span.status {
            Some(s) => (
                status::StatusCode::try_from(s.code)
                    .map(|c| c.as_str_name().to_string())
                    .unwrap_or_else(|_| format!("code {}", s.code)),
                s.message.clone(),
            ),
            None => ("STATUS_CODE_UNSET".to_string(), String::new()),
        };
        ViewSpan {
            trace_id: hex(&span.trace_id),
            span_id: hex(&span.span_id),
            parent_span_id: (!span.parent_span_id.is_empty()).then(|| hex(&span.parent_span_id)),
            name: span.name.clone(),
            kind,
            start_ns: span.start_time_unix_nano,
            end_ns: span.end_time_unix_nano,
            status_code,
            status_message,
            service: find(resource, "service.name").map(str::to_string),
            host,
            scope: scope.to_string(),
            attributes,
            resource_attributes: resource.to_vec(),
            events: span
                .events
                .iter()
                .map(|e| ViewEvent {
                    time_ns: e.time_unix_nano,
                    name: e.name.clone(),
                    attributes: attrs(&e.attributes),
                })
                .collect(),
            links: span
                .links
                .iter()
                .map(|l| ViewLink {
                    trace_id: hex(&l.trace_id),
                    span_id: hex(&l.span_id),
                    attributes: attrs(&l.attributes),
                })
                .collect(),
        }
    }

    /// Duration in nanoseconds (0 when the end is before the start).
    pub fn duration_ns(&self) -> u64 {
        self.end_ns.saturating_sub(self.start_ns)
    }

    /// Whether the status is an error.
    pub fn is_error(&self) -> bool {
        self.status_code == "STATUS_CODE_ERROR"
    }

    /// The value of a span attribute, if set.
    pub fn attribute(&self, key: &str) -> Option<&str> {
        find(&self.attributes, key)
    }
}

/// One line of a waterfall: a span at a tree depth, with its flags.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct Row {
    /// Index into [`Trace::spans`].
    pub span: usize,
    /// Depth in the tree (0 for roots).
    pub depth: usize,
    /// The span names a parent that is not in the trace.
    pub missing_parent: bool,
    /// Another span of the trace has the same span id.
    pub duplicate: bool,
    /// The span is in a parent loop (malformed input), shown as a root.
    pub in_loop: bool,
}

/// One trace: its spans and the waterfall order.
#[derive(Debug, Clone, PartialEq)]
pub struct Trace {
    /// Trace id (hex).
    pub trace_id: String,
    /// Spans, in file order.
    pub spans: Vec<ViewSpan>,
    /// Every span once, depth-first: roots (and spans with a missing parent)
    /// by start time, children by start time under their parent.
    pub rows: Vec<Row>,
}

impl Trace {
    /// The trace `trace_id` (hex) of `spans`: its span tree, in rows.
    pub fn new(trace_id: String, spans: Vec<ViewSpan>) -> Trace {
        Trace::build(trace_id, spans)
    }

    fn build(trace_id: String, spans: Vec<ViewSpan>) -> Trace {
        // The first span with an id is the one children hang under.
        let mut by_id: HashMap<&str, usize> = HashMap::new();
        let mut count: HashMap<&str, usize> = HashMap::new();
        for (i, s) in spans.iter().enumerate() {
            by_id.entry(&s.span_id).or_insert(i);
            *count.entry(&s.span_id).or_default() += 1;
        }
        let order = |a: &usize, b: &usize| {
            let (x, y) = (&spans[*a], &spans[*b]);
            (x.start_ns, x.end_ns, &x.name, *a).cmp(&(y.start_ns, y.end_ns, &y.name, *b))
        };
        let mut children: HashMap<usize, Vec<usize>> = HashMap::new();
        let mut roots = Vec::new();
        for (i, s) in spans.iter().enumerate() {
            match s.parent_span_id.as_deref().and_then(|p| by_id.get(p)) {
                Some(&p) if p != i => children.entry(p).or_default().push(i),
                _ => roots.push(i),
            }
        }
        roots.sort_by(order);
        for list in children.values_mut() {
            list.sort_by(order);
        }
        let row = |i: usize, depth: usize, in_loop: bool| {
            let s = &spans[i];
            Row {
                span: i,
                depth,
                missing_parent: s
                    .parent_span_id
                    .as_deref()
                    .is_some_and(|p| !by_id.contains_key(p)),
                duplicate: count.get(s.span_id.as_str()).copied().unwrap_or(0) > 1,
                in_loop,
            }
        };
        let mut rows = Vec::with_capacity(spans.len());
        let mut seen = vec![false; spans.len()];
        let walk = |start: usize, in_loop: bool, seen: &mut [bool], rows: &mut Vec<Row>| {
            let mut stack = vec![(start, 0usize)];
            while let Some((i, depth)) = stack.pop() {
                if std::mem::replace(&mut seen[i], true) {
                    continue;
                }
                rows.push(row(i, depth, in_loop && depth == 0));
                if let Some(kids) = children.get(&i) {
                    stack.extend(kids.iter().rev().map(|&k| (k, depth + 1)));
                }
            }
        };
        for &r in &roots {
            walk(r, false, &mut seen, &mut rows);
        }
        // Spans only reachable through a parent loop: show each loop from
        // its earliest span.
        let mut rest: Vec<usize> = (0..spans.len()).filter(|&i| !seen[i]).collect();
        rest.sort_by(order);
        for i in rest {
            walk(i, true, &mut seen, &mut rows);
        }
        Trace {
            trace_id,
            spans,
            rows,
        }
    }

    /// Earliest span start (Unix ns).
    pub fn start_ns(&self) -> u64 {
        self.spans.iter().map(|s| s.start_ns).min().unwrap_or(0)
    }

    /// Latest span end (Unix ns).
    pub fn end_ns(&self) -> u64 {
        self.spans
            .iter()
            .map(|s| s.end_ns.max(s.start_ns))
            .max()
            .unwrap_or(0)
    }

    /// From the earliest start to the latest end.
    pub fn duration_ns(&self) -> u64 {
        self.end_ns().saturating_sub(self.start_ns())
    }

    /// The first root's name (the trace's name in listings).
    pub fn name(&self) -> &str {
        self.rows
            .first()
            .map(|r| self.spans[r.span].name.as_str())
            .unwrap_or("")
    }

    /// What the trace is about, from its first root's attributes: the
    /// pipeline, the project and the change (the CI/CD and VCS conventions'
    /// keys, else Zuul's), e.g. `gate org/project change 3`. Empty when the
    /// root has none of them.
    pub fn subject(&self) -> String {
        let Some(root) = self.rows.first().map(|r| &self.spans[r.span]) else {
            return String::new();
        };
        let first = |keys: &[&str]| keys.iter().find_map(|k| root.attribute(k));
        let mut parts = Vec::new();
        if let Some(pipeline) = first(&["cicd.pipeline.name", "zuul_pipeline", "pipeline"]) {
            parts.push(pipeline.to_string());
        }
        if let Some(project) = first(&["vcs.repository.name", "ref_project"]) {
            parts.push(project.trim_matches(['[', ']', '"']).to_string());
        }
        if let Some(change) = first(&["vcs.change.id", "ref_number"]) {
            parts.push(format!("change {}", change.trim_matches(['[', ']', '"'])));
        }
        parts.join(" ")
    }

    /// Span count, missing parents and duplicate span ids of this trace.
    pub fn summary(&self) -> TraceSummary {
        let mut missing_parent: Vec<String> = self
            .rows
            .iter()
            .filter(|r| r.missing_parent)
            .map(|r| self.spans[r.span].span_id.clone())
            .collect();
        missing_parent.sort();
        let mut seen = HashSet::new();
        let mut duplicate_span_ids: Vec<String> = self
            .spans
            .iter()
            .filter(|s| !seen.insert(s.span_id.as_str()))
            .map(|s| s.span_id.clone())
            .collect();
        duplicate_span_ids.sort();
        duplicate_span_ids.dedup();
        TraceSummary {
            trace_id: self.trace_id.clone(),
            name: self.name().to_string(),
            spans: self.spans.len(),
            missing_parent,
            duplicate_span_ids,
            duration_ns: self.duration_ns(),
        }
    }
}

/// Counts for one trace.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TraceSummary {
    /// Trace id (hex).
    pub trace_id: String,
    /// The first root's name.
    pub name: String,
    /// Number of spans (duplicates included).
    pub spans: usize,
    /// Ids of spans whose parent is not in the trace.
    pub missing_parent: Vec<String>,
    /// Span ids carried by more than one span.
    pub duplicate_span_ids: Vec<String>,
    /// From the earliest start to the latest end.
    pub duration_ns: u64,
}

/// Counts for a whole file.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Summary {
    /// Per trace, in [`TraceSet::traces`] order.
    pub traces: Vec<TraceSummary>,
    /// All spans.
    pub spans: usize,
    /// Spans with a missing parent, all traces.
    pub missing_parent: usize,
    /// Duplicate span ids, all traces.
    pub duplicate_span_ids: usize,
}

/// Spans grouped by trace id, as requests come.
#[derive(Default)]
struct Groups(BTreeMap<String, Vec<ViewSpan>>);

/// The spans of `request`, each with its resource and scope, in order.
pub fn view_spans(request: &ExportTraceServiceRequest) -> impl Iterator<Item = ViewSpan> + '_ {
    request.resource_spans.iter().flat_map(|rs| {
        let resource = rs
            .resource
            .as_ref()
            .map(|r| attrs(&r.attributes))
            .unwrap_or_default();
        rs.scope_spans.iter().flat_map(move |ss| {
            let scope = ss.scope.as_ref().map(|s| s.name.as_str()).unwrap_or("");
            let resource = resource.clone();
            ss.spans
                .iter()
                .map(move |s| ViewSpan::from_proto(s, &resource, scope))
        })
    })
}

impl Groups {
    fn add(&mut self, request: &ExportTraceServiceRequest) {
        for v in view_spans(request) {
            self.0.entry(v.trace_id.clone()).or_default().push(v);
        }
    }

    fn finish(self) -> TraceSet {
        let mut traces: Vec<Trace> = self
            .0
            .into_iter()
            .map(|(id, spans)| Trace::build(id, spans))
            .collect();
        traces.sort_by(|a, b| (a.start_ns(), &a.trace_id).cmp(&(b.start_ns(), &b.trace_id)));
        TraceSet { traces }
    }
}

/// All traces of some OTLP requests, ordered by start time.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct TraceSet {
    traces: Vec<Trace>,
}

impl TraceSet {
    /// These traces, as they are.
    pub fn from_traces(traces: Vec<Trace>) -> TraceSet {
        TraceSet { traces }
    }

    /// Groups the spans of `requests` by trace.
    pub fn from_requests<'a>(
        requests: impl IntoIterator<Item = &'a ExportTraceServiceRequest>,
    ) -> TraceSet {
        let mut groups = Groups::default();
        for request in requests {
            groups.add(request);
        }
        groups.finish()
    }

    /// Reads an OTLP-JSON lines file one line at a time: a partial last line
    /// is ignored, and a line that is not a request is skipped and logged
    /// as a warning ([`scan_json_lines`]). See [`TraceSet::scan`] for the
    /// count of skipped lines.
    pub fn read(path: impl AsRef<Path>) -> Result<TraceSet, ViewError> {
        Ok(Self::scan(path)?.0)
    }

    /// [`TraceSet::read`], also telling what was read and skipped.
    pub fn scan(path: impl AsRef<Path>) -> Result<(TraceSet, LinesRead), ViewError> {
        let mut groups = Groups::default();
        let read = scan_json_lines(path, |request| groups.add(&request))?;
        Ok((groups.finish(), read))
    }

    /// Reads OTLP-JSON lines from text in memory; unlike [`TraceSet::read`]
    /// it fails on the first complete line that is not a request.
    pub fn parse(text: &str) -> Result<TraceSet, ViewError> {
        Ok(Self::from_requests(&parse_json_lines(text)?))
    }

    /// The traces, earliest first.
    pub fn traces(&self) -> &[Trace] {
        &self.traces
    }

    /// Only the trace whose hex id starts with `trace_id` (any case,
    /// surrounding spaces ignored); an error when none or several do.
    pub fn only(self, trace_id: &str) -> Result<TraceSet, ViewError> {
        let id = trace_id.trim().to_ascii_lowercase();
        if id.is_empty() || !id.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(ViewError::BadTraceId(trace_id.to_string()));
        }
        let traces: Vec<Trace> = self
            .traces
            .into_iter()
            .filter(|t| t.trace_id.starts_with(&id))
            .collect();
        match traces.len() {
            0 => Err(ViewError::NoSuchTrace(id)),
            1 => Ok(TraceSet { traces }),
            n => Err(ViewError::AmbiguousTrace {
                prefix: id,
                traces: n,
            }),
        }
    }

    /// Span counts, missing parents and duplicate span ids.
    pub fn summary(&self) -> Summary {
        let traces: Vec<TraceSummary> = self.traces.iter().map(Trace::summary).collect();
        Summary {
            spans: traces.iter().map(|t| t.spans).sum(),
            missing_parent: traces.iter().map(|t| t.missing_parent.len()).sum(),
            duplicate_span_ids: traces.iter().map(|t| t.duplicate_span_ids.len()).sum(),
            traces,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(trace_ids: &[&str]) -> String {
        let spans: Vec<String> = trace_ids
            .iter()
            .enumerate()
            .map(|(n, t)| {
                format!(
                    r#"{{"traceId":"{t}","spanId":"{:016x}","name":"s","startTimeUnixNano":"1","endTimeUnixNano":"2"}}"#,
                    n + 1
                )
            })
            .collect();
        format!(
            r#"{{"resourceSpans":[{{"scopeSpans":[{{"spans":[{}]}}]}}]}}"#,
            spans.join(",")
        )
    }

    #[test]
    fn a_trace_is_found_by_a_unique_start_of_its_id() {
        let (a, b) = (
            "aa11000000000000000000000000000a",
            "aa22000000000000000000000000000b",
        );
        let set = || TraceSet::parse(&line(&[a, b])).unwrap();
        assert_eq!(set().only("AA1").unwrap().traces()[0].trace_id, a);
        assert!(matches!(
            set().only("aa"),
            Err(ViewError::AmbiguousTrace { traces: 2, .. })
        ));
        assert!(matches!(set().only("ab"), Err(ViewError::NoSuchTrace(_))));
        assert!(matches!(set().only("xyz"), Err(ViewError::BadTraceId(_))));
    }
}
