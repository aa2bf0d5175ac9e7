//! The store's SQLite file: creating it on purpose ([`init`]), recognising
//! it when opening ([`check_store`]), and noticing when the file a store
//! has open is no longer the one at its path ([`FileIds`]).

use std::os::unix::fs::{
    DirBuilderExt as _, MetadataExt as _, OpenOptionsExt as _, PermissionsExt,
};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use rusqlite::Connection;

use super::conn::{open_existing, retry_busy};
use super::ops;
use crate::config::StoreConfig;
use crate::error::{Result, StoreError};
use crate::Initialized;

/// `PRAGMA application_id` of the store's files ("dsps"), so that
/// `file(1)` and [`check_store`] can tell them from other databases.
pub(crate) const APPLICATION_ID: i32 = 0x6473_7073;

/// The tables every store has.
const TABLES: [&str; 3] = ["nodes", "leases", "meta"];

fn not_a_store(path: &Path, reason: impl Into<String>) -> StoreError {
    StoreError::NotAStore {
        path: path.display().to_string(),
        reason: reason.into(),
    }
}

fn io_error(what: &str, path: &Path, err: std::io::Error) -> StoreError {
    StoreError::sqlite(format!("cannot {what} {}: {err}", path.display()))
}

/// The file's `-wal` (write-ahead log) companion.
pub(crate) fn wal_path(path: &Path) -> PathBuf {
    let mut p = path.as_os_str().to_owned();
    p.push("-wal");
    PathBuf::from(p)
}

/// The file's `-shm` (shared-memory index of the write-ahead log)
/// companion.
pub(crate) fn shm_path(path: &Path) -> PathBuf {
    let mut p = path.as_os_str().to_owned();
    p.push("-shm");
    PathBuf::from(p)
}

/// Creates the store of `config.path` unless it exists: a new file with
/// the store's tables, mode `config.file_mode`, in a directory created
/// with [`StoreConfig::dir_mode`] when missing. The file appears whole or
/// not at all (built under a temporary name, then linked into place), so
/// processes initialising together agree on one store. An existing file
/// is left as it is if it is a store, and refused otherwise.
pub(crate) fn init(config: &StoreConfig) -> Result<Initialized> {
    let path = &config.path;
    match std::fs::metadata(path) {
        Ok(_) => {
            check_existing(path, config)?;
            return Ok(Initialized::Existing);
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(io_error("inspect", path, e)),
    }
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    };
    if !dir.exists() {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(config.dir_mode())
            .create(&dir)
            .map_err(|e| io_error("create", &dir, e))?;
        // The umask may have taken bits away: the configured mode wins.
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(config.dir_mode()))
            .map_err(|e| io_error("set the mode of", &dir, e))?;
    }
    let name = path
        .file_name()
        .ok_or_else(|| StoreError::Config(format!("path {} names no file", path.display())))?;
    let mut temp_name = std::ffi::OsString::from(".");
    temp_name.push(name);
    static ATTEMPT: AtomicU64 = AtomicU64::new(0);
    let attempt = ATTEMPT.fetch_add(1, Ordering::Relaxed);
    temp_name.push(format!(".init-{}-{attempt}", std::process::id()));
    let temp = dir.join(temp_name);
    let created = build(&temp, config).and_then(|()| match std::fs::hard_link(&temp, path) {
        Ok(()) => Ok(Initialized::Created),
        // Another process initialised it meanwhile.
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(Initialized::Existing),
        Err(e) => Err(io_error("create", path, e)),
    });
    for leftover in [temp.clone(), wal_path(&temp), shm_path(&temp)] {
        let _ = std::fs::remove_file(leftover);
    }
    if created.as_ref().is_ok_and(|c| *c == Initialized::Existing) {
        check_existing(path, config)?;
    }
    created
}

/// Writes a new store's file at `temp` (its name holds this process's
/// id, so a file there is a leftover of a dead process's interrupted init).
fn build(temp: &Path, config: &StoreConfig) -> Result<()> {
    let _ = std::fs::remove_file(temp);
    let file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(config.file_mode)
        .open(temp)
        .map_err(|e| io_error("create", temp, e))?;
    file.set_permissions(std::fs::Permissions::from_mode(config.file_mode))
        .map_err(|e| io_error("set the mode of", temp, e))?;
    drop(file);
    let conn = open_existing(temp)?;
    let setup = format!(
        "PRAGMA journal_mode = WAL; PRAGMA application_id = {APPLICATION_ID}; \
         PRAGMA user_version = 1; {}",
        ops::SCHEMA
    );
    conn.execute_batch(&setup)
        .map_err(|e| StoreError::sqlite(format!("cannot create {}: {e}", temp.display())))?;
    // Closing checkpoints the write-ahead log into the file and removes it.
    conn.close()
        .map_err(|(_, e)| StoreError::sqlite(format!("cannot create {}: {e}", temp.display())))
}

/// Checks that the existing file of `config.path` is a store.
fn check_existing(path: &Path, config: &StoreConfig) -> Result<()> {
    let conn = open_existing(path).map_err(|e| not_a_store(path, e.to_string()))?;
    let deadline = Instant::now() + std::time::Duration::from_millis(config.busy_timeout_ms);
    check_store(&conn, path, deadline)
}

