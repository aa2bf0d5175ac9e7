//! [`Handoff`]: the one way ended spans take from the transactions that end
//! them to this process's [`OutboxSender`](crate::OutboxSender).
//!
//! The committing side passes each span it ended; the sending side takes
//! them, and publishes what the ledger needs to bound the outbox: how many
//! spans it holds and how many unassigned ones it counted. Nothing flows
//! from the sender into the committer's transactions.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};

use durable_spans::FinishedSpan;
use tokio::sync::mpsc;

/// An ended span handed over: its entry's key and its data.
#[derive(Debug)]
pub(crate) struct Handed {
    pub key: String,
    pub span: FinishedSpan,
}

#[derive(Debug, Default)]
struct Shared {
    /// The sender's id (`SenderId` text), set once it announced itself:
    /// only then may ended entries name it.
    sender: OnceLock<String>,
    /// Spans handed over and not yet settled (accepted, or left unassigned).
    in_hand: AtomicUsize,
    /// Unassigned markers at the sender's last count.
    unassigned: AtomicUsize,
}

/// The handle through which a [`Ledger`](crate::Ledger) hands the spans its
/// commits end to this process's [`OutboxSender`](crate::OutboxSender):
/// from [`OutboxSender::handoff`](crate::OutboxSender::handoff) to
/// [`Ledger::with_handoff`](crate::Ledger::with_handoff). Until the sender
/// announced itself, and after it stopped, ended spans get unassigned
/// markers instead, for any sender. Cheap to clone.
#[derive(Clone)]
pub struct Handoff {
    queue: mpsc::Sender<Handed>,
    shared: Arc<Shared>,
}

impl std::fmt::Debug for Handoff {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Handoff")
            .field("sender", &self.shared.sender.get())
            .field("backlog", &self.backlog())
            .finish()
    }
}

impl Handoff {
    /// What ended entries name as their sender: `None` until the sender
    /// announced itself.
    pub(crate) fn sender_id(&self) -> Option<&str> {
        self.shared.sender.get().map(String::as_str)
    }

    /// Hands an ended span over; gives its key back when the sender is
    /// behind (its queue is full) or has stopped.
    pub(crate) fn pass(&self, span: Handed) -> Result<(), String> {
        self.shared.in_hand.fetch_add(1, Ordering::Relaxed);
        self.queue.try_send(span).map_err(|error| {
            self.shared.in_hand.fetch_sub(1, Ordering::Relaxed);
            error.into_inner().key
        })
    }

    /// Ended spans not yet accepted that this process knows of: those
    /// handed over and not settled, plus the unassigned markers at the
    /// sender's last count.
    pub(crate) fn backlog(&self) -> usize {
        self.shared.in_hand.load(Ordering::Relaxed) + self.shared.unassigned.load(Ordering::Relaxed)
    }
}

/// The sender's end of a [`Handoff`].
#[derive(Debug)]
pub(crate) struct Inbox {
    queue: mpsc::Receiver<Handed>,
    shared: Arc<Shared>,
}

/// A handoff whose queue holds up to `capacity` spans, and its inbox.
pub(crate) fn channel(capacity: usize) -> (Handoff, Inbox) {
    let (tx, rx) = mpsc::channel(capacity.max(1));
    let shared = Arc::new(Shared::default());
    let handoff = Handoff {
        queue: tx,
        shared: shared.clone(),
    };
    (handoff, Inbox { queue: rx, shared })
}

impl Inbox {
    /// Starts receiving: ended entries name `sender` from now on.
    pub fn open(&self, sender: String) {
        let _ = self.shared.sender.set(sender);
    }

    /// The next span handed over.
    pub async fn recv(&mut self) -> Option<Handed> {
        self.queue.recv().await
    }

    /// A span handed over, if one waits.
    pub fn try_recv(&mut self) -> Option<Handed> {
        self.queue.try_recv().ok()
    }

    /// Stops receiving: later spans get unassigned markers. Returns those
    /// still queued.
    pub fn close(&mut self) -> Vec<Handed> {
        self.queue.close();
        std::iter::from_fn(|| self.queue.try_recv().ok()).collect()
    }

    /// `spans` handed over were accepted or left unassigned.
    pub fn settled(&self, spans: usize) {
        let _ = self
            .shared
            .in_hand
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| {
                Some(n.saturating_sub(spans))
            });
    }

    /// Records the number of unassigned markers just counted.
    pub fn count_unassigned(&self, markers: usize) {
        self.shared.unassigned.store(markers, Ordering::Relaxed);
    }
}
