//! The executor against a SQLite store and a real OTLP receiver: results,
//! environment, span parents, exclusive claims, undecodable requests and
//! shutdown hand-back.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use dspans_otlp::proto::common::v1::any_value::Value;
use dspans_otlp::proto::trace::v1::Span;
use dspans_pipeline::executor::Executor;
use dspans_pipeline::model::{BuildRequest, BuildResult, ChangeRef, ResultEvent, StoredObject};
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

/// A config whose jobs are `(name, run, timeout_s)`: the executor takes
/// each job's command and timeout from here, never from the request.
fn config(jobs: &[(&str, &str, u64)]) -> Config {
    let mut text = String::from("[[pipeline]]\nname = \"check\"\nmanager = \"independent\"\n");
    for (name, run, timeout_s) in jobs {
        text.push_str(&format!(
            "[[job]]\nname = {name:?}\nrun = {run:?}\ntimeout_s = {timeout_s}\n"
        ));
    }
    let names: Vec<String> = jobs
        .iter()
        .map(|(name, _, _)| format!("{name:?}"))
        .collect();
    text.push_str(&format!(
        "[[project]]\nname = \"org/project\"\ncheck = [{}]\n",
        names.join(", ")
    ));
    text.parse().unwrap()
}

fn request(uuid: &str, job: &str, parent: Option<SpanContext>) -> BuildRequest {
    BuildRequest {
        build_uuid: uuid.to_string(),
        job: job.to_string(),
        pipeline: "check".to_string(),
        change: ChangeRef {
            project: "org/project".to_string(),
            number: 42,
            patchset: 3,
            branch: "main".to_string(),
        },
        buildset_uuid: "bs1".to_string(),
        item_uuid: "item1".to_string(),
        zuul_event_id: "ev1".to_string(),
        retry: 0,
        span_context: parent,
    }
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

fn build_results(events: &[ResultEvent]) -> BTreeMap<String, (BuildResult, Option<i32>, String)> {
    events
        .iter()
        .map(|e| match e {
            ResultEvent::BuildCompleted(b) => (
                b.build_uuid.clone(),
                (b.result, b.exit_code, b.executor.clone()),
            ),
            other => panic!("unexpected {other:?}"),
        })
        .collect()
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[test]
fn runs_commands_reports_results_and_traces_under_the_request_context() {
    let otlp = TestReceiver::start();
    let tracer = otlp.tracer("executor-test");
    let dir = tempfile::tempdir().unwrap();
    let env_file = dir.path().join("env.txt");
    let rt = runtime();
    let build_span = rt.block_on(async {
        let store = open_store(&dir).await;
        let layout = Layout::default();
        let queue = JobQueue::new(store.clone(), layout.executor_queue());
        let build_span = tracer
            .start_saved_span("Build", SavedSpanOptions::new())
            .unwrap();
        let parent = build_span.span_context();
        let env_cmd = format!(
            "env | grep '^DSPANS_' | sort > '{}'; pwd >> '{}'",
            env_file.display(),
            env_file.display()
        );
        let jobs = [
            ("ok", "true", 10),
            ("bad", "exit 3", 10),
            ("slow", "sleep 5; echo late", 1),
            ("env", env_cmd.as_str(), 10),
        ];
        let mut ids = BTreeMap::new();
        for (job, _, _) in jobs {
            let id = queue
                .submit(&request(job, job, Some(parent)))
                .await
                .unwrap();
            ids.insert(job, id);
        }
        let (stop, stopped) = oneshot::channel::<()>();
        let executor = Executor::new(config(&jobs), store.clone(), tracer.clone(), "exec-1");
        let task = tokio::spawn(executor.run(async {
            let _ = stopped.await;
        }));
        let started = Instant::now();
        let events = EventQueue::new(store.clone(), layout.result_events("check"));
        let results = build_results(&wait_results(&events, 4).await);
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "timeout not enforced"
        );
        assert_eq!(results["ok"].0, BuildResult::Success);
        assert_eq!(results["ok"].1, Some(0));
        assert_eq!(results["bad"].0, BuildResult::Failure);
        assert_eq!(results["bad"].1, Some(3));
        assert_eq!(results["slow"].0, BuildResult::TimedOut);
        assert_eq!(results["slow"].1, None);
        assert_eq!(results["env"].0, BuildResult::Success);
        assert!(results.values().all(|r| r.2 == "exec-1"));

        let env = std::fs::read_to_string(&env_file).unwrap();
        for line in [
            "DSPANS_PROJECT=org/project",
            "DSPANS_CHANGE=42",
            "DSPANS_PATCHSET=3",
            "DSPANS_BRANCH=main",
            "DSPANS_PIPELINE=check",
            "DSPANS_JOB=env",
            "DSPANS_BUILD=env",
        ] {
            assert!(env.lines().any(|l| l == line), "{line} missing in:\n{env}");
        }
        let cwd = env.lines().last().unwrap();
        assert!(cwd.contains("dspans-build-"), "not a scratch dir: {cwd}");
        assert!(!std::path::Path::new(cwd).exists(), "scratch dir kept");

        for (uuid, id) in &ids {
            let job = queue.get(id).await.unwrap().unwrap();
            assert_eq!(job.record.state, JobState::Completed, "{uuid}");
            assert_eq!(job.record.worker.as_deref(), Some("exec-1"));
            let expected = results[*uuid].0.as_str();
            assert_eq!(job.record.result["result"], expected);
        }
        stop.send(()).unwrap();
        task.await.unwrap();
        build_span
    });

    // spans: a JobExecution per request under the Build context, and a
    // JobRun under each JobExecution; already exported
    let spans = otlp.wait_for_spans(8, DEADLINE);
    let execs: Vec<&Span> = spans.iter().filter(|s| s.name == "JobExecution").collect();
    let runs: Vec<&Span> = spans.iter().filter(|s| s.name == "JobRun").collect();
    assert_eq!((execs.len(), runs.len()), (4, 4));
    let trace = format!("{:032x}", build_span.trace_id);
    let build_id = format!("{:016x}", build_span.span_id);
    for exec in &execs {
        assert_eq!(hex(&exec.trace_id), trace);
        assert_eq!(hex(&exec.parent_span_id), build_id);
        assert!(
            matches!(attr(&exec.attributes, "hostname"), Some(Value::StringValue(h)) if !h.is_empty())
        );
    }
    let exec_ids: BTreeSet<String> = execs.iter().map(|s| hex(&s.span_id)).collect();
    let mut codes = BTreeSet::new();
    for run in &runs {
        assert_eq!(hex(&run.trace_id), trace);
        assert!(exec_ids.contains(&hex(&run.parent_span_id)));
        match attr(&run.attributes, "exit_code") {
            Some(Value::IntValue(code)) => codes.insert(*code),
            other => panic!("exit_code {other:?}"),
        };
        let exec = execs
            .iter()
            .find(|e| e.span_id == run.parent_span_id)
            .unwrap();
        assert!(run.start_time_unix_nano >= exec.start_time_unix_nano);
        assert!(run.end_time_unix_nano <= exec.end_time_unix_nano);
    }
    let expected: BTreeSet<i64> = [0, 3, -1].into();
    assert_eq!(codes, expected);
}

#[test]
fn two_executors_run_each_of_ten_requests_exactly_once() {
    let otlp = TestReceiver::start();
    let dir = tempfile::tempdir().unwrap();
    let runs_file = dir.path().join("runs.txt");
    let rt = runtime();
    rt.block_on(async {
        let store_a = open_store(&dir).await;
        let store_b = open_store(&dir).await;
        let layout = Layout::default();
        let queue = JobQueue::new(store_a.clone(), layout.executor_queue());
        let run = format!("echo \"$DSPANS_BUILD\" >> '{}'", runs_file.display());
        for i in 0..10 {
            queue
                .submit(&request(&format!("b{i}"), "record", None))
                .await
                .unwrap();
        }
        let (stop, stopped) = tokio::sync::watch::channel(false);
        let mut tasks = Vec::new();
        for (name, store) in [("exec-a", store_a.clone()), ("exec-b", store_b.clone())] {
            let jobs = [("record", run.as_str(), 10)];
            let executor = Executor::new(config(&jobs), store, otlp.tracer("executor-test"), name);
            let mut stopped = stopped.clone();
            tasks.push(tokio::spawn(executor.run(async move {
                let _ = stopped.wait_for(|s| *s).await;
            })));
        }
        let events = EventQueue::new(store_a.clone(), layout.result_events("check"));
        let results = build_results(&wait_results(&events, 10).await);
        stop.send(true).unwrap();
        for task in tasks {
            task.await.unwrap();
        }
        assert_eq!(results.len(), 10);
        assert!(results.values().all(|r| r.0 == BuildResult::Success));
        let runs = std::fs::read_to_string(&runs_file).unwrap();
        let mut lines: Vec<&str> = runs.lines().collect();
        lines.sort();
        let expected: Vec<String> = {
            let mut v: Vec<String> = (0..10).map(|i| format!("b{i}")).collect();
            v.sort();
            v
        };
        assert_eq!(lines, expected, "each build runs exactly once");
        assert_eq!(events.read().await.unwrap().len(), 10, "one result each");
    });
}

#[test]
fn an_undecodable_request_is_completed_with_error() {
    let otlp = TestReceiver::start();
    let dir = tempfile::tempdir().unwrap();
    let rt = runtime();
    rt.block_on(async {
        let store = open_store(&dir).await;
        let layout = Layout::default();
        let queue = JobQueue::new(store.clone(), layout.executor_queue());
        let broken = queue
            .submit(&serde_json::json!({"pipeline": "check", "build_uuid": "x", "run": 7}))
            .await
            .unwrap();
        let hopeless = queue.submit(&serde_json::json!([1, 2])).await.unwrap();
        let good = queue.submit(&request("g", "unit", None)).await.unwrap();
        let (stop, stopped) = oneshot::channel::<()>();
        let executor = Executor::new(
            config(&[("unit", "true", 10)]),
            store.clone(),
            otlp.tracer("executor-test"),
            "exec-1",
        );
        let task = tokio::spawn(executor.run(async {
            let _ = stopped.await;
        }));
        let events = EventQueue::new(store.clone(), layout.result_events("check"));
        let results = build_results(&wait_results(&events, 2).await);
        assert_eq!(results["x"].0, BuildResult::Error);
        assert_eq!(results["g"].0, BuildResult::Success);
        for id in [&broken, &hopeless, &good] {
            let start = Instant::now();
            loop {
                let job = queue.get(id).await.unwrap().unwrap();
                if job.record.state == JobState::Completed {
                    break;
                }
                assert!(start.elapsed() < DEADLINE, "{id} not completed");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
        let hopeless = queue.get(&hopeless).await.unwrap().unwrap();
        assert_eq!(hopeless.record.result["result"], "ERROR");
        stop.send(()).unwrap();
        task.await.unwrap();
    });
}

#[test]
fn shutdown_hands_back_a_build_that_does_not_end_within_the_grace_period() {
    let otlp = TestReceiver::start();
    let dir = tempfile::tempdir().unwrap();
    let rt = runtime();
    rt.block_on(async {
        let store = open_store(&dir).await;
        let layout = Layout::default();
        let queue = JobQueue::new(store.clone(), layout.executor_queue());
        let id = queue.submit(&request("long", "long", None)).await.unwrap();
        let (stop, stopped) = oneshot::channel::<()>();
        let executor = Executor::new(
            config(&[("long", "sleep 60", 120)]),
            store.clone(),
            otlp.tracer("executor-test"),
            "exec-1",
        );
        let task = tokio::spawn(executor.run(async {
            let _ = stopped.await;
        }));
        let start = Instant::now();
        while queue.get(&id).await.unwrap().unwrap().record.state != JobState::Running {
            assert!(start.elapsed() < DEADLINE, "never claimed");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let stopping = Instant::now();
        stop.send(()).unwrap();
        task.await.unwrap();
        let took = stopping.elapsed();
        assert!(took < Duration::from_secs(10), "shutdown took {took:?}");
        let job = queue.get(&id).await.unwrap().unwrap();
        assert_eq!(job.record.state, JobState::Requested);
        assert_eq!(job.record.worker, None);
        let events = EventQueue::new(store.clone(), layout.result_events("check"));
        assert!(events.read().await.unwrap().is_empty());
        // another executor takes it over
        assert!(queue.claim(&id, "exec-2").await.unwrap().is_some());
    });
}

#[test]
fn shutdown_finishes_a_build_that_ends_within_the_grace_period() {
    let otlp = TestReceiver::start();
    let dir = tempfile::tempdir().unwrap();
    let rt = runtime();
    rt.block_on(async {
        let store = open_store(&dir).await;
        let layout = Layout::default();
        let queue = JobQueue::new(store.clone(), layout.executor_queue());
        let id = queue
            .submit(&request("short", "short", None))
            .await
            .unwrap();
        let later = queue.submit(&request("later", "unit", None)).await.unwrap();
        let (stop, stopped) = oneshot::channel::<()>();
        let executor = Executor::new(
            config(&[("short", "sleep 1", 60), ("unit", "true", 60)]),
            store.clone(),
            otlp.tracer("executor-test"),
            "exec-1",
        );
        let task = tokio::spawn(executor.run(async {
            let _ = stopped.await;
        }));
        let start = Instant::now();
        while queue.get(&id).await.unwrap().unwrap().record.state != JobState::Running {
            assert!(start.elapsed() < DEADLINE, "never claimed");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        stop.send(()).unwrap();
        task.await.unwrap();
        let job = queue.get(&id).await.unwrap().unwrap();
        assert_eq!(job.record.state, JobState::Completed);
        assert_eq!(job.record.result["result"], "SUCCESS");
        // nothing new is claimed after shutdown
        let later = queue.get(&later).await.unwrap().unwrap();
        assert_eq!(later.record.state, JobState::Requested);
        let events = EventQueue::new(store.clone(), layout.result_events("check"));
        assert_eq!(
            build_results(&wait_results(&events, 1).await)["short"].0,
            BuildResult::Success
        );
    });
}

/// Whoever can write the store must not be able to run code on executors:
/// a request rewritten to carry a command (as requests of older versions
/// did) runs the executor's own job of that name, and a request naming a
/// job the executor's config lacks runs nothing at all.
#[test]
fn only_the_executors_own_jobs_run_whatever_the_store_says() {
    let otlp = TestReceiver::start();
    let dir = tempfile::tempdir().unwrap();
    let injected = dir.path().join("injected");
    let own = dir.path().join("own");
    let rt = runtime();
    rt.block_on(async {
        let store = open_store(&dir).await;
        let layout = Layout::default();
        let queue = JobQueue::new(store.clone(), layout.executor_queue());
        let inject = format!("touch '{}'", injected.display());
        let mut rewritten = serde_json::to_value(request("known", "unit", None)).unwrap();
        rewritten["run"] = inject.clone().into();
        rewritten["timeout_s"] = 1.into();
        let known = queue.submit(&rewritten).await.unwrap();
        let mut unknown = serde_json::to_value(request("unknown", "not-configured", None)).unwrap();
        unknown["run"] = inject.into();
        let unknown = queue.submit(&unknown).await.unwrap();

        let own_run = format!("touch '{}'", own.display());
        let (stop, stopped) = oneshot::channel::<()>();
        let executor = Executor::new(
            config(&[("unit", own_run.as_str(), 10)]),
            store.clone(),
            otlp.tracer("executor-test"),
            "exec-1",
        );
        let task = tokio::spawn(executor.run(async {
            let _ = stopped.await;
        }));
        let events = EventQueue::new(store.clone(), layout.result_events("check"));
        let results = build_results(&wait_results(&events, 2).await);
        stop.send(()).unwrap();
        task.await.unwrap();

        assert_eq!(results["known"].0, BuildResult::Success);
        assert_eq!(
            results["unknown"],
            (BuildResult::ConfigError, None, "exec-1".into())
        );
        assert!(own.exists(), "the executor's own job did not run");
        assert!(!injected.exists(), "a command from the store ran");
        let record = queue.get(&unknown).await.unwrap().unwrap().record;
        assert_eq!(record.state, JobState::Completed);
        assert_eq!(record.result["result"], "CONFIG_ERROR");
        let error = record.result["error"].as_str().unwrap_or_default();
        assert!(error.contains("not-configured"), "{error}");
        let record = queue.get(&known).await.unwrap().unwrap().record;
        assert_eq!(record.result["result"], "SUCCESS");
    });
    // The refused build's JobExecution span says why, with an error status.
    let spans = otlp.wait_for_spans(3, DEADLINE);
    let refused: Vec<&Span> = spans
        .iter()
        .filter(|s| s.name == "JobExecution")
        .filter(|s| s.status.as_ref().is_some_and(|st| st.code == 2))
        .collect();
    assert_eq!(refused.len(), 1, "{spans:#?}");
    let message = &refused[0].status.as_ref().unwrap().message;
    assert!(message.contains("not configured"), "{message}");
}
