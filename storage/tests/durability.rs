//! Checks that what openraft was told is durable survives dropping and reopening the store, and
//! that the state machine comes back from its snapshot. Each test reopens the same directory, so
//! every handle onto the database must be dropped before reopening (sled locks the directory).

mod common;

use std::collections::BTreeMap;

use common::{add, blank, log_id, membership, open};
use corral_storage::Store;
use openraft::storage::{RaftLogStorage, RaftLogStorageExt, RaftStateMachine};
use openraft::{RaftLogReader, RaftSnapshotBuilder, Vote};
use tempfile::TempDir;

#[tokio::test]
async fn log_vote_and_committed_survive_reopen() {
    let dir = TempDir::new().unwrap();
    let entries = vec![blank(1, 1), membership(1, 2, &[1, 2, 3]), add(1, 3, "a", 5), add(2, 4, "b", 7)];
    {
        let (_store, mut logs, _sm) = open(dir.path());
        logs.blocking_append(entries.clone()).await.unwrap();
        logs.save_vote(&Vote::new_committed(2, 1)).await.unwrap();
        logs.save_committed(Some(log_id(2, 4))).await.unwrap();
    }

    let (_store, mut logs, _sm) = open(dir.path());
    assert_eq!(logs.read_vote().await.unwrap(), Some(Vote::new_committed(2, 1)));
    assert_eq!(logs.read_committed().await.unwrap(), Some(log_id(2, 4)));
    let state = logs.get_log_state().await.unwrap();
    assert_eq!(state.last_purged_log_id, None);
    assert_eq!(state.last_log_id, Some(log_id(2, 4)));
    assert_eq!(logs.try_get_log_entries(0..).await.unwrap(), entries);
    assert_eq!(logs.try_get_log_entries(2..=3).await.unwrap(), entries[1..3].to_vec());
}

#[tokio::test]
async fn truncate_survives_reopen() {
    let dir = TempDir::new().unwrap();
    {
        let (_store, mut logs, _sm) = open(dir.path());
        logs.blocking_append((1..=6).map(|i| blank(1, i))).await.unwrap();
        logs.truncate(log_id(1, 4)).await.unwrap();
        logs.blocking_append([blank(2, 4)]).await.unwrap();
    }
    let (_store, mut logs, _sm) = open(dir.path());
    let ids: Vec<_> = logs.try_get_log_entries(0..).await.unwrap().into_iter().map(|e| e.log_id).collect();
    assert_eq!(ids, vec![log_id(1, 1), log_id(1, 2), log_id(1, 3), log_id(2, 4)]);
}

#[tokio::test]
async fn purge_survives_reopen() {
    let dir = TempDir::new().unwrap();
    {
        let (_store, mut logs, _sm) = open(dir.path());
        logs.blocking_append((0..=10).map(|i| blank(1, i))).await.unwrap();
        logs.purge(log_id(1, 5)).await.unwrap();
    }
    {
        let (_store, mut logs, _sm) = open(dir.path());
        let state = logs.get_log_state().await.unwrap();
        assert_eq!(state.last_purged_log_id, Some(log_id(1, 5)));
        assert_eq!(state.last_log_id, Some(log_id(1, 10)));
        let first = logs.try_get_log_entries(0..).await.unwrap()[0].log_id;
        assert_eq!(first, log_id(1, 6));

        // Purging past the end leaves no entries; the purged id then stands for the last log id.
        logs.purge(log_id(1, 10)).await.unwrap();
    }
    let (_store, mut logs, _sm) = open(dir.path());
    let state = logs.get_log_state().await.unwrap();
    assert_eq!(state.last_purged_log_id, Some(log_id(1, 10)));
    assert_eq!(state.last_log_id, Some(log_id(1, 10)));
    assert!(logs.try_get_log_entries(0..).await.unwrap().is_empty());
}

