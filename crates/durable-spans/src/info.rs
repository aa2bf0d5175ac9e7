//! [`SpanInfo`]: the saved state of a span, in Zuul's JSON format.

use std::fmt;

use opentelemetry::KeyValue;
use serde::de::Deserializer;
use serde::{Deserialize, Serialize};

use crate::context::SpanContext;
use crate::error::DecodeError;
use crate::finished::Kind;
use crate::refs::{LinkInfo, ParentInfo};
use crate::time::Timestamp;

/// The saved state of a span: everything needed to restore it in another
/// process, start children under it, and end it there.
///
/// The JSON form is Zuul's (`getSpanInfo`): ids are decimal JSON integers,
/// `start_time` is integer nanoseconds when written (float seconds are
/// accepted when read), `parent` is always written, `links` and
/// `attributes` only when not empty. `kind` is this library's addition
/// (Zuul has none and its `restoreSpan` ignores the key): written last, as
/// a lowercase name, and only when not internal, so span info of internal
/// spans is exactly Zuul's. A missing key, `null` or an unknown name reads
/// as internal.
///
/// ```
/// use durable_spans::SpanInfo;
/// let text = r#"{"name": "Build", "trace_id": 161266188067846495664995866757382758091,
///   "span_id": 9791094818166743568, "trace_flags": 3, "start_time": 1700000010.5,
///   "parent": {"trace_id": 161266188067846495664995866757382758091,
///              "span_id": 5390140552462790154, "is_remote": true}}"#;
/// let info = SpanInfo::from_json(text).unwrap().unwrap();
/// assert_eq!(info.trace_id, 161266188067846495664995866757382758091);
/// assert_eq!(info.start_time.as_nanos(), 1_700_000_010_500_000_000);
/// assert_eq!(info.parent.unwrap().span_id, 5390140552462790154);
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SpanInfo {
    /// Span name.
    pub name: String,
    /// Trace id as an integer (Zuul writes it in decimal).
    #[serde(deserialize_with = "crate::ids::deserialize")]
    pub trace_id: u128,
    /// Span id as an integer.
    pub span_id: u64,
    /// W3C trace flags: bit 0 is "sampled"; newer Python SDKs also set 0x02.
    pub trace_flags: u8,
    /// Start time; written as integer nanoseconds.
    pub start_time: Timestamp,
    /// The parent's context, when the span had one. Data written before Zuul
    /// saved parents has no such key and restores as a root span.
    #[serde(default)]
    pub parent: Option<ParentInfo>,
    /// Links to other spans.
    #[serde(
        default,
        skip_serializing_if = "Vec::is_empty",
        deserialize_with = "deserialize_null_as_empty"
    )]
    pub links: Vec<LinkInfo>,
    /// Start attributes, present only when persisting them was requested.
    #[serde(
        default,
        skip_serializing_if = "Vec::is_empty",
        serialize_with = "crate::attributes::serialize_attributes",
        deserialize_with = "crate::attributes::deserialize_persisted"
    )]
    pub attributes: Vec<KeyValue>,
    /// Span kind, exported when the span ends. Zuul writes none: internal.
    #[serde(
        default,
        skip_serializing_if = "Kind::is_internal",
        deserialize_with = "deserialize_kind"
    )]
    pub kind: Kind,
}

impl SpanInfo {
    /// Decodes span info from JSON text. `null` gives `Ok(None)`.
    pub fn from_json(text: &str) -> Result<Option<SpanInfo>, DecodeError> {
        Self::from_slice(text.as_bytes())
    }

    /// Decodes span info from JSON bytes. `null` gives `Ok(None)`.
    pub fn from_slice(bytes: &[u8]) -> Result<Option<SpanInfo>, DecodeError> {
        let Some(fields) = crate::fast::decode(bytes) else {
            return Self::from_slice_full(bytes);
        };
        if fields.trace_id == 0 || fields.span_id == 0 {
            return Err(DecodeError::ZeroId);
        }
        Ok(Some(SpanInfo {
            name: fields.name.to_owned(),
            trace_id: fields.trace_id,
            span_id: fields.span_id,
            trace_flags: fields.trace_flags,
            start_time: fields.start_time,
            parent: fields.parent,
            links: Vec::new(),
            attributes: Vec::new(),
            kind: fields.kind,
        }))
    }

