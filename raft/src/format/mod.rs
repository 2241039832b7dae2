//! Corral's stored and replicated formats, one module per format: frozen copies of the data
//! types as a release wrote them, and the conversions between them and the current types.
pub mod backup;
pub mod v0;
pub mod wire;
