//! Announcing a virtual (redundant) address after a takeover.
//!
//! When a cluster node becomes primary for a redundancy group it adds the group's
//! virtual addresses to its interfaces, but the hosts and routers on those links still
//! map the addresses to the old node's MAC address in their ARP and neighbour caches
//! until the entries expire (minutes). An unrequested announcement rewrites those
//! entries at once: for IPv4 a gratuitous ARP request (RFC 5227 §3 "ARP Announcement"),
//! for IPv6 an unsolicited neighbour advertisement with the override flag (RFC 4861
//! §7.2.6). Each call sends one packet; announcements are unreliable, so the caller
//! repeats them (three times, a second apart, as VRRP and Junos do).
//!
//! Linux only: `AF_PACKET` for ARP (which has no socket of its own), a raw ICMPv6
//! socket for the advertisement. Both need CAP_NET_RAW, and run in the network
//! namespace of the calling thread.

use std::ffi::CString;
use std::io;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddrV6};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

use etherparse::{
    ArpEthIpv4Packet, ArpOperation, EtherType, Ethernet2Header, Icmpv6Header, Icmpv6Type,
    icmpv6::NeighborAdvertisementHeader,
};
use socket2::{Domain, Protocol, SockAddr, Socket, Type};

use super::cvt;

/// Destination of an ARP announcement: every host on the link.
const BROADCAST: [u8; 6] = [0xff; 6];
/// Shortest Ethernet frame without its FCS: shorter frames are padded, as NICs do.
const ETH_MIN_FRAME: usize = 60;
/// Hop limit of neighbour discovery messages: receivers drop anything else (RFC 4861
/// §7.1.2), which proves the message was not forwarded by a router.
const ND_HOP_LIMIT: u32 = 255;
/// NDP option "Target Link-Layer Address" (RFC 4861 §4.6.1).
const OPT_TARGET_LL_ADDR: u8 = 2;

/// Sends one gratuitous ARP request for `addr` out of `ifname`: broadcast, with sender
/// and target protocol address both `addr` and the interface's MAC address as sender
/// hardware address, so every neighbour that has `addr` in its cache now points it at
/// this interface. A request rather than a reply, because some hosts ignore unsolicited
/// replies; the target hardware address is zero (RFC 5227 §3).
pub fn gratuitous_arp(ifname: &str, addr: Ipv4Addr) -> io::Result<()> {
    let ifindex = if_index(ifname)?;
    let mac = hardware_address(ifname)?;
    let eth = Ethernet2Header {
        source: mac,
        destination: BROADCAST,
        ether_type: EtherType::ARP,
    };
    let arp = ArpEthIpv4Packet {
        operation: ArpOperation::REQUEST,
        sender_mac: mac,
        sender_ipv4: addr.octets(),
        target_mac: [0; 6],
        target_ipv4: addr.octets(),
    };
    let mut frame = [0u8; ETH_MIN_FRAME];
    let (head, rest) = frame.split_at_mut(Ethernet2Header::LEN);
    head.copy_from_slice(&eth.to_bytes());
    rest[..ArpEthIpv4Packet::LEN].copy_from_slice(&arp.to_bytes());

    let sock = packet_socket()?;
    // SAFETY: sockaddr_ll is plain integers and a byte array; all-zero is valid.
    let mut to: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
    to.sll_family = libc::AF_PACKET as libc::c_ushort;
    to.sll_protocol = (libc::ETH_P_ARP as u16).to_be();
    to.sll_ifindex = libc::c_int::try_from(ifindex).unwrap_or(0);
    to.sll_halen = 6;
    to.sll_addr[..6].copy_from_slice(&BROADCAST);
    let len = libc::socklen_t::try_from(std::mem::size_of::<libc::sockaddr_ll>()).unwrap_or(0);
    // SAFETY: the buffer pointer and length describe `frame`, the address pointer and
    // length describe `to`; both outlive the call.
    let sent = unsafe {
        libc::sendto(
            sock.as_raw_fd(),
            frame.as_ptr().cast(),
            frame.len(),
            0,
            (&raw const to).cast(),
            len,
        )
    };
    if sent < 0 {
        return Err(annotate(
            io::Error::last_os_error(),
            "sending ARP on",
            ifname,
        ));
    }
    Ok(())
}

