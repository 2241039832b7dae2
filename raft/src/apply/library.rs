//! The library (cluster level 5): ISOs, templates and service offerings, and what a new VM takes
//! from them. The files (ISOs, template bases) are made by the proposing node before the command
//! and removed by it after a deletion; apply keeps the records and refuses what would leave a VM
//! without a file it needs.

use super::OpResult;
use crate::command::Outcome;
use crate::error::{quote, ClusterError};
use crate::model::{
    ClusterState, EventKind, Iso, Offering, OfferingChanges, Template, VmStatus, LIBRARY_LEVEL, MAX_LIBRARY_ITEMS,
};
use crate::validate;

impl ClusterState {
    pub(crate) fn library_level(&self) -> bool {
        self.cluster.as_ref().is_some_and(|c| c.level >= LIBRARY_LEVEL)
    }

    pub(super) fn require_library(&self, what: &str) -> Result<(), ClusterError> {
        self.require_cluster()?;
        if !self.library_level() {
            return Err(ClusterError::FailedPrecondition(format!(
                "{what} needs cluster level {LIBRARY_LEVEL}: run `corral cluster upgrade` first"
            )));
        }
        Ok(())
    }

    pub(super) fn add_iso(&mut self, now: i64, iso: &Iso) -> OpResult {
        self.require_library("iso add")?;
        validate::name("name", &iso.name)?;
        validate::text("description", &iso.description)?;
        validate::path("file", &iso.file)?;
        if !iso.os.is_empty() {
            validate::os(&iso.os)?;
        }
        if self.library.isos.len() >= MAX_LIBRARY_ITEMS {
            return Err(ClusterError::FailedPrecondition(format!(
                "the library holds {MAX_LIBRARY_ITEMS} ISOs already"
            )));
        }
        if self.library.iso(&iso.name).is_some() || self.library.isos.contains_key(&iso.id) {
            return Err(ClusterError::AlreadyExists(format!("iso '{}' already exists", iso.name)));
        }
        if self.library.iso_of_file(&iso.file).is_some() {
            return Err(ClusterError::AlreadyExists(format!("an ISO with file {} already exists", quote(&iso.file))));
        }
        let iso = Iso { created_ms: now, ..iso.clone() };
        self.library.isos.insert(iso.id, iso.clone());
        let mib = iso.size_bytes.div_ceil(1 << 20);
        let boot = if iso.bootable { ", bootable" } else { "" };
        self.record(now, EventKind::Library, format!("ISO {} was added ({mib} MiB{boot}).", iso.name));
        Ok(Outcome::Iso(Box::new(iso)))
    }

    /// The VMs (by name) that have file `file` in their CD-ROM drive, now or at their next run.
    pub fn vms_using_cd(&self, file: &str) -> Vec<String> {
        let mut out: Vec<String> = self
            .vms
            .values()
            .filter(|v| {
                v.config.cdrom.as_deref() == Some(file)
                    || v.config
                        .next_run
                        .as_ref()
                        .and_then(|n| n.cdrom.as_ref())
                        .is_some_and(|c| c.as_deref() == Some(file))
            })
            .map(|v| v.config.name.clone())
            .collect();
        out.sort();
        out
    }

    pub(super) fn delete_iso(&mut self, now: i64, name: &str) -> OpResult {
        self.require_library("iso delete")?;
        let iso = self.library.iso(name).cloned().ok_or_else(|| iso_not_found(name))?;
        let users = self.vms_using_cd(&iso.file);
        if !users.is_empty() {
            return Err(ClusterError::FailedPrecondition(format!(
                "iso '{}' is in the CD-ROM drive of {}: eject it first (`corral vm cd VM --eject`)",
                iso.name,
                names_of("vm", &users)
            )));
        }
        let templates: Vec<String> = self
            .library
            .templates
            .values()
            .filter(|t| t.config.cdrom.as_deref() == Some(iso.file.as_str()))
            .map(|t| t.name.clone())
            .collect();
        if !templates.is_empty() {
            return Err(ClusterError::FailedPrecondition(format!(
                "iso '{}' is in the CD-ROM drive of {}, which its VMs get: delete the template first",
                iso.name,
                names_of("template", &templates)
            )));
        }
        self.library.isos.remove(&iso.id);
        self.record(now, EventKind::Library, format!("ISO {} was deleted.", iso.name));
        Ok(Outcome::Removed { files: vec![iso.file] })
    }

