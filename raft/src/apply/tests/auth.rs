//! Users, roles and permissions: the permission matrix against the published table
//! (docs/ROLES.md), and the rules apply keeps for them.

use super::*;
use crate::model::auth::*;

fn with_users() -> ClusterState {
    let mut s = three_hosts([4096; 3], 4, crate::model::DomainType::Test);
    assert!(s.apply_command(&cmd(T0, Op::SetClusterLevel { level: 2 })).0.is_ok());
    assert!(s.auth.users.contains_key(ADMIN_USER), "the level that has users makes admin");
    for vm in ["web1", "web2"] {
        assert!(create(&mut s, vm).0.is_ok());
    }
    for (name, vm) in [("d1", "web1"), ("d2", "web2")] {
        let id = Uuid::new_v4();
        let vm = s.vm_names[vm];
        s.disks.insert(
            id,
            Disk {
                id,
                name: name.into(),
                size_mib: 1,
                file: format!("{id}.qcow2"),
                format: "qcow2".into(),
                vm: Some(vm),
                created_ms: T0,
                base: None,
            },
        );
    }
    for n in ["i1", "i2"] {
        let id = Uuid::new_v4();
        let iso = crate::model::Iso {
            id,
            name: n.into(),
            description: String::new(),
            file: format!("{id}.iso"),
            size_bytes: 1,
            sha256: String::new(),
            bootable: true,
            os: String::new(),
            created_ms: T0,
        };
        s.library.isos.insert(id, iso);
    }
    for n in ["t1", "t2"] {
        let id = Uuid::new_v4();
        let config = Box::new(s.vms[&s.vm_names["web1"]].config.clone());
        let t = crate::model::Template {
            id,
            name: n.into(),
            description: String::new(),
            config,
            disks: Vec::new(),
            from_vm: "web1".into(),
            created_ms: T0,
        };
        s.library.templates.insert(id, t);
    }
    assert!(s.apply_command(&cmd(T0, Op::CreateUser { name: "alice".into(), password_hash: None })).0.is_ok());
    s
}

fn alice() -> Actor {
    Actor::User("alice".into())
}

fn grant(s: &mut ClusterState, role: &str, on: Target) {
    let p = Permission { subject: Subject::User("alice".into()), role: role.into(), on };
    let r = s.apply_command(&cmd(T0 + 2, Op::AddPermission { permission: p }));
    assert!(r.0.is_ok(), "{r:?}");
}

/// Whether alice may do `perm` on `target`, as apply decides a write made for her.
fn allowed(s: &ClusterState, perm: Perm, target: Target) -> bool {
    let mut s = s.clone();
    let op = Op::OnBehalf {
        actor: alice(),
        credential: None,
        needs: vec![(perm, target)],
        op: Box::new(Op::RecordEvent { kind: EventKind::ClusterEdited, message: "probe.".into() }),
    };
    match s.apply_command(&cmd(T0 + 3, op)).0 {
        Ok(_) => true,
        Err(ClusterError::PermissionDenied(_)) => false,
        Err(e) => panic!("not a permission answer: {e}"),
    }
}

/// The published table: role -> the permissions it has a "yes" for.
fn published() -> BTreeMap<String, BTreeSet<String>> {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/ROLES.md");
    let text = std::fs::read_to_string(path).expect("docs/ROLES.md (generate it: see its first lines)");
    let mut lines = text.lines().skip_while(|l| !l.starts_with("| permission |"));
    let header: Vec<String> = lines.next().unwrap().split('|').map(|c| c.trim().to_string()).collect();
    let mut out: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for line in lines.skip(1).take_while(|l| l.starts_with('|')) {
        let cells: Vec<&str> = line.split('|').map(str::trim).collect();
        for (i, cell) in cells.iter().enumerate() {
            if *cell == "yes" {
                out.entry(header[i].clone()).or_default().insert(cells[1].to_string());
            }
        }
    }
    out
}

use std::collections::{BTreeMap, BTreeSet};

#[test]
fn roles_table_is_published() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/ROLES.md");
    let text = std::fs::read_to_string(path).unwrap_or_default();
    assert!(
        text == roles_table(),
        "docs/ROLES.md differs from the roles in the code: run `cargo run -p corral-raft --example roles-table > docs/ROLES.md`"
    );
}

