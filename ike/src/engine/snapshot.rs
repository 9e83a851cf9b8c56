//! Stateful failover: an established IKE SA written out as an [`IkeSaSnapshot`], and
//! brought back by [`IkeSa::restore`] in another process, so that a standby cluster
//! node takes over live tunnels without renegotiating. The replication rule, what
//! happens to exchanges in flight, timers and what is left out are documented on
//! the public [`IkeSaSnapshot`].

use std::net::{Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use thiserror::Error;

use super::config::{ChildConfig, ChildSuite, IkeSuite, IpsecMode};
use super::natt::NatStatus;
use super::sa::{
    Active, ActiveKind, Child, ChildSaInstall, ChildState, IkeSa, Phase, Session, Task,
};
use crate::crypto::{DhGroup, DhSecret, Encr, SecretBytes};
use crate::wire::IpSelector;

/// Bumped whenever the encoding of a snapshot changes meaning; [`IkeSa::restore`]
/// refuses other formats rather than misreading them.
/// 2: child SAs and their proposals carry their IPsec mode.
pub(super) const FORMAT: u16 = 2;

/// Everything needed to continue an established IKE SA in another process: addresses
/// and NAT state, the current IKE SA's SPIs, keys and message IDs (with the cached last
/// answer and our request in flight), old IKE SAs still being deleted, the child SAs
/// with their keys, queued work, the CP lease, and timers relative to the snapshot.
///
/// Serialize it with any serde format (the cluster encodes it with bincode 2; decode
/// with a size limit, the input comes from the network). Keys are [`SecretBytes`]:
/// wiped on drop, shown as their length only by `Debug`.
///
/// # Write-ahead replication
///
/// After every call into the SA (`handle_datagram`, `handle_timeout`, `create_child`,
/// `rekey_*`, `delete*`) the node compares [`IkeSa::state_version`] with the version it
/// last replicated; if it changed, it takes a snapshot and replicates it *before* it
/// sends what [`IkeSa::poll_transmit`] returns. So the peer never sees a message the
/// standby could not have produced, and:
/// - a request of ours that the peer may have seen is in the snapshot, with the nonce,
///   SPI and DH private value it carries, so the standby retransmits the very same
///   bytes under the same message ID, and processes the answer (fresh, or the peer's
///   cached one) exactly as the original node would have: same keys, same SPIs;
/// - an answer of ours that the peer may have seen is the cached last response, sent
///   again when the peer retransmits its request;
/// - if the node dies after processing something but before replicating it, nothing of
///   it left the node: the peer retransmits its request, which the standby processes
///   afresh, or answers our retransmission from its cache.
///
/// # Exchanges in flight
///
/// Our request in flight is retransmitted from the snapshot on the retransmission
/// schedule it was on (tries so far included). When its answer comes:
/// - DPD: done; a peer that stays silent is declared dead after the remaining tries.
/// - Delete of child SAs or of the IKE SA: completes (children removed, SA closed).
/// - CREATE_CHILD_SA for a new child or a child rekey: completes as it would have on
///   the original node, make-before-break of the old pair and collision verdict
///   included (a colliding peer rekey's lower nonce is in the snapshot). Every DH group
///   can export its private value ([`crate::crypto::DhSecret::private_bytes`]), so
///   there is no exchange that cannot be completed and no fallback.
/// - IKE SA rekey: completes with the move to the new SA and our Delete of the old one;
///   a collision with the peer's IKE rekey (its new SA and nonce are in the snapshot)
///   is resolved as RFC 7296 §2.8.1 says.
///
/// Old IKE SAs waiting for their Delete after a rekey are carried with their own
/// exchange in flight and cached answer. Work queued behind the request in flight
/// (rekeys, deletes, new children, DPD) is carried too.
///
/// # Timers
///
/// Deadlines are stored as durations from the `now` given to [`IkeSa::snapshot`], and
/// anchored at the `now` given to [`IkeSa::restore`]. A snapshot is only replicated
/// when the state changes, so it may be old when it is restored: the node passes as
/// `now` the instant, in its own clock, at which the snapshot was taken (the current
/// instant less the wall-clock time elapsed since), and overdue timers fire at the next
/// `handle_timeout`; passing the current instant postpones every deadline by the age of
/// the snapshot. The time since the peer was last heard from is taken back at most one
/// DPD interval: a DPD overdue by more is just due.
///
/// # Left out
///
/// Datagrams not yet polled (see above), fragments being reassembled (the peer
/// retransmits the whole message), events not yet polled (the node's business), and
/// what only IKE_AUTH used: the IKE_SA_INIT transcript and nonces, SK_pi/SK_pr and the
/// peer's signature hashes. The peer's identity is not kept after IKE_AUTH either. A
/// restored SA is in that respect like one created by rekeying.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct IkeSaSnapshot {
    pub(super) format: u16,
    pub(super) state_version: u64,
    pub(super) local: SocketAddr,
    pub(super) remote: SocketAddr,
    pub(super) nat: NatStatus,
    pub(super) encap: bool,
    pub(super) floated: bool,
    pub(super) fragmentation: bool,
    pub(super) session: SessionSnapshot,
    pub(super) retiring: Vec<SessionSnapshot>,
    /// The peer's IKE rekey that collided with ours, and its lower nonce.
    pub(super) ike_collision: Option<(SessionSnapshot, Vec<u8>)>,
    pub(super) children: Vec<ChildSnapshot>,
    pub(super) tasks: Vec<TaskSnapshot>,
    pub(super) lease: Option<Ipv4Addr>,
    /// How long before the snapshot the peer was last heard from (drives DPD).
    pub(super) since_last_seen: Duration,
    pub(super) ike_rekey_in: Option<Duration>,
}

