//! Lenient serde for an embedded `Option<SpanContext>`, the counterpart of
//! [`durable_spans::lenient`] for span contexts.
//!
//! Use as `#[serde(default, with = "dspans_pipeline::lenient_context")]`.
//! Missing, `null`, malformed and all-zero contexts all read as `None` (with
//! one warning for malformed data), so an object written before tracing was
//! enabled, or with damaged span data, still decodes: its remote children
//! then start new traces (docs/spans.md). Like
//! [`durable_spans::lenient`], it needs serde_json's own text deserializer
//! (`serde_json::from_str` / `from_slice`): ids are read from the raw JSON
//! text so that 128-bit trace ids keep every digit.

use durable_spans::SpanContext;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::value::RawValue;

/// Reads a span context, giving `None` for null, missing, malformed or
/// all-zero data.
pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<SpanContext>, D::Error> {
    let Some(raw) = Option::<Box<RawValue>>::deserialize(d)? else {
        return Ok(None);
    };
    match SpanContext::from_json(raw.get()) {
        Ok(Some(ctx)) if ctx.is_valid() => Ok(Some(ctx)),
        Ok(_) => Ok(None),
        Err(error) => {
            tracing::warn!(%error, "ignoring unreadable span context");
            Ok(None)
        }
    }
}

/// Writes a span context in Zuul's JSON form, or `null`.
pub fn serialize<S: Serializer>(ctx: &Option<SpanContext>, s: S) -> Result<S::Ok, S::Error> {
    ctx.serialize(s)
}
