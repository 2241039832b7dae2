//! The host agent's reconciliation loop: makes this host's libvirt match what the replicated
//! state assigns to it, and reports what actually runs back through Raft, only when it
//! changes. It acts on cluster VMs only (domains libvirt has for other reasons are left
//! alone), never restarts a VM the cluster did not order up, and guesses nothing when libvirt
//! does not answer: it reports `not_responding`.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use corral_raft::command::Op;
use corral_raft::model::{
    BootDevice, ClusterState, EventKind, MigrationSettings, Observed, PowerState, ResumeBehavior, Vm, VmStatus,
    STATELESS_TAG,
};
use corral_raft::typ::StateHandle;
use corral_raft::{DownCause, NodeId, VmAction};
use uuid::Uuid;

mod hotplug;
mod migration;
mod snapshot;

use super::domain_xml::{CdromSpec, DiskBus, DiskSpec, DomainSpec, NicSpec};
use super::libvirt::{DomainInfo, DomainState, DriverError, Hypervisor};
use super::HostAgent;
use crate::images::StorageDomain;
use crate::now_ms;

/// How often the agent looks at libvirt when nothing in the state changed.
const IDLE_PERIOD: Duration = Duration::from_millis(1000);
/// How often while some VM of this host is in a transition (powering up or down, rebooting).
const BUSY_PERIOD: Duration = Duration::from_millis(200);
/// The least time between two passes, however fast the state changes: under a burst of
/// writes the agent looks once per this period, not once per write.
const MIN_GAP: Duration = Duration::from_millis(50);
/// How long the outcome of a migration is offered to the cluster before the agent gives up.
const REPORT_PATIENCE: Duration = Duration::from_secs(300);
/// How often a running migration's progress is read and, when it moved, reported.
const PROGRESS_PERIOD: Duration = Duration::from_millis(500);

pub fn spawn(node: Arc<HostAgent>, me: NodeId, state: StateHandle) {
    let agent = Agent {
        hv: node.hv.clone(),
        node,
        me,
        state,
        reported: HashMap::new(),
        acpi_sent: HashSet::new(),
        migrating: Arc::default(),
        aborting: HashSet::new(),
        hot_tried: HashMap::new(),
        snapshotting: Arc::default(),
    };
    tokio::spawn(agent.run());
}

struct Agent {
    node: Arc<HostAgent>,
    hv: Hypervisor,
    me: NodeId,
    state: StateHandle,
    /// What was last reported per VM, with the assignment epoch it was reported for.
    reported: HashMap<Uuid, (u64, Observed)>,
    /// Graceful shutdowns already requested, per VM and epoch (ACPI is sent once).
    acpi_sent: HashSet<(Uuid, u64)>,
    /// Migrations running now (they take seconds; the loop goes on meanwhile).
    migrating: Arc<std::sync::Mutex<HashSet<Uuid>>>,
    /// Running migrations an abort was sent for, per VM and epoch.
    aborting: HashSet<(Uuid, u64)>,
    /// The last change to a running VM this agent made (its `hot_seq`), and its report.
    hot_tried: HashMap<Uuid, (u64, Observed)>,
    /// Snapshot jobs running here now, by VM and job number.
    snapshotting: Arc<std::sync::Mutex<HashSet<(Uuid, u64)>>>,
}

/// What the agent needs of the state for one pass, copied out so no lock is held across I/O.
struct View {
    mine: Vec<Vm>,
    migration_targets: HashMap<Uuid, String>,
    my_name: String,
    migration_defaults: MigrationSettings,
    /// Snapshot work given to this host (for VMs here, and VMs that are down).
    snapshot_jobs: Vec<snapshot::JobWork>,
}

/// What libvirt shows of a domain, in the two ways the agent asks.
#[derive(Clone, Copy)]
struct Seen {
    running: bool,
    paused: bool,
}

impl Seen {
    fn of(dom: Option<&DomainInfo>) -> Seen {
        let state = dom.map(|d| d.state);
        Seen {
            running: matches!(state, Some(DomainState::Running | DomainState::Blocked | DomainState::ShuttingDown)),
            paused: matches!(state, Some(DomainState::Paused | DomainState::PmSuspended)),
        }
    }
}

