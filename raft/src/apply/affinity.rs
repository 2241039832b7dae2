//! Affinity groups (VM-to-VM) and labels (VM-to-host) in the state machine, and the rules
//! that keep them true of what runs: a change that an enforcing rule would break at once is
//! refused, naming the VMs and hosts, before anything changes.

use uuid::Uuid;

use super::OpResult;
use crate::command::Outcome;
use crate::error::ClusterError;
use crate::model::{AffinityGroup, AffinityLabel, ClusterState, EventKind, Polarity};
use crate::typ::NodeId;
use crate::validate;

fn group_not_found(name: &str) -> ClusterError {
    ClusterError::NotFound(format!("affinity group '{}' not found", crate::error::quote(name)))
}

fn label_not_found(name: &str) -> ClusterError {
    ClusterError::NotFound(format!("affinity label '{}' not found", crate::error::quote(name)))
}

fn nothing_to_change() -> ClusterError {
    ClusterError::invalid("edit", "nothing to change: give at least one field")
}

impl ClusterState {
    /// VM ids for names or ids, each once, in the given order.
    pub(super) fn resolve_vms(&self, names: &[String]) -> Result<Vec<Uuid>, ClusterError> {
        let mut ids = Vec::with_capacity(names.len());
        for n in names {
            let id = self.find_vm(n).ok_or_else(|| ClusterError::vm_not_found(n))?.id;
            if !ids.contains(&id) {
                ids.push(id);
            }
        }
        Ok(ids)
    }

    /// Host ids for names, each once, in the given order.
    pub(super) fn resolve_hosts(&self, names: &[String]) -> Result<Vec<NodeId>, ClusterError> {
        let mut ids = Vec::with_capacity(names.len());
        for n in names {
            let id = self
                .host_by_name(n)
                .ok_or_else(|| ClusterError::NotFound(format!("host '{}' not found", crate::error::quote(n))))?
                .id;
            if !ids.contains(&id) {
                ids.push(id);
            }
        }
        Ok(ids)
    }

    fn vm_name(&self, id: Uuid) -> String {
        self.vms.get(&id).map_or_else(|| id.to_string(), |v| v.config.name.clone())
    }

    /// Refuses an enforcing group that the VMs running now already break.
    fn check_group(&self, g: &AffinityGroup) -> Result<(), ClusterError> {
        if !g.enforcing {
            return Ok(());
        }
        let running: Vec<(Uuid, NodeId)> =
            g.vms.iter().filter_map(|id| self.vms.get(id).and_then(|v| v.runtime.host).map(|h| (*id, h))).collect();
        let broken = |detail: String| {
            ClusterError::FailedPrecondition(format!(
                "enforcing affinity group {} would be broken at once: {detail}",
                g.describe()
            ))
        };
        match g.polarity {
            Polarity::Negative => {
                for (i, (a, host)) in running.iter().enumerate() {
                    if let Some((b, _)) = running[i + 1..].iter().find(|(_, h)| h == host) {
                        return Err(broken(format!(
                            "VMs {} and {} both run on host {}",
                            self.vm_name(*a),
                            self.vm_name(*b),
                            self.host_name(*host)
                        )));
                    }
                }
            }
            Polarity::Positive => {
                if let (Some((a, ha)), Some((b, hb))) =
                    (running.first(), running.iter().find(|(_, h)| Some(h) != running.first().map(|r| &r.1)))
                {
                    return Err(broken(format!(
                        "VM {} runs on host {} and VM {} on host {}",
                        self.vm_name(*a),
                        self.host_name(*ha),
                        self.vm_name(*b),
                        self.host_name(*hb)
                    )));
                }
            }
        }
        Ok(())
    }

    /// Refuses a label that a VM running now already breaks.
    fn check_label(&self, l: &AffinityLabel) -> Result<(), ClusterError> {
        for id in &l.vms {
            if let Some(host) = self.vms.get(id).and_then(|v| v.runtime.host).filter(|h| !l.hosts.contains(h)) {
                return Err(ClusterError::FailedPrecondition(format!(
                    "affinity label {} would be broken at once: VM {} runs on host {}, which the label does not \
                     include; migrate or stop it first",
                    l.name,
                    self.vm_name(*id),
                    self.host_name(host)
                )));
            }
        }
        Ok(())
    }

