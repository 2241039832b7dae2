//! Opens the one sled database of a node and hands out its parts: node-local facts, the raft
//! log store and the state machine store. It owns the tree layout; it must never let a sled type
//! escape into the public API, since no other crate may depend on sled.

use std::path::Path;

use openraft::RaftTypeConfig;

use crate::log_store::LogStore;
use crate::state_machine::{Machine, StateMachineStore};
use crate::Error;

pub(crate) const TREE_LOCAL: &str = "local";
pub(crate) const TREE_LOG: &str = "log";
pub(crate) const TREE_RAFT: &str = "raft";
pub(crate) const TREE_SNAPSHOT: &str = "snapshot";
pub(crate) const TREE_DOCUMENTS: &str = "ovf";

/// A node's durable storage: one sled database under `dir/db`.
///
/// Cloning is cheap and shares the database. sled locks the directory, so every clone, log store
/// and state machine store must be dropped before the same directory can be opened again.
#[derive(Debug, Clone)]
pub struct Store {
    pub(crate) db: sled::Db,
}

impl Store {
    /// Opens (creating) the database in `dir.join("db")`; `cache_bytes` bounds sled's page cache,
    /// which dominates the idle memory of a node.
    pub fn open(dir: &Path, cache_bytes: u64) -> Result<Store, Error> {
        let path = dir.join("db");
        let db = sled::Config::new()
            .path(&path)
            .cache_capacity(cache_bytes)
            .open()
            .map_err(|source| Error::Open { path, source })?;
        Ok(Store { db })
    }

    /// Reads a node-local fact written by [`Store::set_local`].
    pub fn get_local(&self, key: &str) -> Result<Option<Vec<u8>>, Error> {
        let tree = self.db.open_tree(TREE_LOCAL)?;
        Ok(tree.get(key)?.map(|v| v.to_vec()))
    }

    /// Writes a node-local fact; it is on disk when this returns, because such facts (a node's id,
    /// its cluster) are decided once and must survive a crash right after.
    pub fn set_local(&self, key: &str, value: &[u8]) -> Result<(), Error> {
        let tree = self.db.open_tree(TREE_LOCAL)?;
        tree.insert(key, value)?;
        self.db.flush()?;
        Ok(())
    }

    /// The raft log and vote store. Every call returns a view of the same trees.
    pub fn log_store<C>(&self) -> Result<LogStore<C>, Error>
    where
        C: RaftTypeConfig,
    {
        LogStore::open(&self.db)
    }

    /// The state machine store, starting from the persisted snapshot if there is one.
    ///
    /// Each call builds a separate in-memory state machine, so a node should call it once.
    pub fn state_machine<C, M>(&self) -> Result<StateMachineStore<C, M>, Error>
    where
        C: RaftTypeConfig,
        M: Machine<C>,
    {
        StateMachineStore::open(&self.db)
    }

    /// The state machine's documents (the OVF store), by key; readable with no quorum.
    pub fn documents(&self) -> Result<Vec<(String, Vec<u8>)>, Error> {
        let tree = self.db.open_tree(TREE_DOCUMENTS)?;
        tree.iter()
            .map(|item| {
                let (k, v) = item?;
                Ok((String::from_utf8_lossy(&k).into_owned(), v.to_vec()))
            })
            .collect()
    }

    /// One document of the state machine's document tree.
    pub fn document(&self, key: &str) -> Result<Option<Vec<u8>>, Error> {
        let tree = self.db.open_tree(TREE_DOCUMENTS)?;
        Ok(tree.get(key)?.map(|v| v.to_vec()))
    }

    /// Makes every write so far durable.
    pub fn flush(&self) -> Result<(), Error> {
        self.db.flush()?;
        Ok(())
    }

    /// The bytes the database occupies on disk, for watching sled's growth.
    pub fn size_on_disk(&self) -> Result<u64, Error> {
        Ok(self.db.size_on_disk()?)
    }
}

/// Flushes `db` without blocking the async runtime.
///
/// sled 0.34's own `flush_async` can miss its wake-up and hang when several flushes overlap
/// (sled issues 1241, 1308; fixed only on sled's unreleased main), so the blocking flush runs on
/// tokio's blocking pool instead.
pub(crate) async fn flush(db: &sled::Db) -> Result<(), Error> {
    let db = db.clone();
    tokio::task::spawn_blocking(move || db.flush()).await.map_err(Error::FlushTask)??;
    Ok(())
}
