//! Span attributes as OTLP carries them.

use dspans_otlp::proto::common::v1::{KeyValue, any_value::Value};

/// The value of attribute `key` among `attributes` (a span's, a
/// resource's, a link's), typed as it was sent; `None` when absent.
///
/// ```
/// use dspans_otlp::proto::common::v1::{any_value::Value, AnyValue, KeyValue};
/// use dspans_test_support::{attr, string};
///
/// let attributes = vec![KeyValue {
///     key: "result".into(),
///     value: Some(AnyValue {
///         value: Some(string("SUCCESS")),
///     }),
///     ..KeyValue::default()
/// }];
/// assert_eq!(attr(&attributes, "result"), Some(&string("SUCCESS")));
/// assert_eq!(attr(&attributes, "job"), None);
/// assert_ne!(attr(&attributes, "result"), Some(&Value::BoolValue(true)));
/// ```
pub fn attr<'a>(attributes: &'a [KeyValue], key: &str) -> Option<&'a Value> {
    attributes
        .iter()
        .find(|kv| kv.key == key)
        .and_then(|kv| kv.value.as_ref()?.value.as_ref())
}

/// A string attribute value, to compare [`attr`]'s answer with.
pub fn string(s: &str) -> Value {
    Value::StringValue(s.to_string())
}
