//! Hostile input against real corrald processes: the attacks an unauthenticated client on the
//! same network tried (issue 13), each refused with a clear error that changes nothing, and a
//! seeded barrage of random and mutated messages to every RPC after which every node is up and
//! the cluster's VMs and hosts are as before.

use std::time::Duration;

use corral_proto::raft_service_client::RaftServiceClient;
use corral_proto::vm_service_client::VmServiceClient;
use corral_proto::{GetVmRequest, RaftPayload};
use corral_raft::typ::VoteRequest;
use corral_tests::client::{channel, stranger, with_certificate};
use corral_tests::Cluster;
use prost::bytes::{Buf, BufMut};
use rand::{Rng, SeedableRng};
use tonic::codec::{Codec, DecodeBuf, Decoder, EncodeBuf, Encoder};
use tonic::{Code, Status};

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap()
}

/// Raw bytes as a gRPC message, either way: what a stranger's own client can send.
#[derive(Default, Clone)]
struct Raw;

impl Codec for Raw {
    type Encode = Vec<u8>;
    type Decode = Vec<u8>;
    type Encoder = Raw;
    type Decoder = Raw;
    fn encoder(&mut self) -> Raw {
        Raw
    }
    fn decoder(&mut self) -> Raw {
        Raw
    }
}

impl Encoder for Raw {
    type Item = Vec<u8>;
    type Error = Status;
    fn encode(&mut self, item: Vec<u8>, buf: &mut EncodeBuf<'_>) -> Result<(), Status> {
        buf.put_slice(&item);
        Ok(())
    }
}

impl Decoder for Raw {
    type Item = Vec<u8>;
    type Error = Status;
    fn decode(&mut self, buf: &mut DecodeBuf<'_>) -> Result<Option<Vec<u8>>, Status> {
        Ok(Some(buf.copy_to_bytes(buf.remaining()).to_vec()))
    }
}

/// A channel that presents node `i`'s own certificate: what a member (or whoever stole its key)
/// sends.
fn as_member(c: &Cluster, i: usize) -> tonic::transport::Channel {
    let tls = c.nodes[i].data_dir.join("tls");
    let read = |f: &str| std::fs::read_to_string(tls.join(f)).unwrap();
    with_certificate(c.endpoint(i), &read("node.pem"), &read("node.key"), &read("ca.pem"))
}

/// Sends `body` as the request of RPC `path` (`/corral.v1.VmService/Get`) on `channel`.
async fn raw_call(channel: tonic::transport::Channel, path: &str, body: Vec<u8>) -> Result<Vec<u8>, Status> {
    let mut grpc = tonic::client::Grpc::new(channel);
    grpc.ready().await.map_err(|e| Status::unavailable(e.to_string()))?;
    let mut req = tonic::Request::new(body);
    req.set_timeout(Duration::from_secs(3));
    let path = path.parse().expect("a valid RPC path");
    grpc.unary(req, path, Raw).await.map(|r| r.into_inner())
}

/// Every unary RPC of corral.proto, as `/corral.v1.Service/Method`.
fn every_rpc() -> Vec<String> {
    let proto = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../proto/proto/corral.proto")).unwrap();
    let mut service = String::new();
    let mut out = Vec::new();
    for line in proto.lines().map(str::trim) {
        if let Some(rest) = line.strip_prefix("service ") {
            service = rest.split_whitespace().next().unwrap().to_string();
        } else if let Some(rest) = line.strip_prefix("rpc ") {
            if line.contains("stream ") {
                continue;
            }
            let method = rest.split(['(', ' ']).next().unwrap();
            out.push(format!("/corral.v1.{service}/{method}"));
        }
    }
    assert!(out.len() > 40, "found only {} RPCs in corral.proto", out.len());
    out
}

/// What the cluster holds that an attack must not change: VM and host names and states.
fn snapshot(c: &Cluster) -> (String, String) {
    let vms = c.must_ok(0, &["vm", "list"]);
    let hosts = c.must_ok(0, &["host", "list"]);
    let cut = |s: String| s.lines().map(|l| l.split_whitespace().take(3).collect::<Vec<_>>().join(" ")).collect();
    (cut(vms), cut(hosts))
}

fn all_up(c: &Cluster) {
    for (i, n) in c.nodes.iter().enumerate() {
        assert!(n.is_running(), "node {i} died:\n{}", n.log());
    }
}

