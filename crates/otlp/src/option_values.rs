//! The values options take (protocol, compression) and the error for an
//! invalid one: shared by the `[tracing]` table, its parsers and the
//! exporter builders.

use std::fmt;
use std::str::FromStr;

use serde::de::{self, Deserializer};
use serde::Deserialize;

/// An invalid option, or an invalid combination of options.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OptionsError {
    /// An option only valid for the other protocol was given.
    #[error("[tracing] option `{option}` is only valid with protocol = \"{valid_with}\", not \"{protocol}\"")]
    WrongProtocol {
        /// The offending option name.
        option: &'static str,
        /// The protocol in effect.
        protocol: Protocol,
        /// The protocol the option belongs to.
        valid_with: Protocol,
    },
    /// `protocol` names something we do not speak.
    #[error("unknown OTLP protocol `{0}`: expected \"grpc\" or \"http/protobuf\"")]
    UnknownProtocol(String),
    /// `compression` names something we do not support.
    #[error("unsupported OTLP compression `{0}`: expected \"gzip\" or \"none\"")]
    UnknownCompression(String),
    /// `sampler` names no sampler we know.
    #[error(
        "unknown sampler `{0}`: expected always_on, always_off, traceidratio, \
         parentbased_always_on, parentbased_always_off or parentbased_traceidratio"
    )]
    UnknownSampler(String),
    /// Two options contradict each other.
    #[error("[tracing] options conflict: {0}")]
    Conflict(String),
    /// The endpoint is not a usable URL.
    #[error("invalid OTLP endpoint `{endpoint}`: {reason}")]
    Endpoint {
        /// The endpoint as given.
        endpoint: String,
        /// Why it was refused.
        reason: String,
    },
    /// An environment variable holds an unusable value.
    #[error("invalid value `{value}` in environment variable {var}: {reason}")]
    Env {
        /// Variable name.
        var: &'static str,
        /// Its value.
        value: String,
        /// Why it was refused.
        reason: String,
    },
}

/// OTLP transport protocol.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub enum Protocol {
    /// OTLP over gRPC (default, port 4317).
    #[default]
    Grpc,
    /// OTLP over HTTP with protobuf bodies (port 4318).
    HttpProtobuf,
}

impl Protocol {
    /// The name used in config files and `OTEL_EXPORTER_OTLP_PROTOCOL`.
    pub fn as_str(self) -> &'static str {
        match self {
            Protocol::Grpc => "grpc",
            Protocol::HttpProtobuf => "http/protobuf",
        }
    }
}

impl fmt::Display for Protocol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Protocol {
    type Err = OptionsError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim() {
            "grpc" => Ok(Protocol::Grpc),
            "http/protobuf" => Ok(Protocol::HttpProtobuf),
            other => Err(OptionsError::UnknownProtocol(other.to_string())),
        }
    }
}

impl<'de> Deserialize<'de> for Protocol {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(de::Error::custom)
    }
}

/// Payload compression.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Compression {
    /// gzip, the portable choice.
    Gzip,
}
