//! The resolved configuration: every reference followed, every proposal set expanded,
//! every name turned into the IANA number the protocol crates speak.
//!
//! Nothing in here can be invalid: values exist only once `validate` accepted them. The
//! daemon builds its actors from these structs and never looks at the file again.
//!
//! IKE and IPsec transforms are IANA numbers (RFC 7296 §3.3.2 and the IKEv2 registry),
//! not `ike` or `dataplane` types, because those two crates share no Rust types and
//! `node` is the one place that maps between them. Manual SAs never touch `ike`, so they
//! map straight to [`dataplane::sa::SaConfig`] with [`ManualVpn::sa_pair`].

use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

pub use sa_sync::Member;

use dataplane::crypto::{EncrAlg, IntegAlg};
use dataplane::sa::{DfBit, Direction, Mode, Protocol, SaConfig, TunnelId, UdpEncap};
use dataplane::selector::{IpPrefix, IpRange, Selector};
use subtle::ConstantTimeEq;
use zeroize::Zeroizing;

/// A validated configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// `system.host-name`.
    pub host_name: Option<String>,
    /// IKE gateways, with their policy and proposals resolved.
    pub gateways: Vec<Gateway>,
    /// IKE-keyed VPNs.
    pub vpns: Vec<Vpn>,
    /// Manually keyed VPNs.
    pub manual_vpns: Vec<ManualVpn>,
    /// Security policies in evaluation order (zone pair order, then policy order).
    pub policies: Vec<SecurityPolicy>,
    /// Remote-access address pools.
    pub pools: Vec<Pool>,
    /// `st0` units.
    pub interfaces: Vec<Interface>,
    /// Static routes.
    pub routes: Vec<StaticRoute>,
    /// Listening addresses of the management and metrics services.
    pub services: ServicesConfig,
    /// `[chassis.cluster]`; `None` on a standalone gateway.
    pub cluster: Option<Cluster>,
    /// Redundant Ethernet interfaces (`[interfaces.rethN]`), only with a cluster.
    pub reths: Vec<Reth>,
    /// `security.ike.traceoptions.key-log`: the directory where IKE and ESP keys are
    /// appended for Wireshark (see `runtime::keylog`); `None`: no key log.
    pub key_log: Option<PathBuf>,
    /// `[security.ipsec.vpn-monitor-options]`: how VPNs with `vpn-monitor` probe.
    pub vpn_monitor_options: VpnMonitorOptions,
}

/// How often `vpn-monitor` probes and after how many unanswered probes in a row the
/// VPN is declared down (Junos defaults: every 10 s, 10 probes).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VpnMonitorOptions {
    pub interval: Duration,
    pub threshold: u32,
}

impl Default for VpnMonitorOptions {
    fn default() -> Self {
        Self {
            interval: Duration::from_secs(10),
            threshold: 10,
        }
    }
}

impl Config {
    /// The gateway called `name`.
    pub fn gateway(&self, name: &str) -> Option<&Gateway> {
        self.gateways.iter().find(|g| g.name == name)
    }

    /// The IKE-keyed VPN called `name`.
    pub fn vpn(&self, name: &str) -> Option<&Vpn> {
        self.vpns.iter().find(|v| v.name == name)
    }

    /// The manual VPN called `name`.
    pub fn manual_vpn(&self, name: &str) -> Option<&ManualVpn> {
        self.manual_vpns.iter().find(|v| v.name == name)
    }

    /// The address pool called `name`.
    pub fn pool(&self, name: &str) -> Option<&Pool> {
        self.pools.iter().find(|p| p.name == name)
    }

    /// The reth that carries `address`, if one does.
    pub fn reth_with_address(&self, address: IpAddr) -> Option<&Reth> {
        self.reths
            .iter()
            .find(|r| r.addresses().any(|a| a.address == address))
    }
}

