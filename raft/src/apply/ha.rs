//! Host liveness as the leader decides it, and HA restarts. The leader's controllers propose
//! these commands from heartbeat times only it knows; applying them is pure: a host declared
//! down takes its VMs down with it (its lease has ended, so none of them runs), its HA VMs
//! wait for a restart, and a restart pass places the due ones, highest priority first, each
//! where placement finds room, the rest trying again later with back-off.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BTreeSet};

use uuid::Uuid;

use super::OpResult;
use crate::command::Outcome;
use crate::error::ClusterError;
use crate::model::{ClusterState, EventKind, HaRestart, Host, HostState, PowerState, Vm, VmStatus};
use crate::scheduler::{self, Purpose};
use crate::typ::NodeId;

impl ClusterState {
    pub(super) fn host_non_responsive(&mut self, now: i64, id: NodeId, silent_ms: u64) -> OpResult {
        let host = self.hosts.get_mut(&id).ok_or_else(|| ClusterError::NotFound(format!("host {id} not found")))?;
        if !host.state.is_alive() {
            return Ok(Outcome::Done);
        }
        host.state = HostState::NonResponsive;
        host.state_since_ms = now;
        let msg = format!(
            "Host {} is not responding (no heartbeat for {:.1} s); its VMs are left alone until it answers or its \
             lease has certainly ended.",
            host.name,
            silent_ms as f64 / 1000.0
        );
        self.record(now, EventKind::HostStateChanged, msg);
        Ok(Outcome::Done)
    }

    /// The host's lease has ended: none of its VMs runs any more.
    pub(super) fn host_down(
        &mut self,
        now: i64,
        id: NodeId,
        how: &crate::HostDownCause,
        touched: &mut BTreeSet<Uuid>,
    ) -> OpResult {
        let host = self.hosts.get_mut(&id).ok_or_else(|| ClusterError::NotFound(format!("host {id} not found")))?;
        if matches!(host.state, HostState::Down | HostState::Joining) {
            return Ok(Outcome::Done);
        }
        host.state = HostState::Down;
        host.state_since_ms = now;
        let host_name = host.name.clone();
        self.record(now, EventKind::HostStateChanged, format!("Host {host_name} is down: {how}."));
        let mut events = Vec::new();
        let hosts = &self.hosts;
        for vm_id in self.vms.on_host(id) {
            let Some(vm) = self.vms.get_mut(&vm_id) else { continue };
            let dest = live_destination(hosts, vm);
            events.extend(lose_vm(vm, now, &host_name, dest, touched));
        }
        for vm_id in self.vms.incoming(id) {
            let Some(vm) = self.vms.get_mut(&vm_id) else { continue };
            vm.migration_state.migrating_to = None;
            vm.migration_state.migration_job = None;
            if vm.runtime.status == VmStatus::Migrating {
                vm.runtime.status = VmStatus::Up;
            }
            vm.config.updated_ms = now;
            let msg = format!("Migration of VM {} to host {host_name} stopped: the host went down.", vm.config.name);
            events.push((EventKind::VmMigration, msg));
        }
        for (kind, msg) in events {
            self.record(now, kind, msg);
        }
        self.fail_snapshot_jobs_of(now, id, touched);
        Ok(Outcome::Done)
    }

    /// `fenced`: the host says it lost its lease and destroyed its VMs, at the time given when it
    /// says when (release 3f21f51's hosts do not).
    pub(super) fn host_alive(&mut self, now: i64, id: NodeId, fenced: Option<Option<i64>>) -> OpResult {
        let settled = self.settled_host_state(id);
        let host = self.hosts.get_mut(&id).ok_or_else(|| ClusterError::NotFound(format!("host {id} not found")))?;
        let self_fenced = fenced.is_some();
        let when = match fenced.flatten() {
            Some(at) => {
                format!(" at {} UTC, {:.1} s before it said so", time_of_day(at), (now - at).max(0) as f64 / 1000.0)
            }
            None => String::new(),
        };
        let fenced_note = if self_fenced {
            format!(" It had lost its lease and stopped its VMs itself{when}.")
        } else {
            String::new()
        };
        if host.state.is_alive() || host.state == HostState::Joining {
            if self_fenced {
                let msg = format!("Host {} lost its lease and stopped its VMs itself{when}.", host.name);
                self.record(now, EventKind::HostStateChanged, msg);
            }
            return Ok(Outcome::Done);
        }
        let was = host.state;
        host.state = settled;
        let away = (now - host.state_since_ms).max(0) as f64 / 1000.0;
        host.state_since_ms = now;
        let msg = format!(
            "Host {} answers again and is {} (it was {} for {away:.1} s).{fenced_note}",
            host.name,
            settled.as_str(),
            was.as_str()
        );
        self.record(now, EventKind::HostStateChanged, msg);
        // Capacity came back: pending HA restarts need not wait for their back-off.
        self.retry_ha_restarts_now(now, None);
        Ok(Outcome::Done)
    }

