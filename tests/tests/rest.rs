//! The REST API (issue 18) against real corrald processes over TLS: the same callers, checks,
//! answers and error words as gRPC (the CLI), on the same port; its OpenAPI document; next_run;
//! hostile bodies; the events websocket.

use corral_cli::views::VmView;
use corral_tests::http::{Answer, Http};
use corral_tests::Cluster;
use futures::StreamExt;
use serde_json::{json, Value};

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("a runtime")
}

/// A cluster of two with an admin user `ops` (SuperUser on the cluster) and a user `ann` (who
/// gets UserRole on her VM later).
fn cluster() -> (Cluster, String) {
    let c = Cluster::run(2, &[]);
    let dir = c.dir().to_path_buf();
    for user in ["ops", "ann"] {
        let pw = dir.join(format!("{user}.pw"));
        std::fs::write(&pw, format!("{user}-secret-pw\n")).unwrap();
        let out = c.local(0, &["user", "create", user, "--password-file", pw.to_str().unwrap()]);
        assert_eq!(out.code, 0, "user create {user}: {}", out.stderr);
    }
    let out = c.local(0, &["permission", "add", "--user", "ops", "--role", "SuperUser", "--on", "cluster"]);
    assert_eq!(out.code, 0, "permission add: {}", out.stderr);
    let ca = std::fs::read_to_string(c.nodes[0].data_dir.join("tls/ca.pem")).expect("the cluster CA");
    (c, ca)
}

async fn login(http: &Http, user: &str) -> String {
    let a =
        http.call("POST", "/api/v1/login", Some(&json!({"user": user, "password": format!("{user}-secret-pw")}))).await;
    assert_eq!(a.status, 200, "login {user}: {}", a.message());
    a.body["token"].as_str().expect("a token").to_string()
}

/// The CLI's refusal, without its `error: ` prefix.
fn cli_error(c: &Cluster, args: &[&str]) -> String {
    let out = c.corral(0, args);
    assert_ne!(out.code, 0, "{args:?} worked");
    out.stderr.trim().trim_start_matches("error: ").to_string()
}

fn ok(a: &Answer, what: &str) -> Value {
    assert_eq!(a.status, 200, "{what}: {} {}", a.status, a.message());
    assert_eq!(a.headers.get("content-type").and_then(|v| v.to_str().ok()), Some("application/json"), "{what}");
    a.body.clone()
}

