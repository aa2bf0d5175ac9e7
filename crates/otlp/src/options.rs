//! Export options: the `[tracing]` config table, with Zuul's option names,
//! plus the standard `OTEL_*` environment overrides.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

pub use crate::option_values::{Compression, OptionsError, Protocol};
use crate::parse::{
    de_compression, de_opt_millis, de_opt_zuul_bool, de_zuul_bool, parse_compression, parse_headers,
};
pub use crate::sampling::SamplerName;

/// Service name used when neither the file nor `OTEL_SERVICE_NAME` sets one.
pub const DEFAULT_SERVICE_NAME: &str = "dspans";
/// Export timeout used when none is configured (Zuul's documented default).
pub const DEFAULT_TIMEOUT_MS: u64 = 10_000;
/// Default gRPC endpoint (the OTLP default).
pub const DEFAULT_GRPC_ENDPOINT: &str = "http://localhost:4317";
/// Default HTTP base endpoint (the OTLP default); `/v1/traces` is appended.
pub const DEFAULT_HTTP_ENDPOINT: &str = "http://localhost:4318";
/// Path of the traces signal on an OTLP/HTTP endpoint.
pub const TRACES_PATH: &str = "/v1/traces";

/// The `[tracing]` table: how and where to export spans.
///
/// Option names are Zuul's. `timeout` is in **milliseconds**, as Zuul's
/// documentation says (Zuul's code passes it on as seconds; we follow the
/// documentation).
///
/// ```
/// use dspans_otlp::{ExportOptions, Protocol};
///
/// let opts: ExportOptions = toml::from_str(r#"
///     enabled = "yes"
///     protocol = "http/protobuf"
///     endpoint = "http://127.0.0.1:4318"
///     service_name = "ci"
///     timeout = 2500
/// "#).unwrap();
/// opts.validate().unwrap();
/// assert!(opts.enabled);
/// assert_eq!(opts.protocol, Protocol::HttpProtobuf);
/// assert_eq!(opts.traces_endpoint(), "http://127.0.0.1:4318/v1/traces");
/// assert_eq!(opts.timeout().as_millis(), 2500);
/// ```
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExportOptions {
    /// Whether to export at all (Zuul: true only for 1/on/yes/true).
    #[serde(default, deserialize_with = "de_zuul_bool")]
    pub enabled: bool,
    /// `grpc` (default) or `http/protobuf`.
    #[serde(default)]
    pub protocol: Protocol,
    /// Base URL of the collector. For `http/protobuf`, `/v1/traces` is
    /// appended unless the path already ends with it.
    #[serde(default)]
    pub endpoint: Option<String>,
    /// `service.name` resource attribute (default [`DEFAULT_SERVICE_NAME`]).
    #[serde(default)]
    pub service_name: Option<String>,
    /// PEM CA bundle to verify the collector (grpc only).
    #[serde(default)]
    pub tls_ca: Option<PathBuf>,
    /// PEM client certificate (grpc only; needs `tls_key`).
    #[serde(default)]
    pub tls_cert: Option<PathBuf>,
    /// PEM client key (grpc only; needs `tls_cert`).
    #[serde(default)]
    pub tls_key: Option<PathBuf>,
    /// PEM CA bundle to verify the collector (http only).
    #[serde(default)]
    pub certificate_file: Option<PathBuf>,
    /// Plaintext gRPC (grpc only). Unset: plaintext only for an `http://`
    /// endpoint without `tls_*` options.
    #[serde(default, deserialize_with = "de_opt_zuul_bool")]
    pub insecure: Option<bool>,
    /// Export timeout in milliseconds (default [`DEFAULT_TIMEOUT_MS`]).
    #[serde(default, deserialize_with = "de_opt_millis")]
    pub timeout: Option<u64>,
    /// `gzip`, or `none`.
    #[serde(default, deserialize_with = "de_compression")]
    pub compression: Option<Compression>,
    /// Head sampler of new traces (default `parentbased_always_on`; see
    /// [`SamplerName`]).
    #[serde(default)]
    pub sampler: Option<SamplerName>,
    /// The ratio of the `traceidratio` samplers, from 0 to 1 (default 1).
    #[serde(default)]
    pub sampler_arg: Option<f64>,
    /// Full traces URL from `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`, used as is.
    #[serde(skip)]
    pub traces_endpoint_override: Option<String>,
    /// Extra request headers (from `OTEL_EXPORTER_OTLP_HEADERS`).
    #[serde(skip)]
    pub headers: BTreeMap<String, String>,
}

/// Env vars read by [`ExportOptions::apply_env`].
pub const ENV_VARS: &[&str] = &[
    "OTEL_EXPORTER_OTLP_ENDPOINT",
    "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
    "OTEL_EXPORTER_OTLP_PROTOCOL",
    "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL",
    "OTEL_SERVICE_NAME",
    "OTEL_EXPORTER_OTLP_TIMEOUT",
    "OTEL_EXPORTER_OTLP_TRACES_TIMEOUT",
    "OTEL_EXPORTER_OTLP_COMPRESSION",
    "OTEL_EXPORTER_OTLP_TRACES_COMPRESSION",
    "OTEL_EXPORTER_OTLP_HEADERS",
    "OTEL_EXPORTER_OTLP_TRACES_HEADERS",
    "OTEL_TRACES_SAMPLER",
    "OTEL_TRACES_SAMPLER_ARG",
];