impl Agent {
    async fn run(mut self) {
        let mut applied = self.state.subscribe();
        loop {
            let busy = self.pass().await;
            let period = if busy { BUSY_PERIOD } else { IDLE_PERIOD };
            tokio::time::sleep(MIN_GAP).await;
            tokio::select! {
                r = applied.changed() => if r.is_err() { return },
                _ = tokio::time::sleep(period) => {}
            }
        }
    }

    /// Reads what this host is given: its VMs and snapshot jobs, through the indexes the state
    /// keeps (the cost follows this host's VMs, not the cluster's).
    fn view(&self) -> View {
        let me = self.me;
        self.state.read(|s: &ClusterState| {
            let mut v = View {
                mine: Vec::new(),
                migration_targets: HashMap::new(),
                my_name: s.host_name(me),
                migration_defaults: s.migration_defaults.clone(),
                snapshot_jobs: Vec::new(),
            };
            for vm in s.vms.jobs_on(me).iter().filter_map(|id| s.vms.get(id)) {
                if let Some(job) = vm.snapshot_state.snapshot_job.as_ref().filter(|j| j.host == me) {
                    let files = s.disks_of(vm.id).into_iter().map(|d| (d.id, d.file.clone())).collect();
                    v.snapshot_jobs.push(snapshot::JobWork {
                        vm: vm.id,
                        name: vm.config.name.clone(),
                        job: job.clone(),
                        files,
                        down: vm.runtime.status == VmStatus::Down && vm.runtime.host.is_none(),
                    });
                }
            }
            for vm in s.vms.on_host(me).iter().filter_map(|id| s.vms.get(id)) {
                v.mine.push(vm.clone());
                if let Some(t) = vm.migration_state.migrating_to.and_then(|t| s.hosts.get(&t)) {
                    v.migration_targets.insert(vm.id, t.facts.libvirt_uri.clone());
                }
            }
            // A pass powers VMs up one after another: the hosted engine first, then highly
            // available ones by priority, as the restart pass ordered them.
            v.mine.sort_by_key(|vm| {
                let ha = vm.config.ha.enabled.then_some(vm.config.ha.priority);
                (std::cmp::Reverse(vm.config.hosted_engine), std::cmp::Reverse(ha))
            });
            v
        })
    }

    /// The cluster's VMs among `domains` that are not this host's: by name, and whether each is
    /// migrating here. Read after the view: a VM assigned here since is left for the next pass.
    fn others(&self, domains: &[DomainInfo], view: &View) -> HashMap<Uuid, (String, bool)> {
        let me = self.me;
        let mine: HashSet<Uuid> = view.mine.iter().map(|vm| vm.id).collect();
        self.state.read(|s: &ClusterState| {
            domains
                .iter()
                .filter(|d| !mine.contains(&d.uuid))
                .filter_map(|d| s.vms.get(&d.uuid))
                .filter(|vm| vm.runtime.host != Some(me))
                .map(|vm| (vm.id, (vm.config.name.clone(), vm.migration_state.migrating_to == Some(me))))
                .collect()
        })
    }

