//! The decoders never panic, whatever the input, and what this library
//! writes it reads back unchanged.
//!
//! Each property runs 2,000 cases; `DSPANS_FUZZ_CASES=N` runs N instead, for
//! a long fuzzing run: `DSPANS_FUZZ_CASES=200000 cargo test --release -p
//! durable-spans --test durable_spans decoders_prop`.

use durable_spans::{
    lenient, parse_attribute_object, FinishedSpan, Kind, LinkContext, LinkInfo, ParentInfo,
    SpanContext, SpanInfo, Timestamp,
};
use opentelemetry::KeyValue;
use proptest::prelude::*;

/// JSON-ish text built from the pieces span data is made of, so that the
/// fuzzing reaches deep into the decoders instead of failing at byte one.
fn jsonish() -> impl Strategy<Value = String> {
    let atom = prop_oneof![
        Just("null".to_string()),
        Just("true".to_string()),
        Just("1.5e400".to_string()),
        Just("-0".to_string()),
        Just("\"server\"".to_string()),
        Just("\"internal\"".to_string()),
        Just("340282366920938463463374607431768211456".to_string()),
        Just("18446744073709551616".to_string()),
        any::<u128>().prop_map(|n| n.to_string()),
        any::<i64>().prop_map(|n| n.to_string()),
        any::<f64>().prop_map(|f| format!("{f:?}")),
        "[a-z_\"\\\\]{0,8}".prop_map(|s| format!("\"{s}\"")),
    ];
    let keys = prop_oneof![
        Just("name"),
        Just("trace_id"),
        Just("span_id"),
        Just("trace_flags"),
        Just("start_time"),
        Just("parent"),
        Just("links"),
        Just("attributes"),
        Just("context"),
        Just("is_remote"),
        Just("kind"),
    ];
    atom.prop_recursive(4, 48, 6, move |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..5).prop_map(|v| format!("[{}]", v.join(","))),
            prop::collection::vec((keys.clone(), inner), 0..8).prop_map(|kv| {
                let body: Vec<String> = kv
                    .into_iter()
                    .map(|(k, v)| format!("\"{k}\":{v}"))
                    .collect();
                format!("{{{}}}", body.join(","))
            }),
        ]
    })
}

fn span_info() -> impl Strategy<Value = SpanInfo> {
    let attr = prop_oneof![
        ("[a-z]{1,6}", any::<i64>()).prop_map(|(k, v)| KeyValue::new(k, v)),
        ("[a-z]{1,6}", "\\PC{0,10}").prop_map(|(k, v)| KeyValue::new(k, v)),
        ("[a-z]{1,6}", any::<bool>()).prop_map(|(k, v)| KeyValue::new(k, v)),
        ("[a-z]{1,6}", -1e12f64..1e12).prop_map(|(k, v)| KeyValue::new(k, v)),
    ];
    let link = (
        1..=u128::MAX,
        1..=u64::MAX,
        any::<bool>(),
        prop::collection::vec(attr.clone(), 0..3),
    )
        .prop_map(|(trace_id, span_id, is_remote, attributes)| LinkInfo {
            context: LinkContext { trace_id, span_id },
            is_remote,
            attributes: dedup(attributes),
        });
    (
        "\\PC{0,20}",
        1..=u128::MAX,
        1..=u64::MAX,
        any::<u8>(),
        any::<i64>(),
        prop::option::of((1..=u128::MAX, 1..=u64::MAX, any::<bool>())),
        prop::collection::vec(link, 0..3),
        prop::collection::vec(attr, 0..4),
        kind(),
    )
        .prop_map(
            |(name, trace_id, span_id, trace_flags, t, parent, links, attributes, kind)| SpanInfo {
                name,
                trace_id,
                span_id,
                trace_flags,
                start_time: Timestamp::from_nanos(t),
                parent: parent.map(|(trace_id, span_id, is_remote)| ParentInfo {
                    trace_id,
                    span_id,
                    is_remote,
                }),
                links,
                attributes: dedup(attributes),
                kind,
            },
        )
}