    pub(super) fn create_template(&mut self, now: i64, vm_name: &str, t: &Template) -> OpResult {
        self.require_library("template create")?;
        validate::name("name", &t.name)?;
        validate::text("description", &t.description)?;
        if self.library.templates.len() >= MAX_LIBRARY_ITEMS {
            return Err(ClusterError::FailedPrecondition(format!(
                "the library holds {MAX_LIBRARY_ITEMS} templates already"
            )));
        }
        if self.library.template(&t.name).is_some() || self.library.templates.contains_key(&t.id) {
            return Err(ClusterError::AlreadyExists(format!("template '{}' already exists", t.name)));
        }
        let vm = self.find_vm(vm_name).ok_or_else(|| ClusterError::vm_not_found(vm_name))?;
        if vm.runtime.status != VmStatus::Down || vm.runtime.host.is_some() {
            return Err(ClusterError::FailedPrecondition(format!(
                "vm '{}' is {}; a template is made of a down VM: shut it down first",
                vm.config.name,
                vm.runtime.status.as_str()
            )));
        }
        if vm.config.hosted_engine {
            return Err(ClusterError::FailedPrecondition(format!(
                "vm '{}' is the hosted engine; it makes no template",
                vm.config.name
            )));
        }
        // The bases must be copies of exactly the VM's disks, in its order.
        let sources: Vec<_> = vm.config.disks.iter().filter_map(|d| self.disks.get(d)).collect();
        if sources.len() != t.disks.len() || sources.iter().zip(&t.disks).any(|(s, b)| s.size_mib != b.size_mib) {
            return Err(ClusterError::FailedPrecondition(format!(
                "vm '{}' has {} disks and the template {}: its disks changed while they were copied; try again",
                vm.config.name,
                sources.len(),
                t.disks.len()
            )));
        }
        let files_taken = t.disks.iter().any(|b| {
            self.disks.values().any(|d| d.file == b.file)
                || self.library.templates.values().any(|x| x.disks.iter().any(|y| y.file == b.file || y.id == b.id))
        });
        if files_taken {
            return Err(ClusterError::AlreadyExists("a base image of that file or id exists already".into()));
        }
        let mut config = vm.config.clone();
        let disks = t
            .disks
            .iter()
            .zip(&vm.config.disks)
            .map(|(b, d)| crate::model::TemplateDisk { attachment: vm.config.attachment(*d), ..b.clone() })
            .collect();
        config.disks.clear();
        config.attachments.clear();
        config.next_run = None;
        config.hosted_engine = false;
        config.delete_protected = false;
        // Each VM made from it is a host of its own: it is named after itself, not the source.
        if let Some(ci) = &mut config.cloud_init {
            ci.hostname = None;
        }
        config.created_ms = now;
        config.updated_ms = now;
        let template =
            Template { config: Box::new(config), disks, from_vm: vm.config.name.clone(), created_ms: now, ..t.clone() };
        let msg = format!(
            "Template {} was made from VM {} ({} disk{}).",
            template.name,
            template.from_vm,
            template.disks.len(),
            if template.disks.len() == 1 { "" } else { "s" }
        );
        self.library.templates.insert(template.id, template.clone());
        self.record(now, EventKind::Library, msg);
        Ok(Outcome::Template(Box::new(template)))
    }

    /// A stateless VM's disks must all be qcow2: only they take the snapshot it goes back to.
    pub(super) fn stateless_disks_ok(&self, vm: &crate::model::Vm) -> Result<(), ClusterError> {
        let raw: Vec<String> = vm
            .config
            .disks
            .iter()
            .filter_map(|d| self.disks.get(d))
            .filter(|d| d.format != "qcow2")
            .map(|d| d.name.clone())
            .collect();
        if !raw.is_empty() {
            return Err(ClusterError::FailedPrecondition(format!(
                "vm '{}' has disks that are not qcow2 ({}), which cannot go back at each stop: it cannot be stateless",
                vm.config.name,
                raw.join(", ")
            )));
        }
        Ok(())
    }

    /// The disks (by VM name, or the disk's own name when floating) that build on a base of `t`.
    pub fn thin_users(&self, t: &Template) -> Vec<String> {
        let mut out: Vec<String> = self
            .disks
            .values()
            .filter(|d| d.base.is_some_and(|b| t.disks.iter().any(|x| x.id == b)))
            .map(|d| match d.vm.and_then(|v| self.vms.get(&v)) {
                Some(vm) => format!("vm {}", vm.config.name),
                None => format!("disk {}", d.name),
            })
            .collect();
        out.sort();
        out.dedup();
        out
    }

