//! The hosted engine and the OVF side of the VM lifecycle: importing a VM from an OVF document
//! (the engine VM of a bootstrap is one), engine maintenance, hosts' engine scores, and taking
//! back an engine VM an operator started by hand while the cluster had no quorum.

use std::collections::HashSet;

use uuid::Uuid;

use super::OpResult;
use crate::command::{Outcome, StartOrder, VmSpec};
use crate::error::ClusterError;
use crate::model::{ClusterState, Disk, EngineScore, EventKind, HaPriority, HaSettings, PowerState, Vm, VmStatus};
use crate::typ::NodeId;
use crate::validate;

impl ClusterState {
    pub(super) fn import_vm(
        &mut self,
        now: i64,
        vm: &Vm,
        disks: &[Disk],
        engine: bool,
        start: Option<&StartOrder>,
    ) -> OpResult {
        self.require_cluster()?;
        self.check_import(vm, engine)?;
        let new_disks = self.check_import_disks(vm, disks)?;
        self.check_new_disks(&new_disks)?;
        let mut vm = crate::ovf::config_of(vm);
        vm.config.updated_ms = now;
        // Its snapshots come along from level 4 (an earlier build would not read them): none
        // is in preview or worked on after an import.
        if self.snapshot_level() {
            for snap in &mut vm.snapshot_state.snapshots {
                snap.status = crate::model::SnapshotStatus::Ok;
            }
            let st = &mut vm.snapshot_state;
            st.current_snapshot = st.current_snapshot.filter(|c| st.snapshots.iter().any(|s| s.id == *c));
        } else {
            vm.snapshot_state = Default::default();
        }
        if !self.library_level() {
            // What the library gives a VM comes along from level 5 (an earlier build would not
            // read it, and every member must apply the import alike).
            crate::model::LibraryFields::clear(&mut vm.config);
        }
        if self.hotplug_level() {
            // An imported VM is down: it starts with the configuration it would have run next.
            vm.settle_next_run();
        }
        vm.config.hosted_engine = engine;
        if engine {
            vm.config.delete_protected = true;
            vm.config.ha = HaSettings { enabled: true, priority: HaPriority::High };
        }
        if let Some(order) = start {
            self.start_placement(&vm, order)?;
        }
        let id = vm.id;
        let library = self.library_level();
        for d in disks {
            // A floating disk that exists keeps its own record (name, size); it is attached.
            let record = self.disks.get(&d.id).cloned().unwrap_or_else(|| d.clone());
            // A thin disk keeps its base only when that base is one of this cluster's.
            let known = |b: &uuid::Uuid| self.library.templates.values().any(|t| t.disks.iter().any(|x| x.id == *b));
            let base = if library { record.base.filter(known) } else { None };
            self.disks.insert(d.id, Disk { vm: Some(id), base, ..record });
        }
        if engine {
            self.engine.vm = Some(id);
        }
        let msg = imported(&vm, disks.len(), engine);
        self.add_vm(now, vm, msg, start)
    }