    /// One look at libvirt and the state; returns whether something is in transition.
    async fn pass(&mut self) -> bool {
        // Without a lease this host acts on nothing (the lease task fences its VMs); with
        // one, the local state is at least as new as the leader's when it renewed it.
        if !self.node.lease.held() {
            return true;
        }
        let view = self.view();
        let domains = match self.hv.domains().await {
            Ok(d) => d,
            Err(e) => {
                tracing::warn!("libvirt does not answer: {e}");
                for vm in view.mine.iter().filter(|vm| vm.runtime.status != VmStatus::Down) {
                    self.report(vm, Observed::NotResponding).await;
                }
                // Snapshot work needs no libvirt when no domain holds the images (qemu-img;
                // an image QEMU holds refuses its lock, and the job fails with why).
                self.start_snapshot_jobs(&view, &HashMap::new(), true);
                return true;
            }
        };
        let by_id: HashMap<Uuid, &DomainInfo> = domains.iter().map(|d| (d.uuid, d)).collect();
        let mut busy = false;
        if let Some(id) = self.node.lease.hand_started().filter(|id| view.mine.iter().any(|vm| vm.id == *id)) {
            // The cluster gives the hand-started VM to this host: from now on it is an ordinary
            // VM here, fenced like every other.
            tracing::info!(vm = %id, "the cluster assigns the hand-started engine VM to this host");
            super::engine::forget_hand_started(&self.node);
        }
        for vm in &view.mine {
            busy |= self.reconcile(vm, by_id.get(&vm.id).copied(), &view).await;
        }
        self.start_queued_migrations(&view);
        let running: HashMap<Uuid, bool> = domains.iter().map(|d| (d.uuid, snapshot::is_running(d.state))).collect();
        self.start_snapshot_jobs(&view, &running, false);
        let others = self.others(&domains, &view);
        for d in &domains {
            if let Some((name, incoming)) = others.get(&d.uuid) {
                if *incoming {
                    continue;
                }
                if self.node.lease.hand_started() == Some(d.uuid) {
                    match super::engine::claim(&self.node, self.me, d.uuid).await {
                        super::engine::Claim::Taken => continue,
                        super::engine::Claim::Later => {
                            busy = true;
                            continue;
                        }
                        super::engine::Claim::Refused => {}
                    }
                }
                self.remove_stray(d, name, &view.my_name).await;
            }
        }
        busy
    }

    /// Brings one assigned VM towards what is desired; returns whether it is in transition.
    async fn reconcile(&mut self, vm: &Vm, dom: Option<&DomainInfo>, view: &View) -> bool {
        // Its images are being worked on here (a memory snapshot pauses the guest meanwhile).
        if self.snapshot_running(vm.id) {
            return true;
        }
        if self.migrating.lock().expect("migration set").contains(&vm.id) {
            self.watch_running_migration(vm).await;
            return true;
        }
        if vm.runtime.status == VmStatus::Migrating {
            // Queued here: started by `start_queued_migrations`, a few at a time.
            if vm.migration_state.migration_job.as_ref().is_some_and(|j| j.cancel) {
                let error = "cancelled before it started".to_string();
                self.report(vm, Observed::MigrationFailed { error }).await;
            }
            return true;
        }
        let seen = Seen::of(dom);
        match vm.runtime.desired {
            PowerState::Down => self.keep_down(vm, seen).await,
            PowerState::Up | PowerState::Suspended if !seen.running && !seen.paused => {
                self.not_running(vm, dom, view).await
            }
            PowerState::Suspended => self.keep_suspended(vm, seen).await,
            PowerState::Up => self.keep_up(vm, dom, seen).await,
        }
    }

    /// A migration of `vm` runs: aborted when it was cancelled or is no longer wanted (its
    /// destination was declared down).
    async fn watch_running_migration(&mut self, vm: &Vm) {
        let cancel = vm.migration_state.migration_job.as_ref().is_some_and(|j| j.cancel);
        let unwanted = vm.migration_state.migration_job.is_none() || vm.runtime.status != VmStatus::Migrating;
        if (cancel || unwanted) && self.aborting.insert((vm.id, vm.runtime.epoch)) {
            tracing::info!(vm = %vm.config.name, "aborting the running migration");
            if let Err(e) = self.hv.abort_job(vm.id).await {
                // Maybe before libvirt's job exists: tried again on the next pass.
                tracing::warn!(vm = %vm.config.name, "could not abort the migration: {e}");
                self.aborting.remove(&(vm.id, vm.runtime.epoch));
            }
        }
    }

