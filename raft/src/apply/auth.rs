//! Users, groups, roles, permissions, sessions and API tokens; and the check that a write made
//! for someone is one they may make (`on_behalf`), with the events it records naming them.

use std::collections::BTreeSet;

use uuid::Uuid;

use super::OpResult;
use crate::command::{Op, Outcome};
use crate::error::{quote, ClusterError};
use crate::model::auth::*;
use crate::model::{ClusterState, EventKind, TLS_LEVEL};
use crate::validate;

/// The level from which the cluster has users: the one that requires TLS (credentials that are
/// sent in the clear would prove nothing).
pub const AUTH_LEVEL: u8 = TLS_LEVEL;

impl ClusterState {
    /// Whether users and permissions are in force: a cluster at a level that has them.
    pub fn has_users(&self) -> bool {
        self.cluster.as_ref().is_some_and(|c| c.level >= AUTH_LEVEL)
    }

    fn require_users(&self) -> Result<(), ClusterError> {
        self.require_cluster()?;
        if !self.has_users() {
            return Err(ClusterError::FailedPrecondition(format!(
                "users and permissions need cluster level {AUTH_LEVEL}: run `corral cluster upgrade` first"
            )));
        }
        Ok(())
    }

    /// The user `admin`, SuperUser on the system, made when the cluster reaches the level that
    /// has users (its certificate is what `cluster credentials` gives without `--user`).
    pub(super) fn ensure_admin(&mut self, now: i64) {
        if self.auth.users.contains_key(ADMIN_USER) {
            return;
        }
        // As old as the cluster: a certificate for admin made while the cluster was upgraded to
        // this level (before admin was recorded) is admin's.
        let created_ms = self.cluster.as_ref().map_or(now, |c| c.created_ms);
        self.auth.users.insert(
            ADMIN_USER.to_string(),
            User { name: ADMIN_USER.to_string(), created_ms, password_hash: None, password_changed_ms: 0 },
        );
        self.insert_permission(Permission {
            subject: Subject::User(ADMIN_USER.to_string()),
            role: SUPER_ROLE.to_string(),
            on: Target::System,
        });
    }

    fn insert_permission(&mut self, p: Permission) -> bool {
        match self.auth.permissions.binary_search(&p) {
            Ok(_) => false,
            Err(at) => {
                self.auth.permissions.insert(at, p);
                true
            }
        }
    }

    /// An object as users name it: `vm:web1`, `host:host2`, `cluster`, `system`.
    pub fn target_name(&self, t: Target) -> String {
        match t {
            Target::System => "system".into(),
            Target::Cluster => "cluster".into(),
            Target::Host(id) => format!("host:{}", self.host_name(id)),
            Target::Vm(id) => {
                format!("vm:{}", self.vms.get(&id).map_or_else(|| id.to_string(), |v| v.config.name.clone()))
            }
            Target::Disk(id) => {
                format!("disk:{}", self.disks.get(&id).map_or_else(|| id.to_string(), |d| d.name.clone()))
            }
            Target::Iso(id) => {
                format!("iso:{}", self.library.isos.get(&id).map_or_else(|| id.to_string(), |i| i.name.clone()))
            }
            Target::Template(id) => format!(
                "template:{}",
                self.library.templates.get(&id).map_or_else(|| id.to_string(), |t| t.name.clone())
            ),
        }
    }

