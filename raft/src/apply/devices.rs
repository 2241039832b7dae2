//! Disks and NICs on their own (cluster level 3): floating disks made, grown and deleted; disks
//! attached to and detached from VMs, plugged and unplugged; NICs added, removed, plugged and
//! unplugged. A change to a running VM is recorded in its configuration at once and its host
//! makes the domain match (`hot_seq`); if the hypervisor or the guest refuses, the host's report
//! puts the configuration back to what runs (report.rs), so the state never claims what does
//! not run.

use std::collections::BTreeSet;

use uuid::Uuid;

use super::OpResult;
use crate::command::Outcome;
use crate::error::{quote, ClusterError};
use crate::model::{Attachment, ClusterState, Disk, EventKind, LiveDevices, Nic, Vm, VmStatus, HOTPLUG_LEVEL};
use crate::validate;

impl ClusterState {
    /// Whether the cluster runs at the level where running VMs change in place.
    pub(super) fn hotplug_level(&self) -> bool {
        self.cluster.as_ref().is_some_and(|c| c.level >= HOTPLUG_LEVEL)
    }

    fn require_hotplug(&self, what: &str) -> Result<(), ClusterError> {
        self.require_cluster()?;
        if !self.hotplug_level() {
            return Err(ClusterError::FailedPrecondition(format!(
                "{what} needs cluster level {HOTPLUG_LEVEL}: run `corral cluster upgrade` first"
            )));
        }
        Ok(())
    }

    fn disk_named(&self, name_or_id: &str) -> Result<Disk, ClusterError> {
        self.find_disk(name_or_id)
            .cloned()
            .ok_or_else(|| ClusterError::NotFound(format!("disk '{}' not found", quote(name_or_id))))
    }

    pub(super) fn create_disk(&mut self, now: i64, disk: &Disk) -> OpResult {
        self.require_hotplug("disk create")?;
        validate::name("name", &disk.name)?;
        self.check_new_disks(std::slice::from_ref(disk))?;
        let disk = Disk { vm: None, created_ms: now, ..disk.clone() };
        self.disks.insert(disk.id, disk.clone());
        let msg = format!("Disk {} was created ({} MiB, {}, floating).", disk.name, disk.size_mib, disk.format);
        self.record(now, EventKind::DiskCreated, msg);
        Ok(Outcome::Disk(Box::new(disk)))
    }

    /// Grows a disk; the image of a disk no running VM holds was grown by the proposing node,
    /// a running VM's host grows it live.
    pub(super) fn resize_disk(
        &mut self,
        now: i64,
        name: &str,
        size_mib: u64,
        touched: &mut BTreeSet<Uuid>,
    ) -> OpResult {
        self.require_hotplug("disk resize")?;
        let disk = self.disk_named(name)?;
        if size_mib < disk.size_mib {
            return Err(ClusterError::invalid(
                "size",
                format!("disks only grow: disk '{}' has {} MiB (got {size_mib} MiB)", disk.name, disk.size_mib),
            ));
        }
        if size_mib == disk.size_mib {
            return Ok(Outcome::Disk(Box::new(disk)));
        }
        let live = match disk.vm.and_then(|v| self.vms.get(&v)) {
            Some(vm) if vm.is_running() && !vm.attachment(disk.id).unplugged => {
                busy_migrating(vm)?;
                Some(vm.id)
            }
            _ => None,
        };
        let d = self.disks.get_mut(&disk.id).ok_or_else(|| ClusterError::Internal("disk vanished".into()))?;
        d.size_mib = size_mib;
        let out = d.clone();
        if let Some(vm) = disk.vm.and_then(|v| self.vms.get_mut(&v)) {
            touched.insert(vm.id);
            if live.is_some() {
                order_hot_change(vm);
            }
        }
        let how = if live.is_some() { " (live)" } else { "" };
        let msg = format!("Disk {} was grown from {} to {size_mib} MiB{how}.", disk.name, disk.size_mib);
        self.record(now, EventKind::DiskCreated, msg);
        Ok(Outcome::Disk(Box::new(out)))
    }

