//! Users, groups, roles and permissions in oVirt's words, and the sessions and API tokens that
//! stand for a user. A permission gives a subject (a user or a group) a role on an object of the
//! tree system > cluster > {host, vm, disk, iso, template}; it holds for everything under that object. A role
//! is a set of named permissions ([`Perm`]); the predefined roles are in [`PREDEFINED_ROLES`],
//! read-only. Secrets are never stored: passwords as Argon2id PHC strings, sessions and API
//! tokens as the SHA-256 of a random 256-bit value.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::typ::NodeId;

macro_rules! perms {
    ($($id:ident = $word:literal: $meaning:literal;)*) => {
        /// One thing a role allows. The word of each (`vm.power`) is what users type and read.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
        pub enum Perm { $($id,)* }

        impl Perm {
            pub const ALL: [Perm; [$(Perm::$id,)*].len()] = [$(Perm::$id,)*];

            pub fn word(self) -> &'static str {
                match self { $(Perm::$id => $word,)* }
            }

            /// What holding it lets a user do, for `role show` and the published table.
            pub fn meaning(self) -> &'static str {
                match self { $(Perm::$id => $meaning,)* }
            }
        }
    };
}

perms! {
    VmView = "vm.view": "see the VM (list, show, its OVF document and disks)";
    VmCreate = "vm.create": "create, clone and import VMs";
    VmEdit = "vm.edit": "edit the VM's configuration";
    VmDelete = "vm.delete": "delete the VM";
    VmPower = "vm.power": "start, shut down, stop, reboot, suspend and resume the VM";
    VmConsole = "vm.console": "open the VM's console";
    VmMigrate = "vm.migrate": "live-migrate the VM and cancel its migration";
    VmSnapshot = "vm.snapshot": "create, preview, restore and delete the VM's snapshots";
    VmChangeCd = "vm.change_cd": "change the VM's CD";
    VmPermissions = "vm.permissions": "add and remove permissions on the VM";
    DiskView = "disk.view": "see disks";
    DiskCreate = "disk.create": "create disks (a VM's new disks included)";
    HostView = "host.view": "see hosts";
    HostManage = "host.manage": "maintenance, activate, edit and remove hosts";
    ClusterView = "cluster.view": "see the cluster's status, settings, affinity rules and hosted engine";
    ClusterManage = "cluster.manage": "edit and upgrade the cluster, affinity rules";
    EngineManage = "engine.manage": "hosted-engine maintenance and start";
    UserManage = "user.manage": "users, groups, roles and permissions, other users' tokens and certificates, join tokens and backups";
    AuditRead = "audit.read": "read every event (without it: only one's own)";
    IsoManage = "iso.manage": "add and delete ISOs of the library";
    TemplateCreate = "template.create": "make templates of VMs, and delete them";
    TemplateUse = "template.use": "see a template and create VMs from it (with vm.create there)";
}

impl Perm {
    pub fn parse(word: &str) -> Option<Perm> {
        Perm::ALL.into_iter().find(|p| p.word() == word)
    }

    /// This permission as one bit of a role's mask.
    pub fn bit(self) -> u32 {
        1 << (self as u32)
    }
}

/// The mask of a set of permissions.
pub fn mask(perms: impl IntoIterator<Item = Perm>) -> u32 {
    perms.into_iter().fold(0, |m, p| m | p.bit())
}

impl fmt::Display for Perm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.word())
    }
}

/// A predefined role: its name, what it is for, and its permissions. Read-only.
pub struct RoleDef {
    pub name: &'static str,
    pub description: &'static str,
    pub permissions: &'static [Perm],
}

use Perm::*;