#[tokio::test]
async fn state_machine_restarts_from_snapshot() {
    let dir = TempDir::new().unwrap();
    let built = {
        let (_store, _logs, mut sm) = open(dir.path());
        let replies =
            sm.apply([blank(1, 1), membership(1, 2, &[1, 2]), add(1, 3, "a", 2), add(1, 4, "a", 3)]).await.unwrap();
        assert_eq!(replies, vec![0, 0, 2, 5]);
        let snap = sm.get_snapshot_builder().await.build_snapshot().await.unwrap();
        // Applied after the snapshot: lost on restart, to be re-applied by openraft from the log.
        sm.apply([add(1, 5, "a", 100)]).await.unwrap();
        assert_eq!(sm.handle().read(|m| m.counts["a"]), 105);
        snap
    };
    assert_eq!(built.meta.last_log_id, Some(log_id(1, 4)));
    assert_eq!(built.meta.last_membership.log_id(), &Some(log_id(1, 2)));

    let (_store, _logs, mut sm) = open(dir.path());
    let (applied, membership) = sm.applied_state().await.unwrap();
    assert_eq!(applied, Some(log_id(1, 4)));
    assert_eq!(membership, built.meta.last_membership);
    let handle = sm.handle();
    assert_eq!(handle.last_applied(), Some(log_id(1, 4)));
    assert_eq!(handle.read(|m| m.counts.clone()), counts(&[("a", 5)]));
    assert_eq!(*handle.subscribe().borrow(), 4);

    let current = sm.get_current_snapshot().await.unwrap().unwrap();
    assert_eq!(current.meta, built.meta);
    assert_eq!(current.snapshot.into_inner(), built.snapshot.into_inner());
}

#[tokio::test]
async fn snapshot_ids_are_unique_across_restarts() {
    let dir = TempDir::new().unwrap();
    let first = {
        let (_store, _logs, mut sm) = open(dir.path());
        sm.apply([add(3, 7, "x", 1)]).await.unwrap();
        let a = sm.build_snapshot().await.unwrap().meta.snapshot_id;
        let b = sm.build_snapshot().await.unwrap().meta.snapshot_id;
        assert_ne!(a, b);
        assert!(a.starts_with("3-7-"), "{a}");
        b
    };
    let (_store, _logs, mut sm) = open(dir.path());
    let after = sm.build_snapshot().await.unwrap().meta.snapshot_id;
    assert_ne!(after, first);
}

#[tokio::test]
async fn install_snapshot_replaces_state_and_notifies() {
    let leader_dir = TempDir::new().unwrap();
    let follower_dir = TempDir::new().unwrap();

    let (_ls, _ll, mut leader) = open(leader_dir.path());
    leader.apply([membership(1, 1, &[1]), add(1, 2, "k", 9)]).await.unwrap();
    let snap = leader.build_snapshot().await.unwrap();

    {
        let (_fs, _fl, mut follower) = open(follower_dir.path());
        follower.apply([add(1, 1, "stale", 1)]).await.unwrap();
        let handle = follower.handle();
        let mut applied = handle.subscribe();
        assert_eq!(*applied.borrow_and_update(), 1);

        let mut incoming = follower.begin_receiving_snapshot().await.unwrap();
        *incoming = *snap.snapshot.clone();
        follower.install_snapshot(&snap.meta, incoming).await.unwrap();

        assert!(applied.has_changed().unwrap());
        assert_eq!(*applied.borrow_and_update(), 2);
        assert_eq!(handle.read(|m| m.counts.clone()), counts(&[("k", 9)]));
        let current = follower.get_current_snapshot().await.unwrap().unwrap();
        assert_eq!(current.meta, snap.meta);
    }

    // The installed snapshot is what a restarted follower starts from.
    let (_fs, _fl, mut follower) = open(follower_dir.path());
    assert_eq!(follower.applied_state().await.unwrap().0, Some(log_id(1, 2)));
    assert_eq!(follower.handle().read(|m| m.counts.clone()), counts(&[("k", 9)]));
}

