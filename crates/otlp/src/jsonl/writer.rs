//! [`JsonLinesWriter`]: appends whole lines, or nothing.

use std::fs::{File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;

use super::{from_json_slice, request_to_json_line, MAX_LINE_BYTES};

/// Appends OTLP-JSON lines to a file, one line at a time under a lock, so
/// that concurrent appenders (O_APPEND) and readers see whole lines.
///
/// A write that fails part way (disk full, file size limit) leaves no
/// partial line: the bytes it wrote are cut off again, at once or, if that
/// fails too, before the next line is written (which waits for it).
#[derive(Debug)]
pub struct JsonLinesWriter {
    path: PathBuf,
    state: Mutex<State>,
}

#[derive(Debug)]
struct State {
    file: File,
    /// A failed append's bytes still at the end of the file: the length
    /// before them and after them.
    torn: Option<(u64, u64)>,
}

impl State {
    /// Cuts off a failed append's bytes, unless another appender wrote
    /// after them (cutting would lose its line).
    fn remove_torn_line(&mut self, path: &Path) -> io::Result<()> {
        let Some((good, end)) = self.torn else {
            return Ok(());
        };
        let now = self.file.metadata()?.len();
        if now == end {
            self.file.set_len(good)?;
        } else {
            tracing::error!(file = %path.display(), "another writer appended after a partly written line; that line stays unreadable");
        }
        self.torn = None;
        Ok(())
    }
}

/// Writes `bytes`, counting in `written` what reached the file.
fn write_counting(file: &mut File, mut bytes: &[u8], written: &mut u64) -> io::Result<()> {
    while !bytes.is_empty() {
        match file.write(bytes) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(n) => {
                *written += n as u64;
                bytes = &bytes[n..];
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

impl JsonLinesWriter {
    /// Opens `path` for appending, creating it if needed.
    pub fn open(path: impl AsRef<Path>) -> io::Result<Self> {
        let path = path.as_ref().to_path_buf();
        let file = OpenOptions::new().create(true).append(true).open(&path)?;
        Ok(Self {
            path,
            state: Mutex::new(State { file, torn: None }),
        })
    }

    /// Opens `path` for appending as its only writer, after repairing its
    /// end: a last line without its newline (a writer that crashed mid-line)
    /// gets its newline if it is a whole request, and is cut off otherwise
    /// (it cannot have been acknowledged), with a warning.
    pub fn open_sole_writer(path: impl AsRef<Path>) -> io::Result<Self> {
        let writer = Self::open(path)?;
        let mut reader = File::open(&writer.path)?;
        let len = reader.metadata()?.len();
        let start = last_line_start(&mut reader, len)?;
        if start < len {
            let tail_len = len - start;
            let whole = usize::try_from(tail_len).is_ok_and(|n| n <= MAX_LINE_BYTES) && {
                let mut tail = Vec::new();
                reader.seek(SeekFrom::Start(start))?;
                reader.take(tail_len).read_to_end(&mut tail)?;
                from_json_slice(&tail).is_ok()
            };
            let mut state = writer.lock()?;
            if whole {
                state.file.write_all(b"\n")?;
            } else {
                tracing::warn!(file = %writer.path.display(), bytes = tail_len, "removing a partial last line left by an interrupted write");
                state.file.set_len(start)?;
            }
        }
        Ok(writer)
    }

    /// The file written to.
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn lock(&self) -> io::Result<std::sync::MutexGuard<'_, State>> {
        self.state
            .lock()
            .map_err(|_| io::Error::other("the JSON-lines writer lock is poisoned"))
    }

    /// Appends `request` as one line and flushes it to the OS; on failure
    /// the file is left as it was. A line longer than [`MAX_LINE_BYTES`]
    /// (which no reader would take) is refused with
    /// [`io::ErrorKind::InvalidInput`].
    pub fn append(&self, request: &ExportTraceServiceRequest) -> io::Result<()> {
        let mut line = request_to_json_line(request);
        if line.len() > MAX_LINE_BYTES {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!(
                    "the request takes {} bytes of OTLP-JSON, more than the {MAX_LINE_BYTES} a line may have",
                    line.len()
                ),
            ));
        }
        line.push('\n');
        let mut state = self.lock()?;
        state.remove_torn_line(&self.path)?;
        let before = state.file.metadata()?.len();
        let mut written = 0;
        let result = write_counting(&mut state.file, line.as_bytes(), &mut written)
            .and_then(|()| state.file.flush());
        if let Err(error) = result {
            if written > 0 {
                state.torn = Some((before, before + written));
                if let Err(e) = state.remove_torn_line(&self.path) {
                    tracing::error!(file = %self.path.display(), error = %e, "cannot remove a partly written line yet; will before the next one");
                }
            }
            return Err(error);
        }
        Ok(())
    }
}

/// Where the last line of a file of `len` bytes starts (`len` when the
/// file ends with a newline or is empty).
fn last_line_start(reader: &mut File, len: u64) -> io::Result<u64> {
    let mut chunk = vec![0u8; 64 * 1024];
    let mut end = len;
    while end > 0 {
        let start = end.saturating_sub(chunk.len() as u64);
        let n = (end - start) as usize;
        reader.seek(SeekFrom::Start(start))?;
        reader.read_exact(&mut chunk[..n])?;
        if let Some(i) = chunk[..n].iter().rposition(|&b| b == b'\n') {
            return Ok(start + i as u64 + 1);
        }
        end = start;
    }
    Ok(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_torn_last_line_is_cut_and_a_whole_one_completed() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("out.jsonl");
        let good = r#"{"resourceSpans":[]}"#;
        std::fs::write(&path, format!("{good}\n{{\"resourceSp")).unwrap();
        JsonLinesWriter::open_sole_writer(&path).unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), format!("{good}\n"));

        std::fs::write(&path, format!("{good}\n{good}")).unwrap();
        let writer = JsonLinesWriter::open_sole_writer(&path).unwrap();
        writer
            .append(&ExportTraceServiceRequest::default())
            .unwrap();
        assert_eq!(
            std::fs::read_to_string(&path).unwrap(),
            format!("{good}\n{good}\n{good}\n")
        );

        // A file of one partial line, and an empty file.
        std::fs::write(&path, "{\"res").unwrap();
        JsonLinesWriter::open_sole_writer(&path).unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "");
        JsonLinesWriter::open_sole_writer(&path).unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "");
    }
}
