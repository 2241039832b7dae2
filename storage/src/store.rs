//! Opens the one sled database of a node and hands out its parts: node-local facts, the raft
//! log store and the state machine store. It owns the tree layout; it must never let a sled type
//! escape into the public API, since no other crate may depend on sled.

use std::fs::File;
use std::path::Path;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use crate::log_store::LogStore;
use crate::state_machine::{Machine, StateMachineStore};
use crate::Error;

pub(crate) const TREE_LOCAL: &str = "local";
pub(crate) const TREE_LOG: &str = "log";
pub(crate) const TREE_RAFT: &str = "raft";
pub(crate) const TREE_SNAPSHOT: &str = "snapshot";
pub(crate) const TREE_DOCUMENTS: &str = "ovf";

/// What a store holds when its whole log is applied: the last log id, and the state.
pub type Recovered<C, M> = (Option<openraft::LogId<<C as openraft::RaftTypeConfig>::NodeId>>, M);

/// A node's durable storage: one sled database under `dir/db`.
///
/// Cloning is cheap and shares the database. sled locks the directory, so every clone, log store
/// and state machine store must be dropped before the same directory can be opened again.
#[derive(Debug, Clone)]
pub struct Store {
    pub(crate) db: sled::Db,
    pub(crate) disk: Disk,
    pub(crate) format: WriteFormat,
}

/// How a store is opened.
#[derive(Debug, Clone, Copy)]
pub struct Options {
    /// Bounds sled's page cache, which dominates the idle memory of a node.
    pub cache_bytes: u64,
    /// `fdatasync` the database file after every flush (the default). Off only for measuring
    /// what the sync costs and for the power-loss test's negative control: a store opened
    /// without it loses acknowledged writes when the machine loses power.
    pub sync: bool,
}

impl Options {
    pub fn new(cache_bytes: u64) -> Options {
        Options { cache_bytes, sync: true }
    }
}

/// The format version this node writes its stored values and Raft messages in: the cluster
/// level of the state it has applied (raised by `cluster upgrade`), shared by the log store,
/// the state machine store and the network.
#[derive(Debug, Clone)]
pub struct WriteFormat(Arc<AtomicU8>);

impl WriteFormat {
    pub fn new(format: u8) -> WriteFormat {
        WriteFormat(Arc::new(AtomicU8::new(format)))
    }

    pub fn get(&self) -> u8 {
        self.0.load(Ordering::Acquire)
    }

    /// Sets it; the state machine does after every apply, and a joining node to what the
    /// cluster it joins speaks, before it has any of its state.
    pub fn set(&self, format: u8) {
        let before = self.0.swap(format, Ordering::AcqRel);
        if before != format {
            tracing::info!(
                from = before,
                to = format,
                "stored values and Raft messages now written in format v{format}"
            );
        }
    }
}

/// Makes sled's writes durable: sled 0.34's `flush` ends in `sync_file_range`, which neither
/// commits the file's size nor flushes the disk's write cache (sled issue 1452), so the
/// database file is `fdatasync`ed after it.
#[derive(Debug, Clone)]
pub(crate) struct Disk {
    db: sled::Db,
    /// The database file and its blobs directory; `None` without the sync.
    file: Option<Arc<File>>,
    blobs: Option<Arc<Blobs>>,
    mark: Option<Arc<Mark>>,
}

/// sled keeps a value larger than a quarter of a segment (128 KiB: a snapshot of a real
/// cluster, a large batch) in a file of its own under `db/blobs/`, which it never syncs, and
/// which the synced database file points to: each new blob file, and the directory, is synced.
#[derive(Debug)]
pub(crate) struct Blobs {
    dir: std::path::PathBuf,
    synced: Mutex<std::collections::HashSet<std::ffi::OsString>>,
}

impl Blobs {
    fn sync(&self) -> Result<(), Error> {
        let Ok(entries) = std::fs::read_dir(&self.dir) else { return Ok(()) };
        let mut synced = self.synced.lock().unwrap_or_else(PoisonError::into_inner);
        let mut seen = std::collections::HashSet::new();
        let mut new = false;
        for entry in entries.flatten() {
            let name = entry.file_name();
            if !synced.contains(&name) {
                File::open(entry.path()).and_then(|f| f.sync_all()).map_err(Error::Sync)?;
                new = true;
            }
            seen.insert(name);
        }
        if new {
            File::open(&self.dir).and_then(|d| d.sync_all()).map_err(Error::Sync)?;
        }
        *synced = seen;
        Ok(())
    }
}