#[test]
fn raft_messages_that_would_crash_a_node_are_refused() {
    let c = Cluster::run(3, &[]);
    c.must_ok(0, &["vm", "create", "web1", "--memory", "64M"]);
    let before = snapshot(&c);
    let leader = c.leader();
    let term = c.status(leader).term;
    rt().block_on(async {
        // A 13-byte Forward: format v0, a string that declares 2^50 bytes.
        let mut data = vec![0u8, 2, 253];
        data.extend_from_slice(&(1u64 << 50).to_le_bytes());
        for i in 0..3 {
            // A stranger is refused before a byte is decoded; a member's bytes are decoded,
            // bounded.
            let mut raft = RaftServiceClient::new(stranger(c.endpoint(i)));
            let err = raft.forward(RaftPayload { data: data.clone() }).await.unwrap_err();
            assert_eq!(err.code(), Code::Unauthenticated, "{err:?}");
            let mut raft = RaftServiceClient::new(as_member(&c, i));
            let err = raft.forward(RaftPayload { data: data.clone() }).await.unwrap_err();
            assert_eq!(err.code(), Code::InvalidArgument, "{err:?}");
        }
        // A vote of term 2^64-1 (openraft would overflow `term + 1` and keep panicking).
        let max = VoteRequest::new(openraft::Vote::new(u64::MAX, 2), None);
        // A vote of term 1000 from node 99, which is no member.
        let stranger_vote = VoteRequest::new(openraft::Vote::new(1000, 99), None);
        for i in 0..3 {
            let mut raft = RaftServiceClient::new(as_member(&c, i));
            let p = corral_raft::network::payload(&max, 1).unwrap();
            let err = raft.vote(p).await.unwrap_err();
            assert_eq!(err.code(), Code::InvalidArgument, "{err:?}");
            assert!(err.message().contains("beyond"), "{err:?}");
            let p = corral_raft::network::payload(&stranger_vote, 1).unwrap();
            let err = raft.vote(p).await.unwrap_err();
            assert_eq!(err.code(), Code::PermissionDenied, "{err:?}");
            assert!(err.message().contains("in the name of member 99"), "{err:?}");
        }
        // More than a Raft message may hold.
        let mut raft = RaftServiceClient::new(channel(c.endpoint(1)));
        let err = raft.forward(RaftPayload { data: vec![0; corral_proto::MAX_RAFT_MESSAGE + 1] }).await.unwrap_err();
        assert_eq!(err.code(), Code::OutOfRange, "{err:?}");
    });
    all_up(&c);
    assert_eq!(c.leader(), leader, "the leader changed");
    assert_eq!(c.status(leader).term, term, "the term changed");
    assert_eq!(snapshot(&c), before);
    // Every node still starts: nothing bad was saved.
    let mut c = c;
    for i in 0..3 {
        c.stop(i);
    }
    for i in 0..3 {
        c.restart(i);
    }
    all_up(&c);
    c.leader();
}

#[test]
fn hostile_documents_and_fields_are_refused_by_name() {
    let c = Cluster::run(1, &[]);
    let before = snapshot(&c);
    // 20,000 nested elements.
    let deep = format!(
        "<ovf:Envelope xmlns:ovf=\"http://schemas.dmtf.org/ovf/envelope/1/\">{}{}</ovf:Envelope>",
        "<a>".repeat(20_000),
        "</a>".repeat(20_000)
    );
    let file = c.dir().join("deep.ovf");
    std::fs::write(&file, &deep).unwrap();
    c.refused(0, &["vm", "import", file.to_str().unwrap()], "nest deeper than 32 levels");
    // A document larger than any VM's.
    let huge = format!("<ovf:Envelope>{}</ovf:Envelope>", " ".repeat(2 << 20));
    std::fs::write(&file, &huge).unwrap();
    c.refused(0, &["vm", "import", file.to_str().unwrap()], "more than the 1048576 a document may have");
    // Devices beyond the limits, each refused with its number.
    let mut args = vec!["vm", "create", "many", "--memory", "64M"];
    for _ in 0..17 {
        args.extend(["--nic", "default"]);
    }
    c.refused(0, &args, "at most 16 NICs per VM (got 17)");
    let mut args = vec!["vm", "create", "many", "--memory", "64M"];
    for _ in 0..17 {
        args.extend(["--disk", "1M"]);
    }
    c.refused(0, &args, "at most 16 disks per VM (got 17)");
    // Boot files outside the storage domain.
    for (path, why) in
        [("/etc/shadow", "lies outside the storage domain"), ("../../etc/passwd", "climbs out with '..'")]
    {
        c.refused(0, &["vm", "create", "boot", "--memory", "64M", "--kernel", path], why);
    }
    // A link inside the domain that leads out of it.
    let domain = c.storage_dir();
    std::fs::create_dir_all(&domain).unwrap();
    std::os::unix::fs::symlink("/etc/shadow", domain.join("shadow-link")).unwrap();
    c.refused(0, &["vm", "create", "boot", "--memory", "64M", "--kernel", "shadow-link"], "symbolic link");
    // A huge name is quoted short, with control characters escaped.
    let long = format!("\u{1b}[2J{}", "x".repeat(100_000));
    let out = c.corral(0, &["vm", "show", &long]);
    assert_ne!(out.code, 0);
    assert!(out.stderr.len() < 300, "{} bytes of error", out.stderr.len());
    assert!(out.stderr.contains("\\u{1b}[2Jxxx") && out.stderr.contains("...' not found"), "{}", out.stderr);
    all_up(&c);
    assert_eq!(snapshot(&c), before);
}

