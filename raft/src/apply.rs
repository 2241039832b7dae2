//! `apply`: the deterministic function from (state, command) to (state, reply). A command that
//! is refused leaves the state as it was: every check happens before the first change (one that
//! finds the state contradicting itself also says so in the event log). It never panics: a
//! panic here would stop the state machine on every node at once. No clocks, no randomness,
//! no I/O here; the rules live in apply/*.rs by subject.

use std::collections::BTreeSet;

use corral_storage::codec::CodecError;
use corral_storage::legacy::Applied as SnapshotApplied;
use corral_storage::{Effect, Machine};
use uuid::Uuid;

use crate::command::{Command, Op, Outcome, Reply};
use crate::error::ClusterError;
use crate::model::auth::Actor;
use crate::model::{
    ClusterInfo, ClusterState, Event, EventKind, MAX_EVENTS, MAX_EVENT_BYTES, MAX_RECENT_REQUESTS,
    MAX_RECENT_REQUEST_BYTES,
};
use crate::typ::{LogId, TypeConfig};

impl Machine<TypeConfig> for ClusterState {
    fn apply(&mut self, _log_id: &LogId, cmd: &Command) -> Effect<Reply> {
        let Applied { reply, touched } = self.apply_entry(cmd);
        Effect { reply, changed: touched.into_iter().map(crate::documents::key).collect() }
    }

    fn document(&self, key: &str) -> Option<Vec<u8>> {
        crate::documents::get(self, key)
    }

    fn all_documents(&self) -> Vec<(String, Vec<u8>)> {
        crate::documents::all(self)
    }

    fn document_keys(&self) -> Vec<String> {
        self.vms.keys().map(|id| crate::documents::key(*id)).collect()
    }

    /// The format of the cluster level: level 2 (TLS) writes format v1 as level 1 does.
    fn format(&self) -> Option<u8> {
        self.cluster.as_ref().map(|c| c.level.min(corral_storage::codec::CURRENT))
    }

    fn state_from_v0(payload: &[u8]) -> Result<(SnapshotApplied<TypeConfig>, Self), CodecError> {
        crate::format::wire::state_from_v0(payload)
    }

    fn state_to_v0(&self, applied: &SnapshotApplied<TypeConfig>) -> Result<Vec<u8>, CodecError> {
        crate::format::wire::state_to_v0(self, applied)
    }
}

pub(crate) type OpResult = Result<Outcome, ClusterError>;

/// What applying one command gives back: its reply, and the VMs whose OVF documents it may
/// have changed (or removed), for the OVF store to rewrite. Naming a VM whose document did not
/// change costs a document build and a comparison; missing one would leave a stale document.
#[derive(Debug, Clone, PartialEq)]
pub struct Applied {
    pub reply: Reply,
    pub touched: BTreeSet<Uuid>,
}

impl ClusterState {
    /// Applies one command; public so tests and tools can replay commands without Raft.
    pub fn apply_entry(&mut self, cmd: &Command) -> Applied {
        #[cfg(test)]
        let check = crate::documents::check::TouchCheck::before(self);
        let mut touched = BTreeSet::new();
        let reply = match &cmd.op {
            Op::Batch(proposals) => {
                let replies =
                    proposals.iter().map(|p| self.apply_once(cmd.at_ms, p.request_id, &p.op, &mut touched)).collect();
                Reply(Ok(Outcome::Batch(replies)))
            }
            op => self.apply_once(cmd.at_ms, cmd.request_id, op, &mut touched),
        };
        self.vms.settle();
        #[cfg(test)]
        check.after(self, cmd, &touched);
        Applied { reply, touched }
    }

    /// Applies one command for its reply alone (a replay that keeps no OVF store).
    pub fn apply_command(&mut self, cmd: &Command) -> Reply {
        self.apply_entry(cmd).reply
    }

    /// Applies one write unless its request id was applied already (then returns that reply).
    fn apply_once(&mut self, now: i64, request_id: Option<Uuid>, op: &Op, touched: &mut BTreeSet<Uuid>) -> Reply {
        if let Some(id) = request_id {
            if let Some(previous) = self.recent_requests.get(&id) {
                return self.answer_again(previous, op);
            }
        }
        let named = op.config_named().and_then(|n| self.find_vm(n)).map(|v| v.id);
        let reply = Reply(self.apply_op(now, op, touched));
        if reply.0.is_ok() {
            // The VM the op edits, removes or makes has a new document (or none); VMs whose
            // configuration changes on the side are marked where that happens. Reports and
            // lifecycle orders build no document, so they cost the OVF store nothing.
            touched.extend(named.into_iter().chain(op.vm_made()));
        }
        if let Some(id) = request_id {
            self.remember_request(id, reply.clone());
        }
        reply
    }

