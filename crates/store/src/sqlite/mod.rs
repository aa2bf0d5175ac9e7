//! Embedded SQLite backend: one database file shared by the processes of
//! one machine.
//!
//! - The file is in WAL mode with a busy timeout, so readers never block
//!   writers and concurrent writers queue up. Writes use `BEGIN IMMEDIATE`.
//! - Nodes are rows of `nodes` with ZooKeeper's metadata (version, cversion,
//!   czxid/mzxid, times); sequence numbers come from the parent's cversion as
//!   in ZooKeeper.
//! - A session is a row of `leases` whose deadline a background thread pushes
//!   forward every third of the session timeout. Every process reaps leases
//!   past their deadline, deleting their ephemeral nodes; a process that finds
//!   its own lease gone or late reports [`SessionState::Expired`].
//! - Each write bumps a change counter; the background thread polls it every
//!   `poll_interval_ms` and re-reads the watched nodes when it moved.

mod ops;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use rusqlite::Connection;
use tokio::sync::{mpsc, watch};

use crate::config::StoreConfig;
use crate::error::{Result, StoreError};
use crate::path::validate_path;
use crate::store::Store;
use crate::types::{
    CreateMode, EventKind, Node, Op, OpResult, SessionState, Stat, Watch, WatchEvent,
};

/// The SQLite implementation of [`Store`]. Build it with [`crate::open`] or
/// [`SqliteStore::open`].
#[derive(Debug)]
pub struct SqliteStore {
    inner: Arc<Inner>,
    stop: Mutex<Option<std::sync::mpsc::Sender<()>>>,
}

struct Inner {
    path: PathBuf,
    conn: Mutex<Connection>,
    lease: i64,
    timeout_ms: i64,
    poll: Duration,
    busy_timeout: Duration,
    state: watch::Sender<SessionState>,
    watches: Mutex<Vec<WatchReg>>,
}

impl std::fmt::Debug for Inner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqliteStore")
            .field("path", &self.path)
            .field("lease", &self.lease)
            .finish_non_exhaustive()
    }
}