    /// Desired down: a graceful shutdown until its deadline, then power off; reported down once
    /// nothing runs.
    async fn keep_down(&mut self, vm: &Vm, seen: Seen) -> bool {
        if seen.running || seen.paused {
            let deadline_passed = vm.runtime.shutdown_deadline_ms.is_none_or(|d| now_ms() >= d);
            if deadline_passed {
                if let Err(e) = self.hv.destroy(vm.id).await {
                    self.failed(vm, VmAction::PowerOff, e).await;
                }
            } else if self.acpi_sent.insert((vm.id, vm.runtime.epoch)) {
                if let Err(e) = self.hv.shutdown(vm.id).await {
                    self.failed(vm, VmAction::ShutDown, e).await;
                }
            }
            return true;
        }
        let cause = vm.runtime.stop_reason.clone().map_or(DownCause::PoweredOff, DownCause::Other);
        self.stateless_reset(vm).await;
        self.report(vm, Observed::Down { cause, on_purpose: true }).await;
        self.acpi_sent.remove(&(vm.id, vm.runtime.epoch));
        self.forget(vm.id).await;
        true
    }

    /// Desired up or suspended, and nothing runs: started when the cluster ordered it up, else
    /// reported down with what stopped it.
    async fn not_running(&mut self, vm: &Vm, dom: Option<&DomainInfo>, view: &View) -> bool {
        if vm.runtime.status == VmStatus::PoweringUp {
            self.power_up(vm).await;
            return true;
        }
        let guest_shutdown = dom.is_some_and(|d| d.guest_shutdown);
        let cause = if self.node.lease.take_fenced(vm.id) {
            DownCause::SelfFenced { host: view.my_name.clone() }
        } else {
            match dom.map(|d| d.state) {
                Some(DomainState::Crashed) => DownCause::Crashed,
                Some(_) if guest_shutdown => DownCause::GuestShutdown,
                Some(_) => DownCause::ProcessEnded,
                None => DownCause::Vanished,
            }
        };
        self.stateless_reset(vm).await;
        self.report(vm, Observed::Down { cause, on_purpose: guest_shutdown }).await;
        self.forget(vm.id).await;
        true
    }

    /// Desired suspended, and the domain exists.
    async fn keep_suspended(&mut self, vm: &Vm, seen: Seen) -> bool {
        if seen.running {
            if let Err(e) = self.hv.suspend(vm.id).await {
                self.failed(vm, VmAction::Suspend, e).await;
            }
            return true;
        }
        self.report(vm, Observed::Suspended).await;
        false
    }

    /// Desired up, and the domain exists: resumed after a suspend, handled after an I/O error
    /// pause, rebooted when ordered, else reported as it is.
    async fn keep_up(&mut self, vm: &Vm, dom: Option<&DomainInfo>, seen: Seen) -> bool {
        if seen.paused && dom.is_some_and(|d| d.io_error) {
            return self.io_error_pause(vm).await;
        }
        if seen.paused && vm.runtime.status == VmStatus::Suspended {
            let resumed = {
                let _acting = self.node.lease.acting.read().await;
                if !self.node.lease.may_start() {
                    return true;
                }
                self.hv.resume(vm.id).await
            };
            if let Err(e) = resumed {
                self.failed(vm, VmAction::Resume, e).await;
            }
            return true;
        }
        if seen.paused {
            self.report(vm, Observed::Paused).await;
            return false;
        }
        if vm.runtime.reboot_pending {
            match self.hv.reboot(vm.id).await {
                Ok(()) => self.report(vm, Observed::RebootDone).await,
                Err(e) => self.failed(vm, VmAction::Reboot, e).await,
            }
            return true;
        }
        self.report(vm, Observed::Up).await;
        if vm.runtime.hot_done < vm.runtime.hot_seq && vm.runtime.status == VmStatus::Up {
            self.hot_pass(vm).await;
            return true;
        }
        vm.runtime.status != VmStatus::Up
    }

