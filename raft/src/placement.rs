//! Placement: which host a VM starts or migrates on. A pure function of the replicated state,
//! called inside apply, so two concurrent starts can never both take the last free memory.
//! First model: an Up host with enough free memory and vCPUs, the most free memory first;
//! the full scheduler (affinity, weights, policies) replaces it later.

use crate::error::ClusterError;
use crate::model::{ClusterState, HostState, Vm, CPU_OVERCOMMIT};
use crate::typ::NodeId;

/// Free memory and vCPUs of `host`, and whether `vm` fits.
fn room(state: &ClusterState, host: NodeId, vm: &Vm) -> (u64, u64, bool) {
    let h = &state.hosts[&host];
    let used = state.host_usage(host);
    let free_mem = h.facts.memory_mib.saturating_sub(used.memory_mib);
    let free_cpu = (h.facts.cpus as u64 * CPU_OVERCOMMIT).saturating_sub(used.vcpus);
    (free_mem, free_cpu, free_mem >= vm.memory_mib && free_cpu >= vm.vcpus as u64)
}

/// Picks the host for `vm`: `wanted` if named (it must exist, be up and have room), else the
/// up host with the most free memory that fits, never one of `exclude`.
pub fn choose(state: &ClusterState, vm: &Vm, wanted: Option<&str>, exclude: &[NodeId]) -> Result<NodeId, ClusterError> {
    let need = format!("{} MiB, {} vCPU{}", vm.memory_mib, vm.vcpus, if vm.vcpus == 1 { "" } else { "s" });
    if let Some(name) = wanted {
        let host =
            state.host_by_name(name).ok_or_else(|| ClusterError::NotFound(format!("host '{name}' not found")))?;
        if exclude.contains(&host.id) {
            return Err(ClusterError::FailedPrecondition(format!("vm '{}' already runs on host {name}", vm.name)));
        }
        if host.state != HostState::Up {
            return Err(ClusterError::FailedPrecondition(format!(
                "host {name} is {}, not up; choose another host",
                host.state.as_str()
            )));
        }
        let (mem, cpu, fits) = room(state, host.id, vm);
        if !fits {
            return Err(ClusterError::FailedPrecondition(format!(
                "host {name} has not enough room for vm '{}' ({need}): {mem} MiB and {cpu} vCPUs free",
                vm.name
            )));
        }
        return Ok(host.id);
    }
    let mut best: Option<(u64, NodeId)> = None;
    let mut seen = Vec::new();
    for h in state.hosts.values().filter(|h| h.state == HostState::Up && !exclude.contains(&h.id)) {
        let (mem, cpu, fits) = room(state, h.id, vm);
        seen.push(format!("{} has {mem} MiB and {cpu} vCPUs free", h.name));
        if fits && best.is_none_or(|(m, _)| mem > m) {
            best = Some((mem, h.id));
        }
    }
    match best {
        Some((_, id)) => Ok(id),
        None if seen.is_empty() => {
            Err(ClusterError::FailedPrecondition(format!("no host is up to run vm '{}' ({need})", vm.name)))
        }
        None => Err(ClusterError::FailedPrecondition(format!(
            "not enough capacity for vm '{}' ({need}): {}",
            vm.name,
            seen.join("; ")
        ))),
    }
}
