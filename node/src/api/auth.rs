//! AuthService: users, groups, roles, permissions, logins, sessions and API tokens. Passwords
//! are hashed here with Argon2id (on a blocking thread, at most two at once) before the command
//! that stores them; sessions and API tokens are 256 random bits, of which the cluster keeps
//! only the SHA-256. Wrong passwords are slowed per user and source (`Logins`).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use argon2::password_hash::rand_core::OsRng;
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::Argon2;
use corral_proto::*;
use corral_raft::model::auth::{self as model, Actor, Operation, Perm, Subject, Target};
use corral_raft::{ClusterError, ClusterState, Op};
use rand::RngCore;
use tokio::sync::{Mutex, Semaphore};

use super::authz::{secret_hash, Obj, Who};
use super::{Caller, Handles};
use crate::now_ms;

pub struct Api(pub Arc<Handles>);

/// How long a login's session lasts unless it asks for less.
pub const SESSION_TTL: Duration = Duration::from_secs(12 * 3600);
/// An API token's life unless given.
pub const API_TOKEN_TTL: Duration = Duration::from_secs(90 * 24 * 3600);
const MAX_API_TOKEN_TTL: Duration = Duration::from_secs(5 * 365 * 24 * 3600);
const MIN_PASSWORD: usize = 8;
const MAX_PASSWORD: usize = 1024;

/// Wrong passwords per (user, source) on this node: from the third one on in a row, each attempt
/// waits before it is checked, 100 ms doubling up to [`MAX_LOGIN_DELAY`]; attempts of one user
/// from one source take turns. A success, or 15 minutes without an attempt, forgets them.
#[derive(Default)]
pub struct Logins {
    failures: std::sync::Mutex<HashMap<(String, String), Tracked>>,
    /// Argon2 is made to be slow: at most two checks at once, so logins cannot starve the node.
    hashing: Option<Semaphore>,
}

type Tracked = Arc<Mutex<Failures>>;

#[derive(Default)]
struct Failures {
    count: u32,
    last: Option<Instant>,
}

pub const MAX_LOGIN_DELAY: Duration = Duration::from_millis(1500);
const FORGET_AFTER: Duration = Duration::from_secs(15 * 60);
/// Keys kept at most (one per user and source); the oldest idle ones go first.
const MAX_TRACKED: usize = 10_000;

impl Logins {
    pub fn new() -> Self {
        Logins { failures: Default::default(), hashing: Some(Semaphore::new(2)) }
    }

    fn entry(&self, user: &str, source: &str) -> Arc<Mutex<Failures>> {
        let mut map = self.failures.lock().unwrap_or_else(|e| e.into_inner());
        let key = (user.to_string(), source.to_string());
        if map.len() >= MAX_TRACKED && !map.contains_key(&key) {
            map.retain(|_, f| f.try_lock().map_or(true, |f| f.last.is_some_and(|l| l.elapsed() < FORGET_AFTER)));
            if map.len() >= MAX_TRACKED {
                // Still full of recent failures (many names from many sources): the attempts of
                // every user from this source share one count, so they are slowed all the same.
                return map.entry((String::new(), source.to_string())).or_default().clone();
            }
        }
        map.entry(key).or_default().clone()
    }

    async fn hashing(&self) -> Option<tokio::sync::SemaphorePermit<'_>> {
        match &self.hashing {
            Some(s) => s.acquire().await.ok(),
            None => None,
        }
    }
}

/// The wait before checking the next password after `failures` wrong ones in a row.
pub fn login_delay(failures: u32) -> Duration {
    if failures < 3 {
        return Duration::ZERO;
    }
    let ms = 100u64.saturating_mul(1u64 << (failures - 3).min(20));
    Duration::from_millis(ms).min(MAX_LOGIN_DELAY)
}

/// Failures that are written to the event log (each says how many in a row).
fn recorded(failures: u32) -> bool {
    failures == 1 || failures == 3 || failures.is_multiple_of(5)
}

async fn hash_password(password: String) -> Result<String, ClusterError> {
    tokio::task::spawn_blocking(move || {
        let salt = SaltString::generate(&mut OsRng);
        Argon2::default()
            .hash_password(password.as_bytes(), &salt)
            .map(|h| h.to_string())
            .map_err(|e| ClusterError::Internal(format!("cannot hash the password: {e}")))
    })
    .await
    .map_err(|e| ClusterError::Internal(format!("the password hash failed: {e}")))?
}

