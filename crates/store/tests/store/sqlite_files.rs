//! The SQLite store's file: created only on purpose, owner-only, never
//! mistaken for another file, and watched while open — a store whose file
//! or write-ahead log is removed or replaced, or whose pages are corrupt,
//! fails for good instead of carrying on or retrying forever.

use std::os::unix::fs::{FileExt as _, PermissionsExt as _};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use dspans_store::{
    create, init, open, CreateMode, Initialized, SessionState, Store, StoreConfig, StoreError,
};

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path)
        .expect("metadata")
        .permissions()
        .mode()
        & 0o777
}

fn companion(path: &Path, suffix: &str) -> PathBuf {
    let mut p = path.as_os_str().to_owned();
    p.push(suffix);
    PathBuf::from(p)
}

/// The reason of a `NotAStore` error about `path`.
fn not_a_store(result: Result<Arc<dyn Store>, StoreError>, path: &Path) -> String {
    match result {
        Err(StoreError::NotAStore { path: p, reason }) => {
            assert_eq!(Path::new(&p), path);
            reason
        }
        other => panic!("expected NotAStore for {}, got {other:?}", path.display()),
    }
}

/// A store with one node, closed again (its write-ahead log checkpointed
/// into the file and removed).
async fn made_store(path: &Path) -> StoreConfig {
    let cfg = StoreConfig::sqlite(path);
    let store = create(&cfg).await.expect("create");
    store
        .create("/queued", b"item", CreateMode::Persistent)
        .await
        .expect("write");
    store.close().await.expect("close");
    drop(store);
    cfg
}

/// Opening never creates, and refuses files that are not a store: before
/// the fix, a missing or truncated file silently became a new empty store.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn open_refuses_missing_empty_and_foreign_files() {
    let dir = tempfile::tempdir().expect("tempdir");

    let missing = dir.path().join("state/missing.db");
    let reason = not_a_store(open(&StoreConfig::sqlite(&missing)).await, &missing);
    assert!(reason.contains("does not exist"), "{reason}");
    assert!(
        !dir.path().join("state").exists(),
        "open created a directory"
    );

    let truncated = dir.path().join("truncated.db");
    let cfg = made_store(&truncated).await;
    std::fs::File::create(&truncated).expect("truncate");
    let reason = not_a_store(open(&cfg).await, &truncated);
    assert!(reason.contains("empty"), "{reason}");
    let refused = init(&cfg).await;
    assert!(
        matches!(refused, Err(StoreError::NotAStore { .. })),
        "init over an empty file: {refused:?}"
    );
    assert_eq!(std::fs::metadata(&truncated).expect("file").len(), 0);

    let text = dir.path().join("notes.txt");
    std::fs::write(
        &text,
        "not a database at all, but long enough to have a header .....",
    )
    .expect("write");
    let reason = not_a_store(open(&StoreConfig::sqlite(&text)).await, &text);
    assert!(reason.contains("not a usable SQLite database"), "{reason}");

    let foreign = dir.path().join("other.db");
    let conn = rusqlite::Connection::open(&foreign).expect("sqlite");
    conn.execute_batch("CREATE TABLE accounts (id INTEGER PRIMARY KEY, owner TEXT);")
        .expect("schema");
    drop(conn);
    let before = std::fs::read(&foreign).expect("read");
    let reason = not_a_store(open(&StoreConfig::sqlite(&foreign)).await, &foreign);
    assert!(reason.contains("without the store's tables"), "{reason}");
    assert!(init(&StoreConfig::sqlite(&foreign)).await.is_err());
    assert_eq!(
        std::fs::read(&foreign).expect("read"),
        before,
        "foreign file changed"
    );
    assert!(!companion(&foreign, "-wal").exists());
}