    /// Reads `system`, `cluster`, `host:NAME`, `vm:NAME` or `disk:NAME` (a VM or disk also by id).
    pub fn parse_target(&self, text: &str) -> Result<Target, ClusterError> {
        let bad = || {
            ClusterError::invalid(
                "on",
                format!(
                    "must be system, cluster, host:NAME, vm:NAME, disk:NAME, iso:NAME or template:NAME (got '{}')",
                    quote(text)
                ),
            )
        };
        let (kind, name) = match text.split_once(':') {
            None => (text, ""),
            Some((k, n)) if !n.is_empty() => (k, n),
            _ => return Err(bad()),
        };
        match (kind, name) {
            ("system", "") => Ok(Target::System),
            ("cluster", "") => Ok(Target::Cluster),
            ("host", n) if !n.is_empty() => self
                .host_by_name(n)
                .map(|h| Target::Host(h.id))
                .ok_or_else(|| ClusterError::NotFound(format!("host '{}' not found", quote(n)))),
            ("vm", n) if !n.is_empty() => {
                self.find_vm(n).map(|v| Target::Vm(v.id)).ok_or_else(|| ClusterError::vm_not_found(n))
            }
            ("disk", n) if !n.is_empty() => {
                let by_id = Uuid::parse_str(n).ok().filter(|id| self.disks.contains_key(id));
                let named: Vec<Uuid> = self.disks.values().filter(|d| d.name == n).map(|d| d.id).collect();
                match (by_id, named.as_slice()) {
                    (Some(id), _) | (None, &[id]) => Ok(Target::Disk(id)),
                    (None, []) => Err(ClusterError::NotFound(format!("disk '{}' not found", quote(n)))),
                    (None, _) => Err(ClusterError::invalid(
                        "on",
                        format!("{} disks are named '{}': name one by its id", named.len(), quote(n)),
                    )),
                }
            }
            ("iso", n) if !n.is_empty() => {
                self.library.iso(n).map(|i| Target::Iso(i.id)).ok_or_else(|| super::library::iso_not_found(n))
            }
            ("template", n) if !n.is_empty() => self
                .library
                .template(n)
                .map(|t| Target::Template(t.id))
                .ok_or_else(|| super::library::template_not_found(n)),
            _ => Err(bad()),
        }
    }

    /// Whether `needs` all hold for `actor`; the refusal names the user, the permission and the
    /// object, and what the user has there: "alice may not delete vm web1 (needs vm.delete; has
    /// UserRole on vm:web1)".
    pub fn authorize(&self, actor: &Actor, verb: &str, needs: &[(Perm, Target)]) -> Result<(), ClusterError> {
        if matches!(actor, Actor::Local) || needs.is_empty() {
            return Ok(());
        }
        let grants = self.auth.grants(actor);
        for &(perm, target) in needs {
            if !grants.can(perm, target) {
                return Err(self.refusal(actor, &grants, verb, perm, target));
            }
        }
        Ok(())
    }

    pub fn refusal(&self, actor: &Actor, grants: &Grants, verb: &str, perm: Perm, target: Target) -> ClusterError {
        let object = match target {
            Target::System | Target::Cluster => target.kind().to_string(),
            t => format!("{} {}", t.kind(), self.target_name(t).split_once(':').map_or("", |x| x.1)),
        };
        let held = grants.roles_on(target, |t| self.target_name(t));
        let has = if held.is_empty() {
            if self.auth.users.contains_key(actor.name()) {
                format!("has no role on {} or above", self.target_name(target))
            } else {
                "no such user".to_string()
            }
        } else {
            format!("has {}", held.join(", "))
        };
        ClusterError::PermissionDenied(format!("{actor} may not {verb} {object} (needs {perm}; {has})"))
    }

