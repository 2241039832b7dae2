//! The scheduler: which host a VM starts, restarts or migrates on. Pure functions of the
//! replicated state, called inside apply (so two concurrent starts never both take the last
//! free memory) and by leader controllers for batches. No I/O, no clock, no randomness here.
//!
//! Filters drop every host that breaks a hard rule, in a fixed order so a refusal names the
//! first rule each host broke; weights order the rest: soft affinity first, then the cluster's
//! policy (even distribution or packing), then fewer running VMs, then the lower host id.

use std::collections::HashMap;

use uuid::Uuid;

use crate::error::ClusterError;
use crate::model::{
    AffinityGroup, AffinityLabel, ClusterState, Host, HostState, MigrationPolicy, Polarity, SchedulingPolicy, Usage, Vm,
};
use crate::typ::NodeId;

/// Why a host is being chosen; the migration policy depends on it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Purpose {
    /// An operator's start (or create --start).
    Start,
    /// The cluster restarts a highly available VM whose host died.
    HaRestart,
    /// An operator's `vm migrate`.
    MigrateByOperator,
    /// The cluster moves a VM on its own (balancing, maintenance evacuation).
    MigrateAutomatic,
}

impl Purpose {
    fn is_migration(self) -> bool {
        matches!(self, Purpose::MigrateByOperator | Purpose::MigrateAutomatic)
    }
}

/// Picks the host for `vm`: `wanted` if named (it must pass every filter), else the best
/// host that passes them all, never one of `exclude`. Builds a [`Scheduler`] (O(hosts + affinity members));
/// for many placements in a row build one and use [`Scheduler::place`] and [`Scheduler::assign`].
pub fn choose(
    state: &ClusterState,
    vm: &Vm,
    wanted: Option<&str>,
    exclude: &[NodeId],
    purpose: Purpose,
) -> Result<NodeId, ClusterError> {
    Scheduler::new(state).place_with(vm, wanted, exclude, purpose)
}

/// The first rule that ruled a host out, in filter order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
enum Reason {
    Excluded,
    NotUp,
    NotPinned,
    /// Index into `Scheduler::labels`.
    Label(u32),
    Tags,
    /// The VM is the hosted engine, and this host may not run it (local maintenance, or an
    /// engine score of 0).
    Engine,
    /// Index into `Scheduler::groups`.
    Group(u32),
    /// Some enforcing positive group has no member there; which one is worked out only for
    /// a refusal's message (`resolve`), so the search stays off the hot path.
    Apart,
    Memory,
    Cpu,
}

/// What one placement of one VM needs to know beyond the VM itself, built once per call.
struct Needs<'v> {
    vm: &'v Vm,
    labels: &'v [u32],
    /// Enforcing negative groups: for each host slot, the first group that forbids it + 1
    /// (0: none). Empty when the VM is in no such group.
    forbidden: Vec<u32>,
    /// Enforcing positive groups with other members placed: those groups, and for each host
    /// slot how many of them have a member there. Empty when none.
    attract: Vec<u32>,
    attract_count: Vec<u32>,
    /// Soft groups: for each host slot, members of positive groups minus members of
    /// negative groups there. Empty when the VM is in no soft group.
    soft: Vec<i32>,
}

impl Needs<'_> {
    /// Adds group `gi`, whose other members run on host `slots` (of `n`), to what the VM needs.
    fn add_group(&mut self, gi: u32, g: &AffinityGroup, slots: &mut Vec<usize>, n: usize) {
        match (g.enforcing, g.polarity) {
            (true, Polarity::Negative) => {
                if self.forbidden.is_empty() {
                    self.forbidden = vec![0; n];
                }
                for &s in slots.iter() {
                    if self.forbidden[s] == 0 {
                        self.forbidden[s] = gi + 1;
                    }
                }
            }
            (true, Polarity::Positive) => {
                if self.attract_count.is_empty() {
                    self.attract_count = vec![0; n];
                }
                // Once per group and host, however many members run there.
                slots.sort_unstable();
                slots.dedup();
                self.attract.push(gi);
                for &s in slots.iter() {
                    self.attract_count[s] += 1;
                }
            }
            (false, polarity) => {
                if self.soft.is_empty() {
                    self.soft = vec![0; n];
                }
                let pull = if polarity == Polarity::Positive { 1 } else { -1 };
                for &s in slots.iter() {
                    self.soft[s] += pull;
                }
            }
        }
    }
}