/// An IKE peer (`[security.ike.gateway.NAME]`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Gateway {
    pub name: String,
    pub description: Option<String>,
    /// Who the peer is: fixed addresses (tried in order) or a dial-up identity.
    pub remote: Remote,
    /// Our outer address; `None` lets the routing table choose.
    pub local_address: Option<IpAddr>,
    /// What we send as IDi/IDr; `None` means our outer address (Junos default).
    pub local_id: Option<Identity>,
    /// What the peer must send; `None` accepts any identity that authenticates.
    pub remote_id: Option<Identity>,
    /// In order of preference, from the gateway's IKE policy.
    pub ike_proposals: Vec<IkeProposal>,
    pub auth: Auth,
    /// `None` when `dead-peer-detection` is not configured (we still answer the peer's).
    pub dpd: Option<Dpd>,
    /// NAT keepalive interval (RFC 3948 §2.3).
    pub nat_keepalive: Duration,
    /// False with `no-nat-traversal`.
    pub nat_traversal: bool,
    /// `force-udp-encapsulation` (a vpnd extension, strongSwan's `encap = yes`): claim a
    /// NAT in IKE_SA_INIT so that both ends float to 4500 and carry ESP in UDP, whose
    /// send path batches with UDP GSO; raw ESP goes out one packet per system call.
    pub force_encap: bool,
    pub version: IkeVersion,
    /// The address pool handed to remote-access peers (`aaa.access-profile`).
    pub address_pool: Option<String>,
}

/// The peer side of a gateway.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Remote {
    /// `address = [...]`: the primary first, then backups.
    Static(Vec<IpAddr>),
    /// `dynamic`: any address, identified by its IKE identity (dial-up / remote access).
    Dynamic(IdMatch),
}

/// How a dynamic peer's identity is matched.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdMatch {
    pub identity: Identity,
    pub user_type: IkeUserType,
}

/// Junos `ike-user-type`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum IkeUserType {
    /// One peer with exactly this identity.
    #[default]
    Single,
    /// Many peers, each with its own identity ending in the configured one
    /// (`user@example.net` matches `user-at-hostname = "example.net"`).
    GroupIkeId,
    /// Many peers presenting the same identity.
    SharedIkeId,
}

/// An IKE identity (RFC 7296 §3.5).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Identity {
    Inet(std::net::Ipv4Addr),
    Inet6(std::net::Ipv6Addr),
    Hostname(String),
    UserAtHostname(String),
    DistinguishedName(String),
    KeyId(Vec<u8>),
}

impl Identity {
    /// The IKEv2 ID Type (RFC 7296 §3.5).
    pub fn iana_type(&self) -> u8 {
        match self {
            Identity::Inet(_) => 1,
            Identity::Hostname(_) => 2,
            Identity::UserAtHostname(_) => 3,
            Identity::Inet6(_) => 5,
            Identity::DistinguishedName(_) => 9,
            Identity::KeyId(_) => 11,
        }
    }
}

/// IKE authentication method, by IKEv2 Auth Method number.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthMethod {
    PreSharedKeys,
    RsaSignatures,
    EcdsaSignatures256,
    EcdsaSignatures384,
}

impl AuthMethod {
    /// The IKEv2 Auth Method (RFC 7296 §3.8, RFC 4754).
    pub fn iana(self) -> u8 {
        match self {
            AuthMethod::RsaSignatures => 1,
            AuthMethod::PreSharedKeys => 2,
            AuthMethod::EcdsaSignatures256 => 9,
            AuthMethod::EcdsaSignatures384 => 10,
        }
    }

    /// True for the signature methods, which need a certificate.
    pub fn is_signature(self) -> bool {
        !matches!(self, AuthMethod::PreSharedKeys)
    }
}

/// An encryption transform: IKEv2 Transform Type 1 ID plus the Key Length attribute.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct EncrTransform {
    pub id: u16,
    /// `None` for fixed-length ciphers (3DES, DES, ChaCha20-Poly1305).
    pub key_bits: Option<u16>,
}

impl EncrTransform {
    /// True for AES-GCM and ChaCha20-Poly1305, which carry their own integrity.
    pub fn is_aead(self) -> bool {
        matches!(self.id, 20 | 28)
    }

    /// The dataplane cipher for this transform.
    pub fn encr_alg(self) -> Option<EncrAlg> {
        EncrAlg::from_iana(self.id, self.key_bits)
    }
}

/// One resolved IKE proposal.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IkeProposal {
    /// The configured or predefined proposal's name (`pre-g2-aes128-sha`).
    pub name: String,
    pub description: Option<String>,
    pub auth_method: AuthMethod,
    /// IKEv2 Transform Type 4 ID.
    pub dh_group: u16,
    pub encr: EncrTransform,
    /// IKEv2 Transform Type 2 ID.
    pub prf: u16,
    /// IKEv2 Transform Type 3 ID; `None` with an AEAD.
    pub integ: Option<u16>,
    pub lifetime: Duration,
}

/// IKE authentication material.
#[derive(Clone, PartialEq, Eq)]
pub enum Auth {
    Psk(Psk),
    Certificate(CertificatePaths),
}