    /// Refuses an imported VM whose configuration is invalid or clashes with the cluster's
    /// VMs (name, id, MAC addresses), hosts (pins) or hosted engine.
    fn check_import(&self, vm: &Vm, engine: bool) -> Result<(), ClusterError> {
        validate::vm_spec(&VmSpec {
            name: vm.config.name.clone(),
            description: vm.config.description.clone(),
            comment: vm.config.comment.clone(),
            memory_mib: vm.config.memory_mib,
            vcpus: vm.config.vcpus,
            ha_enabled: vm.config.ha.enabled,
            ha_priority: vm.config.ha.priority,
            resume_behavior: vm.config.resume_behavior,
            nics: vm.config.nics.clone(),
            domain_type: vm.config.domain_type,
            boot: vm.config.boot.clone(),
            max_vcpus: vm.config.max_vcpus,
            max_memory_mib: vm.config.max_memory_mib,
            ..VmSpec::default()
        })?;
        validate::names("host_tags", &vm.config.host_tags)?;
        if self.vm_names.contains_key(&vm.config.name) {
            return Err(ClusterError::AlreadyExists(format!(
                "vm '{}' already exists; import under another name with --name",
                vm.config.name
            )));
        }
        if let Some(other) = self.vms.get(&vm.id) {
            return Err(ClusterError::AlreadyExists(format!(
                "vm '{}' already has id {}; import with --clone for a new id, new MACs and copied disks",
                other.config.name, vm.id
            )));
        }
        self.check_import_macs(vm)?;
        if let Some(h) = vm.config.pinned_hosts.iter().find(|h| !self.hosts.contains_key(h)) {
            return Err(ClusterError::NotFound(format!(
                "vm '{}' is pinned to host {h}, which is not in this cluster",
                vm.config.name
            )));
        }
        if let Some(e) = self.engine_vm().filter(|_| engine) {
            return Err(ClusterError::AlreadyExists(format!(
                "the cluster already has a hosted engine: vm '{}'",
                e.config.name
            )));
        }
        Ok(())
    }

    fn check_import_macs(&self, vm: &Vm) -> Result<(), ClusterError> {
        let macs: HashSet<&str> = vm.config.nics.iter().map(|n| n.mac.as_str()).collect();
        if macs.len() != vm.config.nics.len() {
            return Err(ClusterError::invalid("nics", "two NICs of the VM have the same MAC address"));
        }
        let taken = self
            .vms
            .values()
            .find_map(|o| o.config.nics.iter().find(|n| macs.contains(n.mac.as_str())).map(|n| (o, &n.mac)));
        if let Some((other, mac)) = taken {
            return Err(ClusterError::AlreadyExists(format!(
                "MAC address {mac} is already used by vm '{}'; import with --clone for new MACs",
                other.config.name
            )));
        }
        Ok(())
    }

    /// Checks an imported VM's disks: every one named, in order, none twice; one that exists
    /// must be floating and hold the same image. Returns those that do not exist yet.
    fn check_import_disks(&self, vm: &Vm, disks: &[Disk]) -> Result<Vec<Disk>, ClusterError> {
        if disks.iter().map(|d| d.id).collect::<Vec<_>>() != vm.config.disks {
            return Err(ClusterError::Internal("an import must name every disk of the VM, in order".into()));
        }
        let files: HashSet<&str> = disks.iter().map(|d| d.file.as_str()).collect();
        let ids: HashSet<Uuid> = disks.iter().map(|d| d.id).collect();
        if files.len() != disks.len() || ids.len() != disks.len() {
            return Err(ClusterError::invalid("disks", "two disks of the VM have the same id or image file"));
        }
        let mut new_disks = Vec::new();
        for d in disks {
            let Some(existing) = self.disks.get(&d.id) else {
                new_disks.push(d.clone());
                continue;
            };
            if existing.file != d.file {
                return Err(ClusterError::AlreadyExists(format!(
                    "disk id {} is already disk '{}' ({}), not {}",
                    d.id, existing.name, existing.file, d.file
                )));
            }
            if let Some(owner) = existing.vm {
                return Err(ClusterError::FailedPrecondition(format!(
                    "disk '{}' is attached to vm '{}'; import with --clone to copy it",
                    existing.name,
                    self.vms.get(&owner).map_or_else(|| owner.to_string(), |v| v.config.name.clone())
                )));
            }
        }
        Ok(new_disks)
    }

    pub(super) fn set_engine_maintenance(
        &mut self,
        now: i64,
        global: Option<bool>,
        local: Option<&(String, bool)>,
    ) -> OpResult {
        self.require_cluster()?;
        let engine =
            self.engine_vm().ok_or_else(|| ClusterError::NotFound("the cluster has no hosted engine".into()))?;
        let engine_id = engine.id;
        let local_host = match local {
            Some((name, on)) => {
                let h = self
                    .host_by_name(name)
                    .ok_or_else(|| ClusterError::NotFound(format!("host '{}' not found", crate::error::quote(name))))?;
                Some((h.id, *on))
            }
            None => None,
        };
        if let Some(g) = global.filter(|g| *g != self.engine.global_maintenance) {
            self.set_global_maintenance(now, engine_id, g);
        }
        if let Some((id, on)) = local_host {
            self.set_local_maintenance(now, id, on);
        }
        Ok(Outcome::Done)
    }

