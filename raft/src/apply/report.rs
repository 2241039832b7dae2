//! Host agents' reports of what their VMs do. Only a report from the VM's current host and
//! assignment epoch changes anything, so a late report from a former host changes nothing; a
//! report is the truth about what runs, whatever the state expected.

use std::collections::{BTreeMap, BTreeSet};

use uuid::Uuid;

use super::ha::lose_vm;
use super::OpResult;
use crate::causes::{DownCause, VmAction};
use crate::command::Outcome;
use crate::model::{host_name_in, ClusterState, EventKind, Host, HostState, Observed, PowerState, Vm, VmStatus};
use crate::typ::NodeId;

/// The hosts a report is about, in words: the reporting host, and where a migration goes.
struct Where {
    host: NodeId,
    host_name: String,
    target_name: String,
    /// The host a finished migration names is in the cluster.
    known_target: bool,
    /// That host was declared down meanwhile: it has fenced itself, so the VM runs nowhere.
    target_down: bool,
}

impl Where {
    fn of(hosts: &BTreeMap<NodeId, Host>, vm: &Vm, host: NodeId, observed: &Observed) -> Where {
        let (target_name, known_target, target_down) = match observed {
            Observed::MigrationDone { to } => (
                host_name_in(hosts, *to),
                hosts.contains_key(to),
                hosts.get(to).is_some_and(|h| h.state == HostState::Down),
            ),
            _ => (vm.migration_state.migrating_to.map(|t| host_name_in(hosts, t)).unwrap_or_default(), true, false),
        };
        Where { host, host_name: host_name_in(hosts, host), target_name, known_target, target_down }
    }
}

/// What a report changed beside the VM itself, for the state to follow up.
#[derive(Default)]
struct Change {
    /// What happened, if it is news.
    event: Option<(EventKind, String)>,
    /// The next-run configuration replaced the VM's (in words).
    settled: Option<String>,
    /// An HA VM failed and waits for its restart.
    ha_failed: bool,
    /// The VM migrated onto a host that was declared down meanwhile.
    lost_on_arrival: bool,
    /// Its configuration changed (to what runs, after a failed hot-plug).
    reconfigured: bool,
}

impl Change {
    fn said(kind: EventKind, message: String) -> Change {
        Change { event: Some((kind, message)), ..Change::default() }
    }
}

impl ClusterState {
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
        let hosts = &self.hosts;
        let Some(vm) = self.vms.get_mut(&id).filter(|v| v.runtime.host == Some(host) && v.runtime.epoch == epoch)
        else {
            return Ok(Outcome::Done);
        };
        let place = Where::of(hosts, vm, host, observed);
        let before = vm.runtime.status;
        let change = observe(vm, now, observed, &place);
        vm.config.updated_ms = now;
        let (name, status) = (vm.config.name.clone(), vm.runtime.status);
        let lost =
            if change.lost_on_arrival { lose_vm(vm, now, &place.target_name, None, touched) } else { Vec::new() };
        let now_down = status == VmStatus::Down && before != VmStatus::Down;
        if let Some((kind, m)) = change.event.filter(|_| status != before || !is_steady(observed)) {
            self.record(now, kind, m);
        }
        if now_down {
            // Capacity came back: pending HA restarts need not wait for their back-off.
            self.retry_ha_restarts_now(now, Some(id));
        }
        if now_down || matches!(observed, Observed::MigrationDone { .. } | Observed::MigrationFailed { .. }) {
            self.settle_maintenance(now, host);
        }
        for (kind, m) in lost {
            self.record(now, kind, m);
        }
        if change.ha_failed {
            let msg = format!("Highly Available VM {name} failed. It will be restarted automatically.");
            self.record(now, EventKind::VmHighAvailability, msg);
        }
        if change.reconfigured {
            touched.insert(id);
        }
        if let Some(what) = change.settled {
            touched.insert(id);
            self.record(now, EventKind::VmEdited, format!("VM {name} now has its next-run configuration: {what}."));
        }
        Ok(Outcome::Done)
    }
}

/// Repeated reports of the same steady state are not news.
fn is_steady(observed: &Observed) -> bool {
    matches!(
        observed,
        Observed::Up
            | Observed::NotResponding
            | Observed::Paused
            | Observed::PausedIoError
            | Observed::Suspended
            | Observed::MigrationProgress(_)
    )
}

/// Applies one observation to its VM.
fn observe(vm: &mut Vm, now: i64, observed: &Observed, at: &Where) -> Change {
    let (name, host_name) = (vm.config.name.clone(), &at.host_name);
    let state_changed = |vm: &mut Vm, status: VmStatus, message: String| {
        vm.runtime.status = status;
        Change::said(EventKind::VmStateChanged, message)
    };
    match observed {
        Observed::Up => came_up(vm, host_name),
        Observed::Paused => {
            state_changed(vm, VmStatus::Paused, format!("VM {name} was paused by the hypervisor on host {host_name}."))
        }
        Observed::PausedIoError => {
            let message = format!(
                "VM {name} was paused on host {host_name} after a storage I/O error (resume behaviour: {}).",
                vm.config.resume_behavior.as_str()
            );
            state_changed(vm, VmStatus::Paused, message)
        }
        Observed::Suspended => {
            state_changed(vm, VmStatus::Suspended, format!("VM {name} is suspended on host {host_name}."))
        }
        Observed::RebootDone => {
            vm.runtime.reboot_pending = false;
            state_changed(vm, VmStatus::Up, format!("VM {name} was rebooted on host {host_name}."))
        }
        Observed::Down { cause, on_purpose } => went_down(vm, now, cause, *on_purpose, host_name),
        Observed::MigrationDone { to } if at.known_target && *to != at.host => migrated(vm, *to, at),
        Observed::MigrationDone { .. } => Change::default(),
        Observed::MigrationProgress(p) => {
            if let Some(job) = vm.migration_state.migration_job.as_mut() {
                job.progress = Some(p.clone());
            }
            Change::default()
        }
        Observed::MigrationFailed { error } => migration_failed(vm, now, error, host_name),
        Observed::Failed { action, error } => failed(vm, now, action, error, host_name),
        Observed::NotResponding => {
            let message = format!("The hypervisor of host {host_name} does not respond; VM {name} is not responding.");
            state_changed(vm, VmStatus::NotResponding, message)
        }
        Observed::Hotplug { seq, error, live } => {
            let (event, reconfigured) = super::devices::hotplugged(vm, *seq, error.as_deref(), live, host_name);
            Change { event, reconfigured, ..Change::default() }
        }
    }
}

