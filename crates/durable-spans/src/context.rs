//! [`SpanContext`]: the small value that travels in job requests so that a
//! remote worker can start children of a span it never saw.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::error::DecodeError;

/// A span's context in Zuul's JSON form: `{"trace_id", "span_id",
/// "trace_flags"}` with decimal integer ids. At most 100 bytes as compact
/// JSON (Zuul's spaced form is at most 104).
///
/// It converts to and from a W3C `traceparent` header (55 bytes):
///
/// ```
/// use durable_spans::SpanContext;
/// let ctx: SpanContext = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01".parse().unwrap();
/// assert_eq!(ctx.trace_id, 0x0af7651916cd43dd8448eb211c80319c);
/// assert_eq!(ctx.to_traceparent(), "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01");
/// let json = ctx.to_json();
/// assert_eq!(SpanContext::from_json(&json).unwrap(), Some(ctx));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct SpanContext {
    /// Trace id.
    #[serde(deserialize_with = "crate::ids::deserialize")]
    pub trace_id: u128,
    /// Span id.
    pub span_id: u64,
    /// W3C trace flags.
    pub trace_flags: u8,
}

/// Why a `traceparent` string was refused (W3C Trace Context rules).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TraceparentError {
    /// Not `version-traceid-spanid-flags` in lowercase hex of the right lengths.
    #[error("traceparent must look like 00-<32 hex>-<16 hex>-<2 hex>, got {0:?}")]
    Malformed(String),
    /// Version `ff` is forbidden.
    #[error("traceparent version ff is invalid")]
    InvalidVersion,
    /// All-zero trace id or span id.
    #[error("traceparent has an all-zero trace id or span id")]
    ZeroId,
}

impl SpanContext {
    /// The all-zero context Zuul writes when there was no span.
    pub const INVALID: SpanContext = SpanContext {
        trace_id: 0,
        span_id: 0,
        trace_flags: 0,
    };

    /// True when both ids are non-zero.
    pub fn is_valid(&self) -> bool {
        self.trace_id != 0 && self.span_id != 0
    }

    /// True when the sampled flag is set.
    pub fn is_sampled(&self) -> bool {
        self.trace_flags & 1 == 1
    }

    /// Decodes Zuul JSON. `null` gives `Ok(None)`; missing keys are errors.
    pub fn from_json(text: &str) -> Result<Option<SpanContext>, DecodeError> {
        serde_json::from_str(text).map_err(|e| DecodeError::Invalid(e.to_string()))
    }

    /// Encodes compact Zuul JSON.
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).expect("span context always serializes")
    }

    /// The W3C `traceparent` form, `00-<trace id>-<span id>-<flags>`.
    pub fn to_traceparent(&self) -> String {
        format!(
            "00-{:032x}-{:016x}-{:02x}",
            self.trace_id, self.span_id, self.trace_flags
        )
    }

    /// Parses a W3C `traceparent`. Versions above 00 may carry more fields
    /// after the flags, which are ignored as the specification asks.
    pub fn from_traceparent(text: &str) -> Result<SpanContext, TraceparentError> {
        let malformed = || TraceparentError::Malformed(truncate_for_error(text));
        let bytes = text.as_bytes();
        if bytes.len() < 55 || !text.is_ascii() {
            return Err(malformed());
        }
        let (version, rest) = text.split_at(2);
        let version = parse_lower_hex(version).ok_or_else(malformed)?;
        if version == 0xff {
            return Err(TraceparentError::InvalidVersion);
        }
        if version == 0 && bytes.len() != 55 {
            return Err(malformed());
        }
        if version > 0 && bytes.len() > 55 && bytes[55] != b'-' {
            return Err(malformed());
        }
        let dash_at = |i: usize| bytes[i] == b'-';
        if !(dash_at(2) && dash_at(35) && dash_at(52)) {
            return Err(malformed());
        }
        let trace_id = parse_lower_hex(&rest[1..33]).ok_or_else(malformed)?;
        let span_id = parse_lower_hex(&rest[34..50]).ok_or_else(malformed)?;
        let flags = parse_lower_hex(&rest[51..53]).ok_or_else(malformed)?;
        let ctx = SpanContext {
            trace_id,
            span_id: span_id as u64,
            trace_flags: flags as u8,
        };
        if !ctx.is_valid() {
            return Err(TraceparentError::ZeroId);
        }
        Ok(ctx)
    }
}

/// Lowercase hex only: W3C forbids uppercase in `traceparent`.
fn parse_lower_hex(text: &str) -> Option<u128> {
    if text.is_empty() || !text.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) {
        return None;
    }
    u128::from_str_radix(text, 16).ok()
}

fn truncate_for_error(text: &str) -> String {
    text.chars().take(80).collect()
}

impl FromStr for SpanContext {
    type Err = TraceparentError;
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        Self::from_traceparent(text)
    }
}

impl fmt::Display for SpanContext {
    /// The `traceparent` form.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_traceparent())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn w3c_rules() {
        let ok = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
        assert!(SpanContext::from_traceparent(ok).is_ok());
        let cases = [
            (
                "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
                TraceparentError::InvalidVersion,
            ),
            (
                "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
                TraceparentError::ZeroId,
            ),
            (
                "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
                TraceparentError::ZeroId,
            ),
        ];
        for (text, want) in cases {
            assert_eq!(
                SpanContext::from_traceparent(text).unwrap_err(),
                want,
                "{text}"
            );
        }
        for bad in [
            "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7_01",
            "0-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "",
        ] {
            assert!(
                matches!(
                    SpanContext::from_traceparent(bad),
                    Err(TraceparentError::Malformed(_))
                ),
                "{bad}"
            );
        }
        let future = "01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-whatever";
        assert!(SpanContext::from_traceparent(future).is_ok());
    }

    #[test]
    fn zuul_json_largest_value_is_small() {
        let max = SpanContext {
            trace_id: u128::MAX,
            span_id: u64::MAX,
            trace_flags: 3,
        };
        assert!(max.to_json().len() <= 104);
        assert_eq!(max.to_traceparent().len(), 55);
    }
}