impl Disk {
    pub(crate) fn flush(&self) -> Result<(), Error> {
        self.db.flush()?;
        if let Some(blobs) = &self.blobs {
            blobs.sync()?;
        }
        if let Some(file) = &self.file {
            file.sync_data().map_err(Error::Sync)?;
        }
        Ok(())
    }

    /// Records that the log (or a snapshot) is durable up to `index` (see [`Mark`]), unless
    /// the log was truncated since `generation` was read. Without the sync there is no mark.
    pub(crate) fn mark(&self, index: u64, generation: u64) {
        if let Some(m) = &self.mark {
            m.raise(index, generation);
        }
    }

    /// The mark's generation, read before a flush whose result [`Disk::mark`] records.
    pub(crate) fn generation(&self) -> u64 {
        self.mark.as_ref().map_or(0, |m| m.generation())
    }

    /// Records, synced and before the log is cut, that it is about to end at `index`.
    pub(crate) fn mark_back(&self, index: u64) -> Result<(), Error> {
        match &self.mark {
            Some(m) => m.lower(index),
            None => Ok(()),
        }
    }
}

/// How far this node's log was durable, kept beside sled's files (`db/corral.mark`): sled 0.34
/// takes a damaged region of its file for the torn end of its log and silently drops
/// everything after it, which would make a voter forget entries it acknowledged. A store whose
/// log ends before its mark is damaged. The mark is written after the sync it vouches for and
/// is itself not synced: after a power loss it can only be older than the data, never newer.
#[derive(Debug)]
pub(crate) struct Mark {
    /// The file, the index last written to it, and the generation: how many times the log was
    /// cut back (a flush that began before a cut must not raise the mark after it).
    file: Mutex<(Option<File>, u64, u64)>,
}

const MARK_FILE: &str = "corral.mark";

impl Mark {
    fn open(db_dir: &Path) -> (Mark, Option<u64>) {
        let path = db_dir.join(MARK_FILE);
        let old = std::fs::read(&path).ok().and_then(|b| Mark::parse(&b));
        let file = File::options().create(true).write(true).truncate(false).open(&path).ok();
        (Mark { file: Mutex::new((file, old.unwrap_or(0), 0)) }, old)
    }

    fn generation(&self) -> u64 {
        self.file.lock().unwrap_or_else(PoisonError::into_inner).2
    }

    fn raise(&self, index: u64, generation: u64) {
        let mut guard = self.file.lock().unwrap_or_else(PoisonError::into_inner);
        if index <= guard.1 || generation != guard.2 {
            return;
        }
        guard.1 = index;
        if let Some(f) = guard.0.as_ref() {
            if let Err(e) = Mark::put(f, index) {
                tracing::warn!("cannot record how far the log is durable: {e}");
            }
        }
    }

    /// Lowered marks are synced: an older mark on disk would be a higher one.
    fn lower(&self, index: u64) -> Result<(), Error> {
        let mut guard = self.file.lock().unwrap_or_else(PoisonError::into_inner);
        guard.2 += 1;
        if index >= guard.1 {
            return Ok(());
        }
        guard.1 = index;
        if let Some(f) = guard.0.as_ref() {
            Mark::put(f, index).and_then(|()| f.sync_data()).map_err(Error::Sync)?;
        }
        Ok(())
    }

    fn put(f: &File, index: u64) -> std::io::Result<()> {
        use std::os::unix::fs::FileExt;
        let mut record = [0u8; 16];
        record[..8].copy_from_slice(&index.to_be_bytes());
        record[8..].copy_from_slice(&(!index.rotate_left(17)).to_be_bytes());
        f.write_all_at(&record, 0)
    }

