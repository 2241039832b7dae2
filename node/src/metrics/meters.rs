//! The instruments this node records events into where they happen: writes, elections,
//! fencing, HA restarts, migrations. One set per node, registered once in one registry; the
//! parts get it through the cluster handle. Values that the replicated state already holds are
//! not kept here: they are read at scrape time (`metrics.rs`). Recording never blocks and never
//! fails.

use std::sync::{Arc, Mutex};

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::{ConstCounter, Counter};
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

/// A label set of one label, `result`.
pub type ResultLabel = [(&'static str, &'static str); 1];

/// The instruments, and the registry that holds them.
pub struct Meters {
    registry: Registry,
    /// Values read at scrape time, set by `render` just before the registry is encoded.
    pub(super) scraped: Arc<Scraped>,
    /// Writes this node took (`Cluster::write`: forwarded to the leader, committed, applied
    /// here), from the call to its answer.
    pub write_seconds: Histogram,
    pub write_errors: Counter,
    /// Raft terms this node has seen begin (each is an election somewhere).
    pub elections: Counter,
    /// Times the leader this node knows changed (including to none).
    pub leader_changes: Counter,
    /// VMs this host destroyed because it lost its lease (self-fencing).
    pub self_fenced_vms: Counter,
    /// Fence votes this node, as leader, asked for a silent host: `granted` by a majority or not.
    pub fence_votes: Family<ResultLabel, Counter>,
    /// Fence agent runs by this node as leader: `ok` or `failed`.
    pub fence_agent_runs: Family<ResultLabel, Counter>,
    /// HA VMs this node, as leader, ordered restarted, and how long after they failed.
    pub ha_restarts: Counter,
    pub ha_restart_delay_seconds: Histogram,
    /// Live migrations that ended on this (source) host: `done` or `failed`; their length and
    /// the guest memory they sent.
    pub migrations: Family<ResultLabel, Counter>,
    pub migration_seconds: Histogram,
    pub migration_bytes: Counter,
}

impl std::fmt::Debug for Meters {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Meters").finish_non_exhaustive()
    }
}

impl Meters {
    pub fn new() -> Arc<Meters> {
        let mut registry = Registry::with_prefix("corral");
        let scraped = Arc::new(Scraped::default());
        registry.register_collector(Box::new(scraped.clone()));
        let m = Meters {
            scraped,
            // 0.25 ms to 8 s.
            write_seconds: Histogram::new(exponential_buckets(0.000_25, 2.0, 16)),
            write_errors: Counter::default(),
            elections: Counter::default(),
            leader_changes: Counter::default(),
            self_fenced_vms: Counter::default(),
            fence_votes: Family::default(),
            fence_agent_runs: Family::default(),
            ha_restarts: Counter::default(),
            ha_restart_delay_seconds: Histogram::new([
                1.0, 2.0, 3.0, 5.0, 7.5, 10.0, 15.0, 20.0, 30.0, 60.0, 120.0, 300.0,
            ]),
            migrations: Family::default(),
            // 0.5 s to 17 min.
            migration_seconds: Histogram::new(exponential_buckets(0.5, 2.0, 12)),
            migration_bytes: Counter::default(),
            registry: Registry::default(),
        };
        let r = &mut registry;
        r.register("write_duration_seconds", "Writes this node took, until applied here", m.write_seconds.clone());
        r.register("write_errors", "Writes this node took that failed", m.write_errors.clone());
        r.register("raft_elections", "Raft terms this node has seen begin", m.elections.clone());
        r.register("raft_leader_changes", "Changes of the leader this node knows", m.leader_changes.clone());
        r.register("self_fenced_vms", "VMs this host destroyed after losing its lease", m.self_fenced_vms.clone());
        r.register("fence_votes", "Fence votes this node asked for as leader, by result", m.fence_votes.clone());
        r.register(
            "fence_agent_runs",
            "Fence agent runs by this node as leader, by result",
            m.fence_agent_runs.clone(),
        );
        r.register("ha_restarts", "HA VMs this node ordered restarted as leader", m.ha_restarts.clone());
        r.register(
            "ha_restart_delay_seconds",
            "From an HA VM's failure to its restart order, as this node led",
            m.ha_restart_delay_seconds.clone(),
        );
        r.register("migrations", "Live migrations that ended on this source host, by result", m.migrations.clone());
        r.register(
            "migration_duration_seconds",
            "Live migrations from this host, start to end",
            m.migration_seconds.clone(),
        );
        r.register(
            "migration_memory_bytes",
            "Guest memory sent by live migrations from this host",
            m.migration_bytes.clone(),
        );
        // Every result starts at zero, so that it is there to be queried before it first happens.
        for (family, results) in [
            (&m.fence_votes, ["granted", "refused"]),
            (&m.fence_agent_runs, ["ok", "failed"]),
            (&m.migrations, ["done", "failed"]),
        ] {
            for result in results {
                let _ = family.get_or_create(&[("result", result)]);
            }
        }
        Arc::new(Meters { registry, ..m })
    }

