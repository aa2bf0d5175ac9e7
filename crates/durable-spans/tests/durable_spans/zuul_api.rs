//! Zuul's `test_tracing_api` and `test_tracing_api_null`, ported: assertions
//! are made on what arrives at a real OTLP/gRPC receiver.

use dspans_test_support::TestReceiver;
use durable_spans::{span_context_of, ChildOptions, EndOptions, SavedSpanOptions, Timestamp};
use opentelemetry::trace::{Link, Span as _, TraceContextExt as _, Tracer as _};
use opentelemetry::{Context, KeyValue};

use crate::common::{attr_map, find, hex, tracer, WAIT};

fn secs(t: f64) -> Timestamp {
    Timestamp::from_secs_f64(t).unwrap()
}

#[test]
fn tracing_api() {
    let receiver = TestReceiver::start();
    let tracer = tracer(&receiver, "zuultest", "zuul");
    let start = 1_700_000_000.25;
    let info = tracer
        .start_saved_span(
            "parent-trace",
            SavedSpanOptions::new()
                .start_time(secs(start))
                .persisted_attributes(vec![KeyValue::new("startattr", "bar")]),
        )
        .unwrap();
    let parent = tracer.restore(Some(&info));
    let parent_ctx = span_context_of(&parent);
    let cx = Context::new().with_span(parent);

    // child1: a scoped child of the restored span.
    let child1_context = {
        let child1 = tracer.tracer().start_with_context("child1-trace", &cx);
        let sc = child1.span_context().clone();
        drop(child1); // ends on scope exit, like Python's context manager
        sc
    };
    // child2: by hand, float times, linked to child1.
    let link = Link::new(
        child1_context.clone(),
        vec![KeyValue::new("relationship", "prev")],
        0,
    );
    let mut child2 = tracer
        .tracer()
        .span_builder("child2-trace")
        .with_start_time(secs(start + 1.5).to_system_time())
        .with_links(vec![link])
        .start_with_context(tracer.tracer(), &cx);
    child2.end_with_timestamp(secs(start + 2.75).to_system_time());
    // child3: started in the restored span's context, as a remote worker would.
    let mut child3 =
        tracer.start_span_in_context(Some(&parent_ctx), "child3-trace", ChildOptions::default());
    child3.end();

    tracer.end_saved_span(
        Some(&info),
        EndOptions::new()
            .end_time(secs(start + 10.125))
            .attributes(vec![KeyValue::new("endattr", "baz")]),
    );

    let spans = receiver.wait_for_spans(4, WAIT);
    let names: Vec<&str> = spans.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(
        names,
        [
            "child1-trace",
            "child2-trace",
            "child3-trace",
            "parent-trace"
        ]
    );
    for request in receiver.requests() {
        let rs = &request.resource_spans[0];
        let resource = attr_map(&rs.resource.as_ref().unwrap().attributes);
        assert_eq!(
            resource.len(),
            1,
            "resource is exactly service.name: {resource:?}"
        );
        assert_eq!(resource["service.name"], "zuultest");
        assert_eq!(rs.scope_spans[0].scope.as_ref().unwrap().name, "zuul");
    }
    let (child1, child2, child3, parent) = (
        find(&spans, "child1-trace"),
        find(&spans, "child2-trace"),
        find(&spans, "child3-trace"),
        find(&spans, "parent-trace"),
    );
    assert_eq!(child2.links.len(), 1);
    assert_eq!(child2.links[0].span_id, child1.span_id);
    assert_eq!(
        attr_map(&child2.links[0].attributes),
        [("relationship".to_string(), "prev".into())].into()
    );
    assert_eq!(
        attr_map(&parent.attributes),
        [
            ("startattr".to_string(), "bar".into()),
            ("endattr".to_string(), "baz".into())
        ]
        .into()
    );
    assert_eq!(hex(&parent.trace_id), format!("{:032x}", info.trace_id));
    assert_eq!(hex(&parent.span_id), format!("{:016x}", info.span_id));
    assert!(parent.parent_span_id.is_empty(), "the saved span is a root");
    for child in [child1, child2, child3] {
        assert_eq!(
            child.trace_id, parent.trace_id,
            "{} shares the trace",
            child.name
        );
        assert_eq!(
            child.parent_span_id, parent.span_id,
            "{} is a child of the saved span",
            child.name
        );
        assert_eq!(
            child.flags & 0x300,
            0x300,
            "{}: the restored parent is remote",
            child.name
        );
    }
    assert_eq!(parent.start_time_unix_nano, secs(start).as_nanos() as u64);
    assert_eq!(
        parent.end_time_unix_nano,
        secs(start + 10.125).as_nanos() as u64
    );
    assert_eq!(
        child2.start_time_unix_nano,
        secs(start + 1.5).as_nanos() as u64
    );
    assert_eq!(
        child2.end_time_unix_nano,
        secs(start + 2.75).as_nanos() as u64
    );
}

#[test]
fn tracing_api_null() {
    let receiver = TestReceiver::start();
    let tracer = tracer(&receiver, "zuultest", "zuul");
    let parent = tracer.restore(None);
    assert!(!parent.is_recording());
    let cx = Context::new().with_span(parent);

    let child1_context = {
        let child1 = tracer.tracer().start_with_context("child1-trace", &cx);
        child1.span_context().clone()
    };
    let link = Link::new(
        child1_context,
        vec![KeyValue::new("relationship", "prev")],
        0,
    );
    let mut child2 = tracer
        .tracer()
        .span_builder("child2-trace")
        .with_links(vec![link])
        .start_with_context(tracer.tracer(), &cx);
    child2.end();
    let mut child3 = tracer.start_span_in_context(None, "child3-trace", ChildOptions::default());
    child3.end();
    cx.span().end(); // ending the invalid span does nothing
    tracer.end_saved_span(None, EndOptions::new());

    let spans = receiver.wait_for_spans(3, WAIT);
    // Anything more would have been exported before these (simple processor,
    // in end order), so a flush now catches stragglers.
    tracer.force_flush().unwrap();
    let spans_after = receiver.spans();
    assert_eq!(spans_after.len(), 3, "only the three children are exported");
    let names: Vec<&str> = spans.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(names, ["child1-trace", "child2-trace", "child3-trace"]);
    for request in receiver.requests() {
        let rs = &request.resource_spans[0];
        let resource = attr_map(&rs.resource.as_ref().unwrap().attributes);
        assert_eq!(resource.len(), 1);
        assert_eq!(resource["service.name"], "zuultest");
        assert_eq!(rs.scope_spans[0].scope.as_ref().unwrap().name, "zuul");
    }
    let (c1, c2, c3) = (&spans[0], &spans[1], &spans[2]);
    assert_eq!(c2.links[0].span_id, c1.span_id);
    assert_eq!(
        attr_map(&c2.links[0].attributes),
        [("relationship".to_string(), "prev".into())].into()
    );
    assert_ne!(c1.trace_id, c2.trace_id);
    assert_ne!(c1.trace_id, c3.trace_id);
    assert_ne!(c2.trace_id, c3.trace_id);
    for c in [c1, c2, c3] {
        assert!(c.parent_span_id.is_empty(), "{} is a new root", c.name);
    }
}
