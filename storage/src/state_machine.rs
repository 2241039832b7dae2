//! openraft's state machine storage: the application's `Machine` lives in memory and is made
//! durable only through snapshots (tree "snapshot"); after a restart it starts from the last
//! snapshot and openraft re-applies the log from there. It must never hold a lock across an
//! `.await`, and never let readers see a state that was not produced by whole apply batches.

use std::collections::BTreeSet;
use std::io::Cursor;
use std::sync::{Arc, Mutex, PoisonError, RwLock, RwLockReadGuard, RwLockWriteGuard};

use openraft::storage::RaftStateMachine;
use openraft::{
    Entry, EntryPayload, LogId, OptionalSend, RaftSnapshotBuilder, RaftTypeConfig, Snapshot, SnapshotMeta,
    StorageError, StorageIOError, StoredMembership,
};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use tokio::sync::watch;

use crate::codec::CodecError;
use crate::compress::{self, Zstd};
use crate::error::sto;
use crate::legacy::{self, Applied, LegacyFormat};
use crate::store::{flush, Disk, Store, WriteFormat, TREE_DOCUMENTS, TREE_SNAPSHOT};
use crate::{documents, Error};

// Meta and data are separate values written in one batch, so the (possibly large) data is never
// copied into a wrapper just to be stored.
pub(crate) const KEY_META: &str = "current.meta";
pub(crate) const KEY_DATA: &str = "current.data";

/// The replicated state machine's logic, supplied by the raft crate.
///
/// `apply` must be deterministic: every node applies the same entries and must reach the same
/// state. The whole machine is serialized with [`crate::codec`] into snapshots: MessagePack
/// with named fields in format v1 (where `#[serde(flatten)]` keeps one map of the fields), and
/// for format v0 the machine's own frozen types (`state_to_v0`), positional bincode, which
/// never sees the current types' serde attributes.
pub trait Machine<C: RaftTypeConfig>: Default + Serialize + DeserializeOwned + Send + Sync + 'static {
    /// Applies one entry; says which documents it may have changed beside its reply.
    fn apply(&mut self, log_id: &LogId<C::NodeId>, data: &C::D) -> Effect<C::R>;

    /// The document under `key` as the state holds it now; `None` for one that does not (or no
    /// longer) exist. The store asks for each key an apply batch named and writes the answers
    /// into its document tree (the OVF store) before the apply returns.
    fn document(&self, _key: &str) -> Option<Vec<u8>> {
        None
    }

    /// Every document the state holds, for bringing the tree in line with a state restored from
    /// a snapshot.
    fn all_documents(&self) -> Vec<(String, Vec<u8>)> {
        Vec::new()
    }

    /// The keys of every document the state holds (`document` gives each), so that the tree can
    /// be brought in line one document at a time.
    fn document_keys(&self) -> Vec<String> {
        self.all_documents().into_iter().map(|(k, _)| k).collect()
    }

    /// The format the cluster writes in, as this state decides it (its cluster level); `None`
    /// while the state has no say (a node that belongs to no cluster yet), when the store keeps
    /// the format it has.
    fn format(&self) -> Option<u8> {
        None
    }

    /// Reads a snapshot's data written in format v0 (the frozen types and the migration step
    /// live with the machine).
    fn state_from_v0(_payload: &[u8]) -> Result<(Applied<C>, Self), CodecError> {
        Err(CodecError::NoSuchKind { what: "a snapshot of this state machine", format: 0 })
    }

    /// Writes a snapshot's data in format v0.
    fn state_to_v0(&self, _applied: &Applied<C>) -> Result<Vec<u8>, CodecError> {
        Err(CodecError::Unrepresentable { what: "a snapshot of this state machine".into(), format: 0 })
    }
}

/// What applying one entry gives back: the client's reply, and the keys of the documents the
/// entry may have changed (naming one that did not change is allowed: the store compares
/// before it writes).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Effect<R> {
    pub reply: R,
    pub changed: Vec<String>,
}

impl<R> Effect<R> {
    /// A reply that changed no document.
    pub fn reply(reply: R) -> Effect<R> {
        Effect { reply, changed: Vec::new() }
    }
}

