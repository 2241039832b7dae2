//! Golden fixtures: bytes of every stored and replicated kind as each format wrote them
//! (`tests/golden/v0/`: release 3f21f51's positional bincode, written by that release itself;
//! `tests/golden/v1/`: this build's format), decoded by this build and compared with the values
//! that wrote them. `CORRAL_WRITE_GOLDEN=v0 cargo test -p corral-raft --test golden write` wrote
//! the v0 files on release 3f21f51; `CORRAL_WRITE_GOLDEN=v1 ...` writes the v1 files. Never
//! rewrite a released version's files: they are what old data dirs and old nodes hold.
//! `tests/golden/strings/` holds commands whose strings later became types, as the build before
//! that change wrote them (in v0 and v1).

#[path = "golden/samples.rs"]
mod samples;

use std::path::PathBuf;

use corral_raft::forward::Forwarded;
use corral_raft::typ::{AppendEntriesRequest, Entry, InstallSnapshotRequest, VoteRequest, VoteResponse};
use corral_raft::{ClusterState, Command, Op, Reply, TypeConfig};
use corral_storage::{codec, legacy, LegacyFormat};
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
    match std::env::var("CORRAL_WRITE_GOLDEN").as_deref() {
        Ok("v0") => write_v0(),
        Ok("v1") => write_v1(),
        _ => {}
    }
}

