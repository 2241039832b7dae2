//! Users, roles and permissions as users meet them (issue 14): real corrald processes, the CLI
//! as each user runs it on their own machine (their own saved logins), over TLS.

use std::path::{Path, PathBuf};

use corral_cli::views::{EventView, VmView};
use corral_tests::{corral_as, CliOutput, Cluster};
use tempfile::TempDir;

/// A user's machine: their config dir (saved logins) and their password file.
struct Person {
    name: &'static str,
    home: TempDir,
}

impl Person {
    fn new(name: &'static str) -> Person {
        Person { name, home: tempfile::tempdir().unwrap() }
    }

    fn password_file(&self) -> PathBuf {
        let f = self.home.path().join("password");
        std::fs::write(&f, format!("{}-secret-pw\n", self.name)).unwrap();
        f
    }

    fn config(&self) -> &Path {
        self.home.path()
    }

    /// The CLI as this user, after `login` (no --endpoint: the login's is the default).
    fn run(&self, args: &[&str]) -> CliOutput {
        corral_as(self.config(), None, &[], args)
    }

    fn ok(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert_eq!(out.code, 0, "{} ran {args:?}: {}", self.name, out.stderr);
        out.stdout
    }

    fn refused(&self, args: &[&str], want: &str) -> String {
        let out = self.run(args);
        assert_ne!(out.code, 0, "{} ran {args:?} and it worked: {}", self.name, out.stdout);
        let line = out.stderr.trim().to_string();
        assert!(line.contains(want), "{} ran {args:?}: expected '{want}' in: {line}", self.name);
        line
    }

    fn vms(&self) -> Vec<String> {
        let out = self.ok(&["-o", "json", "vm", "list"]);
        let vms: Vec<VmView> = serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}: {out}"));
        vms.into_iter().map(|v| v.name).collect()
    }
}

/// Creates the user (by the host's root), writes the CA for them and logs them in on node `i`.
fn enrol(c: &Cluster, i: usize, p: &Person) {
    let pw = p.password_file();
    let pw = pw.to_str().unwrap();
    let out = c.local(0, &["user", "create", p.name, "--password-file", pw]);
    assert_eq!(out.code, 0, "user create {}: {}", p.name, out.stderr);
    login(c, i, p);
}

fn login(c: &Cluster, i: usize, p: &Person) {
    let ca = p.home.path().join("ca.pem");
    let out = c.local(0, &["cluster", "ca", "-f", ca.to_str().unwrap(), "--force"]);
    assert_eq!(out.code, 0, "cluster ca: {}", out.stderr);
    let pw = p.password_file();
    let args = ["login", "--user", p.name, "--password-file", pw.to_str().unwrap(), "--ca-file", ca.to_str().unwrap()];
    let out = corral_as(p.config(), Some(c.endpoint(i)), &[], &args);
    assert_eq!(out.code, 0, "{} login: {}", p.name, out.stderr);
}

fn root(c: &Cluster, args: &[&str]) -> String {
    let out = c.local(0, args);
    assert_eq!(out.code, 0, "root ran {args:?}: {}", out.stderr);
    out.stdout
}

fn create(c: &Cluster, vm: &str) {
    root(c, &["vm", "create", vm, "--memory", "64M", "--vcpus", "1"]);
}

