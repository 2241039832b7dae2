//! The state machine's apply, command by command: bootstrap, joins, retries, the event log and
//! replay here, with the fixtures every group of tests shares; each group in `tests/`.

use super::*;
use crate::command::{NewHost, VmChanges, VmSpec};
use crate::model::{Disk, HaPriority, HostFacts, HostState, Vm};
use crate::typ::NodeId;

const T0: i64 = 1_700_000_000_000;

fn cmd(at_ms: i64, op: Op) -> Command {
    Command { at_ms, request_id: None, op }
}

fn spec(name: &str) -> VmSpec {
    VmSpec {
        name: name.to_string(),
        description: String::new(),
        comment: String::new(),
        memory_mib: 1024,
        vcpus: 2,
        ha_enabled: false,
        ha_priority: HaPriority::Medium,
        resume_behavior: Default::default(),
        nics: vec![],
        domain_type: None,
        boot: None,
        max_vcpus: None,
        max_memory_mib: None,
        ..VmSpec::default()
    }
}

fn bootstrapped() -> ClusterState {
    let mut s = ClusterState::default();
    let r = s.apply_command(&cmd(
        T0,
        Op::Bootstrap {
            cluster_name: "lab".into(),
            voters: 3,
            host: NewHost {
                id: 1,
                name: "host1".into(),
                address: "127.0.0.1:7001".into(),
                facts: HostFacts::default(),
            },
            token_hash: "good".into(),
            token_expires_ms: T0 + 3_600_000,
        },
    ));
    assert_eq!(r, Reply(Ok(Outcome::Done)));
    s
}

/// A bootstrapped cluster of host1..host3 with the given memory each, 2 CPUs each (4 when
/// `domain_type` is KVM, as the migration tests want), all up.
fn three_hosts(memory_mib: [u64; 3], cpus: u32, domain_type: crate::model::DomainType) -> ClusterState {
    let mut s = bootstrapped();
    let facts = |m| HostFacts { cpus, memory_mib: m, libvirt_uri: "x".into(), domain_type };
    s.hosts.get_mut(&1).unwrap().facts = facts(memory_mib[0]);
    for (i, name) in [(1, "host2"), (2, "host3")] {
        let op = Op::RegisterHost {
            token_hash: "good".into(),
            name: name.into(),
            address: format!("a:{i}"),
            facts: facts(memory_mib[i]),
        };
        assert!(s.apply_command(&cmd(T0, op)).0.is_ok());
        s.apply_command(&cmd(T0, Op::HostJoined { id: i as u64 + 1, voter: true }));
    }
    s
}

fn create(s: &mut ClusterState, name: &str) -> Reply {
    s.apply_command(&cmd(T0 + 1, Op::CreateVm { id: Uuid::new_v4(), spec: spec(name), disks: vec![], start: None }))
}

/// Applies `op` and checks that it was refused with `want` and changed nothing.
fn refused(s: &mut ClusterState, op: Op, want: &str) {
    let before = s.clone();
    let r = s.apply_command(&cmd(T0 + 5, op));
    match r.0 {
        Err(e) => assert_eq!(e.to_string(), want),
        Ok(o) => panic!("expected refusal '{want}', got {o:?}"),
    }
    assert_eq!(*s, before, "a refused command changed the state");
}

#[test]
fn bootstrap_happens_once() {
    let mut s = bootstrapped();
    assert_eq!(s.cluster.as_ref().unwrap().name, "lab");
    assert_eq!(s.hosts[&1].state, HostState::Up);
    refused(
        &mut s,
        Op::Bootstrap {
            cluster_name: "other".into(),
            voters: 3,
            host: NewHost { id: 9, name: "h9".into(), address: "x:1".into(), facts: HostFacts::default() },
            token_hash: "t".into(),
            token_expires_ms: T0,
        },
        "this node already belongs to cluster 'lab'",
    );
}

