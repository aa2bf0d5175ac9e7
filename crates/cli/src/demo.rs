//! `dspans demo`: the whole pipeline on one machine, as separate processes,
//! with a scheduler killed mid-run, and the traces it produced.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _};
use clap::{Args, ValueEnum};
use dspans_otlp::view::{render_terminal, TraceSet};
use dspans_pipeline::Layout;

use crate::processes::{clean_env, component, write_config, Processes};
use crate::status_cmd::read_status;

/// Store backend of the demo.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum DemoBackend {
    Sqlite,
    Zookeeper,
}

/// Options of `dspans demo`.
#[derive(Args, Debug)]
pub struct DemoArgs {
    /// Workspace directory (created when missing; default: a new directory
    /// under the system's temporary directory). It keeps the config, the
    /// git repository, the logs, traces.jsonl and report.html.
    #[arg(long, value_name = "D")]
    pub dir: Option<PathBuf>,
    /// Changes to enqueue into the gate pipeline.
    #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(u64).range(1..=200))]
    pub items: u64,
    /// Store backend.
    #[arg(long, value_enum, default_value = "sqlite")]
    pub backend: DemoBackend,
    /// ZooKeeper connection string (with --backend zookeeper; start one with
    /// `scripts/zookeeper.sh start`).
    #[arg(long, value_name = "HOSTS", default_value = "127.0.0.1:2181")]
    pub zk: String,
    /// Also send the demo's traces to this OTLP backend (Jaeger, Tempo, an
    /// OpenTelemetry Collector) once the run is over, each span once.
    /// Default: OTEL_EXPORTER_OTLP_ENDPOINT, when set (with
    /// OTEL_EXPORTER_OTLP_PROTOCOL). The demo's own components never
    /// inherit the OTEL_* variables.
    #[arg(long, value_name = "URL")]
    pub otlp_endpoint: Option<String>,
    /// Open the trace viewer (`dspans ui`) on the demo: spans show while
    /// they run, and the viewer stays open after the run until Ctrl-C.
    #[arg(long)]
    pub ui: bool,
    /// Where the viewer listens, with --ui.
    #[arg(
        long,
        value_name = "ADDR",
        default_value = "127.0.0.1:8686",
        requires = "ui"
    )]
    pub ui_listen: std::net::SocketAddr,
}

/// With `--ui`: the viewer on the demo's traces file and its store.
async fn start_viewer(
    args: &DemoArgs,
    config: &dspans_pipeline::Config,
    traces: &Path,
) -> anyhow::Result<Option<dspans_ui::UiServer>> {
    if !args.ui {
        return Ok(None);
    }
    let store = dspans_store::open(&config.store)
        .await
        .context("cannot open the store for the viewer")?;
    let server = dspans_ui::serve(dspans_ui::UiOptions {
        listen: args.ui_listen,
        files: vec![traces.to_path_buf()],
        store: Some((store, Layout::default().spans())),
        ..Default::default()
    })
    .await?;
    println!(
        "dspans demo: viewer at {} (spans show while they run)",
        server.url()
    );
    Ok(Some(server))
}

/// Sends the demo's traces to the user's backend, request by request.
async fn forward(traces: &Path, endpoint: &str) -> anyhow::Result<()> {
    // The user's OTEL_* settings (protocol, headers, TLS), the endpoint given.
    let options = crate::export_args::OtlpArgs {
        otlp_endpoint: Some(endpoint.to_string()),
        otlp_protocol: None,
    }
    .options()?;
    let mut sender = dspans_otlp::RequestSender::new(&options)?;
    let requests = dspans_otlp::read_json_lines(traces)?;
    let spans: usize = requests.iter().map(dspans_otlp::receiver::span_count).sum();
    for request in requests {
        sender
            .send(request)
            .await
            .map_err(|e| anyhow::anyhow!("cannot send the demo's traces: {e}"))?;
    }
    println!("  sent {spans} spans to {}", sender.endpoint());
    Ok(())
}

