//! `apply`: the deterministic function from (state, command) to (state, reply).
//! A command that is refused leaves the state exactly as it was: every check happens before
//! the first change. No clocks, no randomness, no I/O here.

use corral_storage::Machine;
use uuid::Uuid;

use crate::command::{Command, NewHost, Op, Outcome, Reply, VmChanges, VmSpec};
use crate::error::ClusterError;
use crate::model::{
    ClusterInfo, ClusterState, Event, EventKind, HaSettings, Host, HostFacts, HostState, JoinToken, Vm, VmStatus,
    MAX_EVENTS, MAX_RECENT_REQUESTS,
};
use crate::typ::{LogId, NodeId, TypeConfig};
use crate::validate;

impl Machine<TypeConfig> for ClusterState {
    fn apply(&mut self, _log_id: &LogId, cmd: &Command) -> Reply {
        self.apply_command(cmd)
    }
}

type Applied = Result<Outcome, ClusterError>;

impl ClusterState {
    /// Applies one command; public so tests and tools can replay commands without Raft.
    pub fn apply_command(&mut self, cmd: &Command) -> Reply {
        if let Some(id) = cmd.request_id {
            if let Some(previous) = self.recent_requests.get(&id) {
                return previous.clone();
            }
        }
        let reply = Reply(self.apply_op(cmd.at_ms, &cmd.op));
        if let Some(id) = cmd.request_id {
            self.remember_request(id, reply.clone());
        }
        reply
    }

    fn apply_op(&mut self, now: i64, op: &Op) -> Applied {
        match op {
            Op::Bootstrap { cluster_name, voters, host, token_hash, token_expires_ms } => {
                self.bootstrap(now, cluster_name, *voters, host, token_hash, *token_expires_ms)
            }
            Op::AddToken { token_hash, expires_ms } => {
                self.require_cluster()?;
                self.prune_tokens(now);
                self.tokens.insert(token_hash.clone(), JoinToken { created_ms: now, expires_ms: *expires_ms });
                let ttl = human_duration(expires_ms.saturating_sub(now));
                self.record(now, EventKind::TokenCreated, format!("A join token was created; it expires in {ttl}."));
                Ok(Outcome::Done)
            }
            Op::RegisterHost { token_hash, name, address, facts } => {
                self.register_host(now, token_hash, name, address, facts)
            }
            Op::HostJoined { id, voter } => {
                let host =
                    self.hosts.get_mut(id).ok_or_else(|| ClusterError::NotFound(format!("host {id} not found")))?;
                host.state = HostState::Up;
                let msg =
                    format!("Host {} joined the cluster as a {}.", host.name, if *voter { "voter" } else { "learner" });
                self.record(now, EventKind::HostJoined, msg);
                Ok(Outcome::Done)
            }
            Op::RemoveHost { id } => {
                let host =
                    self.hosts.remove(id).ok_or_else(|| ClusterError::NotFound(format!("host {id} not found")))?;
                self.record(now, EventKind::HostLeft, format!("Host {} left the cluster.", host.name));
                Ok(Outcome::Done)
            }
            Op::LeaderElected { id, term } => {
                // A node restarted as the leader of an old term may propose this before it
                // learns of the newer term: only a newer term is news.
                if self.leader.is_some_and(|(_, t)| *term <= t) {
                    return Ok(Outcome::Done);
                }
                self.leader = Some((*id, *term));
                let name = self.hosts.get(id).map_or_else(|| format!("node {id}"), |h| h.name.clone());
                self.record(now, EventKind::LeaderChanged, format!("Host {name} is the new leader (term {term})."));
                Ok(Outcome::Done)
            }
            Op::CreateVm { id, spec } => self.create_vm(now, *id, spec),
            Op::EditVm { vm, changes } => self.edit_vm(now, vm, changes),
            Op::DeleteVm { vm } => {
                self.require_cluster()?;
                let id = self.find_vm(vm).ok_or_else(|| ClusterError::vm_not_found(vm))?.id;
                let removed = self.vms.remove(&id).expect("found above");
                self.vm_names.remove(&removed.name);
                self.record(now, EventKind::VmDeleted, format!("VM {} was deleted.", removed.name));
                Ok(Outcome::VmDeleted { id })
            }
        }
    }