    /// The general decoder, for any shape; [`from_slice`](Self::from_slice)
    /// tries a faster reader for the common shape first.
    #[doc(hidden)]
    pub fn from_slice_full(bytes: &[u8]) -> Result<Option<SpanInfo>, DecodeError> {
        let info: Option<SpanInfo> =
            serde_json::from_slice(bytes).map_err(|e| DecodeError::Invalid(e.to_string()))?;
        match info {
            Some(info) => info.validate().map(Some),
            None => Ok(None),
        }
    }

    /// Checks what the JSON shape cannot: ids must not be zero.
    pub fn validate(self) -> Result<SpanInfo, DecodeError> {
        if self.trace_id == 0 || self.span_id == 0 {
            return Err(DecodeError::ZeroId);
        }
        Ok(self)
    }

    /// Encodes as compact JSON that Zuul's `restoreSpan` accepts.
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).expect("span info always serializes")
    }

    /// The context children of this span would be started in.
    pub fn span_context(&self) -> SpanContext {
        SpanContext {
            trace_id: self.trace_id,
            span_id: self.span_id,
            trace_flags: self.trace_flags,
        }
    }
}

impl fmt::Display for SpanInfo {
    /// The JSON form.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_json())
    }
}

/// A kind name; `null` and names of kinds this version does not know read
/// as internal, so span info written by a newer version stays readable.
fn deserialize_kind<'de, D: Deserializer<'de>>(d: D) -> Result<Kind, D::Error> {
    let name = Option::<String>::deserialize(d)?;
    Ok(name
        .as_deref()
        .and_then(Kind::from_name)
        .unwrap_or_default())
}

fn deserialize_null_as_empty<'de, D, T>(d: D) -> Result<Vec<T>, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de>,
{
    Ok(Option::<Vec<T>>::deserialize(d)?.unwrap_or_default())
}

/// Serde helpers for embedding span data in a larger object without letting
/// bad span data spoil the object.
///
/// With `#[serde(default, with = "durable_spans::lenient")]` on an
/// `Option<SpanInfo>` field, a missing key, `null`, or malformed span data
/// all decode as `None` (malformed data logs one warning), so the object
/// itself is always readable. Works with `serde_json` readers only.
///
/// ```
/// use durable_spans::SpanInfo;
/// #[derive(serde::Deserialize)]
/// struct QueueItem {
///     uuid: String,
///     #[serde(default, with = "durable_spans::lenient")]
///     span_info: Option<SpanInfo>,
/// }
/// let item: QueueItem = serde_json::from_str(r#"{"uuid": "a", "span_info": {"name": 1}}"#).unwrap();
/// assert!(item.span_info.is_none());
/// ```
pub mod lenient {
    use serde::{Deserialize, Deserializer, Serialize, Serializer};
    use serde_json::value::RawValue;

    use crate::info::SpanInfo;

    /// Reads span data, giving `None` for null, missing or malformed data.
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<SpanInfo>, D::Error> {
        let Some(raw) = Option::<Box<RawValue>>::deserialize(d)? else {
            return Ok(None);
        };
        match SpanInfo::from_json(raw.get()) {
            Ok(info) => Ok(info),
            Err(error) => {
                tracing::warn!(%error, "ignoring unreadable saved span data");
                Ok(None)
            }
        }
    }

    /// Writes span data, or `null`.
    pub fn serialize<S: Serializer>(info: &Option<SpanInfo>, s: S) -> Result<S::Ok, S::Error> {
        info.serialize(s)
    }
}

#[cfg(test)]
mod tests {
    use super::SpanInfo;
    use crate::finished::Kind;
    use crate::refs::ParentInfo;
    use crate::time::Timestamp;

