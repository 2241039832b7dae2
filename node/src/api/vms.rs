//! VmService: VM configurations and their lifecycle. Input is validated here (and again by
//! apply); names and ids are both accepted wherever a VM is named. Disk images are made or
//! copied before the command that records them and removed again if it is refused, so a
//! refused request leaves neither records nor files behind.

use std::sync::Arc;

use corral_proto::*;
use corral_raft::command::{MigrationOverridesChange, Op, Outcome, StartOrder, VmChanges, VmSpec};
use corral_raft::model::{self, ClusterState, DomainType, HaPriority, KernelBoot};
use corral_raft::{validate, vocab, ClusterError};
use rand::Rng;
use uuid::Uuid;

use super::authz::Obj;
use super::{Caller, Handles};
use crate::now_ms;
use corral_raft::model::auth::{Operation, Perm, Target};

pub struct Api(pub Arc<Handles>);

const DEFAULT_SHUTDOWN_TIMEOUT_S: u64 = 120;
pub fn to_proto(node: &Handles, s: &ClusterState, vm: &model::Vm) -> Vm {
    let disks =
        vm.config.disks.iter().filter_map(|id| s.disks.get(id)).map(|d| disk_to_proto(node, d, Some(vm))).collect();
    Vm {
        id: vm.id.to_string(),
        name: vm.config.name.clone(),
        description: vm.config.description.clone(),
        comment: vm.config.comment.clone(),
        memory_mib: vm.config.memory_mib,
        vcpus: vm.config.vcpus,
        ha: Some(HaSettings {
            enabled: vm.config.ha.enabled,
            priority: vm.config.ha.priority.as_str().into(),
            priority_enum: vm.config.ha.priority.wire(),
        }),
        status: vm.runtime.status.as_str().into(),
        status_enum: vm.runtime.status.wire(),
        host: vm.runtime.host.map(|h| s.host_name(h)),
        created_unix_ms: vm.config.created_ms,
        updated_unix_ms: vm.config.updated_ms,
        disks,
        nics: vm
            .config
            .nics
            .iter()
            .enumerate()
            .map(|(i, n)| Nic {
                network: n.network.clone(),
                mac: n.mac.clone(),
                name: vm.nic_name(i),
                plugged: !n.unplugged,
            })
            .collect(),
        stop_reason: vm.runtime.stop_reason.clone(),
        domain_type: vm.config.domain_type.map(|t| t.as_str().to_string()).unwrap_or_default(),
        domain_type_enum: vm.config.domain_type.map(DomainType::wire).unwrap_or_default(),
        migrating_to: vm.migration_state.migrating_to.map(|h| s.host_name(h)),
        next_run: vm.config.next_run.as_ref().map(|n| NextRun {
            memory_mib: n.memory_mib,
            vcpus: n.vcpus,
            domain_type: n.domain_type.map(|t| t.as_str().to_string()),
            domain_type_enum: n.domain_type.map(DomainType::wire).unwrap_or_default(),
            os: n.os.clone(),
            max_vcpus: n.max_vcpus,
            max_memory_mib: n.max_memory_mib,
            cdrom: n.cdrom.clone().flatten(),
            cdrom_ejected: n.cdrom == Some(None),
        }),
        pending_next_run: vm.config.next_run.as_ref().is_some_and(|n| !n.is_empty()),
        max_vcpus: vm.config.max_vcpus,
        max_memory_mib: vm.config.max_memory_mib,
        hot_error: vm.runtime.hot_error.clone(),
        notes: Vec::new(),
        resume_behavior: vm.config.resume_behavior.as_str().into(),
        resume_behavior_enum: vm.config.resume_behavior.wire(),
        ha_restart: vm.ha_state.ha_restart.as_ref().map(|r| corral_proto::HaRestart {
            failed_unix_ms: r.failed_ms,
            attempts: r.attempts,
            next_try_unix_ms: r.next_try_ms,
            last_error: r.last_error.clone(),
        }),
        migration: vm.migration_state.migration_job.as_ref().map(|j| corral_proto::MigrationJob {
            queued_unix_ms: j.queued_ms,
            automatic: j.automatic,
            cancel: j.cancel,
            progress: j.progress.as_ref().map(|p| corral_proto::MigrationProgress {
                percent: p.percent as u32,
                memory_total_mib: p.memory_total_mib,
                memory_remaining_mib: p.memory_remaining_mib,
                iteration: p.iteration,
                elapsed_ms: p.elapsed_ms,
            }),
        }),
        migration_settings: Some(corral_proto::MigrationOverrides {
            auto_converge: vm.config.migration_settings.auto_converge,
            compression: vm.config.migration_settings.compression,
            max_downtime_ms: vm.config.migration_settings.max_downtime_ms,
            bandwidth_mibps: vm.config.migration_settings.bandwidth_mibps,
        }),
        host_tags: vm.config.host_tags.clone(),
        pinned_hosts: vm.config.pinned_hosts.iter().map(|h| s.host_name(*h)).collect(),
        migration_policy: vm.config.migration.as_str().into(),
        migration_policy_enum: vm.config.migration.wire(),
        hosted_engine: vm.config.hosted_engine,
        delete_protected: vm.config.delete_protected,
        os: vm.config.os.clone(),
        cdrom: vm.config.cdrom.clone(),
        template: vm.config.from_template.as_ref().map(|t| t.name.clone()).unwrap_or_default(),
        thin: vm.config.from_template.as_ref().is_some_and(|t| t.thin),
        offering: vm.config.offering.clone().unwrap_or_default(),
        stateless: vm.config.stateless,
        boot: vm.config.boot_order.iter().map(|b| b.as_str().to_string()).collect(),
        cloud_init: vm.config.cloud_init.is_some(),
        iso: vm
            .config
            .cdrom
            .as_deref()
            .and_then(|f| s.library.iso_of_file(f))
            .map(|i| i.name.clone())
            .unwrap_or_default(),
    }
}

/// A VM's migration override edit: "cluster" follows the cluster's setting again.
fn overrides_edit(e: corral_proto::MigrationOverridesEdit) -> Result<MigrationOverridesChange, ClusterError> {
    fn field<T: std::str::FromStr>(
        name: &str,
        v: Option<String>,
        what: &str,
    ) -> Result<Option<Option<T>>, ClusterError> {
        match v.as_deref().map(str::trim) {
            None => Ok(None),
            Some("cluster") => Ok(Some(None)),
            Some(text) => text
                .parse()
                .map(|t| Some(Some(t)))
                .map_err(|_| ClusterError::invalid(name, format!("must be {what} or 'cluster' (got '{text}')"))),
        }
    }
    Ok(MigrationOverridesChange {
        auto_converge: field("auto_converge", e.auto_converge, "true or false")?,
        compression: field("compression", e.compression, "true or false")?,
        max_downtime_ms: field("max_downtime", e.max_downtime_ms, "a number of milliseconds")?,
        bandwidth_mibps: field("bandwidth", e.bandwidth_mibps, "a number of MiB/s")?,
    })
}

