//! IKEv2 wire format (RFC 7296 §3, RFC 7383 §2.5): parse from bytes and serialize into
//! caller-provided vectors.
//!
//! Parsing never panics and checks every length against its container; payload bodies
//! are typed, except SK/SKF bodies, which only the crypto layer can open.

mod iana;

pub mod auth;
pub mod cert;
pub mod cp;
pub mod delete;
pub mod eap;
pub mod error;
pub mod header;
pub mod id;
pub mod ke;
pub mod message;
mod names;
pub mod nonce;
pub mod notify;
pub mod payload;
mod reader;
pub mod sa;
pub mod sk;
pub mod ts;
pub mod vendor;

#[cfg(test)]
mod tests;

pub use auth::{AuthMethod, AuthPayload};
pub use cert::{CertEncoding, CertPayload, CertReqPayload};
pub use cp::{CfgAttrType, CfgAttribute, CfgType, CpPayload};
pub use delete::DeletePayload;
pub use eap::EapPayload;
pub use error::{EncodeError, ParseError};
pub use header::{ExchangeType, Flags, HEADER_LEN, Header};
pub use id::Identity;
pub use ke::KePayload;
pub use message::{EncryptedSpan, Message, locate_encrypted};
pub use nonce::NoncePayload;
pub use notify::{NotifyPayload, NotifyType};
pub use payload::{Payload, PayloadType, UnknownPayload, parse_chain, write_chain};
pub use sa::{Attribute, Proposal, ProtocolId, SaPayload, Transform, TransformType};
pub use sk::{EncryptedFragment, EncryptedPayload};
pub use ts::{AddrRange, IpSelector, TrafficSelector, TsPayload};
pub use vendor::VendorIdPayload;