/// Sends one unsolicited neighbour advertisement for `addr` out of `ifname` to all
/// nodes (ff02::1), with the override flag (replace the cached link-layer address) and
/// the interface's MAC address as target link-layer address option. The router flag is
/// set because a gateway is a router: a host that receives an advertisement without it
/// from its default router removes that router from its default router list (RFC 4861
/// §7.2.5). The kernel chooses the source address (link-local) and fills in the
/// checksum, as it does on every raw ICMPv6 socket.
pub fn unsolicited_na(ifname: &str, addr: Ipv6Addr) -> io::Result<()> {
    let ifindex = if_index(ifname)?;
    let mac = hardware_address(ifname)?;
    let icmp = Icmpv6Header::new(Icmpv6Type::NeighborAdvertisement(
        NeighborAdvertisementHeader {
            router: true,
            solicited: false,
            r#override: true,
        },
    ));
    let mut msg = Vec::with_capacity(icmp.header_len() + 16 + 8);
    msg.extend_from_slice(&icmp.to_bytes());
    msg.extend_from_slice(&addr.octets());
    msg.extend_from_slice(&[OPT_TARGET_LL_ADDR, 1]);
    msg.extend_from_slice(&mac);

    let sock = Socket::new(Domain::IPV6, Type::RAW.cloexec(), Some(Protocol::ICMPV6))
        .map_err(|e| annotate(e, "raw ICMPv6 socket for", ifname))?;
    sock.bind_device(Some(ifname.as_bytes()))
        .map_err(|e| annotate(e, "binding to", ifname))?;
    sock.set_multicast_if_v6(ifindex)?;
    sock.set_multicast_hops_v6(ND_HOP_LIMIT)?;
    sock.set_unicast_hops_v6(ND_HOP_LIMIT)?;
    sock.set_multicast_loop_v6(false)?;
    let all_nodes = SocketAddrV6::new(Ipv6Addr::new(0xff02, 0, 0, 0, 0, 0, 0, 1), 0, 0, ifindex);
    sock.send_to(&msg, &SockAddr::from(all_nodes))
        .map_err(|e| annotate(e, "sending neighbour advertisement on", ifname))?;
    Ok(())
}

/// An `AF_PACKET` socket for sending whole Ethernet frames. Protocol 0: it receives
/// nothing, so no frame is queued on it while it lives.
fn packet_socket() -> io::Result<OwnedFd> {
    // SAFETY: socket takes no pointers; the descriptor is checked before use.
    let fd = cvt(unsafe { libc::socket(libc::AF_PACKET, libc::SOCK_RAW | libc::SOCK_CLOEXEC, 0) })
        .map_err(|e| annotate(e, "AF_PACKET socket (needs CAP_NET_RAW)", "for ARP"))?;
    // SAFETY: `fd` is a fresh descriptor that nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// The interface index of `ifname` in the calling thread's namespace.
fn if_index(ifname: &str) -> io::Result<u32> {
    let name = CString::new(ifname)
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "interface name with NUL"))?;
    // SAFETY: `name` is a live NUL-terminated string.
    match unsafe { libc::if_nametoindex(name.as_ptr()) } {
        0 => Err(annotate(io::Error::last_os_error(), "no interface", ifname)),
        i => Ok(i),
    }
}

/// The Ethernet (MAC) address of `ifname`; an error for interfaces without one
/// (TUN, loopback), where there is nothing to announce.
fn hardware_address(ifname: &str) -> io::Result<[u8; 6]> {
    let bytes = ifname.as_bytes();
    // SAFETY: ifreq is plain integers and byte arrays; all-zero is valid.
    let mut req: libc::ifreq = unsafe { std::mem::zeroed() };
    if bytes.is_empty() || bytes.len() >= req.ifr_name.len() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("invalid interface name {ifname:?}"),
        ));
    }
    for (d, s) in req.ifr_name.iter_mut().zip(bytes) {
        *d = *s as libc::c_char;
    }
    let sock = Socket::new(Domain::IPV4, Type::DGRAM.cloexec(), None)?;
    // SAFETY: SIOCGIFHWADDR reads the name from and writes the address into `req`, a
    // live `struct ifreq`, on an open socket.
    cvt(unsafe { libc::ioctl(sock.as_raw_fd(), libc::SIOCGIFHWADDR, &raw mut req) })
        .map_err(|e| annotate(e, "reading the MAC address of", ifname))?;
    // SAFETY: SIOCGIFHWADDR just filled the hardware address member of the union.
    let hw = unsafe { req.ifr_ifru.ifru_hwaddr };
    if hw.sa_family != libc::ARPHRD_ETHER {
        return Err(io::Error::new(
            io::ErrorKind::Unsupported,
            format!("{ifname} is not an Ethernet interface"),
        ));
    }
    let mut mac = [0u8; 6];
    for (d, s) in mac.iter_mut().zip(hw.sa_data) {
        *d = s as u8;
    }
    Ok(mac)
}

/// Adds what was being done, and on which interface, to an OS error.
fn annotate(e: io::Error, what: &str, ifname: &str) -> io::Error {
    io::Error::new(e.kind(), format!("{what} {ifname}: {e}"))
}
