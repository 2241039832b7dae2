//! Live migration as the cluster orders it: an operator's `vm migrate` (placement picks the
//! destination when none is named), cancel, maintenance (every VM off a host, highest
//! priority first; what cannot move is named with why) and the cluster's migration settings.
//! A migration ordered here waits in its source host's queue; the source's agent runs a few at
//! a time, by VM priority, and reports progress and the outcome.

use uuid::Uuid;

use super::OpResult;
use crate::command::{MigrationSettingsChange, Outcome};
use crate::error::ClusterError;
use crate::model::{ClusterState, EventKind, HostState, MaintenanceOrder, MigrationJob, VmStatus};
use crate::scheduler::{self, Purpose};
use crate::typ::NodeId;

/// Maintenance orders no new migration of a VM whose last one failed (or was cancelled)
/// less than this long ago.
const RETRY_FAILED_MS: i64 = 30_000;

impl ClusterState {
    /// Where VM `id` can migrate to (`to`, or placement's pick), or why it cannot.
    pub(super) fn migration_target(&self, id: Uuid, to: Option<&str>, automatic: bool) -> Result<NodeId, ClusterError> {
        let vm = &self.vms[&id];
        if vm.status != VmStatus::Up {
            return Err(ClusterError::FailedPrecondition(format!(
                "vm '{}' is {}; only an up VM can be migrated",
                vm.name,
                vm.status.as_str()
            )));
        }
        let purpose = if automatic { Purpose::MigrateAutomatic } else { Purpose::MigrateByOperator };
        scheduler::check_migration_policy(vm, purpose)?;
        let source = vm.host.expect("an up VM has a host");
        let source_host = &self.hosts[&source];
        let domain_type = vm.domain_type.unwrap_or(source_host.facts.domain_type);
        if !domain_type.can_migrate() {
            return Err(ClusterError::FailedPrecondition(format!(
                "vm '{}' runs on host {}, which uses libvirt's test driver; the test driver cannot migrate VMs",
                vm.name, source_host.name
            )));
        }
        let target = scheduler::choose(self, vm, to, &[source], purpose)?;
        if !self.hosts[&target].facts.domain_type.can_migrate() {
            return Err(ClusterError::FailedPrecondition(format!(
                "host {} uses libvirt's test driver, which cannot receive migrations",
                self.host_name(target)
            )));
        }
        Ok(target)
    }

    pub(super) fn begin_migration(&mut self, now: i64, id: Uuid, target: NodeId, automatic: bool, why: &str) {
        let (from_name, to_name) = (self.host_name(self.vms[&id].host.expect("up")), self.host_name(target));
        let vm = self.vms.get_mut(&id).expect("caller found it");
        vm.migrating_to = Some(target);
        vm.migration_job = Some(MigrationJob { queued_ms: now, automatic, ..Default::default() });
        vm.status = VmStatus::Migrating;
        vm.updated_ms = now;
        let msg = format!("Migration of VM {} from host {from_name} to host {to_name} was ordered{why}.", vm.name);
        self.record(now, EventKind::VmMigration, msg);
    }

    pub(super) fn migrate_vm(&mut self, now: i64, name_or_id: &str, to: Option<&str>) -> OpResult {
        let id = self.find_vm(name_or_id).ok_or_else(|| ClusterError::vm_not_found(name_or_id))?.id;
        let target = self.migration_target(id, to, false)?;
        self.begin_migration(now, id, target, false, "");
        self.vm_outcome(id)
    }

    pub(super) fn cancel_migration(&mut self, now: i64, name_or_id: &str) -> OpResult {
        let vm = self.vm_mut(name_or_id)?;
        let Some(job) = vm.migration_job.as_mut() else {
            return Err(ClusterError::FailedPrecondition(format!("vm '{}' is not migrating", vm.name)));
        };
        if !job.cancel {
            job.cancel = true;
            vm.updated_ms = now;
            let (id, msg) = (vm.id, format!("Cancelling the migration of VM {}.", vm.name));
            self.record(now, EventKind::VmMigration, msg);
            return self.vm_outcome(id);
        }
        let id = vm.id;
        self.vm_outcome(id)
    }

