//! 128-bit trace ids as decimal JSON integers.
//!
//! serde_json reads a `u128` through a temporary `String` and the standard
//! library's digit-by-digit 128-bit parse, which costs about 250 ns per id
//! here, more than the rest of a span info together. Ids are taken instead
//! as the raw number text and parsed in two 64-bit halves. Integers above
//! 2^64 never pass through `f64` or a generic JSON value, so no digit is lost.

use serde::de::{Deserializer, Error as _};
use serde::Deserialize;
use serde_json::value::RawValue;

/// Parses a JSON integer literal below 2^128: digits only, no sign, no
/// fraction, no exponent, no leading zero.
pub(crate) fn parse_decimal_u128(text: &str) -> Option<u128> {
    let bytes = text.as_bytes();
    if bytes.is_empty() || bytes.len() > 39 || !bytes.iter().all(u8::is_ascii_digit) {
        return None;
    }
    if bytes.len() > 1 && bytes[0] == b'0' {
        return None;
    }
    // Nineteen digits always fit a u64: read the text in 19-digit chunks
    // and combine them in 128 bits. The overflow check compares against a
    // constant instead of using `checked_mul`, which on u128 calls a slow
    // runtime routine.
    const CHUNK: usize = 19;
    const SCALE: u128 = 10_000_000_000_000_000_000;
    const LIMIT: u128 = u128::MAX / SCALE;
    let mut value: u128 = 0;
    for (n, chunk) in bytes.rchunks(CHUNK).rev().enumerate() {
        let digits = chunk
            .iter()
            .fold(0u64, |acc, &d| acc * 10 + u64::from(d - b'0'));
        if n == 0 {
            value = u128::from(digits);
            continue;
        }
        // Every chunk after the first is a full 19 digits (rchunks).
        if value > LIMIT {
            return None;
        }
        value = value.wrapping_mul(SCALE).checked_add(u128::from(digits))?;
    }
    Some(value)
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
    use super::parse_decimal_u128;

    #[test]
    fn parses_what_std_parses_and_refuses_the_rest() {
        for n in [
            0u128,
            1,
            9,
            10,
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
}
