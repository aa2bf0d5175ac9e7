//! Stored objects: JSON round trips with 128-bit trace ids, and objects
//! without (or with damaged) span data still decode.

use std::collections::BTreeMap;

use dspans_pipeline::model::{
    new_uuid, Build, BuildCompleted, BuildReport, BuildRequest, BuildResult, BuildSet,
    BuildSetState, BuildState, ChangeQueue, ChangeRef, ItemResult, ItemState, MergeCompleted,
    MergeRequest, MergeResult, ModelError, QueueItem, Report, ResultEvent, StoredObject,
    TriggerEvent,
};
use durable_spans::{SpanContext, SpanInfo, Timestamp};

/// A trace id above 2^64, which a JSON double or u64 would mangle.
const BIG_TRACE: u128 = (1u128 << 127) + 12_345_678_901_234_567_891;

fn span_info(name: &str) -> SpanInfo {
    let json = format!(
        r#"{{"name": "{name}", "trace_id": {BIG_TRACE}, "span_id": 18446744073709551557,
            "trace_flags": 1, "start_time": 1700000000123456789,
            "parent": {{"trace_id": {BIG_TRACE}, "span_id": 42, "is_remote": false}},
            "links": [{{"context": {{"trace_id": {BIG_TRACE}, "span_id": 7}},
                        "is_remote": true, "attributes": {{"rel": "previous_buildset"}}}}]}}"#
    );
    SpanInfo::from_json(&json).unwrap().unwrap()
}

fn span_context() -> SpanContext {
    SpanContext {
        trace_id: BIG_TRACE,
        span_id: u64::MAX - 1,
        trace_flags: 1,
    }
}

fn change() -> ChangeRef {
    ChangeRef {
        project: "org/project".into(),
        number: 1234,
        patchset: 2,
        branch: "main".into(),
    }
}

fn t(ns: i64) -> Timestamp {
    Timestamp::from_nanos(ns)
}

fn item() -> QueueItem {
    QueueItem {
        uuid: new_uuid(),
        pipeline: "gate".into(),
        queue: "default".into(),
        change: change(),
        zuul_event_id: new_uuid(),
        enqueue_time: t(1_700_000_000_000_000_001),
        state: ItemState::Active,
        current_buildset: new_uuid(),
        previous_buildset: Some(new_uuid()),
        resets: 1,
        result: None,
        report_time: None,
        started_by: Some("scheduler-a".into()),
        span_info: Some(span_info("QueueItem")),
    }
}

fn buildset() -> BuildSet {
    BuildSet {
        uuid: new_uuid(),
        item_uuid: new_uuid(),
        pipeline: "gate".into(),
        zuul_event_id: new_uuid(),
        state: BuildSetState::Building,
        items_ahead: vec![new_uuid()],
        merge_request: Some(new_uuid()),
        merge_request_id: Some("job-0000000001".into()),
        merge_result: Some(MergeResult::Merged),
        merge_commit: None,
        jobs: vec!["unit".into(), "lint".into()],
        builds: BTreeMap::from([("unit".to_string(), new_uuid())]),
        previous_buildset: Some(new_uuid()),
        result: None,
        started_by: Some("scheduler-a".into()),
        span_info: Some(span_info("BuildSet")),
    }
}

fn build() -> Build {
    Build {
        uuid: new_uuid(),
        job: "unit".into(),
        buildset_uuid: new_uuid(),
        item_uuid: new_uuid(),
        pipeline: "gate".into(),
        zuul_event_id: new_uuid(),
        state: BuildState::Completed,
        execute_time: t(1_700_000_000_500_000_000),
        request_id: Some("job-0000000003".into()),
        retry: 1,
        executor: Some("executor-1".into()),
        start_time: Some(t(1_700_000_000_600_000_000)),
        end_time: Some(t(1_700_000_001_600_000_000)),
        exit_code: Some(124),
        log_url: Some("file:///var/log/dspans/b.log".into()),
        result: Some(BuildResult::TimedOut),
        started_by: Some("scheduler-a".into()),
        span_info: Some(span_info("Build")),
    }
}

fn round_trip<T: StoredObject + PartialEq + std::fmt::Debug>(value: &T) -> T {
    let bytes = value.to_json().unwrap();
    let back = T::from_json(&bytes).unwrap();
    assert_eq!(&back, value);
    back
}

