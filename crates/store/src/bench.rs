//! Store micro-benchmark behind `dspans bench store`.

use std::time::Instant;

use serde::Serialize;

use crate::error::Result;
use crate::path::join_path;
use crate::store::Store;
use crate::types::{CreateMode, Op};

/// Throughput of one benchmarked operation.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct BenchResult {
    /// `get`, `cas`, `create_delete` or `multi`.
    pub op: String,
    /// Operations per second (one `create_delete` = a create and a delete;
    /// one `multi` = a check and two sets in one multi-operation).
    pub ops_per_s: f64,
}

/// Runs `ops` sequential operations of each kind against `store` under a
/// fresh scratch node (deleted afterwards) and returns their throughput.
/// Values are 200-byte JSON-like blobs, the size of a saved span.
pub async fn bench(store: &dyn Store, ops: usize) -> Result<Vec<BenchResult>> {
    let ops = ops.max(1);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    let root = format!("/dspans-bench-{}-{nanos}", std::process::id());
    store.create_all(&root, b"").await?;
    let value = vec![b'x'; 200];
    let a = join_path(&root, "a");
    let b = join_path(&root, "b");
    store.create(&a, &value, CreateMode::Persistent).await?;
    store.create(&b, &value, CreateMode::Persistent).await?;
    let mut results = Vec::new();
    let mut record = |op: &str, started: Instant| {
        let secs = started.elapsed().as_secs_f64().max(1e-9);
        results.push(BenchResult {
            op: op.to_string(),
            ops_per_s: (ops as f64 / secs * 10.0).round() / 10.0,
        });
    };

    let started = Instant::now();
    for _ in 0..ops {
        store.get(&a).await?;
    }
    record("get", started);

    let mut version = store.exists(&a).await?.map(|s| s.version).unwrap_or(0);
    let started = Instant::now();
    for _ in 0..ops {
        version = store.set(&a, &value, Some(version)).await?.version;
    }
    record("cas", started);

    let c = join_path(&root, "c");
    let started = Instant::now();
    for _ in 0..ops {
        store.create(&c, &value, CreateMode::Persistent).await?;
        store.delete(&c, Some(0)).await?;
    }
    record("create_delete", started);

    let started = Instant::now();
    let root_version = store.exists(&root).await?.map(|s| s.version).unwrap_or(0);
    for _ in 0..ops {
        store
            .multi(&[
                Op::check(&root, root_version),
                Op::set(&a, value.clone(), None),
                Op::set(&b, value.clone(), None),
            ])
            .await?;
    }
    record("multi", started);

    store.delete_all(&root).await?;
    Ok(results)
}
