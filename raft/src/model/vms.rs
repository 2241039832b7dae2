//! The VMs of the state, with indexes kept in step with them: what each host holds (memory,
//! vCPUs, running VMs), which VMs each host runs or receives, which VMs have a snapshot job or a
//! pending HA restart. The scheduler, the host agents and the leader read these instead of
//! walking every VM, so their cost follows the hosts and the VMs concerned, not the cluster.
//!
//! The map is what is stored and compared; the indexes are derived, never encoded. Every change
//! goes through a method here that marks the VMs it may change; the indexes catch up with the
//! marked VMs the next time they are read (or when apply settles them after a command), each VM
//! moving its own footprint from the totals it was in to those it is in now. A change that could
//! touch every VM (`values_mut`) marks them all, which rebuilds the indexes once.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Mutex, MutexGuard, PoisonError};

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use uuid::Uuid;

use super::{Usage, Vm, VmStatus};
use crate::typ::NodeId;

/// What one VM adds to the indexes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Footprint {
    host: Option<NodeId>,
    /// A migration's target, when it is not the VM's own host.
    target: Option<NodeId>,
    memory_mib: u64,
    vcpus: u64,
    running: bool,
    job: Option<NodeId>,
    ha_pending: bool,
}

impl Footprint {
    /// Whether it adds to any index: a VM that is down on no host, with no job and no pending
    /// restart (most of a large cluster's) is not kept at all.
    fn counts(&self) -> bool {
        self.host.is_some() || self.target.is_some() || self.job.is_some() || self.ha_pending
    }

    fn of(vm: &Vm) -> Footprint {
        Footprint {
            host: vm.runtime.host,
            target: vm.migration_state.migrating_to.filter(|t| Some(*t) != vm.runtime.host),
            memory_mib: vm.config.memory_mib,
            vcpus: vm.config.vcpus as u64,
            running: vm.runtime.host.is_some() && vm.runtime.status != VmStatus::Down,
            job: vm.snapshot_state.snapshot_job.as_ref().map(|j| j.host),
            ha_pending: vm.ha_state.ha_restart.is_some(),
        }
    }
}

#[derive(Debug, Default)]
struct Index {
    /// The footprint of every VM that counts, as the totals below count it.
    counted: HashMap<Uuid, Footprint>,
    usage: HashMap<NodeId, Usage>,
    on_host: HashMap<NodeId, BTreeSet<Uuid>>,
    incoming: HashMap<NodeId, BTreeSet<Uuid>>,
    /// VMs with a snapshot job, by the host that runs it.
    jobs: HashMap<NodeId, BTreeSet<Uuid>>,
    ha_pending: BTreeSet<Uuid>,
    /// VMs changed since the indexes last caught up (may repeat).
    dirty: Vec<Uuid>,
    /// Every VM may have changed: rebuild instead.
    all_dirty: bool,
}

impl Index {
    fn remove(&mut self, id: Uuid) {
        let Some(f) = self.counted.remove(&id) else { return };
        if let Some(h) = f.host {
            let u = self.usage.entry(h).or_default();
            u.memory_mib -= f.memory_mib;
            u.vcpus -= f.vcpus;
            u.vms_running -= f.running as u64;
            unlist(&mut self.on_host, h, id);
        }
        if let Some(t) = f.target {
            let u = self.usage.entry(t).or_default();
            u.memory_mib -= f.memory_mib;
            u.vcpus -= f.vcpus;
            unlist(&mut self.incoming, t, id);
        }
        if let Some(h) = f.job {
            unlist(&mut self.jobs, h, id);
        }
        if f.ha_pending {
            self.ha_pending.remove(&id);
        }
    }

    fn add(&mut self, id: Uuid, f: Footprint) {
        if let Some(h) = f.host {
            let u = self.usage.entry(h).or_default();
            u.memory_mib += f.memory_mib;
            u.vcpus += f.vcpus;
            u.vms_running += f.running as u64;
            self.on_host.entry(h).or_default().insert(id);
        }
        if let Some(t) = f.target {
            let u = self.usage.entry(t).or_default();
            u.memory_mib += f.memory_mib;
            u.vcpus += f.vcpus;
            self.incoming.entry(t).or_default().insert(id);
        }
        if let Some(h) = f.job {
            self.jobs.entry(h).or_default().insert(id);
        }
        if f.ha_pending {
            self.ha_pending.insert(id);
        }
        self.counted.insert(id, f);
    }

    fn catch_up(&mut self, vms: &BTreeMap<Uuid, Vm>) {
        if self.all_dirty {
            *self = Index::default();
            for (id, vm) in vms {
                let f = Footprint::of(vm);
                if f.counts() {
                    self.add(*id, f);
                }
            }
            return;
        }
        for id in std::mem::take(&mut self.dirty) {
            let now = vms.get(&id).map(Footprint::of).filter(Footprint::counts);
            if self.counted.get(&id) == now.as_ref() {
                continue;
            }
            self.remove(id);
            if let Some(f) = now {
                self.add(id, f);
            }
        }
    }
}

