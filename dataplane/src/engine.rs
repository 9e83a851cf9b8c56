//! The per-worker packet engine: SAD, SPD, fragmentation and reassembly around the ESP
//! and AH transforms.
//!
//! Sans-IO: packets come in as [`PacketBuf`]s with the time of arrival, and each call
//! says what to do with the buffer (transmit it, write it to a tunnel, hand it to IKE,
//! drop it for a counted reason). Nothing here blocks, allocates per packet or locks.

use std::collections::VecDeque;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Instant;

use crate::buf::PacketBuf;
use crate::drop::{DropCounters, DropReason};
use crate::esp::{self, Decapsulated, OuterContext};
use crate::fence::{Fences, Group, GroupSet};
use crate::frag::{Fragmenter, Reassembler, Reassembly, ReassemblyLimits, icmp_too_big};
use crate::ip::{self, proto};
use crate::sa::{
    Direction, InboundSa, LifetimeState, Mode, OutboundSa, Protocol, SaConfig, SaCounters, SaError,
    SaKey, TunnelId,
};
use crate::sad::Sad;
use crate::selector::FlowKey;
use crate::spd::{LookupCache, PolicyAction, Spd};
use crate::{ah, udp_encap};

/// Engine settings.
#[derive(Debug, Clone)]
pub struct EngineConfig {
    /// The tunnel whose packets are classified by the SPD (policy-based VPNs); packets
    /// from every other tunnel use the SA bound to that tunnel (route-based VPNs).
    pub policy_tunnel: Option<TunnelId>,
    /// Limits of the outer-fragment reassembly buffer.
    pub reassembly: ReassemblyLimits,
    /// When an outbound SA has fewer than this many reserved sequence numbers left, the
    /// engine reports [`EngineEvent::ReservationLow`] (cluster mode).
    pub reservation_low_water: u64,
    /// Events kept when nobody polls; older ones are dropped first.
    pub max_events: usize,
    /// The redundancy groups' forwarding fences, shared by every worker of a
    /// dataplane; consulted for SAs that belong to a group.
    pub fences: Arc<Fences>,
}

impl Default for EngineConfig {
    fn default() -> Self {
        Self {
            policy_tunnel: None,
            reassembly: ReassemblyLimits::default(),
            reservation_low_water: 4096,
            max_events: 1024,
            fences: Arc::new(Fences::new()),
        }
    }
}

/// Something the control plane must act on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EngineEvent {
    /// A soft volume lifetime passed: start a rekey.
    SoftLifetime(SaKey),
    /// A hard volume lifetime passed: the SA carries no more traffic.
    HardLifetime(SaKey),
    /// The sequence number space is used up: the SA must be rekeyed (RFC 4303 §3.3.3).
    RekeyRequired(SaKey),
    /// The cluster's sequence reservation is running out.
    ReservationLow {
        /// The SA.
        key: SaKey,
        /// Last sequence number sent.
        seq: u64,
        /// Current reservation.
        limit: u64,
    },
    /// Traffic for a tunnel (or policy) without an outbound SA: the control plane may
    /// negotiate one (Junos `establish-tunnels on-traffic`, an acquire in PF_KEY
    /// terms). Raised at most once per [`ACQUIRE_INTERVAL`] per binding and engine.
    Acquire(TunnelId),
}

/// How often a binding without an SA raises [`EngineEvent::Acquire`] again while its
/// traffic keeps arriving: often enough to retry a negotiation that failed, rarely
/// enough not to flood the control plane.
pub const ACQUIRE_INTERVAL: std::time::Duration = std::time::Duration::from_secs(1);

/// What to do with a packet after [`Engine::outbound`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outbound {
    /// The buffer holds a complete outer IP packet for `dst`.
    Transmit {
        /// Next hop of the outer packet (the peer).
        dst: IpAddr,
    },
    /// The outer packet was fragmented: call [`Engine::poll_fragment`] `count` times.
    Fragmented {
        /// Number of fragments.
        count: usize,
    },
    /// The buffer now holds an ICMP error for the sender: write it back to the tunnel.
    ToTunnel,
    /// A bypass policy matched: the packet is not to be protected. Where it may go in
    /// the clear is the caller's decision; the worker drops it
    /// ([`DropReason::PolicyBypass`]), since the kernel routed it into the policy tunnel
    /// and would route it there again.
    Bypass,
    /// Dropped and counted.
    Dropped(DropReason),
}