impl fmt::Debug for Auth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Auth::Psk(p) => f.debug_tuple("Psk").field(p).finish(),
            Auth::Certificate(c) => f.debug_tuple("Certificate").field(c).finish(),
        }
    }
}

/// A pre-shared key. Zeroed on drop, never printed: config dumps and logs end up in
/// tickets.
#[derive(Clone)]
pub struct Psk(Zeroizing<Vec<u8>>);

impl Psk {
    pub(crate) fn new(bytes: Vec<u8>) -> Self {
        Self(Zeroizing::new(bytes))
    }

    /// The key bytes, for the IKE engine.
    pub fn expose(&self) -> &[u8] {
        &self.0
    }
}

/// Constant time: a reload compares the running key with the new one.
impl PartialEq for Psk {
    fn eq(&self, other: &Self) -> bool {
        bool::from(self.0.as_slice().ct_eq(other.0.as_slice()))
    }
}

impl Eq for Psk {}

impl fmt::Debug for Psk {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Psk(<{} bytes redacted>)", self.0.len())
    }
}

/// Certificate authentication files. Relative paths are resolved against the
/// configuration file's directory by `Config::load`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertificatePaths {
    pub local_certificate: PathBuf,
    pub private_key: PathBuf,
    pub trusted_ca: Vec<PathBuf>,
}

/// Dead peer detection (Junos `dead-peer-detection`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Dpd {
    pub interval: Duration,
    /// Unanswered probes before the peer is declared dead.
    pub threshold: u8,
    pub mode: DpdMode,
}

/// When DPD probes are sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum DpdMode {
    /// Only when we sent traffic and heard nothing back (Junos default).
    #[default]
    Optimized,
    /// Only when no traffic arrived in either direction.
    ProbeIdleTunnel,
    /// Every interval regardless of traffic.
    AlwaysSend,
}

/// Junos `version`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum IkeVersion {
    V1Only,
    #[default]
    V2Only,
}

/// IPsec protocol of a proposal.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IpsecProtocol {
    Esp,
    Ah,
}

impl IpsecProtocol {
    /// The dataplane protocol.
    pub fn protocol(self) -> Protocol {
        match self {
            IpsecProtocol::Esp => Protocol::Esp,
            IpsecProtocol::Ah => Protocol::Ah,
        }
    }
}

/// One resolved IPsec proposal. Named `IpsecProposal` rather than `EspProposal` because
/// Junos proposals may be AH.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IpsecProposal {
    pub name: String,
    pub description: Option<String>,
    pub protocol: IpsecProtocol,
    /// `None` for AH.
    pub encr: Option<EncrTransform>,
    /// IKEv2 Transform Type 3 ID; `None` with an AEAD.
    pub integ: Option<u16>,
    pub lifetime: Duration,
    /// Volume lifetime; `None` for no limit.
    pub lifetime_kilobytes: Option<u64>,
}

/// Route-based or policy-based.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Binding {
    /// `bind-interface = "st0.N"`.
    Route { unit: u32 },
    /// Referenced by `then.permit.tunnel.ipsec-vpn` of these policies
    /// (`from-zone/to-zone/name`). `id` is the dataplane binding, numbered from
    /// [`POLICY_BINDING_BASE`] so it never collides with an st0 unit.
    Policy { id: TunnelId, policies: Vec<String> },
}

/// First dataplane binding id of policy-based VPNs; st0 units stay below it.
pub const POLICY_BINDING_BASE: TunnelId = 0x8000_0000;

impl Binding {
    /// The dataplane's tunnel id for this binding.
    pub fn tunnel_id(&self) -> TunnelId {
        match self {
            Binding::Route { unit } => *unit,
            Binding::Policy { id, .. } => *id,
        }
    }
}

/// Junos `establish-tunnels`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Establish {
    /// Negotiate at start, and again whenever the tunnel goes down.
    Immediately,
    /// Junos default: negotiate on the first packet for the tunnel.
    #[default]
    OnTraffic,
    /// Never initiate: answer the peer only (Junos `responder-only`).
    ResponderOnly,
}

/// A traffic selector, local side first.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrafficSelector {
    pub name: String,
    pub local: IpPrefix,
    pub remote: IpPrefix,
}

impl TrafficSelector {
    /// The dataplane selector (any protocol and port).
    pub fn selector(&self) -> Selector {
        Selector::new(IpRange::from(self.local), IpRange::from(self.remote))
    }
}