    /// A write made for `actor`: checked, applied, and its events name the actor; a VM it made
    /// gives a user who made it UserVmManager on it.
    pub(super) fn on_behalf(
        &mut self,
        now: i64,
        actor: &Actor,
        credential: Option<&str>,
        needs: &[(Perm, Target)],
        op: &Op,
        touched: &mut BTreeSet<Uuid>,
    ) -> OpResult {
        self.require_users()?;
        if let Actor::User(name) = actor {
            if !self.auth.users.contains_key(name) {
                return Err(ClusterError::Unauthenticated(format!("user '{}' does not exist", quote(name))));
            }
            if let Some(hash) = credential {
                self.credential(hash, now).filter(|c| &c.user == name).ok_or_else(expired)?;
            }
        }
        // The node that took the request checked the same; this catches a permission removed
        // by an entry applied meanwhile, with the same message.
        for &(perm, target) in needs {
            self.authorize(actor, verb_for(perm), &[(perm, target)])?;
        }
        // The VM the op names must still be the one that was checked (not another renamed to
        // that name meanwhile).
        if let Some(name) = op.vm_named() {
            let checked: Vec<Uuid> =
                needs.iter().filter_map(|(_, t)| if let Target::Vm(id) = t { Some(*id) } else { None }).collect();
            if !checked.is_empty() && !self.vm_id_of(name).is_some_and(|id| checked.contains(&id)) {
                return Err(ClusterError::FailedPrecondition(format!(
                    "vm '{}' is no longer the VM that was checked (renamed or replaced meanwhile): try again",
                    quote(name)
                )));
            }
        }
        let first_event = self.next_event_index;
        let reply = self.apply_op_for(now, op, touched, Some(actor));
        self.edit_events_after(first_event, |e| {
            if e.user.is_none() {
                e.user = Some(actor.name().to_string());
                e.message = by(&e.message, actor.name());
            }
        });
        if let (Ok(_), Actor::User(user), Some(id)) = (&reply, actor, op.vm_made()) {
            if self.vms.contains_key(&id) {
                self.insert_permission(Permission {
                    subject: Subject::User(user.clone()),
                    role: CREATOR_ROLE.to_string(),
                    on: Target::Vm(id),
                });
            }
        }
        reply
    }

    /// The session or API token whose secret hashes to `hash`, if it is valid at `now`.
    pub fn credential(&self, hash: &str, now: i64) -> Option<&Credential> {
        self.auth.sessions.get(hash).or_else(|| self.auth.api_tokens.get(hash)).filter(|c| c.expires_ms > now)
    }

    /// Whether a user acting (`by`) holds every permission that `subjects` hold, where they hold
    /// them: changing another user's password, tokens or groups, or a role, must not give the
    /// caller more than they have. The host's root holds everything.
    pub fn covers(&self, by: Option<&Actor>, subjects: &[Subject], what: &str) -> Result<(), ClusterError> {
        let Some(actor @ Actor::User(_)) = by else { return Ok(()) };
        let grants = self.auth.grants(actor);
        for s in subjects {
            for p in self.auth.of_subject(s) {
                let mask = self.auth.role_mask(&p.role);
                if let Some(missing) = Perm::ALL.into_iter().find(|q| mask & q.bit() != 0 && !grants.can(*q, p.on)) {
                    return Err(ClusterError::PermissionDenied(format!(
                        "{actor} may not {what}: {s} has {} on {}, which allows {missing}, and {actor} does not have \
                         that there",
                        p.role,
                        self.target_name(p.on)
                    )));
                }
            }
        }
        Ok(())
    }

    /// `covers` for everything `user` holds (its own permissions and its groups').
    fn covers_user(&self, by: Option<&Actor>, user: &str, what: &str) -> Result<(), ClusterError> {
        if matches!(by, Some(Actor::User(u)) if u == user) {
            return Ok(());
        }
        self.covers(by, &self.auth.subjects_of(user), what)
    }

    /// Permissions on objects that are gone (after a VM, disk or host is removed).
    pub(super) fn forget_gone_targets(&mut self) {
        let (hosts, vms, disks, library) = (&self.hosts, &self.vms, &self.disks, &self.library);
        self.auth.permissions.retain(|p| match p.on {
            Target::System | Target::Cluster => true,
            Target::Host(id) => hosts.contains_key(&id),
            Target::Vm(id) => vms.contains_key(&id),
            Target::Disk(id) => disks.contains_key(&id),
            Target::Iso(id) => library.isos.contains_key(&id),
            Target::Template(id) => library.templates.contains_key(&id),
        });
    }

