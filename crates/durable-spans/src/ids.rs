//! Decimal integers in JSON text: 128-bit trace ids, and the integer
//! reading both span info decoders share.
//!
//! serde_json reads a `u128` through a temporary `String` and the standard
//! library's digit-by-digit 128-bit parse, which costs about 250 ns per id
//! here, more than the rest of a span info together. Ids are taken instead
//! as the raw number text and read here ([`read_integer`]): the digits are
//! found eight bytes at a time, then read in 19-digit chunks, eight digits
//! at a time. Integers above 2^64 never pass through `f64` or a generic
//! JSON value, so no digit is lost.

use serde::de::{Deserializer, Error as _};
use serde::Deserialize;
use serde_json::value::RawValue;

/// `b'0'` in every byte of a word.
const ZEROS: u64 = 0x3030_3030_3030_3030;
/// The top bit of every byte of a word.
const HIGH_BITS: u64 = 0x8080_8080_8080_8080;

/// Parses a JSON integer literal below 2^128: digits only, no sign, no
/// fraction, no exponent, no leading zero.
pub(crate) fn parse_decimal_u128(text: &str) -> Option<u128> {
    let (value, end) = read_integer(text.as_bytes(), 0)?;
    (end == text.len()).then_some(value)
}

/// Reads the JSON integer literal at `at` (digits without a leading zero,
/// no sign): its value and where its digits end. `None` if there is none,
/// or if it is 2^128 or more.
pub(crate) fn read_integer(bytes: &[u8], at: usize) -> Option<(u128, usize)> {
    let end = at + digit_run(bytes, at);
    let digits = &bytes[at..end];
    let leading_zero = digits.len() > 1 && digits[0] == b'0';
    if digits.is_empty() || leading_zero {
        return None;
    }
    Some((parse_digits(digits)?, end))
}

/// The value of a run of ASCII digits, or `None` at 2^128 and above.
///
/// Nineteen digits always fit a u64, so the last 19 digits and those before
/// them are read apart and combined in 128 bits. The overflow check
/// compares against a constant instead of using `checked_mul`, which on
/// u128 calls a slow runtime routine.
fn parse_digits(digits: &[u8]) -> Option<u128> {
    const SCALE: u128 = 10_000_000_000_000_000_000;
    const LIMIT: u128 = u128::MAX / SCALE;
    if digits.len() <= 19 {
        return Some(u128::from(parse_u64(digits)));
    }
    if digits.len() > 39 {
        return None;
    }
    let (high, low) = digits.split_at(digits.len() - 19);
    let high = match high.split_first() {
        // Twenty digits: the first times 10^19, then nineteen.
        Some((&first, rest)) if rest.len() == 19 => {
            u128::from(first - b'0') * SCALE + u128::from(parse_u64(rest))
        }
        _ => u128::from(parse_u64(high)),
    };
    if high > LIMIT {
        return None;
    }
    (high * SCALE).checked_add(u128::from(parse_u64(low)))
}

/// The value of at most 19 ASCII digits, eight at a time; the odd leading
/// digits are read with the first octet's word.
fn parse_u64(digits: &[u8]) -> u64 {
    let Some(first_word) = digits.get(..8) else {
        return digits
            .iter()
            .fold(0, |acc, &d| acc * 10 + u64::from(d - b'0'));
    };
    let head = digits.len() % 8;
    let mut value = match head {
        0 => 0,
        _ => {
            let word = u64::from_le_bytes(first_word.try_into().expect("eight bytes"));
            eight_digits(word, head)
        }
    };
    for octet in digits[head..].chunks_exact(8) {
        let word = u64::from_le_bytes(octet.try_into().expect("eight bytes"));
        value = value * 100_000_000 + eight_digits(word, 8);
    }
    value
}

/// How many ASCII digits follow `from` in `bytes`.
pub(crate) fn digit_run(bytes: &[u8], from: usize) -> usize {
    let mut at = from;
    // The next address never waits for this word's digit count: only a
    // word with a non-digit is counted.
    while let Some(chunk) = bytes.get(at..at + 8) {
        let word = u64::from_le_bytes(chunk.try_into().expect("eight bytes"));
        let mask = non_digits(word);
        if mask != 0 {
            return at - from + (mask.trailing_zeros() / 8) as usize;
        }
        at += 8;
    }
    let tail = bytes.get(at..).unwrap_or_default();
    at - from + tail.iter().take_while(|b| b.is_ascii_digit()).count()
}

/// The top bit of each byte of `word` that is not an ASCII digit (the
/// first byte is the lowest), and maybe of bytes after the first such one.
///
/// A byte is a digit when `byte ^ b'0'` is below 10, and adding 0x76 sets
/// the top bit of any byte that is not. A byte of 0x8A or more (already
/// marked by its own top bit) may carry into the next byte; the carry can
/// only mark bytes after it, so the lowest marked byte is always the first
/// non-digit.
fn non_digits(word: u64) -> u64 {
    let offsets = word ^ ZEROS;
    (offsets.wrapping_add(0x7676_7676_7676_7676) | offsets) & HIGH_BITS
}

/// The value of the first `count` (1 to 8) bytes of `word`, ASCII digits,
/// the first in the lowest byte.
///
/// The digits are shifted to the top of the word with `0` digits below
/// them; then pairs, quads and the octet are combined by three
/// multiplications instead of eight dependent multiply-adds.
fn eight_digits(word: u64, count: usize) -> u64 {
    let word = match count {
        8 => word,
        _ => {
            let pad = 64 - 8 * count as u32;
            (word << pad) | (ZEROS >> (64 - pad))
        }
    };
    let digits = word - ZEROS;
    // Each even byte becomes 10 * digit + next digit.
    let pairs = digits.wrapping_mul(10).wrapping_add(digits >> 8);
    const LOW_PAIRS: u64 = 0x0000_00FF_0000_00FF;
    let first = (pairs & LOW_PAIRS).wrapping_mul(100 + (1_000_000 << 32));
    let second = ((pairs >> 16) & LOW_PAIRS).wrapping_mul(1 + (10_000 << 32));
    first.wrapping_add(second) >> 32
}

