//! How the CLI shows a wait (`--wait` of migrate, maintenance, snapshots, clone, import,
//! template create): one `Progress` on stderr. On a terminal, an indicatif spinner or bar redrawn
//! in place; anywhere else (a pipe, a log, a test) plain lines, one per change of phase and per
//! 10 %, never a carriage return. It never writes to stdout: the command's result goes there.

use std::io::{IsTerminal, Write};
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressStyle};

/// How often a spinner redraws (and its elapsed time moves) while nothing else changes.
const TICK: Duration = Duration::from_millis(120);

pub struct Progress {
    out: Out,
    started: Instant,
    /// Whether anything was shown: a wait that ended before it showed anything ends quietly.
    shown: bool,
}

enum Out {
    Terminal { bar: ProgressBar, measured: Option<bool> },
    Lines(Lines<Box<dyn Write + Send>>),
}

impl Progress {
    /// On stderr: a bar when it is a terminal, plain lines otherwise.
    pub fn stderr() -> Progress {
        if std::io::stderr().is_terminal() {
            let bar = ProgressBar::with_draw_target(None, indicatif::ProgressDrawTarget::stderr());
            Progress::with(Out::Terminal { bar, measured: None })
        } else {
            Progress::lines(Box::new(std::io::stderr()))
        }
    }

    /// Plain lines into `out`, whatever it is.
    pub fn lines(out: Box<dyn Write + Send>) -> Progress {
        Progress::with(Out::Lines(Lines::new(out)))
    }

    fn with(out: Out) -> Progress {
        Progress { out, started: Instant::now(), shown: false }
    }

    /// A step with no measure of how far along it is: a spinner with the time so far.
    pub fn phase(&mut self, text: &str) {
        self.shown = true;
        match &mut self.out {
            Out::Terminal { bar, measured } => {
                if *measured != Some(false) {
                    bar.set_style(ProgressStyle::with_template("{spinner} {msg} [{elapsed}]").expect("valid template"));
                    bar.enable_steady_tick(TICK);
                    *measured = Some(false);
                }
                bar.set_message(text.to_string());
            }
            Out::Lines(lines) => lines.phase(text),
        }
    }

    /// A step that is `percent` done, with what is left in `detail` (e.g. "614 MiB of 1 GiB left").
    pub fn percent(&mut self, phase: &str, percent: u64, detail: &str) {
        self.shown = true;
        let percent = percent.min(100);
        match &mut self.out {
            Out::Terminal { bar, measured } => {
                if *measured != Some(true) {
                    bar.disable_steady_tick();
                    bar.set_style(
                        ProgressStyle::with_template("{prefix} [{bar:30}] {pos:>3}%  {msg}")
                            .expect("valid template")
                            .progress_chars("#>-"),
                    );
                    bar.set_length(100);
                    *measured = Some(true);
                }
                bar.set_prefix(phase.to_string());
                bar.set_position(percent);
                bar.set_message(detail.to_string());
            }
            Out::Lines(lines) => lines.percent(phase, percent, detail),
        }
    }

    /// A line that stays (a VM that blocks maintenance): shown once for as long as it is said.
    pub fn note(&mut self, text: &str) {
        self.shown = true;
        match &mut self.out {
            Out::Terminal { bar, .. } => bar.println(text),
            Out::Lines(lines) => lines.note(text),
        }
    }

    /// The wait is over: the bar goes, and `text` with the time it took ("web1 is up on host
    /// host2 (3.2 s)") stays, unless nothing was ever shown (a quick wait prints only its result).
    pub fn finish(&mut self, text: &str) {
        let line = format!("{text} ({})", elapsed(self.started.elapsed()));
        match &mut self.out {
            Out::Terminal { bar, .. } => {
                bar.finish_and_clear();
                if self.shown {
                    eprintln!("{line}");
                }
            }
            Out::Lines(lines) if self.shown => lines.line(&line),
            Out::Lines(_) => {}
        }
    }

    /// The wait failed or gave up: the bar goes; the error says the rest.
    pub fn abandon(&mut self) {
        if let Out::Terminal { bar, .. } = &self.out {
            bar.finish_and_clear();
        }
    }

    /// Runs `call`, one long request, with a spinner that says `what` while it runs.
    pub async fn during<F: std::future::Future>(&mut self, what: &str, call: F) -> F::Output {
        self.phase(what);
        call.await
    }
}

impl Drop for Progress {
    fn drop(&mut self) {
        // An error returned through `?` must not leave a half-drawn bar behind it.
        self.abandon();
    }
}

