//! The gRPC conventions on a real cluster that requires TLS: server reflection lists the
//! services and gives VmService's file; the standard health service says SERVING while the node
//! sees a leader and NOT_SERVING once it has lost its quorum, to callers without credentials
//! too (a load balancer's or systemd's probe).

use std::sync::Arc;
use std::time::Duration;

use corral_tests::client::{channel, stranger};
use corral_tests::{wait_until, Cluster};
use prost::Message;
use tonic::transport::{Channel, Endpoint};
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;
use tonic_health::pb::HealthCheckRequest;
use tonic_reflection::pb::v1::server_reflection_client::ServerReflectionClient;
use tonic_reflection::pb::v1::server_reflection_request::MessageRequest;
use tonic_reflection::pb::v1::server_reflection_response::MessageResponse;
use tonic_reflection::pb::v1::ServerReflectionRequest;

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap()
}

/// TLS that trusts the cluster's CA (pinned by the join token) and presents no certificate:
/// a caller with no credentials at all.
fn anonymous_tls(addr: &str, token: &str) -> Channel {
    let pin = token.split('-').nth(1).expect("a join token names its CA");
    let verifier = corral_proto::tls::PinnedVerifier::new(&format!("sha256:{pin}"));
    let config = corral_proto::tls::client_config(verifier, None).expect("TLS settings");
    Endpoint::from_shared(format!("http://{addr}"))
        .unwrap()
        .connect_timeout(Duration::from_millis(500))
        .timeout(Duration::from_secs(5))
        .connect_with_connector_lazy(corral_proto::tls::TlsConnect::new(Arc::new(config)))
}

async fn reflect(ch: Channel, request: MessageRequest) -> MessageResponse {
    let req = ServerReflectionRequest { host: String::new(), message_request: Some(request) };
    let mut answers = ServerReflectionClient::new(ch)
        .server_reflection_info(tokio_stream::iter([req]))
        .await
        .expect("reflection answers")
        .into_inner();
    let answer = answers.message().await.expect("a reflection answer").expect("one answer");
    answer.message_response.expect("an answer with a response")
}

async fn health(ch: Channel, service: &str) -> Result<ServingStatus, String> {
    let req = HealthCheckRequest { service: service.into() };
    let answer = HealthClient::new(ch).check(req).await.map_err(|s| format!("{:?}: {}", s.code(), s.message()))?;
    Ok(answer.into_inner().status())
}

#[test]
fn reflection_and_health_answer_and_health_follows_the_quorum() {
    let mut c = Cluster::run(3, &[]);
    c.leader();
    let rt = runtime();
    // Lazy channels are made inside the runtime.
    let _in_runtime = rt.enter();
    let addr = c.endpoint(0).to_string();
    let token = c.token.clone().expect("bootstrapped");

    // Reflection, over TLS with the admin's credentials.
    let MessageResponse::ListServicesResponse(list) =
        rt.block_on(reflect(channel(&addr), MessageRequest::ListServices(String::new())))
    else {
        panic!("list_services answered something else")
    };
    let names: Vec<&str> = list.service.iter().map(|s| s.name.as_str()).collect();
    for want in [
        "corral.v1.VmService",
        "corral.v1.ClusterService",
        "grpc.health.v1.Health",
        "grpc.reflection.v1.ServerReflection",
    ] {
        assert!(names.contains(&want), "{want} not in {names:?}");
    }
    let answer =
        rt.block_on(reflect(channel(&addr), MessageRequest::FileContainingSymbol("corral.v1.VmService".into())));
    let MessageResponse::FileDescriptorResponse(files) = answer else { panic!("no file for VmService: {answer:?}") };
    let vm_file = files
        .file_descriptor_proto
        .iter()
        .map(|bytes| prost_types::FileDescriptorProto::decode(&bytes[..]).expect("a file descriptor"))
        .find(|f| f.service.iter().any(|s| s.name() == "VmService"))
        .expect("the file that declares VmService");
    assert_eq!(vm_file.package(), "corral.v1");
    let vm_service = vm_file.service.iter().find(|s| s.name() == "VmService").unwrap();
    assert!(vm_service.method.iter().any(|m| m.name() == "Create"), "VmService has Create");

    // Reflection and health need no credentials, over TLS or plaintext; the API still does.
    let anonymous = anonymous_tls(&addr, &token);
    let answer = rt.block_on(reflect(anonymous.clone(), MessageRequest::ListServices(String::new())));
    assert!(matches!(answer, MessageResponse::ListServicesResponse(_)), "{answer:?}");
    let refused = rt.block_on(async {
        corral_proto::vm_service_client::VmServiceClient::new(anonymous.clone())
            .list(corral_proto::ListVmsRequest::default())
            .await
    });
    assert!(refused.is_err(), "the API still refuses a caller without credentials");

    // SERVING for the node and every service while it sees a leader.
    for service in ["", "corral.v1.VmService", "corral.v1.ClusterService"] {
        wait_until(Duration::from_secs(15), "SERVING with a leader", || {
            match rt.block_on(health(anonymous.clone(), service))? {
                ServingStatus::Serving => Ok(()),
                other => Err(format!("{service:?}: {other:?}")),
            }
        });
    }
    assert_eq!(rt.block_on(health(stranger(&addr), "")).unwrap(), ServingStatus::Serving, "plaintext, no credentials");
    let unknown = rt.block_on(health(anonymous.clone(), "no.such.Service"));
    assert!(unknown.as_ref().is_err_and(|e| e.starts_with("NotFound")), "{unknown:?}");

    // Node 0 alone: no quorum, no leader it can trust, NOT_SERVING.
    c.kill(1);
    c.kill(2);
    wait_until(Duration::from_secs(20), "NOT_SERVING without a quorum", || {
        match rt.block_on(health(anonymous.clone(), ""))? {
            ServingStatus::NotServing => Ok(()),
            other => Err(format!("{other:?}")),
        }
    });
    assert_eq!(rt.block_on(health(anonymous.clone(), "corral.v1.VmService")).unwrap(), ServingStatus::NotServing);

    // The quorum back: SERVING again.
    c.restart(1);
    wait_until(Duration::from_secs(30), "SERVING again with a quorum", || {
        match rt.block_on(health(anonymous.clone(), ""))? {
            ServingStatus::Serving => Ok(()),
            other => Err(format!("{other:?}")),
        }
    });
}
