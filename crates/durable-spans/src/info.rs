//! [`SpanInfo`]: the saved state of a span, in Zuul's JSON format.

use std::fmt;

use opentelemetry::trace::{SpanId, TraceId};
use opentelemetry::KeyValue;
use serde::de::Deserializer;
use serde::{Deserialize, Serialize};

use crate::attributes::PersistedAttributes;
use crate::Timestamp;

/// The saved state of a span: everything needed to restore it in another
/// process, start children under it, and end it there.
///
/// The JSON form is Zuul's (`getSpanInfo`): ids are decimal JSON integers,
/// `start_time` is integer nanoseconds when written (float seconds are
/// accepted when read), `parent` is always written, `links` and
/// `attributes` only when not empty.
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
        deserialize_with = "deserialize_attributes"
    )]
    pub attributes: Vec<KeyValue>,
}

/// The saved context of a span's parent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ParentInfo {
    /// The parent's trace id.
    #[serde(deserialize_with = "crate::ids::deserialize")]
    pub trace_id: u128,
    /// The parent's span id.
    pub span_id: u64,
    /// Whether the parent was a remote span when this span started.
    pub is_remote: bool,
}

/// A saved link to another span.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LinkInfo {
    /// The linked span's ids.
    pub context: LinkContext,
    /// Whether the linked context was remote. Links saved before Zuul wrote
    /// this key were all made to remote contexts, so it defaults to true.
    #[serde(default = "default_true")]
    pub is_remote: bool,
    /// Link attributes; Zuul writes `null` for none.
    #[serde(
        default,
        serialize_with = "crate::attributes::serialize_attributes",
        deserialize_with = "deserialize_attributes"
    )]
    pub attributes: Vec<KeyValue>,
}

/// The ids of a linked span (Zuul does not save its flags).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct LinkContext {
    /// The linked span's trace id.
    #[serde(deserialize_with = "crate::ids::deserialize")]
    pub trace_id: u128,
    /// The linked span's span id.
    pub span_id: u64,
}

fn default_true() -> bool {
    true
}

/// Why saved span data could not be read.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum DecodeError {
    /// Not JSON, or JSON of the wrong shape (missing key, wrong type).
    #[error("span data is not valid: {0}")]
    Invalid(String),
    /// A trace or span id of zero, which no real span has.
    #[error("span data has an all-zero trace or span id")]
    ZeroId,
}

impl SpanInfo {
    /// Decodes span info from JSON text. `null` gives `Ok(None)`.
    pub fn from_json(text: &str) -> Result<Option<SpanInfo>, DecodeError> {
        Self::from_slice(text.as_bytes())
    }

    /// Decodes span info from JSON bytes. `null` gives `Ok(None)`.
    pub fn from_slice(bytes: &[u8]) -> Result<Option<SpanInfo>, DecodeError> {
        if let Some(info) = crate::fast::decode(bytes) {
            if info.trace_id == 0 || info.span_id == 0 {
                return Err(DecodeError::ZeroId);
            }
            return Ok(Some(info));
        }
        Self::from_slice_full(bytes)
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

    /// The span's trace id in OpenTelemetry's type.
    pub fn otel_trace_id(&self) -> TraceId {
        TraceId::from(self.trace_id)
    }

    /// The span's id in OpenTelemetry's type.
    pub fn otel_span_id(&self) -> SpanId {
        SpanId::from(self.span_id)
    }

    /// The context children of this span would be started in.
    pub fn span_context(&self) -> crate::SpanContext {
        crate::SpanContext {
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

fn deserialize_null_as_empty<'de, D, T>(d: D) -> Result<Vec<T>, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de>,
{
    Ok(Option::<Vec<T>>::deserialize(d)?.unwrap_or_default())
}

fn deserialize_attributes<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<KeyValue>, D::Error> {
    Ok(PersistedAttributes::deserialize(d)?.0)
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

    use crate::SpanInfo;

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