    pub(super) fn create_user(&mut self, now: i64, name: &str, password_hash: Option<&str>) -> OpResult {
        self.require_users()?;
        validate::name("user", name)?;
        if self.auth.users.contains_key(name) {
            return Err(ClusterError::AlreadyExists(format!("user '{name}' already exists")));
        }
        self.auth.users.insert(
            name.to_string(),
            User {
                name: name.to_string(),
                created_ms: now,
                password_hash: password_hash.map(str::to_string),
                password_changed_ms: if password_hash.is_some() { now } else { 0 },
            },
        );
        self.record(now, EventKind::UserEdited, format!("User {name} was created."));
        Ok(Outcome::Done)
    }

    fn user_exists(&self, name: &str) -> Result<(), ClusterError> {
        if self.auth.users.contains_key(name) {
            Ok(())
        } else {
            Err(ClusterError::NotFound(format!("user '{}' not found", quote(name))))
        }
    }

    pub(super) fn delete_user(&mut self, now: i64, name: &str, by: Option<&Actor>) -> OpResult {
        self.require_users()?;
        self.user_exists(name)?;
        self.covers_user(by, name, &format!("delete user {name}"))?;
        self.auth.users.remove(name);
        let subject = Subject::User(name.to_string());
        self.auth.permissions.retain(|p| p.subject != subject);
        self.auth.sessions.retain(|_, s| s.user != name);
        self.auth.api_tokens.retain(|_, t| t.user != name);
        for g in self.auth.groups.values_mut() {
            g.users.remove(name);
        }
        self.record(
            now,
            EventKind::UserEdited,
            format!("User {name} was deleted. Their permissions, sessions and API tokens went with them."),
        );
        Ok(Outcome::Done)
    }

    pub(super) fn set_password(
        &mut self,
        now: i64,
        name: &str,
        password_hash: Option<&str>,
        by: Option<&Actor>,
    ) -> OpResult {
        self.require_users()?;
        self.user_exists(name)?;
        self.covers_user(by, name, &format!("set the password of {name}"))?;
        let user = self
            .auth
            .users
            .get_mut(name)
            .ok_or_else(|| ClusterError::NotFound(format!("user '{}' not found", quote(name))))?;
        user.password_hash = password_hash.map(str::to_string);
        user.password_changed_ms = now;
        let ended = self.end_sessions_where(|s| s.user == name);
        self.record(
            now,
            EventKind::UserEdited,
            format!("The password of user {name} was changed. {ended} of their sessions ended."),
        );
        Ok(Outcome::Done)
    }

    fn end_sessions_where(&mut self, gone: impl Fn(&Credential) -> bool) -> usize {
        let before = self.auth.sessions.len();
        self.auth.sessions.retain(|_, s| !gone(s));
        before - self.auth.sessions.len()
    }

    fn group_members(&self, users: &[String]) -> Result<BTreeSet<String>, ClusterError> {
        users.iter().try_for_each(|u| self.user_exists(u))?;
        Ok(users.iter().cloned().collect())
    }

    pub(super) fn create_group(&mut self, now: i64, name: &str, users: &[String]) -> OpResult {
        self.require_users()?;
        validate::name("group", name)?;
        if self.auth.groups.contains_key(name) {
            return Err(ClusterError::AlreadyExists(format!("group '{name}' already exists")));
        }
        let users = self.group_members(users)?;
        let list = users.iter().cloned().collect::<Vec<_>>().join(", ");
        self.auth.groups.insert(name.to_string(), Group { name: name.to_string(), users, created_ms: now });
        self.record(now, EventKind::UserEdited, format!("Group {name} was created (members: {list})."));
        Ok(Outcome::Done)
    }