    fn bootstrap(
        &mut self,
        now: i64,
        cluster_name: &str,
        voters: u8,
        host: &NewHost,
        token_hash: &str,
        token_expires_ms: i64,
    ) -> Applied {
        if let Some(c) = &self.cluster {
            return Err(ClusterError::FailedPrecondition(format!("this node already belongs to cluster '{}'", c.name)));
        }
        validate::name("cluster name", cluster_name)?;
        validate::name("host name", &host.name)?;
        if !matches!(voters, 1 | 3 | 5) {
            return Err(ClusterError::invalid("voters", format!("must be 3 or 5 (got {voters})")));
        }
        self.cluster = Some(ClusterInfo { name: cluster_name.to_string(), voters, created_ms: now });
        self.hosts.insert(
            host.id,
            Host {
                id: host.id,
                name: host.name.clone(),
                address: host.address.clone(),
                state: HostState::Up,
                facts: host.facts.clone(),
                joined_ms: now,
            },
        );
        self.tokens.insert(token_hash.to_string(), JoinToken { created_ms: now, expires_ms: token_expires_ms });
        self.record(
            now,
            EventKind::ClusterBootstrapped,
            format!("Cluster {cluster_name} was bootstrapped on host {}.", host.name),
        );
        Ok(Outcome::Done)
    }

    fn register_host(&mut self, now: i64, token_hash: &str, name: &str, address: &str, facts: &HostFacts) -> Applied {
        let cluster_name = self.require_cluster()?.name.clone();
        if !self.token_valid(token_hash, now) {
            return Err(ClusterError::PermissionDenied("the join token is not valid or has expired".to_string()));
        }
        validate::name("host name", name)?;
        if let Some(existing) = self.host_by_name(name) {
            // A join that failed half-way may be retried by the same node.
            if existing.address == address && existing.state == HostState::Joining {
                return Ok(Outcome::HostRegistered { id: existing.id, cluster_name });
            }
            return Err(ClusterError::AlreadyExists(format!("host '{name}' already exists")));
        }
        if let Some(other) = self.hosts.values().find(|h| h.address == address) {
            return Err(ClusterError::AlreadyExists(format!(
                "address {address} is already used by host '{}'",
                other.name
            )));
        }
        let id: NodeId = self.hosts.keys().next_back().map_or(1, |max| max + 1);
        self.hosts.insert(
            id,
            Host {
                id,
                name: name.to_string(),
                address: address.to_string(),
                state: HostState::Joining,
                facts: facts.clone(),
                joined_ms: now,
            },
        );
        Ok(Outcome::HostRegistered { id, cluster_name })
    }

    fn create_vm(&mut self, now: i64, id: Uuid, spec: &VmSpec) -> Applied {
        self.require_cluster()?;
        validate::vm_spec(spec)?;
        if self.vm_names.contains_key(&spec.name) {
            return Err(ClusterError::AlreadyExists(format!("vm '{}' already exists", spec.name)));
        }
        if self.vms.contains_key(&id) {
            return Err(ClusterError::AlreadyExists(format!("a vm with id {id} already exists")));
        }
        let vm = Vm {
            id,
            name: spec.name.clone(),
            description: spec.description.clone(),
            comment: spec.comment.clone(),
            memory_mib: spec.memory_mib,
            vcpus: spec.vcpus,
            ha: HaSettings { enabled: spec.ha_enabled, priority: spec.ha_priority },
            status: VmStatus::Down,
            host: None,
            created_ms: now,
            updated_ms: now,
        };
        let msg = format!(
            "VM {} was created ({} MiB, {} vCPU{}{}).",
            vm.name,
            vm.memory_mib,
            vm.vcpus,
            if vm.vcpus == 1 { "" } else { "s" },
            if vm.ha.enabled { format!(", highly available, {} priority", vm.ha.priority) } else { String::new() }
        );
        self.vm_names.insert(vm.name.clone(), id);
        self.vms.insert(id, vm.clone());
        self.record(now, EventKind::VmCreated, msg);
        Ok(Outcome::Vm(Box::new(vm)))
    }

