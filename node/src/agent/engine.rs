//! The hosted engine on this host: its engine score (as ovirt-hosted-engine-ha computes it: a
//! base score minus penalties), and `engine start --local`, which starts the engine VM from
//! this host's OVF store when the cluster has lost quorum, then lets the cluster take it over
//! once quorum is back.

use std::sync::Arc;
use std::time::Duration;

use corral_proto::engine_service_client::EngineServiceClient;
use corral_proto::RunsVmRequest;
use corral_raft::command::Op;
use corral_raft::model::{ClusterState, EngineScore, Vm, ENGINE_BASE_SCORE};
use corral_raft::typ::StateHandle;
use corral_raft::{ovf, ClusterError, NodeId};
use uuid::Uuid;

use super::HostAgent;
use crate::now_ms;

/// Penalties, as ovirt-hosted-engine-ha weighs them.
const GATEWAY_PENALTY: u32 = 1600;
const MEMORY_PENALTY: u32 = 500;
const CPU_PENALTY_MAX: u32 = 1000;
/// How long a host asks the cluster to take over its hand-started engine VM (while the host
/// the state gives it to has not reported it down) before it destroys its copy.
const CLAIM_PATIENCE: Duration = Duration::from_secs(15);
/// How long `engine start --local` waits for another host or for a quorum read.
const PROBE_TIMEOUT: Duration = Duration::from_millis(1500);

/// Restores a hand-started engine VM (one the cluster has not taken over yet) after a restart.
pub fn restore(node: &HostAgent) {
    if let Some(id) = node.cluster.hand_started_engine() {
        tracing::warn!(vm = %id, "the engine VM was started here by hand; fencing spares it until the cluster takes it over");
        node.lease.set_hand_started(Some(id));
    }
}

pub fn forget_hand_started(node: &HostAgent) {
    node.lease.set_hand_started(None);
    if let Err(e) = node.cluster.set_hand_started_engine(None) {
        tracing::warn!("could not forget the hand-started engine VM: {e}");
    }
}

pub enum Claim {
    /// The cluster took the VM over on this host.
    Taken,
    /// The cluster refused: it runs elsewhere; the copy here must go.
    Refused,
    /// Not decided yet (no leader); asked again on the next pass.
    Later,
}

/// Asks the cluster to take over the hand-started engine VM here.
pub async fn claim(node: &HostAgent, me: NodeId, vm: Uuid) -> Claim {
    match node.cluster.write(None, Op::AdoptVm { vm, host: me }).await {
        Ok(_) => {
            tracing::info!(vm = %vm, "the cluster took over the hand-started engine VM");
            forget_hand_started(node);
            Claim::Taken
        }
        Err(ClusterError::FailedPrecondition(why)) | Err(ClusterError::NotFound(why)) => {
            tracing::warn!(vm = %vm, "the cluster refused the hand-started engine VM: {why}");
            forget_hand_started(node);
            Claim::Refused
        }
        Err(ClusterError::Unavailable(why)) if assigned_host_runs(node, vm).await => {
            tracing::warn!(vm = %vm, "{why}, and that host says it runs it: the copy here must go");
            forget_hand_started(node);
            Claim::Refused
        }
        Err(e) if node.lease.claiming_for() > CLAIM_PATIENCE => {
            tracing::warn!(vm = %vm, "the cluster did not take over the hand-started engine VM: {e}");
            forget_hand_started(node);
            Claim::Refused
        }
        Err(e) => {
            tracing::info!("hand-started engine VM not taken over yet: {e}");
            Claim::Later
        }
    }
}

/// Whether the host the state assigns `vm` to says it runs it.
async fn assigned_host_runs(node: &HostAgent, vm: Uuid) -> bool {
    let Ok(state) = node.cluster.state() else { return false };
    let address = state.read(|s: &ClusterState| {
        let host = s.vms.get(&vm)?.runtime.host?;
        s.hosts.get(&host).map(|h| h.address.clone())
    });
    match address {
        Some(a) => runs_vm(node, &a, vm).await == Some(true),
        None => false,
    }
}

/// Starts the engine VM here from this host's OVF store. Refused while the cluster has quorum
/// or another host it can reach runs the VM, unless `force`; returns the VM's name and what
/// was checked.
pub async fn start_local(node: &HostAgent, force: bool) -> Result<(String, Vec<String>), ClusterError> {
    let mut notes = vec![quorum_refuses(node, force).await?];
    let doc = local_engine_document(node)?;
    let vm = &doc.vm;
    if node.runs_here(vm.id).await? {
        return Err(ClusterError::FailedPrecondition(format!(
            "the engine VM {} already runs on this host",
            vm.config.name
        )));
    }
    notes.extend(other_hosts_refuse(node, vm, force).await?);
    let mut spec = super::reconcile::domain_spec_with(&node.images, vm, &doc.disks, node.domain_type);
    spec.vnc_listen = node.vnc_listen(&spec);
    node.cluster.set_hand_started_engine(Some(vm.id))?;
    node.lease.set_hand_started(Some(vm.id));
    let started = match node.hv.define(&spec).await {
        Ok(()) => node.hv.start(vm.id).await,
        Err(e) => Err(e),
    };
    if let Err(e) = started {
        forget_hand_started(node);
        let _ = node.hv.undefine(vm.id).await;
        return Err(ClusterError::Internal(format!("could not start the engine VM {}: {e}", vm.config.name)));
    }
    tracing::warn!(vm = %vm.config.name, "engine VM started by hand from the local OVF store");
    Ok((vm.config.name.clone(), notes))
}

