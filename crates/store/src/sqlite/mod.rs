//! Embedded SQLite backend: one database file shared by the processes of
//! one machine.
//!
//! - The file is created only on purpose ([`SqliteStore::init`], `dspans
//!   store init`), mode 0600 by default; opening a missing, empty or
//!   foreign file is [`StoreError::NotAStore`].
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
//! - A corrupt file, or a database file or write-ahead log replaced or
//!   removed while open (checked on each heartbeat), fails the store:
//!   [`SessionState::Failed`], and [`StoreError::Fatal`] from then on.

mod background;
mod conn;
mod file;
mod ops;

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
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
use crate::Initialized;
use file::FileIds;

/// The SQLite implementation of [`Store`]. Create the file with
/// [`SqliteStore::init`] (or [`SqliteStore::create`]), then open it with
/// [`SqliteStore::open`] or [`crate::open`].
#[derive(Debug)]
pub struct SqliteStore {
    inner: Arc<Inner>,
    background: Mutex<Option<Background>>,
}

/// The store's background thread ([`background::run`]) and what stops it.
#[derive(Debug)]
struct Background {
    /// Dropping it stops the thread.
    stop: std::sync::mpsc::Sender<()>,
    thread: std::thread::JoinHandle<()>,
}

struct Inner {
    path: PathBuf,
    /// The database file and write-ahead log opened, to notice their
    /// replacement or removal.
    files: FileIds,
    conn: Mutex<Connection>,
    lease: i64,
    timeout_ms: i64,
    poll: Duration,
    state: watch::Sender<SessionState>,
    /// Why the store became unusable, once it did.
    failure: OnceLock<StoreError>,
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

impl Inner {
    /// Fails the store for good on a fatal error: records it (naming the
    /// file), tells the owner ([`SessionState::Failed`]) and ends the
    /// watches. Returns the recorded failure.
    fn fail(&self, err: StoreError) -> StoreError {
        let reason = match err.root_cause() {
            StoreError::Fatal { reason, .. } => reason.clone(),
            other => other.to_string(),
        };
        let failure = StoreError::Fatal {
            path: self.path.display().to_string(),
            reason,
        };
        if self.failure.set(failure.clone()).is_ok() {
            tracing::error!(error = %failure, "sqlite store unusable; ending its session");
            self.state.send_replace(SessionState::Failed);
            end_watches(self);
        }
        self.failure.get().cloned().unwrap_or(failure)
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

/// A fatal error met while opening, naming the file.
fn name_file(err: StoreError, path: &Path) -> StoreError {
    match err.root_cause() {
        StoreError::Fatal { reason, .. } => StoreError::Fatal {
            path: path.display().to_string(),
            reason: reason.clone(),
        },
        _ => err,
    }
}

impl SqliteStore {
    /// Creates the store's file at `config.path` unless it exists (mode
    /// `config.file_mode`, 0600 by default, in a directory created 0700
    /// when missing). A file that exists is left as it is when it is a
    /// store ([`Initialized::Existing`]) and refused with
    /// [`StoreError::NotAStore`] when it is empty or something else.
    pub async fn init(config: &StoreConfig) -> Result<Initialized> {
        config.validate()?;
        let config = config.clone();
        tokio::task::spawn_blocking(move || file::init(&config))
            .await
            .map_err(|e| StoreError::sqlite(format!("worker failed: {e}")))?
    }

    /// [`SqliteStore::init`], then [`SqliteStore::open`].
    pub async fn create(config: &StoreConfig) -> Result<SqliteStore> {
        Self::init(config).await?;
        Self::open(config).await
    }

    /// Opens the existing store of `config.path` and starts a session. A
    /// missing, empty or foreign file is [`StoreError::NotAStore`] naming
    /// it: nothing is created or changed then.
    pub async fn open(config: &StoreConfig) -> Result<SqliteStore> {
        config.validate()?;
        let path = config.path.clone();
        let timeout_ms = config.session_timeout_ms.min(i64::MAX as u64) as i64;
        let poll = Duration::from_millis(config.poll_interval_ms);
        let busy_timeout = Duration::from_millis(config.busy_timeout_ms);
        let opened = tokio::task::spawn_blocking(move || {
            open_file(&path, busy_timeout, timeout_ms).map_err(|e| name_file(e, &path))
        })
        .await
        .map_err(|e| StoreError::sqlite(format!("worker failed: {e}")))??;
        let lease = opened.lease;
        let (state, _) = watch::channel(SessionState::Connected);
        let inner = Arc::new(Inner {
            path: config.path.clone(),
            files: opened.files,
            conn: Mutex::new(opened.conn),
            lease,
            timeout_ms,
            poll,
            state,
            failure: OnceLock::new(),
            watches: Mutex::new(Vec::new()),
        });
        let (stop_tx, stop_rx) = std::sync::mpsc::channel();
        let bg = inner.clone();
        let thread = std::thread::Builder::new()
            .name(format!("dspans-sqlite-{lease}"))
            .spawn(move || background::run(bg, opened.background, stop_rx))
            .map_err(|e| StoreError::sqlite(format!("cannot start thread: {e}")))?;
        tracing::debug!(path = %config.path.display(), lease, "sqlite store opened");
        Ok(SqliteStore {
            inner,
            background: Mutex::new(Some(Background {
                stop: stop_tx,
                thread,
            })),
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
        if let Some(failure) = self.inner.failure.get() {
            return Err(failure.clone());
        }
        if self.inner.state.borrow().is_terminal() {
            return Err(StoreError::SessionExpired);
        }
        let inner = self.inner.clone();
        let result = tokio::task::spawn_blocking(move || {
            let mut conn = lock(&inner.conn);
            f(&mut conn, &inner)
        })
        .await
        .map_err(|e| StoreError::sqlite(format!("worker failed: {e}")))?;
        match result {
            Err(err) if err.is_fatal() => Err(self.inner.fail(err)),
            other => other,
        }
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

    /// Ends the session without waiting for the background thread.
    fn end_session(&self, state: SessionState) -> Result<()> {
        if let Some(background) = lock(&self.background).take() {
            drop(background.stop);
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

/// Opens the store's existing file: checks that it is a store before
/// anything is written to it, brings its tables up to date (stores made
/// by older versions), and starts a session.
/// Returns the connection of the store's requests, the background
/// thread's, the session's lease and the files opened.
fn open_file(path: &Path, busy_timeout: Duration, timeout_ms: i64) -> Result<Opened> {
    let missing = |e: StoreError| match e {
        StoreError::NotAStore { path, .. } if !Path::new(&path).exists() => StoreError::NotAStore {
            path,
            reason: "the file does not exist; create the store with `dspans store init`".into(),
        },
        other => other,
    };
    let before = FileIds::of_db(path).map_err(missing)?;
    let mut conn = conn::open_existing(path)?;
    let deadline = Instant::now() + busy_timeout;
    file::check_store(&conn, path, deadline)?;
    let after = FileIds::of_db(path)?;
    if !before.same_db(&after) {
        return Err(StoreError::NotAStore {
            path: path.display().to_string(),
            reason: "the file was replaced while it was being opened".into(),
        });
    }
    conn::configure(&conn, busy_timeout)?;
    conn::retry_busy(deadline, || conn.execute_batch(ops::SCHEMA)).map_err(conn::db)?;
    let background = conn::open_existing(path)?;
    conn::configure(&background, busy_timeout)?;
    if !after.same_db(&FileIds::of_db(path)?) {
        return Err(StoreError::NotAStore {
            path: path.display().to_string(),
            reason: "the file was replaced while it was being opened".into(),
        });
    }
    let lease = ops::new_lease(&mut conn, timeout_ms)?;
    Ok(Opened {
        conn,
        background,
        lease,
        files: after.with_wal(),
    })
}

/// What [`open_file`] opened.
struct Opened {
    conn: Connection,
    background: Connection,
    lease: i64,
    files: FileIds,
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

    fn failure(&self) -> Option<StoreError> {
        self.inner.failure.get().cloned()
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
        let background = lock(&self.background).take();
        tokio::task::spawn_blocking(move || {
            // Once closed, the store's connections are done with the file:
            // the thread's goes now, the other with the last handle.
            if let Some(background) = background {
                drop(background.stop);
                let _ = background.thread.join();
            }
            finish(&inner, SessionState::Closed)
        })
        .await
        .map_err(|e| StoreError::sqlite(format!("worker failed: {e}")))?
    }
}
