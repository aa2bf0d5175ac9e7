//! Config parsing: a good file, and each kind of error names its key and
//! reason.

use std::path::Path;

use dspans_pipeline::config::{Config, ConfigError, Manager, DEFAULT_QUEUE};
use dspans_store::Backend;

const GOOD: &str = r#"
[store]
backend = "sqlite"
path = "state/dspans.db"

[tracing]
enabled = true
protocol = "grpc"
endpoint = "http://127.0.0.1:4317"
service_name = "dspans"

[[pipeline]]
name = "check"
manager = "independent"

[[pipeline]]
name = "gate"
manager = "dependent"

[[job]]
name = "unit"
run = "sleep 0.2; echo ok"
timeout_s = 60

[[job]]
name = "lint"
run = "true"

[[project]]
name = "org/project"
repo = "repos/project"
check = ["unit", "lint"]
gate = ["unit"]

[[project]]
name = "org/other"
branch = "develop"
queue = "integrated"
gate = ["lint"]
"#;

#[test]
fn good_file_parses_with_defaults_and_relative_paths() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("dspans.toml");
    std::fs::write(&file, GOOD).unwrap();
    let config = Config::from_file(&file).unwrap();

    assert_eq!(config.store.backend, Backend::Sqlite);
    assert_eq!(config.store.path, dir.path().join("state/dspans.db"));
    assert_eq!(config.store.session_timeout_ms, 10_000);
    assert!(config.tracing.enabled);
    assert_eq!(config.pipeline("gate").unwrap().manager, Manager::Dependent);
    assert_eq!(
        config.pipeline("check").unwrap().manager,
        Manager::Independent
    );

    let unit = config.job("unit").unwrap();
    assert_eq!((unit.timeout_s, unit.attempts), (60, 3));
    assert_eq!(config.job("lint").unwrap().timeout_s, 600);

    let project = config.project("org/project").unwrap();
    assert_eq!(
        project.repo.as_deref(),
        Some(dir.path().join("repos/project").as_path())
    );
    assert_eq!(project.branch, "main");
    let names = |v: Vec<&dspans_pipeline::config::JobConfig>| {
        v.iter().map(|j| j.name.clone()).collect::<Vec<_>>()
    };
    assert_eq!(
        names(config.jobs_for("org/project", "check").unwrap()),
        ["unit", "lint"]
    );
    assert_eq!(
        names(config.jobs_for("org/project", "gate").unwrap()),
        ["unit"]
    );
    assert!(config.jobs_for("org/other", "check").is_none());
    assert_eq!(config.project("org/other").unwrap().branch, "develop");

    assert_eq!(
        config.change_queue("gate", "org/project").unwrap(),
        DEFAULT_QUEUE
    );
    assert_eq!(
        config.change_queue("gate", "org/other").unwrap(),
        "integrated"
    );
    assert_eq!(
        config.change_queue("check", "org/other").unwrap(),
        "org/other"
    );
    assert!(config.change_queue("post", "org/other").is_none());
    assert_eq!(config.source.as_deref(), Some(file.as_path()));
}

#[test]
fn empty_file_is_valid_and_from_str_keeps_paths() {
    let config: Config = "".parse().unwrap();
    assert!(config.pipelines.is_empty());
    assert!(!config.tracing.enabled);
    assert_eq!(config.store.session_timeout_ms, 10_000);
    let config: Config = "[store]\npath = \"x.db\"\n".parse().unwrap();
    assert_eq!(config.store.path, Path::new("x.db"));
}

/// Parses `GOOD` with `from` replaced by `to` (or `extra` appended) from a
/// named file; returns the error.
fn error_of(text: &str) -> ConfigError {
    Config::parse(text, Some(Path::new("conf/dspans.toml"))).unwrap_err()
}

fn edited(from: &str, to: &str) -> String {
    assert!(GOOD.contains(from), "{from}");
    GOOD.replacen(from, to, 1)
}

fn assert_error(error: &ConfigError, key: &str, reason: &str) {
    let text = error.to_string();
    assert_eq!(error.key(), Some(key), "{text}");
    assert!(text.starts_with("conf/dspans.toml"), "{text}");
    assert!(text.contains(&format!("`{key}`")), "{text}");
    assert!(text.contains(reason), "{text}");
}

#[test]
fn unknown_keys_are_reported_with_path_and_line() {
    let e = error_of(&edited("timeout_s = 60", "timeout_s = 60\ntimeout = 5"));
    assert_error(&e, "job[0].timeout", "unknown field `timeout`");
    let line = GOOD.lines().position(|l| l == "timeout_s = 60").unwrap() + 2;
    assert_eq!(e.position().unwrap().line, line, "{e}");

    let e = error_of(&edited(
        "backend = \"sqlite\"",
        "backend = \"sqlite\"\nhost = \"x\"",
    ));
    assert_error(&e, "store.host", "unknown field `host`");
    let e = error_of(&edited(
        "enabled = true",
        "enabled = true\nendpoints = \"x\"",
    ));
    assert_error(&e, "tracing.endpoints", "unknown field `endpoints`");
    let e = error_of(&format!("{GOOD}\n[scheduler]\nname = \"x\"\n"));
    assert_error(&e, "scheduler", "unknown field `scheduler`");
    let e = error_of(&edited(
        "manager = \"dependent\"",
        "manager = \"dependent\"\nwindow = 3",
    ));
    assert_error(&e, "pipeline[1].window", "unknown field `window`");
}