/// One keyed IKE SA.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(super) struct SessionSnapshot {
    pub(super) initiator: bool,
    pub(super) spis: (u64, u64),
    pub(super) suite: IkeSuiteIds,
    pub(super) keys: SessionKeys,
    pub(super) next_id: u32,
    pub(super) peer_next: u32,
    /// Message ID and datagrams of our answer to the peer's last request.
    pub(super) last_response: Option<(u32, Vec<Vec<u8>>)>,
    pub(super) active: Option<ActiveSnapshot>,
    pub(super) retire_in: Option<Duration>,
}

/// The keys an established IKE SA still uses.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(super) struct SessionKeys {
    pub(super) sk_d: SecretBytes,
    pub(super) sk_ai: SecretBytes,
    pub(super) sk_ar: SecretBytes,
    pub(super) sk_ei: SecretBytes,
    pub(super) sk_er: SecretBytes,
}

/// Our request in flight.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(super) struct ActiveSnapshot {
    pub(super) message_id: u32,
    pub(super) kind: ActiveKindSnapshot,
    /// The request as sent, repeated by retransmissions.
    pub(super) datagrams: Vec<Vec<u8>>,
    pub(super) tries: u32,
    pub(super) retransmit_in: Duration,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub(super) enum ActiveKindSnapshot {
    Dpd,
    DeleteIke,
    DeleteChildren(Vec<u32>),
    CreateChild(ChildInitSnapshot),
    RekeyIke(IkeRekeySnapshot),
}

/// Our side of a CREATE_CHILD_SA for a new or rekeyed child.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(super) struct ChildInitSnapshot {
    pub(super) config: ChildConfigSnapshot,
    pub(super) our_spi: u32,
    pub(super) ni: Vec<u8>,
    pub(super) dh: Option<DhPrivate>,
    pub(super) rekeys: Option<u32>,
    pub(super) ke_retry: bool,
    pub(super) collision: Option<Vec<u8>>,
}

/// Our side of an IKE SA rekey.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(super) struct IkeRekeySnapshot {
    pub(super) new_spi: u64,
    pub(super) ni: Vec<u8>,
    pub(super) dh: DhPrivate,
    pub(super) suites: Vec<IkeSuiteIds>,
}

/// A DH private value of an exchange in flight.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(super) struct DhPrivate {
    pub(super) group: u16,
    pub(super) private: SecretBytes,
}

