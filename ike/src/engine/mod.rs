//! The sans-IO IKEv2 engine: one [`IkeSa`] per negotiated IKE SA, driven by datagrams
//! and timer ticks, emitting datagrams and events.
//!
//! So far it covers IKE_SA_INIT (with INVALID_KE_PAYLOAD retry) and IKE_AUTH with a
//! pre-shared key, creating the first child SA.

mod auth;
mod config;
mod error;
mod proposal;
mod sa;
mod ts;

#[cfg(test)]
mod tests;

pub use config::{ChildSuite, IkeConfig, IkeSuite, Retransmit};
pub use error::IkeError;
pub use sa::{ChildSaInstall, ChildSaKeys, Event, IkeSa, Transmit};