    pub(super) fn edit_group(
        &mut self,
        now: i64,
        name: &str,
        users: Option<&[String]>,
        add: &[String],
        remove: &[String],
        by: Option<&Actor>,
    ) -> OpResult {
        self.require_users()?;
        // Whoever joins the group gets its permissions: only someone who holds them all may
        // change who that is.
        self.covers(by, &[Subject::Group(name.to_string())], &format!("change the members of group {name}"))?;
        let mut group = self
            .auth
            .groups
            .get(name)
            .cloned()
            .ok_or_else(|| ClusterError::NotFound(format!("group '{}' not found", quote(name))))?;
        if let Some(users) = users {
            group.users = self.group_members(users)?;
        }
        group.users.extend(self.group_members(add)?);
        for u in remove {
            group.users.remove(u);
        }
        let list = group.users.iter().cloned().collect::<Vec<_>>().join(", ");
        self.auth.groups.insert(name.to_string(), group);
        self.record(now, EventKind::UserEdited, format!("Group {name} was edited (members: {list})."));
        Ok(Outcome::Done)
    }

    pub(super) fn delete_group(&mut self, now: i64, name: &str) -> OpResult {
        self.require_users()?;
        if self.auth.groups.remove(name).is_none() {
            return Err(ClusterError::NotFound(format!("group '{}' not found", quote(name))));
        }
        let subject = Subject::Group(name.to_string());
        self.auth.permissions.retain(|p| p.subject != subject);
        self.record(now, EventKind::UserEdited, format!("Group {name} was deleted. Its permissions went with it."));
        Ok(Outcome::Done)
    }

    fn custom_role_rules(&self, name: &str, permissions: &[Perm]) -> Result<(), ClusterError> {
        if predefined(name).is_some() {
            return Err(ClusterError::FailedPrecondition(format!(
                "{name} is a predefined role and cannot be changed; create a role of your own"
            )));
        }
        if name.is_empty()
            || name.len() > validate::MAX_NAME_LEN
            || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        {
            return Err(ClusterError::invalid(
                "role",
                format!("must be 1-{} letters, digits, '-' or '_' (got '{}')", validate::MAX_NAME_LEN, quote(name)),
            ));
        }
        if permissions.is_empty() {
            return Err(ClusterError::invalid("permissions", "a role needs at least one permission"));
        }
        Ok(())
    }

    /// A role's permissions may be given on any object: who makes or changes one must hold them
    /// on the system (and, for a role already given, wherever it is).
    fn may_define(&self, by: Option<&Actor>, name: &str, permissions: &[Perm]) -> Result<(), ClusterError> {
        let Some(actor @ Actor::User(_)) = by else { return Ok(()) };
        let grants = self.auth.grants(actor);
        if let Some(missing) = permissions.iter().find(|p| !grants.can(**p, Target::System)) {
            return Err(ClusterError::PermissionDenied(format!(
                "{actor} may not make role {name} allow {missing}: {actor} does not have it on the system"
            )));
        }
        Ok(())
    }

    pub(super) fn create_role(&mut self, now: i64, name: &str, permissions: &[Perm], by: Option<&Actor>) -> OpResult {
        self.require_users()?;
        self.custom_role_rules(name, permissions)?;
        self.may_define(by, name, permissions)?;
        if self.auth.roles.contains_key(name) {
            return Err(ClusterError::AlreadyExists(format!("role '{name}' already exists")));
        }
        let permissions: BTreeSet<Perm> = permissions.iter().copied().collect();
        let words = words(&permissions);
        self.auth.roles.insert(name.to_string(), Role { name: name.to_string(), permissions, created_ms: now });
        self.record(now, EventKind::PermissionChanged, format!("Role {name} was created ({words})."));
        Ok(Outcome::Done)
    }

    pub(super) fn edit_role(&mut self, now: i64, name: &str, permissions: &[Perm], by: Option<&Actor>) -> OpResult {
        self.require_users()?;
        self.custom_role_rules(name, permissions)?;
        self.may_define(by, name, permissions)?;
        let role = self
            .auth
            .roles
            .get_mut(name)
            .ok_or_else(|| ClusterError::NotFound(format!("role '{}' not found", quote(name))))?;
        role.permissions = permissions.iter().copied().collect();
        let words = words(&role.permissions);
        self.record(now, EventKind::PermissionChanged, format!("Role {name} was changed ({words})."));
        Ok(Outcome::Done)
    }