    fn set_global_maintenance(&mut self, now: i64, engine_id: Uuid, on: bool) {
        self.engine.global_maintenance = on;
        let msg = if on {
            "Hosted engine global maintenance is on: HA does not start, restart or move the engine VM.".to_string()
        } else {
            // Whatever HA held back is due now; an engine left on a host in local maintenance
            // meanwhile moves.
            if let Some(r) = self.vms.get_mut(&engine_id).and_then(|v| v.ha_state.ha_restart.as_mut()) {
                r.due_by(now);
            }
            let host = self.vms.get(&engine_id).and_then(|v| v.runtime.host);
            if let Some(h) = host.filter(|h| self.hosts.get(h).is_some_and(|h| h.engine_local_maintenance)) {
                self.move_engine_off(now, h);
            }
            "Hosted engine global maintenance is off: HA looks after the engine VM again.".to_string()
        };
        self.record(now, EventKind::ClusterEdited, msg);
    }

    /// Puts host `id` (found by the caller) into local maintenance or out of it.
    fn set_local_maintenance(&mut self, now: i64, id: NodeId, on: bool) {
        let Some(host) = self.hosts.get_mut(&id).filter(|h| h.engine_local_maintenance != on) else { return };
        host.engine_local_maintenance = on;
        let name = host.name.clone();
        let msg = if on {
            format!("Host {name} is in hosted-engine local maintenance: it may not run the engine VM.")
        } else {
            format!("Host {name} left hosted-engine local maintenance.")
        };
        self.record(now, EventKind::HostEdited, msg);
        if on {
            self.move_engine_off(now, id);
        }
    }

    /// A host put into local maintenance while it runs the engine VM: the engine is migrated
    /// to the best-scored host, as ovirt-hosted-engine-ha does (not in global maintenance).
    fn move_engine_off(&mut self, now: i64, host: NodeId) {
        let Some(vm) = self
            .engine_vm()
            .filter(|v| v.runtime.host == Some(host) && v.migration_state.migrating_to.is_none())
            .filter(|v| v.snapshot_state.snapshot_job.is_none())
            .cloned()
        else {
            return;
        };
        if self.engine.global_maintenance || vm.runtime.status != VmStatus::Up {
            return;
        }
        match self.migration_target(&vm, None, true) {
            Ok(target) => {
                self.begin_migration(now, vm.id, target, true, " to leave a host in local maintenance");
            }
            Err(e) => {
                let msg = format!(
                    "The hosted engine VM {} stays on host {} for now: {e}",
                    vm.config.name,
                    self.host_name(host)
                );
                self.record(now, EventKind::VmMigration, msg);
            }
        }
    }

    pub(super) fn report_engine_score(&mut self, now: i64, host: NodeId, score: &EngineScore) -> OpResult {
        let h = self.hosts.get_mut(&host).ok_or_else(|| ClusterError::NotFound(format!("host {host} not found")))?;
        let before = h.engine_score.as_ref().map(|s| s.score);
        h.engine_score = Some(score.clone());
        let name = h.name.clone();
        // Said only when it crosses zero: a host becoming unfit to run the engine, or fit again.
        match (before, score.score) {
            (None, 0) | (Some(1..), 0) => {
                let why: Vec<String> = score.penalties.iter().map(|(w, n)| format!("{w} (-{n})")).collect();
                let msg = format!("Host {name} may not run the hosted engine: its score is 0 ({}).", why.join(", "));
                self.record(now, EventKind::HostStateChanged, msg);
            }
            (Some(0), s) if s > 0 => {
                self.record(
                    now,
                    EventKind::HostStateChanged,
                    format!("Host {name} may run the hosted engine again (score {s})."),
                );
            }
            _ => {}
        }
        Ok(Outcome::Done)
    }