    pub fn registry(&self) -> &Registry {
        &self.registry
    }

    /// Counts one event of a family by its result.
    pub fn count(family: &Family<ResultLabel, Counter>, result: &'static str) {
        family.get_or_create(&[("result", result)]).inc();
    }
}

/// What kind of value a scraped series is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Gauge,
    Counter,
}

/// One metric read at scrape time: its name (without the prefix), help, kind and series.
#[derive(Debug, Clone)]
pub struct Sample {
    pub name: &'static str,
    pub help: &'static str,
    pub kind: Kind,
    pub series: Vec<(Vec<(&'static str, String)>, f64)>,
}

impl Sample {
    pub fn gauge(name: &'static str, help: &'static str, value: f64) -> Sample {
        Sample { name, help, kind: Kind::Gauge, series: vec![(Vec::new(), value)] }
    }

    pub fn labelled(name: &'static str, help: &'static str, kind: Kind) -> Sample {
        Sample { name, help, kind, series: Vec::new() }
    }

    pub fn with(mut self, labels: Vec<(&'static str, String)>, value: f64) -> Sample {
        self.series.push((labels, value));
        self
    }
}

/// The values of one scrape, encoded with the registry (a collector, read on each encode).
#[derive(Debug, Default)]
pub(super) struct Scraped(Mutex<Vec<Sample>>);

impl Scraped {
    pub(super) fn set(&self, samples: Vec<Sample>) {
        *self.0.lock().unwrap_or_else(|e| e.into_inner()) = samples;
    }
}

impl Collector for Scraped {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let samples = self.0.lock().unwrap_or_else(|e| e.into_inner());
        // A metric with no series still says what it is (a dashboard finds the name).
        for s in samples.iter() {
            let metric_type = match s.kind {
                Kind::Gauge => ConstGauge::new(0.0f64).metric_type(),
                Kind::Counter => ConstCounter::new(0.0f64).metric_type(),
            };
            let mut family = encoder.encode_descriptor(s.name, s.help, None, metric_type)?;
            if let [(labels, value)] = &s.series[..] {
                if labels.is_empty() {
                    encode_value(s.kind, *value, family)?;
                    continue;
                }
            }
            for (labels, value) in &s.series {
                let labels: Vec<(&str, &str)> = labels.iter().map(|(k, v)| (*k, v.as_str())).collect();
                encode_value(s.kind, *value, family.encode_family(&labels)?)?;
            }
        }
        Ok(())
    }
}

fn encode_value(kind: Kind, value: f64, encoder: prometheus_client::encoding::MetricEncoder<'_>) -> std::fmt::Result {
    match kind {
        Kind::Gauge => ConstGauge::new(value).encode(encoder),
        Kind::Counter => ConstCounter::new(value).encode(encoder),
    }
}
