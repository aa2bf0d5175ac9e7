//! `dspans bench spans`: the cost of saved-span operations against a plain
//! OpenTelemetry span, measured in one run so the ratios are comparable.
//!
//! The timed repeats of all operations take turns (one repeat of each, then
//! the next round), so a machine busy with other work slows every operation
//! alike instead of whichever happened to run at the time.

use std::hint::black_box;
use std::time::Instant;

use clap::Args;
use durable_spans::{
    span_context_of, ChildOptions, DurableTracer, EndOptions, RestoredSpan, SavedSpanOptions,
    SpanContext, SpanInfo, Timestamp,
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

/// An operation to time: its name, and one timed repeat of it.
struct Op<'a> {
    name: &'static str,
    repeat: Box<dyn FnMut() -> f64 + 'a>,
}

/// Warms `op` up and wraps it for [`median_times`]. The timed loop is
/// compiled for each operation, so only each repeat, never each call, goes
/// through the box.
fn op<'a>(name: &'static str, iterations: u64, mut op: impl FnMut(u64) + 'a) -> Op<'a> {
    for i in 0..iterations.min(1_000) {
        op(i);
    }
    let repeat = move || {
        let start = Instant::now();
        for i in 0..iterations {
            op(i);
        }
        start.elapsed().as_nanos() as f64 / iterations as f64
    };
    Op {
        name,
        repeat: Box::new(repeat),
    }
}

/// Median nanoseconds per call of each operation over `REPEATS` rounds, a
/// round timing one repeat of every operation in turn.
fn median_times(ops: &mut [Op<'_>]) -> Vec<f64> {
    let mut samples = vec![Vec::with_capacity(REPEATS); ops.len()];
    for _ in 0..REPEATS {
        for (op, times) in ops.iter_mut().zip(&mut samples) {
            times.push((op.repeat)());
        }
    }
    samples
        .into_iter()
        .map(|mut times| {
            times.sort_by(f64::total_cmp);
            times[REPEATS / 2]
        })
        .collect()
}

/// The saved values the operations read.
struct Fixtures {
    child_json: String,
    context_json: String,
    restored_child: RestoredSpan,
}

/// A saved child of a restored saved span, as a scheduler keeps one.
fn fixtures(tracer: &DurableTracer) -> anyhow::Result<Fixtures> {
    let parent = tracer.start_saved_span("BuildSet", SavedSpanOptions::new())?;
    let parent_cx = tracer.restore(Some(&parent)).into_context();
    let child = tracer.start_saved_span(
        "Build",
        SavedSpanOptions::new()
            .parent(parent_cx)
            .start_time(Timestamp::from_secs_f64(1_700_000_010.5)?),
    )?;
    Ok(Fixtures {
        child_json: child.to_json(),
        context_json: child.span_context().to_json(),
        restored_child: tracer.restore(Some(&child)),
    })
}

/// Every operation, in the order they are printed.
fn operations<'a>(tracer: &'a DurableTracer, saved: &'a Fixtures, n: u64) -> Vec<Op<'a>> {
    vec![
        op("start_saved_span_encode", n, move |i| {
            let start =
                Timestamp::from_secs_f64(1_700_000_000.0 + i as f64 * 1e-3).expect("finite time");
            let info = tracer
                .start_saved_span("BuildSet", SavedSpanOptions::new().start_time(start))
                .expect("no attributes");
            black_box(info.to_json());
        }),
        op("restore_decode", n, move |_| {
            let info = SpanInfo::from_json(black_box(&saved.child_json)).expect("valid json");
            black_box(tracer.restore(info.as_ref()));
        }),
        op("end_saved_span", n, move |_| {
            let end = EndOptions::new()
                .end_time(Timestamp::from_secs_f64(1_700_000_070.25).expect("finite"))
                .attributes(end_attributes());
            tracer.end_saved_json(black_box(&saved.child_json), end);
        }),
        op("span_context_encode", n, move |_| {
            black_box(span_context_of(black_box(&saved.restored_child)).to_json());
        }),
        op("start_span_in_context_end", n, move |_| {
            let ctx = SpanContext::from_json(black_box(&saved.context_json)).expect("valid json");
            let mut span =
                tracer.start_span_in_context(ctx.as_ref(), "JobExecution", ChildOptions::default());
            span.end();
        }),
        op("plain_span_start_end", n, move |_| {
            let mut span = tracer
                .tracer()
                .span_builder("Build")
                .with_attributes(end_attributes())
                .start(tracer.tracer());
            span.end();
        }),
    ]
}

/// Runs every operation and prints one JSON line each.
pub fn run(args: &BenchSpansArgs) -> anyhow::Result<()> {
    anyhow::ensure!(args.iterations > 0, "--iterations must be at least 1");
    let n = args.iterations;
    let tracer = DurableTracer::builder("zuul")
        .service_name("bench")
        .with_simple_exporter(DiscardExporter)
        .build();
    let saved = fixtures(&tracer)?;
    let mut ops = operations(&tracer, &saved, n);
    let times = median_times(&mut ops);
    for (op, ns) in ops.iter().zip(times) {
        println!(
            "{}",
            serde_json::json!({"op": op.name, "ns_per_op": (ns * 10.0).round() / 10.0, "iterations": n})
        );
    }
    Ok(())
}
