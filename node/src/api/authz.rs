//! Who a request is for, and whether they may do what it asks. The rules themselves (roles,
//! the object tree, what each operation needs, the wording of a refusal) are the state
//! machine's (`corral_raft::model::auth`, `apply/auth.rs`); here a caller's connection and
//! credentials become an [`Actor`], a request's objects become targets, and a write becomes
//! `Op::OnBehalf`, which apply checks once more against the state it applies to.
//!
//! Every handler asks here before it reads or writes. A cluster below the level that has users
//! checks nothing (as before), and neither does a member's own call.

use corral_raft::apply::auth::expired;
use corral_raft::model::auth::{Actor, Grants, Operation, Perm, Target};
use corral_raft::{ClusterError, ClusterState, Op};

use super::{Caller, Handles, Principal};
use crate::now_ms;

/// Who a request is for.
#[derive(Debug, Clone)]
pub enum Who {
    /// A member's call, or anyone's on a cluster without users (below level 2).
    Unchecked,
    /// The host's root (local socket) or a user, with how they proved it.
    Actor {
        actor: Actor,
        /// The SHA-256 of the session or API token, when that is what proved it.
        credential: Option<String>,
        via: &'static str,
        expires_ms: i64,
    },
}

/// An object of a request, by the name the caller gave.
#[derive(Debug, Clone, Copy)]
pub enum Obj<'a> {
    System,
    Cluster,
    Host(&'a str),
    Vm(&'a str),
    Disk(&'a str),
    Iso(&'a str),
    Template(&'a str),
}

enum Miss {
    Target,
    Credential,
}

impl Who {
    /// What `who` may do in `s`; a session or token that `s` no longer knows is refused.
    pub fn grants<'a>(&self, s: &'a ClusterState) -> Result<Grants<'a>, ClusterError> {
        match self {
            Who::Unchecked => Ok(Grants::everything(&s.auth)),
            Who::Actor { actor, credential, .. } => {
                if let Some(hash) = credential {
                    s.credential(hash, now_ms()).ok_or_else(expired)?;
                }
                Ok(s.auth.grants(actor))
            }
        }
    }

    /// The user's name, or root@localhost; `None` when nothing is checked.
    pub fn actor(&self) -> Option<&Actor> {
        match self {
            Who::Unchecked => None,
            Who::Actor { actor, .. } => Some(actor),
        }
    }

    /// Whether `name` is the caller (a user may always see and change their own account).
    pub fn is_user(&self, name: &str) -> bool {
        matches!(self, Who::Actor { actor: Actor::User(u), .. } if u == name)
    }
}

fn resolve(cx: &Caller, s: &ClusterState) -> Result<Who, Result<ClusterError, Miss>> {
    if !s.has_users() {
        return Ok(Who::Unchecked);
    }
    if let Some(token) = &cx.bearer {
        let hash = secret_hash(token);
        return match s.credential(&hash, now_ms()) {
            Some(c) => Ok(Who::Actor {
                actor: Actor::User(c.user.clone()),
                via: if c.name.is_empty() { "session" } else { "API token" },
                expires_ms: c.expires_ms,
                credential: Some(hash),
            }),
            None => Err(Err(Miss::Credential)),
        };
    }
    match &cx.who {
        Principal::Local => {
            Ok(Who::Actor { actor: Actor::Local, credential: None, via: "local socket", expires_ms: 0 })
        }
        Principal::Member(_) => Ok(Who::Unchecked),
        // A certificate made before its user was (for an earlier user of that name) is refused:
        // deleting a user revokes their certificates.
        Principal::User { name, made_ms } => match s.auth.users.get(name) {
            // The certificate names the creation time of its user (`tls::sign`).
            Some(u) if Some(u.created_ms) == *made_ms => {
                Ok(Who::Actor { actor: Actor::User(name.clone()), credential: None, via: "certificate", expires_ms: 0 })
            }
            Some(_) => Err(Ok(ClusterError::Unauthenticated(format!(
                "the certificate for '{}' was made before this user was (for an earlier user of that name): have a \
                 new one made (`cluster credentials --user {}`)",
                corral_raft::error::quote(name),
                corral_raft::error::quote(name)
            )))),
            None => Err(Ok(ClusterError::Unauthenticated(format!(
                "the certificate names user '{}', who does not exist",
                corral_raft::error::quote(name)
            )))),
        },
        Principal::Anonymous => Err(Ok(ClusterError::Unauthenticated(super::grpc::NO_CREDENTIALS.to_string()))),
    }
}

/// What the cluster keeps of a session's or API token's secret.
pub fn secret_hash(token: &str) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(token.trim().as_bytes()))
}

fn target(s: &ClusterState, obj: Obj<'_>) -> Option<Target> {
    match obj {
        Obj::System => Some(Target::System),
        Obj::Cluster => Some(Target::Cluster),
        Obj::Host(name) => s.host_by_name(name).map(|h| Target::Host(h.id)),
        Obj::Vm(name) => s.find_vm(name).map(|v| Target::Vm(v.id)),
        Obj::Disk(name) => s.find_disk(name).map(|d| Target::Disk(d.id)),
        Obj::Iso(name) => s.library.iso(name).map(|i| Target::Iso(i.id)),
        Obj::Template(name) => s.library.template(name).map(|t| Target::Template(t.id)),
    }
}

