//! Stateless cookies against IKE_SA_INIT floods (RFC 7296 §2.6).
//!
//! Like quinn's `Endpoint` answering with a Retry, the daemon decides when to demand
//! cookies (when half-open SAs exceed a threshold) and calls
//! [`CookieResponder::check_or_challenge`] before creating any per-SA state.

use std::net::{IpAddr, SocketAddr};

use rand_core::CryptoRngCore;
use ring::hmac;
use subtle::ConstantTimeEq;
use zeroize::Zeroizing;

use crate::wire::{ExchangeType, Flags, Header, Message, NotifyPayload, NotifyType, Payload};

/// What to do with an IKE_SA_INIT request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// The request carries a valid cookie: hand it to a new responder `IkeSa`.
    Proceed,
    /// Send this datagram (an IKE_SA_INIT response with only N(COOKIE)) back to the
    /// sender and keep no state.
    Challenge(Vec<u8>),
    /// Not an IKE_SA_INIT request we can parse: drop it.
    Drop,
}

/// Cookie = version (2 octets) | HMAC-SHA-256(secret of that version, Ni | IPi | SPIi).
///
/// The previous secret stays valid after [`Self::rotate`], so an initiator that got a
/// cookie just before the rotation is not challenged twice.
pub struct CookieResponder {
    version: u16,
    current: Zeroizing<[u8; 32]>,
    previous: Option<Zeroizing<[u8; 32]>>,
}

impl std::fmt::Debug for CookieResponder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CookieResponder")
            .field("version", &self.version)
            .finish_non_exhaustive()
    }
}

fn secret(rng: &mut dyn CryptoRngCore) -> Zeroizing<[u8; 32]> {
    let mut s = Zeroizing::new([0u8; 32]);
    rng.fill_bytes(s.as_mut());
    s
}

impl CookieResponder {
    pub fn new(rng: &mut dyn CryptoRngCore) -> Self {
        CookieResponder {
            version: 0,
            current: secret(rng),
            previous: None,
        }
    }

    /// Starts a new secret; the daemon calls this periodically (RFC 7296 §2.6 suggests
    /// regenerating it often).
    pub fn rotate(&mut self, rng: &mut dyn CryptoRngCore) {
        let old = std::mem::replace(&mut self.current, secret(rng));
        self.previous = Some(old);
        self.version = self.version.wrapping_add(1);
    }

    fn cookie(&self, version: u16, key: &[u8; 32], ni: &[u8], ip: IpAddr, spi_i: u64) -> Vec<u8> {
        let key = hmac::Key::new(hmac::HMAC_SHA256, key);
        let mut ctx = hmac::Context::with_key(&key);
        ctx.update(ni);
        match ip {
            IpAddr::V4(a) => ctx.update(&a.octets()),
            IpAddr::V6(a) => ctx.update(&a.octets()),
        }
        ctx.update(&spi_i.to_be_bytes());
        let mut out = version.to_be_bytes().to_vec();
        out.extend_from_slice(ctx.sign().as_ref());
        out
    }

    pub fn check_or_challenge(&self, datagram: &[u8], from: SocketAddr) -> Decision {
        let Ok(msg) = Message::parse(datagram) else {
            return Decision::Drop;
        };
        let h = msg.header;
        if h.exchange != ExchangeType::IkeSaInit
            || h.flags.response()
            || h.spi_r != 0
            || h.message_id != 0
        {
            return Decision::Drop;
        }
        let Some(ni) = msg.payloads.iter().find_map(|p| match p {
            Payload::Nonce(n) => Some(n.data.as_slice()),
            _ => None,
        }) else {
            return Decision::Drop;
        };
        // RFC 7296 §2.6: the COOKIE notify must be the first payload.
        if let Some(Payload::Notify(n)) = msg.payloads.first()
            && n.notify_type == NotifyType::Cookie
            && let Some((v, _)) = n.data.split_first_chunk::<2>()
        {
            let v = u16::from_be_bytes(*v);
            let key = if v == self.version {
                Some(&self.current)
            } else if v == self.version.wrapping_sub(1) {
                self.previous.as_ref()
            } else {
                None
            };
            if let Some(key) = key {
                let want = self.cookie(v, key, ni, from.ip(), h.spi_i);
                if bool::from(want.as_slice().ct_eq(&n.data)) {
                    return Decision::Proceed;
                }
            }
        }
        let cookie = self.cookie(self.version, &self.current, ni, from.ip(), h.spi_i);
        let answer = Message {
            header: Header {
                spi_i: h.spi_i,
                spi_r: 0,
                minor_version: 0,
                exchange: ExchangeType::IkeSaInit,
                flags: Flags::new(false, true),
                message_id: 0,
            },
            payloads: vec![Payload::Notify(NotifyPayload::new(
                NotifyType::Cookie,
                cookie,
            ))],
        };
        match answer.to_bytes() {
            Ok(bytes) => Decision::Challenge(bytes),
            Err(_) => Decision::Drop,
        }
    }
}
