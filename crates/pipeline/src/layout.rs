//! Where every pipeline object lives in the store: the one place that names
//! store paths.
//!
//! ```text
//! /dspans                                    root (Layout::root)
//!   events/trigger/event-NNNNNNNNNN          TriggerEvent (EventQueue)
//!   events/results/<pipeline>/event-NNN…    ResultEvent (EventQueue)
//!   pipelines/<pipeline>/queues/<queue>      ChangeQueue (ordered item uuids)
//!   pipelines/<pipeline>/items/<item>        QueueItem
//!     …/buildsets/<buildset>                 BuildSet
//!     …/buildsets/<buildset>/builds/<build>  Build
//!   pipelines/<pipeline>/reports/<item>      Report
//!   executor/{requests,locks}/job-NNN…       BuildRequest (JobQueue root)
//!   merger/{requests,locks}/job-NNN…         MergeRequest (JobQueue root)
//!   locks/pipelines/<pipeline>               pipeline lock (Lock)
//!   spans/{entries,unassigned,claims}/<id>   span ledger (dspans_ledger)
//!   spans/senders/<session>                  ephemeral: a running outbox sender
//!   components/<kind>/<name>                 ephemeral registration
//! ```
//!
//! There is no tenant level. Every name is one path segment, percent-encoded
//! by [`encode_name`]: project names such as `org/project` contain `/`, and
//! pipeline or queue names may contain anything the config allows. Uuids
//! pass through unchanged.

use percent_encoding::{percent_decode_str, utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};

/// The default root of every path.
pub const DEFAULT_ROOT: &str = "/dspans";

/// Bytes kept as they are in a segment: ASCII letters, digits and `-_.~`
/// (RFC 3986 "unreserved"); everything else becomes `%XX` per UTF-8 byte.
const SEGMENT: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'~');

/// The segment that stands for the empty name (a lone `%` is never produced
/// by percent-encoding, so it is unambiguous).
const EMPTY_NAME: &str = "%";

/// A layout root or an encoded segment that cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LayoutError {
    /// The root is not a valid absolute store path.
    #[error("invalid layout root {root:?}: {reason}")]
    Root {
        /// The root as given.
        root: String,
        /// Why it was refused.
        reason: String,
    },
    /// A segment does not decode to a UTF-8 name.
    #[error("store path segment {segment:?} is not an encoded name: {reason}")]
    Segment {
        /// The segment as found.
        segment: String,
        /// Why it does not decode.
        reason: &'static str,
    },
}

/// Encodes a name as one store path segment.
///
/// The result never contains `/`, control characters or non-ASCII, is never
/// empty, `.` or `..`, and [`decode_name`] gives the name back.
///
/// ```
/// use dspans_pipeline::layout::{decode_name, encode_name};
/// assert_eq!(encode_name("org/project"), "org%2Fproject");
/// assert_eq!(encode_name(".."), "%2E%2E");
/// assert_eq!(decode_name("org%2Fproject").unwrap(), "org/project");
/// ```
pub fn encode_name(name: &str) -> String {
    if name.is_empty() {
        return EMPTY_NAME.to_string();
    }
    if name.bytes().all(|b| b == b'.') {
        // "." and ".." are not valid segments; encode dot-only names whole.
        return "%2E".repeat(name.len());
    }
    utf8_percent_encode(name, SEGMENT).to_string()
}

/// Decodes a segment made by [`encode_name`].
pub fn decode_name(segment: &str) -> Result<String, LayoutError> {
    if segment == EMPTY_NAME {
        return Ok(String::new());
    }
    let bad = |reason| LayoutError::Segment {
        segment: segment.to_string(),
        reason,
    };
    let bytes = segment.as_bytes();
    for (i, b) in bytes.iter().enumerate() {
        if *b == b'%' {
            let hex = bytes
                .get(i + 1..i + 3)
                .ok_or_else(|| bad("truncated %-escape"))?;
            if !hex.iter().all(u8::is_ascii_hexdigit) {
                return Err(bad("%-escape without two hex digits"));
            }
        } else if !(b.is_ascii_alphanumeric() || b"-_.~".contains(b)) {
            return Err(bad("character that encode_name always escapes"));
        }
    }
    percent_decode_str(segment)
        .decode_utf8()
        .map(|s| s.into_owned())
        .map_err(|_| bad("not UTF-8 after decoding"))
}

/// The store paths of one deployment. Cheap to clone.
///
/// ```
/// use dspans_pipeline::layout::Layout;
/// let l = Layout::default();
/// assert_eq!(l.item("gate", "1a2b"), "/dspans/pipelines/gate/items/1a2b");
/// assert_eq!(l.change_queue("gate", "org/project"), "/dspans/pipelines/gate/queues/org%2Fproject");
/// assert_eq!(l.result_events("gate"), "/dspans/events/results/gate");
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Layout {
    root: String,
}

impl Default for Layout {
    fn default() -> Self {
        Layout {
            root: DEFAULT_ROOT.to_string(),
        }
    }
}

impl Layout {
    /// A layout under another root (e.g. to keep benchmark runs apart).
    pub fn with_root(root: &str) -> Result<Layout, LayoutError> {
        dspans_store::validate_path(root).map_err(|e| LayoutError::Root {
            root: root.to_string(),
            reason: e.to_string(),
        })?;
        if root == "/" {
            return Err(LayoutError::Root {
                root: root.to_string(),
                reason: "the store root itself cannot hold the layout".to_string(),
            });
        }
        Ok(Layout {
            root: root.to_string(),
        })
    }

    /// The root, e.g. `/dspans`.
    pub fn root(&self) -> &str {
        &self.root
    }

