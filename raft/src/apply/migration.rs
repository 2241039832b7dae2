//! Live migration as the cluster orders it: an operator's `vm migrate` (placement picks the
//! destination when none is named), cancel, maintenance (every VM off a host, highest
//! priority first; what cannot move is named with why) and the cluster's migration settings.
//! A migration ordered here waits in its source host's queue; the source's agent runs a few at
//! a time, by VM priority, and reports progress and the outcome.

use uuid::Uuid;

use super::{inconsistent, OpResult};
use crate::command::{MigrationSettingsChange, Outcome};
use crate::error::ClusterError;
use crate::model::{
    host_name_in, ClusterState, EventKind, Host, HostState, MaintenanceOrder, MigrationJob, Vm, VmStatus,
};
use crate::scheduler::{self, Purpose};
use crate::typ::NodeId;

/// Maintenance orders no new migration of a VM whose last one failed (or was cancelled)
/// less than this long ago.
const RETRY_FAILED_MS: i64 = 30_000;

impl ClusterState {
    /// Where `vm` can migrate to (`to`, or placement's pick), or why it cannot.
    pub(super) fn migration_target(&self, vm: &Vm, to: Option<&str>, automatic: bool) -> Result<NodeId, ClusterError> {
        if vm.runtime.status != VmStatus::Up {
            return Err(ClusterError::FailedPrecondition(format!(
                "vm '{}' is {}; only an up VM can be migrated",
                vm.config.name,
                vm.runtime.status.as_str()
            )));
        }
        let purpose = if automatic { Purpose::MigrateAutomatic } else { Purpose::MigrateByOperator };
        scheduler::check_migration_policy(vm, purpose)?;
        let Some(source_host) = vm.runtime.host.and_then(|h| self.hosts.get(&h)) else {
            return Err(inconsistent(&format!("vm '{}' is up on no host of the cluster", vm.config.name)));
        };
        let domain_type = vm.config.domain_type.unwrap_or(source_host.facts.domain_type);
        if !domain_type.can_migrate() {
            return Err(ClusterError::FailedPrecondition(format!(
                "vm '{}' runs on host {}, which uses libvirt's test driver; the test driver cannot migrate VMs",
                vm.config.name, source_host.name
            )));
        }
        let target = scheduler::choose(self, vm, to, &[source_host.id], purpose)?;
        // Placement picks among the cluster's hosts, so the target is one of them.
        if let Some(host) = self.hosts.get(&target).filter(|h| !h.facts.domain_type.can_migrate()) {
            return Err(ClusterError::FailedPrecondition(format!(
                "host {} uses libvirt's test driver, which cannot receive migrations",
                host.name
            )));
        }
        Ok(target)
    }

    /// Orders VM `id` (found by the caller) to migrate to `target`; returns the VM as ordered.
    pub(super) fn begin_migration(
        &mut self,
        now: i64,
        id: Uuid,
        target: NodeId,
        automatic: bool,
        why: &str,
    ) -> Option<Vm> {
        let hosts = &self.hosts;
        let vm = self.vms.get_mut(&id)?;
        let from_name = vm.runtime.host.map(|h| host_name_in(hosts, h)).unwrap_or_default();
        let to_name = host_name_in(hosts, target);
        vm.migration_state.migrating_to = Some(target);
        vm.migration_state.migration_job = Some(MigrationJob { queued_ms: now, automatic, ..Default::default() });
        vm.runtime.status = VmStatus::Migrating;
        vm.config.updated_ms = now;
        let msg =
            format!("Migration of VM {} from host {from_name} to host {to_name} was ordered{why}.", vm.config.name);
        let out = vm.clone();
        self.record(now, EventKind::VmMigration, msg);
        Some(out)
    }

    pub(super) fn migrate_vm(&mut self, now: i64, name_or_id: &str, to: Option<&str>) -> OpResult {
        let vm = self.find_vm(name_or_id).ok_or_else(|| ClusterError::vm_not_found(name_or_id))?;
        let (id, target) = (vm.id, self.migration_target(vm, to, false));
        let target = target.map_err(|e| self.note_refusal(now, EventKind::VmMigration, e))?;
        let vm = self.begin_migration(now, id, target, false, "");
        vm.map(|vm| Outcome::Vm(Box::new(vm))).ok_or_else(|| ClusterError::vm_not_found(name_or_id))
    }