    fn edit_vm(&mut self, now: i64, name_or_id: &str, c: &VmChanges) -> Applied {
        self.require_cluster()?;
        validate::vm_changes(c)?;
        let before = self.find_vm(name_or_id).ok_or_else(|| ClusterError::vm_not_found(name_or_id))?.clone();
        if let Some(new_name) = &c.name {
            if *new_name != before.name && self.vm_names.contains_key(new_name) {
                return Err(ClusterError::AlreadyExists(format!("vm '{new_name}' already exists")));
            }
        }
        let mut vm = before.clone();
        let mut what = Vec::new();
        if let Some(v) = &c.name {
            if *v != vm.name {
                what.push(format!("name {} -> {v}", vm.name));
                vm.name = v.clone();
            }
        }
        if let Some(v) = c.memory_mib {
            if v != vm.memory_mib {
                what.push(format!("memory {} -> {v} MiB", vm.memory_mib));
                vm.memory_mib = v;
            }
        }
        if let Some(v) = c.vcpus {
            if v != vm.vcpus {
                what.push(format!("vCPUs {} -> {v}", vm.vcpus));
                vm.vcpus = v;
            }
        }
        if let Some(v) = &c.description {
            if *v != vm.description {
                what.push("description".to_string());
                vm.description = v.clone();
            }
        }
        if let Some(v) = &c.comment {
            if *v != vm.comment {
                what.push("comment".to_string());
                vm.comment = v.clone();
            }
        }
        if let Some(v) = c.ha_enabled {
            if v != vm.ha.enabled {
                what.push(format!("highly available {} -> {v}", vm.ha.enabled));
                vm.ha.enabled = v;
            }
        }
        if let Some(v) = c.ha_priority {
            if v != vm.ha.priority {
                what.push(format!("HA priority {} -> {v}", vm.ha.priority));
                vm.ha.priority = v;
            }
        }
        if what.is_empty() {
            return Ok(Outcome::Vm(Box::new(vm)));
        }
        vm.updated_ms = now;
        let msg = format!("VM {} was edited: {}.", before.name, what.join(", "));
        self.vm_names.remove(&before.name);
        self.vm_names.insert(vm.name.clone(), vm.id);
        self.vms.insert(vm.id, vm.clone());
        self.record(now, EventKind::VmEdited, msg);
        Ok(Outcome::Vm(Box::new(vm)))
    }

    fn require_cluster(&self) -> Result<&ClusterInfo, ClusterError> {
        self.cluster
            .as_ref()
            .ok_or_else(|| ClusterError::FailedPrecondition("the cluster is not bootstrapped".to_string()))
    }

    fn prune_tokens(&mut self, now: i64) {
        self.tokens.retain(|_, t| t.expires_ms > now);
    }

    fn record(&mut self, now: i64, kind: EventKind, message: String) {
        self.next_event_index += 1;
        self.events.push_back(Event { index: self.next_event_index, time_ms: now, kind, message });
        while self.events.len() > MAX_EVENTS {
            self.events.pop_front();
        }
    }

    fn remember_request(&mut self, id: Uuid, reply: Reply) {
        self.recent_requests.insert(id, reply);
        self.recent_order.push_back(id);
        while self.recent_order.len() > MAX_RECENT_REQUESTS {
            if let Some(old) = self.recent_order.pop_front() {
                self.recent_requests.remove(&old);
            }
        }
    }
}

fn human_duration(ms: i64) -> String {
    let s = ms.max(0) / 1000;
    match s {
        s if s % 86_400 == 0 && s > 0 => format!("{} d", s / 86_400),
        s if s % 3600 == 0 && s > 0 => format!("{} h", s / 3600),
        s if s % 60 == 0 && s > 0 => format!("{} min", s / 60),
        s => format!("{s} s"),
    }
}

#[cfg(test)]
mod tests;
