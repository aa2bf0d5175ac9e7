//! [`RetryingExporter`]: keeps a failed batch and sends it again while the
//! collector is away, within a bounded time.

use std::time::{Duration, Instant};

use opentelemetry_sdk::error::OTelSdkResult;
use opentelemetry_sdk::trace::{SpanData, SpanExporter};
use opentelemetry_sdk::Resource;

/// Wraps an exporter so that a batch whose export failed is sent again,
/// with exponential backoff (250 ms doubling to 5 s, each failure logged as
/// a warning), until it is accepted or `give_up_after` has passed since the
/// first attempt. A collector restarted or briefly unreachable then loses
/// no span; one away for longer loses the batch, with an error.
///
/// Made for the SDK's `BatchSpanProcessor`, which exports from a thread of
/// its own: the backoff waits block that thread (the processor keeps
/// queueing new spans meanwhile, up to its queue size). Do not use it where
/// an export runs on an async runtime's worker thread.
///
/// ```
/// use dspans_otlp::{Exporter, RetryingExporter};
/// let dir = tempfile::tempdir().unwrap();
/// let file = Exporter::json_lines(dir.path().join("spans.jsonl")).unwrap();
/// let exporter = RetryingExporter::new(file, std::time::Duration::from_secs(60));
/// let provider = opentelemetry_sdk::trace::SdkTracerProvider::builder()
///     .with_batch_exporter(exporter)
///     .build();
/// # drop(provider);
/// ```
#[derive(Debug)]
pub struct RetryingExporter<E> {
    inner: E,
    give_up_after: Duration,
}

/// First wait after a failed export.
const MIN_BACKOFF: Duration = Duration::from_millis(250);
/// Longest wait between attempts.
const MAX_BACKOFF: Duration = Duration::from_secs(5);

impl<E: SpanExporter> RetryingExporter<E> {
    /// Retries `inner`'s failed exports for up to `give_up_after`.
    pub fn new(inner: E, give_up_after: Duration) -> RetryingExporter<E> {
        RetryingExporter {
            inner,
            give_up_after,
        }
    }
}

impl<E: SpanExporter> SpanExporter for RetryingExporter<E> {
    async fn export(&self, batch: Vec<SpanData>) -> OTelSdkResult {
        let started = Instant::now();
        let mut backoff = MIN_BACKOFF;
        loop {
            let error = match self.inner.export(batch.clone()).await {
                Ok(()) => return Ok(()),
                Err(error) => error,
            };
            if started.elapsed() + backoff > self.give_up_after {
                tracing::error!(
                    spans = batch.len(),
                    "span export failed for {} s; batch dropped: {error}",
                    started.elapsed().as_secs()
                );
                return Err(error);
            }
            tracing::warn!(
                spans = batch.len(),
                retry_in_ms = backoff.as_millis() as u64,
                "span export failed; will retry: {error}"
            );
            // On the batch processor's own thread (see the type's docs).
            std::thread::sleep(backoff);
            backoff = (backoff * 2).min(MAX_BACKOFF);
        }
    }

    fn shutdown_with_timeout(&self, timeout: Duration) -> OTelSdkResult {
        self.inner.shutdown_with_timeout(timeout)
    }

    fn force_flush(&self) -> OTelSdkResult {
        self.inner.force_flush()
    }

    fn set_resource(&mut self, resource: &Resource) {
        self.inner.set_resource(resource);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use opentelemetry_sdk::error::OTelSdkError;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;

    fn block_on<F: std::future::Future>(future: F) -> F::Output {
        tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap()
            .block_on(future)
    }

    /// Fails its first `failures` exports.
    #[derive(Debug)]
    struct Flaky {
        failures: usize,
        calls: Arc<AtomicUsize>,
    }

    impl SpanExporter for Flaky {
        async fn export(&self, _batch: Vec<SpanData>) -> OTelSdkResult {
            let call = self.calls.fetch_add(1, Ordering::SeqCst);
            if call < self.failures {
                Err(OTelSdkError::InternalFailure("collector away".into()))
            } else {
                Ok(())
            }
        }
    }

    #[test]
    fn a_failed_batch_is_sent_again() {
        let calls = Arc::new(AtomicUsize::new(0));
        let flaky = Flaky {
            failures: 2,
            calls: calls.clone(),
        };
        let exporter = RetryingExporter::new(flaky, Duration::from_secs(30));
        assert!(block_on(exporter.export(Vec::new())).is_ok());
        assert_eq!(calls.load(Ordering::SeqCst), 3);
    }

    #[test]
    fn it_gives_up_in_time() {
        let calls = Arc::new(AtomicUsize::new(0));
        let flaky = Flaky {
            failures: usize::MAX,
            calls: calls.clone(),
        };
        let exporter = RetryingExporter::new(flaky, Duration::from_millis(600));
        assert!(block_on(exporter.export(Vec::new())).is_err());
        // 0 ms, 250 ms: the next wait (500 ms) would pass the limit.
        assert_eq!(calls.load(Ordering::SeqCst), 2);
    }
}
