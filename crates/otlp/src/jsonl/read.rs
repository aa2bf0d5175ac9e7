//! Reading OTLP-JSON lines files one line at a time, in bounded memory.

use std::fs::File;
use std::io::{self, BufRead, BufReader};
use std::path::{Path, PathBuf};

use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;

use super::floats::from_json_slice;

/// Longest line read (and written): longer ones are unreadable. A request
/// of the receiver's default 4 MiB limit takes at most about 25 MiB of
/// OTLP-JSON.
pub const MAX_LINE_BYTES: usize = 64 * 1024 * 1024;

/// Unreadable lines named one by one in the log before only a count.
const NAMED_UNREADABLE: u64 = 10;

/// Failure to read an OTLP-JSON lines file.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    /// The file could not be read.
    #[error("cannot read {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: io::Error,
    },
    /// A complete line is not an OTLP-JSON trace request.
    #[error("line {line} is not an OTLP-JSON trace request: {reason}")]
    Parse {
        /// 1-based line number.
        line: usize,
        /// Why.
        reason: String,
    },
}

/// What [`scan_json_lines`] found.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LinesRead {
    /// Requests read (and passed on).
    pub requests: u64,
    /// Complete lines that are not OTLP-JSON trace requests (or longer than
    /// [`MAX_LINE_BYTES`]), skipped.
    pub unreadable: u64,
    /// The file ends in a line without its newline that does not parse (a
    /// writer still at work, or a crash mid-write); it was ignored.
    pub partial_last_line: bool,
}

/// One line of a file.
pub(super) enum Line {
    /// A request.
    Request(ExportTraceServiceRequest),
    /// A complete line that is not one.
    Unreadable { line: usize, reason: String },
    /// A last line without its newline that is not one.
    PartialLast,
}

/// The non-blank lines of an OTLP-JSON lines text, decoded one at a time.
pub(super) struct Lines<R> {
    reader: R,
    buf: Vec<u8>,
    number: usize,
}

impl<R: BufRead> Lines<R> {
    pub(super) fn new(reader: R) -> Self {
        Lines {
            reader,
            buf: Vec::new(),
            number: 0,
        }
    }

    /// Reads up to the next newline into `buf`, keeping at most
    /// `MAX_LINE_BYTES + 1` bytes of it. `None` at the end of the input;
    /// else whether the line had its newline.
    fn read_line(&mut self) -> io::Result<Option<bool>> {
        self.buf.clear();
        let mut read_any = false;
        loop {
            let chunk = match self.reader.fill_buf() {
                Ok(chunk) => chunk,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            };
            if chunk.is_empty() {
                return Ok(read_any.then_some(false));
            }
            read_any = true;
            let (take, newline) = match chunk.iter().position(|&b| b == b'\n') {
                Some(i) => (i, true),
                None => (chunk.len(), false),
            };
            let room = (MAX_LINE_BYTES + 1).saturating_sub(self.buf.len());
            self.buf.extend_from_slice(&chunk[..take.min(room)]);
            self.reader.consume(take + usize::from(newline));
            if newline {
                return Ok(Some(true));
            }
        }
    }

    /// The next non-blank line.
    pub(super) fn next_line(&mut self) -> io::Result<Option<Line>> {
        loop {
            let Some(complete) = self.read_line()? else {
                return Ok(None);
            };
            self.number += 1;
            if self.buf.iter().all(u8::is_ascii_whitespace) {
                continue;
            }
            let decoded = if self.buf.len() > MAX_LINE_BYTES {
                Err(format!("longer than {MAX_LINE_BYTES} bytes"))
            } else {
                from_json_slice(&self.buf).map_err(|e| e.to_string())
            };
            return Ok(Some(match decoded {
                Ok(request) => Line::Request(request),
                Err(_) if !complete => Line::PartialLast,
                Err(reason) => Line::Unreadable {
                    line: self.number,
                    reason,
                },
            }));
        }
    }
}

