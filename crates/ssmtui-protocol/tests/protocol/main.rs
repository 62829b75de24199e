//! The protocol core's tests, one module per concern: the spec's test vectors (§12), payload
//! shapes, KMS, property tests and hostile input, the session state machine one behaviour at a
//! time and as client and agent over a seeded lossy link with a virtual clock, the debug JSON
//! view, and smux with the agent-version rules. One test binary: it links only this crate.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "tests and their helpers should fail loudly at the point of the broken assumption"
)]

mod common;
mod crypto;
mod debug;
mod hostile;
mod lossy;
mod mux;
mod payload;
mod session;
mod vectors;
