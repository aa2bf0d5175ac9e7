//! A saved span as a file: its span info, plus what `dspans span` keeps
//! beside it: the events recorded while it was saved, and when it was
//! ended (so a second `end` of the file exports nothing).
//!
//! The extra keys (`events`, `dspans.ended_at`) are ignored by Zuul's
//! `restoreSpan` and by [`SpanInfo`]'s decoder. Ids are never passed
//! through a generic JSON value, which would round them through a float:
//! the file is written as the span info's own JSON with the extra keys
//! appended.

use std::io::Write as _;
use std::path::Path;

use anyhow::Context as _;
use durable_spans::{EventData, SpanInfo, Timestamp};
use serde::Deserialize;

/// A span file's contents.
#[derive(Debug, Clone)]
pub(crate) struct SpanFile {
    /// The span info; `None` for `null`.
    pub info: Option<SpanInfo>,
    /// Events added by `dspans span event`, oldest first.
    pub events: Vec<EventData>,
    /// When `dspans span end` ended it.
    pub ended_at: Option<Timestamp>,
}

/// The keys `dspans span` adds, read from the same text as the span info.
#[derive(Deserialize, Default)]
struct Extras {
    #[serde(default)]
    events: Vec<EventData>,
    #[serde(default, rename = "dspans.ended_at")]
    ended_at: Option<Timestamp>,
}

impl SpanFile {
    /// Decodes a file's text; `what` names it in errors.
    pub(crate) fn parse(text: &str, what: &str) -> anyhow::Result<SpanFile> {
        let text = text.trim();
        let info = SpanInfo::from_json(text).with_context(|| format!("span info from {what}"))?;
        let extras: Extras = match info {
            Some(_) => serde_json::from_str(text).with_context(|| format!("events in {what}"))?,
            None => Extras::default(),
        };
        Ok(SpanFile {
            info,
            events: extras.events,
            ended_at: extras.ended_at,
        })
    }

    /// The JSON text: the span info's own, then the extra keys.
    pub(crate) fn to_json(&self) -> anyhow::Result<String> {
        let Some(info) = &self.info else {
            return Ok("null".to_string());
        };
        let mut text = info.to_json();
        if self.events.is_empty() && self.ended_at.is_none() {
            return Ok(text);
        }
        text.pop(); // the closing brace
        if !self.events.is_empty() {
            text.push_str(",\"events\":");
            text.push_str(&serde_json::to_string(&self.events)?);
        }
        if let Some(at) = self.ended_at {
            text.push_str(&format!(",\"dspans.ended_at\":{}", at.as_nanos()));
        }
        text.push('}');
        Ok(text)
    }

    /// Writes the file whole or not at all: a temporary file beside it,
    /// then a rename.
    pub(crate) fn write(&self, path: &Path) -> anyhow::Result<()> {
        write_atomically(path, &format!("{}\n", self.to_json()?))
    }
}

/// Writes `text` to `path` through a temporary file in the same directory,
/// so a reader never sees half of it.
pub(crate) fn write_atomically(path: &Path, text: &str) -> anyhow::Result<()> {
    let dir = match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir,
        _ => Path::new("."),
    };
    let mut temp = tempfile::NamedTempFile::new_in(dir)
        .with_context(|| format!("cannot write beside {}", path.display()))?;
    temp.write_all(text.as_bytes())
        .and_then(|()| temp.as_file().sync_all())
        .with_context(|| format!("cannot write {}", path.display()))?;
    temp.persist(path)
        .with_context(|| format!("cannot write {}", path.display()))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use durable_spans::DurableTracer;
    use opentelemetry::KeyValue;

    #[test]
    fn events_and_the_end_mark_survive_a_round_trip_with_exact_ids() {
        let tracer = DurableTracer::builder("t").build();
        let info = tracer
            .start_saved_span("Build", Default::default())
            .unwrap();
        let file = SpanFile {
            info: Some(info.clone()),
            events: vec![EventData {
                name: "checkout".into(),
                time: Timestamp::from_nanos(5),
                attributes: vec![KeyValue::new("ref", "main")],
            }],
            ended_at: Some(Timestamp::from_nanos(7)),
        };
        let text = file.to_json().unwrap();
        let back = SpanFile::parse(&text, "test").unwrap();
        assert_eq!(back.info, Some(info));
        assert_eq!(back.events, file.events);
        assert_eq!(back.ended_at, file.ended_at);
    }
}
