//! `dspans_otlp::view` on OTLP-JSON lines as the collector writes them.

use dspans_otlp::view::{render_terminal, TraceSet, ViewError};

const T1: &str = "0af7651916cd43dd8448eb211c80319c";
const T2: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const ROOT: &str = "b7ad6b7169203331";
const JOB: &str = "00f067aa0ba902b7";
const ORPHAN: &str = "5555555555555555";
const GONE: &str = "1a2b3c4d5e6f7081";

fn span(
    trace: &str,
    id: &str,
    parent: &str,
    name: &str,
    start: u64,
    end: u64,
    attrs: &str,
) -> String {
    format!(
        r#"{{"traceId":"{trace}","spanId":"{id}","parentSpanId":"{parent}","name":{name},"kind":2,
        "startTimeUnixNano":"{start}","endTimeUnixNano":"{end}","attributes":[{attrs}],"status":{{}}}}"#,
        name = serde_json::to_string(name).unwrap()
    )
}

fn line(service: &str, host: &str, spans: &[String]) -> String {
    let text = format!(
        r#"{{"resourceSpans":[{{"resource":{{"attributes":[
        {{"key":"service.name","value":{{"stringValue":"{service}"}}}},
        {{"key":"host.name","value":{{"stringValue":"{host}"}}}}]}},
        "scopeSpans":[{{"scope":{{"name":"zuul"}},"spans":[{}]}}]}}]}}"#,
        spans.join(",")
    );
    text.replace('\n', " ")
}

fn sample() -> String {
    let s = 1_700_000_000_000_000_000u64;
    let ms = 1_000_000u64;
    let lines = [
        line(
            "zuul-scheduler",
            "sched1",
            &[
                span(
                    T1,
                    JOB,
                    ROOT,
                    "job <b>build</b>",
                    s + 10 * ms,
                    s + 60 * ms,
                    r#"{"key":"result","value":{"stringValue":"SUCCESS"}},
                       {"key":"job","value":{"stringValue":"build"}},
                       {"key":"note","value":{"stringValue":"<script>alert(1)</script>"}}"#,
                ),
                span(
                    T1,
                    ROOT,
                    "",
                    "item",
                    s,
                    s + 100 * ms,
                    r#"{"key":"zuul_event_id","value":{"stringValue":"ev-1"}}"#,
                ),
            ],
        ),
        line(
            "zuul-executor",
            "exec1",
            &[
                span(T1, ORPHAN, GONE, "orphan", s + 20 * ms, s + 30 * ms, ""),
                span(
                    T2,
                    "7777777777777777",
                    "",
                    "other",
                    s + 500 * ms,
                    s + 501 * ms,
                    "",
                ),
                span(
                    T2,
                    "7777777777777777",
                    "",
                    "other",
                    s + 500 * ms,
                    s + 501 * ms,
                    "",
                ),
            ],
        ),
    ];
    // A writer cut off mid-line.
    format!("{}\n{}\n{{\"resourceSpans\":[{{\"reso", lines[0], lines[1])
}

#[test]
fn traces_trees_missing_parents_and_duplicates() {
    let set = TraceSet::parse(&sample()).expect("parses");
    let ids: Vec<_> = set.traces().iter().map(|t| t.trace_id.as_str()).collect();
    assert_eq!(ids, [T1, T2]);
    let t1 = &set.traces()[0];
    let order: Vec<_> = t1
        .rows
        .iter()
        .map(|r| (t1.spans[r.span].name.as_str(), r.depth, r.missing_parent))
        .collect();
    assert_eq!(
        order,
        [
            ("item", 0, false),
            ("job <b>build</b>", 1, false),
            ("orphan", 0, true)
        ]
    );
    assert_eq!(t1.duration_ns(), 100_000_000);
    let job = &t1.spans[t1.rows[1].span];
    assert_eq!(job.service.as_deref(), Some("zuul-scheduler"));
    assert_eq!(job.host.as_deref(), Some("sched1"));
    assert_eq!(job.parent_span_id.as_deref(), Some(ROOT));

    let summary = set.summary();
    assert_eq!(summary.spans, 5);
    assert_eq!(summary.missing_parent, 1);
    assert_eq!(summary.duplicate_span_ids, 1);
    assert_eq!(summary.traces[0].spans, 3);
    assert_eq!(summary.traces[0].missing_parent, [ORPHAN]);
    assert!(summary.traces[0].duplicate_span_ids.is_empty());
    assert_eq!(summary.traces[1].duplicate_span_ids, ["7777777777777777"]);
}

#[test]
fn terminal_waterfall() {
    let set = TraceSet::parse(&sample()).unwrap();
    let text = render_terminal(&set);
    let lines: Vec<_> = text.lines().collect();
    assert!(
        lines[0].starts_with(&format!("trace {T1}  item  3 spans  100.0ms")),
        "{text}"
    );
    assert!(lines[1].starts_with("  item "), "{text}");
    assert!(lines[1].contains("zuul-scheduler@sched1") && lines[1].contains("zuul_event_id=ev-1"));
    assert!(lines[2].starts_with("    job <b>build</b>"), "{text}");
    assert!(lines[2].contains("result=SUCCESS") && lines[2].contains("job=build"));
    assert!(lines[2].contains("50.0ms"), "{text}");
    assert!(
        lines[3].contains(&format!("[missing parent {GONE}]")),
        "{text}"
    );
    assert!(lines[3].contains("zuul-executor@exec1"));
    // The root's bar fills the whole track.
    assert!(
        lines[1].contains(&format!("│{}│", "█".repeat(32))),
        "{text}"
    );
    assert!(text.contains("[duplicate span id 7777777777777777]"));

    let only = TraceSet::parse(&sample())
        .unwrap()
        .only(&T2.to_uppercase())
        .unwrap();
    assert_eq!(only.traces().len(), 1);
    assert!(!render_terminal(&only).contains("item"));
    assert!(matches!(
        TraceSet::parse(&sample()).unwrap().only("ffff"),
        Err(ViewError::NoSuchTrace(_))
    ));
    assert!(matches!(
        TraceSet::parse(&sample()).unwrap().only("nothex"),
        Err(ViewError::BadTraceId(_))
    ));
}

#[test]
fn bad_input_does_not_panic() {
    assert!(TraceSet::parse("").unwrap().traces().is_empty());
    assert_eq!(render_terminal(&TraceSet::default()), "no spans\n");
    assert!(TraceSet::parse("not json\n").is_err());
    // A span that is its own parent, a two-span loop, end before start,
    // no ids at all: rendered, not panicking, every span once.
    let t = "0af7651916cd43dd8448eb211c80319c";
    let text = line(
        "s",
        "h",
        &[
            span(t, "1111111111111111", "1111111111111111", "self", 5, 1, ""),
            span(t, "2222222222222222", "3333333333333333", "a", 1, 2, ""),
            span(t, "3333333333333333", "2222222222222222", "b", 2, 3, ""),
            span("", "", "", "\u{1b}[31mred", 0, 0, ""),
        ],
    );
    let set = TraceSet::parse(&text).unwrap();
    let rows: usize = set.traces().iter().map(|t| t.rows.len()).sum();
    assert_eq!(rows, 4);
    let out = render_terminal(&set);
    assert!(out.contains("[parent loop]"), "{out}");
    assert!(!out.contains('\u{1b}'), "control characters are replaced");
}