    /// `touched` gathers the VMs whose configuration the op changes on the side.
    fn apply_op(&mut self, now: i64, op: &Op, touched: &mut BTreeSet<Uuid>) -> OpResult {
        self.apply_op_for(now, op, touched, None)
    }

    /// `by`: whom a write is made for (inside `OnBehalf`), for the rules that depend on it.
    fn apply_op_for(&mut self, now: i64, op: &Op, touched: &mut BTreeSet<Uuid>, by: Option<&Actor>) -> OpResult {
        let reply = self.apply_one(now, op, touched, by);
        if reply.is_ok()
            && matches!(
                op,
                Op::DeleteVm { .. }
                    | Op::RemoveHost { .. }
                    | Op::DeleteDisks { .. }
                    | Op::DeleteDisk { .. }
                    | Op::DeleteIso { .. }
                    | Op::DeleteTemplate { .. }
            )
        {
            self.forget_gone_targets();
        }
        reply
    }

    fn apply_one(&mut self, now: i64, op: &Op, touched: &mut BTreeSet<Uuid>, by: Option<&Actor>) -> OpResult {
        // A VM whose images a snapshot job holds takes no other change (oVirt's image lock);
        // the snapshot commands say so themselves.
        if !op.is_snapshot_op() {
            if let Some(vm) = op.vm_named().and_then(|n| self.find_vm(n)) {
                if let Some(job) = &vm.snapshot_state.snapshot_job {
                    return Err(snapshots::locked(vm, job));
                }
            }
        }
        match op {
            Op::Batch(_) => Err(ClusterError::invalid("batch", "batches do not nest")),
            Op::Bootstrap { cluster_name, voters, host, token_hash, token_expires_ms } => {
                self.bootstrap(now, cluster_name, *voters, host, token_hash, *token_expires_ms)
            }
            Op::AddToken { token_hash, expires_ms } => self.add_token(now, token_hash, *expires_ms),
            Op::RegisterHost { token_hash, name, address, facts } => {
                self.register_host(now, token_hash, name, address, facts)
            }
            Op::HostJoined { id, voter } => self.host_joined(now, *id, *voter),
            Op::RemoveHost { id } => self.remove_host(now, *id, touched),
            Op::LeaderElected { id, term } => self.leader_elected(now, *id, *term),
            Op::HostNonResponsive { id, silent_ms } => self.host_non_responsive(now, *id, *silent_ms),
            Op::HostDown { id, how } => self.host_down(now, *id, how, touched),
            Op::HostAlive { id, self_fenced } => self.host_alive(now, *id, self_fenced.then_some(None)),
            Op::HostAliveAfterFencing { id, fenced_ms } => self.host_alive(now, *id, Some(Some(*fenced_ms))),
            Op::RestartHaVms => self.restart_ha_vms(now),
            Op::CreateVm { id, spec, disks, start } => self.create_vm(now, *id, spec, disks, start.as_ref()),
            Op::EditVm { vm, changes } => self.edit_vm(now, vm, changes),
            Op::DeleteVm { vm, keep_disks } => self.delete_vm(now, vm, *keep_disks),
            Op::CloneVm { source, id, name, disks, macs } => self.clone_vm(now, source, *id, name, disks, macs),
            Op::StartVm { vm, order } => self.start_vm(now, vm, order),
            Op::ShutdownVm { vm, reason, timeout_s } => self.shutdown_vm(now, vm, reason.as_deref(), *timeout_s, false),
            Op::StopVm { vm, reason } => self.shutdown_vm(now, vm, reason.as_deref(), 0, true),
            Op::RebootVm { vm } => self.reboot_vm(now, vm),
            Op::SuspendVm { vm } => self.suspend_vm(now, vm, true),
            Op::ResumeVm { vm } => self.suspend_vm(now, vm, false),
            Op::MigrateVm { vm, to } => self.migrate_vm(now, vm, to.as_deref()),
            Op::CancelMigration { vm } => self.cancel_migration(now, vm),
            Op::HostMaintenance { host, reason } => self.host_maintenance(now, host, reason.as_deref()),
            Op::EvacuateHost { id } => self.evacuate(now, *id),
            Op::ActivateHost { host } => self.activate_host(now, host),
            Op::SetMigrationDefaults { changes } => self.set_migration_defaults(now, changes),
            Op::ReportVm { vm, host, epoch, observed } => self.report_vm(now, *vm, *host, *epoch, observed, touched),
            Op::RecordEvent { kind, message } => {
                self.record(now, *kind, message.clone());
                Ok(Outcome::Done)
            }
            Op::DeleteDisks { ids } => self.delete_disks(now, ids, touched),
            Op::CreateAffinityGroup { name, polarity, enforcing, vms } => {
                self.create_affinity_group(now, name, *polarity, *enforcing, vms)
            }
            Op::EditAffinityGroup { name, add_vms, remove_vms, enforcing, polarity } => {
                self.edit_affinity_group(now, name, add_vms, remove_vms, *enforcing, *polarity)
            }
            Op::DeleteAffinityGroup { name } => self.delete_affinity_group(now, name),
            Op::CreateAffinityLabel { name, vms, hosts } => self.create_affinity_label(now, name, vms, hosts),
            Op::EditAffinityLabel { name, add_vms, remove_vms, add_hosts, remove_hosts } => {
                self.edit_affinity_label(now, name, add_vms, remove_vms, add_hosts, remove_hosts)
            }
            Op::DeleteAffinityLabel { name } => self.delete_affinity_label(now, name),
            Op::EditHost { host, tags } => self.edit_host(now, host, tags.as_deref()),
            Op::ImportVm { vm, disks, engine, start } => self.import_vm(now, vm, disks, *engine, start.as_ref()),
            Op::SetEngineMaintenance { global, local } => self.set_engine_maintenance(now, *global, local.as_ref()),
            Op::ReportEngineScore { host, score } => self.report_engine_score(now, *host, score),
            Op::AdoptVm { vm, host } => self.adopt_vm(now, *vm, *host),
            Op::SetClusterLevel { level } => self.set_cluster_level(now, *level),
            Op::SetCa { ca_pem } => self.set_ca(now, ca_pem),
            Op::RevokeToken { id } => self.revoke_token(now, id),
            Op::CreateDisk { disk } => self.create_disk(now, disk),
            Op::ResizeDisk { disk, size_mib } => self.resize_disk(now, disk, *size_mib, touched),
            Op::DeleteDisk { disk } => self.delete_disk(now, disk),
            Op::AttachDisk { vm, disk, new, attachment } => self.attach_disk(now, vm, disk, new.as_ref(), attachment),
            Op::DetachDisk { vm, disk } => self.detach_disk(now, vm, disk),
            Op::PlugDisk { vm, disk, plugged } => self.plug_disk(now, vm, disk, *plugged),
            Op::AddNic { vm, nic } => self.add_nic(now, vm, nic),
            Op::RemoveNic { vm, nic } => self.remove_nic(now, vm, nic),
            Op::PlugNic { vm, nic, plugged } => self.plug_nic(now, vm, nic, *plugged),
            Op::CreateSnapshot { vm, id, description, memory, disks, worker } => {
                self.create_snapshot(now, vm, *id, description, *memory, disks.as_deref(), *worker)
            }
            Op::PreviewSnapshot { vm, snapshot, memory, disks, config, worker } => {
                self.preview_snapshot(now, vm, snapshot, *memory, disks.as_deref(), *config, *worker)
            }
            Op::CommitSnapshot { vm, worker } => self.commit_snapshot(now, vm, *worker),
            Op::UndoSnapshot { vm, worker } => self.undo_snapshot(now, vm, *worker),
            Op::RestoreSnapshot { vm, snapshot, worker } => self.restore_snapshot(now, vm, snapshot, *worker, touched),
            Op::DeleteSnapshot { vm, snapshot, worker } => self.delete_snapshot(now, vm, snapshot, *worker),
            Op::SnapshotJobDone { vm, seq, error, domain_xml, memory_mib } => {
                self.snapshot_job_done(now, *vm, *seq, error.as_deref(), domain_xml.as_deref(), *memory_mib, touched)
            }
            Op::CloneFromSnapshot { source, snapshot, id, name, disks, macs } => {
                self.clone_from_snapshot(now, source, snapshot, *id, name, disks, macs)
            }
            Op::SetSnapshotCap { max } => self.set_snapshot_cap(now, *max),
            Op::AddIso { iso } => self.add_iso(now, iso),
            Op::DeleteIso { iso } => self.delete_iso(now, iso),
            Op::CreateTemplate { vm, template } => self.create_template(now, vm, template),
            Op::DeleteTemplate { template } => self.delete_template(now, template),
            Op::CreateOffering { offering } => self.create_offering(now, offering),
            Op::EditOffering { offering, changes } => self.edit_offering(now, offering, changes),
            Op::DeleteOffering { offering } => self.delete_offering(now, offering, touched),
            Op::OnBehalf { actor, credential, needs, op } => match op.as_ref() {
                Op::OnBehalf { .. } | Op::Batch(_) => {
                    Err(ClusterError::invalid("op", "a write for a user does not nest"))
                }
                inner => self.on_behalf(now, actor, credential.as_deref(), needs, inner, touched),
            },
            Op::CreateUser { name, password_hash } => self.create_user(now, name, password_hash.as_deref()),
            Op::DeleteUser { name } => self.delete_user(now, name, by),
            Op::SetPassword { name, password_hash } => self.set_password(now, name, password_hash.as_deref(), by),
            Op::CreateGroup { name, users } => self.create_group(now, name, users),
            Op::EditGroup { name, users, add, remove } => self.edit_group(now, name, users.as_deref(), add, remove, by),
            Op::DeleteGroup { name } => self.delete_group(now, name),
            Op::CreateRole { name, permissions } => self.create_role(now, name, permissions, by),
            Op::EditRole { name, permissions } => self.edit_role(now, name, permissions, by),
            Op::DeleteRole { name } => self.delete_role(now, name),
            Op::AddPermission { permission } => self.add_permission(now, permission, by),
            Op::RemovePermission { permission } => self.remove_permission(now, permission, by),
            Op::StartSession { hash, user, expires_ms, source } => {
                self.start_session(now, hash, user, *expires_ms, source)
            }
            Op::EndSession { hash } => self.end_session(now, hash),
            Op::CreateApiToken { hash, user, name, expires_ms } => {
                self.create_api_token(now, hash, user, name, *expires_ms, by)
            }
            Op::RevokeApiToken { user, name } => self.revoke_api_token(now, user, name),
            Op::LoginFailed { user, source, failures } => self.login_failed(now, user, source, *failures),
            Op::SetSchedulingPolicy { policy, cpu_overcommit } => {
                self.set_scheduling_policy(now, *policy, *cpu_overcommit)
            }
        }
    }