#[test]
fn users_see_and_do_what_their_roles_allow() {
    let c = Cluster::run(3, &[]);
    create(&c, "web1");
    create(&c, "db1");
    let alice = Person::new("alice");
    let bob = Person::new("bob");
    // alice logs in through a follower: her writes are forwarded with her name.
    let follower = (0..3).find(|i| *i != c.leader()).unwrap();
    enrol(&c, follower, &alice);
    enrol(&c, 0, &bob);
    assert!(alice.ok(&["whoami"]).contains("alice"));

    // Nothing yet: alice sees no VM, and db1 does not exist for her.
    assert!(alice.vms().is_empty());
    alice.refused(&["vm", "show", "db1"], "vm 'db1' not found");

    root(&c, &["permission", "add", "--user", "alice", "--role", "UserRole", "--on", "vm:web1"]);
    assert_eq!(alice.vms(), vec!["web1".to_string()]);
    alice.ok(&["vm", "start", "web1"]);
    c.wait_status(0, "web1", "up");
    alice.ok(&["vm", "stop", "web1"]);
    let refusal = alice.refused(&["vm", "delete", "web1"], "alice may not delete vm web1");
    assert_eq!(refusal, "error: alice may not delete vm web1 (needs vm.delete; has UserRole on vm:web1)");
    alice.refused(&["vm", "delete", "db1"], "vm 'db1' not found");
    alice.refused(&["host", "maintenance", "host2"], "alice may not");
    alice.refused(&["user", "list"], "alice may not manage the users of system");

    // The events of alice's requests name her, also those forwarded to the leader.
    let events: Vec<EventView> = alice
        .ok(&["-o", "json", "events", "--user", "alice"])
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert!(events.iter().any(|e| e.message.contains("by alice") && e.user == "alice"), "{events:?}");

    // bob, PowerUserRole on the cluster, creates vm1, manages it, and gives alice UserRole on it.
    root(&c, &["permission", "add", "--user", "bob", "--role", "PowerUserRole", "--on", "cluster"]);
    bob.ok(&["vm", "create", "vm1", "--memory", "64M", "--vcpus", "1"]);
    assert_eq!(bob.vms(), vec!["vm1".to_string()], "bob sees only the VM he made");
    // Snapshots need vm.snapshot: bob's UserVmManager has it, alice's UserRole does not.
    let snap = bob.ok(&["vm", "snapshot", "create", "vm1", "--description", "by bob"]);
    assert!(snap.trim().ends_with(|c: char| c.is_ascii_hexdigit()), "{snap}");
    alice.refused(&["vm", "snapshot", "create", "web1"], "alice may not manage the snapshots of vm web1");
    let perms = root(&c, &["-o", "json", "permission", "list", "--on", "vm:vm1"]);
    assert!(perms.contains("UserVmManager") && perms.contains("bob"), "{perms}");
    bob.ok(&["permission", "add", "--user", "alice", "--role", "UserRole", "--on", "vm:vm1"]);
    bob.refused(
        &["permission", "add", "--user", "alice", "--role", "UserVmManager", "--on", "vm:web1"],
        "vm 'web1' not found",
    );
    bob.refused(&["permission", "add", "--user", "alice", "--role", "SuperUser", "--on", "vm:vm1"], "may not give");
    let mut seen = alice.vms();
    seen.sort();
    assert_eq!(seen, vec!["vm1".to_string(), "web1".to_string()]);
    bob.ok(&["vm", "edit", "vm1", "--description", "bob's"]);

    // A group's permission reaches its members; removing it takes effect on the next call.
    root(&c, &["group", "create", "ops", "--users", "alice"]);
    root(&c, &["permission", "add", "--group", "ops", "--role", "UserRole", "--on", "vm:db1"]);
    assert!(alice.vms().contains(&"db1".to_string()));
    root(&c, &["permission", "remove", "--group", "ops", "--role", "UserRole", "--on", "vm:db1"]);
    assert!(!alice.vms().contains(&"db1".to_string()));
    root(&c, &["permission", "remove", "--user", "alice", "--role", "UserRole", "--on", "vm:web1"]);
    alice.refused(&["vm", "start", "web1"], "vm 'web1' not found");

    // Deleting a VM takes its permissions along.
    bob.ok(&["vm", "delete", "vm1"]);
    let left = root(&c, &["-o", "json", "permission", "list"]);
    assert!(!left.contains("vm:vm1"), "{left}");

    // A user's certificate is that user; deleting the user revokes it, also for a new user of
    // the same name.
    root(&c, &["user", "create", "frank"]);
    let cert = alice.home.path().join("frank.corral");
    root(&c, &["cluster", "credentials", "-f", cert.to_str().unwrap(), "--user", "frank"]);
    let as_frank = |args: &[&str]| {
        corral_as(alice.config(), Some(c.endpoint(0)), &[("CORRAL_CREDENTIALS", cert.to_str().unwrap())], args)
    };
    let me = as_frank(&["whoami"]);
    assert!(me.code == 0 && me.stdout.contains("frank") && me.stdout.contains("certificate"), "{}", me.stderr);
    root(&c, &["user", "delete", "frank"]);
    root(&c, &["user", "create", "frank"]);
    let old = as_frank(&["whoami"]);
    assert!(old.code != 0 && old.stderr.contains("made before this user was"), "{}", old.stderr);

    // The local socket is root@localhost, a SuperUser always: deleting every user who is one
    // locks no one out.
    root(&c, &["user", "delete", "admin"]);
    root(&c, &["user", "list"]);
    let me = root(&c, &["whoami"]);
    assert!(me.contains("root@localhost") && me.contains("user.manage"), "{me}");
    let events = root(&c, &["events", "--user", "root@localhost"]);
    assert!(events.contains("User admin was deleted by root@localhost."), "{events}");
}