/// Junos `vpn-monitor`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VpnMonitor {
    /// `None`: the peer's outer address.
    pub destination: Option<IpAddr>,
    pub source_interface: Option<String>,
    pub optimized: bool,
}

/// Per-tunnel outer-header and replay options shared by IKE and manual VPNs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TunnelOptions {
    /// `mode = "tunnel" | "transport"` (default tunnel). An IKE VPN asks for transport
    /// mode with USE_TRANSPORT_MODE and grants it to a peer that asks (RFC 7296
    /// §1.3.1); transport mode protects packets between the two gateways' own
    /// addresses, so the traffic selectors should name those.
    pub mode: Mode,
    pub df_bit: DfBit,
    pub copy_outer_dscp: bool,
    /// Window in packets; `None` with `no-anti-replay`.
    pub anti_replay: Option<u32>,
    pub esn: bool,
}

/// An IKE-keyed VPN (`[security.ipsec.vpn.NAME]` with `ike`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Vpn {
    pub name: String,
    pub description: Option<String>,
    pub binding: Binding,
    /// The gateway name (see [`Config::gateway`]).
    pub gateway: String,
    /// From the VPN's IPsec policy, in order of preference.
    pub ipsec_proposals: Vec<IpsecProposal>,
    /// DH group for PFS in CREATE_CHILD_SA; `None` for no PFS.
    pub pfs_group: Option<u16>,
    pub establish: Establish,
    pub options: TunnelOptions,
    /// Configured `traffic-selector`s for route-based VPNs; for policy-based ones, the
    /// source × destination prefixes of the referencing policies. Empty: any.
    pub traffic_selectors: Vec<TrafficSelector>,
    pub monitor: Option<VpnMonitor>,
}

/// A manually keyed VPN (`[security.ipsec.vpn.NAME]` with `manual`).
#[derive(Clone, PartialEq, Eq)]
pub struct ManualVpn {
    pub name: String,
    pub description: Option<String>,
    pub binding: Binding,
    /// The peer's outer address.
    pub gateway: IpAddr,
    pub local_address: IpAddr,
    pub protocol: IpsecProtocol,
    /// SPI of the inbound SA (what the peer sends with).
    pub spi: u32,
    /// SPI of the outbound SA (the peer's `spi`).
    pub remote_spi: u32,
    pub encr: EncrAlg,
    pub integ: IntegAlg,
    /// Inbound SA keys.
    pub keys: ManualKeys,
    /// Outbound SA keys.
    pub remote_keys: ManualKeys,
    pub udp_encapsulation: bool,
    pub options: TunnelOptions,
    pub traffic_selectors: Vec<TrafficSelector>,
}

/// Keys of one manual SA. Zeroed on drop and never printed.
#[derive(Clone)]
pub struct ManualKeys {
    /// Encryption key (with the 4-byte salt for AEADs); empty for AH.
    pub encr: Zeroizing<Vec<u8>>,
    /// Integrity key; empty with an AEAD.
    pub integ: Zeroizing<Vec<u8>>,
}

/// Constant time: a reload compares the running keys with the new ones.
impl PartialEq for ManualKeys {
    fn eq(&self, other: &Self) -> bool {
        bool::from(
            self.encr.as_slice().ct_eq(other.encr.as_slice())
                & self.integ.as_slice().ct_eq(other.integ.as_slice()),
        )
    }
}

impl Eq for ManualKeys {}

impl fmt::Debug for ManualKeys {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "ManualKeys(<{}+{} bytes redacted>)",
            self.encr.len(),
            self.integ.len()
        )
    }
}

impl fmt::Debug for ManualVpn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ManualVpn")
            .field("name", &self.name)
            .field("binding", &self.binding)
            .field("gateway", &self.gateway)
            .field("local_address", &self.local_address)
            .field("protocol", &self.protocol)
            .field("spi", &format_args!("{:#x}", self.spi))
            .field("remote_spi", &format_args!("{:#x}", self.remote_spi))
            .field("encr", &self.encr)
            .field("integ", &self.integ)
            .field("udp_encapsulation", &self.udp_encapsulation)
            .field("options", &self.options)
            .finish_non_exhaustive()
    }
}

/// The two dataplane SAs of a manual VPN.
#[derive(Debug, Clone)]
pub struct SaPair {
    pub inbound: SaConfig,
    pub outbound: SaConfig,
}

/// UDP port of ESP-in-UDP (RFC 3948).
pub const NAT_T_PORT: u16 = 4500;

