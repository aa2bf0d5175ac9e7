//! The background thread of a SQLite store: heartbeat, checks of the
//! store's files, lease reaping and change polling, on a connection of its
//! own.

use std::sync::Arc;
use std::time::{Duration, Instant};

use rusqlite::Connection;

use super::{end_watches, ops, Inner};
use crate::error::{Result, StoreError};
use crate::types::{EventKind, SessionState, WatchEvent};

/// Runs on `conn` until the store is dropped (`stop` disconnects) or its
/// session ends.
pub(super) fn run(inner: Arc<Inner>, mut conn: Connection, stop: std::sync::mpsc::Receiver<()>) {
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
            if let Some(reason) = inner.files.changed() {
                inner.fail(StoreError::Fatal {
                    path: String::new(),
                    reason,
                });
                return;
            }
            match ops::heartbeat(&conn, inner.lease, inner.timeout_ms) {
                Ok(true) => next_heartbeat = Instant::now() + heartbeat_every,
                Ok(false) => {
                    expire(&inner, &mut conn);
                    return;
                }
                Err(err) if err.is_fatal() => {
                    inner.fail(err);
                    return;
                }
                Err(err) => tracing::warn!(error = %err, "sqlite heartbeat failed; retrying"),
            }
        }
        let reaped = reap(&mut conn, &inner);
        let polled = poll_changes(&conn, &inner, &mut last_counter);
        for (what, result) in [
            ("reaping expired sqlite leases", reaped),
            ("sqlite change poll failed", polled),
        ] {
            match result {
                Ok(()) => {}
                Err(err) if err.is_fatal() => {
                    inner.fail(err);
                    return;
                }
                Err(err) => tracing::warn!(error = %err, "{what}"),
            }
        }
    }
}

/// The lease is gone: ends the session as expired.
fn expire(inner: &Inner, conn: &mut Connection) {
    tracing::warn!(lease = inner.lease, "sqlite session expired");
    // Ephemeral nodes go first, so that whoever is told of the expiry
    // never sees them again.
    if let Err(err) = ops::write_tx(conn, |tx, _| ops::drop_lease(tx, inner.lease)) {
        tracing::warn!(error = %err, "dropping expired lease");
    }
    inner.state.send_replace(SessionState::Expired);
    end_watches(inner);
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
                .map_err(super::conn::db)?;
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

/// Tells the watches of changes when the change counter moved.
fn poll_changes(conn: &Connection, inner: &Inner, last_counter: &mut i64) -> Result<()> {
    let counter = ops::change_counter(conn)?;
    if counter != *last_counter {
        *last_counter = counter;
        notify(conn, inner)?;
    }
    Ok(())
}

fn notify(conn: &Connection, inner: &Inner) -> Result<()> {
    let mut watches = super::lock(&inner.watches);
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
