//! Attribute values in JSON: how Zuul persists start and link attributes,
//! and how `dspans span end --attr-json` receives typed end attributes.
//!
//! OpenTelemetry attribute values are strings, 64-bit integers, floats,
//! booleans, and homogeneous lists of those. JSON `null` has no OpenTelemetry
//! form (Zuul learned that a `None` inside a list breaks the OTLP encoder), so
//! it is dropped with a warning; objects and mixed lists are refused.

use std::fmt;

use opentelemetry::{Array, KeyValue, StringValue, Value};
use serde::de::{self, Deserializer, MapAccess, SeqAccess, Visitor};
use serde::ser::{SerializeMap, SerializeSeq, Serializer};
use serde::{Deserialize, Serialize};

/// An attribute value that has no OpenTelemetry form.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum AttributeError {
    /// A JSON object as a value.
    #[error("attribute {key:?}: objects are not attribute values (use strings, numbers, booleans or lists of one of them)")]
    Object {
        /// The attribute's key.
        key: String,
    },
    /// A list whose items are not all of one type, or contain lists or nulls.
    #[error("attribute {key:?}: list items must all be strings, all integers, all floats or all booleans")]
    MixedList {
        /// The attribute's key.
        key: String,
    },
    /// An integer outside the signed 64-bit range OTLP carries.
    #[error("attribute {key:?}: integer {value} does not fit in 64 bits")]
    IntegerRange {
        /// The attribute's key.
        key: String,
        /// The integer as written.
        value: String,
    },
    /// The text is not a JSON object.
    #[error(
        "attributes must be a JSON object such as {{\"result\": \"SUCCESS\", \"attempt\": 2}}: {0}"
    )]
    NotAnObject(String),
}

/// A JSON value as read, before it is known to be a valid attribute.
enum JsonAttr {
    Null,
    Bool(bool),
    Int(i64),
    BigInt(String),
    Float(f64),
    Str(String),
    List(Vec<JsonAttr>),
    Object,
}

impl<'de> Deserialize<'de> for JsonAttr {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct JsonAttrVisitor;
        impl<'de> Visitor<'de> for JsonAttrVisitor {
            type Value = JsonAttr;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an attribute value")
            }
            fn visit_unit<E>(self) -> Result<JsonAttr, E> {
                Ok(JsonAttr::Null)
            }
            fn visit_none<E>(self) -> Result<JsonAttr, E> {
                Ok(JsonAttr::Null)
            }
            fn visit_bool<E>(self, v: bool) -> Result<JsonAttr, E> {
                Ok(JsonAttr::Bool(v))
            }
            fn visit_i64<E>(self, v: i64) -> Result<JsonAttr, E> {
                Ok(JsonAttr::Int(v))
            }
            fn visit_u64<E>(self, v: u64) -> Result<JsonAttr, E> {
                Ok(
                    i64::try_from(v)
                        .map_or_else(|_| JsonAttr::BigInt(v.to_string()), JsonAttr::Int),
                )
            }
            fn visit_f64<E>(self, v: f64) -> Result<JsonAttr, E> {
                Ok(JsonAttr::Float(v))
            }
            fn visit_str<E>(self, v: &str) -> Result<JsonAttr, E> {
                Ok(JsonAttr::Str(v.to_string()))
            }
            fn visit_string<E>(self, v: String) -> Result<JsonAttr, E> {
                Ok(JsonAttr::Str(v))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<JsonAttr, A::Error> {
                let mut items = Vec::new();
                while let Some(item) = seq.next_element()? {
                    items.push(item);
                }
                Ok(JsonAttr::List(items))
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<JsonAttr, A::Error> {
                while map
                    .next_entry::<de::IgnoredAny, de::IgnoredAny>()?
                    .is_some()
                {}
                Ok(JsonAttr::Object)
            }
        }
        deserializer.deserialize_any(JsonAttrVisitor)
    }
}

