//! `vm edit`: the changes an operator makes to a VM's configuration. Each field takes effect
//! at once, by hot-plug into the running VM, or at its next run, as the field table
//! (`model/fields.rs`) says. Below cluster level 3 memory and vCPUs of a running VM always wait
//! for its next run. The changes are made on a copy, stored only when every one is allowed; the
//! event names each.

use super::OpResult;
use crate::command::{Outcome, VmChanges};
use crate::error::ClusterError;
use crate::model::fields::VmField;
use crate::model::{ClusterState, EventKind, Vm, VmStatus, HOTPLUG_LEVEL, MEMORY_STEP_MIB};
use crate::validate;

/// Where a hot-plug field's new value goes on a running VM.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Into the running domain now.
    HotPlug,
    /// Into the next-run configuration, and why when it was not asked for.
    NextRun(Option<String>),
}

/// Only an up VM takes a hot-plug: one powering up may be defined already with the old
/// configuration, or not yet (its limits were taken from the old one).
fn not_up(vm: &Vm) -> Option<Decision> {
    (vm.runtime.status != VmStatus::Up)
        .then(|| Decision::NextRun(Some(format!("it is {}, not up", vm.runtime.status.as_str()))))
}

/// How a new memory size reaches running VM `vm`.
pub fn memory_decision(vm: &Vm, mib: u64, next_run: bool) -> Decision {
    if next_run {
        return Decision::NextRun(None);
    }
    if let Some(d) = not_up(vm) {
        return d;
    }
    let Some(l) = vm.runtime.run_limits.filter(|l| l.max_memory_mib > l.boot_memory_mib) else {
        return Decision::NextRun(Some("it was started without room for memory hot-plug (no max memory)".into()));
    };
    if mib > l.max_memory_mib {
        return Decision::NextRun(Some(format!("{mib} MiB is more than its max memory of {} MiB", l.max_memory_mib)));
    }
    if mib < l.boot_memory_mib {
        return Decision::NextRun(Some(format!(
            "only hot-plugged memory can be unplugged, and it started with {} MiB",
            l.boot_memory_mib
        )));
    }
    if !(mib - l.boot_memory_mib).is_multiple_of(MEMORY_STEP_MIB) {
        return Decision::NextRun(Some(format!(
            "memory is hot-plugged in steps of {MEMORY_STEP_MIB} MiB above the {} MiB it started with",
            l.boot_memory_mib
        )));
    }
    Decision::HotPlug
}

/// How a new vCPU count reaches running VM `vm`.
pub fn vcpus_decision(vm: &Vm, n: u32, next_run: bool) -> Decision {
    if next_run {
        return Decision::NextRun(None);
    }
    if let Some(d) = not_up(vm) {
        return d;
    }
    let Some(l) = vm.runtime.run_limits.filter(|l| l.max_vcpus > 1) else {
        return Decision::NextRun(Some("it was started without room for vCPU hot-plug (no max vCPUs)".into()));
    };
    if n > l.max_vcpus {
        return Decision::NextRun(Some(format!("{n} is more than its max vCPUs of {}", l.max_vcpus)));
    }
    if n < vm.config.vcpus {
        // Seen on these hosts: QEMU 7.2 dies (double free) at the next hot-plug of anything after
        // a vCPU was unplugged, so a running VM is not exposed to that.
        return Decision::NextRun(Some(
            "vCPUs are removed at the next run (QEMU 7.2 can crash at a later hot-plug after a vCPU unplug)".into(),
        ));
    }
    Decision::HotPlug
}

/// How a CD change reaches running VM `vm`.
pub fn cd_decision(vm: &Vm, next_run: bool) -> Decision {
    if next_run {
        return Decision::NextRun(None);
    }
    if let Some(d) = not_up(vm) {
        return d;
    }
    match vm.runtime.run_limits {
        Some(_) => Decision::HotPlug,
        None => Decision::NextRun(Some("it was started without a CD-ROM drive".into())),
    }
}

/// What an edit of a running VM changes in the running domain.
#[derive(Default)]
struct Hot {
    /// Something goes into the running domain.
    any: bool,
    /// Memory or vCPUs grow: the host must have room.
    grows: bool,
}