/// Everything a snapshot captures; also the in-memory state between snapshots.
#[derive(Serialize, Deserialize)]
#[serde(bound(serialize = "M: Serialize", deserialize = "M: DeserializeOwned"))]
struct SmState<C: RaftTypeConfig, M> {
    last_applied: Option<LogId<C::NodeId>>,
    last_membership: StoredMembership<C::NodeId, C::Node>,
    machine: M,
}

impl<C: RaftTypeConfig, M: Default> Default for SmState<C, M> {
    fn default() -> Self {
        Self { last_applied: None, last_membership: StoredMembership::default(), machine: M::default() }
    }
}

fn index_of<NID: openraft::NodeId>(log_id: &Option<LogId<NID>>) -> u64 {
    log_id.as_ref().map_or(0, |l| l.index)
}

struct Shared<C: RaftTypeConfig, M> {
    state: RwLock<SmState<C, M>>,
    applied: watch::Sender<u64>,
    /// Serializes the compare-and-write of the current snapshot.
    persist: Mutex<()>,
}

impl<C: RaftTypeConfig, M> Shared<C, M> {
    fn read(&self) -> Result<RwLockReadGuard<'_, SmState<C, M>>, Error> {
        self.state.read().map_err(|_| Error::Poisoned)
    }

    fn write(&self) -> Result<RwLockWriteGuard<'_, SmState<C, M>>, Error> {
        self.state.write().map_err(|_| Error::Poisoned)
    }
}

/// The state machine store handed to openraft; also its snapshot builder.
///
/// Clones share the in-memory state and the database.
pub struct StateMachineStore<C: RaftTypeConfig, M> {
    db: sled::Db,
    disk: Disk,
    snapshots: sled::Tree,
    documents: sled::Tree,
    shared: Arc<Shared<C, M>>,
    format: WriteFormat,
}

impl<C: RaftTypeConfig, M> Clone for StateMachineStore<C, M> {
    fn clone(&self) -> Self {
        Self {
            db: self.db.clone(),
            disk: self.disk.clone(),
            snapshots: self.snapshots.clone(),
            documents: self.documents.clone(),
            shared: self.shared.clone(),
            format: self.format.clone(),
        }
    }
}

impl<C: RaftTypeConfig, M> std::fmt::Debug for StateMachineStore<C, M> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StateMachineStore").finish_non_exhaustive()
    }
}

/// A persisted snapshot: its metadata and the encoded [`SmState`].
type StoredSnapshot<C> = (SnapshotMeta<<C as RaftTypeConfig>::NodeId, <C as RaftTypeConfig>::Node>, Vec<u8>);