    /// A VM the hypervisor paused on a storage I/O error, handled by its resume behaviour.
    async fn io_error_pause(&mut self, vm: &Vm) -> bool {
        self.report(vm, Observed::PausedIoError).await;
        match vm.config.resume_behavior {
            // Tried at the idle pace: if the storage still fails, the guest pauses again.
            ResumeBehavior::AutoResume => {
                let node = self.node.clone();
                let resumed = {
                    let _acting = node.lease.acting.read().await;
                    node.lease.may_start() && self.hv.resume(vm.id).await.is_ok()
                };
                if resumed {
                    tracing::info!(vm = %vm.config.name, "resumed after an I/O error pause");
                }
                false
            }
            ResumeBehavior::LeavePaused => false,
            ResumeBehavior::Kill => {
                if let Err(e) = self.hv.destroy(vm.id).await {
                    self.failed(vm, VmAction::PowerOff, e).await;
                    return true;
                }
                self.stateless_reset(vm).await;
                self.report(vm, Observed::Down { cause: DownCause::KilledAfterIoError, on_purpose: false }).await;
                self.forget(vm.id).await;
                true
            }
        }
    }

    async fn power_up(&mut self, vm: &Vm) {
        // Built only here: the spec is needed when a VM powers up, not on every pass.
        let (node, me) = (self.node.clone(), self.me);
        let Some((mut spec, missing)) =
            self.state.read(|s| s.vms.get(&vm.id).map(|v| domain_spec(&node.images, s, v, me)))
        else {
            return;
        };
        spec.vnc_listen = node.vnc_listen(&spec);
        if !missing.is_empty() {
            let message =
                format!("VM {} starts without {}: the image cannot be opened.", vm.config.name, missing.join(", "));
            let _ = self.node.cluster.write(None, Op::RecordEvent { kind: EventKind::VmStateChanged, message }).await;
        }

        let result = {
            // Held only while libvirt starts it, never across a write to the cluster.
            let _acting = node.lease.acting.read().await;
            if !node.lease.may_start() {
                tracing::info!(vm = %vm.config.name, "not started: the lease has too little time left");
                return;
            }
            match vm.snapshot_state.resume_from {
                // A memory preview or restore: the guest resumes where the snapshot left it.
                Some(snap) => self.start_from_memory(vm, snap).await,
                None => match self.prepare_images(vm).await {
                    Err(e) => Err(e),
                    Ok(()) => match self.hv.define(&spec).await {
                        Ok(()) => self.hv.start(vm.id).await,
                        Err(e) => Err(e),
                    },
                },
            }
        };
        match result {
            Ok(()) => {
                tracing::info!(vm = %vm.config.name, "started");
                self.report(vm, Observed::Up).await;
            }
            Err(e) => {
                tracing::warn!(vm = %vm.config.name, "start failed: {e}");
                let _ = self.hv.undefine(vm.id).await;
                self.failed(vm, VmAction::Start, e).await;
            }
        }
    }

    /// Before a VM's domain is defined: its cloud-init seed written, and a stateless VM's disks
    /// brought back to their stateless snapshot (taken now on a first start; one left by a run
    /// that ended without a clean stop is gone back to first).
    async fn prepare_images(&self, vm: &Vm) -> Result<(), DriverError> {
        let images = &self.node.images;
        let err = |message: String| DriverError::Libvirt { uri: "storage domain".into(), message };
        if let Some(ci) = &vm.config.cloud_init {
            let meta = ci.meta_data(vm.id, &vm.config.name);
            images
                .write_seed(&crate::images::seed_file(vm.id), &ci.user_data, &meta, ci.network_config.as_deref())
                .await
                .map_err(|e| err(format!("cannot write the cloud-init seed of {}: {e}", vm.config.name)))?;
        }
        if vm.config.stateless {
            for d in self.stateless_disks(vm) {
                let tags = images.snapshot_tags(&d).await.map_err(|e| err(e.to_string()))?;
                let done = if tags.iter().any(|t| t == STATELESS_TAG) {
                    images.snapshot_revert(&d, STATELESS_TAG).await
                } else {
                    images.snapshot_take(&d, STATELESS_TAG).await
                };
                done.map_err(|e| err(format!("stateless VM {}: {e}", vm.config.name)))?;
            }
        }
        Ok(())
    }