/// ISO uploads that lie (issue 17): a stream without a header, more bytes than declared, fewer,
/// a message too large, a declared size beyond the limit, bytes that are no ISO. Each is refused
/// by name, leaves no file, and the node serves on.
#[test]
fn lying_iso_uploads_are_refused_and_leave_nothing() {
    use corral_proto::v1::library_service_client::LibraryServiceClient;
    use corral_proto::v1::{IsoHeader, IsoUpload};
    let c = Cluster::run(1, &[]);
    let header = |size: u64| IsoHeader { name: "evil".into(), size_bytes: size, ..IsoHeader::default() };
    let msg = |h: Option<IsoHeader>, n: usize| IsoUpload { header: h, data: vec![0x55; n] };
    let cases: Vec<(Vec<IsoUpload>, &str)> = vec![
        (vec![msg(None, 10)], "the first message must hold the header"),
        (vec![msg(Some(header(10)), 0), msg(None, 100)], "more than the 10 bytes its header declared"),
        (vec![msg(Some(header(100_000)), 1000)], "the upload ended after 1000 of the 100000 bytes declared"),
        (vec![msg(Some(header(1 << 40)), 0)], "an ISO must be 1 byte to 64 GiB"),
        (vec![msg(Some(header(6 << 20)), 0), msg(None, 5 << 20)], "a message may carry at most 4194304 bytes"),
        (vec![msg(Some(header(40_000)), 40_000)], "is not an ISO 9660 image"),
        (vec![msg(Some(header(10)), 0), msg(Some(header(10)), 10)], "only the first message may hold a header"),
    ];
    rt().block_on(async {
        for (messages, want) in cases {
            let mut client = LibraryServiceClient::new(as_member(&c, 0)).max_encoding_message_size(16 << 20);
            let err = client.add_iso(futures::stream::iter(messages)).await.unwrap_err();
            assert!(err.message().contains(want), "expected '{want}': {err:?}");
        }
    });
    let left: Vec<String> = std::fs::read_dir(c.storage_dir())
        .map(|d| d.filter_map(|e| e.ok()).map(|e| e.file_name().to_string_lossy().to_string()).collect())
        .unwrap_or_default();
    assert!(!left.iter().any(|f| f.starts_with("iso-")), "files left: {left:?}");
    assert!(c.must_ok(0, &["iso", "list"]).lines().count() <= 1, "no ISO was recorded");
    all_up(&c);
}