    pub(super) fn delete_role(&mut self, now: i64, name: &str) -> OpResult {
        self.require_users()?;
        self.custom_role_rules(name, &[Perm::VmView])?;
        if !self.auth.roles.contains_key(name) {
            return Err(ClusterError::NotFound(format!("role '{}' not found", quote(name))));
        }
        let using: Vec<String> = self
            .auth
            .permissions
            .iter()
            .filter(|p| p.role == name)
            .take(5)
            .map(|p| format!("{} on {}", p.subject, self.target_name(p.on)))
            .collect();
        if !using.is_empty() {
            return Err(ClusterError::FailedPrecondition(format!(
                "role {name} is still given ({}): remove those permissions first",
                using.join(", ")
            )));
        }
        self.auth.roles.remove(name);
        self.record(now, EventKind::PermissionChanged, format!("Role {name} was deleted."));
        Ok(Outcome::Done)
    }

    fn target_exists(&self, t: Target) -> Result<(), ClusterError> {
        let exists = match t {
            Target::System | Target::Cluster => true,
            Target::Host(id) => self.hosts.contains_key(&id),
            Target::Vm(id) => self.vms.contains_key(&id),
            Target::Disk(id) => self.disks.contains_key(&id),
            Target::Iso(id) => self.library.isos.contains_key(&id),
            Target::Template(id) => self.library.templates.contains_key(&id),
        };
        if exists {
            Ok(())
        } else {
            Err(ClusterError::NotFound(format!("{} {} no longer exists", t.kind(), self.target_name(t))))
        }
    }

    /// Granting a role needs user.manage, or vm.permissions on the VM; and a user who is not
    /// the host's root must hold every permission of the role there (no one grants more than
    /// they have).
    fn may_grant(&self, by: Option<&Actor>, p: &Permission, perms: &BTreeSet<Perm>) -> Result<(), ClusterError> {
        let Some(actor @ Actor::User(_)) = by else { return Ok(()) };
        let grants = self.auth.grants(actor);
        let guard = match p.on {
            Target::Vm(_) if !grants.can(Perm::UserManage, Target::System) => Perm::VmPermissions,
            _ => Perm::UserManage,
        };
        let on = if guard == Perm::UserManage { Target::System } else { p.on };
        if !grants.can(guard, on) {
            return Err(self.refusal(actor, &grants, "assign permissions on", guard, p.on));
        }
        if let Some(missing) = perms.iter().find(|perm| !grants.can(**perm, p.on)) {
            return Err(ClusterError::PermissionDenied(format!(
                "{actor} may not give {} on {}: it allows {missing}, which {actor} does not have there",
                p.role,
                self.target_name(p.on)
            )));
        }
        Ok(())
    }

    fn subject_exists(&self, s: &Subject) -> Result<(), ClusterError> {
        match s {
            Subject::User(u) => self.user_exists(u),
            Subject::Group(g) if self.auth.groups.contains_key(g) => Ok(()),
            Subject::Group(g) => Err(ClusterError::NotFound(format!("group '{}' not found", quote(g)))),
        }
    }

    pub(super) fn add_permission(&mut self, now: i64, p: &Permission, by: Option<&Actor>) -> OpResult {
        self.require_users()?;
        self.subject_exists(&p.subject)?;
        self.target_exists(p.on)?;
        let perms = self.auth.role_permissions(&p.role).ok_or_else(|| {
            ClusterError::NotFound(format!("role '{}' not found (`corral role list` shows them)", quote(&p.role)))
        })?;
        self.may_grant(by, p, &perms)?;
        let on = self.target_name(p.on);
        if !self.insert_permission(p.clone()) {
            return Err(ClusterError::AlreadyExists(format!("{} already has {} on {on}", p.subject, p.role)));
        }
        self.record(now, EventKind::PermissionChanged, format!("{} was given {} on {on}.", cap(&p.subject), p.role));
        Ok(Outcome::Done)
    }