/// The library's objects in the permission tree (issue 17): a UserRole user given
/// UserTemplateBasedVm on one template creates VMs from it and from no other template, nor
/// blank ones; ISOs need iso.manage; a template the user may not use does not exist for them.
#[test]
fn templates_and_isos_are_objects_of_the_permission_tree() {
    let c = Cluster::run(1, &[]);
    root(&c, &["vm", "create", "src", "--memory", "64M", "--disk", "1M"]);
    root(&c, &["template", "create", "gold", "--from-vm", "src"]);
    root(&c, &["template", "create", "secret", "--from-vm", "src"]);
    let carol = Person::new("carol");
    enrol(&c, 0, &carol);
    root(&c, &["permission", "add", "--user", "carol", "--role", "UserTemplateBasedVm", "--on", "template:gold"]);

    let listed = carol.ok(&["-o", "json", "template", "list"]);
    assert!(listed.contains("\"gold\"") && !listed.contains("secret"), "{listed}");
    carol.refused(&["template", "show", "secret"], "template 'secret' not found");
    carol.ok(&["vm", "create", "mine", "--template", "gold"]);
    assert_eq!(carol.vms(), vec!["mine".to_string()], "the creator manages the VM made");
    carol.refused(&["vm", "create", "blank", "--memory", "64M"], "carol may not create VMs in cluster");
    carol.refused(&["vm", "create", "other", "--template", "secret"], "template 'secret' not found");
    carol.refused(
        &["vm", "create", "more", "--template", "gold", "--disk", "1M"],
        "carol may not create disks in cluster",
    );
    carol.refused(&["template", "create", "t3", "--from-vm", "mine"], "carol may not make templates in cluster");
    carol.refused(&["template", "delete", "gold"], "carol may not delete template gold");
    // Who uses an offering or an ISO lists only the VMs the caller may see.
    root(&c, &["offering", "create", "small", "--vcpus", "1", "--memory", "64M"]);
    root(&c, &["vm", "create", "hidden", "--offering", "small"]);
    let o = carol.ok(&["-o", "json", "offering", "show", "small"]);
    assert!(!o.contains("hidden"), "{o}");
    // A template's base is no medium for anyone's CD-ROM drive.
    let base = root(&c, &["-o", "json", "template", "show", "secret"]);
    let base: serde_json::Value = serde_json::from_str(&base).unwrap();
    let file = base["disks"][0].as_str().unwrap().to_string();
    c.refused(0, &["vm", "cd", "mine", "--iso", &file], "a file the cluster keeps for itself");

    // ISOs: seen by everyone logged in, added and deleted with iso.manage.
    let iso = carol.home.path().join("x.iso");
    let out = std::process::Command::new("genisoimage")
        .args(["-quiet", "-volid", "X", "-o"])
        .arg(&iso)
        .arg(carol.home.path().join("password"))
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    carol.refused(&["iso", "add", "x", "--file", iso.to_str().unwrap()], "carol may not add ISOs to cluster");
    root(&c, &["permission", "add", "--user", "carol", "--role", "IsoManager", "--on", "cluster"]);
    carol.ok(&["iso", "add", "x", "--file", iso.to_str().unwrap()]);
    assert!(carol.ok(&["iso", "list"]).contains('x'));
    let perms = root(&c, &["permission", "add", "--user", "carol", "--role", "UserRole", "--on", "iso:x"]);
    assert!(perms.contains("iso:x"), "{perms}");
    carol.ok(&["iso", "delete", "x"]);
    let left = root(&c, &["-o", "json", "permission", "list"]);
    assert!(!left.contains("iso:x"), "a deleted ISO takes its permissions along: {left}");
}