impl ClusterState {
    pub(super) fn edit_vm(&mut self, now: i64, name_or_id: &str, c: &VmChanges) -> OpResult {
        self.require_cluster()?;
        let with_offering;
        let c = match &c.offering {
            Some(o) => {
                with_offering = self.offering_changes(c, o)?;
                &with_offering
            }
            None => c,
        };
        if c.offering.is_some() || c.stateless.is_some() || c.boot_order.is_some() {
            self.require_library("offerings, boot order and stateless VMs")?;
        }
        validate::vm_changes(c)?;
        let before = self.find_vm(name_or_id).ok_or_else(|| ClusterError::vm_not_found(name_or_id))?.clone();
        if let Some(new_name) = c.name.as_ref().filter(|n| **n != before.config.name) {
            if self.vm_names.contains_key(new_name) {
                return Err(ClusterError::AlreadyExists(format!("vm '{new_name}' already exists")));
            }
        }
        let hotplug = self.cluster.as_ref().is_some_and(|cl| cl.level >= HOTPLUG_LEVEL);
        if !hotplug && (c.next_run || c.max_vcpus.is_some() || c.max_memory_mib.is_some() || c.cdrom.is_some()) {
            return Err(ClusterError::FailedPrecondition(format!(
                "--next-run, max vCPUs, max memory and CD changes need cluster level {HOTPLUG_LEVEL}: \
                 run `corral cluster upgrade` first"
            )));
        }
        let mut vm = before.clone();
        let mut what = Vec::new();
        edit_name(&mut vm, c, &mut what);
        let hot = if hotplug {
            edit_resources_live(&mut vm, c, &mut what)?
        } else {
            edit_resources(&mut vm, c, &mut what);
            Hot::default()
        };
        edit_notes(&mut vm, c, &mut what);
        edit_availability(&mut vm, c, &mut what)?;
        edit_protection_and_os(&mut vm, c, &mut what, hotplug)?;
        if c.stateless == Some(true) {
            self.stateless_disks_ok(&vm)?;
        }
        edit_library_fields(&mut vm, c, &mut what)?;
        self.edit_vm_placement(&mut vm, c, &mut what)?;
        if let Some(was) = before.config.next_run.as_ref().filter(|_| vm.config.next_run.is_none()) {
            if hotplug && !was.is_empty() {
                what.push("its pending next-run configuration cleared".to_string());
            }
        }
        // Scaling up beyond what its host has free: live-migrated first to a host that has room
        // (placement chooses, every rule holds), then scaled there; none has: refused.
        let target = if hot.grows { self.room_to_grow(&before, &vm)? } else { None };
        if hot.any {
            super::devices::order_hot_change(&mut vm);
        }
        let id = vm.id;
        let out = self.store_edit(now, &before, vm, &what);
        match target {
            Some(host) => {
                let why = " to give it room for its new size";
                let vm = self.begin_migration(now, id, host, true, why);
                Ok(vm.map_or(out, |vm| Outcome::Vm(Box::new(vm))))
            }
            None => Ok(out),
        }
    }

    /// `c` with the size and HA of offering `name` (which may not come with a size of its own).
    fn offering_changes(&self, c: &VmChanges, name: &str) -> Result<VmChanges, ClusterError> {
        if c.memory_mib.is_some() || c.vcpus.is_some() {
            return Err(ClusterError::invalid(
                "offering",
                "an offering sets the memory and vCPUs: give --offering or --memory/--vcpus, not both",
            ));
        }
        let o = self.library.offering(name).ok_or_else(|| super::library::offering_not_found(name))?;
        Ok(VmChanges {
            memory_mib: Some(o.memory_mib),
            vcpus: Some(o.vcpus),
            ha_enabled: c.ha_enabled.or(o.ha.then_some(true)),
            offering: Some(o.name.clone()),
            ..c.clone()
        })
    }

