//! What one IKE SA negotiates: identities, authentication (PSK or certificates),
//! proposals, traffic selectors, and the timers and options of an established SA
//! (NAT-T, DPD, fragmentation, lifetimes, CP).

use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::pool::SharedPool;
use crate::cert::{Credential, TrustStore};
use crate::crypto::{DhGroup, Encr, Integ, Prf, SecretBytes};
use crate::wire::{Identity, IpSelector, ProtocolId};

/// How we prove our identity in IKE_AUTH.
#[derive(Clone)]
pub enum LocalAuth {
    /// AUTH method 2 (shared key MIC) with this key.
    Psk(SecretBytes),
    /// CERT payloads with our chain and a signature AUTH: method 14 (RFC 7427) with a
    /// hash from the peer's SIGNATURE_HASH_ALGORITHMS, or the legacy ECDSA methods 9/10
    /// towards a peer that sent no such notify.
    Certificate(Arc<Credential>),
}

/// How we check the peer's IKE_AUTH. Independent of [`LocalAuth`]: each direction is
/// authenticated on its own (RFC 7296 §2.15), so a PSK one way and certificates the
/// other is a valid configuration.
#[derive(Clone)]
pub enum PeerAuth {
    /// The peer must send AUTH method 2 made with this key.
    Psk(SecretBytes),
    /// The peer must send a certificate chain ending at one of these CAs and a
    /// signature AUTH made with its key. We send CERTREQ for these CAs and announce
    /// the hashes we verify in SIGNATURE_HASH_ALGORITHMS.
    Certificate(Arc<TrustStore>),
}

impl std::fmt::Debug for LocalAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            LocalAuth::Psk(_) => f.write_str("Psk(<redacted>)"),
            LocalAuth::Certificate(c) => write!(f, "Certificate({:?})", c.key().kind()),
        }
    }
}

impl std::fmt::Debug for PeerAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            PeerAuth::Psk(_) => f.write_str("Psk(<redacted>)"),
            PeerAuth::Certificate(s) => write!(f, "Certificate({} CAs)", s.len()),
        }
    }
}

/// One IKE SA proposal: a single transform of each type.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct IkeSuite {
    pub encr: Encr,
    /// `None` with an AEAD cipher.
    pub integ: Option<Integ>,
    pub prf: Prf,
    pub dh: DhGroup,
}

impl IkeSuite {
    /// AES-128-GCM with PRF-HMAC-SHA-256 (Junos' `aes-128-gcm` proposal with
    /// `sha-256`), the suite the benchmarks and the load generator measure.
    pub fn aes128_gcm(dh: DhGroup) -> Self {
        Self {
            encr: Encr::AesGcm16_128,
            integ: None,
            prf: Prf::HmacSha256,
            dh,
        }
    }
}

/// IPsec mode of a child SA (RFC 4301 §4.1). Transport mode is negotiated with
/// USE_TRANSPORT_MODE (RFC 7296 §1.3.1); an SA is in tunnel mode without it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
pub enum IpsecMode {
    #[default]
    Tunnel,
    Transport,
}

/// One proposal for a child SA: ESP, or AH (RFC 7296 §3.3: protocol 2, an integrity
/// transform and ESN, no encryption). An enum so that an AH suite with a cipher or
/// without integrity cannot be written down.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ChildSuite {
    Esp {
        encr: Encr,
        /// `None` with an AEAD.
        integ: Option<Integ>,
        /// Extended sequence numbers (RFC 4303 §2.2.1).
        esn: bool,
    },
    Ah {
        integ: Integ,
        /// Extended sequence numbers (RFC 4302 §2.5.1).
        esn: bool,
    },
}

impl ChildSuite {
    /// ESP with AES-128-GCM, no ESN: the child suite of the benchmarks and the load
    /// generator.
    pub fn esp_aes128_gcm() -> Self {
        ChildSuite::Esp {
            encr: Encr::AesGcm16_128,
            integ: None,
            esn: false,
        }
    }

    /// The protocol of the proposal and of the SA pair it makes.
    pub fn protocol(&self) -> ProtocolId {
        match self {
            ChildSuite::Esp { .. } => ProtocolId::Esp,
            ChildSuite::Ah { .. } => ProtocolId::Ah,
        }
    }

    /// The cipher; `None` for AH.
    pub fn encr(&self) -> Option<Encr> {
        match *self {
            ChildSuite::Esp { encr, .. } => Some(encr),
            ChildSuite::Ah { .. } => None,
        }
    }

