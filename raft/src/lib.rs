//! The meaning of Corral's replicated state: the openraft type configuration, the state
//! machine (model, commands, a pure `apply`), and the tonic transport between nodes.
//! The state machine does no I/O and reads no clock: time arrives inside each command.

pub mod causes;
pub mod command;
pub mod documents;
pub mod error;
pub mod format;
pub mod forward;
pub mod model;
pub mod network;
pub mod ovf;
pub mod peer;
pub mod typ;
pub mod validate;
pub mod vocab;

pub mod apply;
pub mod scheduler;

pub use apply::Applied;
pub use causes::{DownCause, HostDownCause, VmAction};
pub use command::{Command, Op, Outcome, Reply};
pub use error::ClusterError;
pub use model::ClusterState;
pub use typ::{NodeId, NodeInfo, TypeConfig};
