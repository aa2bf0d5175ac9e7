//! [`Repeats`]: a fault that repeats on every pass is logged once, then
//! summed up, instead of flooding the log. [`Episodes`]: a step retried on
//! every pass reports one error span per run of failures, not one per try.
//!
//! A scheduler retries a failed step every 50 ms; a store that stays broken
//! would otherwise log the same warning 20 times a second. The first
//! failure of a run of identical ones is logged, later ones are counted and
//! logged at most once per interval with their count, and the first success
//! says how many failures the run had.

use std::collections::HashMap;
use std::time::{Duration, Instant};

/// A fault that keeps failing the same way is logged again, with the number
/// of failures left out, at most this often.
pub const REPEAT_LOG_INTERVAL: Duration = Duration::from_secs(10);

/// What to log for a failure just noted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Say {
    /// The first failure of a run (or a different message): log it.
    First,
    /// The same failure, still going: log it with how many identical ones
    /// were left out since the last line.
    Again {
        /// Identical failures not logged since the last line.
        suppressed: u64,
    },
    /// The same failure, logged recently: stay quiet.
    Quiet,
}

#[derive(Debug)]
struct Run {
    message: String,
    failures: u64,
    suppressed: u64,
    last_logged: Instant,
}

/// Remembers the current run of identical failures of one step.
///
/// ```
/// use std::time::Duration;
/// use dspans_pipeline::quiet::{Repeats, Say};
///
/// let mut repeats = Repeats::new(Duration::from_secs(10));
/// assert_eq!(repeats.failed("store is gone"), Say::First);
/// assert_eq!(repeats.failed("store is gone"), Say::Quiet);
/// assert_eq!(repeats.recovered(), Some(2));
/// assert_eq!(repeats.recovered(), None);
/// ```
#[derive(Debug)]
pub struct Repeats {
    every: Duration,
    run: Option<Run>,
}

impl Repeats {
    /// Logs a repeated failure at most once per `every`.
    pub fn new(every: Duration) -> Repeats {
        Repeats { every, run: None }
    }

    /// Notes a failure with this message, now.
    pub fn failed(&mut self, message: &str) -> Say {
        self.failed_at(message, Instant::now())
    }

    /// Notes a failure with this message at `now`.
    pub fn failed_at(&mut self, message: &str, now: Instant) -> Say {
        match &mut self.run {
            Some(run) if run.message == message => {
                run.failures += 1;
                if now.duration_since(run.last_logged) >= self.every {
                    let suppressed = std::mem::take(&mut run.suppressed);
                    run.last_logged = now;
                    Say::Again { suppressed }
                } else {
                    run.suppressed += 1;
                    Say::Quiet
                }
            }
            _ => {
                self.run = Some(Run {
                    message: message.to_string(),
                    failures: 1,
                    suppressed: 0,
                    last_logged: now,
                });
                Say::First
            }
        }
    }

    /// The step succeeded: ends the run and gives how many failures it had,
    /// or `None` when there was no run.
    pub fn recovered(&mut self) -> Option<u64> {
        self.run.take().map(|run| run.failures)
    }
}

/// The failure episodes of retried steps, one per key (a trigger event, for
/// instance): a step that fails on every pass while a store write keeps
/// failing records its first failure as an error span and counts the
/// rest; the try that succeeds says how many failed before it.
///
/// A key that fails, succeeds and fails again starts a second episode.
///
/// ```
/// use dspans_pipeline::quiet::Episodes;
///
/// let mut episodes = Episodes::default();
/// assert!(episodes.failed("event-1")); // the first failure: record it
/// assert!(!episodes.failed("event-1")); // a retry of the same episode
/// assert!(episodes.failed("event-2"));
/// assert_eq!(episodes.succeeded("event-1"), 2);
/// assert_eq!(episodes.succeeded("event-1"), 0);
/// episodes.retain(|key| key == "event-1");
/// assert!(episodes.failed("event-2")); // event-2 was forgotten
/// ```
#[derive(Debug, Default)]
pub struct Episodes {
    failures: HashMap<String, u64>,
}

impl Episodes {
    /// Notes a failed try of `key`'s step. True when it is the first of
    /// its episode, the one to record.
    pub fn failed(&mut self, key: &str) -> bool {
        let failures = self.failures.entry(key.to_string()).or_default();
        *failures += 1;
        *failures == 1
    }

    /// Notes a successful try of `key`'s step, ending its episode. Gives
    /// how many tries failed before it (0 without an episode).
    pub fn succeeded(&mut self, key: &str) -> u64 {
        self.failures.remove(key).unwrap_or(0)
    }

    /// Forgets the episodes of keys that are gone (handled elsewhere, or
    /// dropped), so the map holds only what is still being retried.
    pub fn retain(&mut self, mut live: impl FnMut(&str) -> bool) {
        self.failures.retain(|key, _| live(key));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_run_of_identical_failures_is_logged_once_per_interval() {
        let mut repeats = Repeats::new(Duration::from_secs(10));
        let start = Instant::now();
        let at = |ms: u64| start + Duration::from_millis(ms);
        assert_eq!(repeats.failed_at("disk full", at(0)), Say::First);
        // 20 passes a second for 25 s: two summary lines, nothing else.
        let mut said = Vec::new();
        for pass in 1..500 {
            match repeats.failed_at("disk full", at(pass * 50)) {
                Say::Quiet => {}
                other => said.push((pass * 50, other)),
            }
        }
        assert_eq!(
            said,
            vec![
                (10_000, Say::Again { suppressed: 199 }),
                (20_000, Say::Again { suppressed: 199 }),
            ]
        );
        assert_eq!(repeats.recovered(), Some(500));
    }

    #[test]
    fn another_message_starts_a_new_run() {
        let mut repeats = Repeats::new(Duration::from_secs(10));
        let now = Instant::now();
        assert_eq!(repeats.failed_at("a", now), Say::First);
        assert_eq!(repeats.failed_at("a", now), Say::Quiet);
        assert_eq!(repeats.failed_at("b", now), Say::First);
        assert_eq!(repeats.recovered(), Some(1));
        assert_eq!(repeats.failed_at("b", now), Say::First);
    }
}
