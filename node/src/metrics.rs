//! Prometheus metrics of this node (`corral_*`), in the OpenMetrics text format. Events are
//! counted where they happen (`meters`: writes, elections, fencing, HA restarts, migrations);
//! everything the replicated state, openraft or the agent already knows is read when scraped
//! (`render`), from local copies only: a scrape never waits for the cluster, for libvirt or for
//! a lock held across I/O. `http` serves them without login on `--metrics-listen`.

pub mod http;
pub mod meters;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use corral_raft::model::{HostState, VmStatus};
use openraft::ServerState;

use crate::agent::LocalEngine;
use crate::cluster::Cluster;
use meters::{Kind, Meters, Sample};

/// What a scrape reads: this node's instruments, its cluster handle (Raft's metrics, the
/// applied state, the OVF store) and its agent's narrow interface (lease, VM usage).
#[derive(Clone)]
pub struct Metrics {
    meters: Arc<Meters>,
    cluster: Cluster,
    host: LocalEngine,
    /// One scrape at a time: each sets the scraped values, then encodes them.
    rendering: Arc<Mutex<()>>,
}

impl Metrics {
    pub fn new(cluster: Cluster, host: LocalEngine) -> Metrics {
        Metrics { meters: cluster.meters().clone(), cluster, host, rendering: Arc::default() }
    }
}

/// This node's metrics as OpenMetrics text (ending in `# EOF`), for `GET /metrics`: served
/// without login by `--metrics-listen` (`http`), and on the API port to callers with
/// audit.read (`crate::api::Handles::metrics`). Cheap: local reads only (see the module).
pub fn render(metrics: &Metrics) -> String {
    let samples = collect(metrics);
    let _one = metrics.rendering.lock().unwrap_or_else(|e| e.into_inner());
    metrics.meters.scraped.set(samples);
    let mut out = String::with_capacity(16 * 1024);
    if let Err(e) = prometheus_client::encoding::text::encode(&mut out, metrics.meters.registry()) {
        tracing::warn!("metrics could not be encoded: {e}");
    }
    out
}

const HOST_STATES: [HostState; 6] = [
    HostState::Joining,
    HostState::Up,
    HostState::NonResponsive,
    HostState::Down,
    HostState::PreparingForMaintenance,
    HostState::Maintenance,
];

const VM_STATUSES: [VmStatus; 10] = [
    VmStatus::Down,
    VmStatus::PoweringUp,
    VmStatus::Up,
    VmStatus::Paused,
    VmStatus::Suspended,
    VmStatus::RebootInProgress,
    VmStatus::PoweringDown,
    VmStatus::Migrating,
    VmStatus::NotResponding,
    VmStatus::Unknown,
];

fn flag(b: bool) -> f64 {
    if b {
        1.0
    } else {
        0.0
    }
}

/// The values read at scrape time.
fn collect(m: &Metrics) -> Vec<Sample> {
    let mut out =
        vec![Sample::labelled("build_info", "This build", Kind::Gauge)
            .with(vec![("version", crate::VERSION.into())], 1.0)];
    let Ok(parts) = m.cluster.parts() else {
        out.push(Sample::gauge("raft_running", "Whether this node runs Raft (is a member)", 0.0));
        return out;
    };
    out.push(Sample::gauge("raft_running", "Whether this node runs Raft (is a member)", 1.0));
    let r = parts.metrics();
    let applied = r.last_applied.map_or(0, |l| l.index);
    let last_log = r.last_log_index.unwrap_or(0);
    let leads = r.state == ServerState::Leader;
    out.extend([
        Sample::gauge("raft_term", "The Raft term this node is in", r.current_term as f64),
        Sample::gauge("raft_is_leader", "Whether this node leads", flag(leads)),
        Sample::gauge(
            "raft_leader_id",
            "The node id of the leader this node knows (0: none)",
            r.current_leader.unwrap_or(0) as f64,
        ),
        Sample::gauge(
            "raft_has_leader",
            "Whether this node sees a leader now (health)",
            flag(m.cluster.sees_leader().is_some()),
        ),
        Sample::gauge("raft_last_log_index", "The last index of this node's log", last_log as f64),
        Sample::gauge(
            "raft_commit_index",
            "The index a majority holds (the leader's view; elsewhere the applied index)",
            commit_index(&r).unwrap_or(applied) as f64,
        ),
        Sample::gauge("raft_applied_index", "The last index this node applied", applied as f64),
        Sample::gauge(
            "raft_apply_lag",
            "Entries in this node's log not yet applied",
            last_log.saturating_sub(applied) as f64,
        ),
    ]);
    // Only the leader knows; elsewhere the metric is described with no series.
    let mut lag = Sample::labelled("raft_replication_lag", "Entries a member is behind the leader's log", Kind::Gauge);
    for (id, matched) in r.replication.iter().filter(|_| leads).flatten().filter(|(id, _)| **id != parts.id) {
        lag = lag.with(vec![("node", id.to_string())], last_log.saturating_sub(matched.map_or(0, |l| l.index)) as f64);
    }
    out.push(lag);
    let lease = m.host.lease_left();
    out.push(Sample::gauge("lease_remaining_seconds", "What is left of this host's lease", lease.as_secs_f64()));
    out.push(Sample::gauge("lease_held", "Whether this host holds its lease", flag(lease > Duration::ZERO)));
    out.extend(parts.state.read(|s| state_samples(s, parts.id)));
    out.extend(usage_samples(m, parts));
    let (docs, written, last_ms) = m.cluster.local_ovf_stats();
    if let Some(docs) = docs {
        out.push(Sample::gauge("ovf_documents", "VM documents in this node's OVF store", docs as f64));
    }
    out.push(
        Sample::labelled("ovf_writes", "OVF documents this process wrote or removed", Kind::Counter)
            .with(vec![], written as f64),
    );
    if last_ms > 0 {
        out.push(Sample::gauge(
            "ovf_last_write_timestamp_seconds",
            "When this process last wrote the OVF store",
            last_ms as f64 / 1000.0,
        ));
    }
    out
}

