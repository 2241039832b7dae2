//! This host's side of `vm console`: the relay between a running VM's serial pty and one
//! console session, and the short-lived passwords of VNC displays. A relay is one task that owns
//! the pty's file descriptor; it ends (and closes it) when the session's input ends, its output
//! is no longer read, the guest's pty goes away, or a newer session takes the console over.
//! It never reads the pty for anyone but the one session (the serial log is virtlogd's).

use std::collections::HashMap;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use corral_raft::ClusterError;
use nix::fcntl::OFlag;
use tokio::io::unix::AsyncFd;
use tokio::io::Interest;
use tokio::sync::{mpsc, watch};
use uuid::Uuid;

use super::domain_xml;
use super::HostAgent;

/// The most bytes read from the pty at once (one output message).
const READ_CHUNK: usize = 4096;
/// Output messages queued for a session that reads slowly; the guest waits beyond that (its
/// serial port is flow-controlled by the pty), rather than memory growing.
const OUTPUT_QUEUE: usize = 16;
/// Input messages queued towards the guest.
const INPUT_QUEUE: usize = 16;
/// How long a VNC password set by `vm console --vnc` is valid.
pub const VNC_TICKET_TTL: Duration = Duration::from_secs(120);

/// One console session's ends, as the API gets them: keystrokes in, the guest's output (or why
/// the session ended) out. Dropping either ends the relay.
pub struct ConsoleLink {
    pub input: mpsc::Sender<Vec<u8>>,
    pub output: mpsc::Receiver<Result<Vec<u8>, ClusterError>>,
}

/// The session that holds each VM's console now: a newer one takes it over.
#[derive(Default)]
pub struct Sessions {
    current: Mutex<HashMap<Uuid, (u64, watch::Sender<bool>)>>,
    next: AtomicU64,
}

impl Sessions {
    /// Registers a new session for `vm`, telling the one before it (if any) to end.
    fn take_over(&self, vm: Uuid) -> (u64, watch::Receiver<bool>) {
        let id = self.next.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = watch::channel(false);
        let old = self.current.lock().unwrap_or_else(PoisonError::into_inner).insert(vm, (id, tx));
        if let Some((_, old)) = old {
            let _ = old.send(true);
        }
        (id, rx)
    }

    /// Forgets session `id` of `vm` once it ended (unless a newer one took its place).
    fn ended(&self, vm: Uuid, id: u64) {
        let mut current = self.current.lock().unwrap_or_else(PoisonError::into_inner);
        if current.get(&vm).is_some_and(|(held, _)| *held == id) {
            current.remove(&vm);
        }
    }
}

/// Attaches a session to the serial console of VM `id`, which runs here.
pub async fn attach(node: &Arc<HostAgent>, id: Uuid, name: &str) -> Result<ConsoleLink, ClusterError> {
    let host = node.config.name.clone();
    let consoles =
        node.hv.consoles(id).await.map_err(|e| {
            ClusterError::FailedPrecondition(format!("VM {name} does not run on host {host} now ({e})"))
        })?;
    let Some(pty) = consoles.serial_pty else {
        return Err(ClusterError::FailedPrecondition(format!(
            "VM {name} has no serial pty on host {host} (a VM started before consoles existed gets one at its next start)"
        )));
    };
    let fd = open_pty(&pty)
        .map_err(|e| ClusterError::Internal(format!("cannot open the serial console {pty} of VM {name}: {e}")))?;
    // Deprecated because a borrowed descriptor could be closed under the registration; an
    // `OwnedFd` moved in is closed only when the `AsyncFd` is dropped (the safe form is `unsafe`).
    #[allow(deprecated)]
    let fd = AsyncFd::with_interest(fd, Interest::READABLE | Interest::WRITABLE)
        .map_err(|e| ClusterError::Internal(format!("cannot watch the serial console {pty} of VM {name}: {e}")))?;
    let (input_tx, input_rx) = mpsc::channel(INPUT_QUEUE);
    let (output_tx, output_rx) = mpsc::channel(OUTPUT_QUEUE);
    let (session, taken) = node.consoles.take_over(id);
    let agent = node.clone();
    let name = name.to_string();
    tokio::spawn(async move {
        tracing::debug!(vm = %name, "console session {session} attached");
        let end = relay(fd, input_rx, &output_tx, taken).await;
        if let Some(reason) = end {
            let _ =
                output_tx.send(Err(ClusterError::FailedPrecondition(format!("VM {name}'s console: {reason}")))).await;
        }
        agent.consoles.ended(id, session);
        tracing::debug!(vm = %name, "console session {session} ended");
    });
    Ok(ConsoleLink { input: input_tx, output: output_rx })
}