pub fn disk_to_proto(node: &Handles, d: &model::Disk, vm: Option<&model::Vm>) -> Disk {
    Disk {
        id: d.id.to_string(),
        name: d.name.clone(),
        size_mib: d.size_mib,
        path: node.images.path(&d.file).display().to_string(),
        format: d.format.clone(),
        vm: vm.map(|v| v.config.name.clone()).unwrap_or_default(),
        attachment: vm.map(|v| {
            let a = v.attachment(d.id);
            DiskAttachment {
                interface: a.interface.as_str().into(),
                interface_enum: a.interface.wire(),
                plugged: !a.unplugged,
                optional: a.optional,
                bootable: a.bootable,
            }
        }),
    }
}

/// A closed-set field of a request: its enum, or an older client's string (`vocab::read`).
fn read<M: vocab::Vocab>(field: &'static str, value: i32, text: &str) -> Result<Option<M>, ClusterError> {
    vocab::read(field, value, text)
}

/// Whether the write tagged `rid` was applied already (a client resending it after a lost answer).
pub(super) fn replayed(s: &ClusterState, rid: Option<Uuid>) -> bool {
    rid.is_some_and(|r| s.recent_requests.contains_key(&r))
}

fn opt(s: String) -> Option<String> {
    Some(s).filter(|s| !s.trim().is_empty())
}

/// A locally administered MAC in QEMU's range, as libvirt would pick.
pub(crate) fn random_mac() -> String {
    let b: [u8; 3] = rand::thread_rng().gen();
    format!("52:54:00:{:02x}:{:02x}:{:02x}", b[0], b[1], b[2])
}

/// Refuses what only cluster level 3 can apply before it is proposed: a member of an earlier
/// build would read the command differently, or not at all.
pub fn require_hotplug_level(node: &Handles, what: &str) -> Result<(), ClusterError> {
    let level = node.cluster.state()?.read(|s| s.cluster.as_ref().map_or(0, |c| c.level));
    if level < model::HOTPLUG_LEVEL {
        return Err(ClusterError::FailedPrecondition(format!(
            "{what} needs cluster level {}: run `corral cluster upgrade` first",
            model::HOTPLUG_LEVEL
        )));
    }
    Ok(())
}

pub fn require_snapshot_level(node: &Handles) -> Result<(), ClusterError> {
    let level = node.cluster.state()?.read(|s| s.cluster.as_ref().map_or(0, |c| c.level));
    if level < model::SNAPSHOT_LEVEL {
        return Err(ClusterError::FailedPrecondition(format!(
            "snapshots need cluster level {}: run `corral cluster upgrade` first",
            model::SNAPSHOT_LEVEL
        )));
    }
    Ok(())
}

/// How long a change to a running VM waits for its host to make it.
const HOT_PATIENCE: std::time::Duration = std::time::Duration::from_secs(60);

/// What an edit of a running VM will not do now, in one line each: hot-plug fields that wait for
/// the next run (asked to, or without room), and why.
pub fn edit_notes(vm: &model::Vm, c: &VmChanges) -> Vec<String> {
    use corral_raft::apply::edit::{cd_decision, memory_decision, vcpus_decision, Decision};
    if !vm.is_running() {
        return Vec::new();
    }
    let name = &vm.config.name;
    let mut notes = Vec::new();
    let mut note = |what: String, d: Decision| {
        if let Decision::NextRun(why) = d {
            let why = why.map(|w| format!(": {w}")).unwrap_or_default();
            notes.push(format!("{name} is running; {what} waits for its next run{why}"));
        }
    };
    if let Some(v) = c.memory_mib.filter(|v| *v != vm.config.memory_mib) {
        note(format!("memory {v} MiB"), memory_decision(vm, v, c.next_run));
    }
    if let Some(v) = c.vcpus.filter(|v| *v != vm.config.vcpus) {
        note(format!("{v} vCPUs"), vcpus_decision(vm, v, c.next_run));
    }
    if let Some(v) = c.cdrom.as_ref().filter(|v| **v != vm.config.cdrom) {
        let what = v.as_ref().map_or_else(|| "ejecting the CD".to_string(), |iso| format!("CD {iso}"));
        note(what, cd_decision(vm, c.next_run));
    }
    for (asked, field) in [
        (c.max_vcpus.is_some(), "max vCPUs"),
        (c.max_memory_mib.is_some(), "max memory"),
        (c.domain_type.is_some(), "the domain type"),
        (c.os.as_ref().is_some_and(|o| *o != vm.config.os), "the OS type"),
        (c.stateless.is_some_and(|v| v != vm.config.stateless), "statelessness"),
        (c.boot_order.as_ref().is_some_and(|b| *b != vm.config.boot_order), "the boot order"),
    ] {
        if asked {
            notes.push(format!("{name} is running; {field} waits for its next run"));
        }
    }
    notes
}

fn new_disk(vm_name: &str, index: usize, size_mib: u64) -> model::Disk {
    let id = Uuid::new_v4();
    model::Disk {
        id,
        name: format!("{vm_name}-disk{index}"),
        size_mib,
        file: format!("{id}.qcow2"),
        format: "qcow2".into(),
        vm: None,
        created_ms: now_ms(),
        base: None,
    }
}

impl Api {
    /// The VM that a command produced, as the leader applied it; host names come from this
    /// node's copy of the state (names of hosts rarely change).
    fn written_vm(&self, outcome: Outcome) -> Result<Vm, ClusterError> {
        let Outcome::Vm(vm) = outcome else { return Err(ClusterError::Internal("the write returned no VM".into())) };
        let state = self.0.cluster.state()?;
        Ok(state.read(|s| to_proto(&self.0, s, &vm)))
    }

    async fn order(&self, rid: Option<Uuid>, op: Op) -> Result<Vm, ClusterError> {
        let outcome = self.0.cluster.write(rid, op).await?;
        self.written_vm(outcome)
    }

    /// `op` on `vm`, made for the caller if they may do `what` to it.
    async fn order_on(&self, cx: &Caller, what: Operation, vm: &str, op: Op) -> Result<Vm, ClusterError> {
        let rid = cx.request_id()?;
        let op = self.0.permit(cx, &[(what, Obj::Vm(vm))], op).await?;
        self.order(rid, op).await
    }

