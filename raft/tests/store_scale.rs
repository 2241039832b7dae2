//! How big a voter's data dir grows at scale (ignored: minutes, and GBs of writes):
//! `CORRAL_SCALE_VMS=50000 cargo test -p corral-raft --release --test store_scale -- --ignored --nocapture`.
//! A cluster of N VMs (one disk and one NIC each) is written as a fresh voter's store would
//! hold it: the snapshot and every VM's OVF document, then the snapshot rebuilt a few times as
//! the log moves on. It prints sizes and times and asserts only that the state reads back.

use std::time::Instant;

use corral_raft::command::{Command, NewHost, Op};
use corral_raft::model::{Disk, HostFacts, Nic, Vm};
use corral_raft::{ClusterState, NodeInfo, TypeConfig};
use corral_storage::Store;
use openraft::{CommittedLeaderId, LogId, Membership, RaftSnapshotBuilder, StoredMembership, Vote};
use uuid::Uuid;

const T0: i64 = 1_700_000_000_000;

fn cluster(vms: usize) -> ClusterState {
    let mut s = ClusterState::default();
    let host = NewHost { id: 1, name: "host1".into(), address: "127.0.0.1:7001".into(), facts: HostFacts::default() };
    let op = Op::Bootstrap {
        cluster_name: "lab".into(),
        voters: 3,
        host,
        token_hash: "good".into(),
        token_expires_ms: T0 + 3_600_000,
    };
    assert!(s.apply_command(&Command { at_ms: T0, request_id: None, op }).0.is_ok());
    // As the bootstrapping node leaves it (format v1, not the v0 of a cluster being upgraded).
    s.cluster.as_mut().unwrap().level = corral_raft::model::MAX_LEVEL;
    for i in 0..vms {
        let id = Uuid::new_v4();
        let name = format!("vm-{i:05}");
        let mut vm = Vm::new(id, &name, 1024 + (i as u64 % 8) * 512, 1 + (i as u32 % 4), T0 + i as i64);
        vm.config.description = format!("web tier {} of team {}", i % 100, i % 17);
        let disk = Disk {
            id: Uuid::new_v4(),
            name: format!("{name}-disk1"),
            size_mib: 10_240,
            file: format!("{name}-disk1.qcow2"),
            format: "qcow2".into(),
            vm: Some(id),
            created_ms: T0 + i as i64,
            base: None,
        };
        vm.config.disks = vec![disk.id];
        vm.config.nics =
            vec![Nic::new("default", format!("52:54:00:{:02x}:{:02x}:{:02x}", i >> 16, (i >> 8) & 0xff, i & 0xff))];
        s.disks.insert(disk.id, disk);
        s.vm_names.insert(name, id);
        s.vms.insert(id, vm);
    }
    s
}

fn du(dir: &std::path::Path) -> u64 {
    let out = std::process::Command::new("du").arg("-sk").arg(dir).output().unwrap();
    String::from_utf8_lossy(&out.stdout).split_whitespace().next().unwrap().parse::<u64>().unwrap() * 1024
}

fn mib(b: u64) -> String {
    format!("{:.1} MiB", b as f64 / (1 << 20) as f64)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "minutes and GBs of writes; run by hand to measure"]
async fn a_voter_store_at_scale() {
    let n: usize = std::env::var("CORRAL_SCALE_VMS").ok().and_then(|v| v.parse().ok()).unwrap_or(50_000);
    let rebuilds: u64 = std::env::var("CORRAL_SCALE_REBUILDS").ok().and_then(|v| v.parse().ok()).unwrap_or(4);
    let state = cluster(n);
    let docs = corral_storage::Machine::<TypeConfig>::all_documents(&state);
    let doc_bytes: usize = docs.iter().map(|(_, d)| d.len()).sum();
    println!(
        "{n} VMs: {} documents, {} of XML ({} bytes each on average)",
        docs.len(),
        mib(doc_bytes as u64),
        doc_bytes / n.max(1)
    );
    if let Ok(dump) = std::env::var("CORRAL_SCALE_DUMP") {
        std::fs::create_dir_all(&dump).unwrap();
        for (k, d) in docs.iter().take(2000) {
            std::fs::write(format!("{dump}/{k}.ovf"), d).unwrap();
        }
    }
    drop(docs);

    let leader = CommittedLeaderId::new(1, 1);
    let last = LogId::new(leader, 1000);
    let nodes = [(1u64, NodeInfo { name: "host1".into(), address: "127.0.0.1:7001".into() })];
    let membership = StoredMembership::new(
        Some(LogId::new(leader, 1)),
        Membership::new(
            vec![[1u64].into_iter().collect()],
            nodes.into_iter().collect::<std::collections::BTreeMap<_, _>>(),
        ),
    );
    let t = Instant::now();
    let blob = corral_storage::encode_snapshot_data::<TypeConfig, ClusterState>(
        (Some(last), membership.clone()),
        state.clone(),
        corral_storage::codec::CURRENT,
    )
    .unwrap();
    println!("snapshot data: {} encoded in {:?}", mib(blob.len() as u64), t.elapsed());
    if let Ok(dump) = std::env::var("CORRAL_SCALE_DUMP") {
        std::fs::write(format!("{dump}/snapshot.msgpack"), &blob).unwrap();
    }
    drop(blob);

    let dir = tempfile::TempDir::new_in(std::env::var("CORRAL_SCALE_DIR").unwrap_or_else(|_| "/tmp".into())).unwrap();
    {
        let store = Store::open(dir.path(), 64 << 20).unwrap();
        let t = Instant::now();
        store.start_over::<TypeConfig, ClusterState>(state, last, membership, Vote::new_committed(1, 1)).unwrap();
        println!("start over (snapshot and documents written): {:?}; data dir {}", t.elapsed(), mib(du(dir.path())));
        let mut sm = store.state_machine::<TypeConfig, ClusterState>().unwrap();
        for i in 0..rebuilds {
            let t = Instant::now();
            let snap = sm.build_snapshot().await.unwrap();
            println!(
                "snapshot {} rebuilt ({} sent to peers) in {:?}; data dir {}",
                i + 1,
                mib(snap.snapshot.get_ref().len() as u64),
                t.elapsed(),
                mib(du(dir.path()))
            );
        }
        store.flush().unwrap();
        println!("sled says {} on disk", mib(store.size_on_disk().unwrap()));
    }
    std::thread::sleep(std::time::Duration::from_millis(500));
    let t = Instant::now();
    let store = Store::open(dir.path(), 64 << 20).unwrap();
    let sm = store.state_machine::<TypeConfig, ClusterState>().unwrap();
    assert_eq!(sm.handle().read(|s| s.vms.len()), n);
    println!("reopened and snapshot read back in {:?}; data dir {}", t.elapsed(), mib(du(dir.path())));
    let t = Instant::now();
    assert_eq!(store.documents().unwrap().len(), n);
    println!("every document read back in {:?}", t.elapsed());
    for entry in std::fs::read_dir(dir.path().join("db")).unwrap().flatten() {
        println!("  {:?}: {}", entry.file_name(), mib(du(&entry.path())));
    }
}