struct WatchReg {
    path: String,
    children: bool,
    last: Option<(i64, i32, i32)>,
    tx: mpsc::Sender<WatchEvent>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

fn connect(path: &Path, busy_timeout: Duration) -> Result<Connection> {
    let conn = Connection::open(path)
        .map_err(|e| StoreError::sqlite(format!("cannot open {}: {e}", path.display())))?;
    BUSY_TIMEOUT_MS.fetch_max(busy_timeout.as_millis() as u64, Ordering::Relaxed);
    conn.busy_handler(Some(wait_while_busy))
        .map_err(StoreError::sqlite)?;
    // Every statement the backend runs stays prepared: parsing SQL took a
    // tenth of the CPU time of a busy pipeline.
    conn.set_prepared_statement_cache_capacity(64);
    let deadline = std::time::Instant::now() + busy_timeout;
    retry_busy(deadline, || conn.pragma_update(None, "journal_mode", "WAL"))
        .map_err(StoreError::sqlite)?;
    retry_busy(deadline, || {
        conn.pragma_update(None, "synchronous", "NORMAL")
    })
    .map_err(StoreError::sqlite)?;
    Ok(conn)
}

/// The longest busy timeout of the stores this process opened: the busy
/// handler is a plain function, so it reads the limit from here.
static BUSY_TIMEOUT_MS: AtomicU64 = AtomicU64::new(0);

/// SQLite's busy handler, called while another connection holds the write
/// lock (`attempt` counts the calls of one wait). Write transactions here
/// last well under a millisecond, so it first waits in 50 µs steps (SQLite's
/// own handler sleeps 1, 2, 5, 10 ms..., making every contended write pay
/// milliseconds), then in 1 ms steps, and gives up at the busy timeout.
fn wait_while_busy(attempt: i32) -> bool {
    const SHORT_US: u64 = 50;
    const SHORT_STEPS: u64 = 40;
    const LONG_US: u64 = 1_000;
    let attempt = u64::try_from(attempt).unwrap_or(0);
    let (waited_us, step_us) = if attempt < SHORT_STEPS {
        (attempt * SHORT_US, SHORT_US)
    } else {
        (
            SHORT_STEPS * SHORT_US + (attempt - SHORT_STEPS) * LONG_US,
            LONG_US,
        )
    };
    if waited_us
        >= BUSY_TIMEOUT_MS
            .load(Ordering::Relaxed)
            .saturating_mul(1_000)
    {
        return false;
    }
    std::thread::sleep(Duration::from_micros(step_us));
    true
}

/// Retries `f` while SQLite answers "busy" until `deadline`.
///
/// Switching to WAL and creating the schema need locks that SQLite may
/// refuse at once, without calling the busy handler (for example while
/// another process opening the same file recovers its WAL), so several
/// processes starting together would otherwise fail to open the store.
fn retry_busy<T>(
    deadline: std::time::Instant,
    mut f: impl FnMut() -> rusqlite::Result<T>,
) -> rusqlite::Result<T> {
    let mut pause = Duration::from_millis(1);
    loop {
        match f() {
            Err(rusqlite::Error::SqliteFailure(e, _))
                if matches!(
                    e.code,
                    rusqlite::ErrorCode::DatabaseBusy | rusqlite::ErrorCode::DatabaseLocked
                ) && std::time::Instant::now() < deadline =>
            {
                std::thread::sleep(pause);
                pause = (pause * 2).min(Duration::from_millis(50));
            }
            result => return result,
        }
    }
}

impl SqliteStore {
    /// Opens (creating when missing) the database file of `config.path` and
    /// starts a session.
    pub async fn open(config: &StoreConfig) -> Result<SqliteStore> {
        config.validate()?;
        let path = config.path.clone();
        let timeout_ms = config.session_timeout_ms.min(i64::MAX as u64) as i64;
        let poll = Duration::from_millis(config.poll_interval_ms);
        let busy_timeout = Duration::from_millis(config.busy_timeout_ms);
        let (conn, lease) = tokio::task::spawn_blocking(move || -> Result<_> {
            if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
                std::fs::create_dir_all(dir).map_err(|e| {
                    StoreError::sqlite(format!("cannot create {}: {e}", dir.display()))
                })?;
            }
            let mut conn = connect(&path, busy_timeout)?;
            let deadline = std::time::Instant::now() + busy_timeout;
            retry_busy(deadline, || conn.execute_batch(ops::SCHEMA)).map_err(StoreError::sqlite)?;
            let lease = ops::new_lease(&mut conn, timeout_ms)?;
            Ok((conn, lease))
        })
        .await
        .map_err(|e| StoreError::sqlite(format!("worker failed: {e}")))??;
        let (state, _) = watch::channel(SessionState::Connected);
        let inner = Arc::new(Inner {
            path: config.path.clone(),
            conn: Mutex::new(conn),
            lease,
            timeout_ms,
            poll,
            busy_timeout,
            state,
            watches: Mutex::new(Vec::new()),
        });
        let (stop_tx, stop_rx) = std::sync::mpsc::channel();
        let bg = inner.clone();
        std::thread::Builder::new()
            .name(format!("dspans-sqlite-{lease}"))
            .spawn(move || background(bg, stop_rx))
            .map_err(|e| StoreError::sqlite(format!("cannot start thread: {e}")))?;
        tracing::debug!(path = %config.path.display(), lease, "sqlite store opened");
        Ok(SqliteStore {
            inner,
            stop: Mutex::new(Some(stop_tx)),
        })
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.inner.path
    }

    async fn run<T, F>(&self, f: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&mut Connection, &Inner) -> Result<T> + Send + 'static,
    {
        if self.inner.state.borrow().is_terminal() {
            return Err(StoreError::SessionExpired);
        }
        let inner = self.inner.clone();
        tokio::task::spawn_blocking(move || {
            let mut conn = lock(&inner.conn);
            f(&mut conn, &inner)
        })
        .await
        .map_err(|e| StoreError::sqlite(format!("worker failed: {e}")))?
    }

    async fn add_watch(&self, path: &str, children: bool) -> Result<Watch> {
        validate_path(path)?;
        let p = path.to_string();
        let (tx, watch) = Watch::channel();
        self.run(move |conn, inner| {
            let last = ops::probe(conn, &p)?;
            lock(&inner.watches).push(WatchReg {
                path: p,
                children,
                last,
                tx,
            });
            Ok(())
        })
        .await?;
        Ok(watch)
    }

    fn end_session(&self, state: SessionState) -> Result<()> {
        if let Some(stop) = lock(&self.stop).take() {
            drop(stop);
        }
        finish(&self.inner, state)
    }
}