/// `init` makes the file owner-only (0600, its write-ahead log and shared
/// memory files too) in a 0700 directory, once: later calls, also
/// concurrent ones, find it. `file_mode` widens it on purpose.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn init_creates_owner_only_files_once() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("state/sub/s.db");
    let cfg = StoreConfig::sqlite(&path);
    assert_eq!(init(&cfg).await.expect("init"), Initialized::Created);
    assert_eq!(mode(&path), 0o600);
    assert_eq!(mode(&dir.path().join("state/sub")), 0o700);
    assert_eq!(mode(&dir.path().join("state")), 0o700);
    let store = open(&cfg).await.expect("open");
    store
        .create("/kept", b"1", CreateMode::Persistent)
        .await
        .expect("write");
    for suffix in ["-wal", "-shm"] {
        assert_eq!(mode(&companion(&path, suffix)), 0o600, "{suffix}");
    }
    assert_eq!(init(&cfg).await.expect("init again"), Initialized::Existing);
    assert!(store.get("/kept").await.expect("get").is_some());
    store.close().await.expect("close");

    let shared = dir.path().join("group/g.db");
    let cfg = StoreConfig {
        file_mode: 0o640,
        ..StoreConfig::sqlite(&shared)
    };
    init(&cfg).await.expect("init 0640");
    assert_eq!(mode(&shared), 0o640);
    assert_eq!(mode(&dir.path().join("group")), 0o750);
    let loose = StoreConfig {
        file_mode: 0o200,
        ..StoreConfig::sqlite(dir.path().join("x.db"))
    };
    assert!(matches!(init(&loose).await, Err(StoreError::Config(_))));

    let raced = StoreConfig::sqlite(dir.path().join("raced/r.db"));
    let outcomes = futures_join(&raced).await;
    assert_eq!(
        outcomes
            .iter()
            .filter(|o| **o == Initialized::Created)
            .count(),
        1,
        "{outcomes:?}"
    );
    open(&raced).await.expect("the raced store opens");
}

/// Four `init`s of one new store at once.
async fn futures_join(cfg: &StoreConfig) -> Vec<Initialized> {
    let tasks: Vec<_> = (0..4)
        .map(|_| {
            let cfg = cfg.clone();
            tokio::spawn(async move { init(&cfg).await })
        })
        .collect();
    let mut outcomes = Vec::new();
    for task in tasks {
        outcomes.push(task.await.expect("task").expect("concurrent init"));
    }
    outcomes
}

/// Waits (at most 10 s) for the store's session to end; its final state.
async fn session_end(store: &dyn Store) -> SessionState {
    let mut session = store.session();
    let state = tokio::time::timeout(
        Duration::from_secs(10),
        session.wait_for(|s| s.is_terminal()),
    )
    .await
    .expect("the store did not notice within 10 s")
    .map(|s| *s);
    state.unwrap_or(SessionState::Closed)
}

/// The failure an unusable store reports: `Fatal` naming its file.
fn fatal_reason(store: &dyn Store, path: &Path) -> String {
    match store.failure() {
        Some(StoreError::Fatal { path: p, reason }) => {
            assert_eq!(Path::new(&p), path);
            reason
        }
        other => panic!("expected a Fatal failure, got {other:?}"),
    }
}