    /// What a live host's state is: up, or what its maintenance order makes of it.
    pub(crate) fn settled_host_state(&self, id: NodeId) -> HostState {
        match self.hosts.get(&id).and_then(|h| h.maintenance.as_ref()) {
            None => HostState::Up,
            Some(_) if self.vms.holds_any(id) => HostState::PreparingForMaintenance,
            Some(_) => HostState::Maintenance,
        }
    }

    /// Makes every pending HA restart due now, except `except`'s (it just failed one).
    pub(crate) fn retry_ha_restarts_now(&mut self, now: i64, except: Option<Uuid>) {
        for id in self.vms.ha_pending().into_iter().filter(|id| Some(*id) != except) {
            if let Some(r) = self.vms.get_mut(&id).and_then(|vm| vm.ha_state.ha_restart.as_mut()) {
                r.due_by(now);
            }
        }
    }

    /// The earliest time an HA restart is due, if any is pending.
    pub fn next_ha_restart_ms(&self) -> Option<i64> {
        self.vms
            .ha_pending()
            .iter()
            .filter_map(|id| self.vms.get(id))
            .filter(|v| !self.ha_holds_off(v))
            .filter_map(|v| v.ha_state.ha_restart.as_ref().map(|r| r.next_try_ms))
            .min()
    }

    /// Whether HA leaves this VM alone for now: the hosted engine in global maintenance.
    pub fn ha_holds_off(&self, vm: &crate::model::Vm) -> bool {
        vm.config.hosted_engine && self.engine.global_maintenance
    }

    /// Places the due HA VMs: the hosted engine first (the rest of the cluster is managed
    /// from it), then by priority, then the longest waiting.
    pub(super) fn restart_ha_vms(&mut self, now: i64) -> OpResult {
        let mut due: Vec<_> = self
            .vms
            .ha_pending()
            .iter()
            .filter_map(|id| self.vms.get(id))
            .filter(|v| {
                v.runtime.status == VmStatus::Down
                    && v.ha_state.ha_restart.as_ref().is_some_and(|r| r.next_try_ms <= now)
                    // Its images are being worked on: restarted once the work is done.
                    && v.snapshot_state.snapshot_job.is_none()
            })
            .filter(|v| !self.ha_holds_off(v))
            .map(|v| {
                let failed = v.ha_state.ha_restart.as_ref().map_or(0, |r| r.failed_ms);
                (!v.config.hosted_engine, Reverse(v.config.ha.priority), failed, v.config.name.clone(), v.id)
            })
            .collect();
        due.sort();
        for (_, _, _, name, id) in due {
            // Each was listed from `vms` just above, and a restart removes no VM.
            let Some(vm) = self.vms.get(&id) else { continue };
            let placed = scheduler::choose(self, vm, None, &[], Purpose::HaRestart);
            let placed = placed.map(|host| (host, self.host_name(host)));
            let hotplug = self.hotplug_level();
            let Some(vm) = self.vms.get_mut(&id) else { continue };
            let msg = match placed {
                Ok((host, host_name)) => Some(restart_on(vm, now, host, &name, &host_name, hotplug)),
                Err(e) => back_off(vm, now, &name, e.to_string()),
            };
            if let Some(msg) = msg {
                self.record(now, EventKind::VmHighAvailability, msg);
            }
        }
        Ok(Outcome::Done)
    }
}