    /// Runs `op`, which records `made` image files; removes them if the command is refused.
    async fn write_with_images(&self, rid: Option<Uuid>, op: Op, made: &[String]) -> Result<Vm, ClusterError> {
        match self.0.cluster.write(rid, op).await {
            Ok(outcome) => Ok(self.written_vm(outcome)?),
            Err(e) => {
                // Unavailable may mean "applied, answer lost": then the files are in use.
                if !matches!(e, ClusterError::Unavailable(_)) {
                    self.0.images.remove(made).await;
                }
                Err(e)
            }
        }
    }

    pub async fn create(&self, cx: &Caller, req: CreateVmRequest) -> Result<Vm, ClusterError> {
        let rid = cx.request_id()?;
        let mut r = req;
        let lib = LibraryAsk::of(&r)?;
        let boot = match (
            opt(std::mem::take(&mut r.kernel)),
            opt(std::mem::take(&mut r.initrd)),
            std::mem::take(&mut r.cmdline),
        ) {
            (Some(kernel), initrd, cmdline) => Some(KernelBoot {
                kernel: self.0.images.boot_file("kernel", &kernel)?.display().to_string(),
                initrd: initrd
                    .map(|i| self.0.images.boot_file("initrd", &i))
                    .transpose()?
                    .map(|i| i.display().to_string()),
                cmdline,
            }),
            (None, Some(_), _) => return Err(ClusterError::invalid("initrd", "needs --kernel as well")),
            (None, None, c) if !c.is_empty() => return Err(ClusterError::invalid("cmdline", "needs --kernel as well")),
            (None, None, _) => None,
        };
        if lib.any() {
            super::library::require_library_level(
                &self.0,
                "--template, --offering, --iso, --boot, --cloud-init, --stateless and --os",
            )?;
        }
        let cloud_init = r.cloud_init.map(cloud_init_spec).transpose()?;
        let found = {
            let (template, offering, iso, name) =
                (lib.template.clone(), lib.offering.clone(), lib.iso.clone(), r.name.clone());
            self.0
                .cluster
                .read(false, move |s| Found {
                    template: template.as_deref().map(|t| s.library.template(t).cloned()),
                    offering: offering.as_deref().map(|o| s.library.offering(o).cloned()),
                    iso: iso.as_deref().and_then(|i| s.library.iso(i).cloned()),
                    exists: s.vm_names.contains_key(&name),
                    replay: replayed(s, rid),
                })
                .await?
        };
        let template = match (&lib.template, found.template) {
            (Some(name), Some(None)) => return Err(corral_raft::apply::library::template_not_found(name)),
            (_, t) => t.flatten(),
        };
        let offering = match (&lib.offering, found.offering) {
            (Some(name), Some(None)) => return Err(corral_raft::apply::library::offering_not_found(name)),
            (_, o) => o.flatten(),
        };
        let cdrom = match (&lib.iso, &found.iso) {
            (None, _) => None,
            (Some(_), Some(iso)) => Some(iso.file.clone()),
            (Some(path), None) => Some(self.iso_path(path).await?),
        };
        if let Some(o) = &offering {
            if r.memory_mib != 0 || r.vcpus != 0 {
                return Err(ClusterError::invalid(
                    "offering",
                    format!("offering '{}' sets the memory and vCPUs: give --offering or --memory/--vcpus", o.name),
                ));
            }
        }
        let from = template.as_ref().map(|t| &t.config);
        let memory_mib = match (r.memory_mib, &offering, from) {
            (m, _, _) if m != 0 => m,
            (_, Some(o), _) => o.memory_mib,
            (_, None, Some(c)) => c.memory_mib,
            _ => 1024,
        };
        let vcpus = match (r.vcpus, &offering, from) {
            (v, _, _) if v != 0 => v,
            (_, Some(o), _) => o.vcpus,
            (_, None, Some(c)) => c.vcpus,
            _ => 1,
        };
        let nics = match (r.nics.is_empty(), from) {
            (true, Some(c)) => {
                c.nics.iter().map(|n| model::Nic { mac: random_mac(), unplugged: false, ..n.clone() }).collect()
            }
            _ => r.nics.iter().map(|n| model::Nic::new(n.clone(), random_mac())).collect(),
        };
        let os = opt(r.os).or_else(|| found.iso.as_ref().map(|i| i.os.clone()).filter(|o| !o.is_empty()));
        let spec = VmSpec {
            name: r.name,
            description: r.description,
            comment: r.comment,
            memory_mib,
            vcpus,
            ha_enabled: r.ha || from.is_some_and(|c| c.ha.enabled),
            ha_priority: read("ha_priority", r.ha_priority_enum, &r.ha_priority)?
                .or(from.map(|c| c.ha.priority))
                .unwrap_or(HaPriority::Medium),
            nics,
            domain_type: read("domain_type", r.domain_type_enum, &r.domain_type)?,
            boot,
            resume_behavior: read("resume_behavior", r.resume_behavior_enum, &r.resume_behavior)?
                .or(from.map(|c| c.resume_behavior))
                .unwrap_or_default(),
            max_vcpus: r.max_vcpus,
            max_memory_mib: r.max_memory_mib,
            template: template.as_ref().map(|t| model::FromTemplate { id: t.id, name: t.name.clone(), thin: !r.clone }),
            offering: offering.as_ref().map(|o| o.name.clone()),
            cdrom,
            boot_order: lib.boot.clone(),
            cloud_init,
            stateless: r.stateless,
            os,
        };
        validate::vm_spec(&spec)?;
        validate::vm_limits(&spec)?;
        if spec.max_vcpus.is_some() || spec.max_memory_mib.is_some() {
            require_hotplug_level(&self.0, "--max-vcpus and --max-memory")?;
        }
        let bases = template.as_ref().map_or(0, |t| t.disks.len());
        validate::disk_count(bases + r.disks_mib.len())?;
        if let Some(i) = r.disks_mib.iter().position(|s| *s == 0) {
            return Err(ClusterError::invalid("disk", format!("disk {} must be at least 1 MiB", i + 1)));
        }
        for (i, size) in r.disks_mib.iter().enumerate() {
            validate::disk_size(&format!("disk {}", i + 1), *size)?;
        }
        // From a template: vm.create and template.use on it (oVirt's UserTemplateBasedVm gives
        // both on one template); else vm.create on the cluster.
        let t_name = template.as_ref().map(|t| t.name.clone());
        let mut needs = match &t_name {
            Some(t) => vec![(Operation::TemplateUse, Obj::Template(t)), (Operation::VmCreate, Obj::Template(t))],
            None => vec![(Operation::VmCreate, Obj::Cluster)],
        };
        if !r.disks_mib.is_empty() {
            needs.push((Operation::DiskCreate, Obj::Cluster));
        }
        // Before any image is made.
        self.0.check(cx, &needs).await?;
        if found.replay {
            // A resent request that was applied already (its answer was lost, say in a leader
            // change): the state machine answers as it did the first time; no new images.
            let start = r.start.then(|| StartOrder { host: opt(r.host.clone()) });
            let op = Op::CreateVm { id: Uuid::new_v4(), spec, disks: Vec::new(), start };
            return self.order(rid, self.0.permit(cx, &needs, op).await?).await;
        }
        // Refused before any image is made (a linearizable read: a stale copy would refuse a
        // name whose VM was deleted and acknowledged; corral-faults, seed 1).
        if found.exists {
            return Err(ClusterError::AlreadyExists(format!("vm '{}' already exists", spec.name)));
        }
        let mut disks = Vec::new();
        let mut made = Vec::new();
        for (i, b) in template.iter().flat_map(|t| t.disks.iter()).enumerate() {
            let mut d = new_disk(&spec.name, i, b.size_mib);
            let res = if r.clone {
                self.0.images.copy(&b.file, &d.file).await
            } else {
                d.base = Some(b.id);
                self.0.images.overlay(&b.file, &b.format, &d.file).await
            };
            if let Err(e) = res {
                self.0.images.remove(&made).await;
                return Err(e);
            }
            made.push(d.file.clone());
            disks.push(d);
        }
        for (i, size) in r.disks_mib.iter().enumerate() {
            let d = new_disk(&spec.name, bases + i, *size);
            if let Err(e) = self.0.images.create(&d.file, d.size_mib).await {
                self.0.images.remove(&made).await;
                return Err(e);
            }
            made.push(d.file.clone());
            disks.push(d);
        }
        let start = r.start.then(|| StartOrder { host: opt(r.host) });
        let op = Op::CreateVm { id: Uuid::new_v4(), spec, disks, start };
        let op = match self.0.permit(cx, &needs, op).await {
            Ok(op) => op,
            Err(e) => {
                self.0.images.remove(&made).await;
                return Err(e);
            }
        };
        self.write_with_images(rid, op, &made).await
    }