/// A hash of a password no one has, checked when the user does not exist so that a wrong user
/// name takes as long as a wrong password.
fn decoy() -> &'static str {
    static DECOY: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    DECOY.get_or_init(|| {
        let salt = SaltString::generate(&mut OsRng);
        Argon2::default().hash_password(b"corral decoy password", &salt).map(|h| h.to_string()).unwrap_or_default()
    })
}

async fn verify(password: String, hash: Option<String>) -> bool {
    tokio::task::spawn_blocking(move || {
        let known = hash.is_some();
        let hash = hash.unwrap_or_else(|| decoy().to_string());
        let ok = PasswordHash::new(&hash)
            .map(|h| Argon2::default().verify_password(password.as_bytes(), &h).is_ok())
            .unwrap_or(false);
        ok && known
    })
    .await
    .unwrap_or(false)
}

fn check_password(password: &str) -> Result<(), ClusterError> {
    let n = password.chars().count();
    if n < MIN_PASSWORD {
        return Err(ClusterError::invalid("password", format!("must be at least {MIN_PASSWORD} characters")));
    }
    if password.len() > MAX_PASSWORD {
        return Err(ClusterError::invalid("password", format!("must be at most {MAX_PASSWORD} bytes")));
    }
    Ok(())
}

/// 256 random bits, written out with what it is for: `corral-session-HEX`, `corral-api-HEX`.
fn secret(kind: &str) -> String {
    let mut b = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut b);
    format!("corral-{kind}-{}", hex::encode(b))
}

fn name_of(s: &ClusterState, p: &model::Permission) -> Permission {
    let (user, group) = match &p.subject {
        Subject::User(u) => (u.clone(), String::new()),
        Subject::Group(g) => (String::new(), g.clone()),
    };
    Permission { user, group, role: p.role.clone(), on: s.target_name(p.on) }
}

fn user_to_proto(s: &ClusterState, u: &model::User) -> User {
    let subject = Subject::User(u.name.clone());
    User {
        name: u.name.clone(),
        created_unix_ms: u.created_ms,
        has_password: u.password_hash.is_some(),
        groups: s.auth.groups.values().filter(|g| g.users.contains(&u.name)).map(|g| g.name.clone()).collect(),
        permissions: s.auth.permissions.iter().filter(|p| p.subject == subject).map(|p| name_of(s, p)).collect(),
        sessions: s.auth.sessions.values().filter(|c| c.user == u.name).count() as u32,
        api_tokens: s.auth.api_tokens.values().filter(|c| c.user == u.name).count() as u32,
    }
}

fn group_to_proto(s: &ClusterState, g: &model::Group) -> Group {
    let subject = Subject::Group(g.name.clone());
    Group {
        name: g.name.clone(),
        users: g.users.iter().cloned().collect(),
        created_unix_ms: g.created_ms,
        permissions: s.auth.permissions.iter().filter(|p| p.subject == subject).map(|p| name_of(s, p)).collect(),
    }
}

fn role_to_proto(s: &ClusterState, name: &str) -> Option<Role> {
    let perms = s.auth.role_permissions(name)?;
    let def = model::predefined(name);
    Some(Role {
        name: name.to_string(),
        predefined: def.is_some(),
        description: def.map(|d| d.description.to_string()).unwrap_or_default(),
        permissions: perms.iter().map(|p| p.word().to_string()).collect(),
    })
}

fn perms(words: &[String]) -> Result<Vec<Perm>, ClusterError> {
    let mut out = Vec::new();
    for w in words.iter().flat_map(|w| w.split(',')).map(str::trim).filter(|w| !w.is_empty()) {
        out.push(Perm::parse(w).ok_or_else(|| {
            let all: Vec<&str> = Perm::ALL.iter().map(|p| p.word()).collect();
            ClusterError::invalid(
                "permissions",
                format!("'{}' is no permission (they are: {})", corral_raft::error::quote(w), all.join(", ")),
            )
        })?);
    }
    Ok(out)
}

fn subject(user: &str, group: &str) -> Result<Subject, ClusterError> {
    match (user.trim(), group.trim()) {
        (u, "") if !u.is_empty() => Ok(Subject::User(u.to_string())),
        ("", g) if !g.is_empty() => Ok(Subject::Group(g.to_string())),
        _ => Err(ClusterError::invalid("user", "give exactly one of --user and --group")),
    }
}

