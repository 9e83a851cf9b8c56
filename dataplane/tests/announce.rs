//! Virtual address announcements on a real link: a gratuitous ARP and an unsolicited
//! neighbour advertisement sent from one end of a veth pair, captured with an
//! `AF_PACKET` socket on the other end, every field checked.
//!
//! Needs root (network namespaces, packet sockets) and `ip`; without root every
//! `netns_` test fails with a message saying so; skip them with
//! `cargo test -- --skip netns_`.

mod common;

use std::net::{Ipv4Addr, Ipv6Addr};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use common::Topology;
use dataplane::io::announce::{gratuitous_arp, unsolicited_na};
use etherparse::icmpv6::NeighborAdvertisementHeader;
use etherparse::{ArpOperation, ArpPacket, Icmpv6Type};

fn require_root() {
    assert!(common::is_root(), "{}", common::ROOT_HINT);
}

/// The PID keeps concurrent runs apart.
fn topology(name: &str) -> Topology {
    let pid = std::process::id();
    Topology::create(
        &format!("dpan-{name}-{pid}-a"),
        &format!("dpan-{name}-{pid}-b"),
    )
    .expect("creating namespaces")
}

/// An `AF_PACKET` socket receiving every frame of `dev` (in the calling thread's
/// namespace), with a short receive timeout.
fn capture(dev: &str) -> Result<OwnedFd> {
    let all = (libc::ETH_P_ALL as u16).to_be();
    // SAFETY: socket takes no pointers; the descriptor is checked before use.
    let fd = unsafe { libc::socket(libc::AF_PACKET, libc::SOCK_RAW, libc::c_int::from(all)) };
    if fd < 0 {
        bail!("AF_PACKET socket: {}", std::io::Error::last_os_error());
    }
    // SAFETY: `fd` is a fresh descriptor that nothing else owns.
    let fd = unsafe { OwnedFd::from_raw_fd(fd) };
    let name = std::ffi::CString::new(dev)?;
    // SAFETY: `name` is a live NUL-terminated string.
    let ifindex = unsafe { libc::if_nametoindex(name.as_ptr()) };
    if ifindex == 0 {
        bail!("no interface {dev}");
    }
    // SAFETY: sockaddr_ll is plain integers and a byte array; all-zero is valid.
    let mut addr: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
    addr.sll_family = libc::AF_PACKET as u16;
    addr.sll_protocol = all;
    addr.sll_ifindex = ifindex as i32;
    let len = std::mem::size_of::<libc::sockaddr_ll>() as libc::socklen_t;
    // SAFETY: the address pointer and length describe `addr`, which outlives the call.
    if unsafe { libc::bind(fd.as_raw_fd(), (&raw const addr).cast(), len) } != 0 {
        bail!("binding to {dev}: {}", std::io::Error::last_os_error());
    }
    let tv = libc::timeval {
        tv_sec: 0,
        tv_usec: 200_000,
    };
    let tv_len = std::mem::size_of::<libc::timeval>() as libc::socklen_t;
    // SAFETY: passes a pointer to a live timeval and its size.
    let r = unsafe {
        libc::setsockopt(
            fd.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_RCVTIMEO,
            (&raw const tv).cast(),
            tv_len,
        )
    };
    if r != 0 {
        bail!("SO_RCVTIMEO: {}", std::io::Error::last_os_error());
    }
    Ok(fd)
}

/// The first captured frame (within 5 s) that `wanted` accepts.
fn next_frame(fd: &OwnedFd, wanted: impl Fn(&[u8]) -> bool) -> Vec<u8> {
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut buf = [0u8; 2048];
    while Instant::now() < deadline {
        // SAFETY: the pointer and length describe `buf`.
        let n = unsafe { libc::recv(fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len(), 0) };
        if let Ok(n) = usize::try_from(n)
            && wanted(&buf[..n])
        {
            return buf[..n].to_vec();
        }
    }
    panic!("no matching frame captured within 5 s");
}

/// The MAC address of `dev` in `ns`, as `ip` reports it.
fn mac_of(ns: &str, dev: &str) -> Result<[u8; 6]> {
    let out = common::run("ip", &["-n", ns, "-o", "link", "show", "dev", dev])?;
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let hex = text
        .split_whitespace()
        .skip_while(|w| *w != "link/ether")
        .nth(1)
        .with_context(|| format!("no link/ether in {text:?}"))?;
    let mut mac = [0u8; 6];
    for (b, part) in mac.iter_mut().zip(hex.split(':')) {
        *b = u8::from_str_radix(part, 16)?;
    }
    Ok(mac)
}

