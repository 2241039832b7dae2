//! openraft's log storage on sled: log entries in tree "log" (big-endian index keys, so sled's
//! order is log order) and vote, committed and last-purged log ids in tree "raft".
//! It must never report an append as flushed, or return from `save_vote`, before the data is on
//! disk, and must never leave a hole in the log.

use std::fmt::Debug;
use std::io;
use std::ops::{Bound, RangeBounds};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::Sender;
use std::sync::Arc;

use openraft::storage::{LogFlushed, RaftLogStorage};
use openraft::{
    AnyError, LogId, LogState, OptionalSend, RaftLogId, RaftLogReader, RaftTypeConfig, StorageError, StorageIOError,
    Vote,
};
use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::error::{error_chain, sto};
use crate::legacy::{self, LegacyFormat};
use crate::store::{flush, Disk, Store, WriteFormat, TREE_LOG, TREE_RAFT};
use crate::{codec, Error};

pub(crate) const KEY_VOTE: &str = "vote";
const KEY_COMMITTED: &str = "committed";
pub(crate) const KEY_LAST_PURGED: &str = "last_purged_log_id";

/// The raft log and vote, persisted in sled. Clones share the same trees, which is how
/// `get_log_reader` hands replication tasks their own reader.
pub struct LogStore<C: RaftTypeConfig> {
    disk: Disk,
    log: sled::Tree,
    raft: sled::Tree,
    flusher: Arc<Sender<LogFlushed<C>>>,
    format: WriteFormat,
    /// The index of the last entry written to sled (durable once the flusher has flushed).
    written: Arc<AtomicU64>,
}

impl<C: RaftTypeConfig> Clone for LogStore<C> {
    fn clone(&self) -> Self {
        Self {
            disk: self.disk.clone(),
            log: self.log.clone(),
            raft: self.raft.clone(),
            flusher: self.flusher.clone(),
            format: self.format.clone(),
            written: self.written.clone(),
        }
    }
}

/// Group commit: appends are written to sled at once and their callbacks queued here; one
/// thread flushes and then completes every callback queued before that flush began, in queue
/// (that is, append) order. openraft issues one append per client write and waits for each
/// `append` call to return, so flushing inside `append` would serialize one fsync per write.
/// The flush includes the `fdatasync` ([`Disk::flush`]): one sync per batch.
fn spawn_flusher<C: RaftTypeConfig>(disk: Disk, written: Arc<AtomicU64>) -> Result<Sender<LogFlushed<C>>, Error> {
    let (tx, rx) = std::sync::mpsc::channel::<LogFlushed<C>>();
    std::thread::Builder::new()
        .name("corral-log-flush".into())
        .spawn(move || {
            // Ends when the last LogStore clone (and so the last sender) is dropped.
            while let Ok(first) = rx.recv() {
                let mut waiting = vec![first];
                waiting.extend(rx.try_iter());
                // Read before the flush: every entry up to it was written before the flush began.
                // A truncation meanwhile bumps the generation, and this flush then marks nothing.
                let generation = disk.generation();
                let upto = written.load(Ordering::Acquire);
                let result = disk.flush().map_err(|e| error_chain(&e));
                if result.is_ok() {
                    disk.mark(upto, generation);
                }
                for callback in waiting {
                    callback.log_io_completed(result.clone().map_err(io::Error::other));
                }
            }
        })
        .map_err(Error::FlushThread)?;
    Ok(tx)
}

impl<C: RaftTypeConfig> Debug for LogStore<C> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LogStore").finish_non_exhaustive()
    }
}

fn log_key(index: u64) -> [u8; 8] {
    index.to_be_bytes()
}