fn ttl(seconds: u64, default: Duration, max: Duration) -> Result<i64, ClusterError> {
    let d = if seconds == 0 { default } else { Duration::from_secs(seconds) };
    if d > max {
        return Err(ClusterError::invalid("ttl", format!("must be at most {} days", max.as_secs() / 86_400)));
    }
    Ok(now_ms() + d.as_millis() as i64)
}

impl Api {
    fn node(&self) -> &Handles {
        &self.0
    }

    /// A user-management write: only on a cluster with users, for someone with user.manage
    /// (or, where `own` names the caller, for the caller themself).
    async fn manage(&self, cx: &Caller, own: Option<&str>, op: Op) -> Result<(), ClusterError> {
        let who = self.node().who(cx).await?;
        if matches!(who, Who::Unchecked) && !self.has_users().await? {
            return Err(ClusterError::FailedPrecondition(format!(
                "users and permissions need cluster level {}: run `corral cluster upgrade` first",
                corral_raft::apply::auth::AUTH_LEVEL
            )));
        }
        let op = match own {
            Some(name) if who.is_user(name) => self.node().permit(cx, &[], op).await?,
            _ => self.node().permit(cx, &[(Operation::UserManage, Obj::System)], op).await?,
        };
        self.node().cluster.write(cx.request_id()?, op).await?;
        Ok(())
    }

    async fn has_users(&self) -> Result<bool, ClusterError> {
        Ok(self.node().cluster.state()?.read(|s| s.has_users()))
    }

    /// Reads for someone with user.manage, or about the caller themself when `own` names them.
    async fn read_managed<T>(
        &self,
        cx: &Caller,
        own: Option<&str>,
        f: impl FnOnce(&ClusterState) -> Result<T, ClusterError>,
    ) -> Result<T, ClusterError> {
        let who = self.node().who(cx).await?;
        if !own.is_some_and(|n| who.is_user(n)) {
            self.node().check(cx, &[(Operation::UserManage, Obj::System)]).await?;
        }
        self.node()
            .cluster
            .read(false, |s| {
                who.grants(s)?;
                f(s)
            })
            .await?
    }

    pub async fn login(&self, cx: &Caller, req: LoginRequest) -> Result<LoginResponse, ClusterError> {
        let LoginRequest { user, password, ttl_seconds } = req;
        if !cx.private {
            return Err(ClusterError::Unauthenticated(
                "a password is taken only over TLS: log in with `corral login`, which checks the cluster's CA".into(),
            ));
        }
        let user = user.trim().to_string();
        if user.is_empty() || user.len() > 256 || password.len() > MAX_PASSWORD {
            return Err(ClusterError::invalid("user", "give a user name and a password"));
        }
        // A session lasts at most SESSION_TTL; asking for more gets that.
        let expires_ms = ttl(ttl_seconds.min(SESSION_TTL.as_secs()), SESSION_TTL, SESSION_TTL)?;
        if !self.has_users().await? {
            return Err(ClusterError::FailedPrecondition(
                "this cluster has no users yet (cluster level 2 has them): run `corral cluster upgrade`".into(),
            ));
        }
        let source = cx.peer.map(|p| p.ip().to_string()).unwrap_or_else(|| "the local socket".into());
        let entry = self.node().logins.entry(&user, &source);
        // Attempts for one user from one source take turns, each after its wait.
        let mut failures = entry.lock().await;
        if failures.last.is_some_and(|l| l.elapsed() > FORGET_AFTER) {
            *failures = Failures::default();
        }
        tokio::time::sleep(login_delay(failures.count)).await;
        let hash =
            self.node().cluster.read(false, |s| s.auth.users.get(&user).map(|u| u.password_hash.clone())).await?;
        let has_user = hash.is_some();
        let ok = {
            let _permit = self.node().logins.hashing().await;
            verify(password, hash.flatten()).await
        };
        if !ok {
            failures.count += 1;
            failures.last = Some(Instant::now());
            let count = failures.count;
            tracing::warn!(user = %corral_raft::error::quote(&user), %source, count, "failed login");
            // Recorded for users that exist (a flood of made-up names writes nothing).
            // In the background: the answer must take as long for a user that does not exist.
            if has_user && recorded(count) {
                let op = Op::LoginFailed { user: user.clone(), source: source.clone(), failures: count };
                let cluster = self.node().cluster.clone();
                tokio::spawn(async move {
                    if let Err(e) = cluster.write(None, op).await {
                        tracing::warn!(error = %e, "cannot record a failed login");
                    }
                });
            }
            // The same answer whether the user exists or not.
            return Err(ClusterError::Unauthenticated("wrong user name or password".into()));
        }
        *failures = Failures::default();
        drop(failures);
        let token = secret("session");
        let op = Op::StartSession { hash: secret_hash(&token), user: user.clone(), expires_ms, source };
        self.node().cluster.write(None, op).await?;
        Ok(LoginResponse { token, expires_unix_ms: expires_ms, user })
    }

