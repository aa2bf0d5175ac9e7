//! Export options shared by every command that ends spans, and the export
//! step itself: spans are collected while the command works, then sent with
//! the exporter's own result, so a failure becomes a message and an exit code.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Context as _;
use clap::Args;
use dspans_otlp::{build_exporter, ExportOptions, Exporter, Protocol};
use durable_spans::DurableTracer;
use opentelemetry_sdk::error::OTelSdkResult;
use opentelemetry_sdk::trace::{Span, SpanData, SpanExporter, SpanProcessor};
use opentelemetry_sdk::Resource;

/// The OTLP collector to send to: flags over the OTEL_* environment.
#[derive(Args, Debug, Clone, Default)]
pub struct OtlpArgs {
    /// OTLP base URL, as OTEL_EXPORTER_OTLP_ENDPOINT (for http/protobuf,
    /// /v1/traces is appended). Default http://localhost:4317 (grpc) or
    /// http://localhost:4318 (http/protobuf).
    #[arg(long, value_name = "URL")]
    pub otlp_endpoint: Option<String>,
    /// OTLP protocol.
    #[arg(long, value_name = "PROTOCOL", value_parser = ["grpc", "http/protobuf"])]
    pub otlp_protocol: Option<String>,
}

impl OtlpArgs {
    /// Export options: the OTEL_* environment, then these flags over it.
    /// Not validated yet (callers add their own options first).
    pub fn options(&self) -> anyhow::Result<ExportOptions> {
        let mut options = ExportOptions {
            enabled: true,
            ..ExportOptions::default()
        };
        options
            .apply_process_env()
            .context("invalid OTEL_* environment variable")?;
        if let Some(endpoint) = &self.otlp_endpoint {
            options.endpoint = Some(endpoint.clone());
            options.traces_endpoint_override = None;
        }
        if let Some(protocol) = &self.otlp_protocol {
            options.protocol = match protocol.as_str() {
                "http/protobuf" => Protocol::HttpProtobuf,
                _ => Protocol::Grpc,
            };
        }
        Ok(options)
    }
}

/// Where ended spans go.
#[derive(Args, Debug, Clone, Default)]
pub struct ExportArgs {
    #[command(flatten)]
    pub otlp: OtlpArgs,
    /// service.name of the exported spans (default: OTEL_SERVICE_NAME, else dspans).
    #[arg(long, value_name = "NAME")]
    pub service_name: Option<String>,
    /// Append spans to FILE as OTLP-JSON lines (one ExportTraceServiceRequest
    /// per line) instead of sending them; with --otlp-endpoint too, both.
    #[arg(long, value_name = "FILE")]
    pub output: Option<PathBuf>,
}

/// Collects ended spans in memory until the command exports them.
#[derive(Debug, Clone, Default)]
pub struct Collector(Arc<Mutex<Vec<SpanData>>>);

impl Collector {
    fn take(&self) -> Vec<SpanData> {
        std::mem::take(&mut *self.0.lock().unwrap_or_else(|p| p.into_inner()))
    }
}

impl SpanProcessor for Collector {
    fn on_start(&self, _span: &mut Span, _cx: &opentelemetry::Context) {}

    fn on_end(&self, span: SpanData) {
        if span.span_context.is_sampled() {
            self.0.lock().unwrap_or_else(|p| p.into_inner()).push(span);
        }
    }

    fn force_flush(&self) -> OTelSdkResult {
        Ok(())
    }

    fn shutdown_with_timeout(&self, _timeout: Duration) -> OTelSdkResult {
        Ok(())
    }
}

/// A tracer whose spans wait in memory for [`Session::export`].
pub struct Session {
    pub tracer: DurableTracer,
    collector: Collector,
    options: ExportOptions,
    output: Option<PathBuf>,
    send_otlp: bool,
    resource: Resource,
}

impl Session {
    /// Resolves options: flags, then OTEL_* environment, then defaults.
    pub fn new(args: &ExportArgs) -> anyhow::Result<Session> {
        let from_env = OtlpArgs::default().options()?;
        let env_endpoint =
            from_env.endpoint.is_some() || from_env.traces_endpoint_override.is_some();
        let mut options = args.otlp.options()?;
        if let Some(name) = &args.service_name {
            options.service_name = Some(name.clone());
        }
        options.validate()?;
        let send_otlp = args.output.is_none() || args.otlp.otlp_endpoint.is_some() || env_endpoint;
        let collector = Collector::default();
        let resource = Resource::builder_empty()
            .with_service_name(options.service_name().to_string())
            .build();
        let tracer = DurableTracer::builder("dspans")
            .with_resource(resource.clone())
            .with_sampler(options.sampler())
            .with_span_processor(collector.clone())
            .build();
        Ok(Session {
            tracer,
            collector,
            options,
            output: args.output.clone(),
            send_otlp,
            resource,
        })
    }

    /// Where ended spans go, as a user reads it: the OTLP endpoint and
    /// protocol, the output file, or both.
    pub fn destination(&self) -> String {
        let otlp = format!(
            "{} ({})",
            self.options.traces_endpoint(),
            self.options.protocol.as_str()
        );
        match (&self.output, self.send_otlp) {
            (Some(path), true) => format!("{otlp} and {}", path.display()),
            (Some(path), false) => path.display().to_string(),
            (None, _) => otlp,
        }
    }

    /// Sends every span ended so far; an error names the destination.
    pub async fn export(self) -> anyhow::Result<usize> {
        let spans = self.collector.take();
        if spans.is_empty() {
            return Ok(0);
        }
        let count = spans.len();
        if let Some(path) = &self.output {
            let exporter = Exporter::json_lines(path)?;
            send(exporter, spans.clone(), &self.resource)
                .await
                .with_context(|| format!("could not write spans to {}", path.display()))?;
        }
        if self.send_otlp {
            let endpoint = self.options.traces_endpoint();
            let exporter = build_exporter(&self.options)?;
            send(exporter, spans, &self.resource)
                .await
                .with_context(|| {
                    format!(
                        "could not export to {endpoint} ({}); is a collector listening there? \
                     Set --otlp-endpoint or OTEL_EXPORTER_OTLP_ENDPOINT, or use --output FILE",
                        self.options.protocol.as_str()
                    )
                })?;
        }
        Ok(count)
    }
}

async fn send(
    mut exporter: Exporter,
    spans: Vec<SpanData>,
    resource: &Resource,
) -> anyhow::Result<()> {
    exporter.set_resource(resource);
    let result = exporter.export(spans).await;
    // Shutting down flushes files; its error matters less than the export's.
    let _ = exporter.shutdown();
    result.map_err(|e| anyhow::anyhow!("{e}"))
}