#[test]
fn every_object_round_trips_with_a_128_bit_trace_id() {
    let trigger = TriggerEvent {
        zuul_event_id: new_uuid(),
        pipeline: "gate".into(),
        change: change(),
        timestamp: t(1),
        span_context: Some(span_context()),
    };
    let text = String::from_utf8(trigger.to_json().unwrap()).unwrap();
    assert!(text.contains(&BIG_TRACE.to_string()), "{text}");
    round_trip(&trigger);

    let item = round_trip(&item());
    assert_eq!(item.span_info.unwrap().trace_id, BIG_TRACE);
    round_trip(&buildset());
    let build = round_trip(&build());
    assert_eq!(
        build.span_info.unwrap().links[0].context.trace_id,
        BIG_TRACE
    );

    round_trip(&BuildRequest {
        build_uuid: new_uuid(),
        job: "unit".into(),
        pipeline: "gate".into(),
        change: change(),
        buildset_uuid: new_uuid(),
        item_uuid: new_uuid(),
        zuul_event_id: new_uuid(),
        retry: 0,
        span_context: Some(span_context()),
    });
    round_trip(&MergeRequest {
        uuid: new_uuid(),
        buildset_uuid: new_uuid(),
        item_uuid: new_uuid(),
        pipeline: "gate".into(),
        zuul_event_id: new_uuid(),
        changes: vec![change(), change()],
        started_by: Some("scheduler-a".into()),
        span_info: Some(span_info("Merge")),
        span_context: Some(span_context()),
    });
    round_trip(&ChangeQueue {
        pipeline: "gate".into(),
        name: "default".into(),
        items: vec![new_uuid(), new_uuid()],
    });
    round_trip(&Report {
        item_uuid: new_uuid(),
        pipeline: "gate".into(),
        change: change(),
        zuul_event_id: new_uuid(),
        buildset_uuid: new_uuid(),
        result: ItemResult::Failure,
        builds: vec![BuildReport {
            job: "unit".into(),
            uuid: new_uuid(),
            result: BuildResult::Lost,
            retry: 2,
            log_url: None,
        }],
        enqueue_time: t(1),
        report_time: t(2),
        message: "Build failed.".into(),
    });
}

