//! A VM's record as a whole: creating, cloning and deleting VMs, and deleting disks. A VM
//! created with `--start` is placed on a copy of the state first, so that one that cannot
//! start is not created either.

use std::collections::BTreeSet;

use uuid::Uuid;

use super::OpResult;
use crate::command::{Outcome, StartOrder, VmSpec};
use crate::error::ClusterError;
use crate::model::{ClusterState, Disk, EventKind, HaSettings, Vm, VmConfig, VmStatus};
use crate::validate;

impl ClusterState {
    pub(super) fn create_vm(
        &mut self,
        now: i64,
        id: Uuid,
        spec: &VmSpec,
        disks: &[Disk],
        start: Option<&StartOrder>,
    ) -> OpResult {
        self.require_cluster()?;
        validate::vm_spec(spec)?;
        if self.vm_names.contains_key(&spec.name) {
            return Err(ClusterError::AlreadyExists(format!("vm '{}' already exists", spec.name)));
        }
        if self.vms.contains_key(&id) {
            return Err(ClusterError::AlreadyExists(format!("a vm with id {id} already exists")));
        }
        self.check_new_disks(disks)?;
        if spec.uses_library() {
            self.require_library("templates, offerings, ISOs, boot order, cloud-init and stateless VMs")?;
        }
        let mut vm = Vm::new(id, &spec.name, spec.memory_mib, spec.vcpus, now);
        // From a template: its configuration first, the request's own fields over it.
        let base = match &spec.template {
            Some(from) => self.template_base(from, disks)?,
            None => vm.config.clone(),
        };
        vm.config = VmConfig {
            name: spec.name.clone(),
            memory_mib: spec.memory_mib,
            vcpus: spec.vcpus,
            description: spec.description.clone(),
            comment: spec.comment.clone(),
            ha: HaSettings { enabled: spec.ha_enabled, priority: spec.ha_priority },
            resume_behavior: spec.resume_behavior,
            disks: disks.iter().map(|d| d.id).collect(),
            nics: spec.nics.clone(),
            domain_type: spec.domain_type.or(base.domain_type),
            boot: spec.boot.clone().or(base.boot.clone()),
            created_ms: now,
            updated_ms: now,
            ..base
        };
        self.library_fields(&mut vm, spec)?;
        if vm.config.stateless {
            if let Some(d) = disks.iter().find(|d| d.format != "qcow2") {
                return Err(ClusterError::invalid(
                    "stateless",
                    format!("disk {} is {}, and a stateless VM's disks must be qcow2", d.name, d.format),
                ));
            }
        }
        if self.hotplug_level() {
            self.give_limits(&mut vm, spec.max_vcpus, spec.max_memory_mib)?;
            for (i, n) in vm.config.nics.iter_mut().enumerate() {
                if n.name.is_empty() {
                    n.name = format!("nic{}", i + 1);
                }
            }
        } else if spec.max_vcpus.is_some() || spec.max_memory_mib.is_some() {
            return Err(ClusterError::FailedPrecondition(format!(
                "max vCPUs and max memory need cluster level {}: run `corral cluster upgrade` first",
                crate::model::HOTPLUG_LEVEL
            )));
        }
        // With --start, a VM that cannot be placed is not created either: nothing half-done.
        if let Some(order) = start {
            self.start_placement(&vm, order)?;
        }
        let msg = format!(
            "VM {} was created ({} MiB, {} vCPU{}{}{}).",
            vm.config.name,
            vm.config.memory_mib,
            vm.config.vcpus,
            if vm.config.vcpus == 1 { "" } else { "s" },
            if disks.is_empty() {
                String::new()
            } else {
                format!(", {} disk{}", disks.len(), if disks.len() == 1 { "" } else { "s" })
            },
            if vm.config.ha.enabled {
                format!(", highly available, {} priority", vm.config.ha.priority)
            } else {
                String::new()
            }
        );
        for d in disks {
            self.disks.insert(d.id, Disk { vm: Some(id), created_ms: now, ..d.clone() });
        }
        self.add_vm(now, vm, msg, start)
    }

    /// A new VM's configuration from template `from`: `disks` are its bases' overlays or copies,
    /// in the bases' order, and take their attachments.
    fn template_base(&self, from: &crate::model::FromTemplate, disks: &[Disk]) -> Result<VmConfig, ClusterError> {
        let t = self.library.templates.get(&from.id).ok_or_else(|| super::library::template_not_found(&from.name))?;
        if disks.len() < t.disks.len() {
            return Err(ClusterError::invalid(
                "template",
                format!("template '{}' has {} disks and the VM was given {}", t.name, t.disks.len(), disks.len()),
            ));
        }
        for (d, b) in disks.iter().zip(&t.disks) {
            if from.thin && d.base != Some(b.id) {
                return Err(ClusterError::invalid("template", format!("disk {} is no overlay of {}", d.name, b.name)));
            }
        }
        let mut c = (*t.config).clone();
        c.attachments = disks.iter().zip(&t.disks).map(|(d, b)| (d.id, b.attachment)).collect();
        c.from_template = Some(crate::model::FromTemplate { id: t.id, name: t.name.clone(), thin: from.thin });
        c.offering = None;
        Ok(c)
    }

