//! What the gateway must remember across restarts: who inside reached out to whom outside
//! (the gate of `PublicUnverified` partners) and the presence subscriptions it relays.
//!
//! [`ContactStore`] is the interface; [`RedbStore`] implements it on an embedded, crash-safe
//! database (redb: copy-on-write pages, fsync on every commit), one file on the gateway's
//! volume. A shared database for several replicas can implement the same trait later.
//!
//! A reach-out is written *before* the stanza that caused it is forwarded, so a partner's
//! answer is never refused because a crash forgot the question.

use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition};
use std::path::Path;

/// `(local bare JID, remote bare JID)` → Unix seconds of the first reach-out.
const REACHED_OUT: TableDefinition<(&str, &str), u64> = TableDefinition::new("reached_out");
/// `(local, remote)` → `(local→remote state, remote→local state, refreshed at)`.
const SUBSCRIPTIONS: TableDefinition<(&str, &str), (u8, u8, u64)> =
    TableDefinition::new("subscriptions");

#[derive(Debug, thiserror::Error)]
#[error("contact store: {0}")]
pub struct StoreError(String);

fn store_err(e: impl std::fmt::Display) -> StoreError {
    StoreError(e.to_string())
}

/// One direction of a presence subscription (RFC 6121 §3).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SubState {
    #[default]
    None,
    /// Requested, not yet approved.
    Pending,
    Active,
}

impl SubState {
    fn to_u8(self) -> u8 {
        match self {
            SubState::None => 0,
            SubState::Pending => 1,
            SubState::Active => 2,
        }
    }
    fn from_u8(v: u8) -> Self {
        match v {
            1 => SubState::Pending,
            2 => SubState::Active,
            _ => SubState::None,
        }
    }
}

/// A federated subscription between a local and a remote user.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Subscription {
    /// The local user receives the remote user's presence.
    pub local_to_remote: SubState,
    /// The remote user receives the local user's presence.
    pub remote_to_local: SubState,
    /// Unix seconds of the last sign of life: a subscription change or presence between them.
    pub refreshed_at: u64,
}

impl Subscription {
    pub fn is_empty(&self) -> bool {
        self.local_to_remote == SubState::None && self.remote_to_local == SubState::None
    }
}

/// The gateway's memory.
pub trait ContactStore: Send + Sync + 'static {
    /// Whether `local` reached out to `remote` (a message, `subscribe` or `subscribed`).
    fn reached_out(&self, local: &str, remote: &str) -> Result<bool, StoreError>;
    /// Records a reach-out durably; a no-op when it is already known.
    fn record_reach_out(&self, local: &str, remote: &str, now: u64) -> Result<(), StoreError>;
    fn subscription(&self, local: &str, remote: &str) -> Result<Subscription, StoreError>;
    /// Stores a subscription; an empty one is deleted.
    fn put_subscription(
        &self,
        local: &str,
        remote: &str,
        sub: Subscription,
    ) -> Result<(), StoreError>;
    /// Every subscription, for the refresh sweep.
    fn subscriptions(&self) -> Result<Vec<(String, String, Subscription)>, StoreError>;
}

/// [`ContactStore`] on redb.
pub struct RedbStore {
    db: Database,
}

impl RedbStore {
    /// Opens (or creates) the store file.
    pub fn open(path: &Path) -> Result<Self, StoreError> {
        let db = Database::create(path)
            .map_err(|e| StoreError(format!("opening {}: {e}", path.display())))?;
        Self::init(db)
    }

    /// A store that lives in memory only (tests, `xmppfed up` without a state directory).
    pub fn in_memory() -> Result<Self, StoreError> {
        let db = Database::builder()
            .create_with_backend(redb::backends::InMemoryBackend::new())
            .map_err(store_err)?;
        Self::init(db)
    }

    fn init(db: Database) -> Result<Self, StoreError> {
        // Create both tables up front so readers never meet a missing table.
        let txn = db.begin_write().map_err(store_err)?;
        txn.open_table(REACHED_OUT).map_err(store_err)?;
        txn.open_table(SUBSCRIPTIONS).map_err(store_err)?;
        txn.commit().map_err(store_err)?;
        Ok(Self { db })
    }
}

impl ContactStore for RedbStore {
    fn reached_out(&self, local: &str, remote: &str) -> Result<bool, StoreError> {
        let txn = self.db.begin_read().map_err(store_err)?;
        let table = txn.open_table(REACHED_OUT).map_err(store_err)?;
        Ok(table.get((local, remote)).map_err(store_err)?.is_some())
    }

