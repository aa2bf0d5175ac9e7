//! A relay in front of any OTLP backend: what `dspans collector --forward
//! URL --spool DIR` runs.
//!
//! Accepted requests are appended to a journal in the spool directory
//! ([`Spool`], a [`TraceSink`](crate::receiver::TraceSink)) before the
//! sender gets its answer, so nothing accepted is lost when the relay is
//! killed. A [`Forwarder`] sends the journal's requests upstream in order,
//! retrying with backoff while the upstream is away, and records after each
//! one how far it got (`forwarded`, a byte offset), so a restarted relay
//! resumes where it stopped. Only a request whose answer came but whose
//! offset was not yet recorded can go upstream twice: the window is one
//! small file write. [`forwarded_everything`] tells whether a spool has
//! nothing left to send.
//!
//! Repeats from senders are dropped as by the collector (the same spans'
//! ids and content; `Dedupe`), and the memory of them survives a restart:
//! it is rebuilt from the journal and the previous one.
//!
//! Layout of the spool directory:
//! - `journal.jsonl`: accepted requests, one OTLP-JSON line each;
//! - `journal.prev.jsonl`: the journal before the last rotation (for the
//!   memory of repeats);
//! - `forwarded`: how many bytes of `journal.jsonl` went upstream.
//!
//! When everything is forwarded and the journal is over
//! [`ROTATE_BYTES`], it is rotated. A journal over the spool's size limit
//! refuses new requests (`UNAVAILABLE` / 503: senders retry) until the
//! upstream has taken enough of it.

mod forward;
mod spool;

pub use forward::{forwarded_everything, Forwarder};
pub use spool::Spool;

/// A journal this large is rotated once it is all forwarded.
pub const ROTATE_BYTES: u64 = 16 * 1024 * 1024;
/// Default limit of the journal: over it, new requests are refused.
pub const DEFAULT_SPOOL_BYTES: u64 = 1024 * 1024 * 1024;