fn unlist(sets: &mut HashMap<NodeId, BTreeSet<Uuid>>, key: NodeId, id: Uuid) {
    if let Some(s) = sets.get_mut(&key) {
        s.remove(&id);
        if s.is_empty() {
            sets.remove(&key);
        }
    }
}

/// The VMs by id, with their indexes. Reads go through `Deref` to the map; changes through the
/// methods below, which keep the indexes honest.
pub struct VmMap {
    map: BTreeMap<Uuid, Vm>,
    index: Mutex<Index>,
}

impl Default for VmMap {
    fn default() -> Self {
        VmMap { map: BTreeMap::new(), index: Mutex::new(Index::default()) }
    }
}

impl From<BTreeMap<Uuid, Vm>> for VmMap {
    fn from(map: BTreeMap<Uuid, Vm>) -> Self {
        VmMap { map, index: Mutex::new(Index { all_dirty: true, ..Index::default() }) }
    }
}

impl FromIterator<(Uuid, Vm)> for VmMap {
    fn from_iter<I: IntoIterator<Item = (Uuid, Vm)>>(iter: I) -> Self {
        VmMap::from(iter.into_iter().collect::<BTreeMap<_, _>>())
    }
}

impl Clone for VmMap {
    fn clone(&self) -> Self {
        VmMap::from(self.map.clone())
    }
}

impl PartialEq for VmMap {
    fn eq(&self, other: &Self) -> bool {
        self.map == other.map
    }
}

impl std::fmt::Debug for VmMap {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.map.fmt(f)
    }
}

/// Encoded exactly as the map it holds, so stored states read and write as before.
impl Serialize for VmMap {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.map.serialize(s)
    }
}

impl<'de> Deserialize<'de> for VmMap {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        BTreeMap::deserialize(d).map(VmMap::from)
    }
}

impl std::ops::Deref for VmMap {
    type Target = BTreeMap<Uuid, Vm>;

    fn deref(&self) -> &Self::Target {
        &self.map
    }
}

impl<'a> IntoIterator for &'a VmMap {
    type Item = (&'a Uuid, &'a Vm);
    type IntoIter = std::collections::btree_map::Iter<'a, Uuid, Vm>;

    fn into_iter(self) -> Self::IntoIter {
        self.map.iter()
    }
}

impl VmMap {
    fn mark(&mut self, id: Uuid) {
        let index = self.index.get_mut().unwrap_or_else(PoisonError::into_inner);
        if !index.all_dirty {
            index.dirty.push(id);
        }
    }

    fn mark_all(&mut self) {
        let index = self.index.get_mut().unwrap_or_else(PoisonError::into_inner);
        index.all_dirty = true;
        index.dirty.clear();
    }

    pub fn get_mut(&mut self, id: &Uuid) -> Option<&mut Vm> {
        self.mark(*id);
        self.map.get_mut(id)
    }

    pub fn insert(&mut self, id: Uuid, vm: Vm) -> Option<Vm> {
        self.mark(id);
        self.map.insert(id, vm)
    }

    pub fn remove(&mut self, id: &Uuid) -> Option<Vm> {
        self.mark(*id);
        self.map.remove(id)
    }