    pub(super) fn adopt_vm(&mut self, now: i64, vm_id: Uuid, host: NodeId) -> OpResult {
        let host_name =
            self.hosts.get(&host).ok_or_else(|| ClusterError::NotFound(format!("host {host} not found")))?.name.clone();
        let hosts = &self.hosts;
        let vm = self.vms.get_mut(&vm_id).ok_or_else(|| ClusterError::NotFound(format!("vm {vm_id} not found")))?;
        if vm.runtime.host == Some(host) {
            return Ok(Outcome::Vm(Box::new(vm.clone())));
        }
        if vm.snapshot_state.snapshot_job.is_some() {
            return Err(ClusterError::Unavailable(format!(
                "vm '{}': a host works on its images (a snapshot); try again when it is done",
                vm.config.name
            )));
        }
        // Taken over unless the state has it on a host that answers: down, on no host, or on
        // a host that is down or silent (whose lease may have ended; the operator who started
        // the copy by hand checked what the starting host could reach).
        // A migration to a live host may finish there: that host holds it as well.
        let target = vm.migration_state.migrating_to.and_then(|t| hosts.get(&t)).filter(|h| h.state.is_alive());
        if let Some(t) = target {
            return Err(ClusterError::Unavailable(format!(
                "vm '{}' is migrating to host {}, which has not reported where it runs",
                vm.config.name, t.name
            )));
        }
        let holder = vm.runtime.host.filter(|_| vm.runtime.status != VmStatus::Down).and_then(|h| hosts.get(&h));
        if let Some(h) = holder.filter(|h| h.state.is_alive()) {
            if vm.ha_state.ha_restarting || matches!(vm.runtime.status, VmStatus::PoweringUp) {
                // The cluster already started it again there: the hand-started copy must go.
                return Err(ClusterError::FailedPrecondition(format!(
                    "vm '{}' is being started on host {}; the copy on host {host_name} must go",
                    vm.config.name, h.name
                )));
            }
            // That host may have come back without it (it then reports it down, and the claim
            // succeeds), or really run it: the claiming host asks it, and asks again for a while.
            return Err(ClusterError::Unavailable(format!(
                "vm '{}' is assigned to host {}, which has not reported it down",
                vm.config.name, h.name
            )));
        }
        vm.release_host();
        vm.runtime.desired = PowerState::Up;
        vm.runtime.status = VmStatus::Up;
        vm.runtime.host = Some(host);
        vm.runtime.epoch += 1;
        vm.ha_state.ha_restart = None;
        vm.runtime.stop_reason = None;
        vm.config.updated_ms = now;
        let out = vm.clone();
        let msg = format!(
            "VM {} was started by hand on host {host_name} while the cluster had no quorum; the cluster takes it over there.",
            out.config.name
        );
        self.record(now, EventKind::VmStateChanged, msg);
        Ok(Outcome::Vm(Box::new(out)))
    }

    /// The hosted engine VM, if the cluster has one.
    pub fn engine_vm(&self) -> Option<&Vm> {
        self.engine.vm.and_then(|id| self.vms.get(&id))
    }
}

/// The event of an imported VM (the hosted engine says what it is).
fn imported(vm: &Vm, disks: usize, engine: bool) -> String {
    let s = |n: usize| if n == 1 { "" } else { "s" };
    if engine {
        format!(
            "Hosted engine VM {} was created ({} MiB, {} vCPU{}); it is highly available ahead of every other VM and \
             delete-protected.",
            vm.config.name,
            vm.config.memory_mib,
            vm.config.vcpus,
            s(vm.config.vcpus as usize)
        )
    } else {
        format!(
            "VM {} was imported from an OVF document ({} MiB, {} vCPU{}, {disks} disk{}).",
            vm.config.name,
            vm.config.memory_mib,
            vm.config.vcpus,
            s(vm.config.vcpus as usize),
            s(disks)
        )
    }
}