fn missing(obj: Obj<'_>) -> ClusterError {
    match obj {
        Obj::Vm(name) => ClusterError::vm_not_found(name),
        Obj::Host(name) => ClusterError::NotFound(format!("host '{}' not found", corral_raft::error::quote(name))),
        Obj::Disk(name) => ClusterError::NotFound(format!("disk '{}' not found", corral_raft::error::quote(name))),
        Obj::Iso(name) => corral_raft::apply::library::iso_not_found(name),
        Obj::Template(name) => corral_raft::apply::library::template_not_found(name),
        Obj::System | Obj::Cluster => ClusterError::FailedPrecondition("the cluster is not bootstrapped".into()),
    }
}

/// A decision: who calls and the permissions held for the request; or a refusal, or what this
/// node does not know yet.
type Decision = Result<(Who, Vec<(Perm, Target)>), Result<ClusterError, Miss>>;

/// The caller, and the permissions `needs` asks for, resolved in `s`.
fn decide(cx: &Caller, s: &ClusterState, needs: &[(Operation, Obj<'_>)]) -> Decision {
    let who = resolve(cx, s)?;
    let actor = match &who {
        Who::Unchecked | Who::Actor { actor: Actor::Local, .. } => return Ok((who, Vec::new())),
        Who::Actor { actor, .. } => actor.clone(),
    };
    let grants = who.grants(s).map_err(Ok)?;
    let mut held = Vec::new();
    for &(op, obj) in needs {
        let t = target(s, obj).ok_or(Err(Miss::Target))?;
        let def = op.def();
        if !grants.can(def.perm, t) {
            // A VM the caller may not see does not exist for them.
            if matches!(t, Target::Vm(_)) && !grants.can(Perm::VmView, t) {
                return Err(Ok(missing(obj)));
            }
            // And so does a template they may not use.
            if matches!(t, Target::Template(_)) && !grants.can(Perm::TemplateUse, t) {
                return Err(Ok(missing(obj)));
            }
            return Err(Ok(s.refusal(&actor, &grants, def.verb, def.perm, t)));
        }
        held.push((def.perm, t));
    }
    Ok((who, held))
}

impl Handles {
    /// Decides on this node's state; when it does not know the object or the session yet (made
    /// through another node a moment ago), once more after a linearizable read.
    async fn decided(
        &self,
        cx: &Caller,
        needs: &[(Operation, Obj<'_>)],
    ) -> Result<(Who, Vec<(Perm, Target)>), ClusterError> {
        let state = self.cluster.state()?;
        let first = state.read(|s| decide(cx, s, needs));
        let again = match first {
            Ok(d) => return Ok(d),
            Err(Ok(e)) => return Err(e),
            Err(Err(_)) => self.cluster.read(false, |s| decide(cx, s, needs)).await?,
        };
        again.map_err(|e| match e {
            Ok(e) => e,
            Err(Miss::Credential) => expired(),
            Err(Miss::Target) => needs
                .iter()
                .map(|(_, o)| *o)
                .find(|o| state.read(|s| target(s, *o).is_none()))
                .map_or_else(|| ClusterError::Internal("an object vanished while checked".into()), missing),
        })
    }

    /// Who calls (checked against nothing yet).
    pub async fn who(&self, cx: &Caller) -> Result<Who, ClusterError> {
        Ok(self.decided(cx, &[]).await?.0)
    }

    /// Whether the caller holds every permission on the system (a SuperUser, or the host's
    /// root): what a join token (a member's certificate) or a backup (every password hash) gives.
    pub async fn check_everything(&self, cx: &Caller, what: &str) -> Result<(), ClusterError> {
        let who = self.who(cx).await?;
        let Some(actor @ Actor::User(_)) = who.actor() else { return Ok(()) };
        self.cluster.state()?.read(|s| {
            let grants = who.grants(s)?;
            match Perm::ALL.into_iter().find(|p| !grants.can(*p, Target::System)) {
                None => Ok(()),
                Some(missing) => Err(ClusterError::PermissionDenied(format!(
                    "{actor} may not {what}: that needs every permission on the system (SuperUser); {actor} lacks \
                     {missing}"
                ))),
            }
        })
    }

    /// Whether the caller may do every one of `needs`; for reads and requests that are no write.
    pub async fn check(&self, cx: &Caller, needs: &[(Operation, Obj<'_>)]) -> Result<Who, ClusterError> {
        Ok(self.decided(cx, needs).await?.0)
    }

    /// `op`, made for the caller once they may do every one of `needs`: apply checks the same
    /// again, and its events name them.
    pub async fn permit(&self, cx: &Caller, needs: &[(Operation, Obj<'_>)], op: Op) -> Result<Op, ClusterError> {
        let (who, held) = self.decided(cx, needs).await?;
        Ok(match who {
            Who::Unchecked => op,
            Who::Actor { actor, credential, .. } => Op::OnBehalf { actor, credential, needs: held, op: Box::new(op) },
        })
    }
}