/// Per-host usage and rule indexes over one state, built once from the indexes apply keeps (O(hosts + affinity members)); `place` is
/// then O(hosts + members of the VM's groups), and `assign` records a placement so the next
/// `place` sees it.
pub struct Scheduler<'a> {
    state: &'a ClusterState,
    policy: SchedulingPolicy,
    overcommit: u64,
    /// All hosts in id order; a host's index here is its slot.
    hosts: Vec<&'a Host>,
    slots: HashMap<NodeId, usize>,
    usage: Vec<Usage>,
    /// VMs placed by `assign`, overriding where the state says they are.
    assigned: HashMap<Uuid, usize>,
    groups: Vec<&'a AffinityGroup>,
    vm_groups: HashMap<Uuid, Vec<u32>>,
    labels: Vec<&'a AffinityLabel>,
    /// Slots of each label's hosts, sorted.
    label_slots: Vec<Vec<usize>>,
    vm_labels: HashMap<Uuid, Vec<u32>>,
}

impl<'a> Scheduler<'a> {
    pub fn new(state: &'a ClusterState) -> Self {
        let hosts: Vec<&Host> = state.hosts.values().collect();
        let slots: HashMap<NodeId, usize> = hosts.iter().enumerate().map(|(i, h)| (h.id, i)).collect();
        // Kept in step by apply (`VmMap`): no walk over the VMs per placement.
        let by_host = state.vms.usage_by_host();
        let usage: Vec<Usage> = hosts.iter().map(|h| by_host.get(&h.id).copied().unwrap_or_default()).collect();
        let groups: Vec<&AffinityGroup> = state.affinity_groups.values().collect();
        let mut vm_groups: HashMap<Uuid, Vec<u32>> = HashMap::new();
        for (i, g) in groups.iter().enumerate() {
            for id in &g.vms {
                vm_groups.entry(*id).or_default().push(i as u32);
            }
        }
        let labels: Vec<&AffinityLabel> = state.affinity_labels.values().collect();
        let mut vm_labels: HashMap<Uuid, Vec<u32>> = HashMap::new();
        let mut label_slots = Vec::with_capacity(labels.len());
        for (i, l) in labels.iter().enumerate() {
            for id in &l.vms {
                vm_labels.entry(*id).or_default().push(i as u32);
            }
            let mut s: Vec<usize> = l.hosts.iter().filter_map(|h| slots.get(h).copied()).collect();
            s.sort_unstable();
            label_slots.push(s);
        }
        Scheduler {
            state,
            policy: state.scheduling(),
            overcommit: state.cpu_overcommit(),
            hosts,
            slots,
            usage,
            assigned: HashMap::new(),
            groups,
            vm_groups,
            labels,
            label_slots,
            vm_labels,
        }
    }

    /// Picks a host for `vm` as `choose` would with no wanted host; a migration never picks
    /// the VM's current host.
    pub fn place(&self, vm: &Vm, purpose: Purpose) -> Result<NodeId, ClusterError> {
        let current: Vec<NodeId> = vm.runtime.host.filter(|_| purpose.is_migration()).into_iter().collect();
        self.place_with(vm, None, &current, purpose)
    }

    /// Records that `vm` now holds `host`'s resources (moving it off its former host), so
    /// later placements count it there. Unknown VMs and hosts are ignored.
    pub fn assign(&mut self, vm: Uuid, host: NodeId) {
        let (Some(v), Some(&slot)) = (self.state.vms.get(&vm), self.slots.get(&host)) else { return };
        let (mem, cpu) = (v.config.memory_mib, v.config.vcpus as u64);
        if let Some(old) = self.position(v.id) {
            let u = &mut self.usage[old];
            u.memory_mib = u.memory_mib.saturating_sub(mem);
            u.vcpus = u.vcpus.saturating_sub(cpu);
            u.vms_running = u.vms_running.saturating_sub(1);
        }
        let u = &mut self.usage[slot];
        u.memory_mib += mem;
        u.vcpus += cpu;
        u.vms_running += 1;
        self.assigned.insert(vm, slot);
    }

