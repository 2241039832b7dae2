//! `vm console`: a VM's serial console and VNC tickets, through whichever node takes the call.
//! The node that runs the VM serves it from its agent (`LocalEngine`); any other node checks
//! the caller's vm.console here and passes the call on to that node with its own member
//! certificate, once: a forwarded call is never forwarded again.

use std::pin::Pin;
use std::sync::Arc;

use corral_proto::vm_service_client::VmServiceClient;
use corral_proto::{ConsoleInput, ConsoleOutput, VmRef, VncTicket};
use corral_raft::model::auth::Operation;
use corral_raft::model::VmStatus;
use corral_raft::ClusterError;
use futures::{Stream, StreamExt};
use tokio::sync::mpsc;
use tonic::Code;
use uuid::Uuid;

use super::authz::Obj;
use super::{Caller, Handles, Principal};

/// The most bytes of input in one message.
pub const MAX_INPUT: usize = 64 << 10;
/// Keystrokes queued towards the VM's host of a forwarded session.
const FORWARD_QUEUE: usize = 16;

/// A session's keystrokes, as the transport hands them over; the first error ends the input.
pub type Input = Pin<Box<dyn Stream<Item = Result<Vec<u8>, ClusterError>> + Send>>;
/// The guest's output, then (maybe) why the session ended.
pub type Output = Pin<Box<dyn Stream<Item = Result<ConsoleOutput, ClusterError>> + Send>>;

/// Where a VM runs, as the state says.
struct Placement {
    id: Uuid,
    name: String,
    host: String,
    address: String,
    /// The VM's assignment (`VmRuntime::epoch`): it grows with every start and migration.
    epoch: u64,
}

pub struct Api(pub Arc<Handles>);

/// The VNC displays this node gave tickets for, by VM: where the web console's websocket may
/// relay to (`display`), and nowhere else.
#[derive(Default)]
pub struct Displays(std::sync::Mutex<std::collections::HashMap<Uuid, Display>>);

/// A display a ticket named: where, on which host, for which run of the VM (a display's port
/// belongs to another VM once this one stopped or moved), until when.
#[derive(Clone)]
struct Display {
    address: String,
    port: u16,
    host: String,
    epoch: u64,
    expires_ms: i64,
}

impl Displays {
    fn record(&self, at: &Placement, ticket: &VncTicket) {
        let Ok(port) = u16::try_from(ticket.port) else { return };
        let mut all = self.0.lock().unwrap_or_else(|e| e.into_inner());
        let now = chrono::Utc::now().timestamp_millis();
        all.retain(|_, d| d.expires_ms > now);
        let d = Display {
            address: ticket.address.clone(),
            port,
            host: at.host.clone(),
            epoch: at.epoch,
            expires_ms: ticket.expires_unix_ms,
        };
        all.insert(at.id, d);
    }

    fn get(&self, vm: Uuid) -> Option<Display> {
        let now = chrono::Utc::now().timestamp_millis();
        self.0.lock().unwrap_or_else(|e| e.into_inner()).get(&vm).filter(|d| d.expires_ms > now).cloned()
    }
}

impl Api {
    /// Opens VM `vm`'s serial console for the caller, relaying `input` to it.
    pub async fn console(&self, cx: &Caller, vm: &str, input: Input) -> Result<Output, ClusterError> {
        let at = self.placement(cx, vm).await?;
        if at.host == self.0.config.name {
            let link = self.0.local.console(at.id, &at.name).await?;
            pump(input, link.input, |data| data);
            let first = futures::stream::once(async move { Ok(ConsoleOutput { data: Vec::new(), host: at.host }) });
            let output = tokio_stream::wrappers::ReceiverStream::new(link.output)
                .map(|r| r.map(|data| ConsoleOutput { data, host: String::new() }));
            return Ok(Box::pin(first.chain(output)));
        }
        self.refuse_second_hop(cx, &at)?;
        let mut client = self.client(&at)?;
        let (tx, rx) = mpsc::channel(FORWARD_QUEUE);
        let _ = tx.try_send(ConsoleInput { vm: at.id.to_string(), data: Vec::new() });
        pump(input, tx, |data| ConsoleInput { vm: String::new(), data });
        let request = tokio_stream::wrappers::ReceiverStream::new(rx);
        let host = at.host.clone();
        let answer = client.console(request).await.map_err(|s| from_status(&host, s))?;
        let host = at.host;
        Ok(Box::pin(answer.into_inner().map(move |r| r.map_err(|s| from_status(&host, s)))))
    }

    /// A VNC ticket for VM `vm`: a fresh password on its display, valid for a short while.
    pub async fn vnc(&self, cx: &Caller, req: VmRef) -> Result<VncTicket, ClusterError> {
        let at = self.placement(cx, &req.vm).await?;
        let ticket = self.ticket(cx, &at).await?;
        self.0.displays.record(&at, &ticket);
        Ok(ticket)
    }

