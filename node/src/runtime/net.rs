//! Addresses and static routes of `st0.N` interfaces and the floating addresses of
//! redundant (`rethN`) interfaces, over rtnetlink.
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

/// Applies the addresses and routes of one tunnel interface.
pub async fn configure(tunnel: &TunnelSpec) -> Result<(), String> {
    if tunnel.addresses.is_empty() && tunnel.routes.is_empty() {
        return Ok(());
    }
    let (connection, handle, _) =
        rtnetlink::new_connection().map_err(|e| format!("netlink socket: {e}"))?;
    let task = tokio::spawn(connection);
    let result = apply(&handle, tunnel).await;
    task.abort();
    result
}

async fn apply(handle: &rtnetlink::Handle, tunnel: &TunnelSpec) -> Result<(), String> {
    let index = link_index(handle, &tunnel.name()).await?;
    for (addr, len) in &tunnel.addresses {
        handle
            .address()
            .add(index, *addr, *len)
            .replace()
            .execute()
            .await
            .map_err(|e| format!("address {addr}/{len}: {e}"))?;
    }
    for (dst, len) in &tunnel.routes {
        let route = RouteMessageBuilder::<IpAddr>::new()
            .destination_prefix(*dst, *len)
            .map_err(|e| format!("route {dst}/{len}: {e:?}"))?
            .output_interface(index)
            .build();
        handle
            .route()
            .add(route)
            .replace()
            .execute()
            .await
            .map_err(|e| format!("route {dst}/{len}: {e}"))?;
    }
    Ok(())
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
    .await;
    task.abort();
    result
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