    /// The index and its check: a torn or foreign record reads as no mark.
    fn parse(b: &[u8]) -> Option<u64> {
        let index = u64::from_be_bytes(b.get(..8)?.try_into().ok()?);
        let check = u64::from_be_bytes(b.get(8..16)?.try_into().ok()?);
        (check == !index.rotate_left(17)).then_some(index)
    }
}

impl Store {
    /// Opens (creating) the database in `dir.join("db")` with the default options.
    pub fn open(dir: &Path, cache_bytes: u64) -> Result<Store, Error> {
        Store::open_with(dir, Options::new(cache_bytes))
    }

    /// Opens (creating) the database in `dir.join("db")`.
    ///
    /// A damaged database is an error, never a panic: sled 0.34 panics on some damaged files
    /// (a truncated one, for instance) while it recovers them, and that panic is caught here and
    /// turned into [`Error::Damaged`].
    pub fn open_with(dir: &Path, options: Options) -> Result<Store, Error> {
        let path = dir.join("db");
        let config = sled::Config::new().path(&path).cache_capacity(options.cache_bytes);
        let db = match quietly(std::panic::AssertUnwindSafe(move || config.open())) {
            Ok(Ok(db)) => db,
            Ok(Err(sled::Error::Corruption { at, .. })) => {
                let at = at.map_or_else(|| "an unknown offset".to_string(), |at| format!("{at:?}"));
                return Err(Error::Damaged { path, detail: format!("sled read corrupted data at {at}") });
            }
            Ok(Err(source)) => return Err(Error::Open { path, source }),
            Err(detail) => return Err(Error::Damaged { path, detail }),
        };
        let (mark, marked) = Mark::open(&path);
        if let Some(marked) = marked.filter(|_| options.sync) {
            let last = last_log_index(&db)?;
            if last < marked {
                return Err(Error::Damaged {
                    path,
                    detail: format!(
                        "its log ends at index {last} but it had made entries up to {marked} durable: part of \
                         the file is damaged or lost"
                    ),
                });
            }
        }
        let file = if options.sync {
            // sled keeps its data in the one file `db` (and `conf`, written once at creation):
            // sync the directory now, so that the files themselves survive a power loss too.
            let file = File::open(path.join("db")).map_err(Error::Sync)?;
            File::open(&path).and_then(|d| d.sync_all()).map_err(Error::Sync)?;
            Some(Arc::new(file))
        } else {
            tracing::warn!("the store is opened without fdatasync: a power loss can lose acknowledged writes");
            None
        };
        let blobs =
            file.as_ref().map(|_| Arc::new(Blobs { dir: path.join("blobs"), synced: Mutex::new(Default::default()) }));
        let mark = file.as_ref().map(|_| Arc::new(mark));
        let disk = Disk { db: db.clone(), file, blobs, mark };
        Ok(Store { disk, db, format: WriteFormat::new(crate::codec::CURRENT) })
    }

    /// The format this node writes in; follows the cluster level of the applied state.
    pub fn write_format(&self) -> WriteFormat {
        self.format.clone()
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
        self.disk.flush()
    }

    /// The raft log and vote store. Every call returns a view of the same trees.
    pub fn log_store<C>(&self) -> Result<LogStore<C>, Error>
    where
        C: crate::LegacyFormat,
    {
        LogStore::open(self)
    }

    /// The state machine store, starting from the persisted snapshot if there is one.
    ///
    /// Each call builds a separate in-memory state machine, so a node should call it once.
    pub fn state_machine<C, M>(&self) -> Result<StateMachineStore<C, M>, Error>
    where
        C: crate::LegacyFormat,
        M: Machine<C>,
    {
        StateMachineStore::open(self)
    }