impl ExportOptions {
    /// The effective service name.
    pub fn service_name(&self) -> &str {
        self.service_name
            .as_deref()
            .filter(|s| !s.is_empty())
            .unwrap_or(DEFAULT_SERVICE_NAME)
    }

    /// The effective export timeout.
    pub fn timeout(&self) -> Duration {
        Duration::from_millis(self.timeout.unwrap_or(DEFAULT_TIMEOUT_MS))
    }

    /// The URL spans are sent to: the traces-specific override as is; else
    /// the endpoint (or the protocol's default) with `/v1/traces` appended
    /// for `http/protobuf`.
    pub fn traces_endpoint(&self) -> String {
        if let Some(url) = self.traces_endpoint_override.as_deref() {
            return url.to_string();
        }
        let base = self.endpoint.as_deref().filter(|s| !s.trim().is_empty());
        match self.protocol {
            Protocol::Grpc => base.unwrap_or(DEFAULT_GRPC_ENDPOINT).trim().to_string(),
            Protocol::HttpProtobuf => {
                let base = base.unwrap_or(DEFAULT_HTTP_ENDPOINT).trim();
                let trimmed = base.trim_end_matches('/');
                if trimmed.ends_with(TRACES_PATH) {
                    trimmed.to_string()
                } else {
                    format!("{trimmed}{TRACES_PATH}")
                }
            }
        }
    }

    /// Checks option combinations, as Zuul does, plus a few of our own.
    ///
    /// ```
    /// let opts: dspans_otlp::ExportOptions = toml::from_str(r#"
    ///     enabled = true
    ///     protocol = "http/protobuf"
    ///     insecure = true
    /// "#).unwrap();
    /// let err = opts.validate().unwrap_err();
    /// assert!(err.to_string().contains("insecure"));
    /// ```
    pub fn validate(&self) -> Result<(), OptionsError> {
        let wrong = |option, valid_with| OptionsError::WrongProtocol {
            option,
            protocol: self.protocol,
            valid_with,
        };
        match self.protocol {
            Protocol::HttpProtobuf => {
                let grpc_only = [
                    ("tls_ca", self.tls_ca.is_some()),
                    ("tls_cert", self.tls_cert.is_some()),
                    ("tls_key", self.tls_key.is_some()),
                    ("insecure", self.insecure.is_some()),
                ];
                if let Some((name, _)) = grpc_only.iter().find(|(_, set)| *set) {
                    return Err(wrong(name, Protocol::Grpc));
                }
            }
            Protocol::Grpc => {
                if self.certificate_file.is_some() {
                    return Err(wrong("certificate_file", Protocol::HttpProtobuf));
                }
                if self.tls_cert.is_some() != self.tls_key.is_some() {
                    return Err(OptionsError::Conflict(
                        "tls_cert and tls_key must be given together".into(),
                    ));
                }
                let any_tls =
                    self.tls_ca.is_some() || self.tls_cert.is_some() || self.tls_key.is_some();
                if self.insecure == Some(true) && any_tls {
                    return Err(OptionsError::Conflict(
                        "insecure = true cannot be combined with tls_ca/tls_cert/tls_key".into(),
                    ));
                }
            }
        }
        if self.timeout == Some(0) {
            return Err(OptionsError::Conflict("timeout must be above 0 ms".into()));
        }
        if let Some(ratio) = self.sampler_arg {
            crate::sampling::check_ratio(ratio)
                .map_err(|reason| OptionsError::Conflict(format!("sampler_arg: {reason}")))?;
        }
        let url = self.traces_endpoint();
        check_url(&url, self.protocol)?;
        Ok(())
    }

    /// Applies the standard `OTEL_*` overrides read through `env` (which
    /// returns a variable's value, `None` when unset). Environment values
    /// win over the file; traces-specific variables win over general ones;
    /// empty values count as unset.
    ///
    /// ```
    /// use std::collections::HashMap;
    /// use dspans_otlp::{ExportOptions, Protocol};
    ///
    /// let env = HashMap::from([
    ///     ("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf"),
    ///     ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://collector:4318"),
    ///     ("OTEL_SERVICE_NAME", "from-env"),
    /// ]);
    /// let mut opts = ExportOptions { service_name: Some("from-file".into()), ..Default::default() };
    /// opts.apply_env(|k| env.get(k).map(|v| v.to_string())).unwrap();
    /// assert_eq!(opts.protocol, Protocol::HttpProtobuf);
    /// assert_eq!(opts.service_name(), "from-env");
    /// assert_eq!(opts.traces_endpoint(), "http://collector:4318/v1/traces");
    /// ```
    pub fn apply_env<F>(&mut self, env: F) -> Result<(), OptionsError>
    where
        F: Fn(&str) -> Option<String>,
    {
        let get = |name: &'static str| {
            env(name)
                .map(|v| v.trim().to_string())
                .filter(|v| !v.is_empty())
                .map(|v| (name, v))
        };
        let pick = |specific: &'static str, general: &'static str| get(specific).or(get(general));