/// "850 ms", "3.2 s", "2 m 5 s".
fn elapsed(d: Duration) -> String {
    match d.as_millis() {
        ms if ms < 1000 => format!("{ms} ms"),
        ms if ms < 60_000 => format!("{:.1} s", ms as f64 / 1000.0),
        ms => format!("{} m {} s", ms / 60_000, (ms % 60_000) / 1000),
    }
}

/// The plain-line form: a line per new phase, per tenth of a measured step, per new note.
struct Lines<W> {
    out: W,
    phase: Option<String>,
    decile: Option<u64>,
    notes: Vec<String>,
}

impl<W: Write> Lines<W> {
    fn new(out: W) -> Self {
        Lines { out, phase: None, decile: None, notes: Vec::new() }
    }

    fn phase(&mut self, text: &str) {
        if self.phase.as_deref() != Some(text) {
            self.line(text);
            self.phase = Some(text.to_string());
            self.decile = None;
        }
    }

    fn percent(&mut self, phase: &str, percent: u64, detail: &str) {
        let decile = percent / 10;
        if self.phase.as_deref() != Some(phase) || self.decile.is_none_or(|d| decile > d) {
            let detail = if detail.is_empty() { String::new() } else { format!(", {detail}") };
            self.line(&format!("{phase}: {percent}%{detail}"));
            self.phase = Some(phase.to_string());
            self.decile = Some(decile);
        }
    }

    fn note(&mut self, text: &str) {
        if !self.notes.iter().any(|n| n == text) {
            self.line(text);
            self.notes.push(text.to_string());
        }
    }

    fn line(&mut self, text: &str) {
        // A reader that went away is no reason to stop waiting.
        let _ = writeln!(self.out, "{text}");
        let _ = self.out.flush();
    }
}

/// A pipe for the tests: what a non-terminal stderr would have received.
#[cfg(test)]
pub(crate) mod testing {
    use std::io::Write;
    use std::sync::{Arc, Mutex};

    #[derive(Clone, Default)]
    pub struct Pipe(Arc<Mutex<Vec<u8>>>);

    impl Write for Pipe {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    impl Pipe {
        pub fn text(&self) -> String {
            String::from_utf8(self.0.lock().unwrap().clone()).unwrap()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::testing::Pipe;
    use super::*;

    #[test]
    fn a_pipe_gets_a_line_per_phase_and_per_tenth() {
        let pipe = Pipe::default();
        let mut p = Progress::lines(Box::new(pipe.clone()));
        p.phase("migrating web1 from host1 to host2");
        p.phase("migrating web1 from host1 to host2");
        for (percent, left) in [(0, 1024), (3, 990), (9, 930), (10, 920), (14, 880), (57, 440), (100, 0)] {
            p.percent("migrating web1", percent, &format!("{left} MiB left"));
        }
        p.note("waiting: VM db1 cannot move yet: pinned");
        p.note("waiting: VM db1 cannot move yet: pinned");
        p.phase("cancelling");
        p.finish("done");
        let text = pipe.text();
        assert!(!text.contains('\r'), "{text:?}");
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(
            lines[..8],
            [
                "migrating web1 from host1 to host2",
                "migrating web1: 0%, 1024 MiB left",
                "migrating web1: 10%, 920 MiB left",
                "migrating web1: 57%, 440 MiB left",
                "migrating web1: 100%, 0 MiB left",
                "waiting: VM db1 cannot move yet: pinned",
                "cancelling",
                lines[7],
            ]
        );
        assert!(lines[7].starts_with("done (") && lines[7].ends_with(" ms)"), "{}", lines[7]);
        assert_eq!(lines.len(), 8);
    }

    #[test]
    fn a_new_phase_starts_its_tenths_again() {
        let pipe = Pipe::default();
        let mut p = Progress::lines(Box::new(pipe.clone()));
        p.percent("copying disk a", 50, "");
        p.percent("copying disk b", 5, "");
        p.percent("copying disk b", 8, "");
        assert_eq!(pipe.text(), "copying disk a: 50%\ncopying disk b: 5%\n");
    }

    #[test]
    fn a_wait_that_showed_nothing_ends_quietly() {
        let pipe = Pipe::default();
        Progress::lines(Box::new(pipe.clone())).finish("done");
        assert_eq!(pipe.text(), "");
    }

    #[test]
    fn elapsed_times_read_naturally() {
        assert_eq!(elapsed(Duration::from_millis(850)), "850 ms");
        assert_eq!(elapsed(Duration::from_millis(3240)), "3.2 s");
        assert_eq!(elapsed(Duration::from_secs(125)), "2 m 5 s");
    }
}
