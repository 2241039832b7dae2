//! The VM lifecycle in the state machine: orders from operators (start, shutdown, stop,
//! reboot, suspend, resume, migrate) and reports from host agents. Orders change what is
//! desired and the transition status; only reports from the VM's current host and assignment
//! epoch change what is known to run, so a late report from a former host changes nothing.

use std::collections::BTreeSet;

use uuid::Uuid;

use super::OpResult;
use crate::command::{Outcome, StartOrder};
use crate::error::ClusterError;
use crate::model::{ClusterState, EventKind, HostState, Observed, PowerState, Vm, VmStatus};
use crate::scheduler::{self, Purpose};
use crate::typ::NodeId;

impl ClusterState {
    pub(super) fn vm_mut(&mut self, name_or_id: &str) -> Result<&mut Vm, ClusterError> {
        let id = self.find_vm(name_or_id).ok_or_else(|| ClusterError::vm_not_found(name_or_id))?.id;
        Ok(self.vms.get_mut(&id).expect("found above"))
    }

    pub(super) fn vm_outcome(&self, id: Uuid) -> OpResult {
        Ok(Outcome::Vm(Box::new(self.vms[&id].clone())))
    }

    /// Assigns a down VM to a host and orders it up (shared by start and create --start).
    pub(super) fn start_vm(&mut self, now: i64, name_or_id: &str, order: &StartOrder) -> OpResult {
        let vm = self.find_vm(name_or_id).ok_or_else(|| ClusterError::vm_not_found(name_or_id))?;
        if vm.status != VmStatus::Down {
            return Err(ClusterError::FailedPrecondition(format!(
                "vm '{}' is {}{}; it can only be started when down",
                vm.name,
                vm.status.as_str(),
                vm.host.map(|h| format!(" on host {}", self.host_name(h))).unwrap_or_default()
            )));
        }
        let host = scheduler::choose(self, vm, order.host.as_deref(), &[], Purpose::Start)?;
        let host_name = self.host_name(host);
        let vm = self.vm_mut(name_or_id)?;
        vm.desired = PowerState::Up;
        vm.host = Some(host);
        vm.epoch += 1;
        vm.status = VmStatus::PoweringUp;
        vm.stop_reason = None;
        vm.shutdown_deadline_ms = None;
        vm.reboot_pending = false;
        // An operator's start replaces a pending HA restart.
        vm.ha_restart = None;
        vm.ha_restarting = false;
        vm.updated_ms = now;
        let (id, msg) = (vm.id, format!("VM {} is powering up on host {host_name}.", vm.name));
        self.record(now, EventKind::VmStateChanged, msg);
        self.vm_outcome(id)
    }

    /// Graceful shutdown (ACPI) with a deadline, or at once (`timeout_s` = 0, power off).
    pub(super) fn shutdown_vm(
        &mut self,
        now: i64,
        name_or_id: &str,
        reason: Option<&str>,
        timeout_s: u64,
        power_off: bool,
    ) -> OpResult {
        let vm = self.vm_mut(name_or_id)?;
        match vm.status {
            // Stopping a down HA VM that waits for its restart cancels the restart.
            VmStatus::Down if vm.ha_restart.is_some() => {
                vm.ha_restart = None;
                vm.updated_ms = now;
                let (id, msg) = (vm.id, format!("The pending HA restart of VM {} was cancelled.", vm.name));
                self.record(now, EventKind::VmHighAvailability, msg);
                return self.vm_outcome(id);
            }
            VmStatus::Down => {
                return Err(ClusterError::FailedPrecondition(format!("vm '{}' is already down", vm.name)))
            }
            VmStatus::Migrating => {
                return Err(ClusterError::FailedPrecondition(format!(
                    "vm '{}' is migrating; wait for the migration to end",
                    vm.name
                )))
            }
            _ => {}
        }
        vm.desired = PowerState::Down;
        vm.status = VmStatus::PoweringDown;
        vm.stop_reason = reason.map(str::to_string);
        let deadline = now.saturating_add((timeout_s as i64).saturating_mul(1000));
        // A power off overrides a graceful shutdown in progress; a shutdown never delays one.
        vm.shutdown_deadline_ms = Some(vm.shutdown_deadline_ms.map_or(deadline, |d| d.min(deadline)));
        vm.reboot_pending = false;
        vm.updated_ms = now;
        let how = if power_off { "is being powered off" } else { "is shutting down" };
        let why = reason.map(|r| format!(" (reason: {r})")).unwrap_or_default();
        let (id, msg) = (vm.id, format!("VM {} {how}{why}.", vm.name));
        self.record(now, EventKind::VmStateChanged, msg);
        self.vm_outcome(id)
    }