    /// The host slot a VM runs on (as assigned here, or as the state says).
    fn position(&self, vm: Uuid) -> Option<usize> {
        if let Some(&s) = self.assigned.get(&vm) {
            return Some(s);
        }
        self.state.vms.get(&vm).and_then(|v| v.runtime.host).and_then(|h| self.slots.get(&h).copied())
    }

    /// Slots where a member VM is or is about to be (its migration target too).
    fn member_slots(&self, member: Uuid, out: &mut Vec<usize>) {
        out.clear();
        if let Some(s) = self.position(member) {
            out.push(s);
        }
        if !self.assigned.contains_key(&member) {
            if let Some(&s) = self
                .state
                .vms
                .get(&member)
                .and_then(|v| v.migration_state.migrating_to)
                .and_then(|h| self.slots.get(&h))
            {
                if !out.contains(&s) {
                    out.push(s);
                }
            }
        }
    }

    fn needs<'v>(&'v self, vm: &'v Vm) -> Needs<'v> {
        let n = self.hosts.len();
        let mut needs = Needs {
            vm,
            labels: self.vm_labels.get(&vm.id).map_or(&[][..], |l| l.as_slice()),
            forbidden: Vec::new(),
            attract: Vec::new(),
            attract_count: Vec::new(),
            soft: Vec::new(),
        };
        let Some(groups) = self.vm_groups.get(&vm.id) else { return needs };
        let (mut at, mut slots) = (Vec::with_capacity(2), Vec::new());
        for &gi in groups {
            let g = self.groups[gi as usize];
            slots.clear();
            for &m in g.vms.iter().filter(|m| **m != vm.id) {
                self.member_slots(m, &mut at);
                slots.extend_from_slice(&at);
            }
            if slots.is_empty() {
                continue;
            }
            needs.add_group(gi, g, &mut slots, n);
        }
        needs
    }

    /// `check` for a refusal: `Apart` becomes the positive group that has no member there.
    fn check_precisely(&self, needs: &Needs, exclude: &[NodeId], slot: usize) -> Result<(), Reason> {
        match self.check(needs, exclude, slot) {
            Err(Reason::Apart) => {
                let missing = needs.attract.iter().find(|&&gi| !self.group_has_member_on(needs.vm.id, gi, slot));
                match missing.or(needs.attract.first()) {
                    Some(&gi) => Err(Reason::Group(gi)),
                    None => Err(Reason::Apart),
                }
            }
            other => other,
        }
    }

    fn group_has_member_on(&self, vm: Uuid, gi: u32, s: usize) -> bool {
        let mut at = Vec::with_capacity(2);
        self.groups[gi as usize].vms.iter().filter(|m| **m != vm).any(|&m| {
            self.member_slots(m, &mut at);
            at.contains(&s)
        })
    }

    fn free(&self, slot: usize) -> (u64, u64) {
        let h = self.hosts[slot];
        let u = &self.usage[slot];
        (
            h.facts.memory_mib.saturating_sub(u.memory_mib),
            (h.facts.cpus as u64 * self.overcommit).saturating_sub(u.vcpus),
        )
    }

    /// The first rule that rules `slot` out for the VM, or none.
    fn check(&self, needs: &Needs, exclude: &[NodeId], slot: usize) -> Result<(), Reason> {
        let h = self.hosts[slot];
        let vm = needs.vm;
        if exclude.contains(&h.id) {
            return Err(Reason::Excluded);
        }
        if h.state != HostState::Up {
            return Err(Reason::NotUp);
        }
        if !vm.config.pinned_hosts.is_empty() && !vm.config.pinned_hosts.contains(&h.id) {
            return Err(Reason::NotPinned);
        }
        for &l in needs.labels {
            if self.label_slots[l as usize].binary_search(&slot).is_err() {
                return Err(Reason::Label(l));
            }
        }
        if !vm.config.host_tags.iter().all(|t| h.tags.contains(t)) {
            return Err(Reason::Tags);
        }
        if vm.config.hosted_engine && !engine_eligible(h) {
            return Err(Reason::Engine);
        }
        if let Some(&g) = needs.forbidden.get(slot).filter(|g| **g != 0) {
            return Err(Reason::Group(g - 1));
        }
        if !needs.attract.is_empty() && needs.attract_count[slot] < needs.attract.len() as u32 {
            return Err(Reason::Apart);
        }
        let (mem, cpu) = self.free(slot);
        if mem < vm.config.memory_mib {
            return Err(Reason::Memory);
        }
        if cpu < vm.config.vcpus as u64 {
            return Err(Reason::Cpu);
        }
        Ok(())
    }