    /// The state this store holds, as far as its log goes: the snapshot, with every entry of
    /// the log after it applied, committed or not (for `--force-new-cluster`: a lone survivor
    /// keeps everything it has).
    pub fn recovered_state<C, M>(&self) -> Result<Recovered<C, M>, Error>
    where
        C: crate::LegacyFormat<Entry = openraft::Entry<C>>,
        C::Entry: serde::de::DeserializeOwned,
        M: Machine<C>,
    {
        let snapshots = self.db.open_tree(TREE_SNAPSHOT)?;
        let (mut last, mut machine) = match snapshots.get(crate::state_machine::KEY_DATA)? {
            Some(stored) => {
                let data = crate::compress::unpack_value(&stored)?;
                let ((last, _), machine) = crate::state_machine::decode_snapshot_data::<C, M>(&data)?;
                (last, machine)
            }
            None => (None, M::default()),
        };
        let after = last.as_ref().map_or(0, |l| l.index + 1);
        for item in self.db.open_tree(TREE_LOG)?.range(after.to_be_bytes()..) {
            let (_, v) = item?;
            let entry: openraft::Entry<C> = crate::legacy::decode_entry::<C>(&v)?;
            if let openraft::EntryPayload::Normal(data) = &entry.payload {
                machine.apply(&entry.log_id, data);
            }
            last = Some(entry.log_id);
        }
        Ok((last, machine))
    }

    /// Replaces everything Raft knows with a one-member start: `machine` as a snapshot at
    /// `last`, an empty log purged up to it, `membership`, and `vote`. What `--restore` and
    /// `--force-new-cluster` start from; the node then elects itself.
    pub fn start_over<C, M>(
        &self,
        machine: M,
        last: openraft::LogId<C::NodeId>,
        membership: openraft::StoredMembership<C::NodeId, C::Node>,
        vote: openraft::Vote<C::NodeId>,
    ) -> Result<(), Error>
    where
        C: crate::LegacyFormat,
        M: Machine<C>,
    {
        let format = machine.format().unwrap_or(self.format.get());
        let docs = machine.all_documents();
        let data = crate::state_machine::encode_snapshot_data::<C, M>(
            (Some(last.clone()), membership.clone()),
            machine,
            format,
        )?;
        let meta = openraft::SnapshotMeta {
            last_log_id: Some(last.clone()),
            last_membership: membership,
            snapshot_id: format!("start-over-{}-{}", last.index, self.db.generate_id()?),
        };
        for tree in [TREE_LOG, TREE_RAFT, TREE_SNAPSHOT, TREE_DOCUMENTS] {
            self.db.open_tree(tree)?.clear()?;
        }
        let snapshots = self.db.open_tree(TREE_SNAPSHOT)?;
        let mut batch = sled::Batch::default();
        batch.insert(crate::state_machine::KEY_META, crate::legacy::encode_at(&meta, format, C::meta_to_v0)?);
        batch.insert(crate::state_machine::KEY_DATA, crate::compress::pack_value(&data)?);
        snapshots.apply_batch(batch)?;
        let raft = self.db.open_tree(TREE_RAFT)?;
        raft.insert(crate::log_store::KEY_LAST_PURGED, crate::codec::encode_plain(&last, format)?)?;
        raft.insert(crate::log_store::KEY_VOTE, crate::codec::encode_plain(&vote, format)?)?;
        let documents = self.db.open_tree(TREE_DOCUMENTS)?;
        let mut batch = sled::Batch::default();
        let mut z = crate::compress::Zstd::for_documents();
        for (key, doc) in docs {
            batch.insert(key.as_bytes(), crate::documents::write(&doc, format, &mut z)?);
        }
        documents.apply_batch(batch)?;
        self.disk.mark_back(last.index)?;
        self.disk.flush()?;
        let generation = self.disk.generation();
        self.disk.mark(last.index, generation);
        Ok(())
    }

    /// Whether the store holds anything of Raft's (a vote, a log entry, a snapshot).
    pub fn has_raft_state(&self) -> Result<bool, Error> {
        Ok(!self.db.open_tree(TREE_RAFT)?.is_empty()
            || !self.db.open_tree(TREE_LOG)?.is_empty()
            || !self.db.open_tree(TREE_SNAPSHOT)?.is_empty())
    }

    /// The state machine's documents (the OVF store), by key; readable with no quorum.
    pub fn documents(&self) -> Result<Vec<(String, Vec<u8>)>, Error> {
        let tree = self.db.open_tree(TREE_DOCUMENTS)?;
        let mut z = crate::compress::Zstd::default();
        tree.iter()
            .map(|item| {
                let (k, v) = item?;
                Ok((String::from_utf8_lossy(&k).into_owned(), crate::documents::read(&v, &mut z)?))
            })
            .collect()
    }