impl JsonAttr {
    /// `Ok(None)` for null, which callers drop with a warning.
    fn into_value(self, key: &str) -> Result<Option<Value>, AttributeError> {
        let key_owned = || key.to_string();
        Ok(Some(match self {
            JsonAttr::Null => return Ok(None),
            JsonAttr::Bool(b) => Value::Bool(b),
            JsonAttr::Int(i) => Value::I64(i),
            JsonAttr::BigInt(value) => {
                return Err(AttributeError::IntegerRange {
                    key: key_owned(),
                    value,
                })
            }
            JsonAttr::Float(f) => Value::F64(f),
            JsonAttr::Str(s) => Value::String(s.into()),
            JsonAttr::Object => return Err(AttributeError::Object { key: key_owned() }),
            JsonAttr::List(items) => Value::Array(list_to_array(items, key)?),
        }))
    }
}

fn list_to_array(items: Vec<JsonAttr>, key: &str) -> Result<Array, AttributeError> {
    let mixed = || AttributeError::MixedList {
        key: key.to_string(),
    };
    let Some(first) = items.first() else {
        return Ok(Array::String(Vec::new()));
    };
    macro_rules! collect {
        ($variant:ident, $ctor:path) => {
            items
                .into_iter()
                .map(|item| match item {
                    JsonAttr::$variant(v) => Ok($ctor(v)),
                    _ => Err(mixed()),
                })
                .collect::<Result<Vec<_>, _>>()
        };
    }
    Ok(match first {
        JsonAttr::Bool(_) => Array::Bool(collect!(Bool, bool::from)?),
        JsonAttr::Int(_) => Array::I64(collect!(Int, i64::from)?),
        JsonAttr::Float(_) => Array::F64(collect!(Float, f64::from)?),
        JsonAttr::Str(_) => Array::String(collect!(Str, StringValue::from)?),
        JsonAttr::BigInt(value) => {
            return Err(AttributeError::IntegerRange {
                key: key.to_string(),
                value: value.clone(),
            })
        }
        _ => return Err(mixed()),
    })
}

/// Parses a JSON object of typed attribute values, strictly.
///
/// Strings, integers, floats, booleans and homogeneous lists are kept in
/// order; an empty list becomes an empty array; a `null` value is dropped
/// with a warning; objects and mixed lists are errors.
///
/// ```
/// use durable_spans::parse_attribute_object;
/// let attrs = parse_attribute_object(r#"{"result": "SUCCESS", "attempt": 2, "tags": ["a", "b"]}"#).unwrap();
/// assert_eq!(attrs.len(), 3);
/// assert!(parse_attribute_object(r#"{"bad": {"nested": 1}}"#).is_err());
/// ```
pub fn parse_attribute_object(text: &str) -> Result<Vec<KeyValue>, AttributeError> {
    let entries: OrderedEntries<Box<serde_json::value::RawValue>> =
        serde_json::from_str(text).map_err(|e| AttributeError::NotAnObject(e.to_string()))?;
    let mut out = Vec::with_capacity(entries.0.len());
    for (key, raw) in entries.0 {
        if let Some(value) = integer_beyond_i64(raw.get()) {
            return Err(AttributeError::IntegerRange {
                key,
                value: value.to_string(),
            });
        }
        let value: JsonAttr = serde_json::from_str(raw.get())
            .map_err(|e| AttributeError::NotAnObject(e.to_string()))?;
        match value.into_value(&key)? {
            Some(value) => out.push(KeyValue::new(key, value)),
            None => tracing::warn!(attribute = %key, "dropping attribute with a null value"),
        }
    }
    Ok(out)
}

/// The first integer literal in a JSON value's text that does not fit in
/// an `i64`. Without this, serde_json reads an integer beyond 64 bits
/// (`18446744073709551616`) as a float, and the attribute would silently
/// change type and value.
fn integer_beyond_i64(raw: &str) -> Option<&str> {
    let bytes = raw.as_bytes();
    let mut at = 0;
    while at < bytes.len() {
        match bytes[at] {
            b'"' => {
                at += 1;
                while at < bytes.len() && bytes[at] != b'"' {
                    at += if bytes[at] == b'\\' { 2 } else { 1 };
                }
                at += 1;
            }
            b'-' | b'0'..=b'9' => {
                let start = at;
                at += 1;
                while at < bytes.len()
                    && matches!(bytes[at], b'0'..=b'9' | b'.' | b'e' | b'E' | b'+' | b'-')
                {
                    at += 1;
                }
                let number = &raw[start..at];
                if !number.contains(['.', 'e', 'E']) && number.parse::<i64>().is_err() {
                    return Some(number);
                }
            }
            _ => at += 1,
        }
    }
    None
}