    /// Span info of every edge the compact reader meets: ids of every
    /// length up to 2^128, negative and extreme start times, flags up to
    /// 255, names that need escapes or are not ASCII, parents or none,
    /// every kind.
    fn edge_cases() -> Vec<SpanInfo> {
        let names = [
            "Build",
            "",
            "caf\u{e9} \u{1f600}",
            "a \"quoted\" \\ name",
            "tab\tnl\n",
        ];
        let trace_ids = [
            1,
            9,
            10,
            u128::from(u64::MAX),
            u128::from(u64::MAX) + 1,
            10u128.pow(38),
            u128::MAX,
        ];
        let span_ids = [1, 10, 1_234_567_890_123_456_789, u64::MAX];
        let starts = [i64::MIN, -1, 0, 7, 1_700_000_000_123_456_789, i64::MAX];
        let mut infos = Vec::new();
        for (n, &trace_id) in trace_ids.iter().enumerate() {
            for (m, &span_id) in span_ids.iter().enumerate() {
                for (k, &start) in starts.iter().enumerate() {
                    let parent = (k % 2 == 0).then_some(ParentInfo {
                        trace_id: if m % 2 == 0 {
                            trace_id
                        } else {
                            trace_ids[(n + 1) % 7]
                        },
                        span_id: span_ids[(m + k) % 4],
                        is_remote: k % 3 == 0,
                    });
                    infos.push(SpanInfo {
                        name: names[(n + m + k) % names.len()].to_string(),
                        trace_id,
                        span_id,
                        trace_flags: [0, 1, 3, 255][(n + k) % 4],
                        start_time: Timestamp::from_nanos(start),
                        parent,
                        links: Vec::new(),
                        attributes: Vec::new(),
                        kind: KINDS[(n + 2 * m + k) % KINDS.len()],
                    });
                }
            }
        }
        infos
    }

    const KINDS: [Kind; 5] = [
        Kind::Internal,
        Kind::Server,
        Kind::Client,
        Kind::Producer,
        Kind::Consumer,
    ];

    #[test]
    fn what_this_library_writes_is_read_back_by_the_compact_reader() {
        for info in edge_cases() {
            let text = info.to_json();
            let compact = crate::fast::decode_compact(text.as_bytes());
            assert_eq!(compact.is_some(), !text.contains('\\'), "{text}");
            assert_eq!(SpanInfo::from_json(&text).unwrap(), Some(info.clone()));
            assert_eq!(
                SpanInfo::from_slice_full(text.as_bytes()).unwrap(),
                Some(info)
            );
        }
    }

    #[test]
    fn the_kind_is_written_last_and_only_when_not_internal() {
        let mut info = edge_cases().swap_remove(0);
        info.kind = Kind::Internal;
        let internal = info.to_json();
        assert!(!internal.contains("kind"), "{internal}");
        info.kind = Kind::Server;
        let server = info.to_json();
        assert_eq!(
            server,
            format!("{},\"kind\":\"server\"}}", &internal[..internal.len() - 1])
        );
    }

    #[test]
    fn common_shapes_take_the_fast_path_and_read_as_the_full_decoder_does() {
        let texts = [
            r#"{"name":"Build","trace_id":318612875816519240775927099093197183224,"span_id":11647841543826717486,"trace_flags":1,"start_time":1795556335255304756,"parent":{"trace_id":318612875816519240775927099093197183224,"span_id":12345678901234567890,"is_remote":true}}"#,
            r#"{"name": "BuildSet", "trace_id": 161266188067846495664995866757382758091, "span_id": 5390140552462790154, "trace_flags": 3, "start_time": 1700000000.123456, "parent": null}"#,
            r#"{"name":"QueueItem","trace_id":318612875816519240775927099093197183224,"span_id":11647841543826717486,"trace_flags":1,"start_time":1795556335255304756,"parent":null,"kind":"server"}"#,
            r#"{"kind": "consumer", "name": "Build", "trace_id": 5, "span_id": 6, "trace_flags": 1, "start_time": 1700000000.5, "parent": null}"#,
        ];
        for text in texts {
            assert!(
                crate::fast::decode(text.as_bytes()).is_some(),
                "fast path refused {text}"
            );
            let full = SpanInfo::from_slice_full(text.as_bytes()).unwrap();
            assert_eq!(SpanInfo::from_json(text).unwrap(), full);
        }
    }
}
