//! A test-only raft type config and machine for exercising the store.
//! Shared by the integration tests; it must stay free of anything a real node would rely on.

#![allow(dead_code)]

use std::collections::BTreeMap;
// declare_raft_types! names the default snapshot type unqualified.
use std::io::Cursor;
use std::path::Path;

use corral_storage::{Effect, LogStore, Machine, StateMachineStore, Store};
use openraft::{BasicNode, CommittedLeaderId, Entry, EntryPayload, LogId, Membership};
use serde::{Deserialize, Serialize};

/// Adds `by` to the counter named `key`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Add {
    pub key: String,
    pub by: u64,
}

openraft::declare_raft_types!(
    pub TestConfig:
        D = Add,
        R = u64,
        Node = BasicNode,
);

// A config with no release before format v1.
impl corral_storage::LegacyFormat for TestConfig {}

#[derive(Debug, Default, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Counters {
    pub counts: BTreeMap<String, u64>,
}

impl Machine<TestConfig> for Counters {
    fn apply(&mut self, _log_id: &LogId<u64>, data: &Add) -> Effect<u64> {
        let v = self.counts.entry(data.key.clone()).or_default();
        *v += data.by;
        Effect::reply(*v)
    }
}

pub type Logs = LogStore<TestConfig>;
pub type Sm = StateMachineStore<TestConfig, Counters>;

pub const CACHE: u64 = 8 << 20;

/// Opens the store in `dir`. A reopen in the same process can find the previous handle's
/// file lock still held for a moment, until sled's background flusher thread has exited, so
/// a locked directory is retried until a deadline.
pub fn open(dir: &Path) -> (Store, Logs, Sm) {
    let store = open_store(dir);
    let logs = store.log_store().unwrap();
    let sm = store.state_machine().unwrap();
    (store, logs, sm)
}

pub fn log_id(term: u64, index: u64) -> LogId<u64> {
    LogId::new(CommittedLeaderId::new(term, 1), index)
}

pub fn blank(term: u64, index: u64) -> Entry<TestConfig> {
    Entry { log_id: log_id(term, index), payload: EntryPayload::Blank }
}

pub fn add(term: u64, index: u64, key: &str, by: u64) -> Entry<TestConfig> {
    Entry { log_id: log_id(term, index), payload: EntryPayload::Normal(Add { key: key.to_string(), by }) }
}

pub fn membership(term: u64, index: u64, voters: &[u64]) -> Entry<TestConfig> {
    let nodes = voters.iter().map(|id| (*id, BasicNode::new(format!("10.0.0.{id}:7000")))).collect::<BTreeMap<_, _>>();
    Entry {
        log_id: log_id(term, index),
        payload: EntryPayload::Membership(Membership::new(vec![voters.iter().copied().collect()], nodes)),
    }
}

pub fn open_store(dir: &Path) -> Store {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        match Store::open(dir, CACHE) {
            Ok(store) => return store,
            Err(corral_storage::Error::Open { .. }) if std::time::Instant::now() < deadline => {
                std::thread::sleep(std::time::Duration::from_millis(10));
            }
            Err(e) => panic!("cannot open the store: {e:?}"),
        }
    }
}
