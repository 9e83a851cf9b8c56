//! The ESP/AH packet engine of the gateway.
//!
//! Two layers live here. The sans-IO core (`crypto`, `replay`, `sa`, `esp`, `ah`, `ip`,
//! `frag`, `spd`, `sad`, `engine`) transforms packets held in caller-owned [`buf::PacketBuf`]s
//! and never touches a socket or a clock of its own, so every transform is unit- and
//! property-testable. The I/O layer (`io`, `worker`) runs that core on SPU worker threads
//! over TUN devices, UDP 4500 and raw ESP/AH sockets.
//!
//! This crate knows nothing about IKE or the cluster: SAs arrive as IANA transform numbers
//! and key bytes, which is the only vocabulary shared with the `ike` crate.

pub mod ah;
pub mod buf;
pub mod crypto;
pub mod drop;
pub mod engine;
pub mod esp;
pub mod fence;
pub mod frag;
pub mod gso;
pub mod io;
pub mod ip;
pub mod replay;
pub mod sa;
pub mod sad;
pub mod selector;
pub mod spd;
pub mod udp_encap;
pub mod worker;