/// Ends the session: deletes its ephemeral nodes and lease first, then tells
/// the owner and ends the watches.
fn finish(inner: &Inner, state: SessionState) -> Result<()> {
    if inner.state.borrow().is_terminal() {
        return Ok(());
    }
    let dropped = {
        let mut conn = lock(&inner.conn);
        ops::write_tx(&mut conn, |tx, _| ops::drop_lease(tx, inner.lease)).map(|_| ())
    };
    inner.state.send_replace(state);
    end_watches(inner);
    dropped
}

fn end_watches(inner: &Inner) {
    for reg in lock(&inner.watches).drain(..) {
        let _ = reg.tx.try_send(WatchEvent {
            kind: EventKind::SessionLost,
            path: reg.path,
        });
    }
}

impl Drop for SqliteStore {
    fn drop(&mut self) {
        if let Err(err) = self.end_session(SessionState::Closed) {
            tracing::warn!(error = %err, "closing sqlite session");
        }
    }
}

/// Heartbeat, lease reaping and change polling, on a thread of its own with
/// its own connection. Ends when the store is dropped or its session ends.
fn background(inner: Arc<Inner>, stop: std::sync::mpsc::Receiver<()>) {
    let mut conn = match connect(&inner.path, inner.busy_timeout) {
        Ok(c) => c,
        Err(err) => {
            tracing::error!(error = %err, "sqlite background connection failed; session lost");
            inner.state.send_replace(SessionState::Expired);
            end_watches(&inner);
            return;
        }
    };
    let heartbeat_every = Duration::from_millis((inner.timeout_ms as u64 / 3).max(1));
    let mut next_heartbeat = Instant::now() + heartbeat_every;
    let mut last_counter = i64::MIN;
    loop {
        match stop.recv_timeout(inner.poll) {
            Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {}
            _ => return,
        }
        if inner.state.borrow().is_terminal() {
            return;
        }
        if Instant::now() >= next_heartbeat {
            match ops::heartbeat(&conn, inner.lease, inner.timeout_ms) {
                Ok(true) => next_heartbeat = Instant::now() + heartbeat_every,
                Ok(false) => {
                    tracing::warn!(lease = inner.lease, "sqlite session expired");
                    // Ephemeral nodes go first, so that whoever is told of the
                    // expiry never sees them again.
                    if let Err(err) =
                        ops::write_tx(&mut conn, |tx, _| ops::drop_lease(tx, inner.lease))
                    {
                        tracing::warn!(error = %err, "dropping expired lease");
                    }
                    inner.state.send_replace(SessionState::Expired);
                    end_watches(&inner);
                    return;
                }
                Err(err) => tracing::warn!(error = %err, "sqlite heartbeat failed; retrying"),
            }
        }
        if let Err(err) = reap(&mut conn, &inner) {
            tracing::warn!(error = %err, "reaping expired sqlite leases");
        }
        match ops::change_counter(&conn) {
            Ok(counter) if counter != last_counter => {
                last_counter = counter;
                if let Err(err) = notify(&conn, &inner) {
                    tracing::warn!(error = %err, "sqlite change poll failed");
                }
            }
            Ok(_) => {}
            Err(err) => tracing::warn!(error = %err, "sqlite change poll failed"),
        }
    }
}

fn reap(conn: &mut Connection, inner: &Inner) -> Result<()> {
    let expired = ops::expired_leases(conn)?;
    for lease in expired.into_iter().filter(|l| *l != inner.lease) {
        let n = ops::write_tx(conn, |tx, _| {
            // Re-check inside the write transaction: another process may
            // have reaped it already.
            let still_expired: bool = tx
                .query_row(
                    "SELECT NOT EXISTS (SELECT 1 FROM leases WHERE id = ?1 AND expires_ms >= ?2)",
                    rusqlite::params![lease, ops::now_ms()],
                    |r| r.get(0),
                )
                .map_err(StoreError::sqlite)?;
            if still_expired {
                ops::drop_lease(tx, lease)
            } else {
                Ok(0)
            }
        })?;
        tracing::info!(lease, ephemerals = n, "reaped expired sqlite session");
    }
    Ok(())
}