    pub(super) fn create_affinity_group(
        &mut self,
        now: i64,
        name: &str,
        polarity: Polarity,
        enforcing: bool,
        vms: &[String],
    ) -> OpResult {
        self.require_cluster()?;
        validate::name("name", name)?;
        if self.affinity_groups.contains_key(name) {
            return Err(ClusterError::AlreadyExists(format!("affinity group '{name}' already exists")));
        }
        let vms = self.resolve_vms(vms)?;
        let group = AffinityGroup { name: name.to_string(), polarity, enforcing, vms, created_ms: now };
        self.check_group(&group)?;
        let msg = format!(
            "Affinity group {} ({}, {}) was created with VMs {}.",
            group.name,
            polarity,
            if enforcing { "enforcing" } else { "soft" },
            self.members(&group.vms)
        );
        self.affinity_groups.insert(group.name.clone(), group.clone());
        self.record(now, EventKind::AffinityChanged, msg);
        Ok(Outcome::AffinityGroup(Box::new(group)))
    }

    fn members(&self, ids: &[Uuid]) -> String {
        if ids.is_empty() {
            return "none".to_string();
        }
        self.vm_names_of(ids).join(", ")
    }

    pub(super) fn edit_affinity_group(
        &mut self,
        now: i64,
        name: &str,
        add_vms: &[String],
        remove_vms: &[String],
        enforcing: Option<bool>,
        polarity: Option<Polarity>,
    ) -> OpResult {
        self.require_cluster()?;
        let mut group = self.affinity_groups.get(name).ok_or_else(|| group_not_found(name))?.clone();
        if add_vms.is_empty() && remove_vms.is_empty() && enforcing.is_none() && polarity.is_none() {
            return Err(nothing_to_change());
        }
        let mut what = Vec::new();
        for id in self.resolve_vms(add_vms)? {
            if group.vms.contains(&id) {
                return Err(ClusterError::AlreadyExists(format!(
                    "vm '{}' is already in affinity group '{name}'",
                    self.vm_name(id)
                )));
            }
            group.vms.push(id);
            what.push(format!("added VM {}", self.vm_name(id)));
        }
        for id in self.resolve_vms(remove_vms)? {
            let Some(at) = group.vms.iter().position(|v| *v == id) else {
                return Err(ClusterError::NotFound(format!(
                    "vm '{}' is not in affinity group '{name}'",
                    self.vm_name(id)
                )));
            };
            group.vms.remove(at);
            what.push(format!("removed VM {}", self.vm_name(id)));
        }
        if let Some(p) = polarity.filter(|p| *p != group.polarity) {
            what.push(format!("polarity {} -> {p}", group.polarity));
            group.polarity = p;
        }
        if let Some(e) = enforcing.filter(|e| *e != group.enforcing) {
            what.push(if e { "now enforcing".to_string() } else { "now soft".to_string() });
            group.enforcing = e;
        }
        self.check_group(&group)?;
        if what.is_empty() {
            return Ok(Outcome::AffinityGroup(Box::new(group)));
        }
        let msg = format!("Affinity group {name} was edited: {}.", what.join(", "));
        self.affinity_groups.insert(name.to_string(), group.clone());
        self.record(now, EventKind::AffinityChanged, msg);
        Ok(Outcome::AffinityGroup(Box::new(group)))
    }

    pub(super) fn delete_affinity_group(&mut self, now: i64, name: &str) -> OpResult {
        self.require_cluster()?;
        self.affinity_groups.remove(name).ok_or_else(|| group_not_found(name))?;
        self.record(now, EventKind::AffinityChanged, format!("Affinity group {name} was deleted."));
        Ok(Outcome::Done)
    }

    pub(super) fn create_affinity_label(&mut self, now: i64, name: &str, vms: &[String], hosts: &[String]) -> OpResult {
        self.require_cluster()?;
        validate::name("name", name)?;
        if self.affinity_labels.contains_key(name) {
            return Err(ClusterError::AlreadyExists(format!("affinity label '{name}' already exists")));
        }
        let label = AffinityLabel {
            name: name.to_string(),
            vms: self.resolve_vms(vms)?,
            hosts: self.resolve_hosts(hosts)?,
            created_ms: now,
        };
        self.check_label(&label)?;
        let msg = format!(
            "Affinity label {name} was created: VMs {} run only on hosts {}.",
            self.members(&label.vms),
            self.hosts_named(&label.hosts)
        );
        self.affinity_labels.insert(name.to_string(), label.clone());
        self.record(now, EventKind::AffinityChanged, msg);
        Ok(Outcome::AffinityLabel(Box::new(label)))
    }

