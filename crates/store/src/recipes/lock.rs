//! Exclusive lock: an ephemeral node whose existence is the lock.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;
use tokio::time::Instant;

use crate::error::{Result, StoreError};
use crate::path::parent_path;
use crate::store::Store;
use crate::types::{CreateMode, EventKind, SessionState};

/// An exclusive lock at a path. Holding it means owning the ephemeral node
/// at that path, so the lock is released when the holder's session ends:
/// process killed, session expired or store closed. The holder learns it
/// through [`LockGuard::lost`] / [`LockGuard::is_held`].
///
/// ```no_run
/// # async fn demo(store: std::sync::Arc<dyn dspans_store::Store>) -> dspans_store::Result<()> {
/// use dspans_store::recipes::Lock;
/// let lock = Lock::new(store, "/locks/gate");
/// if let Some(mut guard) = lock.try_acquire(b"host-a").await? {
///     tokio::select! {
///         _ = guard.lost() => eprintln!("lock lost: stop working"),
///         _ = async { /* work */ } => {}
///     }
///     guard.release().await?;
/// }
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct Lock {
    store: Arc<dyn Store>,
    path: String,
}

impl Lock {
    /// A lock at `path` (its parent is created when missing).
    pub fn new(store: Arc<dyn Store>, path: impl Into<String>) -> Lock {
        Lock {
            store,
            path: path.into(),
        }
    }

    /// The lock node's path.
    pub fn path(&self) -> &str {
        &self.path
    }

    /// Takes the lock if it is free; `holder` is stored in the lock node
    /// (e.g. a host name) for [`Lock::holder`]. `None` when someone holds it.
    pub async fn try_acquire(&self, holder: &[u8]) -> Result<Option<LockGuard>> {
        let session = self.store.session();
        if session.borrow().is_terminal() {
            return Err(StoreError::SessionExpired);
        }
        match self
            .store
            .create(&self.path, holder, CreateMode::Ephemeral)
            .await
        {
            Ok(_) => {}
            Err(StoreError::NodeExists { .. }) => return Ok(None),
            Err(StoreError::NoNode { .. }) => {
                if let Some(parent) = parent_path(&self.path) {
                    self.store.create_all(parent, b"").await?;
                }
                match self
                    .store
                    .create(&self.path, holder, CreateMode::Ephemeral)
                    .await
                {
                    Ok(_) => {}
                    Err(StoreError::NodeExists { .. }) => return Ok(None),
                    Err(err) => return Err(err),
                }
            }
            Err(err) => return Err(err),
        }
        tracing::debug!(path = %self.path, "lock acquired");
        Ok(Some(LockGuard {
            store: self.store.clone(),
            path: self.path.clone(),
            session_id: self.store.session_id(),
            session,
            released: false,
        }))
    }

    /// [`try_acquire`](Self::try_acquire), but a lock held under this very
    /// `holder` name by another session is taken over: with unique instance
    /// names that session can only be this instance's dead predecessor (a
    /// process killed and restarted under the same name), which must not
    /// block it until its session times out.
    pub async fn try_acquire_or_reclaim(&self, holder: &[u8]) -> Result<Option<LockGuard>> {
        if let Some(node) = self.store.get(&self.path).await? {
            if node.data == holder && node.stat.owner_session != self.store.session_id() {
                tracing::warn!(path = %self.path, "taking over a lock held under this instance's name by an earlier session");
                match self.store.delete(&self.path, Some(node.stat.version)).await {
                    Ok(())
                    | Err(StoreError::NoNode { .. })
                    | Err(StoreError::BadVersion { .. }) => {}
                    Err(err) => return Err(err),
                }
            }
        }
        self.try_acquire(holder).await
    }

    /// Waits until the lock is free and takes it. With a `timeout`, gives up
    /// after it and returns `None`; without one, waits as long as needed.
    pub async fn acquire(
        &self,
        holder: &[u8],
        timeout: Option<Duration>,
    ) -> Result<Option<LockGuard>> {
        let deadline = timeout.map(|t| Instant::now() + t);
        loop {
            // Watch before trying so a release in between is not missed.
            let mut watch = self.store.watch(&self.path).await?;
            if let Some(guard) = self.try_acquire(holder).await? {
                return Ok(Some(guard));
            }
            // Re-check at least every second in case a notification was lost
            // across a reconnect.
            let mut wait = Duration::from_secs(1);
            if let Some(deadline) = deadline {
                let left = deadline.saturating_duration_since(Instant::now());
                if left.is_zero() {
                    return Ok(None);
                }
                wait = wait.min(left);
            }
            let until = Instant::now() + wait;
            loop {
                let left = until.saturating_duration_since(Instant::now());
                match watch.next_timeout(left).await {
                    Some(ev) if ev.kind == EventKind::Deleted => break,
                    Some(ev) if ev.kind == EventKind::SessionLost => {
                        return Err(StoreError::SessionExpired)
                    }
                    Some(_) => continue,
                    None => break,
                }
            }
        }
    }

    /// The holder data of the current lock holder, `None` when free.
    pub async fn holder(&self) -> Result<Option<Vec<u8>>> {
        Ok(self.store.get(&self.path).await?.map(|n| n.data))
    }
}

/// A held lock. Release it with [`LockGuard::release`]; dropping the guard
/// releases it in the background (best effort, needs a Tokio runtime).
#[derive(Debug)]
pub struct LockGuard {
    store: Arc<dyn Store>,
    path: String,
    session_id: i64,
    session: watch::Receiver<SessionState>,
    released: bool,
}

impl LockGuard {
    /// The lock node's path.
    pub fn path(&self) -> &str {
        &self.path
    }

    /// False once the session that took the lock has ended (expired or
    /// closed): the lock is then lost. While the session is only
    /// [`SessionState::Disconnected`] the lock may still be held.
    pub fn is_held(&self) -> bool {
        !self.released && !self.session.borrow().is_terminal()
    }

    /// Resolves when the lock is lost because its session ended.
    pub async fn lost(&mut self) {
        loop {
            if self.session.borrow_and_update().is_terminal() {
                return;
            }
            if self.session.changed().await.is_err() {
                return;
            }
        }
    }

    /// Asks the store whether the lock node still belongs to this session.
    pub async fn verify(&self) -> Result<bool> {
        if !self.is_held() {
            return Ok(false);
        }
        Ok(matches!(
            self.store.exists(&self.path).await?,
            Some(stat) if stat.owner_session == self.session_id
        ))
    }

    /// Releases the lock (deletes the node if this session still owns it).
    pub async fn release(mut self) -> Result<()> {
        self.released = true;
        release(self.store.clone(), self.path.clone(), self.session_id).await
    }
}

async fn release(store: Arc<dyn Store>, path: String, session_id: i64) -> Result<()> {
    match store.exists(&path).await {
        Ok(Some(stat)) if stat.owner_session == session_id => {
            match store.delete(&path, Some(stat.version)).await {
                Ok(()) | Err(StoreError::NoNode { .. }) => Ok(()),
                Err(err) => Err(err),
            }
        }
        Ok(_) | Err(StoreError::SessionExpired) => Ok(()),
        Err(err) => Err(err),
    }
}

impl Drop for LockGuard {
    fn drop(&mut self) {
        if self.released || self.session.borrow().is_terminal() {
            return;
        }
        if let Ok(handle) = tokio::runtime::Handle::try_current() {
            let (store, path, id) = (self.store.clone(), self.path.clone(), self.session_id);
            handle.spawn(async move {
                if let Err(err) = release(store, path.clone(), id).await {
                    tracing::warn!(%path, error = %err, "releasing dropped lock");
                }
            });
        }
    }
}
