//! What the scheduler reads besides affinity: host tags, a VM's tags, pins and migration
//! policy, and the cluster's policy and overcommit. A change that the host a VM runs on now
//! would break is refused (migrate the VM first), so what runs always obeys the rules.

use super::OpResult;
use crate::command::{Outcome, VmChanges};
use crate::error::ClusterError;
use crate::model::{ClusterState, EventKind, SchedulingPolicy, Vm};
use crate::validate;

impl ClusterState {
    pub(super) fn edit_host(&mut self, now: i64, name: &str, tags: Option<&[String]>) -> OpResult {
        self.require_cluster()?;
        let host = self.hosts.values_mut().find(|h| h.name == name);
        let host =
            host.ok_or_else(|| ClusterError::NotFound(format!("host '{}' not found", crate::error::quote(name))))?;
        let Some(tags) = tags else { return Err(ClusterError::invalid("edit", "nothing to change: give --tags")) };
        validate::names("tags", tags)?;
        let tags = validate::dedup(tags);
        let id = host.id;
        let held = self.vms.on_host(id).into_iter().chain(self.vms.incoming(id));
        for vm in held.filter_map(|v| self.vms.get(&v)) {
            if let Some(t) = vm.config.host_tags.iter().find(|t| !tags.contains(t)) {
                return Err(ClusterError::FailedPrecondition(format!(
                    "vm '{}' runs on host {name} and needs its tag {t}; migrate or stop the VM first",
                    vm.config.name
                )));
            }
        }
        if host.tags == tags {
            return Ok(Outcome::Host(Box::new(host.clone())));
        }
        host.tags = tags;
        let (out, shown) = (host.clone(), if host.tags.is_empty() { "none".to_string() } else { host.tags.join(", ") });
        self.record(now, EventKind::HostEdited, format!("Host {name} was edited: tags {shown}."));
        Ok(Outcome::Host(Box::new(out)))
    }

    /// Raises the cluster level; the node that proposes it checked that every member supports it.
    pub(super) fn set_cluster_level(&mut self, now: i64, level: u8) -> OpResult {
        let info = self.require_cluster()?;
        if level < info.level {
            return Err(ClusterError::FailedPrecondition(format!(
                "the cluster is at level {} and a cluster level is never lowered (asked: {level})",
                info.level
            )));
        }
        let mut info = info.clone();
        if level > info.level {
            let from = std::mem::replace(&mut info.level, level);
            info.level_raised_ms = now;
            self.cluster = Some(info.clone());
            self.record(now, EventKind::ClusterEdited, format!("The cluster level was raised from {from} to {level}."));
            if level >= super::auth::AUTH_LEVEL {
                self.ensure_admin(now);
            }
        }
        Ok(Outcome::Cluster(Box::new(info)))
    }

    pub(super) fn set_scheduling_policy(
        &mut self,
        now: i64,
        policy: Option<SchedulingPolicy>,
        cpu_overcommit: Option<u32>,
    ) -> OpResult {
        let info = self.require_cluster()?;
        if policy.is_none() && cpu_overcommit.is_none() {
            return Err(ClusterError::invalid("edit", "nothing to change: give --scheduling or --cpu-overcommit"));
        }
        if let Some(v) = cpu_overcommit {
            validate::cpu_overcommit(v)?;
        }
        let mut info = info.clone();
        let mut what = Vec::new();
        if let Some(p) = policy.filter(|p| *p != info.scheduling) {
            what.push(format!("scheduling {} -> {}", info.scheduling.as_str(), p.as_str()));
            info.scheduling = p;
        }
        if let Some(v) = cpu_overcommit.filter(|v| *v != info.cpu_overcommit) {
            what.push(format!("CPU overcommit {} -> {v} vCPUs per CPU", info.cpu_overcommit));
            info.cpu_overcommit = v;
        }
        if !what.is_empty() {
            self.cluster = Some(info.clone());
            self.record(now, EventKind::ClusterEdited, format!("Cluster settings were changed: {}.", what.join(", ")));
        }
        Ok(Outcome::Cluster(Box::new(info)))
    }

    /// Applies the scheduling fields of `c` to `vm` (a copy; nothing is stored here) and says
    /// what changed. A running VM's current host must satisfy its new tags and pins.
    pub(super) fn edit_vm_placement(
        &self,
        vm: &mut Vm,
        c: &VmChanges,
        what: &mut Vec<String>,
    ) -> Result<(), ClusterError> {
        if let Some(tags) = &c.host_tags {
            let tags = validate::dedup(tags);
            if tags != vm.config.host_tags {
                if let Some(h) = vm.runtime.host.and_then(|h| self.hosts.get(&h)) {
                    let missing: Vec<&str> = tags.iter().filter(|t| !h.tags.contains(t)).map(String::as_str).collect();
                    if !missing.is_empty() {
                        return Err(ClusterError::FailedPrecondition(format!(
                            "vm '{}' runs on host {}, which lacks tag(s) {}; migrate or stop it first",
                            vm.config.name,
                            h.name,
                            missing.join(", ")
                        )));
                    }
                }
                what.push(if tags.is_empty() {
                    "host tags cleared".to_string()
                } else {
                    format!("host tags {}", tags.join(", "))
                });
                vm.config.host_tags = tags;
            }
        }
        if let Some(pins) = &c.pinned_hosts {
            let pins = self.resolve_hosts(pins)?;
            if pins != vm.config.pinned_hosts {
                let names: Vec<String> = pins.iter().map(|h| self.host_name(*h)).collect();
                if let Some(h) = vm.runtime.host.filter(|h| !pins.is_empty() && !pins.contains(h)) {
                    return Err(ClusterError::FailedPrecondition(format!(
                        "vm '{}' runs on host {}, which is not among its new pinned hosts {}; migrate or stop it first",
                        vm.config.name,
                        self.host_name(h),
                        names.join(", ")
                    )));
                }
                what.push(if pins.is_empty() {
                    "unpinned".to_string()
                } else {
                    format!("pinned to {}", names.join(", "))
                });
                vm.config.pinned_hosts = pins;
            }
        }
        if let Some(m) = c.migration.filter(|m| *m != vm.config.migration) {
            what.push(format!("migration policy {} -> {}", vm.config.migration.as_str(), m.as_str()));
            vm.config.migration = m;
        }
        Ok(())
    }
}