impl<C, M> StateMachineStore<C, M>
where
    C: LegacyFormat,
    M: Machine<C>,
{
    pub(crate) fn open(store: &Store) -> Result<Self, Error> {
        let db = &store.db;
        let snapshots = db.open_tree(TREE_SNAPSHOT)?;
        let state = match read_snapshot::<C>(&snapshots, true)? {
            Some((meta, data)) => {
                let state: SmState<C, M> = decode_state(&data)?;
                if state.last_applied != meta.last_log_id {
                    return Err(Error::SnapshotMismatch {
                        meta: format!("{:?}", meta.last_log_id),
                        data: format!("{:?}", state.last_applied),
                    });
                }
                tracing::info!(snapshot = %meta, "state machine restored from snapshot");
                state
            }
            None => SmState::default(),
        };
        let documents = db.open_tree(TREE_DOCUMENTS)?;
        // Not brought in line with the snapshot here: every document an apply wrote is in the
        // tree before a snapshot of that state is flushed, so the tree is never behind the
        // snapshot, but it may be ahead of it (entries applied after it, which openraft
        // re-applies as far as it knows them committed). Resetting it to the snapshot would
        // make a node that restarts without quorum serve older documents than it had. Only a
        // tree that has none at all (a data dir from before the OVF store) is filled.
        let format = store.format.clone();
        if let Some(f) = state.machine.format() {
            format.set(f);
        }
        if documents.is_empty() {
            sync_documents::<C, M>(&documents, &state.machine, format.get())?;
        }
        let (applied, _) = watch::channel(index_of(&state.last_applied));
        Ok(Self {
            db: db.clone(),
            disk: store.disk.clone(),
            snapshots,
            documents,
            shared: Arc::new(Shared { state: RwLock::new(state), applied, persist: Mutex::new(()) }),
            format,
        })
    }

    /// A cheap read-only view of the state machine for the rest of the node.
    pub fn handle(&self) -> StateHandle<C, M> {
        StateHandle { shared: self.shared.clone() }
    }

    /// Makes `meta` and `stored` (the data as kept on disk, see [`at_rest`]) the current snapshot
    /// on disk. With `unless_older`, it is skipped (and `false` returned) when the current one
    /// covers more of the log.
    ///
    /// openraft builds snapshots in a task of their own, so a build that read the state before a
    /// snapshot install can finish after it; letting it overwrite the installed snapshot would
    /// make a restart go back behind a log that was already purged.
    async fn persist_snapshot(
        &self,
        meta: &SnapshotMeta<C::NodeId, C::Node>,
        stored: &[u8],
        unless_older: bool,
    ) -> Result<bool, Error> {
        {
            // The lock guards no data, so a panic while it was held leaves nothing to distrust.
            let _serial = self.shared.persist.lock().unwrap_or_else(PoisonError::into_inner);
            if unless_older {
                if let Some((current, _)) = read_snapshot::<C>(&self.snapshots, false)? {
                    if current.last_log_id > meta.last_log_id {
                        return Ok(false);
                    }
                }
            }
            let mut batch = sled::Batch::default();
            batch.insert(KEY_META, legacy::encode_at(meta, self.format.get(), C::meta_to_v0)?);
            batch.insert(KEY_DATA, stored);
            self.snapshots.apply_batch(batch)?;
        }
        flush(&self.disk).await?;
        Ok(true)
    }

    async fn build(&self) -> Result<StoredSnapshot<C>, Error> {
        // Encoded on the blocking pool (a tenth of a second or more at tens of thousands of VMs):
        // applies wait for the read lock meanwhile, but no runtime worker spins in the encoder.
        let (shared, format) = (self.shared.clone(), self.format.get());
        let (data, last_applied, last_membership) = tokio::task::spawn_blocking(move || {
            let state = shared.read()?;
            Ok::<_, Error>((encode_state(&state, format)?, state.last_applied.clone(), state.last_membership.clone()))
        })
        .await
        .map_err(Error::PackTask)??;
        // sled's generated ids stay unique across restarts, so two snapshots at the same log id
        // (say, one before and one after a restart) never share an id.
        let counter = self.db.generate_id()?;
        let snapshot_id = match &last_applied {
            Some(l) => format!("{}-{}-{}", l.leader_id.term, l.index, counter),
            None => format!("none-{counter}"),
        };
        let meta = SnapshotMeta { last_log_id: last_applied, last_membership, snapshot_id };
        let (data, stored) = at_rest(data).await?;
        if self.persist_snapshot(&meta, &stored, true).await? {
            tracing::debug!(snapshot = %meta, bytes = data.len(), stored = stored.len(), "snapshot built");
        } else {
            tracing::info!(snapshot = %meta, "built snapshot is older than the current one; not kept");
        }
        Ok((meta, data))
    }

    async fn install(&self, meta: &SnapshotMeta<C::NodeId, C::Node>, data: Vec<u8>) -> Result<(), Error> {
        // Decoded before anything is replaced, so a bad snapshot leaves the current state intact;
        // on the blocking pool with the documents below: at tens of thousands of VMs they take
        // seconds that no runtime worker (and no reader of the state) may wait for.
        let (state, data) = tokio::task::spawn_blocking(move || {
            let state: SmState<C, M> = decode_state(&data)?;
            Ok::<_, Error>((state, data))
        })
        .await
        .map_err(Error::PackTask)??;
        if state.last_applied != meta.last_log_id {
            return Err(Error::SnapshotMismatch {
                meta: format!("{:?}", meta.last_log_id),
                data: format!("{:?}", state.last_applied),
            });
        }
        // openraft only installs snapshots newer than its state, and must find this one current.
        let generation = self.disk.generation();
        let (_, stored) = at_rest(data).await?;
        self.persist_snapshot(meta, &stored, false).await?;
        self.disk.mark(index_of(&meta.last_log_id), generation);
        let index = index_of(&state.last_applied);
        if let Some(f) = state.machine.format() {
            self.format.set(f);
        }
        // The documents are written before the state is swapped in (they may be ahead of the
        // state a moment, never behind it), outside the lock.
        let (tree, format) = (self.documents.clone(), self.format.get());
        let state = tokio::task::spawn_blocking(move || {
            sync_documents::<C, M>(&tree, &state.machine, format)?;
            Ok::<_, Error>(state)
        })
        .await
        .map_err(Error::PackTask)??;
        let mut guard = self.shared.write()?;
        *guard = state;
        drop(guard);
        self.shared.applied.send_replace(index);
        tracing::info!(snapshot = %meta, "snapshot installed");
        Ok(())
    }
}

