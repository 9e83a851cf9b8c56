//! What one IKE SA negotiates: identities, PSK, proposals and traffic selectors.

use std::time::Duration;

use crate::crypto::{DhGroup, Encr, Integ, Prf, SecretBytes};
use crate::wire::{Identity, IpSelector};

/// One IKE SA proposal: a single transform of each type.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct IkeSuite {
    pub encr: Encr,
    /// `None` with an AEAD cipher.
    pub integ: Option<Integ>,
    pub prf: Prf,
    pub dh: DhGroup,
}

/// One ESP proposal for a child SA.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ChildSuite {
    pub encr: Encr,
    pub integ: Option<Integ>,
    /// Extended sequence numbers (RFC 4303 §2.2.1).
    pub esn: bool,
}

/// Retransmission of requests: `initial` doubled on each try (with up to 10% jitter
/// taken off), giving up after `max_tries` sends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Retransmit {
    pub initial: Duration,
    pub max_tries: u32,
}

impl Default for Retransmit {
    fn default() -> Self {
        Retransmit {
            initial: Duration::from_secs(1),
            max_tries: 5,
        }
    }
}

#[derive(Clone)]
pub struct IkeConfig {
    pub local_id: Identity,
    /// The identity the peer must present; `None` accepts any.
    pub remote_id: Option<Identity>,
    pub psk: SecretBytes,
    /// In order of preference; the initiator's KE uses the first suite's group.
    pub ike_suites: Vec<IkeSuite>,
    pub child_suites: Vec<ChildSuite>,
    /// Our side of the tunnel (TSi for an initiator, TSr for a responder).
    pub local_ts: Vec<IpSelector>,
    pub remote_ts: Vec<IpSelector>,
    pub retransmit: Retransmit,
}

impl std::fmt::Debug for IkeConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IkeConfig")
            .field("local_id", &self.local_id)
            .field("remote_id", &self.remote_id)
            .field("ike_suites", &self.ike_suites)
            .field("child_suites", &self.child_suites)
            .field("local_ts", &self.local_ts)
            .field("remote_ts", &self.remote_ts)
            .field("retransmit", &self.retransmit)
            .finish_non_exhaustive()
    }
}
