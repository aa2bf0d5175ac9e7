//! Head sampling of new traces: `[tracing] sampler` and `sampler_arg`, or
//! the standard `OTEL_TRACES_SAMPLER` and `OTEL_TRACES_SAMPLER_ARG`, with
//! the OpenTelemetry SDKs' names and defaults.
//!
//! The decision is made once, at a trace's root, and travels with the
//! trace in its sampled flag: in saved span info, in span contexts and in
//! `TRACEPARENT`. With a `parentbased_*` sampler (the default,
//! `parentbased_always_on`) every span of a trace follows its root, on
//! every host, so a trace is exported whole or not at all.

use std::fmt;
use std::str::FromStr;

use opentelemetry_sdk::trace::{ParentBasedSampler, Sampler, ShouldSample};
use serde::de::{self, Deserializer};
use serde::Deserialize;

use crate::option_values::OptionsError;

/// A sampler by its OpenTelemetry name.
///
/// ```
/// use dspans_otlp::SamplerName;
///
/// let name: SamplerName = "parentbased_traceidratio".parse().unwrap();
/// assert_eq!(name, SamplerName::ParentBasedTraceIdRatio);
/// assert!(name.takes_ratio());
/// assert!("sometimes".parse::<SamplerName>().is_err());
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub enum SamplerName {
    /// Every trace.
    AlwaysOn,
    /// No trace.
    AlwaysOff,
    /// A share of the traces (`sampler_arg`, default 1.0), chosen by trace
    /// id, for every span (parents ignored).
    TraceIdRatio,
    /// Roots sampled; children follow their parent (the default).
    #[default]
    ParentBasedAlwaysOn,
    /// Roots dropped; children follow their parent.
    ParentBasedAlwaysOff,
    /// A share of the roots; children follow their parent.
    ParentBasedTraceIdRatio,
}

impl SamplerName {
    const ALL: [(&'static str, SamplerName); 6] = [
        ("always_on", SamplerName::AlwaysOn),
        ("always_off", SamplerName::AlwaysOff),
        ("traceidratio", SamplerName::TraceIdRatio),
        ("parentbased_always_on", SamplerName::ParentBasedAlwaysOn),
        ("parentbased_always_off", SamplerName::ParentBasedAlwaysOff),
        (
            "parentbased_traceidratio",
            SamplerName::ParentBasedTraceIdRatio,
        ),
    ];

    /// The name in config files and `OTEL_TRACES_SAMPLER`.
    pub fn as_str(self) -> &'static str {
        Self::ALL
            .iter()
            .find(|(_, name)| *name == self)
            .map_or("parentbased_always_on", |(text, _)| text)
    }

    /// Whether `sampler_arg` (a ratio) applies.
    pub fn takes_ratio(self) -> bool {
        matches!(
            self,
            SamplerName::TraceIdRatio | SamplerName::ParentBasedTraceIdRatio
        )
    }

    /// The sampler, with `ratio` for the ratio samplers (1.0 without one).
    /// Parent-based samplers treat an invalid parent as none, so children
    /// of a span restored from missing data start new traces (as in Zuul).
    pub fn sampler(self, ratio: Option<f64>) -> Box<dyn ShouldSample> {
        let ratio = Sampler::TraceIdRatioBased(ratio.unwrap_or(1.0));
        match self {
            SamplerName::AlwaysOn => Box::new(Sampler::AlwaysOn),
            SamplerName::AlwaysOff => Box::new(Sampler::AlwaysOff),
            SamplerName::TraceIdRatio => Box::new(ratio),
            SamplerName::ParentBasedAlwaysOn => {
                Box::new(ParentBasedSampler::new(Sampler::AlwaysOn))
            }
            SamplerName::ParentBasedAlwaysOff => {
                Box::new(ParentBasedSampler::new(Sampler::AlwaysOff))
            }
            SamplerName::ParentBasedTraceIdRatio => Box::new(ParentBasedSampler::new(ratio)),
        }
    }
}

impl fmt::Display for SamplerName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for SamplerName {
    type Err = OptionsError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let s = s.trim();
        Self::ALL
            .iter()
            .find(|(text, _)| text.eq_ignore_ascii_case(s))
            .map(|(_, name)| *name)
            .ok_or_else(|| OptionsError::UnknownSampler(s.to_string()))
    }
}

impl<'de> Deserialize<'de> for SamplerName {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(de::Error::custom)
    }
}

/// Checks a `sampler_arg`: a ratio from 0 to 1.
pub(crate) fn check_ratio(ratio: f64) -> Result<(), String> {
    if (0.0..=1.0).contains(&ratio) {
        Ok(())
    } else {
        Err(format!("{ratio} is not a ratio from 0 to 1"))
    }
}