#[test]
fn vm_lifecycle_records_events() {
    let mut s = bootstrapped();
    let Reply(Ok(Outcome::Vm(vm))) = create(&mut s, "web1") else { panic!("create failed") };
    let id = vm.id;
    assert_eq!(s.find_vm("web1").unwrap().id, id);
    assert_eq!(s.find_vm(&id.to_string()).unwrap().config.name, "web1");

    let changes = VmChanges { memory_mib: Some(2048), description: Some("front end".into()), ..Default::default() };
    let r = s.apply_command(&cmd(T0 + 2, Op::EditVm { vm: "web1".into(), changes }));
    let vm = s.find_vm("web1").unwrap();
    assert_eq!(r, Reply(Ok(Outcome::Vm(Box::new(vm.clone())))));
    assert_eq!(
        (vm.config.memory_mib, vm.config.description.as_str(), vm.config.updated_ms),
        (2048, "front end", T0 + 2)
    );

    let r = s.apply_command(&cmd(T0 + 3, Op::DeleteVm { vm: "web1".into(), keep_disks: false }));
    assert_eq!(r, Reply(Ok(Outcome::VmDeleted { id, files: vec![] })));
    assert!(s.vms.is_empty() && s.vm_names.is_empty());

    let kinds: Vec<_> = s.events.iter().map(|e| e.kind.as_str()).collect();
    assert_eq!(kinds, ["cluster_bootstrapped", "vm_created", "vm_edited", "vm_deleted"]);
    assert_eq!(s.events[2].message, "VM web1 was edited: memory 1024 -> 2048 MiB, description.");
    assert!(s.events.iter().zip(1..).all(|(e, i)| e.index == i));
}

#[test]
fn refusals_name_the_problem_and_change_nothing() {
    let mut s = bootstrapped();
    create(&mut s, "web1");
    refused(
        &mut s,
        Op::CreateVm { id: Uuid::new_v4(), spec: spec("web1"), disks: vec![], start: None },
        "vm 'web1' already exists",
    );
    refused(
        &mut s,
        Op::EditVm { vm: "x".into(), changes: VmChanges { vcpus: Some(4), ..Default::default() } },
        "vm 'x' not found",
    );
    refused(&mut s, Op::DeleteVm { vm: "x".into(), keep_disks: false }, "vm 'x' not found");
    refused(
        &mut s,
        Op::CreateVm { id: Uuid::new_v4(), spec: spec(""), disks: vec![], start: None },
        "name: must not be empty",
    );
    refused(
        &mut s,
        Op::CreateVm { id: Uuid::new_v4(), spec: VmSpec { memory_mib: 0, ..spec("db") }, disks: vec![], start: None },
        "memory: must be at least 1 MiB",
    );
    refused(
        &mut s,
        Op::CreateVm { id: Uuid::new_v4(), spec: VmSpec { vcpus: 0, ..spec("db") }, disks: vec![], start: None },
        "vcpus: must be at least 1",
    );
    create(&mut s, "web2");
    refused(
        &mut s,
        Op::EditVm { vm: "web2".into(), changes: VmChanges { name: Some("web1".into()), ..Default::default() } },
        "vm 'web1' already exists",
    );
    refused(
        &mut s,
        Op::EditVm { vm: "web2".into(), changes: VmChanges { memory_mib: Some(0), ..Default::default() } },
        "memory: must be at least 1 MiB",
    );
}

#[test]
fn vm_ops_need_a_cluster() {
    let mut s = ClusterState::default();
    refused(
        &mut s,
        Op::CreateVm { id: Uuid::new_v4(), spec: spec("web1"), disks: vec![], start: None },
        "the cluster is not bootstrapped",
    );
}

#[test]
fn join_needs_a_valid_unexpired_token() {
    let mut s = bootstrapped();
    let register = |token: &str, name: &str, address: &str| Op::RegisterHost {
        token_hash: token.into(),
        name: name.into(),
        address: address.into(),
        facts: HostFacts::default(),
    };
    refused(&mut s, register("wrong", "host2", "a:2"), "the join token is not valid or has expired");

    let r = s.apply_command(&cmd(T0 + 10, register("good", "host2", "a:2")));
    assert_eq!(r, Reply(Ok(Outcome::HostRegistered { id: 2, cluster_name: "lab".into() })));
    // The same node retrying a half-done join gets its id back.
    let r = s.apply_command(&cmd(T0 + 11, register("good", "host2", "a:2")));
    assert_eq!(r, Reply(Ok(Outcome::HostRegistered { id: 2, cluster_name: "lab".into() })));
    refused(&mut s, register("good", "host1", "a:9"), "host 'host1' already exists");
    refused(
        &mut s,
        register("good", "host3", "127.0.0.1:7001"),
        "address 127.0.0.1:7001 is already used by host 'host1'",
    );

    // After expiry, the same token is refused.
    let before = s.clone();
    let r = s.apply_command(&cmd(T0 + 3_600_000, register("good", "host3", "a:3")));
    assert!(matches!(r.0, Err(ClusterError::PermissionDenied(_))));
    assert_eq!(s, before);

    s.apply_command(&cmd(T0 + 12, Op::HostJoined { id: 2, voter: true }));
    assert_eq!(s.hosts[&2].state, HostState::Up);
    assert_eq!(s.events.back().unwrap().message, "Host host2 joined the cluster as a voter.");
}