    /// Deletes a floating disk (one attached to a VM goes with `vm disk detach` first).
    pub(super) fn delete_disk(&mut self, now: i64, name: &str) -> OpResult {
        self.require_hotplug("disk delete")?;
        let disk = self.disk_named(name)?;
        if let Some(vm) = disk.vm {
            return Err(ClusterError::FailedPrecondition(format!(
                "disk '{}' is attached to vm '{}'; detach it first (`corral vm disk detach {} {}`)",
                disk.name,
                self.vm_names_of(&[vm]).join(""),
                self.vm_names_of(&[vm]).join(""),
                disk.name
            )));
        }
        self.disks.remove(&disk.id);
        self.record(now, EventKind::DiskDeleted, format!("Disk {} was deleted.", disk.name));
        Ok(Outcome::Disk(Box::new(disk)))
    }

    pub(super) fn attach_disk(
        &mut self,
        now: i64,
        vm: &str,
        disk: &str,
        new: Option<&Disk>,
        attachment: &Attachment,
    ) -> OpResult {
        self.require_hotplug("vm disk attach")?;
        let v = self.find_vm(vm).ok_or_else(|| ClusterError::vm_not_found(vm))?.clone();
        stateless_runs(&v, "attached")?;
        if v.config.disks.len() >= validate::MAX_DISKS {
            return Err(ClusterError::FailedPrecondition(format!(
                "vm '{}' has {} disks, the most a VM may have",
                v.config.name,
                validate::MAX_DISKS
            )));
        }
        let d = match new {
            Some(d) => {
                validate::name("name", &d.name)?;
                self.check_new_disks(std::slice::from_ref(d))?;
                Disk { vm: None, created_ms: now, ..d.clone() }
            }
            None => {
                let d = self.disk_named(disk)?;
                if let Some(owner) = d.vm {
                    return Err(ClusterError::FailedPrecondition(format!(
                        "disk '{}' is attached to vm '{}' already",
                        d.name,
                        self.vm_names_of(&[owner]).join("")
                    )));
                }
                d
            }
        };
        let plug = !attachment.unplugged && v.is_running();
        if plug {
            busy_migrating(&v)?;
        }
        let mut a = *attachment;
        if a.bootable && v.config.disks.iter().any(|id| v.attachment(*id).bootable) {
            return Err(ClusterError::FailedPrecondition(format!(
                "vm '{}' has a bootable disk already; only one disk boots",
                v.config.name
            )));
        }
        a.bootable |= v.config.disks.is_empty() && !a.unplugged && !a.optional;
        self.disks.insert(d.id, Disk { vm: Some(v.id), ..d.clone() });
        let vm = self.vms.get_mut(&v.id).ok_or_else(|| ClusterError::vm_not_found(vm))?;
        // The attachments of disks attached before level 3 are written out, so that the first
        // disk stays the bootable one whatever comes later.
        for id in vm.config.disks.clone() {
            let existing = vm.attachment(id);
            vm.config.attachments.entry(id).or_insert(existing);
        }
        vm.config.disks.push(d.id);
        vm.config.attachments.insert(d.id, a);
        if plug {
            order_hot_change(vm);
        }
        vm.config.updated_ms = now;
        let out = vm.clone();
        let how = match (new.is_some(), plug, a.unplugged) {
            (true, _, _) => format!("created ({} MiB) and attached", d.size_mib),
            _ => "attached".to_string(),
        };
        let state = if plug {
            ", plugged into the running VM"
        } else if a.unplugged {
            ", unplugged"
        } else {
            ""
        };
        let msg = format!(
            "Disk {} was {how} to VM {} ({}{}{}){state}.",
            d.name,
            out.config.name,
            a.interface.as_str(),
            if a.bootable { ", bootable" } else { "" },
            if a.optional { ", optional" } else { "" },
        );
        self.record(now, EventKind::VmEdited, msg);
        Ok(Outcome::Vm(Box::new(out)))
    }

