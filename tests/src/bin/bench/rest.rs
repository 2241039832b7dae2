//! What REST costs beside gRPC (issue 18): `GET /api/v1/vms` of 10,000 VMs against gRPC's
//! `ListVms` of the same VMs, alternated in the same run on the same TLS port, by the same
//! caller (the admin's client certificate); and the web console's dashboard, loaded to
//! interactive in headless Chromium (web/e2e's `load` scenario) against 1,000 VMs.

use std::time::{Duration, Instant};

use corral_proto::vm_service_client::VmServiceClient;
use corral_proto::{CreateVmRequest, ListVmsRequest};
use corral_tests::client::channel;
use corral_tests::http::Http;
use corral_tests::{repo, web_e2e, Cluster};

use super::{ms, percentile};

/// Creates `n` VMs named vm00000.. through `addr`, 32 writers at a time.
fn create_vms(rt: &tokio::runtime::Runtime, addr: &str, n: usize) {
    let started = Instant::now();
    rt.block_on(async {
        let mut tasks = Vec::new();
        for w in 0..32 {
            let addr = addr.to_string();
            tasks.push(tokio::spawn(async move {
                let mut client = VmServiceClient::new(channel(&addr));
                for i in (w..n).step_by(32) {
                    let req =
                        CreateVmRequest { name: format!("vm{i:05}"), memory_mib: 64, vcpus: 1, ..Default::default() };
                    client.create(req).await.expect("create failed");
                }
            }));
        }
        for t in tasks {
            t.await.expect("a writer");
        }
    });
    println!("created {n} VMs in {:.1} s", started.elapsed().as_secs_f64());
}

pub fn rest_list(rt: &tokio::runtime::Runtime, rounds: usize) {
    const VMS: usize = 10_000;
    let c = Cluster::run(3, &[]);
    let leader = c.leader();
    let addr = c.endpoint(leader).to_string();
    println!(
        "\n## REST GET /api/v1/vms against gRPC ListVms, {VMS} VMs, through the leader over TLS ({rounds} rounds)"
    );
    create_vms(rt, &addr, VMS);
    let ca = std::fs::read_to_string(c.nodes[leader].data_dir.join("tls/ca.pem")).expect("the CA");
    let cert = std::fs::read_to_string(c.credentials().expect("admin credentials")).expect("the credentials");
    let h1 = Http::with_identity(&addr, &ca, Some(&cert));
    let h2 = h1.clone().h2();
    let grpc = {
        let _guard = rt.enter();
        channel(&addr)
    };
    let (mut g, mut r1, mut r2) = (Vec::new(), Vec::new(), Vec::new());
    let (mut grpc_bytes, mut json_bytes) = (0usize, 0usize);
    let deadline = Instant::now() + Duration::from_secs(600);
    rt.block_on(async {
        let mut client = VmServiceClient::new(grpc.clone()).max_decoding_message_size(corral_proto::MAX_API_MESSAGE);
        for round in 0..rounds + 2 {
            if Instant::now() > deadline {
                break;
            }
            let t = Instant::now();
            let list = client.list(ListVmsRequest { stale: false }).await.expect("gRPC list").into_inner();
            let gt = t.elapsed();
            assert_eq!(list.vms.len(), VMS);
            grpc_bytes = prost::Message::encoded_len(&list);
            let t = Instant::now();
            let a = h1.call("GET", "/api/v1/vms", None).await;
            let t1 = t.elapsed();
            assert_eq!((a.status, a.body["vms"].as_array().map(|v| v.len())), (200, Some(VMS)));
            json_bytes = a.raw.len();
            let t = Instant::now();
            let a = h2.call("GET", "/api/v1/vms", None).await;
            let t2 = t.elapsed();
            assert_eq!(a.status, 200);
            // The first two rounds warm the connections and caches.
            if round >= 2 {
                g.push(gt);
                r1.push(t1);
                r2.push(t2);
            }
        }
    });
    for v in [&mut g, &mut r1, &mut r2] {
        v.sort();
    }
    println!("{:>28} {:>10} {:>10} {:>12}", "", "p50", "p99", "bytes");
    println!(
        "{:>28} {:>10} {:>10} {:>12}",
        "gRPC ListVms",
        ms(percentile(&g, 0.5)),
        ms(percentile(&g, 0.99)),
        grpc_bytes
    );
    let row = |name: &str, v: &[Duration]| {
        println!("{name:>28} {:>10} {:>10} {:>12}", ms(percentile(v, 0.5)), ms(percentile(v, 0.99)), json_bytes);
    };
    row("REST GET (HTTP/1.1, parsed)", &r1);
    row("REST GET (HTTP/2, parsed)", &r2);
    let ratio = percentile(&r1, 0.5).as_secs_f64() / percentile(&g, 0.5).as_secs_f64().max(1e-9);
    println!("ratio REST (HTTP/1.1) / gRPC, p50: {ratio:.2}");
}

pub fn dashboard(rt: &tokio::runtime::Runtime, runs: usize) {
    const VMS: usize = 1_000;
    let web_root = repo().join("web/dist");
    let c = Cluster::run(3, &["--web-root", web_root.to_str().expect("UTF-8")]);
    let leader = c.leader();
    let addr = c.endpoint(leader).to_string();
    println!("\n## web console: the dashboard loaded to interactive in headless Chromium, {VMS} VMs ({runs} loads)");
    create_vms(rt, &addr, VMS);
    let pw = c.dir().join("ops.pw");
    std::fs::write(&pw, "ops-secret-pw\n").expect("a password file");
    for args in [
        &["user", "create", "ops", "--password-file", pw.to_str().expect("UTF-8")][..],
        &["permission", "add", "--user", "ops", "--role", "SuperUser", "--on", "system"],
    ] {
        let out = c.local(leader, args);
        assert_eq!(out.code, 0, "{args:?}: {}", out.stderr);
    }
    let out = repo().join("target/web-e2e/load");
    let runs = runs.to_string();
    #[rustfmt::skip]
    let log = web_e2e(&format!("https://{addr}"), &out, &[
        "--scenario", "load", "--user", "ops", "--password", "ops-secret-pw", "--runs", &runs,
    ]);
    for line in log.lines().filter(|l| l.contains("dashboard_ms")) {
        println!("{line}");
    }
}