/// A child SA: what the data plane has (or, for the redundant SA of a lost rekey
/// collision, would have), and what the engine keeps about it. Its rekey proposal is
/// the install's transform and selectors, with `pfs`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(super) struct ChildSnapshot {
    pub(super) install: ChildSaInstall,
    pub(super) pfs: Option<u16>,
    pub(super) state: ChildState,
    pub(super) installed: bool,
    pub(super) rekey_in: Option<Duration>,
    pub(super) expire_in: Option<Duration>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub(super) enum TaskSnapshot {
    DeleteIke,
    DeleteChild(u32),
    RekeyIke,
    RekeyChild(u32),
    CreateChild(ChildConfigSnapshot),
    Dpd,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub(super) struct ChildConfigSnapshot {
    pub(super) suites: Vec<ChildSuiteIds>,
    pub(super) local_ts: Vec<IpSelector>,
    pub(super) remote_ts: Vec<IpSelector>,
    pub(super) pfs: Option<u16>,
    pub(super) mode: IpsecMode,
}

/// Algorithms travel as IANA numbers, like on the wire: the encoding does not depend
/// on this crate's enums.
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
pub(super) struct IkeSuiteIds {
    pub(super) encr: u16,
    pub(super) encr_key_bits: Option<u16>,
    pub(super) integ: Option<u16>,
    pub(super) prf: u16,
    pub(super) dh: u16,
}

/// A child suite; no `encr` means AH.
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
pub(super) struct ChildSuiteIds {
    pub(super) encr: Option<u16>,
    pub(super) encr_key_bits: Option<u16>,
    pub(super) integ: Option<u16>,
    pub(super) esn: bool,
}

/// Why an IKE SA cannot be snapshotted.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum SnapshotError {
    /// Still in IKE_SA_INIT/IKE_AUTH (the standby cannot take that over: the peer
    /// starts again), or closed (nothing to take over).
    #[error("IKE SA is not established")]
    NotEstablished,
}

impl IkeSaSnapshot {
    /// [`IkeSa::state_version`] when the snapshot was taken: of two snapshots of one
    /// SA, the standby keeps the higher.
    pub fn state_version(&self) -> u64 {
        self.state_version
    }

    /// SPIs of the current IKE SA, (initiator's, responder's).
    pub fn spis(&self) -> (u64, u64) {
        self.session.spis
    }

    /// The child SA pairs the data plane holds for this SA (with ESP-in-UDP ports as of
    /// the snapshot). [`IkeSa::restore`] reports no [`super::Event::ChildSaReady`] for
    /// them: a node that has no records of its own installs these.
    pub fn child_installs(&self) -> impl Iterator<Item = &ChildSaInstall> {
        self.children
            .iter()
            .filter(|c| c.installed)
            .map(|c| &c.install)
    }
}

impl IkeSa {
    /// Writes out the state of an established SA so that [`IkeSa::restore`] can carry
    /// on with it elsewhere; `now` is what its timers are measured from. See
    /// [`IkeSaSnapshot`] for when to take one.
    pub fn snapshot(&self, now: Instant) -> Result<IkeSaSnapshot, SnapshotError> {
        let (Phase::Established, Some(session)) = (&self.phase, &self.session) else {
            return Err(SnapshotError::NotEstablished);
        };
        let ike_collision = match &self.ike_collision {
            Some((s, low)) => Some((session_snapshot(s, now)?, low.clone())),
            None => None,
        };
        Ok(IkeSaSnapshot {
            format: FORMAT,
            state_version: self.state_version(),
            local: self.local,
            remote: self.remote,
            nat: self.nat,
            encap: self.encap,
            floated: self.floated,
            fragmentation: self.fragmentation,
            session: session_snapshot(session, now)?,
            retiring: self
                .retiring
                .iter()
                .map(|s| session_snapshot(s, now))
                .collect::<Result<_, _>>()?,
            ike_collision,
            children: self
                .children
                .iter()
                .map(|c| self.child_snapshot(c, now))
                .collect(),
            tasks: self.tasks.iter().map(TaskSnapshot::of).collect(),
            lease: self.lease.as_ref().map(|l| l.address),
            since_last_seen: now.saturating_duration_since(self.last_seen),
            ike_rekey_in: until(self.ike_rekey_at, now),
        })
    }

    fn child_snapshot(&self, c: &Child, now: Instant) -> ChildSnapshot {
        ChildSnapshot {
            install: ChildSaInstall {
                // The peer's port may have moved since the pair was made (§2.23).
                udp_encap: self.encap_ports(),
                ..c.install.clone()
            },
            pfs: c.config.pfs.map(DhGroup::iana_id),
            state: c.state,
            installed: c.installed,
            rekey_in: until(c.rekey_at, now),
            expire_in: until(c.expire_at, now),
        }
    }
}

fn until(at: Option<Instant>, now: Instant) -> Option<Duration> {
    at.map(|at| at.saturating_duration_since(now))
}

