//! Link-level set-up and removal of the dataplane's TUN devices, over rtnetlink.
//!
//! Why a `noqueue` root, set before link up: a multi-queue TUN device has 256 transmit
//! queues, and bringing it up with the default qdiscs gives it an `mq` root with a
//! `pfifo_fast` (three packet rings) on every queue: about 2 MB of unreclaimable kernel
//! memory and ~7 ms of a core per st0 unit (issue 4's scale test ran a 24 GB machine out
//! of memory at about 6,500 units; 2,000 units took 18 s to start, 1.7 s without them).
//! Those qdiscs would only hold memory: the TUN device queues packets in its own ring per
//! queue (for the worker to read) and drops when it is full, and nothing shapes traffic
//! into a tunnel (WireGuard's interfaces are `noqueue` too). A device whose root is set
//! when it comes up keeps it, so no default qdisc is ever allocated. `txqueuelen 0` would
//! give `noqueue` as well, but tun sizes its per-queue rings by it, so every packet would
//! then be dropped.
//!
//! Why an interface group: the kernel unregisters a TUN device when its last queue is
//! closed, one device at a time with an RCU grace period each (~20 ms), so a process
//! with 2,000 st0 units took 42 s to exit. Deleting a group (`ip link delete group G`)
//! unregisters all its devices in one batch; the dataplane puts its devices in a group of
//! their own and deletes it at shutdown.

use std::io;

use netlink_packet_core::{
    NLM_F_ACK, NLM_F_CREATE, NLM_F_REPLACE, NLM_F_REQUEST, NetlinkMessage, NetlinkPayload,
};
use netlink_packet_route::RouteNetlinkMessage;
use netlink_packet_route::link::{LinkAttribute, LinkMessage};
use netlink_packet_route::tc::{TcAttribute, TcHandle, TcMessage};
use netlink_sys::{Socket, SocketAddr, protocols::NETLINK_ROUTE};

/// `tc qdisc replace dev IFINDEX root noqueue`, in the calling thread's network namespace.
pub fn set_noqueue(ifindex: u32) -> io::Result<()> {
    let index = i32::try_from(ifindex)
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "interface index"))?;
    let mut tc = TcMessage::with_index(index);
    tc.header.parent = TcHandle::ROOT;
    tc.attributes.push(TcAttribute::Kind("noqueue".into()));
    request(
        RouteNetlinkMessage::NewQueueDiscipline(tc),
        NLM_F_CREATE | NLM_F_REPLACE,
    )
}

/// `ip link set dev IFINDEX group GROUP`.
pub fn set_group(ifindex: u32, group: u32) -> io::Result<()> {
    let mut link = LinkMessage::default();
    link.header.index = ifindex;
    link.attributes.push(LinkAttribute::Group(group));
    request(RouteNetlinkMessage::SetLink(link), 0)
}

/// `ip link delete group GROUP`: every device of the group, in one batch. A group with
/// no device left is not an error.
pub fn delete_group(group: u32) -> io::Result<()> {
    let mut link = LinkMessage::default();
    link.attributes.push(LinkAttribute::Group(group));
    match request(RouteNetlinkMessage::DelLink(link), 0) {
        Err(e) if e.raw_os_error() == Some(libc::ENODEV) => Ok(()),
        other => other,
    }
}

/// Sends one request and waits for its acknowledgement.
fn request(message: RouteNetlinkMessage, flags: u16) -> io::Result<()> {
    let mut req = NetlinkMessage::from(message);
    req.header.flags = NLM_F_REQUEST | NLM_F_ACK | flags;
    req.header.sequence_number = 1;
    req.finalize();
    let mut out = vec![0; req.buffer_len()];
    req.serialize(&mut out);

    let mut socket = Socket::new(NETLINK_ROUTE)?;
    socket.bind_auto()?;
    socket.connect(&SocketAddr::new(0, 0))?;
    socket.send(&out, 0)?;
    // The kernel answers a request with exactly one acknowledgement (an error message
    // whose code is 0 on success); nothing else is subscribed on this socket.
    let mut answer = Vec::with_capacity(8192);
    socket.recv(&mut answer, 0)?;
    let reply = NetlinkMessage::<RouteNetlinkMessage>::deserialize(&answer)
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e.to_string()))?;
    match reply.payload {
        NetlinkPayload::Error(e) if e.code.is_some() => Err(e.to_io()),
        NetlinkPayload::Error(_) => Ok(()),
        other => Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("unexpected netlink answer {}", other.message_type()),
        )),
    }
}