    /// Whether `after` (the running VM `before`, grown) still fits on its host: `None` when it
    /// does, the host it must migrate to first when it does not, refused when no host has room.
    fn room_to_grow(&self, before: &Vm, after: &Vm) -> Result<Option<crate::typ::NodeId>, ClusterError> {
        let Some(host) = before.runtime.host.and_then(|h| self.hosts.get(&h)) else {
            return Ok(None);
        };
        let used = self.host_usage(host.id);
        let free_mem = host.facts.memory_mib.saturating_sub(used.memory_mib) + before.config.memory_mib;
        let free_cpu =
            (host.facts.cpus as u64 * self.cpu_overcommit()).saturating_sub(used.vcpus) + before.config.vcpus as u64;
        if after.config.memory_mib <= free_mem && after.config.vcpus as u64 <= free_cpu {
            return Ok(None);
        }
        let here = format!(
            "host {} has room for {free_mem} MiB and {free_cpu} vCPUs, and vm '{}' needs {} MiB and {} vCPUs",
            host.name, before.config.name, after.config.memory_mib, after.config.vcpus
        );
        if before.runtime.status != VmStatus::Up {
            return Err(ClusterError::FailedPrecondition(format!(
                "{here}; it is {} and cannot migrate to a host with room; nothing was changed",
                before.runtime.status.as_str()
            )));
        }
        self.migration_target(after, None, true).map(Some).map_err(|e| {
            ClusterError::FailedPrecondition(format!("{here}; no host can take it: {e}; nothing was changed"))
        })
    }

    /// Stores an edited VM under its (new) name; an edit that changed nothing records no event.
    fn store_edit(&mut self, now: i64, before: &Vm, mut vm: Vm, what: &[String]) -> Outcome {
        if what.is_empty() {
            // Nothing new, but a pending next-run value set back to the running one is gone.
            if vm.config.next_run != before.config.next_run {
                self.vms.insert(vm.id, vm.clone());
            }
            return Outcome::Vm(Box::new(vm));
        }
        vm.config.updated_ms = now;
        let msg = format!("VM {} was edited: {}.", before.config.name, what.join(", "));
        self.vm_names.remove(&before.config.name);
        self.vm_names.insert(vm.config.name.clone(), vm.id);
        self.vms.insert(vm.id, vm.clone());
        self.record(now, EventKind::VmEdited, msg);
        Outcome::Vm(Box::new(vm))
    }
}

fn edit_name(vm: &mut Vm, c: &VmChanges, what: &mut Vec<String>) {
    if let Some(v) = c.name.as_ref().filter(|v| **v != vm.config.name) {
        what.push(format!("name {} -> {v}", vm.config.name));
        vm.config.name = v.clone();
    }
}

/// Memory, vCPUs and domain type: a VM that is not down gets them on its next run (asking
/// for the running value again drops a pending one).
fn edit_resources(vm: &mut Vm, c: &VmChanges, what: &mut Vec<String>) {
    let running = vm.runtime.status != VmStatus::Down;
    let mut next = vm.config.next_run.take().unwrap_or_default();
    if let Some(v) = c.memory_mib {
        if running && v != vm.config.memory_mib {
            what.push(format!("memory {} -> {v} MiB on its next run", vm.config.memory_mib));
            next.memory_mib = Some(v);
        } else if running {
            next.memory_mib = None;
        } else if v != vm.config.memory_mib {
            what.push(format!("memory {} -> {v} MiB", vm.config.memory_mib));
            vm.config.memory_mib = v;
        }
    }
    if let Some(v) = c.vcpus {
        if running && v != vm.config.vcpus {
            what.push(format!("vCPUs {} -> {v} on its next run", vm.config.vcpus));
            next.vcpus = Some(v);
        } else if running {
            next.vcpus = None;
        } else if v != vm.config.vcpus {
            what.push(format!("vCPUs {} -> {v}", vm.config.vcpus));
            vm.config.vcpus = v;
        }
    }
    if let Some(v) = c.domain_type {
        if running && Some(v) != vm.config.domain_type {
            what.push(format!("domain type {} on its next run", v.as_str()));
            next.domain_type = Some(v);
        } else if running {
            next.domain_type = None;
        } else if Some(v) != vm.config.domain_type {
            what.push(format!("domain type {}", v.as_str()));
            vm.config.domain_type = Some(v);
        }
    }
    vm.config.next_run = Some(next).filter(|n| !n.is_empty());
}