    pub(super) fn remove_permission(&mut self, now: i64, p: &Permission, by: Option<&Actor>) -> OpResult {
        self.require_users()?;
        let on = self.target_name(p.on);
        // Taking a role away needs what giving it needs, less holding the role's permissions;
        // checked first, so that no one learns who holds what without the right to change it.
        self.may_grant(by, p, &BTreeSet::new())?;
        let Ok(at) = self.auth.permissions.binary_search(p) else {
            return Err(ClusterError::NotFound(format!("{} has no {} on {on}", p.subject, quote(&p.role))));
        };
        self.auth.permissions.remove(at);
        self.record(now, EventKind::PermissionChanged, format!("{} lost {} on {on}.", cap(&p.subject), p.role));
        Ok(Outcome::Done)
    }

    pub(super) fn start_session(
        &mut self,
        now: i64,
        hash: &str,
        user: &str,
        expires_ms: i64,
        source: &str,
    ) -> OpResult {
        self.require_users()?;
        self.user_exists(user)?;
        // Expired sessions go whenever one starts, and a user keeps a bounded number.
        self.auth.sessions.retain(|_, s| s.expires_ms > now);
        let mut theirs: Vec<(i64, String)> =
            self.auth.sessions.iter().filter(|(_, s)| s.user == user).map(|(h, s)| (s.created_ms, h.clone())).collect();
        theirs.sort();
        for (_, h) in theirs.iter().take((theirs.len() + 1).saturating_sub(MAX_SESSIONS_PER_USER)) {
            self.auth.sessions.remove(h);
        }
        self.auth.sessions.insert(
            hash.to_string(),
            Credential {
                user: user.to_string(),
                name: String::new(),
                created_ms: now,
                expires_ms,
                source: source.to_string(),
            },
        );
        let from = if source.is_empty() { String::new() } else { format!(" from {}", quote(source)) };
        self.record(now, EventKind::UserEdited, format!("User {user} logged in{from}."));
        // A login is the user's own request.
        self.edit_events_after(self.next_event_index - 1, |e| e.user = Some(user.to_string()));
        Ok(Outcome::Done)
    }

    pub(super) fn end_session(&mut self, now: i64, hash: &str) -> OpResult {
        self.require_users()?;
        let s = self
            .auth
            .sessions
            .remove(hash)
            .ok_or_else(|| ClusterError::NotFound("no such session (it may have expired)".into()))?;
        self.record(now, EventKind::UserEdited, format!("User {} logged out.", s.user));
        Ok(Outcome::Done)
    }

    pub(super) fn create_api_token(
        &mut self,
        now: i64,
        hash: &str,
        user: &str,
        name: &str,
        expires_ms: i64,
        by: Option<&Actor>,
    ) -> OpResult {
        self.require_users()?;
        self.user_exists(user)?;
        self.covers_user(by, user, &format!("make an API token for {user}"))?;
        validate::name("name", name)?;
        self.auth.api_tokens.retain(|_, t| t.expires_ms > now);
        let theirs = self.auth.api_tokens.values().filter(|t| t.user == user);
        if theirs.clone().any(|t| t.name == name) {
            return Err(ClusterError::AlreadyExists(format!("user {user} already has an API token named '{name}'")));
        }
        if theirs.count() >= MAX_TOKENS_PER_USER {
            return Err(ClusterError::FailedPrecondition(format!(
                "user {user} has {MAX_TOKENS_PER_USER} API tokens, the most one may have: revoke one first"
            )));
        }
        self.auth.api_tokens.insert(
            hash.to_string(),
            Credential {
                user: user.to_string(),
                name: name.to_string(),
                created_ms: now,
                expires_ms,
                source: String::new(),
            },
        );
        self.record(now, EventKind::UserEdited, format!("API token {name} of user {user} was created."));
        Ok(Outcome::Done)
    }