    pub async fn logout(&self, cx: &Caller, _req: LogoutRequest) -> Result<LogoutResponse, ClusterError> {
        let Some(token) = &cx.bearer else {
            return Err(ClusterError::invalid(
                "authorization",
                "logout ends the session the call carries; it has none",
            ));
        };
        let op = self.node().permit(cx, &[], Op::EndSession { hash: secret_hash(token) }).await?;
        self.node().cluster.write(None, op).await?;
        Ok(LogoutResponse {})
    }

    pub async fn who_am_i(&self, cx: &Caller, _req: WhoAmIRequest) -> Result<WhoAmIResponse, ClusterError> {
        let who = self.node().who(cx).await?;
        self.node()
            .cluster
            .read(false, |s| {
                let grants = who.grants(s)?;
                let holds = grants.holds().iter().map(|p| p.word().to_string()).collect();
                Ok(match &who {
                    Who::Unchecked => WhoAmIResponse {
                        user: String::new(),
                        via: "none (this cluster has no users below level 2)".into(),
                        holds,
                        ..Default::default()
                    },
                    Who::Actor { actor, via, expires_ms, .. } => {
                        let (permissions, groups) = match actor {
                            Actor::Local => (Vec::new(), Vec::new()),
                            Actor::User(u) => {
                                let subjects = s.auth.subjects_of(u);
                                (
                                    s.auth
                                        .permissions
                                        .iter()
                                        .filter(|p| subjects.contains(&p.subject))
                                        .map(|p| name_of(s, p))
                                        .collect(),
                                    subjects[1..]
                                        .iter()
                                        .filter_map(|g| match g {
                                            Subject::Group(g) => Some(g.clone()),
                                            Subject::User(_) => None,
                                        })
                                        .collect(),
                                )
                            }
                        };
                        WhoAmIResponse {
                            user: actor.name().to_string(),
                            via: via.to_string(),
                            expires_unix_ms: *expires_ms,
                            permissions,
                            groups,
                            holds,
                        }
                    }
                })
            })
            .await?
    }

    /// A user changing their own password proves it with the current one (when they have one),
    /// slowed like a login.
    async fn check_current(&self, cx: &Caller, name: &str, current: String) -> Result<(), ClusterError> {
        let hash =
            self.node().cluster.read(false, |s| s.auth.users.get(name).and_then(|u| u.password_hash.clone())).await?;
        let Some(hash) = hash else { return Ok(()) };
        if current.is_empty() {
            return Err(ClusterError::invalid(
                "current_password",
                "changing your own password needs the current one (--current-password-file, or asked on a terminal)",
            ));
        }
        let source = cx.peer.map(|p| p.ip().to_string()).unwrap_or_else(|| "the local socket".into());
        let entry = self.node().logins.entry(name, &source);
        let mut failures = entry.lock().await;
        tokio::time::sleep(login_delay(failures.count)).await;
        let ok = {
            let _permit = self.node().logins.hashing().await;
            verify(current, Some(hash)).await
        };
        if !ok {
            failures.count += 1;
            failures.last = Some(Instant::now());
            return Err(ClusterError::Unauthenticated("the current password is wrong".into()));
        }
        *failures = Failures::default();
        Ok(())
    }