/// How to send an ESP-in-UDP packet through a UDP socket (from [`Engine::outbound_udp`]):
/// the fields of the outer IP and UDP headers [`Engine::outbound`] would have written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UdpTransmit {
    /// Our address and UDP port: the SA's local address and encapsulation port.
    pub src: SocketAddr,
    /// The peer's address and UDP port.
    pub dst: SocketAddr,
    /// Outer TOS / traffic class: DSCP (copied from the inner packet or zero, per the
    /// SA) and ECN (RFC 6040 normal mode).
    pub tos: u8,
    /// Outer TTL / hop limit.
    pub ttl: u8,
    /// Outer IPv4 DF bit under the SA's df-bit policy; always false for IPv6.
    pub df: bool,
    /// Outer IPv4 identification the complete packet would carry (for
    /// [`UdpTransmit::push_headers`]; a UDP socket lets the kernel choose).
    pub id: u16,
}

impl UdpTransmit {
    /// Turns the ESP packet in `pkt` into the complete outer packet
    /// [`Engine::outbound`] would have built (IP and UDP headers in front), for a raw
    /// socket when the UDP socket cannot send it.
    pub fn push_headers(&self, pkt: &mut PacketBuf) -> Result<(), DropReason> {
        let h = ip::OuterHeader {
            src: self.src.ip(),
            dst: self.dst.ip(),
            tos: self.tos,
            ttl: self.ttl,
            protocol: proto::UDP,
            df: self.df,
            id: self.id,
        };
        esp::push_udp_headers(pkt, &h, self.src.port(), self.dst.port())
    }
}

/// What to do with a packet after [`Engine::outbound_udp`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OutboundUdp {
    /// The buffer holds an ESP packet (SPI through ICV): send it as the payload of one
    /// UDP datagram as described.
    Payload(UdpTransmit),
    /// Anything else, exactly as [`Engine::outbound`] returns it.
    Packet(Outbound),
}

/// What to do with a packet after an inbound call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Inbound {
    /// The buffer holds the inner packet for tunnel `tunnel`.
    Deliver {
        /// Binding of the SA that carried it.
        tunnel: TunnelId,
    },
    /// The buffer holds an IKE message (non-ESP marker removed).
    Ike,
    /// A NAT-keepalive (RFC 3948 §2.3): nothing to do.
    Keepalive,
    /// A fragment was stored for reassembly.
    Pending,
    /// An authenticated dummy packet (RFC 4303 §2.6), discarded.
    Dummy,
    /// Dropped and counted.
    Dropped(DropReason),
}

/// Addresses of a datagram received on the UDP encapsulation port.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UdpMeta {
    /// Sender (peer address and port, after any NAT).
    pub src: SocketAddr,
    /// Our address and port it was sent to.
    pub dst: SocketAddr,
    /// ECN bits of the outer IP header (0 if unknown).
    pub ecn: u8,
}

/// Errors from control operations.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EngineError {
    /// The SA could not be built.
    #[error(transparent)]
    Sa(#[from] SaError),
}

/// Counters of one installed SA.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SaStats {
    /// The SA.
    pub key: SaKey,
    /// Its binding.
    pub binding: TunnelId,
    /// Traffic and drop counters.
    pub counters: SaCounters,
    /// Outbound: last sequence number sent. Inbound: highest accepted.
    pub seq: u64,
}

/// Where one SA's sequence numbers stand: what a cluster replicates so that the node
/// taking over installs the SA with `initial_seq` above it (see [`SaConfig::initial_seq`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SeqMark {
    /// The SA; its direction says what `seq` is.
    pub key: SaKey,
    /// Inbound: the highest authenticated sequence number accepted, all 64 bits (with
    /// ESN, the inferred high half included), or the installed `initial_seq` before the
    /// first packet. Outbound: the last sequence number taken (numbers are taken before
    /// anything can fail, so none above it was ever sent), or `initial_seq`.
    pub seq: u64,
}

/// A snapshot of an engine's counters.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EngineStats {
    /// Per-SA counters.
    pub sas: Vec<SaStats>,
    /// Drops by reason, over all SAs and those not attributable to one.
    pub drops: DropCounters,
}