fn session_snapshot(s: &Session, now: Instant) -> Result<SessionSnapshot, SnapshotError> {
    let keys = &s.keyed.keys;
    Ok(SessionSnapshot {
        initiator: s.initiator,
        spis: s.spis(),
        suite: IkeSuiteIds::of(s.keyed.suite),
        keys: SessionKeys {
            sk_d: keys.sk_d.clone(),
            sk_ai: keys.sk_ai.clone(),
            sk_ar: keys.sk_ar.clone(),
            sk_ei: keys.sk_ei.clone(),
            sk_er: keys.sk_er.clone(),
        },
        next_id: s.next_id,
        peer_next: s.peer_next,
        last_response: s.last_response.clone(),
        active: s
            .active
            .as_ref()
            .map(|a| active_snapshot(a, now))
            .transpose()?,
        retire_in: until(s.retire_at, now),
    })
}

fn active_snapshot(a: &Active, now: Instant) -> Result<ActiveSnapshot, SnapshotError> {
    let kind = match &a.kind {
        // IKE_AUTH in flight: the SA is not established.
        ActiveKind::Auth { .. } => return Err(SnapshotError::NotEstablished),
        ActiveKind::Dpd => ActiveKindSnapshot::Dpd,
        ActiveKind::DeleteIke => ActiveKindSnapshot::DeleteIke,
        ActiveKind::DeleteChildren(spis) => ActiveKindSnapshot::DeleteChildren(spis.clone()),
        ActiveKind::CreateChild(init) => ActiveKindSnapshot::CreateChild(ChildInitSnapshot {
            config: ChildConfigSnapshot::of(&init.config),
            our_spi: init.our_spi,
            ni: init.ni.clone(),
            dh: init.dh.as_ref().map(DhPrivate::of),
            rekeys: init.rekeys,
            ke_retry: init.ke_retry,
            collision: init.collision.clone(),
        }),
        ActiveKind::RekeyIke(init) => ActiveKindSnapshot::RekeyIke(IkeRekeySnapshot {
            new_spi: init.new_spi,
            ni: init.ni.clone(),
            dh: DhPrivate::of(&init.dh),
            suites: init.suites.iter().copied().map(IkeSuiteIds::of).collect(),
        }),
    };
    Ok(ActiveSnapshot {
        message_id: a.id,
        kind,
        datagrams: a.datagrams.clone(),
        tries: a.tries,
        retransmit_in: a.at.saturating_duration_since(now),
    })
}

impl DhPrivate {
    fn of(dh: &DhSecret) -> Self {
        DhPrivate {
            group: dh.group().iana_id(),
            private: dh.private_bytes(),
        }
    }
}

impl TaskSnapshot {
    fn of(t: &Task) -> Self {
        match t {
            Task::DeleteIke => TaskSnapshot::DeleteIke,
            Task::DeleteChild(spi) => TaskSnapshot::DeleteChild(*spi),
            Task::RekeyIke => TaskSnapshot::RekeyIke,
            Task::RekeyChild(spi) => TaskSnapshot::RekeyChild(*spi),
            Task::CreateChild(c) => TaskSnapshot::CreateChild(ChildConfigSnapshot::of(c)),
            Task::Dpd => TaskSnapshot::Dpd,
        }
    }
}

impl ChildConfigSnapshot {
    fn of(c: &ChildConfig) -> Self {
        ChildConfigSnapshot {
            suites: c.suites.iter().copied().map(ChildSuiteIds::of).collect(),
            local_ts: c.local_ts.clone(),
            remote_ts: c.remote_ts.clone(),
            pfs: c.pfs.map(DhGroup::iana_id),
            mode: c.mode,
        }
    }
}

impl IkeSuiteIds {
    fn of(s: IkeSuite) -> Self {
        IkeSuiteIds {
            encr: s.encr.iana_id(),
            encr_key_bits: s.encr.key_bits(),
            integ: s.integ.map(|i| i.iana_id()),
            prf: s.prf.iana_id(),
            dh: s.dh.iana_id(),
        }
    }
}

impl ChildSuiteIds {
    fn of(s: ChildSuite) -> Self {
        ChildSuiteIds {
            encr: s.encr().map(Encr::iana_id),
            encr_key_bits: s.encr().and_then(Encr::key_bits),
            integ: s.integ().map(|i| i.iana_id()),
            esn: s.esn(),
        }
    }
}