fn came_up(vm: &mut Vm, host_name: &str) -> Change {
    let name = &vm.config.name;
    if vm.runtime.status == VmStatus::Migrating || vm.runtime.reboot_pending {
        // The source keeps reporting up during a migration; a reboot reports RebootDone.
        Change::default()
    } else if vm.runtime.desired == PowerState::Down {
        // Shutting down: it is up until it is down.
        Change::default()
    } else if vm.ha_state.ha_restarting {
        // A start that was to load a snapshot's memory has loaded it.
        vm.snapshot_state.resume_from = None;
        let message = format!("VM {name} was restarted on host {host_name}.");
        vm.ha_state.ha_restarting = false;
        vm.runtime.status = VmStatus::Up;
        Change::said(EventKind::VmHighAvailability, message)
    } else {
        vm.snapshot_state.resume_from = None;
        let message = format!("VM {name} is up on host {host_name}.");
        vm.runtime.status = VmStatus::Up;
        Change::said(EventKind::VmStateChanged, message)
    }
}

fn went_down(vm: &mut Vm, now: i64, cause: &DownCause, on_purpose: bool, host_name: &str) -> Change {
    let expected = vm.runtime.desired == PowerState::Down;
    if !expected {
        vm.runtime.stop_reason = Some(cause.to_string());
    }
    // oVirt's rule: an HA VM that dies is restarted; one shut down on purpose (by the operator,
    // or cleanly from inside the guest) is not.
    let ha_failed = !expected && !on_purpose && vm.config.ha.enabled;
    if ha_failed {
        vm.ha_failed(now, true, Some(cause.to_string()));
    }
    vm.ha_state.ha_restarting = false;
    let name = &vm.config.name;
    let why = vm.runtime.stop_reason.as_ref().map(|r| format!(" (reason: {r})")).unwrap_or_default();
    let message = if expected {
        format!("VM {name} is down on host {host_name}{why}.")
    } else {
        format!("VM {name} went down unexpectedly on host {host_name}: {cause}.")
    };
    vm.release_host();
    let settled = vm.settle_next_run();
    Change { settled, ha_failed, ..Change::said(EventKind::VmStateChanged, message) }
}

/// The VM now runs on `to`: even a migration the state no longer expects (cancelled too late)
/// moved it.
fn migrated(vm: &mut Vm, to: NodeId, at: &Where) -> Change {
    vm.migration_state.migrating_to = None;
    vm.migration_state.migration_job = None;
    vm.migration_state.migration_failed_ms = None;
    vm.runtime.host = Some(to);
    vm.runtime.epoch += 1;
    vm.runtime.status = VmStatus::Up;
    let message = format!("VM {} migrated from host {} to host {}.", vm.config.name, at.host_name, at.target_name);
    Change { lost_on_arrival: at.target_down, ..Change::said(EventKind::VmMigration, message) }
}

fn migration_failed(vm: &mut Vm, now: i64, error: &str, host_name: &str) -> Change {
    let cancelled = vm.migration_state.migration_job.take().is_some_and(|j| j.cancel);
    vm.migration_state.migration_failed_ms = Some(now);
    vm.migration_state.migrating_to = None;
    if vm.runtime.status == VmStatus::Migrating {
        vm.runtime.status = VmStatus::Up;
    }
    let name = &vm.config.name;
    let message = if cancelled {
        format!("Migration of VM {name} was cancelled; it keeps running on host {host_name}.")
    } else {
        format!("Migration of VM {name} failed; it keeps running on host {host_name}: {error}")
    };
    Change::said(EventKind::VmMigration, message)
}

/// libvirt refused an operation; a start that failed leaves the VM down.
fn failed(vm: &mut Vm, now: i64, action: &VmAction, error: &str, host_name: &str) -> Change {
    let mut settled = None;
    if *action == VmAction::Start {
        if std::mem::take(&mut vm.ha_state.ha_restarting) {
            vm.ha_failed(now, true, Some(error.to_string()));
        }
        vm.runtime.desired = PowerState::Down;
        vm.runtime.status = VmStatus::Down;
        vm.runtime.host = None;
        vm.runtime.stop_reason = Some(format!("start failed: {error}"));
        settled = vm.settle_next_run();
    }
    let message = format!("Could not {action} VM {} on host {host_name}: {error}", vm.config.name);
    Change { settled, ..Change::said(EventKind::VmStateChanged, message) }
}