    pub(super) fn reboot_vm(&mut self, now: i64, name_or_id: &str) -> OpResult {
        let vm = self.vm_mut(name_or_id)?;
        if vm.status != VmStatus::Up {
            return Err(ClusterError::FailedPrecondition(format!(
                "vm '{}' is {}; only an up VM can be rebooted",
                vm.name,
                vm.status.as_str()
            )));
        }
        vm.reboot_pending = true;
        vm.status = VmStatus::RebootInProgress;
        vm.updated_ms = now;
        let (id, msg) = (vm.id, format!("VM {} is rebooting.", vm.name));
        self.record(now, EventKind::VmStateChanged, msg);
        self.vm_outcome(id)
    }

    pub(super) fn suspend_vm(&mut self, now: i64, name_or_id: &str, suspend: bool) -> OpResult {
        let vm = self.vm_mut(name_or_id)?;
        let (ok, want, what) = if suspend {
            (vm.status == VmStatus::Up, PowerState::Suspended, "suspended")
        } else {
            (matches!(vm.status, VmStatus::Suspended | VmStatus::Paused), PowerState::Up, "resumed")
        };
        if !ok {
            let need = if suspend { "up" } else { "suspended or paused" };
            return Err(ClusterError::FailedPrecondition(format!(
                "vm '{}' is {}; only a VM that is {need} can be {what}",
                vm.name,
                vm.status.as_str()
            )));
        }
        vm.desired = want;
        vm.updated_ms = now;
        let (id, msg) = (vm.id, format!("VM {} is being {what}.", vm.name));
        self.record(now, EventKind::VmStateChanged, msg);
        self.vm_outcome(id)
    }

