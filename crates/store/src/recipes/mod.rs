//! Recipes built only on the [`crate::Store`] trait, hence identical on both
//! backends: an exclusive [`Lock`], a [`JobQueue`] of requests claimed under
//! a lock, and an ordered [`EventQueue`].

mod events;
mod jobs;
mod lock;

pub use events::{Event, EventQueue};
pub use jobs::{Claim, Job, JobQueue, JobRecord, JobState, REQUEUE_HOLDER};
pub use lock::{Lock, LockGuard};

use crate::error::StoreError;

pub(crate) fn json_err(path: &str, err: serde_json::Error) -> StoreError {
    StoreError::Json {
        path: path.to_string(),
        message: err.to_string(),
    }
}