#[test]
fn a_retried_request_is_applied_once() {
    let mut s = bootstrapped();
    let rid = Some(Uuid::new_v4());
    let c = Command {
        at_ms: T0 + 1,
        request_id: rid,
        op: Op::CreateVm { id: Uuid::new_v4(), spec: spec("web1"), disks: vec![], start: None },
    };
    let first = s.apply_command(&c);
    assert!(first.0.is_ok());
    let after_first = s.clone();
    // A retry may carry a fresh VM id (a new proposal of the same request): still applied once.
    let mut retry = c.clone();
    retry.op = Op::CreateVm { id: Uuid::new_v4(), spec: spec("web1"), disks: vec![], start: None };
    assert_eq!(s.apply_command(&retry), first);
    assert_eq!(s, after_first);
    assert_eq!(s.events.iter().filter(|e| e.kind == EventKind::VmCreated).count(), 1);
}

#[test]
fn a_retry_is_answered_with_the_vm_as_it_is_now_and_the_cache_keeps_no_vm() {
    let mut s = bootstrapped();
    s.cluster.as_mut().unwrap().level = crate::model::MAX_LEVEL;
    let rid = Uuid::new_v4();
    let c = Command {
        at_ms: T0 + 1,
        request_id: Some(rid),
        op: Op::CreateVm { id: Uuid::new_v4(), spec: spec("web1"), disks: vec![], start: None },
    };
    let Reply(Ok(Outcome::Vm(first))) = s.apply_command(&c) else { panic!("no VM") };
    assert_eq!(s.recent_requests[&rid], Reply(Ok(VM_AS_NOW)));
    let edit = VmChanges { comment: Some("changed".into()), ..Default::default() };
    assert!(s.apply_command(&cmd(T0 + 2, Op::EditVm { vm: "web1".into(), changes: edit })).0.is_ok());
    let mut retry = c.clone();
    retry.op = Op::CreateVm { id: Uuid::new_v4(), spec: spec("web1"), disks: vec![], start: None };
    let Reply(Ok(Outcome::Vm(again))) = s.apply_command(&retry) else { panic!("no VM") };
    assert_eq!((again.id, again.config.comment.as_str()), (first.id, "changed"));
    // Gone since: the retry says so rather than making it again.
    assert!(s.apply_command(&cmd(T0 + 3, Op::DeleteVm { vm: "web1".into(), keep_disks: false })).0.is_ok());
    assert!(matches!(s.apply_command(&retry).0, Err(ClusterError::NotFound(_))));
    assert!(s.vms.is_empty());
}

#[test]
fn the_reply_cache_is_bounded_by_size() {
    let mut s = bootstrapped();
    // At level 0 a reply keeps its VM; with a 64 KiB description (more than a command may
    // give, but the bound does not rely on that), 60 of them are more than the byte bound.
    s.cluster.as_mut().unwrap().level = 0;
    for i in 0..60u128 {
        let mut vm = Vm::new(Uuid::from_u128(i + 1), &format!("vm{i}"), 64, 1, T0);
        vm.config.description = "x".repeat(64 << 10);
        s.remember_request(Uuid::from_u128(i + 1), Reply(Ok(Outcome::Vm(Box::new(vm)))));
    }
    let kept = s.recent_requests.len();
    assert!((20..60).contains(&kept), "{kept} replies kept");
    let bytes: u64 = s.recent_requests.values().map(weight_of_reply).sum();
    assert!(bytes <= MAX_RECENT_REQUEST_BYTES, "{bytes}");
    assert_eq!(s.recent_order.len(), kept);
    // The newest are the ones kept.
    assert!(s.recent_requests.contains_key(&Uuid::from_u128(60)));
    assert!(!s.recent_requests.contains_key(&Uuid::from_u128(1)));
}