    pub(super) fn delete_template(&mut self, now: i64, name: &str) -> OpResult {
        self.require_library("template delete")?;
        let t = self.library.template(name).cloned().ok_or_else(|| template_not_found(name))?;
        let users = self.thin_users(&t);
        if !users.is_empty() {
            return Err(ClusterError::FailedPrecondition(format!(
                "template '{}' is the base of thin disks of {}: delete them (or clone the VMs) first",
                t.name,
                users.join(", ")
            )));
        }
        self.library.templates.remove(&t.id);
        self.record(now, EventKind::Library, format!("Template {} was deleted.", t.name));
        Ok(Outcome::Removed { files: t.disks.iter().map(|d| d.file.clone()).collect() })
    }

    pub(super) fn create_offering(&mut self, now: i64, o: &Offering) -> OpResult {
        self.require_library("offering create")?;
        validate::name("name", &o.name)?;
        validate::text("description", &o.description)?;
        validate::memory_mib(o.memory_mib)?;
        validate::vcpus(o.vcpus)?;
        if self.library.offerings.len() >= MAX_LIBRARY_ITEMS {
            return Err(ClusterError::FailedPrecondition(format!(
                "the library holds {MAX_LIBRARY_ITEMS} offerings already"
            )));
        }
        if self.library.offering(&o.name).is_some() || self.library.offerings.contains_key(&o.id) {
            return Err(ClusterError::AlreadyExists(format!("offering '{}' already exists", o.name)));
        }
        let o = Offering { created_ms: now, ..o.clone() };
        self.library.offerings.insert(o.id, o.clone());
        self.record(now, EventKind::Library, format!("Offering {} was created ({}).", o.name, offering_size(&o)));
        Ok(Outcome::Offering(Box::new(o)))
    }

    pub(super) fn edit_offering(&mut self, now: i64, name: &str, c: &OfferingChanges) -> OpResult {
        self.require_library("offering edit")?;
        let mut o = self.library.offering(name).cloned().ok_or_else(|| offering_not_found(name))?;
        if *c == OfferingChanges::default() {
            return Err(ClusterError::invalid("edit", "nothing to change: give at least one field"));
        }
        if let Some(d) = &c.description {
            validate::text("description", d)?;
            o.description = d.clone();
        }
        if let Some(m) = c.memory_mib {
            validate::memory_mib(m)?;
            o.memory_mib = m;
        }
        if let Some(v) = c.vcpus {
            validate::vcpus(v)?;
            o.vcpus = v;
        }
        if let Some(ha) = c.ha {
            o.ha = ha;
        }
        self.library.offerings.insert(o.id, o.clone());
        self.record(
            now,
            EventKind::Library,
            format!("Offering {} was changed ({}); VMs made from it keep their size.", o.name, offering_size(&o)),
        );
        Ok(Outcome::Offering(Box::new(o)))
    }

    /// `touched` gets the VMs whose offering it clears (their documents change).
    pub(super) fn delete_offering(
        &mut self,
        now: i64,
        name: &str,
        touched: &mut std::collections::BTreeSet<uuid::Uuid>,
    ) -> OpResult {
        self.require_library("offering delete")?;
        let o = self.library.offering(name).cloned().ok_or_else(|| offering_not_found(name))?;
        let mut kept = 0;
        for vm in self.vms.values_mut().filter(|v| v.config.offering.as_deref() == Some(o.name.as_str())) {
            vm.config.offering = None;
            touched.insert(vm.id);
            kept += 1;
        }
        self.library.offerings.remove(&o.id);
        let of = if kept == 0 { String::new() } else { format!("; its {kept} VM(s) keep their size") };
        self.record(now, EventKind::Library, format!("Offering {} was deleted{of}.", o.name));
        Ok(Outcome::Offering(Box::new(o)))
    }
}

/// "1 vCPU, 1024 MiB, highly available".
pub fn offering_size(o: &Offering) -> String {
    format!(
        "{} vCPU{}, {} MiB{}",
        o.vcpus,
        if o.vcpus == 1 { "" } else { "s" },
        o.memory_mib,
        if o.ha { ", highly available" } else { "" }
    )
}

fn names_of(kind: &str, names: &[String]) -> String {
    let list = names.iter().map(|n| format!("{kind} {n}")).collect::<Vec<_>>();
    list.join(", ")
}

pub fn iso_not_found(name: &str) -> ClusterError {
    ClusterError::NotFound(format!("iso '{}' not found", quote(name)))
}

pub fn template_not_found(name: &str) -> ClusterError {
    ClusterError::NotFound(format!("template '{}' not found", quote(name)))
}

pub fn offering_not_found(name: &str) -> ClusterError {
    ClusterError::NotFound(format!("offering '{}' not found", quote(name)))
}