/// On the leader, the highest index a majority of the voters hold (every configuration of a
/// joint membership); openraft 0.9 publishes no commit index.
fn commit_index(r: &corral_raft::typ::RaftMetrics) -> Option<u64> {
    let replication = r.replication.as_ref()?;
    let configs = r.membership_config.membership().get_joint_config();
    configs
        .iter()
        .map(|voters| {
            let mut held: Vec<u64> = voters
                .iter()
                .map(|v| {
                    if *v == r.id {
                        r.last_log_index.unwrap_or(0)
                    } else {
                        replication.get(v).copied().flatten().map_or(0, |l| l.index)
                    }
                })
                .collect();
            held.sort_unstable_by(|a, b| b.cmp(a));
            held.get(voters.len() / 2).copied().unwrap_or(0)
        })
        .min()
}

/// Hosts, VMs, HA and migrations, from the applied state (this node's copy).
fn state_samples(s: &corral_raft::ClusterState, me: corral_raft::NodeId) -> Vec<Sample> {
    let mut hosts = Sample::labelled("hosts", "Hosts by state", Kind::Gauge);
    for state in HOST_STATES {
        let n = s.hosts.values().filter(|h| h.state == state).count();
        hosts = hosts.with(vec![("state", state.as_str().into())], n as f64);
    }
    let mut host_up =
        Sample::labelled("host_alive", "Whether each host answers its heartbeats (its lease is renewed)", Kind::Gauge);
    for h in s.hosts.values() {
        host_up = host_up.with(vec![("host", h.name.clone())], flag(h.state.is_alive()));
    }
    let mut vms = Sample::labelled("vms", "VMs by status", Kind::Gauge);
    for status in VM_STATUSES {
        let n = s.vms.values().filter(|v| v.runtime.status == status).count();
        vms = vms.with(vec![("status", status.as_str().into())], n as f64);
    }
    let count = |f: &dyn Fn(&corral_raft::model::Vm) -> bool| s.vms.values().filter(|v| f(v)).count() as f64;
    let on_me = count(&|v| v.runtime.host == Some(me) && v.runtime.status != VmStatus::Down);
    vec![
        hosts,
        host_up,
        vms,
        Sample::gauge("host_vms", "VMs assigned to this host and not down", on_me),
        Sample::gauge(
            "ha_restarts_pending",
            "HA VMs that failed and wait for a restart",
            count(&|v| v.ha_state.ha_restart.is_some()),
        ),
        Sample::gauge(
            "ha_restarting",
            "HA VMs restarted and not yet reported up",
            count(&|v| v.ha_state.ha_restarting),
        ),
        Sample::gauge(
            "migrations_queued",
            "Migrations ordered and waiting in their source's queue",
            count(&|v| jobs(v).is_some_and(|j| j.progress.is_none())),
        ),
        Sample::gauge(
            "migrations_running",
            "Migrations running",
            count(&|v| jobs(v).is_some_and(|j| j.progress.is_some())),
        ),
        Sample::labelled("events", "Events the cluster recorded", Kind::Counter)
            .with(vec![], s.next_event_index as f64),
    ]
}

/// A VM's migration in flight, if any.
fn jobs(v: &corral_raft::model::Vm) -> Option<&corral_raft::model::MigrationJob> {
    v.migration_state.migrating_to.and(v.migration_state.migration_job.as_ref())
}