/// `deserialize_with` for a `u128` id field. Works with serde_json reading
/// from a string or byte slice (the only way span data is read).
pub(crate) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<u128, D::Error> {
    let raw = <&'de RawValue>::deserialize(d)?;
    let text = raw.get().trim();
    parse_decimal_u128(text).ok_or_else(|| {
        let shown: String = text.chars().take(48).collect();
        D::Error::custom(format!(
            "trace id must be a decimal integer below 2^128, got {shown}"
        ))
    })
}

#[cfg(test)]
mod tests {
    use super::{digit_run, parse_decimal_u128, read_integer};

    fn eight_digits(text: &[u8]) -> u64 {
        super::eight_digits(u64::from_le_bytes(text.try_into().unwrap()), 8)
    }

    #[test]
    fn parses_what_std_parses_and_refuses_the_rest() {
        for n in [
            0u128,
            1,
            9,
            10,
            12_345_678,
            123_456_789,
            u64::MAX as u128,
            u64::MAX as u128 + 1,
            10u128.pow(19),
            10u128.pow(38),
            u128::MAX,
        ] {
            assert_eq!(parse_decimal_u128(&n.to_string()), Some(n), "{n}");
        }
        for bad in [
            "",
            "-1",
            "+1",
            "01",
            "1.0",
            "1e3",
            "340282366920938463463374607431768211456",
            "1 ",
            "a",
            "99999999999999999999999999999999999999999",
        ] {
            assert_eq!(parse_decimal_u128(bad), None, "{bad}");
        }
    }

    #[test]
    fn every_length_reads_as_std_reads() {
        for len in 1..=39 {
            for text in [
                "9876543210".repeat(4)[..len].to_string(),
                "9".repeat(len),
                format!("1{}", "0".repeat(len - 1)),
            ] {
                assert_eq!(parse_decimal_u128(&text), text.parse().ok(), "{text}");
                // Inside a longer text, as the fast decoder reads ids, with
                // the text ending soon after or long after.
                for tail in [
                    ",\"span_id\":1}",
                    ",\"span_id\":1,\"trace_flags\":1,\"start_time\":1}",
                ] {
                    let inside = format!(":{text}{tail}");
                    let want = text.parse().ok().map(|n| (n, text.len() + 1));
                    assert_eq!(read_integer(inside.as_bytes(), 1), want, "{inside}");
                }
            }
        }
        assert_eq!(read_integer(b"0,", 0), Some((0, 1)));
        let long_tail = ",\"trace_flags\":1,\"start_time\":1700000000000000000}";
        assert_eq!(
            read_integer(format!("0{long_tail}").as_bytes(), 0),
            Some((0, 1))
        );
        assert_eq!(read_integer(format!("0123{long_tail}").as_bytes(), 0), None);
        assert_eq!(read_integer(format!("-1{long_tail}").as_bytes(), 0), None);
        let forty = format!("{}{long_tail}", "1".repeat(40));
        assert_eq!(read_integer(forty.as_bytes(), 0), None);
        assert_eq!(read_integer(b"012345678,", 0), None);
        assert_eq!(read_integer(b"-1", 0), None);
        assert_eq!(read_integer(b"x", 0), None);
        let too_long = format!("{},", "1".repeat(48));
        assert_eq!(read_integer(too_long.as_bytes(), 0), None);
    }

    #[test]
    fn digit_runs_end_at_the_first_non_digit() {
        let mut n: u64 = 7;
        for _ in 0..10_000 {
            n = n
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            let bytes = n.to_le_bytes();
            let want = bytes.iter().take_while(|b| b.is_ascii_digit()).count();
            assert_eq!(digit_run(&bytes, 0), want, "{bytes:?}");
        }
        for text in [
            "",
            "1",
            "12345678",
            "123456789,",
            "1234567:",
            "9/",
            "12\u{00e9}",
        ] {
            let want = text.bytes().take_while(u8::is_ascii_digit).count();
            assert_eq!(digit_run(text.as_bytes(), 0), want, "{text:?}");
        }
        // Every byte value right after a digit, and after a high byte.
        for byte in 0..=255u8 {
            let bytes = [b'1', byte, b'2', 0xFF, b'3', b'4', b'5', b'6', b'7'];
            let want = bytes.iter().take_while(|b| b.is_ascii_digit()).count();
            assert_eq!(digit_run(&bytes, 0), want, "{byte}");
            let bytes = [0xFF, byte, b'2', b'3', b'4', b'5', b'6', b'7', b'8'];
            assert_eq!(digit_run(&bytes, 1), usize::from(byte.is_ascii_digit()) * 8);
        }
    }

    #[test]
    fn eight_digits_matches_the_slow_way() {
        for text in [
            "00000000", "12345678", "99999999", "10000001", "31861287", "90000000",
        ] {
            assert_eq!(Some(eight_digits(text.as_bytes())), text.parse().ok());
        }
        let mut n: u64 = 7;
        for _ in 0..10_000 {
            n = n
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            let text = format!("{:08}", n % 100_000_000);
            assert_eq!(Some(eight_digits(text.as_bytes())), text.parse().ok());
        }
    }
}
