//! What authorisation costs (issue 14): `vm list` of 10,000 VMs for a user who may see 10 of
//! them, for a SuperUser, and with no check at all (a member's own certificate, which the API
//! does not check), interleaved in the same run on the same TLS port; and write latency with a
//! write made for a user (`OnBehalf`, checked again by apply) against one that is not.

use std::time::{Duration, Instant};

use corral_proto::vm_service_client::VmServiceClient;
use corral_proto::{CreateVmRequest, ListVmsRequest};
use corral_tests::client::{channel, with_certificate};
use corral_tests::Cluster;
use tonic::transport::Channel;

use super::{edit_load, ms, percentile};

const VMS: usize = 10_000;
const SEEN: usize = 10;

fn bearer<T>(msg: T, token: &str) -> tonic::Request<T> {
    let mut req = tonic::Request::new(msg);
    req.metadata_mut().insert("authorization", format!("Bearer {token}").parse().expect("ascii"));
    req
}

pub fn authz(rt: &tokio::runtime::Runtime, rounds: usize) {
    let c = Cluster::run(3, &[]);
    let leader = c.leader();
    let addr = c.endpoint(leader).to_string();
    println!("\n## authorisation: vm list of {VMS} VMs and vm edit, through the leader over TLS ({rounds} rounds)");
    // 10,000 VMs, 32 writers at a time (bounded: each creates its share once).
    let started = Instant::now();
    rt.block_on(async {
        let mut tasks = Vec::new();
        for w in 0..32 {
            let addr = addr.clone();
            tasks.push(tokio::spawn(async move {
                let mut client = VmServiceClient::new(channel(&addr));
                for n in (w..VMS).step_by(32) {
                    let req =
                        CreateVmRequest { name: format!("vm{n:05}"), memory_mib: 1, vcpus: 1, ..Default::default() };
                    client.create(req).await.expect("create failed");
                }
            }));
        }
        for t in tasks {
            t.await.unwrap();
        }
    });
    println!("created {VMS} VMs in {:.1} s", started.elapsed().as_secs_f64());
    // alice: UserRole on 10 of them, an API token.
    let root = |args: &[&str]| {
        let out = c.local(leader, args);
        assert_eq!(out.code, 0, "{args:?}: {}", out.stderr);
        out.stdout
    };
    root(&["user", "create", "alice"]);
    for n in 0..SEEN {
        root(&["permission", "add", "--user", "alice", "--role", "UserRole", "--on", &format!("vm:vm{:05}", n * 997)]);
    }
    let token =
        root(&["user", "token", "create", "alice", "--name", "bench"]).lines().last().unwrap().trim().to_string();
    // A member's own certificate: the API checks nothing for it.
    let tls = c.dir().join(format!("host{}", leader + 1)).join("tls");
    let read = |f: &str| std::fs::read_to_string(tls.join(f)).expect("the node's TLS files");
    let member: Channel = {
        let _guard = rt.enter();
        with_certificate(&addr, &read("node.pem"), &read("node.key"), &read("ca.pem"))
    };
    let admin: Channel = {
        let _guard = rt.enter();
        channel(&addr)
    };

    let (mut unchecked, mut superuser, mut user) = (Vec::new(), Vec::new(), Vec::new());
    rt.block_on(async {
        let mut m = VmServiceClient::new(member.clone());
        let mut a = VmServiceClient::new(admin.clone());
        let mut u = VmServiceClient::new(admin.clone());
        let req = || ListVmsRequest { stale: false };
        for round in 0..rounds + 2 {
            let t = Instant::now();
            let all = m.list(req()).await.expect("member list").into_inner().vms.len();
            let d1 = t.elapsed();
            let t = Instant::now();
            let also_all = a.list(req()).await.expect("admin list").into_inner().vms.len();
            let d2 = t.elapsed();
            let t = Instant::now();
            let seen = u.list(bearer(req(), &token)).await.expect("alice list").into_inner().vms.len();
            let d3 = t.elapsed();
            assert_eq!((all, also_all, seen), (VMS, VMS, SEEN));
            // The first two rounds warm the connections up.
            if round >= 2 {
                unchecked.push(d1);
                superuser.push(d2);
                user.push(d3);
            }
        }
    });
    for v in [&mut unchecked, &mut superuser, &mut user] {
        v.sort();
    }
    let base = percentile(&unchecked, 0.5).as_secs_f64();
    println!("{:<44} {:>10} {:>10} {:>8}", "caller", "p50", "p99", "ratio");
    for (name, v) in [
        ("no check (a member's certificate)", &unchecked),
        ("SuperUser (admin's certificate)", &superuser),
        ("UserRole on 10 VMs (API token)", &user),
    ] {
        let p50 = percentile(v, 0.5);
        println!("{:<44} {:>10} {:>10} {:>7.2}x", name, ms(p50), ms(percentile(v, 0.99)), p50.as_secs_f64() / base);
    }

    // Writes: the same edits made with a member's certificate (no check) and as the SuperUser
    // admin (checked here and by apply), alternating, at 1 and 64 clients, 4 s each.
    println!("{:<44} {:>8} {:>10} {:>10} {:>10}", "vm edit", "clients", "p50", "p99", "writes/s");
    for clients in [1usize, 64] {
        for (name, ch) in [
            ("no check (a member's certificate)", &member),
            ("SuperUser, made OnBehalf", &admin),
            ("no check (a member's certificate)", &member),
            ("SuperUser, made OnBehalf", &admin),
        ] {
            let vms: Vec<String> = (0..clients).map(|i| format!("vm{i:05}")).collect();
            let (lat, rate) = edit_load(rt, || ch.clone(), &vms, Duration::from_secs(4));
            println!(
                "{:<44} {:>8} {:>10} {:>10} {:>10.0}",
                name,
                clients,
                ms(percentile(&lat, 0.5)),
                ms(percentile(&lat, 0.99)),
                rate
            );
        }
    }
}