/// Refuses while the cluster has quorum, whatever `force` says; says what it found.
async fn quorum_refuses(node: &HostAgent, force: bool) -> Result<String, ClusterError> {
    let quorum = tokio::time::timeout(PROBE_TIMEOUT, node.cluster.read(false, |_| ())).await.is_ok_and(|r| r.is_ok());
    if !quorum {
        return Ok("the cluster has no quorum".to_string());
    }
    // A cluster with quorum restarts the engine itself: a copy started here would run beside
    // the one it starts. --force overrides only what a host without quorum cannot know.
    let forced = if force { " (--force is only for a host whose cluster has lost quorum)" } else { "" };
    Err(ClusterError::FailedPrecondition(format!(
        "the cluster has quorum: start the engine VM through the cluster (`corral vm start NAME`){forced}"
    )))
}

/// The engine's document in this host's OVF store: the VM this host's copy of the state
/// names, or without a state, the one document marked as the hosted engine.
fn local_engine_document(node: &HostAgent) -> Result<ovf::Imported, ClusterError> {
    let known = node.cluster.state().ok().and_then(|s| s.read(|s: &ClusterState| s.engine.vm));
    let mut engines: Vec<ovf::Imported> = node
        .cluster
        .local_ovf_store()?
        .into_iter()
        .filter_map(|(_, xml)| ovf::read(&xml).ok())
        .filter(|d| known.map_or(d.vm.config.hosted_engine, |id| d.vm.id == id))
        .collect();
    match engines.len() {
        0 => Err(ClusterError::NotFound("this host's OVF store holds no hosted engine VM".into())),
        1 => Ok(engines.remove(0)),
        n => Err(ClusterError::FailedPrecondition(format!(
            "this host's OVF store holds {n} documents marked as the hosted engine; start the right one with virsh"
        ))),
    }
}

/// Asks every other host this one knows whether it runs the engine VM: one that does refuses
/// the start, unless `force`. Returns what each said.
async fn other_hosts_refuse(node: &HostAgent, vm: &Vm, force: bool) -> Result<Vec<String>, ClusterError> {
    let others: Vec<(String, String)> = match node.cluster.state() {
        Ok(state) => state.read(|s: &ClusterState| {
            s.hosts
                .values()
                .filter(|h| h.name != node.config.name)
                .map(|h| (h.name.clone(), h.address.clone()))
                .collect()
        }),
        Err(_) => Vec::new(),
    };
    let probes = others.iter().map(|(name, address)| async move { (name, runs_vm(node, address, vm.id).await) });
    let mut notes = Vec::new();
    for (name, answer) in futures::future::join_all(probes).await {
        match answer {
            Some(true) if force => notes.push(format!("host {name} runs the engine VM; started anyway (--force)")),
            Some(true) => {
                return Err(ClusterError::FailedPrecondition(format!(
                    "host {name} runs the engine VM {}; give --force to start a second copy anyway",
                    vm.config.name
                )))
            }
            Some(false) => notes.push(format!("host {name} does not run it")),
            None => notes.push(format!("host {name} does not answer; whether it runs the engine VM is unknown")),
        }
    }
    Ok(notes)
}

/// Whether the node at `address` runs VM `id`; None when it does not answer.
async fn runs_vm(node: &HostAgent, address: &str, id: Uuid) -> Option<bool> {
    let channel = node.cluster.network().channel(address).ok()?;
    let mut req = tonic::Request::new(RunsVmRequest { vm_id: id.to_string() });
    req.set_timeout(PROBE_TIMEOUT);
    let mut client = EngineServiceClient::new(channel);
    let r = tokio::time::timeout(PROBE_TIMEOUT, client.runs_vm(req)).await.ok()?.ok()?;
    Some(r.into_inner().running)
}