    fn record_reach_out(&self, local: &str, remote: &str, now: u64) -> Result<(), StoreError> {
        // Reading first keeps the common case (a conversation already going) free of an fsync.
        if self.reached_out(local, remote)? {
            return Ok(());
        }
        let txn = self.db.begin_write().map_err(store_err)?;
        {
            let mut table = txn.open_table(REACHED_OUT).map_err(store_err)?;
            table.insert((local, remote), now).map_err(store_err)?;
        }
        txn.commit().map_err(store_err)
    }

    fn subscription(&self, local: &str, remote: &str) -> Result<Subscription, StoreError> {
        let txn = self.db.begin_read().map_err(store_err)?;
        let table = txn.open_table(SUBSCRIPTIONS).map_err(store_err)?;
        Ok(table
            .get((local, remote))
            .map_err(store_err)?
            .map(|v| {
                let (a, b, t) = v.value();
                Subscription {
                    local_to_remote: SubState::from_u8(a),
                    remote_to_local: SubState::from_u8(b),
                    refreshed_at: t,
                }
            })
            .unwrap_or_default())
    }

    fn put_subscription(
        &self,
        local: &str,
        remote: &str,
        sub: Subscription,
    ) -> Result<(), StoreError> {
        let txn = self.db.begin_write().map_err(store_err)?;
        {
            let mut table = txn.open_table(SUBSCRIPTIONS).map_err(store_err)?;
            if sub.is_empty() {
                table.remove((local, remote)).map_err(store_err)?;
            } else {
                table
                    .insert(
                        (local, remote),
                        (
                            sub.local_to_remote.to_u8(),
                            sub.remote_to_local.to_u8(),
                            sub.refreshed_at,
                        ),
                    )
                    .map_err(store_err)?;
            }
        }
        txn.commit().map_err(store_err)
    }

    fn subscriptions(&self) -> Result<Vec<(String, String, Subscription)>, StoreError> {
        let txn = self.db.begin_read().map_err(store_err)?;
        let table = txn.open_table(SUBSCRIPTIONS).map_err(store_err)?;
        let mut out = Vec::new();
        for row in table.iter().map_err(store_err)? {
            let (k, v) = row.map_err(store_err)?;
            let (local, remote) = k.value();
            let (a, b, t) = v.value();
            out.push((
                local.to_string(),
                remote.to_string(),
                Subscription {
                    local_to_remote: SubState::from_u8(a),
                    remote_to_local: SubState::from_u8(b),
                    refreshed_at: t,
                },
            ));
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reach_outs_survive_a_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("contacts.redb");
        {
            let store = RedbStore::open(&path).unwrap();
            assert!(
                !store
                    .reached_out("bob@org.example", "alice@p.example")
                    .unwrap()
            );
            store
                .record_reach_out("bob@org.example", "alice@p.example", 100)
                .unwrap();
            let sub = Subscription {
                local_to_remote: SubState::Active,
                remote_to_local: SubState::Pending,
                refreshed_at: 100,
            };
            store
                .put_subscription("bob@org.example", "alice@p.example", sub)
                .unwrap();
            // The store is dropped without any shutdown step, as in a crash after commit.
        }
        let store = RedbStore::open(&path).unwrap();
        assert!(
            store
                .reached_out("bob@org.example", "alice@p.example")
                .unwrap()
        );
        // Direction matters: the partner user did not reach out to bob.
        assert!(
            !store
                .reached_out("alice@p.example", "bob@org.example")
                .unwrap()
        );
        let sub = store
            .subscription("bob@org.example", "alice@p.example")
            .unwrap();
        assert_eq!(sub.local_to_remote, SubState::Active);
        assert_eq!(sub.remote_to_local, SubState::Pending);
        assert_eq!(store.subscriptions().unwrap().len(), 1);
    }

    #[test]
    fn empty_subscriptions_are_deleted() {
        let store = RedbStore::in_memory().unwrap();
        let sub = Subscription {
            local_to_remote: SubState::Active,
            ..Subscription::default()
        };
        store.put_subscription("a@o", "b@p", sub).unwrap();
        assert_eq!(store.subscriptions().unwrap().len(), 1);
        store
            .put_subscription("a@o", "b@p", Subscription::default())
            .unwrap();
        assert!(store.subscriptions().unwrap().is_empty());
        assert_eq!(
            store.subscription("a@o", "b@p").unwrap(),
            Subscription::default()
        );
    }
}