/// oVirt's predefined roles, in the order `role list` shows them.
pub const PREDEFINED_ROLES: &[RoleDef] = &[
    RoleDef { name: "SuperUser", description: "administers everything", permissions: &Perm::ALL },
    RoleDef {
        name: "ClusterAdmin",
        description: "administers the cluster: its hosts, VMs, disks and rules",
        permissions: &[
            VmView,
            VmCreate,
            VmEdit,
            VmDelete,
            VmPower,
            VmConsole,
            VmMigrate,
            VmSnapshot,
            VmChangeCd,
            VmPermissions,
            DiskView,
            DiskCreate,
            HostView,
            HostManage,
            ClusterView,
            ClusterManage,
            AuditRead,
            IsoManage,
            TemplateCreate,
            TemplateUse,
        ],
    },
    RoleDef { name: "HostAdmin", description: "administers hosts", permissions: &[HostView, HostManage, ClusterView] },
    RoleDef {
        name: "ReadOnlyAdmin",
        description: "sees everything, changes nothing",
        permissions: &[VmView, DiskView, HostView, ClusterView, AuditRead],
    },
    RoleDef {
        name: "PowerUserRole",
        description: "creates VMs, disks and templates, and VMs from every template",
        permissions: &[VmCreate, DiskCreate, TemplateCreate, TemplateUse],
    },
    RoleDef { name: "VmCreator", description: "creates VMs", permissions: &[VmCreate] },
    RoleDef { name: "DiskCreator", description: "creates disks", permissions: &[DiskCreate] },
    RoleDef {
        name: "TemplateCreator",
        description: "makes templates of the VMs it may see",
        permissions: &[TemplateCreate],
    },
    RoleDef {
        name: "UserTemplateBasedVm",
        description: "creates VMs only from the templates it is given this role on (oVirt's)",
        permissions: &[VmCreate, TemplateUse],
    },
    RoleDef { name: "IsoManager", description: "adds and deletes the library's ISOs", permissions: &[IsoManage] },
    RoleDef {
        name: "UserVmManager",
        description: "edits, removes and uses a VM and assigns permissions on it; a VM's creator gets it",
        permissions: &[VmView, VmEdit, VmDelete, VmPower, VmConsole, VmSnapshot, VmChangeCd, VmPermissions, DiskView],
    },
    RoleDef {
        name: "UserRole",
        description: "uses the VMs it is given",
        permissions: &[VmView, VmPower, VmConsole, VmChangeCd, DiskView],
    },
];

/// The role a VM's creator gets on it.
pub const CREATOR_ROLE: &str = "UserVmManager";
/// The role of the user `admin`, made with the cluster (its certificate is what
/// `cluster credentials` gives without `--user`).
pub const SUPER_ROLE: &str = "SuperUser";
/// The user made with the cluster, SuperUser on the system.
pub const ADMIN_USER: &str = "admin";
/// How the host's root on corrald's local socket is named in events and refusals.
pub const LOCAL_ROOT: &str = "root@localhost";

pub fn predefined(name: &str) -> Option<&'static RoleDef> {
    PREDEFINED_ROLES.iter().find(|r| r.name == name)
}

/// An object of the permission tree, as stored: VMs, disks and hosts by id, so that a rename
/// keeps its permissions and a new object of an old name does not inherit them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum Target {
    System,
    Cluster,
    Host(NodeId),
    Vm(Uuid),
    Disk(Uuid),
    /// An ISO of the library (cluster level 5).
    Iso(Uuid),
    Template(Uuid),
}

impl Target {
    /// The object above this one (`None` for the system).
    pub fn parent(self) -> Option<Target> {
        match self {
            Target::System => None,
            Target::Cluster => Some(Target::System),
            Target::Host(_) | Target::Vm(_) | Target::Disk(_) | Target::Iso(_) | Target::Template(_) => {
                Some(Target::Cluster)
            }
        }
    }

    /// This object and every one above it, nearest first.
    pub fn lineage(self) -> impl Iterator<Item = Target> {
        std::iter::successors(Some(self), |t| t.parent())
    }

    pub fn kind(self) -> &'static str {
        match self {
            Target::System => "system",
            Target::Cluster => "cluster",
            Target::Host(_) => "host",
            Target::Vm(_) => "vm",
            Target::Disk(_) => "disk",
            Target::Iso(_) => "iso",
            Target::Template(_) => "template",
        }
    }
}

/// Who a permission is given to.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum Subject {
    User(String),
    Group(String),
}

impl fmt::Display for Subject {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Subject::User(u) => write!(f, "user {u}"),
            Subject::Group(g) => write!(f, "group {g}"),
        }
    }
}

/// Ordered by subject, then object: one subject's permissions are one run of the sorted list,
/// and its permissions on one object one run inside it (found by binary search).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Permission {
    pub subject: Subject,
    pub on: Target,
    pub role: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct User {
    pub name: String,
    pub created_ms: i64,
    /// Argon2id, PHC string; `None`: the user cannot log in with a password (a certificate or
    /// an API token still works).
    pub password_hash: Option<String>,
    #[serde(default)]
    pub password_changed_ms: i64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Group {
    pub name: String,
    pub users: BTreeSet<String>,
    pub created_ms: i64,
}

/// A custom role (the predefined ones are not stored).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Role {
    pub name: String,
    pub permissions: BTreeSet<Perm>,
    pub created_ms: i64,
}