impl ManualVpn {
    /// The inbound and outbound SA configurations to install.
    ///
    /// Manual SAs never run anti-replay, whatever the VPN says: their sequence numbers
    /// restart at 1 whenever either side restarts, so a window would drop every packet
    /// of the restarted peer until the counter caught up (RFC 4303 §3.3.3 tells the
    /// sender not to rely on the receiver's check with manual keys).
    pub fn sa_pair(&self) -> SaPair {
        SaPair {
            inbound: self.sa_config(Direction::Inbound, self.spi, &self.keys),
            outbound: self.sa_config(Direction::Outbound, self.remote_spi, &self.remote_keys),
        }
    }

    fn sa_config(&self, direction: Direction, spi: u32, keys: &ManualKeys) -> SaConfig {
        let mut sa = SaConfig::esp_tunnel(direction, spi, self.local_address, self.gateway)
            .with_encryption(self.encr, &keys.encr)
            .with_integrity(self.integ, &keys.integ);
        sa.protocol = self.protocol.protocol();
        sa.mode = self.options.mode;
        sa.esn = false;
        sa.replay_window = 0;
        sa.udp_encap = self.udp_encapsulation.then_some(UdpEncap {
            local_port: NAT_T_PORT,
            remote_port: NAT_T_PORT,
        });
        sa.df_bit = self.options.df_bit;
        sa.copy_dscp = self.options.copy_outer_dscp;
        sa.binding = self.binding.tunnel_id();
        sa.selectors = self
            .traffic_selectors
            .iter()
            .map(TrafficSelector::selector)
            .collect();
        sa
    }
}

/// A security policy (`[security.policies.from-zone.A.to-zone.B.policy.NAME]`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SecurityPolicy {
    pub from_zone: String,
    pub to_zone: String,
    pub name: String,
    pub description: Option<String>,
    /// Empty: any.
    pub source: Vec<IpPrefix>,
    /// Empty: any.
    pub destination: Vec<IpPrefix>,
    pub action: PolicyAction,
}

impl SecurityPolicy {
    /// The (source, destination) prefix pairs the policy matches, of one family each:
    /// the product of its lists, with an `any` side widened to the whole address space
    /// of the other side's family. Empty when both sides are `any` (every family): the
    /// caller says what "everything" is (IKE: all IPv4; the SPD: both families).
    pub fn prefix_pairs(&self) -> Vec<(IpPrefix, IpPrefix)> {
        match (self.source.is_empty(), self.destination.is_empty()) {
            (true, true) => Vec::new(),
            (false, false) => self
                .source
                .iter()
                .flat_map(|s| self.destination.iter().map(move |d| (*s, *d)))
                .filter(|(s, d)| s.addr().is_ipv6() == d.addr().is_ipv6())
                .collect(),
            (true, false) => self.destination.iter().map(|d| (any_of(*d), *d)).collect(),
            (false, true) => self.source.iter().map(|s| (*s, any_of(*s))).collect(),
        }
    }
}

/// The whole address space of `p`'s family (`0.0.0.0/0` or `::/0`).
pub fn any_of(p: IpPrefix) -> IpPrefix {
    let any = if p.addr().is_ipv6() {
        IpAddr::V6(std::net::Ipv6Addr::UNSPECIFIED)
    } else {
        IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED)
    };
    IpPrefix::new(any, 0).unwrap_or(IpPrefix::host(any))
}

/// What a matching policy does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PolicyAction {
    Permit,
    /// Permit into the named VPN (policy-based VPN).
    Tunnel(String),
    Deny,
    Reject,
}

/// A remote-access address pool.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pool {
    pub name: String,
    pub inet: Option<PoolFamily>,
    pub inet6: Option<PoolFamily>,
}

/// The addresses of one family in a pool.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PoolFamily {
    pub network: IpPrefix,
    /// First and last assignable address; the whole network when no range is given.
    pub low: IpAddr,
    pub high: IpAddr,
    pub dns_servers: Vec<IpAddr>,
}

/// An `st0` unit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Interface {
    pub unit: u32,
    pub description: Option<String>,
    pub inet: Option<InterfaceAddress>,
    pub inet6: Option<InterfaceAddress>,
    pub mtu: Option<u16>,
}

impl Interface {
    /// `st0.N`.
    pub fn name(&self) -> String {
        format!("st0.{}", self.unit)
    }
}

/// An interface address with its prefix length (`10.255.0.1/30`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct InterfaceAddress {
    pub address: IpAddr,
    pub prefix_len: u8,
}