    /// Every VM, to change: the indexes are rebuilt at their next read. Prefer `get_mut` on the
    /// ids an index names (`on_host`, `incoming`, `ha_pending`).
    pub fn values_mut(&mut self) -> std::collections::btree_map::ValuesMut<'_, Uuid, Vm> {
        self.mark_all();
        self.map.values_mut()
    }

    /// The indexes, caught up with every change so far. Held while read: keep it short.
    fn index(&self) -> MutexGuard<'_, Index> {
        let mut index = self.index.lock().unwrap_or_else(PoisonError::into_inner);
        index.catch_up(&self.map);
        index
    }

    /// Brings the indexes up to date now (apply calls it after each command, so readers find
    /// them current).
    pub fn settle(&mut self) {
        let index = self.index.get_mut().unwrap_or_else(PoisonError::into_inner);
        index.catch_up(&self.map);
    }

    /// Memory and vCPUs that VMs assigned to `host` hold (from the start order until the VM is
    /// down and unassigned; a migrating VM holds both hosts'), and how many run there.
    pub fn usage_of(&self, host: NodeId) -> Usage {
        self.index().usage.get(&host).copied().unwrap_or_default()
    }

    /// `usage_of` for every host that holds anything.
    pub fn usage_by_host(&self) -> HashMap<NodeId, Usage> {
        self.index().usage.clone()
    }

    /// The VMs assigned to `host` (its runtime host), in id order.
    pub fn on_host(&self, host: NodeId) -> Vec<Uuid> {
        self.index().on_host.get(&host).map(|s| s.iter().copied().collect()).unwrap_or_default()
    }

    /// Whether any VM is assigned to `host` or migrates to it.
    pub fn holds_any(&self, host: NodeId) -> bool {
        let index = self.index();
        index.on_host.contains_key(&host) || index.incoming.contains_key(&host)
    }

    /// The VMs migrating to `host` from another host, in id order.
    pub fn incoming(&self, host: NodeId) -> Vec<Uuid> {
        self.index().incoming.get(&host).map(|s| s.iter().copied().collect()).unwrap_or_default()
    }

    /// The VMs whose snapshot job `host` runs, in id order.
    pub fn jobs_on(&self, host: NodeId) -> Vec<Uuid> {
        self.index().jobs.get(&host).map(|s| s.iter().copied().collect()).unwrap_or_default()
    }

    /// Every VM with a snapshot job, whichever host runs it.
    pub fn with_jobs(&self) -> Vec<Uuid> {
        self.index().jobs.values().flatten().copied().collect()
    }

    /// The VMs with a pending HA restart, in id order.
    pub fn ha_pending(&self) -> Vec<Uuid> {
        self.index().ha_pending.iter().copied().collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vm(n: u128, memory_mib: u64) -> Vm {
        Vm::new(Uuid::from_u128(n), &format!("vm{n}"), memory_mib, 1, 0)
    }

    /// The indexes as a fresh rebuild of the same map would have them.
    fn rebuilt(m: &VmMap) -> (HashMap<NodeId, Usage>, Vec<Vec<Uuid>>, Vec<Uuid>) {
        let fresh = VmMap::from(m.map.clone());
        let hosts = [1, 2, 3];
        let lists = hosts.iter().flat_map(|h| [fresh.on_host(*h), fresh.incoming(*h), fresh.jobs_on(*h)]).collect();
        let mut usage = fresh.usage_by_host();
        usage.retain(|_, u| *u != Usage::default());
        (usage, lists, fresh.ha_pending())
    }

    fn current(m: &VmMap) -> (HashMap<NodeId, Usage>, Vec<Vec<Uuid>>, Vec<Uuid>) {
        let hosts = [1, 2, 3];
        let lists = hosts.iter().flat_map(|h| [m.on_host(*h), m.incoming(*h), m.jobs_on(*h)]).collect();
        let mut usage = m.usage_by_host();
        usage.retain(|_, u| *u != Usage::default());
        (usage, lists, m.ha_pending())
    }

    #[test]
    fn indexes_follow_every_kind_of_change() {
        let mut m = VmMap::default();
        for n in 0..20 {
            m.insert(Uuid::from_u128(n), vm(n, 64 + n as u64));
        }
        assert_eq!(current(&m), rebuilt(&m));
        // A seeded walk of changes, each followed by a comparison with a rebuild.
        let mut seed = 7u64;
        for step in 0..2_000 {
            seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            let id = Uuid::from_u128(((seed >> 33) % 24) as u128);
            let pick = (seed >> 20) % 9;
            match pick {
                0 => {
                    m.insert(id, vm(id.as_u128(), 32));
                }
                1 => {
                    m.remove(&id);
                }
                2..=7 => {
                    if let Some(v) = m.get_mut(&id) {
                        let h = ((seed >> 8) % 4) as NodeId;
                        match pick {
                            2 => v.runtime.host = (h > 0).then_some(h),
                            3 => v.migration_state.migrating_to = (h > 0).then_some(h),
                            4 => v.runtime.status = if h.is_multiple_of(2) { VmStatus::Down } else { VmStatus::Up },
                            5 => v.config.memory_mib = 16 * (h + 1),
                            6 => v.ha_state.ha_restart = h.is_multiple_of(2).then(|| crate::model::HaRestart::new(1)),
                            _ => {
                                v.snapshot_state.snapshot_job = (h > 0).then(|| crate::model::SnapshotJob {
                                    seq: 1,
                                    host: h,
                                    started_ms: 0,
                                    kind: crate::model::SnapshotJobKind::Commit,
                                    steps: Vec::new(),
                                })
                            }
                        }
                    }
                }
                _ => {
                    for v in m.values_mut() {
                        v.config.vcpus = 1 + (step % 3) as u32;
                    }
                }
            }
            // Sometimes settled by apply, sometimes caught up by a read.
            if step % 3 == 0 {
                m.settle();
            }
            assert_eq!(current(&m), rebuilt(&m), "step {step}");
        }
    }

    #[test]
    fn encodes_as_the_plain_map() {
        let mut m = VmMap::default();
        m.insert(Uuid::from_u128(1), vm(1, 64));
        let plain: BTreeMap<Uuid, Vm> = m.map.clone();
        assert_eq!(rmp_serde::to_vec_named(&m).unwrap(), rmp_serde::to_vec_named(&plain).unwrap());
        let back: VmMap = rmp_serde::from_slice(&rmp_serde::to_vec_named(&plain).unwrap()).unwrap();
        assert_eq!(back, m);
    }
}