/// A JSON object's entries in document order: values as [`JsonAttr`], or
/// as raw text where the text itself must be checked.
struct OrderedEntries<V>(Vec<(String, V)>);

impl<'de, V: Deserialize<'de>> Deserialize<'de> for OrderedEntries<V> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct EntriesVisitor<V>(std::marker::PhantomData<V>);
        impl<'de, V: Deserialize<'de>> Visitor<'de> for EntriesVisitor<V> {
            type Value = OrderedEntries<V>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
                let mut entries = Vec::with_capacity(map.size_hint().unwrap_or(4));
                while let Some(entry) = map.next_entry::<String, V>()? {
                    entries.push(entry);
                }
                Ok(OrderedEntries(entries))
            }
        }
        deserializer.deserialize_map(EntriesVisitor(std::marker::PhantomData))
    }
}

/// Attributes persisted in saved span data, decoded leniently.
///
/// Zuul writes `null` for a link without attributes; a value that has no
/// OpenTelemetry form is dropped with a warning instead of making the whole
/// span unreadable.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct PersistedAttributes(pub Vec<KeyValue>);

impl<'de> Deserialize<'de> for PersistedAttributes {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let Some(entries) = Option::<OrderedEntries<JsonAttr>>::deserialize(deserializer)? else {
            return Ok(PersistedAttributes::default());
        };
        let mut out = Vec::with_capacity(entries.0.len());
        for (key, raw) in entries.0 {
            match raw.into_value(&key) {
                Ok(Some(value)) => out.push(KeyValue::new(key, value)),
                Ok(None) => {
                    tracing::warn!(attribute = %key, "saved span attribute is null; dropped")
                }
                Err(error) => tracing::warn!(%error, "saved span attribute dropped"),
            }
        }
        Ok(PersistedAttributes(out))
    }
}

/// `deserialize_with` for attributes persisted in saved span data.
pub(crate) fn deserialize_persisted<'de, D: Deserializer<'de>>(
    deserializer: D,
) -> Result<Vec<KeyValue>, D::Error> {
    Ok(PersistedAttributes::deserialize(deserializer)?.0)
}

impl Serialize for PersistedAttributes {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serialize_attributes(&self.0, serializer)
    }
}

/// Writes attributes as one JSON object, in order.
pub(crate) fn serialize_attributes<S: Serializer>(
    attrs: &[KeyValue],
    serializer: S,
) -> Result<S::Ok, S::Error> {
    let mut map = serializer.serialize_map(Some(attrs.len()))?;
    for kv in attrs {
        map.serialize_entry(kv.key.as_str(), &ValueJson(&kv.value))?;
    }
    map.end()
}

/// An OpenTelemetry value written as plain JSON.
pub(crate) struct ValueJson<'a>(pub &'a Value);

impl Serialize for ValueJson<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        fn seq<S: Serializer, T: Serialize>(s: S, items: &[T]) -> Result<S::Ok, S::Error> {
            let mut out = s.serialize_seq(Some(items.len()))?;
            for item in items {
                out.serialize_element(item)?;
            }
            out.end()
        }
        match self.0 {
            Value::Bool(b) => serializer.serialize_bool(*b),
            Value::I64(i) => serializer.serialize_i64(*i),
            Value::F64(f) => serializer.serialize_f64(*f),
            Value::String(s) => serializer.serialize_str(s.as_str()),
            Value::Array(Array::Bool(v)) => seq(serializer, v),
            Value::Array(Array::I64(v)) => seq(serializer, v),
            Value::Array(Array::F64(v)) => seq(serializer, v),
            Value::Array(Array::String(v)) => {
                let strs: Vec<&str> = v.iter().map(StringValue::as_str).collect();
                seq(serializer, &strs)
            }
            // Value and Array are non-exhaustive; future kinds are written as text.
            other => serializer.serialize_str(&other.to_string()),
        }
    }
}