    /// The disk floats again; a running VM must have it unplugged first.
    pub(super) fn detach_disk(&mut self, now: i64, vm: &str, disk: &str) -> OpResult {
        self.require_hotplug("vm disk detach")?;
        let (v, d) = self.vm_and_its_disk(vm, disk)?;
        settled(&v)?;
        if v.is_running() && !v.attachment(d.id).unplugged {
            return Err(ClusterError::FailedPrecondition(format!(
                "disk '{}' is plugged into running vm '{}'; unplug it first (`corral vm disk unplug {} {}`)",
                d.name, v.config.name, v.config.name, d.name
            )));
        }
        if v.config.delete_protected && v.config.disks.first() == Some(&d.id) {
            return Err(ClusterError::FailedPrecondition(format!(
                "vm '{}' is delete-protected; its boot disk stays",
                v.config.name
            )));
        }
        if let Some(x) = self.disks.get_mut(&d.id) {
            x.vm = None;
        }
        let vm = self.vms.get_mut(&v.id).ok_or_else(|| ClusterError::vm_not_found(vm))?;
        vm.config.disks.retain(|id| *id != d.id);
        vm.config.attachments.remove(&d.id);
        vm.config.updated_ms = now;
        let out = vm.clone();
        self.record(
            now,
            EventKind::VmEdited,
            format!("Disk {} was detached from VM {}; it floats.", d.name, v.config.name),
        );
        Ok(Outcome::Vm(Box::new(out)))
    }

    pub(super) fn plug_disk(&mut self, now: i64, vm: &str, disk: &str, plugged: bool) -> OpResult {
        self.require_hotplug(if plugged { "vm disk plug" } else { "vm disk unplug" })?;
        let (v, d) = self.vm_and_its_disk(vm, disk)?;
        let mut a = v.attachment(d.id);
        if a.unplugged != plugged {
            return Ok(Outcome::Vm(Box::new(v)));
        }
        let running = v.is_running();
        if running {
            busy_migrating(&v)?;
            if plugged {
                stateless_runs(&v, "plugged")?;
            }
        }
        a.unplugged = !plugged;
        let vm = self.vms.get_mut(&v.id).ok_or_else(|| ClusterError::vm_not_found(vm))?;
        vm.config.attachments.insert(d.id, a);
        if running {
            order_hot_change(vm);
        }
        vm.config.updated_ms = now;
        let out = vm.clone();
        let verb = if plugged { "plugged into" } else { "unplugged from" };
        let when = if running { " while it runs" } else { "" };
        self.record(now, EventKind::VmEdited, format!("Disk {} was {verb} VM {}{when}.", d.name, v.config.name));
        Ok(Outcome::Vm(Box::new(out)))
    }

    fn vm_and_its_disk(&self, vm: &str, disk: &str) -> Result<(Vm, Disk), ClusterError> {
        let v = self.find_vm(vm).ok_or_else(|| ClusterError::vm_not_found(vm))?.clone();
        let d = self.disk_named(disk)?;
        if d.vm != Some(v.id) {
            return Err(ClusterError::FailedPrecondition(format!(
                "disk '{}' is not attached to vm '{}'",
                d.name, v.config.name
            )));
        }
        Ok((v, d))
    }

    pub(super) fn add_nic(&mut self, now: i64, vm: &str, nic: &Nic) -> OpResult {
        self.require_hotplug("vm nic add")?;
        validate::nics(std::slice::from_ref(nic))?;
        let v = self.find_vm(vm).ok_or_else(|| ClusterError::vm_not_found(vm))?.clone();
        if v.config.nics.len() >= validate::MAX_NICS {
            return Err(ClusterError::FailedPrecondition(format!(
                "vm '{}' has {} NICs, the most a VM may have",
                v.config.name,
                validate::MAX_NICS
            )));
        }
        let same = |n: &Nic| n.mac.eq_ignore_ascii_case(&nic.mac);
        if let Some(other) = self.vms.values().find(|o| o.config.nics.iter().any(same)) {
            return Err(ClusterError::AlreadyExists(format!(
                "MAC {} is in use by vm '{}'",
                nic.mac, other.config.name
            )));
        }
        let name = if nic.name.is_empty() { v.next_nic_name() } else { nic.name.clone() };
        validate::name("nic", &name)?;
        if v.nic_index(&name).is_some() {
            return Err(ClusterError::AlreadyExists(format!("vm '{}' has a NIC named {name}", v.config.name)));
        }
        let plug = !nic.unplugged && v.is_running();
        if plug {
            busy_migrating(&v)?;
        }
        let vm = self.vms.get_mut(&v.id).ok_or_else(|| ClusterError::vm_not_found(vm))?;
        name_nics(vm);
        vm.config.nics.push(Nic { name: name.clone(), ..nic.clone() });
        if plug {
            order_hot_change(vm);
        }
        vm.config.updated_ms = now;
        let out = vm.clone();
        let state = if plug { ", plugged into the running VM" } else { "" };
        let msg = format!("NIC {name} ({}, {}) was added to VM {}{state}.", nic.network, nic.mac, v.config.name);
        self.record(now, EventKind::VmEdited, msg);
        Ok(Outcome::Vm(Box::new(out)))
    }

