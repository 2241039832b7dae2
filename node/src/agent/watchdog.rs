//! The host's watchdog: a device that powers the host off unless it is fed, so that a host whose
//! corrald died or froze is fenced even though it cannot fence itself. Its timeout must be
//! shorter than the host's lease. This module never decides *when* to feed; its caller does.
//!
//! It speaks Linux's watchdog device API through plain writes: opening arms the watchdog, any
//! byte but 'V' feeds it, and 'V' followed by close ("magic close") stops it when the driver
//! allows that. There is no ioctl here (the workspace forbids unsafe code), so the timeout is
//! the driver's: for softdog, `modprobe softdog soft_margin=2` (seconds). The sandbox hosts use
//! a FIFO read by a small watchdog process instead (deploy/sandbox/lib.sh, `sb_watchdog`).

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::{FileTypeExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::time::Duration;

use nix::fcntl::OFlag;

/// The byte written to feed: anything but the magic 'V'.
pub const FEED: u8 = b'1';
/// Linux's magic close character: written just before a clean close, it stops the watchdog.
pub const MAGIC_CLOSE: u8 = b'V';

/// An armed watchdog. Dropping it without [`Watchdog::disarm`] leaves it armed, as a crash
/// would: a Linux watchdog with magic close then fires when its timeout runs out.
#[derive(Debug)]
pub struct Watchdog {
    file: File,
    path: PathBuf,
}

impl Watchdog {
    /// Opens (and so arms) the watchdog at `path`: `/dev/watchdog`, or a FIFO whose reader is
    /// the watchdog process. The open never blocks: a FIFO without a reader is an error, not
    /// a hang, and so is a full FIFO on a later feed.
    pub fn open(path: &Path) -> io::Result<Watchdog> {
        let file = OpenOptions::new()
            .write(true)
            // A blocking open of a FIFO waits for its reader forever. Watchdog drivers ignore
            // O_NONBLOCK.
            .custom_flags(OFlag::O_NONBLOCK.bits())
            .open(path)
            .map_err(|e| open_error(path, e))?;
        Ok(Watchdog { file, path: path.to_path_buf() })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Feeds the watchdog: it will not fire for another timeout from now.
    pub fn feed(&mut self) -> io::Result<()> {
        self.write(FEED)
    }

    /// Stops the watchdog on a clean shutdown: the magic 'V', then close. A driver built with
    /// `nowayout` ignores it and fires anyway unless someone else feeds it.
    pub fn disarm(mut self) -> io::Result<()> {
        self.write(MAGIC_CLOSE)
    }

    fn write(&mut self, byte: u8) -> io::Result<()> {
        self.file.write_all(&[byte]).map_err(|e| {
            let what = if byte == MAGIC_CLOSE { "disarm" } else { "feed" };
            io::Error::new(e.kind(), format!("cannot {what} the watchdog {}: {e}", self.path.display()))
        })
    }
}

fn open_error(path: &Path, e: io::Error) -> io::Error {
    let fifo = std::fs::metadata(path).is_ok_and(|m| m.file_type().is_fifo());
    // ENXIO: a non-blocking open for writing of a FIFO that no process has open for reading.
    let why = if fifo && e.raw_os_error() == Some(nix::errno::Errno::ENXIO as i32) {
        "it is a FIFO that no process reads (is the host's watchdog process running?)".to_string()
    } else {
        e.to_string()
    };
    io::Error::new(e.kind(), format!("cannot open the watchdog {}: {why}", path.display()))
}

/// Feeds a watchdog on a timer from a task until [`Feeder::disarm`]: fed for as long as this
/// process's runtime runs, so only a killed or frozen process stops feeding. That is weaker than
/// feeding from the lease task (fed only while the lease is held or the VMs are fenced), and
/// the two must not both open one watchdog: corrald itself does not use it.
pub struct Feeder {
    stop: tokio::sync::oneshot::Sender<()>,
    task: tokio::task::JoinHandle<Option<Watchdog>>,
}

/// Starts feeding `watchdog` every `every` (it must be well under the watchdog's timeout).
pub fn spawn_feeder(mut watchdog: Watchdog, every: Duration) -> Feeder {
    let (stop, mut stopped) = tokio::sync::oneshot::channel();
    let task = tokio::spawn(async move {
        let mut tick = tokio::time::interval(every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut failing = false;
        loop {
            tokio::select! {
                _ = &mut stopped => return Some(watchdog),
                _ = tick.tick() => {}
            }
            // A one-byte non-blocking write: it cannot stall the runtime.
            match watchdog.feed() {
                Ok(()) if failing => {
                    failing = false;
                    tracing::info!(path = %watchdog.path().display(), "feeding the watchdog again");
                }
                Ok(()) => {}
                // Logged once per streak: the watchdog fires on its own if this goes on.
                Err(e) if !failing => {
                    failing = true;
                    tracing::error!(error = %e, "the watchdog is not fed; it will fence this host");
                }
                Err(_) => {}
            }
        }
    });
    Feeder { stop, task }
}

impl Feeder {
    /// Stops feeding and disarms the watchdog (magic close). Only for a clean shutdown.
    pub async fn disarm(self) -> io::Result<()> {
        let _ = self.stop.send(());
        match self.task.await {
            Ok(Some(watchdog)) => watchdog.disarm(),
            Ok(None) => Ok(()),
            Err(e) => Err(io::Error::other(format!("the watchdog feeder failed: {e}"))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;
    use std::sync::mpsc;

    const S: Duration = Duration::from_secs(10);

    fn fifo() -> (tempfile::TempDir, PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("watchdog");
        nix::unistd::mkfifo(&path, nix::sys::stat::Mode::S_IRUSR | nix::sys::stat::Mode::S_IWUSR).unwrap();
        (dir, path)
    }

    /// A thread that opens the FIFO for reading and sends every byte it reads, until EOF (every
    /// writer closed) or until it has read `limit` bytes; then it closes its end.
    fn reader(path: &Path, limit: usize) -> mpsc::Receiver<u8> {
        let (tx, rx) = mpsc::channel();
        let path = path.to_path_buf();
        std::thread::spawn(move || {
            let mut file = File::open(path).unwrap();
            let mut byte = [0u8];
            for _ in 0..limit {
                match file.read(&mut byte) {
                    Ok(1) if tx.send(byte[0]).is_ok() => {}
                    _ => return,
                }
            }
        });
        rx
    }

    /// Our open never blocks, so it fails until the reader thread has opened its end.
    fn open_once_read(path: &Path) -> Watchdog {
        let deadline = std::time::Instant::now() + S;
        loop {
            match Watchdog::open(path) {
                Ok(w) => return w,
                Err(e) if std::time::Instant::now() < deadline => {
                    assert!(e.to_string().contains("no process reads"), "{e}");
                    std::thread::sleep(Duration::from_millis(5));
                }
                Err(e) => panic!("the reader never opened the FIFO: {e}"),
            }
        }
    }

    /// Everything the reader got until it saw EOF.
    fn rest(rx: &mpsc::Receiver<u8>) -> Vec<u8> {
        std::iter::from_fn(|| rx.recv_timeout(S).ok()).collect()
    }

    #[test]
    fn feeds_are_bytes_other_than_v_and_disarm_ends_with_v() {
        let (_dir, path) = fifo();
        let rx = reader(&path, usize::MAX);
        let mut w = open_once_read(&path);
        w.feed().unwrap();
        w.feed().unwrap();
        w.disarm().unwrap();
        assert_eq!(rest(&rx), vec![FEED, FEED, MAGIC_CLOSE]);
        assert_ne!(FEED, MAGIC_CLOSE);
    }

    #[test]
    fn dropping_it_closes_without_the_magic_v() {
        let (_dir, path) = fifo();
        let rx = reader(&path, usize::MAX);
        let mut w = open_once_read(&path);
        w.feed().unwrap();
        drop(w);
        assert_eq!(rest(&rx), vec![FEED]);
    }

    #[test]
    fn a_fifo_without_reader_is_a_clear_error_not_a_hang() {
        let (dir, path) = fifo();
        let msg = Watchdog::open(&path).unwrap_err().to_string();
        assert!(msg.contains(&path.display().to_string()) && msg.contains("no process reads"), "{msg}");
        let missing = dir.path().join("missing");
        let msg = Watchdog::open(&missing).unwrap_err().to_string();
        assert!(msg.starts_with(&format!("cannot open the watchdog {}: ", missing.display())), "{msg}");
    }

    #[test]
    fn a_feed_after_the_reader_is_gone_fails() {
        let (_dir, path) = fifo();
        let rx = reader(&path, 1);
        let mut w = open_once_read(&path);
        w.feed().unwrap();
        // The reader took its one byte and closed its end.
        assert_eq!(rest(&rx), vec![FEED]);
        // Rust ignores SIGPIPE, so the write returns EPIPE instead of killing us.
        let err = w.feed().unwrap_err();
        assert!(err.to_string().starts_with(&format!("cannot feed the watchdog {}: ", path.display())), "{err}");
    }

    // Two workers: this test blocks one on the reader's channel while the feeder runs.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_feeder_feeds_until_disarmed() {
        let (_dir, path) = fifo();
        let rx = reader(&path, usize::MAX);
        let feeder = spawn_feeder(open_once_read(&path), Duration::from_millis(10));
        let fed: Vec<u8> = (0..3).map(|_| rx.recv_timeout(S).expect("the feeder feeds")).collect();
        assert_eq!(fed, vec![FEED; 3]);
        feeder.disarm().await.unwrap();
        let after = rest(&rx);
        assert_eq!(after.last(), Some(&MAGIC_CLOSE), "{after:?}");
        assert!(after[..after.len() - 1].iter().all(|b| *b == FEED), "{after:?}");
    }
}
