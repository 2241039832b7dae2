//! The fault harness's clients: tasks that create, edit, read and delete a small pool of
//! config-only VMs through random nodes over gRPC, one call at a time and never retried, and
//! record each call's invocation, answer and completion. Every value written is unique, so a
//! read tells which write it saw.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use corral_proto::vm_service_client::VmServiceClient;
use corral_proto::{
    CreateVmRequest, DeleteVmRequest, EditVmRequest, GetVmRequest, ListVmsRequest, Vm, REQUEST_ID_HEADER,
};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use tonic::transport::Channel;
use tonic::{Code, Status};

use super::history::{Call, Config, Op, Outcome, Recorder};

/// What every client shares.
#[derive(Clone)]
pub struct Shared {
    pub channels: Arc<Vec<Channel>>,
    pub recorder: Recorder,
    /// Set when the clients must finish their call in flight and stop.
    pub stop: Arc<AtomicBool>,
    /// Set while a load burst lasts.
    pub burst: Arc<AtomicBool>,
    /// Makes every written value unique.
    pub counter: Arc<AtomicU64>,
    pub keys: usize,
    /// A call that has not answered by then is recorded as unknown.
    pub timeout: Duration,
    /// Reads take the node's own copy (`--stale`): the negative control, which the checker
    /// must catch.
    pub stale_reads: bool,
}

pub fn vm_name(key: usize) -> String {
    format!("vm{key}")
}

fn config(vm: &Vm) -> Config {
    Config { memory_mib: vm.memory_mib, description: vm.description.clone() }
}

/// How a gRPC error bears on the call: definitely not applied, or perhaps applied.
fn outcome_of(s: &Status) -> Outcome {
    match s.code() {
        Code::NotFound => Outcome::NotFound,
        Code::AlreadyExists => Outcome::AlreadyExists,
        // Validation and rule refusals come before anything is written.
        Code::InvalidArgument | Code::FailedPrecondition | Code::PermissionDenied | Code::OutOfRange => {
            Outcome::Refused(s.message().to_string())
        }
        // The connection was never made, so the request never left (a killed node's port).
        Code::Unavailable if s.message().starts_with("tcp connect error") => {
            Outcome::Refused(format!("not sent: {}", s.message()))
        }
        // Unavailable may come after a forward was sent; the rest leave it open too.
        _ => Outcome::Unknown(format!("{:?}: {}", s.code(), s.message())),
    }
}

fn with_id<T>(msg: T) -> tonic::Request<T> {
    let mut req = tonic::Request::new(msg);
    let id = uuid::Uuid::new_v4().to_string();
    req.metadata_mut().insert(REQUEST_ID_HEADER, id.parse().expect("a UUID is ascii"));
    req
}

/// Sends one call to `node` and waits at most the timeout for its answer.
async fn send(shared: &Shared, node: usize, vm: &str, call: &Call) -> Outcome {
    let mut client = VmServiceClient::new(shared.channels[node].clone());
    let vm = vm.to_string();
    let answer = async {
        match call {
            Call::Create(c) => {
                let req = CreateVmRequest {
                    name: vm,
                    memory_mib: c.memory_mib,
                    vcpus: 1,
                    description: c.description.clone(),
                    ..Default::default()
                };
                client.create(with_id(req)).await.map(|r| Some(config(r.get_ref())))
            }
            Call::SetMemory(m) => {
                let req = EditVmRequest { vm, memory_mib: Some(*m), ..Default::default() };
                client.edit(with_id(req)).await.map(|r| Some(config(r.get_ref())))
            }
            Call::SetDescription(d) => {
                let req = EditVmRequest { vm, description: Some(d.clone()), ..Default::default() };
                client.edit(with_id(req)).await.map(|r| Some(config(r.get_ref())))
            }
            Call::Read => {
                let req = GetVmRequest { vm, stale: shared.stale_reads, next_run: false };
                client.get(req).await.map(|r| Some(config(r.get_ref())))
            }
            Call::Delete => {
                let req = DeleteVmRequest { vm, keep_disks: false };
                client.delete(with_id(req)).await.map(|_| None)
            }
        }
    };
    match tokio::time::timeout(shared.timeout, answer).await {
        Ok(Ok(value)) => Outcome::Ok(value),
        Ok(Err(status)) => outcome_of(&status),
        Err(_) => Outcome::Unknown(format!("no answer within {:?}", shared.timeout)),
    }
}

/// A random call on a random VM of the pool: reads most, then edits, creates and deletes.
fn pick(rng: &mut StdRng, shared: &Shared, client: usize) -> (String, Call) {
    let vm = vm_name(rng.gen_range(0..shared.keys));
    let n = shared.counter.fetch_add(1, Ordering::Relaxed);
    let call = match rng.gen_range(0..100) {
        0..=34 => Call::Read,
        35..=49 => Call::SetMemory(128 + n),
        50..=64 => Call::SetDescription(format!("c{client}-{n}")),
        65..=84 => Call::Create(Config { memory_mib: 128 + n, description: format!("c{client}-{n}") }),
        _ => Call::Delete,
    };
    (vm, call)
}

/// One client: calls until told to stop. A burst client calls only while a burst lasts, with
/// no pause between calls.
pub async fn client(shared: Shared, id: usize, seed: u64, bursty: bool) {
    let mut rng = StdRng::seed_from_u64(seed ^ (id as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15));
    while !shared.stop.load(Ordering::Relaxed) {
        if bursty && !shared.burst.load(Ordering::Relaxed) {
            tokio::time::sleep(Duration::from_millis(20)).await;
            continue;
        }
        let (vm, call) = pick(&mut rng, &shared, id);
        let node = rng.gen_range(0..shared.channels.len());
        let invoked_us = shared.recorder.now_us();
        let outcome = send(&shared, node, &vm, &call).await;
        let completed_us = (!outcome.is_unknown()).then(|| shared.recorder.now_us());
        shared.recorder.record(Op { client: id, node, vm, call, invoked_us, completed_us, outcome });
        if !bursty {
            tokio::time::sleep(Duration::from_millis(rng.gen_range(2..20))).await;
        }
    }
}

/// Every VM as node `node` has it (a linearizable read unless `stale`), by name.
pub async fn list(channel: &Channel, stale: bool, timeout: Duration) -> Result<Vec<(String, Config)>, String> {
    let mut client = VmServiceClient::new(channel.clone());
    match tokio::time::timeout(timeout, client.list(ListVmsRequest { stale })).await {
        Ok(Ok(r)) => Ok(r.into_inner().vms.iter().map(|v| (v.name.clone(), config(v))).collect()),
        Ok(Err(s)) => Err(format!("{:?}: {}", s.code(), s.message())),
        Err(_) => Err(format!("no answer within {timeout:?}")),
    }
}
