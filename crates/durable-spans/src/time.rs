//! Timestamps as Zuul writes them: float seconds or integer nanoseconds.
//!
//! Zuul converts a float `t` (seconds) to nanoseconds with Python's
//! `int(t * 10**9)`: one IEEE-754 multiplication by `1e9`, then truncation
//! toward zero. [`Timestamp::from_secs_f64`] performs exactly that, so a value
//! such as `1700000001.25` becomes `1700000001249999872` here as it does in
//! Zuul. Integers are nanoseconds and pass through unchanged.

use std::fmt;
use std::str::FromStr;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// A point in time as signed nanoseconds since the Unix epoch.
///
/// ```
/// use durable_spans::Timestamp;
/// let t: Timestamp = "1700000001.25".parse().unwrap();
/// assert_eq!(t.as_nanos(), 1_700_000_001_249_999_872);
/// let t: Timestamp = "1700000000123456789".parse().unwrap();
/// assert_eq!(t.as_nanos(), 1_700_000_000_123_456_789);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Timestamp(i64);

/// Why a time value could not be turned into a [`Timestamp`].
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum TimeError {
    /// NaN has no nanosecond value (Python raises `ValueError`).
    #[error("time is NaN")]
    NaN,
    /// Infinite, or beyond what 64-bit nanoseconds can hold (years 1678..2262).
    #[error("time {0} is out of range for 64-bit nanoseconds")]
    OutOfRange(String),
    /// Neither an integer nor a decimal number.
    #[error("{0:?} is not a time: give float seconds (1700000000.5) or integer nanoseconds (1700000000500000000)")]
    Unparsable(String),
}

impl Timestamp {
    /// The Unix epoch.
    pub const EPOCH: Timestamp = Timestamp(0);

    /// Nanoseconds since the epoch, as given.
    pub const fn from_nanos(nanos: i64) -> Self {
        Timestamp(nanos)
    }

    /// Float seconds converted as Python's `int(t * 10**9)` does.
    ///
    /// ```
    /// use durable_spans::Timestamp;
    /// assert_eq!(Timestamp::from_secs_f64(1.5).unwrap().as_nanos(), 1_500_000_000);
    /// assert_eq!(Timestamp::from_secs_f64(-0.1).unwrap().as_nanos(), -100_000_000);
    /// assert!(Timestamp::from_secs_f64(f64::NAN).is_err());
    /// ```
    pub fn from_secs_f64(secs: f64) -> Result<Self, TimeError> {
        if secs.is_nan() {
            return Err(TimeError::NaN);
        }
        let product = (secs * 1e9).trunc();
        // i64::MAX is not representable as f64; 2^63 is the first value out.
        const LIMIT: f64 = 9_223_372_036_854_775_808.0;
        if !(-LIMIT..LIMIT).contains(&product) {
            return Err(TimeError::OutOfRange(secs.to_string()));
        }
        Ok(Timestamp(product as i64))
    }

    /// The current time.
    pub fn now() -> Self {
        Self::from(SystemTime::now())
    }

    /// Nanoseconds since the epoch.
    pub const fn as_nanos(self) -> i64 {
        self.0
    }

    /// As a [`SystemTime`] (times before 1970 are supported).
    pub fn to_system_time(self) -> SystemTime {
        if self.0 >= 0 {
            UNIX_EPOCH + Duration::from_nanos(self.0 as u64)
        } else {
            UNIX_EPOCH - Duration::from_nanos(self.0.unsigned_abs())
        }
    }
}

impl From<SystemTime> for Timestamp {
    fn from(time: SystemTime) -> Self {
        let clamp = |n: u128| i64::try_from(n).unwrap_or(i64::MAX);
        match time.duration_since(UNIX_EPOCH) {
            Ok(after) => Timestamp(clamp(after.as_nanos())),
            Err(before) => Timestamp(-clamp(before.duration().as_nanos())),
        }
    }
}

impl From<Timestamp> for SystemTime {
    fn from(t: Timestamp) -> Self {
        t.to_system_time()
    }
}

impl FromStr for Timestamp {
    type Err = TimeError;

    /// Parses as Zuul's JSON is read: a number with a fraction or an exponent
    /// is float seconds, a plain integer is nanoseconds.
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let text = text.trim();
        let unparsable = || TimeError::Unparsable(text.to_string());
        let is_float = text.contains(['.', 'e', 'E']);
        if is_float || text.eq_ignore_ascii_case("nan") || text.to_ascii_lowercase().contains("inf")
        {
            let secs: f64 = text.parse().map_err(|_| unparsable())?;
            return Self::from_secs_f64(secs);
        }
        let digits = text.strip_prefix(['-', '+']).unwrap_or(text);
        if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
            return Err(unparsable());
        }
        text.parse::<i64>()
            .map(Timestamp)
            .map_err(|_| TimeError::OutOfRange(text.to_string()))
    }
}

impl fmt::Display for Timestamp {
    /// Integer nanoseconds, the form Zuul saves.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

impl serde::Serialize for Timestamp {
    /// Integer nanoseconds.
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_i64(self.0)
    }
}

impl<'de> serde::Deserialize<'de> for Timestamp {
    /// A JSON integer is nanoseconds; a number with a fraction or exponent
    /// is float seconds (serde_json hands those to `visit_f64`).
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct TimeVisitor;
        impl serde::de::Visitor<'_> for TimeVisitor {
            type Value = Timestamp;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("integer nanoseconds or float seconds")
            }
            fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<Timestamp, E> {
                Ok(Timestamp(v))
            }
            fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<Timestamp, E> {
                i64::try_from(v)
                    .map(Timestamp)
                    .map_err(|_| E::custom(format!("time {v} ns is beyond the year 2262")))
            }
            fn visit_f64<E: serde::de::Error>(self, v: f64) -> Result<Timestamp, E> {
                Timestamp::from_secs_f64(v).map_err(E::custom)
            }
        }
        d.deserialize_any(TimeVisitor)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn integers_are_nanoseconds_and_fractions_are_seconds() {
        assert_eq!("12".parse::<Timestamp>().unwrap().as_nanos(), 12);
        assert_eq!(
            "12.0".parse::<Timestamp>().unwrap().as_nanos(),
            12_000_000_000
        );
        assert_eq!(
            "1e9".parse::<Timestamp>().unwrap().as_nanos(),
            1_000_000_000_000_000_000
        );
        assert!(matches!(
            "abc".parse::<Timestamp>(),
            Err(TimeError::Unparsable(_))
        ));
        assert!(matches!(
            "".parse::<Timestamp>(),
            Err(TimeError::Unparsable(_))
        ));
        assert!(matches!(
            "inf".parse::<Timestamp>(),
            Err(TimeError::OutOfRange(_))
        ));
        assert!(matches!("NaN".parse::<Timestamp>(), Err(TimeError::NaN)));
        assert!(matches!(
            "99999999999999999999".parse::<Timestamp>(),
            Err(TimeError::OutOfRange(_))
        ));
    }

    #[test]
    fn system_time_round_trip_before_and_after_epoch() {
        for n in [-1_500_000_000i64, 0, 1_700_000_000_123_456_789] {
            let t = Timestamp::from_nanos(n);
            assert_eq!(Timestamp::from(t.to_system_time()), t);
        }
    }
}
