//! The web console on sandbox hosts (issue 18): a real browser migrates a ticking guest whose
//! bandwidth is capped low, and watches the progress bar move.

use corral_cli::views::VmView;
use corral_tests::sandbox::{Sandbox, GUEST_UP};
use corral_tests::{repo, web_e2e};

pub fn migrate_with_a_progress_bar(sb: &Sandbox) {
    super::guest(sb, "webmig", None, "host1");
    sb.wait_console("webmig", GUEST_UP);
    sb.cli_json::<VmView>(&["vm", "edit", "webmig", "--bandwidth", "2"]);
    let dir = tempfile::tempdir().expect("a temp dir");
    let pw = dir.path().join("pw");
    std::fs::write(&pw, "webop-secret-pw\n").expect("the password file");
    let known = sb.corral(&["user", "show", "webop"]);
    if known.code != 0 {
        sb.must_ok(&["user", "create", "webop", "--password-file", pw.to_str().expect("UTF-8")]);
        sb.must_ok(&["permission", "add", "--user", "webop", "--role", "SuperUser", "--on", "system"]);
    }
    let out = repo().join("target/web-e2e/migrate");
    let _ = std::fs::remove_dir_all(&out);
    let url = format!("https://{}", sb.host("host2").endpoint);
    #[rustfmt::skip]
    let log = web_e2e(&url, &out, &[
        "--scenario", "migrate", "--user", "webop", "--password", "webop-secret-pw", "--vm", "webmig", "--to", "host3",
    ]);
    for line in log.lines().filter(|l| l.contains("progress")) {
        eprintln!("    {line}");
    }
    let moved = sb.vm("webmig");
    assert_eq!((moved.status.as_str(), moved.host.as_deref()), ("up", Some("host3")), "{moved:#?}");
    let before = sb.ticks("webmig").unwrap_or(0);
    sb.wait_ticks_above("webmig", before);
    super::gone(sb, &["webmig"]);
}
