//! Security associations: what the control plane installs, and the per-packet state the
//! engine keeps for each.
//!
//! An SA is split the way VPP splits it: [`SaConfig`] is the control plane's description
//! (keys, addresses, options), and [`OutboundSa`]/[`InboundSa`] are the hot runtime state
//! built from it once (keyed ciphers, sequence counter, replay window, counters), owned by
//! exactly one worker.

use std::net::IpAddr;

use zeroize::Zeroizing;

use crate::crypto::{CryptoError, EncrAlg, EspCipher, Integ, IntegAlg};
use crate::replay::{ReplayError, ReplayWindow};
use crate::selector::{FlowKey, Selector};

/// Which binding (route-based `st0.N` unit, or a policy's protect id) an SA serves.
pub type TunnelId = u32;

/// IPsec protocol, by IP protocol number.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Protocol {
    /// Encapsulating Security Payload (RFC 4303).
    Esp,
    /// Authentication Header (RFC 4302).
    Ah,
}

impl Protocol {
    /// IP protocol number.
    pub fn number(self) -> u8 {
        match self {
            Protocol::Esp => 50,
            Protocol::Ah => 51,
        }
    }
}

/// Direction of an SA relative to this gateway.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Direction {
    /// Decapsulates what the peer sends.
    Inbound,
    /// Encapsulates what we send.
    Outbound,
}

/// IPsec mode.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// A whole inner IP packet inside a new outer header (gateway to gateway).
    Tunnel,
    /// The payload of the original IP packet protected in place (host to host).
    Transport,
}

/// What the outer IPv4 header's DF bit becomes (Junos `df-bit clear|copy|set`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum DfBit {
    /// Never set DF: the outer packet may be fragmented on the way.
    #[default]
    Clear,
    /// Copy DF from the inner IPv4 header (IPv6 inner packets count as DF set).
    Copy,
    /// Always set DF.
    Set,
}

/// ESP-in-UDP encapsulation (RFC 3948) ports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UdpEncap {
    /// Our UDP port (4500 unless a NAT or configuration says otherwise).
    pub local_port: u16,
    /// The peer's UDP port as seen by us (NAT may have changed it).
    pub remote_port: u16,
}

/// Soft and hard volume lifetimes. The seconds part is the control plane's timer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Lifetime {
    /// Bytes (of protected payload) after which a rekey should start.
    pub soft_bytes: Option<u64>,
    /// Bytes after which the SA must no longer be used.
    pub hard_bytes: Option<u64>,
    /// Packets after which a rekey should start.
    pub soft_packets: Option<u64>,
    /// Packets after which the SA must no longer be used.
    pub hard_packets: Option<u64>,
}

impl Lifetime {
    /// No volume limits.
    pub const UNLIMITED: Lifetime = Lifetime {
        soft_bytes: None,
        hard_bytes: None,
        soft_packets: None,
        hard_packets: None,
    };
}

impl Default for Lifetime {
    fn default() -> Self {
        Self::UNLIMITED
    }
}

/// Identity of an installed SA: RFC 4301's (destination, protocol, SPI) triplet plus the
/// direction, since our outbound SPIs are chosen by peers and may equal an inbound one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct SaKey {
    /// Inbound or outbound.
    pub direction: Direction,
    /// Destination address of the protected (outer) packets.
    pub dst: IpAddr,
    /// ESP or AH.
    pub protocol: Protocol,
    /// Security Parameter Index.
    pub spi: u32,
}