/// A login's session or an API token: whose, since and until when. Stored under the SHA-256
/// (hex) of the secret.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Credential {
    pub user: String,
    /// An API token's name (unique per user); empty for a session.
    pub name: String,
    pub created_ms: i64,
    pub expires_ms: i64,
    /// Where a session's login came from.
    #[serde(default)]
    pub source: String,
}

/// Sessions a user keeps at most; the oldest goes first.
pub const MAX_SESSIONS_PER_USER: usize = 64;
/// API tokens a user keeps at most.
pub const MAX_TOKENS_PER_USER: usize = 64;

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuthState {
    pub users: BTreeMap<String, User>,
    pub groups: BTreeMap<String, Group>,
    pub roles: BTreeMap<String, Role>,
    /// Kept sorted.
    pub permissions: Vec<Permission>,
    /// Sessions by the SHA-256 of their secret.
    pub sessions: BTreeMap<String, Credential>,
    /// API tokens by the SHA-256 of their secret.
    pub api_tokens: BTreeMap<String, Credential>,
}

/// Who a write is made for: the host's root on the local socket, or a user.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Actor {
    Local,
    User(String),
}

impl Actor {
    pub fn name(&self) -> &str {
        match self {
            Actor::Local => LOCAL_ROOT,
            Actor::User(u) => u,
        }
    }
}

impl fmt::Display for Actor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl AuthState {
    /// The permissions of a role (predefined or custom), if it exists.
    pub fn role_permissions(&self, role: &str) -> Option<BTreeSet<Perm>> {
        match predefined(role) {
            Some(def) => Some(def.permissions.iter().copied().collect()),
            None => self.roles.get(role).map(|r| r.permissions.clone()),
        }
    }

    /// A role's permissions as a mask (0 for a role that does not exist).
    pub fn role_mask(&self, role: &str) -> u32 {
        match predefined(role) {
            Some(def) => mask(def.permissions.iter().copied()),
            None => self.roles.get(role).map_or(0, |r| mask(r.permissions.iter().copied())),
        }
    }

    /// The subjects a user acts as: itself and its groups.
    pub fn subjects_of(&self, user: &str) -> Vec<Subject> {
        let mut out = vec![Subject::User(user.to_string())];
        out.extend(self.groups.values().filter(|g| g.users.contains(user)).map(|g| Subject::Group(g.name.clone())));
        out
    }

    /// The run of the sorted permissions that `subject` holds.
    pub fn of_subject(&self, subject: &Subject) -> &[Permission] {
        let start = self.permissions.partition_point(|p| p.subject < *subject);
        let len = self.permissions[start..].partition_point(|p| p.subject == *subject);
        &self.permissions[start..start + len]
    }

    /// What `who` may do, gathered once per request: what it holds on the system and the
    /// cluster as two masks (one pass over its permissions there), and its permissions on one
    /// object by binary search when asked, so checking each of 10,000 VMs costs no scan.
    pub fn grants(&self, who: &Actor) -> Grants<'_> {
        let user = match who {
            Actor::Local => return Grants { all: true, auth: self, subjects: Vec::new(), system: 0, cluster: 0 },
            Actor::User(u) => u,
        };
        let mut g = Grants { all: false, auth: self, subjects: Vec::new(), system: 0, cluster: 0 };
        if !self.users.contains_key(user) {
            return g;
        }
        g.subjects = self.subjects_of(user);
        for subject in &g.subjects {
            // System and Cluster sort first among targets: the run's head.
            for p in self.of_subject(subject).iter().take_while(|p| matches!(p.on, Target::System | Target::Cluster)) {
                match p.on {
                    Target::System => g.system |= self.role_mask(&p.role),
                    _ => g.cluster |= self.role_mask(&p.role),
                }
            }
        }
        g
    }
}

/// One caller's permissions in one state.
#[derive(Debug, Clone)]
pub struct Grants<'a> {
    /// The host's root: everything.
    pub all: bool,
    auth: &'a AuthState,
    subjects: Vec<Subject>,
    /// What roles on the system give, and on the cluster.
    system: u32,
    cluster: u32,
}

