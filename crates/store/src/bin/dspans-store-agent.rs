//! Helper process for the store's multi-process tests (and a handy probe).
//!
//! ```text
//! dspans-store-agent '<StoreConfig JSON>' hold PATH LOCK
//!     create ephemeral PATH, take the lock LOCK, print "READY", wait forever
//! dspans-store-agent '<StoreConfig JSON>' claim ROOT WORKER
//!     claim jobs of the queue at ROOT until none is left, printing each id
//! dspans-store-agent '<StoreConfig JSON>' put ROOT WRITER COUNT
//!     put COUNT events {"writer": WRITER, "i": i} on the queue at ROOT
//! ```

use std::io::Write;
use std::process::ExitCode;

use dspans_store::recipes::{EventQueue, JobQueue, Lock};
use dspans_store::{open, CreateMode, StoreConfig};

async fn run(args: &[String]) -> Result<(), String> {
    let [config, command, rest @ ..] = args else {
        return Err("usage: dspans-store-agent CONFIG_JSON hold|claim|put ARGS...".into());
    };
    let config: StoreConfig =
        serde_json::from_str(config).map_err(|e| format!("bad config JSON: {e}"))?;
    let store = open(&config).await.map_err(|e| e.to_string())?;
    let mut out = std::io::stdout();
    match (command.as_str(), rest) {
        ("hold", [path, lock]) => {
            if let Some(parent) = dspans_store::parent_path(path) {
                store
                    .create_all(parent, b"")
                    .await
                    .map_err(|e| e.to_string())?;
            }
            store
                .create(path, b"agent", CreateMode::Ephemeral)
                .await
                .map_err(|e| e.to_string())?;
            let guard = Lock::new(store.clone(), lock.clone())
                .try_acquire(b"agent")
                .await
                .map_err(|e| e.to_string())?
                .ok_or("lock already held")?;
            writeln!(out, "READY")
                .and_then(|_| out.flush())
                .map_err(|e| e.to_string())?;
            std::future::pending::<()>().await;
            drop(guard);
        }
        ("claim", [root, worker]) => {
            let queue = JobQueue::new(store.clone(), root.clone());
            while let Some(claim) = queue.claim_next(worker).await.map_err(|e| e.to_string())? {
                let id = claim.job.id.clone();
                queue
                    .complete(claim, serde_json::json!({ "by": worker }))
                    .await
                    .map_err(|e| e.to_string())?;
                writeln!(out, "{id}").map_err(|e| e.to_string())?;
            }
        }
        ("put", [root, writer, count]) => {
            let count: usize = count.parse().map_err(|_| "COUNT must be a number")?;
            let events = EventQueue::new(store.clone(), root.clone());
            for i in 0..count {
                events
                    .put_json(&serde_json::json!({ "writer": writer, "i": i }))
                    .await
                    .map_err(|e| e.to_string())?;
            }
        }
        _ => return Err(format!("unknown command or arguments: {command} {rest:?}")),
    }
    store.close().await.map_err(|e| e.to_string())?;
    Ok(())
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(err) => {
            eprintln!("dspans-store-agent: {err}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(&args)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("dspans-store-agent: {err}");
            ExitCode::FAILURE
        }
    }
}