fn write_v0() {
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

/// The same values in format v1, through this build's own encoders.
fn write_v1() {
    use corral_raft::format::wire;
    let d = dir("v1");
    std::fs::create_dir_all(&d).unwrap();
    let put = |name: &str, bytes: Vec<u8>| std::fs::write(d.join(name), bytes).unwrap();
    let (state, replies) = samples::state();
    let applied = (Some(samples::last_applied()), samples::stored_membership());
    put("snapshot-data.bin", corral_storage::encode_snapshot_data::<TypeConfig, _>(applied, state, 1).unwrap());
    put("snapshot-meta.bin", codec::encode(&meta()).unwrap());
    for (i, e) in samples::entries().iter().enumerate() {
        put(&format!("entry-{:02}.bin", i + 1), legacy::encode_entry::<TypeConfig>(e, 1).unwrap());
    }
    for (i, r) in replies.iter().enumerate() {
        put(&format!("reply-{:02}.bin", i + 1), codec::encode(r).unwrap());
    }
    put("vote.bin", codec::encode(&samples::vote()).unwrap());
    put("log-id.bin", codec::encode(&samples::last_applied()).unwrap());
    put("rpc-append.bin", wire::encode(&append(), 1).unwrap());
    put("rpc-vote.bin", wire::encode(&vote_request(), 1).unwrap());
    put("rpc-vote-response.bin", wire::encode(&vote_response(), 1).unwrap());
    put("rpc-snapshot.bin", wire::encode(&install(), 1).unwrap());
    for (i, f) in samples::forwarded().iter().enumerate() {
        put(&format!("forward-{:02}.bin", i + 1), wire::encode(f, 1).unwrap());
    }
    for (i, r) in samples::forward_results().iter().enumerate() {
        put(&format!("forward-result-{:02}.bin", i + 1), wire::encode(r, 1).unwrap());
    }
}

fn meta() -> SnapshotMeta<u64, corral_raft::NodeInfo> {
    SnapshotMeta {
        last_log_id: Some(samples::last_applied()),
        last_membership: samples::stored_membership(),
        snapshot_id: "1-28-7".into(),
    }
}

fn append() -> AppendEntriesRequest {
    AppendEntriesRequest {
        vote: samples::vote(),
        prev_log_id: Some(samples::log_id(1, 2)),
        entries: samples::entries()[2..6].to_vec(),
        leader_commit: Some(samples::log_id(1, 4)),
    }
}

fn vote_request() -> VoteRequest {
    VoteRequest { vote: samples::vote(), last_log_id: Some(samples::last_applied()) }
}

// The shape openraft answers a vote with, large error and all.
#[allow(clippy::result_large_err)]
fn vote_response() -> Result<VoteResponse, corral_raft::typ::RaftError> {
    Ok(VoteResponse { vote: samples::vote(), vote_granted: true, last_log_id: None })
}

fn install() -> InstallSnapshotRequest {
    InstallSnapshotRequest { vote: samples::vote(), meta: meta(), offset: 0, data: vec![1, 2, 3], done: true }
}

fn read(version: &str, name: &str) -> Vec<u8> {
    std::fs::read(dir(version).join(name)).unwrap_or_else(|e| panic!("fixture {version}/{name}: {e}"))
}

/// v0 has no cluster level: a v0 state reads as level 0, where this build's samples bootstrap
/// at level 0 too (the level is raised by a later command, which the samples do not send).
fn expected_state() -> ClusterState {
    samples::state().0
}

/// Every versioned kind, decoded from each committed format, equals the value that wrote it.
#[test]
fn every_committed_fixture_decodes_to_the_value_that_wrote_it() {
    use corral_raft::format::wire;
    for version in ["v0", "v1"] {
        let (applied, state): (_, ClusterState) =
            corral_storage::decode_snapshot_data::<TypeConfig, _>(&read(version, "snapshot-data.bin"))
                .unwrap_or_else(|e| panic!("{version} snapshot: {}", corral_storage::error_chain(&e)));
        assert_eq!(applied, (Some(samples::last_applied()), samples::stored_membership()), "{version}");
        assert_eq!(state, expected_state(), "{version} snapshot state");
        let meta_bytes = read(version, "snapshot-meta.bin");
        let decoded = legacy::decode_with(&meta_bytes, TypeConfig::meta_from_v0).unwrap();
        assert_eq!(decoded, meta(), "{version}");
        for (i, e) in samples::entries().iter().enumerate() {
            let b = read(version, &format!("entry-{:02}.bin", i + 1));
            let got =
                legacy::decode_entry::<TypeConfig>(&b).unwrap_or_else(|err| panic!("{version} entry {}: {err}", i + 1));
            assert_eq!(&got, e, "{version} entry {}", i + 1);
        }
        for (i, r) in samples::state().1.iter().enumerate() {
            let b = read(version, &format!("reply-{:02}.bin", i + 1));
            let got: Reply = if version == "v0" {
                codec::decode_v0::<corral_raft::format::v0::Reply>(&b).unwrap().into()
            } else {
                codec::decode_plain(&b).unwrap()
            };
            assert_eq!(&got, r, "{version} reply {}", i + 1);
        }
        assert_eq!(codec::decode_plain::<openraft::Vote<u64>>(&read(version, "vote.bin")).unwrap(), samples::vote());
        assert_eq!(
            codec::decode_plain::<corral_raft::typ::LogId>(&read(version, "log-id.bin")).unwrap(),
            samples::last_applied()
        );
        let want = if version == "v0" { 0 } else { 1 };
        let (a, f) = wire::decode::<AppendEntriesRequest>(&read(version, "rpc-append.bin")).unwrap();
        assert_eq!((format!("{a:?}"), f), (format!("{:?}", append()), want));
        let (v, _) = wire::decode::<VoteRequest>(&read(version, "rpc-vote.bin")).unwrap();
        assert_eq!(v, vote_request());
        let (v, _) =
            wire::decode::<Result<VoteResponse, corral_raft::typ::RaftError>>(&read(version, "rpc-vote-response.bin"))
                .unwrap();
        assert_eq!(format!("{v:?}"), format!("{:?}", vote_response()));
        let (s, _) = wire::decode::<InstallSnapshotRequest>(&read(version, "rpc-snapshot.bin")).unwrap();
        assert_eq!(format!("{s:?}"), format!("{:?}", install()));
        for (i, want) in samples::forwarded().iter().enumerate() {
            let (got, _) = wire::decode::<Forwarded>(&read(version, &format!("forward-{:02}.bin", i + 1))).unwrap();
            assert_eq!(format!("{got:?}"), format!("{want:?}"), "{version} forward {}", i + 1);
        }
        for (i, want) in samples::forward_results().iter().enumerate() {
            let b = read(version, &format!("forward-result-{:02}.bin", i + 1));
            let (got, _) = wire::decode::<corral_raft::forward::ForwardResult>(&b).unwrap();
            assert_eq!(format!("{got:?}"), format!("{want:?}"), "{version} forward result {}", i + 1);
        }
    }
}

/// At level 0 this build writes exactly the bytes release 3f21f51 wrote, so nodes of that
/// release read what it sends and a binary rollback finds its data dir readable.
#[test]
fn at_level_0_this_build_writes_what_the_release_wrote() {
    use corral_raft::format::wire;
    let (state, _) = samples::state();
    let applied = (Some(samples::last_applied()), samples::stored_membership());
    assert_eq!(
        corral_storage::encode_snapshot_data::<TypeConfig, _>(applied, state, 0).unwrap(),
        read("v0", "snapshot-data.bin")
    );
    for (i, e) in samples::entries().iter().enumerate() {
        assert_eq!(legacy::encode_entry::<TypeConfig>(e, 0).unwrap(), read("v0", &format!("entry-{:02}.bin", i + 1)));
    }
    assert_eq!(wire::encode(&append(), 0).unwrap(), read("v0", "rpc-append.bin"));
    assert_eq!(wire::encode(&install(), 0).unwrap(), read("v0", "rpc-snapshot.bin"));
    for (i, f) in samples::forwarded().iter().enumerate() {
        assert_eq!(wire::encode(f, 0).unwrap(), read("v0", &format!("forward-{:02}.bin", i + 1)));
    }
    // What v0 cannot say is written in the current format: only a cluster that raised its
    // level (every member able to read it) sends the command that raises it.
    let raise = Entry {
        log_id: samples::log_id(2, 99),
        payload: openraft::EntryPayload::Normal(Command {
            at_ms: 1,
            request_id: None,
            op: Op::SetClusterLevel { level: 1 },
        }),
    };
    let b = legacy::encode_entry::<TypeConfig>(&raise, 0).unwrap();
    assert_eq!(&b[..2], &[codec::MARK, 1]);
    assert_eq!(legacy::decode_entry::<TypeConfig>(&b).unwrap(), raise);
}

#[test]
fn the_sample_commands_do_what_they_say() {
    let (state, replies) = samples::state();
    let refused: Vec<(usize, String)> =
        replies.iter().enumerate().filter_map(|(i, r)| r.0.as_ref().err().map(|e| (i + 1, e.to_string()))).collect();
    // Local engine maintenance without an engine is refused (the fixtures keep that reply too).
    assert_eq!(refused, vec![(22, "the cluster has no hosted engine".to_string())]);
    assert_eq!(state.vms.len(), 4);
    assert_eq!(state.hosts.len(), 3);
    assert!(state.affinity_groups.contains_key("web-apart"));
}

/// Commands whose strings became types (`corral_raft::causes`), as the build before them wrote
/// them (`tests/golden/strings/`, written at commit 42ab3da in both formats): each reads as the
/// typed value, one the build does not know as `Other`, and writing it again gives the same bytes.
#[test]
fn strings_written_before_the_typed_causes_read_as_them_and_write_back_the_same() {
    use corral_raft::model::Observed;
    use corral_raft::{DownCause as D, HostDownCause as H, VmAction as A};
    let vm = samples::id(1);
    let report = |observed| Op::ReportVm { vm, host: 2, epoch: 3, observed };
    let failed = |action| report(Observed::Failed { action, error: "libvirt said no".into() });
    let down = |cause, on_purpose| report(Observed::Down { cause, on_purpose });
    let mut ops = vec![];
    for a in [A::Start, A::PowerOff, A::ShutDown, A::Suspend, A::Resume, A::Reboot, A::Other("migrate".into())] {
        ops.push(failed(a));
    }
    ops.extend([
        down(D::PoweredOff, true),
        down(D::SelfFenced { host: "host2".into() }, false),
        down(D::Crashed, false),
        down(D::GuestShutdown, true),
        down(D::ProcessEnded, false),
        down(D::Vanished, false),
        down(D::KilledAfterIoError, false),
        down(D::Other("firmware upgrade".into()), true),
    ]);
    for how in [
        H::LeaseEnded { silent_ms: 12_300, lease_ms: 10_000 },
        H::LeaseEnded { silent_ms: 3_000, lease_ms: 2_500 },
        H::FenceAgent { silent_ms: 4_500 },
        H::Restored,
        H::ForcedNewCluster,
        H::Other("its lease ended".into()),
    ] {
        ops.push(Op::HostDown { id: 2, how });
    }
    for (level, version) in [(0u8, "v0"), (1, "v1")] {
        for (i, op) in ops.iter().enumerate() {
            let want = Entry {
                log_id: samples::log_id(1, 10 + i as u64),
                payload: openraft::EntryPayload::Normal(Command {
                    at_ms: 1_700_000_000_000 + i as i64,
                    request_id: None,
                    op: op.clone(),
                }),
            };
            let bytes = read(&format!("strings/{version}"), &format!("entry-{:02}.bin", i + 1));
            let got = legacy::decode_entry::<TypeConfig>(&bytes).unwrap();
            assert_eq!(got, want, "{version} entry {}", i + 1);
            assert_eq!(legacy::encode_entry::<TypeConfig>(&want, level).unwrap(), bytes, "{version} entry {}", i + 1);
        }
    }
}