/// The packet engine of one worker.
#[derive(Debug)]
pub struct Engine {
    config: EngineConfig,
    sad: Sad,
    /// Shared with the other workers: the dataplane publishes one SPD to all of them.
    spd: Arc<Spd>,
    /// The last SPD match, so that the worker's routing lookup
    /// ([`Engine::outbound_binding`]) and the engine's own cost one lookup per flow burst.
    spd_cache: LookupCache,
    drops: DropCounters,
    events: VecDeque<EngineEvent>,
    fragmenter: Fragmenter,
    fragments: Vec<PacketBuf>,
    fragments_ready: usize,
    fragments_taken: usize,
    fragment_dst: Option<IpAddr>,
    reassembler: Reassembler,
    reassembled: PacketBuf,
    scratch: PacketBuf,
    /// Groups whose SAs carried packets since [`Engine::take_groups`] last ran.
    groups: GroupSet,
    /// When each binding without an SA last raised [`EngineEvent::Acquire`]; a handful
    /// of entries (the tunnels configured on-traffic and down).
    acquired: Vec<(TunnelId, Instant)>,
}

impl Engine {
    /// A worker's engine with no SAs and an empty SPD.
    pub fn new(config: EngineConfig) -> Self {
        Self {
            reassembler: Reassembler::new(config.reassembly.clone()),
            config,
            sad: Sad::default(),
            spd: Arc::new(Spd::default()),
            spd_cache: LookupCache::default(),
            drops: DropCounters::default(),
            events: VecDeque::new(),
            // A random first identification, so a restarted worker does not reuse the
            // identifications of fragments still in flight at the peer.
            fragmenter: Fragmenter::new(rand_core::RngCore::next_u32(&mut rand_core::OsRng)),
            fragments: Vec::new(),
            fragments_ready: 0,
            fragments_taken: 0,
            fragment_dst: None,
            reassembled: PacketBuf::default(),
            scratch: PacketBuf::default(),
            groups: GroupSet::default(),
            acquired: Vec::new(),
        }
    }

    /// The redundancy groups whose SAs protected or accepted a packet since the last
    /// call: before sending what a batch produced, the caller checks their fences
    /// again, since one may have passed (or been moved earlier) meanwhile.
    pub fn take_groups(&mut self) -> GroupSet {
        std::mem::take(&mut self.groups)
    }

    /// Installs an SA (replacing one with the same key).
    pub fn install_sa(&mut self, config: SaConfig) -> Result<(), EngineError> {
        if config.direction == Direction::Outbound {
            // Once this SA is gone, its binding's next packet acquires at once.
            self.acquired.retain(|(b, _)| *b != config.binding);
        }
        match config.direction {
            Direction::Inbound => self.sad.insert_inbound(InboundSa::new(config)?),
            Direction::Outbound => self.sad.insert_outbound(OutboundSa::new(config)?),
        }
        Ok(())
    }

    /// Removes an SA; true if it was installed.
    pub fn remove_sa(&mut self, key: &SaKey) -> bool {
        self.sad.remove(key)
    }

    /// Raises the highest sequence number an outbound SA may send (the cluster granted a
    /// new reservation). Lowering is refused: a granted number may already be in flight.
    pub fn extend_reservation(&mut self, key: &SaKey, limit: u64) -> bool {
        match self.sad.outbound_mut(key) {
            Some(sa) if limit >= sa.seq_limit => {
                sa.seq_limit = limit;
                true
            }
            _ => false,
        }
    }

    /// Replaces the security policy database (used for packets of
    /// [`EngineConfig::policy_tunnel`]). Takes an `Arc` so that the dataplane hands one
    /// published SPD to every worker without copying it.
    pub fn set_spd(&mut self, spd: impl Into<Arc<Spd>>) {
        self.spd = spd.into();
        self.spd_cache.clear();
    }

    /// The SPD in use.
    pub fn spd(&self) -> &Arc<Spd> {
        &self.spd
    }