    fn require_cluster(&self) -> Result<&ClusterInfo, ClusterError> {
        self.cluster
            .as_ref()
            .ok_or_else(|| ClusterError::FailedPrecondition("the cluster is not bootstrapped".to_string()))
    }

    /// Says in the event log, under `kind`, that a command was refused because the state
    /// contradicts itself, when `e` is such a refusal (an internal error): every node refuses it
    /// alike where a panic would stop them all. Returns `e` for the reply.
    pub(crate) fn note_refusal(&mut self, now: i64, kind: EventKind, e: ClusterError) -> ClusterError {
        if let ClusterError::Internal(why) = &e {
            self.record(now, kind, format!("A command was refused: {why}."));
        }
        e
    }

    pub(crate) fn record(&mut self, now: i64, kind: EventKind, message: String) {
        self.next_event_index += 1;
        self.push_event(Event { index: self.next_event_index, time_ms: now, kind, message, user: None });
    }

    /// Appends an event to the log, which keeps at most `MAX_EVENTS` events and
    /// `MAX_EVENT_BYTES` of their text, dropping the oldest first.
    pub(crate) fn push_event(&mut self, event: Event) {
        let bytes = self.tallies.events(&self.events);
        *bytes += weight_of_event(&event);
        self.events.push_back(event);
        while self.events.len() > MAX_EVENTS || *bytes > MAX_EVENT_BYTES {
            let Some(old) = self.events.pop_front() else { break };
            *bytes -= weight_of_event(&old);
        }
    }