#[test]
fn rest_answers_as_grpc_does_on_the_same_port() {
    let (c, ca) = cluster();
    let rt = runtime();
    let anon = Http::new(c.endpoint(0), &ca);
    rt.block_on(async {
        // The document needs no login, and describes the paths it serves.
        let doc = ok(&anon.call("GET", "/api/v1/openapi.json", None).await, "openapi");
        assert_eq!(doc["openapi"], "3.0.3");
        assert!(doc["paths"]["/api/v1/vms/{vm}"]["get"].is_object());

        // No credentials: the transport's refusal, in gRPC's words.
        let a = anon.call("GET", "/api/v1/vms", None).await;
        assert_eq!((a.status, a.body["code"].as_str()), (401, Some("UNAUTHENTICATED")));
        assert!(a.message().contains("this cluster answers only callers with credentials"), "{}", a.message());
        let a = anon.call("POST", "/api/v1/login", Some(&json!({"user": "ops", "password": "wrong"}))).await;
        assert_eq!(a.status, 401, "{}", a.message());

        let token = login(&anon, "ops").await;
        let ops = anon.clone().with_token(&token);
        let vm = ok(
            &ops.call(
                "POST",
                "/api/v1/vms",
                Some(&json!({"name": "web1", "memory_mib": 64, "vcpus": 1, "start": true})),
            )
            .await,
            "create",
        );
        assert_eq!((vm["name"].as_str(), vm["memory_mib"].as_u64()), (Some("web1"), Some(64)));
        // The CLI (gRPC) sees what REST made, and REST what the CLI shows.
        let shown: VmView = c.cli_json(1, &["vm", "show", "web1"]);
        let got = ok(&ops.call("GET", "/api/v1/vms/web1", None).await, "get");
        assert_eq!(got["id"].as_str(), Some(shown.id.as_str()));
        assert_eq!(got["memory_mib"].as_u64(), Some(shown.memory_mib));

        // The same refusal, in the same words, either way.
        let a = ops.call("POST", "/api/v1/vms", Some(&json!({"name": "web1", "memory_mib": 64, "vcpus": 1}))).await;
        assert_eq!(a.status, 409, "{}", a.message());
        assert_eq!(a.message(), cli_error(&c, &["vm", "create", "web1", "--memory", "64M", "--vcpus", "1"]));
        let a = ops.call("GET", "/api/v1/vms/nope", None).await;
        assert_eq!((a.status, a.body["code"].as_str()), (404, Some("NOT_FOUND")));
        assert_eq!(a.message(), cli_error(&c, &["vm", "show", "nope"]));

        // next_run: the change waits, and ?next_run=true shows the VM as it will be.
        let edited = ok(
            &ops.call("PATCH", "/api/v1/vms/web1", Some(&json!({"memory_mib": 128, "next_run": true}))).await,
            "edit",
        );
        assert_eq!((edited["memory_mib"].as_u64(), edited["pending_next_run"].as_bool()), (Some(64), Some(true)));
        let next = ok(&ops.call("GET", "/api/v1/vms/web1?next_run=true", None).await, "next run");
        assert_eq!((next["memory_mib"].as_u64(), next["pending_next_run"].as_bool()), (Some(128), Some(false)));
        let shown: VmView = c.cli_json(0, &["vm", "show", "web1", "--next-run"]);
        assert_eq!(shown.memory_mib, 128, "the CLI's --next-run agrees");

        // HTTP/2 serves the same.
        let h2 = ops.clone().h2();
        let list = ok(&h2.call("GET", "/api/v1/vms", None).await, "list over HTTP/2");
        assert_eq!(list["vms"].as_array().map(|v| v.len()), Some(1));

        // A UserRole user sees only the VMs she has it on; another's is not found, as in the CLI.
        ok(
            &ops.call("POST", "/api/v1/vms", Some(&json!({"name": "ann1", "memory_mib": 64, "vcpus": 1}))).await,
            "create",
        );
        let given = json!({"user": "ann", "role": "UserRole", "on": "vm:ann1"});
        ok(&ops.call("POST", "/api/v1/permissions", Some(&given)).await, "permission");
        let ann = anon.clone().with_token(&login(&anon, "ann").await);
        let a = ann.call("POST", "/api/v1/vms", Some(&json!({"name": "ann2", "memory_mib": 64, "vcpus": 1}))).await;
        assert_eq!(a.status, 403, "{}", a.message());
        let list = ok(&ann.call("GET", "/api/v1/vms", None).await, "ann's list");
        let names: Vec<&str> = list["vms"].as_array().unwrap().iter().filter_map(|v| v["name"].as_str()).collect();
        assert_eq!(names, ["ann1"]);
        let a = ann.call("GET", "/api/v1/vms/web1", None).await;
        assert_eq!(a.status, 404, "{}", a.message());
        let a = ann.call("POST", "/api/v1/hosts/host1/maintenance", Some(&json!({"reason": "x"}))).await;
        assert_eq!(a.status, 403, "{}", a.message());

        // An API token, and a user's client certificate, are callers as over gRPC.
        let t = ok(&ops.call("POST", "/api/v1/users/ops/tokens", Some(&json!({"name": "ci"}))).await, "token");
        let api = anon.clone().with_token(t["token"].as_str().expect("the token's secret"));
        let who = ok(&api.call("GET", "/api/v1/whoami", None).await, "whoami by API token");
        assert_eq!(who["user"], "ops");
        let cert = std::fs::read_to_string(c.credentials().expect("admin credentials")).unwrap();
        let by_cert = Http::with_identity(c.endpoint(1), &ca, Some(&cert));
        ok(&by_cert.call("GET", "/api/v1/vms", None).await, "list by client certificate");

        // Metrics on the API port: for callers with audit.read only.
        let m = ops.call("GET", "/metrics", None).await;
        assert_eq!(m.status, 200, "{}", m.message());
        assert!(String::from_utf8_lossy(&m.raw).contains("corral_"), "no corral metrics");
        let m = ann.call("GET", "/metrics", None).await;
        assert_eq!(m.status, 403, "{}", m.message());
        assert_eq!(anon.call("GET", "/metrics", None).await.status, 401);

        // Logging out ends the session.
        ok(&ann.call("POST", "/api/v1/logout", None).await, "logout");
        assert_eq!(ann.call("GET", "/api/v1/vms", None).await.status, 401);
    });
}