/// The snapshot's `data` and its form at rest (compressed), made on the blocking pool: tens of
/// MB take a tenth of a second or more, which a runtime worker must not spend.
async fn at_rest(data: Vec<u8>) -> Result<(Vec<u8>, Vec<u8>), Error> {
    tokio::task::spawn_blocking(move || {
        let stored = compress::pack_value(&data)?;
        Ok((data, stored))
    })
    .await
    .map_err(Error::PackTask)?
}

/// Makes the document tree hold exactly the machine's documents: changed ones rewritten, missing
/// ones added, the rest removed. Unchanged documents are not written. One document is built at
/// a time and written in batches of `SYNC_BATCH`, so tens of thousands of them never sit in
/// memory together (the tree may be half-way for a moment: ahead of the state, never behind).
fn sync_documents<C: RaftTypeConfig, M: Machine<C>>(tree: &sled::Tree, machine: &M, format: u8) -> Result<(), Error> {
    const SYNC_BATCH: usize = 1024;
    let keys: std::collections::BTreeSet<String> = machine.document_keys().into_iter().collect();
    let mut z = Zstd::for_documents();
    let mut batch = sled::Batch::default();
    let (mut changed, mut pending) = (0usize, 0usize);
    for key in tree.iter().keys() {
        let key = key?;
        if !keys.contains(&*String::from_utf8_lossy(&key)) {
            batch.remove(key);
            changed += 1;
        }
    }
    for key in &keys {
        let Some(doc) = machine.document(key) else { continue };
        if !tree.get(key.as_bytes())?.is_some_and(|v| documents::holds(&v, &doc, &mut z)) {
            batch.insert(key.as_bytes(), documents::write(&doc, format, &mut z)?);
            changed += 1;
            pending += 1;
            if pending == SYNC_BATCH {
                tree.apply_batch(std::mem::take(&mut batch))?;
                pending = 0;
            }
        }
    }
    tree.apply_batch(batch)?;
    documents::note_written(changed);
    if changed > 0 {
        tracing::info!(changed, documents = keys.len(), "document store brought in line with the state");
    }
    Ok(())
}

/// Writes the documents one apply batch changed; unchanged ones are left alone.
fn write_documents(
    tree: &sled::Tree,
    docs: impl IntoIterator<Item = (String, Option<Vec<u8>>)>,
    format: u8,
) -> Result<(), Error> {
    let mut z = Zstd::for_documents();
    let mut batch = sled::Batch::default();
    let mut changed = 0usize;
    for (key, doc) in docs {
        match doc {
            Some(doc) => {
                if !tree.get(key.as_bytes())?.is_some_and(|v| documents::holds(&v, &doc, &mut z)) {
                    batch.insert(key.as_bytes(), documents::write(&doc, format, &mut z)?);
                    changed += 1;
                }
            }
            None => {
                batch.remove(key.as_bytes());
                changed += 1;
            }
        }
    }
    tree.apply_batch(batch)?;
    documents::note_written(changed);
    Ok(())
}

/// The current snapshot, with its data only if `with_data` (the metadata alone is cheap). The
/// data is the plain encoding, as openraft sends it, whether or not it is kept compressed.
fn read_snapshot<C: LegacyFormat>(tree: &sled::Tree, with_data: bool) -> Result<Option<StoredSnapshot<C>>, Error> {
    let Some(meta) = tree.get(KEY_META)? else {
        return Ok(None);
    };
    let data = if with_data {
        match tree.get(KEY_DATA)? {
            Some(d) => compress::unpack_value(&d)?,
            None => return Ok(None),
        }
    } else {
        Vec::new()
    };
    Ok(Some((legacy::decode_with(&meta, C::meta_from_v0)?, data)))
}