    /// An ISO named by a path inside the storage domain (not one of the cluster's disk images),
    /// as the state keeps it: relative to the domain.
    async fn iso_path(&self, iso: &str) -> Result<String, ClusterError> {
        let path = self.0.images.boot_file("iso", iso)?;
        if !path.is_file() {
            return Err(ClusterError::invalid(
                "iso",
                format!(
                    "{} is neither an ISO of the library (`corral iso list`) nor a file",
                    corral_raft::error::quote(iso)
                ),
            ));
        }
        // Kept relative to the storage domain, which each host resolves for itself; a disk
        // image of the cluster is no medium, and neither is a file the cluster keeps for itself
        // (a template's base, a VM's cloud-init seed, an upload under way): those are read only
        // through their own permissions.
        let rel = self.0.images.relative(&path);
        let file = path.file_name().map(|f| f.to_string_lossy().to_string()).unwrap_or_default();
        if file.starts_with("base-") || file.starts_with("cidata-") || file.ends_with(".part") {
            return Err(ClusterError::invalid(
                "iso",
                format!("{} is a file the cluster keeps for itself, not an ISO", path.display()),
            ));
        }
        let images = self.0.images.clone();
        let wanted = path.clone();
        let taken = self
            .0
            .cluster
            .read(false, move |s| {
                s.disks.values().any(|d| images.path(&d.file) == wanted)
                    || s.library.templates.values().any(|t| t.disks.iter().any(|b| images.path(&b.file) == wanted))
            })
            .await?;
        if taken {
            return Err(ClusterError::invalid(
                "iso",
                format!("{} is a disk image of the cluster, not an ISO", path.display()),
            ));
        }
        Ok(rel)
    }

    /// The VMs the caller may see (vm.view on them, the cluster or the system).
    pub async fn list(&self, cx: &Caller, req: ListVmsRequest) -> Result<ListVmsResponse, ClusterError> {
        let stale = req.stale;
        let node = self.0.clone();
        let who = self.0.who(cx).await?;
        let vms = self
            .0
            .cluster
            .read(stale, |s| {
                let g = who.grants(s)?;
                let all = g.can(Perm::VmView, Target::Cluster);
                Ok::<_, ClusterError>(
                    s.vm_names
                        .values()
                        .filter(|id| all || g.can(Perm::VmView, Target::Vm(**id)))
                        .filter_map(|id| s.vms.get(id))
                        .map(|vm| to_proto(&node, s, vm))
                        .collect(),
                )
            })
            .await??;
        Ok(ListVmsResponse { vms })
    }

    /// A VM the caller may not see does not exist for them.
    pub async fn get(&self, cx: &Caller, req: GetVmRequest) -> Result<Vm, ClusterError> {
        let GetVmRequest { vm, stale, next_run } = req;
        let node = self.0.clone();
        let who = self.0.who(cx).await?;
        self.0
            .cluster
            .read(stale, |s| {
                let g = who.grants(s)?;
                Ok::<_, ClusterError>(
                    s.find_vm(&vm).filter(|v| g.can(Perm::VmView, Target::Vm(v.id))).map(|v| to_proto(&node, s, v)),
                )
            })
            .await??
            .map(|v| if next_run { v.at_next_run() } else { v })
            .ok_or_else(|| ClusterError::vm_not_found(&vm))
    }

    pub async fn edit(&self, cx: &Caller, req: EditVmRequest) -> Result<Vm, ClusterError> {
        let rid = cx.request_id()?;
        let r = req;
        let changes = VmChanges {
            name: r.name,
            description: r.description,
            comment: r.comment,
            memory_mib: r.memory_mib,
            vcpus: r.vcpus,
            ha_enabled: r.ha,
            ha_priority: vocab::read_change("ha_priority", r.ha_priority_enum, r.ha_priority.as_deref())?,
            domain_type: read("domain_type", r.domain_type_enum, r.domain_type.as_deref().unwrap_or_default())?,
            resume_behavior: vocab::read_change(
                "resume_behavior",
                r.resume_behavior_enum,
                r.resume_behavior.as_deref(),
            )?,
            migration_settings: r.migration.map(overrides_edit).transpose()?,
            host_tags: r.host_tags.map(|l| l.values),
            pinned_hosts: r.pinned_hosts.map(|l| l.values),
            migration: vocab::read_change("migration_policy", r.migration_policy_enum, r.migration_policy.as_deref())?,
            delete_protected: r.delete_protected,
            os: r.os,
            next_run: r.next_run,
            max_vcpus: r.max_vcpus,
            max_memory_mib: r.max_memory_mib,
            cdrom: None,
            offering: r.offering,
            stateless: r.stateless,
            boot_order: r.boot.as_deref().map(boot_order).transpose()?,
        };
        if changes.offering.is_some() || changes.stateless.is_some() || changes.boot_order.is_some() {
            super::library::require_library_level(&self.0, "--offering, --stateless and --boot")?;
        }
        validate::vm_changes(&changes)?;
        if changes.next_run || changes.max_vcpus.is_some() || changes.max_memory_mib.is_some() {
            require_hotplug_level(&self.0, "--next-run, --max-vcpus and --max-memory")?;
        }
        self.edit_with(cx, rid, Operation::VmEdit, &r.vm, changes).await
    }

