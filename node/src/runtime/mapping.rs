//! The one place where the IKE engine's vocabulary becomes the dataplane's: IANA
//! transform numbers and key bytes in, `SaConfig`s out (the two crates share no types).

use std::net::IpAddr;

use dataplane::crypto::{EncrAlg, IntegAlg};
use dataplane::sa::{Direction, Lifetime, Mode, Protocol, SaConfig, UdpEncap};
use dataplane::selector::{IpRange, PortRange, Selector};
use ike::engine::{ChildSaInstall, IpsecMode};
use ike::wire::{AddrRange, IpSelector, ProtocolId};

use super::GatewaySpec;

/// A negotiated child SA pair as the dataplane installs it: (inbound, outbound).
pub fn child_sas(
    install: &ChildSaInstall,
    spec: &GatewaySpec,
    udp_encap: Option<UdpEncap>,
) -> Result<(SaConfig, SaConfig), String> {
    let protocol = match install.protocol {
        ProtocolId::Esp => Protocol::Esp,
        ProtocolId::Ah if udp_encap.is_some() => {
            return Err("AH cannot be UDP-encapsulated (RFC 3948 covers ESP only): \
                 a NAT between the gateways, real or forced, rules AH out"
                .to_string());
        }
        ProtocolId::Ah => Protocol::Ah,
        other => return Err(format!("negotiated protocol {other:?} is not ESP or AH")),
    };
    // AH has no cipher: the dataplane's AH transform reads only the integrity fields.
    let encr = match install.encr_id {
        None => EncrAlg::Null,
        Some(id) => EncrAlg::from_iana(id, install.encr_key_bits).ok_or_else(|| {
            format!(
                "negotiated encryption {id} ({:?} bits) has no dataplane transform",
                install.encr_key_bits
            )
        })?,
    };
    let integ = IntegAlg::from_iana(install.integ_id.unwrap_or(0)).ok_or_else(|| {
        format!(
            "negotiated integrity {:?} has no dataplane transform",
            install.integ_id
        )
    })?;
    // Selectors are written from our side: local traffic as source.
    let selectors = install
        .local_ts
        .iter()
        .flat_map(|l| install.remote_ts.iter().map(move |r| (l, r)))
        .filter_map(|(l, r)| selector(l, r))
        .collect::<Vec<_>>();
    let build = |direction, keys: &ike::engine::ChildSaKeys| {
        let (local, remote) = (spec.local, spec.remote);
        let mut c = SaConfig::esp_tunnel(direction, keys.spi, local, remote)
            .with_encryption(encr, keys.encr_key.as_bytes())
            .with_integrity(integ, keys.integ_key.as_bytes());
        c.protocol = protocol;
        c.esn = install.esn;
        c.mode = match install.mode {
            IpsecMode::Tunnel => Mode::Tunnel,
            IpsecMode::Transport => Mode::Transport,
        };
        c.replay_window = spec.esp.replay_window;
        c.df_bit = spec.esp.df_bit;
        c.copy_dscp = spec.esp.copy_dscp;
        c.path_mtu = spec.esp.path_mtu;
        c.lifetime = Lifetime {
            soft_bytes: spec.esp.lifetime_bytes.map(|b| b / 10 * 9),
            hard_bytes: spec.esp.lifetime_bytes,
            ..Lifetime::UNLIMITED
        };
        c.binding = spec.binding;
        c.udp_encap = udp_encap;
        c.selectors = selectors.clone();
        c.group = spec.group;
        c
    };
    let mut outbound = build(Direction::Outbound, &install.outbound);
    outbound.standby = install.outbound_deferred;
    Ok((build(Direction::Inbound, &install.inbound), outbound))
}

/// The dataplane selector for a (local, remote) traffic-selector pair of one family.
pub fn selector(local: &IpSelector, remote: &IpSelector) -> Option<Selector> {
    let range = |r: &AddrRange| match *r {
        AddrRange::V4 { start, end } => IpRange::new(IpAddr::V4(start), IpAddr::V4(end)).ok(),
        AddrRange::V6 { start, end } => IpRange::new(IpAddr::V6(start), IpAddr::V6(end)).ok(),
    };
    let (src, dst) = (range(&local.range)?, range(&remote.range)?);
    if src.is_ipv6() != dst.is_ipv6() {
        return None;
    }
    let mut s = Selector::new(src, dst)
        .with_src_ports(PortRange::new(local.start_port, local.end_port).ok()?)
        .with_dst_ports(PortRange::new(remote.start_port, remote.end_port).ok()?);
    // Both sides narrowed to the same protocol, or any (0).
    let protocol = if local.protocol != 0 {
        local.protocol
    } else {
        remote.protocol
    };
    if protocol != 0 {
        s = s.with_protocol(protocol);
    }
    Some(s)
}

#[cfg(test)]
mod tests {
    use std::net::Ipv4Addr;

    use super::*;

    #[test]
    fn selector_pairs_keep_families_apart() {
        let v4 = IpSelector::any(AddrRange::V4 {
            start: Ipv4Addr::new(10, 1, 0, 0),
            end: Ipv4Addr::new(10, 1, 255, 255),
        });
        let v6 = IpSelector::any(AddrRange::V6 {
            start: "fd00::".parse().unwrap(),
            end: "fd00::ffff".parse().unwrap(),
        });
        let s = selector(&v4, &v4).unwrap();
        let flow = dataplane::selector::FlowKey::new(
            IpAddr::V4(Ipv4Addr::new(10, 1, 2, 3)),
            IpAddr::V4(Ipv4Addr::new(10, 1, 9, 9)),
            6,
            1000,
            22,
        );
        assert!(s.matches(&flow));
        assert!(selector(&v4, &v6).is_none());
    }
}