    /// The integrity algorithm; `None` for ESP with an AEAD.
    pub fn integ(&self) -> Option<Integ> {
        match *self {
            ChildSuite::Esp { integ, .. } => integ,
            ChildSuite::Ah { integ, .. } => Some(integ),
        }
    }

    pub fn esn(&self) -> bool {
        match *self {
            ChildSuite::Esp { esn, .. } | ChildSuite::Ah { esn, .. } => esn,
        }
    }
}

/// Retransmission of requests: `initial` doubled on each try (with up to 10% jitter
/// taken off), giving up after `max_tries` sends. After establishment, giving up means
/// the peer is dead (RFC 7296 §2.4), so this is also the DPD threshold.
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

/// Seconds lifetimes of a child SA: rekeyed at `soft` (minus up to 10% jitter, so two
/// peers with the same configuration rarely collide), deleted at `hard`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChildLifetime {
    pub soft: Duration,
    pub hard: Duration,
}

/// What a child SA asks for: used by [`crate::engine::IkeSa::create_child`] and kept
/// with the child so that its rekey proposes the same.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ChildConfig {
    pub suites: Vec<ChildSuite>,
    /// Our side (TSi when we initiate the exchange).
    pub local_ts: Vec<IpSelector>,
    pub remote_ts: Vec<IpSelector>,
    /// Perfect forward secrecy for CREATE_CHILD_SA: a KE payload of this group.
    pub pfs: Option<DhGroup>,
    /// The mode asked for; a child SA the peer answers in another mode is deleted
    /// (RFC 7296 §1.3.1). Kept with the child as negotiated, so its rekey asks the same.
    pub mode: IpsecMode,
}

#[derive(Clone)]
pub struct IkeConfig {
    pub local_id: Identity,
    /// The identity the peer must present; `None` accepts any (with certificates: any
    /// identity its certificate names). Distinguished names are compared as names
    /// (attribute by attribute, ignoring string types, case and extra spaces), other
    /// types exactly.
    pub remote_id: Option<Identity>,
    /// `remote_id` names a group (Junos `ike-user-type group-ike-id`): an FQDN or RFC 822
    /// identity matches when its domain ends with it (`alice@example.net` and
    /// `host.example.net` match `example.net`), so one dial-up gateway serves many
    /// peers, each with its own identity.
    pub remote_id_group: bool,
    /// How we authenticate ourselves.
    pub auth: LocalAuth,
    /// How the peer must authenticate itself.
    pub peer_auth: PeerAuth,
    /// In order of preference; the initiator's KE uses the first suite's group.
    pub ike_suites: Vec<IkeSuite>,
    pub child_suites: Vec<ChildSuite>,
    /// Transport: ask for transport-mode child SAs as initiator and grant them to an
    /// initiator that asks. Tunnel: neither (an initiator asking for transport mode
    /// gets a tunnel-mode SA, which it may then delete).
    pub child_mode: IpsecMode,
    /// Our side of the tunnel (TSi for an initiator, TSr for a responder).
    pub local_ts: Vec<IpSelector>,
    pub remote_ts: Vec<IpSelector>,
    pub retransmit: Retransmit,
    /// DH group of child SAs created or rekeyed with CREATE_CHILD_SA; as a responder we
    /// require exactly this (or no KE when `None`).
    pub child_pfs: Option<DhGroup>,
    /// Like strongSwan's `encap=yes`: send a NAT_DETECTION_SOURCE_IP that cannot match,
    /// so both sides believe in a NAT, float to 4500 and use ESP-in-UDP. Needed towards
    /// peers that cannot receive raw ESP (strongSwan with kernel-libipsec).
    pub force_encap: bool,
    /// NAT keepalive interval (RFC 3948 §4); the daemon sends them, the engine only
    /// carries the setting.
    pub nat_keepalive: Duration,
    /// Send an empty INFORMATIONAL after this long without IKE or ESP traffic from the
    /// peer; `None` disables dead peer detection.
    pub dpd_interval: Option<Duration>,
    /// Offer and use IKE fragmentation (RFC 7383).
    pub fragmentation: bool,
    /// Largest IKE message (without IP/UDP headers and non-ESP marker) sent unfragmented
    /// once fragmentation is negotiated; also the size of each fragment.
    pub fragment_size: usize,
    /// Reassembly bounds: more fragments than this, or fragments spread over more than
    /// `fragment_timeout`, are discarded.
    pub max_fragments: u16,
    pub fragment_timeout: Duration,
    /// IKE SA rekeyed at about 90% of this (with jitter); `None` never rekeys.
    pub ike_lifetime: Option<Duration>,
    /// At that time, ask for reauthentication ([`crate::engine::Event::ReauthRequired`]:
    /// the daemon sets up a fresh IKE SA and then deletes this one) instead of rekeying.
    pub reauth: bool,
    pub child_lifetime: Option<ChildLifetime>,
    /// Initiator: ask for an internal IPv4 address and DNS servers (CP, RFC 7296 §3.15).
    pub request_address: bool,
    /// Responder: assign addresses from this pool to initiators that ask.
    pub address_pool: Option<SharedPool>,
    /// Send INITIAL_CONTACT in our IKE_AUTH message, request or response (RFC 7296
    /// §2.4), asserting that this will be the only IKE SA between the two identities,
    /// so the peer drops any it still holds from before we lost ours (a restart)
    /// instead of waiting for its DPD. The engine cannot know what else the daemon holds: the daemon sets this
    /// only when it has no other IKE SA with the peer, and never where one identity
    /// may be in use from two places at once, as §2.4 requires.
    pub initial_contact: bool,
    /// Report the keys of every IKE SA ([`crate::engine::Event::IkeSaKeys`]) for a
    /// Wireshark key log. Off by default: IKE keys leave the engine only when an
    /// operator asked for them.
    pub key_log: bool,
}

