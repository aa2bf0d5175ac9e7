//! The [`Store`] trait: the one interface both backends implement.

use std::fmt::Debug;

use async_trait::async_trait;
use tokio::sync::watch;

use crate::error::{Result, StoreError};
use crate::path::{join_path, parent_path, validate_path};
use crate::types::{CreateMode, Node, Op, OpResult, SessionState, Stat, Watch};

/// Paths per round trip of [`Store::exists_all`].
pub const EXISTS_ALL_CHUNK: usize = 100;

/// A coordination store: a tree of small versioned values addressed by
/// ZooKeeper-style paths (`/a/b/c`), with ephemeral nodes bound to the
/// handle's session, compare-and-set, atomic multi-operations and change
/// notification.
///
/// Obtain one with [`crate::open`]; share it as `Arc<dyn Store>`. Every
/// handle has one session: dropping the last reference (or [`Store::close`])
/// ends it and deletes its ephemeral nodes.
///
/// ```no_run
/// # async fn demo() -> Result<(), dspans_store::StoreError> {
/// use dspans_store::{open, CreateMode, StoreConfig};
/// let store = open(&StoreConfig::sqlite("state/dspans.db")).await?;
/// store.create_all("/pipelines/gate", b"{}").await?;
/// let node = store.get("/pipelines/gate").await?.expect("just created");
/// // compare-and-set: fails with BadVersion if someone changed it meanwhile
/// store.set("/pipelines/gate", br#"{"items":[]}"#, Some(node.stat.version)).await?;
/// # Ok(()) }
/// ```
#[async_trait]
pub trait Store: Send + Sync + Debug {
    /// `"sqlite"` or `"zookeeper"`.
    fn backend(&self) -> &'static str;

    /// An id of this handle's session, unique among live sessions of the store.
    fn session_id(&self) -> i64;

    /// The session state; the receiver sees every later change
    /// (`changed().await`). See [`SessionState`].
    fn session(&self) -> watch::Receiver<SessionState>;

    /// Why the store became unusable, once its session is
    /// [`SessionState::Failed`]: a [`StoreError::Fatal`] naming the file
    /// and what happened to it. `None` while it is usable, and always on
    /// backends that cannot fail that way (ZooKeeper).
    fn failure(&self) -> Option<StoreError> {
        None
    }

    /// Creates a node; its parent must exist. Returns the created path (with
    /// the sequence suffix for sequential modes).
    ///
    /// Errors: [`StoreError::NodeExists`], [`StoreError::NoNode`] (parent
    /// missing), [`StoreError::NoChildrenForEphemerals`],
    /// [`StoreError::TooLarge`].
    async fn create(&self, path: &str, data: &[u8], mode: CreateMode) -> Result<String>;

    /// The node's data and metadata, or `None` if it does not exist.
    async fn get(&self, path: &str) -> Result<Option<Node>>;

    /// Sets a node's data. With `Some(version)`, only if the node still has
    /// that version (compare-and-set); a conflict changes nothing and fails
    /// with [`StoreError::BadVersion`]. Returns the new metadata.
    async fn set(&self, path: &str, data: &[u8], expected_version: Option<i32>) -> Result<Stat>;

    /// Deletes a node (it must have no children). With `Some(version)`, only
    /// if the node still has that version.
    async fn delete(&self, path: &str, expected_version: Option<i32>) -> Result<()>;

    /// The node's metadata, or `None` if it does not exist.
    async fn exists(&self, path: &str) -> Result<Option<Stat>>;

    /// Names (not paths) of the node's children, sorted.
    /// [`StoreError::NoNode`] if the node does not exist.
    async fn children(&self, path: &str) -> Result<Vec<String>>;

    /// Whether each of `paths` exists, in order, read in as few round trips
    /// as the backend allows (one per [`EXISTS_ALL_CHUNK`] paths on both
    /// backends here; this default asks one by one).
    async fn exists_all(&self, paths: &[String]) -> Result<Vec<bool>> {
        let mut found = Vec::with_capacity(paths.len());
        for path in paths {
            found.push(self.exists(path).await?.is_some());
        }
        Ok(found)
    }

    /// Applies all operations atomically, in order (later operations see
    /// the effects of earlier ones), or none of them. On failure the error is
    /// [`StoreError::Multi`] with the index of the failing operation and why.
    async fn multi(&self, ops: &[Op]) -> Result<Vec<OpResult>>;

    /// Notifies changes of the node itself: created, data changed, deleted.
    /// The node need not exist yet.
    async fn watch(&self, path: &str) -> Result<Watch>;

    /// Notifies changes of the node's list of children (and its deletion).
    async fn watch_children(&self, path: &str) -> Result<Watch>;

    /// Ends the session: ephemeral nodes are deleted, later operations fail
    /// with [`StoreError::SessionExpired`], the session state becomes
    /// [`SessionState::Closed`].
    async fn close(&self) -> Result<()>;

    /// Creates `path` and any missing ancestors as persistent nodes; the
    /// ancestors get empty data, `path` gets `data`. Succeeds (without
    /// changing anything) if `path` already exists.
    async fn create_all(&self, path: &str, data: &[u8]) -> Result<()> {
        validate_path(path)?;
        if path == "/" {
            return Ok(());
        }
        let mut missing = Vec::new();
        let mut cur = path;
        while cur != "/" {
            if self.exists(cur).await?.is_some() {
                break;
            }
            missing.push(cur);
            cur = parent_path(cur).unwrap_or("/");
        }
        for p in missing.iter().rev() {
            let value: &[u8] = if *p == path { data } else { b"" };
            match self.create(p, value, CreateMode::Persistent).await {
                Ok(_) => {}
                Err(StoreError::NodeExists { .. }) => {}
                Err(err) => return Err(err),
            }
        }
        Ok(())
    }

    /// Deletes a node and all its descendants (not atomic). Succeeds if the
    /// node does not exist.
    async fn delete_all(&self, path: &str) -> Result<()> {
        validate_path(path)?;
        let mut stack = vec![(path.to_string(), false)];
        while let Some((p, expanded)) = stack.pop() {
            if expanded || p == "/" {
                if p != "/" {
                    match self.delete(&p, None).await {
                        Ok(()) | Err(StoreError::NoNode { .. }) => {}
                        Err(StoreError::NotEmpty { .. }) => {
                            // a child appeared meanwhile: go round again
                            stack.push((p, false));
                        }
                        Err(err) => return Err(err),
                    }
                }
                continue;
            }
            let kids = match self.children(&p).await {
                Ok(kids) => kids,
                Err(StoreError::NoNode { .. }) => continue,
                Err(err) => return Err(err),
            };
            stack.push((p.clone(), true));
            for kid in kids {
                stack.push((join_path(&p, &kid), false));
            }
        }
        Ok(())
    }
}