    fn under(&self, parts: &[&str]) -> String {
        let mut path = self.root.clone();
        for part in parts {
            path.push('/');
            path.push_str(part);
        }
        path
    }

    /// Trigger events of every pipeline: an `EventQueue` root.
    pub fn trigger_events(&self) -> String {
        self.under(&["events", "trigger"])
    }

    /// Result events (build and merge completions) of one pipeline: an
    /// `EventQueue` root.
    pub fn result_events(&self, pipeline: &str) -> String {
        self.under(&["events", "results", &encode_name(pipeline)])
    }

    /// Parent of every pipeline's node.
    pub fn pipelines(&self) -> String {
        self.under(&["pipelines"])
    }

    /// One pipeline's node.
    pub fn pipeline(&self, pipeline: &str) -> String {
        self.under(&["pipelines", &encode_name(pipeline)])
    }

    /// Parent of a pipeline's change queues.
    pub fn change_queues(&self, pipeline: &str) -> String {
        self.under(&["pipelines", &encode_name(pipeline), "queues"])
    }

    /// A change queue: the ordered uuids of its items.
    pub fn change_queue(&self, pipeline: &str, queue: &str) -> String {
        self.under(&[
            "pipelines",
            &encode_name(pipeline),
            "queues",
            &encode_name(queue),
        ])
    }

    /// Parent of a pipeline's queue items.
    pub fn items(&self, pipeline: &str) -> String {
        self.under(&["pipelines", &encode_name(pipeline), "items"])
    }

    /// A queue item.
    pub fn item(&self, pipeline: &str, item: &str) -> String {
        self.under(&[
            "pipelines",
            &encode_name(pipeline),
            "items",
            &encode_name(item),
        ])
    }

    /// Parent of an item's build sets (the current one and, until the item
    /// is dequeued, those replaced by gate resets).
    pub fn buildsets(&self, pipeline: &str, item: &str) -> String {
        format!("{}/buildsets", self.item(pipeline, item))
    }

    /// A build set.
    pub fn buildset(&self, pipeline: &str, item: &str, buildset: &str) -> String {
        format!(
            "{}/{}",
            self.buildsets(pipeline, item),
            encode_name(buildset)
        )
    }

    /// Parent of a build set's builds.
    pub fn builds(&self, pipeline: &str, item: &str, buildset: &str) -> String {
        format!("{}/builds", self.buildset(pipeline, item, buildset))
    }

    /// A build.
    pub fn build(&self, pipeline: &str, item: &str, buildset: &str, build: &str) -> String {
        format!(
            "{}/{}",
            self.builds(pipeline, item, buildset),
            encode_name(build)
        )
    }

    /// Parent of a pipeline's report records.
    pub fn reports(&self, pipeline: &str) -> String {
        self.under(&["pipelines", &encode_name(pipeline), "reports"])
    }

    /// The report record of an item.
    pub fn report(&self, pipeline: &str, item: &str) -> String {
        format!("{}/{}", self.reports(pipeline), encode_name(item))
    }

    /// Parent of a pipeline's set-aside objects.
    pub fn set_aside_items(&self, pipeline: &str) -> String {
        self.under(&["pipelines", &encode_name(pipeline), "set-aside"])
    }

    /// Where an item that could not be read is kept for inspection: the
    /// undecodable object's path, the error and its text.
    pub fn set_aside(&self, pipeline: &str, item: &str) -> String {
        format!("{}/{}", self.set_aside_items(pipeline), encode_name(item))
    }

    /// The executors' request queue: a `JobQueue` root holding
    /// `BuildRequest`s.
    pub fn executor_queue(&self) -> String {
        self.under(&["executor"])
    }

    /// The mergers' request queue: a `JobQueue` root holding
    /// `MergeRequest`s.
    pub fn merger_queue(&self) -> String {
        self.under(&["merger"])
    }

    /// Parent of every lock the pipeline takes directly (the job queues keep
    /// their request locks under their own roots).
    pub fn locks(&self) -> String {
        self.under(&["locks"])
    }

    /// The lock a scheduler holds while it processes a pipeline.
    pub fn pipeline_lock(&self, pipeline: &str) -> String {
        self.under(&["locks", "pipelines", &encode_name(pipeline)])
    }

    /// Root of the span ledger: open saved spans and the export outbox
    /// (`dspans_ledger::Ledger`).
    pub fn spans(&self) -> String {
        self.under(&["spans"])
    }

    /// Parent of the registrations of one kind of component
    /// (`scheduler`, `executor`, `merger`).
    pub fn components(&self, kind: &str) -> String {
        self.under(&["components", &encode_name(kind)])
    }

    /// A component's ephemeral registration node.
    pub fn component(&self, kind: &str, name: &str) -> String {
        format!("{}/{}", self.components(kind), encode_name(name))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_path_is_a_valid_store_path() {
        let awkward = [
            "org/project",
            "..",
            ".",
            "",
            "a b%c",
            "ünï/cødé",
            "x\u{0}y\ny",
            "/",
        ];
        let l = Layout::default();
        for name in awkward {
            let paths = [
                l.result_events(name),
                l.pipeline(name),
                l.change_queue(name, name),
                l.item(name, name),
                l.buildset(name, name, name),
                l.build(name, name, name, name),
                l.report(name, name),
                l.pipeline_lock(name),
                l.component(name, name),
            ];
            for path in paths {
                dspans_store::validate_path(&path)
                    .unwrap_or_else(|e| panic!("{name:?} gave {path:?}: {e}"));
                assert!(path.is_ascii(), "{path:?}");
            }
            assert_eq!(decode_name(&encode_name(name)).unwrap(), name);
        }
    }
}
