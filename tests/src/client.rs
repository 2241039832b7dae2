//! A retrying gRPC writer, as a careful client would be: every write carries a request id,
//! and after a failure it is sent again with the same id (to any node), so the cluster
//! applies it at most once. Used by the concurrency test and by the benchmark.

use std::time::{Duration, Instant};

use corral_proto::vm_service_client::VmServiceClient;
use corral_proto::{CreateVmRequest, EditVmRequest, Vm, REQUEST_ID_HEADER};
use tonic::transport::{Channel, Endpoint};
use tonic::{Code, Status};

/// A channel to the node at `addr`, with the admin's credentials of its cluster (TLS) when the
/// harness registered them, as the CLI would use them.
pub fn channel(addr: &str) -> Channel {
    match crate::credentials_for(addr) {
        Some(file) => {
            let config = corral_cli::credentials::load(&file).expect("the cluster's credentials load");
            endpoint(addr).connect_with_connector_lazy(corral_proto::tls::TlsConnect::new(config))
        }
        None => endpoint(addr).connect_lazy(),
    }
}

/// A plaintext channel with no credentials: a stranger's.
pub fn stranger(addr: &str) -> Channel {
    endpoint(addr).connect_lazy()
}

/// A TLS channel that presents `identity` (certificate chain, key) and trusts `ca` (PEM each).
pub fn with_certificate(addr: &str, cert_pem: &str, key_pem: &str, ca_pem: &str) -> Channel {
    use corral_proto::tls::{client_config, pem_certs, pem_key, ClusterVerifier};
    let ca = pem_certs(ca_pem).expect("a CA certificate").remove(0);
    let verifier = std::sync::Arc::new(ClusterVerifier::new(ca).expect("a usable CA"));
    let chain = pem_certs(cert_pem).expect("a certificate");
    let config = client_config(verifier, Some((chain, pem_key(key_pem).expect("a key")))).expect("TLS settings");
    endpoint(addr).connect_with_connector_lazy(corral_proto::tls::TlsConnect::new(std::sync::Arc::new(config)))
}

fn endpoint(addr: &str) -> Endpoint {
    Endpoint::from_shared(format!("http://{addr}"))
        .expect("valid endpoint")
        .connect_timeout(Duration::from_millis(500))
        .timeout(Duration::from_secs(5))
        .tcp_nodelay(true)
}

fn with_id<T>(msg: T, request_id: &str) -> tonic::Request<T> {
    let mut req = tonic::Request::new(msg);
    req.metadata_mut().insert(REQUEST_ID_HEADER, request_id.parse().expect("ascii request id"));
    req
}

/// Whether a failed write may be retried: the cluster or the connection was unavailable, or
/// the call timed out (and might or might not have been applied: the id makes a retry safe).
pub fn retryable(s: &Status) -> bool {
    matches!(s.code(), Code::Unavailable | Code::DeadlineExceeded | Code::Unknown | Code::Cancelled | Code::Internal)
}

pub struct Writer {
    clients: Vec<VmServiceClient<Channel>>,
    next: usize,
}

/// A write that succeeded, and how many attempts it took.
pub struct Acked {
    pub vm: Vm,
    pub attempts: u32,
}

impl Writer {
    pub fn new(endpoints: &[String]) -> Writer {
        Writer { clients: endpoints.iter().map(|e| VmServiceClient::new(channel(e))).collect(), next: 0 }
    }

    pub fn prefer(&mut self, index: usize) {
        self.next = index % self.clients.len();
    }

    pub async fn create(&mut self, name: &str, request_id: &str, give_up_after: Duration) -> Result<Acked, Status> {
        let req = CreateVmRequest { name: name.into(), memory_mib: 512, vcpus: 1, ..Default::default() };
        self.retry(give_up_after, |mut c| {
            let r = with_id(req.clone(), request_id);
            async move { c.create(r).await }
        })
        .await
    }

    pub async fn edit_description(
        &mut self,
        vm: &str,
        description: &str,
        request_id: &str,
        give_up_after: Duration,
    ) -> Result<Acked, Status> {
        let req = EditVmRequest { vm: vm.into(), description: Some(description.into()), ..Default::default() };
        self.retry(give_up_after, |mut c| {
            let r = with_id(req.clone(), request_id);
            async move { c.edit(r).await }
        })
        .await
    }

    async fn retry<F, Fut>(&mut self, give_up_after: Duration, mut call: F) -> Result<Acked, Status>
    where
        F: FnMut(VmServiceClient<Channel>) -> Fut,
        Fut: std::future::Future<Output = Result<tonic::Response<Vm>, Status>>,
    {
        let deadline = Instant::now() + give_up_after;
        let mut attempts = 0;
        loop {
            attempts += 1;
            let client = self.clients[self.next].clone();
            match call(client).await {
                Ok(resp) => return Ok(Acked { vm: resp.into_inner(), attempts }),
                Err(s) if retryable(&s) && Instant::now() < deadline => {
                    // Try the next node; a short pause lets an election finish.
                    self.next = (self.next + 1) % self.clients.len();
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                Err(s) => return Err(s),
            }
        }
    }
}
