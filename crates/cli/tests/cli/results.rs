//! Results users can act on: `dspans enqueue --wait` exits with the
//! change's outcome, `dspans status` shows each reported change's result
//! and the builds that failed with their logs, and a failed build's log
//! holds its output (also the Build span's `cicd.pipeline.task.run.url.full`).

use std::process::Output;
use std::time::Duration;

use dspans_test_support::{attr, Backend, TestReceiver};

use crate::support::{gate_config, Components, Scenario};

fn start() -> Scenario<TestReceiver> {
    let receiver = TestReceiver::start();
    let procs = Components::start(Backend::Sqlite, 3000, 4000, |store| {
        gate_config(
            store,
            &receiver.endpoint(),
            "",
            "independent",
            r#"echo "unit output of change $DSPANS_CHANGE"; echo "to stderr" >&2; [ "$DSPANS_CHANGE" != 2 ]"#,
        )
    });
    Scenario {
        side: receiver,
        procs,
    }
}

/// `dspans enqueue … --change N --wait SECONDS`.
fn enqueue_and_wait(world: &Scenario<TestReceiver>, change: u64, seconds: &str) -> Output {
    world.dspans(&[
        "enqueue",
        "--pipeline",
        "gate",
        "--project",
        "org/project",
        "--change",
        &change.to_string(),
        "--wait",
        seconds,
    ])
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[test]
fn enqueue_waits_for_the_result_and_status_shows_failed_builds_with_their_logs() {
    let mut world = start();
    // No scheduler yet: nothing reports, the wait ends with status 4.
    let out = enqueue_and_wait(&world, 9, "0.5");
    assert_eq!(out.status.code(), Some(4), "{}", text(&out.stderr));
    assert!(
        text(&out.stderr).contains("no report"),
        "{}",
        text(&out.stderr)
    );

    world.spawn("scheduler", "scheduler-a");
    world.spawn("executor", "executor-1");
    world.spawn("merger", "merger-1");
    let passed = enqueue_and_wait(&world, 1, "60");
    assert_eq!(passed.status.code(), Some(0), "{}", text(&passed.stderr));
    assert!(
        text(&passed.stdout).contains("1,1 SUCCESS"),
        "{}",
        text(&passed.stdout)
    );

    let failed = enqueue_and_wait(&world, 2, "60");
    assert_eq!(failed.status.code(), Some(3), "{}", text(&failed.stderr));
    let stdout = text(&failed.stdout);
    assert!(stdout.contains("2,1 FAILURE"), "{stdout}");
    let log_line = stdout
        .lines()
        .find(|l| l.starts_with("unit FAILURE "))
        .unwrap_or_else(|| panic!("the failed build and its log: {stdout}"));
    let url = log_line.rsplit(' ').next().unwrap();
    let path = url.strip_prefix("file://").expect("a file:// URL");
    let log = std::fs::read_to_string(path).unwrap();
    assert!(log.contains("unit output of change 2"), "{log}");
    assert!(log.contains("to stderr"), "{log}");

    // status, as text and JSON: each reported change's result, the failed
    // build with its log.
    let status = world.dspans(&["status"]);
    let shown = text(&status.stdout);
    assert!(shown.contains("org/project 2,1 FAILURE"), "{shown}");
    assert!(shown.contains("org/project 1,1 SUCCESS"), "{shown}");
    assert!(shown.contains(&format!("unit FAILURE {url}")), "{shown}");
    let json = world.status();
    let reported = json["pipelines"][0]["reported"].as_array().unwrap();
    let change_2 = reported.iter().find(|r| r["change"] == "2,1").unwrap();
    assert_eq!(change_2["result"], "FAILURE");
    assert_eq!(change_2["failed"][0]["job"], "unit");
    assert_eq!(change_2["failed"][0]["log_url"], url);
    let change_1 = reported.iter().find(|r| r["change"] == "1,1").unwrap();
    assert_eq!(change_1["failed"].as_array().unwrap().len(), 0);

    // The Build span points at the log.
    let spans = world.side.spans_until(
        "the failed Build span",
        Duration::from_secs(60),
        || world.logs(),
        |spans| {
            spans.iter().any(|s| {
                s.name == "Build"
                    && attr(&s.attributes, "cicd.pipeline.task.run.url.full").is_some()
            })
        },
    );
    let urls: Vec<_> = spans
        .iter()
        .filter(|s| s.name == "Build")
        .filter_map(|s| attr(&s.attributes, "cicd.pipeline.task.run.url.full"))
        .collect();
    assert!(
        urls.contains(&&dspans_test_support::string(url)),
        "{urls:?}"
    );
}

/// Components started by hand (no RUST_LOG) say what they do: a line per
/// item and per build.
#[test]
fn components_log_each_item_and_build_at_the_default_level() {
    let mut world = start();
    for (kind, name) in [("scheduler", "s1"), ("executor", "e1"), ("merger", "m1")] {
        let mut command = std::process::Command::new(crate::support::DSPANS);
        command
            .args([
                kind,
                "--config",
                world.config.to_str().unwrap(),
                "--name",
                name,
            ])
            .env_remove("RUST_LOG");
        world.procs.launch(name, command);
    }
    let out = enqueue_and_wait(&world, 1, "60");
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    world.procs.terminate_all();
    let scheduler = world.log("s1");
    assert!(scheduler.contains("item enqueued"), "{scheduler}");
    assert!(scheduler.contains("build result"), "{scheduler}");
    let executor = world.log("e1");
    assert_eq!(executor.matches("build completed").count(), 2, "{executor}");
}