#[test]
fn every_rpc_survives_random_and_mutated_messages() {
    let c = Cluster::run(3, &[]);
    c.must_ok(0, &["vm", "create", "web1", "--memory", "64M"]);
    let before = snapshot(&c);
    let rpcs = every_rpc();
    let mut rng = rand::rngs::StdRng::seed_from_u64(13);
    // A valid request to mutate: a VM lookup.
    let valid = prost::Message::encode_to_vec(&GetVmRequest { vm: "web1".into(), stale: false, next_run: false });
    let mut malformed_seen = false;
    rt().block_on(async {
        for round in 0..4 {
            for path in &rpcs {
                // Bootstrap and join are for the host itself; a barrage must not reach the
                // state through write RPCs either, so those only get bytes that cannot decode.
                let writes = !(path.contains("/Get") || path.contains("/List") || path.contains("Status"));
                let body: Vec<u8> = match round {
                    0 => (0..rng.gen_range(0..256)).map(|_| rng.gen()).collect(),
                    1 => {
                        let mut m = valid.clone();
                        let i = rng.gen_range(0..m.len());
                        m[i] ^= 1 << rng.gen_range(0..8);
                        m
                    }
                    // A length-delimited field that claims far more bytes than follow.
                    2 => vec![0x0a, 0xff, 0xff, 0xff, 0xff, 0x0f, 1, 2, 3],
                    _ => vec![0x0a, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x01],
                };
                // A stranger gets nothing but refusals, whatever it sends (a ping is public).
                let node = rng.gen_range(0..3);
                match raw_call(stranger(c.endpoint(node)), path, body.clone()).await {
                    Ok(_) => assert!(path.ends_with("/Ping"), "{path} answered a stranger"),
                    Err(s) => assert!(
                        matches!(s.code(), Code::Unauthenticated | Code::InvalidArgument | Code::PermissionDenied),
                        "{path}: a stranger got {s:?}"
                    ),
                }
                // A member's messages are decoded; its writes only get bytes that cannot be a
                // message (an unterminated varint), so that the state stays as it was.
                let body = if writes && round < 2 {
                    let mut b = body;
                    b.truncate(8);
                    b.extend([0x08, 0xff]);
                    b
                } else {
                    body
                };
                let member = rng.gen_range(0..3);
                if let Err(s) = raw_call(as_member(&c, member), path, body).await {
                    assert_ne!(s.code(), Code::Internal, "{path}: {s:?}");
                    malformed_seen |= s.code() == Code::InvalidArgument;
                }
            }
        }
        // A malformed request names its message type.
        let mut vms = VmServiceClient::new(channel(c.endpoint(0)));
        let err = raw_call(channel(c.endpoint(0)), "/corral.v1.VmService/Get", vec![0x0a, 0xff, 0xff, 0x0f])
            .await
            .unwrap_err();
        assert_eq!(err.code(), Code::InvalidArgument, "{err:?}");
        assert!(err.message().contains("not a valid GetVmRequest message"), "{err:?}");
        vms.get(GetVmRequest { vm: "web1".into(), stale: false, next_run: false })
            .await
            .expect("the node still answers");
    });
    assert!(malformed_seen, "no RPC called InvalidArgument on a malformed message");
    all_up(&c);
    assert_eq!(snapshot(&c), before);
}

/// Every RPC with an empty request (a valid message) on `channel`: the codes it answered.
async fn every_rpc_on(channel: tonic::transport::Channel) -> Vec<(String, Result<(), Status>)> {
    let mut out = Vec::new();
    for path in every_rpc() {
        let r = raw_call(channel.clone(), &path, Vec::new()).await.map(|_| ());
        out.push((path, r));
    }
    out
}

