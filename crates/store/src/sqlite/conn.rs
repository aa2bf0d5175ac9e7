//! Connections to a store's SQLite file: opening one (never creating the
//! file), waiting for other writers, and telling fatal SQLite errors from
//! the others.

use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use rusqlite::{Connection, OpenFlags};

use crate::error::{Result, StoreError};

/// Maps a SQLite error. A corrupt file (`SQLITE_CORRUPT`), a file that is
/// not a database (`SQLITE_NOTADB`) and a write to a database file that
/// was moved or removed (`SQLITE_READONLY_DBMOVED`) are
/// [`StoreError::Fatal`] with an empty path, which the store fills in
/// when it fails its session ([`super::SqliteStore`]); anything else is
/// [`StoreError::Backend`].
pub(crate) fn db(err: rusqlite::Error) -> StoreError {
    if is_fatal(&err) {
        StoreError::Fatal {
            path: String::new(),
            reason: err.to_string(),
        }
    } else {
        StoreError::sqlite(err)
    }
}

fn is_fatal(err: &rusqlite::Error) -> bool {
    match err {
        rusqlite::Error::SqliteFailure(e, _) => {
            matches!(
                e.code,
                rusqlite::ErrorCode::DatabaseCorrupt | rusqlite::ErrorCode::NotADatabase
            ) || e.extended_code == rusqlite::ffi::SQLITE_READONLY_DBMOVED
        }
        _ => false,
    }
}

/// Sets a connection up for the store: the busy handler, WAL mode,
/// prepared statements kept.
pub(crate) fn configure(conn: &Connection, busy_timeout: Duration) -> Result<()> {
    BUSY_TIMEOUT_MS.fetch_max(busy_timeout.as_millis() as u64, Ordering::Relaxed);
    conn.busy_handler(Some(wait_while_busy)).map_err(db)?;
    // Every statement the backend runs stays prepared: parsing SQL took a
    // tenth of the CPU time of a busy pipeline.
    conn.set_prepared_statement_cache_capacity(64);
    let deadline = Instant::now() + busy_timeout;
    retry_busy(deadline, || conn.pragma_update(None, "journal_mode", "WAL")).map_err(db)?;
    retry_busy(deadline, || {
        conn.pragma_update(None, "synchronous", "NORMAL")
    })
    .map_err(db)?;
    Ok(())
}

/// A read-write connection to `path`, which must exist.
pub(crate) fn open_existing(path: &Path) -> Result<Connection> {
    let flags = OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX;
    Connection::open_with_flags(path, flags).map_err(|e| StoreError::Backend {
        backend: "sqlite",
        message: format!("cannot open {}: {e}", path.display()),
    })
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
pub(crate) fn retry_busy<T>(
    deadline: Instant,
    mut f: impl FnMut() -> rusqlite::Result<T>,
) -> rusqlite::Result<T> {
    let mut pause = Duration::from_millis(1);
    loop {
        match f() {
            Err(rusqlite::Error::SqliteFailure(e, _))
                if matches!(
                    e.code,
                    rusqlite::ErrorCode::DatabaseBusy | rusqlite::ErrorCode::DatabaseLocked
                ) && Instant::now() < deadline =>
            {
                std::thread::sleep(pause);
                pause = (pause * 2).min(Duration::from_millis(50));
            }
            result => return result,
        }
    }
}
