//! `dspans ui` in headless Chromium (`/usr/bin/chromium`), driven by
//! playwright-core from `crates/ui/tests/browser` (`npm ci` there; `.ci/run`
//! does it). The driver prints what the page showed; these tests assert.
//!
//! - On a demo run's traces: error spans have the error style and no other
//!   span has it, the axis has ticks, collapsing a BuildSet hides its
//!   Builds, the search `ref_number=2` leaves only that change's traces, a
//!   link opens the linked trace with the linked span selected, and the
//!   page logs nothing to its console.
//! - Live: the components export to the viewer, which also reads their
//!   store. A job sleeps 8 s; the page, opened once, shows the QueueItem,
//!   BuildSet and Build as running and growing. The scheduler holding the
//!   pipeline is SIGKILLed: in every sample after that the three are shown
//!   (running, orphaned or finished), until all three are finished.

use std::collections::{BTreeSet, HashMap};
use std::io::{BufRead as _, BufReader, Write as _};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdout, Command, Stdio};

use dspans_otlp::read_json_lines;
use dspans_otlp::receiver::spans_of;
use dspans_otlp::view::{hex, value_to_string};
use dspans_test_support::process::Running;
use dspans_test_support::{free_port, Backend};
use serde_json::Value;

use crate::support::{gate_config, Components, DSPANS};

/// The driver's directory, with playwright-core installed.
fn driver_dir() -> PathBuf {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../ui/tests/browser");
    assert!(
        dir.join("node_modules/playwright-core").exists(),
        "playwright-core is missing: run `npm ci --prefix crates/ui/tests/browser`"
    );
    assert!(
        Path::new("/usr/bin/chromium").exists(),
        "/usr/bin/chromium is missing: run `apt-get install -y chromium` (as root)"
    );
    dir
}

/// `node check.mjs ARGS`, its stdin and stdout piped.
fn driver(args: &[&str]) -> Child {
    Command::new("node")
        .arg("check.mjs")
        .args(args)
        .current_dir(driver_dir())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("node runs (apt-get install -y nodejs npm)")
}

/// The driver's next JSON line; fails on its error line or its end.
fn next_step(lines: &mut impl Iterator<Item = std::io::Result<String>>) -> Value {
    let line = lines
        .next()
        .expect("the driver printed nothing more")
        .unwrap();
    let step: Value = serde_json::from_str(&line).unwrap();
    assert_ne!(
        step["step"], "error",
        "the driver failed: {}",
        step["message"]
    );
    step
}

