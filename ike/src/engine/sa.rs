//! One IKE SA, either role, from IKE_SA_INIT to its deletion (RFC 7296).
//!
//! Sans-IO in the style of quinn-proto: datagrams and timer ticks go in through
//! [`IkeSa::handle_datagram`] and [`IkeSa::handle_timeout`]; datagrams, deadlines and
//! events come out through [`IkeSa::poll_transmit`], [`IkeSa::poll_timeout`] and
//! [`IkeSa::poll_event`]. Randomness comes from the RNG given at construction.
//!
//! After IKE_AUTH, exchanges are built from a priority queue of [`Task`]s with one
//! request in flight per IKE SA (window size 1, as we advertise no larger window).
//! Rekeying the IKE SA happens in place: the object swaps to the new SPIs and keys,
//! reports [`Event::IkeRekeyed`] (the daemon routes both SPI pairs here until the old
//! SA is gone) and keeps its child SAs, which move to the new IKE SA (RFC 7296 §2.18).

use std::collections::VecDeque;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant, SystemTime};

use rand_core::CryptoRngCore;
use serde::{Deserialize, Serialize};

use super::config::{ChildConfig, ChildSuite, IkeConfig, IkeSuite, IpsecMode};
use super::error::IkeError;
use super::frag::{self, Bounds, Reassembly};
use super::keys::Keyed;
use super::natt::{NAT_T_PORT, NatStatus};
use super::pool::Lease;
use super::version::StateVersion;
use crate::crypto::{DhGroup, DhSecret, SecretBytes};
use crate::keylog::{EspSaKeyLog, IkeSaKeyLog};
use crate::wire::{
    ExchangeType, Flags, Header, Identity, IpSelector, NotifyPayload, NotifyType, Payload,
    ProtocolId, TsPayload, locate_encrypted,
};

pub(super) const NONCE_LEN: usize = 32;

/// A datagram waiting in the caller's buffer after [`IkeSa::poll_transmit`].
///
/// When `non_esp_marker` is set the SA has floated to UDP 4500: the caller sends from
/// its NAT-T socket (`local`, port 4500) and prefixes the four zero octets of the
/// non-ESP marker (RFC 3948 §2.2); it likewise strips the marker before handing
/// received datagrams to [`IkeSa::handle_datagram`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Transmit {
    pub destination: SocketAddr,
    pub local: SocketAddr,
    pub non_esp_marker: bool,
    pub size: usize,
}

/// One direction of a child SA, as the data plane installs it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChildSaKeys {
    pub spi: u32,
    pub encr_key: SecretBytes,
    pub integ_key: SecretBytes,
}

/// Everything the data plane needs for an ESP or AH SA pair, in IANA numbers and key
/// bytes.
///
/// Serializable so that the cluster node can keep it as the record of an installed pair
/// and replicate it; the keys are [`SecretBytes`], wiped on drop and never printed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChildSaInstall {
    /// ESP or AH.
    pub protocol: ProtocolId,
    /// IANA ENCR id (`None` for AH, which does not encrypt) and Key Length attribute
    /// (bits), if the cipher has one.
    pub encr_id: Option<u16>,
    pub encr_key_bits: Option<u16>,
    /// IANA INTEG id; `None` with an AEAD (always set for AH).
    pub integ_id: Option<u16>,
    pub esn: bool,
    /// Tunnel or transport, as negotiated with USE_TRANSPORT_MODE.
    pub mode: IpsecMode,
    /// Keys include the 4-byte salt for AEADs (RFC 4106 §8.1).
    pub inbound: ChildSaKeys,
    pub outbound: ChildSaKeys,
    pub local_ts: Vec<IpSelector>,
    pub remote_ts: Vec<IpSelector>,
    /// ESP in UDP (RFC 3948) with (local port, remote port), when a NAT was detected or
    /// encapsulation forced; `None` means raw ESP (or AH, which has no UDP
    /// encapsulation: the daemon cannot install an AH pair that has this set).
    pub udp_encap: Option<(u16, u16)>,
    /// The inbound SPI of the pair this one replaces (make-before-break: install this
    /// one, the old one's [`Event::ChildSaDeleted`] follows).
    pub rekeys: Option<u32>,
    /// We answered the rekey: the peer installs its inbound SA only when our response
    /// reaches it, so a packet sent on the new outbound SA before then is lost. The new
    /// outbound SA stands behind the old one until the old pair is deleted (normally by
    /// the rekey's initiator right after the exchange), as strongSwan does.
    pub outbound_deferred: bool,
}

/// The keys protecting one IKE SA's messages, with its SPIs and algorithms: what a
/// Wireshark key log needs (RFC 7296 §2.14). The keys are [`SecretBytes`]; `Debug`
/// shows the SPIs only.
#[derive(Clone, PartialEq, Eq)]
pub struct IkeSaKeyMaterial {
    pub spi_i: u64,
    pub spi_r: u64,
    /// IANA ENCR id and key length attribute.
    pub encr: (u16, Option<u16>),
    /// IANA INTEG id, `None` with an AEAD.
    pub integ: Option<u16>,
    pub sk_ei: SecretBytes,
    pub sk_er: SecretBytes,
    pub sk_ai: SecretBytes,
    pub sk_ar: SecretBytes,
}

impl IkeSaKeyMaterial {
    fn of(spis: (u64, u64), keyed: &Keyed) -> Self {
        let k = &keyed.keys;
        IkeSaKeyMaterial {
            spi_i: spis.0,
            spi_r: spis.1,
            encr: (keyed.suite.encr.iana_id(), keyed.suite.encr.key_bits()),
            integ: keyed.suite.integ.map(|i| i.iana_id()),
            sk_ei: k.sk_ei.clone(),
            sk_er: k.sk_er.clone(),
            sk_ai: k.sk_ai.clone(),
            sk_ar: k.sk_ar.clone(),
        }
    }

    /// The keys as one line of Wireshark's IKEv2 decryption table.
    pub fn key_log(&self) -> IkeSaKeyLog<'_> {
        IkeSaKeyLog {
            spi_i: self.spi_i,
            spi_r: self.spi_r,
            encr: self.encr,
            integ: self.integ,
            sk_ei: self.sk_ei.as_bytes(),
            sk_er: self.sk_er.as_bytes(),
            sk_ai: self.sk_ai.as_bytes(),
            sk_ar: self.sk_ar.as_bytes(),
        }
    }
}

