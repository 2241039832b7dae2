//! `vm console` on real QEMU: the serial console driven through tmux as a person would (a line
//! typed, the guest's CORRAL-ECHO answer read off the screen, Ctrl-] to leave), on the VM's
//! host and through a node that does not run it; and a VNC ticket, checked by doing VNC's own
//! password authentication (RFB 3.8, DES challenge-response) against the display.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::Command;
use std::time::Duration;

use corral_cli::views::{VmView, VncTicketView};
use corral_tests::sandbox::{Sandbox, GUEST_UP};
use corral_tests::{bin, credentials_for, wait_until};

/// The VM these steps use (created on host1 if it is not there).
pub const VM: &str = "con1";
/// tmux's server for these steps: a socket of its own, so no one else's sessions are touched.
const TMUX: &str = "corral-console-test";
/// How long the screen may take to show what is awaited.
const SCREEN_WAIT: Duration = Duration::from_secs(30);

/// con1 up on host1 with its guest booted.
fn running(sb: &Sandbox) -> VmView {
    if sb.corral(&["vm", "show", VM]).code != 0 {
        let (kernel, initrd) = (sb.guest_kernel(), sb.guest_initrd());
        #[rustfmt::skip]
        sb.cli_json::<VmView>(&[
            "vm", "create", VM, "--memory", "128M", "--vcpus", "1", "--domain-type", "qemu",
            "--kernel", &kernel, "--initrd", &initrd, "--cmdline", "console=ttyS0 panic=-1",
        ]);
    }
    if sb.vm(VM).status == "down" {
        sb.cli_json::<VmView>(&["vm", "start", VM, "--host", "host1"]);
    }
    let vm = sb.wait_status(VM, "up");
    sb.wait_console(VM, GUEST_UP);
    vm
}

/// A tmux session running one command in a 160x50 terminal; killed when dropped.
struct Screen {
    name: String,
}

impl Screen {
    fn open(name: &str, command: &str) -> Screen {
        // The previous screen's session was the tmux server's last: the server may still be on
        // its way out when this one starts, and tmux then says "server exited unexpectedly"
        // (seen once in a full run). A new server is tried again, a bounded number of times.
        let mut attempt = 0;
        loop {
            let out = Command::new("tmux")
                .args(["-L", TMUX, "new-session", "-d", "-s", name, "-x", "160", "-y", "50", command])
                .output()
                .expect("run tmux (deploy/sandbox/deps.sh installs it)");
            let stderr = String::from_utf8_lossy(&out.stderr);
            if out.status.success() {
                return Screen { name: name.to_string() };
            }
            attempt += 1;
            assert!(attempt < 5 && stderr.contains("server exited unexpectedly"), "tmux new-session: {stderr}");
            eprintln!("tmux new-session, attempt {attempt}: {stderr}");
            std::thread::sleep(std::time::Duration::from_millis(200));
        }
    }

    fn keys(&self, keys: &[&str]) {
        let out = Command::new("tmux").args(["-L", TMUX, "send-keys", "-t", &self.name]).args(keys).output().unwrap();
        assert!(out.status.success(), "tmux send-keys {keys:?}: {}", String::from_utf8_lossy(&out.stderr));
    }