/// Every kind; internal, which is not written, as often as the others
/// together.
fn kind() -> impl Strategy<Value = Kind> {
    prop_oneof![
        4 => Just(Kind::Internal),
        1 => Just(Kind::Server),
        1 => Just(Kind::Client),
        1 => Just(Kind::Producer),
        1 => Just(Kind::Consumer),
    ]
}

/// The text of a `kind` value other than the library writes: a name in the
/// wrong case, an unknown or empty one, an escaped one, `null`, or `internal`
/// written out.
fn unusual_kind_text() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("\"internal\"".to_string()),
        Just("\"Server\"".to_string()),
        Just("\"serv\\u0065r\"".to_string()),
        Just("null".to_string()),
        "[a-z]{0,9}".prop_map(|name| format!("\"{name}\"")),
    ]
}

fn dedup(mut attrs: Vec<KeyValue>) -> Vec<KeyValue> {
    let mut seen = std::collections::HashSet::new();
    attrs.retain(|kv| seen.insert(kv.key.clone()));
    attrs
}

#[derive(serde::Deserialize)]
struct Holder {
    #[serde(default, with = "lenient")]
    #[allow(dead_code)]
    span_info: Option<SpanInfo>,
}

/// Cases per property: 2,000, or `DSPANS_FUZZ_CASES`.
fn cases() -> u32 {
    std::env::var("DSPANS_FUZZ_CASES")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(2000)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(cases()))]

    #[test]
    fn arbitrary_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..300)) {
        let _ = SpanInfo::from_slice(&bytes);
        let text = String::from_utf8_lossy(&bytes);
        let _ = SpanContext::from_json(&text);
        let _ = SpanContext::from_traceparent(&text);
        let _ = text.parse::<Timestamp>();
        let _ = parse_attribute_object(&text);
        let _ = FinishedSpan::from_json(&text);
    }

    #[test]
    fn structured_json_never_panics(text in jsonish()) {
        let _ = SpanInfo::from_json(&text);
        let _ = SpanContext::from_json(&text);
        let _ = parse_attribute_object(&text);
        let _ = FinishedSpan::from_json(&text);
        // Embedded span data, if it is JSON at all, never spoils the object
        // around it.
        if serde_json::from_str::<serde::de::IgnoredAny>(&text).is_ok() {
            let holder = format!("{{\"span_info\": {text}}}");
            prop_assert!(serde_json::from_str::<Holder>(&holder).is_ok());
        }
    }

    #[test]
    fn fast_and_full_decoders_agree_on_any_text(text in jsonish()) {
        let fast = SpanInfo::from_json(&text);
        let full = SpanInfo::from_slice_full(text.as_bytes());
        prop_assert_eq!(fast.is_ok(), full.is_ok(), "{}", text);
        if let (Ok(a), Ok(b)) = (fast, full) {
            prop_assert_eq!(a, b);
        }
    }

    #[test]
    fn fast_and_full_decoders_agree_on_span_info_shapes(
        info in span_info(),
        spaced in any::<bool>(),
        reorder in any::<u64>(),
        float_start in prop::option::of(-1e10f64..5e9),
        kind_text in prop::option::of(unusual_kind_text()),
    ) {
        // Zuul's own shape: Python separators, any key order, float or
        // integer start time, parent present or null; and this library's
        // kind, absent, known, or of a kind this version does not know.
        let mut value: serde_json::Value = serde_json::from_str(&info.to_json()).unwrap();
        let object = value.as_object_mut().unwrap();
        object.remove("links");
        object.remove("attributes");
        let mut entries: Vec<(String, String)> = object
            .iter()
            .map(|(k, v)| (k.clone(), v.to_string()))
            .collect();
        if let Some(secs) = float_start {
            for (k, v) in entries.iter_mut() {
                if k == "start_time" {
                    *v = format!("{secs:?}");
                }
            }
        }
        if let Some(kind_text) = kind_text {
            entries.retain(|(k, _)| k != "kind");
            entries.push(("kind".to_string(), kind_text));
        }
        entries.sort_by_key(|(k, _)| (k.len() as u64).wrapping_mul(reorder) % 7);
        let (comma, colon) = if spaced { (", ", ": ") } else { (",", ":") };
        let body: Vec<String> = entries.iter().map(|(k, v)| format!("\"{k}\"{colon}{v}")).collect();
        let text = format!("{{{}}}", body.join(comma));
        let fast = SpanInfo::from_json(&text);
        let full = SpanInfo::from_slice_full(text.as_bytes());
        prop_assert_eq!(fast, full, "{}", text);
    }

    #[test]
    fn fast_and_full_decoders_agree_on_what_this_library_writes(
        mut info in span_info(),
        kind_text in prop::option::of(unusual_kind_text()),
    ) {
        // The compact shape the fast path reads key by key: no links or
        // attributes, `kind` last when written.
        info.links.clear();
        info.attributes.clear();
        let mut text = info.to_json();
        if let Some(kind_text) = kind_text {
            let body_end = text.rfind(",\"kind\":").unwrap_or(text.len() - 1);
            text = format!("{},\"kind\":{kind_text}}}", &text[..body_end]);
            let name: Option<String> = serde_json::from_str(&kind_text).unwrap();
            info.kind = name.as_deref().and_then(Kind::from_name).unwrap_or_default();
        }
        prop_assert_eq!(SpanInfo::from_json(&text), Ok(Some(info.clone())), "{}", text);
        prop_assert_eq!(SpanInfo::from_slice_full(text.as_bytes()), Ok(Some(info)), "{}", text);
    }

    #[test]
    fn traceparent_like_text_never_panics(text in "[0-9a-fA-F-]{50,60}") {
        let _ = SpanContext::from_traceparent(&text);
    }

    #[test]
    fn span_info_round_trips(info in span_info()) {
        let back = SpanInfo::from_json(&info.to_json()).unwrap().unwrap();
        prop_assert_eq!(back, info);
    }

    #[test]
    fn span_context_round_trips(trace_id in 1..=u128::MAX, span_id in 1..=u64::MAX, trace_flags in any::<u8>()) {
        let ctx = SpanContext { trace_id, span_id, trace_flags };
        prop_assert_eq!(SpanContext::from_json(&ctx.to_json()).unwrap(), Some(ctx));
        prop_assert_eq!(SpanContext::from_traceparent(&ctx.to_traceparent()).unwrap(), ctx);
        prop_assert!(ctx.to_json().len() <= 104);
    }
}