    /// The qcow2 images of a VM's plugged disks (a stateless VM's changes are discarded there).
    fn stateless_disks(&self, vm: &Vm) -> Vec<String> {
        self.state.read(|s| {
            s.disks_of(vm.id)
                .into_iter()
                .filter(|d| d.format == "qcow2" && !vm.attachment(d.id).unplugged)
                .map(|d| d.file.clone())
                .collect()
        })
    }

    /// A stateless VM that went down here: its disks back to how they were when it started
    /// (and the snapshot dropped); a failure is logged and done again at its next start.
    async fn stateless_reset(&self, vm: &Vm) {
        if !vm.config.stateless {
            return;
        }
        let images = &self.node.images;
        for d in self.stateless_disks(vm) {
            let reverted = match images.snapshot_revert(&d, STATELESS_TAG).await {
                Ok(()) => images.snapshot_drop(&d, STATELESS_TAG).await,
                Err(e) => Err(e),
            };
            if let Err(e) = reverted {
                tracing::warn!(vm = %vm.config.name, "stateless reset of {d} failed (done at its next start): {e}");
            }
        }
    }

    /// A cluster VM that libvirt runs here although the cluster assigns it elsewhere (or
    /// nowhere): stopped, with an event; a stale definition is removed quietly.
    async fn remove_stray(&mut self, d: &DomainInfo, name: &str, my_name: &str) {
        let running = !matches!(d.state, DomainState::Shutoff | DomainState::Crashed);
        if running {
            tracing::warn!(vm = name, "running here but not assigned here: stopping it");
            if let Err(e) = self.hv.destroy(d.uuid).await {
                tracing::warn!(vm = name, "could not stop it: {e}");
                return;
            }
            let message =
                format!("VM {name} was running on host {my_name}, which it is not assigned to; it was stopped there.");
            let _ = self.node.cluster.write(None, Op::RecordEvent { kind: EventKind::VmStateChanged, message }).await;
        }
        let _ = self.hv.undefine(d.uuid).await;
    }

    /// Removes the persistent definition of a VM that went down here (it is defined afresh,
    /// from the cluster's configuration, wherever it starts next).
    async fn forget(&self, id: Uuid) {
        if let Err(e) = self.hv.undefine(id).await {
            tracing::debug!("could not undefine {id}: {e}");
        }
    }

    async fn failed(&mut self, vm: &Vm, action: VmAction, e: DriverError) {
        let observed = if matches!(e, DriverError::Unreachable { .. }) {
            Observed::NotResponding
        } else {
            Observed::Failed { action, error: e.to_string() }
        };
        self.report(vm, observed).await;
    }

    /// Sends a report unless the same one was sent for this epoch already.
    async fn report(&mut self, vm: &Vm, observed: Observed) {
        if self.reported.get(&vm.id) == Some(&(vm.runtime.epoch, observed.clone())) {
            return;
        }
        let op = Op::ReportVm { vm: vm.id, host: self.me, epoch: vm.runtime.epoch, observed: observed.clone() };
        match self.node.cluster.write(None, op).await {
            Ok(_) => {
                self.reported.insert(vm.id, (vm.runtime.epoch, observed));
            }
            Err(e) => tracing::debug!(vm = %vm.config.name, "report not delivered yet: {e}"),
        }
    }
}

/// The domain libvirt should run for `vm` on host `me`, and the optional disks left out
/// because their images cannot be opened.
fn domain_spec(images: &StorageDomain, s: &ClusterState, vm: &Vm, me: NodeId) -> (DomainSpec, Vec<String>) {
    let host_type = s.hosts.get(&me).map(|h| h.facts.domain_type).unwrap_or_default();
    let disks = s.disks_of(vm.id);
    let missing: Vec<String> = disks
        .iter()
        .filter(|d| vm.attachment(d.id).optional && !vm.attachment(d.id).unplugged)
        .filter(|d| !images.path(&d.file).exists())
        .map(|d| d.name.clone())
        .collect();
    let present: Vec<_> = disks.into_iter().filter(|d| !missing.contains(&d.name)).collect();
    let missing: Vec<String> = missing.into_iter().map(|d| format!("optional disk {d}")).collect();
    let mut spec = domain_spec_with(images, vm, &present, host_type);
    let mut missing = missing;
    // A medium that is gone leaves the drive empty rather than the VM down.
    if let Some(cd) =
        spec.cdrom.as_mut().filter(|cd| cd.path.as_ref().is_some_and(|p| !std::path::Path::new(p).exists()))
    {
        missing.push(format!("CD {}", cd.path.take().unwrap_or_default()));
    }
    (spec, missing)
}

