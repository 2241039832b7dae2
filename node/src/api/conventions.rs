//! The gRPC conventions every node serves beside its API, so that grpcurl, load balancers and
//! systemd probes work: server reflection (v1 and v1alpha, from the API's descriptor set) and
//! the standard health service (`grpc.health.v1.Health`). Both answer anyone, without
//! credentials, even where the cluster requires TLS: they must never tell more than the API's
//! shape (public in its .proto files) and one word of health per service.

use std::time::Duration;

use tonic_health::pb::health_server::{Health, HealthServer};
use tonic_health::server::HealthReporter;
use tonic_health::ServingStatus;
use tonic_reflection::server::v1::{ServerReflection, ServerReflectionServer};
use tonic_reflection::server::v1alpha;

use crate::cluster::Cluster;

/// Every public service, by its full name: the health service reports each, and "" for the
/// node as a whole.
pub const SERVICES: [&str; 10] = [
    corral_proto::cluster_service_server::SERVICE_NAME,
    corral_proto::host_service_server::SERVICE_NAME,
    corral_proto::vm_service_server::SERVICE_NAME,
    corral_proto::event_service_server::SERVICE_NAME,
    corral_proto::disk_service_server::SERVICE_NAME,
    corral_proto::affinity_service_server::SERVICE_NAME,
    corral_proto::ovf_service_server::SERVICE_NAME,
    corral_proto::engine_service_server::SERVICE_NAME,
    corral_proto::auth_service_server::SERVICE_NAME,
    corral_proto::library_service_server::SERVICE_NAME,
];

/// How often the health task looks.
const HEALTH_PERIOD: Duration = Duration::from_millis(500);

/// Server reflection (grpc.reflection.v1) of every service in the API's descriptor set, the
/// health service and reflection itself.
pub fn reflection_v1() -> anyhow::Result<ServerReflectionServer<impl ServerReflection>> {
    Ok(tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(corral_proto::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        .build_v1()?)
}

/// The same as v1alpha, which older tools (grpcurl before 1.8.8, some load balancers) ask.
pub fn reflection_v1alpha() -> anyhow::Result<v1alpha::ServerReflectionServer<impl v1alpha::ServerReflection>> {
    Ok(tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(corral_proto::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        .build_v1alpha()?)
}

/// The health service, kept up to date by a task for as long as the process runs: SERVING
/// while this node runs Raft and sees a leader (itself with a majority, or a leader it heard
/// within twice the election timeout), NOT_SERVING otherwise, for "" and every service alike.
pub fn health(cluster: Cluster) -> HealthServer<impl Health> {
    let (reporter, server) = tonic_health::server::health_reporter();
    tokio::spawn(keep_health(reporter, cluster));
    server
}

async fn keep_health(reporter: HealthReporter, cluster: Cluster) {
    let mut last = None;
    let mut tick = tokio::time::interval(HEALTH_PERIOD);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let healthy = cluster.sees_leader().is_some();
        if last == Some(healthy) {
            continue;
        }
        last = Some(healthy);
        let status = if healthy { ServingStatus::Serving } else { ServingStatus::NotServing };
        tracing::debug!(?status, "gRPC health");
        reporter.set_service_status("", status).await;
        for name in SERVICES {
            reporter.set_service_status(name, status).await;
        }
    }
}