#[test]
fn missing_keys_and_zero_ids_are_refused() {
    let full = r#"{"name":"n","trace_id":1,"span_id":2,"trace_flags":1,"start_time":3}"#;
    assert!(SpanInfo::from_json(full).unwrap().is_some());
    for key in ["name", "trace_id", "span_id", "trace_flags", "start_time"] {
        let mut value: serde_json::Value = serde_json::from_str(full).unwrap();
        value.as_object_mut().unwrap().remove(key);
        let err = SpanInfo::from_json(&value.to_string()).unwrap_err();
        assert!(err.to_string().contains(key), "{err} names {key}");
    }
    let zero = r#"{"name":"n","trace_id":0,"span_id":2,"trace_flags":1,"start_time":3}"#;
    assert_eq!(
        SpanInfo::from_json(zero),
        Err(durable_spans::DecodeError::ZeroId)
    );
    assert_eq!(SpanInfo::from_json("null"), Ok(None));
}

#[test]
fn older_zuul_data_without_parent_or_link_is_remote_decodes() {
    let old = r#"{"name": "QueueItem", "trace_id": 5, "span_id": 6, "trace_flags": 1,
        "start_time": 1700000000.5,
        "links": [{"context": {"trace_id": 7, "span_id": 8}, "attributes": null}]}"#;
    let info = SpanInfo::from_json(old).unwrap().unwrap();
    assert_eq!(info.parent, None);
    assert!(info.links[0].is_remote);
    assert!(info.links[0].attributes.is_empty());
    assert_eq!(info.start_time.as_nanos(), 1_700_000_000_500_000_000);
}
