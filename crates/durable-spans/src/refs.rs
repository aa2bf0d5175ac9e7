//! A saved span's references to other spans: its parent and its links, as
//! Zuul writes them.

use opentelemetry::KeyValue;
use serde::{Deserialize, Serialize};

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
        deserialize_with = "crate::attributes::deserialize_persisted"
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
