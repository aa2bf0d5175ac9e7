//! A fast path for the common shape of span info JSON.
//!
//! Ending a saved span is dominated by reading its JSON; serde_json's
//! general decoder costs more than starting and ending an SDK span. Span
//! info as Zuul and this library write it is a flat object of a few known
//! keys, so this reader handles exactly that shape (any key order, any
//! whitespace, `parent` null or an object) and returns `None` for anything
//! else: escapes in strings, links, attributes, unknown or repeated keys,
//! numbers outside the JSON grammar. The caller then uses the full serde
//! decoder, which gives the precise error. A property test checks that both
//! paths agree.

use crate::{ParentInfo, SpanInfo, Timestamp};

enum Number<'a> {
    Int { negative: bool, value: u128 },
    Float(&'a str),
}

/// The value of eight ASCII digits, or `None` if any byte is not a digit.
///
/// The bytes are read as one little-endian word (first digit lowest), and
/// pairs, then quads, then the octet are combined by three multiplications
/// instead of eight dependent multiply-adds: the digit loop dominates
/// reading span info, whose ids are 20 to 39 digits long.
fn eight_digits(bytes: &[u8]) -> Option<u64> {
    let word = u64::from_le_bytes(bytes.try_into().ok()?);
    const HIGH_NIBBLES: u64 = 0xF0F0_F0F0_F0F0_F0F0;
    const ZEROS: u64 = 0x3030_3030_3030_3030;
    // Every byte is 0x30..=0x39: high nibble 3, and adding 6 keeps it 3.
    let all_digits = word & HIGH_NIBBLES == ZEROS
        && word.wrapping_add(0x0606_0606_0606_0606) & HIGH_NIBBLES == ZEROS;
    if !all_digits {
        return None;
    }
    let digits = word - ZEROS;
    // Each even byte becomes 10 * digit + next digit.
    let pairs = digits.wrapping_mul(10).wrapping_add(digits >> 8);
    const LOW_PAIRS: u64 = 0x0000_00FF_0000_00FF;
    let first = (pairs & LOW_PAIRS).wrapping_mul(100 + (1_000_000 << 32));
    let second = ((pairs >> 16) & LOW_PAIRS).wrapping_mul(1 + (10_000 << 32));
    Some(first.wrapping_add(second) >> 32)
}

/// `value * 10^len + chunk`, or `None` past 2^128.
fn combine(value: u128, chunk: u64, len: usize) -> Option<u128> {
    const POW10: [u128; 20] = {
        let mut table = [1u128; 20];
        let mut i = 1;
        while i < 20 {
            table[i] = table[i - 1] * 10;
            i += 1;
        }
        table
    };
    const LIMITS: [u128; 20] = {
        let mut table = [u128::MAX; 20];
        let mut i = 1;
        while i < 20 {
            table[i] = u128::MAX / POW10[i];
            i += 1;
        }
        table
    };
    // Comparing with a precomputed bound avoids u128 `checked_mul`, which
    // calls a slow runtime routine.
    if value > LIMITS[len] {
        return None;
    }
    value
        .wrapping_mul(POW10[len])
        .checked_add(u128::from(chunk))
}