#[test]
fn result_events_are_externally_tagged() {
    let event = ResultEvent::BuildCompleted(BuildCompleted {
        build_uuid: "b".into(),
        buildset_uuid: "bs".into(),
        item_uuid: "i".into(),
        job: "unit".into(),
        result: BuildResult::Success,
        exit_code: Some(0),
        start_time: t(1),
        end_time: t(2),
        executor: "e".into(),
        log_url: None,
    });
    let json = String::from_utf8(round_trip(&event).to_json().unwrap()).unwrap();
    assert!(
        json.starts_with(r#"{"build_completed":{"build_uuid":"b""#),
        "{json}"
    );
    assert!(json.contains(r#""result":"SUCCESS""#), "{json}");
    assert_eq!((event.item_uuid(), event.buildset_uuid()), ("i", "bs"));

    let merge = ResultEvent::MergeCompleted(MergeCompleted {
        merge_request: "m".into(),
        buildset_uuid: "bs".into(),
        item_uuid: "i".into(),
        result: MergeResult::MergeConflict,
        commit: None,
        message: Some("CONFLICT (content)".into()),
        merger: "merger-1".into(),
    });
    let json = String::from_utf8(round_trip(&merge).to_json().unwrap()).unwrap();
    assert!(json.contains(r#""result":"MERGE_CONFLICT""#), "{json}");
}

/// The item as JSON with its `span_info` value replaced by `span` (or the
/// key removed for `None`).
fn item_json_with(span: Option<&str>) -> String {
    let mut value: serde_json::Map<String, serde_json::Value> = serde_json::from_slice(
        &QueueItem {
            span_info: None,
            ..item()
        }
        .to_json()
        .unwrap(),
    )
    .unwrap();
    value.remove("span_info");
    let mut text = serde_json::to_string(&value).unwrap();
    if let Some(span) = span {
        text.pop();
        text.push_str(&format!(r#","span_info":{span}}}"#));
    }
    text
}

#[test]
fn objects_without_or_with_bad_span_data_decode() {
    let missing = QueueItem::from_json(item_json_with(None).as_bytes()).unwrap();
    assert_eq!(missing.span_info, None);
    assert_eq!(missing.change, change());
    for bad in [
        "null",
        r#""garbage""#,
        "17",
        "[1, 2]",
        r#"{"name": 5}"#,
        r#"{"name": "QueueItem", "trace_id": 1}"#,
        r#"{"name": "x", "trace_id": 0, "span_id": 0, "trace_flags": 1, "start_time": 1}"#,
        r#"{"name": "x", "trace_id": 340282366920938463463374607431768211456, "span_id": 1, "trace_flags": 1, "start_time": 1}"#,
    ] {
        let item = QueueItem::from_json(item_json_with(Some(bad)).as_bytes())
            .unwrap_or_else(|e| panic!("{bad}: {e}"));
        assert_eq!(item.span_info, None, "{bad}");
        assert_eq!(item.resets, 1);
    }

    // Span contexts: missing, null, malformed, all-zero.
    let base = r#"{"zuul_event_id": "e", "pipeline": "gate", "timestamp": 1700000000.25,
        "change": {"project": "p", "number": 1, "patchset": 1, "branch": "main"}"#;
    for tail in [
        "}",
        r#", "span_context": null}"#,
        r#", "span_context": "00-ab-cd-01"}"#,
        r#", "span_context": {"trace_id": -1, "span_id": 1, "trace_flags": 1}}"#,
        r#", "span_context": {"trace_id": 0, "span_id": 0, "trace_flags": 0}}"#,
        r#", "span_context": {"span_id": 3}}"#,
    ] {
        let event = TriggerEvent::from_json(format!("{base}{tail}").as_bytes())
            .unwrap_or_else(|e| panic!("{tail}: {e}"));
        assert_eq!(event.span_context, None, "{tail}");
        // Zuul-style float seconds are read as Python's int(t * 1e9).
        assert_eq!(event.timestamp.as_nanos(), 1_700_000_000_249_999_872);
    }
    let ctx = span_context();
    let good = format!(r#", "span_context": {}}}"#, ctx.to_json());
    let event = TriggerEvent::from_json(format!("{base}{good}").as_bytes()).unwrap();
    assert_eq!(event.span_context, Some(ctx));
}

#[test]
fn unknown_keys_are_ignored_for_rolling_upgrades() {
    let mut text = item_json_with(None);
    text.pop();
    text.push_str(r#","added_by_a_newer_version":{"x":[1,2]}}"#);
    QueueItem::from_json(text.as_bytes()).unwrap();
}

#[test]
fn decode_errors_name_the_object_and_key() {
    let text = item_json_with(None).replace(r#""number":1234"#, r#""number":"1234""#);
    let e = QueueItem::from_json(text.as_bytes()).unwrap_err();
    let msg = e.to_string();
    assert!(
        matches!(&e, ModelError::Decode { kind: "QueueItem", path, .. } if path == "change.number"),
        "{msg}"
    );
    assert!(
        msg.contains("QueueItem") && msg.contains("change.number") && msg.contains("line 1"),
        "{msg}"
    );

    let text = item_json_with(None).replace(r#""state":"active""#, r#""state":"flying""#);
    let msg = QueueItem::from_json(text.as_bytes())
        .unwrap_err()
        .to_string();
    assert!(
        msg.contains("`state`") && msg.contains("unknown variant `flying`"),
        "{msg}"
    );

    let msg = Build::from_json(b"{}").unwrap_err().to_string();
    assert!(
        msg.contains("Build") && msg.contains("missing field `uuid`"),
        "{msg}"
    );
    let msg = Build::from_json(b"").unwrap_err().to_string();
    assert!(msg.contains("EOF"), "{msg}");
    let mut bytes = build().to_json().unwrap();
    bytes.extend_from_slice(b" {}");
    let msg = Build::from_json(&bytes).unwrap_err().to_string();
    assert!(msg.contains("trailing characters"), "{msg}");
    Build::from_json(&[0xff, 0xfe, b'{']).unwrap_err();
}

#[test]
fn results_have_zuul_and_cicd_names() {
    assert_eq!(BuildResult::TimedOut.as_str(), "TIMED_OUT");
    assert_eq!(BuildResult::TimedOut.cicd_result(), "timeout");
    assert_eq!(BuildResult::Lost.to_string(), "LOST");
    assert_eq!(MergeResult::MergeConflict.as_str(), "MERGE_CONFLICT");
    assert_eq!(ItemResult::MergeConflict.cicd_result(), "failure");
    assert!(ItemResult::Success.is_success() && !BuildResult::Failure.is_success());
    let id = new_uuid();
    assert_eq!(id.len(), 32);
    assert!(id
        .bytes()
        .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase()));
}

#[test]
fn requests_travel_through_a_json_value_as_text() {
    let request = BuildRequest {
        build_uuid: new_uuid(),
        job: "unit".into(),
        pipeline: "gate".into(),
        change: change(),
        buildset_uuid: new_uuid(),
        item_uuid: new_uuid(),
        zuul_event_id: new_uuid(),
        retry: 0,
        span_context: Some(span_context()),
    };
    // A plain Value cannot hold the 128-bit trace id...
    assert!(serde_json::to_value(&request).is_err());
    // ...the embedded text form can, through a store record and back.
    let record =
        serde_json::json!({"state": "requested", "request": request.to_embedded().unwrap()});
    let stored = serde_json::to_vec(&record).unwrap();
    let read: serde_json::Value = serde_json::from_slice(&stored).unwrap();
    let back = BuildRequest::from_embedded(&read["request"]).unwrap();
    assert_eq!(back, request);
    let e = BuildRequest::from_embedded(&serde_json::json!({"job": "unit"})).unwrap_err();
    assert!(e.to_string().contains("found an object"), "{e}");
}