    /// The level-5 fields of a new VM: its offering's size, CD, boot order, cloud-init seed,
    /// statelessness and OS.
    fn library_fields(&self, vm: &mut Vm, spec: &VmSpec) -> Result<(), ClusterError> {
        let c = &mut vm.config;
        if let Some(name) = &spec.offering {
            let o = self.library.offering(name).ok_or_else(|| super::library::offering_not_found(name))?;
            c.memory_mib = o.memory_mib;
            c.vcpus = o.vcpus;
            c.ha.enabled = o.ha || spec.ha_enabled;
            c.offering = Some(o.name.clone());
        }
        if let Some(cd) = &spec.cdrom {
            validate::path("iso", cd)?;
            c.cdrom = Some(cd.clone());
        }
        if !spec.boot_order.is_empty() {
            c.boot_order = spec.boot_order.clone();
        } else if spec.cdrom.is_some() && spec.template.is_none() && spec.boot.is_none() {
            // A new VM with an ISO installs from it: the CD first, then the disk it installs to.
            c.boot_order = vec![crate::model::BootDevice::Cdrom, crate::model::BootDevice::Disk];
        }
        if let Some(ci) = &spec.cloud_init {
            validate::cloud_init(ci)?;
            c.cloud_init = Some(ci.clone());
        }
        if spec.stateless {
            c.stateless = true;
        }
        if let Some(os) = &spec.os {
            validate::os(os)?;
            c.os = os.clone();
        }
        Ok(())
    }

    /// The hot-plug limits of a new VM: what it asks for, else 4x its memory (from 256 MiB on) and
    /// the largest host's CPUs (never below what it has).
    fn give_limits(
        &self,
        vm: &mut Vm,
        max_vcpus: Option<u32>,
        max_memory_mib: Option<u64>,
    ) -> Result<(), ClusterError> {
        let c = &mut vm.config;
        if let Some(m) = max_memory_mib.filter(|m| *m < c.memory_mib) {
            return Err(ClusterError::invalid(
                "max_memory",
                format!("must be at least the memory ({} MiB; got {m} MiB)", c.memory_mib),
            ));
        }
        if let Some(m) = max_vcpus.filter(|m| *m < c.vcpus) {
            return Err(ClusterError::invalid(
                "max_vcpus",
                format!("must be at least the vCPUs ({}; got {m})", c.vcpus),
            ));
        }
        let largest = self.hosts.values().map(|h| h.facts.cpus).max().unwrap_or(0);
        // A guest this small may not boot with room for memory hot-plug (Debian 12's kernel runs
        // out of memory at boot with 128 MiB and any maximum; 160 MiB boots): no room unless asked.
        let room = c.memory_mib >= crate::model::MIN_HOTPLUG_MEMORY_MIB;
        c.max_memory_mib =
            Some(max_memory_mib.unwrap_or(if room { c.memory_mib.saturating_mul(4) } else { c.memory_mib }));
        c.max_vcpus = Some(max_vcpus.unwrap_or(largest.max(c.vcpus)));
        Ok(())
    }

    /// Records a new VM (its disks recorded already) with its event, and starts it if asked
    /// (the caller tried the start on a copy of the state first, so it is not refused here).
    pub(crate) fn add_vm(&mut self, now: i64, vm: Vm, msg: String, start: Option<&StartOrder>) -> OpResult {
        let id = vm.id;
        let created = Outcome::Vm(Box::new(vm.clone()));
        self.vm_names.insert(vm.config.name.clone(), id);
        self.vms.insert(id, vm);
        self.record(now, EventKind::VmCreated, msg);
        match start {
            Some(order) => self.start_vm(now, &id.to_string(), order),
            None => Ok(created),
        }
    }

