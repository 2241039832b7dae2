//! Golden fixtures: bytes of every stored and replicated kind as each released format wrote
//! them (`tests/golden/v0/`: release 3f21f51's positional bincode), decoded by this build.
//! `CORRAL_WRITE_GOLDEN=v0 cargo test -p corral-raft --test golden write` rewrites the v0 files;
//! run it only on the release that defines the format.

#[path = "golden/samples.rs"]
mod samples;

use std::path::PathBuf;

use corral_raft::typ::{AppendEntriesRequest, InstallSnapshotRequest, VoteRequest, VoteResponse};
use openraft::SnapshotMeta;

fn dir(version: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/golden").join(version)
}

/// The release's own encoding of a value (format v0: bincode 2, standard configuration).
fn v0<T: serde::Serialize>(v: &T) -> Vec<u8> {
    bincode::serde::encode_to_vec(v, bincode::config::standard()).expect("encodes")
}

#[test]
fn write() {
    if std::env::var("CORRAL_WRITE_GOLDEN").as_deref() != Ok("v0") {
        return;
    }
    let d = dir("v0");
    std::fs::create_dir_all(&d).unwrap();
    let put = |name: &str, bytes: Vec<u8>| std::fs::write(d.join(name), bytes).unwrap();
    let (state, replies) = samples::state();
    // The snapshot data is the state machine store's (last_applied, last_membership, machine).
    put("snapshot-data.bin", v0(&(Some(samples::last_applied()), samples::stored_membership(), &state)));
    let meta = SnapshotMeta {
        last_log_id: Some(samples::last_applied()),
        last_membership: samples::stored_membership(),
        snapshot_id: "1-28-7".into(),
    };
    put("snapshot-meta.bin", v0(&meta));
    for (i, e) in samples::entries().iter().enumerate() {
        put(&format!("entry-{:02}.bin", i + 1), v0(e));
    }
    for (i, r) in replies.iter().enumerate() {
        put(&format!("reply-{:02}.bin", i + 1), v0(r));
    }
    put("vote.bin", v0(&samples::vote()));
    put("log-id.bin", v0(&samples::last_applied()));
    let append = AppendEntriesRequest {
        vote: samples::vote(),
        prev_log_id: Some(samples::log_id(1, 2)),
        entries: samples::entries()[2..6].to_vec(),
        leader_commit: Some(samples::log_id(1, 4)),
    };
    put("rpc-append.bin", v0(&append));
    put("rpc-vote.bin", v0(&VoteRequest { vote: samples::vote(), last_log_id: Some(samples::last_applied()) }));
    let vote_resp = VoteResponse { vote: samples::vote(), vote_granted: true, last_log_id: None };
    put("rpc-vote-response.bin", v0(&Ok::<_, corral_raft::typ::RaftError>(vote_resp)));
    let snap = InstallSnapshotRequest { vote: samples::vote(), meta, offset: 0, data: vec![1, 2, 3], done: true };
    put("rpc-snapshot.bin", v0(&snap));
    for (i, f) in samples::forwarded().iter().enumerate() {
        put(&format!("forward-{:02}.bin", i + 1), v0(f));
    }
    for (i, r) in samples::forward_results().iter().enumerate() {
        put(&format!("forward-result-{:02}.bin", i + 1), v0(r));
    }
}

#[test]
fn the_sample_commands_succeed() {
    let (state, replies) = samples::state();
    for (i, r) in replies.iter().enumerate() {
        assert!(r.0.is_ok(), "command {} refused: {:?}", i + 1, r);
    }
    assert_eq!(state.vms.len(), 4);
    assert_eq!(state.hosts.len(), 3);
}
