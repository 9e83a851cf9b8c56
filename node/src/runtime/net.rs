//! Addresses and static routes of `st0.N` interfaces (and the routes into the policy
//! tunnel) and the floating addresses of redundant (`rethN`) interfaces, over rtnetlink.
//!
//! The dataplane creates the TUN devices and brings them up; which addresses they carry
//! and which prefixes route into them is configuration, applied here with netlink (the
//! `rtnetlink` crate) rather than by running `ip`, so failures come back as errors with
//! the kernel's reason. Adds use "replace" semantics, so a restart or reload over an
//! existing interface is not an error.

use std::net::IpAddr;

use futures_util::stream::TryStreamExt;
use rtnetlink::RouteMessageBuilder;

use super::TunnelSpec;

/// Applies the queueing, addresses and routes of one tunnel interface.
pub async fn configure(tunnel: &TunnelSpec) -> Result<(), String> {
    configure_link(&tunnel.name(), &tunnel.addresses, &tunnel.routes).await
}

/// Puts `addresses` on the dataplane's device `name` and routes `routes` (destination
/// prefixes) into it: an `st0.N` unit, or the policy tunnel of policy-based VPNs. (The
/// dataplane gave it a `noqueue` root before bringing it up.)
pub async fn configure_link(
    name: &str,
    addresses: &[(IpAddr, u8)],
    routes: &[(IpAddr, u8)],
) -> Result<(), String> {
    if addresses.is_empty() && routes.is_empty() {
        return Ok(());
    }
    let (connection, handle, _) =
        rtnetlink::new_connection().map_err(|e| format!("netlink socket: {e}"))?;
    let task = tokio::spawn(connection);
    let result = apply(&handle, name, addresses, routes).await;
    task.abort();
    result
}

async fn apply(
    handle: &rtnetlink::Handle,
    name: &str,
    addresses: &[(IpAddr, u8)],
    routes: &[(IpAddr, u8)],
) -> Result<(), String> {
    let index = link_index(handle, name).await?;
    for (addr, len) in addresses {
        handle
            .address()
            .add(index, *addr, *len)
            .replace()
            .execute()
            .await
            .map_err(|e| format!("address {addr}/{len}: {e}"))?;
    }
    for (dst, len) in routes {
        handle
            .route()
            .add(route_into(index, *dst, *len)?)
            .replace()
            .execute()
            .await
            .map_err(|e| format!("route {dst}/{len}: {e}"))?;
    }
    Ok(())
}

/// The route of `dst/len` through interface `index`.
fn route_into(
    index: u32,
    dst: IpAddr,
    len: u8,
) -> Result<rtnetlink::packet_route::route::RouteMessage, String> {
    Ok(RouteMessageBuilder::<IpAddr>::new()
        .destination_prefix(dst, len)
        .map_err(|e| format!("route {dst}/{len}: {e:?}"))?
        .output_interface(index)
        .build())
}

/// Moves a running tunnel interface from `old`'s addresses and routes to `new`'s
/// (a reload): adds what is new, deletes what is gone, leaves the rest alone so that
/// traffic on unchanged routes never stops.
pub async fn reconfigure(old: &TunnelSpec, new: &TunnelSpec) -> Result<(), String> {
    if new.ipv6 && !old.ipv6 {
        // The dataplane turned IPv6 off on a unit that carried none; it needs it back
        // before an IPv6 address or route can go on it. (The reverse is left alone: IPv6
        // on a unit without IPv6 configuration costs the kernel some work, nothing else.)
        let path = format!("/proc/sys/net/ipv6/conf/{}/disable_ipv6", new.name());
        std::fs::write(&path, b"0").map_err(|e| format!("turning IPv6 on ({path}): {e}"))?;
    }
    reconfigure_link(
        &new.name(),
        (&old.addresses, &old.routes),
        (&new.addresses, &new.routes),
    )
    .await
}

/// A device's addresses and the destinations routed into it, each (address, prefix
/// length).
pub type LinkState<'a> = (&'a [(IpAddr, u8)], &'a [(IpAddr, u8)]);

/// [`reconfigure`] for the dataplane's device `name`, from `old` to `new`.
pub async fn reconfigure_link(
    name: &str,
    old: LinkState<'_>,
    new: LinkState<'_>,
) -> Result<(), String> {
    let (connection, handle, _) =
        rtnetlink::new_connection().map_err(|e| format!("netlink socket: {e}"))?;
    let task = tokio::spawn(connection);
    let result = async {
        let index = link_index(&handle, name).await?;
        for (dst, len) in old.1.iter().filter(|r| !new.1.contains(r)) {
            handle
                .route()
                .del(route_into(index, *dst, *len)?)
                .execute()
                .await
                .map_err(|e| format!("removing route {dst}/{len}: {e}"))?;
        }
        let gone: Vec<(IpAddr, u8)> = old
            .0
            .iter()
            .filter(|a| !new.0.contains(a))
            .copied()
            .collect();
        remove_addresses(&handle, index, name, &gone).await?;
        apply(&handle, name, new.0, new.1).await
    }
    .await;
    task.abort();
    result
}

/// Adds (`present`) or removes a redundant interface's floating addresses: what moves
/// with a redundancy group. Removing an address that is not there is not an error.
pub async fn set_addresses(
    interface: &str,
    addresses: &[(IpAddr, u8)],
    present: bool,
) -> Result<(), String> {
    let (connection, handle, _) =
        rtnetlink::new_connection().map_err(|e| format!("netlink socket: {e}"))?;
    let task = tokio::spawn(connection);
    let result = async {
        let index = link_index(&handle, interface).await?;
        for (addr, len) in addresses {
            if present {
                handle
                    .address()
                    .add(index, *addr, *len)
                    .replace()
                    .execute()
                    .await
                    .map_err(|e| format!("address {addr}/{len}: {e}"))?;
                continue;
            }
            remove_addresses(&handle, index, interface, &[(*addr, *len)]).await?;
        }
        Ok(())
    }
    .await;
    task.abort();
    result
}

/// Deletes `addresses` from interface `index`; one that is not there is not an error.
async fn remove_addresses(
    handle: &rtnetlink::Handle,
    index: u32,
    interface: &str,
    addresses: &[(IpAddr, u8)],
) -> Result<(), String> {
    for (addr, len) in addresses {
        let mut held = handle
            .address()
            .get()
            .set_link_index_filter(index)
            .set_address_filter(*addr)
            .execute();
        while let Some(msg) = held
            .try_next()
            .await
            .map_err(|e| format!("listing addresses of {interface}: {e}"))?
        {
            handle
                .address()
                .del(msg)
                .execute()
                .await
                .map_err(|e| format!("removing {addr}/{len}: {e}"))?;
        }
    }
    Ok(())
}

async fn link_index(handle: &rtnetlink::Handle, name: &str) -> Result<u32, String> {
    Ok(handle
        .link()
        .get()
        .match_name(name.to_string())
        .execute()
        .try_next()
        .await
        .map_err(|e| format!("looking up {name}: {e}"))?
        .ok_or_else(|| format!("{name} does not exist"))?
        .header
        .index)
}
