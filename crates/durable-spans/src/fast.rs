//! A fast path for the common shape of span info JSON.
//!
//! Ending a saved span is dominated by reading its JSON; serde_json's
//! general decoder costs more than starting and ending an SDK span. Span
//! info as Zuul and this library write it is a flat object of a few known
//! keys, so this reader handles exactly that shape (any key order, any
//! whitespace, `parent` null or an object, `kind` absent or a known name)
//! and returns `None` for anything else: escapes in strings, links,
//! attributes, unknown or repeated keys, a `null` or unknown kind, numbers
//! outside the JSON grammar. The caller then uses the full serde
//! decoder, which gives the precise error. Property tests check that the
//! paths agree.
//!
//! Text exactly as this library writes it (compact, keys in field order,
//! `kind` last and only when not internal) is read first by comparing each
//! key as a constant ([`decode_compact`]);
//! anything else of the common shape, Zuul's spaced form included, by
//! looking each key up ([`decode_any_order`]). Both use the same value
//! readers. Strings and numbers are scanned eight bytes at a time, and a
//! parent's trace id, almost always the span's own, is compared with the
//! text already read instead of being parsed again.

use crate::finished::Kind;
use crate::ids::{digit_run, read_integer};
use crate::refs::ParentInfo;
use crate::time::Timestamp;

/// The fields of span info in the common shape, borrowed from the text.
#[derive(Debug, PartialEq)]
pub(crate) struct Fields<'a> {
    pub name: &'a str,
    pub trace_id: u128,
    pub span_id: u64,
    pub trace_flags: u8,
    pub start_time: Timestamp,
    pub parent: Option<ParentInfo>,
    pub kind: Kind,
}

enum Number<'a> {
    Int { negative: bool, value: u128 },
    Float(&'a str),
}

/// The keys of span info and of its parent.
#[derive(Clone, Copy)]
enum Key {
    Name,
    TraceId,
    SpanId,
    TraceFlags,
    StartTime,
    Parent,
    IsRemote,
    Kind,
}

/// The index of the quote that closes a string whose body starts at `from`,
/// or `None` at an escape, a control character or the end of the text.
///
/// Eight bytes are tested at once for `"`, `\` and bytes below 0x20 with
/// the usual zero-byte tricks: a borrow can only mark bytes after a true
/// match, so the lowest marked byte is the first match.
fn closing_quote(bytes: &[u8], from: usize) -> Option<usize> {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGH_BITS: u64 = 0x8080_8080_8080_8080;
    let zero_bytes = |v: u64| v.wrapping_sub(ONES) & !v & HIGH_BITS;
    let mut at = from;
    while let Some(chunk) = bytes.get(at..at + 8) {
        let word = u64::from_le_bytes(chunk.try_into().expect("eight bytes"));
        let quotes = zero_bytes(word ^ (ONES * u64::from(b'"')));
        let escapes = zero_bytes(word ^ (ONES * u64::from(b'\\')));
        let controls = word.wrapping_sub(ONES * 0x20) & !word & HIGH_BITS;
        let special = quotes | escapes | controls;
        if special != 0 {
            let end = at + (special.trailing_zeros() / 8) as usize;
            return (bytes[end] == b'"').then_some(end);
        }
        at += 8;
    }
    loop {
        match *bytes.get(at)? {
            b'"' => return Some(at),
            b'\\' | 0..=0x1f => return None,
            _ => at += 1,
        }
    }
}

struct Cursor<'a> {
    bytes: &'a [u8],
    at: usize,
    /// The span's trace id and its text, once read: a parent's trace id is
    /// almost always the span's own, and comparing 39 bytes is cheaper than
    /// reading them again.
    trace_id: Option<(&'a [u8], u128)>,
}

impl<'a> Cursor<'a> {
    fn skip_ws(&mut self) {
        while let Some(b' ' | b'\n' | b'\r' | b'\t') = self.bytes.get(self.at) {
            self.at += 1;
        }
    }