fn notify(conn: &Connection, inner: &Inner) -> Result<()> {
    let mut watches = lock(&inner.watches);
    let mut i = 0;
    while i < watches.len() {
        let reg = &mut watches[i];
        if reg.tx.is_closed() {
            watches.swap_remove(i);
            continue;
        }
        let now = ops::probe(conn, &reg.path)?;
        let mut events = Vec::new();
        match (reg.last, now) {
            (None, Some(_)) => events.push(EventKind::Created),
            (Some(_), None) => events.push(EventKind::Deleted),
            (Some(a), Some(b)) if a.0 != b.0 => {
                events.push(EventKind::Deleted);
                events.push(EventKind::Created);
            }
            (Some(a), Some(b)) => {
                if reg.children && a.2 != b.2 {
                    events.push(EventKind::ChildrenChanged);
                }
                if !reg.children && a.1 != b.1 {
                    events.push(EventKind::DataChanged);
                }
            }
            (None, None) => {}
        }
        reg.last = now;
        for kind in events {
            // A full buffer means the consumer has events to read already.
            let _ = reg.tx.try_send(WatchEvent {
                kind,
                path: reg.path.clone(),
            });
        }
        i += 1;
    }
    Ok(())
}

#[async_trait]
impl Store for SqliteStore {
    fn backend(&self) -> &'static str {
        "sqlite"
    }

    fn session_id(&self) -> i64 {
        self.inner.lease
    }

    fn session(&self) -> watch::Receiver<SessionState> {
        self.inner.state.subscribe()
    }

    async fn create(&self, path: &str, data: &[u8], mode: CreateMode) -> Result<String> {
        crate::path::check_size(path, data)?;
        let (p, d) = (path.to_string(), data.to_vec());
        self.run(move |conn, inner| {
            ops::write_tx(conn, |tx, zxid| {
                ops::create(tx, inner.lease, zxid, &p, &d, mode)
            })
        })
        .await
    }

    async fn get(&self, path: &str) -> Result<Option<Node>> {
        validate_path(path)?;
        let p = path.to_string();
        self.run(move |conn, _| ops::get(conn, &p)).await
    }

    async fn set(&self, path: &str, data: &[u8], expected_version: Option<i32>) -> Result<Stat> {
        crate::path::check_size(path, data)?;
        let (p, d) = (path.to_string(), data.to_vec());
        self.run(move |conn, _| {
            ops::write_tx(conn, |tx, zxid| {
                ops::set(tx, zxid, &p, &d, expected_version)?;
                ops::stat(tx, &p)?.ok_or(StoreError::NoNode { path: p.clone() })
            })
        })
        .await
    }

    async fn delete(&self, path: &str, expected_version: Option<i32>) -> Result<()> {
        let p = path.to_string();
        self.run(move |conn, _| ops::write_tx(conn, |tx, _| ops::delete(tx, &p, expected_version)))
            .await
    }

    async fn exists(&self, path: &str) -> Result<Option<Stat>> {
        validate_path(path)?;
        let p = path.to_string();
        self.run(move |conn, _| ops::stat(conn, &p)).await
    }

    async fn children(&self, path: &str) -> Result<Vec<String>> {
        validate_path(path)?;
        let p = path.to_string();
        self.run(move |conn, _| ops::children(conn, &p)).await
    }

    async fn exists_all(&self, paths: &[String]) -> Result<Vec<bool>> {
        for path in paths {
            validate_path(path)?;
        }
        let mut found = Vec::with_capacity(paths.len());
        for chunk in paths.chunks(crate::store::EXISTS_ALL_CHUNK) {
            let chunk = chunk.to_vec();
            found.extend(self.run(move |conn, _| ops::exist(conn, &chunk)).await?);
        }
        Ok(found)
    }

    async fn multi(&self, ops_list: &[Op]) -> Result<Vec<OpResult>> {
        crate::check_multi(ops_list)?;
        let list = ops_list.to_vec();
        self.run(move |conn, inner| {
            ops::write_tx(conn, |tx, zxid| ops::multi(tx, inner.lease, zxid, &list))
        })
        .await
    }

    async fn watch(&self, path: &str) -> Result<Watch> {
        self.add_watch(path, false).await
    }

    async fn watch_children(&self, path: &str) -> Result<Watch> {
        self.add_watch(path, true).await
    }

    async fn close(&self) -> Result<()> {
        let inner = self.inner.clone();
        let stop = lock(&self.stop).take();
        tokio::task::spawn_blocking(move || {
            drop(stop);
            finish(&inner, SessionState::Closed)
        })
        .await
        .map_err(|e| StoreError::sqlite(format!("worker failed: {e}")))?
    }
}