/// Memory, vCPUs, their limits, the domain type and the CD at cluster level 3: a running VM
/// takes memory, vCPUs and the CD by hot-plug where it can (else at its next run, saying why in
/// the event), the rest at its next run. Asking for the value it runs with drops a pending one.
fn edit_resources_live(vm: &mut Vm, c: &VmChanges, what: &mut Vec<String>) -> Result<Hot, ClusterError> {
    let mut hot = Hot::default();
    let running = vm.is_running();
    let mut next = vm.config.next_run.take().unwrap_or_default();
    let hot_change = running && (c.memory_mib.is_some() || c.vcpus.is_some() || c.cdrom.is_some()) && !c.next_run;
    if hot_change && (vm.migration_state.migrating_to.is_some() || vm.runtime.status == VmStatus::Migrating) {
        return Err(ClusterError::FailedPrecondition(format!(
            "vm '{}' is migrating; change it when the migration ends, or with --next-run",
            vm.config.name
        )));
    }
    if let Some(v) = c.memory_mib {
        let d = memory_decision(vm, v, c.next_run);
        let words = |m: u64| format!("{m} MiB");
        hot_field(running, &mut vm.config.memory_mib, v, d, &mut next.memory_mib, "memory", words, what, &mut hot);
    }
    if let Some(v) = c.vcpus {
        let d = vcpus_decision(vm, v, c.next_run);
        hot_field(running, &mut vm.config.vcpus, v, d, &mut next.vcpus, "vCPUs", |n| n.to_string(), what, &mut hot);
    }
    if let Some(v) = &c.cdrom {
        let was = vm.config.cdrom.clone();
        let words = |cd: &Option<String>| cd.clone().unwrap_or_else(|| "none".into());
        match (running, cd_decision(vm, c.next_run)) {
            (false, _) if *v != was => {
                what.push(format!("CD {} -> {}", words(&was), words(v)));
                vm.config.cdrom = v.clone();
            }
            (false, _) => {}
            (true, _) if *v == was => next.cdrom = None,
            (true, Decision::HotPlug) => {
                what.push(format!("CD {} -> {} (now)", words(&was), words(v)));
                vm.config.cdrom = v.clone();
                next.cdrom = None;
                hot.any = true;
            }
            (true, Decision::NextRun(why)) => {
                what.push(format!("CD {} -> {} on its next run{}", words(&was), words(v), because(why)));
                next.cdrom = Some(v.clone());
            }
        }
    }
    if let Some(v) = next_run_field(vm.config.domain_type, c.domain_type, running, &mut next.domain_type, what, |v| {
        format!("domain type {}", v.as_str())
    }) {
        vm.config.domain_type = Some(v);
    }
    if let Some(v) = next_run_field(vm.config.max_vcpus, c.max_vcpus, running, &mut next.max_vcpus, what, |v| {
        format!("max vCPUs {v}")
    }) {
        vm.config.max_vcpus = Some(v);
    }
    if let Some(v) =
        next_run_field(vm.config.max_memory_mib, c.max_memory_mib, running, &mut next.max_memory_mib, what, |v| {
            format!("max memory {v} MiB")
        })
    {
        vm.config.max_memory_mib = Some(v);
    }
    debug_assert!(VmField::MaxMemory.applies() == crate::model::fields::Applies::NextRun);
    vm.config.next_run = Some(next).filter(|n| !n.is_empty());
    let (memory, vcpus) = (
        vm.config.next_run.as_ref().and_then(|n| n.memory_mib).unwrap_or(vm.config.memory_mib),
        vm.config.next_run.as_ref().and_then(|n| n.vcpus).unwrap_or(vm.config.vcpus),
    );
    let (max_memory, max_vcpus) = (
        vm.config.next_run.as_ref().and_then(|n| n.max_memory_mib).or(vm.config.max_memory_mib),
        vm.config.next_run.as_ref().and_then(|n| n.max_vcpus).or(vm.config.max_vcpus),
    );
    // A limit asked for must hold what the VM has (a memory size beyond the limit it has is
    // a next-run change, and the limit grows with it at the next run).
    if c.max_memory_mib.is_some() && max_memory.is_some_and(|m| m < memory) {
        return Err(ClusterError::invalid(
            "max_memory",
            format!("must be at least the memory ({memory} MiB; got {} MiB)", max_memory.unwrap_or_default()),
        ));
    }
    if c.max_vcpus.is_some() && max_vcpus.is_some_and(|m| m < vcpus) {
        return Err(ClusterError::invalid(
            "max_vcpus",
            format!("must be at least the vCPUs ({vcpus}; got {})", max_vcpus.unwrap_or_default()),
        ));
    }
    Ok(hot)
}