    fn eat(&mut self, byte: u8) -> Option<()> {
        self.skip_ws();
        (self.bytes.get(self.at) == Some(&byte)).then(|| self.at += 1)
    }

    /// Exactly these bytes, with no whitespace before them.
    fn expect<const N: usize>(&mut self, text: &[u8; N]) -> Option<()> {
        let next = self.bytes.get(self.at..self.at + N)?;
        (next == text).then(|| self.at += N)
    }

    fn peek(&mut self) -> Option<u8> {
        self.skip_ws();
        self.bytes.get(self.at).copied()
    }

    /// A key and its colon. Keys are matched as bytes against the known
    /// ones (with their closing quote, so that a longer key never matches);
    /// anything else, escapes included, is left to the full decoder.
    fn key(&mut self) -> Option<Key> {
        self.eat(b'"')?;
        let rest = &self.bytes[self.at..];
        let known = |key, text: &[u8]| rest.starts_with(text).then_some((key, text.len()));
        let (key, len) = match rest.first()? {
            b'n' => known(Key::Name, b"name\""),
            b't' => known(Key::TraceId, b"trace_id\"")
                .or_else(|| known(Key::TraceFlags, b"trace_flags\"")),
            b's' => {
                known(Key::SpanId, b"span_id\"").or_else(|| known(Key::StartTime, b"start_time\""))
            }
            b'p' => known(Key::Parent, b"parent\""),
            b'i' => known(Key::IsRemote, b"is_remote\""),
            b'k' => known(Key::Kind, b"kind\""),
            _ => None,
        }?;
        self.at += len;
        self.eat(b':')?;
        Some(key)
    }

    /// A string without escapes or control characters.
    fn string(&mut self) -> Option<&'a str> {
        self.eat(b'"')?;
        let start = self.at;
        let end = closing_quote(self.bytes, start)?;
        self.at = end + 1;
        std::str::from_utf8(&self.bytes[start..end]).ok()
    }

    /// A JSON number: an integer (with its sign) read into 128 bits, or the
    /// text of a number with a fraction or exponent.
    fn number(&mut self) -> Option<Number<'a>> {
        self.skip_ws();
        let b = self.bytes;
        let start = self.at;
        let negative = b.get(start) == Some(&b'-');
        let (value, mut at) = read_integer(b, start + usize::from(negative))?;
        if !is_fraction_or_exponent(b.get(at)) {
            self.at = at;
            return Some(Number::Int { negative, value });
        }
        if b.get(at) == Some(&b'.') {
            at = nonempty_digits(b, at + 1)?;
        }
        if let Some(b'e' | b'E') = b.get(at) {
            at += 1;
            if let Some(b'+' | b'-') = b.get(at) {
                at += 1;
            }
            at = nonempty_digits(b, at)?;
        }
        self.at = at;
        Some(Number::Float(std::str::from_utf8(&b[start..at]).ok()?))
    }

    /// A JSON integer without sign, fraction or exponent, below 2^128.
    fn integer(&mut self) -> Option<u128> {
        let (value, end) = read_integer(self.bytes, self.at)?;
        if is_fraction_or_exponent(self.bytes.get(end)) {
            return None;
        }
        self.at = end;
        Some(value)
    }

    fn u64(&mut self) -> Option<u64> {
        self.skip_ws();
        u64::try_from(self.integer()?).ok()
    }

    /// A trace id; the first one read is remembered with its text.
    fn trace_id(&mut self) -> Option<u128> {
        self.skip_ws();
        if let Some((text, value)) = self.trace_id {
            let rest = &self.bytes[self.at..];
            let next = rest.get(text.len());
            let same_literal = rest.starts_with(text)
                && !next.is_some_and(u8::is_ascii_digit)
                && !is_fraction_or_exponent(next);
            if same_literal {
                self.at += text.len();
                return Some(value);
            }
        }
        let start = self.at;
        let value = self.integer()?;
        let text = &self.bytes[start..self.at];
        self.trace_id.get_or_insert((text, value));
        Some(value)
    }

    /// A kind by name; `null` and unknown names are left to the full
    /// decoder, which reads them as internal.
    fn kind(&mut self) -> Option<Kind> {
        Kind::from_name(self.string()?)
    }

    fn boolean(&mut self) -> Option<bool> {
        self.skip_ws();
        let rest = &self.bytes[self.at..];
        let (value, len) = if rest.starts_with(b"true") {
            (true, 4)
        } else if rest.starts_with(b"false") {
            (false, 5)
        } else {
            return None;
        };
        self.at += len;
        Some(value)
    }

    /// Calls `field` for each key of an object.
    fn object(&mut self, mut field: impl FnMut(&mut Self, Key) -> Option<()>) -> Option<()> {
        self.eat(b'{')?;
        if self.eat(b'}').is_some() {
            return Some(());
        }
        loop {
            let key = self.key()?;
            field(self, key)?;
            match self.peek()? {
                b',' => self.at += 1,
                b'}' => {
                    self.at += 1;
                    return Some(());
                }
                _ => return None,
            }
        }
    }
}

