//! A fault that repeats on every pass is logged once, not 20 times a
//! second, and gives one error span, not one per retry: a scheduler facing
//! a change queue it cannot decode (an item's objects are set aside
//! instead; a queue's cannot be).

use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use dspans_otlp::proto::common::v1::any_value::Value;
use dspans_otlp::proto::trace::v1::status::StatusCode;
use dspans_otlp::proto::trace::v1::Span;
use dspans_pipeline::model::{ChangeQueue, ChangeRef, StoredObject as _};
use dspans_pipeline::scheduler::{enqueue, Scheduler};
use dspans_pipeline::{Config, Layout};
use dspans_store::Store;
use dspans_test_support::{attr, TestReceiver};
use tracing_subscriber::fmt::MakeWriter;

use crate::support::{Exporting as _, DEADLINE};

/// Log lines written by the scheduler under test.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Captured {
    fn lines_with(&self, text: &str) -> usize {
        let bytes = self.0.lock().unwrap();
        String::from_utf8_lossy(&bytes)
            .lines()
            .filter(|line| line.contains(text))
            .count()
    }
}

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> MakeWriter<'a> for Captured {
    type Writer = Captured;

    fn make_writer(&'a self) -> Captured {
        self.clone()
    }
}

fn gate_config(dir: &std::path::Path) -> Config {
    format!(
        "[store]\nbackend = \"sqlite\"\npath = \"{}/dspans.db\"\n\
         [[pipeline]]\nname = \"gate\"\nmanager = \"dependent\"\n\
         [[job]]\nname = \"unit\"\nrun = \"true\"\n\
         [[project]]\nname = \"org/project\"\ngate = [\"unit\"]\n",
        dir.display()
    )
    .parse()
    .unwrap()
}

/// This thread's log lines, captured while the guard lives, and a runtime
/// on this thread alone: the scheduler's log lines come from this thread,
/// where the capturing subscriber is the default.
fn capturing() -> (
    Captured,
    tracing::subscriber::DefaultGuard,
    tokio::runtime::Runtime,
) {
    let captured = Captured::default();
    let subscriber = tracing_subscriber::fmt()
        .with_writer(captured.clone())
        .with_ansi(false)
        .finish();
    let guard = tracing::subscriber::set_default(subscriber);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    (captured, guard, runtime)
}

/// A change queue object no scheduler can decode.
const UNDECODABLE_QUEUE: &[u8] = b"{\"items\": 7";

#[test]
fn a_step_failing_on_every_pass_is_logged_once() {
    let otlp = TestReceiver::start();
    let dir = tempfile::tempdir().unwrap();
    let config = gate_config(dir.path());
    let (captured, _logs, runtime) = capturing();
    runtime.block_on(async {
        let store: Arc<dyn Store> = dspans_store::create(&config.store).await.unwrap();
        let layout = Layout::default();
        store
            .create_all(&layout.change_queue("gate", "default"), UNDECODABLE_QUEUE)
            .await
            .unwrap();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let scheduler = Scheduler::new(config.clone(), store.clone(), otlp.tracer("s"), "s1");
        let task = tokio::spawn(scheduler.run(async {
            let _ = stopped.await;
        }));
        let started = Instant::now();
        while captured.lines_with("pipeline step failed") == 0 {
            assert!(started.elapsed() < DEADLINE, "the step never failed");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        // The stimulus: the bad queue stays for 2 s, about 40 passes.
        tokio::time::sleep(Duration::from_secs(2)).await;
        stop.send(()).unwrap();
        task.await.unwrap();
        let _ = store.close().await;
    });
    assert_eq!(captured.lines_with("pipeline step failed"), 1);
    assert_eq!(captured.lines_with("pipeline step still failing"), 0);
}

/// The `EventProcessing` spans received so far.
fn event_processing(otlp: &TestReceiver) -> Vec<Span> {
    otlp.spans()
        .into_iter()
        .filter(|span| span.name == "EventProcessing")
        .collect()
}

fn status_of(span: &Span) -> StatusCode {
    span.status
        .as_ref()
        .map_or(StatusCode::Unset, |status| status.code())
}

/// Waits (without blocking the scheduler's thread) until `cond` holds for
/// the `EventProcessing` spans received.
async fn wait_for_event_processing(
    otlp: &TestReceiver,
    what: &str,
    cond: impl Fn(&[Span]) -> bool,
) {
    let started = Instant::now();
    while !cond(&event_processing(otlp)) {
        assert!(
            started.elapsed() < DEADLINE,
            "{what}: {:?}",
            event_processing(otlp)
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[test]
fn a_retried_event_ends_one_error_span_per_failure_episode() {
    let otlp = TestReceiver::start();
    let dir = tempfile::tempdir().unwrap();
    let config = gate_config(dir.path());
    let (captured, _logs, runtime) = capturing();
    runtime.block_on(async {
        let store: Arc<dyn Store> = dspans_store::create(&config.store).await.unwrap();
        let layout = Layout::default();
        let queue_path = layout.change_queue("gate", "default");
        store
            .create_all(&queue_path, UNDECODABLE_QUEUE)
            .await
            .unwrap();
        let change = ChangeRef {
            project: "org/project".into(),
            number: 1,
            patchset: 1,
            branch: "main".into(),
        };
        enqueue(&store, &layout, &otlp.tracer("enqueue"), "gate", change)
            .await
            .unwrap();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let scheduler = Scheduler::new(config.clone(), store.clone(), otlp.tracer("s"), "s1");
        let task = tokio::spawn(scheduler.run(async {
            let _ = stopped.await;
        }));
        wait_for_event_processing(&otlp, "the first failure's span", |spans| !spans.is_empty())
            .await;
        // The stimulus: the queue stays undecodable for 1 s, about 20
        // passes, each of which retries the event.
        tokio::time::sleep(Duration::from_secs(1)).await;
        let repaired = ChangeQueue {
            pipeline: "gate".into(),
            name: "default".into(),
            items: Vec::new(),
        };
        store
            .set(&queue_path, &repaired.to_json().unwrap(), None)
            .await
            .unwrap();
        wait_for_event_processing(&otlp, "the successful try's span", |spans| {
            spans
                .iter()
                .any(|span| status_of(span) != StatusCode::Error)
        })
        .await;
        stop.send(()).unwrap();
        task.await.unwrap();
        let _ = store.close().await;
    });
    let spans = event_processing(&otlp);
    let statuses: Vec<StatusCode> = spans.iter().map(status_of).collect();
    let failed: Vec<&Span> = spans
        .iter()
        .filter(|span| status_of(span) == StatusCode::Error)
        .collect();
    assert_eq!(
        failed.len(),
        1,
        "one error span for the episode: {statuses:?}"
    );
    assert!(
        failed[0]
            .status
            .as_ref()
            .unwrap()
            .message
            .contains("decode"),
        "the error span says what failed: {:?}",
        failed[0].status
    );
    assert_eq!(spans.len(), 2, "the failure and the success: {statuses:?}");
    let succeeded = spans
        .iter()
        .find(|span| status_of(span) != StatusCode::Error)
        .unwrap();
    let Some(&Value::IntValue(failed_attempts)) =
        attr(&succeeded.attributes, "dspans.failed_attempts")
    else {
        panic!("no dspans.failed_attempts on {succeeded:?}")
    };
    // The scheduler retried the event many times; every failed try is
    // counted on the span of the try that succeeded.
    assert!(failed_attempts >= 2, "only {failed_attempts} tries failed");
    assert_eq!(
        captured.lines_with(&format!("failures={failed_attempts}")),
        1,
        "the log's count of failures matches the span's"
    );
}