#[test]
fn sessions_and_api_tokens_expire_and_are_revoked() {
    let c = Cluster::run(1, &[]);
    create(&c, "web1");
    let carol = Person::new("carol");
    enrol(&c, 0, &carol);
    root(&c, &["permission", "add", "--user", "carol", "--role", "UserRole", "--on", "vm:web1"]);
    assert_eq!(carol.vms(), vec!["web1".to_string()]);

    // An API token, from a file and from the environment; revoked, it is refused at once.
    let out = carol.ok(&["user", "token", "create", "carol", "--name", "ci"]);
    let token = out.lines().last().unwrap().trim().to_string();
    assert!(token.starts_with("corral-api-"), "{out}");
    let ca = carol.home.path().join("ca.pem");
    let nobody = tempfile::tempdir().unwrap();
    let with_token = |args: &[&str]| {
        let env = [("CORRAL_API_TOKEN", token.as_str()), ("CORRAL_CA_FILE", ca.to_str().unwrap())];
        corral_as(nobody.path(), Some(c.endpoint(0)), &env, args)
    };
    let listed = with_token(&["-o", "json", "vm", "list"]);
    assert_eq!(listed.code, 0, "{}", listed.stderr);
    assert!(listed.stdout.contains("web1"));
    let file = nobody.path().join("token");
    std::fs::write(&file, format!("{token}\n")).unwrap();
    let by_file = corral_as(
        nobody.path(),
        Some(c.endpoint(0)),
        &[("CORRAL_CA_FILE", ca.to_str().unwrap())],
        &["--api-token-file", file.to_str().unwrap(), "whoami"],
    );
    assert!(by_file.code == 0 && by_file.stdout.contains("API token"), "{}", by_file.stderr);
    assert!(carol.ok(&["user", "token", "list", "carol"]).contains("ci"));
    carol.ok(&["user", "token", "revoke", "carol", "ci"]);
    let refused = with_token(&["vm", "list"]);
    assert_ne!(refused.code, 0);
    assert!(refused.stderr.contains("unknown, expired or revoked"), "{}", refused.stderr);

    // A token that expires.
    let out = carol.ok(&["user", "token", "create", "carol", "--name", "short", "--ttl", "2s"]);
    let short = out.lines().last().unwrap().trim().to_string();
    let env = [("CORRAL_API_TOKEN", short.as_str()), ("CORRAL_CA_FILE", ca.to_str().unwrap())];
    assert_eq!(corral_as(nobody.path(), Some(c.endpoint(0)), &env, &["vm", "list"]).code, 0);
    corral_tests::wait_until(std::time::Duration::from_secs(10), "the token to expire", || {
        let out = corral_as(nobody.path(), Some(c.endpoint(0)), &env, &["vm", "list"]);
        if out.code != 0 && out.stderr.contains("expired") {
            Ok(())
        } else {
            Err(format!("still accepted: {}{}", out.stdout, out.stderr))
        }
    });

    // A session: logout ends it on the cluster, not only on this machine.
    let saved: Vec<_> =
        std::fs::read_dir(carol.config().join("corral/sessions")).unwrap().flatten().map(|e| e.path()).collect();
    assert_eq!(saved.len(), 1);
    let session: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&saved[0]).unwrap()).unwrap();
    let secret = session["token"].as_str().unwrap().to_string();
    carol.ok(&["logout"]);
    carol.refused(&["vm", "list"], "credentials");
    let env = [("CORRAL_API_TOKEN", secret.as_str()), ("CORRAL_CA_FILE", ca.to_str().unwrap())];
    let replayed = corral_as(nobody.path(), Some(c.endpoint(0)), &env, &["vm", "list"]);
    assert!(replayed.code != 0 && replayed.stderr.contains("revoked"), "{}", replayed.stderr);

    // A password change ends the sessions; a short session expires by itself.
    login(&c, 0, &carol);
    let pw = carol.password_file();
    root(&c, &["user", "passwd", "carol", "--password-file", pw.to_str().unwrap()]);
    carol.refused(&["vm", "list"], "revoked");
    let ca_s = ca.to_str().unwrap();
    let pw_s = pw.to_str().unwrap();
    let args = ["login", "--user", "carol", "--password-file", pw_s, "--ca-file", ca_s, "--ttl", "2s"];
    assert_eq!(corral_as(carol.config(), Some(c.endpoint(0)), &[], &args).code, 0);
    carol.ok(&["vm", "list"]);
    corral_tests::wait_until(std::time::Duration::from_secs(10), "the session to expire", || {
        let out = carol.run(&["vm", "list"]);
        if out.code != 0 {
            Ok(())
        } else {
            Err("still accepted".into())
        }
    });

    // Her own password: only with the current one (a session alone does not take the account).
    login(&c, 0, &carol);
    let new = carol.home.path().join("new-password");
    std::fs::write(&new, "carol-second-pw\n").unwrap();
    let new_s = new.to_str().unwrap();
    carol.refused(&["user", "passwd", "carol", "--password-file", new_s], "needs the current one");
    let wrong = carol.home.path().join("wrong");
    std::fs::write(&wrong, "not-it-at-all").unwrap();
    let w = wrong.to_str().unwrap();
    carol.refused(
        &["user", "passwd", "carol", "--password-file", new_s, "--current-password-file", w],
        "the current password is wrong",
    );
    let current = carol.password_file();
    let cur = current.to_str().unwrap();
    carol.ok(&["user", "passwd", "carol", "--password-file", new_s, "--current-password-file", cur]);

    // Logging in never trusts a CA silently: without --ca-file or --ca-fingerprint, and no
    // terminal to ask on, it is refused, naming the fingerprint to check.
    let dave = Person::new("dave");
    let pw = dave.password_file();
    let out = corral_as(
        dave.config(),
        Some(c.endpoint(0)),
        &[],
        &["login", "--user", "carol", "--password-file", pw.to_str().unwrap()],
    );
    assert_ne!(out.code, 0);
    assert!(out.stderr.contains("without checking its CA (sha256:"), "{}", out.stderr);
    let fp = out.stderr.split("(sha256:").nth(1).unwrap().split(')').next().unwrap().to_string();
    let wrong = format!("sha256:{}", "0".repeat(64));
    let out = corral_as(
        dave.config(),
        Some(c.endpoint(0)),
        &[],
        &["login", "--user", "carol", "--password-file", pw.to_str().unwrap(), "--ca-fingerprint", &wrong],
    );
    assert!(out.code != 0 && out.stderr.contains("not sha256:0000"), "{}", out.stderr);
    // The right fingerprint, the wrong password.
    let out = corral_as(
        dave.config(),
        Some(c.endpoint(0)),
        &[],
        &[
            "login",
            "--user",
            "carol",
            "--password-file",
            pw.to_str().unwrap(),
            "--ca-fingerprint",
            &format!("sha256:{fp}"),
        ],
    );
    assert!(out.code != 0 && out.stderr.contains("wrong user name or password"), "{}", out.stderr);
}