/// `dspans ui ARGS --listen 127.0.0.1:0`; returns it and its URL.
fn start_ui(args: &[&str]) -> (Running, String) {
    let mut child = Command::new(DSPANS)
        .arg("ui")
        .args(args)
        .args(["--listen", "127.0.0.1:0"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let stdout: ChildStdout = child.stdout.take().unwrap();
    let first = BufReader::new(stdout).lines().next();
    let url = match first {
        Some(Ok(line)) => line
            .strip_prefix("dspans ui: ")
            .unwrap_or_else(|| panic!("unexpected first line {line:?}"))
            .to_string(),
        other => panic!("dspans ui did not start: {other:?}"),
    };
    (Running(child), url)
}

/// A span of the demo's file: trace, span id, name, error, `ref_number`.
struct Seen {
    trace: String,
    span: String,
    name: String,
    error: bool,
    change: String,
}

fn spans_in(file: &Path) -> Vec<Seen> {
    spans_of(&read_json_lines(file).unwrap())
        .into_iter()
        .map(|s| Seen {
            trace: hex(&s.trace_id),
            span: hex(&s.span_id),
            name: s.name.clone(),
            error: s.status.as_ref().is_some_and(|st| st.code == 2),
            change: s
                .attributes
                .iter()
                .find(|kv| kv.key == "ref_number")
                .map(|kv| value_to_string(kv.value.as_ref()))
                .unwrap_or_default(),
        })
        .collect()
}

/// Appends a trace of one span that links to `trace`/`span`; returns its
/// trace id.
fn append_linking_trace(file: &Path, trace: &str, span: &str) -> String {
    let id = "4c1f0000000000000000000000000001";
    let line = format!(
        r#"{{"resourceSpans":[{{"resource":{{"attributes":[{{"key":"service.name","value":{{"stringValue":"follow-up"}}}}]}},"scopeSpans":[{{"spans":[{{"traceId":"{id}","spanId":"4c1f000000000001","name":"follow-up report","startTimeUnixNano":"1000000000","endTimeUnixNano":"2000000000","links":[{{"traceId":"{trace}","spanId":"{span}"}}]}}]}}]}}]}}"#
    );
    let mut out = std::fs::OpenOptions::new().append(true).open(file).unwrap();
    writeln!(out, "{line}").unwrap();
    id.to_string()
}

/// `rgb(r, g, b)` is red: red well above green and blue.
fn is_red(colour: &str) -> bool {
    let parts: Vec<f64> = colour
        .trim_start_matches("rgba(")
        .trim_start_matches("rgb(")
        .trim_end_matches(')')
        .split(',')
        .filter_map(|p| p.trim().parse().ok())
        .collect();
    matches!(parts[..], [r, g, b, ..] if r > 150.0 && r > g * 2.0 && r > b * 2.0)
}

#[test]
fn the_viewer_styles_errors_collapses_searches_and_follows_links() {
    let dir = tempfile::tempdir().unwrap();
    let demo = dir.path().join("demo");
    let out = Command::new(DSPANS)
        .args(["demo", "--dir"])
        .arg(&demo)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    let file = demo.join("traces.jsonl");
    let spans = spans_in(&file);
    let item = spans
        .iter()
        .find(|s| s.name == "QueueItem" && s.change == "[2]")
        .expect("change 2's QueueItem");
    let linking = append_linking_trace(&file, &item.trace, &item.span);
    let error_of: HashMap<&str, bool> = spans.iter().map(|s| (s.span.as_str(), s.error)).collect();

    let (_ui, url) = start_ui(&[file.to_str().unwrap(), "--no-otlp"]);
    let mut browser = driver(&["static", &url, &item.trace, &linking]);
    let stdout = browser.stdout.take().unwrap();
    let mut lines = BufReader::new(stdout).lines();

    let trace = next_step(&mut lines);
    let shown = trace["shown"].as_array().unwrap();
    assert_eq!(
        shown.len(),
        spans.iter().filter(|s| s.trace == item.trace).count()
    );
    for row in shown {
        let expected = error_of[row["span"].as_str().unwrap()];
        assert_eq!(row["error"], expected, "{row}");
        let bar = row["bar"].as_str().unwrap();
        assert_eq!(is_red(bar), expected, "bar colour of {row}");
    }
    assert!(shown.iter().any(|r| r["error"] == true), "change 2 failed");
    assert!(
        trace["ticks"].as_array().unwrap().len() >= 3,
        "{}",
        trace["ticks"]
    );
    let at = trace["buildSet"].as_u64().unwrap() as usize;
    let depth = shown[at]["depth"].as_u64().unwrap();
    let below = shown[at + 1..]
        .iter()
        .take_while(|r| r["depth"].as_u64().unwrap() > depth)
        .count();
    let collapsed = trace["collapsed"].as_array().unwrap();
    for (i, row) in collapsed.iter().enumerate() {
        let inside = i > at && i <= at + below;
        assert_eq!(row["hidden"], inside, "row {i} after collapsing row {at}");
    }
    assert!(collapsed[at + 1..=at + below]
        .iter()
        .any(|r| r["name"] == "Build"));
    assert!(trace["expanded"]
        .as_array()
        .unwrap()
        .iter()
        .all(|r| r["hidden"] == false));

    let search = next_step(&mut lines);
    let found: BTreeSet<&str> = search["found"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t.as_str().unwrap())
        .collect();
    let expected: BTreeSet<&str> = spans
        .iter()
        .filter(|s| s.change == "[2]" || s.change == "2")
        .map(|s| s.trace.as_str())
        .collect();
    assert_eq!(found, expected);
    assert!(found.contains(item.trace.as_str()));

    let link = next_step(&mut lines);
    assert_eq!(link["opened"], item.trace.as_str());
    assert_eq!(link["selected"], serde_json::json!([item.span]));
    assert_eq!(link["console"], serde_json::json!([]), "console messages");
    assert!(browser.wait().unwrap().success());
}

#[test]
fn running_spans_show_live_and_stay_through_a_killed_scheduler() {
    let grpc = free_port();
    let endpoint = format!("http://127.0.0.1:{grpc}");
    let mut world = Components::start(Backend::Sqlite, 2000, 2000, |store| {
        gate_config(store, &endpoint, "", "dependent", "sleep 8")
    });
    let config = world.config.clone();
    let (_ui, url) = start_ui(&[
        "--config",
        config.to_str().unwrap(),
        "--grpc",
        &format!("127.0.0.1:{grpc}"),
        "--http",
        "127.0.0.1:0",
    ]);
    for (kind, name) in [
        ("scheduler", "scheduler-a"),
        ("scheduler", "scheduler-b"),
        ("executor", "executor"),
        ("merger", "merger"),
    ] {
        world.spawn(kind, name);
    }
    let mut browser = driver(&["live", &url]);
    let mut stdin = browser.stdin.take().unwrap();
    let mut lines = BufReader::new(browser.stdout.take().unwrap()).lines();
    assert_eq!(next_step(&mut lines)["step"], "ready");
    world.enqueue(1);

    let running = next_step(&mut lines);
    assert_eq!(running["step"], "running");
    for row in running["rows"].as_array().unwrap() {
        assert_eq!(row["state"], "running", "{row}");
        assert!(row["dur"].as_str().unwrap().ends_with("so far"), "{row}");
    }
    let holder = world.lock_holder().unwrap_or_default();
    assert!(holder.starts_with("scheduler-"), "lock holder {holder:?}");
    world.kill(&holder);
    writeln!(stdin, "killed").unwrap();

    let finished = next_step(&mut lines);
    assert_eq!(finished["step"], "finished", "{finished}");
    let samples = finished["samples"].as_array().unwrap();
    let distinct: BTreeSet<String> = samples.iter().map(|s| s.to_string()).collect();
    eprintln!(
        "live: {} samples after the kill, states {distinct:?}",
        samples.len()
    );
    for sample in samples {
        for state in sample.as_array().unwrap() {
            assert_ne!(state, "vanished", "a running span vanished: {finished}");
        }
    }
    for row in finished["rows"].as_array().unwrap() {
        let dur = row["dur"].as_str().unwrap();
        assert!(!dur.ends_with("so far") && dur.ends_with(" s"), "{row}");
    }
    drop(stdin);
    assert_eq!(finished["reloaded"], false, "the page was reloaded");
    assert_eq!(
        finished["console"],
        serde_json::json!([]),
        "console messages"
    );
    assert!(browser.wait().unwrap().success());
}