#[test]
fn wrong_types_and_values_are_reported() {
    let e = error_of(&edited("manager = \"dependent\"", "manager = \"serial\""));
    assert_error(&e, "pipeline[1].manager", "unknown variant `serial`");
    let e = error_of(&edited("timeout_s = 60", "timeout_s = \"60\""));
    assert_error(&e, "job[0].timeout_s", "invalid type");
    let e = error_of(&edited("timeout_s = 60", "timeout_s = -1"));
    assert_error(&e, "job[0].timeout_s", "");
    let e = error_of(&edited("gate = [\"unit\"]", "gate = \"unit\""));
    assert_error(&e, "project[0].gate", "a list of job names");
    let e = error_of(&edited("gate = [\"unit\"]", "gate = [1]"));
    assert_error(&e, "project[0].gate[0]", "invalid type");
    let e = error_of(&edited(
        "branch = \"develop\"",
        "branch = \"develop\"\nbranch = \"x\"",
    ));
    assert!(matches!(e, ConfigError::Syntax { .. }), "{e}");
    let e = error_of(&edited("name = \"org/other\"\n", ""));
    assert_error(&e, "project[1]", "missing field `name`");
    let e = error_of(&edited("name = \"lint\"\n", ""));
    assert_error(&e, "job[1]", "missing field `name`");
}

#[test]
fn syntax_errors_name_file_and_line() {
    let e = error_of("[[pipeline]\nname = 1\n");
    match &e {
        ConfigError::Syntax { position, .. } => assert_eq!(position.unwrap().line, 1),
        other => panic!("{other}"),
    }
    assert!(e.to_string().starts_with("conf/dspans.toml:1:"), "{e}");
}

#[test]
fn semantic_errors_name_the_key() {
    let cases = [
        (
            edited("name = \"gate\"", "name = \"check\""),
            "pipeline[1].name",
            "duplicate pipeline name \"check\"",
        ),
        (
            edited("name = \"lint\"", "name = \"unit\""),
            "job[1].name",
            "duplicate job name \"unit\"",
        ),
        (
            edited("name = \"org/other\"", "name = \"org/project\""),
            "project[1].name",
            "duplicate project name",
        ),
        (
            edited("name = \"gate\"", "name = \"\""),
            "pipeline[1].name",
            "name is empty",
        ),
        (
            edited("name = \"gate\"", "name = \"branch\""),
            "pipeline[1].name",
            "cannot name a pipeline",
        ),
        (
            edited("check = [\"unit\", \"lint\"]", "post = [\"unit\"]"),
            "project[0].post",
            "names pipeline \"post\", which is not defined",
        ),
        (
            edited(
                "check = [\"unit\", \"lint\"]",
                "check = [\"unit\", \"docs\"]",
            ),
            "project[0].check[1]",
            "names job \"docs\", which is not defined",
        ),
        (
            edited(
                "check = [\"unit\", \"lint\"]",
                "check = [\"unit\", \"unit\"]",
            ),
            "project[0].check[1]",
            "listed twice",
        ),
        (
            edited("run = \"true\"", "run = \"  \""),
            "job[1].run",
            "empty command",
        ),
        (
            edited("timeout_s = 60", "timeout_s = 0"),
            "job[0].timeout_s",
            "at least 1 second",
        ),
        (
            edited("timeout_s = 60", "attempts = 0"),
            "job[0].attempts",
            "at least 1",
        ),
        (
            edited("branch = \"develop\"", "branch = \"\""),
            "project[1].branch",
            "empty branch",
        ),
        (
            edited("path = \"state/dspans.db\"", "session_timeout_ms = 0"),
            "store",
            "session_timeout_ms",
        ),
        (
            edited(
                "protocol = \"grpc\"",
                "protocol = \"grpc\"\ncertificate_file = \"ca.pem\"",
            ),
            "tracing",
            "certificate_file",
        ),
    ];
    for (text, key, reason) in cases {
        let e = error_of(&text);
        assert!(matches!(e, ConfigError::Invalid { .. }), "{e}");
        assert_error(&e, key, reason);
    }
}

#[test]
fn unreadable_file_names_the_file() {
    let e = Config::from_file("/nonexistent/dspans.toml").unwrap_err();
    assert!(matches!(e, ConfigError::Read { .. }));
    assert!(e.to_string().contains("/nonexistent/dspans.toml"), "{e}");
}

/// The README's config example (section "The reference pipeline"), read
/// from the README itself so the two cannot drift apart.
#[test]
fn readme_example_parses() {
    let readme = include_str!("../../../../README.md");
    let text = readme
        .split("```toml\n")
        .nth(1)
        .and_then(|rest| rest.split("```").next())
        .expect("README has a ```toml block");
    let config: Config = text.parse().unwrap();
    assert_eq!(
        config.jobs_for("org/project", "gate").unwrap()[0].run,
        "sleep 0.2; echo ok"
    );
    assert_eq!(
        config.change_queue("gate", "org/project").unwrap(),
        DEFAULT_QUEUE
    );
}
