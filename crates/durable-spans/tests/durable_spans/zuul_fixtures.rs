//! Values produced by Zuul 14.3.0 (tests/data/zuul): decoding each saved
//! span and ending it with the recorded end call must export, over OTLP,
//! the span Zuul exported.

use dspans_test_support::TestReceiver;
use durable_spans::{parse_attribute_object, EndOptions, Kind, SpanContext, SpanInfo, Timestamp};
use serde::Deserialize;
use serde_json::value::RawValue;

use crate::common::{attr_map, attrs, hex, tracer, WAIT};

const CASES: &[&str] = &[
    "01_root_float_start",
    "02_root_int_start",
    "03_child_of_restored_parent",
    "04_links_with_attributes",
    "05_include_attributes",
];

#[derive(Deserialize)]
struct Case {
    span_info_json: String,
    span_context_json: String,
    span_context_json_size: usize,
    end: EndCall,
    exported: Vec<serde_json::Value>,
}

#[derive(Deserialize)]
struct EndCall {
    end_time: f64,
    attributes: Box<RawValue>,
}

fn load(name: &str) -> Case {
    let path = format!("{}/tests/data/zuul/{name}.json", env!("CARGO_MANIFEST_DIR"));
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{path}: {e}"))
}

#[test]
fn every_case_exports_what_zuul_exported() {
    let receiver = TestReceiver::start();
    let tracer = tracer(&receiver, "zuul", "zuul");
    for (n, name) in CASES.iter().enumerate() {
        let case = load(name);
        let info = SpanInfo::from_json(&case.span_info_json)
            .unwrap_or_else(|e| panic!("{name}: {e}"))
            .expect("not null");
        let end = EndOptions::new()
            .end_time(Timestamp::from_secs_f64(case.end.end_time).unwrap())
            .attributes(parse_attribute_object(case.end.attributes.get()).unwrap());
        tracer.end_saved_span(Some(&info), end);

        let spans = receiver.wait_for_spans(n + 1, WAIT);
        let got = &spans[n];
        let want = &case.exported[0];
        let s = |key: &str| want[key].as_str().map(str::to_string);
        assert_eq!(got.name, s("name").unwrap(), "{name}");
        assert_eq!(
            hex(&got.trace_id),
            s("trace_id_hex").unwrap(),
            "{name} trace id"
        );
        assert_eq!(
            hex(&got.span_id),
            s("span_id_hex").unwrap(),
            "{name} span id"
        );
        assert_eq!(
            (!got.parent_span_id.is_empty()).then(|| hex(&got.parent_span_id)),
            s("parent_span_id_hex"),
            "{name} parent"
        );
        assert_eq!(
            got.start_time_unix_nano,
            want["start_time_ns"].as_u64().unwrap(),
            "{name} start"
        );
        assert_eq!(
            got.end_time_unix_nano,
            want["end_time_ns"].as_u64().unwrap(),
            "{name} end"
        );
        assert_eq!(got.kind, 1, "{name}: internal");
        assert!(got.events.is_empty());
        assert_eq!(
            got.status.as_ref().map_or(0, |s| s.code),
            0,
            "{name}: status unset"
        );

        // OTLP flags: bits 8-9 say whether the parent is remote (compared
        // with Zuul's export); the low byte carries the W3C trace flags,
        // which the Rust exporter fills in and Python's leaves at zero.
        let zuul_flags = zuul_otlp_span(want)["flags"].as_u64().unwrap() as u32;
        assert_eq!(got.flags & 0x300, zuul_flags & 0x300, "{name} remote bits");
        assert_eq!(
            got.flags & 0xff,
            want["trace_flags"].as_u64().unwrap() as u32,
            "{name} trace flags"
        );

        let want_attrs: Vec<(String, serde_json::Value)> = want["attributes"]
            .as_object()
            .unwrap()
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        let mut got_attrs = attrs(&got.attributes);
        let mut want_sorted = want_attrs.clone();
        got_attrs.sort_by(|a, b| a.0.cmp(&b.0));
        want_sorted.sort_by(|a, b| a.0.cmp(&b.0));
        assert_eq!(got_attrs, want_sorted, "{name} attributes");

        let want_links = want["links"].as_array().unwrap();
        assert_eq!(got.links.len(), want_links.len(), "{name} links");
        let zuul_links = zuul_otlp_span(want)["links"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        for (i, (g, w)) in got.links.iter().zip(want_links).enumerate() {
            assert_eq!(
                hex(&g.trace_id),
                w["trace_id_hex"].as_str().unwrap(),
                "{name} link {i}"
            );
            assert_eq!(
                hex(&g.span_id),
                w["span_id_hex"].as_str().unwrap(),
                "{name} link {i}"
            );
            let mut got_link_attrs = attrs(&g.attributes);
            got_link_attrs.sort_by(|a, b| a.0.cmp(&b.0));
            let mut want_link_attrs: Vec<_> = w["attributes"]
                .as_object()
                .unwrap()
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect();
            want_link_attrs.sort_by(|a, b| a.0.cmp(&b.0));
            assert_eq!(
                got_link_attrs, want_link_attrs,
                "{name} link {i} attributes"
            );
            assert_eq!(
                g.flags,
                zuul_links[i]["flags"].as_u64().unwrap() as u32,
                "{name} link {i} flags"
            );
        }
    }
    for request in receiver.requests() {
        let rs = &request.resource_spans[0];
        let resource = attr_map(&rs.resource.as_ref().unwrap().attributes);
        assert_eq!(resource.len(), 1);
        assert_eq!(resource["service.name"], "zuul");
        assert_eq!(rs.scope_spans[0].scope.as_ref().unwrap().name, "zuul");
    }
}

fn zuul_otlp_span(exported: &serde_json::Value) -> &serde_json::Value {
    &exported["otlp_protobuf_json"]["resourceSpans"][0]["scopeSpans"][0]["spans"][0]
}

#[test]
fn end_attributes_override_persisted_ones_in_pythons_order() {
    let receiver = TestReceiver::start();
    let tracer = tracer(&receiver, "zuul", "zuul");
    let case = load("05_include_attributes");
    let info = SpanInfo::from_json(&case.span_info_json).unwrap();
    let end = EndOptions::new()
        .end_time(Timestamp::from_secs_f64(case.end.end_time).unwrap())
        .attributes(parse_attribute_object(case.end.attributes.get()).unwrap());
    tracer.end_saved_span(info.as_ref(), end);
    let got = &receiver.wait_for_spans(1, WAIT)[0];
    let keys: Vec<String> = attrs(&got.attributes).into_iter().map(|(k, _)| k).collect();
    let want: Vec<String> = case.exported[0]["attributes"]
        .as_object()
        .unwrap()
        .keys()
        .cloned()
        .collect();
    // serde_json sorts object keys; compare against Zuul's order from the
    // OTLP record instead, which keeps Python's insertion order.
    let zuul_order: Vec<String> = zuul_otlp_span(&case.exported[0])["attributes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|kv| kv["key"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(keys, zuul_order);
    assert_eq!(keys.len(), want.len());
}

#[test]
fn saved_values_round_trip_and_contexts_stay_small() {
    for name in CASES {
        let case = load(name);
        let info = SpanInfo::from_json(&case.span_info_json).unwrap().unwrap();
        assert_eq!(info.kind, Kind::Internal, "{name}: Zuul saves no kind");
        let json = info.to_json();
        assert!(!json.contains("\"kind\""), "{name}: {json}");
        let again = SpanInfo::from_json(&json).unwrap().unwrap();
        assert_eq!(again, info, "{name}");
        let ctx = SpanContext::from_json(&case.span_context_json)
            .unwrap()
            .unwrap();
        assert_eq!(ctx, info.span_context(), "{name}");
        assert_eq!(case.span_context_json.len(), case.span_context_json_size);
        assert!(ctx.to_json().len() <= case.span_context_json_size, "{name}");
        assert_eq!(ctx.to_traceparent().len(), 55);
        assert_eq!(
            SpanContext::from_traceparent(&ctx.to_traceparent()).unwrap(),
            ctx
        );
    }
}

#[test]
fn time_conversion_matches_python() {
    let path = format!(
        "{}/tests/data/zuul/time_conversion.json",
        env!("CARGO_MANIFEST_DIR")
    );
    let table: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    for row in table["rows"].as_array().unwrap() {
        let repr = row["float_repr"].as_str().unwrap();
        let want = row["start_time_ns"].as_i64().unwrap();
        let secs: f64 = repr.parse().unwrap();
        assert_eq!(
            Timestamp::from_secs_f64(secs).unwrap().as_nanos(),
            want,
            "{repr}"
        );
        assert_eq!(
            repr.parse::<Timestamp>().unwrap().as_nanos(),
            want,
            "{repr} as text"
        );
        let json = format!(
            r#"{{"name":"t","trace_id":1,"span_id":1,"trace_flags":1,"start_time":{repr}}}"#
        );
        let info = SpanInfo::from_json(&json).unwrap().unwrap();
        assert_eq!(info.start_time.as_nanos(), want, "{repr} in span info");
    }
    for row in table["errors"].as_array().unwrap() {
        let input: f64 = row["input"].as_str().unwrap().parse().unwrap();
        assert!(Timestamp::from_secs_f64(input).is_err(), "{input}");
    }
}
