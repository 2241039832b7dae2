//! `vm edit`: the changes an operator makes to a VM's configuration. Memory, vCPUs and the
//! domain type of a VM that is not down wait for its next run; the rest apply at once. The
//! changes are made on a copy, stored only when every one is allowed; the event names each.

use super::OpResult;
use crate::command::{Outcome, VmChanges};
use crate::error::ClusterError;
use crate::model::{ClusterState, EventKind, Vm, VmStatus};
use crate::validate;

impl ClusterState {
    pub(super) fn edit_vm(&mut self, now: i64, name_or_id: &str, c: &VmChanges) -> OpResult {
        self.require_cluster()?;
        validate::vm_changes(c)?;
        let before = self.find_vm(name_or_id).ok_or_else(|| ClusterError::vm_not_found(name_or_id))?.clone();
        if let Some(new_name) = c.name.as_ref().filter(|n| **n != before.config.name) {
            if self.vm_names.contains_key(new_name) {
                return Err(ClusterError::AlreadyExists(format!("vm '{new_name}' already exists")));
            }
        }
        let mut vm = before.clone();
        let mut what = Vec::new();
        edit_name(&mut vm, c, &mut what);
        edit_resources(&mut vm, c, &mut what);
        edit_notes(&mut vm, c, &mut what);
        edit_availability(&mut vm, c, &mut what)?;
        edit_protection_and_os(&mut vm, c, &mut what)?;
        self.edit_vm_placement(&mut vm, c, &mut what)?;
        Ok(self.store_edit(now, &before, vm, &what))
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

fn edit_protection_and_os(vm: &mut Vm, c: &VmChanges, what: &mut Vec<String>) -> Result<(), ClusterError> {
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
    if let Some(v) = c.os.as_ref().filter(|v| **v != vm.config.os) {
        what.push(format!("operating system {} -> {v}", vm.config.os));
        vm.config.os = v.clone();
    }
    Ok(())
}