#[test]
fn bad_and_hostile_requests_are_refused_by_name_and_the_node_lives() {
    let (c, ca) = cluster();
    let rt = runtime();
    let anon = Http::new(c.endpoint(0), &ca);
    rt.block_on(async {
        let ops = anon.clone().with_token(&login(&anon, "ops").await);
        let a = ops.call("POST", "/api/v1/vms", Some(&json!({"name": "a", "colour": "red"}))).await;
        assert_eq!(a.status, 400);
        assert!(a.message().contains("colour"), "{}", a.message());
        let a = ops.call("POST", "/api/v1/vms", Some(&json!({"name": "a", "memory_mib": "lots"}))).await;
        assert_eq!(a.status, 400, "{}", a.message());
        let a =
            ops.send("POST", "/api/v1/vms", Some(b"{not json".to_vec()), &[("content-type", "application/json")]).await;
        assert_eq!(a.status, 400);
        assert!(a.message().contains("not JSON"), "{}", a.message());
        let a = ops.send("POST", "/api/v1/vms", Some(b"name=a".to_vec()), &[("content-type", "text/plain")]).await;
        assert!(a.status == 400 && a.message().contains("application/json"), "{}", a.message());
        let a = ops.call("GET", "/api/v1/vms/web1?next_run=maybe", None).await;
        assert!(a.status == 400 && a.message().contains("next_run"), "{}", a.message());
        let a = ops.call("GET", "/api/v1/nothing", None).await;
        assert!(a.status == 404 && a.message().contains("openapi.json"), "{}", a.message());
        let a = ops.call("PUT", "/api/v1/vms", None).await;
        assert_eq!(a.status, 405, "{}", a.message());
        // Another site's page cannot act through the operator's browser.
        let a = ops
            .send(
                "POST",
                "/api/v1/vms/web1/stop",
                Some(b"{}".to_vec()),
                &[("content-type", "application/json"), ("origin", "https://elsewhere.example")],
            )
            .await;
        assert!(a.status == 403 && a.message().contains("another site"), "{} {}", a.status, a.message());
        let a = ops.send("POST", "/api/v1/vms/web1/stop", None, &[]).await;
        assert!(a.status == 400 && a.message().contains("application/json"), "{}", a.message());
        let a = ops.call("GET", "/api/v1/vms/web1?next_run=true&next_run=false", None).await;
        assert!(a.status == 400 && a.message().contains("twice"), "{}", a.message());
        // Deeply nested, and too big: refused, and the node answers on.
        let deep = format!("{}{}", "[".repeat(100_000), "]".repeat(100_000));
        let a = ops.send("POST", "/api/v1/vms", Some(deep.into_bytes()), &[("content-type", "application/json")]).await;
        assert_eq!(a.status, 400, "{}", a.message());
        let big = vec![b' '; (4 << 20) + 1];
        let a = ops.send("POST", "/api/v1/vms", Some(big), &[("content-type", "application/json")]).await;
        assert_eq!(a.status, 413, "{}", a.message());
        ok(&ops.call("GET", "/api/v1/vms", None).await, "the node still answers");
    });
    assert!(c.nodes[0].is_running());
}

#[test]
fn events_come_live_over_a_websocket() {
    let (c, ca) = cluster();
    let rt = runtime();
    let anon = Http::new(c.endpoint(1), &ca);
    rt.block_on(async {
        // Refused before the upgrade, with the API's words.
        let Err(refused) = anon.websocket("/api/v1/events/websocket").await else {
            panic!("no credentials, no socket")
        };
        assert_eq!(refused.0, 401, "{}", refused.1);
        let ops = anon.clone().with_token(&login(&anon, "ops").await);
        let mut ws = ops.websocket("/api/v1/events/websocket?tail=1").await.expect("the events websocket");
        ok(
            &ops.call("POST", "/api/v1/vms", Some(&json!({"name": "live1", "memory_mib": 64, "vcpus": 1}))).await,
            "create",
        );
        let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(20);
        loop {
            let msg = tokio::time::timeout_at(deadline, ws.next())
                .await
                .expect("an event about live1 within 20 s")
                .expect("the socket stays open")
                .expect("a frame");
            if let tokio_tungstenite::tungstenite::Message::Text(t) = msg {
                let e: Value = serde_json::from_str(t.as_str()).expect("an event as JSON");
                if e["message"].as_str().is_some_and(|m| m.contains("live1")) {
                    assert!(e["index"].as_u64().is_some(), "{e}");
                    break;
                }
            }
        }
        // A console of a VM that is down: refused with the API's words.
        let Err(refused) = ops.websocket("/api/v1/vms/live1/console/websocket").await else {
            panic!("a down VM has no console")
        };
        assert_eq!(refused.0, 409, "{}", refused.1);
        assert!(refused.1.contains("down"), "{}", refused.1);
        let Err(refused) = ops.websocket("/api/v1/vms/live1/vnc/websocket").await else {
            panic!("no ticket, no display")
        };
        assert_eq!(refused.0, 409, "{}", refused.1);
    });
}