/// The end of a run of at least one digit starting at `at`.
fn nonempty_digits(bytes: &[u8], at: usize) -> Option<usize> {
    let len = digit_run(bytes, at);
    (len > 0).then_some(at + len)
}

/// Whether a number goes on after its integer part.
fn is_fraction_or_exponent(next: Option<&u8>) -> bool {
    matches!(next, Some(b'.' | b'e' | b'E'))
}

/// Fills an empty slot; a key seen twice fails.
fn set_once<T>(slot: &mut Option<T>, value: T) -> Option<()> {
    slot.is_none().then(|| *slot = Some(value))
}

fn parent(cursor: &mut Cursor<'_>) -> Option<Option<ParentInfo>> {
    if cursor.peek()? == b'n' {
        cursor.bytes[cursor.at..]
            .starts_with(b"null")
            .then_some(())?;
        cursor.at += 4;
        return Some(None);
    }
    let (mut trace_id, mut span_id, mut is_remote) = (None, None, None);
    cursor.object(|c, key| match key {
        Key::TraceId => set_once(&mut trace_id, c.trace_id()?),
        Key::SpanId => set_once(&mut span_id, c.u64()?),
        Key::IsRemote => set_once(&mut is_remote, c.boolean()?),
        _ => None,
    })?;
    Some(Some(ParentInfo {
        trace_id: trace_id?,
        span_id: span_id?,
        is_remote: is_remote?,
    }))
}

fn start_time(number: Number<'_>) -> Option<Timestamp> {
    match number {
        Number::Float(text) => Timestamp::from_secs_f64(text.parse().ok()?).ok(),
        Number::Int { negative, value } => {
            let magnitude = i128::try_from(value).ok()?;
            let nanos = if negative { -magnitude } else { magnitude };
            Some(Timestamp::from_nanos(i64::try_from(nanos).ok()?))
        }
    }
}

/// Reads span info of the common shape; `None` means "use the full decoder".
pub(crate) fn decode(bytes: &[u8]) -> Option<Fields<'_>> {
    decode_compact(bytes).or_else(|| decode_any_order(bytes))
}