/// Measures this host's engine score every `engine_score_ms` and reports it when it changed.
pub fn spawn_scores(node: Arc<HostAgent>, me: NodeId, state: StateHandle) {
    tokio::spawn(async move {
        let period = Duration::from_millis(node.config.engine_score_ms);
        loop {
            tokio::time::sleep(period).await;
            if !node.lease.held() {
                continue;
            }
            let view = state.read(|s: &ClusterState| {
                let engine = s.engine_vm()?;
                let host = s.hosts.get(&me)?;
                Some((
                    engine.config.memory_mib,
                    engine.runtime.host == Some(me),
                    host.engine_local_maintenance,
                    host.engine_score.clone(),
                ))
            });
            let Some((engine_mib, here, local_maintenance, reported)) = view else { continue };
            let score = measure(&node, engine_mib, here, local_maintenance).await;
            // Said again only when the score or the kinds of penalty change, not when a measured
            // figure in a penalty's text moves (a load of 1.23 then 1.25 per CPU).
            let amounts = |s: &EngineScore| s.penalties.iter().map(|(_, n)| *n).collect::<Vec<_>>();
            if reported.as_ref().is_some_and(|r| r.score == score.score && amounts(r) == amounts(&score)) {
                continue;
            }
            if let Err(e) = node.cluster.write(None, Op::ReportEngineScore { host: me, score }).await {
                tracing::debug!("engine score not reported yet: {e}");
            }
        }
    });
}

/// This host's engine score now.
async fn measure(node: &HostAgent, engine_mib: u64, engine_here: bool, local_maintenance: bool) -> EngineScore {
    let mut penalties: Vec<(String, u32)> = Vec::new();
    if local_maintenance {
        penalties.push(("hosted-engine local maintenance".into(), ENGINE_BASE_SCORE));
    }
    if let Some(gw) = &node.config.engine_gateway {
        if !gateway_answers(gw).await {
            penalties.push((format!("gateway {gw} unreachable"), GATEWAY_PENALTY));
        }
    }
    if !engine_here {
        if let Some(free) = mem_available_mib() {
            if free < engine_mib {
                penalties.push((format!("{free} MiB free, the engine needs {engine_mib} MiB"), MEMORY_PENALTY));
            }
        }
    }
    if let Some(ratio) = load_per_cpu() {
        let p = cpu_penalty(ratio);
        if p > 0 {
            penalties.push((format!("CPU load {ratio:.2} per CPU"), p));
        }
    }
    let taken: u32 = penalties.iter().map(|(_, n)| n).sum();
    EngineScore { score: ENGINE_BASE_SCORE.saturating_sub(taken), penalties, measured_ms: now_ms() }
}

/// Nothing below 0.8 load per CPU; then up to 1000 at 1.8, in steps of 100 so that a load that
/// hovers does not make the score flicker.
fn cpu_penalty(ratio: f64) -> u32 {
    if ratio <= 0.8 {
        return 0;
    }
    let steps = ((ratio - 0.8) * 10.0).floor() as u32;
    (steps * 100).min(CPU_PENALTY_MAX)
}

/// The gateway check: `ADDRESS` is pinged (ICMP, as ovirt-hosted-engine-ha does);
/// `ADDRESS:PORT` is a TCP connection instead, for networks that drop ICMP.
async fn gateway_answers(gateway: &str) -> bool {
    if gateway.contains(':') {
        let connect = tokio::net::TcpStream::connect(gateway);
        return matches!(tokio::time::timeout(Duration::from_secs(1), connect).await, Ok(Ok(_)));
    }
    ping(gateway).await
}

async fn ping(address: &str) -> bool {
    let out = tokio::process::Command::new("ping").args(["-c", "1", "-W", "1", "-q", address]).output().await;
    match out {
        Ok(o) => o.status.success(),
        Err(e) => {
            tracing::warn!("cannot run ping for the gateway check (install iputils-ping): {e}");
            false
        }
    }
}

fn mem_available_mib() -> Option<u64> {
    let text = std::fs::read_to_string("/proc/meminfo").ok()?;
    let line = text.lines().find(|l| l.starts_with("MemAvailable:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib / 1024)
}

fn load_per_cpu() -> Option<f64> {
    let text = std::fs::read_to_string("/proc/loadavg").ok()?;
    let load: f64 = text.split_whitespace().next()?.parse().ok()?;
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get()) as f64;
    Some(load / cpus)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_load_costs_in_steps_up_to_a_thousand() {
        assert_eq!(cpu_penalty(0.5), 0);
        assert_eq!(cpu_penalty(0.8), 0);
        assert_eq!(cpu_penalty(0.95), 100);
        assert_eq!(cpu_penalty(1.35), 500);
        assert_eq!(cpu_penalty(4.0), 1000);
    }

    #[tokio::test]
    async fn the_gateway_check_connects_or_pings() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let open = listener.local_addr().unwrap().to_string();
        assert!(gateway_answers(&open).await);
        drop(listener);
        assert!(!gateway_answers(&open).await, "a closed port does not answer");
    }

    #[test]
    fn proc_files_are_read() {
        assert!(mem_available_mib().is_some_and(|m| m > 0));
        assert!(load_per_cpu().is_some());
    }
}
