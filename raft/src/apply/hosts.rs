//! Membership in the state machine: bootstrap, join tokens, hosts registering, joining and
//! leaving, and the leader recording itself. A host leaves only when no VM is assigned or
//! migrating to it.

use std::collections::BTreeSet;

use uuid::Uuid;

use super::OpResult;
use crate::command::{NewHost, Outcome};
use crate::error::ClusterError;
use crate::model::{
    ClusterInfo, ClusterState, EventKind, Host, HostFacts, HostState, JoinToken, SchedulingPolicy,
    DEFAULT_CPU_OVERCOMMIT,
};
use crate::typ::NodeId;
use crate::validate;

impl ClusterState {
    pub(super) fn bootstrap(
        &mut self,
        now: i64,
        cluster_name: &str,
        voters: u8,
        host: &NewHost,
        token_hash: &str,
        token_expires_ms: i64,
    ) -> OpResult {
        if let Some(c) = &self.cluster {
            return Err(ClusterError::FailedPrecondition(format!("this node already belongs to cluster '{}'", c.name)));
        }
        validate::name("cluster name", cluster_name)?;
        validate::name("host name", &host.name)?;
        if !matches!(voters, 1 | 3 | 5) {
            return Err(ClusterError::invalid("voters", format!("must be 3 or 5 (got {voters})")));
        }
        self.cluster = Some(ClusterInfo {
            name: cluster_name.to_string(),
            voters,
            created_ms: now,
            scheduling: SchedulingPolicy::default(),
            cpu_overcommit: DEFAULT_CPU_OVERCOMMIT,
            // The bootstrapping node raises it next (a constant here would make nodes of
            // different builds apply the same entry differently).
            level: 0,
            level_raised_ms: 0,
            ca_pem: None,
            max_snapshots: 0,
        });
        self.hosts.insert(
            host.id,
            Host {
                id: host.id,
                name: host.name.clone(),
                address: host.address.clone(),
                state: HostState::Up,
                facts: host.facts.clone(),
                joined_ms: now,
                state_since_ms: now,
                maintenance: None,
                tags: Vec::new(),
                engine_local_maintenance: false,
                engine_score: None,
            },
        );
        self.tokens
            .insert(token_hash.to_string(), JoinToken { created_ms: now, expires_ms: token_expires_ms, uses: 0 });
        self.record(
            now,
            EventKind::ClusterBootstrapped,
            format!("Cluster {cluster_name} was bootstrapped on host {}.", host.name),
        );
        Ok(Outcome::Done)
    }

    pub(super) fn register_host(
        &mut self,
        now: i64,
        token_hash: &str,
        name: &str,
        address: &str,
        facts: &HostFacts,
    ) -> OpResult {
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
        // Counted from level 1 on: format v0 has no place for it.
        if self.cluster.as_ref().is_some_and(|c| c.level >= 1) {
            if let Some(t) = self.tokens.get_mut(token_hash) {
                t.uses = t.uses.saturating_add(1);
            }
        }
        self.hosts.insert(
            id,
            Host {
                id,
                name: name.to_string(),
                address: address.to_string(),
                state: HostState::Joining,
                facts: facts.clone(),
                joined_ms: now,
                state_since_ms: now,
                maintenance: None,
                tags: Vec::new(),
                engine_local_maintenance: false,
                engine_score: None,
            },
        );
        Ok(Outcome::HostRegistered { id, cluster_name })
    }

    pub(super) fn add_token(&mut self, now: i64, token_hash: &str, expires_ms: i64) -> OpResult {
        self.require_cluster()?;
        self.prune_tokens(now);
        self.tokens.insert(token_hash.to_string(), JoinToken { created_ms: now, expires_ms, uses: 0 });
        let ttl = human_duration(expires_ms.saturating_sub(now));
        self.record(now, EventKind::TokenCreated, format!("A join token was created; it expires in {ttl}."));
        Ok(Outcome::Done)
    }