    /// The binding whose outbound SA would protect `pkt`, read from `tunnel`: the
    /// tunnel itself for a route-based tunnel; for the policy tunnel the id of the
    /// `protect` policy that selects it. `None` when no SA can be involved (a
    /// bypass, discard or no policy matched, or the packet does not parse): the engine
    /// decides such packets wherever they are. A worker uses it to hand a packet to the
    /// anchor of its SA before [`Engine::outbound`].
    pub fn outbound_binding(&mut self, pkt: &[u8], tunnel: TunnelId) -> Option<TunnelId> {
        if self.config.policy_tunnel != Some(tunnel) {
            return Some(tunnel);
        }
        let flow = FlowKey::from_packet(pkt).ok()?;
        match self.spd.lookup_cached(&mut self.spd_cache, &flow)? {
            PolicyAction::Protect(id) => Some(id),
            PolicyAction::Bypass | PolicyAction::Discard => None,
        }
    }

    /// Number of installed SAs.
    pub fn sa_count(&self) -> usize {
        self.sad.len()
    }

    /// A snapshot of the counters.
    pub fn stats(&self) -> EngineStats {
        let outbound = self.sad.outbound().map(|sa| SaStats {
            key: sa.common.config.key(),
            binding: sa.common.config.binding,
            counters: sa.common.counters,
            seq: sa.seq,
        });
        let inbound = self.sad.inbound().map(|sa| SaStats {
            key: sa.common.config.key(),
            binding: sa.common.config.binding,
            counters: sa.common.counters,
            seq: sa.replay.highest(),
        });
        EngineStats {
            sas: outbound.chain(inbound).collect(),
            drops: self.drops.clone(),
        }
    }

    /// The sequence number marks of every installed SA, both directions. Cheaper than
    /// [`Engine::stats`] (no counters), for replication every few milliseconds.
    pub fn seq_marks(&self) -> Vec<SeqMark> {
        let outbound = self.sad.outbound().map(|sa| SeqMark {
            key: sa.common.config.key(),
            seq: sa.seq,
        });
        let inbound = self.sad.inbound().map(|sa| SeqMark {
            key: sa.common.config.key(),
            seq: sa.replay.highest(),
        });
        outbound.chain(inbound).collect()
    }

    /// The next event for the control plane.
    pub fn poll_event(&mut self) -> Option<EngineEvent> {
        self.events.pop_front()
    }

    fn event(&mut self, e: EngineEvent) {
        if self.events.len() >= self.config.max_events {
            self.events.pop_front();
        }
        self.events.push_back(e);
    }

    /// Raises [`EngineEvent::Acquire`] for `binding` unless it did less than
    /// [`ACQUIRE_INTERVAL`] ago.
    fn acquire(&mut self, binding: TunnelId, now: Instant) {
        match self.acquired.iter_mut().find(|(b, _)| *b == binding) {
            Some((_, at)) if now.saturating_duration_since(*at) < ACQUIRE_INTERVAL => return,
            Some((_, at)) => *at = now,
            None => self.acquired.push((binding, now)),
        }
        self.event(EngineEvent::Acquire(binding));
    }

    fn drop_out(&mut self, reason: DropReason) -> Outbound {
        self.drops.count(reason);
        Outbound::Dropped(reason)
    }

    fn drop_in(&mut self, reason: DropReason) -> Inbound {
        self.drops.count(reason);
        Inbound::Dropped(reason)
    }

    /// Protects an inner IP packet read from `tunnel`.
    pub fn outbound(&mut self, now: Instant, pkt: &mut PacketBuf, tunnel: TunnelId) -> Outbound {
        match self.outbound_inner(now, pkt, tunnel, None) {
            Err(o) => o,
            // Only produced when a socket predicate is given.
            Ok(t) => Outbound::Transmit { dst: t.dst.ip() },
        }
    }

    /// [`Engine::outbound`] for a caller that sends ESP in UDP through UDP sockets (with
    /// GSO) rather than as complete IP packets. When the packet's SA is a tunnel-mode ESP
    /// SA with UDP encapsulation, the packet needs no outer fragmentation, and
    /// `has_socket(local)` says the caller can send from the SA's local address and UDP
    /// port, the buffer ends up holding only the ESP packet and the outer header fields
    /// come back as [`OutboundUdp::Payload`]. Every other packet is handled exactly as
    /// by [`Engine::outbound`]. Policy, selectors, PMTU, sequence numbers, lifetimes,
    /// events and counters are the same either way.
    pub fn outbound_udp(
        &mut self,
        now: Instant,
        pkt: &mut PacketBuf,
        tunnel: TunnelId,
        has_socket: impl Fn(SocketAddr) -> bool,
    ) -> OutboundUdp {
        match self.outbound_inner(now, pkt, tunnel, Some(&has_socket)) {
            Ok(t) => OutboundUdp::Payload(t),
            Err(o) => OutboundUdp::Packet(o),
        }
    }

