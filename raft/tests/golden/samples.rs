//! The values the golden fixtures hold, built the same way by every release: a state reached by
//! applying real commands, the log entries that built it, and one message of each Raft and
//! forwarding kind. Deterministic (fixed ids and clocks), so a fixture decoded by a later build
//! can be compared with the value that build makes here. It must only use commands and fields
//! that every release since format v0 has, so it keeps compiling as the model grows.

use std::collections::{BTreeMap, BTreeSet};

use corral_raft::command::{MigrationOverridesChange, MigrationSettingsChange, NewHost, StartOrder, VmChanges, VmSpec};
use corral_raft::forward::{Forwarded, LeaderRequest, LeaderResponse};
use corral_raft::model::{
    DomainType, EngineScore, EventKind, HaPriority, HostFacts, MigrationPolicy, Nic, Observed, Polarity,
    SchedulingPolicy,
};
use corral_raft::typ::{Entry, LogId, Membership};
use corral_raft::{ClusterError, ClusterState, Command, NodeInfo, Op, Outcome, Reply};
use openraft::{CommittedLeaderId, EntryPayload, StoredMembership, Vote};
use uuid::Uuid;

pub const T0: i64 = 1_700_000_000_000;

pub fn id(n: u128) -> Uuid {
    Uuid::from_u128(0xc0_77a1_0000_0000_0000_0000_0000_0000 | n)
}

pub fn log_id(term: u64, index: u64) -> LogId {
    LogId::new(CommittedLeaderId::new(term, 1), index)
}

fn spec(name: &str, memory_mib: u64, ha: bool) -> VmSpec {
    VmSpec {
        name: name.to_string(),
        description: format!("{name} description"),
        comment: String::new(),
        memory_mib,
        vcpus: 2,
        ha_enabled: ha,
        ha_priority: if ha { HaPriority::High } else { HaPriority::Medium },
        resume_behavior: Default::default(),
        nics: vec![Nic::new("default", format!("52:54:00:00:00:{:02x}", memory_mib % 251))],
        domain_type: None,
        boot: None,
        max_vcpus: None,
        max_memory_mib: None,
        ..VmSpec::default()
    }
}

fn facts(memory_mib: u64) -> HostFacts {
    HostFacts { cpus: 8, memory_mib, libvirt_uri: "test:///default".into(), domain_type: DomainType::Kvm }
}

/// The commands that build the sample state, in log order (index = position + 1).
pub fn commands() -> Vec<Command> {
    let mut ops = vec![Op::Bootstrap {
        cluster_name: "lab".into(),
        voters: 3,
        host: NewHost { id: 1, name: "host1".into(), address: "127.0.0.1:7001".into(), facts: facts(16384) },
        token_hash: "ab".repeat(32),
        token_expires_ms: T0 + 86_400_000,
    }];
    ops.push(Op::LeaderElected { id: 1, term: 1 });
    for (i, name) in [(2u64, "host2"), (3, "host3")] {
        ops.push(Op::RegisterHost {
            token_hash: "ab".repeat(32),
            name: name.into(),
            address: format!("127.0.0.1:700{i}"),
            facts: facts(16384),
        });
        ops.push(Op::HostJoined { id: i, voter: true });
    }
    ops.push(Op::AddToken { token_hash: "cd".repeat(32), expires_ms: T0 + 3_600_000 });
    ops.push(Op::EditHost { host: "host2".into(), tags: Some(vec!["ssd".into()]) });
    ops.push(Op::SetSchedulingPolicy { policy: Some(SchedulingPolicy::Packing), cpu_overcommit: Some(4) });
    ops.push(Op::SetMigrationDefaults {
        changes: MigrationSettingsChange {
            auto_converge: Some(true),
            compression: None,
            max_downtime_ms: Some(Some(300)),
            bandwidth_mibps: Some(None),
            max_per_host: Some(3),
        },
    });
    for (n, name, ha) in [(1u128, "web1", true), (2, "web2", true), (3, "db1", false), (4, "engine", true)] {
        ops.push(Op::CreateVm {
            id: id(n),
            spec: spec(name, 512 * n as u64, ha),
            disks: vec![],
            start: if n <= 2 { Some(StartOrder { host: Some(format!("host{n}")) }) } else { None },
        });
    }
    ops.push(Op::Batch(vec![
        corral_raft::command::Proposal {
            request_id: Some(id(100)),
            op: Op::EditVm {
                vm: "db1".into(),
                changes: VmChanges {
                    comment: Some("primary".into()),
                    host_tags: Some(vec!["ssd".into()]),
                    migration: Some(MigrationPolicy::Manual),
                    migration_settings: Some(MigrationOverridesChange {
                        auto_converge: Some(Some(false)),
                        compression: Some(None),
                        max_downtime_ms: None,
                        bandwidth_mibps: Some(Some(50)),
                    }),
                    ..Default::default()
                },
            },
        },
        corral_raft::command::Proposal {
            request_id: Some(id(101)),
            op: Op::EditVm { vm: "nosuchvm".into(), changes: VmChanges { vcpus: Some(4), ..Default::default() } },
        },
    ]));
    ops.push(Op::ReportVm { vm: id(1), host: 1, epoch: 1, observed: Observed::Up });
    ops.push(Op::ReportVm { vm: id(2), host: 2, epoch: 1, observed: Observed::Up });
    // A next-run change of a running VM.
    ops.push(Op::EditVm { vm: "web1".into(), changes: VmChanges { memory_mib: Some(1024), ..Default::default() } });
    ops.push(Op::CreateAffinityGroup {
        name: "web-apart".into(),
        polarity: Polarity::Negative,
        enforcing: true,
        vms: vec!["web1".into(), "web2".into()],
    });
    ops.push(Op::CreateAffinityLabel { name: "fast".into(), vms: vec!["db1".into()], hosts: vec!["host2".into()] });
    ops.push(Op::ReportEngineScore {
        host: 1,
        score: EngineScore {
            score: 3000,
            penalties: vec![("gateway 10.0.0.1 unreachable".into(), 400)],
            measured_ms: T0,
        },
    });
    ops.push(Op::SetEngineMaintenance { global: None, local: Some(("host3".into(), true)) });
    ops.push(Op::RecordEvent {
        kind: EventKind::VmStateChanged,
        message: "VM stray found running on host host3".into(),
    });
    ops.push(Op::HostNonResponsive { id: 2, silent_ms: 3000 });
    ops.push(Op::HostDown { id: 2, how: "its lease ended".into() });
    ops.push(Op::RestartHaVms);
    ops.push(Op::HostMaintenance { host: "host3".into(), reason: Some("firmware".into()) });
    ops.into_iter()
        .enumerate()
        .map(|(i, op)| Command {
            at_ms: T0 + 1000 * i as i64,
            request_id: if i % 4 == 3 { Some(id(200 + i as u128)) } else { None },
            op,
        })
        .collect()
}