    pub(super) fn remove_nic(&mut self, now: i64, vm: &str, nic: &str) -> OpResult {
        self.require_hotplug("vm nic remove")?;
        let (v, i) = self.vm_and_its_nic(vm, nic)?;
        settled(&v)?;
        if v.is_running() && !v.config.nics[i].unplugged {
            return Err(ClusterError::FailedPrecondition(format!(
                "NIC {nic} is plugged into running vm '{}'; unplug it first (`corral vm nic unplug {} {nic}`)",
                v.config.name, v.config.name
            )));
        }
        let vm = self.vms.get_mut(&v.id).ok_or_else(|| ClusterError::vm_not_found(vm))?;
        name_nics(vm);
        let gone = vm.config.nics.remove(i);
        vm.config.updated_ms = now;
        let out = vm.clone();
        let msg = format!("NIC {} ({}) was removed from VM {}.", gone.name, gone.mac, v.config.name);
        self.record(now, EventKind::VmEdited, msg);
        Ok(Outcome::Vm(Box::new(out)))
    }

    pub(super) fn plug_nic(&mut self, now: i64, vm: &str, nic: &str, plugged: bool) -> OpResult {
        self.require_hotplug(if plugged { "vm nic plug" } else { "vm nic unplug" })?;
        let (v, i) = self.vm_and_its_nic(vm, nic)?;
        if v.config.nics[i].unplugged != plugged {
            return Ok(Outcome::Vm(Box::new(v)));
        }
        let running = v.is_running();
        if running {
            busy_migrating(&v)?;
        }
        let vm = self.vms.get_mut(&v.id).ok_or_else(|| ClusterError::vm_not_found(vm))?;
        name_nics(vm);
        vm.config.nics[i].unplugged = !plugged;
        if running {
            order_hot_change(vm);
        }
        vm.config.updated_ms = now;
        let out = vm.clone();
        let verb = if plugged { "plugged into" } else { "unplugged from" };
        let when = if running { " while it runs" } else { "" };
        self.record(now, EventKind::VmEdited, format!("NIC {nic} was {verb} VM {}{when}.", v.config.name));
        Ok(Outcome::Vm(Box::new(out)))
    }

    fn vm_and_its_nic(&self, vm: &str, nic: &str) -> Result<(Vm, usize), ClusterError> {
        let v = self.find_vm(vm).ok_or_else(|| ClusterError::vm_not_found(vm))?.clone();
        let i = v.nic_index(nic).ok_or_else(|| {
            ClusterError::NotFound(format!("vm '{}' has no NIC named '{}'", v.config.name, quote(nic)))
        })?;
        Ok((v, i))
    }
}

/// NICs made before names were kept get the names they were shown with, before the list
/// changes and positions shift.
fn name_nics(vm: &mut Vm) {
    for i in 0..vm.config.nics.len() {
        if vm.config.nics[i].name.is_empty() {
            vm.config.nics[i].name = vm.nic_name(i);
        }
    }
}

/// Orders the VM's host to make its running domain match its configuration again.
pub(super) fn order_hot_change(vm: &mut Vm) {
    vm.runtime.hot_seq += 1;
    vm.runtime.hot_error = None;
}