    /// The outbound path; `Ok` only for the UDP payload case.
    fn outbound_inner(
        &mut self,
        now: Instant,
        pkt: &mut PacketBuf,
        tunnel: TunnelId,
        udp_socket: Option<&dyn Fn(SocketAddr) -> bool>,
    ) -> Result<UdpTransmit, Outbound> {
        let Some(inner) = ip::inner_info(pkt.data()) else {
            return Err(self.drop_out(DropReason::BadIpHeader));
        };
        if inner.total_len > pkt.len() {
            return Err(self.drop_out(DropReason::Truncated));
        }
        pkt.truncate(inner.total_len);

        let binding = if self.config.policy_tunnel == Some(tunnel) {
            let Ok(flow) = FlowKey::from_packet(pkt.data()) else {
                return Err(self.drop_out(DropReason::BadIpHeader));
            };
            match self.spd.lookup_cached(&mut self.spd_cache, &flow) {
                Some(PolicyAction::Protect(id)) => id,
                Some(PolicyAction::Bypass) => return Err(Outbound::Bypass),
                Some(PolicyAction::Discard) => return Err(self.drop_out(DropReason::PolicyDiscard)),
                None => return Err(self.drop_out(DropReason::NoPolicy)),
            }
        } else {
            tunnel
        };

        let Some(sa) = self.sad.outbound_for(binding) else {
            if needs_peer(pkt.data()) {
                self.acquire(binding, now);
            }
            return Err(self.drop_out(DropReason::NoOutboundSa));
        };
        if !admit_group(
            &self.config.fences,
            &mut self.groups,
            sa.common.config.group,
            now,
        ) {
            return Err(self.drop_out(DropReason::Fenced));
        }
        if !sa.common.config.selectors.is_empty() {
            let allowed = FlowKey::from_packet(pkt.data())
                .is_ok_and(|flow| sa.common.selectors_allow(&flow, false));
            if !allowed {
                sa.common.counters.selector_drops += 1;
                return Err(self.drop_out(DropReason::SelectorMismatch));
            }
        }
        if sa.common.lifetime_state == LifetimeState::Hard {
            sa.common.counters.limit_drops += 1;
            return Err(self.drop_out(DropReason::LifetimeExpired));
        }

        let inner_len = pkt.len();
        let mtu = usize::from(sa.common.config.path_mtu);
        let (overhead, room) = match sa.common.config.protocol {
            Protocol::Esp => (
                esp::overhead(sa, inner_len),
                esp::max_payload(sa, mtu).unwrap_or(0),
            ),
            Protocol::Ah => {
                let o = ah::overhead(sa);
                (o, mtu.saturating_sub(o))
            }
        };
        let mut fragment = false;
        if inner_len + overhead > mtu {
            let outer_v4 = sa.common.config.remote.is_ipv4();
            let outer_df = outer_v4 && esp::outer_df(sa.common.config.df_bit, &inner);
            let min_inner_mtu = if inner.version == 4 { 68 } else { 1280 };
            if inner.df && room >= min_inner_mtu || outer_df {
                let from = sa.common.config.local;
                return Err(self.too_big(pkt, room, from, inner.version));
            }
            fragment = true;
        }

        let key = sa.common.config.key();
        let cfg = &sa.common.config;
        let udp_ports = cfg
            .udp_encap
            .map_or((0, 0), |e| (e.local_port, e.remote_port));
        let udp_payload = !fragment
            && cfg.protocol == Protocol::Esp
            && matches!(cfg.mode, Mode::Tunnel)
            && cfg.udp_encap.is_some()
            && udp_socket.is_some_and(|has| has(SocketAddr::new(cfg.local, udp_ports.0)));
        let result = match sa.common.config.protocol {
            Protocol::Esp if udp_payload => esp::encapsulate_udp_payload(sa, pkt, &inner).map(Some),
            Protocol::Esp => esp::encapsulate(sa, pkt, &inner).map(|()| None),
            Protocol::Ah => ah::encapsulate(sa, pkt, &inner).map(|()| None),
        };
        let outer = match result {
            Ok(outer) => outer,
            Err(reason) => {
                if reason == DropReason::SequenceExhausted {
                    sa.common.counters.limit_drops += 1;
                    self.event(EngineEvent::RekeyRequired(key));
                } else if reason == DropReason::SequenceNotReserved {
                    sa.common.counters.limit_drops += 1;
                }
                return Err(self.drop_out(reason));
            }
        };
        let dst = sa.common.config.remote;
        let lifetime = sa.common.account(inner_len);
        let low = (sa.seq_limit != u64::MAX
            && sa.seq_limit.saturating_sub(sa.seq) == self.config.reservation_low_water)
            .then_some((sa.seq, sa.seq_limit));
        self.lifetime_event(key, lifetime);
        if let Some((seq, limit)) = low {
            self.event(EngineEvent::ReservationLow { key, seq, limit });
        }

        if fragment {
            return Err(self.fragment(pkt, mtu, dst));
        }
        match outer {
            Some(h) => Ok(UdpTransmit {
                src: SocketAddr::new(h.src, udp_ports.0),
                dst: SocketAddr::new(h.dst, udp_ports.1),
                tos: h.tos,
                ttl: h.ttl,
                df: h.df && h.dst.is_ipv4(),
                id: h.id,
            }),
            None => Err(Outbound::Transmit { dst }),
        }
    }

