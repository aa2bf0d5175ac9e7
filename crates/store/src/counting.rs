//! A store that counts the round trips made through it, for benchmarks and
//! tests that check what an operation costs in store traffic.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use async_trait::async_trait;
use tokio::sync::watch;

use crate::error::{Result, StoreError};
use crate::store::Store;
use crate::types::{CreateMode, Node, Op, OpResult, SessionState, Stat, Watch};

/// Wraps a store and counts every request sent to it (a multi-operation
/// counts once: it is one round trip).
///
/// ```no_run
/// # async fn demo(inner: std::sync::Arc<dyn dspans_store::Store>) -> dspans_store::Result<()> {
/// use dspans_store::{CountingStore, Store as _};
/// let store = CountingStore::new(inner);
/// store.get("/a").await?;
/// assert_eq!(store.round_trips(), 1);
/// # Ok(()) }
/// ```
#[derive(Debug)]
pub struct CountingStore {
    inner: Arc<dyn Store>,
    count: AtomicU64,
    writes: AtomicU64,
    waited_ns: AtomicU64,
}

impl CountingStore {
    /// Counts the requests made to `inner` through this handle.
    pub fn new(inner: Arc<dyn Store>) -> CountingStore {
        CountingStore {
            inner,
            count: AtomicU64::new(0),
            writes: AtomicU64::new(0),
            waited_ns: AtomicU64::new(0),
        }
    }

    /// The wrapped store (requests through it are not counted).
    pub fn inner(&self) -> &Arc<dyn Store> {
        &self.inner
    }

    /// Requests sent so far.
    pub fn round_trips(&self) -> u64 {
        self.count.load(Ordering::Relaxed)
    }

    /// Of those, the writes (create, set, delete, multi-operation).
    pub fn writes(&self) -> u64 {
        self.writes.load(Ordering::Relaxed)
    }

    /// Time spent waiting for answers so far (requests made concurrently
    /// through this handle each count their own wait).
    pub fn waited(&self) -> std::time::Duration {
        std::time::Duration::from_nanos(self.waited_ns.load(Ordering::Relaxed))
    }

    async fn timed<T>(&self, request: impl std::future::Future<Output = T>) -> T {
        let started = std::time::Instant::now();
        let answer = request.await;
        let nanos = u64::try_from(started.elapsed().as_nanos()).unwrap_or(u64::MAX);
        self.waited_ns.fetch_add(nanos, Ordering::Relaxed);
        answer
    }

    fn tick(&self) {
        self.count.fetch_add(1, Ordering::Relaxed);
    }

    fn tick_write(&self) {
        self.tick();
        self.writes.fetch_add(1, Ordering::Relaxed);
    }
}

#[async_trait]
impl Store for CountingStore {
    fn backend(&self) -> &'static str {
        self.inner.backend()
    }

    fn session_id(&self) -> i64 {
        self.inner.session_id()
    }

    fn session(&self) -> watch::Receiver<SessionState> {
        self.inner.session()
    }

    fn failure(&self) -> Option<StoreError> {
        self.inner.failure()
    }

    async fn create(&self, path: &str, data: &[u8], mode: CreateMode) -> Result<String> {
        self.tick_write();
        self.timed(self.inner.create(path, data, mode)).await
    }

    async fn get(&self, path: &str) -> Result<Option<Node>> {
        self.tick();
        self.timed(self.inner.get(path)).await
    }

    async fn set(&self, path: &str, data: &[u8], expected_version: Option<i32>) -> Result<Stat> {
        self.tick_write();
        self.timed(self.inner.set(path, data, expected_version))
            .await
    }

    async fn delete(&self, path: &str, expected_version: Option<i32>) -> Result<()> {
        self.tick_write();
        self.timed(self.inner.delete(path, expected_version)).await
    }

    async fn exists(&self, path: &str) -> Result<Option<Stat>> {
        self.tick();
        self.timed(self.inner.exists(path)).await
    }

    async fn exists_all(&self, paths: &[String]) -> Result<Vec<bool>> {
        // One round trip per chunk, as both backends read them.
        let trips = paths.len().div_ceil(crate::store::EXISTS_ALL_CHUNK);
        self.count.fetch_add(trips as u64, Ordering::Relaxed);
        self.timed(self.inner.exists_all(paths)).await
    }

    async fn children(&self, path: &str) -> Result<Vec<String>> {
        self.tick();
        self.timed(self.inner.children(path)).await
    }

    async fn multi(&self, ops: &[Op]) -> Result<Vec<OpResult>> {
        self.tick_write();
        self.timed(self.inner.multi(ops)).await
    }

    async fn watch(&self, path: &str) -> Result<Watch> {
        self.tick();
        self.timed(self.inner.watch(path)).await
    }

    async fn watch_children(&self, path: &str) -> Result<Watch> {
        self.tick();
        self.timed(self.inner.watch_children(path)).await
    }

    async fn close(&self) -> Result<()> {
        self.inner.close().await
    }
}
