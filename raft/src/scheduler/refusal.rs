//! Why the scheduler refused a placement, in sentences: for a host the operator named, the
//! first rule it broke; for no host at all, the plain cases in their own words, else how many
//! hosts each rule ruled out.

use super::*;

impl Scheduler<'_> {
    fn need(vm: &Vm) -> String {
        format!("{} MiB, {} vCPU{}", vm.config.memory_mib, vm.config.vcpus, if vm.config.vcpus == 1 { "" } else { "s" })
    }

    fn host_names(&self, ids: &[NodeId]) -> String {
        ids.iter().map(|h| self.state.host_name(*h)).collect::<Vec<_>>().join(", ")
    }

    fn missing_tags(vm: &Vm, h: &Host) -> String {
        vm.config.host_tags.iter().filter(|t| !h.tags.contains(t)).cloned().collect::<Vec<_>>().join(", ")
    }

    /// A member of group `gi` other than the VM that runs on `slot`, or the hosts where they
    /// run, for the message.
    fn group_detail(&self, needs: &Needs, gi: u32, slot: usize) -> String {
        let g = self.groups[gi as usize];
        let mut at = Vec::with_capacity(2);
        match g.polarity {
            Polarity::Negative => {
                let there: Vec<String> = g
                    .vms
                    .iter()
                    .filter(|m| **m != needs.vm.id)
                    .filter(|m| {
                        self.member_slots(**m, &mut at);
                        at.contains(&slot)
                    })
                    .map(|m| self.state.vms.get(m).map_or_else(|| m.to_string(), |v| v.config.name.clone()))
                    .collect();
                let verb = if there.len() == 1 { "runs" } else { "run" };
                format!("VM {} {verb} there", there.join(", "))
            }
            Polarity::Positive => {
                let mut hosts: Vec<usize> = Vec::new();
                for &m in g.vms.iter().filter(|m| **m != needs.vm.id) {
                    self.member_slots(m, &mut at);
                    hosts.extend(at.iter().copied());
                }
                hosts.sort_unstable();
                hosts.dedup();
                let ids: Vec<NodeId> = hosts.iter().map(|s| self.hosts[*s].id).collect();
                format!("its other members run on host {}", self.host_names(&ids))
            }
        }
    }

    pub(super) fn refuse_wanted(&self, needs: &Needs, slot: usize, reason: Reason) -> ClusterError {
        let h = self.hosts[slot];
        let (vm, name) = (needs.vm, &h.name);
        let msg = match reason {
            Reason::Excluded if vm.runtime.host == Some(h.id) => {
                format!("vm '{}' already runs on host {name}", vm.config.name)
            }
            Reason::Excluded => format!("host {name} is excluded for this placement of vm '{}'", vm.config.name),
            Reason::NotUp => format!("host {name} is {}, not up; choose another host", h.state.as_str()),
            Reason::NotPinned => format!(
                "vm '{}' is pinned to {}; host {name} is not one of them",
                vm.config.name,
                self.host_names(&vm.config.pinned_hosts)
            ),
            Reason::Label(l) => {
                let label = self.labels[l as usize];
                format!(
                    "host {name} is excluded by affinity label {}: vm '{}' may run only on {}",
                    label.name,
                    vm.config.name,
                    if label.hosts.is_empty() { "no host".to_string() } else { self.host_names(&label.hosts) }
                )
            }
            Reason::Tags => {
                format!("host {name} lacks tag(s) {} that vm '{}' needs", Self::missing_tags(vm, h), vm.config.name)
            }
            Reason::Engine => format!("host {name} may not run the hosted engine: {}", engine_ineligibility(h)),
            Reason::Group(g) => format!(
                "host {name} is excluded by enforcing affinity group {}: {}",
                self.groups[g as usize].describe(),
                self.group_detail(needs, g, slot)
            ),
            // Resolved to the group by `check_precisely`; kept as a sentence, never a panic.
            Reason::Apart => format!("host {name} is excluded by an enforcing positive affinity group"),
            Reason::Memory | Reason::Cpu => {
                let (mem, cpu) = self.free(slot);
                format!(
                    "host {name} has not enough room for vm '{}' ({}): {mem} MiB and {cpu} vCPUs free",
                    vm.config.name,
                    Self::need(vm)
                )
            }
        };
        ClusterError::FailedPrecondition(msg)
    }

    /// Why no host passed: the plain cases in their own words, else each rule with how many
    /// hosts it ruled out.
    pub(super) fn refuse_all(&self, needs: &Needs, exclude: &[NodeId]) -> ClusterError {
        let vm = needs.vm;
        if let Some(msg) = self.plain_refusal(vm, exclude) {
            return ClusterError::FailedPrecondition(msg);
        }
        let mut counts: std::collections::BTreeMap<Reason, usize> = std::collections::BTreeMap::new();
        let mut short = Vec::new();
        let mut most = (0, 0);
        for slot in 0..self.hosts.len() {
            let Err(reason) = self.check_precisely(needs, exclude, slot) else { continue };
            *counts.entry(reason).or_default() += 1;
            if matches!(reason, Reason::Memory | Reason::Cpu) {
                let (mem, cpu) = self.free(slot);
                short.push(format!("{} has {mem} MiB and {cpu} vCPUs free", self.hosts[slot].name));
                most = (most.0.max(mem), most.1.max(cpu));
            }
        }
        // Only capacity stood in the way: the numbers say it all, as they always did.
        if counts.keys().all(|r| matches!(r, Reason::Excluded | Reason::NotUp | Reason::Memory | Reason::Cpu)) {
            return ClusterError::FailedPrecondition(format!(
                "not enough capacity for vm '{}' ({}): {}",
                vm.config.name,
                Self::need(vm),
                short.join("; ")
            ));
        }
        let parts: Vec<String> =
            counts.iter().map(|(reason, &n)| self.ruled_out(*reason, n, vm, exclude, most)).collect();
        ClusterError::FailedPrecondition(format!(
            "no host can run vm '{}' ({}): {}",
            vm.config.name,
            Self::need(vm),
            parts.join(", ")
        ))
    }

    /// The refusals that need no count: no pinned host up, no host with the tags, no host up.
    fn plain_refusal(&self, vm: &Vm, exclude: &[NodeId]) -> Option<String> {
        let up = |h: &Host| h.state == HostState::Up && !exclude.contains(&h.id);
        if !vm.config.pinned_hosts.is_empty()
            && !self.hosts.iter().any(|h| up(h) && vm.config.pinned_hosts.contains(&h.id))
        {
            return Some(format!(
                "vm '{}' is pinned to {}; none of them is up",
                vm.config.name,
                self.host_names(&vm.config.pinned_hosts)
            ));
        }
        if !vm.config.host_tags.is_empty()
            && !self.hosts.iter().any(|h| vm.config.host_tags.iter().all(|t| h.tags.contains(t)))
        {
            return Some(format!(
                "no host has tags {}, which vm '{}' needs",
                vm.config.host_tags.join(", "),
                vm.config.name
            ));
        }
        if !self.hosts.iter().any(|h| up(h)) {
            return Some(format!("no host is up to run vm '{}' ({})", vm.config.name, Self::need(vm)));
        }
        None
    }

    /// "3 hosts lack tags ssd": how many hosts one rule ruled out, and why. `most` is the most
    /// memory (MiB) and vCPUs that any host had free.
    fn ruled_out(&self, reason: Reason, n: usize, vm: &Vm, exclude: &[NodeId], most: (u64, u64)) -> String {
        let hosts = |one: &str, many: &str| if n == 1 { format!("1 host {one}") } else { format!("{n} hosts {many}") };
        match reason {
            Reason::Excluded if vm.runtime.host.is_some_and(|h| exclude.contains(&h)) && n == 1 => {
                "1 host already runs it".to_string()
            }
            Reason::Excluded => hosts("is excluded", "are excluded"),
            Reason::NotUp => hosts("is not up", "are not up"),
            Reason::NotPinned => {
                let pins = self.host_names(&vm.config.pinned_hosts);
                hosts(
                    &format!("is not among its pinned hosts ({pins})"),
                    &format!("are not among its pinned hosts ({pins})"),
                )
            }
            Reason::Label(l) => {
                let what = format!("excluded by affinity label {}", self.labels[l as usize].name);
                hosts(&what, &what)
            }
            Reason::Tags => {
                let tags = vm.config.host_tags.join(", ");
                hosts(&format!("lacks tags {tags}"), &format!("lack tags {tags}"))
            }
            Reason::Group(g) => {
                let what = format!("excluded by enforcing affinity group {}", self.groups[g as usize].describe());
                hosts(&what, &what)
            }
            Reason::Engine => hosts(
                "may not run the hosted engine (local maintenance or score 0)",
                "may not run the hosted engine (local maintenance or score 0)",
            ),
            Reason::Apart => hosts("breaks a positive group", "break a positive group"),
            Reason::Memory => {
                let most = format!("at most {} MiB free", most.0);
                hosts(&format!("has not enough memory ({most})"), &format!("have not enough memory ({most})"))
            }
            Reason::Cpu => {
                let most = format!("at most {} vCPUs free", most.1);
                hosts(&format!("has not enough vCPUs ({most})"), &format!("have not enough vCPUs ({most})"))
            }
        }
    }
}