impl std::fmt::Debug for IkeSaKeyMaterial {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.key_log().fmt(f)
    }
}

impl ChildSaInstall {
    /// Both directions as lines of Wireshark's ESP SA table, outbound first, between
    /// our address `local` and the peer's `remote`; `None` for AH, which Wireshark
    /// dissects without keys (nothing is encrypted) and its ESP table does not cover.
    pub fn key_log(&self, local: IpAddr, remote: IpAddr) -> Option<[EspSaKeyLog<'_>; 2]> {
        let encr = self.encr_id?;
        Some(
            [
                (local, remote, &self.outbound),
                (remote, local, &self.inbound),
            ]
            .map(|(src, dst, keys)| EspSaKeyLog {
                src,
                dst,
                spi: keys.spi,
                encr,
                encr_key: keys.encr_key.as_bytes(),
                integ: self.integ_id,
                integ_key: keys.integ_key.as_bytes(),
            }),
        )
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// Both sides are authenticated.
    Established { spi_i: u64, spi_r: u64 },
    /// IKE_SA_INIT found a NAT (or the peer fakes one): IKE and ESP use UDP 4500.
    NatDetected(NatStatus),
    /// The peer sent INITIAL_CONTACT in IKE_AUTH (RFC 7296 §2.4): this SA, now
    /// authenticated with `peer`, is the only one it holds with us. The daemon deletes
    /// every other IKE SA it has with that identity, and their child SAs, locally and
    /// without sending Delete: the peer has lost them. Reported after
    /// [`Event::Established`] and before the first [`Event::ChildSaReady`], so the old
    /// pairs can go before the new ones are installed.
    InitialContact { peer: Identity },
    /// An IKE SA (the first, or one created by a rekey) has its keys, reported when
    /// [`IkeConfig::key_log`] is set. As soon as the keys exist, before IKE_AUTH, so a
    /// capture of a failing authentication can be decrypted too.
    IkeSaKeys(Box<IkeSaKeyMaterial>),
    /// A child SA pair is negotiated and should be installed.
    ChildSaReady(ChildSaInstall),
    /// A child SA pair is gone; remove both directions.
    ChildSaDeleted { inbound_spi: u32, outbound_spi: u32 },
    /// A child SA could not be created; the IKE SA lives on.
    ChildSaFailed(IkeError),
    /// The IKE SA now uses new SPIs and keys; its child SAs are unchanged.
    IkeRekeyed {
        old_spis: (u64, u64),
        new_spis: (u64, u64),
    },
    /// The peer's authenticated requests come from a new address or port (a NAT
    /// mapping changed, RFC 7296 §2.23): IKE and ESP-in-UDP now go there.
    PeerAddressChanged { old: SocketAddr, new: SocketAddr },
    /// The responder assigned us an internal address (CP, RFC 7296 §3.15).
    AddressAssigned {
        address: Ipv4Addr,
        netmask: Option<Ipv4Addr>,
        dns: Vec<Ipv4Addr>,
    },
    /// The IKE SA lifetime is up and `reauth` is configured: authenticate again with a
    /// new IKE SA (make-before-break), then [`IkeSa::delete`] this one.
    ReauthRequired,
    /// Requests went unanswered through the whole retransmission schedule.
    PeerDead,
    /// The IKE SA was deleted (by the peer when `by_peer`); children are reported
    /// deleted just before.
    Closed { by_peer: bool },
    /// The SA died during its setup; nothing more will come out of it.
    Failed(IkeError),
}

/// Our request in flight on one IKE SA.
pub(super) struct Active {
    pub(super) id: u32,
    pub(super) kind: ActiveKind,
    /// The request exactly as first sent: retransmissions repeat these bytes.
    pub(super) datagrams: Vec<Vec<u8>>,
    pub(super) tries: u32,
    /// When the next retransmission is due.
    pub(super) at: Instant,
}

pub(super) enum ActiveKind {
    Auth { child_spi: u32 },
    Dpd,
    DeleteIke,
    DeleteChildren(Vec<u32>),
    CreateChild(Box<ChildInit>),
    RekeyIke(Box<IkeRekeyInit>),
}

/// Initiator side of CREATE_CHILD_SA for a new or rekeyed child SA.
pub(super) struct ChildInit {
    pub(super) config: ChildConfig,
    pub(super) our_spi: u32,
    pub(super) ni: Vec<u8>,
    pub(super) dh: Option<DhSecret>,
    pub(super) rekeys: Option<u32>,
    /// This is the retry after INVALID_KE_PAYLOAD; there is no second one.
    pub(super) ke_retry: bool,
    /// Set when the peer rekeyed the same child while this was in flight: the lower
    /// of that exchange's two nonces (RFC 7296 §2.8.1).
    pub(super) collision: Option<Vec<u8>>,
}

/// Initiator side of an IKE SA rekey.
pub(super) struct IkeRekeyInit {
    pub(super) new_spi: u64,
    pub(super) ni: Vec<u8>,
    pub(super) dh: DhSecret,
    pub(super) suites: Vec<IkeSuite>,
}

/// One keyed IKE SA: the current one, or an old/redundant one being retired.
pub(super) struct Session {
    /// Whether we are the original initiator of *this* SA (the rekey initiator for an
    /// SA created by rekeying): it sets the I flag and the key directions.
    pub(super) initiator: bool,
    pub(super) spi_i: u64,
    pub(super) spi_r: u64,
    pub(super) keyed: Box<Keyed>,
    pub(super) next_id: u32,
    pub(super) peer_next: u32,
    /// Our answer to the peer's last request, for its retransmissions.
    pub(super) last_response: Option<(u32, Vec<Vec<u8>>)>,
    pub(super) active: Option<Active>,
    frags: Option<Reassembly>,
    /// A retiring SA is dropped at this time at the latest.
    pub(super) retire_at: Option<Instant>,
    /// A retiring SA whose work is done.
    pub(super) finished: bool,
}

impl Session {
    pub(super) fn new(initiator: bool, (spi_i, spi_r): (u64, u64), keyed: Keyed) -> Self {
        Session {
            initiator,
            spi_i,
            spi_r,
            keyed: Box::new(keyed),
            next_id: 0,
            peer_next: 0,
            last_response: None,
            active: None,
            frags: None,
            retire_at: None,
            finished: false,
        }
    }

