//! A fault that repeats on every pass is logged once, not 20 times a
//! second: a scheduler facing a change queue it cannot decode (an item's
//! objects are set aside instead; a queue's cannot be).

use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use dspans_pipeline::scheduler::Scheduler;
use dspans_pipeline::{Config, Layout};
use dspans_store::Store;
use dspans_test_support::TestReceiver;
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

#[test]
fn a_step_failing_on_every_pass_is_logged_once() {
    let otlp = TestReceiver::start();
    let dir = tempfile::tempdir().unwrap();
    let config: Config = format!(
        "[store]\nbackend = \"sqlite\"\npath = \"{}/dspans.db\"\n\
         [[pipeline]]\nname = \"gate\"\nmanager = \"dependent\"\n\
         [[job]]\nname = \"unit\"\nrun = \"true\"\n\
         [[project]]\nname = \"org/project\"\ngate = [\"unit\"]\n",
        dir.path().display()
    )
    .parse()
    .unwrap();
    let captured = Captured::default();
    let subscriber = tracing_subscriber::fmt()
        .with_writer(captured.clone())
        .with_ansi(false)
        .finish();
    let _logs = tracing::subscriber::set_default(subscriber);
    // One thread: the scheduler's log lines come from this one, where the
    // capturing subscriber is the default.
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let store: Arc<dyn Store> = dspans_store::create(&config.store).await.unwrap();
        let layout = Layout::default();
        store
            .create_all(&layout.change_queue("gate", "default"), b"{\"items\": 7")
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
