//! The viewer's index, list and snapshot page, without a browser (the
//! browser tests are `crates/cli/tests/cli/ui_browser.rs`).

use dspans_otlp::parse_json_lines;
use dspans_otlp::view::ViewSpan;
use dspans_ui::{snapshot_html, ListQuery, RunningSpan, Sort, TraceIndex};

const T1: &str = "0af7651916cd43dd8448eb211c80319c";
const T2: &str = "4bf92f3577b34da6a3ce929d0e0e4736";

/// One request of spans `(trace, span id, parent, name, start, end, attrs)`.
fn request(spans: &[(&str, &str, &str, &str, u64, u64, &str)]) -> String {
    let spans: Vec<String> = spans
        .iter()
        .map(|(t, s, p, name, start, end, attrs)| {
            format!(
                r#"{{"traceId":"{t}","spanId":"{s}","parentSpanId":"{p}","name":"{name}","startTimeUnixNano":"{start}","endTimeUnixNano":"{end}","attributes":[{attrs}]}}"#
            )
        })
        .collect();
    format!(
        r#"{{"resourceSpans":[{{"resource":{{"attributes":[{{"key":"service.name","value":{{"stringValue":"zuul"}}}}]}},"scopeSpans":[{{"spans":[{}]}}]}}]}}"#,
        spans.join(",")
    )
}

fn ingest(index: &mut TraceIndex, line: &str) -> usize {
    parse_json_lines(line)
        .unwrap()
        .iter()
        .map(|r| index.ingest(r))
        .sum()
}

fn number(n: u64) -> String {
    format!(
        r#"{{"key":"ref_number","value":{{"arrayValue":{{"values":[{{"intValue":"{n}"}}]}}}}}}"#
    )
}

fn two_changes() -> TraceIndex {
    let mut index = TraceIndex::default();
    let (a, b) = (number(2), number(12));
    ingest(
        &mut index,
        &request(&[
            (T1, "1111111111111111", "", "QueueItem", 1_000, 9_000, &a),
            (
                T1,
                "2222222222222222",
                "1111111111111111",
                "BuildSet",
                2_000,
                8_000,
                "",
            ),
        ]),
    );
    ingest(
        &mut index,
        &request(&[(T2, "3333333333333333", "", "QueueItem", 5_000, 6_000, &b)]),
    );
    index
}

#[test]
fn a_search_matches_attributes_exactly_and_words_anywhere() {
    let mut index = two_changes();
    let found = |index: &mut TraceIndex, q: &str| -> Vec<String> {
        let page = index.list(&ListQuery::parse(q), 0);
        page.rows.into_iter().map(|r| r.trace_id).collect()
    };
    // `ref_number` is a list (`[2]`): its item matches, `12` does not.
    assert_eq!(found(&mut index, "ref_number=2"), [T1]);
    assert_eq!(found(&mut index, "REF_NUMBER=12"), [T2]);
    assert_eq!(found(&mut index, "buildset"), [T1]);
    assert_eq!(found(&mut index, "4bf9"), [T2]);
    assert_eq!(found(&mut index, "service.name=zuul").len(), 2);
    assert!(found(&mut index, "queueitem nothing").is_empty());
    // Newest first, or longest first.
    assert_eq!(found(&mut index, ""), [T2, T1]);
    let mut longest = ListQuery::parse("");
    longest.sort = Sort::Duration;
    let rows: Vec<String> = index
        .list(&longest, 0)
        .rows
        .into_iter()
        .map(|r| r.trace_id)
        .collect();
    assert_eq!(rows, [T1, T2]);
}

