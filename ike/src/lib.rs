//! Sans-IO IKEv2 (RFC 7296): wire format, crypto and state machines.
//!
//! Bytes and timer ticks go in, actions come out; this crate owns no socket, clock or
//! thread, so every exchange can be tested in memory and fuzzed.

pub mod cert;
pub mod crypto;
pub mod engine;
pub mod keylog;
pub mod wire;