struct Cursor<'a> {
    bytes: &'a [u8],
    at: usize,
    /// The last 128-bit id read and its text: a parent's trace id is almost
    /// always the span's own, and comparing 39 bytes is cheaper than
    /// parsing them again.
    last_id: Option<(&'a [u8], u128)>,
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

    fn peek(&mut self) -> Option<u8> {
        self.skip_ws();
        self.bytes.get(self.at).copied()
    }

    /// A string without escapes or control characters.
    fn string(&mut self) -> Option<&'a str> {
        std::str::from_utf8(self.raw_string()?).ok()
    }

    /// The bytes of a string without escapes or control characters; keys
    /// are compared as bytes, so only values pay for UTF-8 validation.
    fn raw_string(&mut self) -> Option<&'a [u8]> {
        self.eat(b'"')?;
        let start = self.at;
        let mut at = start;
        loop {
            match *self.bytes.get(at)? {
                b'"' => break,
                b'\\' | 0..=0x1f => return None,
                _ => {}
            }
            at += 1;
        }
        self.at = at + 1;
        Some(&self.bytes[start..at])
    }

    /// A JSON number in one pass: an integer (with its sign) read straight
    /// into 128 bits, or the text of a number with a fraction or exponent.
    fn number(&mut self) -> Option<Number<'a>> {
        self.skip_ws();
        let b = self.bytes;
        let start = self.at;
        let mut at = start;
        let negative = b.get(at) == Some(&b'-');
        if negative {
            at += 1;
        }
        let int_start = at;
        let (mut value, mut chunk, mut chunk_len) = (0u128, 0u64, 0usize);
        loop {
            // Eight digits at once while they fit the 19-digit chunk.
            let eight = (chunk_len <= 11)
                .then(|| b.get(at..at + 8).and_then(eight_digits))
                .flatten();
            if let Some(word) = eight {
                chunk = chunk * 100_000_000 + word;
                chunk_len += 8;
                at += 8;
            } else if let Some(&d @ b'0'..=b'9') = b.get(at) {
                chunk = chunk * 10 + u64::from(d - b'0');
                chunk_len += 1;
                at += 1;
            } else {
                break;
            }
            if chunk_len == 19 {
                value = combine(value, chunk, chunk_len)?;
                (chunk, chunk_len) = (0, 0);
            }
        }
        let int_len = at - int_start;
        if int_len == 0 || (b[int_start] == b'0' && int_len > 1) {
            return None;
        }
        let is_float = matches!(b.get(at), Some(b'.' | b'e' | b'E'));
        if !is_float {
            self.at = at;
            return Some(Number::Int {
                negative,
                value: combine(value, chunk, chunk_len)?,
            });
        }
        let digits = |at: &mut usize| {
            let from = *at;
            while b.get(*at).is_some_and(u8::is_ascii_digit) {
                *at += 1;
            }
            *at > from
        };
        if b.get(at) == Some(&b'.') {
            at += 1;
            if !digits(&mut at) {
                return None;
            }
        }
        if let Some(b'e' | b'E') = b.get(at) {
            at += 1;
            if let Some(b'+' | b'-') = b.get(at) {
                at += 1;
            }
            if !digits(&mut at) {
                return None;
            }
        }
        self.at = at;
        Some(Number::Float(std::str::from_utf8(&b[start..at]).ok()?))
    }

    fn literal(&mut self, word: &[u8]) -> Option<()> {
        self.skip_ws();
        self.bytes[self.at..]
            .starts_with(word)
            .then(|| self.at += word.len())
    }

    fn u128(&mut self) -> Option<u128> {
        self.skip_ws();
        if let Some((text, value)) = self.last_id {
            let rest = &self.bytes[self.at..];
            if rest.starts_with(text)
                && !rest
                    .get(text.len())
                    .is_some_and(|b| b.is_ascii_digit() || matches!(b, b'.' | b'e' | b'E'))
            {
                self.at += text.len();
                return Some(value);
            }
        }
        let start = self.at;
        match self.number()? {
            Number::Int {
                negative: false,
                value,
            } => {
                self.last_id = Some((&self.bytes[start..self.at], value));
                Some(value)
            }
            _ => None,
        }
    }

    fn u64(&mut self) -> Option<u64> {
        u64::try_from(self.u128()?).ok()
    }

    /// Calls `field` for each key of an object; a key seen twice fails.
    fn object(&mut self, mut field: impl FnMut(&mut Self, &[u8]) -> Option<()>) -> Option<()> {
        self.eat(b'{')?;
        if self.eat(b'}').is_some() {
            return Some(());
        }
        loop {
            let key = self.raw_string()?;
            self.eat(b':')?;
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

fn set_once<T>(slot: &mut Option<T>, value: T) -> Option<()> {
    slot.is_none().then(|| *slot = Some(value))
}

fn parent(cursor: &mut Cursor) -> Option<Option<ParentInfo>> {
    if cursor.peek()? == b'n' {
        cursor.literal(b"null")?;
        return Some(None);
    }
    let (mut trace_id, mut span_id, mut is_remote) = (None, None, None);
    cursor.object(|c, key| match key {
        b"trace_id" => set_once(&mut trace_id, c.u128()?),
        b"span_id" => set_once(&mut span_id, c.u64()?),
        b"is_remote" => {
            let value = match c.peek()? {
                b't' => c.literal(b"true").map(|_| true)?,
                _ => c.literal(b"false").map(|_| false)?,
            };
            set_once(&mut is_remote, value)
        }
        _ => None,
    })?;
    Some(Some(ParentInfo {
        trace_id: trace_id?,
        span_id: span_id?,
        is_remote: is_remote?,
    }))
}

/// Reads span info of the common shape; `None` means "use the full decoder".
pub(crate) fn decode(bytes: &[u8]) -> Option<SpanInfo> {
    let mut cursor = Cursor {
        bytes,
        at: 0,
        last_id: None,
    };
    let (mut name, mut trace_id, mut span_id, mut flags, mut start, mut parent_slot) =
        (None, None, None, None, None, None);
    cursor.object(|c, key| match key {
        b"name" => set_once(&mut name, c.string()?),
        b"trace_id" => set_once(&mut trace_id, c.u128()?),
        b"span_id" => set_once(&mut span_id, c.u64()?),
        b"trace_flags" => set_once(&mut flags, u8::try_from(c.u64()?).ok()?),
        b"start_time" => {
            let time = match c.number()? {
                Number::Float(text) => Timestamp::from_secs_f64(text.parse().ok()?).ok()?,
                Number::Int { negative, value } => {
                    let magnitude = i64::try_from(value).ok()?;
                    Timestamp::from_nanos(if negative { -magnitude } else { magnitude })
                }
            };
            set_once(&mut start, time)
        }
        b"parent" => set_once(&mut parent_slot, parent(c)?),
        _ => None,
    })?;
    cursor.skip_ws();
    if cursor.at != bytes.len() {
        return None;
    }
    Some(SpanInfo {
        name: name?.to_string(),
        trace_id: trace_id?,
        span_id: span_id?,
        trace_flags: flags?,
        start_time: start?,
        parent: parent_slot.flatten(),
        links: Vec::new(),
        attributes: Vec::new(),
    })
}

#[cfg(test)]
mod tests {
    use super::{decode, eight_digits};

    #[test]
    fn eight_digits_matches_the_slow_way() {
        for text in [
            "00000000", "12345678", "99999999", "10000001", "31861287", "90000000",
        ] {
            assert_eq!(eight_digits(text.as_bytes()), text.parse().ok(), "{text}");
        }
        for bad in [
            "1234567a",
            "/2345678",
            ":2345678",
            "1234 678",
            "12345678".replace('8', "\u{0}").as_str(),
        ] {
            assert_eq!(eight_digits(bad.as_bytes()), None, "{bad:?}");
        }
        let mut n: u64 = 7;
        for _ in 0..10_000 {
            n = n
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            let text = format!("{:08}", n % 100_000_000);
            assert_eq!(eight_digits(text.as_bytes()), text.parse().ok(), "{text}");
        }
    }

    #[test]
    fn common_shapes_take_the_fast_path() {
        let texts = [
            r#"{"name":"Build","trace_id":318612875816519240775927099093197183224,"span_id":11647841543826717486,"trace_flags":1,"start_time":1795556335255304756,"parent":{"trace_id":318612875816519240775927099093197183224,"span_id":12345678901234567890,"is_remote":true}}"#,
            r#"{"name": "BuildSet", "trace_id": 161266188067846495664995866757382758091, "span_id": 5390140552462790154, "trace_flags": 3, "start_time": 1700000000.123456, "parent": null}"#,
        ];
        for text in texts {
            let fast =
                decode(text.as_bytes()).unwrap_or_else(|| panic!("fast path refused {text}"));
            let full: crate::SpanInfo = serde_json::from_str(text).unwrap();
            assert_eq!(fast, full);
        }
    }
}