fn git(repo: &Path, args: &[&str]) -> anyhow::Result<()> {
    let out = Command::new("git")
        .args(args)
        .current_dir(repo)
        .env("GIT_AUTHOR_NAME", "dspans demo")
        .env("GIT_AUTHOR_EMAIL", "demo@dspans.invalid")
        .env("GIT_COMMITTER_NAME", "dspans demo")
        .env("GIT_COMMITTER_EMAIL", "demo@dspans.invalid")
        .output()
        .context("cannot run git (is it installed?)")?;
    if !out.status.success() {
        bail!(
            "git {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(())
}

/// A repository whose change branches merge cleanly, except change 3's,
/// which edits a line main has changed since.
fn make_repository(repo: &Path, items: u64) -> anyhow::Result<()> {
    std::fs::create_dir_all(repo)?;
    git(repo, &["init", "-q", "-b", "main"])?;
    std::fs::write(repo.join("VERSION"), "1.0\n")?;
    git(repo, &["add", "VERSION"])?;
    git(repo, &["commit", "-qm", "Initial version"])?;
    for n in 1..=items {
        git(
            repo,
            &["checkout", "-q", "-b", &format!("changes/{n}/1"), "main"],
        )?;
        if n == 3 {
            std::fs::write(repo.join("VERSION"), "1.1-rc\n")?;
        } else {
            std::fs::write(
                repo.join(format!("change-{n}.txt")),
                format!("change {n}\n"),
            )?;
        }
        git(repo, &["add", "-A"])?;
        git(repo, &["commit", "-qm", &format!("Change {n}")])?;
    }
    git(repo, &["checkout", "-q", "main"])?;
    std::fs::write(repo.join("VERSION"), "1.1\n")?;
    git(repo, &["commit", "-qam", "Release 1.1"])?;
    Ok(())
}

fn config_text(args: &DemoArgs, dir: &Path, endpoint: &str) -> String {
    let store = match args.backend {
        DemoBackend::Sqlite => "backend = \"sqlite\"\npath = \"state/dspans.db\"".to_string(),
        DemoBackend::Zookeeper => format!(
            "backend = \"zookeeper\"\nhosts = \"{}\"\nchroot = \"/dspans-demo-{}\"",
            args.zk,
            std::process::id()
        ),
    };
    format!(
        r#"# Written by `dspans demo`.
[store]
{store}
session_timeout_ms = 3000

[tracing]
enabled = true
protocol = "grpc"
endpoint = "{endpoint}"
service_name = "dspans-demo"

[[pipeline]]
name = "gate"
manager = "dependent"

[[job]]
name = "unit"
# Change 2 fails its unit tests.
run = 'sleep 0.5; test "$DSPANS_CHANGE" != 2'
timeout_s = 60

[[job]]
name = "lint"
run = "sleep 0.2"
timeout_s = 60

[[project]]
name = "org/project"
repo = "{repo}"
gate = ["unit", "lint"]
"#,
        repo = dir.join("repo").display(),
    )
}

/// Runs the demo; exits non-zero when a trace is incomplete.
pub async fn run(args: DemoArgs) -> anyhow::Result<()> {
    let started = Instant::now();
    let forward_to = args
        .otlp_endpoint
        .clone()
        .or_else(|| std::env::var("OTEL_EXPORTER_OTLP_ENDPOINT").ok())
        .filter(|e| !e.trim().is_empty());
    let dir = match &args.dir {
        Some(dir) if dir.join("dspans.toml").exists() => {
            return Err(crate::UsageError(format!(
                "{} holds an earlier demo run; give another --dir, or remove it first",
                dir.display()
            ))
            .into());
        }
        Some(dir) => {
            std::fs::create_dir_all(dir)
                .with_context(|| format!("cannot create {}", dir.display()))?;
            dir.canonicalize()?
        }
        None => tempfile::Builder::new()
            .prefix("dspans-demo-")
            .tempdir()?
            .keep(),
    };
    println!("dspans demo: workspace {}", dir.display());
    let exe = std::env::current_exe().context("cannot find the dspans executable")?;
    let logs = dir.join("logs");
    std::fs::create_dir_all(&logs)?;
    if !dir.join("repo").exists() {
        make_repository(&dir.join("repo"), args.items)?;
    }
    let traces = dir.join("traces.jsonl");
    let _ = std::fs::remove_file(&traces);

    let mut procs = Processes {
        children: Vec::new(),
    };
    let endpoint = procs.spawn_collector(
        "collector",
        &exe,
        &["--out".as_ref(), traces.as_os_str()],
        &logs.join("collector.log"),
    )?;
    println!("dspans demo: collector listening, OTLP/gRPC at {endpoint}");

    let config_path = dir.join("dspans.toml");
    let config = write_config(&config_path, &config_text(&args, &dir, &endpoint)).await?;
    let viewer = start_viewer(&args, &config, &traces).await?;
    let schedulers = ["scheduler-1", "scheduler-2"];
    for name in schedulers {
        procs.spawn(
            name,
            component(&exe, "scheduler", name, &config_path, &logs)?,
        )?;
    }
    procs.spawn(
        "executor-1",
        component(&exe, "executor", "executor-1", &config_path, &logs)?,
    )?;
    procs.spawn(
        "merger-1",
        component(&exe, "merger", "merger-1", &config_path, &logs)?,
    )?;
    println!(
        "dspans demo: started 2 schedulers, an executor and a merger (logs in {})",
        logs.display()
    );

    let store = dspans_store::open(&config.store)
        .await
        .context("cannot open the store")?;
    for n in 1..=args.items {
        let out = clean_env(&mut Command::new(&exe))
            .args(["enqueue", "--config"])
            .arg(&config_path)
            .args([
                "--pipeline",
                "gate",
                "--project",
                "org/project",
                "--change",
                &n.to_string(),
            ])
            .output()?;
        if !out.status.success() {
            bail!("enqueue failed: {}", String::from_utf8_lossy(&out.stderr));
        }
    }
    println!(
        "dspans demo: enqueued {} changes into the gate pipeline",
        args.items
    );

    let lock = Layout::default().pipeline_lock("gate");
    let deadline = Instant::now() + Duration::from_secs(120);
    let mut killed: Option<String> = None;
    let mut last_line = String::new();
    let open_spans = loop {
        let status = read_status(&config, &store).await?;
        let building = status
            .pipelines
            .iter()
            .flat_map(|p| &p.items)
            .any(|i| i.buildset_state == "building");
        if killed.is_none() && building {
            if let Some(node) = store.get(&lock).await? {
                let holder = String::from_utf8_lossy(&node.data).to_string();
                if schedulers.contains(&holder.as_str()) {
                    procs.signal(&holder, "-KILL");
                    println!("dspans demo: killed {holder} (SIGKILL) while it held the gate pipeline with builds running");
                    killed = Some(holder);
                }
            }
        }
        let queued: usize = status.pipelines.iter().map(|p| p.items.len()).sum();
        let reported: usize = status.pipelines.iter().map(|p| p.reports).sum();
        let line = format!(
            "dspans demo: {reported}/{} reported, {queued} in the queue",
            args.items
        );
        if line != last_line {
            println!("{line}");
            last_line = line;
        }
        if status.idle() && reported as u64 >= args.items {
            break status.open_spans;
        }
        if Instant::now() > deadline {
            bail!(
                "the pipeline did not finish within 120 s; see {}",
                logs.display()
            );
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let reports = read_reports(&store).await?;
    let _ = store.close().await;

    let mut running: Vec<&str> = schedulers
        .iter()
        .copied()
        .filter(|s| Some(*s) != killed.as_deref())
        .collect();
    running.extend(["executor-1", "merger-1"]);
    procs.stop(&running);
    procs.stop(&["collector"]);

    let set = TraceSet::read(&traces)?;
    print!("\n{}", render_terminal(&set));
    let html = dir.join("report.html");
    crate::view_cmd::write_html(&set, &html)?;
    let summary = set.summary();
    let handed_over = set
        .traces()
        .iter()
        .flat_map(|t| &t.spans)
        .filter(|s| {
            let attr = |list: &[(String, String)], key: &str| {
                list.iter().find(|(k, _)| k == key).map(|(_, v)| v.clone())
            };
            match (
                attr(&s.attributes, "dspans.started_by"),
                attr(&s.attributes, "dspans.ended_by"),
            ) {
                (Some(starter), Some(ender)) => starter != ender,
                _ => false,
            }
        })
        .count();
    let items_traces = set
        .traces()
        .iter()
        .filter(|t| t.spans.iter().any(|s| s.name == "QueueItem"))
        .count();
    println!("\nSummary");
    for (number, result) in &reports {
        println!("  change {number}: {result}");
    }
    println!("  spans:                                 {}", summary.spans);
    println!(
        "  traces:                                {} ({} queue items)",
        summary.traces.len(),
        items_traces
    );
    println!("  spans ended by another process:        {handed_over}");
    println!(
        "  spans with a missing parent:           {}",
        summary.missing_parent
    );
    println!(
        "  duplicate span ids:                    {}",
        summary.duplicate_span_ids
    );
    println!("  saved spans left open:                 {open_spans}");
    println!("  traces: {}", traces.display());
    println!("  report: {}", html.display());
    println!("  took {:.1} s", started.elapsed().as_secs_f64());
    if let Some(endpoint) = &forward_to {
        forward(&traces, endpoint).await?;
    }
    if let Some(viewer) = viewer {
        let stop = dspans_pipeline::component::termination()?;
        println!(
            "\ndspans demo: the viewer stays open at {}; Ctrl-C stops it",
            viewer.url()
        );
        stop.await;
        viewer.shutdown().await;
    }
    if summary.missing_parent > 0
        || summary.duplicate_span_ids > 0
        || open_spans > 0
        || items_traces as u64 != args.items
    {
        bail!("incomplete traces: see {}", html.display());
    }
    Ok(())
}

async fn read_reports(
    store: &std::sync::Arc<dyn dspans_store::Store>,
) -> anyhow::Result<Vec<(u64, String)>> {
    use dspans_pipeline::model::{Report, StoredObject};
    let dir = Layout::default().reports("gate");
    let mut out = Vec::new();
    for name in store.children(&dir).await.unwrap_or_default() {
        if let Some(node) = store.get(&format!("{dir}/{name}")).await? {
            let report = Report::from_json(&node.data)?;
            out.push((report.change.number, report.result.as_str().to_string()));
        }
    }
    out.sort();
    Ok(out)
}