#[test]
fn the_event_log_is_bounded_by_size() {
    let mut s = bootstrapped();
    for i in 0..2_000 {
        let message = format!("{i} {}", "y".repeat(4096));
        s.apply_command(&cmd(T0 + i, Op::RecordEvent { kind: EventKind::VmEdited, message }));
    }
    let bytes: u64 = s.events.iter().map(weight_of_event).sum();
    assert!(bytes <= MAX_EVENT_BYTES && s.events.len() < 2_000, "{} events, {bytes} bytes", s.events.len());
    assert!(s.events.back().unwrap().message.starts_with("1999 "));
    // A state read back from its encoding counts the same (the tally is worked out again).
    let mut back: ClusterState = rmp_serde::from_slice(&rmp_serde::to_vec_named(&s).unwrap()).unwrap();
    back.apply_command(&cmd(T0 + 5_000, Op::RecordEvent { kind: EventKind::VmEdited, message: "z".repeat(4096) }));
    s.apply_command(&cmd(T0 + 5_000, Op::RecordEvent { kind: EventKind::VmEdited, message: "z".repeat(4096) }));
    assert_eq!(back, s);
    assert_eq!(back.events, s.events);
}

#[test]
fn the_event_log_is_bounded() {
    let mut s = bootstrapped();
    for i in 0..(MAX_EVENTS + 50) {
        s.apply_command(&cmd(T0 + i as i64, Op::LeaderElected { id: 1, term: i as u64 + 1 }));
    }
    assert_eq!(s.events.len(), MAX_EVENTS);
    assert_eq!(s.events.back().unwrap().index, MAX_EVENTS as u64 + 51);
    assert_eq!(s.events_after(s.next_event_index - 3).count(), 3);
}

#[test]
fn replay_is_deterministic() {
    let ops = |s: &mut ClusterState| {
        for i in 0..20u64 {
            let id = Uuid::from_u128(i as u128 + 1);
            s.apply_command(&cmd(
                T0 + i as i64,
                Op::CreateVm { id, spec: spec(&format!("vm{}", i % 7)), disks: vec![], start: None },
            ));
            s.apply_command(&cmd(T0 + i as i64, Op::DeleteVm { vm: format!("vm{}", i % 5), keep_disks: false }));
        }
    };
    let (mut a, mut b) = (bootstrapped(), bootstrapped());
    ops(&mut a);
    ops(&mut b);
    assert_eq!(a, b);
}

#[test]
fn only_a_newer_term_records_a_leader() {
    let mut s = bootstrapped();
    s.apply_command(&cmd(T0 + 1, Op::LeaderElected { id: 3, term: 2 }));
    let before = s.clone();
    s.apply_command(&cmd(T0 + 2, Op::LeaderElected { id: 1, term: 1 }));
    s.apply_command(&cmd(T0 + 3, Op::LeaderElected { id: 3, term: 2 }));
    assert_eq!(s, before);
    s.apply_command(&cmd(T0 + 4, Op::LeaderElected { id: 2, term: 3 }));
    assert_eq!(s.leader, Some((2, 3)));
    assert_eq!(s.events.back().unwrap().message, "Host node 2 is the new leader (term 3).");
}

#[test]
fn a_batch_applies_each_write_once_in_order() {
    use crate::command::Proposal;
    let mut s = bootstrapped();
    let rid = Uuid::new_v4();
    let batch = |names: &[&str]| {
        Op::Batch(
            names
                .iter()
                .map(|n| Proposal {
                    request_id: Some(if *n == "a" { rid } else { Uuid::new_v4() }),
                    op: Op::CreateVm { id: Uuid::new_v4(), spec: spec(n), disks: vec![], start: None },
                })
                .collect(),
        )
    };
    let r = s.apply_command(&cmd(T0, batch(&["a", "b", "a2"])));
    let Reply(Ok(Outcome::Batch(replies))) = r else { panic!("{r:?}") };
    assert_eq!(replies.len(), 3);
    assert!(replies.iter().all(|r| r.0.is_ok()));
    // "a" again with the same request id (a retry): its first reply, nothing applied; a
    // duplicate name with a new id: refused, and the rest of the batch still applies.
    let r = s.apply_command(&cmd(T0, batch(&["a", "b", "c"])));
    let Reply(Ok(Outcome::Batch(replies))) = r else { panic!("{r:?}") };
    assert!(replies[0].0.is_ok());
    assert_eq!(replies[1].0.as_ref().unwrap_err().to_string(), "vm 'b' already exists");
    assert!(replies[2].0.is_ok());
    assert_eq!(s.vms.len(), 4);
    assert_eq!(s.events.iter().filter(|e| e.kind == EventKind::VmCreated).count(), 4);
}

mod affinity;
mod auth;
mod engine;
mod ha;
mod hotplug;
mod inconsistent;
mod library;
mod lifecycle;
mod migration;
mod snapshots;