    /// Whether `a` is a better host than `b` for this VM (both passed every filter).
    fn better(&self, needs: &Needs, a: usize, b: usize) -> bool {
        // The hosted engine goes to the best-scored host, as ovirt-hosted-engine-ha does.
        if needs.vm.config.hosted_engine {
            let score = |s: usize| engine_score(self.hosts[s]);
            if score(a) != score(b) {
                return score(a) > score(b);
            }
        }
        let soft = |s: usize| needs.soft.get(s).copied().unwrap_or(0);
        if soft(a) != soft(b) {
            return soft(a) > soft(b);
        }
        let (fa, fb) = (self.free(a).0, self.free(b).0);
        let (ra, rb) = (self.usage[a].vms_running, self.usage[b].vms_running);
        let by_policy = match self.policy {
            SchedulingPolicy::EvenDistribution => fb.cmp(&fa).then(ra.cmp(&rb)),
            SchedulingPolicy::Packing => fa.cmp(&fb).then(rb.cmp(&ra)),
        };
        // Slots are in id order: the lower id wins a full tie.
        by_policy.then(a.cmp(&b)).is_lt()
    }

    /// The full form of `choose` over this scheduler's view.
    pub fn place_with(
        &self,
        vm: &Vm,
        wanted: Option<&str>,
        exclude: &[NodeId],
        purpose: Purpose,
    ) -> Result<NodeId, ClusterError> {
        check_migration_policy(vm, purpose)?;
        let needs = self.needs(vm);
        if let Some(name) = wanted {
            let slot = self
                .hosts
                .iter()
                .position(|h| h.name == name)
                .ok_or_else(|| ClusterError::NotFound(format!("host '{}' not found", crate::error::quote(name))))?;
            return match self.check_precisely(&needs, exclude, slot) {
                Ok(()) => Ok(self.hosts[slot].id),
                Err(reason) => Err(self.refuse_wanted(&needs, slot, reason)),
            };
        }
        let mut best: Option<usize> = None;
        for slot in 0..self.hosts.len() {
            if self.check(&needs, exclude, slot).is_ok() && best.is_none_or(|b| self.better(&needs, slot, b)) {
                best = Some(slot);
            }
        }
        match best {
            Some(slot) => Ok(self.hosts[slot].id),
            None => Err(self.refuse_all(&needs, exclude)),
        }
    }
}

/// Whether a host may run the hosted engine: not in local maintenance, and not scored 0. A
/// host that has not reported a score yet is eligible, behind every host that has.
pub fn engine_eligible(h: &Host) -> bool {
    !h.engine_local_maintenance && h.engine_score.as_ref().is_none_or(|s| s.score > 0)
}

/// The score the scheduler ranks hosts by for the hosted engine (0 when none was reported).
pub fn engine_score(h: &Host) -> u32 {
    if h.engine_local_maintenance {
        return 0;
    }
    h.engine_score.as_ref().map_or(0, |s| s.score)
}

fn engine_ineligibility(h: &Host) -> String {
    if h.engine_local_maintenance {
        return "it is in hosted-engine local maintenance".to_string();
    }
    let why: Vec<String> =
        h.engine_score.iter().flat_map(|s| &s.penalties).map(|(what, n)| format!("{what} (-{n})")).collect();
    format!("its engine score is 0 ({})", why.join(", "))
}

/// Refuses a migration the VM's policy does not allow; starts and HA restarts always pass.
pub fn check_migration_policy(vm: &Vm, purpose: Purpose) -> Result<(), ClusterError> {
    match (vm.config.migration, purpose) {
        (MigrationPolicy::None, Purpose::MigrateByOperator | Purpose::MigrateAutomatic) => {
            Err(ClusterError::FailedPrecondition(format!(
                "the migration policy of vm '{}' is 'none': it is never migrated",
                vm.config.name
            )))
        }
        (MigrationPolicy::Manual, Purpose::MigrateAutomatic) => Err(ClusterError::FailedPrecondition(format!(
            "the migration policy of vm '{}' is 'manual': only an operator may migrate it",
            vm.config.name
        ))),
        _ => Ok(()),
    }
}

mod refusal;
#[cfg(test)]
mod tests;