/// What the VMs running here use, from the agent's last look at libvirt.
fn usage_samples(m: &Metrics, parts: &crate::cluster::RaftParts) -> Vec<Sample> {
    let usage = m.host.vm_usage();
    let names: Vec<Option<String>> =
        parts.state.read(|s| usage.iter().map(|u| s.vms.get(&u.uuid).map(|v| v.config.name.clone())).collect());
    let mut cpu = Sample::labelled("vm_cpu_seconds", "CPU time a VM here used since it started here", Kind::Counter);
    let mut memory = Sample::labelled("vm_memory_bytes", "Memory a VM here has", Kind::Gauge);
    let mut rd = Sample::labelled("vm_disk_read_bytes", "Bytes a VM here read from its disks", Kind::Counter);
    let mut wr = Sample::labelled("vm_disk_written_bytes", "Bytes a VM here wrote to its disks", Kind::Counter);
    let mut rx = Sample::labelled("vm_network_receive_bytes", "Bytes a VM here received on its NICs", Kind::Counter);
    let mut tx = Sample::labelled("vm_network_transmit_bytes", "Bytes a VM here sent on its NICs", Kind::Counter);
    // Domains that are not cluster VMs are left out.
    for (u, name) in usage.iter().zip(names) {
        let Some(name) = name else { continue };
        let l = || vec![("vm", name.clone())];
        cpu = cpu.with(l(), u.cpu_time_ns as f64 / 1e9);
        memory = memory.with(l(), (u.memory_kib * 1024) as f64);
        rd = rd.with(l(), u.disk_read_bytes as f64);
        wr = wr.with(l(), u.disk_write_bytes as f64);
        rx = rx.with(l(), u.net_rx_bytes as f64);
        tx = tx.with(l(), u.net_tx_bytes as f64);
    }
    vec![cpu, memory, rd, wr, rx, tx]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scraped_values_and_instruments_encode_as_openmetrics() {
        let meters = Meters::new();
        meters.write_seconds.observe(0.002);
        meters.write_seconds.observe(0.003);
        meters.elections.inc();
        Meters::count(&meters.fence_votes, "granted");
        meters.scraped.set(vec![
            Sample::gauge("raft_term", "term", 7.0),
            Sample::labelled("vms", "VMs by status", Kind::Gauge)
                .with(vec![("status", "up".into())], 2.0)
                .with(vec![("status", "down".into())], 0.0),
            Sample::labelled("vm_cpu_seconds", "cpu", Kind::Counter).with(vec![("vm", "web\"1".into())], 1.5),
            Sample::labelled("empty", "nothing", Kind::Gauge),
        ]);
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, meters.registry()).unwrap();
        for line in [
            "# TYPE corral_raft_term gauge",
            "corral_raft_term 7.0",
            "corral_vms{status=\"up\"} 2.0",
            "corral_vms{status=\"down\"} 0.0",
            "# TYPE corral_vm_cpu_seconds counter",
            "corral_vm_cpu_seconds_total{vm=\"web\\\"1\"} 1.5",
            "corral_write_duration_seconds_count 2",
            "corral_raft_elections_total 1",
            "corral_fence_votes_total{result=\"granted\"} 1",
        ] {
            assert!(out.lines().any(|l| l == line), "{line:?} missing from:\n{out}");
        }
        assert!(out.contains("# TYPE corral_empty gauge"), "a metric with no series is described");
        assert!(!out.lines().any(|l| l.starts_with("corral_empty")), "and has no sample");
        assert!(out.ends_with("# EOF\n"));
        // A later scrape replaces the values, it does not add to them.
        meters.scraped.set(vec![Sample::gauge("raft_term", "term", 8.0)]);
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, meters.registry()).unwrap();
        assert!(out.contains("corral_raft_term 8.0") && !out.contains("corral_vms{"), "{out}");
    }

    #[test]
    fn every_state_and_status_has_a_series_even_when_none_is_in_it() {
        let mut s = corral_raft::ClusterState::default();
        let id = uuid::Uuid::new_v4();
        let mut vm = corral_raft::model::Vm::new(id, "web1", 512, 1, 0);
        vm.runtime.status = VmStatus::Up;
        vm.runtime.host = Some(1);
        s.vms.insert(id, vm);
        let samples = state_samples(&s, 1);
        let vms = samples.iter().find(|x| x.name == "vms").unwrap();
        assert_eq!(vms.series.len(), VM_STATUSES.len());
        assert!(vms.series.contains(&(vec![("status", "up".to_string())], 1.0)));
        assert!(vms.series.contains(&(vec![("status", "down".to_string())], 0.0)));
        let hosts = samples.iter().find(|x| x.name == "hosts").unwrap();
        assert_eq!(hosts.series.len(), HOST_STATES.len());
        let on_me = samples.iter().find(|x| x.name == "host_vms").unwrap();
        assert_eq!(on_me.series, vec![(vec![], 1.0)]);
    }
}