/// Before the fix, a store whose write-ahead log or database file was
/// removed or replaced carried on with unlinked files (a crash then lost
/// everything since the last checkpoint): now it notices on a heartbeat.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn removed_or_replaced_files_fail_an_open_store() {
    let dir = tempfile::tempdir().expect("tempdir");
    type Tamper = fn(&Path, &Path);
    let cases: [(&str, Tamper, &str); 4] = [
        (
            "wal-removed",
            |db, _| std::fs::remove_file(companion(db, "-wal")).expect("remove -wal"),
            "write-ahead log",
        ),
        (
            "shm-removed",
            |db, _| std::fs::remove_file(companion(db, "-shm")).expect("remove -shm"),
            "shared-memory index",
        ),
        (
            "db-replaced",
            |db, spare| std::fs::rename(spare, db).expect("rename over"),
            "replaced",
        ),
        (
            "db-removed",
            |db, _| std::fs::remove_file(db).expect("remove"),
            "removed",
        ),
    ];
    for (name, tamper, expected) in cases {
        let path = dir.path().join(format!("{name}.db"));
        let spare = dir.path().join(format!("{name}-spare.db"));
        init(&StoreConfig::sqlite(&spare)).await.expect("spare");
        let cfg = StoreConfig::sqlite(&path).with_session_timeout_ms(300);
        let store = create(&cfg).await.expect("create");
        store
            .create("/n", b"", CreateMode::Persistent)
            .await
            .expect("write");
        let mut watch = store.watch("/n").await.expect("watch");
        tamper(&path, &spare);

        assert_eq!(
            session_end(store.as_ref()).await,
            SessionState::Failed,
            "{name}"
        );
        let reason = fatal_reason(store.as_ref(), &path);
        assert!(reason.contains(expected), "{name}: {reason}");
        let err = store.get("/n").await.expect_err("a failed store answered");
        assert!(err.is_fatal(), "{name}: {err:?}");
        assert_eq!(err, store.failure().expect("failure"));
        let event = watch.next_timeout(Duration::from_secs(5)).await;
        assert_eq!(
            event.map(|e| e.kind),
            Some(dspans_store::EventKind::SessionLost),
            "{name}"
        );
    }
}

/// Before the fix, a corrupt page made every operation fail with a plain
/// backend error while the session stayed up, so components retried
/// forever: now the store fails for good with `Fatal`, and opening the
/// file again fails with an error naming it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn corrupt_pages_fail_the_store() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("corrupt.db");
    let cfg = StoreConfig::sqlite(&path);
    let store = create(&cfg).await.expect("create");
    store.create_all("/n", b"").await.expect("parent");
    for i in 0..200 {
        store
            .create(&format!("/n/{i:04}"), &[b'x'; 300], CreateMode::Persistent)
            .await
            .expect("write");
    }

    // Another connection moves everything into the database file, ruins
    // the pages of the nodes table and its index there, and writes
    // elsewhere, so that the store's connections re-read from the file.
    let raw = rusqlite::Connection::open(&path).expect("sqlite");
    raw.busy_timeout(Duration::from_secs(5)).expect("busy");
    raw.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()))
        .expect("checkpoint");
    let page_size: u64 = raw
        .query_row("PRAGMA page_size", [], |r| r.get(0))
        .expect("page size");
    let roots: Vec<u64> = raw
        .prepare("SELECT rootpage FROM sqlite_master WHERE tbl_name = 'nodes' AND rootpage > 0")
        .expect("query")
        .query_map([], |r| r.get(0))
        .expect("roots")
        .collect::<Result<_, _>>()
        .expect("roots");
    assert!(roots.len() >= 2, "{roots:?}");
    let file = std::fs::OpenOptions::new()
        .write(true)
        .open(&path)
        .expect("open file");
    for root in &roots {
        file.write_all_at(&vec![0xA5; page_size as usize], (root - 1) * page_size)
            .expect("overwrite page");
    }
    file.sync_all().expect("sync");
    raw.execute("UPDATE meta SET value = value + 1 WHERE key = 'zxid'", [])
        .expect("write elsewhere");
    drop(raw);

    let err = store.get("/n/0100").await.expect_err("read a corrupt page");
    assert!(err.is_fatal(), "{err:?}");
    assert_eq!(session_end(store.as_ref()).await, SessionState::Failed);
    let reason = fatal_reason(store.as_ref(), &path);
    assert!(reason.contains("malformed"), "{reason}");
    assert_eq!(store.children("/n").await, Err(err));

    match open(&cfg).await {
        Err(StoreError::Fatal { path: p, .. }) | Err(StoreError::NotAStore { path: p, .. }) => {
            assert_eq!(Path::new(&p), path)
        }
        other => panic!("opened a corrupt store: {other:?}"),
    }
}
