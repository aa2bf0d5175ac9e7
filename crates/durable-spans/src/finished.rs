//! [`FinishedSpan`]: a completed span as plain data, to keep and export later.

use opentelemetry::KeyValue;
use serde::{Deserialize, Serialize};

use crate::error::DecodeError;
use crate::refs::{LinkInfo, ParentInfo};
use crate::time::Timestamp;

/// A completed span as data: everything an exporter needs, serializable to
/// JSON so it can wait in a store (an outbox) and be exported by any process.
///
/// ```
/// use durable_spans::{DurableTracer, EndOptions, FinishedSpan};
/// let tracer = DurableTracer::builder("demo").build();
/// let info = tracer.start_saved_span("Build", Default::default()).unwrap();
/// let finished = tracer.finish_saved_span(Some(&info), EndOptions::new()).unwrap();
/// let kept = finished.to_json();
/// let back = FinishedSpan::from_json(&kept).unwrap();
/// assert_eq!(back, finished);
/// tracer.export(back);
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FinishedSpan {
    /// Span name.
    pub name: String,
    /// Trace id.
    #[serde(deserialize_with = "crate::ids::deserialize")]
    pub trace_id: u128,
    /// Span id.
    pub span_id: u64,
    /// W3C trace flags.
    pub trace_flags: u8,
    /// The parent's context, if any (its trace id is this span's).
    #[serde(default)]
    pub parent: Option<ParentInfo>,
    /// Span kind.
    #[serde(default)]
    pub kind: Kind,
    /// Start time, nanoseconds.
    pub start_time: Timestamp,
    /// End time, nanoseconds.
    pub end_time: Timestamp,
    /// Attributes, in order.
    #[serde(
        default,
        serialize_with = "crate::attributes::serialize_attributes",
        deserialize_with = "crate::attributes::deserialize_persisted"
    )]
    pub attributes: Vec<KeyValue>,
    /// Events.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub events: Vec<EventData>,
    /// Links.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub links: Vec<LinkInfo>,
    /// Status.
    #[serde(default)]
    pub status: StatusData,
    /// Instrumentation scope name, when it differs from the exporting tracer's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scope: Option<String>,
}

/// A span event.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EventData {
    /// Event name.
    pub name: String,
    /// When it happened, nanoseconds.
    pub time: Timestamp,
    /// Event attributes.
    #[serde(
        default,
        serialize_with = "crate::attributes::serialize_attributes",
        deserialize_with = "crate::attributes::deserialize_persisted"
    )]
    pub attributes: Vec<KeyValue>,
}

/// Span kind, as OpenTelemetry defines it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    /// Internal operation (the default).
    #[default]
    Internal,
    /// Server side of a request.
    Server,
    /// Client side of a request.
    Client,
    /// Producer of a message.
    Producer,
    /// Consumer of a message.
    Consumer,
}

impl Kind {
    /// The kind of a lowercase name, as JSON writes it; `None` for any
    /// other text.
    ///
    /// ```
    /// use durable_spans::Kind;
    /// assert_eq!(Kind::from_name("server"), Some(Kind::Server));
    /// assert_eq!(Kind::from_name("Server"), None);
    /// ```
    pub fn from_name(name: &str) -> Option<Kind> {
        match name {
            "internal" => Some(Kind::Internal),
            "server" => Some(Kind::Server),
            "client" => Some(Kind::Client),
            "producer" => Some(Kind::Producer),
            "consumer" => Some(Kind::Consumer),
            _ => None,
        }
    }

    /// Whether this is the default kind, which span info leaves unwritten.
    pub fn is_internal(&self) -> bool {
        *self == Kind::Internal
    }
}

/// Span status.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "code", rename_all = "lowercase")]
pub enum StatusData {
    /// No status set.
    #[default]
    Unset,
    /// Completed successfully.
    Ok,
    /// Failed.
    Error {
        /// What went wrong.
        #[serde(default)]
        description: String,
    },
}

impl FinishedSpan {
    /// JSON form (ids as decimal integers, times as nanoseconds).
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).expect("finished span always serializes")
    }

    /// Reads the JSON form.
    pub fn from_json(text: &str) -> Result<FinishedSpan, DecodeError> {
        serde_json::from_str(text).map_err(|e| DecodeError::Invalid(e.to_string()))
    }
}