    pub(super) fn revoke_api_token(&mut self, now: i64, user: &str, name: &str) -> OpResult {
        self.require_users()?;
        let before = self.auth.api_tokens.len();
        self.auth.api_tokens.retain(|_, t| !(t.user == user && t.name == name));
        if self.auth.api_tokens.len() == before {
            return Err(ClusterError::NotFound(format!(
                "user {} has no API token named '{}'",
                quote(user),
                quote(name)
            )));
        }
        self.record(now, EventKind::UserEdited, format!("API token {name} of user {user} was revoked."));
        Ok(Outcome::Done)
    }

    pub(super) fn login_failed(&mut self, now: i64, user: &str, source: &str, failures: u32) -> OpResult {
        self.require_users()?;
        self.record(
            now,
            EventKind::LoginFailed,
            format!(
                "{failures} failed login{} in a row for user '{}' from {}; further attempts are slowed.",
                if failures == 1 { "" } else { "s" },
                quote(user),
                quote(source)
            ),
        );
        Ok(Outcome::Done)
    }
}

/// What a caller whose session or token is gone is told.
pub fn expired() -> ClusterError {
    ClusterError::Unauthenticated(
        "the session or API token is unknown, expired or revoked: log in again (`corral login`)".into(),
    )
}

/// The verb a refusal of `perm` uses (the first operation it guards).
pub fn verb_for(perm: Perm) -> &'static str {
    Operation::ALL.iter().map(|o| o.def()).find(|d| d.perm == perm).map_or("use", |d| d.verb)
}

fn words(perms: &BTreeSet<Perm>) -> String {
    perms.iter().map(|p| p.word()).collect::<Vec<_>>().join(", ")
}

fn cap(s: &Subject) -> String {
    match s {
        Subject::User(u) => format!("User {u}"),
        Subject::Group(g) => format!("Group {g}"),
    }
}

/// An event's message with who asked for it, at the end of its first clause (outside any
/// parentheses): "VM web1 was deleted." becomes "VM web1 was deleted by alice.", "Host h is
/// preparing (reason: x): 2 VMs to move." becomes "Host h is preparing (reason: x) by alice: 2
/// VMs to move.".
fn by(message: &str, who: &str) -> String {
    let mut depth = 0i32;
    let mut end = None;
    let bytes = message.as_bytes();
    for (i, c) in message.char_indices() {
        match c {
            '(' => depth += 1,
            ')' => depth -= 1,
            ':' | '.' | ';' if depth == 0 && bytes.get(i + 1).is_none_or(|n| *n == b' ') => {
                end = Some(i);
                break;
            }
            _ => {}
        }
    }
    match end {
        Some(at) => format!("{} by {who}{}", &message[..at], &message[at..]),
        None => format!("{message} (by {who})"),
    }
}

#[cfg(test)]
mod tests {
    use super::by;

    #[test]
    fn events_say_who() {
        assert_eq!(by("VM web1 was deleted.", "alice"), "VM web1 was deleted by alice.");
        assert_eq!(by("VM web1 was deleted. Its disks stay.", "bob"), "VM web1 was deleted by bob. Its disks stay.");
        assert_eq!(by("no period", "bob"), "no period (by bob)");
        assert_eq!(by("VM web1 was created (1 GiB).", "al"), "VM web1 was created (1 GiB) by al.");
        assert_eq!(
            by("Host h is preparing (reason: x): 2 VMs.", "al"),
            "Host h is preparing (reason: x) by al: 2 VMs."
        );
        assert_eq!(by("Set to 1.5 GiB.", "al"), "Set to 1.5 GiB by al.");
    }
}
