//! The objects the pipeline keeps in the store, as JSON, each carrying its
//! span data as docs/spans.md's table of stored objects says:
//!
//! | object | span data | store path ([`crate::layout`]) |
//! |---|---|---|
//! | [`TriggerEvent`] | `span_context` | `events/trigger` queue |
//! | [`QueueItem`] | `span_info` | `pipelines/<p>/items/<item>` |
//! | [`BuildSet`] | `span_info` | `…/items/<item>/buildsets/<bs>` |
//! | [`Build`] | `span_info` | `…/buildsets/<bs>/builds/<build>` |
//! | [`BuildRequest`] | `span_context` | `executor` job queue |
//! | [`MergeRequest`] | `span_info` + `span_context` | `merger` job queue |
//! | [`ResultEvent`] | none | `events/results/<p>` queue |
//! | [`ChangeQueue`] | none | `pipelines/<p>/queues/<queue>` |
//! | [`Report`] | none | `pipelines/<p>/reports/<item>` |
//!
//! Span data is always optional and read leniently
//! ([`durable_spans::lenient`], [`crate::lenient_context`]): objects written
//! before tracing was enabled, or with damaged span data, decode with `None`
//! there and are processed normally. Unknown keys are ignored, so a newer
//! writer's objects stay readable during a rolling upgrade.
//!
//! Decode with [`StoredObject::from_json`] (serde_json's text reader), not
//! through `serde_json::Value`: 128-bit trace ids do not fit a `Value`, and
//! the lenient span readers need the raw text.

mod objects;

pub use objects::{
    Build, BuildCompleted, BuildReport, BuildRequest, BuildSet, ChangeQueue, MergeCompleted,
    MergeRequest, QueueItem, Report, ResultEvent, TriggerEvent,
};

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

/// A new object id: 32 lowercase hex digits of a random (v4) uuid, the
/// form Zuul uses (`uuid4().hex`). Also used for `zuul_event_id`.
pub fn new_uuid() -> String {
    uuid::Uuid::new_v4().simple().to_string()
}

/// Encoding or decoding a stored object failed.
#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    /// The bytes are not a valid JSON encoding of the object.
    #[error("cannot decode {kind} from JSON: at `{path}`: {reason}")]
    Decode {
        /// Object type, e.g. `QueueItem`.
        kind: &'static str,
        /// Key path of the offending value (`.` for the whole value).
        path: String,
        /// The reason, with line and column.
        reason: String,
    },
    /// The object could not be encoded (not expected for these types).
    #[error("cannot encode {kind} as JSON: {reason}")]
    Encode {
        /// Object type.
        kind: &'static str,
        /// The reason.
        reason: String,
    },
}

/// An object stored as JSON: encoding helpers with clear errors.
pub trait StoredObject: Serialize + DeserializeOwned {
    /// The type's name, used in error messages.
    const KIND: &'static str;

    /// Compact JSON bytes, ready for the store.
    fn to_json(&self) -> Result<Vec<u8>, ModelError> {
        serde_json::to_vec(self).map_err(|e| ModelError::Encode {
            kind: Self::KIND,
            reason: e.to_string(),
        })
    }

    /// Decodes JSON bytes read from the store. Errors name the key path,
    /// line and column; span data never causes an error.
    fn from_json(bytes: &[u8]) -> Result<Self, ModelError> {
        let decode_error = |path: String, e: serde_json::Error| ModelError::Decode {
            kind: Self::KIND,
            path,
            reason: e.to_string(),
        };
        let mut de = serde_json::Deserializer::from_slice(bytes);
        let value = serde_path_to_error::deserialize(&mut de).map_err(|e| {
            let path = e.path().to_string();
            decode_error(path, e.into_inner())
        })?;
        de.end().map_err(|e| decode_error(".".to_string(), e))?;
        Ok(value)
    }

    /// The object as a JSON *string* value, for containers that hold a
    /// `serde_json::Value`, such as `dspans_store::recipes::JobQueue`
    /// requests. A `Value` cannot hold a trace id above 2^64 (serde_json
    /// refuses it as "number out of range"), so the object travels as its
    /// JSON text; [`StoredObject::from_embedded`] reads it back exactly.
    fn to_embedded(&self) -> Result<serde_json::Value, ModelError> {
        let bytes = self.to_json()?;
        String::from_utf8(bytes)
            .map(serde_json::Value::String)
            .map_err(|e| ModelError::Encode {
                kind: Self::KIND,
                reason: e.to_string(),
            })
    }

    /// Reads a value made by [`StoredObject::to_embedded`].
    fn from_embedded(value: &serde_json::Value) -> Result<Self, ModelError> {
        match value {
            serde_json::Value::String(text) => Self::from_json(text.as_bytes()),
            other => Err(ModelError::Decode {
                kind: Self::KIND,
                path: ".".to_string(),
                reason: format!(
                    "expected the object's JSON text as a string, found {}",
                    match other {
                        serde_json::Value::Null => "null",
                        serde_json::Value::Bool(_) => "a boolean",
                        serde_json::Value::Number(_) => "a number",
                        serde_json::Value::Array(_) => "an array",
                        serde_json::Value::Object(_) => "an object",
                        serde_json::Value::String(_) => "a string",
                    }
                ),
            }),
        }
    }
}

/// The change an object is about: Zuul's ref (project, change, patchset)
/// plus its target branch.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct ChangeRef {
    /// Project name, e.g. `org/project`.
    pub project: String,
    /// Change number.
    pub number: u64,
    /// Patchset number (a new patchset of a queued change supersedes it).
    pub patchset: u64,
    /// Target branch.
    pub branch: String,
}