    /// How many documents the tree holds (counts keys; reads no document).
    pub fn document_count(&self) -> Result<usize, Error> {
        Ok(self.db.open_tree(TREE_DOCUMENTS)?.len())
    }

    /// One document of the state machine's document tree.
    pub fn document(&self, key: &str) -> Result<Option<Vec<u8>>, Error> {
        let tree = self.db.open_tree(TREE_DOCUMENTS)?;
        Ok(match tree.get(key)? {
            Some(v) => Some(crate::documents::read(&v, &mut crate::compress::Zstd::default())?),
            None => None,
        })
    }

    /// Makes every write so far durable.
    pub fn flush(&self) -> Result<(), Error> {
        self.disk.flush()
    }

    /// The bytes the database occupies on disk, for watching sled's growth.
    pub fn size_on_disk(&self) -> Result<u64, Error> {
        Ok(self.db.size_on_disk()?)
    }
}

/// Flushes (and syncs) without blocking the async runtime.
///
/// sled 0.34's own `flush_async` can miss its wake-up and hang when several flushes overlap
/// (sled issues 1241, 1308; fixed only on sled's unreleased main), so the blocking flush runs on
/// tokio's blocking pool instead.
pub(crate) async fn flush(disk: &Disk) -> Result<(), Error> {
    let disk = disk.clone();
    tokio::task::spawn_blocking(move || disk.flush()).await.map_err(Error::FlushTask)?
}

/// The index of the last entry the log holds, or that it purged behind a snapshot (0: none).
fn last_log_index(db: &sled::Db) -> Result<u64, Error> {
    let last = match db.open_tree(TREE_LOG)?.last()? {
        Some((k, _)) => u64::from_be_bytes(k.as_ref().try_into().map_err(|_| Error::BadLogKey { len: k.len() })?),
        None => 0,
    };
    // Every type config of this workspace numbers its nodes with u64.
    let purged = match db.open_tree(TREE_RAFT)?.get(crate::log_store::KEY_LAST_PURGED)? {
        Some(b) => crate::codec::decode_plain::<openraft::LogId<u64>>(&b)?.index,
        None => 0,
    };
    let snapshot = match db.open_tree(TREE_SNAPSHOT)?.get(crate::state_machine::KEY_META)? {
        Some(b) => snapshot_index(&b)?,
        None => 0,
    };
    Ok(last.max(purged).max(snapshot))
}

/// The last log index a stored snapshot's metadata covers, read without its node type: in
/// v0 its first field, in later formats its field by name.
fn snapshot_index(b: &[u8]) -> Result<u64, Error> {
    #[derive(serde::Deserialize)]
    struct Meta {
        last_log_id: Option<openraft::LogId<u64>>,
    }
    let last = match crate::codec::split(b)? {
        (0, payload) => {
            let (last, _): (Option<openraft::LogId<u64>>, usize) =
                bincode::serde::decode_from_slice(payload, bincode::config::standard())
                    .map_err(crate::codec::CodecError::DecodeV0)?;
            last
        }
        (version, payload) => {
            // Unknown fields are skipped: only the first one is wanted.
            let mut rest = payload;
            let meta: Meta = serde::Deserialize::deserialize(&mut rmp_serde::Deserializer::new(&mut rest))
                .map_err(|source| crate::codec::CodecError::Decode { version, source })?;
            meta.last_log_id
        }
    };
    Ok(last.map_or(0, |l| l.index))
}

/// Runs `f`, turning a panic into its message, with the default panic hook silenced meanwhile
/// so that a damaged file prints one error line rather than a panic report and backtrace.
fn quietly<T>(f: impl FnOnce() -> T + std::panic::UnwindSafe) -> Result<T, String> {
    static HOOK: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let _one_at_a_time = HOOK.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    let hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(|_| {}));
    let result = std::panic::catch_unwind(f);
    std::panic::set_hook(hook);
    result.map_err(|panic| {
        panic
            .downcast_ref::<String>()
            .cloned()
            .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
            .unwrap_or_else(|| "sled panicked while opening it".into())
    })
}