    pub(super) fn check_new_disks(&self, disks: &[Disk]) -> Result<(), ClusterError> {
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

    pub(super) fn delete_vm(&mut self, now: i64, name_or_id: &str, keep_disks: bool) -> OpResult {
        self.require_cluster()?;
        let Some(vm) = self.vm_id_of(name_or_id).and_then(|id| self.vms.get(&id)) else {
            return Err(ClusterError::vm_not_found(name_or_id));
        };
        if vm.config.hosted_engine {
            return Err(ClusterError::FailedPrecondition(format!(
                "vm '{}' is the cluster's hosted engine and cannot be deleted",
                vm.config.name
            )));
        }
        if vm.config.delete_protected {
            return Err(ClusterError::FailedPrecondition(format!(
                "vm '{}' is delete-protected; lift it first with `corral vm edit {} --delete-protected false`",
                vm.config.name, vm.config.name
            )));
        }
        if vm.runtime.status != VmStatus::Down {
            return Err(ClusterError::FailedPrecondition(format!(
                "vm '{}' is {}; shut it down before deleting it",
                vm.config.name,
                vm.runtime.status.as_str()
            )));
        }
        let id = vm.id;
        let Some(removed) = self.vms.remove(&id) else { return Err(ClusterError::vm_not_found(name_or_id)) };
        self.vm_names.remove(&removed.config.name);
        self.forget_vm_in_rules(id);
        let mut files = Vec::new();
        for disk_id in &removed.config.disks {
            if keep_disks {
                if let Some(d) = self.disks.get_mut(disk_id) {
                    d.vm = None;
                }
            } else if let Some(d) = self.disks.remove(disk_id) {
                files.push(d.file);
            }
        }
        let disks_note = match (removed.config.disks.len(), keep_disks) {
            (0, _) => String::new(),
            (n, true) => format!(" Its {n} disk(s) were kept as floating disks."),
            (n, false) => format!(" Its {n} disk(s) were deleted."),
        };
        self.record(now, EventKind::VmDeleted, format!("VM {} was deleted.{disks_note}", removed.config.name));
        Ok(Outcome::VmDeleted { id, files })
    }

    pub(super) fn clone_vm(
        &mut self,
        now: i64,
        source: &str,
        id: Uuid,
        name: &str,
        disks: &[Disk],
        macs: &[String],
    ) -> OpResult {
        self.require_cluster()?;
        let src = self.find_vm(source).ok_or_else(|| ClusterError::vm_not_found(source))?.clone();
        if src.runtime.status != VmStatus::Down {
            return Err(ClusterError::FailedPrecondition(format!(
                "vm '{}' is {}; only a down VM can be cloned",
                src.config.name,
                src.runtime.status.as_str()
            )));
        }
        validate::name("name", name)?;
        if self.vm_names.contains_key(name) {
            return Err(ClusterError::AlreadyExists(format!("vm '{name}' already exists")));
        }
        if disks.len() != src.config.disks.len() || macs.len() != src.config.nics.len() {
            return Err(ClusterError::Internal("a clone must copy every disk and give every NIC a new MAC".into()));
        }
        self.check_new_disks(disks)?;
        let mut vm = src.clone();
        vm.id = id;
        vm.config.name = name.to_string();
        // A copy of the engine VM is an ordinary VM (its delete protection stays, and may be
        // lifted).
        vm.config.hosted_engine = false;
        vm.config.disks = disks.iter().map(|d| d.id).collect();
        // Its disks are full copies, whatever its source's were.
        if let Some(t) = &mut vm.config.from_template {
            t.thin = false;
        }
        for (nic, mac) in vm.config.nics.iter_mut().zip(macs) {
            nic.mac = mac.clone();
        }
        vm.runtime.epoch = 0;
        vm.runtime.stop_reason = None;
        // A copy is down: it starts with the configuration its source would run next (level 3;
        // an earlier build keeps it pending, and every member must apply alike).
        if self.hotplug_level() {
            vm.settle_next_run();
        }
        vm.runtime.hot_seq = 0;
        vm.runtime.hot_done = 0;
        vm.runtime.hot_error = None;
        vm.config.attachments =
            src.config.disks.iter().zip(disks).map(|(old, new)| (new.id, src.attachment(*old))).collect();
        vm.ha_state.ha_restart = None;
        vm.ha_state.ha_restarting = false;
        // A copy starts without snapshots (its images are copies of the present disks).
        vm.snapshot_state = Default::default();
        vm.config.created_ms = now;
        vm.config.updated_ms = now;
        for d in disks {
            self.disks.insert(d.id, Disk { vm: Some(id), created_ms: now, ..d.clone() });
        }
        self.vm_names.insert(vm.config.name.clone(), id);
        self.vms.insert(id, vm.clone());
        self.record(now, EventKind::VmCreated, format!("VM {name} was created as a clone of {}.", src.config.name));
        Ok(Outcome::Vm(Box::new(vm)))
    }

    /// Deletes disk records (their image files are the caller's to remove); a VM that held one
    /// has a new document.
    pub(super) fn delete_disks(&mut self, now: i64, ids: &[Uuid], touched: &mut BTreeSet<Uuid>) -> OpResult {
        let protected = ids.iter().filter_map(|id| self.disks.get(id)).find_map(|d| {
            let vm = self.vms.get(&d.vm?)?;
            vm.config.delete_protected.then(|| (d.name.clone(), vm.config.name.clone()))
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
}