/// Opens a pty's terminal end for the relay: raw (no echo, no line editing, bytes as they
/// are), non-blocking, not as this process's controlling terminal.
fn open_pty(path: &str) -> std::io::Result<OwnedFd> {
    use std::os::unix::fs::OpenOptionsExt;
    let file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .custom_flags((OFlag::O_NOCTTY | OFlag::O_NONBLOCK).bits())
        .open(path)?;
    let fd = OwnedFd::from(file);
    let mut attrs = nix::sys::termios::tcgetattr(fd.as_fd())?;
    nix::sys::termios::cfmakeraw(&mut attrs);
    nix::sys::termios::tcsetattr(fd.as_fd(), nix::sys::termios::SetArg::TCSANOW, &attrs)?;
    Ok(fd)
}

/// Moves bytes both ways until the session or the guest's pty ends. Returns why it ended when
/// the session should hear it (None: the session itself ended it).
async fn relay(
    fd: AsyncFd<OwnedFd>,
    mut input: mpsc::Receiver<Vec<u8>>,
    output: &mpsc::Sender<Result<Vec<u8>, ClusterError>>,
    mut taken: watch::Receiver<bool>,
) -> Option<String> {
    let mut buf = vec![0u8; READ_CHUNK];
    loop {
        tokio::select! {
            readable = fd.readable() => {
                let Ok(mut guard) = readable else { return Some("the serial port cannot be read".into()) };
                match guard.try_io(|inner| read(inner.get_ref(), &mut buf)) {
                    Ok(Ok(0)) | Ok(Err(_)) => return Some("the VM's serial port closed (it stopped or moved)".into()),
                    Ok(Ok(n)) => {
                        if output.send(Ok(buf[..n].to_vec())).await.is_err() {
                            return None;
                        }
                    }
                    Err(_would_block) => {}
                }
            }
            keys = input.recv() => {
                // The session's input ended: it ended the session itself.
                let keys = keys?;
                if let Err(e) = write_all(&fd, &keys).await {
                    return Some(format!("cannot write to the serial port: {e}"));
                }
            }
            _ = taken.changed() => return Some("another session took the console over".into()),
            _ = output.closed() => return None,
        }
    }
}

fn read(fd: &OwnedFd, buf: &mut [u8]) -> std::io::Result<usize> {
    match nix::unistd::read(fd.as_raw_fd(), buf) {
        Ok(n) => Ok(n),
        // A pty whose other end is gone reads EIO.
        Err(nix::errno::Errno::EIO) => Ok(0),
        Err(e) => Err(std::io::Error::from(e)),
    }
}

async fn write_all(fd: &AsyncFd<OwnedFd>, mut bytes: &[u8]) -> std::io::Result<()> {
    while !bytes.is_empty() {
        let mut guard = fd.writable().await?;
        match guard.try_io(|inner| nix::unistd::write(inner.get_ref(), bytes).map_err(std::io::Error::from)) {
            Ok(Ok(n)) => bytes = &bytes[n..],
            Ok(Err(e)) => return Err(e),
            Err(_would_block) => {}
        }
    }
    Ok(())
}

/// A VNC ticket for a VM running here: its display's address and port, the password and
/// when it expires (Unix ms).
pub struct VncTicket {
    pub address: String,
    pub port: u16,
    pub password: String,
    pub expires_ms: i64,
}

/// Sets a fresh password on VM `id`'s VNC display, valid for [`VNC_TICKET_TTL`].
pub async fn vnc_ticket(node: &HostAgent, id: Uuid, name: &str) -> Result<VncTicket, ClusterError> {
    let host = &node.config.name;
    if node.config.vnc_listen.is_none() {
        return Err(ClusterError::FailedPrecondition(format!(
            "host {host} shows no VNC displays: start its corrald with --vnc-listen ADDRESS (vnc_listen in its \
             config file), then restart VM {name}"
        )));
    }
    let password = domain_xml::vnc_password();
    let expires = chrono::Utc::now() + VNC_TICKET_TTL;
    let valid_to = expires.format("%Y-%m-%dT%H:%M:%S").to_string();
    let display = node.hv.vnc_ticket(id, &password, &valid_to).await.map_err(|e| {
        ClusterError::FailedPrecondition(format!("cannot set a VNC password for VM {name} on host {host}: {e}"))
    })?;
    let Some((address, port)) = display else {
        return Err(ClusterError::FailedPrecondition(format!(
            "VM {name} has no VNC display: it started before host {host} had --vnc-listen; restart it"
        )));
    };
    Ok(VncTicket { address, port, password, expires_ms: expires.timestamp_millis() })
}

/// How long a migration source waits for its destination to say where it shows VNC displays.
const PROBE_TIMEOUT: Duration = Duration::from_secs(5);