/// Sets `kv` in `attrs`: an existing key is removed first, so the new value
/// goes last, as Python's attribute dict orders end-time overrides.
pub(crate) fn upsert(attrs: &mut Vec<KeyValue>, kv: KeyValue) {
    if let Some(pos) = attrs.iter().position(|old| old.key == kv.key) {
        attrs.remove(pos);
    }
    attrs.push(kv);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn typed_values_and_lists() {
        let attrs = parse_attribute_object(
            r#"{"s": "x", "i": -3, "f": 0.5, "b": true, "l": [1, 2], "e": [], "n": null}"#,
        )
        .unwrap();
        let keys: Vec<&str> = attrs.iter().map(|kv| kv.key.as_str()).collect();
        assert_eq!(keys, ["s", "i", "f", "b", "l", "e"]);
        assert_eq!(attrs[1].value, Value::I64(-3));
        assert_eq!(attrs[4].value, Value::Array(Array::I64(vec![1, 2])));
        assert_eq!(attrs[5].value, Value::Array(Array::String(vec![])));
    }

    #[test]
    fn refusals_name_the_key() {
        let err = parse_attribute_object(r#"{"m": [1, "a"]}"#).unwrap_err();
        assert_eq!(err, AttributeError::MixedList { key: "m".into() });
        let err = parse_attribute_object(r#"{"o": {"a": 1}}"#).unwrap_err();
        assert_eq!(err, AttributeError::Object { key: "o".into() });
        assert!(matches!(
            parse_attribute_object(r#"{"big": 18446744073709551615}"#),
            Err(AttributeError::IntegerRange { .. })
        ));
        assert!(matches!(
            parse_attribute_object("[1]"),
            Err(AttributeError::NotAnObject(_))
        ));
        assert!(parse_attribute_object(r#"{"l": [null]}"#).is_err());
    }

    /// serde_json reads an integer beyond 64 bits as a float: it must be
    /// refused, not exported as 1.8446744073709552e19.
    #[test]
    fn integers_beyond_64_bits_are_refused_not_turned_into_floats() {
        for (text, key, value) in [
            (
                r#"{"a": 18446744073709551616}"#,
                "a",
                "18446744073709551616",
            ),
            (
                r#"{"s": "1", "l": [1, -99999999999999999999]}"#,
                "l",
                "-99999999999999999999",
            ),
            (r#"{"a": 9223372036854775808}"#, "a", "9223372036854775808"),
        ] {
            assert_eq!(
                parse_attribute_object(text),
                Err(AttributeError::IntegerRange {
                    key: key.into(),
                    value: value.into()
                }),
                "{text}"
            );
        }
        let fine = parse_attribute_object(
            r#"{"min": -9223372036854775808, "f": 1.5e300, "s": "18446744073709551616 \" 1e999"}"#,
        )
        .unwrap();
        assert_eq!(fine[0].value, Value::I64(i64::MIN));
        assert_eq!(fine[1].value, Value::F64(1.5e300));
        assert!(matches!(fine[2].value, Value::String(_)));
    }

    #[test]
    fn json_round_trip_keeps_order_and_types() {
        let text = r#"{"z":"a","a":[true,false],"f":[0.5,1.5],"i":7}"#;
        let attrs = PersistedAttributes(parse_attribute_object(text).unwrap());
        assert_eq!(serde_json::to_string(&attrs).unwrap(), text);
    }

    #[test]
    fn upsert_moves_overridden_key_last() {
        let mut attrs = vec![KeyValue::new("a", 1), KeyValue::new("b", 2)];
        upsert(&mut attrs, KeyValue::new("a", 3));
        assert_eq!(attrs, vec![KeyValue::new("b", 2), KeyValue::new("a", 3)]);
    }
}