impl<C> LogStore<C>
where
    C: RaftTypeConfig,
{
    pub(crate) fn open(store: &Store) -> Result<Self, Error> {
        let log = store.db.open_tree(TREE_LOG)?;
        let last = match log.last()? {
            Some((k, _)) => u64::from_be_bytes(k.as_ref().try_into().map_err(|_| Error::BadLogKey { len: k.len() })?),
            None => 0,
        };
        let written = Arc::new(AtomicU64::new(last));
        Ok(Self {
            disk: store.disk.clone(),
            log,
            raft: store.db.open_tree(TREE_RAFT)?,
            flusher: Arc::new(spawn_flusher::<C>(store.disk.clone(), written.clone())?),
            format: store.format.clone(),
            written,
        })
    }

    // Votes and log ids have one shape in every format (openraft's own types).
    fn get_meta<T: DeserializeOwned>(&self, key: &str) -> Result<Option<T>, Error> {
        match self.raft.get(key)? {
            Some(b) => Ok(Some(codec::decode_plain(&b)?)),
            None => Ok(None),
        }
    }

    fn set_meta<T: Serialize>(&self, key: &str, value: &T) -> Result<(), Error> {
        self.raft.insert(key, codec::encode_plain(value, self.format.get())?)?;
        Ok(())
    }

    /// Removes every entry whose key is in `range`, atomically so a crash cannot leave a hole.
    fn remove_range(&self, range: impl RangeBounds<[u8; 8]>) -> Result<(), Error> {
        let mut batch = sled::Batch::default();
        for key in self.log.range(range).keys() {
            batch.remove(key?);
        }
        self.log.apply_batch(batch)?;
        Ok(())
    }
}

impl<C> LogStore<C>
where
    C: LegacyFormat,
    C::Entry: Serialize + DeserializeOwned,
{
    fn entries(&self, range: impl RangeBounds<u64>) -> Result<Vec<C::Entry>, Error> {
        let start = match range.start_bound() {
            Bound::Included(&s) => s,
            Bound::Excluded(&s) => match s.checked_add(1) {
                Some(s) => s,
                None => return Ok(Vec::new()),
            },
            Bound::Unbounded => 0,
        };
        let end = match range.end_bound() {
            Bound::Included(&e) if e < start => return Ok(Vec::new()),
            Bound::Excluded(&e) if e <= start => return Ok(Vec::new()),
            Bound::Included(&e) => Bound::Included(log_key(e)),
            Bound::Excluded(&e) => Bound::Excluded(log_key(e)),
            Bound::Unbounded => Bound::Unbounded,
        };
        self.log
            .range((Bound::Included(log_key(start)), end))
            .values()
            .map(|v| Ok(legacy::decode_entry::<C>(&v?)?))
            .collect()
    }

    fn last_log_id(&self) -> Result<Option<LogId<C::NodeId>>, Error> {
        match self.log.last()? {
            Some((key, value)) => {
                if key.len() != 8 {
                    return Err(Error::BadLogKey { len: key.len() });
                }
                let entry: C::Entry = legacy::decode_entry::<C>(&value)?;
                Ok(Some(entry.get_log_id().clone()))
            }
            None => Ok(None),
        }
    }

    fn log_state(&self) -> Result<LogState<C>, Error> {
        let last_purged_log_id = self.get_meta::<LogId<C::NodeId>>(KEY_LAST_PURGED)?;
        let last_log_id = self.last_log_id()?.or_else(|| last_purged_log_id.clone());
        Ok(LogState { last_purged_log_id, last_log_id })
    }

    fn write_entries(&self, entries: impl IntoIterator<Item = C::Entry>) -> Result<(), Error> {
        let mut batch = sled::Batch::default();
        let format = self.format.get();
        let mut last = None;
        for entry in entries {
            let index = entry.get_log_id().index;
            batch.insert(&log_key(index), legacy::encode_entry::<C>(&entry, format)?);
            last = Some(index);
        }
        self.log.apply_batch(batch)?;
        if let Some(last) = last {
            self.written.store(last, Ordering::Release);
        }
        Ok(())
    }
}

