//! What the store's tests share beside `dspans-test-support`: where one
//! conformance case's stores live.

use dspans_store::StoreConfig;
use dspans_test_support::Backend;

/// Where one test case's stores live.
pub struct Env {
    pub backend: Backend,
    /// SQLite: a fresh database file per case; ZooKeeper: the shared server.
    pub base: StoreConfig,
    /// A path no other case uses.
    pub root: String,
    /// How late past its session timeout a dead client's session may end:
    /// servers expire sessions on their tick, and the tests run two at a
    /// time on two cores; an ensemble's leader expires a follower's
    /// sessions, a little later again.
    pub expiry_slack: std::time::Duration,
}

impl Env {
    /// Configuration for a store of this case with the given session timeout.
    pub fn config(&self, session_timeout_ms: u64) -> StoreConfig {
        let mut cfg = self.base.clone();
        cfg.session_timeout_ms = session_timeout_ms;
        cfg
    }

    /// Opens a store of this case (10 s session timeout).
    pub async fn open(&self) -> std::sync::Arc<dyn dspans_store::Store> {
        dspans_store::open(&self.config(10_000))
            .await
            .expect("cannot open store")
    }

    /// `root/name`.
    pub fn path(&self, name: &str) -> String {
        format!("{}/{name}", self.root)
    }
}
