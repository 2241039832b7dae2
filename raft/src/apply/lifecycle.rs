//! The VM lifecycle in the state machine: orders from operators (start, shutdown, stop,
//! reboot, suspend, resume). Orders change what is desired and the transition status; only
//! reports from host agents (report.rs) change what is known to run.

use super::OpResult;
use crate::command::{Outcome, StartOrder};
use crate::error::ClusterError;
use crate::model::{ClusterState, EventKind, PowerState, Vm, VmStatus};
use crate::scheduler::{self, Purpose};
use crate::typ::NodeId;

impl ClusterState {
    pub(super) fn vm_mut(&mut self, name_or_id: &str) -> Result<&mut Vm, ClusterError> {
        self.find_vm_mut(name_or_id).ok_or_else(|| ClusterError::vm_not_found(name_or_id))
    }

    /// Assigns a down VM to a host and orders it up (shared by start and create --start).
    /// Where a start of `vm` would place it, or why it would be refused, changing nothing. `vm`
    /// may be one the command is about to add or replace: a create or restore with a start is
    /// checked this way before anything changes (no copy of the state for a trial).
    pub(super) fn start_placement(&self, vm: &Vm, order: &StartOrder) -> Result<NodeId, ClusterError> {
        if vm.runtime.status != VmStatus::Down {
            return Err(ClusterError::FailedPrecondition(format!(
                "vm '{}' is {}{}; it can only be started when down",
                vm.config.name,
                vm.runtime.status.as_str(),
                vm.runtime.host.map(|h| format!(" on host {}", self.host_name(h))).unwrap_or_default()
            )));
        }
        scheduler::choose(self, vm, order.host.as_deref(), &[], Purpose::Start)
    }

    pub(super) fn start_vm(&mut self, now: i64, name_or_id: &str, order: &StartOrder) -> OpResult {
        let vm = self.find_vm(name_or_id).ok_or_else(|| ClusterError::vm_not_found(name_or_id))?;
        let host = self.start_placement(vm, order)?;
        let (host_name, hotplug) = (self.host_name(host), self.hotplug_level());
        let vm = self.vm_mut(name_or_id)?;
        vm.order_up(host, hotplug);
        vm.runtime.shutdown_deadline_ms = None;
        vm.runtime.reboot_pending = false;
        // An operator's start replaces a pending HA restart.
        vm.ha_state.ha_restart = None;
        vm.ha_state.ha_restarting = false;
        vm.config.updated_ms = now;
        let (out, msg) = (vm.clone(), format!("VM {} is powering up on host {host_name}.", vm.config.name));
        self.record(now, EventKind::VmStateChanged, msg);
        Ok(Outcome::Vm(Box::new(out)))
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
        match vm.runtime.status {
            // Stopping a down HA VM that waits for its restart cancels the restart.
            VmStatus::Down if vm.ha_state.ha_restart.is_some() => {
                vm.ha_state.ha_restart = None;
                vm.config.updated_ms = now;
                let (out, msg) =
                    (vm.clone(), format!("The pending HA restart of VM {} was cancelled.", vm.config.name));
                self.record(now, EventKind::VmHighAvailability, msg);
                return Ok(Outcome::Vm(Box::new(out)));
            }
            VmStatus::Down => {
                return Err(ClusterError::FailedPrecondition(format!("vm '{}' is already down", vm.config.name)))
            }
            VmStatus::Migrating => {
                return Err(ClusterError::FailedPrecondition(format!(
                    "vm '{}' is migrating; wait for the migration to end",
                    vm.config.name
                )))
            }
            _ => {}
        }
        vm.runtime.desired = PowerState::Down;
        vm.runtime.status = VmStatus::PoweringDown;
        vm.runtime.stop_reason = reason.map(str::to_string);
        let deadline = now.saturating_add((timeout_s as i64).saturating_mul(1000));
        // A power off overrides a graceful shutdown in progress; a shutdown never delays one.
        vm.runtime.shutdown_deadline_ms = Some(vm.runtime.shutdown_deadline_ms.map_or(deadline, |d| d.min(deadline)));
        vm.runtime.reboot_pending = false;
        vm.config.updated_ms = now;
        let how = if power_off { "is being powered off" } else { "is shutting down" };
        let why = reason.map(|r| format!(" (reason: {r})")).unwrap_or_default();
        let (out, msg) = (vm.clone(), format!("VM {} {how}{why}.", vm.config.name));
        self.record(now, EventKind::VmStateChanged, msg);
        Ok(Outcome::Vm(Box::new(out)))
    }

    pub(super) fn reboot_vm(&mut self, now: i64, name_or_id: &str) -> OpResult {
        let vm = self.vm_mut(name_or_id)?;
        if vm.runtime.status != VmStatus::Up {
            return Err(ClusterError::FailedPrecondition(format!(
                "vm '{}' is {}; only an up VM can be rebooted",
                vm.config.name,
                vm.runtime.status.as_str()
            )));
        }
        vm.runtime.reboot_pending = true;
        vm.runtime.status = VmStatus::RebootInProgress;
        vm.config.updated_ms = now;
        let (out, msg) = (vm.clone(), format!("VM {} is rebooting.", vm.config.name));
        self.record(now, EventKind::VmStateChanged, msg);
        Ok(Outcome::Vm(Box::new(out)))
    }

    pub(super) fn suspend_vm(&mut self, now: i64, name_or_id: &str, suspend: bool) -> OpResult {
        let vm = self.vm_mut(name_or_id)?;
        let (ok, want, what) = if suspend {
            (vm.runtime.status == VmStatus::Up, PowerState::Suspended, "suspended")
        } else {
            (matches!(vm.runtime.status, VmStatus::Suspended | VmStatus::Paused), PowerState::Up, "resumed")
        };
        if !ok {
            let need = if suspend { "up" } else { "suspended or paused" };
            return Err(ClusterError::FailedPrecondition(format!(
                "vm '{}' is {}; only a VM that is {need} can be {what}",
                vm.config.name,
                vm.runtime.status.as_str()
            )));
        }
        vm.runtime.desired = want;
        vm.config.updated_ms = now;
        let (out, msg) = (vm.clone(), format!("VM {} is being {what}.", vm.config.name));
        self.record(now, EventKind::VmStateChanged, msg);
        Ok(Outcome::Vm(Box::new(out)))
    }
}
