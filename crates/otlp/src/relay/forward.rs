//! The forwarder: the spool's journal, in order, to the upstream.

use std::future::Future;
use std::io::{Read as _, Seek as _, SeekFrom};
use std::os::unix::fs::MetadataExt as _;
use std::time::{Duration, Instant};

use super::spool::Spool;
use super::ROTATE_BYTES;
use crate::jsonl::parse_json_lines;
use crate::send::RequestSender;

/// The first wait after a failed send, doubled up to [`MAX_BACKOFF`].
const MIN_BACKOFF: Duration = Duration::from_millis(100);
const MAX_BACKOFF: Duration = Duration::from_secs(5);
/// How often the journal is looked at when nothing signals new requests.
const POLL: Duration = Duration::from_millis(200);
/// A failing upstream is logged again at most this often.
const LOG_EVERY: Duration = Duration::from_secs(10);
/// Bytes read from the journal at once.
const CHUNK: usize = 1024 * 1024;

/// Sends the spool's requests upstream, each once it is recorded as sent.
pub struct Forwarder {
    spool: Spool,
    sender: RequestSender,
}

/// How far the journal went upstream: its inode (a rotated journal is
/// another file) and the byte offset.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Mark {
    inode: u64,
    offset: u64,
}

impl Forwarder {
    /// Forwards `spool` with `sender`.
    pub fn new(spool: Spool, sender: RequestSender) -> Forwarder {
        Forwarder { spool, sender }
    }

    /// Forwards until `stop` resolves; what was not sent stays spooled for
    /// the next run.
    pub async fn run(mut self, stop: impl Future<Output = ()>) {
        tokio::pin!(stop);
        let mut logged: Option<Instant> = None;
        let mut failures = 0u64;
        let mut backoff = MIN_BACKOFF;
        loop {
            let outcome = tokio::select! {
                _ = &mut stop => return,
                outcome = self.forward_available() => outcome,
            };
            let wait = match outcome {
                Ok(()) => {
                    if failures > 0 {
                        tracing::info!(failures, upstream = %self.sender.endpoint(), "forwarding again");
                    }
                    failures = 0;
                    backoff = MIN_BACKOFF;
                    None
                }
                Err(error) => {
                    failures += 1;
                    if logged.is_none_or(|at| at.elapsed() >= LOG_EVERY) {
                        tracing::warn!(failures, %error, "cannot forward spooled spans; retrying");
                        logged = Some(Instant::now());
                    }
                    let wait = backoff;
                    backoff = (backoff * 2).min(MAX_BACKOFF);
                    Some(wait)
                }
            };
            tokio::select! {
                _ = &mut stop => return,
                _ = self.spool.appended(), if wait.is_none() => {}
                _ = tokio::time::sleep(wait.unwrap_or(POLL)) => {}
            }
        }
    }

    /// Sends every complete line after the mark, recording the mark after
    /// each; at the end, rotates a large drained journal.
    async fn forward_available(&mut self) -> Result<(), String> {
        let journal = self.spool.journal();
        let inode = std::fs::metadata(&journal)
            .map_err(|e| e.to_string())?
            .ino();
        let mut mark = self.read_mark(inode);
        loop {
            let lines = read_lines(&journal, mark.offset).map_err(|e| e.to_string())?;
            if lines.is_empty() {
                break;
            }
            for line in lines {
                match parse_json_lines(&line) {
                    Ok(requests) => {
                        for request in requests {
                            self.sender.send(request).await?;
                        }
                    }
                    Err(error) => {
                        tracing::error!(%error, offset = mark.offset, "unreadable spooled line skipped")
                    }
                }
                mark.offset += line.len() as u64 + 1;
                self.write_mark(mark)
                    .map_err(|e| format!("cannot record progress: {e}"))?;
            }
        }
        if mark.offset >= ROTATE_BYTES
            && self
                .spool
                .rotate_if_drained(mark.offset)
                .map_err(|e| format!("cannot rotate the journal: {e}"))?
        {
            let inode = std::fs::metadata(&journal)
                .map_err(|e| e.to_string())?
                .ino();
            self.write_mark(Mark { inode, offset: 0 })
                .map_err(|e| format!("cannot record progress: {e}"))?;
        }
        Ok(())
    }

    /// The recorded mark when it is this journal's; the start otherwise
    /// (none yet, or the journal was rotated after it was written).
    fn read_mark(&self, inode: u64) -> Mark {
        let text = std::fs::read_to_string(self.spool.dir().join(MARK)).unwrap_or_default();
        let mut fields = text.split_whitespace().map(str::parse::<u64>);
        match (fields.next(), fields.next()) {
            (Some(Ok(at)), Some(Ok(offset))) if at == inode => Mark { inode, offset },
            _ => Mark { inode, offset: 0 },
        }
    }

    /// Records the mark, whole or not at all.
    fn write_mark(&self, mark: Mark) -> std::io::Result<()> {
        let temp = self.spool.dir().join(format!("{MARK}.tmp"));
        std::fs::write(&temp, format!("{} {}\n", mark.inode, mark.offset))?;
        std::fs::rename(temp, self.spool.dir().join(MARK))
    }
}

/// The file recording how far the journal was forwarded.
const MARK: &str = "forwarded";

/// True when the relay whose spool is `dir` recorded its whole journal as
/// forwarded (an empty or missing journal included): nothing it accepted
/// waits to go upstream.
///
/// ```
/// let spool = tempfile::tempdir().unwrap();
/// assert!(dspans_otlp::relay::forwarded_everything(spool.path()));
/// std::fs::write(spool.path().join("journal.jsonl"), "{}\n").unwrap();
/// assert!(!dspans_otlp::relay::forwarded_everything(spool.path()));
/// ```
pub fn forwarded_everything(dir: &std::path::Path) -> bool {
    let journal = match std::fs::metadata(dir.join(super::spool::JOURNAL)) {
        Ok(journal) => journal,
        Err(error) => return error.kind() == std::io::ErrorKind::NotFound,
    };
    let text = std::fs::read_to_string(dir.join(MARK)).unwrap_or_default();
    let mark: Vec<u64> = text
        .split_whitespace()
        .filter_map(|f| f.parse().ok())
        .collect();
    journal.len() == 0 || mark == [journal.ino(), journal.len()]
}

/// The complete lines of `path` from `offset` (at most about [`CHUNK`]
/// bytes of them), without their newlines.
fn read_lines(path: &std::path::Path, offset: u64) -> std::io::Result<Vec<String>> {
    let mut file = std::fs::File::open(path)?;
    file.seek(SeekFrom::Start(offset))?;
    let mut bytes = Vec::new();
    (&mut file).take(CHUNK as u64).read_to_end(&mut bytes)?;
    let mut lines = Vec::new();
    let mut start = 0;
    while let Some(end) = bytes[start..].iter().position(|&b| b == b'\n') {
        lines.push(String::from_utf8_lossy(&bytes[start..start + end]).into_owned());
        start += end + 1;
    }
    if lines.is_empty() && bytes.len() == CHUNK {
        // A line longer than a chunk: read it whole.
        let mut rest = Vec::new();
        file.read_to_end(&mut rest)?;
        bytes.extend(rest);
        if let Some(end) = bytes.iter().position(|&b| b == b'\n') {
            lines.push(String::from_utf8_lossy(&bytes[..end]).into_owned());
        }
    }
    Ok(lines)
}
