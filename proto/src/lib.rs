//! The gateway's management API as generated Rust: messages, `ManagementClient` and the
//! `Management` server trait for package `vpn.management.v1`; and the cluster transport
//! between cluster members (package `vpn.cluster.v1`).
//!
//! This crate holds generated code only, so that orchestrators written in Rust can talk
//! to `vpnd` without depending on the daemon. The daemon's server, its domain mapping
//! and the role checks live in `node::mgmt`; the contract itself, with the meaning of
//! every field, is `management.proto` beside this crate.

/// Package `vpn.management.v1`.
pub mod v1 {
    // prost derives `Debug` for messages, but the generated client and server wrappers
    // come from tonic's templates, which are outside our control.
    #![allow(missing_debug_implementations)]
    tonic::include_proto!("vpn.management.v1");
}

/// Package `vpn.cluster.v1`: the cluster transport that carries Raft messages between the
/// members of a gateway cluster (`sa-sync::transport` serves and calls it).
pub mod cluster {
    /// Version 1 of the cluster transport.
    pub mod v1 {
        // As above: tonic's client and server templates do not derive `Debug`.
        #![allow(missing_debug_implementations)]
        tonic::include_proto!("vpn.cluster.v1");
    }
}