/// Every predefined role x every permission-guarded operation, with the role given on the
/// object, on a sibling object and on its parent, against the published table.
#[test]
fn permission_matrix() {
    let table = published();
    let base = with_users();
    let web1 = Target::Vm(base.vm_names["web1"]);
    let web2 = Target::Vm(base.vm_names["web2"]);
    let disk = |n: &str| Target::Disk(base.disks.values().find(|d| d.name == n).unwrap().id);
    let iso = |n: &str| Target::Iso(base.library.iso(n).unwrap().id);
    let template = |n: &str| Target::Template(base.library.template(n).unwrap().id);
    let mut checked = 0;
    for role in PREDEFINED_ROLES {
        let grants = table.get(role.name).cloned().unwrap_or_default();
        for op in Operation::ALL {
            let def = op.def();
            let expected = grants.contains(def.perm.word());
            // (the object, a sibling, its parent)
            let (object, sibling, parent) = match def.on {
                "vm" => (web1, Some(web2), Target::Cluster),
                "disk" => (disk("d1"), Some(disk("d2")), Target::Cluster),
                "host" => (Target::Host(1), Some(Target::Host(2)), Target::Cluster),
                "iso" => (iso("i1"), Some(iso("i2")), Target::Cluster),
                "template" => (template("t1"), Some(template("t2")), Target::Cluster),
                "cluster" => (Target::Cluster, Some(Target::Host(1)), Target::System),
                "system" => (Target::System, Some(Target::Cluster), Target::System),
                other => panic!("an operation on '{other}'"),
            };
            let mut on_object = base.clone();
            grant(&mut on_object, role.name, object);
            assert_eq!(
                allowed(&on_object, def.perm, object),
                expected,
                "{} on {object:?}: {} ({})",
                role.name,
                def.command,
                def.perm
            );
            if let Some(sibling) = sibling {
                let mut on_sibling = base.clone();
                grant(&mut on_sibling, role.name, sibling);
                assert!(
                    !allowed(&on_sibling, def.perm, object),
                    "{} on a sibling {sibling:?} allows {} on {object:?}",
                    role.name,
                    def.command
                );
            }
            let mut on_parent = base.clone();
            grant(&mut on_parent, role.name, parent);
            assert_eq!(
                allowed(&on_parent, def.perm, object),
                expected,
                "{} on the parent {parent:?}: {}",
                role.name,
                def.command
            );
            checked += 1;
        }
    }
    assert_eq!(checked, PREDEFINED_ROLES.len() * Operation::ALL.len());
    // The table covers every role and permission of the code, and nothing else.
    let words: BTreeSet<String> = Perm::ALL.iter().map(|p| p.word().to_string()).collect();
    for (role, perms) in &table {
        assert!(predefined(role).is_some(), "the table has a role '{role}' the code does not");
        assert!(perms.is_subset(&words), "{role}: {perms:?}");
    }
}

#[test]
fn refusals_name_user_permission_object_and_roles() {
    let mut s = with_users();
    let web1 = Target::Vm(s.vm_names["web1"]);
    grant(&mut s, "UserRole", web1);
    let e = s.authorize(&alice(), "delete", &[(Perm::VmDelete, web1)]).unwrap_err();
    assert_eq!(e.to_string(), "alice may not delete vm web1 (needs vm.delete; has UserRole on vm:web1)");
    let e = s.authorize(&alice(), "migrate", &[(Perm::VmMigrate, Target::Vm(s.vm_names["web2"]))]).unwrap_err();
    assert_eq!(e.to_string(), "alice may not migrate vm web2 (needs vm.migrate; has no role on vm:web2 or above)");
    assert!(s.authorize(&Actor::Local, "delete", &[(Perm::UserManage, Target::System)]).is_ok());
}

