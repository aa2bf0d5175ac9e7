//! `dspans store init` (create a coordination store), `dspans store
//! ls|get|tree` (inspect one) and `dspans bench store` (measure one).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{bail, Context};
use dspans_store::{join_path, open, Backend, Initialized, Store, StoreConfig};

/// Options shared by the store inspection commands.
#[derive(clap::Args, Debug)]
pub struct StoreOpts {
    /// Configuration file; only its `[store]` table is read. Without it the
    /// default store is used (SQLite at state/dspans.db).
    #[arg(long, short = 'c', env = "DSPANS_CONFIG", value_name = "FILE")]
    pub config: Option<PathBuf>,
}

/// Create or inspect the coordination store named by the configuration.
#[derive(clap::Subcommand, Debug)]
pub enum StoreCommand {
    /// Create the store: SQLite, a new database file (mode 0600 unless
    /// `file_mode` says otherwise, its directory 0700); a store already
    /// there is left as it is. ZooKeeper: check the connection and create
    /// the chroot. No other command creates a store.
    Init {
        #[command(flatten)]
        opts: StoreOpts,
    },
    /// List the children of a node, one name per line.
    Ls {
        /// Node path, e.g. /pipelines.
        #[arg(default_value = "/")]
        path: String,
        #[command(flatten)]
        opts: StoreOpts,
    },
    /// Print a node's value (UTF-8 as text, anything else as hex).
    Get {
        /// Node path.
        path: String,
        /// Print a JSON object with the value and the node's metadata instead.
        #[arg(long)]
        stat: bool,
        #[command(flatten)]
        opts: StoreOpts,
    },
    /// Print the tree of nodes under a path with their sizes and versions.
    Tree {
        /// Root of the listing.
        #[arg(default_value = "/")]
        path: String,
        /// Stop descending below this depth.
        #[arg(long)]
        max_depth: Option<usize>,
        #[command(flatten)]
        opts: StoreOpts,
    },
}

/// Loads the `[store]` configuration.
fn store_config(opts: &StoreOpts) -> anyhow::Result<StoreConfig> {
    Ok(match &opts.config {
        Some(file) => StoreConfig::from_config_file(file)
            .with_context(|| format!("reading the [store] table of {}", file.display()))?,
        None => StoreConfig::default(),
    })
}

/// Runs `dspans store init`: prints what it found or made.
async fn init(opts: &StoreOpts) -> anyhow::Result<()> {
    let cfg = store_config(opts)?;
    let outcome = dspans_store::init(&cfg)
        .await
        .with_context(|| format!("initialising the {} store", cfg.backend))?;
    match (cfg.backend, outcome) {
        (Backend::Sqlite, Initialized::Created) => println!(
            "created the SQLite store {} (mode {:#o})",
            cfg.path.display(),
            cfg.file_mode
        ),
        (Backend::Sqlite, _) => println!("the SQLite store {} exists already", cfg.path.display()),
        (Backend::Zookeeper, _) => println!("the ZooKeeper store at {} is ready", cfg.hosts),
    }
    Ok(())
}

fn printable(data: &[u8]) -> String {
    match std::str::from_utf8(data) {
        Ok(text) => text.to_string(),
        Err(_) => data.iter().map(|b| format!("{b:02x}")).collect(),
    }
}

/// Runs `dspans store ...`.
pub async fn run_store(cmd: StoreCommand) -> anyhow::Result<()> {
    let opts = match &cmd {
        StoreCommand::Init { opts } => return init(opts).await,
        StoreCommand::Ls { opts, .. }
        | StoreCommand::Get { opts, .. }
        | StoreCommand::Tree { opts, .. } => opts,
    };
    // Opening never creates a store: a missing SQLite file is an error.
    let cfg = store_config(opts)?;
    let store = open(&cfg)
        .await
        .with_context(|| format!("opening the {} store", cfg.backend))?;
    let result = inspect(store.as_ref(), &cmd).await;
    if let Err(err) = store.close().await {
        tracing::warn!(error = %err, "closing the store");
    }
    result
}