#[test]
fn strangers_are_refused_on_every_service() {
    let mut c = Cluster::run(3, &[]);
    c.must_ok(0, &["vm", "create", "web1", "--memory", "64M"]);
    let ca = std::fs::read_to_string(c.nodes[0].data_dir.join("tls/ca.pem")).unwrap();
    // A certificate of another CA that names a member: host2 of another cluster.
    let other = Cluster::run(2, &[]);
    let other_tls = other.nodes[1].data_dir.join("tls");
    let other_cert = (
        std::fs::read_to_string(other_tls.join("node.pem")).unwrap(),
        std::fs::read_to_string(other_tls.join("node.key")).unwrap(),
    );
    rt().block_on(async {
        // No credentials at all.
        for (path, r) in every_rpc_on(stranger(c.endpoint(1))).await {
            match r {
                Ok(()) => assert!(path.ends_with("/Ping"), "{path} answered a stranger"),
                Err(s) if path.ends_with("/Bootstrap") || path.ends_with("/Join") => {
                    assert_eq!(s.code(), Code::PermissionDenied, "{path}: {s:?}");
                    assert!(s.message().contains("--socket"), "{path}: {s:?}");
                }
                Err(s) => assert_eq!(s.code(), Code::Unauthenticated, "{path}: {s:?}"),
            }
        }
        // TLS that trusts the cluster but presents no certificate: the same.
        let anonymous = {
            use corral_proto::tls::{client_config, pem_certs, ClusterVerifier};
            let verifier = ClusterVerifier::new(pem_certs(&ca).unwrap().remove(0)).unwrap();
            let config = client_config(std::sync::Arc::new(verifier), None).unwrap();
            tonic::transport::Endpoint::from_shared(format!("http://{}", c.endpoint(1)))
                .unwrap()
                .connect_with_connector_lazy(corral_proto::tls::TlsConnect::new(std::sync::Arc::new(config)))
        };
        // The CA's certificate is public (users check its fingerprint before they log in), and
        // a login needs nothing but TLS; an empty one is refused.
        for (path, r) in every_rpc_on(anonymous).await {
            match r {
                Ok(()) => assert!(
                    path.ends_with("/Ping") || path.ends_with(".ClusterService/Ca"),
                    "{path} answered TLS without a certificate"
                ),
                Err(s) if path.ends_with("/Login") => assert_eq!(s.code(), Code::InvalidArgument, "{s:?}"),
                Err(_) => {}
            }
        }
        // A certificate of another CA: the handshake itself fails.
        let forged = with_certificate(c.endpoint(1), &other_cert.0, &other_cert.1, &ca);
        for (path, r) in every_rpc_on(forged).await {
            assert!(r.is_err(), "{path} answered a certificate of another CA");
        }
    });
    // A removed member's certificate is refused from its removal on.
    c.stop(2);
    c.must_ok(0, &["host", "remove", "host3"]);
    let tls = c.nodes[2].data_dir.join("tls");
    let read = |f: &str| std::fs::read_to_string(tls.join(f)).unwrap();
    let (cert, key) = (read("node.pem"), read("node.key"));
    rt().block_on(async {
        for i in 0..2 {
            let removed = with_certificate(c.endpoint(i), &cert, &key, &ca);
            for (path, r) in every_rpc_on(removed).await {
                match r {
                    Ok(()) => assert!(path.ends_with("/Ping"), "{path} answered a removed member"),
                    Err(s) if path.ends_with("/Bootstrap") || path.ends_with("/Join") => {
                        assert_eq!(s.code(), Code::PermissionDenied, "{path}: {s:?}")
                    }
                    Err(s) => {
                        assert_eq!(s.code(), Code::PermissionDenied, "{path}: {s:?}");
                        assert!(s.message().contains("belongs to no member"), "{path}: {s:?}");
                    }
                }
            }
        }
    });
    for i in 0..2 {
        assert!(c.nodes[i].is_running(), "node {i} died:\n{}", c.nodes[i].log());
    }
}

/// `corral --socket S ARGS` with `input` on standard input.
fn local_with_stdin(c: &Cluster, i: usize, args: &[&str], input: &str) -> corral_tests::CliOutput {
    use std::io::Write;
    let mut child = std::process::Command::new(corral_tests::bin("corral"))
        .arg("--socket")
        .arg(c.socket(i))
        .args(args)
        .env_remove("CORRAL_ENDPOINT")
        .env_remove("CORRAL_CREDENTIALS")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(input.as_bytes()).unwrap();
    child.wait_with_output().unwrap().into()
}