impl<C> RaftLogReader<C> for LogStore<C>
where
    C: LegacyFormat,
    C::Entry: Serialize + DeserializeOwned,
{
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + OptionalSend>(
        &mut self,
        range: RB,
    ) -> Result<Vec<C::Entry>, StorageError<C::NodeId>> {
        self.entries(range).map_err(sto(StorageIOError::read_logs))
    }
}

impl<C> RaftLogStorage<C> for LogStore<C>
where
    C: LegacyFormat,
    C::Entry: Serialize + DeserializeOwned,
{
    type LogReader = Self;

    async fn get_log_state(&mut self) -> Result<LogState<C>, StorageError<C::NodeId>> {
        self.log_state().map_err(sto(StorageIOError::read_logs))
    }

    async fn get_log_reader(&mut self) -> Self::LogReader {
        self.clone()
    }

    async fn save_vote(&mut self, vote: &Vote<C::NodeId>) -> Result<(), StorageError<C::NodeId>> {
        let res = match self.set_meta(KEY_VOTE, vote) {
            Ok(()) => flush(&self.disk).await,
            Err(e) => Err(e),
        };
        res.map_err(sto(StorageIOError::write_vote))
    }

    async fn read_vote(&mut self) -> Result<Option<Vote<C::NodeId>>, StorageError<C::NodeId>> {
        self.get_meta(KEY_VOTE).map_err(sto(StorageIOError::read_vote))
    }

    // Not flushed: a committed id that is older after a crash only means re-applying less on
    // restart, and sled's periodic flush writes it in order with the entries it covers.
    async fn save_committed(&mut self, committed: Option<LogId<C::NodeId>>) -> Result<(), StorageError<C::NodeId>> {
        let res = match committed {
            Some(id) => self.set_meta(KEY_COMMITTED, &id),
            None => self.raft.remove(KEY_COMMITTED).map(|_| ()).map_err(Error::from),
        };
        res.map_err(sto(StorageIOError::write))
    }

    async fn read_committed(&mut self) -> Result<Option<LogId<C::NodeId>>, StorageError<C::NodeId>> {
        self.get_meta(KEY_COMMITTED).map_err(sto(StorageIOError::read))
    }

    async fn append<I>(&mut self, entries: I, callback: LogFlushed<C>) -> Result<(), StorageError<C::NodeId>>
    where
        I: IntoIterator<Item = C::Entry> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        self.write_entries(entries).map_err(sto(StorageIOError::write_logs))?;
        // The entries count as durable only once the flusher has flushed them.
        self.flusher.send(callback).map_err(|_| {
            StorageError::from(StorageIOError::write_logs(AnyError::error("the log flush thread has stopped")))
        })
    }

    async fn truncate(&mut self, log_id: LogId<C::NodeId>) -> Result<(), StorageError<C::NodeId>> {
        tracing::debug!(%log_id, "truncating raft log");
        // The mark goes back first (synced), so the shorter log is never taken for damage;
        // flushed after, so that conflicting entries cannot reappear after a crash.
        let kept = log_id.index.saturating_sub(1);
        let res = match self.disk.mark_back(kept).and_then(|()| self.remove_range(log_key(log_id.index)..)) {
            Ok(()) => {
                self.written.store(kept, Ordering::Release);
                flush(&self.disk).await
            }
            Err(e) => Err(e),
        };
        res.map_err(sto(StorageIOError::write_logs))
    }

    async fn purge(&mut self, log_id: LogId<C::NodeId>) -> Result<(), StorageError<C::NodeId>> {
        tracing::debug!(%log_id, "purging raft log");
        // The marker goes first: if a crash interrupts the removal, the log merely keeps some
        // purged entries, whereas entries gone without the marker would look like a hole.
        let res = self.set_meta(KEY_LAST_PURGED, &log_id).and_then(|()| self.remove_range(..=log_key(log_id.index)));
        let res = match res {
            Ok(()) => flush(&self.disk).await,
            Err(e) => Err(e),
        };
        res.map_err(sto(StorageIOError::write_logs))
    }
}