/// Everything the control plane says about one SA.
#[derive(Clone)]
pub struct SaConfig {
    /// Security Parameter Index (chosen by the receiver of the SA).
    pub spi: u32,
    /// ESP or AH.
    pub protocol: Protocol,
    /// Inbound or outbound.
    pub direction: Direction,
    /// Tunnel or transport.
    pub mode: Mode,
    /// Our outer address.
    pub local: IpAddr,
    /// The peer's outer address.
    pub remote: IpAddr,
    /// Encryption (ESP only; AH ignores it).
    pub encr: EncrAlg,
    /// Encryption key (with the 4-byte salt for AEADs).
    pub encr_key: Zeroizing<Vec<u8>>,
    /// Integrity algorithm (`None` with an AEAD).
    pub integ: IntegAlg,
    /// Integrity key.
    pub integ_key: Zeroizing<Vec<u8>>,
    /// Extended (64-bit) sequence numbers.
    pub esn: bool,
    /// Anti-replay window in packets (power of two 64..=8192), 0 for `no-anti-replay`.
    pub replay_window: u32,
    /// Volume lifetimes.
    pub lifetime: Lifetime,
    /// ESP in UDP, if negotiated (NAT traversal).
    pub udp_encap: Option<UdpEncap>,
    /// Outer DF bit policy (IPv4 outer only).
    pub df_bit: DfBit,
    /// Copy DSCP from the inner to the outer header (ECN always follows RFC 6040).
    pub copy_dscp: bool,
    /// TTL / hop limit of outer headers.
    pub ttl: u8,
    /// Path MTU towards the peer, for the outer packet.
    pub path_mtu: u16,
    /// The tunnel (`st0.N`) or policy binding this SA serves.
    pub binding: TunnelId,
    /// Inner traffic this SA carries, written from the local side (src = our side).
    /// Empty means any. Inbound packets are checked against the reversed selectors.
    pub selectors: Vec<Selector>,
    /// Outbound: the first sequence number to use is `initial_seq + 1` (a node taking
    /// over starts above the last reserved one). Inbound: the replay window starts above
    /// it.
    pub initial_seq: u64,
    /// Outbound: highest sequence number this node may send (the cluster's committed
    /// reservation); `u64::MAX` for a standalone node.
    pub seq_limit: u64,
    /// Outbound: install behind the binding's current SA instead of in front of it; it
    /// carries traffic once the SAs ahead of it are removed. The responder of a child
    /// rekey uses it so that it never sends on an SA the peer has not installed yet.
    pub standby: bool,
    /// The redundancy group whose lease gates this SA ([`crate::fence`]): a cluster
    /// node forwards nothing on it once that group's fence has passed. `None` (a
    /// standalone node): never fenced.
    pub group: Option<crate::fence::Group>,
}

impl std::fmt::Debug for SaConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SaConfig")
            .field("spi", &format_args!("{:#010x}", self.spi))
            .field("protocol", &self.protocol)
            .field("direction", &self.direction)
            .field("mode", &self.mode)
            .field("local", &self.local)
            .field("remote", &self.remote)
            .field("encr", &self.encr)
            .field("integ", &self.integ)
            .field("esn", &self.esn)
            .field("replay_window", &self.replay_window)
            .field("udp_encap", &self.udp_encap)
            .field("binding", &self.binding)
            .field("group", &self.group)
            .finish_non_exhaustive()
    }
}

impl SaConfig {
    /// A tunnel-mode ESP SA with NULL encryption, no integrity and defaults for every
    /// option; callers set the transform with [`SaConfig::with_encryption`] and
    /// [`SaConfig::with_integrity`] and adjust the public fields.
    pub fn esp_tunnel(direction: Direction, spi: u32, local: IpAddr, remote: IpAddr) -> Self {
        Self {
            spi,
            protocol: Protocol::Esp,
            direction,
            mode: Mode::Tunnel,
            local,
            remote,
            encr: EncrAlg::Null,
            encr_key: Zeroizing::new(Vec::new()),
            integ: IntegAlg::None,
            integ_key: Zeroizing::new(Vec::new()),
            esn: false,
            replay_window: 64,
            lifetime: Lifetime::UNLIMITED,
            udp_encap: None,
            df_bit: DfBit::Clear,
            copy_dscp: true,
            ttl: 64,
            path_mtu: 1500,
            binding: 0,
            selectors: Vec::new(),
            initial_seq: 0,
            seq_limit: u64::MAX,
            standby: false,
            group: None,
        }
    }