    /// An edit: written, then (when it changes the running VM) waited for until the VM's host
    /// changed the domain, or said why it could not. Notes say what waits for the next run and
    /// why, and a migration ordered to make room.
    async fn edit_with(
        &self,
        cx: &Caller,
        rid: Option<Uuid>,
        what: Operation,
        vm: &str,
        changes: VmChanges,
    ) -> Result<Vm, ClusterError> {
        // This node's copy (no read barrier: an edit must not cost a round trip more); it only
        // words the notes and tells whether the write changed the running VM.
        let (before, offering) = self.0.cluster.state()?.read(|s| {
            let offering = changes.offering.as_deref().and_then(|o| s.library.offering(o).cloned());
            (s.find_vm(vm).cloned(), offering)
        });
        // Returns once committed and applied here: every host writes the new OVF document as it
        // applies the entry, so waiting for them would only make an edit wait on a dying host.
        // An offering is worded as the size it gives.
        let mut worded = changes.clone();
        if let Some(o) = &offering {
            (worded.memory_mib, worded.vcpus) = (Some(o.memory_mib), Some(o.vcpus));
        }
        let notes = before.as_ref().map(|b| edit_notes(b, &worded)).unwrap_or_default();
        let op = self.0.permit(cx, &[(what, Obj::Vm(vm))], Op::EditVm { vm: vm.to_string(), changes }).await?;
        let outcome = self.0.cluster.write(rid, op).await?;
        self.changed_vm(before.as_ref(), outcome, notes).await
    }

    /// The VM after a write that may have changed it while it runs: when it did, waits (bounded)
    /// for its host to make the running domain match, and refuses with the host's reason when
    /// the hypervisor or the guest would not.
    async fn changed_vm(
        &self,
        before: Option<&model::Vm>,
        outcome: Outcome,
        mut notes: Vec<String>,
    ) -> Result<Vm, ClusterError> {
        let Outcome::Vm(after) = outcome else { return Err(ClusterError::Internal("the write returned no VM".into())) };
        let seq = after.runtime.hot_seq;
        let hot = before.is_some_and(|b| seq > b.runtime.hot_seq);
        if let Some(to) = after
            .migration_state
            .migrating_to
            .filter(|_| before.is_some_and(|b| b.migration_state.migrating_to.is_none()))
        {
            let host = self.0.cluster.state()?.read(|s| s.host_name(to));
            notes.push(format!(
                "{} is live-migrated to host {host} first, where there is room for it; it is changed there once it arrives",
                after.config.name
            ));
        } else if hot {
            match self
                .0
                .cluster
                .wait_vm(after.id, HOT_PATIENCE, move |v| v.runtime.hot_done >= seq || !v.is_running())
                .await?
            {
                Some(v) if v.runtime.hot_done >= seq => {
                    if let Some(error) = v.runtime.hot_error.clone() {
                        return Err(ClusterError::FailedPrecondition(format!(
                            "vm '{}' could not be changed while it runs: {error}; it runs on as it was (repeat with \
                             --next-run to change it at its next run)",
                            v.config.name
                        )));
                    }
                    return self.vm_with_notes(&v, notes);
                }
                Some(v) if !v.is_running() => return self.vm_with_notes(&v, notes),
                _ => notes.push(format!(
                    "the host of {} has not confirmed the change yet; `corral vm show {}` shows when it has",
                    after.config.name, after.config.name
                )),
            }
        }
        self.vm_with_notes(&after, notes)
    }

    fn vm_with_notes(&self, vm: &model::Vm, notes: Vec<String>) -> Result<Vm, ClusterError> {
        let state = self.0.cluster.state()?;
        let mut out = state.read(|s| to_proto(&self.0, s, vm));
        out.notes = notes;
        Ok(out)
    }

    pub async fn export(&self, cx: &Caller, req: VmRef) -> Result<OvfDocument, ClusterError> {
        let vm = req.vm;
        self.0.check(cx, &[(Operation::VmShow, Obj::Vm(&vm))]).await?;
        let name = self.0.config.name.clone();
        let doc = self.0.cluster.read(false, |s| super::ovf::export(s, &vm, name)).await??;
        Ok(doc)
    }

    pub async fn import(&self, cx: &Caller, req: ImportVmRequest) -> Result<ImportVmResponse, ClusterError> {
        let rid = cx.request_id()?;
        let r = req;
        let name = r.name.filter(|n| !n.trim().is_empty());
        // An OVF document names disk images of the storage domain, which the import attaches or
        // copies: only for someone who may see every disk.
        let needs = [
            (Operation::VmCreate, Obj::Cluster),
            (Operation::DiskCreate, Obj::Cluster),
            (Operation::VmImport, Obj::Cluster),
        ];
        self.0.check(cx, &needs).await?;
        let replay = self.0.cluster.read(false, |s| replayed(s, rid)).await?;
        if replay {
            // Answered as the first time; a clone's copies were made then, not again.
            let doc = corral_raft::ovf::read(&r.xml).map_err(super::ovf::bad_document)?;
            let op = Op::ImportVm { vm: Box::new(doc.vm), disks: doc.disks, engine: false, start: None };
            let vm = self.order(rid, self.0.permit(cx, &needs, op).await?).await?;
            return Ok(ImportVmResponse { vm: Some(vm), ignored: doc.ignored });
        }
        let prepared = super::ovf::prepare_import(&self.0, &r.xml, name, r.clone, false, None).await?;
        let op = match self.0.permit(cx, &needs, prepared.op).await {
            Ok(op) => op,
            Err(e) => {
                self.0.images.remove(&prepared.made).await;
                return Err(e);
            }
        };
        let vm = self.write_with_images(rid, op, &prepared.made).await?;
        Ok(ImportVmResponse { vm: Some(vm), ignored: prepared.ignored })
    }