    /// The screen and its scrollback.
    fn text(&self) -> String {
        let out = Command::new("tmux")
            .args(["-L", TMUX, "capture-pane", "-p", "-J", "-S", "-500", "-t", &self.name])
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    fn wait_for(&self, what: &str) -> String {
        wait_until(SCREEN_WAIT, &format!("'{what}' on the screen of {}", self.name), || {
            let text = self.text();
            if text.contains(what) {
                Ok(text)
            } else {
                Err(text.lines().filter(|l| !l.trim().is_empty()).collect::<Vec<_>>().join("\n"))
            }
        })
    }
}

impl Drop for Screen {
    fn drop(&mut self) {
        let _ = Command::new("tmux").args(["-L", TMUX, "kill-session", "-t", &self.name]).output();
    }
}

/// A terminal running `corral vm console` through `endpoint`, once it says how to leave; the
/// client's exit code shows as CORRAL-CLIENT-EXIT=N when it ends.
fn attach(endpoint: &str, tag: &str) -> Screen {
    let credentials = credentials_for(endpoint).expect("the sandbox's credentials");
    let command = format!(
        "env CORRAL_CREDENTIALS={} {} --endpoint {endpoint} vm console {VM}; echo CORRAL-CLIENT-EXIT=$?; sleep 600",
        credentials.display(),
        bin("corral").display()
    );
    let screen = Screen::open(&format!("console-{tag}"), &command);
    screen.wait_for(&format!("Connected to {VM}'s serial console; Ctrl-] leaves"));
    screen
}

/// The pty descriptors (serial consoles) the corrald of `host` holds open.
fn ptys_held(sb: &Sandbox, host: &str) -> usize {
    let Some(pid) = sb.corrald_pid(host) else { return 0 };
    let Ok(fds) = std::fs::read_dir(format!("/proc/{pid}/fd")) else { return 0 };
    fds.filter_map(|fd| std::fs::read_link(fd.ok()?.path()).ok())
        .filter(|target| target.to_string_lossy().starts_with("/dev/pts/"))
        .count()
}

/// `corral vm console` in a terminal through `endpoint`: it says how to leave, the guest answers
/// a typed line, Ctrl-] ends the client (exit 0), and the serial log got the answer too.
fn session(sb: &Sandbox, endpoint: &str, tag: &str) {
    let screen = attach(endpoint, tag);
    let line = format!("hello-{tag}-{}", std::process::id());
    screen.keys(&[&line, "Enter"]);
    screen.wait_for(&format!("CORRAL-ECHO {line}"));
    // The guest's own output shows too (it ticks every second).
    screen.wait_for("CORRAL-TICK");
    screen.keys(&["C-]"]);
    screen.wait_for("CORRAL-CLIENT-EXIT=0");
    wait_until(Duration::from_secs(10), "the answer in the serial log", || {
        let log = sb.console(VM);
        if log.contains(&format!("CORRAL-ECHO {line}")) {
            Ok(())
        } else {
            Err(log.lines().rev().take(3).collect::<Vec<_>>().join(" | "))
        }
    });
}

pub fn serial_console_through_tmux(sb: &Sandbox) {
    let vm = running(sb);
    let host = vm.host.clone().expect("con1 runs somewhere");
    let other = sb.hosts.iter().find(|h| h.name != host).expect("another host").endpoint.clone();
    session(sb, &sb.host(&host).endpoint, "here");
    // Through a node that does not run the VM: it passes the streams on to the VM's host.
    session(sb, &other, "forwarded");
    // The console can be opened again after it was left (nothing of the last session stuck).
    session(sb, &sb.host(&host).endpoint, "again");
    // A second session takes the console over; the first ends saying so.
    let first = attach(&other, "first");
    assert_eq!(ptys_held(sb, &host), 1, "one session, one pty descriptor on {host}'s corrald");
    let second = attach(&sb.host(&host).endpoint, "second");
    let text = first.wait_for("CORRAL-CLIENT-EXIT=1");
    assert!(text.contains("another session took the console over"), "{text}");
    drop(second);
    // Sessions that ended, however they ended (left, taken over, their client killed with its
    // terminal), leave no descriptor behind.
    wait_until(Duration::from_secs(10), &format!("{host}'s corrald to close every pty"), || {
        match ptys_held(sb, &host) {
            0 => Ok(()),
            n => Err(format!("{n} open")),
        }
    });
}

pub fn vnc_ticket_authenticates(sb: &Sandbox) {
    let vm = running(sb);
    let host = vm.host.clone().expect("con1 runs somewhere");
    let other = sb.hosts.iter().position(|h| h.name != host).expect("another host");
    // Asked through a node that does not run the VM.
    let out = sb.corral_on(other, &["-o", "json", "vm", "console", VM, "--vnc"]);
    assert_eq!(out.code, 0, "vm console --vnc: {}", out.stderr);
    let ticket: VncTicketView = serde_json::from_str(&out.stdout).unwrap_or_else(|e| panic!("{e}: {}", out.stdout));
    let want_address = sb.host(&host).endpoint.split(':').next().unwrap().to_string();
    assert_eq!((ticket.vm.as_str(), ticket.host.as_str()), (VM, host.as_str()), "{ticket:?}");
    assert_eq!(ticket.address, want_address, "VNC listens on the host's --vnc-listen address: {ticket:?}");
    assert_eq!(ticket.url, format!("vnc://{}:{}", ticket.address, ticket.port), "{ticket:?}");
    assert_eq!(ticket.password.len(), 8, "{ticket:?}");
    let table = sb.must_ok(&["vm", "console", VM, "--vnc"]);
    assert!(table.starts_with("vnc://") && table.contains("password: "), "{table}");
    // The table's ticket replaced the JSON one: that password no longer opens the display.
    let fresh = table.lines().find_map(|l| l.strip_prefix("password: ")).expect("a password line").trim().to_string();
    let display = format!("{}:{}", ticket.address, ticket.port);
    assert_eq!(vnc_login(&display, &fresh), Ok(()), "the ticket's password opens the display");
    assert!(vnc_login(&display, "wrong-pw").is_err(), "a wrong password must not open the display");
    assert!(vnc_login(&display, &ticket.password).is_err(), "a replaced ticket must not open the display");
}

/// VNC authentication (RFB 3.8) against `address` with `password`: Ok once the server says
/// it passed, else what it said.
fn vnc_login(address: &str, password: &str) -> Result<(), String> {
    let mut s = TcpStream::connect(address).map_err(|e| format!("connect {address}: {e}"))?;
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut banner = [0u8; 12];
    s.read_exact(&mut banner).map_err(|e| format!("banner: {e}"))?;
    if &banner[..4] != b"RFB " {
        return Err(format!("not an RFB banner: {:?}", String::from_utf8_lossy(&banner)));
    }
    s.write_all(b"RFB 003.008\n").map_err(|e| e.to_string())?;
    let mut count = [0u8; 1];
    s.read_exact(&mut count).map_err(|e| format!("security types: {e}"))?;
    let mut types = vec![0u8; count[0] as usize];
    s.read_exact(&mut types).map_err(|e| e.to_string())?;
    if !types.contains(&2) {
        return Err(format!("the display offers no VNC authentication (types {types:?})"));
    }
    s.write_all(&[2]).map_err(|e| e.to_string())?;
    let mut challenge = [0u8; 16];
    s.read_exact(&mut challenge).map_err(|e| format!("challenge: {e}"))?;
    s.write_all(&vnc_response(password, challenge)).map_err(|e| e.to_string())?;
    let mut result = [0u8; 4];
    s.read_exact(&mut result).map_err(|e| format!("result: {e}"))?;
    match u32::from_be_bytes(result) {
        0 => Ok(()),
        code => {
            let mut reason = Vec::new();
            let _ = s.read_to_end(&mut reason);
            Err(format!("refused ({code}): {}", String::from_utf8_lossy(&reason)))
        }
    }
}

/// The challenge encrypted with DES under the password (8 bytes, zero-padded, each byte's
/// bits mirrored, as VNC does).
fn vnc_response(password: &str, challenge: [u8; 16]) -> [u8; 16] {
    use des::cipher::generic_array::GenericArray;
    use des::cipher::{BlockEncrypt, KeyInit};
    let mut key = [0u8; 8];
    for (k, b) in key.iter_mut().zip(password.bytes()) {
        *k = b.reverse_bits();
    }
    let cipher = des::Des::new_from_slice(&key).expect("an 8-byte key");
    let mut out = challenge;
    for block in out.chunks_mut(8) {
        cipher.encrypt_block(GenericArray::from_mut_slice(block));
    }
    out
}

#[test]
fn the_vnc_response_is_des_of_the_challenge() {
    // The sandbox step checks the response against QEMU itself; here only its shape.
    let challenge: [u8; 16] = core::array::from_fn(|i| i as u8);
    let a = vnc_response("password", challenge);
    let b = vnc_response("password\u{0}\u{0}", challenge);
    assert_eq!(a, b, "a password is at most 8 bytes, zero-padded");
    assert_ne!(a, vnc_response("passwore", challenge));
    assert_ne!(a[..8], a[8..], "each half of the challenge is encrypted on its own");
}