#[test]
fn wrong_passwords_are_slowed_and_recorded() {
    let c = Cluster::run(1, &[]);
    let erin = Person::new("erin");
    enrol(&c, 0, &erin);
    let ca = erin.home.path().join("ca.pem");
    let wrong = erin.home.path().join("wrong");
    std::fs::write(&wrong, "not-the-password").unwrap();
    let attempt = |pw: &Path| {
        let args =
            ["login", "--user", "erin", "--password-file", pw.to_str().unwrap(), "--ca-file", ca.to_str().unwrap()];
        let start = std::time::Instant::now();
        let out = corral_as(erin.config(), Some(c.endpoint(0)), &[], &args);
        (out, start.elapsed())
    };
    let mut times = Vec::new();
    for _ in 0..20 {
        let (out, took) = attempt(&wrong);
        assert!(out.code != 0 && out.stderr.contains("wrong user name or password"), "{}", out.stderr);
        times.push(took);
    }
    // Slowed: the last attempts wait (the server's delay, not the machine's speed, decides:
    // the first three do not wait at all).
    let early: std::time::Duration = times[..3].iter().sum();
    let late: std::time::Duration = times[15..18].iter().sum();
    assert!(late > early + std::time::Duration::from_secs(3), "not slowed: {times:?}");
    let recorded: Vec<String> = c.events(0).into_iter().filter(|e| e.contains("failed login")).collect();
    assert!(recorded.iter().any(|e| e.contains("20 failed logins in a row for user 'erin'")), "{recorded:?}");
    // The right password still works.
    let (out, _) = attempt(&erin.password_file());
    assert_eq!(out.code, 0, "{}", out.stderr);
}