/// Span info exactly as this library writes it (compact, keys in the order
/// of [`SpanInfo`](crate::SpanInfo)'s fields, no links or attributes, so
/// `kind`, when written, right after `parent`): each key is compared as a
/// constant instead of being read and looked up.
pub(crate) fn decode_compact(bytes: &[u8]) -> Option<Fields<'_>> {
    let mut c = Cursor {
        bytes,
        at: 0,
        trace_id: None,
    };
    c.expect(b"{\"name\":")?;
    let name = c.string()?;
    c.expect(b",\"trace_id\":")?;
    let trace_id = c.trace_id()?;
    c.expect(b",\"span_id\":")?;
    let span_id = c.u64()?;
    c.expect(b",\"trace_flags\":")?;
    let trace_flags = u8::try_from(c.u64()?).ok()?;
    c.expect(b",\"start_time\":")?;
    let start_time = start_time(c.number()?)?;
    c.expect(b",\"parent\":")?;
    let parent = match c.expect(b"null") {
        Some(()) => None,
        None => {
            c.expect(b"{\"trace_id\":")?;
            let trace_id = c.trace_id()?;
            c.expect(b",\"span_id\":")?;
            let span_id = c.u64()?;
            c.expect(b",\"is_remote\":")?;
            let is_remote = c.boolean()?;
            c.expect(b"}")?;
            Some(ParentInfo {
                trace_id,
                span_id,
                is_remote,
            })
        }
    };
    let kind = match c.expect(b",\"kind\":") {
        Some(()) => c.kind()?,
        None => Kind::Internal,
    };
    c.expect(b"}")?;
    (c.at == bytes.len()).then_some(Fields {
        name,
        trace_id,
        span_id,
        trace_flags,
        start_time,
        parent,
        kind,
    })
}

/// Span info of the common shape with its keys in any order and any
/// whitespace (Zuul writes `", "` and `": "`).
fn decode_any_order(bytes: &[u8]) -> Option<Fields<'_>> {
    let mut cursor = Cursor {
        bytes,
        at: 0,
        trace_id: None,
    };
    let (mut name, mut trace_id, mut span_id, mut flags, mut start, mut parent_slot) =
        (None, None, None, None, None, None);
    let mut kind = None;
    cursor.object(|c, key| match key {
        Key::Name => set_once(&mut name, c.string()?),
        Key::TraceId => set_once(&mut trace_id, c.trace_id()?),
        Key::SpanId => set_once(&mut span_id, c.u64()?),
        Key::TraceFlags => set_once(&mut flags, u8::try_from(c.u64()?).ok()?),
        Key::StartTime => set_once(&mut start, start_time(c.number()?)?),
        Key::Parent => set_once(&mut parent_slot, parent(c)?),
        Key::Kind => set_once(&mut kind, c.kind()?),
        Key::IsRemote => None,
    })?;
    cursor.skip_ws();
    if cursor.at != bytes.len() {
        return None;
    }
    Some(Fields {
        name: name?,
        trace_id: trace_id?,
        span_id: span_id?,
        trace_flags: flags?,
        start_time: start?,
        parent: parent_slot.flatten(),
        kind: kind.unwrap_or_default(),
    })
}

#[cfg(test)]
mod tests {
    use super::{closing_quote, decode};

    #[test]
    fn closing_quotes_are_found_and_escapes_refused() {
        for (text, want) in [
            (r#"abc""#, Some(3)),
            (r#"trace_flags": 1"#, Some(11)),
            (r#"a long name with spaces" x"#, Some(23)),
            (r#"abcdefg\"""#, None),
            ("abc\u{1}defgh\"", None),
            ("caf\u{e9} au lait\"", Some(13)),
            ("abc", None),
            ("", None),
        ] {
            assert_eq!(closing_quote(text.as_bytes(), 0), want, "{text:?}");
        }
        for byte in 0..=255u8 {
            let mut bytes = *b"0123456789\"";
            bytes[3] = byte;
            let want = match byte {
                b'"' => Some(3),
                b'\\' | 0..=0x1f => None,
                _ => Some(10),
            };
            assert_eq!(closing_quote(&bytes, 0), want, "{byte}");
        }
    }

    #[test]
    fn the_parent_trace_id_is_reused_only_when_the_text_is_the_same() {
        let text = r#"{"name":"n","trace_id":12345,"span_id":1,"trace_flags":1,"start_time":1,"parent":{"trace_id":123456,"span_id":2,"is_remote":false}}"#;
        let fields = decode(text.as_bytes()).unwrap();
        assert_eq!(fields.trace_id, 12345);
        assert_eq!(fields.parent.unwrap().trace_id, 123456);
        let text = text.replace("123456", "12345.0");
        assert_eq!(decode(text.as_bytes()), None, "a float is no trace id");
    }
}
