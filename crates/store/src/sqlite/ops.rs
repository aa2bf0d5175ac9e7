//! Synchronous SQL for the SQLite backend. Every function runs inside a
//! transaction opened by the caller.

use rusqlite::{params, Connection, OptionalExtension, Transaction, TransactionBehavior};

use super::conn::db;
use crate::error::{Result, StoreError};
use crate::path::{check_size, node_name, parent_path, sequence_suffix, validate_path};
use crate::types::{CreateMode, Node, Op, OpResult, Stat};

pub(crate) const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS nodes (
    path     TEXT PRIMARY KEY NOT NULL,
    parent   TEXT,
    data     BLOB NOT NULL,
    version  INTEGER NOT NULL DEFAULT 0,
    cversion INTEGER NOT NULL DEFAULT 0,
    owner    INTEGER,
    czxid    INTEGER NOT NULL,
    mzxid    INTEGER NOT NULL,
    ctime    INTEGER NOT NULL,
    mtime    INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS nodes_parent ON nodes(parent);
CREATE INDEX IF NOT EXISTS nodes_owner ON nodes(owner) WHERE owner IS NOT NULL;
CREATE TABLE IF NOT EXISTS leases (
    id         INTEGER PRIMARY KEY AUTOINCREMENT,
    expires_ms INTEGER NOT NULL,
    timeout_ms INTEGER NOT NULL,
    pid        INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS meta (
    key   TEXT PRIMARY KEY NOT NULL,
    value INTEGER NOT NULL
);
INSERT OR IGNORE INTO meta (key, value) VALUES ('zxid', 0);
INSERT OR IGNORE INTO nodes (path, parent, data, czxid, mzxid, ctime, mtime)
    VALUES ('/', NULL, x'', 0, 0, 0, 0);
";

pub(crate) fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// Runs `f` in an immediate (write) transaction with a fresh change id, and
/// bumps the store's change counter when it succeeds.
pub(crate) fn write_tx<T>(
    conn: &mut Connection,
    f: impl FnOnce(&Transaction<'_>, i64) -> Result<T>,
) -> Result<T> {
    let tx = conn
        .transaction_with_behavior(TransactionBehavior::Immediate)
        .map_err(db)?;
    let zxid: i64 = tx
        .prepare_cached("SELECT value FROM meta WHERE key = 'zxid'")
        .map_err(db)?
        .query_row([], |r| r.get::<_, i64>(0))
        .map_err(db)?
        + 1;
    let out = f(&tx, zxid)?; // dropping `tx` on error rolls back
    tx.prepare_cached("UPDATE meta SET value = ?1 WHERE key = 'zxid'")
        .map_err(db)?
        .execute([zxid])
        .map_err(db)?;
    tx.commit().map_err(db)?;
    Ok(out)
}

pub(crate) fn change_counter(conn: &Connection) -> Result<i64> {
    conn.prepare_cached("SELECT value FROM meta WHERE key = 'zxid'")
        .map_err(db)?
        .query_row([], |r| r.get(0))
        .map_err(db)
}

/// The columns of a [`Stat`], in the order [`stat_from_row`] reads them
/// (a macro, so that the statements stay `&'static str` for the cache).
macro_rules! stat_columns {
    () => {
        "length(data), version, cversion, czxid, mzxid, ctime, mtime, owner,
         (SELECT COUNT(*) FROM nodes c WHERE c.parent = n.path)"
    };
}

fn stat_from_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<Stat> {
    Ok(Stat {
        data_length: r.get::<_, i64>(0)? as usize,
        version: r.get(1)?,
        cversion: r.get(2)?,
        created_id: r.get(3)?,
        modified_id: r.get(4)?,
        ctime_ms: r.get(5)?,
        mtime_ms: r.get(6)?,
        ephemeral: r.get::<_, Option<i64>>(7)?.is_some(),
        owner_session: r.get::<_, Option<i64>>(7)?.unwrap_or(0),
        num_children: r.get::<_, i64>(8)? as usize,
    })
}

pub(crate) fn stat(conn: &Connection, path: &str) -> Result<Option<Stat>> {
    conn.prepare_cached(concat!(
        "SELECT ",
        stat_columns!(),
        " FROM nodes n WHERE path = ?1"
    ))
    .map_err(db)?
    .query_row([path], stat_from_row)
    .optional()
    .map_err(db)
}

pub(crate) fn get(conn: &Connection, path: &str) -> Result<Option<Node>> {
    // One statement: the stat and the data come from one snapshot, even
    // while another process deletes or changes the node.
    conn.prepare_cached(concat!(
        "SELECT ",
        stat_columns!(),
        ", data FROM nodes n WHERE path = ?1"
    ))
    .map_err(db)?
    .query_row([path], |r| {
        Ok(Node {
            stat: stat_from_row(r)?,
            data: r.get(9)?,
        })
    })
    .optional()
    .map_err(db)
}

pub(crate) fn children(conn: &Connection, path: &str) -> Result<Vec<String>> {
    let tx = conn.unchecked_transaction().map_err(db)?;
    if stat(&tx, path)?.is_none() {
        return Err(StoreError::NoNode { path: path.into() });
    }
    let mut q = tx
        .prepare_cached("SELECT path FROM nodes WHERE parent = ?1")
        .map_err(db)?;
    let rows = q.query_map([path], |r| r.get::<_, String>(0)).map_err(db)?;
    let mut names = Vec::new();
    for row in rows {
        names.push(node_name(&row.map_err(db)?).to_string());
    }
    names.sort();
    Ok(names)
}

/// Whether each path exists, read in one snapshot.
pub(crate) fn exist(conn: &Connection, paths: &[String]) -> Result<Vec<bool>> {
    let tx = conn.unchecked_transaction().map_err(db)?;
    let mut query = tx
        .prepare_cached("SELECT EXISTS (SELECT 1 FROM nodes WHERE path = ?1)")
        .map_err(db)?;
    let mut found = Vec::with_capacity(paths.len());
    for path in paths {
        found.push(query.query_row([path], |r| r.get(0)).map_err(db)?);
    }
    Ok(found)
}

fn version_of(tx: &Transaction<'_>, path: &str) -> Result<Option<i32>> {
    tx.prepare_cached("SELECT version FROM nodes WHERE path = ?1")
        .map_err(db)?
        .query_row([path], |r| r.get(0))
        .optional()
        .map_err(db)
}

fn bump_cversion(tx: &Transaction<'_>, parent: &str) -> Result<()> {
    tx.prepare_cached("UPDATE nodes SET cversion = cversion + 1 WHERE path = ?1")
        .map_err(db)?
        .execute([parent])
        .map_err(db)?;
    Ok(())
}

fn lease_alive(tx: &Transaction<'_>, lease: i64) -> Result<bool> {
    let expires: Option<i64> = tx
        .prepare_cached("SELECT expires_ms FROM leases WHERE id = ?1")
        .map_err(db)?
        .query_row([lease], |r| r.get(0))
        .optional()
        .map_err(db)?;
    Ok(matches!(expires, Some(e) if e >= now_ms()))
}

pub(crate) fn create(
    tx: &Transaction<'_>,
    lease: i64,
    zxid: i64,
    path: &str,
    data: &[u8],
    mode: CreateMode,
) -> Result<String> {
    validate_path(path)?;
    check_size(path, data)?;
    let Some(parent) = parent_path(path) else {
        return Err(StoreError::NodeExists { path: path.into() });
    };
    let parent_row: Option<(i32, Option<i64>)> = tx
        .prepare_cached("SELECT cversion, owner FROM nodes WHERE path = ?1")
        .map_err(db)?
        .query_row([parent], |r| Ok((r.get(0)?, r.get(1)?)))
        .optional()
        .map_err(db)?;
    let Some((cversion, parent_owner)) = parent_row else {
        return Err(StoreError::NoNode {
            path: parent.into(),
        });
    };
    if parent_owner.is_some() {
        return Err(StoreError::NoChildrenForEphemerals { path: path.into() });
    }
    let actual = if mode.is_sequential() {
        format!("{path}{}", sequence_suffix(i64::from(cversion)))
    } else {
        path.to_string()
    };
    if version_of(tx, &actual)?.is_some() {
        return Err(StoreError::NodeExists { path: actual });
    }
    let owner = if mode.is_ephemeral() {
        if !lease_alive(tx, lease)? {
            return Err(StoreError::SessionExpired);
        }
        Some(lease)
    } else {
        None
    };
    let now = now_ms();
    tx.prepare_cached(
        "INSERT INTO nodes (path, parent, data, owner, czxid, mzxid, ctime, mtime)
         VALUES (?1, ?2, ?3, ?4, ?5, ?5, ?6, ?6)",
    )
    .map_err(db)?
    .execute(params![actual, parent, data, owner, zxid, now])
    .map_err(db)?;
    bump_cversion(tx, parent)?;
    Ok(actual)
}

pub(crate) fn set(
    tx: &Transaction<'_>,
    zxid: i64,
    path: &str,
    data: &[u8],
    expected: Option<i32>,
) -> Result<i32> {
    validate_path(path)?;
    check_size(path, data)?;
    let Some(version) = version_of(tx, path)? else {
        return Err(StoreError::NoNode { path: path.into() });
    };
    if let Some(expected) = expected {
        if expected != version {
            return Err(StoreError::BadVersion {
                path: path.into(),
                expected,
            });
        }
    }
    let new_version = version.wrapping_add(1);
    tx.prepare_cached(
        "UPDATE nodes SET data = ?2, version = ?3, mzxid = ?4, mtime = ?5 WHERE path = ?1",
    )
    .map_err(db)?
    .execute(params![path, data, new_version, zxid, now_ms()])
    .map_err(db)?;
    Ok(new_version)
}

pub(crate) fn delete(tx: &Transaction<'_>, path: &str, expected: Option<i32>) -> Result<()> {
    validate_path(path)?;
    if path == "/" {
        return Err(StoreError::InvalidArgument(
            "the root node cannot be deleted".into(),
        ));
    }
    let Some(version) = version_of(tx, path)? else {
        return Err(StoreError::NoNode { path: path.into() });
    };
    if let Some(expected) = expected {
        if expected != version {
            return Err(StoreError::BadVersion {
                path: path.into(),
                expected,
            });
        }
    }
    let has_children: bool = tx
        .prepare_cached("SELECT EXISTS (SELECT 1 FROM nodes WHERE parent = ?1)")
        .map_err(db)?
        .query_row([path], |r| r.get(0))
        .map_err(db)?;
    if has_children {
        return Err(StoreError::NotEmpty { path: path.into() });
    }
    tx.prepare_cached("DELETE FROM nodes WHERE path = ?1")
        .map_err(db)?
        .execute([path])
        .map_err(db)?;
    if let Some(parent) = parent_path(path) {
        bump_cversion(tx, parent)?;
    }
    Ok(())
}

pub(crate) fn check(tx: &Transaction<'_>, path: &str, expected: i32) -> Result<()> {
    validate_path(path)?;
    match version_of(tx, path)? {
        None => Err(StoreError::NoNode { path: path.into() }),
        Some(v) if v != expected => Err(StoreError::BadVersion {
            path: path.into(),
            expected,
        }),
        Some(_) => Ok(()),
    }
}

pub(crate) fn multi(
    tx: &Transaction<'_>,
    lease: i64,
    zxid: i64,
    ops: &[Op],
) -> Result<Vec<OpResult>> {
    let mut results = Vec::with_capacity(ops.len());
    for (index, op) in ops.iter().enumerate() {
        let result = match op {
            Op::Check { path, version } => check(tx, path, *version).map(|_| OpResult::Checked),
            Op::Create { path, data, mode } => {
                create(tx, lease, zxid, path, data, *mode).map(|path| OpResult::Created { path })
            }
            Op::Set {
                path,
                data,
                version,
            } => set(tx, zxid, path, data, *version).map(|version| OpResult::Set { version }),
            Op::Delete { path, version } => delete(tx, path, *version).map(|_| OpResult::Deleted),
        };
        match result {
            Ok(r) => results.push(r),
            Err(err) => {
                return Err(StoreError::Multi {
                    index,
                    source: Box::new(err),
                })
            }
        }
    }
    Ok(results)
}

/// Deletes the ephemeral nodes of `lease` and the lease itself.
pub(crate) fn drop_lease(tx: &Transaction<'_>, lease: i64) -> Result<usize> {
    let mut q = tx
        .prepare_cached("SELECT path, parent FROM nodes WHERE owner = ?1")
        .map_err(db)?;
    let rows: Vec<(String, String)> = q
        .query_map([lease], |r| Ok((r.get(0)?, r.get(1)?)))
        .map_err(db)?
        .collect::<std::result::Result<_, _>>()
        .map_err(db)?;
    for (path, parent) in &rows {
        tx.prepare_cached("DELETE FROM nodes WHERE path = ?1")
            .map_err(db)?
            .execute([path])
            .map_err(db)?;
        bump_cversion(tx, parent)?;
    }
    tx.prepare_cached("DELETE FROM leases WHERE id = ?1")
        .map_err(db)?
        .execute([lease])
        .map_err(db)?;
    Ok(rows.len())
}

/// Ids of leases whose deadline passed, and owners of ephemeral nodes
/// whose lease row is missing.
pub(crate) fn expired_leases(conn: &Connection) -> Result<Vec<i64>> {
    let mut q = conn
        .prepare_cached(
            "SELECT id FROM leases WHERE expires_ms < ?1
             UNION
             SELECT DISTINCT owner FROM nodes
             WHERE owner IS NOT NULL AND owner NOT IN (SELECT id FROM leases)",
        )
        .map_err(db)?;
    let rows = q
        .query_map([now_ms()], |r| r.get(0))
        .map_err(db)?
        .collect::<std::result::Result<Vec<i64>, _>>()
        .map_err(db)?;
    Ok(rows)
}

/// Extends `lease`; false when it is gone or already past its deadline.
pub(crate) fn heartbeat(conn: &Connection, lease: i64, timeout_ms: i64) -> Result<bool> {
    let now = now_ms();
    let n = conn
        .prepare_cached("UPDATE leases SET expires_ms = ?2 WHERE id = ?1 AND expires_ms >= ?3")
        .map_err(db)?
        .execute(params![lease, now + timeout_ms, now])
        .map_err(db)?;
    Ok(n == 1)
}

pub(crate) fn new_lease(conn: &mut Connection, timeout_ms: i64) -> Result<i64> {
    write_tx(conn, |tx, _| {
        tx.prepare_cached("INSERT INTO leases (expires_ms, timeout_ms, pid) VALUES (?1, ?2, ?3)")
            .map_err(db)?
            .execute(params![
                now_ms() + timeout_ms,
                timeout_ms,
                std::process::id()
            ])
            .map_err(db)?;
        Ok(tx.last_insert_rowid())
    })
}

/// Identity and version used to detect changes for notifications:
/// `(created_id, version, cversion)` or `None` when the node is missing.
pub(crate) fn probe(conn: &Connection, path: &str) -> Result<Option<(i64, i32, i32)>> {
    conn.prepare_cached("SELECT czxid, version, cversion FROM nodes WHERE path = ?1")
        .map_err(db)?
        .query_row([path], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
        .optional()
        .map_err(db)
}
