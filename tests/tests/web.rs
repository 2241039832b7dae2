//! The web console in a real browser (issue 18): Debian's chromium, headless, driven by
//! playwright-core (web/e2e/run.mjs) against real corrald processes serving web/dist. The
//! scenario logs in, creates and starts a VM through the form, edits it for its next run, visits
//! every page, and checks that a UserRole user does not see another user's VM. Screenshots of
//! each page go to target/web-e2e/basic.

use corral_tests::{repo, web_e2e as e2e, Cluster};

#[test]
fn the_web_console_in_a_browser() {
    let web_root = repo().join("web/dist");
    let c = Cluster::run(2, &["--web-root", web_root.to_str().unwrap()]);
    let dir = c.dir().to_path_buf();
    for user in ["ops", "alice"] {
        let pw = dir.join(format!("{user}.pw"));
        std::fs::write(&pw, format!("{user}-secret-pw\n")).unwrap();
        let out = c.local(0, &["user", "create", user, "--password-file", pw.to_str().unwrap()]);
        assert_eq!(out.code, 0, "user create {user}: {}", out.stderr);
    }
    for args in [
        &["permission", "add", "--user", "ops", "--role", "SuperUser", "--on", "system"][..],
        &["vm", "create", "other1", "--memory", "64M", "--vcpus", "1"],
        &["vm", "create", "alice1", "--memory", "64M", "--vcpus", "1"],
        &["permission", "add", "--user", "alice", "--role", "UserRole", "--on", "vm:alice1"],
    ] {
        let out = c.local(0, args);
        assert_eq!(out.code, 0, "{args:?}: {}", out.stderr);
    }
    let out = repo().join("target/web-e2e/basic");
    let _ = std::fs::remove_dir_all(&out);
    let url = format!("https://{}", c.endpoint(1));
    #[rustfmt::skip]
    let log = e2e(&url, &out, &[
        "--scenario", "basic", "--user", "ops", "--password", "ops-secret-pw", "--vm", "web1",
        "--user2", "alice", "--password2", "alice-secret-pw", "--hidden-vm", "other1",
    ]);
    // What the browser did is real: the VM it made is up, and waits for its next-run change.
    let vm = c.vm(0, "web1");
    assert_eq!(vm.status, "up", "{log}");
    let shots = std::fs::read_dir(&out).expect("screenshots").count();
    assert!(shots >= 8, "a screenshot of each page ({shots} in {}):\n{log}", out.display());
}