    fn hosts_named(&self, ids: &[NodeId]) -> String {
        if ids.is_empty() {
            return "none".to_string();
        }
        ids.iter().map(|h| self.host_name(*h)).collect::<Vec<_>>().join(", ")
    }

    pub(super) fn edit_affinity_label(
        &mut self,
        now: i64,
        name: &str,
        add_vms: &[String],
        remove_vms: &[String],
        add_hosts: &[String],
        remove_hosts: &[String],
    ) -> OpResult {
        self.require_cluster()?;
        let mut label = self.affinity_labels.get(name).ok_or_else(|| label_not_found(name))?.clone();
        if add_vms.is_empty() && remove_vms.is_empty() && add_hosts.is_empty() && remove_hosts.is_empty() {
            return Err(nothing_to_change());
        }
        let mut what = Vec::new();
        for id in self.resolve_vms(add_vms)? {
            if label.vms.contains(&id) {
                return Err(ClusterError::AlreadyExists(format!(
                    "vm '{}' is already in affinity label '{name}'",
                    self.vm_name(id)
                )));
            }
            label.vms.push(id);
            what.push(format!("added VM {}", self.vm_name(id)));
        }
        for id in self.resolve_vms(remove_vms)? {
            let Some(at) = label.vms.iter().position(|v| *v == id) else {
                return Err(ClusterError::NotFound(format!(
                    "vm '{}' is not in affinity label '{name}'",
                    self.vm_name(id)
                )));
            };
            label.vms.remove(at);
            what.push(format!("removed VM {}", self.vm_name(id)));
        }
        for id in self.resolve_hosts(add_hosts)? {
            if label.hosts.contains(&id) {
                return Err(ClusterError::AlreadyExists(format!(
                    "host {} is already in affinity label '{name}'",
                    self.host_name(id)
                )));
            }
            label.hosts.push(id);
            what.push(format!("added host {}", self.host_name(id)));
        }
        for id in self.resolve_hosts(remove_hosts)? {
            let Some(at) = label.hosts.iter().position(|h| *h == id) else {
                return Err(ClusterError::NotFound(format!(
                    "host {} is not in affinity label '{name}'",
                    self.host_name(id)
                )));
            };
            label.hosts.remove(at);
            what.push(format!("removed host {}", self.host_name(id)));
        }
        self.check_label(&label)?;
        let msg = format!("Affinity label {name} was edited: {}.", what.join(", "));
        self.affinity_labels.insert(name.to_string(), label.clone());
        self.record(now, EventKind::AffinityChanged, msg);
        Ok(Outcome::AffinityLabel(Box::new(label)))
    }

    pub(super) fn delete_affinity_label(&mut self, now: i64, name: &str) -> OpResult {
        self.require_cluster()?;
        self.affinity_labels.remove(name).ok_or_else(|| label_not_found(name))?;
        self.record(now, EventKind::AffinityChanged, format!("Affinity label {name} was deleted."));
        Ok(Outcome::Done)
    }

    /// A deleted VM leaves every group and label it was in.
    pub(super) fn forget_vm_in_rules(&mut self, id: Uuid) {
        for g in self.affinity_groups.values_mut() {
            g.vms.retain(|v| *v != id);
        }
        for l in self.affinity_labels.values_mut() {
            l.vms.retain(|v| *v != id);
        }
    }

    /// A removed host leaves every label and every VM's pins; returns the VMs it was pinned to
    /// (their configuration changed).
    pub(super) fn forget_host_in_rules(&mut self, id: NodeId) -> Vec<Uuid> {
        for l in self.affinity_labels.values_mut() {
            l.hosts.retain(|h| *h != id);
        }
        let mut unpinned = Vec::new();
        for vm in self.vms.values_mut().filter(|v| v.config.pinned_hosts.contains(&id)) {
            vm.config.pinned_hosts.retain(|h| *h != id);
            unpinned.push(vm.id);
        }
        unpinned
    }
}