/// A snapshot's data as this store writes it, in `format` (for tools and fixtures).
pub fn encode_snapshot_data<C: LegacyFormat, M: Machine<C>>(
    applied: Applied<C>,
    machine: M,
    format: u8,
) -> Result<Vec<u8>, CodecError> {
    let state = SmState::<C, M> { last_applied: applied.0, last_membership: applied.1, machine };
    let applied = (state.last_applied.clone(), state.last_membership.clone());
    legacy::encode_at(&state, format, |s| s.machine.state_to_v0(&applied))
}

/// Reads a snapshot's data in any format this build knows.
pub fn decode_snapshot_data<C: LegacyFormat, M: Machine<C>>(data: &[u8]) -> Result<(Applied<C>, M), CodecError> {
    let state: SmState<C, M> = decode_state(data)?;
    Ok(((state.last_applied, state.last_membership), state.machine))
}

/// A snapshot's data in the machine's current format: v0 through the machine's frozen types
/// while the cluster is at level 0, else the current format.
fn encode_state<C: LegacyFormat, M: Machine<C>>(state: &SmState<C, M>, store: u8) -> Result<Vec<u8>, CodecError> {
    let applied = (state.last_applied.clone(), state.last_membership.clone());
    legacy::encode_at(state, state.machine.format().unwrap_or(store), |s| s.machine.state_to_v0(&applied))
}

fn decode_state<C: LegacyFormat, M: Machine<C>>(data: &[u8]) -> Result<SmState<C, M>, CodecError> {
    legacy::decode_with(data, |payload| {
        let ((last_applied, last_membership), machine) = M::state_from_v0(payload)?;
        Ok(SmState { last_applied, last_membership, machine })
    })
}

impl<C, M> RaftSnapshotBuilder<C> for StateMachineStore<C, M>
where
    C: LegacyFormat<SnapshotData = Cursor<Vec<u8>>>,
    M: Machine<C>,
{
    async fn build_snapshot(&mut self) -> Result<Snapshot<C>, StorageError<C::NodeId>> {
        let (meta, data) = self.build().await.map_err(sto(|e| StorageIOError::write_snapshot(None, e)))?;
        Ok(Snapshot { meta, snapshot: Box::new(Cursor::new(data)) })
    }
}

impl<C, M> RaftStateMachine<C> for StateMachineStore<C, M>
where
    C: LegacyFormat<Entry = Entry<C>, SnapshotData = Cursor<Vec<u8>>>,
    C::R: Default,
    M: Machine<C>,
{
    type SnapshotBuilder = Self;

    async fn applied_state(
        &mut self,
    ) -> Result<(Option<LogId<C::NodeId>>, StoredMembership<C::NodeId, C::Node>), StorageError<C::NodeId>> {
        let state = self.shared.read().map_err(sto(StorageIOError::read_state_machine))?;
        Ok((state.last_applied.clone(), state.last_membership.clone()))
    }

    async fn apply<I>(&mut self, entries: I) -> Result<Vec<C::R>, StorageError<C::NodeId>>
    where
        I: IntoIterator<Item = C::Entry> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        let mut responses = Vec::new();
        let mut changed = BTreeSet::new();
        let index = {
            let mut guard = self.shared.write().map_err(sto(StorageIOError::write_state_machine))?;
            let state = &mut *guard;
            for entry in entries {
                state.last_applied = Some(entry.log_id.clone());
                let response = match entry.payload {
                    EntryPayload::Blank => C::R::default(),
                    EntryPayload::Normal(ref data) => {
                        let effect = state.machine.apply(&entry.log_id, data);
                        changed.extend(effect.changed);
                        effect.reply
                    }
                    EntryPayload::Membership(membership) => {
                        state.last_membership = StoredMembership::new(Some(entry.log_id), membership);
                        C::R::default()
                    }
                };
                responses.push(response);
            }
            if let Some(f) = state.machine.format() {
                self.format.set(f);
            }
            // Written under the lock, so that a reader who sees this state finds its documents.
            let docs = changed.into_iter().map(|key| {
                let doc = state.machine.document(&key);
                (key, doc)
            });
            write_documents(&self.documents, docs, self.format.get())
                .map_err(sto(StorageIOError::write_state_machine))?;
            index_of(&state.last_applied)
        };
        if !responses.is_empty() {
            self.shared.applied.send_replace(index);
        }
        Ok(responses)
    }

    async fn get_snapshot_builder(&mut self) -> Self::SnapshotBuilder {
        self.clone()
    }

    async fn begin_receiving_snapshot(&mut self) -> Result<Box<C::SnapshotData>, StorageError<C::NodeId>> {
        Ok(Box::new(Cursor::new(Vec::new())))
    }

    async fn install_snapshot(
        &mut self,
        meta: &SnapshotMeta<C::NodeId, C::Node>,
        snapshot: Box<C::SnapshotData>,
    ) -> Result<(), StorageError<C::NodeId>> {
        self.install(meta, snapshot.into_inner())
            .await
            .map_err(sto(|e| StorageIOError::write_snapshot(Some(meta.signature()), e)))
    }

    async fn get_current_snapshot(&mut self) -> Result<Option<Snapshot<C>>, StorageError<C::NodeId>> {
        let stored =
            read_snapshot::<C>(&self.snapshots, true).map_err(sto(|e| StorageIOError::read_snapshot(None, e)))?;
        Ok(stored.map(|(meta, data)| Snapshot { meta, snapshot: Box::new(Cursor::new(data)) }))
    }
}