#[test]
fn creators_manage_their_vms_and_permissions_go_with_their_objects() {
    let mut s = with_users();
    grant(&mut s, "PowerUserRole", Target::Cluster);
    let id = Uuid::new_v4();
    let op = Op::OnBehalf {
        actor: alice(),
        credential: None,
        needs: vec![(Perm::VmCreate, Target::Cluster)],
        op: Box::new(Op::CreateVm { id, spec: spec("mine"), disks: vec![], start: None }),
    };
    let applied = s.apply_entry(&cmd(T0 + 4, op));
    assert!(applied.reply.0.is_ok(), "{:?}", applied.reply);
    assert!(applied.touched.contains(&id), "the new VM's OVF document is written");
    let grants = s.auth.grants(&alice());
    assert!(grants.can(Perm::VmDelete, Target::Vm(id)), "the creator is its UserVmManager");
    assert!(!grants.can(Perm::VmDelete, Target::Vm(s.vm_names["web1"])));
    let event = s.events.back().unwrap();
    assert_eq!(event.user.as_deref(), Some("alice"));
    assert!(event.message.contains("by alice"), "{}", event.message);
    // Deleting the VM drops the permissions on it.
    let op = Op::OnBehalf {
        actor: alice(),
        credential: None,
        needs: vec![(Perm::VmDelete, Target::Vm(id))],
        op: Box::new(Op::DeleteVm { vm: "mine".into(), keep_disks: false }),
    };
    assert!(s.apply_command(&cmd(T0 + 5, op)).0.is_ok());
    assert!(!s.auth.permissions.iter().any(|p| p.on == Target::Vm(id)));
    // A user who is gone, or whose session is, is refused.
    let op = |credential: Option<String>| Op::OnBehalf {
        actor: alice(),
        credential,
        needs: vec![],
        op: Box::new(Op::RecordEvent { kind: EventKind::ClusterEdited, message: "x.".into() }),
    };
    assert!(matches!(
        s.apply_command(&cmd(T0 + 6, op(Some("nohash".into())))).0,
        Err(ClusterError::Unauthenticated(_))
    ));
    let start =
        Op::StartSession { hash: "h".into(), user: "alice".into(), expires_ms: T0 + 100, source: "127.0.0.1".into() };
    assert!(s.apply_command(&cmd(T0 + 6, start)).0.is_ok());
    assert!(s.apply_command(&cmd(T0 + 7, op(Some("h".into())))).0.is_ok());
    assert!(s.apply_command(&cmd(T0 + 200, op(Some("h".into())))).0.is_err(), "expired");
    assert!(s.apply_command(&cmd(T0 + 8, Op::DeleteUser { name: "alice".into() })).0.is_ok());
    assert!(matches!(s.apply_command(&cmd(T0 + 9, op(None))).0, Err(ClusterError::Unauthenticated(_))));
}

#[test]
fn no_one_grants_more_than_they_hold() {
    let mut s = with_users();
    let web1 = Target::Vm(s.vm_names["web1"]);
    grant(&mut s, "UserVmManager", web1);
    assert!(s.apply_command(&cmd(T0, Op::CreateUser { name: "bob".into(), password_hash: None })).0.is_ok());
    let give = |role: &str, on: Target| Op::OnBehalf {
        actor: alice(),
        credential: None,
        needs: vec![],
        op: Box::new(Op::AddPermission {
            permission: Permission { subject: Subject::User("bob".into()), role: role.into(), on },
        }),
    };
    assert!(s.apply_command(&cmd(T0, give("UserRole", web1))).0.is_ok());
    let r = s.apply_command(&cmd(T0, give("SuperUser", web1))).0.unwrap_err();
    assert!(r.to_string().contains("may not give SuperUser on vm:web1"), "{r}");
    let r = s.apply_command(&cmd(T0, give("UserRole", Target::Cluster))).0.unwrap_err();
    assert!(r.to_string().contains("needs user.manage"), "{r}");
    // Predefined roles are read-only; a role in use cannot go.
    let r = s.apply_command(&cmd(T0, Op::EditRole { name: "UserRole".into(), permissions: vec![Perm::VmView] }));
    assert!(r.0.unwrap_err().to_string().contains("predefined"));
    let mk = Op::CreateRole { name: "Viewer".into(), permissions: vec![Perm::VmView, Perm::VmConsole] };
    assert!(s.apply_command(&cmd(T0, mk)).0.is_ok());
    grant(&mut s, "Viewer", web1);
    let r = s.apply_command(&cmd(T0, Op::DeleteRole { name: "Viewer".into() })).0.unwrap_err();
    assert!(r.to_string().contains("still given"), "{r}");
}