#[test]
fn joins_check_the_ca_first_and_tokens_are_listed_revoked_and_read_from_stdin() {
    let mut c = Cluster::run(1, &[]);
    let fresh = c.add_node(&[]);
    let peer = c.endpoint(0).to_string();
    let hosts_before = c.must_ok(0, &["host", "list"]);

    // Bootstrap and join are refused over TCP, naming the socket; a plaintext call is told
    // how to get credentials, in one line.
    let plain = |endpoint: &str, args: &[&str]| {
        let out = std::process::Command::new(corral_tests::bin("corral"))
            .args(["--endpoint", endpoint])
            .args(args)
            .env_remove("CORRAL_CREDENTIALS")
            .env_remove("CORRAL_SOCKET")
            .output()
            .unwrap();
        corral_tests::CliOutput::from(out)
    };
    let out = plain(c.endpoint(fresh), &["cluster", "join", "--peer", &peer, "--token", "x"]);
    assert!(out.stderr.contains("--socket"), "{}", out.stderr);
    let out = plain(&peer, &["cluster", "bootstrap", "--name", "x"]);
    assert!(out.stderr.contains("--socket"), "{}", out.stderr);
    let plain = plain(&peer, &["vm", "list"]);
    assert_eq!(plain.stderr.lines().count(), 1, "{}", plain.stderr);
    assert!(plain.stderr.contains("cluster credentials -f FILE"), "{}", plain.stderr);

    // A token that pins another CA: the TLS handshake fails before the secret is sent.
    let token = c.must_ok(0, &["cluster", "token", "create", "--ttl", "1h"]).lines().last().unwrap().trim().to_string();
    let secret = &token[token.len() - 64..];
    let wrong_pin = format!("corral-{}-{secret}", "0".repeat(64));
    let out = c.local(fresh, &["cluster", "join", "--peer", &peer, "--token", &wrong_pin]);
    assert_ne!(out.code, 0);
    assert!(out.stderr.contains("the token was not sent"), "{}", out.stderr);
    assert_eq!(c.must_ok(0, &["host", "list"]), hosts_before, "a refused join added a host");

    // Tokens are listed by id, never shown again; a revoked one joins nothing.
    let created: corral_cli::views::TokenView = c.cli_json(0, &["cluster", "token", "create", "--ttl", "1h"]);
    let listed: Vec<corral_cli::views::TokenInfoView> = c.cli_json(0, &["cluster", "token", "list"]);
    assert!(listed.iter().any(|t| t.id == created.id && t.uses == 0), "{listed:?}");
    let text = c.must_ok(0, &["cluster", "token", "list"]);
    assert!(!text.contains(&created.token[created.token.len() - 64..]), "a token's secret was listed");
    c.must_ok(0, &["cluster", "token", "revoke", &created.id]);
    c.refused(0, &["cluster", "token", "revoke", &created.id], "no join token has id");
    let out = c.local(fresh, &["cluster", "join", "--peer", &peer, "--token", &created.token]);
    assert!(out.stderr.contains("join token is not valid or has expired, or was revoked"), "{}", out.stderr);

    // The first token, read from standard input, joins; its use is counted.
    let out =
        local_with_stdin(&c, fresh, &["cluster", "join", "--peer", &peer, "--token-file", "-"], &format!("{token}\n"));
    assert_eq!(out.code, 0, "{}", out.stderr);
    let listed: Vec<corral_cli::views::TokenInfoView> = c.cli_json(0, &["cluster", "token", "list"]);
    let id = listed.iter().find(|t| t.uses == 1).map(|t| t.id.clone());
    assert!(id.is_some(), "the used token is not counted: {listed:?}");
    // The new member serves TLS with a certificate of the cluster's CA.
    let status = c.status(fresh);
    assert_eq!(status.members.len(), 2, "{status:?}");
    assert!(c.nodes[fresh].data_dir.join("tls/node.pem").exists());
}

#[test]
fn a_level_1_cluster_serves_plaintext_until_it_is_upgraded_to_tls() {
    let mut c = Cluster::start(3, &[]);
    c.bootstrap_with(&["--level", "1"]);
    c.join(1);
    c.join(2);
    assert_eq!(c.credentials(), None, "a level-1 cluster has no CA to sign credentials");
    c.must_ok(1, &["vm", "create", "web1", "--memory", "64M"]);
    assert_eq!(c.status(2).cluster_level, 1);
    assert!(!c.nodes[0].data_dir.join("tls").exists(), "a level-1 cluster made a CA");

    // The upgrade makes the CA and every member's certificate before it requires TLS.
    let up: serde_json::Value = c.must_json(2, &["cluster", "upgrade"]);
    assert_eq!(up["cluster_level"], 5, "{up}");
    let plain = c.corral(0, &["vm", "list"]);
    assert!(plain.stderr.contains("answers only callers with credentials"), "{}", plain.stderr);
    c.fetch_credentials(0);
    for i in 0..3 {
        assert!(c.nodes[i].data_dir.join("tls/node.pem").exists(), "host{} has no certificate", i + 1);
        assert_eq!(c.status(i).cluster_level, 5);
    }
    c.must_ok(2, &["vm", "edit", "web1", "--description", "after TLS"]);
    assert_eq!(c.vm(0, "web1").description, "after TLS");
    // Exactly one voter made the CA's key; the other voters fetched it, so any of them can sign.
    corral_tests::wait_until(Duration::from_secs(15), "every voter to hold the CA key", || {
        let missing: Vec<usize> = (0..3).filter(|i| !c.nodes[*i].data_dir.join("tls/ca.key").exists()).collect();
        if missing.is_empty() {
            Ok(())
        } else {
            Err(format!("no CA key on {missing:?}"))
        }
    });
    // A new token pins the CA; a node joins with it over TLS.
    let token = c.must_ok(0, &["cluster", "token", "create"]).lines().last().unwrap().trim().to_string();
    assert_eq!(token.matches('-').count(), 2, "{token}");
    c.token = Some(token);
    let fresh = c.add_node(&[]);
    c.join(fresh);
    assert_eq!(c.status(fresh).members.len(), 4);
}
