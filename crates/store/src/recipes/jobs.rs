//! Job request queue: requests are sequential nodes; a worker claims one by
//! taking its lock and moving it from `requested` to `running`.
//!
//! Layout under the queue's root:
//!
//! ```text
//! ROOT/requests/job-0000000007   JSON JobRecord (persistent, sequential)
//! ROOT/locks/job-0000000007      ephemeral lock, held by the claiming worker
//! ```

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use serde_json::Value;

use super::lock::{Lock, LockGuard};
use crate::error::{Result, StoreError};
use crate::path::{join_path, sequence_of};
use crate::store::Store;
use crate::types::{CreateMode, Op, OpResult, Watch};

/// Life cycle of a job request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum JobState {
    /// Submitted, waiting for a worker.
    Requested,
    /// Claimed by a worker (which holds its lock).
    Running,
    /// Finished; `result` holds the outcome.
    Completed,
}

/// The JSON value stored for each job request.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct JobRecord {
    /// Current state.
    pub state: JobState,
    /// The submitter's request as its JSON text, kept verbatim: a
    /// `serde_json::Value` cannot hold the 128-bit trace ids of a span
    /// context. Read it with [`JobRecord::request`].
    pub request: Box<RawValue>,
    /// Worker that claimed it.
    #[serde(default)]
    pub worker: Option<String>,
    /// Progress or outcome written by the worker.
    #[serde(default)]
    pub result: Value,
}

impl PartialEq for JobRecord {
    fn eq(&self, other: &Self) -> bool {
        self.state == other.state
            && self.request.get() == other.request.get()
            && self.worker == other.worker
            && self.result == other.result
    }
}

impl JobRecord {
    /// Decodes the request into the submitter's type.
    pub fn request<T: serde::de::DeserializeOwned>(&self) -> serde_json::Result<T> {
        serde_json::from_str(self.request.get())
    }
}

/// A job request read from the queue.
#[derive(Debug, Clone, PartialEq)]
pub struct Job {
    /// Node name, e.g. `job-0000000007`; ids sort in submission order.
    pub id: String,
    /// Version of the node, for compare-and-set.
    pub version: i32,
    /// The stored record.
    pub record: JobRecord,
}

/// A job claimed by this process: it holds the job's lock until
/// [`JobQueue::complete`] (or the session ends).
#[derive(Debug)]
pub struct Claim {
    /// The job as last written by this worker.
    pub job: Job,
    guard: LockGuard,
}

impl Claim {
    /// The lock guard (e.g. to wait for [`LockGuard::lost`]).
    pub fn guard(&mut self) -> &mut LockGuard {
        &mut self.guard
    }
}

/// The holder name of the locks [`JobQueue::requeue_orphans`] takes for a
/// moment while it hands a request back.
pub const REQUEUE_HOLDER: &str = "requeue";

/// The stored form of a new request; `path` names it in errors.
fn requested_record<T: Serialize + ?Sized>(request: &T, path: &str) -> Result<Vec<u8>> {
    let request = serde_json::value::to_raw_value(request).map_err(|e| super::json_err(path, e))?;
    let record = JobRecord {
        state: JobState::Requested,
        request,
        worker: None,
        result: Value::Null,
    };
    serde_json::to_vec(&record).map_err(|e| super::json_err(path, e))
}

/// A queue of job requests. Cheap to clone.
///
/// ```no_run
/// # async fn demo(store: std::sync::Arc<dyn dspans_store::Store>) -> dspans_store::Result<()> {
/// use dspans_store::recipes::JobQueue;
/// let queue = JobQueue::new(store, "/executor/requests");
/// let id = queue.submit(&serde_json::json!({"job": "unit"})).await?;
/// if let Some(claim) = queue.claim_next("executor-1").await? {
///     queue.complete(claim, serde_json::json!({"result": "SUCCESS"})).await?;
/// }
/// # let _ = id; Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct JobQueue {
    store: Arc<dyn Store>,
    root: String,
    ready: Arc<AtomicBool>,
    /// Ids of requests seen `completed`: that state is final, so they are
    /// never read again while they wait for their submitter to remove them.
    completed: Arc<Mutex<HashSet<String>>>,
}

impl JobQueue {
    /// A queue rooted at `root`.
    pub fn new(store: Arc<dyn Store>, root: impl Into<String>) -> JobQueue {
        JobQueue {
            store,
            root: root.into(),
            ready: Arc::new(AtomicBool::new(false)),
            completed: Arc::default(),
        }
    }

