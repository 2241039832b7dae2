//! The migration queue of this (source) host: VMs ordered to migrate away wait here and start
//! a few at a time, highest priority first; a running migration's progress is reported, and
//! its outcome is offered to the cluster until it lands or no longer matters.

use std::sync::Arc;
use std::time::Duration;

use corral_raft::command::Op;
use corral_raft::model::{MigrationProgress, MigrationSettings, Observed, Vm, VmStatus};
use corral_raft::NodeId;

use super::super::libvirt::{Hypervisor, MigrationOptions};
use super::super::HostAgent;
use super::{Agent, View, PROGRESS_PERIOD, REPORT_PATIENCE};
use crate::metrics::meters::Meters;

impl Agent {
    /// This host's migration queue: the VMs ordered to migrate away wait here and start by
    /// VM priority (then order time), at most `max_per_host` at once.
    pub(super) fn start_queued_migrations(&self, view: &View) {
        if !self.node.lease.may_start() {
            return;
        }
        let running = self.migrating.lock().expect("migration set").len();
        let free = (view.migration_defaults.max_per_host as usize).saturating_sub(running);
        if free == 0 {
            return;
        }
        let mut queued: Vec<&Vm> = {
            let migrating = self.migrating.lock().expect("migration set");
            view.mine
                .iter()
                .filter(|vm| vm.runtime.status == VmStatus::Migrating && !migrating.contains(&vm.id))
                // Not while a snapshot job works on its images here.
                .filter(|vm| !self.snapshot_running(vm.id))
                .filter(|vm| vm.migration_state.migration_job.as_ref().is_some_and(|j| !j.cancel))
                .collect()
        };
        queued.sort_by_key(|vm| {
            (
                std::cmp::Reverse(vm.config.ha.priority),
                vm.migration_state.migration_job.as_ref().map_or(0, |j| j.queued_ms),
                vm.config.name.clone(),
            )
        });
        for vm in queued.into_iter().take(free) {
            if let (Some(dest), Some(to)) = (view.migration_targets.get(&vm.id), vm.migration_state.migrating_to) {
                let settings = view.migration_defaults.with(&vm.config.migration_settings);
                self.start_migration(vm, dest.clone(), to, settings);
            }
        }
    }