/// A running VM whose host has not confirmed the last change yet (an unplug the guest may still
/// refuse) keeps its devices attached until it has.
fn settled(vm: &Vm) -> Result<(), ClusterError> {
    if vm.is_running() && vm.runtime.hot_done < vm.runtime.hot_seq {
        return Err(ClusterError::FailedPrecondition(format!(
            "vm '{}' has a change its host has not confirmed yet; try again when it has (`corral vm show {}`)",
            vm.config.name, vm.config.name
        )));
    }
    Ok(())
}

fn busy_migrating(vm: &Vm) -> Result<(), ClusterError> {
    if vm.migration_state.migrating_to.is_some() || vm.runtime.status == VmStatus::Migrating {
        return Err(ClusterError::FailedPrecondition(format!(
            "vm '{}' is migrating; change its devices when the migration ends",
            vm.config.name
        )));
    }
    Ok(())
}

/// A host's report that it changed the running domain (or could not): on failure the
/// configuration becomes what runs, so that it never claims what the guest does not have.
/// Returns the event to record and whether the configuration changed.
pub(super) fn hotplugged(
    vm: &mut Vm,
    seq: u64,
    error: Option<&str>,
    live: &LiveDevices,
    host_name: &str,
) -> (Option<(EventKind, String)>, bool) {
    if seq < vm.runtime.hot_done {
        return (None, false);
    }
    vm.runtime.hot_done = seq;
    let Some(error) = error else {
        if seq >= vm.runtime.hot_seq {
            vm.runtime.hot_error = None;
        }
        return (None, false);
    };
    vm.runtime.hot_error = Some(error.to_string());
    let name = vm.config.name.clone();
    if seq < vm.runtime.hot_seq {
        // A later change is on its way to the host, which will report on it again.
        let msg = format!("Could not change VM {name} on host {host_name}: {error}");
        return (Some((EventKind::VmEdited, msg)), false);
    }
    let mut reverted = Vec::new();
    let c = &mut vm.config;
    if live.memory_mib != 0 && live.memory_mib != c.memory_mib {
        reverted.push(format!("memory {} MiB", live.memory_mib));
        c.memory_mib = live.memory_mib;
    }
    if live.vcpus != 0 && live.vcpus != c.vcpus {
        reverted.push(format!("{} vCPUs", live.vcpus));
        c.vcpus = live.vcpus;
    }
    // A domain started before level 3 has no drive: its CD setting is not what failed.
    if live.cdrom != c.cdrom && vm.runtime.run_limits.is_some() {
        reverted.push(format!("CD {}", live.cdrom.as_deref().unwrap_or("none")));
        c.cdrom = live.cdrom.clone();
    }
    for id in c.disks.clone() {
        let mut a = c
            .attachments
            .get(&id)
            .copied()
            .unwrap_or(Attachment { bootable: c.disks.first() == Some(&id), ..Attachment::default() });
        let plugged = live.disks.contains(&id);
        if a.unplugged == plugged {
            a.unplugged = !plugged;
            reverted.push(format!("disk {id} {}", if plugged { "plugged" } else { "unplugged" }));
            c.attachments.insert(id, a);
        }
    }
    for n in &mut c.nics {
        let plugged = live.nics.iter().any(|m| m.eq_ignore_ascii_case(&n.mac));
        if n.unplugged == plugged {
            n.unplugged = !plugged;
            reverted.push(format!("NIC {} {}", n.mac, if plugged { "plugged" } else { "unplugged" }));
        }
    }
    let changed = !reverted.is_empty();
    let runs =
        if changed { format!(" Its configuration is what runs: {}.", reverted.join(", ")) } else { String::new() };
    let msg = format!("Could not change VM {name} on host {host_name}: {error}. It runs on as it was.{runs}");
    (Some((EventKind::VmEdited, msg)), changed)
}

/// A running stateless VM takes no disk it did not start with: that disk has no stateless
/// snapshot to go back to when it stops.
fn stateless_runs(v: &Vm, what: &str) -> Result<(), ClusterError> {
    if v.config.stateless && v.is_running() {
        return Err(ClusterError::FailedPrecondition(format!(
            "vm '{}' is stateless and running: a disk {what} now would keep what is written to it; stop it first",
            v.config.name
        )));
    }
    Ok(())
}