impl ChangeRef {
    /// Zuul's short form, `<number>,<patchset>`.
    pub fn short(&self) -> String {
        format!("{},{}", self.number, self.patchset)
    }
}

/// What the pipeline's results have in common: Zuul's string, the CI/CD
/// semantic-convention value, and whether the work failed.
pub trait WorkResult: Copy {
    /// Zuul's string, e.g. `FAILURE`.
    fn as_str(self) -> &'static str;

    /// The OpenTelemetry CI/CD value, e.g. `failure`.
    fn cicd_result(self) -> &'static str;

    /// Whether the work failed (`failure`, `error` or `timeout`): its span
    /// ends with status ERROR and `error.type`. Success, a cancellation
    /// (a gate reset, a dequeue) and a skip do not.
    ///
    /// ```
    /// use dspans_pipeline::model::{BuildResult, ItemResult, WorkResult as _};
    /// assert!(BuildResult::TimedOut.is_failure());
    /// assert!(!ItemResult::Reset.is_failure());
    /// ```
    fn is_failure(self) -> bool {
        matches!(self.cicd_result(), "failure" | "error" | "timeout")
    }
}

/// Defines a result enum whose JSON form is Zuul's upper-case string.
macro_rules! result_enum {
    ($(#[$meta:meta])* $name:ident { $($(#[$vmeta:meta])* $variant:ident = $text:literal => $cicd:literal,)* }) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
        pub enum $name {
            $($(#[$vmeta])* #[serde(rename = $text)] $variant,)*
        }

        impl $name {
            /// Zuul's string, e.g. `SUCCESS` (also the JSON form).
            pub fn as_str(self) -> &'static str {
                match self { $($name::$variant => $text,)* }
            }

            /// The OpenTelemetry CI/CD semantic-convention value
            /// (`success`, `failure`, `error`, `timeout`, `cancellation`,
            /// `skip`) for `cicd.pipeline.result` and
            /// `cicd.pipeline.task.run.result`.
            pub fn cicd_result(self) -> &'static str {
                match self { $($name::$variant => $cicd,)* }
            }
        }

        impl WorkResult for $name {
            fn as_str(self) -> &'static str {
                $name::as_str(self)
            }

            fn cicd_result(self) -> &'static str {
                $name::cicd_result(self)
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.as_str())
            }
        }
    };
}

result_enum! {
    /// The result of one build.
    BuildResult {
        /// The command exited 0.
        Success = "SUCCESS" => "success",
        /// The command exited non-zero.
        Failure = "FAILURE" => "failure",
        /// The command outlived the job's `timeout_s`.
        TimedOut = "TIMED_OUT" => "timeout",
        /// The executor died and the build was not retried.
        Lost = "LOST" => "error",
        /// The executor died on every one of the job's attempts.
        RetryLimit = "RETRY_LIMIT" => "error",
        /// The build was cancelled (gate reset, dequeue).
        Canceled = "CANCELED" => "cancellation",
        /// The build never ran because the merge failed.
        Skipped = "SKIPPED" => "skip",
        /// The executor could not run the command at all.
        Error = "ERROR" => "error",
        /// The executor's config has no job of the requested name, so
        /// nothing was run.
        ConfigError = "CONFIG_ERROR" => "error",
    }
}

result_enum! {
    /// The result of a merge request.
    MergeResult {
        /// The change (and the changes ahead) merged cleanly.
        Merged = "MERGED" => "success",
        /// Merging the change branch onto the target failed.
        MergeConflict = "MERGE_CONFLICT" => "failure",
        /// The merger failed for another reason (missing repository, …).
        Error = "ERROR" => "error",
    }
}

result_enum! {
    /// The result of a build set and of the queue item it belongs to.
    ItemResult {
        /// Every build succeeded.
        Success = "SUCCESS" => "success",
        /// At least one build did not succeed.
        Failure = "FAILURE" => "failure",
        /// The change did not merge; no builds ran.
        MergeConflict = "MERGE_CONFLICT" => "failure",
        /// Replaced by a new build set after a failure ahead (gate reset).
        Reset = "RESET" => "cancellation",
        /// Removed from the queue before completing (superseded, cancelled).
        Dequeued = "DEQUEUED" => "cancellation",
        /// An internal error, e.g. a merger error.
        Error = "ERROR" => "error",
    }
}

impl BuildResult {
    /// True for [`BuildResult::Success`].
    pub fn is_success(self) -> bool {
        self == BuildResult::Success
    }
}

impl ItemResult {
    /// True for [`ItemResult::Success`].
    pub fn is_success(self) -> bool {
        self == ItemResult::Success
    }
}

/// Where a queue item is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum ItemState {
    /// Enqueued; its build set has not requested anything yet.
    #[default]
    Queued,
    /// Its current build set is merging or building.
    Active,
    /// Its result is known; waiting to be reported (in a dependent
    /// pipeline, after the items ahead).
    Completed,
    /// Reported; to be dequeued.
    Reported,
}

/// Where a build set is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum BuildSetState {
    /// Created; no merge requested yet.
    #[default]
    New,
    /// A merge request is outstanding.
    Merging,
    /// Merged; builds requested, results outstanding.
    Building,
    /// Every result is in (or the merge failed); `result` is set.
    Completed,
}

/// Where a build is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum BuildState {
    /// Requested from the executors.
    #[default]
    Requested,
    /// An executor has claimed the request.
    Running,
    /// The result is in; `result` is set.
    Completed,
}