    fn lifetime_event(&mut self, key: SaKey, state: Option<LifetimeState>) {
        match state {
            Some(LifetimeState::Soft) => self.event(EngineEvent::SoftLifetime(key)),
            Some(LifetimeState::Hard) => self.event(EngineEvent::HardLifetime(key)),
            Some(LifetimeState::Fresh) | None => {}
        }
    }

    /// Replaces `pkt` with an ICMP "fragmentation needed" / "packet too big" for its
    /// sender (RFC 4301 §8.2.1 / RFC 4213 §3.2), or drops it if no error may be sent.
    fn too_big(&mut self, pkt: &mut PacketBuf, mtu: usize, from: IpAddr, version: u8) -> Outbound {
        self.drops.count(DropReason::TooBig);
        let from_matches = (version == 4) == from.is_ipv4();
        let from = if from_matches {
            from
        } else {
            // The error goes into the tunnel's inner family; without an address of that
            // family the unspecified one would be rejected by hosts, so say nothing.
            return Outbound::Dropped(DropReason::TooBig);
        };
        let mtu = u32::try_from(mtu).unwrap_or(u32::MAX);
        match icmp_too_big(pkt.data(), mtu, from, &mut self.scratch) {
            Ok(()) => {
                std::mem::swap(pkt, &mut self.scratch);
                Outbound::ToTunnel
            }
            Err(_) => Outbound::Dropped(DropReason::TooBig),
        }
    }

    fn fragment(&mut self, pkt: &PacketBuf, mtu: usize, dst: IpAddr) -> Outbound {
        let fragments = &mut self.fragments;
        let mut n = 0;
        let result = self.fragmenter.fragment(pkt.data(), mtu, |frag| {
            if fragments.len() <= n {
                fragments.push(PacketBuf::default());
            }
            if fragments[n].set_contents(0, frag).is_ok() {
                n += 1;
            }
        });
        match result {
            Ok(_) => {
                self.fragments_ready = n;
                self.fragments_taken = 0;
                self.fragment_dst = Some(dst);
                Outbound::Fragmented { count: n }
            }
            Err(_) => self.drop_out(DropReason::TooBig),
        }
    }

    /// Moves the next pending outer fragment into `out` (swapping buffers) and returns
    /// its destination.
    pub fn poll_fragment(&mut self, out: &mut PacketBuf) -> Option<IpAddr> {
        if self.fragments_taken >= self.fragments_ready {
            return None;
        }
        std::mem::swap(out, &mut self.fragments[self.fragments_taken]);
        self.fragments_taken += 1;
        self.fragment_dst
    }

