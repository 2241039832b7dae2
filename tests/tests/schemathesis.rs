//! schemathesis (PyPI; deploy/deps.sh installs it in target/st-venv) against a real node's
//! OpenAPI document (issue 18): generated requests to every operation find no server error (5xx)
//! and no answer that breaks the document (status, content type, schema, headers). A bounded
//! number of examples here (CORRAL_SCHEMATHESIS_EXAMPLES, default 10); `make check-long` runs
//! many more.

use std::process::Command;

use corral_tests::http::Http;
use corral_tests::{repo, Cluster};
use serde_json::json;

#[test]
fn schemathesis_finds_no_server_error_and_no_answer_off_the_document() {
    let schemathesis = repo().join("target/st-venv/bin/schemathesis");
    assert!(schemathesis.is_file(), "schemathesis is not installed: run deploy/deps.sh (make test does)");
    let c = Cluster::run(2, &[]);
    let pw = c.dir().join("ops.pw");
    std::fs::write(&pw, "ops-secret-pw\n").unwrap();
    for args in [
        &["user", "create", "ops", "--password-file", pw.to_str().unwrap()][..],
        &["permission", "add", "--user", "ops", "--role", "SuperUser", "--on", "system"],
        &["vm", "create", "web1", "--memory", "64M", "--vcpus", "1", "--start"],
        &["disk", "create", "data1", "--size", "16M"],
    ] {
        let out = c.local(0, args);
        assert_eq!(out.code, 0, "{args:?}: {}", out.stderr);
    }
    let ca = std::fs::read_to_string(c.nodes[0].data_dir.join("tls/ca.pem")).expect("the cluster CA");
    let http = Http::new(c.endpoint(0), &ca);
    // An API token: a session would end the first time a generated call logs out.
    let token = tokio::runtime::Runtime::new().unwrap().block_on(async {
        let a = http.call("POST", "/api/v1/login", Some(&json!({"user": "ops", "password": "ops-secret-pw"}))).await;
        assert_eq!(a.status, 200, "{}", a.message());
        let session = http.clone().with_token(a.body["token"].as_str().unwrap());
        let t = session.call("POST", "/api/v1/users/ops/tokens", Some(&json!({"name": "schemathesis"}))).await;
        assert_eq!(t.status, 200, "{}", t.message());
        t.body["token"].as_str().unwrap().to_string()
    });
    let examples = std::env::var("CORRAL_SCHEMATHESIS_EXAMPLES").unwrap_or_else(|_| "10".into());
    let seed = std::env::var("CORRAL_SCHEMATHESIS_SEED").unwrap_or_else(|_| "1".into());
    let report = repo().join("target/schemathesis");
    #[rustfmt::skip]
    let run = Command::new(&schemathesis)
        .args([
            "run", &format!("https://{}/api/v1/openapi.json", c.endpoint(0)),
            "--header", &format!("Authorization: Bearer {token}"),
            "--tls-verify", "false",
            "--max-examples", &examples, "--seed", &seed, "--workers", "2",
            "--checks", "not_a_server_error,status_code_conformance,content_type_conformance,\
                         response_schema_conformance,response_headers_conformance",
            // The caller's own session and password, and the members: not for a fuzzer to end.
            "--exclude-operation-id", "AuthService.logout",
            "--exclude-operation-id", "AuthService.set_password",
            "--exclude-operation-id", "HostService.remove",
            "--request-timeout", "30", "--no-color",
            "--report", "junit", "--report-dir",
        ])
        .arg(&report)
        .output()
        .expect("schemathesis runs");
    let stdout = String::from_utf8_lossy(&run.stdout);
    let summary: String =
        stdout.lines().rev().take(25).collect::<Vec<_>>().into_iter().rev().collect::<Vec<_>>().join("\n");
    eprintln!("{summary}");
    assert!(run.status.success(), "schemathesis found failures:\n{stdout}\n{}", String::from_utf8_lossy(&run.stderr));
    assert!(stdout.contains("generated"), "schemathesis tested nothing:\n{stdout}");
    // Every node lived through it.
    for i in 0..2 {
        assert!(c.nodes[i].is_running(), "node {i} died:\n{}", c.nodes[i].log());
    }
}