    pub(super) fn spis(&self) -> (u64, u64) {
        (self.spi_i, self.spi_r)
    }

    pub(super) fn header(&self, exchange: ExchangeType, response: bool, message_id: u32) -> Header {
        Header {
            spi_i: self.spi_i,
            spi_r: self.spi_r,
            minor_version: 0,
            exchange,
            flags: Flags::new(self.initiator, response),
            message_id,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub(super) enum ChildState {
    Installed,
    /// Replaced by a rekey; deleted by the rekey initiator.
    Rekeyed,
    /// Our Delete is queued or in flight.
    Deleting,
}

pub(super) struct Child {
    pub(super) inbound: u32,
    pub(super) outbound: u32,
    /// What its rekey proposes: the suite in use and the narrowed selectors.
    pub(super) config: ChildConfig,
    pub(super) state: ChildState,
    /// False for the redundant SA of a lost rekey collision, which the data plane
    /// never saw and which is only deleted at the peer.
    pub(super) installed: bool,
    pub(super) rekey_at: Option<Instant>,
    pub(super) expire_at: Option<Instant>,
    /// Keys and parameters as handed to the data plane (or, if not `installed`, as they
    /// would have been): a snapshot carries them to the node that takes the SA over.
    pub(super) install: ChildSaInstall,
}

/// Local requests waiting for the SA to be free, served by priority.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(super) enum Task {
    DeleteIke,
    DeleteChild(u32),
    RekeyIke,
    RekeyChild(u32),
    CreateChild(ChildConfig),
    Dpd,
}

impl Task {
    fn priority(&self) -> u8 {
        match self {
            Task::DeleteIke => 0,
            Task::DeleteChild(_) => 1,
            Task::RekeyIke => 2,
            Task::RekeyChild(_) => 3,
            Task::CreateChild(_) => 4,
            Task::Dpd => 5,
        }
    }
}

/// Work decided while a session was taken out of the SA, applied once it is back.
pub(super) enum Deferred {
    /// `new` becomes the current SA; the old one retires, deleted by us or by the peer.
    Swap {
        new: Box<Session>,
        we_delete_old: bool,
    },
    /// A redundant SA from a rekey collision: we delete it, or wait for the peer to.
    Retire {
        session: Box<Session>,
        we_delete: bool,
    },
    Close {
        by_peer: bool,
        dead: bool,
    },
    Fail(IkeError),
}

pub(super) enum Phase {
    /// Initiator: waiting for the IKE_SA_INIT response.
    InitSent {
        dh: DhSecret,
        ni: Vec<u8>,
        request: Vec<u8>,
        tries: u32,
        at: Instant,
        cookies: u8,
    },
    /// Responder: waiting for IKE_SA_INIT.
    AwaitInit,
    /// Keys exist, IKE_AUTH is in flight (initiator) or awaited (responder).
    Auth,
    Established,
    Closed {
        failed: bool,
    },
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Sel {
    Current,
    Retiring(usize),
}

pub struct IkeSa {
    pub(super) config: IkeConfig,
    pub(super) local: SocketAddr,
    pub(super) remote: SocketAddr,
    /// SPIs before a session exists (and of the first one).
    pub(super) spi_i: u64,
    pub(super) spi_r: u64,
    pub(super) phase: Phase,
    pub(super) session: Option<Session>,
    pub(super) retiring: Vec<Session>,
    pub(super) children: Vec<Child>,
    pub(super) tasks: Vec<Task>,
    pub(super) deferred: Vec<Deferred>,
    /// A passive IKE rekey that collided with ours, until ours completes.
    pub(super) ike_collision: Option<(Box<Session>, Vec<u8>)>,
    pub(super) nat: NatStatus,
    /// ESP is UDP-encapsulated (NAT seen or encapsulation forced).
    pub(super) encap: bool,
    /// IKE runs on the NAT-T port with the non-ESP marker.
    pub(super) floated: bool,
    /// Both sides sent IKEV2_FRAGMENTATION_SUPPORTED.
    pub(super) fragmentation: bool,
    pub(super) rng: Box<dyn CryptoRngCore + Send>,
    pub(super) outgoing: VecDeque<Vec<u8>>,
    pub(super) events: VecDeque<Event>,
    /// The responder's IKE_SA_INIT answer, for retransmitted requests.
    pub(super) init_response: Option<Vec<u8>>,
    /// Last sign of life from the peer (authenticated IKE message or ESP, see
    /// [`IkeSa::note_inbound_traffic`]).
    pub(super) last_seen: Instant,
    pub(super) ike_rekey_at: Option<Instant>,
    pub(super) lease: Option<Lease>,
    /// The peer's SIGNATURE_HASH_ALGORITHMS from IKE_SA_INIT (RFC 7427 §4); `None` if
    /// it sent none.
    pub(super) peer_hashes: Option<Vec<u16>>,
    /// Wall-clock time given with the datagram being processed: what peer certificates
    /// must be valid at.
    pub(super) wall: SystemTime,
    /// Behind [`IkeSa::state_version`].
    pub(super) version: StateVersion,
}

impl std::fmt::Debug for IkeSa {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let (spi_i, spi_r) = self.spis();
        f.debug_struct("IkeSa")
            .field("local", &self.local)
            .field("remote", &self.remote)
            .field("spi_i", &spi_i)
            .field("spi_r", &spi_r)
            .field("children", &self.children.len())
            .finish_non_exhaustive()
    }
}

pub(super) fn nonzero_spi(rng: &mut dyn CryptoRngCore) -> u64 {
    loop {
        let spi = rng.next_u64();
        if spi != 0 {
            return spi;
        }
    }
}

pub(super) fn nonce(rng: &mut dyn CryptoRngCore) -> Vec<u8> {
    let mut n = vec![0u8; NONCE_LEN];
    rng.fill_bytes(&mut n);
    n
}

pub(super) fn child_spi(rng: &mut dyn CryptoRngCore) -> u32 {
    // SPIs 1-255 are reserved by IANA (RFC 4303 §2.1).
    loop {
        let spi = rng.next_u32();
        if spi > 255 {
            return spi;
        }
    }
}

pub(super) fn find<'a, T>(
    payloads: &'a [Payload],
    pick: impl Fn(&'a Payload) -> Option<T>,
) -> Result<T, IkeError> {
    let mut found = payloads.iter().filter_map(pick);
    let first = found
        .next()
        .ok_or(IkeError::InvalidSyntax("missing payload"))?;
    if found.next().is_some() {
        return Err(IkeError::InvalidSyntax("repeated payload"));
    }
    Ok(first)
}

pub(super) fn notify_of(payloads: &[Payload], ty: NotifyType) -> Option<&NotifyPayload> {
    payloads.iter().find_map(|p| match p {
        Payload::Notify(n) if n.notify_type == ty => Some(n),
        _ => None,
    })
}

pub(super) fn error_notify(payloads: &[Payload]) -> Option<NotifyType> {
    payloads.iter().find_map(|p| match p {
        Payload::Notify(n) if n.notify_type.is_error() => Some(n.notify_type),
        _ => None,
    })
}

/// The one mapping from an error to what the peer sees: a notify payload.
pub(super) fn error_payload(e: &IkeError) -> Payload {
    let ty = e.notify_type().unwrap_or(NotifyType::InvalidSyntax);
    Payload::Notify(NotifyPayload::new(ty, e.notify_data()))
}

/// A group named in an INVALID_KE_PAYLOAD notify.
pub(super) fn wanted_group(n: &NotifyPayload) -> Option<DhGroup> {
    n.data
        .get(..2)
        .and_then(|b| <[u8; 2]>::try_from(b).ok())
        .map(u16::from_be_bytes)
        .and_then(|id| DhGroup::from_iana(id).ok())
}

/// Whether a keyed message is unfragmented or fragment 1, the only ones a cached
/// response is replayed for (RFC 7383 §2.6.1).
fn first_or_whole(data: &[u8]) -> bool {
    locate_encrypted(data).is_ok_and(|s| s.fragment.is_none_or(|(n, _)| n == 1))
}

impl IkeSa {
    pub(super) fn blank(
        config: IkeConfig,
        local: SocketAddr,
        remote: SocketAddr,
        rng: Box<dyn CryptoRngCore + Send>,
        phase: Phase,
        now: Instant,
    ) -> Self {
        IkeSa {
            config,
            local,
            remote,
            spi_i: 0,
            spi_r: 0,
            phase,
            session: None,
            retiring: Vec::new(),
            children: Vec::new(),
            tasks: Vec::new(),
            deferred: Vec::new(),
            ike_collision: None,
            nat: NatStatus::default(),
            encap: false,
            floated: false,
            fragmentation: false,
            rng,
            outgoing: VecDeque::new(),
            events: VecDeque::new(),
            init_response: None,
            last_seen: now,
            ike_rekey_at: None,
            lease: None,
            peer_hashes: None,
            wall: SystemTime::UNIX_EPOCH,
            version: StateVersion::default(),
        }
    }

    /// Starts an IKE SA from `local` towards `remote` (both UDP 500 normally) and
    /// queues the IKE_SA_INIT request.
    pub fn initiate(
        config: IkeConfig,
        local: SocketAddr,
        remote: SocketAddr,
        mut rng: Box<dyn CryptoRngCore + Send>,
        now: Instant,
    ) -> Result<Self, IkeError> {
        let first = *config
            .ike_suites
            .first()
            .ok_or_else(|| IkeError::NoProposalChosen(Default::default()))?;
        let spi_i = nonzero_spi(rng.as_mut());
        let mut sa = IkeSa::blank(config, local, remote, rng, Phase::AwaitInit, now);
        sa.spi_i = spi_i;
        sa.send_init(first.dh, None, None, 0, now)?;
        Ok(sa)
    }

    /// A responder that waits for an IKE_SA_INIT request from `remote` to `local`.
    pub fn respond(
        config: IkeConfig,
        local: SocketAddr,
        remote: SocketAddr,
        mut rng: Box<dyn CryptoRngCore + Send>,
        now: Instant,
    ) -> Self {
        let spi_r = nonzero_spi(rng.as_mut());
        let mut sa = IkeSa::blank(config, local, remote, rng, Phase::AwaitInit, now);
        sa.spi_r = spi_r;
        sa
    }

    /// Whether we initiated the current IKE SA (after a rekey: its rekey exchange).
    pub fn is_initiator(&self) -> bool {
        match &self.session {
            Some(s) => s.initiator,
            None => matches!(self.phase, Phase::InitSent { .. }) || self.spi_r == 0,
        }
    }

    /// SPIs of the current IKE SA.
    pub fn spis(&self) -> (u64, u64) {
        self.session
            .as_ref()
            .map_or((self.spi_i, self.spi_r), Session::spis)
    }

    /// Our SPI of every IKE SA this one still answers for: the current one and the
    /// retiring ones (rekeyed, waiting for their Delete; they answer retransmissions
    /// from their cache). A node that restores a snapshot must route datagrams naming
    /// any of them here: a peer that missed our answer to its IKE rekey retransmits on
    /// the old SA.
    pub fn local_spis(&self) -> Vec<u64> {
        let ours = |s: &Session| if s.initiator { s.spi_i } else { s.spi_r };
        let current = match &self.session {
            Some(s) => ours(s),
            None if self.is_initiator() => self.spi_i,
            None => self.spi_r,
        };
        std::iter::once(current)
            .chain(self.retiring.iter().map(ours))
            .collect()
    }

    pub fn is_established(&self) -> bool {
        matches!(self.phase, Phase::Established)
    }

    pub fn is_failed(&self) -> bool {
        matches!(self.phase, Phase::Closed { failed: true })
    }

    /// Deleted, dead or failed: nothing more will happen.
    pub fn is_closed(&self) -> bool {
        matches!(self.phase, Phase::Closed { .. })
    }

    pub fn nat_status(&self) -> NatStatus {
        self.nat
    }

    /// Where IKE datagrams go, and from where (the daemon routes by both).
    pub fn addresses(&self) -> (SocketAddr, SocketAddr) {
        (self.local, self.remote)
    }

    /// The NAT keepalive interval to use when we are behind a NAT (RFC 3948 §4).
    pub fn nat_keepalive(&self) -> Option<Duration> {
        (self.encap && self.nat.local_behind).then_some(self.config.nat_keepalive)
    }

    /// Live child SA pairs as (inbound SPI, outbound SPI), in creation order: those
    /// the data plane has installed and that are not yet deleted.
    pub fn child_sas(&self) -> Vec<(u32, u32)> {
        self.children
            .iter()
            .filter(|c| c.installed)
            .map(|c| (c.inbound, c.outbound))
            .collect()
    }

    /// The IKE SA's algorithms once IKE_SA_INIT has completed, for status reporting.
    pub fn negotiated_suite(&self) -> Option<IkeSuite> {
        self.session.as_ref().map(|s| s.keyed.suite)
    }

    /// Our sending SK cipher, so tests can forge well-protected messages.
    #[cfg(test)]
    pub(super) fn send_cipher(&self) -> Option<&crate::crypto::SkCipher> {
        self.session.as_ref().map(|s| &s.keyed.send)
    }

    /// Our receiving SK cipher, so tests can read what we were sent.
    #[cfg(test)]
    pub(super) fn recv_cipher(&self) -> Option<&crate::crypto::SkCipher> {
        self.session.as_ref().map(|s| &s.keyed.recv)
    }

    /// The next message ID of our own requests on the current SA.
    #[cfg(test)]
    pub(super) fn next_message_id(&self) -> Option<u32> {
        self.session.as_ref().map(|s| s.next_id)
    }

    /// Every child SA record, including replaced ones and redundant ones awaiting
    /// their Delete: after things settle it must equal the live ones (no orphans).
    #[cfg(test)]
    pub(super) fn child_records(&self) -> usize {
        self.children.len()
    }

    /// Old or redundant IKE SAs not yet gone.
    #[cfg(test)]
    pub(super) fn retiring_count(&self) -> usize {
        self.retiring.len()
    }

    pub(super) fn fragment_size(&self) -> Option<usize> {
        self.fragmentation.then_some(self.config.fragment_size)
    }

    pub(super) fn encap_ports(&self) -> Option<(u16, u16)> {
        self.encap
            .then_some((self.local.port(), self.remote.port()))
    }

    /// The child suites this SA may offer (`offer`) or accept. AH authenticates the
    /// outer addresses a NAT rewrites and has no UDP encapsulation (RFC 3948 covers
    /// ESP only), so once a NAT is detected or encapsulation forced, AH suites are
    /// left out: an AH-only offer is then answered with NO_PROPOSAL_CHOSEN instead of
    /// agreeing to a pair that cannot carry a packet. An exchange's initiator
    /// configured with AH only still offers it (an empty offer is no proposal at all)
    /// and learns the same from such a responder.
    pub(super) fn usable_suites(&self, suites: &[ChildSuite], offer: bool) -> Vec<ChildSuite> {
        let usable: Vec<ChildSuite> = suites
            .iter()
            .copied()
            .filter(|s| !self.encap || matches!(s, ChildSuite::Esp { .. }))
            .collect();
        if offer && usable.is_empty() {
            suites.to_vec()
        } else {
            usable
        }
    }

    /// Retransmission delay before try `tries + 1`.
    pub(super) fn backoff(&mut self, tries: u32) -> Duration {
        let base = self.config.retransmit.initial * 2u32.saturating_pow(tries.saturating_sub(1));
        // Up to 10% off, so peers that started together do not retransmit in lockstep.
        let jitter = base.mul_f64(f64::from(self.rng.next_u32() % 100) / 1000.0);
        base - jitter
    }

    /// How long a rekey or delete may take to settle: the whole retransmission
    /// schedule. Retiring SAs and replaced children are kept at most this long.
    pub(super) fn settle_time(&self) -> Duration {
        let r = self.config.retransmit;
        r.initial * 2u32.saturating_pow(r.max_tries).saturating_sub(1)
    }

    /// `d` minus up to `percent`% random jitter.
    pub(super) fn jittered(&mut self, d: Duration, percent: u32) -> Duration {
        let cut = f64::from(self.rng.next_u32() % (percent * 10 + 1)) / 1000.0;
        d.mul_f64(1.0 - cut)
    }

    // ---- output ----

    /// Writes the next datagram into `buf` (cleared first).
    pub fn poll_transmit(&mut self, buf: &mut Vec<u8>) -> Option<Transmit> {
        let bytes = self.outgoing.pop_front()?;
        buf.clear();
        buf.extend_from_slice(&bytes);
        Some(Transmit {
            destination: self.remote,
            local: self.local,
            non_esp_marker: self.floated,
            size: bytes.len(),
        })
    }

    pub fn poll_event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }

    pub(super) fn queue(&mut self, datagrams: &[Vec<u8>]) {
        self.outgoing.extend(datagrams.iter().cloned());
    }

    /// Sends a request on `sess` and makes it the one in flight.
    pub(super) fn send_request(
        &mut self,
        sess: &mut Session,
        exchange: ExchangeType,
        payloads: &[Payload],
        kind: ActiveKind,
        now: Instant,
    ) -> Result<(), IkeError> {
        let id = sess.next_id;
        let header = sess.header(exchange, false, id);
        let frag_size = self.fragment_size();
        let datagrams = frag::seal(
            &sess.keyed.send,
            &header,
            payloads,
            frag_size,
            self.rng.as_mut(),
        )?;
        sess.next_id = id.wrapping_add(1);
        self.queue(&datagrams);
        let at = now + self.backoff(1);
        sess.active = Some(Active {
            id,
            kind,
            datagrams,
            tries: 1,
            at,
        });
        Ok(())
    }

    pub(super) fn send_response(
        &mut self,
        sess: &mut Session,
        exchange: ExchangeType,
        message_id: u32,
        payloads: &[Payload],
    ) -> Result<(), IkeError> {
        let header = sess.header(exchange, true, message_id);
        let frag_size = self.fragment_size();
        let datagrams = frag::seal(
            &sess.keyed.send,
            &header,
            payloads,
            frag_size,
            self.rng.as_mut(),
        )?;
        self.queue(&datagrams);
        sess.last_response = Some((message_id, datagrams));
        Ok(())
    }

    // ---- timers ----

    pub fn poll_timeout(&self) -> Option<Instant> {
        let mut t: Vec<Option<Instant>> = Vec::new();
        match &self.phase {
            Phase::InitSent { at, .. } => t.push(Some(*at)),
            Phase::Closed { .. } => return None,
            Phase::AwaitInit | Phase::Auth | Phase::Established => {}
        }
        for s in self.session.iter().chain(&self.retiring) {
            t.push(s.active.as_ref().map(|a| a.at));
            t.push(s.retire_at);
        }
        if matches!(self.phase, Phase::Established) {
            t.push(self.dpd_at());
            t.push(self.ike_rekey_at);
            for c in &self.children {
                t.push(c.rekey_at);
                t.push(c.expire_at);
            }
        }
        t.into_iter().flatten().min()
    }

    fn dpd_at(&self) -> Option<Instant> {
        self.config.dpd_interval.map(|i| self.last_seen + i)
    }

    pub fn handle_timeout(&mut self, now: Instant) {
        if let Phase::InitSent { at, .. } = &self.phase
            && now >= *at
        {
            self.retransmit_init(now);
            return;
        }
        if self.is_closed() {
            return;
        }
        self.retransmit_sessions(now);
        if !self.is_established() {
            return;
        }
        if self.dpd_at().is_some_and(|at| now >= at) {
            self.last_seen = now;
            let busy = self.session.as_ref().is_some_and(|s| s.active.is_some());
            if !busy && self.tasks.is_empty() {
                self.tasks.push(Task::Dpd);
            }
        }
        if self.ike_rekey_at.is_some_and(|at| now >= at) {
            self.ike_rekey_at = None;
            if self.config.reauth {
                self.events.push_back(Event::ReauthRequired);
            } else {
                self.push_task(Task::RekeyIke);
            }
        }
        self.child_timers(now);
        self.pump(now);
    }

    fn retransmit_init(&mut self, now: Instant) {
        let max = self.config.retransmit.max_tries;
        let Phase::InitSent { request, tries, .. } = &self.phase else {
            return;
        };
        if *tries >= max {
            self.fail(IkeError::Timeout);
            return;
        }
        let (request, next) = (request.clone(), *tries + 1);
        let delay = self.backoff(next);
        if let Phase::InitSent { tries, at, .. } = &mut self.phase {
            *tries = next;
            *at = now + delay;
        }
        self.outgoing.push_back(request);
    }

    fn retransmit_sessions(&mut self, now: Instant) {
        let max = self.config.retransmit.max_tries;
        let mut resend = Vec::new();
        let mut auth_timeout = false;
        let sessions = self.session.iter_mut().map(|s| (true, s));
        let sessions = sessions.chain(self.retiring.iter_mut().map(|s| (false, s)));
        let mut backoffs = Vec::new();
        for (current, s) in sessions {
            if s.retire_at.is_some_and(|at| now >= at) {
                s.finished = true;
            }
            let spis = s.spis();
            let Some(a) = s.active.as_mut() else {
                continue;
            };
            if now < a.at {
                continue;
            }
            if a.tries >= max {
                if !current {
                    s.finished = true;
                } else if matches!(a.kind, ActiveKind::Auth { .. }) {
                    auth_timeout = true;
                } else {
                    let dead = !matches!(a.kind, ActiveKind::DeleteIke);
                    s.active = None;
                    self.deferred.push(Deferred::Close {
                        by_peer: false,
                        dead,
                    });
                }
                continue;
            }
            a.tries += 1;
            resend.extend(a.datagrams.iter().cloned());
            backoffs.push((current, spis, a.tries));
        }
        self.retiring.retain(|s| !s.finished);
        self.outgoing.extend(resend);
        for (current, spis, tries) in backoffs {
            let at = now + self.backoff(tries);
            let s = if current {
                self.session.as_mut()
            } else {
                self.retiring.iter_mut().find(|s| s.spis() == spis)
            };
            if let Some(a) = s.and_then(|s| s.active.as_mut()) {
                a.at = at;
            }
        }
        if auth_timeout {
            self.fail(IkeError::Timeout);
        }
        self.run_deferred(now);
    }

    fn child_timers(&mut self, now: Instant) {
        let mut tasks = Vec::new();
        for c in &mut self.children {
            if c.expire_at.is_some_and(|at| now >= at) {
                c.expire_at = None;
                c.rekey_at = None;
                if c.state != ChildState::Deleting {
                    c.state = ChildState::Deleting;
                    tasks.push(Task::DeleteChild(c.inbound));
                }
            }
            if c.rekey_at.is_some_and(|at| now >= at) {
                c.rekey_at = None;
                if c.state == ChildState::Installed {
                    tasks.push(Task::RekeyChild(c.inbound));
                }
            }
        }
        for t in tasks {
            self.push_task(t);
        }
    }

    // ---- local requests ----

    pub(super) fn push_task(&mut self, task: Task) {
        if !self.tasks.contains(&task) {
            self.tasks.push(task);
        }
    }

    fn request(&mut self, task: Task, now: Instant) -> Result<(), IkeError> {
        if self.is_closed() {
            return Err(IkeError::NotEstablished);
        }
        self.push_task(task);
        self.pump(now);
        Ok(())
    }

    /// Negotiates an additional child SA with CREATE_CHILD_SA.
    pub fn create_child(&mut self, config: ChildConfig, now: Instant) -> Result<(), IkeError> {
        self.request(Task::CreateChild(config), now)
    }

    /// Rekeys the child SA with this inbound SPI (the daemon calls this when a byte or
    /// packet soft lifetime expires in the data plane).
    pub fn rekey_child(&mut self, inbound_spi: u32, now: Instant) -> Result<(), IkeError> {
        if !self.children.iter().any(|c| c.inbound == inbound_spi) {
            return Err(IkeError::ChildSaNotFound);
        }
        self.request(Task::RekeyChild(inbound_spi), now)
    }

    /// Deletes the child SA pair with this inbound SPI.
    pub fn delete_child(&mut self, inbound_spi: u32, now: Instant) -> Result<(), IkeError> {
        let child = self
            .children
            .iter_mut()
            .find(|c| c.inbound == inbound_spi)
            .ok_or(IkeError::ChildSaNotFound)?;
        child.state = ChildState::Deleting;
        child.rekey_at = None;
        self.request(Task::DeleteChild(inbound_spi), now)
    }

    /// Rekeys the IKE SA now (it is also rekeyed on its own by `ike_lifetime`).
    pub fn rekey_ike(&mut self, now: Instant) -> Result<(), IkeError> {
        self.request(Task::RekeyIke, now)
    }

    /// Deletes the IKE SA and with it every child SA; [`Event::Closed`] follows once
    /// the peer answers or the retransmissions run out.
    pub fn delete(&mut self, now: Instant) -> Result<(), IkeError> {
        self.request(Task::DeleteIke, now)
    }

    /// ESP traffic from the peer arrived: it is alive, so DPD waits.
    pub fn note_inbound_traffic(&mut self, now: Instant) {
        self.last_seen = self.last_seen.max(now);
    }

    /// Starts the most urgent queued task if no request is in flight.
    pub(super) fn pump(&mut self, now: Instant) {
        loop {
            if !self.is_established()
                || self.session.as_ref().is_none_or(|s| s.active.is_some())
                || !self.deferred.is_empty()
            {
                return;
            }
            let Some(i) = (0..self.tasks.len())
                .min_by_key(|i| self.tasks.get(*i).map_or(u8::MAX, Task::priority))
            else {
                return;
            };
            let task = self.tasks.remove(i);
            let Some(mut sess) = self.session.take() else {
                return;
            };
            let r = self.start_task(&mut sess, task, now);
            self.session = Some(sess);
            if let Err(e) = r {
                self.events.push_back(Event::ChildSaFailed(e));
            }
            self.run_deferred(now);
        }
    }

    // ---- input ----

    /// Processes one datagram (without the UDP 4500 non-ESP marker) that arrived from
    /// `from` at our address `to`. An `Err` means the datagram was dropped, or, if
    /// [`Self::is_closed`] now holds, that the SA died.
    ///
    /// `now` drives the timers; `wall` is the calendar time, against which a peer's
    /// certificates are checked (the engine reads no clock: tests pass any time they
    /// like, the daemon passes `SystemTime::now()`).
    pub fn handle_datagram(
        &mut self,
        now: Instant,
        wall: SystemTime,
        from: SocketAddr,
        to: SocketAddr,
        data: &[u8],
    ) -> Result<(), IkeError> {
        if self.is_closed() {
            return Err(IkeError::Unexpected("SA is closed"));
        }
        self.wall = wall;
        let h = Header::parse(data)?.header;
        if h.exchange == ExchangeType::IkeSaInit {
            let r = self.handle_init(now, from, to, data, h);
            self.run_deferred(now);
            self.pump(now);
            return r;
        }
        let sel = self.locate(h.spi_i, h.spi_r)?;
        let mut sess = match sel {
            Sel::Current => self.session.take(),
            Sel::Retiring(i) => (i < self.retiring.len()).then(|| self.retiring.remove(i)),
        }
        .ok_or(IkeError::Unexpected("message for another IKE SA"))?;
        let r = self.on_keyed(&mut sess, sel == Sel::Current, now, (from, to), data, h);
        match sel {
            Sel::Current => self.session = Some(sess),
            Sel::Retiring(_) if !sess.finished => self.retiring.push(sess),
            Sel::Retiring(_) => {}
        }
        self.run_deferred(now);
        self.pump(now);
        r
    }

    fn locate(&self, spi_i: u64, spi_r: u64) -> Result<Sel, IkeError> {
        if self
            .session
            .as_ref()
            .is_some_and(|s| s.spis() == (spi_i, spi_r))
        {
            return Ok(Sel::Current);
        }
        self.retiring
            .iter()
            .position(|s| s.spis() == (spi_i, spi_r))
            .map(Sel::Retiring)
            .ok_or(IkeError::Unexpected("message for another IKE SA"))
    }

    fn on_keyed(
        &mut self,
        sess: &mut Session,
        current: bool,
        now: Instant,
        (from, to): (SocketAddr, SocketAddr),
        data: &[u8],
        h: Header,
    ) -> Result<(), IkeError> {
        if h.flags.initiator() == sess.initiator {
            return Err(IkeError::Unexpected("message from our own role"));
        }
        let response = h.flags.response();
        if !response {
            if let Some((id, resp)) = &sess.last_response
                && *id == h.message_id
            {
                // A retransmitted request: answer with the cached response, unprocessed.
                if first_or_whole(data) {
                    let resp = resp.clone();
                    self.queue(&resp);
                }
                return Ok(());
            }
            if h.message_id != sess.peer_next {
                return Err(IkeError::Unexpected("request outside the window"));
            }
        } else if sess.active.as_ref().is_none_or(|a| a.id != h.message_id) {
            return Err(IkeError::Unexpected("response to no request of ours"));
        }
        let bounds = Bounds {
            max_fragments: self.config.max_fragments,
            timeout: self.config.fragment_timeout,
        };
        let Some((header, payloads)) =
            frag::open(&sess.keyed.recv, data, &mut sess.frags, bounds, now)?
        else {
            return Ok(());
        };
        self.last_seen = now;
        self.local = to;
        if to.port() == NAT_T_PORT {
            self.floated = true;
        }
        if response {
            let Some(active) = sess.active.take() else {
                return Ok(());
            };
            return self.on_response(sess, current, active, &payloads, now);
        }
        let our_request_pending = sess
            .active
            .as_ref()
            .is_some_and(|a| !matches!(a.kind, ActiveKind::DeleteIke));
        // On the current SA this happens when the peer won an IKE rekey collision and
        // deletes the old SA before our own rekey has been answered.
        if (!current || self.ike_collision.is_some())
            && our_request_pending
            && payloads
                .iter()
                .any(|p| matches!(p, Payload::Delete(crate::wire::DeletePayload::Ike)))
        {
            // The peer deletes an SA it replaced while our request on it is still
            // unanswered; it keeps replaying its answer until we acknowledge the Delete,
            // so acknowledge it only once our exchange is done.
            return Err(IkeError::Unexpected(
                "Delete of the old IKE SA before our request completed",
            ));
        }
        if matches!(self.phase, Phase::Auth) {
            // The initiator floated to 4500 for IKE_AUTH: follow it unconditionally.
            self.remote = from;
        } else if current {
            self.follow_peer(from);
        }
        sess.peer_next = h.message_id.wrapping_add(1);
        let (answer, err) = if header.exchange == ExchangeType::IkeAuth {
            if matches!(self.phase, Phase::Auth) && !sess.initiator {
                self.on_auth_request(sess, &payloads, now)
            } else {
                (vec![], Some(IkeError::Unexpected("IKE_AUTH after setup")))
            }
        } else if !matches!(self.phase, Phase::Established) {
            (
                vec![],
                Some(IkeError::Unexpected("request before IKE_AUTH")),
            )
        } else {
            self.on_request(sess, current, header.exchange, &payloads, now)
        };
        self.send_response(sess, header.exchange, h.message_id, &answer)?;
        match err {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }

    /// RFC 7296 §2.23: when the peer is behind a NAT, its mapping may change; follow
    /// the source of its authenticated requests.
    fn follow_peer(&mut self, from: SocketAddr) {
        if from != self.remote && self.nat.remote_behind {
            let old = std::mem::replace(&mut self.remote, from);
            self.events
                .push_back(Event::PeerAddressChanged { old, new: from });
        }
    }

    // ---- closing ----

    /// Moves to a failed state during setup, reporting the error once.
    pub(super) fn fail(&mut self, err: IkeError) -> IkeError {
        self.phase = Phase::Closed { failed: true };
        self.session = None;
        self.retiring.clear();
        self.tasks.clear();
        self.lease = None;
        self.events.push_back(Event::Failed(err.clone()));
        err
    }

    /// Ends an established SA: every child SA goes with it (RFC 7296 §1.4.1).
    pub(super) fn close(&mut self, by_peer: bool, dead: bool) {
        if self.is_closed() {
            return;
        }
        if dead {
            self.events.push_back(Event::PeerDead);
        }
        for c in std::mem::take(&mut self.children) {
            if c.installed {
                self.events.push_back(Event::ChildSaDeleted {
                    inbound_spi: c.inbound,
                    outbound_spi: c.outbound,
                });
            }
        }
        self.phase = Phase::Closed { failed: false };
        self.session = None;
        self.retiring.clear();
        self.tasks.clear();
        self.ike_collision = None;
        self.lease = None;
        self.events.push_back(Event::Closed { by_peer });
    }

    pub(super) fn run_deferred(&mut self, now: Instant) {
        for d in std::mem::take(&mut self.deferred) {
            match d {
                Deferred::Close { by_peer, dead } => self.close(by_peer, dead),
                Deferred::Fail(e) => {
                    self.fail(e);
                }
                Deferred::Swap { new, we_delete_old } => {
                    let Some(old) = self.session.replace(*new) else {
                        continue;
                    };
                    let new_spis = self.spis();
                    self.events.push_back(Event::IkeRekeyed {
                        old_spis: old.spis(),
                        new_spis,
                    });
                    self.retire(old, we_delete_old, now);
                    self.arm_ike_rekey(now);
                }
                Deferred::Retire { session, we_delete } => self.retire(*session, we_delete, now),
            }
        }
    }

    /// Keeps an old or redundant IKE SA until its Delete is done (ours, or the peer's),
    /// or for [`Self::settle_time`] at most.
    fn retire(&mut self, mut s: Session, we_delete: bool, now: Instant) {
        s.retire_at = Some(now + self.settle_time());
        if we_delete {
            let payloads = [Payload::Delete(crate::wire::DeletePayload::Ike)];
            // A retiring SA may still have an exchange in flight; the Delete replaces it.
            s.active = None;
            if self
                .send_request(
                    &mut s,
                    ExchangeType::Informational,
                    &payloads,
                    ActiveKind::DeleteIke,
                    now,
                )
                .is_err()
            {
                return;
            }
        }
        self.retiring.push(s);
    }

    /// Reports a freshly keyed session's keys, if a key log is configured.
    pub(super) fn report_keys(&mut self, sess: &Session) {
        if self.config.key_log {
            let keys = IkeSaKeyMaterial::of(sess.spis(), &sess.keyed);
            self.events.push_back(Event::IkeSaKeys(Box::new(keys)));
        }
    }

    pub(super) fn arm_ike_rekey(&mut self, now: Instant) {
        if let Some(life) = self.config.ike_lifetime {
            // About 90% of the lifetime, less up to another 5% of jitter.
            let at = self.jittered(life.mul_f64(0.9), 5);
            self.ike_rekey_at = Some(now + at);
        }
    }

    /// An SA the peer answered in another mode than `asked`: never installed here and
    /// deleted at the peer, which did install it (RFC 7296 §1.3.1: the initiator
    /// "MUST delete the SA"). Returns false (and does nothing) if the mode is right.
    pub(super) fn refuse_child(
        &mut self,
        install: &ChildSaInstall,
        config: &ChildConfig,
        asked: IpsecMode,
        now: Instant,
    ) -> bool {
        if install.mode == asked {
            return false;
        }
        let spi = install.inbound.spi;
        self.adopt_child(install.clone(), config.clone(), false, now);
        self.push_task(Task::DeleteChild(spi));
        self.events
            .push_back(Event::ChildSaFailed(IkeError::ModeMismatch {
                asked,
                answered: install.mode,
            }));
        true
    }

    /// Records a new child SA, arms its lifetimes and, if `announce`, reports it.
    pub(super) fn adopt_child(
        &mut self,
        mut install: ChildSaInstall,
        config: ChildConfig,
        announce: bool,
        now: Instant,
    ) {
        install.udp_encap = self.encap_ports();
        let (rekey_at, expire_at) = match self.config.child_lifetime {
            Some(l) => {
                let soft = self.jittered(l.soft, 10);
                (Some(now + soft), Some(now + l.hard))
            }
            None => (None, None),
        };
        self.children.push(Child {
            inbound: install.inbound.spi,
            outbound: install.outbound.spi,
            config,
            state: if announce {
                ChildState::Installed
            } else {
                ChildState::Deleting
            },
            installed: announce,
            rekey_at: rekey_at.filter(|_| announce),
            expire_at: expire_at.filter(|_| announce),
            install: install.clone(),
        });
        if announce {
            self.events.push_back(Event::ChildSaReady(install));
        }
    }
}

pub(super) fn ts_pair(payloads: &[Payload]) -> Result<(&TsPayload, &TsPayload), IkeError> {
    let tsi = find(payloads, |p| match p {
        Payload::TsI(t) => Some(t),
        _ => None,
    })?;
    let tsr = find(payloads, |p| match p {
        Payload::TsR(t) => Some(t),
        _ => None,
    })?;
    Ok((tsi, tsr))
}