    /// A datagram received on the ESP-in-UDP port (RFC 3948): ESP, IKE behind the
    /// non-ESP marker, or a NAT-keepalive.
    pub fn inbound_udp(&mut self, now: Instant, pkt: &mut PacketBuf, meta: UdpMeta) -> Inbound {
        match udp_encap::classify(pkt.data()) {
            udp_encap::Kind::Keepalive => Inbound::Keepalive,
            udp_encap::Kind::Ike => match pkt.trim_front(udp_encap::NON_ESP_MARKER_LEN) {
                Ok(()) => Inbound::Ike,
                Err(_) => self.drop_in(DropReason::Truncated),
            },
            udp_encap::Kind::Esp => {
                let outer = OuterContext {
                    tos: meta.ecn,
                    ip_header: None,
                    src: meta.src.ip(),
                    dst: meta.dst.ip(),
                };
                self.inbound_esp(now, pkt, meta.dst.ip(), outer)
            }
            udp_encap::Kind::Invalid => self.drop_in(DropReason::Truncated),
        }
    }

    /// A full IP packet carrying ESP or AH, as raw sockets deliver them. Fragments are
    /// reassembled first.
    pub fn inbound_ip(&mut self, now: Instant, pkt: &mut PacketBuf) -> Inbound {
        match self
            .reassembler
            .push(now, pkt.data(), &mut self.reassembled)
        {
            Ok(Reassembly::NotFragment) => {}
            Ok(Reassembly::Pending) => return Inbound::Pending,
            Ok(Reassembly::Complete) => std::mem::swap(pkt, &mut self.reassembled),
            Err(e) => return self.drop_in(e.drop_reason()),
        }
        let Some((hlen, protocol, src, dst, tos)) = outer_fields(pkt.data()) else {
            return self.drop_in(DropReason::BadIpHeader);
        };
        match protocol {
            proto::ESP => {
                let mut hdr = [0u8; 128];
                let keep = hlen.min(hdr.len());
                hdr[..keep].copy_from_slice(&pkt.data()[..keep]);
                if pkt.trim_front(hlen).is_err() {
                    return self.drop_in(DropReason::Truncated);
                }
                let outer = OuterContext {
                    tos,
                    ip_header: Some(&hdr[..keep]),
                    src,
                    dst,
                };
                self.inbound_esp(now, pkt, dst, outer)
            }
            proto::AH => self.inbound_ah(now, pkt, dst, hlen),
            _ => self.drop_in(DropReason::UnsupportedProtocol),
        }
    }

