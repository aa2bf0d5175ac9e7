//! Value parsers for the `[tracing]` table and `OTEL_*` variables.

use std::collections::BTreeMap;
use std::fmt;

use serde::de::{self, Deserializer, Visitor};
use serde::Deserialize;

use crate::option_values::{Compression, OptionsError};

/// Parses a compression name; `none` (or empty) means no compression.
pub(crate) fn parse_compression(s: &str) -> Result<Option<Compression>, OptionsError> {
    match s.trim().to_ascii_lowercase().as_str() {
        "gzip" => Ok(Some(Compression::Gzip)),
        "none" | "" => Ok(None),
        _ => Err(OptionsError::UnknownCompression(s.to_string())),
    }
}

pub(crate) fn de_compression<'de, D: Deserializer<'de>>(
    d: D,
) -> Result<Option<Compression>, D::Error> {
    let s = String::deserialize(d)?;
    parse_compression(&s).map_err(de::Error::custom)
}

/// Zuul's truth rule: `true` only for 1, on, yes, true (case-insensitive).
pub(crate) fn zuul_truthy(s: &str) -> bool {
    matches!(
        s.trim().to_ascii_lowercase().as_str(),
        "1" | "on" | "yes" | "true"
    )
}

struct ZuulBool;

impl Visitor<'_> for ZuulBool {
    type Value = bool;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a boolean, or one of 1/on/yes/true as a string")
    }
    fn visit_bool<E: de::Error>(self, v: bool) -> Result<bool, E> {
        Ok(v)
    }
    fn visit_i64<E: de::Error>(self, v: i64) -> Result<bool, E> {
        Ok(v == 1)
    }
    fn visit_u64<E: de::Error>(self, v: u64) -> Result<bool, E> {
        Ok(v == 1)
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<bool, E> {
        Ok(zuul_truthy(v))
    }
}

pub(crate) fn de_zuul_bool<'de, D: Deserializer<'de>>(d: D) -> Result<bool, D::Error> {
    d.deserialize_any(ZuulBool)
}

pub(crate) fn de_opt_zuul_bool<'de, D: Deserializer<'de>>(d: D) -> Result<Option<bool>, D::Error> {
    d.deserialize_any(ZuulBool).map(Some)
}

struct Millis;

impl Visitor<'_> for Millis {
    type Value = u64;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a non-negative number of milliseconds")
    }
    fn visit_u64<E: de::Error>(self, v: u64) -> Result<u64, E> {
        Ok(v)
    }
    fn visit_i64<E: de::Error>(self, v: i64) -> Result<u64, E> {
        u64::try_from(v).map_err(|_| E::custom("timeout must not be negative"))
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<u64, E> {
        v.trim().parse().map_err(|_| {
            E::custom(format!(
                "timeout `{v}` is not a whole number of milliseconds"
            ))
        })
    }
}

pub(crate) fn de_opt_millis<'de, D: Deserializer<'de>>(d: D) -> Result<Option<u64>, D::Error> {
    d.deserialize_any(Millis).map(Some)
}

/// Parses `k1=v1,k2=v2` (values percent-decoded), as OTEL headers are.
pub(crate) fn parse_headers(s: &str) -> Result<BTreeMap<String, String>, String> {
    let mut out = BTreeMap::new();
    for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let (k, v) = part
            .split_once('=')
            .ok_or_else(|| format!("header `{part}` is not key=value"))?;
        let key = k.trim().to_ascii_lowercase();
        if key.is_empty() {
            return Err(format!("header `{part}` has an empty name"));
        }
        out.insert(key, percent_decode(v.trim()));
    }
    Ok(out)
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' && i + 2 < bytes.len() {
            let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).ok();
            if let Some(b) = hex.and_then(|h| u8::from_str_radix(h, 16).ok()) {
                out.push(b);
                i += 3;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percent_decoding() {
        assert_eq!(percent_decode("a%20b"), "a b");
        assert_eq!(percent_decode("100%"), "100%");
        assert_eq!(percent_decode("%4"), "%4");
        assert_eq!(percent_decode("%zz"), "%zz");
    }

    #[test]
    fn headers() {
        let h = parse_headers("Authorization=Bearer%20x, k=v").unwrap();
        assert_eq!(h["authorization"], "Bearer x");
        assert_eq!(h["k"], "v");
        assert!(parse_headers("novalue").is_err());
    }

    #[test]
    fn zuul_truth() {
        for t in ["1", "on", "YES", "True"] {
            assert!(zuul_truthy(t));
        }
        for f in ["0", "off", "no", "false", "enabled", ""] {
            assert!(!zuul_truthy(f));
        }
    }
}