    pub(super) fn revoke_token(&mut self, now: i64, id: &str) -> OpResult {
        self.require_cluster()?;
        let before = self.tokens.len();
        self.tokens.retain(|hash, _| JoinToken::id_of(hash) != id);
        if self.tokens.len() == before {
            return Err(ClusterError::NotFound(format!(
                "no join token has id '{}' (`cluster token list` shows them)",
                crate::error::quote(id)
            )));
        }
        self.record(now, EventKind::TokenCreated, format!("The join token {id} was revoked."));
        Ok(Outcome::Done)
    }

    pub(super) fn set_ca(&mut self, now: i64, ca_pem: &str) -> OpResult {
        let info = self.cluster.as_mut().ok_or_else(|| ClusterError::FailedPrecondition("no cluster yet".into()))?;
        match &info.ca_pem {
            Some(existing) if existing == ca_pem => return Ok(Outcome::Done),
            Some(_) => {
                return Err(ClusterError::FailedPrecondition(
                    "the cluster already has a CA; it is never replaced".into(),
                ))
            }
            None => info.ca_pem = Some(ca_pem.to_string()),
        }
        self.record(
            now,
            EventKind::ClusterEdited,
            "The cluster CA was made: members now prove who they are with its certificates.".to_string(),
        );
        Ok(Outcome::Done)
    }

    pub(super) fn host_joined(&mut self, now: i64, id: NodeId, voter: bool) -> OpResult {
        let host = self.hosts.get_mut(&id).ok_or_else(|| ClusterError::NotFound(format!("host {id} not found")))?;
        host.state = HostState::Up;
        host.state_since_ms = now;
        let msg = format!("Host {} joined the cluster as a {}.", host.name, if voter { "voter" } else { "learner" });
        self.record(now, EventKind::HostJoined, msg);
        Ok(Outcome::Done)
    }

    /// Removes an empty host; the VMs pinned to it lose that pin (`touched` gathers them).
    pub(super) fn remove_host(&mut self, now: i64, id: NodeId, touched: &mut BTreeSet<Uuid>) -> OpResult {
        let name =
            self.hosts.get(&id).ok_or_else(|| ClusterError::NotFound(format!("host {id} not found")))?.name.clone();
        self.check_host_empty(id, &name)?;
        // Work it was given on the images of a VM that is down is never done now.
        self.fail_snapshot_jobs_of(now, id, touched);
        self.hosts.remove(&id);
        touched.extend(self.forget_host_in_rules(id));
        self.record(now, EventKind::HostLeft, format!("Host {name} was removed from the cluster."));
        Ok(Outcome::Done)
    }

    pub(super) fn leader_elected(&mut self, now: i64, id: NodeId, term: u64) -> OpResult {
        // A node restarted as the leader of an old term may propose this before it learns of
        // the newer term: only a newer term is news.
        if self.leader.is_some_and(|(_, t)| term <= t) {
            return Ok(Outcome::Done);
        }
        self.leader = Some((id, term));
        let name = self.host_name(id);
        self.record(now, EventKind::LeaderChanged, format!("Host {name} is the new leader (term {term})."));
        Ok(Outcome::Done)
    }

    /// Refuses to take away a host that VMs are assigned or migrating to.
    pub fn check_host_empty(&self, id: NodeId, name: &str) -> Result<(), ClusterError> {
        let busy: Vec<&str> = self
            .vms
            .values()
            .filter(|v| v.runtime.host == Some(id) || v.migration_state.migrating_to == Some(id))
            .map(|v| v.config.name.as_str())
            .collect();
        if busy.is_empty() {
            return Ok(());
        }
        Err(ClusterError::FailedPrecondition(format!(
            "host {name} still runs VM(s) {}: stop or migrate them first",
            busy.join(", ")
        )))
    }

    fn prune_tokens(&mut self, now: i64) {
        self.tokens.retain(|_, t| t.expires_ms > now);
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
