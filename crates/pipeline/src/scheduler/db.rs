//! Typed reads and compare-and-set writes of the stored objects.

use std::sync::Arc;

use dspans_store::{CreateMode, Op, Store, StoreError};

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
}

/// An object as read, with the version its next write must expect.
#[derive(Debug, Clone)]
pub struct Versioned<T> {
    pub value: T,
    pub version: i32,
    pub path: String,
}

impl<T: StoredObject> Versioned<T> {
    /// The compare-and-set write of a changed value.
    pub fn set_op(&self) -> Result<Op, StepError> {
        Ok(Op::set(
            &self.path,
            self.value.to_json()?,
            Some(self.version),
        ))
    }
}

/// Reads `path` as `T`; `None` when the node does not exist.
pub async fn read<T: StoredObject>(
    store: &Arc<dyn Store>,
    path: &str,
) -> Result<Option<Versioned<T>>, StepError> {
    let Some(node) = store.get(path).await? else {
        return Ok(None);
    };
    let value = T::from_json(&node.data)?;
    Ok(Some(Versioned {
        value,
        version: node.stat.version,
        path: path.to_string(),
    }))
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