/// Refuses a file that is empty or is not a store: another kind of file,
/// or a SQLite database of someone else's. Reads only, so a foreign file
/// is left exactly as it was.
pub(crate) fn check_store(conn: &Connection, path: &Path, deadline: Instant) -> Result<()> {
    let size = std::fs::metadata(path)
        .map_err(|e| not_a_store(path, format!("cannot inspect the file: {e}")))?
        .len();
    if size == 0 {
        return Err(not_a_store(
            path,
            "the file is empty (0 bytes); restore it from a backup, or remove it and create a new store with `dspans store init`",
        ));
    }
    let foreign =
        |e: rusqlite::Error| not_a_store(path, format!("not a usable SQLite database ({e})"));
    let app_id: i32 = retry_busy(deadline, || {
        conn.query_row("PRAGMA application_id", [], |r| r.get(0))
    })
    .map_err(foreign)?;
    if app_id != 0 && app_id != APPLICATION_ID {
        return Err(not_a_store(
            path,
            format!("a SQLite database of another application (application_id {app_id:#x})"),
        ));
    }
    // Stores made before the application id was written have 0: their
    // tables tell.
    let found: i64 = retry_busy(deadline, || {
        conn.query_row(
            "SELECT COUNT(*) FROM sqlite_master WHERE type = 'table' AND name IN (?1, ?2, ?3)",
            TABLES,
            |r| r.get(0),
        )
    })
    .map_err(foreign)?;
    if found != TABLES.len() as i64 {
        return Err(not_a_store(
            path,
            format!(
                "a SQLite database without the store's tables ({})",
                TABLES.join(", ")
            ),
        ));
    }
    Ok(())
}

/// Device and inode of a file.
type FileId = (u64, u64);

fn file_id(path: &Path) -> std::io::Result<(FileId, u64)> {
    let meta = std::fs::metadata(path)?;
    Ok(((meta.dev(), meta.ino()), meta.len()))
}

/// The files a store has open, as they were when it opened them: the
/// database, its write-ahead log and the log's shared-memory index. SQLite
/// keeps using its open files whatever happens to their paths, so a file
/// removed, replaced or truncated behind its back would go unnoticed: a
/// crash would then lose everything written since, and processes opening
/// the path anew would not see the others' locks.
#[derive(Debug, Clone)]
pub(crate) struct FileIds {
    path: PathBuf,
    db: FileId,
    wal: Option<FileId>,
    shm: Option<FileId>,
}

/// A companion file of the database, and what its loss would mean.
struct Companion {
    path: PathBuf,
    what: &'static str,
    if_removed: &'static str,
}

impl FileIds {
    /// The identity of the file at `path` now.
    pub(crate) fn of_db(path: &Path) -> Result<FileIds> {
        let (db, _) = file_id(path)
            .map_err(|e| not_a_store(path, format!("cannot inspect the file: {e}")))?;
        Ok(FileIds {
            path: path.to_path_buf(),
            db,
            wal: None,
            shm: None,
        })
    }

    /// Records the write-ahead log and its shared-memory index as they are
    /// now (they exist from the first transaction on, as long as a
    /// connection is open).
    pub(crate) fn with_wal(mut self) -> FileIds {
        self.wal = file_id(&wal_path(&self.path)).ok().map(|(id, _)| id);
        self.shm = file_id(&shm_path(&self.path)).ok().map(|(id, _)| id);
        self
    }

    /// Whether the database file at the path is still the one recorded.
    pub(crate) fn same_db(&self, other: &FileIds) -> bool {
        self.db == other.db
    }

    /// What changed since the files were recorded, if anything.
    pub(crate) fn changed(&self) -> Option<String> {
        match file_id(&self.path) {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Some("the database file was removed while the store had it open".into())
            }
            Err(e) => return Some(format!("the database file cannot be inspected: {e}")),
            Ok((id, _)) if id != self.db => {
                return Some("the database file was replaced while the store had it open".into())
            }
            Ok((_, 0)) => return Some("the database file was truncated to 0 bytes".into()),
            Ok(_) => {}
        }
        let companions = [
            (
                self.wal,
                Companion {
                    path: wal_path(&self.path),
                    what: "write-ahead log",
                    if_removed:
                        "what was written since the last checkpoint would be lost with the process",
                },
            ),
            (
                self.shm,
                Companion {
                    path: shm_path(&self.path),
                    what: "shared-memory index",
                    if_removed: "processes opening the store now would not see this one's locks",
                },
            ),
        ];
        companions
            .into_iter()
            .find_map(|(recorded, companion)| companion.changed(recorded?))
    }
}

impl Companion {
    /// What happened to the companion recorded as `was`, if anything.
    fn changed(&self, was: FileId) -> Option<String> {
        let (path, what) = (self.path.display(), self.what);
        match file_id(&self.path) {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Some(format!(
                "its {what} {path} was removed while open: {}",
                self.if_removed
            )),
            Err(e) => Some(format!("its {what} {path} cannot be inspected: {e}")),
            Ok((now, _)) if now != was => {
                Some(format!("its {what} {path} was replaced while open"))
            }
            Ok(_) => None,
        }
    }
}