#[test]
fn repeats_are_skipped_and_pages_hold_fifty() {
    let mut index = TraceIndex::default();
    let line = request(&[(T1, "1111111111111111", "", "a", 1, 2, "")]);
    assert_eq!(ingest(&mut index, &line), 1);
    let version = index.version();
    assert_eq!(ingest(&mut index, &line), 0, "a repeat");
    assert_eq!(index.version(), version, "nothing changed");
    for n in 0..120u64 {
        let trace = format!("{n:032x}");
        ingest(
            &mut index,
            &request(&[(&trace, "1111111111111111", "", "s", n, n + 1, "")]),
        );
    }
    let query = ListQuery::default();
    assert_eq!(index.list(&query, 0).rows.len(), 50);
    assert_eq!(index.list(&query, 2).rows.len(), 21);
    assert_eq!(index.list(&query, 2).total, 121);
    assert!(index.list(&query, 9).rows.is_empty());
}

fn trace_json(index: &TraceIndex, trace: &str) -> serde_json::Value {
    serde_json::from_str(&index.trace_page(trace).unwrap()).unwrap()
}

fn running(trace: &str, span: &str, parent: Option<&str>, orphaned: bool) -> RunningSpan {
    RunningSpan {
        span: ViewSpan {
            trace_id: trace.into(),
            span_id: span.into(),
            parent_span_id: parent.map(str::to_string),
            name: "Build".into(),
            kind: "SPAN_KIND_INTERNAL".into(),
            start_ns: 3_000,
            end_ns: 0,
            status_code: "STATUS_CODE_UNSET".into(),
            status_message: String::new(),
            service: None,
            host: None,
            scope: String::new(),
            attributes: Vec::new(),
            resource_attributes: Vec::new(),
            events: Vec::new(),
            links: Vec::new(),
        },
        owner: "/dspans/pipelines/gate/items/x".into(),
        orphaned,
    }
}

#[test]
fn running_spans_sort_first_and_give_way_to_their_finished_form() {
    let mut index = two_changes();
    index.set_running(vec![running(
        T2,
        "4444444444444444",
        Some("3333333333333333"),
        true,
    )]);
    let page = index.list(&ListQuery::default(), 0);
    assert_eq!(page.rows[0].trace_id, T2, "running first");
    assert_eq!((page.rows[0].running, page.rows[0].orphaned), (1, 1));
    let trace = trace_json(&index, T2);
    let build = &trace["spans"][1];
    assert_eq!(
        (build["name"].as_str(), build["running"].as_bool()),
        (Some("Build"), Some(true))
    );
    assert_eq!(build["orphaned"], true);
    assert_eq!(build["row"]["depth"], 1);

    // Its finished form arrives before the next poll: shown finished.
    ingest(
        &mut index,
        &request(&[(
            T2,
            "4444444444444444",
            "3333333333333333",
            "Build",
            3_000,
            5_000,
            "",
        )]),
    );
    let trace = trace_json(&index, T2);
    assert_eq!(trace["spans"].as_array().unwrap().len(), 2);
    assert_eq!(trace["spans"][1]["running"], false);
    assert_eq!(index.list(&ListQuery::default(), 0).rows[0].running, 0);
    // A running span of a trace nothing else knows yet is listed too.
    let other = "00000000000000000000000000000abc";
    index.set_running(vec![running(other, "5555555555555555", None, false)]);
    assert_eq!(
        index
            .list(&ListQuery::parse("00000000000000000000000000000ab"), 0)
            .total,
        1
    );
    index.set_running(Vec::new());
    assert_eq!(
        index
            .list(&ListQuery::parse("00000000000000000000000000000ab"), 0)
            .total,
        0
    );
}

#[test]
fn the_snapshot_is_one_file_whose_data_cannot_close_its_script() {
    let mut index = TraceIndex::default();
    let markup = r#"{"key":"note","value":{"stringValue":"</script><b>x</b>"}}"#;
    ingest(
        &mut index,
        &request(&[(T1, "1111111111111111", "", "a", 1, 2, markup)]),
    );
    let html = snapshot_html(&mut index);
    assert_eq!(
        html.matches("</script>").count(),
        2,
        "only the page's own scripts"
    );
    assert!(html.contains("\\u003c/script>\\u003cb>x\\u003c/b>"));
    assert!(
        !html.contains("http://") && !html.contains("https://"),
        "no network"
    );
    assert!(html.contains(T1));
}
