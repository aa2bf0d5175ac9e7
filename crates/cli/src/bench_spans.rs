//! `dspans bench spans`: the cost of saved-span operations against a plain
//! OpenTelemetry span, measured in one run so the ratios are comparable.

use std::hint::black_box;
use std::time::Instant;

use clap::Args;
use durable_spans::{
    span_context_of, ChildOptions, DurableTracer, EndOptions, SavedSpanOptions, SpanContext,
    SpanInfo, Timestamp,
};
use opentelemetry::trace::{Span as _, Tracer as _};
use opentelemetry::KeyValue;
use opentelemetry_sdk::error::OTelSdkResult;
use opentelemetry_sdk::trace::{SpanData, SpanExporter};

/// Options of `dspans bench spans`.
#[derive(Args, Debug)]
pub struct BenchSpansArgs {
    /// Operations per timed repeat (each operation is timed over 7 repeats,
    /// the median is printed).
    #[arg(long, default_value_t = 100_000)]
    pub iterations: u64,
}

const REPEATS: usize = 7;

/// An exporter that drops everything, so only the span work is measured.
#[derive(Debug)]
struct DiscardExporter;

impl SpanExporter for DiscardExporter {
    async fn export(&self, batch: Vec<SpanData>) -> OTelSdkResult {
        black_box(batch);
        Ok(())
    }
}

fn end_attributes() -> Vec<KeyValue> {
    vec![
        KeyValue::new("uuid", "0123456789abcdef0123456789abcdef"),
        KeyValue::new("job", "tox-py311"),
        KeyValue::new("buildset_uuid", "5b7c1e5b0d1a4c2f9a2b7e0d6a1f3c4d"),
        KeyValue::new("zuul_event_id", "a1b2c3d4e5f64789abcdef0123456789"),
    ]
}

/// Median nanoseconds per call of `op` over `REPEATS` timed runs.
fn measure(iterations: u64, mut op: impl FnMut(u64)) -> f64 {
    for i in 0..iterations.min(1_000) {
        op(i);
    }
    let mut samples: Vec<f64> = (0..REPEATS)
        .map(|_| {
            let start = Instant::now();
            for i in 0..iterations {
                op(i);
            }
            start.elapsed().as_nanos() as f64 / iterations as f64
        })
        .collect();
    samples.sort_by(f64::total_cmp);
    samples[REPEATS / 2]
}

/// Runs every operation and prints one JSON line each.
pub fn run(args: &BenchSpansArgs) -> anyhow::Result<()> {
    anyhow::ensure!(args.iterations > 0, "--iterations must be at least 1");
    let n = args.iterations;
    let tracer = DurableTracer::builder("zuul")
        .service_name("bench")
        .with_simple_exporter(DiscardExporter)
        .build();
    let parent = tracer.start_saved_span("BuildSet", SavedSpanOptions::new())?;
    let parent_cx = tracer.restore(Some(&parent)).into_context();
    let child = tracer.start_saved_span(
        "Build",
        SavedSpanOptions::new()
            .parent(parent_cx)
            .start_time(Timestamp::from_secs_f64(1_700_000_010.5)?),
    )?;
    let child_json = child.to_json();
    let context_json = child.span_context().to_json();
    let restored_child = tracer.restore(Some(&child));

    let mut results: Vec<(&str, f64)> = Vec::new();
    results.push((
        "start_saved_span_encode",
        measure(n, |i| {
            let start =
                Timestamp::from_secs_f64(1_700_000_000.0 + i as f64 * 1e-3).expect("finite time");
            let info = tracer
                .start_saved_span("BuildSet", SavedSpanOptions::new().start_time(start))
                .expect("no attributes");
            black_box(info.to_json());
        }),
    ));
    results.push((
        "restore_decode",
        measure(n, |_| {
            let info = SpanInfo::from_json(black_box(&child_json)).expect("valid json");
            black_box(tracer.restore(info.as_ref()));
        }),
    ));
    results.push((
        "end_saved_span",
        measure(n, |_| {
            let end = EndOptions::new()
                .end_time(Timestamp::from_secs_f64(1_700_000_070.25).expect("finite"))
                .attributes(end_attributes());
            tracer.end_saved_json(black_box(&child_json), end);
        }),
    ));
    results.push((
        "span_context_encode",
        measure(n, |_| {
            black_box(span_context_of(black_box(&restored_child)).to_json());
        }),
    ));
    results.push((
        "start_span_in_context_end",
        measure(n, |_| {
            let ctx = SpanContext::from_json(black_box(&context_json)).expect("valid json");
            let mut span =
                tracer.start_span_in_context(ctx.as_ref(), "JobExecution", ChildOptions::default());
            span.end();
        }),
    ));
    results.push((
        "plain_span_start_end",
        measure(n, |_| {
            let mut span = tracer
                .tracer()
                .span_builder("Build")
                .with_attributes(end_attributes())
                .start(tracer.tracer());
            span.end();
        }),
    ));
    for (op, ns) in results {
        println!(
            "{}",
            serde_json::json!({"op": op, "ns_per_op": (ns * 10.0).round() / 10.0, "iterations": n})
        );
    }
    Ok(())
}