    pub(super) fn cancel_migration(&mut self, now: i64, name_or_id: &str) -> OpResult {
        let vm = self.vm_mut(name_or_id)?;
        let Some(job) = vm.migration_state.migration_job.as_mut() else {
            return Err(ClusterError::FailedPrecondition(format!("vm '{}' is not migrating", vm.config.name)));
        };
        if !job.cancel {
            job.cancel = true;
            vm.config.updated_ms = now;
            let (out, msg) = (vm.clone(), format!("Cancelling the migration of VM {}.", vm.config.name));
            self.record(now, EventKind::VmMigration, msg);
            return Ok(Outcome::Vm(Box::new(out)));
        }
        Ok(Outcome::Vm(Box::new(vm.clone())))
    }

    pub(super) fn host_maintenance(&mut self, now: i64, name: &str, reason: Option<&str>) -> OpResult {
        let host = self.host_named_mut(name)?;
        let id = host.id;
        if host.maintenance.is_some() {
            return self.evacuate(now, id);
        }
        if !host.state.is_alive() {
            return Err(ClusterError::FailedPrecondition(format!(
                "host {name} is {}; only a host that is up can be put into maintenance",
                host.state.as_str()
            )));
        }
        host.maintenance =
            Some(MaintenanceOrder { reason: reason.map(str::to_string), since_ms: now, blocked: vec![] });
        host.state = HostState::PreparingForMaintenance;
        host.state_since_ms = now;
        let on_host = self.vms.on_host(id).len();
        let why = reason.map(|r| format!(" (reason: {r})")).unwrap_or_default();
        let msg = format!("Host {name} is preparing for maintenance{why}: {on_host} VM(s) to move away.");
        self.record(now, EventKind::HostMaintenance, msg);
        self.evacuate(now, id)
    }

    /// A host by name, to change it.
    pub(super) fn host_named_mut(&mut self, name: &str) -> Result<&mut Host, ClusterError> {
        self.hosts
            .values_mut()
            .find(|h| h.name == name)
            .ok_or_else(|| ClusterError::NotFound(format!("host '{}' not found", crate::error::quote(name))))
    }

    /// Orders a migration for every VM still on host `id` that can move, highest priority
    /// first, and records what cannot move and why.
    pub(super) fn evacuate(&mut self, now: i64, id: NodeId) -> OpResult {
        if self.hosts.get(&id).is_none_or(|h| h.maintenance.is_none()) {
            return Ok(Outcome::Done);
        }
        let mut on_host: Vec<_> = self
            .vms
            .values()
            .filter(|v| v.runtime.host == Some(id) && v.migration_state.migrating_to.is_none())
            // A VM whose images are being worked on moves on a later try, once the work is done.
            .filter(|v| v.snapshot_state.snapshot_job.is_none())
            .map(|v| (std::cmp::Reverse(v.config.ha.priority), v.config.name.clone(), v.id))
            .collect();
        on_host.sort();
        let mut blocked = Vec::new();
        for (_, name, vm_id) in on_host {
            // Listed from `vms` just above; ordering a migration removes no VM.
            let Some(vm) = self.vms.get(&vm_id) else { continue };
            match self.evacuation_target(vm, now) {
                Ok(target) => {
                    self.begin_migration(now, vm_id, target, true, " to evacuate its host for maintenance");
                }
                Err(why) => blocked.push((name, why)),
            }
        }
        self.note_blocked(now, id, blocked);
        self.settle_maintenance(now, id);
        Ok(Outcome::Done)
    }

    /// Where a VM on a host being evacuated goes, or why it stays for now.
    fn evacuation_target(&self, vm: &Vm, now: i64) -> Result<NodeId, String> {
        let failed_lately = vm.migration_state.migration_failed_ms.is_some_and(|t| now - t < RETRY_FAILED_MS);
        match vm.runtime.status {
            VmStatus::Up if failed_lately => Err(format!(
                "its last migration failed or was cancelled; another is ordered {} s after that",
                RETRY_FAILED_MS / 1000
            )),
            VmStatus::Up => self.migration_target(vm, None, true).map_err(|e| e.to_string()),
            status @ (VmStatus::Suspended | VmStatus::Paused) => {
                Err(format!("it is {}; resume or stop it", status.as_str()))
            }
            other => Err(format!("it is {}; waiting for that to end", other.as_str())),
        }
    }

