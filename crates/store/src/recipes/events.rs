//! Ordered event queue on sequential nodes.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;

use crate::error::{Result, StoreError};
use crate::path::{join_path, sequence_of};
use crate::store::Store;
use crate::types::{CreateMode, Op, Watch};

/// An event read from an [`EventQueue`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    /// Node name, e.g. `event-0000000012`.
    pub id: String,
    /// Position in the queue (increasing in put order, across writers).
    pub seq: i64,
    /// The value given to [`EventQueue::put`].
    pub data: Vec<u8>,
}

impl Event {
    /// Decodes the data as JSON.
    pub fn json<T: serde::de::DeserializeOwned>(&self) -> Result<T> {
        serde_json::from_slice(&self.data).map_err(|e| super::json_err(&self.id, e))
    }
}

/// A queue of events in the order they were put, across all writers
/// (processes and hosts): each event is a persistent sequential node under
/// the root, numbered by the store. Readers process events in order and
/// delete them once handled.
///
/// ```no_run
/// # async fn demo(store: std::sync::Arc<dyn dspans_store::Store>) -> dspans_store::Result<()> {
/// use dspans_store::recipes::EventQueue;
/// let events = EventQueue::new(store, "/pipelines/gate/events");
/// events.put_json(&serde_json::json!({"type": "change", "number": 42})).await?;
/// for event in events.read().await? {
///     // handle event.data ...
///     events.delete(&event).await?;
/// }
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct EventQueue {
    store: Arc<dyn Store>,
    root: String,
    ready: Arc<AtomicBool>,
}

impl EventQueue {
    /// A queue rooted at `root` (created on first use).
    pub fn new(store: Arc<dyn Store>, root: impl Into<String>) -> EventQueue {
        EventQueue {
            store,
            root: root.into(),
            ready: Arc::new(AtomicBool::new(false)),
        }
    }

    /// The queue's root path.
    pub fn root(&self) -> &str {
        &self.root
    }

    async fn ensure_root(&self) -> Result<()> {
        if !self.ready.load(Ordering::Relaxed) {
            self.store.create_all(&self.root, b"").await?;
            self.ready.store(true, Ordering::Relaxed);
        }
        Ok(())
    }

    /// Appends an event; returns its id.
    pub async fn put(&self, data: &[u8]) -> Result<String> {
        self.ensure_root().await?;
        let path = self
            .store
            .create(
                &join_path(&self.root, "event-"),
                data,
                CreateMode::PersistentSequential,
            )
            .await?;
        Ok(crate::path::node_name(&path).to_string())
    }

    /// Appends an event encoded as JSON.
    pub async fn put_json<T: Serialize + ?Sized>(&self, value: &T) -> Result<String> {
        let data = serde_json::to_vec(value).map_err(|e| super::json_err(&self.root, e))?;
        self.put(&data).await
    }

    /// The operation that appends an event, for a [`Store::multi`] that
    /// writes it together with other changes (e.g.
    /// [`super::JobQueue::complete_with`]). Creates the queue's root first
    /// if needed. The created node's name is in the multi's
    /// `OpResult::Created` path.
    pub async fn put_op(&self, data: Vec<u8>) -> Result<Op> {
        self.ensure_root().await?;
        Ok(Op::create(
            join_path(&self.root, "event-"),
            data,
            CreateMode::PersistentSequential,
        ))
    }

    /// Ids of the pending events, oldest first.
    pub async fn ids(&self) -> Result<Vec<String>> {
        let names = match self.store.children(&self.root).await {
            Ok(names) => names,
            Err(StoreError::NoNode { .. }) => return Ok(Vec::new()),
            Err(err) => return Err(err),
        };
        let mut ids: Vec<(i64, String)> = names
            .into_iter()
            .filter_map(|n| sequence_of(&n).map(|s| (s, n)))
            .collect();
        ids.sort();
        Ok(ids.into_iter().map(|(_, n)| n).collect())
    }

    /// The pending events, oldest first (events deleted meanwhile are skipped).
    pub async fn read(&self) -> Result<Vec<Event>> {
        let mut events = Vec::new();
        for id in self.ids().await? {
            if let Some(node) = self.store.get(&join_path(&self.root, &id)).await? {
                events.push(Event {
                    seq: sequence_of(&id).unwrap_or_default(),
                    id,
                    data: node.data,
                });
            }
        }
        Ok(events)
    }

    /// Deletes a handled event. Returns false if it was already gone.
    pub async fn delete(&self, event: &Event) -> Result<bool> {
        match self
            .store
            .delete(&join_path(&self.root, &event.id), None)
            .await
        {
            Ok(()) => Ok(true),
            Err(StoreError::NoNode { .. }) => Ok(false),
            Err(err) => Err(err),
        }
    }

    /// Notifies puts and deletes.
    pub async fn watch(&self) -> Result<Watch> {
        self.ensure_root().await?;
        self.store.watch_children(&self.root).await
    }

    /// Waits up to `timeout` until the queue is not empty; returns whether
    /// it is.
    pub async fn wait(&self, timeout: Duration) -> Result<bool> {
        let deadline = tokio::time::Instant::now() + timeout;
        let mut watch = self.watch().await?;
        loop {
            if !self.ids().await?.is_empty() {
                return Ok(true);
            }
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            if left.is_zero() || watch.next_timeout(left).await.is_none() {
                return Ok(!self.ids().await?.is_empty());
            }
        }
    }
}
