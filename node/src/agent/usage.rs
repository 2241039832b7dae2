//! What the VMs running here use (CPU time, memory, disk and network bytes), read from libvirt
//! by the agent's own task and kept as a snapshot that a metrics scrape reads without waiting.
//! libvirt is asked only while someone scrapes (within `WANTED_FOR` of the last scrape), at most
//! once per `PERIOD`; a scrape never calls libvirt itself.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::libvirt::{Hypervisor, VmUsage};

/// How often the snapshot is refreshed while it is wanted.
const PERIOD: Duration = Duration::from_secs(5);
/// How long after a scrape the snapshot is still kept fresh.
const WANTED_FOR: Duration = Duration::from_secs(120);

/// The last snapshot, and when a scrape last asked for it.
#[derive(Debug, Default, Clone)]
pub struct Usage(Arc<Mutex<Book>>);

#[derive(Debug, Default)]
struct Book {
    vms: Vec<VmUsage>,
    taken: Option<Instant>,
    wanted: Option<Instant>,
}

impl Usage {
    fn book(&self) -> std::sync::MutexGuard<'_, Book> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The last snapshot (empty until one was taken), and notes that it is wanted.
    pub fn read(&self) -> Vec<VmUsage> {
        let mut book = self.book();
        let first = book.wanted.is_none();
        book.wanted = Some(Instant::now());
        if first {
            tracing::debug!("VM usage is scraped: reading it from libvirt from now on");
        }
        book.vms.clone()
    }

    fn wanted(&self) -> bool {
        self.book().wanted.is_some_and(|w| w.elapsed() < WANTED_FOR)
    }

    fn stale(&self) -> bool {
        self.book().taken.is_none_or(|t| t.elapsed() >= PERIOD)
    }

    fn set(&self, vms: Vec<VmUsage>) {
        let mut book = self.book();
        book.vms = vms;
        book.taken = Some(Instant::now());
    }
}

/// Keeps `usage` fresh while it is wanted; runs as long as the process.
pub fn spawn(hv: Hypervisor, usage: Usage) {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            if !usage.wanted() || !usage.stale() {
                continue;
            }
            match hv.usage().await {
                Ok(vms) => usage.set(vms),
                Err(e) => {
                    tracing::debug!("VM usage not read: {e}");
                    // What libvirt no longer tells is not shown as if it were current.
                    usage.set(Vec::new());
                }
            }
        }
    });
}