impl<'a> Grants<'a> {
    /// Everything, in `auth` (a member's call, or a cluster without users).
    pub fn everything(auth: &'a AuthState) -> Grants<'a> {
        Grants { all: true, auth, subjects: Vec::new(), system: 0, cluster: 0 }
    }

    /// The mask the roles held on `t` itself give.
    fn on(&self, t: Target) -> u32 {
        match t {
            Target::System => self.system,
            Target::Cluster => self.cluster,
            _ => self.held_on(t).fold(0, |m, p| m | self.auth.role_mask(&p.role)),
        }
    }

    /// The permissions held on `t` itself.
    fn held_on(&self, t: Target) -> impl Iterator<Item = &'a Permission> + '_ {
        self.subjects.iter().flat_map(move |s| {
            let run = self.auth.of_subject(s);
            let start = run.partition_point(|p| p.on < t);
            run[start..].iter().take_while(move |p| p.on == t)
        })
    }

    /// Whether `perm` holds on `target` (given there or on an object above it).
    pub fn can(&self, perm: Perm, target: Target) -> bool {
        self.all || target.lineage().any(|t| self.on(t) & perm.bit() != 0)
    }

    /// Every permission held somewhere.
    pub fn holds(&self) -> BTreeSet<Perm> {
        if self.all {
            return Perm::ALL.into_iter().collect();
        }
        let m =
            self.subjects.iter().flat_map(|s| self.auth.of_subject(s)).fold(0, |m, p| m | self.auth.role_mask(&p.role));
        Perm::ALL.into_iter().filter(|p| m & p.bit() != 0).collect()
    }

    /// The roles held on `target` and above, as a refusal names them: "UserRole on vm:web1".
    pub fn roles_on(&self, target: Target, name: impl Fn(Target) -> String) -> Vec<String> {
        let mut out = Vec::new();
        for t in target.lineage() {
            for s in &self.subjects {
                let run = self.auth.of_subject(s);
                for p in run.iter().filter(|p| p.on == t) {
                    let line = format!("{} on {}", p.role, name(t));
                    if !out.contains(&line) {
                        out.push(line);
                    }
                }
            }
        }
        out
    }
}

/// The operations a permission guards, as the published table lists them: what a user types,
/// the verb a refusal uses, the permission, and the kind of object it is checked on.
pub struct OperationDef {
    pub command: &'static str,
    pub verb: &'static str,
    pub perm: Perm,
    pub on: &'static str,
}

macro_rules! operations {
    ($($id:ident = $command:literal, $verb:literal, $perm:ident on $on:literal;)*) => {
        /// Every operation that a permission guards.
        #[derive(Debug, Clone, Copy, PartialEq, Eq)]
        pub enum Operation { $($id,)* }
        impl Operation {
            pub const ALL: &'static [Operation] = &[$(Operation::$id,)*];
            pub fn def(self) -> OperationDef {
                match self { $(Operation::$id => OperationDef { command: $command, verb: $verb, perm: Perm::$perm, on: $on },)* }
            }
        }
    };
}

operations! {
    VmShow = "vm list, vm show, vm export, ovf dump", "see", VmView on "vm";
    VmCreate = "vm create, vm clone, vm import", "create VMs in", VmCreate on "cluster";
    VmImport = "vm import (the disks an OVF document names)", "import disks into", DiskView on "cluster";
    VmEdit = "vm edit, vm disk attach/detach/plug/unplug, vm nic add/remove/plug/unplug", "edit", VmEdit on "vm";
    VmChangeCd = "vm cd", "change the CD of", VmChangeCd on "vm";
    VmSnapshot = "vm snapshot create/list/show/preview/commit/undo/restore/delete", "manage the snapshots of", VmSnapshot on "vm";
    VmDelete = "vm delete", "delete", VmDelete on "vm";
    VmStart = "vm start", "start", VmPower on "vm";
    VmShutdown = "vm shutdown", "shut down", VmPower on "vm";
    VmStop = "vm stop", "stop", VmPower on "vm";
    VmReboot = "vm reboot", "reboot", VmPower on "vm";
    VmSuspend = "vm suspend, vm resume", "suspend or resume", VmPower on "vm";
    VmConsole = "vm console, vm console --vnc", "open the console of", VmConsole on "vm";
    VmMigrate = "vm migrate, vm cancel-migration", "migrate", VmMigrate on "vm";
    VmPermissions = "permission add/remove --on vm:NAME", "assign permissions on", VmPermissions on "vm";
    DiskShow = "disk list, disk show", "see", DiskView on "disk";
    DiskCreate = "vm create --disk, disk create, vm disk add", "create disks in", DiskCreate on "cluster";
    DiskAttach = "vm disk attach (the disk)", "attach", DiskCreate on "disk";
    DiskEdit = "disk resize, disk delete", "change", DiskCreate on "disk";
    HostShow = "host list, host show", "see", HostView on "host";
    HostMaintenance = "host maintenance", "put into maintenance", HostManage on "host";
    HostActivate = "host activate", "activate", HostManage on "host";
    HostEdit = "host edit", "edit", HostManage on "host";
    HostRemove = "host remove", "remove", HostManage on "host";
    ClusterStatus = "cluster status, affinity list/show, engine status", "see", ClusterView on "cluster";
    ClusterEdit = "cluster edit, cluster upgrade, affinity create/edit/delete", "change", ClusterManage on "cluster";
    ClusterTokens = "cluster token, cluster backup, cluster credentials", "manage the secrets of", UserManage on "system";
    EngineMaintenance = "engine maintenance, engine start", "manage the hosted engine of", EngineManage on "cluster";
    UserManage = "user, group, role, permission (any object)", "manage the users of", UserManage on "system";
    Events = "events (every user's)", "read the events of", AuditRead on "cluster";
    IsoAdd = "iso add", "add ISOs to", IsoManage on "cluster";
    IsoDelete = "iso delete", "delete", IsoManage on "iso";
    TemplateCreate = "template create (and vm.view on the VM)", "make templates in", TemplateCreate on "cluster";
    TemplateDelete = "template delete", "delete", TemplateCreate on "template";
    TemplateShow = "template list, template show", "see", TemplateUse on "template";
    TemplateUse = "vm create --template (and vm.create on the template)", "create VMs from", TemplateUse on "template";
    OfferingManage = "offering create/edit/delete", "manage the offerings of", ClusterManage on "cluster";
}

/// The published table of roles and permissions (docs/ROLES.md), made from the code above.
pub fn roles_table() -> String {
    let mut out = String::from(
        "# Roles and permissions\n\n\
         Generated from `raft/src/model/auth.rs` by `cargo run -p corral-raft --example roles-table`;\n\
         `roles_table_is_published` fails when this file and the code differ, and the permission-matrix\n\
         test checks every role against the table below.\n\n\
         A permission given on an object holds for every object under it: system > cluster > hosts,\n\
         VMs, disks, ISOs and templates. A user's permissions are the union of their own and their groups'. The host's\n\
         root on corrald's local socket is `root@localhost`, a SuperUser always.\n\n## Roles\n\n| permission |",
    );
    for r in PREDEFINED_ROLES {
        out.push_str(&format!(" {} |", r.name));
    }
    out.push_str("\n|---|");
    out.push_str(&"---|".repeat(PREDEFINED_ROLES.len()));
    out.push('\n');
    for p in Perm::ALL {
        out.push_str(&format!("| {} |", p.word()));
        for r in PREDEFINED_ROLES {
            out.push_str(if r.permissions.contains(&p) { " yes |" } else { " - |" });
        }
        out.push('\n');
    }
    out.push_str("\n## Permissions\n\n| permission | allows |\n|---|---|\n");
    for p in Perm::ALL {
        out.push_str(&format!("| {} | {} |\n", p.word(), p.meaning()));
    }
    out.push_str("\n## What each operation needs\n\n| operation | permission | checked on |\n|---|---|---|\n");
    for op in Operation::ALL {
        let d = op.def();
        out.push_str(&format!("| {} | {} | {} |\n", d.command, d.perm.word(), d.on));
    }
    out.push_str(
        "\nCreating a VM gives its creator UserVmManager on it. Granting a role on an object needs\n\
         user.manage (or vm.permissions on that VM) and every permission of the role on that object.\n\
         No one makes themselves more: making or changing a role needs each of its permissions on the\n\
         system; changing a group's members, or another user's password, API tokens or certificate,\n\
         needs every permission the group or user holds, where they hold it; join tokens and backups\n\
         (a new member's certificate, every password hash) need every permission on the system.\n\
         A user may always see and change their own password, sessions and API tokens, and read\n\
         their own events. Lists show only what the caller may see; a VM the caller may not see\n\
         does not exist for them. vm.snapshot guards snapshots (`vm clone --from-snapshot`\n\
         needs it on the source as well as vm.create and disk.create). Creating a VM from a\n\
         template needs template.use and vm.create on the template (or above it): UserTemplateBasedVm\n\
         given on template:NAME lets a user create VMs from that template only. Everyone logged in\n\
         sees the ISOs and offerings.\n\n## Roles described\n\n",
    );
    for r in PREDEFINED_ROLES {
        out.push_str(&format!("- **{}**: {}.\n", r.name, r.description));
    }
    out
}
