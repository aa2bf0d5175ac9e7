//! The spool's journal: the sink requests are accepted into.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};

use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use tokio::sync::Notify;

use crate::jsonl::JsonLinesWriter;
use crate::receiver::{SinkError, TraceSink};

/// The journal of accepted requests, shared by the receiver (which appends)
/// and the forwarder (which reads it and rotates it when drained).
#[derive(Clone, Debug)]
pub struct Spool {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    dir: PathBuf,
    writer: Mutex<JsonLinesWriter>,
    max_bytes: u64,
    appended: Notify,
}

impl Spool {
    /// Opens (or creates, mode 0700) the spool directory and its journal;
    /// a partial last line left by a killed relay is removed.
    pub fn open(dir: impl AsRef<Path>, max_bytes: u64) -> std::io::Result<Spool> {
        use std::os::unix::fs::DirBuilderExt as _;
        let dir = dir.as_ref().to_path_buf();
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&dir)?;
        let writer = JsonLinesWriter::open_sole_writer(dir.join(JOURNAL))?;
        Ok(Spool {
            inner: Arc::new(Inner {
                dir,
                writer: Mutex::new(writer),
                max_bytes,
                appended: Notify::new(),
            }),
        })
    }

    /// The spool directory.
    pub fn dir(&self) -> &Path {
        &self.inner.dir
    }

    /// The journal's path.
    pub fn journal(&self) -> PathBuf {
        self.inner.dir.join(JOURNAL)
    }

    /// The previous journal's path.
    pub fn previous(&self) -> PathBuf {
        self.inner.dir.join(PREVIOUS)
    }

    /// Resolves when a request was appended since the last call.
    pub(crate) async fn appended(&self) {
        self.inner.appended.notified().await
    }

    fn writer(&self) -> Result<MutexGuard<'_, JsonLinesWriter>, SinkError> {
        self.inner
            .writer
            .lock()
            .map_err(|_| SinkError::Unavailable("spool lock poisoned".into()))
    }

    /// Starts a new journal if the current one holds `forwarded` bytes and
    /// no more (all of it went upstream): the old one becomes the previous
    /// journal. Gives whether it rotated.
    pub(crate) fn rotate_if_drained(&self, forwarded: u64) -> std::io::Result<bool> {
        let mut writer = self
            .inner
            .writer
            .lock()
            .map_err(|_| std::io::Error::other("spool lock poisoned"))?;
        if std::fs::metadata(self.journal())?.len() != forwarded {
            return Ok(false);
        }
        std::fs::rename(self.journal(), self.previous())?;
        *writer = JsonLinesWriter::open_sole_writer(self.journal())?;
        Ok(true)
    }
}

/// File names in the spool directory.
pub(crate) const JOURNAL: &str = "journal.jsonl";
const PREVIOUS: &str = "journal.prev.jsonl";

impl TraceSink for Spool {
    fn accept(&self, request: ExportTraceServiceRequest) -> Result<(), SinkError> {
        let writer = self.writer()?;
        let size = std::fs::metadata(writer.path())
            .map(|m| m.len())
            .unwrap_or(0);
        if size >= self.inner.max_bytes {
            tracing::warn!(spool = %self.inner.dir.display(), bytes = size,
                "the spool is full (the upstream is away or slow); refusing requests for now");
            return Err(SinkError::Unavailable(format!(
                "the relay's spool is full ({size} bytes); try again later"
            )));
        }
        writer.append(&request).map_err(|e| {
            if e.kind() == std::io::ErrorKind::InvalidInput {
                return SinkError::Invalid(e.to_string());
            }
            tracing::error!(spool = %self.inner.dir.display(), error = %e, "cannot spool received spans");
            SinkError::Unavailable(format!("cannot write the spool: {e}"))
        })?;
        drop(writer);
        self.inner.appended.notify_one();
        Ok(())
    }
}
