//! Every payload a node decodes from the network or its disk, one target: the first byte picks
//! the kind, the rest is the bytes. Any format (v0 bincode, v1 MessagePack, garbage) must give
//! a value or an error, never a panic, an abort or a huge allocation.
#![no_main]

use corral_raft::format::backup::Backup;
use corral_raft::format::wire::decode;
use corral_raft::forward::{ForwardResult, Forwarded};
use corral_raft::peer::{PeerRequest, PeerResult};
use corral_raft::typ::*;
use corral_raft::ClusterState;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&kind, bytes)) = data.split_first() else { return };
    match kind % 14 {
        0 => drop(decode::<Forwarded>(bytes)),
        1 => drop(decode::<ForwardResult>(bytes)),
        2 => drop(decode::<PeerRequest>(bytes)),
        3 => drop(decode::<PeerResult>(bytes)),
        4 => drop(decode::<VoteRequest>(bytes)),
        5 => drop(decode::<AppendEntriesRequest>(bytes)),
        6 => drop(decode::<InstallSnapshotRequest>(bytes)),
        7 => drop(decode::<Result<VoteResponse, RaftError>>(bytes)),
        8 => drop(decode::<Result<AppendEntriesResponse, RaftError>>(bytes)),
        9 => drop(corral_storage::legacy::decode_entry::<TypeConfig>(bytes)),
        10 => drop(corral_storage::decode_snapshot_data::<TypeConfig, ClusterState>(bytes)),
        11 => drop(Backup::decode(bytes)),
        12 => drop(corral_storage::codec::decode_plain::<openraft::Vote<NodeId>>(bytes)),
        _ => drop(corral_storage::codec::decode_plain::<Option<LogId>>(bytes)),
    }
});
