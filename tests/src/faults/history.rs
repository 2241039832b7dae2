//! What the fault harness's clients did: every call with when it was invoked, when it came
//! back and what it answered. An answer that never came (a timeout, a transport error after
//! the request left) is recorded as unknown: the call may or may not have taken effect.

use std::fmt;
use std::sync::{Arc, Mutex};
use std::time::Instant;

/// The part of a VM's configuration the clients write and read.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Config {
    pub memory_mib: u64,
    pub description: String,
}

impl fmt::Display for Config {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{{memory {} MiB, description {:?}}}", self.memory_mib, self.description)
    }
}

/// One call on one VM (named by the op's `vm`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Call {
    Create(Config),
    SetMemory(u64),
    SetDescription(String),
    /// A linearizable `vm show`.
    Read,
    Delete,
}

impl fmt::Display for Call {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Call::Create(c) => write!(f, "create {c}"),
            Call::SetMemory(m) => write!(f, "edit --memory {m}"),
            Call::SetDescription(d) => write!(f, "edit --description {d:?}"),
            Call::Read => write!(f, "show"),
            Call::Delete => write!(f, "delete"),
        }
    }
}

/// How a call came back.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// It succeeded; the VM's configuration as the answer showed it (none for a delete).
    Ok(Option<Config>),
    /// Refused because the VM does not exist: it took no effect.
    NotFound,
    /// Refused because the VM exists already: it took no effect.
    AlreadyExists,
    /// Refused for another definite reason (the message says which): it took no effect.
    Refused(String),
    /// No answer, or an error that leaves open whether it took effect.
    Unknown(String),
}

impl Outcome {
    pub fn is_unknown(&self) -> bool {
        matches!(self, Outcome::Unknown(_))
    }
}

impl fmt::Display for Outcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Outcome::Ok(Some(c)) => write!(f, "ok {c}"),
            Outcome::Ok(None) => write!(f, "ok"),
            Outcome::NotFound => write!(f, "not found"),
            Outcome::AlreadyExists => write!(f, "already exists"),
            Outcome::Refused(m) => write!(f, "refused: {m}"),
            Outcome::Unknown(m) => write!(f, "unknown: {m}"),
        }
    }
}

/// The client id of the final reads made after every fault was healed.
pub const FINAL_READER: usize = usize::MAX;

/// One recorded call. Times are microseconds since the schedule started.
#[derive(Clone, Debug)]
pub struct Op {
    pub client: usize,
    /// The node (harness index) the call was sent to.
    pub node: usize,
    pub vm: String,
    pub call: Call,
    pub invoked_us: u64,
    /// When the answer came; none for an unknown outcome (it may take effect at any later time).
    pub completed_us: Option<u64>,
    pub outcome: Outcome,
}

impl fmt::Display for Op {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let who = if self.client == FINAL_READER { "final".to_string() } else { format!("c{}", self.client) };
        let end = match self.completed_us {
            Some(t) => format!("{:>9.3}", t as f64 / 1e6),
            None => format!("{:>9}", "-"),
        };
        write!(
            f,
            "{:>9.3} .. {end} s  {who:>5} @host{}  {} {}  => {}",
            self.invoked_us as f64 / 1e6,
            self.node + 1,
            self.vm,
            self.call,
            self.outcome
        )
    }
}

/// The shared log the clients append to, and the clock they share.
#[derive(Clone)]
pub struct Recorder {
    epoch: Instant,
    ops: Arc<Mutex<Vec<Op>>>,
}

impl Default for Recorder {
    fn default() -> Self {
        Recorder::new()
    }
}

impl Recorder {
    pub fn new() -> Recorder {
        Recorder { epoch: Instant::now(), ops: Arc::default() }
    }

    /// Microseconds since this recorder was made.
    pub fn now_us(&self) -> u64 {
        self.epoch.elapsed().as_micros() as u64
    }

    pub fn record(&self, op: Op) {
        self.ops.lock().expect("history lock").push(op);
    }

    /// Everything recorded so far.
    pub fn ops(&self) -> Vec<Op> {
        self.ops.lock().expect("history lock").clone()
    }
}
