//! The sans-IO IKEv2 engine: one [`IkeSa`] per IKE SA, driven by datagrams and timer
//! ticks, emitting datagrams and events.
//!
//! Covered: IKE_SA_INIT (INVALID_KE_PAYLOAD retry, COOKIE, NAT detection and the float
//! to UDP 4500, fragmentation negotiation), IKE_AUTH with a pre-shared key or
//! certificates (RFC 7427 signatures, either way independently; and a configuration
//! payload for remote access), INFORMATIONAL (liveness, DPD, Delete),
//! CREATE_CHILD_SA (new child, child rekey, IKE rekey, with collision handling),
//! lifetimes, and SKF fragmentation (RFC 7383). [`CookieResponder`] runs before any
//! `IkeSa` exists.
//!
//! What the daemon does around an [`IkeSa`]:
//! - passes every datagram with the address it came from and the one it arrived at,
//!   and the wall-clock time (certificates are checked against it);
//!   on UDP 4500 it strips the non-ESP marker first, and adds it back when a
//!   [`Transmit`] says `non_esp_marker` (sending from `Transmit::local`);
//! - routes by IKE SPIs, adding the new pair on [`Event::IkeRekeyed`] and keeping the old
//!   one until the SA is dropped (the old IKE SA lingers until its Delete is done);
//! - installs and removes ESP or AH pairs on [`Event::ChildSaReady`] /
//!   [`Event::ChildSaDeleted`], with ESP-in-UDP when `udp_encap` is set, and re-points
//!   them on [`Event::PeerAddressChanged`];
//! - calls [`IkeSa::note_inbound_traffic`] when ESP arrives, so DPD stays quiet, sends
//!   NAT keepalives every [`IkeSa::nat_keepalive`], and calls [`IkeSa::rekey_child`]
//!   when a byte or packet soft lifetime expires in the data plane;
//! - in a cluster, replicates an [`IkeSaSnapshot`] whenever [`IkeSa::state_version`]
//!   changes, before sending, so that a standby takes the SA over with
//!   [`IkeSa::restore`].

mod auth;
mod config;
mod cookie;
mod error;
mod exchange;
mod frag;
mod handshake;
mod keys;
mod mode;
mod natt;
mod pool;
mod proposal;
mod restore;
mod sa;
mod snapshot;
mod ts;
mod version;

#[cfg(test)]
mod tests;

pub use auth::{group_identity_matches, identity_matches};
pub use config::{
    ChildConfig, ChildLifetime, ChildSuite, IkeConfig, IkeSuite, IpsecMode, LocalAuth, PeerAuth,
    Retransmit,
};
pub use cookie::{CookieResponder, Decision};
pub use error::{CertFailure, IkeError, ProposalMismatch, TsMismatch};
pub use natt::{NAT_T_PORT, NatStatus};
pub use pool::{AddressPool, SharedPool};
pub use restore::RestoreError;
pub use sa::{ChildSaInstall, ChildSaKeys, Event, IkeSa, IkeSaKeyMaterial, Transmit};
pub use snapshot::{IkeSaSnapshot, SnapshotError};
