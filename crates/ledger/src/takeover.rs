//! [`Takeover`]: a sender's presence in the store, and the spans of senders
//! found gone made unassigned, so that a span ended by a process that died
//! before sending it is still sent.

use std::collections::HashSet;

use dspans_store::{CreateMode, StoreError};

use crate::entries::Entries;
use crate::entry::{Entry, SenderId};

/// What one sender knows of the others: the presence directory's child
/// version and children at its last look.
pub(crate) struct Takeover {
    entries: Entries,
    me: SenderId,
    version: Option<i32>,
    sessions: HashSet<String>,
}

impl Takeover {
    pub fn new(entries: Entries, me: SenderId) -> Takeover {
        Takeover {
            entries,
            me,
            version: None,
            sessions: HashSet::new(),
        }
    }

    /// Creates this sender's presence node (ephemeral: it goes with the
    /// store session).
    pub async fn announce(&self) -> Result<(), StoreError> {
        self.entries.ensure_layout().await?;
        let path = self.entries.paths().sender(&self.me.session);
        match self
            .entries
            .store()
            .create(&path, self.me.name.as_bytes(), CreateMode::Ephemeral)
            .await
        {
            Ok(_) => Ok(()),
            Err(error) if error.is_node_exists() => Ok(()),
            Err(error) => Err(error),
        }
    }

    /// The first look: frees the claims of this process's predecessor, and
    /// makes unassigned the spans of senders gone before this one started.
    /// Problems are logged: later looks try again.
    pub async fn start(&mut self) {
        if let Err(error) = self.free_predecessor_claims().await {
            tracing::warn!(%error, "cannot look for claims of a previous run");
        }
        if let Err(error) = self.watch().await {
            tracing::warn!(%error, "cannot look for exporters that are gone");
        }
        if let Err(error) = self.take_over().await {
            tracing::warn!(%error, "cannot look for spans of exporters that are gone");
            self.version = None;
        }
    }

    /// Compares the running senders with the last look; when one went away
    /// since, makes the spans it left unassigned. One round trip when
    /// nothing changed.
    pub async fn watch(&mut self) -> Result<(), StoreError> {
        let dir = self.entries.paths().senders_dir();
        let Some(stat) = self.entries.store().exists(&dir).await? else {
            return Ok(());
        };
        if self.version == Some(stat.cversion) {
            return Ok(());
        }
        let sessions: HashSet<String> = self.entries.keys(&dir).await?.into_iter().collect();
        let added = sessions.difference(&self.sessions).count() as i64;
        // The child version counts creations and deletions: more changes
        // than new children means one went away, even one never seen.
        let changes = match self.version {
            Some(version) => i64::from(stat.cversion) - i64::from(version),
            None => added,
        };
        let first_look = self.version.is_none();
        self.version = Some(stat.cversion);
        self.sessions = sessions;
        if !first_look && changes > added {
            if let Err(error) = self.take_over().await {
                self.version = None;
                return Err(error);
            }
        }
        Ok(())
    }

    /// Makes unassigned the ended spans whose sender is not running (or is
    /// this process's predecessor). Reads every entry, so it runs only at
    /// start and when a sender went away.
    async fn take_over(&self) -> Result<(), StoreError> {
        let entries = &self.entries;
        let mut left = Vec::new();
        for key in entries.keys(&entries.paths().entries_dir()).await? {
            let Some(Entry::Ended(entry)) = entries.read(&key).await? else {
                continue;
            };
            let Some(sender) = SenderId::parse(&entry.sender) else {
                continue; // no sender: it has a marker
            };
            left.push((key, sender));
        }
        if left.is_empty() {
            return Ok(());
        }
        // Running senders are listed after the entries were read: a sender
        // named in an entry announced itself before it was written, so if it
        // is missing now, it is gone.
        let running: HashSet<String> = entries
            .keys(&entries.paths().senders_dir())
            .await?
            .into_iter()
            .collect();
        let mut marked = 0;
        for (key, sender) in left {
            let predecessor = sender.name == self.me.name && sender.session != self.me.session;
            if sender == self.me || (running.contains(&sender.session) && !predecessor) {
                continue;
            }
            entries.mark_unassigned(&key).await;
            marked += 1;
        }
        if marked > 0 {
            tracing::info!(
                spans = marked,
                "ended spans of exporters that are gone, marked for sending"
            );
        }
        Ok(())
    }

    /// Frees the claims that a dead process of the same name left: its
    /// session may outlive it by the session timeout, and the spans it
    /// claimed would wait that long.
    async fn free_predecessor_claims(&self) -> Result<(), StoreError> {
        let entries = &self.entries;
        let paths = entries.paths();
        let mine = self.me.text();
        let prefix = format!("{}\n", self.me.name);
        let mut freed = 0;
        for key in entries.keys(&paths.claims_dir()).await? {
            let Some(node) = entries.store().get(&paths.claim(&key)).await? else {
                continue;
            };
            let data = String::from_utf8_lossy(&node.data);
            if data.starts_with(&prefix) && data != mine {
                entries.release_claim(&key).await;
                freed += 1;
            }
        }
        if freed > 0 {
            tracing::info!(claims = freed, name = %self.me.name, "freed the outbox claims of this process's previous run");
        }
        Ok(())
    }
}