/// A static route.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StaticRoute {
    pub destination: IpPrefix,
    pub next_hop: NextHop,
}

/// Where a static route points.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NextHop {
    /// Into a tunnel interface.
    St0 { unit: u32 },
    /// To a gateway address.
    Address(IpAddr),
}

/// Listening sockets of the daemon's services; `None` keeps a service off.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ServicesConfig {
    pub management: Option<SocketAddr>,
    pub metrics: Option<SocketAddr>,
}

/// A chassis cluster (`[chassis.cluster]`): two gateway nodes and a witness, in Junos
/// terms. The same file serves every member; which one a process is comes from the
/// command line (`vpnd --node`), never from the file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cluster {
    /// `cluster-id`, 1..=255.
    pub cluster_id: u16,
    /// `heartbeat-interval`.
    pub heartbeat_interval: Duration,
    /// `heartbeat-threshold`: missed heartbeats before a peer is lost.
    pub heartbeat_threshold: u32,
    /// `data-directory`: where each member keeps its replicated log, in a subdirectory
    /// named after it (so members sharing a host never share a log). Relative paths are
    /// resolved against the configuration file's directory by `Config::load`.
    pub data_directory: PathBuf,
    /// The cluster (control) link address of node0, node1 and the witness, in
    /// [`Member::ALL`] order.
    pub control_addresses: Vec<(Member, SocketAddr)>,
    /// Redundancy groups by number, group 0 first.
    pub redundancy_groups: Vec<RedundancyGroup>,
}

impl Cluster {
    /// The control link address of `member`.
    pub fn control_address(&self, member: Member) -> Option<SocketAddr> {
        self.control_addresses
            .iter()
            .find(|(m, _)| *m == member)
            .map(|(_, a)| *a)
    }

    /// Redundancy group `id`.
    pub fn redundancy_group(&self, id: u8) -> Option<&RedundancyGroup> {
        self.redundancy_groups.iter().find(|g| g.id == id)
    }
}

/// `[chassis.cluster.redundancy-group.N]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RedundancyGroup {
    /// 0 is the control plane; 1.. carry reths and the tunnels on their addresses.
    pub id: u8,
    /// `node.0.priority` and `node.1.priority` (1..=254, higher wins).
    pub priority: [u8; 2],
    /// `preempt { delay }`: `None` never preempts (the Junos default).
    pub preempt: Option<Duration>,
    /// `interface-monitor.NAME.weight`, as written: a host interface name, or a reth
    /// name that stands for that reth's child interface on each node.
    pub interface_monitor: Vec<(String, u32)>,
    /// `ip-monitoring.family.inet.ADDR.weight` (and `inet6`).
    pub ip_monitoring: Vec<IpMonitoring>,
    /// `spu-weight`; `None` leaves the cluster's default.
    pub spu_weight: Option<u32>,
}

/// One monitored address of a redundancy group.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IpMonitoring {
    pub address: IpAddr,
    pub weight: u32,
    /// `ip-monitoring.retry-interval`: time between probes.
    pub interval: Duration,
    /// `ip-monitoring.retry-count`: consecutive lost probes before the address is down.
    pub threshold: u32,
}

/// `[interfaces.rethN]`: a redundant Ethernet interface. Its addresses are up only on
/// the node that is primary for its redundancy group, and move with it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reth {
    /// `rethN`.
    pub name: String,
    pub description: Option<String>,
    /// `redundant-ether-options.redundancy-group` (never 0).
    pub redundancy_group: u8,
    /// `child-interface.node0` and `child-interface.node1`: the host interface that
    /// carries the reth on each node.
    pub child_interfaces: [String; 2],
    /// `unit.0.family.inet.address`.
    pub inet: Option<InterfaceAddress>,
    /// `unit.0.family.inet6.address`.
    pub inet6: Option<InterfaceAddress>,
}

impl Reth {
    /// Its addresses, IPv4 first.
    pub fn addresses(&self) -> impl Iterator<Item = InterfaceAddress> + '_ {
        self.inet.iter().chain(self.inet6.iter()).copied()
    }

    /// The child interface on gateway node `member` (`None` for the witness).
    pub fn child_interface(&self, member: Member) -> Option<&str> {
        match member {
            Member::Node0 => Some(&self.child_interfaces[0]),
            Member::Node1 => Some(&self.child_interfaces[1]),
            Member::Witness => None,
        }
    }
}