/// Memory or vCPUs: set at once on a VM that is down; on a running one plugged now or kept for
/// its next run as `decision` says (the running value again drops a pending one).
#[allow(clippy::too_many_arguments)]
fn hot_field<T: Copy + PartialEq + PartialOrd>(
    running: bool,
    current: &mut T,
    asked: T,
    decision: Decision,
    pending: &mut Option<T>,
    name: &str,
    words: impl Fn(T) -> String,
    what: &mut Vec<String>,
    hot: &mut Hot,
) {
    let was = *current;
    match (running, decision) {
        (false, _) if asked != was => {
            what.push(format!("{name} {} -> {}", words(was), words(asked)));
            *current = asked;
        }
        (false, _) => {}
        (true, _) if asked == was => *pending = None,
        (true, Decision::HotPlug) => {
            what.push(format!("{name} {} -> {} (hot-plug)", words(was), words(asked)));
            *current = asked;
            *pending = None;
            hot.any = true;
            hot.grows |= asked > was;
        }
        (true, Decision::NextRun(why)) => {
            what.push(format!("{name} {} -> {} on its next run{}", words(was), words(asked), because(why)));
            *pending = Some(asked);
        }
    }
}

/// A next-run field: set at once on a VM that is down (returned for the caller to store), else
/// pending (the running value again drops a pending one).
fn next_run_field<T: Copy + PartialEq>(
    current: Option<T>,
    asked: Option<T>,
    running: bool,
    pending: &mut Option<T>,
    what: &mut Vec<String>,
    words: impl Fn(T) -> String,
) -> Option<T> {
    let v = asked?;
    if running {
        if Some(v) == current {
            *pending = None;
        } else {
            what.push(format!("{} on its next run", words(v)));
            *pending = Some(v);
        }
        None
    } else if Some(v) != current {
        what.push(words(v));
        Some(v)
    } else {
        None
    }
}

fn because(why: Option<String>) -> String {
    why.map(|w| format!(" ({w})")).unwrap_or_default()
}

fn edit_notes(vm: &mut Vm, c: &VmChanges, what: &mut Vec<String>) {
    if let Some(v) = c.description.as_ref().filter(|v| **v != vm.config.description) {
        what.push("description".to_string());
        vm.config.description = v.clone();
    }
    if let Some(v) = c.comment.as_ref().filter(|v| **v != vm.config.comment) {
        what.push("comment".to_string());
        vm.config.comment = v.clone();
    }
}

/// HA, migration settings and the resume behaviour: what keeps the VM running.
fn edit_availability(vm: &mut Vm, c: &VmChanges, what: &mut Vec<String>) -> Result<(), ClusterError> {
    if let Some(v) = c.ha_enabled.filter(|v| *v != vm.config.ha.enabled) {
        what.push(format!("highly available {} -> {v}", vm.config.ha.enabled));
        vm.config.ha.enabled = v;
        if !v && vm.ha_state.ha_restart.take().is_some() {
            what.push("its pending HA restart cancelled".to_string());
        }
    }
    if let Some(change) = &c.migration_settings {
        let v = change.apply_to(&vm.config.migration_settings);
        if v.max_downtime_ms == Some(0) || v.bandwidth_mibps == Some(0) {
            return Err(ClusterError::invalid("migration", "max downtime and bandwidth must be more than 0"));
        }
        if v != vm.config.migration_settings {
            what.push("migration settings".to_string());
            vm.config.migration_settings = v;
        }
    }
    if let Some(v) = c.resume_behavior.filter(|v| *v != vm.config.resume_behavior) {
        what.push(format!("resume behaviour {} -> {}", vm.config.resume_behavior.as_str(), v.as_str()));
        vm.config.resume_behavior = v;
    }
    if let Some(v) = c.ha_priority.filter(|v| *v != vm.config.ha.priority) {
        what.push(format!("HA priority {} -> {v}", vm.config.ha.priority));
        vm.config.ha.priority = v;
    }
    Ok(())
}