/// The domain for `vm` with these disks, on a host whose own domain type is `host_type`.
pub fn domain_spec_with(
    images: &StorageDomain,
    vm: &Vm,
    disks: &[corral_raft::model::Disk],
    host_type: corral_raft::model::DomainType,
) -> DomainSpec {
    let domain_type = vm.config.domain_type.unwrap_or(host_type);
    // Plugged disks only, the bootable one first (the guest boots from its first disk); each bus
    // names its disks in order: vda, vdb, ... and sda, sdb, ...
    let mut plugged: Vec<_> = disks.iter().filter(|d| !vm.attachment(d.id).unplugged).collect();
    plugged.sort_by_key(|d| !vm.attachment(d.id).bootable);
    let (mut virtio, mut scsi) = (0u8, 0u8);
    let disks = plugged
        .into_iter()
        .map(|d| {
            let bus = match vm.attachment(d.id).interface {
                corral_raft::model::DiskInterface::Virtio => DiskBus::Virtio,
                corral_raft::model::DiskInterface::Scsi => DiskBus::Scsi,
            };
            let n = if bus == DiskBus::Scsi { &mut scsi } else { &mut virtio };
            let target = format!("{}{}", if bus == DiskBus::Scsi { "sd" } else { "vd" }, (b'a' + *n) as char);
            *n += 1;
            DiskSpec {
                path: images.path(&d.file).display().to_string(),
                target,
                format: d.format.clone(),
                bus,
                // The guest finds a disk by its id (/dev/disk/by-id/virtio-<first 20 of the id>).
                serial: Some(d.id.simple().to_string()[..20].to_string()),
            }
        })
        .collect();
    let test = domain_type == corral_raft::model::DomainType::Test;
    // Limits, the CD-ROM drive and the virtio-scsi controller come with a start at cluster level
    // 3 (`run_limits`); a domain started before keeps the shape it had.
    let limits = vm.runtime.run_limits;
    DomainSpec {
        uuid: vm.id,
        name: vm.config.name.clone(),
        domain_type: domain_type.as_str().into(),
        // What it should have: at a start what it boots with, while it runs the DIMMs included.
        memory_mib: vm.config.memory_mib,
        vcpus: vm.config.vcpus,
        max_vcpus: limits.map(|l| l.max_vcpus).filter(|m| *m > vm.config.vcpus),
        max_memory_mib: limits.map(|l| l.max_memory_mib).filter(|m| *m > vm.config.memory_mib),
        disks,
        scsi_controller: limits.is_some(),
        cdrom: limits
            .map(|_| CdromSpec { path: vm.config.cdrom.as_ref().map(|cd| images.path(cd).display().to_string()) }),
        nics: vm
            .config
            .nics
            .iter()
            .filter(|n| !n.unplugged)
            .map(|n| NicSpec { network: n.network.clone(), mac: n.mac.clone() })
            .collect(),
        kernel: vm.config.boot.clone(),
        // The serial console goes to a file in the storage domain, so it can be read from any host.
        serial_log: (!test).then(|| images.path(&format!("consoles/{}.log", vm.config.name)).display().to_string()),
        // This host's setting, added where the domain is defined (`HostAgent::vnc_listen`).
        vnc_listen: None,
        seed: vm
            .config
            .cloud_init
            .as_ref()
            .map(|_| images.path(&crate::images::seed_file(vm.id)).display().to_string()),
        boot: vm
            .config
            .boot_order
            .iter()
            .map(|b| match b {
                BootDevice::Disk => "hd",
                BootDevice::Cdrom => "cdrom",
                BootDevice::Network => "network",
            })
            .map(str::to_string)
            .collect(),
    }
}