    /// Where VM `vm`'s display listens, for a caller with vm.console, while a ticket this node
    /// gave for it is valid (the web console's VNC websocket relays there).
    pub async fn display(&self, cx: &Caller, req: VmRef) -> Result<(String, u16), ClusterError> {
        let at = self.placement(cx, &req.vm).await?;
        // Only the display of this run of the VM, where it runs now.
        let d = self.0.displays.get(at.id).filter(|d| d.host == at.host && d.epoch == at.epoch).ok_or_else(|| {
            ClusterError::FailedPrecondition(format!(
                "no valid VNC ticket for this run of VM {} from this node: ask for one first (POST /api/v1/vms/{}/vnc)",
                at.name, at.name
            ))
        })?;
        // Another host's display is never this node's own loopback or wildcard address.
        let local = d.address.parse::<std::net::IpAddr>().map(|a| a.is_loopback() || a.is_unspecified());
        if at.host != self.0.config.name && local.unwrap_or(false) {
            return Err(ClusterError::FailedPrecondition(format!(
                "VM {}'s display on host {} listens on {}, which is not reachable from this node: open the console \
                 through host {}",
                at.name, at.host, d.address, at.host
            )));
        }
        Ok((d.address, d.port))
    }

    async fn ticket(&self, cx: &Caller, at: &Placement) -> Result<VncTicket, ClusterError> {
        if at.host == self.0.config.name {
            let t = self.0.local.vnc_ticket(at.id, &at.name).await?;
            let url = match t.address.parse::<std::net::IpAddr>() {
                Ok(std::net::IpAddr::V6(a)) => format!("vnc://[{a}]:{}", t.port),
                _ => format!("vnc://{}:{}", t.address, t.port),
            };
            return Ok(VncTicket {
                vm: at.name.clone(),
                host: at.host.clone(),
                address: t.address,
                port: t.port.into(),
                password: t.password,
                expires_unix_ms: t.expires_ms,
                url,
            });
        }
        self.refuse_second_hop(cx, at)?;
        let mut client = self.client(at)?;
        let mut request = tonic::Request::new(VmRef { vm: at.id.to_string() });
        request.set_timeout(std::time::Duration::from_secs(30));
        let ticket = client.vnc(request).await.map_err(|s| from_status(&at.host, s))?;
        Ok(VncTicket { vm: at.name.clone(), ..ticket.into_inner() })
    }

    /// Checks vm.console and finds the VM's host (linearizably: a VM that just started or moved
    /// is found where it is now).
    async fn placement(&self, cx: &Caller, vm: &str) -> Result<Placement, ClusterError> {
        self.0.check(cx, &[(Operation::VmConsole, Obj::Vm(vm))]).await?;
        self.0
            .cluster
            .read(false, |s| {
                let v = s.find_vm(vm).ok_or_else(|| ClusterError::vm_not_found(vm))?;
                let name = v.config.name.clone();
                let host = match (v.runtime.status, v.runtime.host) {
                    (VmStatus::Down, _) | (_, None) => {
                        return Err(ClusterError::FailedPrecondition(format!(
                            "VM {name} is down: it has a console only while it runs (`corral vm start {name}`)"
                        )))
                    }
                    (_, Some(h)) => h,
                };
                let h = s.hosts.get(&host).ok_or_else(|| {
                    ClusterError::Unavailable(format!("VM {name} runs on host {host}, which the cluster no longer has"))
                })?;
                Ok(Placement {
                    id: v.id,
                    name,
                    host: h.name.clone(),
                    address: h.address.clone(),
                    epoch: v.runtime.epoch,
                })
            })
            .await?
    }

    /// A call another node passed on is served here or not at all (the state moved on).
    fn refuse_second_hop(&self, cx: &Caller, at: &Placement) -> Result<(), ClusterError> {
        if matches!(cx.who, Principal::Member(_)) {
            return Err(ClusterError::Unavailable(format!(
                "VM {} runs on host {}, not on {} which was asked for it: try again",
                at.name, at.host, self.0.config.name
            )));
        }
        Ok(())
    }

    fn client(&self, at: &Placement) -> Result<VmServiceClient<tonic::transport::Channel>, ClusterError> {
        let channel = self.0.cluster.network().channel(&at.address)?;
        Ok(VmServiceClient::new(channel)
            .max_decoding_message_size(corral_proto::MAX_API_MESSAGE)
            .max_encoding_message_size(corral_proto::MAX_API_MESSAGE))
    }
}

/// Passes a session's keystrokes on until the input ends (its first error included) or the
/// receiving end is gone (the relay ended, or the host's call did).
fn pump<T: Send + 'static>(mut input: Input, to: mpsc::Sender<T>, wrap: impl Fn(Vec<u8>) -> T + Send + 'static) {
    tokio::spawn(async move {
        loop {
            tokio::select! {
                next = input.next() => match next {
                    Some(Ok(data)) if data.is_empty() => {}
                    Some(Ok(data)) => {
                        if to.send(wrap(data)).await.is_err() {
                            return;
                        }
                    }
                    Some(Err(_)) | None => return,
                },
                _ = to.closed() => return,
            }
        }
    });
}

/// What the VM's host answered, as this node's own answer.
fn from_status(host: &str, s: tonic::Status) -> ClusterError {
    let message = s.message().to_string();
    match s.code() {
        Code::NotFound => ClusterError::NotFound(message),
        Code::FailedPrecondition => ClusterError::FailedPrecondition(message),
        Code::PermissionDenied => ClusterError::PermissionDenied(message),
        // "field: rule" already.
        Code::InvalidArgument => match message.split_once(": ") {
            Some((field, rule)) => ClusterError::invalid(field, rule),
            None => ClusterError::invalid("request", message),
        },
        _ => ClusterError::Unavailable(format!("host {host}, which runs the VM: {message}")),
    }
}