    pub(super) fn host_maintenance(&mut self, now: i64, name: &str, reason: Option<&str>) -> OpResult {
        let host = self.host_by_name(name).ok_or_else(|| ClusterError::NotFound(format!("host '{name}' not found")))?;
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
        let host = self.hosts.get_mut(&id).expect("found above");
        host.maintenance =
            Some(MaintenanceOrder { reason: reason.map(str::to_string), since_ms: now, blocked: vec![] });
        host.state = HostState::PreparingForMaintenance;
        host.state_since_ms = now;
        let on_host = self.vms.values().filter(|v| v.host == Some(id)).count();
        let why = reason.map(|r| format!(" (reason: {r})")).unwrap_or_default();
        let msg = format!("Host {name} is preparing for maintenance{why}: {on_host} VM(s) to move away.");
        self.record(now, EventKind::HostMaintenance, msg);
        self.evacuate(now, id)
    }

    /// Orders a migration for every VM still on host `id` that can move, highest priority
    /// first, and records what cannot move and why.
    pub(super) fn evacuate(&mut self, now: i64, id: NodeId) -> OpResult {
        let Some(order) = self.hosts.get(&id).and_then(|h| h.maintenance.clone()) else {
            return Ok(Outcome::Done);
        };
        let mut on_host: Vec<_> = self
            .vms
            .values()
            .filter(|v| v.host == Some(id) && v.migrating_to.is_none())
            .map(|v| (std::cmp::Reverse(v.ha.priority), v.name.clone(), v.id))
            .collect();
        on_host.sort();
        let mut blocked = Vec::new();
        for (_, name, vm_id) in on_host {
            let status = self.vms[&vm_id].status;
            let failed_lately = self.vms[&vm_id].migration_failed_ms.is_some_and(|t| now - t < RETRY_FAILED_MS);
            let why = match status {
                VmStatus::Up if failed_lately => format!(
                    "its last migration failed or was cancelled; another is ordered {} s after that",
                    RETRY_FAILED_MS / 1000
                ),
                VmStatus::Up => match self.migration_target(vm_id, None, true) {
                    Ok(target) => {
                        self.begin_migration(now, vm_id, target, true, " to evacuate its host for maintenance");
                        continue;
                    }
                    Err(e) => e.to_string(),
                },
                VmStatus::Suspended | VmStatus::Paused => {
                    format!("it is {}; resume or stop it", status.as_str())
                }
                other => format!("it is {}; waiting for that to end", other.as_str()),
            };
            blocked.push((name, why));
        }
        let host = self.hosts.get_mut(&id).expect("has an order");
        let name = host.name.clone();
        if blocked != order.blocked {
            host.maintenance.as_mut().expect("has an order").blocked = blocked.clone();
            if !blocked.is_empty() {
                let list: Vec<String> = blocked.iter().map(|(vm, why)| format!("VM {vm}: {why}")).collect();
                let msg = format!("Host {name} cannot enter maintenance yet. {}", list.join("; "));
                self.record(now, EventKind::HostMaintenance, msg);
            }
        }
        self.settle_maintenance(now, id);
        Ok(Outcome::Done)
    }

    /// A host preparing for maintenance that no VM runs on or migrates to is in maintenance.
    pub(super) fn settle_maintenance(&mut self, now: i64, id: NodeId) {
        let busy = self.vms.values().any(|v| v.host == Some(id) || v.migrating_to == Some(id));
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
        let host = self.host_by_name(name).ok_or_else(|| ClusterError::NotFound(format!("host '{name}' not found")))?;
        if host.maintenance.is_none() {
            return Err(ClusterError::FailedPrecondition(format!(
                "host {name} is {}, not in maintenance",
                host.state.as_str()
            )));
        }
        let id = host.id;
        let host = self.hosts.get_mut(&id).expect("found above");
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