    /// Changes the events recorded after index `after` (the newest), keeping the log's bounds.
    pub(crate) fn edit_events_after(&mut self, after: u64, mut f: impl FnMut(&mut Event)) {
        let bytes = self.tallies.events(&self.events);
        for e in self.events.iter_mut().rev().take_while(|e| e.index > after) {
            *bytes -= weight_of_event(e);
            f(e);
            *bytes += weight_of_event(e);
        }
        while *bytes > MAX_EVENT_BYTES && self.events.len() > 1 {
            let Some(old) = self.events.pop_front() else { break };
            *bytes -= weight_of_event(&old);
        }
    }

    /// Keeps a write's reply for its retries, as little of it as a retry needs: from cluster level
    /// 1 a VM is not kept (a retry is answered with the VM as the state has it then,
    /// `answer_again`). At most
    /// `MAX_RECENT_REQUESTS` replies and `MAX_RECENT_REQUEST_BYTES` of them (encoded), the
    /// oldest dropped first.
    fn remember_request(&mut self, id: Uuid, reply: Reply) {
        // At cluster level 0 (a rolling upgrade from release 3f21f51) the reply is kept whole,
        // as that release keeps it, so that both builds hold the same state.
        let level = self.cluster.as_ref().map_or(0, |c| c.level);
        let kept = match reply.0 {
            Ok(Outcome::Vm(_)) if level >= 1 => Reply(Ok(VM_AS_NOW)),
            other => Reply(other),
        };
        let bytes = self.tallies.replies(&self.recent_requests);
        *bytes += weight_of_reply(&kept);
        if let Some(old) = self.recent_requests.insert(id, kept) {
            *bytes -= weight_of_reply(&old);
        } else {
            self.recent_order.push_back(id);
        }
        while self.recent_order.len() > MAX_RECENT_REQUESTS || *bytes > MAX_RECENT_REQUEST_BYTES {
            let Some(old) = self.recent_order.pop_front() else { break };
            if let Some(r) = self.recent_requests.remove(&old) {
                *bytes -= weight_of_reply(&r);
            }
        }
    }