    pub async fn create_user(&self, cx: &Caller, req: CreateUserRequest) -> Result<User, ClusterError> {
        let CreateUserRequest { name, password } = req;
        corral_raft::validate::name("user", &name)?;
        let password_hash = if password.is_empty() {
            None
        } else {
            check_password(&password)?;
            Some(hash_password(password).await?)
        };
        self.manage(cx, None, Op::CreateUser { name: name.clone(), password_hash }).await?;
        self.get_user(cx, UserRef { name }).await
    }

    pub async fn list_users(&self, cx: &Caller, _req: ListUsersRequest) -> Result<ListUsersResponse, ClusterError> {
        let users =
            self.read_managed(cx, None, |s| Ok(s.auth.users.values().map(|u| user_to_proto(s, u)).collect())).await?;
        Ok(ListUsersResponse { users })
    }

    pub async fn get_user(&self, cx: &Caller, req: UserRef) -> Result<User, ClusterError> {
        let name = req.name;
        self.read_managed(cx, Some(&name), |s| {
            s.auth
                .users
                .get(&name)
                .map(|u| user_to_proto(s, u))
                .ok_or_else(|| ClusterError::NotFound(format!("user '{}' not found", corral_raft::error::quote(&name))))
        })
        .await
    }

    pub async fn delete_user(&self, cx: &Caller, req: UserRef) -> Result<AuthDone, ClusterError> {
        self.manage(cx, None, Op::DeleteUser { name: req.name }).await?;
        Ok(AuthDone {})
    }

    pub async fn set_password(&self, cx: &Caller, req: SetPasswordRequest) -> Result<User, ClusterError> {
        let SetPasswordRequest { name, password, current_password } = req;
        if self.node().who(cx).await?.is_user(&name) {
            self.check_current(cx, &name, current_password).await?;
        }
        let password_hash = if password.is_empty() {
            None
        } else {
            check_password(&password)?;
            Some(hash_password(password).await?)
        };
        self.manage(cx, Some(&name), Op::SetPassword { name: name.clone(), password_hash }).await?;
        // The change ended the user's sessions, the caller's own too when it was their password:
        // the answer comes from the state the write made, not through a new check.
        self.node()
            .cluster
            .read(true, |s| s.auth.users.get(&name).map(|u| user_to_proto(s, u)))
            .await?
            .ok_or_else(|| ClusterError::NotFound(format!("user '{}' not found", corral_raft::error::quote(&name))))
    }

    pub async fn create_group(&self, cx: &Caller, req: CreateGroupRequest) -> Result<Group, ClusterError> {
        let CreateGroupRequest { name, users } = req;
        self.manage(cx, None, Op::CreateGroup { name: name.clone(), users }).await?;
        self.get_group(cx, GroupRef { name }).await
    }

    pub async fn list_groups(&self, cx: &Caller, _req: ListGroupsRequest) -> Result<ListGroupsResponse, ClusterError> {
        let groups =
            self.read_managed(cx, None, |s| Ok(s.auth.groups.values().map(|g| group_to_proto(s, g)).collect())).await?;
        Ok(ListGroupsResponse { groups })
    }

    pub async fn get_group(&self, cx: &Caller, req: GroupRef) -> Result<Group, ClusterError> {
        let name = req.name;
        self.read_managed(cx, None, |s| {
            s.auth.groups.get(&name).map(|g| group_to_proto(s, g)).ok_or_else(|| {
                ClusterError::NotFound(format!("group '{}' not found", corral_raft::error::quote(&name)))
            })
        })
        .await
    }

    pub async fn edit_group(&self, cx: &Caller, req: EditGroupRequest) -> Result<Group, ClusterError> {
        let EditGroupRequest { name, users, set_users, add, remove } = req;
        if !set_users && add.is_empty() && remove.is_empty() {
            return Err(ClusterError::invalid("group", "nothing to change: give --users, --add or --remove"));
        }
        let op = Op::EditGroup { name: name.clone(), users: set_users.then_some(users), add, remove };
        self.manage(cx, None, op).await?;
        self.get_group(cx, GroupRef { name }).await
    }

    pub async fn delete_group(&self, cx: &Caller, req: GroupRef) -> Result<AuthDone, ClusterError> {
        self.manage(cx, None, Op::DeleteGroup { name: req.name }).await?;
        Ok(AuthDone {})
    }