    pub async fn delete(&self, cx: &Caller, req: DeleteVmRequest) -> Result<DeleteVmResponse, ClusterError> {
        let rid = cx.request_id()?;
        let DeleteVmRequest { vm, keep_disks } = req;
        let op = self
            .0
            .permit(cx, &[(Operation::VmDelete, Obj::Vm(&vm))], Op::DeleteVm { vm: vm.clone(), keep_disks })
            .await?;
        let outcome = self.0.cluster.write(rid, op).await?;
        let Outcome::VmDeleted { id, files } = outcome else {
            return Err(ClusterError::Internal("delete returned no VM id".into()));
        };
        // The records are gone; the files follow (a leftover file is harmless, a record
        // pointing at a missing file is not). Its cloud-init seed goes too.
        self.0.images.remove(&files).await;
        self.0.images.remove(&[crate::images::seed_file(id)]).await;
        Ok(DeleteVmResponse { id: id.to_string() })
    }

    pub async fn clone(&self, cx: &Caller, req: CloneVmRequest) -> Result<Vm, ClusterError> {
        let rid = cx.request_id()?;
        let CloneVmRequest { source, name, from_snapshot } = req;
        if let Some(snapshot) = from_snapshot.filter(|s| !s.trim().is_empty()) {
            return self.clone_from_snapshot(cx, source, name, snapshot).await;
        }
        validate::name("name", &name)?;
        let needs = [
            (Operation::VmShow, Obj::Vm(&source)),
            (Operation::VmCreate, Obj::Cluster),
            (Operation::DiskCreate, Obj::Cluster),
        ];
        self.0.check(cx, &needs).await?;
        let found = self
            .0
            .cluster
            .read(false, |s| {
                let replay = replayed(s, rid);
                s.find_vm(&source).map(|vm| {
                    let disks: Vec<model::Disk> =
                        vm.config.disks.iter().filter_map(|d| s.disks.get(d)).cloned().collect();
                    (vm.runtime.status, vm.config.nics.len(), disks, s.vm_names.contains_key(&name), replay)
                })
            })
            .await?;
        let (vm_status, nics, source_disks, taken, replay) =
            found.ok_or_else(|| ClusterError::vm_not_found(&source))?;
        if replay {
            // Applied already: answered as the first time, no new copies.
            let op =
                Op::CloneVm { source: source.clone(), id: Uuid::new_v4(), name, disks: Vec::new(), macs: Vec::new() };
            return self.order(rid, self.0.permit(cx, &needs, op).await?).await;
        }
        if taken {
            return Err(ClusterError::AlreadyExists(format!("vm '{name}' already exists")));
        }
        if vm_status != model::VmStatus::Down {
            return Err(ClusterError::FailedPrecondition(format!(
                "vm '{source}' is {}; only a down VM can be cloned",
                vm_status.as_str()
            )));
        }
        let op =
            |disks, macs| Op::CloneVm { source: source.clone(), id: Uuid::new_v4(), name: name.clone(), disks, macs };
        self.clone_with_copies(cx, rid, &needs, &name, &source_disks, None, nics, op).await
    }