#[test]
fn users_need_the_level_that_has_them() {
    let mut s = three_hosts([4096; 3], 4, crate::model::DomainType::Test);
    refused(
        &mut s,
        Op::CreateUser { name: "alice".into(), password_hash: None },
        "users and permissions need cluster level 2: run `corral cluster upgrade` first",
    );
}

#[test]
fn user_managers_cannot_make_themselves_more() {
    let mut s = with_users();
    // alice may manage users (a custom role with user.manage alone, on the system).
    let mk = Op::CreateRole { name: "Accounts".into(), permissions: vec![Perm::UserManage] };
    assert!(s.apply_command(&cmd(T0, mk)).0.is_ok());
    grant(&mut s, "Accounts", Target::System);
    let as_alice = |op: Op| Op::OnBehalf { actor: alice(), credential: None, needs: vec![], op: Box::new(op) };
    let denied = |s: &mut ClusterState, op: Op, want: &str| {
        let e = s.apply_command(&cmd(T0 + 1, as_alice(op))).0.unwrap_err();
        assert!(matches!(e, ClusterError::PermissionDenied(_)) && e.to_string().contains(want), "{e}");
    };
    // Not by widening her role, nor a new one.
    let all: Vec<Perm> = Perm::ALL.to_vec();
    denied(&mut s, Op::EditRole { name: "Accounts".into(), permissions: all.clone() }, "may not make role Accounts");
    denied(&mut s, Op::CreateRole { name: "Everything".into(), permissions: all }, "may not make role Everything");
    // Not by joining a group of SuperUsers.
    assert!(s.apply_command(&cmd(T0, Op::CreateGroup { name: "admins".into(), users: vec![] })).0.is_ok());
    let p = Permission { subject: Subject::Group("admins".into()), role: SUPER_ROLE.into(), on: Target::System };
    assert!(s.apply_command(&cmd(T0, Op::AddPermission { permission: p })).0.is_ok());
    let join = Op::EditGroup { name: "admins".into(), users: None, add: vec!["alice".into()], remove: vec![] };
    denied(&mut s, join, "may not change the members of group admins");
    // Not by taking over admin's account.
    let pw = Op::SetPassword { name: ADMIN_USER.into(), password_hash: Some("x".into()) };
    denied(&mut s, pw, "may not set the password of admin");
    let token =
        Op::CreateApiToken { hash: "h".into(), user: ADMIN_USER.into(), name: "mine".into(), expires_ms: T0 + 9 };
    denied(&mut s, token, "may not make an API token for admin");
    // She still manages users who hold no more than she does.
    let bob = Op::CreateUser { name: "bob".into(), password_hash: None };
    assert!(s.apply_command(&cmd(T0, as_alice(bob))).0.is_ok());
    let pw = Op::SetPassword { name: "bob".into(), password_hash: Some("y".into()) };
    assert!(s.apply_command(&cmd(T0, as_alice(pw))).0.is_ok());
}

#[test]
fn a_renamed_vm_is_not_the_one_checked() {
    let mut s = with_users();
    let web1 = s.vm_names["web1"];
    grant(&mut s, "UserRole", Target::Vm(web1));
    // Checked against web1, but the name now belongs to another VM.
    let rename = |from: &str, to: &str| Op::EditVm {
        vm: from.into(),
        changes: VmChanges { name: Some(to.into()), ..Default::default() },
    };
    assert!(s.apply_command(&cmd(T0, rename("web1", "old1"))).0.is_ok());
    assert!(s.apply_command(&cmd(T0, rename("web2", "web1"))).0.is_ok());
    let op = Op::OnBehalf {
        actor: alice(),
        credential: None,
        needs: vec![(Perm::VmPower, Target::Vm(web1))],
        op: Box::new(Op::StopVm { vm: "web1".into(), reason: None }),
    };
    let e = s.apply_command(&cmd(T0 + 1, op)).0.unwrap_err();
    assert!(e.to_string().contains("no longer the VM that was checked"), "{e}");
}
