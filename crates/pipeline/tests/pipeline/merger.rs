//! The merger against a SQLite store, a real git repository and a real
//! OTLP receiver: clean merges, conflicts, projects without a repository,
//! and the MergerJob span's parent.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use dspans_otlp::proto::common::v1::any_value::Value;
use dspans_otlp::proto::trace::v1::Span;
use dspans_pipeline::merger::{change_branch, Merger};
use dspans_pipeline::model::{
    ChangeRef, MergeCompleted, MergeRequest, MergeResult, ResultEvent, StoredObject,
};
use dspans_pipeline::{Config, Layout};
use dspans_store::recipes::{EventQueue, JobQueue, JobState};
use dspans_store::{SqliteStore, Store, StoreConfig};
use dspans_test_support::{attr, TestReceiver};
use durable_spans::{SavedSpanOptions, SpanContext};
use tokio::sync::oneshot;

use crate::support::{Exporting as _, DEADLINE};

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

async fn open_store(dir: &tempfile::TempDir) -> Arc<dyn Store> {
    let config = StoreConfig::sqlite(dir.path().join("dspans.db"));
    Arc::new(SqliteStore::create(&config).await.unwrap())
}

/// Waits (with a deadline) until the result queue holds `n` events.
async fn wait_results(events: &EventQueue, n: usize) -> Vec<ResultEvent> {
    let start = Instant::now();
    let mut watch = events.watch().await.unwrap();
    loop {
        let found = events.read().await.unwrap();
        if found.len() >= n {
            return found
                .iter()
                .map(|e| ResultEvent::from_json(&e.data).unwrap())
                .collect();
        }
        assert!(
            start.elapsed() < DEADLINE,
            "only {} of {n} results",
            found.len()
        );
        watch.next_timeout(Duration::from_millis(200)).await;
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn git(dir: &Path, args: &[&str]) {
    let status = Command::new("git")
        .args(args)
        .current_dir(dir)
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .env("GIT_AUTHOR_NAME", "test")
        .env("GIT_AUTHOR_EMAIL", "test@example.invalid")
        .env("GIT_COMMITTER_NAME", "test")
        .env("GIT_COMMITTER_EMAIL", "test@example.invalid")
        .status()
        .unwrap();
    assert!(status.success(), "git {args:?}");
}

fn commit_file(dir: &Path, file: &str, text: &str, message: &str) {
    std::fs::write(dir.join(file), text).unwrap();
    git(dir, &["add", file]);
    git(dir, &["commit", "-q", "-m", message]);
}

/// A repository whose `main` has moved on since two change branches were
/// made: change 1 touches another file (merges cleanly), change 2 edits
/// the same line as `main` (conflicts).
fn make_repo(dir: &Path) {
    std::fs::create_dir_all(dir).unwrap();
    git(dir, &["init", "-q", "-b", "main"]);
    commit_file(dir, "a.txt", "base\n", "base");
    git(dir, &["checkout", "-q", "-b", &change_branch(1, 1)]);
    commit_file(dir, "b.txt", "new file\n", "change 1");
    git(dir, &["checkout", "-q", "main"]);
    git(dir, &["checkout", "-q", "-b", &change_branch(2, 1)]);
    commit_file(dir, "a.txt", "change two\n", "change 2");
    git(dir, &["checkout", "-q", "main"]);
    commit_file(dir, "a.txt", "main moved on\n", "main");
}

fn config(repo: &Path) -> Config {
    format!(
        r#"
        [[pipeline]]
        name = "gate"
        manager = "dependent"

        [[job]]
        name = "unit"
        run = "true"

        [[project]]
        name = "org/repo"
        repo = "{}"
        gate = ["unit"]

        [[project]]
        name = "org/plain"
        gate = ["unit"]
    "#,
        repo.display()
    )
    .parse()
    .unwrap()
}

fn change(project: &str, number: u64) -> ChangeRef {
    ChangeRef {
        project: project.to_string(),
        number,
        patchset: 1,
        branch: "main".to_string(),
    }
}

fn merge_request(uuid: &str, changes: Vec<ChangeRef>, parent: Option<SpanContext>) -> MergeRequest {
    MergeRequest {
        uuid: uuid.to_string(),
        buildset_uuid: format!("bs-{uuid}"),
        item_uuid: format!("item-{uuid}"),
        pipeline: "gate".to_string(),
        zuul_event_id: "ev1".to_string(),
        changes,
        started_by: None,
        span_info: None,
        span_context: parent,
    }
}

#[test]
fn merges_clean_changes_reports_conflicts_and_traces_under_the_merge_span() {
    let otlp = TestReceiver::start();
    let tracer = otlp.tracer("merger-test");
    let dir = tempfile::tempdir().unwrap();
    let repo = dir.path().join("repo");
    make_repo(&repo);
    let rt = runtime();
    let merge_span = rt.block_on(async {
        let store = open_store(&dir).await;
        let layout = Layout::default();
        let queue = JobQueue::new(store.clone(), layout.merger_queue());
        let merge_span = tracer
            .start_saved_span("Merge", SavedSpanOptions::new())
            .unwrap();
        let parent = Some(merge_span.span_context());
        let requests = [
            merge_request("clean", vec![change("org/repo", 1)], parent),
            merge_request("conflict", vec![change("org/repo", 2)], parent),
            merge_request(
                "stacked",
                vec![change("org/repo", 1), change("org/repo", 2)],
                parent,
            ),
            merge_request("plain", vec![change("org/plain", 7)], parent),
            merge_request("missing", vec![change("org/repo", 9)], parent),
        ];
        let mut ids = Vec::new();
        for request in &requests {
            ids.push(queue.submit(request).await.unwrap());
        }
        let (stop, stopped) = oneshot::channel::<()>();
        let merger = Merger::new(config(&repo), store.clone(), tracer.clone(), "merger-1");
        let task = tokio::spawn(merger.run(async {
            let _ = stopped.await;
        }));
        let events = EventQueue::new(store.clone(), layout.result_events("gate"));
        let results: BTreeMap<String, MergeCompleted> = wait_results(&events, requests.len())
            .await
            .into_iter()
            .map(|e| match e {
                ResultEvent::MergeCompleted(m) => (m.merge_request.clone(), m),
                other => panic!("unexpected {other:?}"),
            })
            .collect();
        stop.send(()).unwrap();
        task.await.unwrap();

        let clean = &results["clean"];
        assert_eq!(clean.result, MergeResult::Merged, "{clean:?}");
        let commit = clean.commit.as_deref().expect("merged commit");
        assert_eq!(commit.len(), 40);
        assert_eq!(clean.merger, "merger-1");
        assert_eq!(clean.buildset_uuid, "bs-clean");
        assert_eq!(results["conflict"].result, MergeResult::MergeConflict);
        assert!(results["conflict"]
            .message
            .as_deref()
            .unwrap()
            .contains("2,1"));
        assert_eq!(results["stacked"].result, MergeResult::MergeConflict);
        assert_eq!(results["plain"].result, MergeResult::Merged);
        assert_eq!(results["plain"].commit, None);
        assert_eq!(results["missing"].result, MergeResult::Error);
        // the project's repository itself is untouched
        let head = Command::new("git")
            .args(["rev-parse", "--abbrev-ref", "HEAD"])
            .current_dir(&repo)
            .output()
            .unwrap();
        assert_eq!(String::from_utf8_lossy(&head.stdout).trim(), "main");
        assert_eq!(
            std::fs::read_to_string(repo.join("a.txt")).unwrap(),
            "main moved on\n"
        );

        for id in &ids {
            let job = queue.get(id).await.unwrap().unwrap();
            assert_eq!(job.record.state, JobState::Completed);
        }
        merge_span
    });

    let spans = otlp.wait_for_spans(5, DEADLINE);
    let jobs: Vec<&Span> = spans.iter().filter(|s| s.name == "MergerJob").collect();
    assert_eq!(jobs.len(), 5);
    for span in jobs {
        assert_eq!(hex(&span.trace_id), format!("{:032x}", merge_span.trace_id));
        assert_eq!(
            hex(&span.parent_span_id),
            format!("{:016x}", merge_span.span_id)
        );
        assert!(
            matches!(attr(&span.attributes, "merger"), Some(Value::StringValue(m)) if !m.is_empty())
        );
    }
}