    fn start_migration(&self, vm: &Vm, dest_uri: String, to: NodeId, settings: MigrationSettings) {
        if !self.migrating.lock().expect("migration set").insert(vm.id) {
            return;
        }
        let (hv, node, migrating, vm) = (self.hv.clone(), self.node.clone(), self.migrating.clone(), vm.clone());
        let me = self.me;
        tokio::spawn(async move {
            let migrate_uri = migration_uri(&dest_uri);
            tracing::info!(vm = %vm.config.name, dest = %dest_uri, "live migration starting");
            let options = MigrationOptions {
                auto_converge: settings.auto_converge,
                compression: settings.compression,
                bandwidth_mibps: settings.bandwidth_mibps,
            };
            let done = Arc::new(tokio::sync::Notify::new());
            let watcher = tokio::spawn(watch_migration(
                hv.clone(),
                node.clone(),
                vm.clone(),
                me,
                settings.max_downtime_ms,
                done.clone(),
            ));
            // A VNC display moves to the destination's own listen address (or is left behind).
            let vnc = match hv.consoles(vm.id).await.map(|c| c.vnc.is_some()) {
                Ok(true) => Some(super::super::console::vnc_listen_of(&node, to).await),
                _ => None,
            };
            let started = std::time::Instant::now();
            let result = hv.migrate(vm.id, &dest_uri, migrate_uri.as_deref(), options, vnc).await;
            done.notify_one();
            let sent = watcher.await.unwrap_or(0);
            let meters = node.cluster.meters();
            Meters::count(&meters.migrations, if result.is_ok() { "done" } else { "failed" });
            meters.migration_seconds.observe(started.elapsed().as_secs_f64());
            meters.migration_bytes.inc_by(sent);
            let observed = match result {
                Ok(()) => Observed::MigrationDone { to },
                Err(e) => Observed::MigrationFailed { error: e.to_string() },
            };
            tracing::info!(vm = %vm.config.name, ?observed, "live migration ended");
            // The report must land even through an election or a lost quorum: it is tried
            // again until it does, until the assignment it speaks for has changed (then it is
            // stale), or for at most REPORT_PATIENCE.
            let give_up = tokio::time::Instant::now() + REPORT_PATIENCE;
            while tokio::time::Instant::now() < give_up {
                let op = Op::ReportVm { vm: vm.id, host: me, epoch: vm.runtime.epoch, observed: observed.clone() };
                if node.cluster.write(None, op).await.is_ok() {
                    break;
                }
                let current = node
                    .cluster
                    .state()
                    .ok()
                    .and_then(|s| s.read(|s| s.vms.get(&vm.id).map(|v| (v.runtime.host, v.runtime.epoch))));
                if current != Some((Some(me), vm.runtime.epoch)) {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            migrating.lock().expect("migration set").remove(&vm.id);
        });
    }
}

/// While a migration runs: sets its maximum downtime once the job exists, and reports its
/// progress every half second when it changed. Returns the guest memory sent as of its last
/// look (the job's statistics end with it).
async fn watch_migration(
    hv: Hypervisor,
    node: Arc<HostAgent>,
    vm: Vm,
    me: NodeId,
    max_downtime_ms: Option<u64>,
    done: Arc<tokio::sync::Notify>,
) -> u64 {
    let mut downtime_set = max_downtime_ms.is_none();
    let mut last = None;
    let mut sent = 0;
    loop {
        tokio::select! {
            _ = done.notified() => return sent,
            _ = tokio::time::sleep(PROGRESS_PERIOD) => {}
        }
        let Ok(Some(p)) = hv.job_progress(vm.id).await else { continue };
        sent = sent.max(p.memory_sent_bytes);
        if !downtime_set {
            if let Some(ms) = max_downtime_ms {
                downtime_set = hv.set_max_downtime(vm.id, ms).await.is_ok();
            }
        }
        // A job that has not sized the guest's memory yet says nothing worth reporting.
        if p.memory_total_mib == 0 {
            continue;
        }
        let progress = MigrationProgress {
            percent: p.percent,
            memory_total_mib: p.memory_total_mib,
            memory_remaining_mib: p.memory_remaining_mib,
            iteration: p.iteration,
            elapsed_ms: p.elapsed_ms,
        };
        if last.as_ref() == Some(&(progress.percent, progress.iteration)) {
            continue;
        }
        last = Some((progress.percent, progress.iteration));
        let op = Op::ReportVm {
            vm: vm.id,
            host: me,
            epoch: vm.runtime.epoch,
            observed: Observed::MigrationProgress(progress),
        };
        if let Err(e) = node.cluster.write(None, op).await {
            tracing::debug!(vm = %vm.config.name, "migration progress not reported: {e}");
        }
    }
}

/// The address QEMU's migration stream goes to: the destination host's address, from its
/// libvirt URI (qemu+tcp://10.213.0.4/system -> tcp://10.213.0.4).
fn migration_uri(dest_uri: &str) -> Option<String> {
    let rest = dest_uri.split("://").nth(1)?;
    let host = rest.split('/').next()?.split(':').next()?;
    (!host.is_empty()).then(|| format!("tcp://{host}"))
}

#[cfg(test)]
mod tests {
    use super::migration_uri;

    #[test]
    fn migration_goes_to_the_destination_host_address() {
        assert_eq!(migration_uri("qemu+tcp://10.213.0.4/system").as_deref(), Some("tcp://10.213.0.4"));
        assert_eq!(migration_uri("qemu+tcp://10.213.0.4:16509/system").as_deref(), Some("tcp://10.213.0.4"));
        assert_eq!(migration_uri("qemu:///system"), None);
    }
}