    /// Roles are public: anyone who may call at all can read what each role grants.
    pub async fn list_roles(&self, cx: &Caller, _req: ListRolesRequest) -> Result<ListRolesResponse, ClusterError> {
        let who = self.node().who(cx).await?;
        let roles = self
            .node()
            .cluster
            .read(false, |s| {
                who.grants(s)?;
                let names =
                    model::PREDEFINED_ROLES.iter().map(|r| r.name.to_string()).chain(s.auth.roles.keys().cloned());
                Ok::<_, ClusterError>(names.filter_map(|n| role_to_proto(s, &n)).collect())
            })
            .await??;
        Ok(ListRolesResponse { roles })
    }

    pub async fn get_role(&self, cx: &Caller, req: RoleRef) -> Result<Role, ClusterError> {
        let who = self.node().who(cx).await?;
        let name = req.name;
        self.node()
            .cluster
            .read(false, |s| {
                who.grants(s)?;
                role_to_proto(s, &name).ok_or_else(|| {
                    ClusterError::NotFound(format!(
                        "role '{}' not found (`corral role list` shows them)",
                        corral_raft::error::quote(&name)
                    ))
                })
            })
            .await?
    }

    pub async fn create_role(&self, cx: &Caller, req: RoleRequest) -> Result<Role, ClusterError> {
        let permissions = perms(&req.permissions)?;
        self.manage(cx, None, Op::CreateRole { name: req.name.clone(), permissions }).await?;
        self.get_role(cx, RoleRef { name: req.name }).await
    }

    pub async fn edit_role(&self, cx: &Caller, req: RoleRequest) -> Result<Role, ClusterError> {
        let permissions = perms(&req.permissions)?;
        self.manage(cx, None, Op::EditRole { name: req.name.clone(), permissions }).await?;
        self.get_role(cx, RoleRef { name: req.name }).await
    }

    pub async fn delete_role(&self, cx: &Caller, req: RoleRef) -> Result<AuthDone, ClusterError> {
        self.manage(cx, None, Op::DeleteRole { name: req.name }).await?;
        Ok(AuthDone {})
    }

    /// A permission from its request, its object looked up (linearizably: it may be new).
    async fn permission(&self, req: &PermissionRequest) -> Result<model::Permission, ClusterError> {
        let subject = subject(&req.user, &req.group)?;
        if req.role.trim().is_empty() {
            return Err(ClusterError::invalid("role", "give the role, e.g. --role UserRole"));
        }
        let on = req.on.trim().to_string();
        let on = self.node().cluster.read(false, |s| s.parse_target(&on)).await??;
        Ok(model::Permission { subject, role: req.role.trim().to_string(), on })
    }

    /// Adding or removing a permission: apply decides whether the caller may (user.manage, or
    /// vm.permissions on the VM and every permission of the role there).
    async fn change_permission(&self, cx: &Caller, op: Op, on: Target) -> Result<(), ClusterError> {
        if !self.has_users().await? {
            return Err(ClusterError::FailedPrecondition(format!(
                "users and permissions need cluster level {}: run `corral cluster upgrade` first",
                corral_raft::apply::auth::AUTH_LEVEL
            )));
        }
        // A VM the caller may not see does not exist for them.
        if let Target::Vm(id) = on {
            let name = self.node().cluster.state()?.read(|s| s.vms.get(&id).map(|v| v.config.name.clone()));
            if let Some(name) = name {
                self.node().check(cx, &[(Operation::VmShow, Obj::Vm(&name))]).await?;
            }
        }
        let op = self.node().permit(cx, &[], op).await?;
        self.node().cluster.write(cx.request_id()?, op).await?;
        Ok(())
    }

    pub async fn add_permission(&self, cx: &Caller, req: PermissionRequest) -> Result<Permission, ClusterError> {
        let p = self.permission(&req).await?;
        self.change_permission(cx, Op::AddPermission { permission: p.clone() }, p.on).await?;
        Ok(self.node().cluster.state()?.read(|s| name_of(s, &p)))
    }

    pub async fn remove_permission(&self, cx: &Caller, req: PermissionRequest) -> Result<AuthDone, ClusterError> {
        let p = self.permission(&req).await?;
        self.change_permission(cx, Op::RemovePermission { permission: p.clone() }, p.on).await?;
        Ok(AuthDone {})
    }