    /// Sets the encryption algorithm and key.
    pub fn with_encryption(mut self, encr: EncrAlg, key: &[u8]) -> Self {
        self.encr = encr;
        self.encr_key = Zeroizing::new(key.to_vec());
        self
    }

    /// Sets the integrity algorithm and key.
    pub fn with_integrity(mut self, integ: IntegAlg, key: &[u8]) -> Self {
        self.integ = integ;
        self.integ_key = Zeroizing::new(key.to_vec());
        self
    }

    /// The (destination, protocol, SPI) key under which this SA is installed.
    pub fn key(&self) -> SaKey {
        SaKey {
            direction: self.direction,
            dst: match self.direction {
                Direction::Inbound => self.local,
                Direction::Outbound => self.remote,
            },
            protocol: self.protocol,
            spi: self.spi,
        }
    }
}

/// Errors from installing an SA.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SaError {
    /// Keys or algorithm combination rejected.
    #[error("SA {spi:#010x}: {source}")]
    Crypto {
        spi: u32,
        #[source]
        source: CryptoError,
    },
    /// Bad anti-replay window.
    #[error("SA {spi:#010x}: {source}")]
    Replay {
        spi: u32,
        #[source]
        source: ReplayError,
    },
    /// Addresses of different families.
    #[error("SA {0:#010x}: local and remote addresses are of different IP versions")]
    AddressFamily(u32),
    /// SPI 0 is reserved (RFC 4303 §2.1); 1..=255 are reserved by IANA.
    #[error("SPI {0:#010x} is reserved")]
    ReservedSpi(u32),
    /// Path MTU too small for any packet.
    #[error("SA {spi:#010x}: path MTU {mtu} is below the minimum of {min}")]
    PathMtu { spi: u32, mtu: u16, min: u16 },
}

/// Per-SA counters, as `show security ipsec statistics` reports them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SaCounters {
    /// Packets protected or accepted.
    pub packets: u64,
    /// Inner bytes protected or accepted.
    pub bytes: u64,
    /// Inbound: replayed or too old.
    pub replay_drops: u64,
    /// Inbound: ICV or tag failure.
    pub icv_drops: u64,
    /// Inbound: bad padding, next header or length after decryption.
    pub malformed_drops: u64,
    /// Inbound: decrypted packet outside the traffic selectors.
    pub selector_drops: u64,
    /// Drops because a lifetime or sequence limit was reached.
    pub limit_drops: u64,
}

/// Where an SA stands against its volume lifetime.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LifetimeState {
    /// Below the soft limits.
    Fresh,
    /// Soft limit passed: rekey now (reported once).
    Soft,
    /// Hard limit passed: no more traffic.
    Hard,
}

/// Keyed transform of an SA: ESP cipher suite or AH integrity.
#[derive(Debug)]
#[expect(
    clippy::large_enum_variant,
    reason = "SAs live in place in the SAD; boxing would add a pointer chase per packet"
)]
pub enum SaTransform {
    /// ESP encryption + integrity or AEAD.
    Esp(EspCipher),
    /// AH integrity.
    Ah(Integ),
}

/// Fields shared by both directions' runtime state.
#[derive(Debug)]
pub struct SaCommon {
    /// The installed configuration (keys included, zeroized on drop).
    pub config: SaConfig,
    /// The keyed transform.
    pub transform: SaTransform,
    /// Counters.
    pub counters: SaCounters,
    /// Lifetime state, to report the soft limit once.
    pub lifetime_state: LifetimeState,
}