fn edit_protection_and_os(
    vm: &mut Vm,
    c: &VmChanges,
    what: &mut Vec<String>,
    hotplug: bool,
) -> Result<(), ClusterError> {
    if let Some(v) = c.delete_protected.filter(|v| *v != vm.config.delete_protected) {
        if !v && vm.config.hosted_engine {
            return Err(ClusterError::FailedPrecondition(format!(
                "vm '{}' is the cluster's hosted engine; it stays delete-protected",
                vm.config.name
            )));
        }
        what.push(format!("delete protection {}", if v { "on" } else { "off" }));
        vm.config.delete_protected = v;
    }
    let Some(v) = c.os.as_ref() else { return Ok(()) };
    if hotplug && !crate::model::fields::known_os(v) {
        return Err(ClusterError::invalid(
            "os",
            format!(
                "'{}' is not an OS name the cluster knows; `corral vm edit --help` lists them",
                crate::error::quote(v)
            ),
        ));
    }
    // The guest's OS type is part of its hardware: a running VM gets it at its next run.
    if hotplug && vm.is_running() {
        let mut next = vm.config.next_run.take().unwrap_or_default();
        if *v == vm.config.os {
            next.os = None;
        } else {
            what.push(format!("operating system {} -> {v} on its next run", vm.config.os));
            next.os = Some(v.clone());
        }
        vm.config.next_run = Some(next).filter(|n| !n.is_empty());
    } else if *v != vm.config.os {
        what.push(format!("operating system {} -> {v}", vm.config.os));
        vm.config.os = v.clone();
    }
    Ok(())
}

/// The offering a VM's size came from (a size of its own clears it), statelessness (at its next
/// run while it runs) and its boot order (read when it next starts).
fn edit_library_fields(vm: &mut Vm, c: &VmChanges, what: &mut Vec<String>) -> Result<(), ClusterError> {
    match &c.offering {
        Some(o) if vm.config.offering.as_ref() != Some(o) => {
            what.push(format!("offering {o}"));
            vm.config.offering = Some(o.clone());
        }
        Some(_) => {}
        None if c.memory_mib.is_some() || c.vcpus.is_some() => {
            if let Some(o) = vm.config.offering.take() {
                what.push(format!("no longer of offering {o}"));
            }
        }
        None => {}
    }
    if let Some(v) = c.stateless {
        if v && vm.config.hosted_engine {
            return Err(ClusterError::FailedPrecondition(format!(
                "vm '{}' is the hosted engine, which keeps its disks: it cannot be stateless",
                vm.config.name
            )));
        }
        if !vm.snapshot_state.snapshots.is_empty() && v {
            return Err(ClusterError::FailedPrecondition(format!(
                "vm '{}' has snapshots; a stateless VM has none: delete them first",
                vm.config.name
            )));
        }
        if vm.runtime.status == VmStatus::Down && vm.runtime.host.is_none() {
            if vm.config.stateless != v {
                vm.config.stateless = v;
                what.push(if v { "stateless" } else { "no longer stateless" }.to_string());
            }
        } else if vm.config.stateless != v {
            vm.config.next_run.get_or_insert_with(Default::default).stateless = Some(v);
            what.push(format!("{} at its next run", if v { "stateless" } else { "no longer stateless" }));
        }
    }
    if let Some(order) = &c.boot_order {
        if *order != vm.config.boot_order {
            let words: Vec<&str> = order.iter().map(|b| b.as_str()).collect();
            what.push(format!("boot order {}", if words.is_empty() { "default".into() } else { words.join(",") }));
            vm.config.boot_order = order.clone();
        }
    }
    Ok(())
}
