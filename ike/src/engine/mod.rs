//! The sans-IO IKEv2 engine: one [`IkeSa`] per IKE SA, driven by datagrams and timer
//! ticks, emitting datagrams and events.
//!
//! Covered: IKE_SA_INIT (INVALID_KE_PAYLOAD retry, COOKIE, NAT detection and the float
//! to UDP 4500, fragmentation negotiation), IKE_AUTH with a pre-shared key (and a
//! configuration payload for remote access), INFORMATIONAL (liveness, DPD, Delete),
//! CREATE_CHILD_SA (new child, child rekey, IKE rekey, with collision handling),
//! lifetimes, and SKF fragmentation (RFC 7383). [`CookieResponder`] runs before any
//! `IkeSa` exists.

mod auth;
mod config;
mod cookie;
mod error;
mod exchange;
mod frag;
mod natt;
mod pool;
mod proposal;
mod sa;
mod ts;

#[cfg(test)]
mod tests;

pub use config::{ChildConfig, ChildLifetime, ChildSuite, IkeConfig, IkeSuite, Retransmit};
pub use cookie::{CookieResponder, Decision};
pub use error::IkeError;
pub use natt::{NAT_T_PORT, NatStatus};
pub use pool::{AddressPool, SharedPool};
pub use sa::{ChildSaInstall, ChildSaKeys, Event, IkeSa, Transmit};
