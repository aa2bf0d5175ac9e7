//! Bounded waits: a condition polled until it holds or a deadline passes.

use std::future::Future;
use std::time::{Duration, Instant};

/// Polls `cond` every 10 ms until it returns true or `timeout` passes;
/// false on timeout.
///
/// ```
/// # tokio::runtime::Runtime::new().unwrap().block_on(async {
/// use std::time::Duration;
/// let ready = dspans_test_support::wait_until(Duration::from_secs(1), || async { true }).await;
/// assert!(ready);
/// # });
/// ```
pub async fn wait_until<F, Fut>(timeout: Duration, mut cond: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        if cond().await {
            return true;
        }
        if tokio::time::Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Polls `probe` every 50 ms until it yields a value; panics when `limit`
/// passes first, with `what` and the text of `context` (say, logs).
///
/// ```
/// use std::time::Duration;
/// let mut tries = 0;
/// let value = dspans_test_support::wait_for(
///     "the third try",
///     Duration::from_secs(5),
///     String::new,
///     || {
///         tries += 1;
///         (tries == 3).then_some(tries)
///     },
/// );
/// assert_eq!(value, 3);
/// ```
pub fn wait_for<T>(
    what: &str,
    limit: Duration,
    context: impl Fn() -> String,
    mut probe: impl FnMut() -> Option<T>,
) -> T {
    let started = Instant::now();
    loop {
        if let Some(value) = probe() {
            return value;
        }
        assert!(
            started.elapsed() < limit,
            "not within {limit:?}: {what}\n{}",
            context()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}
