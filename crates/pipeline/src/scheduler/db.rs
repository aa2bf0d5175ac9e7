//! Typed reads and compare-and-set writes of the stored objects.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};

use dspans_store::{CreateMode, Op, OpResult, Store, StoreError};

use crate::model::{ModelError, StoredObject};

/// Why a scheduler step failed; the step is retried on the next pass.
#[derive(Debug, thiserror::Error)]
pub enum StepError {
    /// The store refused or failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// A stored object could not be read or written.
    #[error(transparent)]
    Model(#[from] ModelError),
    /// The object at `path` does not decode.
    #[error("{path}: {source}")]
    Undecodable {
        /// The object's path.
        path: String,
        /// Why it does not decode.
        #[source]
        source: ModelError,
    },
    /// The span ledger could not write a transaction.
    #[error(transparent)]
    Ledger(#[from] dspans_ledger::LedgerError),
}

/// An object as read, with the version its next write must expect.
#[derive(Debug, Clone)]
pub struct Versioned<T> {
    pub value: T,
    pub version: i32,
    pub path: String,
}

impl<T: StoredObject> Versioned<T> {
    /// Follows this process's own successful write of the object: a set
    /// moves a node's version on by exactly one.
    pub fn written(&mut self) {
        self.version = self.version.wrapping_add(1);
    }

    /// The compare-and-set write of a changed value.
    pub fn set_op(&self) -> Result<Op, StepError> {
        Ok(Op::set(
            &self.path,
            self.value.to_json()?,
            Some(self.version),
        ))
    }
}

/// The pipeline objects a scheduler has read, as stored (data and
/// version), kept up to date by its own writes.
///
/// While a scheduler holds a pipeline's lock it is the only writer of that
/// pipeline's objects, so what it read and wrote since is what the store
/// holds: a pass over a queue of waiting items costs no reads. Every write
/// is still a compare-and-set on the remembered version, so should the
/// cache ever be wrong (the lock lost unnoticed), the write fails and the
/// scheduler forgets everything ([`ObjectCache::clear`]) and reads afresh.
#[derive(Debug, Default)]
pub struct ObjectCache {
    nodes: Mutex<HashMap<String, Remembered>>,
}

/// A node's data and version, as this scheduler last read or wrote them.
type Remembered = (Arc<[u8]>, i32);

impl ObjectCache {
    fn nodes(&self) -> MutexGuard<'_, HashMap<String, Remembered>> {
        self.nodes.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Whether `path` is remembered (so it exists).
    pub fn contains(&self, path: &str) -> bool {
        self.nodes().contains_key(path)
    }

    /// Forgets everything.
    pub fn clear(&self) {
        self.nodes().clear();
    }

    /// Reads `path` as `T` from the cache, or from the store (remembering
    /// it); `None` when the node does not exist.
    pub async fn read<T: StoredObject>(
        &self,
        store: &Arc<dyn Store>,
        path: &str,
    ) -> Result<Option<Versioned<T>>, StepError> {
        let cached = self.nodes().get(path).cloned();
        let (data, version) = match cached {
            Some(entry) => entry,
            None => {
                let Some(node) = store.get(path).await? else {
                    return Ok(None);
                };
                let entry: Remembered = (node.data.into(), node.stat.version);
                self.nodes().insert(path.to_string(), entry.clone());
                entry
            }
        };
        let value = T::from_json(&data).map_err(|source| StepError::Undecodable {
            path: path.to_string(),
            source,
        })?;
        Ok(Some(Versioned {
            value,
            version,
            path: path.to_string(),
        }))
    }

    /// What `ops` will change in the cache once they are written: the
    /// new data of remembered nodes that are set, and deletions.
    pub fn effects(&self, ops: &[Op]) -> Vec<Effect> {
        let nodes = self.nodes();
        ops.iter()
            .enumerate()
            .filter_map(|(index, op)| match op {
                Op::Set { path, data, .. } if nodes.contains_key(path) => Some(Effect::Set {
                    index,
                    path: path.clone(),
                    data: data.as_slice().into(),
                }),
                Op::Delete { path, .. } => Some(Effect::Delete { path: path.clone() }),
                _ => None,
            })
            .collect()
    }

    /// Applies the effects of a successful write, given its results.
    pub fn apply(&self, effects: Vec<Effect>, results: &[OpResult]) {
        let mut nodes = self.nodes();
        for effect in effects {
            match effect {
                Effect::Set { index, path, data } => match results.get(index) {
                    Some(OpResult::Set { version }) => {
                        nodes.insert(path, (data, *version));
                    }
                    _ => {
                        nodes.remove(&path);
                    }
                },
                Effect::Delete { path } => {
                    nodes.remove(&path);
                }
            }
        }
    }
}

/// A change a write makes to the [`ObjectCache`].
#[derive(Debug)]
pub enum Effect {
    /// Op `index` sets `path` to `data`.
    Set {
        index: usize,
        path: String,
        data: Arc<[u8]>,
    },
    /// `path` is deleted.
    Delete { path: String },
}

/// The create of a new object.
pub fn create_op<T: StoredObject>(path: &str, value: &T) -> Result<Op, StepError> {
    Ok(Op::create(path, value.to_json()?, CreateMode::Persistent))
}

/// The create of an empty directory node.
pub fn dir_op(path: &str) -> Op {
    Op::create(path, Vec::new(), CreateMode::Persistent)
}

/// Deletes of every node under `path` (children first) and `path` itself.
pub async fn delete_tree_ops(store: &Arc<dyn Store>, path: &str) -> Result<Vec<Op>, StepError> {
    let mut ops = Vec::new();
    let mut stack = vec![(path.to_string(), false)];
    while let Some((node, expanded)) = stack.pop() {
        if expanded {
            ops.push(Op::delete(node, None));
            continue;
        }
        stack.push((node.clone(), true));
        match store.children(&node).await {
            Ok(children) => {
                for child in children {
                    stack.push((format!("{node}/{child}"), false));
                }
            }
            Err(StoreError::NoNode { .. }) => {
                stack.pop();
            }
            Err(error) => return Err(error.into()),
        }
    }
    Ok(ops)
}

#[cfg(test)]
mod tests {
    use dspans_store::{CountingStore, SqliteStore, StoreConfig};

    use super::*;
    use crate::model::ChangeQueue;

    fn queue(items: &[&str]) -> ChangeQueue {
        ChangeQueue {
            pipeline: "check".into(),
            name: "org/project".into(),
            items: items.iter().map(|s| s.to_string()).collect(),
        }
    }

    /// This scheduler's store (counted), another process's store on the
    /// same file, and an empty queue object at `/q`.
    async fn stores(dir: &tempfile::TempDir) -> (Arc<CountingStore>, Arc<dyn Store>) {
        let config = StoreConfig::sqlite(dir.path().join("store.db"));
        let mine = SqliteStore::create(&config).await.unwrap();
        let other = SqliteStore::open(&config).await.unwrap();
        other
            .create("/q", &queue(&[]).to_json().unwrap(), CreateMode::Persistent)
            .await
            .unwrap();
        (
            Arc::new(CountingStore::new(Arc::new(mine))),
            Arc::new(other),
        )
    }

    #[tokio::test]
    async fn reads_come_from_memory_and_follow_own_writes() {
        let dir = tempfile::tempdir().unwrap();
        let (counting, _) = stores(&dir).await;
        let store: Arc<dyn Store> = counting.clone();
        let cache = ObjectCache::default();
        let mut first = cache
            .read::<ChangeQueue>(&store, "/q")
            .await
            .unwrap()
            .unwrap();
        let before = counting.round_trips();
        assert_eq!(
            cache
                .read::<ChangeQueue>(&store, "/q")
                .await
                .unwrap()
                .unwrap()
                .version,
            first.version
        );
        assert_eq!(counting.round_trips(), before, "second read from memory");

        first.value.items.push("a".into());
        let ops = [first.set_op().unwrap()];
        let effects = cache.effects(&ops);
        let results = store.multi(&ops).await.unwrap();
        cache.apply(effects, &results);
        let after = counting.round_trips();
        let read = cache
            .read::<ChangeQueue>(&store, "/q")
            .await
            .unwrap()
            .unwrap();
        assert_eq!(counting.round_trips(), after, "own write remembered");
        assert_eq!(read.value.items, vec!["a".to_string()]);
        assert_eq!(
            read.version,
            store.get("/q").await.unwrap().unwrap().stat.version
        );

        let ops = [Op::delete("/q", Some(read.version))];
        let effects = cache.effects(&ops);
        let results = store.multi(&ops).await.unwrap();
        cache.apply(effects, &results);
        assert!(cache
            .read::<ChangeQueue>(&store, "/q")
            .await
            .unwrap()
            .is_none());
    }

    #[tokio::test]
    async fn a_change_behind_its_back_fails_the_write_and_clear_recovers() {
        let dir = tempfile::tempdir().unwrap();
        let (counting, other) = stores(&dir).await;
        let store: Arc<dyn Store> = counting.clone();
        let cache = ObjectCache::default();
        let mut stale = cache
            .read::<ChangeQueue>(&store, "/q")
            .await
            .unwrap()
            .unwrap();
        // Another process (a scheduler that took the lock over) writes.
        other
            .set("/q", &queue(&["b"]).to_json().unwrap(), None)
            .await
            .unwrap();
        stale.value.items.push("a".into());
        let error = store.multi(&[stale.set_op().unwrap()]).await.unwrap_err();
        assert!(error.is_bad_version(), "{error}");
        cache.clear();
        let fresh = cache
            .read::<ChangeQueue>(&store, "/q")
            .await
            .unwrap()
            .unwrap();
        assert_eq!(fresh.value.items, vec!["b".to_string()]);
        assert_eq!(fresh.version, stale.version + 1);
    }
}