/// `ms` (Unix milliseconds) as the UTC time of day, `HH:MM:SS.mmm`.
fn time_of_day(ms: i64) -> String {
    let of_day = ms.rem_euclid(86_400_000);
    let (h, m, s, milli) = (of_day / 3_600_000, of_day / 60_000 % 60, of_day / 1000 % 60, of_day % 1000);
    format!("{h:02}:{m:02}:{s:02}.{milli:03}")
}

/// The host a VM was migrating to when its own host went down, if that host is not down
/// (it may hold its lease and run the VM): its id and name.
fn live_destination(hosts: &BTreeMap<NodeId, Host>, vm: &Vm) -> Option<(NodeId, String)> {
    let to = vm.migration_state.migrating_to?;
    let host = hosts.get(&to).filter(|h| !matches!(h.state, HostState::Down | HostState::Joining))?;
    Some((to, host.name.clone()))
}

/// A VM whose host went down: down, and waiting for HA if it is highly available and was meant
/// to run. One that was migrating to `dest` (a host that is not down) may already run there:
/// that host now holds it and reports whether it runs. Returns the events to record; a VM whose
/// next-run configuration became its own is added to `touched`.
pub(super) fn lose_vm(
    vm: &mut Vm,
    now: i64,
    host_name: &str,
    dest: Option<(NodeId, String)>,
    touched: &mut BTreeSet<Uuid>,
) -> Vec<(EventKind, String)> {
    vm.config.updated_ms = now;
    if let Some((dest, dest_name)) = dest {
        vm.runtime.host = Some(dest);
        vm.migration_state.migrating_to = None;
        vm.migration_state.migration_job = None;
        vm.runtime.epoch += 1;
        vm.runtime.status = VmStatus::Unknown;
        let msg = format!(
            "VM {} was migrating from host {host_name} to host {dest_name} when {host_name} went down; host \
             {dest_name} reports whether it runs there.",
            vm.config.name
        );
        return vec![(EventKind::VmMigration, msg)];
    }
    let wanted = vm.runtime.desired != PowerState::Down;
    vm.release_host();
    vm.runtime.stop_reason = Some(format!("its host {host_name} went down"));
    let name = vm.config.name.clone();
    let ha = vm.config.ha.enabled && wanted;
    if ha {
        vm.ha_failed(now, false, None);
    }
    let mut events = vec![if ha {
        (
            EventKind::VmHighAvailability,
            format!("Highly Available VM {name} failed. It will be restarted automatically."),
        )
    } else {
        (EventKind::VmStateChanged, format!("VM {name} is down: its host {host_name} went down."))
    }];
    if let Some(what) = vm.settle_next_run() {
        touched.insert(vm.id);
        events.push((EventKind::VmEdited, format!("VM {name} now has its next-run configuration: {what}.")));
    }
    events
}

/// An HA VM placed on `host`: ordered up there. Returns the event's message.
fn restart_on(vm: &mut Vm, now: i64, host: NodeId, name: &str, host_name: &str, hotplug: bool) -> String {
    let attempt = vm.ha_state.ha_restart.take().map_or(1, |r| r.attempts + 1);
    vm.order_up(host, hotplug);
    vm.ha_state.ha_restarting = true;
    vm.ha_state.ha_restarted_ms = Some(now);
    vm.config.updated_ms = now;
    format!(
        "VM {name} is being restarted on host {host_name} (highly available, {} priority{}).",
        vm.config.ha.priority,
        if attempt > 1 { format!(", attempt {attempt}") } else { String::new() }
    )
}

/// An HA VM that no host can take now: tried again later, each time waiting longer. Returns
/// the event's message when the reason is new (said once per distinct reason, not per retry).
fn back_off(vm: &mut Vm, now: i64, name: &str, error: String) -> Option<String> {
    // A due VM has a pending restart; were it missing, this one starts it afresh.
    let r = vm.ha_state.ha_restart.get_or_insert_with(|| HaRestart::new(now));
    r.attempts += 1;
    let wait = HaRestart::backoff_ms(r.attempts);
    r.next_try_ms = now + wait;
    if r.last_error.as_deref() == Some(error.as_str()) {
        return None;
    }
    let msg = format!(
        "Highly Available VM {name} cannot be restarted yet: {error}. It is tried again as capacity returns (next \
         in {} s).",
        wait / 1000
    );
    r.last_error = Some(error);
    Some(msg)
}