    /// Every permission to a user with user.manage; to others, their own and those on the VMs
    /// where they may assign permissions.
    pub async fn list_permissions(
        &self,
        cx: &Caller,
        req: ListPermissionsRequest,
    ) -> Result<ListPermissionsResponse, ClusterError> {
        let who = self.node().who(cx).await?;
        let ListPermissionsRequest { on, user, group } = req;
        let on_text = on.clone();
        let permissions = self
            .node()
            .cluster
            .read(false, |s| {
                let grants = who.grants(s)?;
                let on = (!on.trim().is_empty()).then(|| s.parse_target(on.trim())).transpose()?;
                if let Some(Target::Vm(id)) = on {
                    if !grants.can(Perm::VmView, Target::Vm(id)) {
                        return Err(ClusterError::vm_not_found(on_text.trim().trim_start_matches("vm:")));
                    }
                }
                let mine = match who.actor() {
                    Some(Actor::User(u)) => s.auth.subjects_of(u),
                    _ => Vec::new(),
                };
                let all = grants.can(Perm::UserManage, Target::System);
                Ok::<_, ClusterError>(
                    s.auth
                        .permissions
                        .iter()
                        .filter(|p| on.is_none_or(|t| p.on == t))
                        .filter(|p| user.is_empty() || p.subject == Subject::User(user.clone()))
                        .filter(|p| group.is_empty() || p.subject == Subject::Group(group.clone()))
                        .filter(|p| all || mine.contains(&p.subject) || grants.can(Perm::VmPermissions, p.on))
                        .map(|p| name_of(s, p))
                        .collect(),
                )
            })
            .await??;
        Ok(ListPermissionsResponse { permissions })
    }

    pub async fn create_api_token(
        &self,
        cx: &Caller,
        req: CreateApiTokenRequest,
    ) -> Result<CreateApiTokenResponse, ClusterError> {
        let CreateApiTokenRequest { user, name, ttl_seconds } = req;
        corral_raft::validate::name("name", &name)?;
        let expires_ms = ttl(ttl_seconds, API_TOKEN_TTL, MAX_API_TOKEN_TTL)?;
        let token = secret("api");
        let op = Op::CreateApiToken { hash: secret_hash(&token), user: user.clone(), name: name.clone(), expires_ms };
        self.manage(cx, Some(&user), op).await?;
        Ok(CreateApiTokenResponse { token, name, expires_unix_ms: expires_ms })
    }

    pub async fn list_api_tokens(&self, cx: &Caller, req: UserRef) -> Result<ListApiTokensResponse, ClusterError> {
        let name = req.name;
        let now = now_ms();
        let tokens = self
            .read_managed(cx, Some(&name), |s| {
                if !s.auth.users.contains_key(&name) {
                    return Err(ClusterError::NotFound(format!(
                        "user '{}' not found",
                        corral_raft::error::quote(&name)
                    )));
                }
                let mut t: Vec<ApiToken> = s
                    .auth
                    .api_tokens
                    .values()
                    .filter(|c| c.user == name && c.expires_ms > now)
                    .map(|c| ApiToken {
                        name: c.name.clone(),
                        created_unix_ms: c.created_ms,
                        expires_unix_ms: c.expires_ms,
                    })
                    .collect();
                t.sort_by(|a, b| a.name.cmp(&b.name));
                Ok(t)
            })
            .await?;
        Ok(ListApiTokensResponse { tokens })
    }

    pub async fn revoke_api_token(&self, cx: &Caller, req: RevokeApiTokenRequest) -> Result<AuthDone, ClusterError> {
        let RevokeApiTokenRequest { user, name } = req;
        self.manage(cx, Some(&user), Op::RevokeApiToken { user: user.clone(), name }).await?;
        Ok(AuthDone {})
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn logins_slow_down_and_stay_bounded() {
        assert_eq!(login_delay(0), Duration::ZERO);
        assert_eq!(login_delay(2), Duration::ZERO);
        assert_eq!(login_delay(3), Duration::from_millis(100));
        assert_eq!(login_delay(4), Duration::from_millis(200));
        assert_eq!(login_delay(20), MAX_LOGIN_DELAY);
        assert_eq!(login_delay(u32::MAX), MAX_LOGIN_DELAY);
    }

    #[test]
    fn secrets_are_random_and_say_what_they_are() {
        let a = secret("api");
        assert!(a.starts_with("corral-api-") && a.len() == "corral-api-".len() + 64);
        assert_ne!(a, secret("api"));
    }
}