fn ethertype(frame: &[u8]) -> u16 {
    u16::from_be_bytes([frame[12], frame[13]])
}

#[test]
fn netns_gratuitous_arp_is_a_broadcast_request_for_the_address_itself() {
    require_root();
    let topo = topology("garp");
    let cap = common::in_netns(&topo.b.name, || capture(&topo.veth_b)).expect("capture");
    let mac = mac_of(&topo.a.name, &topo.veth_a).expect("MAC of veth-a");
    let vip = Ipv4Addr::new(192, 0, 2, 100);
    common::in_netns(&topo.a.name, || {
        gratuitous_arp(&topo.veth_a, vip).context("gratuitous_arp")
    })
    .expect("sending");

    let frame = next_frame(&cap, |f| f.len() >= 14 && ethertype(f) == 0x0806);
    assert_eq!(frame[..6], [0xff; 6], "not broadcast");
    assert_eq!(frame[6..12], mac, "source MAC");
    assert!(frame.len() >= 60, "runt frame: {} bytes", frame.len());
    let arp = ArpPacket::from_slice(&frame[14..])
        .expect("ARP")
        .try_eth_ipv4()
        .expect("Ethernet/IPv4 ARP");
    assert_eq!(arp.operation, ArpOperation::REQUEST);
    assert_eq!(arp.sender_mac, mac);
    assert_eq!(arp.sender_ipv4_addr(), vip);
    assert_eq!(arp.target_mac, [0; 6]);
    assert_eq!(arp.target_ipv4_addr(), vip);

    // Nothing to announce on an interface without a MAC address, or no interface.
    common::in_netns(&topo.a.name, || {
        let e = gratuitous_arp("lo", vip).expect_err("loopback has no MAC address");
        assert_eq!(e.kind(), std::io::ErrorKind::Unsupported, "{e}");
        assert!(gratuitous_arp("nosuchdev0", vip).is_err());
        Ok(())
    })
    .expect("error cases");
}

#[test]
fn netns_unsolicited_na_overrides_to_all_nodes_with_hop_limit_255() {
    require_root();
    let topo = topology("una");
    let cap = common::in_netns(&topo.b.name, || capture(&topo.veth_b)).expect("capture");
    let mac = mac_of(&topo.a.name, &topo.veth_a).expect("MAC of veth-a");
    let vip: Ipv6Addr = "fd00::100".parse().expect("address");
    common::in_netns(&topo.a.name, || {
        unsolicited_na(&topo.veth_a, vip).context("unsolicited_na")
    })
    .expect("sending");

    // ICMPv6 type 136 right after a 40-byte IPv6 header (MLD and router solicitations
    // of the fresh link are skipped).
    let frame = next_frame(&cap, |f| {
        f.len() >= 14 + 40 + 32 && ethertype(f) == 0x86dd && f[14 + 6] == 58 && f[54] == 136
    });
    assert_eq!(frame[..6], [0x33, 0x33, 0, 0, 0, 1], "not to all nodes");
    assert_eq!(frame[6..12], mac, "source MAC");
    let ip6 = &frame[14..54];
    assert_eq!(ip6[7], 255, "hop limit");
    let src: [u8; 16] = ip6[8..24].try_into().expect("16 bytes");
    let dst: [u8; 16] = ip6[24..40].try_into().expect("16 bytes");
    assert_eq!(
        Ipv6Addr::from(dst),
        Ipv6Addr::new(0xff02, 0, 0, 0, 0, 0, 0, 1)
    );
    let payload_len = usize::from(u16::from_be_bytes([ip6[4], ip6[5]]));
    assert_eq!(payload_len, 32, "ICMPv6 length");
    let icmp = &frame[54..54 + payload_len];
    assert_eq!(icmp[1], 0, "code");
    let flags = NeighborAdvertisementHeader::from_bytes([icmp[4], icmp[5], icmp[6], icmp[7]]);
    assert_eq!(
        flags,
        NeighborAdvertisementHeader {
            router: true,
            solicited: false,
            r#override: true,
        }
    );
    assert_eq!(
        Ipv6Addr::from(<[u8; 16]>::try_from(&icmp[8..24]).expect("16")),
        vip
    );
    assert_eq!(icmp[24..26], [2, 1], "target link-layer address option");
    assert_eq!(icmp[26..32], mac);
    let want = Icmpv6Type::NeighborAdvertisement(flags)
        .calc_checksum(src, dst, &icmp[8..])
        .expect("checksum");
    assert_eq!(u16::from_be_bytes([icmp[2], icmp[3]]), want, "checksum");
}
