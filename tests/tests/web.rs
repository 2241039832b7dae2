//! The web console in a real browser (issue 18): Debian's chromium, headless, driven by
//! playwright-core (web/e2e/run.mjs) against real corrald processes serving web/dist. The
//! scenario logs in, creates and starts a VM through the form, edits it for its next run, visits
//! every page, and checks that a UserRole user does not see another user's VM. Screenshots of
//! each page go to target/web-e2e/basic.

use std::path::{Path, PathBuf};
use std::process::Command;

use corral_tests::Cluster;

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..").canonicalize().expect("the source tree")
}

/// Runs scenario `args` of web/e2e/run.mjs; panics with its output unless every check passed.
pub fn e2e(url: &str, out: &Path, args: &[&str]) -> String {
    let web = repo().join("web");
    assert!(
        web.join("dist/index.html").is_file() && web.join("node_modules/playwright-core").is_dir(),
        "the web console is not built: run `make web` (make test does)"
    );
    let run = Command::new("node")
        .arg(web.join("e2e/run.mjs"))
        .args(["--url", url, "--out"])
        .arg(out)
        .args(args)
        .output()
        .expect("node runs");
    let stdout = String::from_utf8_lossy(&run.stdout).to_string();
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert!(run.status.success(), "web e2e {args:?} failed:\n{stdout}\n{stderr}");
    assert!(stdout.lines().any(|l| l.starts_with("PASS")), "no checks ran:\n{stdout}");
    stdout
}

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
