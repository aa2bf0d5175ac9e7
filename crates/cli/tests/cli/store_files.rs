//! The SQLite store's file from the command line: only `dspans store init`
//! creates it (owner-only); every command refuses a missing or emptied
//! file, naming it; and a running component whose store goes bad — its
//! write-ahead log removed, a corrupt page — stops with status 1 and says
//! why instead of carrying on or retrying forever.

use std::os::unix::fs::{FileExt as _, PermissionsExt as _};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

use dspans_test_support::process::{wait_for_exit, Processes};
use dspans_test_support::wait_for;

use crate::support::DSPANS;

/// A configuration whose SQLite store is `state/dspans.db` beside it.
fn write_config(dir: &Path) -> (PathBuf, PathBuf) {
    let config = dir.join("dspans.toml");
    std::fs::write(
        &config,
        r#"[store]
backend = "sqlite"
path = "state/dspans.db"
session_timeout_ms = 3000

[tracing]
enabled = false

[[pipeline]]
name = "gate"
manager = "dependent"

[[job]]
name = "unit"
run = "true"

[[project]]
name = "org/project"
gate = ["unit"]
"#,
    )
    .unwrap();
    (config, dir.join("state/dspans.db"))
}

fn dspans(config: &Path, args: &[&str]) -> Output {
    Command::new(DSPANS)
        .args(args)
        .arg("--config")
        .arg(config)
        .output()
        .unwrap()
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

/// Starts `dspans scheduler --name NAME` in `procs`.
fn start_scheduler(procs: &mut Processes, config: &Path, name: &str) {
    let mut command = Command::new(DSPANS);
    command
        .args(["scheduler", "--config"])
        .arg(config)
        .args(["--name", name]);
    procs.launch(name, command);
}

/// Waits (at most 30 s) for the scheduler `name` to exit; asserts status 1
/// and a log naming the store's file and `expected`.
fn assert_stops_with(procs: &mut Processes, name: &str, db: &Path, expected: &str) {
    let status = wait_for_exit(procs.child(name), Duration::from_secs(30));
    let log = procs.log(name);
    assert_eq!(status.and_then(|s| s.code()), Some(1), "{name}:\n{log}");
    assert!(log.contains(&db.display().to_string()), "{name}:\n{log}");
    assert!(log.contains(expected), "{name}:\n{log}");
}

/// Before the fix, `status`, `store ls` and the components silently made
/// a new empty store where the file was missing or truncated (3 queued
/// items gone, "0 queued", exit 0).
#[test]
fn only_store_init_creates_a_sqlite_store() {
    let mut procs = Processes::new();
    let (config, db) = write_config(procs.path());
    let state = db.parent().unwrap().to_path_buf();

    for args in [&["status"][..], &["store", "ls", "/"]] {
        let out = dspans(&config, args);
        assert_eq!(out.status.code(), Some(1), "{args:?}: {out:?}");
        let text = stderr(&out);
        assert!(
            text.contains(&db.display().to_string()) && text.contains("does not exist"),
            "{args:?}: {text}"
        );
    }
    start_scheduler(&mut procs, &config, "before-init");
    assert_stops_with(&mut procs, "before-init", &db, "dspans store init");
    assert!(!state.exists(), "a command created {}", state.display());

    let out = dspans(&config, &["store", "init"]);
    assert!(out.status.success(), "{out:?}");
    assert!(String::from_utf8_lossy(&out.stdout).contains("created"));
    assert_eq!(mode(&db), 0o600);
    assert_eq!(mode(&state), 0o700);
    let again = dspans(&config, &["store", "init"]);
    assert!(again.status.success(), "{again:?}");
    assert!(String::from_utf8_lossy(&again.stdout).contains("exists already"));

    for change in ["1", "2", "3"] {
        let out = dspans(
            &config,
            &[
                "enqueue",
                "--pipeline",
                "gate",
                "--project",
                "org/project",
                "--change",
                change,
            ],
        );
        assert!(out.status.success(), "{out:?}");
    }
    assert!(dspans(&config, &["status"]).status.success());

    std::fs::File::create(&db).unwrap(); // truncated to 0 bytes
    for args in [&["status"][..], &["store", "ls", "/"], &["store", "init"]] {
        let out = dspans(&config, args);
        assert_eq!(out.status.code(), Some(1), "{args:?}: {out:?}");
        let text = stderr(&out);
        assert!(
            text.contains(&db.display().to_string()) && text.contains("empty"),
            "{args:?}: {text}"
        );
    }
    start_scheduler(&mut procs, &config, "after-truncation");
    assert_stops_with(&mut procs, "after-truncation", &db, "empty");
    assert_eq!(std::fs::metadata(&db).unwrap().len(), 0);
}

/// Before the fix, a running component whose store's write-ahead log was
/// removed logged nothing and carried on with the unlinked file (a crash
/// then lost the whole store).
#[test]
fn a_scheduler_stops_when_its_write_ahead_log_is_removed() {
    let mut procs = Processes::new();
    let (config, db) = write_config(procs.path());
    assert!(dspans(&config, &["store", "init"]).status.success());
    start_scheduler(&mut procs, &config, "s1");
    wait_for(
        "the scheduler taking the pipeline lock",
        Duration::from_secs(30),
        || procs.logs(),
        || {
            dspans(&config, &["store", "get", "/dspans/locks/pipelines/gate"])
                .status
                .success()
                .then_some(())
        },
    );
    let mut wal = db.as_os_str().to_owned();
    wal.push("-wal");
    std::fs::remove_file(PathBuf::from(&wal)).unwrap();
    assert_stops_with(&mut procs, "s1", &db, "write-ahead log");
}

/// Before the fix, a corrupt page made the scheduler's every store
/// operation fail and be retried, about 20 times a second, forever.
#[test]
fn a_scheduler_stops_on_a_corrupt_store() {
    let mut procs = Processes::new();
    let (config, db) = write_config(procs.path());
    assert!(dspans(&config, &["store", "init"]).status.success());
    let out = dspans(
        &config,
        &[
            "enqueue",
            "--pipeline",
            "gate",
            "--project",
            "org/project",
            "--change",
            "1",
        ],
    );
    assert!(out.status.success(), "{out:?}");

    // Every process is done with the file, so its pages are all in it:
    // ruin the index of nodes by parent, which opening the store does not
    // read and every read of a node does.
    let conn = rusqlite::Connection::open(&db).unwrap();
    let page_size: u64 = conn
        .query_row("PRAGMA page_size", [], |r| r.get(0))
        .unwrap();
    let root: u64 = conn
        .query_row(
            "SELECT rootpage FROM sqlite_master WHERE name = 'nodes_parent'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    drop(conn);
    let file = std::fs::OpenOptions::new().write(true).open(&db).unwrap();
    file.write_all_at(&vec![0xA5; page_size as usize], (root - 1) * page_size)
        .unwrap();
    drop(file);

    start_scheduler(&mut procs, &config, "s1");
    assert_stops_with(&mut procs, "s1", &db, "malformed");
}