/// Where host `to` shows VNC displays (its `--vnc-listen`), as it answers itself; None when it
/// has none or does not answer (a VM migrating there then arrives without a display).
pub async fn vnc_listen_of(node: &HostAgent, to: corral_raft::NodeId) -> Option<String> {
    use corral_proto::engine_service_client::EngineServiceClient;
    let address = node.cluster.state().ok()?.read(|s| s.hosts.get(&to).map(|h| h.address.clone()))?;
    let channel = node.cluster.network().channel(&address).ok()?;
    let mut req = tonic::Request::new(corral_proto::RunsVmRequest { vm_id: Uuid::nil().to_string() });
    req.set_timeout(PROBE_TIMEOUT);
    let answer =
        tokio::time::timeout(PROBE_TIMEOUT, EngineServiceClient::new(channel).runs_vm(req)).await.ok()?.ok()?;
    Some(answer.into_inner().vnc_listen).filter(|a| !a.is_empty())
}

#[cfg(test)]
mod tests {
    use std::io::{Read, Write};

    use nix::pty::{grantpt, posix_openpt, ptsname_r, unlockpt, PtyMaster};
    use tokio::task::JoinHandle;
    use tokio::time::timeout;

    use super::*;

    const PATIENCE: Duration = Duration::from_secs(5);

    /// A pty as QEMU makes one: the guest's end (the master) and the path a relay opens.
    fn guest_side() -> (PtyMaster, String) {
        let master = posix_openpt(OFlag::O_RDWR | OFlag::O_NOCTTY).unwrap();
        grantpt(&master).unwrap();
        unlockpt(&master).unwrap();
        let path = ptsname_r(&master).unwrap();
        (master, path)
    }

    struct Session {
        input: mpsc::Sender<Vec<u8>>,
        output: mpsc::Receiver<Result<Vec<u8>, ClusterError>>,
        take_over: watch::Sender<bool>,
        relay: JoinHandle<Option<String>>,
    }

    fn attach_to(path: &str) -> Session {
        #[allow(deprecated)]
        let fd = AsyncFd::with_interest(open_pty(path).unwrap(), Interest::READABLE | Interest::WRITABLE).unwrap();
        let (input, input_rx) = mpsc::channel(INPUT_QUEUE);
        let (output_tx, output) = mpsc::channel(OUTPUT_QUEUE);
        let (take_over, taken) = watch::channel(false);
        let relay = tokio::spawn(async move { relay(fd, input_rx, &output_tx, taken).await });
        Session { input, output, take_over, relay }
    }

    async fn ended(relay: JoinHandle<Option<String>>) -> Option<String> {
        timeout(PATIENCE, relay).await.expect("the relay ends").expect("the relay does not panic")
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn relays_bytes_as_they_are_both_ways_and_ends_with_its_input() {
        let (mut guest, path) = guest_side();
        let mut s = attach_to(&path);
        guest.write_all(b"CORRAL-TICK 1\r\n\x1b[0m").unwrap();
        let mut seen = Vec::new();
        while seen.len() < 19 {
            seen.extend(timeout(PATIENCE, s.output.recv()).await.unwrap().unwrap().unwrap());
        }
        assert_eq!(seen, b"CORRAL-TICK 1\r\n\x1b[0m", "raw: nothing added, nothing translated");
        s.input.send(b"hello\r\x03".to_vec()).await.unwrap();
        let mut got = [0u8; 7];
        // The guest's end stays open (handed back), or the relay would see it close.
        let (_guest, read) = tokio::task::spawn_blocking(move || {
            let read = guest.read_exact(&mut got).map(|_| got);
            (guest, read)
        })
        .await
        .unwrap();
        assert_eq!(&read.unwrap(), b"hello\r\x03", "keys reach the guest as typed (Ctrl-C too)");
        drop(s.input);
        assert_eq!(ended(s.relay).await, None, "the session's end is no news to the session");
    }

    #[tokio::test]
    async fn a_take_over_or_a_gone_guest_ends_the_session_saying_why() {
        let (_guest, path) = guest_side();
        let s = attach_to(&path);
        s.take_over.send(true).unwrap();
        assert_eq!(ended(s.relay).await.as_deref(), Some("another session took the console over"));

        let (guest, path) = guest_side();
        let s = attach_to(&path);
        drop(guest);
        let why = ended(s.relay).await.unwrap_or_default();
        assert!(why.contains("serial port closed"), "{why}");

        // Output nobody reads any more ends it too.
        let (_guest, path) = guest_side();
        let s = attach_to(&path);
        drop(s.output);
        assert_eq!(ended(s.relay).await, None);
        drop(s.input);
    }

    #[test]
    fn the_newest_session_holds_the_console() {
        let sessions = Sessions::default();
        let vm = Uuid::new_v4();
        let (first, mut first_taken) = sessions.take_over(vm);
        assert!(!*first_taken.borrow_and_update());
        let (second, second_taken) = sessions.take_over(vm);
        assert!(*first_taken.borrow(), "the first is told to end");
        sessions.ended(vm, first);
        assert!(sessions.current.lock().unwrap().contains_key(&vm), "the first's end leaves the second's place");
        sessions.ended(vm, second);
        assert!(sessions.current.lock().unwrap().is_empty());
        assert!(!*second_taken.borrow());
    }
}