        if let Some((var, v)) = pick(
            "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL",
            "OTEL_EXPORTER_OTLP_PROTOCOL",
        ) {
            self.protocol = v.parse().map_err(|e: OptionsError| OptionsError::Env {
                var,
                value: v.clone(),
                reason: e.to_string(),
            })?;
        }
        if let Some((_, v)) = get("OTEL_EXPORTER_OTLP_ENDPOINT") {
            self.endpoint = Some(v);
        }
        if let Some((_, v)) = get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") {
            self.traces_endpoint_override = Some(v);
        }
        if let Some((_, v)) = get("OTEL_SERVICE_NAME") {
            self.service_name = Some(v);
        }
        if let Some((var, v)) = pick(
            "OTEL_EXPORTER_OTLP_TRACES_TIMEOUT",
            "OTEL_EXPORTER_OTLP_TIMEOUT",
        ) {
            let ms: u64 = v.parse().map_err(|_| OptionsError::Env {
                var,
                value: v.clone(),
                reason: "expected a whole number of milliseconds".into(),
            })?;
            self.timeout = Some(ms);
        }
        if let Some((var, v)) = pick(
            "OTEL_EXPORTER_OTLP_TRACES_COMPRESSION",
            "OTEL_EXPORTER_OTLP_COMPRESSION",
        ) {
            self.compression = parse_compression(&v).map_err(|e| OptionsError::Env {
                var,
                value: v.clone(),
                reason: e.to_string(),
            })?;
        }
        if let Some((var, v)) = pick(
            "OTEL_EXPORTER_OTLP_TRACES_HEADERS",
            "OTEL_EXPORTER_OTLP_HEADERS",
        ) {
            self.headers = parse_headers(&v).map_err(|reason| OptionsError::Env {
                var,
                value: v.clone(),
                reason,
            })?;
        }
        if let Some((var, v)) = get("OTEL_TRACES_SAMPLER") {
            let name: SamplerName = v.parse().map_err(|e: OptionsError| OptionsError::Env {
                var,
                value: v.clone(),
                reason: e.to_string(),
            })?;
            self.sampler = Some(name);
        }
        if let Some((var, v)) = get("OTEL_TRACES_SAMPLER_ARG") {
            let ratio = v
                .parse::<f64>()
                .map_err(|_| "expected a number".to_string())
                .and_then(|ratio| crate::sampling::check_ratio(ratio).map(|()| ratio))
                .map_err(|reason| OptionsError::Env {
                    var,
                    value: v.clone(),
                    reason,
                })?;
            self.sampler_arg = Some(ratio);
        }
        Ok(())
    }

    /// The head sampler of new traces these options ask for.
    ///
    /// ```
    /// use dspans_otlp::ExportOptions;
    /// let opts: ExportOptions = toml::from_str(r#"
    ///     sampler = "parentbased_traceidratio"
    ///     sampler_arg = 0.25
    /// "#).unwrap();
    /// opts.validate().unwrap();
    /// let _sampler = opts.sampler();
    /// ```
    pub fn sampler(&self) -> Box<dyn opentelemetry_sdk::trace::ShouldSample> {
        self.sampler.unwrap_or_default().sampler(self.sampler_arg)
    }

    /// [`apply_env`](Self::apply_env) with the process environment.
    pub fn apply_process_env(&mut self) -> Result<(), OptionsError> {
        self.apply_env(|name| std::env::var(name).ok())
    }
}

/// Refuses URLs without a host or with a scheme other than http(s).
fn check_url(url: &str, protocol: Protocol) -> Result<(), OptionsError> {
    let bad = |reason: &str| OptionsError::Endpoint {
        endpoint: url.to_string(),
        reason: reason.to_string(),
    };
    let rest = match url.split_once("://") {
        Some((scheme, rest)) => {
            if scheme != "http" && scheme != "https" {
                return Err(bad("the scheme must be http or https"));
            }
            rest
        }
        // gRPC endpoints may be schemeless (`host:port`).
        None if protocol == Protocol::Grpc => url,
        None => return Err(bad("an http/protobuf endpoint needs http:// or https://")),
    };
    let authority = rest.split(['/', '?', '#']).next().unwrap_or("");
    if authority.is_empty() || authority.chars().any(char::is_whitespace) {
        return Err(bad("missing or malformed host"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls() {
        assert!(check_url("http://h:1", Protocol::HttpProtobuf).is_ok());
        assert!(check_url("h:4317", Protocol::Grpc).is_ok());
        assert!(check_url("h:4318", Protocol::HttpProtobuf).is_err());
        assert!(check_url("ftp://h", Protocol::Grpc).is_err());
        assert!(check_url("http://", Protocol::Grpc).is_err());
    }
}