pub fn nodes() -> BTreeMap<u64, NodeInfo> {
    (1..=3).map(|i| (i, NodeInfo { name: format!("host{i}"), address: format!("127.0.0.1:700{i}") })).collect()
}

pub fn membership() -> Membership {
    Membership::new(vec![BTreeSet::from([1, 2, 3])], nodes())
}

/// The log: a blank entry, a membership entry, then the commands.
pub fn entries() -> Vec<Entry> {
    let mut out = vec![
        Entry { log_id: log_id(1, 1), payload: EntryPayload::Blank },
        Entry { log_id: log_id(1, 2), payload: EntryPayload::Membership(membership()) },
    ];
    for (i, c) in commands().into_iter().enumerate() {
        out.push(Entry { log_id: log_id(1, 3 + i as u64), payload: EntryPayload::Normal(c) });
    }
    out
}

/// The state the commands build, and the replies they gave.
pub fn state() -> (ClusterState, Vec<Reply>) {
    let mut s = ClusterState::default();
    let replies = commands().iter().map(|c| s.apply_command(c)).collect();
    (s, replies)
}

pub fn last_applied() -> LogId {
    log_id(1, 2 + commands().len() as u64)
}

pub fn stored_membership() -> StoredMembership<u64, NodeInfo> {
    StoredMembership::new(Some(log_id(1, 2)), membership())
}

pub fn vote() -> Vote<u64> {
    let mut v = Vote::new(7, 2);
    v.commit();
    v
}

pub fn forwarded() -> Vec<Forwarded> {
    let (state, _) = state();
    let vm = state.vms.get(&id(1)).cloned().expect("web1 exists");
    [
        LeaderRequest::Write {
            request_id: Some(id(300)),
            op: Box::new(Op::ImportVm { vm: Box::new(vm), disks: vec![], engine: false, start: None }),
        },
        LeaderRequest::ReadIndex,
        LeaderRequest::Admit { token_hash: "ef".repeat(32), id: 4 },
        LeaderRequest::RemoveHost { name: "host3".into() },
        LeaderRequest::Heartbeat { host: 2, self_fenced: true, sent_ms: T0 + 5 },
    ]
    .into_iter()
    .enumerate()
    .map(|(i, request)| Forwarded { hops: i as u8 % 3, request })
    .collect()
}

pub fn forward_results() -> Vec<Result<LeaderResponse, ClusterError>> {
    vec![
        Ok(LeaderResponse::Written(Reply(Ok(Outcome::Done)), 42)),
        Ok(LeaderResponse::ReadIndex(43)),
        Ok(LeaderResponse::Admitted { voter: false }),
        Ok(LeaderResponse::HostRemoved { id: 3, promoted: Some("host4".into()) }),
        Ok(LeaderResponse::HeartbeatAck { index: 44 }),
        Err(ClusterError::invalid("memory", "must be at least 1 MiB")),
        Err(ClusterError::Unavailable("no leader".into())),
    ]
}
