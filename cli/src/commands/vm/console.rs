//! `corral vm console VM`: the VM's serial console through any node (the VM's host relays it).
//! On a terminal the terminal is raw while attached, and put back on every way out; Ctrl-]
//! leaves. Otherwise stdin is piped to the guest until it ends. `--vnc` prints a VNC address
//! and a one-time password instead.

use std::io::{IsTerminal, Read, Write};
use std::os::fd::AsFd;
use std::sync::{Arc, Mutex, PoisonError};

use anyhow::{bail, Context as _, Result};
use corral_proto::v1 as proto;
use nix::sys::termios::{self, SetArg, Termios};
use proto::vm_service_client::VmServiceClient;
use tokio::signal::unix::{signal, SignalKind};
use tokio::sync::mpsc;

use super::Context;
use crate::connect::answer;
use crate::output::{self, Format};
use crate::views::VncTicketView;

/// Ctrl-]: leaves the console, as in telnet and `virsh console`.
const ESCAPE: u8 = 0x1d;
/// Bytes read from stdin at once (well under the server's 64 KiB a message).
const READ_CHUNK: usize = 4096;

pub async fn console(ctx: &Context, vm: String) -> Result<()> {
    // Each node tried gets its own request stream; the one that answered takes stdin.
    let sender: Arc<Mutex<Option<mpsc::Sender<proto::ConsoleInput>>>> = Arc::default();
    let slot = sender.clone();
    let (_, response) = ctx
        .nodes
        .open_stream(0, |channel| {
            let (tx, rx) = mpsc::channel(16);
            let _ = tx.try_send(proto::ConsoleInput { vm: vm.clone(), data: Vec::new() });
            *slot.lock().unwrap_or_else(PoisonError::into_inner) = Some(tx);
            async move { VmServiceClient::new(channel).console(tokio_stream::wrappers::ReceiverStream::new(rx)).await }
        })
        .await?;
    let Some(keys) = sender.lock().unwrap_or_else(PoisonError::into_inner).take() else {
        bail!("the console stream opened without a way to send to it");
    };
    let mut output = response;
    let terminal = std::io::stdin().is_terminal();
    // Put back when this function returns, however it returns.
    let _raw = if terminal { Some(RawMode::enter()?) } else { None };
    let eol = if terminal { "\r\n" } else { "\n" };
    eprint!("Connected to {vm}'s serial console; Ctrl-] leaves{eol}");
    let (left_tx, mut left) = mpsc::channel::<()>(1);
    spawn_stdin(keys, terminal, left_tx);
    let mut stdout = std::io::stdout();
    // Raw mode lets no Ctrl-C through; a signal from elsewhere ends the session like Ctrl-].
    let mut term = signal(SignalKind::terminate())?;
    let mut hangup = signal(SignalKind::hangup())?;
    loop {
        tokio::select! {
            message = output.message() => match message {
                Ok(Some(m)) => {
                    stdout.write_all(&m.data)?;
                    stdout.flush()?;
                }
                Ok(None) => break,
                Err(status) => {
                    drop(_raw);
                    eprintln!();
                    return Err(answer(status));
                }
            },
            _ = left.recv() => break,
            _ = term.recv() => break,
            _ = hangup.recv() => break,
        }
    }
    drop(_raw);
    if terminal {
        eprintln!("\nLeft {vm}'s serial console");
    }
    Ok(())
}

/// Reads stdin on a thread of its own (a read blocked on a terminal would otherwise keep the
/// runtime from ending) and sends it on; tells `left` when Ctrl-] is typed (on a terminal) or
/// stdin ends (the input stream ends with it).
fn spawn_stdin(keys: mpsc::Sender<proto::ConsoleInput>, terminal: bool, left: mpsc::Sender<()>) {
    let spawned = std::thread::Builder::new().name("console-stdin".into()).spawn(move || {
        let mut stdin = std::io::stdin().lock();
        let mut buf = vec![0u8; READ_CHUNK];
        loop {
            let n = match stdin.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => n,
            };
            let (data, escape) = match buf[..n].iter().position(|b| *b == ESCAPE && terminal) {
                Some(at) => (buf[..at].to_vec(), true),
                None => (buf[..n].to_vec(), false),
            };
            let send = data.is_empty() || keys.blocking_send(proto::ConsoleInput { vm: String::new(), data }).is_ok();
            if escape {
                let _ = left.blocking_send(());
                return;
            }
            if !send {
                return;
            }
        }
        // stdin ended: the input stream ends (`keys` is dropped), and the session with it.
        if terminal {
            let _ = left.blocking_send(());
        }
    });
    if let Err(e) = spawned {
        eprintln!("warning: cannot read stdin: {e}");
    }
}

/// The terminal in raw mode (bytes as typed, no echo, no signals from Ctrl-C) until dropped.
struct RawMode {
    saved: Termios,
}

impl RawMode {
    fn enter() -> Result<RawMode> {
        let stdin = std::io::stdin();
        let saved = termios::tcgetattr(stdin.as_fd()).context("cannot read the terminal's settings")?;
        let mut raw = saved.clone();
        termios::cfmakeraw(&mut raw);
        termios::tcsetattr(stdin.as_fd(), SetArg::TCSANOW, &raw).context("cannot put the terminal in raw mode")?;
        Ok(RawMode { saved })
    }
}

impl Drop for RawMode {
    fn drop(&mut self) {
        let _ = termios::tcsetattr(std::io::stdin().as_fd(), SetArg::TCSANOW, &self.saved);
    }
}

/// `vm console --vnc`: a one-time password for the VM's VNC display.
pub async fn vnc(ctx: &Context, vm: String) -> Result<()> {
    let request = proto::VmRef { vm };
    let ticket = ctx
        .nodes
        .read(|channel| {
            let request = request.clone();
            async move { VmServiceClient::new(channel).vnc(request).await }
        })
        .await?;
    let ticket = VncTicketView::from(ticket);
    match ctx.format {
        Format::Json => output::print_json(&ticket)?,
        Format::Table => output::print(&format!(
            "{}\npassword: {}\nexpires:  {} (a new ticket replaces it)\n",
            ticket.url, ticket.password, ticket.expires
        ))?,
    }
    Ok(())
}