impl IkeConfig {
    /// A configuration with the given identity and pre-shared key (both directions)
    /// and every option at its default: no proposals or selectors yet, no DPD, no
    /// lifetimes, fragmentation offered.
    pub fn new(local_id: Identity, psk: SecretBytes) -> Self {
        Self::with_auth(local_id, LocalAuth::Psk(psk.clone()), PeerAuth::Psk(psk))
    }

    /// Like [`Self::new`], with certificate authentication both ways: we sign with
    /// `credential`, the peer's chain must end at a CA of `trusted`.
    pub fn with_certificate(
        local_id: Identity,
        credential: Arc<Credential>,
        trusted: Arc<TrustStore>,
    ) -> Self {
        Self::with_auth(
            local_id,
            LocalAuth::Certificate(credential),
            PeerAuth::Certificate(trusted),
        )
    }

    /// Like [`Self::new`], with each direction's authentication chosen separately.
    pub fn with_auth(local_id: Identity, auth: LocalAuth, peer_auth: PeerAuth) -> Self {
        IkeConfig {
            local_id,
            remote_id: None,
            remote_id_group: false,
            auth,
            peer_auth,
            ike_suites: Vec::new(),
            child_suites: Vec::new(),
            child_mode: IpsecMode::Tunnel,
            local_ts: Vec::new(),
            remote_ts: Vec::new(),
            retransmit: Retransmit::default(),
            child_pfs: None,
            force_encap: false,
            nat_keepalive: Duration::from_secs(20),
            dpd_interval: None,
            fragmentation: true,
            fragment_size: 1280,
            max_fragments: 32,
            fragment_timeout: Duration::from_secs(30),
            ike_lifetime: None,
            reauth: false,
            child_lifetime: None,
            request_address: false,
            address_pool: None,
            initial_contact: false,
            key_log: false,
        }
    }

    /// The child SA of IKE_AUTH, as configured.
    pub fn first_child(&self) -> ChildConfig {
        ChildConfig {
            suites: self.child_suites.clone(),
            local_ts: self.local_ts.clone(),
            remote_ts: self.remote_ts.clone(),
            pfs: self.child_pfs,
            mode: self.child_mode,
        }
    }
}

impl std::fmt::Debug for IkeConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IkeConfig")
            .field("local_id", &self.local_id)
            .field("remote_id", &self.remote_id)
            .field("remote_id_group", &self.remote_id_group)
            .field("auth", &self.auth)
            .field("peer_auth", &self.peer_auth)
            .field("ike_suites", &self.ike_suites)
            .field("child_suites", &self.child_suites)
            .field("child_mode", &self.child_mode)
            .field("local_ts", &self.local_ts)
            .field("remote_ts", &self.remote_ts)
            .field("retransmit", &self.retransmit)
            .field("force_encap", &self.force_encap)
            .field("dpd_interval", &self.dpd_interval)
            .field("ike_lifetime", &self.ike_lifetime)
            .field("child_lifetime", &self.child_lifetime)
            .field("initial_contact", &self.initial_contact)
            .field("key_log", &self.key_log)
            .finish_non_exhaustive()
    }
}