fn open(path: &Path) -> Result<Lines<BufReader<File>>, ReadError> {
    let file = File::open(path).map_err(|source| ReadError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    Ok(Lines::new(BufReader::with_capacity(1 << 16, file)))
}

/// Reads every request of an OTLP-JSON lines file, failing on the first
/// complete line that is not one. Blank lines are skipped; a last line
/// without its newline that does not parse (a writer still at work, or a
/// crash mid-write) is ignored. See [`scan_json_lines`] to read what can
/// be read of a damaged file, one request at a time.
pub fn read_json_lines(
    path: impl AsRef<Path>,
) -> Result<Vec<ExportTraceServiceRequest>, ReadError> {
    let path = path.as_ref();
    collect_strict(open(path)?, path)
}

/// [`read_json_lines`] on text already in memory.
pub fn parse_json_lines(text: &str) -> Result<Vec<ExportTraceServiceRequest>, ReadError> {
    collect_strict(Lines::new(text.as_bytes()), Path::new("(text)"))
}

fn collect_strict<R: BufRead>(
    mut lines: Lines<R>,
    path: &Path,
) -> Result<Vec<ExportTraceServiceRequest>, ReadError> {
    let mut out = Vec::new();
    let io = |source| ReadError::Io {
        path: path.to_path_buf(),
        source,
    };
    while let Some(line) = lines.next_line().map_err(io)? {
        match line {
            Line::Request(request) => out.push(request),
            Line::PartialLast => tracing::debug!("ignoring a partial last line"),
            Line::Unreadable { line, reason } => return Err(ReadError::Parse { line, reason }),
        }
    }
    Ok(out)
}

/// Reads an OTLP-JSON lines file one line at a time, in memory bounded by
/// the longest line, passing each request to `each`. A complete line that
/// is not a request is skipped, counted and logged as a warning (the first
/// ten by line number); a partial last line is ignored. Fails only when
/// the file cannot be read.
///
/// ```
/// use dspans_otlp::scan_json_lines;
///
/// let dir = tempfile::tempdir().unwrap();
/// let path = dir.path().join("spans.jsonl");
/// std::fs::write(&path, "{\"resourceSpans\":[]}\nnot json\n{\"resourceSpans\":[]}\n{\"res").unwrap();
/// let mut requests = Vec::new();
/// let read = scan_json_lines(&path, |request| requests.push(request)).unwrap();
/// assert_eq!((read.requests, read.unreadable, read.partial_last_line), (2, 1, true));
/// assert_eq!(requests.len(), 2);
/// ```
pub fn scan_json_lines(
    path: impl AsRef<Path>,
    mut each: impl FnMut(ExportTraceServiceRequest),
) -> Result<LinesRead, ReadError> {
    let path = path.as_ref();
    let mut lines = open(path)?;
    let mut read = LinesRead::default();
    let io = |source| ReadError::Io {
        path: path.to_path_buf(),
        source,
    };
    while let Some(line) = lines.next_line().map_err(io)? {
        match line {
            Line::Request(request) => {
                read.requests += 1;
                each(request);
            }
            Line::PartialLast => read.partial_last_line = true,
            Line::Unreadable { line, reason } => {
                read.unreadable += 1;
                if read.unreadable <= NAMED_UNREADABLE {
                    tracing::warn!(file = %path.display(), line, %reason, "skipping a line that is not an OTLP-JSON trace request");
                }
            }
        }
    }
    if read.unreadable > NAMED_UNREADABLE {
        tracing::warn!(file = %path.display(), skipped = read.unreadable, "skipped lines that are not OTLP-JSON trace requests");
    }
    Ok(read)
}

/// The requests of the complete lines of `bytes` (a file's new tail, say),
/// and how many bytes those lines took: a last line without its newline is
/// left for later. A line that is not a request is skipped.
///
/// ```
/// let (requests, used) = dspans_otlp::parse_complete_lines(b"{}\nnot json\n{\"resour");
/// assert_eq!((requests.len(), used), (1, 12));
/// ```
pub fn parse_complete_lines(bytes: &[u8]) -> (Vec<ExportTraceServiceRequest>, usize) {
    let Some(end) = bytes.iter().rposition(|&b| b == b'\n') else {
        return (Vec::new(), 0);
    };
    let text = String::from_utf8_lossy(&bytes[..end]);
    let requests = text
        .lines()
        .filter(|line| !line.trim().is_empty())
        .filter_map(|line| parse_json_lines(line).ok())
        .flatten()
        .collect();
    (requests, end + 1)
}