/// A read-only view of the applied state for the rest of the node (queries, watchers).
pub struct StateHandle<C: RaftTypeConfig, M> {
    shared: Arc<Shared<C, M>>,
}

impl<C: RaftTypeConfig, M> Clone for StateHandle<C, M> {
    fn clone(&self) -> Self {
        Self { shared: self.shared.clone() }
    }
}

impl<C: RaftTypeConfig, M> std::fmt::Debug for StateHandle<C, M> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StateHandle").finish_non_exhaustive()
    }
}

impl<C: RaftTypeConfig, M> StateHandle<C, M> {
    /// Runs `f` on the current state. Applies wait while `f` runs, so keep it short.
    ///
    /// # Panics
    ///
    /// If an earlier `Machine::apply` panicked: the state may be half-updated, and serving it
    /// would be worse than failing the read.
    pub fn read<T>(&self, f: impl FnOnce(&M) -> T) -> T {
        f(&self.guard().machine)
    }

    /// The log id of the last entry applied (or covered by the installed snapshot).
    ///
    /// # Panics
    ///
    /// As [`StateHandle::read`].
    pub fn last_applied(&self) -> Option<LogId<C::NodeId>> {
        self.guard().last_applied.clone()
    }

    /// Follows the last applied log index (0 if none); updated after every apply batch and
    /// snapshot install.
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.shared.applied.subscribe()
    }

    fn guard(&self) -> RwLockReadGuard<'_, SmState<C, M>> {
        match self.shared.read() {
            Ok(guard) => guard,
            Err(e) => panic!("{e}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use openraft::{CommittedLeaderId, LogId};
    use serde::{Deserialize, Serialize};

    use super::*;

    openraft::declare_raft_types!(Cfg: D = u64, R = u64);
    impl LegacyFormat for Cfg {}

    #[derive(Default, Serialize, Deserialize)]
    struct Sum(u64);

    impl Machine<Cfg> for Sum {
        fn apply(&mut self, _: &LogId<u64>, d: &u64) -> Effect<u64> {
            self.0 += d;
            Effect::reply(self.0)
        }
    }

    fn entry(index: u64, d: u64) -> Entry<Cfg> {
        Entry { log_id: LogId::new(CommittedLeaderId::new(1, 0), index), payload: EntryPayload::Normal(d) }
    }

    /// Keeps one document per residue of the applied numbers mod 3; 0 removes them all.
    #[derive(Default, Serialize, Deserialize)]
    struct Docs {
        docs: std::collections::BTreeMap<String, String>,
    }

    impl Machine<Cfg> for Docs {
        fn apply(&mut self, _: &LogId<u64>, d: &u64) -> Effect<u64> {
            let changed = if *d == 0 {
                std::mem::take(&mut self.docs).into_keys().collect()
            } else {
                let key = format!("k{}", d % 3);
                self.docs.insert(key.clone(), format!("v{d}"));
                vec![key]
            };
            Effect { reply: *d, changed }
        }

        fn document(&self, key: &str) -> Option<Vec<u8>> {
            self.docs.get(key).map(|v| v.clone().into_bytes())
        }

        fn all_documents(&self) -> Vec<(String, Vec<u8>)> {
            self.docs.iter().map(|(k, v)| (k.clone(), v.clone().into_bytes())).collect()
        }
    }

    fn docs(store: &crate::Store) -> Vec<(String, String)> {
        store.documents().unwrap().into_iter().map(|(k, v)| (k, String::from_utf8(v).unwrap())).collect()
    }

    #[tokio::test]
    async fn documents_follow_every_apply_survive_a_restart_and_follow_an_installed_snapshot() {
        let dir = tempfile::TempDir::new().unwrap();
        {
            let store = crate::Store::open(dir.path(), 1 << 20).unwrap();
            let mut sm: StateMachineStore<Cfg, Docs> = store.state_machine().unwrap();
            sm.apply([entry(1, 1), entry(2, 2), entry(3, 4)]).await.unwrap();
            assert_eq!(docs(&store), [("k1".into(), "v4".into()), ("k2".into(), "v2".into())]);
            sm.build_snapshot().await.unwrap();
            sm.apply([entry(4, 0), entry(5, 3)]).await.unwrap();
            assert_eq!(docs(&store), [("k0".to_string(), "v3".to_string())]);
        }
        // Reopened, the state is the snapshot's (entries 4 and 5 are for openraft to re-apply),
        // and the documents are still those of entry 5: newer than the snapshot, never older.
        let store = reopen(dir.path());
        let mut sm: StateMachineStore<Cfg, Docs> = store.state_machine().unwrap();
        assert_eq!(docs(&store), [("k0".to_string(), "v3".to_string())]);
        // Re-applying what followed the snapshot writes the same documents again.
        sm.apply([entry(4, 0), entry(5, 3)]).await.unwrap();
        assert_eq!(docs(&store), [("k0".to_string(), "v3".to_string())]);
        // A snapshot installed from the leader replaces them all, stale ones included.
        let other = tempfile::TempDir::new().unwrap();
        let leader_store = crate::Store::open(other.path(), 1 << 20).unwrap();
        let mut leader: StateMachineStore<Cfg, Docs> = leader_store.state_machine().unwrap();
        leader.apply([entry(1, 7), entry(2, 8), entry(3, 9), entry(4, 10), entry(5, 11), entry(6, 13)]).await.unwrap();
        let snap = leader.build_snapshot().await.unwrap();
        sm.install_snapshot(&snap.meta, snap.snapshot).await.unwrap();
        assert_eq!(
            docs(&store),
            [("k0".to_string(), "v9".to_string()), ("k1".into(), "v13".into()), ("k2".into(), "v11".into())]
        );
    }

    #[tokio::test]
    async fn the_snapshot_is_kept_compressed_but_openraft_gets_and_sends_the_plain_encoding() {
        let dir = tempfile::TempDir::new().unwrap();
        let store = crate::Store::open(dir.path(), 1 << 20).unwrap();
        let mut sm: StateMachineStore<Cfg, Docs> = store.state_machine().unwrap();
        let entries: Vec<_> = (1..=300).map(|i| entry(i, i)).collect();
        sm.apply(entries).await.unwrap();
        let built = sm.build_snapshot().await.unwrap();
        let plain = built.snapshot.into_inner();
        // What openraft sends is what a build without compression writes and reads.
        let state: SmState<Cfg, Docs> = decode_state(&plain).unwrap();
        assert_eq!(plain, crate::codec::encode(&state).unwrap());
        let at_rest = store.db.open_tree(TREE_SNAPSHOT).unwrap().get(KEY_DATA).unwrap().unwrap();
        assert_eq!(&at_rest[..2], &[crate::codec::MARK, crate::codec::CURRENT | compress::COMPRESSED]);
        assert_eq!(compress::unpack_value(&at_rest).unwrap(), plain);
        let current = sm.get_current_snapshot().await.unwrap().unwrap();
        assert_eq!(current.snapshot.into_inner(), plain);

        // An install receives the plain encoding and keeps it compressed too.
        let other = tempfile::TempDir::new().unwrap();
        let follower_store = crate::Store::open(other.path(), 1 << 20).unwrap();
        let mut follower: StateMachineStore<Cfg, Docs> = follower_store.state_machine().unwrap();
        follower.install_snapshot(&built.meta, Box::new(Cursor::new(plain.clone()))).await.unwrap();
        let kept = follower_store.db.open_tree(TREE_SNAPSHOT).unwrap().get(KEY_DATA).unwrap().unwrap();
        assert_eq!(kept[1], crate::codec::CURRENT | compress::COMPRESSED);
        assert_eq!(follower.get_current_snapshot().await.unwrap().unwrap().snapshot.into_inner(), plain);
        assert_eq!(docs(&follower_store), docs(&store));
    }

    #[tokio::test]
    async fn a_store_whose_snapshot_was_kept_plain_still_opens() {
        let dir = tempfile::TempDir::new().unwrap();
        let plain = {
            let store = crate::Store::open(dir.path(), 1 << 20).unwrap();
            let mut sm: StateMachineStore<Cfg, Sum> = store.state_machine().unwrap();
            sm.apply([entry(1, 40), entry(2, 2)]).await.unwrap();
            let plain = sm.build_snapshot().await.unwrap().snapshot.into_inner();
            // As the build before compression left it: the plain encoding under the key.
            store.db.open_tree(TREE_SNAPSHOT).unwrap().insert(KEY_DATA, plain.clone()).unwrap();
            store.flush().unwrap();
            plain
        };
        let store = reopen(dir.path());
        let mut sm: StateMachineStore<Cfg, Sum> = store.state_machine().unwrap();
        assert_eq!(sm.handle().read(|m| m.0), 42);
        assert_eq!(sm.get_current_snapshot().await.unwrap().unwrap().snapshot.into_inner(), plain);
        let (last, machine) = store.recovered_state::<Cfg, Sum>().unwrap();
        assert_eq!((last.map(|l| l.index), machine.0), (Some(2), 42));

        // A damaged compressed snapshot is an error when the store opens, not a panic.
        sm.build_snapshot().await.unwrap();
        let tree = store.db.open_tree(TREE_SNAPSHOT).unwrap();
        let mut stored = tree.get(KEY_DATA).unwrap().unwrap().to_vec();
        let last = stored.len() - 1;
        stored[last] ^= 1;
        tree.insert(KEY_DATA, stored).unwrap();
        let err = store.state_machine::<Cfg, Sum>().unwrap_err();
        assert!(crate::error_chain(&err).contains("could not be decompressed"), "{}", crate::error_chain(&err));
    }

    /// Opens the store in `dir` again: sled's own threads may hold the directory's lock a moment
    /// after the last handle went (seen under a loaded test run), so a bounded retry.
    fn reopen(dir: &std::path::Path) -> crate::Store {
        let mut attempt = 0;
        loop {
            match crate::Store::open(dir, 1 << 20) {
                Ok(s) => return s,
                Err(e) if attempt < 40 => {
                    attempt += 1;
                    eprintln!("reopen attempt {attempt}: {e}");
                    std::thread::sleep(std::time::Duration::from_millis(50));
                }
                Err(e) => panic!("reopen: {e}"),
            }
        }
    }

    // Stands in for a build that read the state before a newer snapshot became current.
    #[tokio::test]
    async fn a_stale_build_does_not_replace_a_newer_snapshot() {
        let dir = tempfile::TempDir::new().unwrap();
        let store = crate::Store::open(dir.path(), 1 << 20).unwrap();
        let mut sm: StateMachineStore<Cfg, Sum> = store.state_machine().unwrap();
        sm.apply([entry(1, 1), entry(2, 2)]).await.unwrap();
        let newer = sm.build_snapshot().await.unwrap();

        let mut stale = newer.meta.clone();
        stale.last_log_id = Some(LogId::new(CommittedLeaderId::new(1, 0), 1));
        stale.snapshot_id = "stale".to_string();
        assert!(!sm.persist_snapshot(&stale, b"x", true).await.unwrap());
        let current = sm.get_current_snapshot().await.unwrap().unwrap();
        assert_eq!(current.meta, newer.meta);
        assert_eq!(current.snapshot.into_inner(), newer.snapshot.into_inner());

        // An install is openraft's decision and always becomes current.
        assert!(sm.persist_snapshot(&stale, b"x", false).await.unwrap());
        let current = sm.get_current_snapshot().await.unwrap().unwrap();
        assert_eq!(current.meta.snapshot_id, "stale");
    }
}
