//! The watchdog device (Linux `/dev/watchdog`, or the sandbox's FIFO): fed by the lease task.
//! (Interim version; the full one with FIFO handling and tests lands with the sandbox work.)

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::Path;

pub struct Watchdog {
    file: File,
}

impl Watchdog {
    pub fn open(path: &Path) -> std::io::Result<Watchdog> {
        let file = OpenOptions::new().write(true).open(path)?;
        Ok(Watchdog { file })
    }

    pub fn feed(&mut self) -> std::io::Result<()> {
        self.file.write_all(b"\0")
    }

    /// Magic close: stops the watchdog on a clean shutdown.
    pub fn disarm(mut self) {
        let _ = self.file.write_all(b"V");
    }
}