    fn inbound_esp(
        &mut self,
        now: Instant,
        pkt: &mut PacketBuf,
        dst: IpAddr,
        outer: OuterContext<'_>,
    ) -> Inbound {
        let Some(spi) = pkt
            .data()
            .get(..4)
            .map(|b| u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
        else {
            return self.drop_in(DropReason::Truncated);
        };
        let gate = (&*self.config.fences, &mut self.groups);
        let sa = match admitted_inbound(&mut self.sad, gate, (dst, Protocol::Esp, spi), now) {
            Ok(sa) => sa,
            Err(reason) => return self.drop_in(reason),
        };
        let result = esp::decapsulate(sa, pkt, outer).and_then(|d| match d {
            Decapsulated::Dummy => Ok(None),
            Decapsulated::Packet => admit(sa, pkt).map(Some),
        });
        self.finish_inbound(result)
    }

    fn inbound_ah(
        &mut self,
        now: Instant,
        pkt: &mut PacketBuf,
        dst: IpAddr,
        hlen: usize,
    ) -> Inbound {
        let Some(spi) = pkt
            .data()
            .get(hlen + 4..hlen + 8)
            .map(|b| u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
        else {
            return self.drop_in(DropReason::Truncated);
        };
        let gate = (&*self.config.fences, &mut self.groups);
        let sa = match admitted_inbound(&mut self.sad, gate, (dst, Protocol::Ah, spi), now) {
            Ok(sa) => sa,
            Err(reason) => return self.drop_in(reason),
        };
        let result = ah::decapsulate(sa, pkt, hlen).and_then(|()| admit(sa, pkt).map(Some));
        self.finish_inbound(result)
    }

    fn finish_inbound(&mut self, result: Result<Option<Admitted>, DropReason>) -> Inbound {
        match result {
            Ok(None) => Inbound::Dummy,
            Ok(Some(a)) => {
                self.lifetime_event(a.key, a.lifetime);
                Inbound::Deliver { tunnel: a.tunnel }
            }
            Err(reason) => self.drop_in(reason),
        }
    }
}

/// The fence check of an SA's packet, made before it takes a sequence number or moves
/// a replay window: false if the SA's redundancy group is fenced at `now`; otherwise
/// the group is noted for the check before the send.
#[inline]
fn admit_group(fences: &Fences, groups: &mut GroupSet, group: Option<Group>, now: Instant) -> bool {
    let Some(group) = group else {
        return true;
    };
    if fences.passed(group, now) {
        return false;
    }
    groups.insert(group);
    true
}

/// Whether an inner packet is traffic for the peer's side, worth negotiating a tunnel
/// for: not the link-local chatter a kernel sends on every new interface (IPv6 router
/// solicitations and MLD reports on `st0`), nor multicast or broadcast.
fn needs_peer(pkt: &[u8]) -> bool {
    let Some((src, dst)) = ip::addresses(pkt) else {
        return false;
    };
    let local_only = |a: IpAddr| match a {
        IpAddr::V4(a) => a.is_link_local() || a.is_multicast() || a.is_broadcast(),
        IpAddr::V6(a) => a.is_unicast_link_local() || a.is_multicast() || a.is_unspecified(),
    };
    !local_only(src) && !local_only(dst)
}

/// The inbound SA a packet names, unless none is installed or its group is fenced.
fn admitted_inbound<'a>(
    sad: &'a mut Sad,
    (fences, groups): (&Fences, &mut GroupSet),
    (dst, protocol, spi): (IpAddr, Protocol, u32),
    now: Instant,
) -> Result<&'a mut InboundSa, DropReason> {
    let sa = sad
        .inbound_mut(dst, protocol, spi)
        .ok_or(DropReason::UnknownSpi)?;
    if admit_group(fences, groups, sa.common.config.group, now) {
        Ok(sa)
    } else {
        Err(DropReason::Fenced)
    }
}

/// A decapsulated packet the SA accepted.
struct Admitted {
    tunnel: TunnelId,
    key: SaKey,
    lifetime: Option<LifetimeState>,
}

/// Selector check and accounting for a decapsulated packet.
fn admit(sa: &mut InboundSa, pkt: &PacketBuf) -> Result<Admitted, DropReason> {
    if !sa.common.config.selectors.is_empty() {
        let allowed = FlowKey::from_packet(pkt.data())
            .is_ok_and(|flow| sa.common.selectors_allow(&flow, true));
        if !allowed {
            sa.common.counters.selector_drops += 1;
            return Err(DropReason::SelectorMismatch);
        }
    }
    if sa.common.lifetime_state == LifetimeState::Hard {
        sa.common.counters.limit_drops += 1;
        return Err(DropReason::LifetimeExpired);
    }
    Ok(Admitted {
        tunnel: sa.common.config.binding,
        key: sa.common.config.key(),
        lifetime: sa.common.account(pkt.len()),
    })
}

/// Header length, protocol (after IPv6 extension headers that precede ESP/AH),
/// addresses and TOS of an outer IP packet.
fn outer_fields(pkt: &[u8]) -> Option<(usize, u8, IpAddr, IpAddr, u8)> {
    let info = ip::inner_info(pkt)?;
    let (src, dst) = ip::addresses(pkt)?;
    if info.version == 4 {
        let hlen = usize::from(pkt[0] & 0x0f) * 4;
        if hlen < ip::IPV4_HEADER_LEN || hlen > pkt.len() {
            return None;
        }
        return Some((hlen, pkt[9], src, dst, info.tos));
    }
    // Hop-by-hop, routing and destination options may precede ESP/AH (RFC 4303 §3.1.1).
    let mut next = pkt[6];
    let mut off = ip::IPV6_HEADER_LEN;
    while matches!(next, 0 | 43 | 60) {
        let len = (usize::from(*pkt.get(off + 1)?) + 1) * 8;
        next = *pkt.get(off)?;
        off += len;
    }
    (off <= pkt.len()).then_some((off, next, src, dst, info.tos))
}