impl SaCommon {
    fn new(config: SaConfig) -> Result<Self, SaError> {
        let spi = config.spi;
        if spi < 256 {
            return Err(SaError::ReservedSpi(spi));
        }
        if config.local.is_ipv4() != config.remote.is_ipv4() {
            return Err(SaError::AddressFamily(spi));
        }
        let min = if config.local.is_ipv4() { 68 } else { 1280 };
        if config.path_mtu < min {
            return Err(SaError::PathMtu {
                spi,
                mtu: config.path_mtu,
                min,
            });
        }
        let crypto = |source| SaError::Crypto { spi, source };
        let transform = match config.protocol {
            Protocol::Esp => SaTransform::Esp(
                EspCipher::new(
                    config.encr,
                    &config.encr_key,
                    config.integ,
                    &config.integ_key,
                )
                .map_err(crypto)?,
            ),
            Protocol::Ah => {
                SaTransform::Ah(Integ::new(config.integ, &config.integ_key).map_err(crypto)?)
            }
        };
        Ok(Self {
            config,
            transform,
            counters: SaCounters::default(),
            lifetime_state: LifetimeState::Fresh,
        })
    }

    /// Counts one packet of `bytes` and returns the lifetime state if it changed.
    pub fn account(&mut self, bytes: usize) -> Option<LifetimeState> {
        self.counters.packets += 1;
        self.counters.bytes += bytes as u64;
        let lt = &self.config.lifetime;
        let c = &self.counters;
        let over = |limit: Option<u64>, v: u64| limit.is_some_and(|l| v >= l);
        let state = if over(lt.hard_bytes, c.bytes) || over(lt.hard_packets, c.packets) {
            LifetimeState::Hard
        } else if over(lt.soft_bytes, c.bytes) || over(lt.soft_packets, c.packets) {
            LifetimeState::Soft
        } else {
            LifetimeState::Fresh
        };
        (state != self.lifetime_state).then(|| {
            self.lifetime_state = state;
            state
        })
    }

    /// True if inner traffic described by `flow` (in this SA's own direction of
    /// travel) is allowed by its selectors.
    pub fn selectors_allow(&self, flow: &FlowKey, inbound: bool) -> bool {
        self.config.selectors.is_empty()
            || self.config.selectors.iter().any(|s| {
                if inbound {
                    s.reversed().matches(flow)
                } else {
                    s.matches(flow)
                }
            })
    }
}

/// Runtime state of an outbound SA.
#[derive(Debug)]
pub struct OutboundSa {
    /// Configuration, transform and counters.
    pub common: SaCommon,
    /// Last sequence number sent.
    pub seq: u64,
    /// Highest sequence number we may send.
    pub seq_limit: u64,
    /// Identification for outer IPv4 headers.
    pub ip_id: u16,
}

impl OutboundSa {
    /// Builds the runtime state; keys the transform.
    pub fn new(config: SaConfig) -> Result<Self, SaError> {
        let seq = config.initial_seq;
        let seq_limit = config.seq_limit;
        Ok(Self {
            common: SaCommon::new(config)?,
            seq,
            seq_limit,
            ip_id: 0,
        })
    }

    /// The largest sequence number the SA can ever use: 2^32-1 without ESN, 2^64-1 with.
    pub fn max_seq(&self) -> u64 {
        if self.common.config.esn {
            u64::MAX
        } else {
            u64::from(u32::MAX)
        }
    }
}

/// Runtime state of an inbound SA.
#[derive(Debug)]
pub struct InboundSa {
    /// Configuration, transform and counters.
    pub common: SaCommon,
    /// Anti-replay window.
    pub replay: ReplayWindow,
}

impl InboundSa {
    /// Builds the runtime state; keys the transform.
    pub fn new(config: SaConfig) -> Result<Self, SaError> {
        let spi = config.spi;
        let mut replay = ReplayWindow::new(config.replay_window, config.esn)
            .map_err(|source| SaError::Replay { spi, source })?;
        replay.advance_to(config.initial_seq);
        Ok(Self {
            common: SaCommon::new(config)?,
            replay,
        })
    }
}