    /// Keeps what blocks host `id`'s maintenance in its order, and says so when that changed.
    fn note_blocked(&mut self, now: i64, id: NodeId, blocked: Vec<(String, String)>) {
        let Some(host) = self.hosts.get_mut(&id) else { return };
        let Some(order) = host.maintenance.as_mut().filter(|o| o.blocked != blocked) else { return };
        order.blocked = blocked;
        if order.blocked.is_empty() {
            return;
        }
        let list: Vec<String> = order.blocked.iter().map(|(vm, why)| format!("VM {vm}: {why}")).collect();
        let msg = format!("Host {} cannot enter maintenance yet. {}", host.name, list.join("; "));
        self.record(now, EventKind::HostMaintenance, msg);
    }

    /// A host preparing for maintenance that no VM runs on or migrates to is in maintenance.
    pub(super) fn settle_maintenance(&mut self, now: i64, id: NodeId) {
        let busy = self.vms.holds_any(id);
        let Some(host) = self.hosts.get_mut(&id) else { return };
        if host.state != HostState::PreparingForMaintenance || busy {
            return;
        }
        host.state = HostState::Maintenance;
        host.state_since_ms = now;
        if let Some(o) = host.maintenance.as_mut() {
            o.blocked.clear();
        }
        let msg = format!("Host {} is in maintenance.", host.name);
        self.record(now, EventKind::HostMaintenance, msg);
    }

    pub(super) fn activate_host(&mut self, now: i64, name: &str) -> OpResult {
        let host = self.host_named_mut(name)?;
        if host.maintenance.is_none() {
            return Err(ClusterError::FailedPrecondition(format!(
                "host {name} is {}, not in maintenance",
                host.state.as_str()
            )));
        }
        host.maintenance = None;
        if host.state.is_alive() {
            host.state = HostState::Up;
            host.state_since_ms = now;
        }
        let msg = format!("Host {name} was activated and is {}.", host.state.as_str());
        self.record(now, EventKind::HostMaintenance, msg);
        // Room came back: HA restarts waiting for capacity are due now.
        self.retry_ha_restarts_now(now, None);
        Ok(Outcome::Done)
    }

    pub(super) fn set_migration_defaults(&mut self, now: i64, c: &MigrationSettingsChange) -> OpResult {
        if c.max_per_host == Some(0) {
            return Err(ClusterError::invalid("max_per_host", "must be at least 1"));
        }
        if c.max_downtime_ms == Some(Some(0)) {
            return Err(ClusterError::invalid("max_downtime", "must be more than 0 ms"));
        }
        if c.bandwidth_mibps == Some(Some(0)) {
            return Err(ClusterError::invalid("bandwidth", "must be at least 1 MiB/s"));
        }
        let d = &mut self.migration_defaults;
        if let Some(v) = c.auto_converge {
            d.auto_converge = v;
        }
        if let Some(v) = c.compression {
            d.compression = v;
        }
        if let Some(v) = c.max_downtime_ms {
            d.max_downtime_ms = v;
        }
        if let Some(v) = c.bandwidth_mibps {
            d.bandwidth_mibps = v;
        }
        if let Some(v) = c.max_per_host {
            d.max_per_host = v;
        }
        let msg = format!("The cluster's migration settings are now: {}.", describe(d));
        self.record(now, EventKind::VmMigration, msg);
        Ok(Outcome::Done)
    }
}

/// The settings in words, for events and `cluster status`.
pub fn describe(d: &crate::model::MigrationSettings) -> String {
    format!(
        "auto-converge {}, compression {}, max downtime {}, bandwidth {}, {} at a time per host",
        if d.auto_converge { "on" } else { "off" },
        if d.compression { "on" } else { "off" },
        d.max_downtime_ms.map_or("libvirt's default".to_string(), |v| format!("{v} ms")),
        d.bandwidth_mibps.map_or("unlimited".to_string(), |v| format!("{v} MiB/s")),
        d.max_per_host
    )
}
