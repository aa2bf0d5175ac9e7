//! [`Batch`]: the spans a sender holds on their way to the collector, and
//! when to send them.

use std::time::Duration;

use durable_spans::FinishedSpan;
use tokio::time::Instant;

use crate::handoff::Handed;

/// An ended span in a sender's hands.
#[derive(Debug)]
pub(crate) struct Outgoing {
    pub key: String,
    pub span: FinishedSpan,
    /// Claimed from the unassigned spans (it has a marker and this
    /// sender's claim, both deleted with the entry), rather than handed over
    /// by this process's own transaction.
    pub claimed: bool,
}

impl From<Handed> for Outgoing {
    fn from(handed: Handed) -> Outgoing {
        Outgoing {
            key: handed.key,
            span: handed.span,
            claimed: false,
        }
    }
}

/// How a sender paces its exports.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Pace {
    pub max_batch: usize,
    pub batch_delay: Duration,
    pub min_backoff: Duration,
    pub max_backoff: Duration,
}

/// The spans in hand, when the first of them arrived, and the backoff
/// after failed exports.
#[derive(Debug)]
pub(crate) struct Batch {
    pub spans: Vec<Outgoing>,
    pace: Pace,
    first_at: Instant,
    backoff: Duration,
    /// Set while exports fail: when to try again.
    retry_at: Option<Instant>,
}

impl Batch {
    pub fn new(pace: Pace) -> Batch {
        Batch {
            spans: Vec::new(),
            pace,
            first_at: Instant::now(),
            backoff: pace.min_backoff,
            retry_at: None,
        }
    }

    pub fn push(&mut self, span: Outgoing) {
        if self.spans.is_empty() {
            self.first_at = Instant::now();
        }
        self.spans.push(span);
    }

    pub fn len(&self) -> usize {
        self.spans.len()
    }

    pub fn is_full(&self) -> bool {
        self.spans.len() >= self.pace.max_batch
    }

    /// No export failed since the last success.
    pub fn is_healthy(&self) -> bool {
        self.retry_at.is_none()
    }

    /// Whether more spans may be taken in: exports succeed, and the batch
    /// has room.
    pub fn takes_more(&self) -> bool {
        self.is_healthy() && !self.is_full()
    }

    /// Whether to export now: a retry is due, or the batch is full or its
    /// first span waited long enough.
    pub fn is_due(&self, now: Instant) -> bool {
        !self.spans.is_empty()
            && match self.retry_at {
                Some(at) => now >= at,
                None => self.is_full() || now >= self.first_at + self.pace.batch_delay,
            }
    }

    /// When the batch becomes due, if it holds anything.
    pub fn due_at(&self) -> Option<Instant> {
        match self.retry_at {
            Some(at) => Some(at),
            None if !self.spans.is_empty() => Some(self.first_at + self.pace.batch_delay),
            None => None,
        }
    }

    /// The collector accepted the batch: it is emptied, pacing back to
    /// normal.
    pub fn sent(&mut self) {
        self.spans.clear();
        self.backoff = self.pace.min_backoff;
        self.retry_at = None;
    }

    /// The export failed: the batch is kept and tried again after the
    /// backoff, which doubles; returns the wait.
    pub fn failed(&mut self) -> Duration {
        let wait = self.backoff;
        self.retry_at = Some(Instant::now() + wait);
        self.backoff = (wait * 2).min(self.pace.max_backoff);
        wait
    }
}