#[tokio::test]
async fn apply_notifies_subscribers() {
    let dir = TempDir::new().unwrap();
    let (_store, _logs, mut sm) = open(dir.path());
    let handle = sm.handle();
    let mut rx = handle.subscribe();
    assert_eq!(*rx.borrow(), 0);
    assert_eq!(handle.last_applied(), None);

    let waiter = tokio::spawn(async move { rx.wait_for(|i| *i >= 3).await.map(|i| *i).unwrap() });
    sm.apply([blank(1, 1), add(1, 2, "a", 1), add(1, 3, "a", 1)]).await.unwrap();
    assert_eq!(waiter.await.unwrap(), 3);
    assert_eq!(handle.last_applied(), Some(log_id(1, 3)));
    assert_eq!(handle.read(|m| m.counts["a"]), 2);
}

#[test]
fn local_facts_survive_reopen() {
    let dir = TempDir::new().unwrap();
    {
        let store = Store::open(dir.path(), common::CACHE).unwrap();
        assert_eq!(store.get_local("node_id").unwrap(), None);
        store.set_local("node_id", &7u64.to_be_bytes()).unwrap();
        store.set_local("cluster_name", b"lab").unwrap();
        store.flush().unwrap();
        assert!(store.size_on_disk().unwrap() > 0);
    }
    let store = common::open_store(dir.path());
    assert_eq!(store.get_local("node_id").unwrap(), Some(7u64.to_be_bytes().to_vec()));
    assert_eq!(store.get_local("cluster_name").unwrap(), Some(b"lab".to_vec()));
}

#[test]
fn open_reports_a_locked_directory() {
    let dir = TempDir::new().unwrap();
    let _held = Store::open(dir.path(), common::CACHE).unwrap();
    let err = Store::open(dir.path(), common::CACHE).unwrap_err();
    assert!(matches!(err, corral_storage::Error::Open { .. }), "{err:?}");
}

fn counts(pairs: &[(&str, u64)]) -> BTreeMap<String, u64> {
    pairs.iter().map(|(k, v)| (k.to_string(), *v)).collect()
}

// Other crates move these into tasks and share them between handlers.
#[test]
fn handles_are_send_sync_clone() {
    fn check<T: Send + Sync + Clone + 'static>() {}
    check::<Store>();
    check::<common::Logs>();
    check::<common::Sm>();
    check::<corral_storage::StateHandle<common::TestConfig, common::Counters>>();
}

/// A value of a newer format than this build reads is refused with both versions named, and
/// the whole cause chain reaches the error openraft gets (and so corrald's last line).
#[tokio::test]
async fn a_newer_format_is_refused_naming_both_versions_through_the_whole_chain() {
    let dir = TempDir::new().unwrap();
    {
        let (_store, mut logs, _sm) = open(dir.path());
        logs.blocking_append(vec![blank(1, 1)]).await.unwrap();
    }
    {
        // A later build's vote: the header names format v9. sled's own threads may hold the
        // directory's lock a moment after the store above went: a bounded retry, as open_store.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        let db = loop {
            match sled::open(dir.path().join("db")) {
                Ok(db) => break db,
                Err(_) if std::time::Instant::now() < deadline => {
                    std::thread::sleep(std::time::Duration::from_millis(10))
                }
                Err(e) => panic!("cannot open sled: {e}"),
            }
        };
        let raft = db.open_tree("raft").unwrap();
        raft.insert("vote", vec![corral_storage::codec::MARK, 9, 0x90]).unwrap();
        db.flush().unwrap();
    }
    let (_store, mut logs, _sm) = open(dir.path());
    let err = logs.read_vote().await.unwrap_err().to_string();
    let want = format!(
        "the value is in format v9, newer than v{}, the newest this build of Corral reads: upgrade this node",
        corral_storage::codec::CURRENT
    );
    assert!(err.contains("a stored value could not be read or written"), "{err}");
    assert!(err.contains(&want), "{err}");
}