    fn requests(&self) -> String {
        join_path(&self.root, "requests")
    }

    fn request_path(&self, id: &str) -> String {
        join_path(&self.requests(), id)
    }

    fn lock_for(&self, id: &str) -> Lock {
        Lock::new(
            self.store.clone(),
            join_path(&join_path(&self.root, "locks"), id),
        )
    }

    async fn ensure_layout(&self) -> Result<()> {
        if !self.ready.load(Ordering::Relaxed) {
            self.store.create_all(&self.requests(), b"").await?;
            self.store
                .create_all(&join_path(&self.root, "locks"), b"")
                .await?;
            self.ready.store(true, Ordering::Relaxed);
        }
        Ok(())
    }

    /// Submits a request (any serializable value); returns its id.
    pub async fn submit<T: Serialize + ?Sized>(&self, request: &T) -> Result<String> {
        self.ensure_layout().await?;
        let prefix = join_path(&self.requests(), "job-");
        let data = requested_record(request, &prefix)?;
        let path = self
            .store
            .create(&prefix, &data, CreateMode::PersistentSequential)
            .await?;
        Ok(crate::path::node_name(&path).to_string())
    }

    /// Submits a request as part of the caller's own multi-operation:
    /// returns the id the request will have and the operation that creates
    /// it. Such ids end in the submission time in nanoseconds, so requests
    /// are claimed in time order; a clash (same id twice) fails the
    /// multi-operation with `NodeExists` and nothing is written.
    pub async fn submit_op<T: Serialize + ?Sized>(&self, request: &T) -> Result<(String, Op)> {
        static COUNTER: AtomicU64 = AtomicU64::new(0);
        self.ensure_layout().await?;
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64);
        let unique = COUNTER.fetch_add(1, Ordering::Relaxed);
        let id = format!("job-{:x}x{unique:x}-{nanos:019}", std::process::id());
        let path = self.request_path(&id);
        let data = requested_record(request, &path)?;
        Ok((id, Op::create(path, data, CreateMode::Persistent)))
    }

    /// Reads one job; `None` if it does not exist (any more).
    pub async fn get(&self, id: &str) -> Result<Option<Job>> {
        let path = self.request_path(id);
        let Some(node) = self.store.get(&path).await? else {
            return Ok(None);
        };
        let record = serde_json::from_slice(&node.data).map_err(|e| super::json_err(&path, e))?;
        Ok(Some(Job {
            id: id.to_string(),
            version: node.stat.version,
            record,
        }))
    }

    /// All jobs, in submission order.
    pub async fn list(&self) -> Result<Vec<Job>> {
        let mut jobs = Vec::new();
        for id in self.ids().await? {
            if let Some(job) = self.get(&id).await? {
                jobs.push(job);
            }
        }
        Ok(jobs)
    }

    /// Request ids in submission order.
    async fn ids(&self) -> Result<Vec<String>> {
        let ids = match self.store.children(&self.requests()).await {
            Ok(ids) => ids,
            Err(StoreError::NoNode { .. }) => return Ok(Vec::new()),
            Err(err) => return Err(err),
        };
        let mut ids: Vec<(i64, String)> = ids
            .into_iter()
            .map(|id| (sequence_of(&id).unwrap_or(i64::MAX), id))
            .collect();
        ids.sort();
        Ok(ids.into_iter().map(|(_, id)| id).collect())
    }

    /// The requests that may be claimable or orphaned, in submission
    /// order: those nobody holds the lock of and not known to be completed.
    /// Two listings instead of reading every request.
    async fn unlocked(&self) -> Result<Vec<String>> {
        let ids = self.ids().await?;
        let locked: HashSet<String> =
            match self.store.children(&join_path(&self.root, "locks")).await {
                Ok(locked) => locked.into_iter().collect(),
                Err(StoreError::NoNode { .. }) => HashSet::new(),
                Err(err) => return Err(err),
            };
        let mut completed = self.completed.lock().unwrap_or_else(|e| e.into_inner());
        let present: HashSet<&str> = ids.iter().map(String::as_str).collect();
        completed.retain(|id| present.contains(id.as_str()));
        Ok(ids
            .iter()
            .filter(|id| !locked.contains(*id) && !completed.contains(*id))
            .cloned()
            .collect())
    }

    /// Notes a request seen in state `state`.
    fn seen(&self, id: &str, state: JobState) {
        if state == JobState::Completed {
            self.completed
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .insert(id.to_string());
        }
    }

    /// Claims a job if it is still `requested` and nobody holds its lock:
    /// takes the lock, then marks it `running` by `worker` (compare-and-set).
    /// `None` when another worker was first. Each request is claimed at most
    /// once, across processes and hosts.
    pub async fn claim(&self, id: &str, worker: &str) -> Result<Option<Claim>> {
        self.ensure_layout().await?;
        let Some(guard) = self.lock_for(id).try_acquire(worker.as_bytes()).await? else {
            return Ok(None);
        };
        let job = match self.get(id).await? {
            Some(job) if job.record.state == JobState::Requested => job,
            other => {
                if let Some(job) = other {
                    self.seen(id, job.record.state);
                }
                guard.release().await?;
                return Ok(None);
            }
        };
        let mut record = job.record;
        record.state = JobState::Running;
        record.worker = Some(worker.to_string());
        let mut claim = Claim {
            job: Job {
                id: job.id,
                version: job.version,
                record,
            },
            guard,
        };
        match self.write(&mut claim).await {
            Ok(()) => Ok(Some(claim)),
            Err(err) if err.is_bad_version() || err.is_no_node() => {
                claim.guard.release().await?;
                Ok(None)
            }
            Err(err) => Err(err),
        }
    }

    /// Claims the oldest claimable job, if any.
    pub async fn claim_next(&self, worker: &str) -> Result<Option<Claim>> {
        for id in self.unlocked().await? {
            if let Some(claim) = self.claim(&id, worker).await? {
                return Ok(Some(claim));
            }
        }
        Ok(None)
    }

    async fn write(&self, claim: &mut Claim) -> Result<()> {
        if !claim.guard.is_held() {
            return Err(StoreError::SessionExpired);
        }
        let path = self.request_path(&claim.job.id);
        let data = serde_json::to_vec(&claim.job.record).map_err(|e| super::json_err(&path, e))?;
        let stat = self
            .store
            .set(&path, &data, Some(claim.job.version))
            .await?;
        claim.job.version = stat.version;
        Ok(())
    }

    /// Records progress of a claimed job (its `result` field), keeping it
    /// `running`. Fails with `BadVersion` if the job was changed by someone
    /// else, with `SessionExpired` if the lock was lost.
    pub async fn update(&self, claim: &mut Claim, result: Value) -> Result<()> {
        claim.job.record.result = result;
        self.write(claim).await
    }

    /// Marks a claimed job `completed` with `result`, then releases its lock.
    pub async fn complete(&self, mut claim: Claim, result: Value) -> Result<Job> {
        claim.job.record.state = JobState::Completed;
        claim.job.record.result = result;
        self.write(&mut claim).await?;
        self.seen(&claim.job.id, JobState::Completed);
        let Claim { job, guard } = claim;
        guard.release().await?;
        Ok(job)
    }

    /// The operations that mark a claimed job `completed` with `result`: a
    /// compare-and-set of its record on the version this worker last wrote,
    /// so the whole multi-operation fails if anyone else changed the job.
    ///
    /// For callers that build their own [`Store::multi`]; most use
    /// [`JobQueue::complete_with`], which also releases the lock.
    pub fn complete_ops(&self, claim: &Claim, result: Value) -> Result<Vec<Op>> {
        if !claim.guard.is_held() {
            return Err(StoreError::SessionExpired);
        }
        let path = self.request_path(&claim.job.id);
        let mut record = claim.job.record.clone();
        record.state = JobState::Completed;
        record.result = result;
        let data = serde_json::to_vec(&record).map_err(|e| super::json_err(&path, e))?;
        Ok(vec![Op::set(path, data, Some(claim.job.version))])
    }

    /// Marks a claimed job `completed` with `result` and applies `extra`
    /// (e.g. an [`super::EventQueue::put_op`] result event) in one atomic
    /// multi-operation, then releases the job's lock. Returns the completed
    /// job and the results of the `extra` operations, in order.
    ///
    /// Nothing is applied when it fails: `Multi` wrapping `BadVersion` if
    /// the job was changed by someone else, `SessionExpired` if the lock was
    /// lost. The lock is released in every case where the claim is gone.
    pub async fn complete_with(
        &self,
        claim: Claim,
        result: Value,
        extra: Vec<Op>,
    ) -> Result<(Job, Vec<OpResult>)> {
        let mut ops = self.complete_ops(&claim, result.clone())?;
        ops.extend(extra);
        let Claim { mut job, guard } = claim;
        let mut results = match self.store.multi(&ops).await {
            Ok(results) => results,
            Err(err) => {
                if let Err(release_err) = guard.release().await {
                    tracing::warn!(error = %release_err, job = %job.id, "cannot release job lock");
                }
                return Err(err);
            }
        };
        if let Some(OpResult::Set { version }) = results.first() {
            job.version = *version;
        }
        job.record.state = JobState::Completed;
        job.record.result = result;
        self.seen(&job.id, JobState::Completed);
        results.remove(0);
        guard.release().await?;
        Ok((job, results))
    }

    /// Hands a claimed job back unfinished: it becomes `requested` again
    /// (compare-and-set) and its lock is released, so another worker can
    /// claim it. A job changed meanwhile by someone else is left as it is.
    pub async fn release(&self, mut claim: Claim) -> Result<()> {
        claim.job.record.state = JobState::Requested;
        claim.job.record.worker = None;
        claim.job.record.result = Value::Null;
        let outcome = match self.write(&mut claim).await {
            Ok(()) => Ok(()),
            Err(err) if err.is_bad_version() || err.is_no_node() => Ok(()),
            Err(err) => Err(err),
        };
        claim.guard.release().await?;
        outcome
    }

    /// Deletes a job request (e.g. once the submitter read its result).
    pub async fn remove(&self, id: &str) -> Result<()> {
        match self.store.delete(&self.request_path(id), None).await {
            Ok(()) | Err(StoreError::NoNode { .. }) => Ok(()),
            Err(err) => Err(err),
        }
    }

    /// Puts `running` jobs whose worker is gone (lock node missing) back to
    /// `requested`; returns their ids.
    pub async fn requeue_orphans(&self) -> Result<Vec<String>> {
        let mut requeued = Vec::new();
        for id in self.unlocked().await? {
            let Some(job) = self.get(&id).await? else {
                continue;
            };
            self.seen(&id, job.record.state);
            if job.record.state != JobState::Running {
                continue;
            }
            let lock = self.lock_for(&job.id);
            let Some(guard) = lock.try_acquire(REQUEUE_HOLDER.as_bytes()).await? else {
                continue; // its worker still holds it
            };
            if let Some(mut current) = self.get(&job.id).await? {
                if current.record.state == JobState::Running {
                    current.record.state = JobState::Requested;
                    current.record.worker = None;
                    let path = self.request_path(&job.id);
                    let data = serde_json::to_vec(&current.record)
                        .map_err(|e| super::json_err(&path, e))?;
                    match self.store.set(&path, &data, Some(current.version)).await {
                        Ok(_) => requeued.push(job.id.clone()),
                        Err(err) if err.is_bad_version() || err.is_no_node() => {}
                        Err(err) => return Err(err),
                    }
                }
            }
            guard.release().await?;
        }
        Ok(requeued)
    }

    /// Hands back the requests that `worker` claimed in an earlier session:
    /// a worker killed and restarted under the same name gets its dead
    /// predecessor's work retried at once, instead of after that session
    /// times out. Worker names must be unique for this to be safe.
    pub async fn reclaim(&self, worker: &str) -> Result<Vec<String>> {
        let mut handed_back = Vec::new();
        for job in self.list().await? {
            if job.record.state != JobState::Running || job.record.worker.as_deref() != Some(worker)
            {
                continue;
            }
            let lock = self.lock_for(&job.id);
            let Some(guard) = lock.try_acquire_or_reclaim(worker.as_bytes()).await? else {
                continue;
            };
            let mut current = job;
            current.record.state = JobState::Requested;
            current.record.worker = None;
            let path = self.request_path(&current.id);
            let data =
                serde_json::to_vec(&current.record).map_err(|e| super::json_err(&path, e))?;
            match self.store.set(&path, &data, Some(current.version)).await {
                Ok(_) => handed_back.push(current.id.clone()),
                Err(err) if err.is_bad_version() || err.is_no_node() => {}
                Err(err) => return Err(err),
            }
            guard.release().await?;
        }
        Ok(handed_back)
    }

    /// Deletes the request locks that this session holds under `worker`'s
    /// name; returns the ids of their requests. For a worker that holds no
    /// claim: after a store error a lock may have been taken without the
    /// answer arriving (a connection lost mid-request), and such a lock,
    /// held by a live session, would keep its request unclaimed forever.
    pub async fn release_stale_locks(&self, worker: &str) -> Result<Vec<String>> {
        let locks = join_path(&self.root, "locks");
        let ids = match self.store.children(&locks).await {
            Ok(ids) => ids,
            Err(StoreError::NoNode { .. }) => return Ok(Vec::new()),
            Err(err) => return Err(err),
        };
        let session = self.store.session_id();
        let mut released = Vec::new();
        for id in ids {
            let path = join_path(&locks, &id);
            let Some(node) = self.store.get(&path).await? else {
                continue;
            };
            if node.stat.owner_session != session || node.data != worker.as_bytes() {
                continue;
            }
            match self.store.delete(&path, Some(node.stat.version)).await {
                Ok(()) => released.push(id),
                Err(err) if err.is_no_node() || err.is_bad_version() => {}
                Err(err) => return Err(err),
            }
        }
        Ok(released)
    }

    /// Notifies submissions and removals of requests.
    pub async fn watch(&self) -> Result<Watch> {
        self.ensure_layout().await?;
        self.store.watch_children(&self.requests()).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::recipes::EventQueue;
    use crate::{SqliteStore, StoreConfig};

    async fn store(dir: &tempfile::TempDir) -> Arc<dyn Store> {
        let config = StoreConfig::sqlite(dir.path().join("store.db"));
        Arc::new(SqliteStore::create(&config).await.expect("create sqlite"))
    }

    #[tokio::test]
    async fn complete_with_writes_the_event_and_the_state_together() {
        let dir = tempfile::tempdir().unwrap();
        let store = store(&dir).await;
        let queue = JobQueue::new(store.clone(), "/q");
        let events = EventQueue::new(store.clone(), "/events");
        let id = queue.submit(&serde_json::json!({"n": 1})).await.unwrap();
        let claim = queue.claim_next("w1").await.unwrap().expect("claimed");
        let op = events.put_op(b"done".to_vec()).await.unwrap();
        let (job, results) = queue
            .complete_with(claim, serde_json::json!("ok"), vec![op])
            .await
            .unwrap();
        assert_eq!(job.record.state, JobState::Completed);
        assert!(matches!(&results[..], [OpResult::Created { .. }]));
        let stored = queue.get(&id).await.unwrap().unwrap();
        assert_eq!(stored, job);
        assert_eq!(events.read().await.unwrap()[0].data, b"done");
        // the lock is free again, but a completed job is not claimable
        assert!(queue.claim(&id, "w2").await.unwrap().is_none());
    }

    #[tokio::test]
    async fn a_failed_completion_writes_nothing_and_release_hands_back() {
        let dir = tempfile::tempdir().unwrap();
        let store = store(&dir).await;
        let queue = JobQueue::new(store.clone(), "/q");
        let events = EventQueue::new(store.clone(), "/events");
        let id = queue.submit(&serde_json::json!({"n": 1})).await.unwrap();
        let claim = queue.claim_next("w1").await.unwrap().expect("claimed");
        // someone else changes the job behind the worker's back
        let node = store.get(&queue.request_path(&id)).await.unwrap().unwrap();
        store
            .set(
                &queue.request_path(&id),
                &node.data,
                Some(node.stat.version),
            )
            .await
            .unwrap();
        let op = events.put_op(b"done".to_vec()).await.unwrap();
        let err = queue
            .complete_with(claim, Value::Null, vec![op])
            .await
            .unwrap_err();
        assert!(err.is_bad_version(), "{err}");
        assert!(events.read().await.unwrap().is_empty());

        // a fresh claim of another job, handed back, is claimable again
        let id2 = queue.submit(&serde_json::json!({"n": 2})).await.unwrap();
        let claim = queue.claim(&id2, "w1").await.unwrap().expect("claimed");
        queue.release(claim).await.unwrap();
        let again = queue.claim(&id2, "w2").await.unwrap().expect("reclaimed");
        assert_eq!(again.job.record.worker.as_deref(), Some("w2"));
    }
}