    /// The reply to a write applied before under the same request id: as kept, or, for one that
    /// answered with a VM, that VM as it is now (gone since: not found).
    fn answer_again(&self, previous: &Reply, op: &Op) -> Reply {
        if previous.0.as_ref().ok() != Some(&VM_AS_NOW) {
            return previous.clone();
        }
        let by_id = if let Op::AdoptVm { vm, .. } = op { Some(*vm) } else { op.vm_made() };
        let vm = by_id.and_then(|id| self.vms.get(&id)).or_else(|| op.vm_answered().and_then(|n| self.find_vm(n)));
        match vm {
            Some(vm) => Reply(Ok(Outcome::Vm(Box::new(vm.clone())))),
            None => Reply(Err(ClusterError::vm_not_found(op.vm_answered().unwrap_or("of the request")))),
        }
    }
}

/// What the reply cache keeps for a write that answered with a VM: never the answer to a single
/// write otherwise (batches do not nest), so it cannot be mistaken for one, and it is a value
/// every build reads (a new variant would not be).
pub(crate) const VM_AS_NOW: Outcome = Outcome::Batch(Vec::new());

/// How much a kept reply counts towards `MAX_RECENT_REQUEST_BYTES`: its encoded size.
pub(crate) fn weight_of_reply(reply: &Reply) -> u64 {
    // A reply that cannot be encoded could not be stored either; count it large.
    rmp_serde::to_vec_named(reply).map_or(4096, |b| b.len() as u64)
}

/// How much an event counts towards `MAX_EVENT_BYTES`: its text and a fixed part.
pub(crate) fn weight_of_event(e: &Event) -> u64 {
    (48 + e.message.len() + e.user.as_ref().map_or(0, String::len)) as u64
}

/// The error of a command refused because the state contradicts itself (a record that another
/// one names is missing).
pub(crate) fn inconsistent(what: &str) -> ClusterError {
    ClusterError::Internal(format!("the cluster's state is inconsistent: {what}"))
}

mod affinity;
pub mod auth;
pub mod devices;
pub mod edit;
mod engine;
mod ha;
mod hosts;
pub mod library;
mod lifecycle;
pub mod migration;
mod report;
mod scheduling;
pub mod snapshots;
mod vms;

#[cfg(test)]
mod tests;