async fn inspect(store: &dyn Store, cmd: &StoreCommand) -> anyhow::Result<()> {
    match cmd {
        StoreCommand::Init { .. } => {} // `run_store` runs it without opening

        StoreCommand::Ls { path, .. } => {
            for name in store.children(path).await? {
                println!("{name}");
            }
        }
        StoreCommand::Get { path, stat, .. } => {
            let node = store
                .get(path)
                .await?
                .with_context(|| format!("no node at {path}"))?;
            if *stat {
                let value = match std::str::from_utf8(&node.data) {
                    Ok(text) => serde_json::Value::String(text.to_string()),
                    Err(_) => serde_json::Value::Null,
                };
                let s = node.stat;
                let out = serde_json::json!({
                    "path": path,
                    "data": value,
                    "data_hex": if value.is_null() { Some(printable(&node.data)) } else { None },
                    "version": s.version,
                    "cversion": s.cversion,
                    "created_id": s.created_id,
                    "modified_id": s.modified_id,
                    "ctime_ms": s.ctime_ms,
                    "mtime_ms": s.mtime_ms,
                    "ephemeral": s.ephemeral,
                    "owner_session": s.owner_session,
                    "data_length": s.data_length,
                    "num_children": s.num_children,
                });
                println!("{}", serde_json::to_string_pretty(&out)?);
            } else {
                println!("{}", printable(&node.data));
            }
        }
        StoreCommand::Tree {
            path, max_depth, ..
        } => {
            let stat = store
                .exists(path)
                .await?
                .with_context(|| format!("no node at {path}"))?;
            println!("{path}{}", describe(&stat));
            let mut stack: Vec<(String, usize)> = children_of(store, path, 1).await?;
            while let Some((child, depth)) = stack.pop() {
                let Some(stat) = store.exists(&child).await? else {
                    continue; // deleted meanwhile
                };
                let name = dspans_store::node_name(&child);
                println!("{}{name}{}", "  ".repeat(depth), describe(&stat));
                if max_depth.is_none_or(|m| depth < m) && stat.num_children > 0 {
                    stack.extend(children_of(store, &child, depth + 1).await?);
                }
            }
        }
    }
    Ok(())
}

/// Children of `path` as (path, depth), reversed so popping yields them in order.
async fn children_of(
    store: &dyn Store,
    path: &str,
    depth: usize,
) -> anyhow::Result<Vec<(String, usize)>> {
    let mut kids: Vec<(String, usize)> = match store.children(path).await {
        Ok(names) => names
            .into_iter()
            .map(|n| (join_path(path, &n), depth))
            .collect(),
        Err(err) if err.is_no_node() => Vec::new(),
        Err(err) => return Err(err.into()),
    };
    kids.reverse();
    Ok(kids)
}

fn describe(stat: &dspans_store::Stat) -> String {
    format!(
        "  [{} B, v{}{}]",
        stat.data_length,
        stat.version,
        if stat.ephemeral { ", ephemeral" } else { "" }
    )
}

/// Measure the coordination store: prints JSON lines `{"op": NAME, "ops_per_s": X}`.
#[derive(clap::Args, Debug)]
pub struct BenchStoreArgs {
    /// Backend to measure.
    #[arg(long, default_value = "sqlite", value_parser = ["sqlite", "zookeeper"])]
    pub backend: String,
    /// Operations per measured kind (get, cas, create_delete, multi).
    #[arg(long, default_value_t = 1000)]
    pub ops: usize,
    /// ZooKeeper connection string (default 127.0.0.1:2181).
    #[arg(long, conflicts_with = "path")]
    pub hosts: Option<String>,
    /// SQLite database file, created when missing (default: a scratch file
    /// in the temp directory, removed afterwards).
    #[arg(long)]
    pub path: Option<PathBuf>,
}

fn remove_sqlite_files(path: &Path) {
    for suffix in ["", "-wal", "-shm"] {
        let mut p = path.as_os_str().to_owned();
        p.push(suffix);
        let _ = std::fs::remove_file(PathBuf::from(p));
    }
}

/// Runs `dspans bench store`: prints one JSON line `{"op": NAME, "ops_per_s": X}`
/// per operation kind.
pub async fn run_bench_store(args: BenchStoreArgs) -> anyhow::Result<()> {
    let backend: Backend = args.backend.parse()?;
    let mut scratch = None;
    let cfg = match backend {
        Backend::Sqlite => {
            if args.hosts.is_some() {
                bail!("--hosts is for --backend zookeeper");
            }
            let path = match &args.path {
                Some(p) => p.clone(),
                None => {
                    let p = std::env::temp_dir()
                        .join(format!("dspans-bench-{}.db", std::process::id()));
                    scratch = Some(p.clone());
                    p
                }
            };
            StoreConfig::sqlite(path)
        }
        Backend::Zookeeper => {
            if args.path.is_some() {
                bail!("--path is for --backend sqlite");
            }
            StoreConfig::zookeeper(args.hosts.as_deref().unwrap_or("127.0.0.1:2181"))
        }
    };
    let store: Arc<dyn Store> = dspans_store::create(&cfg)
        .await
        .with_context(|| format!("opening the {backend} store"))?;
    let results = dspans_store::bench(store.as_ref(), args.ops).await;
    let _ = store.close().await;
    drop(store);
    if let Some(p) = scratch {
        remove_sqlite_files(&p);
    }
    for r in results? {
        println!("{}", serde_json::to_string(&r)?);
    }
    Ok(())
}
