//! `apply`: the deterministic function from (state, command) to (state, reply).
//! A command that is refused leaves the state exactly as it was: every check happens before
//! the first change. No clocks, no randomness, no I/O here.

use std::collections::BTreeSet;

use corral_storage::codec::CodecError;
use corral_storage::legacy::Applied as SnapshotApplied;
use corral_storage::{Effect, Machine};
use uuid::Uuid;

use crate::command::{Command, NewHost, Op, Outcome, Reply, StartOrder, VmChanges, VmSpec};
use crate::error::ClusterError;
use crate::model::{
    ClusterInfo, ClusterState, Disk, Event, EventKind, HaSettings, Host, HostFacts, HostState, JoinToken,
    SchedulingPolicy, Vm, VmStatus, DEFAULT_CPU_OVERCOMMIT, MAX_EVENTS, MAX_RECENT_REQUESTS,
};
use crate::typ::{LogId, NodeId, TypeConfig};
use crate::validate;

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

    /// The cluster level.
    fn format(&self) -> Option<u8> {
        self.cluster.as_ref().map(|c| c.level)
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
                return previous.clone();
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
        match op {
            Op::Batch(_) => Err(ClusterError::invalid("batch", "batches do not nest")),
            Op::Bootstrap { cluster_name, voters, host, token_hash, token_expires_ms } => {
                self.bootstrap(now, cluster_name, *voters, host, token_hash, *token_expires_ms)
            }
            Op::AddToken { token_hash, expires_ms } => {
                self.require_cluster()?;
                self.prune_tokens(now);
                self.tokens.insert(token_hash.clone(), JoinToken { created_ms: now, expires_ms: *expires_ms });
                let ttl = human_duration(expires_ms.saturating_sub(now));
                self.record(now, EventKind::TokenCreated, format!("A join token was created; it expires in {ttl}."));
                Ok(Outcome::Done)
            }
            Op::RegisterHost { token_hash, name, address, facts } => {
                self.register_host(now, token_hash, name, address, facts)
            }
            Op::HostJoined { id, voter } => {
                let host =
                    self.hosts.get_mut(id).ok_or_else(|| ClusterError::NotFound(format!("host {id} not found")))?;
                host.state = HostState::Up;
                host.state_since_ms = now;
                let msg =
                    format!("Host {} joined the cluster as a {}.", host.name, if *voter { "voter" } else { "learner" });
                self.record(now, EventKind::HostJoined, msg);
                Ok(Outcome::Done)
            }
            Op::RemoveHost { id } => {
                let name = self
                    .hosts
                    .get(id)
                    .ok_or_else(|| ClusterError::NotFound(format!("host {id} not found")))?
                    .name
                    .clone();
                self.check_host_empty(*id, &name)?;
                let host = self.hosts.remove(id).expect("found above");
                touched.extend(self.forget_host_in_rules(*id));
                self.record(now, EventKind::HostLeft, format!("Host {} left the cluster.", host.name));
                Ok(Outcome::Done)
            }
            Op::LeaderElected { id, term } => {
                // A node restarted as the leader of an old term may propose this before it
                // learns of the newer term: only a newer term is news.
                if self.leader.is_some_and(|(_, t)| *term <= t) {
                    return Ok(Outcome::Done);
                }
                self.leader = Some((*id, *term));
                let name = self.hosts.get(id).map_or_else(|| format!("node {id}"), |h| h.name.clone());
                self.record(now, EventKind::LeaderChanged, format!("Host {name} is the new leader (term {term})."));
                Ok(Outcome::Done)
            }
            Op::HostNonResponsive { id, silent_ms } => self.host_non_responsive(now, *id, *silent_ms),
            Op::HostDown { id, how } => self.host_down(now, *id, how, touched),
            Op::HostAlive { id, self_fenced } => self.host_alive(now, *id, *self_fenced),
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
            Op::DeleteDisks { ids } => {
                let protected = ids.iter().filter_map(|id| self.disks.get(id)).find_map(|d| {
                    let vm = self.vms.get(&d.vm?)?;
                    vm.delete_protected.then(|| (d.name.clone(), vm.name.clone()))
                });
                if let Some((disk, vm)) = protected {
                    return Err(ClusterError::FailedPrecondition(format!(
                        "disk '{disk}' belongs to delete-protected vm '{vm}' and cannot be removed"
                    )));
                }
                for id in ids {
                    if let Some(d) = self.disks.remove(id) {
                        touched.extend(d.vm);
                        self.record(now, EventKind::DiskDeleted, format!("Disk {} was deleted.", d.name));
                    }
                }
                Ok(Outcome::Done)
            }
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
            Op::SetSchedulingPolicy { policy, cpu_overcommit } => {
                self.set_scheduling_policy(now, *policy, *cpu_overcommit)
            }
        }
    }

    fn bootstrap(
        &mut self,
        now: i64,
        cluster_name: &str,
        voters: u8,
        host: &NewHost,
        token_hash: &str,
        token_expires_ms: i64,
    ) -> OpResult {
        if let Some(c) = &self.cluster {
            return Err(ClusterError::FailedPrecondition(format!("this node already belongs to cluster '{}'", c.name)));
        }
        validate::name("cluster name", cluster_name)?;
        validate::name("host name", &host.name)?;
        if !matches!(voters, 1 | 3 | 5) {
            return Err(ClusterError::invalid("voters", format!("must be 3 or 5 (got {voters})")));
        }
        self.cluster = Some(ClusterInfo {
            name: cluster_name.to_string(),
            voters,
            created_ms: now,
            scheduling: SchedulingPolicy::default(),
            cpu_overcommit: DEFAULT_CPU_OVERCOMMIT,
            // The bootstrapping node raises it next (a constant here would make nodes of
            // different builds apply the same entry differently).
            level: 0,
        });
        self.hosts.insert(
            host.id,
            Host {
                id: host.id,
                name: host.name.clone(),
                address: host.address.clone(),
                state: HostState::Up,
                facts: host.facts.clone(),
                joined_ms: now,
                state_since_ms: now,
                maintenance: None,
                tags: Vec::new(),
                engine_local_maintenance: false,
                engine_score: None,
            },
        );
        self.tokens.insert(token_hash.to_string(), JoinToken { created_ms: now, expires_ms: token_expires_ms });
        self.record(
            now,
            EventKind::ClusterBootstrapped,
            format!("Cluster {cluster_name} was bootstrapped on host {}.", host.name),
        );
        Ok(Outcome::Done)
    }

    fn register_host(&mut self, now: i64, token_hash: &str, name: &str, address: &str, facts: &HostFacts) -> OpResult {
        let cluster_name = self.require_cluster()?.name.clone();
        if !self.token_valid(token_hash, now) {
            return Err(ClusterError::PermissionDenied("the join token is not valid or has expired".to_string()));
        }
        validate::name("host name", name)?;
        if let Some(existing) = self.host_by_name(name) {
            // A join that failed half-way may be retried by the same node.
            if existing.address == address && existing.state == HostState::Joining {
                return Ok(Outcome::HostRegistered { id: existing.id, cluster_name });
            }
            return Err(ClusterError::AlreadyExists(format!("host '{name}' already exists")));
        }
        if let Some(other) = self.hosts.values().find(|h| h.address == address) {
            return Err(ClusterError::AlreadyExists(format!(
                "address {address} is already used by host '{}'",
                other.name
            )));
        }
        let id: NodeId = self.hosts.keys().next_back().map_or(1, |max| max + 1);
        self.hosts.insert(
            id,
            Host {
                id,
                name: name.to_string(),
                address: address.to_string(),
                state: HostState::Joining,
                facts: facts.clone(),
                joined_ms: now,
                state_since_ms: now,
                maintenance: None,
                tags: Vec::new(),
                engine_local_maintenance: false,
                engine_score: None,
            },
        );
        Ok(Outcome::HostRegistered { id, cluster_name })
    }

    fn create_vm(&mut self, now: i64, id: Uuid, spec: &VmSpec, disks: &[Disk], start: Option<&StartOrder>) -> OpResult {
        self.require_cluster()?;
        validate::vm_spec(spec)?;
        if self.vm_names.contains_key(&spec.name) {
            return Err(ClusterError::AlreadyExists(format!("vm '{}' already exists", spec.name)));
        }
        if self.vms.contains_key(&id) {
            return Err(ClusterError::AlreadyExists(format!("a vm with id {id} already exists")));
        }
        self.check_new_disks(disks)?;
        let vm = Vm {
            description: spec.description.clone(),
            comment: spec.comment.clone(),
            ha: HaSettings { enabled: spec.ha_enabled, priority: spec.ha_priority },
            resume_behavior: spec.resume_behavior,
            disks: disks.iter().map(|d| d.id).collect(),
            nics: spec.nics.clone(),
            domain_type: spec.domain_type,
            boot: spec.boot.clone(),
            ..Vm::new(id, &spec.name, spec.memory_mib, spec.vcpus, now)
        };
        // With --start, a VM that cannot be placed is not created either: nothing half-done.
        if let Some(order) = start {
            let mut trial = self.clone_for_trial(&vm);
            trial.start_vm(now, &vm.name, order)?;
        }
        let msg = format!(
            "VM {} was created ({} MiB, {} vCPU{}{}{}).",
            vm.name,
            vm.memory_mib,
            vm.vcpus,
            if vm.vcpus == 1 { "" } else { "s" },
            if disks.is_empty() {
                String::new()
            } else {
                format!(", {} disk{}", disks.len(), if disks.len() == 1 { "" } else { "s" })
            },
            if vm.ha.enabled { format!(", highly available, {} priority", vm.ha.priority) } else { String::new() }
        );
        for d in disks {
            self.disks.insert(d.id, Disk { vm: Some(id), created_ms: now, ..d.clone() });
        }
        self.add_vm(now, vm, msg, start)
    }

    /// Records a new VM (its disks recorded already) with its event, and starts it if asked
    /// (the caller tried the start on a copy of the state first, so it is not refused here).
    pub(crate) fn add_vm(&mut self, now: i64, vm: Vm, msg: String, start: Option<&StartOrder>) -> OpResult {
        let id = vm.id;
        self.vm_names.insert(vm.name.clone(), id);
        self.vms.insert(id, vm);
        self.record(now, EventKind::VmCreated, msg);
        match start {
            Some(order) => self.start_vm(now, &id.to_string(), order),
            None => Ok(Outcome::Vm(Box::new(self.vms[&id].clone()))),
        }
    }

    /// A copy of the placement-relevant state with `vm` added, to try a start without
    /// changing anything.
    fn clone_for_trial(&self, vm: &Vm) -> ClusterState {
        let mut trial = ClusterState {
            cluster: self.cluster.clone(),
            hosts: self.hosts.clone(),
            vms: self.vms.clone(),
            vm_names: self.vm_names.clone(),
            affinity_groups: self.affinity_groups.clone(),
            affinity_labels: self.affinity_labels.clone(),
            ..Default::default()
        };
        trial.vm_names.insert(vm.name.clone(), vm.id);
        trial.vms.insert(vm.id, vm.clone());
        trial
    }

    fn check_new_disks(&self, disks: &[Disk]) -> Result<(), ClusterError> {
        for d in disks {
            if self.disks.contains_key(&d.id) || self.disks.values().any(|x| x.name == d.name || x.file == d.file) {
                return Err(ClusterError::AlreadyExists(format!("disk '{}' already exists", d.name)));
            }
            if d.size_mib == 0 {
                return Err(ClusterError::invalid("disk", "must be at least 1 MiB"));
            }
        }
        Ok(())
    }

    fn delete_vm(&mut self, now: i64, name_or_id: &str, keep_disks: bool) -> OpResult {
        self.require_cluster()?;
        let vm = self.find_vm(name_or_id).ok_or_else(|| ClusterError::vm_not_found(name_or_id))?;
        if vm.hosted_engine {
            return Err(ClusterError::FailedPrecondition(format!(
                "vm '{}' is the cluster's hosted engine and cannot be deleted",
                vm.name
            )));
        }
        if vm.delete_protected {
            return Err(ClusterError::FailedPrecondition(format!(
                "vm '{}' is delete-protected; lift it first with `corral vm edit {} --delete-protected false`",
                vm.name, vm.name
            )));
        }
        if vm.status != VmStatus::Down {
            return Err(ClusterError::FailedPrecondition(format!(
                "vm '{}' is {}; shut it down before deleting it",
                vm.name,
                vm.status.as_str()
            )));
        }
        let id = vm.id;
        let removed = self.vms.remove(&id).expect("found above");
        self.vm_names.remove(&removed.name);
        self.forget_vm_in_rules(id);
        let mut files = Vec::new();
        for disk_id in &removed.disks {
            if keep_disks {
                if let Some(d) = self.disks.get_mut(disk_id) {
                    d.vm = None;
                }
            } else if let Some(d) = self.disks.remove(disk_id) {
                files.push(d.file);
            }
        }
        let disks_note = match (removed.disks.len(), keep_disks) {
            (0, _) => String::new(),
            (n, true) => format!(" Its {n} disk(s) were kept as floating disks."),
            (n, false) => format!(" Its {n} disk(s) were deleted."),
        };
        self.record(now, EventKind::VmDeleted, format!("VM {} was deleted.{disks_note}", removed.name));
        Ok(Outcome::VmDeleted { id, files })
    }

    fn clone_vm(&mut self, now: i64, source: &str, id: Uuid, name: &str, disks: &[Disk], macs: &[String]) -> OpResult {
        self.require_cluster()?;
        let src = self.find_vm(source).ok_or_else(|| ClusterError::vm_not_found(source))?.clone();
        if src.status != VmStatus::Down {
            return Err(ClusterError::FailedPrecondition(format!(
                "vm '{}' is {}; only a down VM can be cloned",
                src.name,
                src.status.as_str()
            )));
        }
        validate::name("name", name)?;
        if self.vm_names.contains_key(name) {
            return Err(ClusterError::AlreadyExists(format!("vm '{name}' already exists")));
        }
        if disks.len() != src.disks.len() || macs.len() != src.nics.len() {
            return Err(ClusterError::Internal("a clone must copy every disk and give every NIC a new MAC".into()));
        }
        self.check_new_disks(disks)?;
        let mut vm = src.clone();
        vm.id = id;
        vm.name = name.to_string();
        // A copy of the engine VM is an ordinary VM (its delete protection stays, and may be
        // lifted).
        vm.hosted_engine = false;
        vm.disks = disks.iter().map(|d| d.id).collect();
        for (nic, mac) in vm.nics.iter_mut().zip(macs) {
            nic.mac = mac.clone();
        }
        vm.epoch = 0;
        vm.stop_reason = None;
        vm.ha_restart = None;
        vm.ha_restarting = false;
        vm.created_ms = now;
        vm.updated_ms = now;
        for d in disks {
            self.disks.insert(d.id, Disk { vm: Some(id), created_ms: now, ..d.clone() });
        }
        self.vm_names.insert(vm.name.clone(), id);
        self.vms.insert(id, vm.clone());
        self.record(now, EventKind::VmCreated, format!("VM {name} was created as a clone of {}.", src.name));
        Ok(Outcome::Vm(Box::new(vm)))
    }

    fn edit_vm(&mut self, now: i64, name_or_id: &str, c: &VmChanges) -> OpResult {
        self.require_cluster()?;
        validate::vm_changes(c)?;
        let before = self.find_vm(name_or_id).ok_or_else(|| ClusterError::vm_not_found(name_or_id))?.clone();
        if let Some(new_name) = &c.name {
            if *new_name != before.name && self.vm_names.contains_key(new_name) {
                return Err(ClusterError::AlreadyExists(format!("vm '{new_name}' already exists")));
            }
        }
        let mut vm = before.clone();
        let mut what = Vec::new();
        if let Some(v) = &c.name {
            if *v != vm.name {
                what.push(format!("name {} -> {v}", vm.name));
                vm.name = v.clone();
            }
        }
        // Memory, vCPUs and domain type of a VM that is not down wait for its next run.
        let running = vm.status != VmStatus::Down;
        let mut next = vm.next_run.take().unwrap_or_default();
        if let Some(v) = c.memory_mib {
            if running && v != vm.memory_mib {
                what.push(format!("memory {} -> {v} MiB on its next run", vm.memory_mib));
                next.memory_mib = Some(v);
            } else if running {
                next.memory_mib = None;
            } else if v != vm.memory_mib {
                what.push(format!("memory {} -> {v} MiB", vm.memory_mib));
                vm.memory_mib = v;
            }
        }
        if let Some(v) = c.vcpus {
            if running && v != vm.vcpus {
                what.push(format!("vCPUs {} -> {v} on its next run", vm.vcpus));
                next.vcpus = Some(v);
            } else if running {
                next.vcpus = None;
            } else if v != vm.vcpus {
                what.push(format!("vCPUs {} -> {v}", vm.vcpus));
                vm.vcpus = v;
            }
        }
        if let Some(v) = c.domain_type {
            if running && Some(v) != vm.domain_type {
                what.push(format!("domain type {} on its next run", v.as_str()));
                next.domain_type = Some(v);
            } else if running {
                next.domain_type = None;
            } else if Some(v) != vm.domain_type {
                what.push(format!("domain type {}", v.as_str()));
                vm.domain_type = Some(v);
            }
        }
        vm.next_run = Some(next).filter(|n| !n.is_empty());
        if let Some(v) = &c.description {
            if *v != vm.description {
                what.push("description".to_string());
                vm.description = v.clone();
            }
        }
        if let Some(v) = &c.comment {
            if *v != vm.comment {
                what.push("comment".to_string());
                vm.comment = v.clone();
            }
        }
        if let Some(v) = c.ha_enabled {
            if v != vm.ha.enabled {
                what.push(format!("highly available {} -> {v}", vm.ha.enabled));
                vm.ha.enabled = v;
                if !v && vm.ha_restart.take().is_some() {
                    what.push("its pending HA restart cancelled".to_string());
                }
            }
        }
        if let Some(change) = &c.migration_settings {
            let v = change.apply_to(&vm.migration_settings);
            if v.max_downtime_ms == Some(0) || v.bandwidth_mibps == Some(0) {
                return Err(ClusterError::invalid("migration", "max downtime and bandwidth must be more than 0"));
            }
            if v != vm.migration_settings {
                what.push("migration settings".to_string());
                vm.migration_settings = v;
            }
        }
        if let Some(v) = c.resume_behavior {
            if v != vm.resume_behavior {
                what.push(format!("resume behaviour {} -> {}", vm.resume_behavior.as_str(), v.as_str()));
                vm.resume_behavior = v;
            }
        }
        if let Some(v) = c.ha_priority {
            if v != vm.ha.priority {
                what.push(format!("HA priority {} -> {v}", vm.ha.priority));
                vm.ha.priority = v;
            }
        }
        if let Some(v) = c.delete_protected.filter(|v| *v != vm.delete_protected) {
            if !v && vm.hosted_engine {
                return Err(ClusterError::FailedPrecondition(format!(
                    "vm '{}' is the cluster's hosted engine; it stays delete-protected",
                    vm.name
                )));
            }
            what.push(format!("delete protection {}", if v { "on" } else { "off" }));
            vm.delete_protected = v;
        }
        if let Some(v) = c.os.as_ref().filter(|v| **v != vm.os) {
            what.push(format!("operating system {} -> {v}", vm.os));
            vm.os = v.clone();
        }
        self.edit_vm_placement(&mut vm, c, &mut what)?;
        if what.is_empty() {
            // Nothing new, but a pending next-run value set back to the running one is gone.
            if vm.next_run != before.next_run {
                self.vms.insert(vm.id, vm.clone());
            }
            return Ok(Outcome::Vm(Box::new(vm)));
        }
        vm.updated_ms = now;
        let msg = format!("VM {} was edited: {}.", before.name, what.join(", "));
        self.vm_names.remove(&before.name);
        self.vm_names.insert(vm.name.clone(), vm.id);
        self.vms.insert(vm.id, vm.clone());
        self.record(now, EventKind::VmEdited, msg);
        Ok(Outcome::Vm(Box::new(vm)))
    }

    /// Refuses to take away a host that VMs are assigned or migrating to.
    pub fn check_host_empty(&self, id: NodeId, name: &str) -> Result<(), ClusterError> {
        let busy: Vec<&str> = self
            .vms
            .values()
            .filter(|v| v.host == Some(id) || v.migrating_to == Some(id))
            .map(|v| v.name.as_str())
            .collect();
        if busy.is_empty() {
            return Ok(());
        }
        Err(ClusterError::FailedPrecondition(format!(
            "host {name} still runs VM(s) {}: stop or migrate them first",
            busy.join(", ")
        )))
    }

    fn require_cluster(&self) -> Result<&ClusterInfo, ClusterError> {
        self.cluster
            .as_ref()
            .ok_or_else(|| ClusterError::FailedPrecondition("the cluster is not bootstrapped".to_string()))
    }

    fn prune_tokens(&mut self, now: i64) {
        self.tokens.retain(|_, t| t.expires_ms > now);
    }

    pub(crate) fn record(&mut self, now: i64, kind: EventKind, message: String) {
        self.next_event_index += 1;
        self.events.push_back(Event { index: self.next_event_index, time_ms: now, kind, message });
        while self.events.len() > MAX_EVENTS {
            self.events.pop_front();
        }
    }

    fn remember_request(&mut self, id: Uuid, reply: Reply) {
        self.recent_requests.insert(id, reply);
        self.recent_order.push_back(id);
        while self.recent_order.len() > MAX_RECENT_REQUESTS {
            if let Some(old) = self.recent_order.pop_front() {
                self.recent_requests.remove(&old);
            }
        }
    }
}

fn human_duration(ms: i64) -> String {
    let s = ms.max(0) / 1000;
    match s {
        s if s % 86_400 == 0 && s > 0 => format!("{} d", s / 86_400),
        s if s % 3600 == 0 && s > 0 => format!("{} h", s / 3600),
        s if s % 60 == 0 && s > 0 => format!("{} min", s / 60),
        s => format!("{s} s"),
    }
}

mod affinity;
mod engine;
mod ha;
mod lifecycle;
pub mod migration;
mod scheduling;

#[cfg(test)]
mod tests;
