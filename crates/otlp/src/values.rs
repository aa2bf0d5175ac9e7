//! Every attribute value of a request: resource, scope, span, event and
//! link attributes, and the values nested in arrays and key-value lists.
//! The JSON lines code rewrites special doubles through it; the receiver
//! bounds the nesting depth with it.

use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::{any_value, AnyValue, KeyValue};

/// Deepest attribute value nesting the receiver accepts: a value is at
/// depth 1, a value inside an array or key-value list at depth 2, and so
/// on. OTLP-JSON spends up to four JSON levels per nesting and the JSON
/// reader stops at 128 levels, so a deeper value could be written but
/// never read back.
pub const MAX_VALUE_DEPTH: usize = 20;

/// Calls `visit` on every attribute value of `request`, outermost first,
/// with its depth (1 for an attribute's own value).
pub(crate) fn visit_values_mut(
    request: &mut ExportTraceServiceRequest,
    visit: &mut dyn FnMut(&mut AnyValue, usize),
) {
    for resource_spans in &mut request.resource_spans {
        if let Some(resource) = &mut resource_spans.resource {
            visit_list(&mut resource.attributes, 1, visit);
        }
        for scope_spans in &mut resource_spans.scope_spans {
            if let Some(scope) = &mut scope_spans.scope {
                visit_list(&mut scope.attributes, 1, visit);
            }
            for span in &mut scope_spans.spans {
                visit_list(&mut span.attributes, 1, visit);
                for event in &mut span.events {
                    visit_list(&mut event.attributes, 1, visit);
                }
                for link in &mut span.links {
                    visit_list(&mut link.attributes, 1, visit);
                }
            }
        }
    }
}

fn visit_list(list: &mut [KeyValue], depth: usize, visit: &mut dyn FnMut(&mut AnyValue, usize)) {
    for kv in list {
        if let Some(value) = &mut kv.value {
            visit_value(value, depth, visit);
        }
    }
}

fn visit_value(value: &mut AnyValue, depth: usize, visit: &mut dyn FnMut(&mut AnyValue, usize)) {
    visit(value, depth);
    match &mut value.value {
        Some(any_value::Value::ArrayValue(array)) => {
            for item in &mut array.values {
                visit_value(item, depth + 1, visit);
            }
        }
        Some(any_value::Value::KvlistValue(list)) => visit_list(&mut list.values, depth + 1, visit),
        _ => {}
    }
}

/// Calls `visit` on every attribute value of `request`, outermost first,
/// with its depth (1 for an attribute's own value).
pub(crate) fn visit_values(
    request: &ExportTraceServiceRequest,
    visit: &mut dyn FnMut(&AnyValue, usize),
) {
    for resource_spans in &request.resource_spans {
        if let Some(resource) = &resource_spans.resource {
            visit_list_ref(&resource.attributes, 1, visit);
        }
        for scope_spans in &resource_spans.scope_spans {
            if let Some(scope) = &scope_spans.scope {
                visit_list_ref(&scope.attributes, 1, visit);
            }
            for span in &scope_spans.spans {
                visit_list_ref(&span.attributes, 1, visit);
                for event in &span.events {
                    visit_list_ref(&event.attributes, 1, visit);
                }
                for link in &span.links {
                    visit_list_ref(&link.attributes, 1, visit);
                }
            }
        }
    }
}

fn visit_list_ref(list: &[KeyValue], depth: usize, visit: &mut dyn FnMut(&AnyValue, usize)) {
    for value in list.iter().filter_map(|kv| kv.value.as_ref()) {
        visit_value_ref(value, depth, visit);
    }
}

fn visit_value_ref(value: &AnyValue, depth: usize, visit: &mut dyn FnMut(&AnyValue, usize)) {
    visit(value, depth);
    match &value.value {
        Some(any_value::Value::ArrayValue(array)) => {
            for item in &array.values {
                visit_value_ref(item, depth + 1, visit);
            }
        }
        Some(any_value::Value::KvlistValue(list)) => visit_list_ref(&list.values, depth + 1, visit),
        _ => {}
    }
}

/// The deepest attribute value nesting in `request` (0 without attributes).
///
/// Requests come decoded by prost (which stops at 100 levels of messages)
/// or serde_json (128 levels), so the walk's recursion is bounded.
pub(crate) fn max_value_depth(request: &ExportTraceServiceRequest) -> usize {
    let mut deepest = 0;
    visit_values(request, &mut |_, depth| deepest = deepest.max(depth));
    deepest
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use opentelemetry_proto::tonic::common::v1::{ArrayValue, KeyValueList};
    use opentelemetry_proto::tonic::trace::v1::{span, ResourceSpans, ScopeSpans, Span};

    /// A value nested `depth` deep, alternating key-value lists and arrays,
    /// with `leaf` innermost.
    pub(crate) fn nested(depth: usize, leaf: any_value::Value) -> AnyValue {
        nest(depth, leaf, |level| level % 2 == 0)
    }

    /// A value nested `depth` deep in key-value lists only (the deepest
    /// OTLP-JSON for its nesting).
    pub(crate) fn nested_lists(depth: usize, leaf: any_value::Value) -> AnyValue {
        nest(depth, leaf, |_| false)
    }

    fn nest(depth: usize, leaf: any_value::Value, array_at: fn(usize) -> bool) -> AnyValue {
        let mut value = AnyValue { value: Some(leaf) };
        for level in 1..depth {
            let inner = if array_at(level) {
                any_value::Value::ArrayValue(ArrayValue {
                    values: vec![value],
                })
            } else {
                any_value::Value::KvlistValue(KeyValueList {
                    values: vec![KeyValue {
                        key: "k".into(),
                        value: Some(value),
                        ..Default::default()
                    }],
                })
            };
            value = AnyValue { value: Some(inner) };
        }
        value
    }

    /// A request with `value` as an attribute of a span's link (the most
    /// deeply nested place for an attribute in a request).
    pub(crate) fn request_with_link_value(value: AnyValue) -> ExportTraceServiceRequest {
        let attributes = vec![KeyValue {
            key: "deep".into(),
            value: Some(value),
            ..Default::default()
        }];
        ExportTraceServiceRequest {
            resource_spans: vec![ResourceSpans {
                scope_spans: vec![ScopeSpans {
                    spans: vec![Span {
                        trace_id: vec![1; 16],
                        span_id: vec![2; 8],
                        links: vec![span::Link {
                            trace_id: vec![3; 16],
                            span_id: vec![4; 8],
                            attributes,
                            ..Default::default()
                        }],
                        ..Default::default()
                    }],
                    ..Default::default()
                }],
                ..Default::default()
            }],
        }
    }

    #[test]
    fn depth_counts_each_nesting() {
        let leaf = || any_value::Value::IntValue(1);
        assert_eq!(
            max_value_depth(&ExportTraceServiceRequest::default()),
            0,
            "no attributes"
        );
        for depth in [1, 2, 3, 7, 40] {
            let request = request_with_link_value(nested(depth, leaf()));
            assert_eq!(max_value_depth(&request), depth);
        }
        let mut request = request_with_link_value(nested(5, leaf()));
        let mut seen = Vec::new();
        visit_values_mut(&mut request, &mut |_, depth| seen.push(depth));
        assert_eq!(seen, [1, 2, 3, 4, 5]);
    }
}
