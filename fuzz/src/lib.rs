//! The protocol module alone, compiled as a small crate for fuzzing.

#[path = "../../src/protocol/mod.rs"]
pub mod protocol;
