//! NaN and ±Infinity attribute values in OTLP-JSON.
//!
//! The OTLP/JSON mapping (proto3's) writes them as the strings `"NaN"`,
//! `"Infinity"` and `"-Infinity"`. opentelemetry-proto's serde would write
//! JSON `null` (losing the value) and refuses the strings when reading, so
//! such values travel through serde as string values carrying a marker
//! nobody else can know (a random per-process nonce), and the marker is
//! swapped for the mapping's form in the text.

use std::hash::{BuildHasher, Hasher};
use std::sync::OnceLock;

use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::any_value::Value;

use crate::values::{visit_values, visit_values_mut};

/// The mapping's names of the special doubles.
const NAMES: [&str; 3] = ["NaN", "Infinity", "-Infinity"];

/// A random prefix, the same for the whole process.
fn nonce() -> &'static str {
    static NONCE: OnceLock<String> = OnceLock::new();
    NONCE.get_or_init(|| {
        let random = std::collections::hash_map::RandomState::new();
        let (mut a, mut b) = (random.build_hasher(), random.build_hasher());
        a.write_u8(1);
        b.write_u8(2);
        format!(
            "dspans-special-double-{:016x}{:016x}:",
            a.finish(),
            b.finish()
        )
    })
}

fn name_of(d: f64) -> Option<&'static str> {
    if d.is_nan() {
        Some(NAMES[0])
    } else if d == f64::INFINITY {
        Some(NAMES[1])
    } else if d == f64::NEG_INFINITY {
        Some(NAMES[2])
    } else {
        None
    }
}

fn value_of(name: &str) -> Option<f64> {
    match name {
        "NaN" => Some(f64::NAN),
        "Infinity" => Some(f64::INFINITY),
        "-Infinity" => Some(f64::NEG_INFINITY),
        _ => None,
    }
}

/// `request` as one line of OTLP-JSON, special doubles as the mapping's
/// strings.
pub(super) fn to_json_line(request: &ExportTraceServiceRequest) -> serde_json::Result<String> {
    let mut special = false;
    visit_values(request, &mut |value, _| {
        special |= matches!(value.value, Some(Value::DoubleValue(d)) if !d.is_finite());
    });
    if !special {
        return serde_json::to_string(request);
    }
    let mut marked = request.clone();
    visit_values_mut(&mut marked, &mut |value, _| {
        if let Some(Value::DoubleValue(d)) = value.value {
            if let Some(name) = name_of(d) {
                value.value = Some(Value::StringValue(format!("{}{name}", nonce())));
            }
        }
    });
    let mut text = serde_json::to_string(&marked)?;
    for name in NAMES {
        // The nonce is hex and ASCII: serde_json writes it unescaped.
        let marker = format!("\"stringValue\":\"{}{name}\"", nonce());
        text = text.replace(&marker, &format!("\"doubleValue\":\"{name}\""));
    }
    Ok(text)
}

/// Decodes one OTLP-JSON request, accepting the mapping's strings for
/// special doubles.
pub(crate) fn from_json_slice(bytes: &[u8]) -> serde_json::Result<ExportTraceServiceRequest> {
    match serde_json::from_slice(bytes) {
        Ok(request) => Ok(request),
        Err(error) if mentions_special(bytes) => from_special(bytes).map_err(|_| error),
        Err(error) => Err(error),
    }
}

/// Whether the text has a `"NaN"`, `"Infinity"` or `"-Infinity"` string.
fn mentions_special(bytes: &[u8]) -> bool {
    [&b"\"NaN\""[..], b"Infinity\""]
        .iter()
        .any(|needle| bytes.windows(needle.len()).any(|w| w == *needle))
}

/// The slow way, only for text with special doubles: the JSON tree with
/// `{"doubleValue":"NaN"}` turned into marked string values, decoded, and
/// the markers turned back into doubles.
fn from_special(bytes: &[u8]) -> serde_json::Result<ExportTraceServiceRequest> {
    let mut tree: serde_json::Value = serde_json::from_slice(bytes)?;
    mark(&mut tree);
    let mut request: ExportTraceServiceRequest = serde_json::from_value(tree)?;
    visit_values_mut(&mut request, &mut |value, _| {
        if let Some(Value::StringValue(s)) = &value.value {
            if let Some(d) = s.strip_prefix(nonce()).and_then(value_of) {
                value.value = Some(Value::DoubleValue(d));
            }
        }
    });
    Ok(request)
}

/// Replaces each `"doubleValue": "NaN"` (or an infinity) in `tree` by a
/// marked `"stringValue"`. The tree comes from serde_json, at most 128
/// levels deep.
fn mark(tree: &mut serde_json::Value) {
    match tree {
        serde_json::Value::Object(object) => {
            let name = match object.get("doubleValue") {
                Some(serde_json::Value::String(s)) => NAMES.into_iter().find(|n| n == s),
                _ => None,
            };
            if let Some(name) = name {
                object.remove("doubleValue");
                object.insert(
                    "stringValue".into(),
                    serde_json::Value::String(format!("{}{name}", nonce())),
                );
            }
            object.values_mut().for_each(mark);
        }
        serde_json::Value::Array(items) => items.iter_mut().for_each(mark),
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::values::tests::{nested, request_with_link_value};

    fn doubles(request: &ExportTraceServiceRequest) -> Vec<f64> {
        let mut found = Vec::new();
        visit_values(request, &mut |value, _| {
            if let Some(Value::DoubleValue(d)) = value.value {
                found.push(d);
            }
        });
        found
    }

    #[test]
    fn special_doubles_are_written_as_the_mapping_strings_and_read_back() {
        for (d, name) in [
            (f64::NAN, "NaN"),
            (f64::INFINITY, "Infinity"),
            (f64::NEG_INFINITY, "-Infinity"),
        ] {
            let request = request_with_link_value(nested(3, Value::DoubleValue(d)));
            let line = to_json_line(&request).unwrap();
            assert!(
                line.contains(&format!("{{\"doubleValue\":\"{name}\"}}")),
                "{line}"
            );
            assert!(
                !line.contains("\"doubleValue\":null") && !line.contains(nonce()),
                "{line}"
            );
            let back = from_json_slice(line.as_bytes()).unwrap();
            let got = doubles(&back);
            assert_eq!(got.len(), 1);
            assert!(got[0].is_nan() == d.is_nan() && (d.is_nan() || got[0] == d));
        }
        // Plain doubles take the fast way and stay as they were.
        let request = request_with_link_value(nested(2, Value::DoubleValue(1.5)));
        let line = to_json_line(&request).unwrap();
        assert_eq!(line, serde_json::to_string(&request).unwrap());
        assert_eq!(from_json_slice(line.as_bytes()).unwrap(), request);
    }

    #[test]
    fn a_string_that_looks_special_stays_a_string() {
        let request = request_with_link_value(nested(1, Value::StringValue("NaN".into())));
        let line = to_json_line(&request).unwrap();
        assert_eq!(from_json_slice(line.as_bytes()).unwrap(), request);
        let bad = br#"{"resourceSpans":[{"scopeSpans":[{"spans":[{"attributes":[{"key":"x","value":{"doubleValue":"Infinityish"}}]}]}]}]}"#;
        assert!(from_json_slice(bad).is_err());
    }
}