    /// The end of a clone: copies of `sources` for VM `name` (of their snapshot `tag`, or of
    /// what they hold now), and `op(disks, macs)` made for the caller and written; no copy is
    /// left behind when anything fails.
    #[allow(clippy::too_many_arguments)]
    pub(super) async fn clone_with_copies(
        &self,
        cx: &Caller,
        rid: Option<Uuid>,
        needs: &[(Operation, Obj<'_>)],
        name: &str,
        sources: &[model::Disk],
        tag: Option<&str>,
        nics: usize,
        op: impl FnOnce(Vec<model::Disk>, Vec<String>) -> Op,
    ) -> Result<Vm, ClusterError> {
        let (mut disks, mut made) = (Vec::new(), Vec::new());
        for (i, src) in sources.iter().enumerate() {
            let copy = new_disk(name, i, src.size_mib);
            let copied = match tag {
                Some(tag) => self.0.images.copy_snapshot(&src.file, tag, &copy.file).await,
                None => self.0.images.copy(&src.file, &copy.file).await,
            };
            if let Err(e) = copied {
                self.0.images.remove(&made).await;
                return Err(e);
            }
            made.push(copy.file.clone());
            disks.push(copy);
        }
        let macs = (0..nics).map(|_| random_mac()).collect();
        let op = match self.0.permit(cx, needs, op(disks, macs)).await {
            Ok(op) => op,
            Err(e) => {
                self.0.images.remove(&made).await;
                return Err(e);
            }
        };
        self.write_with_images(rid, op, &made).await
    }

    pub async fn start(&self, cx: &Caller, req: StartVmRequest) -> Result<Vm, ClusterError> {
        let StartVmRequest { vm, host } = req;
        self.order_on(cx, Operation::VmStart, &vm.clone(), Op::StartVm { vm, order: StartOrder { host: opt(host) } })
            .await
    }

    pub async fn shutdown(&self, cx: &Caller, req: ShutdownVmRequest) -> Result<Vm, ClusterError> {
        let ShutdownVmRequest { vm, reason, timeout_seconds } = req;
        validate::text("reason", &reason)?;
        let timeout_s = if timeout_seconds == 0 { DEFAULT_SHUTDOWN_TIMEOUT_S } else { timeout_seconds };
        self.order_on(cx, Operation::VmShutdown, &vm.clone(), Op::ShutdownVm { vm, reason: opt(reason), timeout_s })
            .await
    }

    pub async fn stop(&self, cx: &Caller, req: StopVmRequest) -> Result<Vm, ClusterError> {
        let StopVmRequest { vm, reason } = req;
        validate::text("reason", &reason)?;
        self.order_on(cx, Operation::VmStop, &vm.clone(), Op::StopVm { vm, reason: opt(reason) }).await
    }

    pub async fn reboot(&self, cx: &Caller, req: VmRef) -> Result<Vm, ClusterError> {
        self.order_on(cx, Operation::VmReboot, &req.vm, Op::RebootVm { vm: req.vm.clone() }).await
    }

    pub async fn suspend(&self, cx: &Caller, req: VmRef) -> Result<Vm, ClusterError> {
        self.order_on(cx, Operation::VmSuspend, &req.vm, Op::SuspendVm { vm: req.vm.clone() }).await
    }

    pub async fn resume(&self, cx: &Caller, req: VmRef) -> Result<Vm, ClusterError> {
        self.order_on(cx, Operation::VmSuspend, &req.vm, Op::ResumeVm { vm: req.vm.clone() }).await
    }

    pub async fn migrate(&self, cx: &Caller, req: MigrateVmRequest) -> Result<Vm, ClusterError> {
        let MigrateVmRequest { vm, to } = req;
        self.order_on(cx, Operation::VmMigrate, &vm.clone(), Op::MigrateVm { vm, to: opt(to) }).await
    }

    pub async fn cancel_migration(&self, cx: &Caller, req: VmRef) -> Result<Vm, ClusterError> {
        self.order_on(cx, Operation::VmMigrate, &req.vm, Op::CancelMigration { vm: req.vm.clone() }).await
    }

    /// `vm cd`: an ISO inside the storage domain into the CD-ROM drive, or none.
    pub async fn change_cd(&self, cx: &Caller, req: ChangeCdRequest) -> Result<Vm, ClusterError> {
        let rid = cx.request_id()?;
        let ChangeCdRequest { vm, iso, eject, next_run } = req;
        require_hotplug_level(&self.0, "vm cd")?;
        let cdrom = match (opt(iso), eject) {
            (Some(_), true) => return Err(ClusterError::invalid("iso", "give an ISO or --eject, not both")),
            (None, false) => {
                return Err(ClusterError::invalid(
                    "iso",
                    "give an ISO (of the library, or a path in the storage domain) or --eject",
                ))
            }
            (None, true) => None,
            (Some(iso), false) => {
                let name = iso.clone();
                match self.0.cluster.read(false, move |s| s.library.iso(&name).map(|i| i.file.clone())).await? {
                    Some(file) => Some(file),
                    None => Some(self.iso_path(&iso).await?),
                }
            }
        };
        let changes = VmChanges { cdrom: Some(cdrom), next_run, ..VmChanges::default() };
        self.edit_with(cx, rid, Operation::VmChangeCd, &vm, changes).await
    }

    /// `vm disk add`: a new disk, attached and plugged (hot-plugged into a running VM).
    pub async fn add_disk(&self, cx: &Caller, req: AddDiskRequest) -> Result<Vm, ClusterError> {
        let rid = cx.request_id()?;
        let AddDiskRequest { vm, size_mib, name, format, interface, bootable, optional, request_id: _ } = req;
        require_hotplug_level(&self.0, "vm disk add")?;
        validate::disk_size("size", size_mib)?;
        let format = disk_format(&format)?;
        let interface = vocab::read("interface", interface, "")?.unwrap_or_default();
        let needs = [(Operation::VmEdit, Obj::Vm(&vm)), (Operation::DiskCreate, Obj::Cluster)];
        self.0.check(cx, &needs).await?;
        let (before, count) = self
            .0
            .cluster
            .read(false, |s| {
                let v = s.find_vm(&vm).cloned();
                // The lowest free name VM-diskN.
                let n = v.as_ref().map_or(0, |v| {
                    (0..).find(|i| s.find_disk(&format!("{}-disk{i}", v.config.name)).is_none()).unwrap_or(0)
                });
                (v, n)
            })
            .await?;
        let before = before.ok_or_else(|| ClusterError::vm_not_found(&vm))?;
        let mut disk = new_disk(&before.config.name, count, size_mib);
        if let Some(n) = opt(name) {
            validate::name("name", &n)?;
            disk.name = n;
        }
        disk.file = format!("{}.{format}", disk.id);
        disk.format = format.to_string();
        self.0.images.create_as(&disk.file, size_mib, format).await?;
        let made = vec![disk.file.clone()];
        let attachment = model::Attachment { interface, unplugged: false, optional, bootable };
        let op = Op::AttachDisk { vm: vm.clone(), disk: disk.name.clone(), new: Some(disk), attachment };
        let op = match self.0.permit(cx, &needs, op).await {
            Ok(op) => op,
            Err(e) => {
                self.0.images.remove(&made).await;
                return Err(e);
            }
        };
        match self.0.cluster.write(rid, op).await {
            Ok(outcome) => self.changed_vm(Some(&before), outcome, Vec::new()).await,
            Err(e) => {
                if !matches!(e, ClusterError::Unavailable(_)) {
                    self.0.images.remove(&made).await;
                }
                Err(e)
            }
        }
    }

    pub async fn attach_disk(&self, cx: &Caller, req: AttachDiskRequest) -> Result<Vm, ClusterError> {
        let AttachDiskRequest { vm, disk, interface, bootable, optional, unplugged } = req;
        let interface = vocab::read("interface", interface, "")?.unwrap_or_default();
        let attachment = model::Attachment { interface, unplugged, optional, bootable };
        let needs = [(Operation::VmEdit, Obj::Vm(&vm)), (Operation::DiskAttach, Obj::Disk(&disk))];
        let op = Op::AttachDisk { vm: vm.clone(), disk: disk.clone(), new: None, attachment };
        self.device_op(cx, &needs, &vm, op).await
    }

    pub async fn detach_disk(&self, cx: &Caller, req: VmDiskRequest) -> Result<Vm, ClusterError> {
        let VmDiskRequest { vm, disk } = req;
        let op = Op::DetachDisk { vm: vm.clone(), disk };
        self.device_op(cx, &[(Operation::VmEdit, Obj::Vm(&vm))], &vm, op).await
    }

    pub async fn plug_disk(&self, cx: &Caller, req: VmDiskRequest) -> Result<Vm, ClusterError> {
        let VmDiskRequest { vm, disk } = req;
        let op = Op::PlugDisk { vm: vm.clone(), disk, plugged: true };
        self.device_op(cx, &[(Operation::VmEdit, Obj::Vm(&vm))], &vm, op).await
    }

    pub async fn unplug_disk(&self, cx: &Caller, req: VmDiskRequest) -> Result<Vm, ClusterError> {
        let VmDiskRequest { vm, disk } = req;
        let op = Op::PlugDisk { vm: vm.clone(), disk, plugged: false };
        self.device_op(cx, &[(Operation::VmEdit, Obj::Vm(&vm))], &vm, op).await
    }

    pub async fn add_nic(&self, cx: &Caller, req: AddNicRequest) -> Result<Vm, ClusterError> {
        let AddNicRequest { vm, network, mac } = req;
        let mac = opt(mac).map(|m| m.to_ascii_lowercase()).unwrap_or_else(random_mac);
        let nic = model::Nic::new(network, mac);
        validate::nics(std::slice::from_ref(&nic))?;
        let op = Op::AddNic { vm: vm.clone(), nic };
        self.device_op(cx, &[(Operation::VmEdit, Obj::Vm(&vm))], &vm, op).await
    }

    pub async fn remove_nic(&self, cx: &Caller, req: VmNicRequest) -> Result<Vm, ClusterError> {
        let VmNicRequest { vm, nic } = req;
        let op = Op::RemoveNic { vm: vm.clone(), nic };
        self.device_op(cx, &[(Operation::VmEdit, Obj::Vm(&vm))], &vm, op).await
    }

    pub async fn plug_nic(&self, cx: &Caller, req: VmNicRequest) -> Result<Vm, ClusterError> {
        let VmNicRequest { vm, nic } = req;
        let op = Op::PlugNic { vm: vm.clone(), nic, plugged: true };
        self.device_op(cx, &[(Operation::VmEdit, Obj::Vm(&vm))], &vm, op).await
    }

    pub async fn unplug_nic(&self, cx: &Caller, req: VmNicRequest) -> Result<Vm, ClusterError> {
        let VmNicRequest { vm, nic } = req;
        let op = Op::PlugNic { vm: vm.clone(), nic, plugged: false };
        self.device_op(cx, &[(Operation::VmEdit, Obj::Vm(&vm))], &vm, op).await
    }

    /// A change to a VM's devices, made for the caller, waited for on a running VM.
    async fn device_op(
        &self,
        cx: &Caller,
        needs: &[(Operation, Obj<'_>)],
        vm: &str,
        op: Op,
    ) -> Result<Vm, ClusterError> {
        let rid = cx.request_id()?;
        require_hotplug_level(&self.0, "changing a VM's disks and NICs")?;
        // This node's copy (no read barrier: an edit must not cost a round trip more); it only
        // words the notes and tells whether the write changed the running VM.
        let before = self.0.cluster.state()?.read(|s| s.find_vm(vm).cloned());
        let op = self.0.permit(cx, needs, op).await?;
        let outcome = self.0.cluster.write(rid, op).await?;
        self.changed_vm(before.as_ref(), outcome, Vec::new()).await
    }
}

/// A disk image format a user may ask for (qcow2 unless said).
pub fn disk_format(format: &str) -> Result<&'static str, ClusterError> {
    match format.trim() {
        "" | "qcow2" => Ok("qcow2"),
        "raw" => Ok("raw"),
        other => Err(ClusterError::invalid(
            "format",
            format!("must be qcow2 or raw (got '{}')", corral_raft::error::quote(other)),
        )),
    }
}

/// What a create request asks of the library (cluster level 5).
struct LibraryAsk {
    template: Option<String>,
    offering: Option<String>,
    iso: Option<String>,
    boot: Vec<model::BootDevice>,
    other: bool,
}

impl LibraryAsk {
    fn of(r: &CreateVmRequest) -> Result<LibraryAsk, ClusterError> {
        if r.thin && r.clone {
            return Err(ClusterError::invalid("clone", "give --thin or --clone, not both"));
        }
        if (r.thin || r.clone) && r.template.trim().is_empty() {
            return Err(ClusterError::invalid("template", "--thin and --clone need --template"));
        }
        let boot = if r.boot.is_empty() { Vec::new() } else { boot_order(&r.boot.join(","))? };
        Ok(LibraryAsk {
            template: opt(r.template.clone()),
            offering: opt(r.offering.clone()),
            iso: opt(r.iso.clone()),
            boot,
            other: r.cloud_init.is_some() || r.stateless || !r.os.trim().is_empty(),
        })
    }

    fn any(&self) -> bool {
        self.template.is_some() || self.offering.is_some() || self.iso.is_some() || !self.boot.is_empty() || self.other
    }
}

/// What a create request's library names resolve to, read once.
struct Found {
    template: Option<Option<model::Template>>,
    offering: Option<Option<model::Offering>>,
    iso: Option<model::Iso>,
    exists: bool,
    replay: bool,
}

/// `cdrom,disk`: each device once; empty: the default order.
pub fn boot_order(text: &str) -> Result<Vec<model::BootDevice>, ClusterError> {
    let mut out = Vec::new();
    for w in text.split(',').map(str::trim).filter(|w| !w.is_empty()) {
        let d = model::BootDevice::parse(w).ok_or_else(|| {
            ClusterError::invalid(
                "boot",
                format!(
                    "'{}' is no boot device: give cdrom, disk or network, comma-separated",
                    corral_raft::error::quote(w)
                ),
            )
        })?;
        if out.contains(&d) {
            return Err(ClusterError::invalid("boot", format!("{} is named twice", d.as_str())));
        }
        out.push(d);
    }
    Ok(out)
}

/// A cloud-init seed as a request gives it: bounded, and its YAML documents parse (a script
/// starting with `#!` is taken as it is) before anything is made.
pub fn cloud_init_spec(c: CloudInitSpec) -> Result<model::CloudInit, ClusterError> {
    let ci = model::CloudInit {
        user_data: c.user_data,
        network_config: opt(c.network_config),
        ssh_keys: c.ssh_keys.iter().map(|k| k.trim().to_string()).filter(|k| !k.is_empty()).collect(),
        hostname: opt(c.hostname),
    };
    validate::cloud_init(&ci)?;
    // cloud-init reads a cloud-config only under its header, and takes these other kinds as
    // they are; anything else it would ignore, which is refused here rather than found later.
    const OTHER_KINDS: [&str; 6] =
        ["#!", "#include", "#cloud-boothook", "#part-handler", "Content-Type:", "## template: jinja"];
    if ci.user_data.starts_with("#cloud-config") {
        let docs = yaml_rust2::YamlLoader::load_from_str(&ci.user_data)
            .map_err(|e| ClusterError::invalid("cloud_init", format!("the user-data is not valid YAML: {e}")))?;
        if !docs.iter().all(|d| matches!(d, yaml_rust2::Yaml::Hash(_) | yaml_rust2::Yaml::Null)) {
            return Err(ClusterError::invalid(
                "cloud_init",
                "a #cloud-config user-data must be a YAML mapping (keys such as users:, runcmd:)",
            ));
        }
    } else if !OTHER_KINDS.iter().any(|k| ci.user_data.starts_with(k)) {
        return Err(ClusterError::invalid(
            "cloud_init",
            "the user-data must start with #cloud-config (YAML), #! (a script), #include, #cloud-boothook, \
             #part-handler, Content-Type: (MIME multi-part) or ## template: jinja",
        ));
    }
    if let Some(n) = &ci.network_config {
        yaml_rust2::YamlLoader::load_from_str(n).map_err(|e| {
            ClusterError::invalid("network_config", format!("the network-config is not valid YAML: {e}"))
        })?;
    }
    Ok(ci)
}
