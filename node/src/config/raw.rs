//! Serde structs that mirror the configuration file one to one.
//!
//! Nothing here is validated beyond TOML types: every value an operator can get wrong is
//! kept as a [`Spanned`] so that `validate` can point at it, and enumerated names
//! (algorithms, DH groups, modes) stay strings so that a bad one becomes a collected
//! diagnostic listing the accepted names instead of a serde error that stops parsing.
//! Every struct denies unknown fields: a misspelt key silently ignored is how a gateway
//! ends up running with a default nobody chose.

use indexmap::IndexMap;
use serde::Deserialize;
use toml::Spanned;

/// A named list in the file (`[security.ike.proposal.NAME]`), in file order. The key keeps
/// its span so that errors about the whole entry (a missing field) point at its header.
pub type Named<T> = IndexMap<Spanned<String>, T>;

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct RawConfig {
    #[serde(default)]
    pub system: System,
    #[serde(default)]
    pub security: Security,
    #[serde(default)]
    pub interfaces: Interfaces,
    #[serde(default)]
    pub routing_options: RoutingOptions,
    #[serde(default)]
    pub services: Services,
    #[serde(default)]
    pub chassis: Chassis,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct System {
    pub host_name: Option<Spanned<String>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct Security {
    #[serde(default)]
    pub ike: Ike,
    #[serde(default)]
    pub ipsec: Ipsec,
    #[serde(default)]
    pub policies: Policies,
    #[serde(default)]
    pub address_pools: Named<AddressPool>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct Ike {
    #[serde(default)]
    pub proposal: Named<IkeProposal>,
    #[serde(default)]
    pub policy: Named<IkePolicy>,
    #[serde(default)]
    pub gateway: Named<IkeGateway>,
    pub traceoptions: Option<Spanned<IkeTraceoptions>>,
}

/// Junos `security ike traceoptions`; here only what helps decrypt a capture.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct IkeTraceoptions {
    pub key_log: Option<Spanned<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct IkeProposal {
    pub description: Option<String>,
    pub authentication_method: Option<Spanned<String>>,
    pub dh_group: Option<Spanned<String>>,
    pub encryption_algorithm: Option<Spanned<String>>,
    pub authentication_algorithm: Option<Spanned<String>>,
    pub lifetime_seconds: Option<Spanned<i64>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct IkePolicy {
    pub proposals: Option<Spanned<Vec<Spanned<String>>>>,
    pub proposal_set: Option<Spanned<String>>,
    pub pre_shared_key: Option<Spanned<PreSharedKey>>,
    pub certificate: Option<Spanned<Certificate>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct PreSharedKey {
    pub ascii_text: Option<Spanned<String>>,
    pub hexadecimal: Option<Spanned<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct Certificate {
    pub local_certificate: Option<Spanned<String>>,
    pub private_key: Option<Spanned<String>>,
    #[serde(default)]
    pub trusted_ca: Vec<Spanned<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct IkeGateway {
    pub description: Option<String>,
    pub ike_policy: Option<Spanned<String>>,
    pub address: Option<Spanned<Vec<Spanned<String>>>>,
    pub dynamic: Option<Spanned<Dynamic>>,
    pub local_address: Option<Spanned<String>>,
    pub local_identity: Option<Spanned<Identity>>,
    pub remote_identity: Option<Spanned<Identity>>,
    pub version: Option<Spanned<String>>,
    pub dead_peer_detection: Option<DeadPeerDetection>,
    pub nat_keepalive: Option<Spanned<i64>>,
    #[serde(default)]
    pub no_nat_traversal: bool,
    #[serde(default)]
    pub force_udp_encapsulation: bool,
    pub aaa: Option<Aaa>,
}

/// Junos `local-identity` / `remote-identity`: exactly one member may be set.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct Identity {
    pub inet: Option<Spanned<String>>,
    pub inet6: Option<Spanned<String>>,
    pub hostname: Option<Spanned<String>>,
    pub user_at_hostname: Option<Spanned<String>>,
    pub distinguished_name: Option<Spanned<String>>,
    pub key_id: Option<Spanned<String>>,
}

/// Junos `dynamic`: the identity a dial-up peer must present, plus how it is matched.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct Dynamic {
    pub inet: Option<Spanned<String>>,
    pub inet6: Option<Spanned<String>>,
    pub hostname: Option<Spanned<String>>,
    pub user_at_hostname: Option<Spanned<String>>,
    pub distinguished_name: Option<Spanned<String>>,
    pub ike_user_type: Option<Spanned<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct DeadPeerDetection {
    pub interval: Option<Spanned<i64>>,
    pub threshold: Option<Spanned<i64>>,
    pub mode: Option<Spanned<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct Aaa {
    pub access_profile: Spanned<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct Ipsec {
    pub anti_replay_window_size: Option<Spanned<i64>>,
    pub vpn_monitor_options: Option<VpnMonitorOptions>,
    #[serde(default)]
    pub proposal: Named<IpsecProposal>,
    #[serde(default)]
    pub policy: Named<IpsecPolicy>,
    #[serde(default)]
    pub vpn: Named<Vpn>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct IpsecProposal {
    pub description: Option<String>,
    pub protocol: Option<Spanned<String>>,
    pub encryption_algorithm: Option<Spanned<String>>,
    pub authentication_algorithm: Option<Spanned<String>>,
    pub lifetime_seconds: Option<Spanned<i64>>,
    pub lifetime_kilobytes: Option<Spanned<i64>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct IpsecPolicy {
    pub proposals: Option<Spanned<Vec<Spanned<String>>>>,
    pub proposal_set: Option<Spanned<String>>,
    pub perfect_forward_secrecy: Option<Pfs>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct Pfs {
    pub keys: Spanned<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct Vpn {
    pub description: Option<String>,
    pub bind_interface: Option<Spanned<String>>,
    pub ike: Option<Spanned<VpnIke>>,
    pub manual: Option<Spanned<Manual>>,
    pub establish_tunnels: Option<Spanned<String>>,
    pub mode: Option<Spanned<String>>,
    pub df_bit: Option<Spanned<String>>,
    #[serde(default)]
    pub copy_outer_dscp: bool,
    pub anti_replay_window_size: Option<Spanned<i64>>,
    pub no_anti_replay: Option<Spanned<bool>>,
    #[serde(default)]
    pub extended_sequence_number: bool,
    #[serde(default)]
    pub traffic_selector: Named<TrafficSelector>,
    pub vpn_monitor: Option<VpnMonitor>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct VpnIke {
    pub gateway: Option<Spanned<String>>,
    pub ipsec_policy: Option<Spanned<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct Manual {
    pub gateway: Option<Spanned<String>>,
    pub local_address: Option<Spanned<String>>,
    pub protocol: Option<Spanned<String>>,
    pub spi: Option<Spanned<i64>>,
    pub remote_spi: Option<Spanned<i64>>,
    pub encryption: Option<Spanned<ManualEncryption>>,
    pub authentication: Option<Spanned<ManualAuthentication>>,
    #[serde(default)]
    pub udp_encapsulation: bool,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct ManualEncryption {
    pub algorithm: Spanned<String>,
    pub key: Option<Spanned<KeyText>>,
    pub remote_key: Option<Spanned<KeyText>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct ManualAuthentication {
    pub algorithm: Spanned<String>,
    pub key: Option<Spanned<KeyText>>,
    pub remote_key: Option<Spanned<KeyText>>,
}

/// Junos key syntax: `ascii-text` or `hexadecimal`, exactly one.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct KeyText {
    pub ascii_text: Option<Spanned<String>>,
    pub hexadecimal: Option<Spanned<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct TrafficSelector {
    pub local_ip: Spanned<String>,
    pub remote_ip: Spanned<String>,
}

/// `[security.ipsec.vpn-monitor-options]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct VpnMonitorOptions {
    pub interval: Option<Spanned<i64>>,
    pub threshold: Option<Spanned<i64>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct VpnMonitor {
    pub destination_ip: Option<Spanned<String>>,
    pub source_interface: Option<Spanned<String>>,
    #[serde(default)]
    pub optimized: bool,
}

/// `[security.policies.from-zone.Z1.to-zone.Z2.policy.NAME]`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct Policies {
    #[serde(default)]
    pub from_zone: Named<FromZone>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct FromZone {
    #[serde(default)]
    pub to_zone: Named<ToZone>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct ToZone {
    #[serde(default)]
    pub policy: Named<Policy>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct Policy {
    pub description: Option<String>,
    #[serde(rename = "match")]
    pub match_: Spanned<Match>,
    pub then: Spanned<Then>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct Match {
    pub source_address: Vec<Spanned<String>>,
    pub destination_address: Vec<Spanned<String>>,
    pub application: Spanned<String>,
}

/// Junos `then { permit; }`, `then { deny; }`, `then { reject; }`: exactly one is set.
/// In TOML the bare flags are written as empty tables (`then.deny = {}`).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct Then {
    pub permit: Option<Permit>,
    pub deny: Option<Empty>,
    pub reject: Option<Empty>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct Permit {
    pub tunnel: Option<Tunnel>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct Tunnel {
    pub ipsec_vpn: Spanned<String>,
}

/// A Junos flag statement with no arguments.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Empty {}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct AddressPool {
    pub family: Spanned<PoolFamilies>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct PoolFamilies {
    pub inet: Option<PoolFamily>,
    pub inet6: Option<PoolFamily>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct PoolFamily {
    pub network: Spanned<String>,
    pub range: Option<PoolRange>,
    #[serde(default)]
    pub dns_server: Vec<Spanned<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct PoolRange {
    pub low: Spanned<String>,
    pub high: Spanned<String>,
}

/// `[interfaces]`: `st0` (tunnel units) and `rethN` (redundant Ethernet of a chassis
/// cluster). Physical interfaces belong to the host, not to the daemon.
///
/// Deserialized by hand because the reth names are open-ended (`reth0`, `reth1`, ...):
/// serde's `flatten` would lose the spans that errors point at and cannot deny unknown
/// fields, so every key that is not `st0` is read as a reth here and its name is checked
/// in validation, where a bad one becomes a collected diagnostic.
#[derive(Debug, Default)]
pub struct Interfaces {
    pub st0: Option<St0>,
    pub reth: Named<Reth>,
}

impl<'de> Deserialize<'de> for Interfaces {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Visit;
        impl<'de> serde::de::Visitor<'de> for Visit {
            type Value = Interfaces;

            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a table of interfaces (st0, reth0, reth1, ...)")
            }

            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                mut map: A,
            ) -> Result<Interfaces, A::Error> {
                let mut out = Interfaces::default();
                while let Some(name) = map.next_key::<Spanned<String>>()? {
                    if name.get_ref() == "st0" {
                        if out.st0.is_some() {
                            return Err(serde::de::Error::duplicate_field("st0"));
                        }
                        out.st0 = Some(map.next_value()?);
                    } else {
                        let reth = map.next_value()?;
                        out.reth.insert(name, reth);
                    }
                }
                Ok(out)
            }
        }
        d.deserialize_map(Visit)
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct St0 {
    #[serde(default)]
    pub unit: Named<Unit>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct Unit {
    pub description: Option<String>,
    #[serde(default)]
    pub family: UnitFamilies,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct UnitFamilies {
    pub inet: Option<UnitFamily>,
    pub inet6: Option<UnitFamily>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct UnitFamily {
    pub address: Option<Spanned<String>>,
    pub mtu: Option<Spanned<i64>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct RoutingOptions {
    #[serde(default, rename = "static")]
    pub static_: StaticRoutes,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct StaticRoutes {
    #[serde(default)]
    pub route: Named<Route>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct Route {
    pub next_hop: Spanned<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct Services {
    pub management: Option<Listen>,
    pub metrics: Option<Listen>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct Listen {
    pub listen: Spanned<String>,
}

/// `[interfaces.rethN]`: a redundant Ethernet interface, whose addresses are up on the
/// node that is primary for its redundancy group.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct Reth {
    pub description: Option<String>,
    pub redundant_ether_options: Option<Spanned<RedundantEtherOptions>>,
    pub child_interface: Option<Spanned<ChildInterfaces>>,
    #[serde(default)]
    pub unit: Named<RethUnit>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct RedundantEtherOptions {
    pub redundancy_group: Option<Spanned<i64>>,
}

/// The host interface that carries the reth on each node (Junos puts
/// `gigether-options redundant-parent rethN` on these child links instead).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct ChildInterfaces {
    pub node0: Option<Spanned<String>>,
    pub node1: Option<Spanned<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct RethUnit {
    #[serde(default)]
    pub family: RethFamilies,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct RethFamilies {
    pub inet: Option<RethFamily>,
    pub inet6: Option<RethFamily>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct RethFamily {
    pub address: Option<Spanned<String>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct Chassis {
    pub cluster: Option<Spanned<Cluster>>,
}

/// `[chassis.cluster]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct Cluster {
    pub cluster_id: Option<Spanned<i64>>,
    pub heartbeat_interval: Option<Spanned<i64>>,
    pub heartbeat_threshold: Option<Spanned<i64>>,
    pub data_directory: Option<Spanned<String>>,
    /// `node.0`, `node.1`.
    #[serde(default)]
    pub node: Named<ClusterMember>,
    pub witness: Option<Spanned<ClusterMember>>,
    #[serde(default)]
    pub redundancy_group: Named<RedundancyGroup>,
}

/// One member's end of the cluster (control) link.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct ClusterMember {
    pub control_address: Option<Spanned<String>>,
}

/// `[chassis.cluster.redundancy-group.N]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct RedundancyGroup {
    /// `node.0.priority`, `node.1.priority`.
    #[serde(default)]
    pub node: Named<GroupNode>,
    pub preempt: Option<Spanned<Preempt>>,
    #[serde(default)]
    pub interface_monitor: Named<Spanned<Weight>>,
    pub ip_monitoring: Option<Spanned<IpMonitoring>>,
    pub spu_weight: Option<Spanned<i64>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct GroupNode {
    pub priority: Option<Spanned<i64>>,
}

/// Junos `preempt { delay N; }`; the bare flag is `preempt = {}`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct Preempt {
    pub delay: Option<Spanned<i64>>,
}

/// A monitored object's weight (`interface-monitor.eth1.weight = 255`).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct Weight {
    pub weight: Option<Spanned<i64>>,
}

/// Junos `ip-monitoring { retry-interval; retry-count; family inet { ADDR weight W; } }`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct IpMonitoring {
    pub retry_interval: Option<Spanned<i64>>,
    pub retry_count: Option<Spanned<i64>>,
    #[serde(default)]
    pub family: IpMonitoringFamilies,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct IpMonitoringFamilies {
    #[serde(default)]
    pub inet: Named<Spanned<Weight>>,
    #[serde(default)]
    pub inet6: Named<Spanned<Weight>>,
}