    /// A host agent's report. Reports from anyone but the current host and epoch are stale.
    pub(super) fn report_vm(
        &mut self,
        now: i64,
        id: Uuid,
        host: NodeId,
        epoch: u64,
        observed: &Observed,
        touched: &mut BTreeSet<Uuid>,
    ) -> OpResult {
        let Some(vm) = self.vms.get(&id) else { return Ok(Outcome::Done) };
        if vm.host != Some(host) || vm.epoch != epoch {
            return Ok(Outcome::Done);
        }
        let host_name = self.host_name(host);
        let target_name = match observed {
            Observed::MigrationDone { to } => self.host_name(*to),
            _ => vm.migrating_to.map(|t| self.host_name(t)).unwrap_or_default(),
        };
        let known_target = match observed {
            Observed::MigrationDone { to } => self.hosts.contains_key(to),
            _ => true,
        };
        // A migration that completed to a host declared down meanwhile: that host has fenced
        // itself, so the VM runs nowhere.
        let target_down = match observed {
            Observed::MigrationDone { to } => self.hosts.get(to).is_some_and(|h| h.state == HostState::Down),
            _ => false,
        };
        let mut lost_on_arrival = false;
        let vm = self.vms.get_mut(&id).expect("checked above");
        let name = vm.name.clone();
        let before = vm.status;
        let mut message = None;
        let mut kind = EventKind::VmStateChanged;
        let mut settled = None;
        let mut ha_failed = false;
        match observed {
            Observed::Up => {
                if vm.status == VmStatus::Migrating || vm.reboot_pending {
                    // The source keeps reporting up during a migration; a reboot reports RebootDone.
                } else if vm.desired == PowerState::Down {
                    // Shutting down: it is up until it is down.
                } else if vm.ha_restarting {
                    vm.ha_restarting = false;
                    vm.status = VmStatus::Up;
                    kind = EventKind::VmHighAvailability;
                    message = Some(format!("VM {name} was restarted on host {host_name}."));
                } else {
                    vm.status = VmStatus::Up;
                    message = Some(format!("VM {name} is up on host {host_name}."));
                }
            }
            Observed::Paused => {
                vm.status = VmStatus::Paused;
                message = Some(format!("VM {name} was paused by the hypervisor on host {host_name}."));
            }
            Observed::PausedIoError => {
                vm.status = VmStatus::Paused;
                message = Some(format!(
                    "VM {name} was paused on host {host_name} after a storage I/O error (resume behaviour: {}).",
                    vm.resume_behavior.as_str()
                ));
            }
            Observed::Suspended => {
                vm.status = VmStatus::Suspended;
                message = Some(format!("VM {name} is suspended on host {host_name}."));
            }
            Observed::RebootDone => {
                vm.reboot_pending = false;
                vm.status = VmStatus::Up;
                message = Some(format!("VM {name} was rebooted on host {host_name}."));
            }
            Observed::Down { cause, on_purpose } => {
                let expected = vm.desired == PowerState::Down;
                if !expected {
                    vm.stop_reason = Some(cause.clone());
                }
                // oVirt's rule: an HA VM that dies is restarted; one shut down on purpose (by
                // the operator, or cleanly from inside the guest) is not.
                if !expected && !on_purpose && vm.ha.enabled {
                    vm.ha_failed(now, true, Some(cause.clone()));
                    ha_failed = true;
                }
                vm.ha_restarting = false;
                let why = vm.stop_reason.clone().map(|r| format!(" (reason: {r})")).unwrap_or_default();
                message = Some(if expected {
                    format!("VM {name} is down on host {host_name}{why}.")
                } else {
                    format!("VM {name} went down unexpectedly on host {host_name}: {cause}.")
                });
                vm.release_host();
                settled = vm.settle_next_run();
            }
            Observed::MigrationDone { to } if known_target && *to != host => {
                // Even a migration the state no longer expects (cancelled too late) moved it.
                vm.migrating_to = None;
                vm.migration_job = None;
                vm.migration_failed_ms = None;
                vm.host = Some(*to);
                vm.epoch += 1;
                vm.status = VmStatus::Up;
                kind = EventKind::VmMigration;
                message = Some(format!("VM {name} migrated from host {host_name} to host {target_name}."));
                lost_on_arrival = target_down;
            }
            Observed::MigrationDone { .. } => {}
            Observed::MigrationProgress(p) => {
                if let Some(job) = vm.migration_job.as_mut() {
                    job.progress = Some(p.clone());
                }
            }
            Observed::MigrationFailed { error } => {
                let cancelled = vm.migration_job.take().is_some_and(|j| j.cancel);
                vm.migration_failed_ms = Some(now);
                vm.migrating_to = None;
                if vm.status == VmStatus::Migrating {
                    vm.status = VmStatus::Up;
                }
                kind = EventKind::VmMigration;
                message = Some(if cancelled {
                    format!("Migration of VM {name} was cancelled; it keeps running on host {host_name}.")
                } else {
                    format!("Migration of VM {name} failed; it keeps running on host {host_name}: {error}")
                });
            }
            Observed::Failed { action, error } => {
                if action == "start" {
                    if std::mem::take(&mut vm.ha_restarting) {
                        vm.ha_failed(now, true, Some(error.clone()));
                    }
                    vm.desired = PowerState::Down;
                    vm.status = VmStatus::Down;
                    vm.host = None;
                    vm.stop_reason = Some(format!("start failed: {error}"));
                    settled = vm.settle_next_run();
                }
                message = Some(format!("Could not {action} VM {name} on host {host_name}: {error}"));
            }
            Observed::NotResponding => {
                vm.status = VmStatus::NotResponding;
                message =
                    Some(format!("The hypervisor of host {host_name} does not respond; VM {name} is not responding."));
            }
        }
        vm.updated_ms = now;
        let now_down = vm.status == VmStatus::Down && before != VmStatus::Down;
        // Repeated reports of the same steady state are not news.
        let steady = matches!(
            observed,
            Observed::Up
                | Observed::NotResponding
                | Observed::Paused
                | Observed::PausedIoError
                | Observed::Suspended
                | Observed::MigrationProgress(_)
        );
        if let Some(m) = message.filter(|_| vm.status != before || !steady) {
            self.record(now, kind, m);
        }
        if now_down {
            // Capacity came back: pending HA restarts need not wait for their back-off.
            self.retry_ha_restarts_now(now, Some(id));
        }
        if now_down || matches!(observed, Observed::MigrationDone { .. } | Observed::MigrationFailed { .. }) {
            self.settle_maintenance(now, host);
        }
        if lost_on_arrival {
            self.vm_lost_with_host(now, id, &target_name, touched);
        }
        if ha_failed {
            let msg = format!("Highly Available VM {name} failed. It will be restarted automatically.");
            self.record(now, EventKind::VmHighAvailability, msg);
        }
        if let Some(what) = settled {
            touched.insert(id);
            self.record(now, EventKind::VmEdited, format!("VM {name} now has its next-run configuration: {what}."));
        }
        Ok(Outcome::Done)
    }
}
