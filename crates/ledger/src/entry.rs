//! What a span's entry under `<root>/entries` holds: the saved span while
//! it is open (version 0), then, from the transaction that ends it, the
//! finished span and the sender that will send it (version 1 or more).

use durable_spans::{FinishedSpan, SpanInfo};
use serde::{Deserialize, Serialize};

/// An open span: its saved form and the path of its owning object.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct OpenEntry {
    pub owner: String,
    pub span: SpanInfo,
}

/// An ended span waiting for the collector.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct EndedEntry {
    /// The sender that sends it ([`SenderId`] in its text form), empty when
    /// the ending process had none: then an unassigned marker asks any.
    pub sender: String,
    pub finished: FinishedSpan,
}

#[derive(Serialize)]
struct EndedEntryRef<'a> {
    sender: &'a str,
    finished: &'a FinishedSpan,
}

/// Either state of an entry.
#[derive(Debug, Clone)]
pub(crate) enum Entry {
    Ended(EndedEntry),
    Open(OpenEntry),
}

impl Entry {
    /// Reads an entry; `Err` holds the reason it is unreadable.
    pub fn decode(data: &[u8]) -> Result<Entry, String> {
        // Tried in turn rather than as an untagged enum: span ids are
        // 128-bit numbers, which serde's buffered form cannot hold.
        match serde_json::from_slice::<EndedEntry>(data) {
            Ok(entry) => Ok(Entry::Ended(entry)),
            Err(ended) => match serde_json::from_slice::<OpenEntry>(data) {
                Ok(entry) => Ok(Entry::Open(entry)),
                Err(open) => Err(format!(
                    "neither an open span ({open}) nor an ended one ({ended})"
                )),
            },
        }
    }
}

/// The bytes of an open entry.
pub(crate) fn open_bytes(owner: &str, span: &SpanInfo) -> Vec<u8> {
    #[derive(Serialize)]
    struct OpenEntryRef<'a> {
        owner: &'a str,
        span: &'a SpanInfo,
    }
    serde_json::to_vec(&OpenEntryRef { owner, span }).expect("an open entry always serializes")
}

/// The bytes of an ended entry.
pub(crate) fn ended_bytes(sender: &str, finished: &FinishedSpan) -> Vec<u8> {
    serde_json::to_vec(&EndedEntryRef { sender, finished })
        .expect("an ended entry always serializes")
}

/// Who sends a span: a sender's name and its store session, so that others
/// can tell when it is gone (its presence node vanished) and a process
/// restarted under the same name recognises its predecessor's spans.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct SenderId {
    pub name: String,
    pub session: String,
}

impl SenderId {
    pub fn new(name: &str, session_id: i64) -> SenderId {
        SenderId {
            name: name.to_string(),
            session: format!("{session_id:x}"),
        }
    }

    /// `name`, a line break, the session in hex: the form stored in ended
    /// entries and claims.
    pub fn text(&self) -> String {
        format!("{}\n{}", self.name, self.session)
    }

    pub fn parse(text: &str) -> Option<SenderId> {
        let (name, session) = text.rsplit_once('\n')?;
        Some(SenderId {
            name: name.to_string(),
            session: session.to_string(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use durable_spans::{DurableTracer, EndOptions, SavedSpanOptions};

    fn finished() -> (SpanInfo, FinishedSpan) {
        let tracer = DurableTracer::builder("entry-test")
            .service_name("entry-test")
            .build();
        let info = tracer
            .start_saved_span("Build", SavedSpanOptions::new())
            .expect("sampled");
        let done = tracer
            .finish_saved_span(Some(&info), EndOptions::new())
            .expect("valid span");
        (info, done)
    }

    #[test]
    fn both_states_read_back() {
        let (info, done) = finished();
        match Entry::decode(&open_bytes("/a/b", &info)).unwrap() {
            Entry::Open(entry) => {
                assert_eq!(entry.owner, "/a/b");
                assert_eq!(entry.span.span_id, info.span_id);
            }
            other => panic!("read as {other:?}"),
        }
        let by = SenderId::new("sched\nx", 0x2a).text();
        match Entry::decode(&ended_bytes(&by, &done)).unwrap() {
            Entry::Ended(entry) => {
                assert_eq!(entry.finished.span_id, done.span_id);
                assert_eq!(entry.finished.end_time, done.end_time);
                let sender = SenderId::parse(&entry.sender).unwrap();
                assert_eq!(sender.name, "sched\nx");
                assert_eq!(sender.session, "2a");
            }
            other => panic!("read as {other:?}"),
        }
    }

    #[test]
    fn damaged_entries_are_errors_not_panics() {
        let (info, done) = finished();
        let open = open_bytes("/a", &info);
        let ended = ended_bytes("", &done);
        for whole in [open, ended] {
            for cut in 0..whole.len() {
                assert!(Entry::decode(&whole[..cut]).is_err(), "prefix {cut}");
            }
            // Every single-byte change either reads or is an error.
            for at in (0..whole.len()).step_by(3) {
                let mut bent = whole.clone();
                bent[at] ^= 0x5a;
                let _ = Entry::decode(&bent);
            }
        }
        assert!(Entry::decode(b"{}").is_err());
        assert!(Entry::decode(b"null").is_err());
        assert!(SenderId::parse("no line break").is_none());
    }
}
