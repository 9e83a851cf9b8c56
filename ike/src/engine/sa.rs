//! One IKE SA, either role, from IKE_SA_INIT to the first child SA (RFC 7296 §1.2).
//!
//! Sans-IO in the style of quinn-proto: datagrams and timer ticks go in through
//! [`IkeSa::handle_datagram`] and [`IkeSa::handle_timeout`]; datagrams, deadlines and
//! events come out through [`IkeSa::poll_transmit`], [`IkeSa::poll_timeout`] and
//! [`IkeSa::poll_event`]. Randomness comes from the RNG given at construction.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::time::Instant;

use rand_core::CryptoRngCore;

use super::auth::{matches, psk_auth};
use super::config::{ChildSuite, IkeConfig, IkeSuite};
use super::error::IkeError;
use super::proposal::{
    accepted_child, accepted_ike, child_offer, choose_child, choose_ike, ike_offer,
};
use super::ts;
use crate::crypto::derive::{ChildKeyLengths, IkeKeyLengths, child_keys, ike_sa_keys, skeyseed};
use crate::crypto::{DhGroup, DhSecret, IkeSaKeys, Integ, SecretBytes, SkCipher};
use crate::wire::{
    AuthMethod, AuthPayload, ExchangeType, Flags, Header, Identity, IpSelector, KePayload, Message,
    NoncePayload, NotifyPayload, NotifyType, Payload, ProtocolId, TsPayload,
};

const NONCE_LEN: usize = 32;

/// A datagram waiting in the caller's buffer after [`IkeSa::poll_transmit`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Transmit {
    pub destination: SocketAddr,
    pub size: usize,
}

/// One direction of a child SA, as the data plane installs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChildSaKeys {
    pub spi: u32,
    pub encr_key: SecretBytes,
    pub integ_key: SecretBytes,
}

/// Everything the data plane needs for an ESP SA pair, in IANA numbers and key bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChildSaInstall {
    pub protocol: ProtocolId,
    /// IANA ENCR id and Key Length attribute (bits), if the cipher has one.
    pub encr_id: u16,
    pub encr_key_bits: Option<u16>,
    /// IANA INTEG id; `None` with an AEAD.
    pub integ_id: Option<u16>,
    pub esn: bool,
    /// Keys include the 4-byte salt for AEADs (RFC 4106 §8.1).
    pub inbound: ChildSaKeys,
    pub outbound: ChildSaKeys,
    pub local_ts: Vec<IpSelector>,
    pub remote_ts: Vec<IpSelector>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// Both sides are authenticated.
    Established { spi_i: u64, spi_r: u64 },
    /// A child SA pair is negotiated and should be installed.
    ChildSaReady(ChildSaInstall),
    /// The SA is dead; nothing more will come out of it.
    Failed(IkeError),
}

/// Keys and transcript shared by every state after IKE_SA_INIT.
struct Keyed {
    suite: IkeSuite,
    keys: IkeSaKeys,
    send: SkCipher,
    recv: SkCipher,
    ni: Vec<u8>,
    nr: Vec<u8>,
    /// The IKE_SA_INIT request and response exactly as sent, signed by AUTH.
    init_request: Vec<u8>,
    init_response: Vec<u8>,
}

/// What IKE_SA_INIT leaves behind for key derivation and AUTH.
struct InitTranscript {
    ni: Vec<u8>,
    nr: Vec<u8>,
    request: Vec<u8>,
    response: Vec<u8>,
}

enum State {
    /// Initiator: waiting for the IKE_SA_INIT response.
    InitSent {
        dh: DhSecret,
        ni: Vec<u8>,
        request: Vec<u8>,
    },
    /// Initiator: waiting for the IKE_AUTH response.
    AuthSent {
        keyed: Box<Keyed>,
        child_spi: u32,
    },
    /// Responder: waiting for IKE_SA_INIT.
    AwaitInit,
    /// Responder: waiting for IKE_AUTH.
    AwaitAuth {
        keyed: Box<Keyed>,
    },
    Established {
        keyed: Box<Keyed>,
    },
    Failed,
}

pub struct IkeSa {
    config: IkeConfig,
    initiator: bool,
    remote: SocketAddr,
    spi_i: u64,
    spi_r: u64,
    state: State,
    rng: Box<dyn CryptoRngCore + Send>,
    outgoing: VecDeque<Vec<u8>>,
    events: VecDeque<Event>,
    /// Our outstanding request, resent on timeout.
    request: Option<Vec<u8>>,
    retransmit_at: Option<Instant>,
    tries: u32,
    /// The last response we sent, by message id, for retransmitted requests.
    last_response: Option<(u32, Vec<u8>)>,
}

impl std::fmt::Debug for IkeSa {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IkeSa")
            .field("initiator", &self.initiator)
            .field("remote", &self.remote)
            .field("spi_i", &self.spi_i)
            .field("spi_r", &self.spi_r)
            .finish_non_exhaustive()
    }
}

fn nonzero_spi(rng: &mut dyn CryptoRngCore) -> u64 {
    loop {
        let spi = rng.next_u64();
        if spi != 0 {
            return spi;
        }
    }
}

fn nonce(rng: &mut dyn CryptoRngCore) -> Vec<u8> {
    let mut n = vec![0u8; NONCE_LEN];
    rng.fill_bytes(&mut n);
    n
}

fn child_spi(rng: &mut dyn CryptoRngCore) -> u32 {
    // SPIs 1-255 are reserved by IANA (RFC 4303 §2.1).
    loop {
        let spi = rng.next_u32();
        if spi > 255 {
            return spi;
        }
    }
}

fn find<'a, T>(
    payloads: &'a [Payload],
    pick: impl Fn(&'a Payload) -> Option<T>,
) -> Result<T, IkeError> {
    let mut found = payloads.iter().filter_map(pick);
    let first = found
        .next()
        .ok_or(IkeError::InvalidSyntax("missing payload"))?;
    if found.next().is_some() {
        return Err(IkeError::InvalidSyntax("repeated payload"));
    }
    Ok(first)
}

fn error_notify(payloads: &[Payload]) -> Option<NotifyType> {
    payloads.iter().find_map(|p| match p {
        Payload::Notify(n) if n.notify_type.is_error() => Some(n.notify_type),
        _ => None,
    })
}

impl IkeSa {
    /// Starts an IKE SA towards `remote` and queues the IKE_SA_INIT request.
    pub fn initiate(
        config: IkeConfig,
        remote: SocketAddr,
        mut rng: Box<dyn CryptoRngCore + Send>,
        now: Instant,
    ) -> Result<Self, IkeError> {
        let first = *config
            .ike_suites
            .first()
            .ok_or(IkeError::NoProposalChosen)?;
        let spi_i = nonzero_spi(rng.as_mut());
        let mut sa = IkeSa {
            config,
            initiator: true,
            remote,
            spi_i,
            spi_r: 0,
            state: State::Failed,
            rng,
            outgoing: VecDeque::new(),
            events: VecDeque::new(),
            request: None,
            retransmit_at: None,
            tries: 0,
            last_response: None,
        };
        sa.send_init(first.dh, now)?;
        Ok(sa)
    }

    /// A responder that waits for an IKE_SA_INIT request from `remote`.
    pub fn respond(
        config: IkeConfig,
        remote: SocketAddr,
        mut rng: Box<dyn CryptoRngCore + Send>,
    ) -> Self {
        let spi_r = nonzero_spi(rng.as_mut());
        IkeSa {
            config,
            initiator: false,
            remote,
            spi_i: 0,
            spi_r,
            state: State::AwaitInit,
            rng,
            outgoing: VecDeque::new(),
            events: VecDeque::new(),
            request: None,
            retransmit_at: None,
            tries: 0,
            last_response: None,
        }
    }

    pub fn is_initiator(&self) -> bool {
        self.initiator
    }

    pub fn spis(&self) -> (u64, u64) {
        (self.spi_i, self.spi_r)
    }

    pub fn is_established(&self) -> bool {
        matches!(self.state, State::Established { .. })
    }

    pub fn is_failed(&self) -> bool {
        matches!(self.state, State::Failed)
    }

    /// The IKE SA's algorithms once IKE_SA_INIT has completed, for status reporting.
    pub fn negotiated_suite(&self) -> Option<IkeSuite> {
        match &self.state {
            State::AuthSent { keyed, .. }
            | State::AwaitAuth { keyed }
            | State::Established { keyed } => Some(keyed.suite),
            State::InitSent { .. } | State::AwaitInit | State::Failed => None,
        }
    }

    /// Our sending SK cipher, so tests can forge well-protected messages.
    #[cfg(test)]
    pub(super) fn send_cipher(&self) -> Option<&SkCipher> {
        match &self.state {
            State::AuthSent { keyed, .. }
            | State::AwaitAuth { keyed }
            | State::Established { keyed } => Some(&keyed.send),
            State::InitSent { .. } | State::AwaitInit | State::Failed => None,
        }
    }

    fn header(&self, exchange: ExchangeType, response: bool, message_id: u32) -> Header {
        Header {
            spi_i: self.spi_i,
            spi_r: self.spi_r,
            minor_version: 0,
            exchange,
            flags: Flags::new(self.initiator, response),
            message_id,
        }
    }

    fn send_init(&mut self, group: DhGroup, now: Instant) -> Result<(), IkeError> {
        let dh = DhSecret::generate(group, self.rng.as_mut())?;
        let ni = nonce(self.rng.as_mut());
        let msg = Message {
            header: self.header(ExchangeType::IkeSaInit, false, 0),
            payloads: vec![
                Payload::Sa(ike_offer(&self.config.ike_suites)),
                Payload::Ke(KePayload {
                    group: group.iana_id(),
                    data: dh.public_value().to_vec(),
                }),
                Payload::Nonce(NoncePayload { data: ni.clone() }),
            ],
        };
        let request = msg.to_bytes()?;
        self.send_request(request.clone(), now);
        self.state = State::InitSent { dh, ni, request };
        Ok(())
    }

    fn send_request(&mut self, bytes: Vec<u8>, now: Instant) {
        self.outgoing.push_back(bytes.clone());
        self.request = Some(bytes);
        self.tries = 1;
        self.arm_retransmit(now);
    }

    fn arm_retransmit(&mut self, now: Instant) {
        let base =
            self.config.retransmit.initial * 2u32.saturating_pow(self.tries.saturating_sub(1));
        // Up to 10% off, so peers that started together do not retransmit in lockstep.
        let jitter = base.mul_f64(f64::from(self.rng.next_u32() % 100) / 1000.0);
        self.retransmit_at = Some(now + (base - jitter));
    }

    fn send_response(&mut self, message_id: u32, bytes: Vec<u8>) {
        self.outgoing.push_back(bytes.clone());
        self.last_response = Some((message_id, bytes));
    }

    /// Moves to `Failed`, reporting the error once.
    fn fail(&mut self, err: IkeError) -> IkeError {
        self.state = State::Failed;
        self.request = None;
        self.retransmit_at = None;
        self.events.push_back(Event::Failed(err.clone()));
        err
    }

    /// Writes the next datagram into `buf` (cleared first).
    pub fn poll_transmit(&mut self, buf: &mut Vec<u8>) -> Option<Transmit> {
        let bytes = self.outgoing.pop_front()?;
        buf.clear();
        buf.extend_from_slice(&bytes);
        Some(Transmit {
            destination: self.remote,
            size: bytes.len(),
        })
    }

    pub fn poll_event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }

    pub fn poll_timeout(&self) -> Option<Instant> {
        self.retransmit_at
    }

    pub fn handle_timeout(&mut self, now: Instant) {
        let Some(at) = self.retransmit_at else {
            return;
        };
        if now < at {
            return;
        }
        if self.tries >= self.config.retransmit.max_tries {
            self.fail(IkeError::Timeout);
            return;
        }
        if let Some(req) = self.request.clone() {
            self.outgoing.push_back(req);
            self.tries += 1;
            self.arm_retransmit(now);
        }
    }

    /// Processes one datagram (without the UDP 4500 non-ESP marker). An `Err` means the
    /// datagram was dropped, or, if [`Self::is_failed`] now holds, that the SA died.
    pub fn handle_datagram(
        &mut self,
        now: Instant,
        from: SocketAddr,
        data: &[u8],
    ) -> Result<(), IkeError> {
        if matches!(self.state, State::Failed) {
            return Err(IkeError::Unexpected("SA has failed"));
        }
        let h = Header::parse(data)?.header;
        if h.flags.initiator() == self.initiator {
            return Err(IkeError::Unexpected("message from our own role"));
        }
        let ours = match self.state {
            State::AwaitInit => true,
            State::InitSent { .. } => h.spi_i == self.spi_i,
            // A retransmitted IKE_SA_INIT still carries a zero responder SPI.
            _ => {
                h.spi_i == self.spi_i
                    && (h.spi_r == self.spi_r
                        || (h.spi_r == 0 && h.message_id == 0 && !h.flags.response()))
            }
        };
        if !ours {
            return Err(IkeError::Unexpected("message for another IKE SA"));
        }
        if !h.flags.response()
            && let Some((id, resp)) = &self.last_response
            && *id == h.message_id
        {
            // A retransmitted request: answer with the cached response, unprocessed.
            self.outgoing.push_back(resp.clone());
            return Ok(());
        }
        self.remote = from;
        let state = std::mem::replace(&mut self.state, State::Failed);
        match (state, h.exchange, h.flags.response()) {
            (State::InitSent { dh, ni, request }, ExchangeType::IkeSaInit, true) => {
                self.on_init_response(now, data, dh, ni, request)
            }
            (State::AuthSent { keyed, child_spi }, ExchangeType::IkeAuth, true) => {
                self.on_auth_response(data, keyed, child_spi)
            }
            (State::AwaitInit, ExchangeType::IkeSaInit, false) => self.on_init_request(data),
            (State::AwaitAuth { keyed }, ExchangeType::IkeAuth, false) => {
                self.on_auth_request(data, keyed)
            }
            (state, _, _) => {
                self.state = state;
                Err(IkeError::Unexpected("message not expected in this state"))
            }
        }
    }

    /// Initiator, IKE_SA_INIT response (RFC 7296 §1.2): check the choice, derive keys,
    /// send IKE_AUTH.
    fn on_init_response(
        &mut self,
        now: Instant,
        data: &[u8],
        dh: DhSecret,
        ni: Vec<u8>,
        request: Vec<u8>,
    ) -> Result<(), IkeError> {
        let restore = |sa: &mut Self, dh, ni, request| {
            sa.state = State::InitSent { dh, ni, request };
        };
        let msg = match Message::parse(data) {
            Ok(m) if m.header.spi_i == self.spi_i && m.header.message_id == 0 => m,
            Ok(_) => {
                restore(self, dh, ni, request);
                return Err(IkeError::Unexpected("IKE_SA_INIT response for another SA"));
            }
            Err(e) => {
                restore(self, dh, ni, request);
                return Err(e.into());
            }
        };
        if let Some(n) = msg.payloads.iter().find_map(|p| match p {
            Payload::Notify(n) if n.notify_type == NotifyType::InvalidKePayload => Some(n),
            _ => None,
        }) {
            // RFC 7296 §1.2: retry with the group the responder asked for, if we offered it.
            let wanted = n
                .data
                .get(..2)
                .and_then(|b| <[u8; 2]>::try_from(b).ok())
                .map(u16::from_be_bytes)
                .and_then(|id| DhGroup::from_iana(id).ok())
                .filter(|g| self.config.ike_suites.iter().any(|s| s.dh == *g) && *g != dh.group());
            return match wanted {
                Some(group) => self.send_init(group, now),
                None => Err(self.fail(IkeError::PeerError(NotifyType::InvalidKePayload))),
            };
        }
        if let Some(err) = error_notify(&msg.payloads) {
            return Err(self.fail(IkeError::PeerError(err)));
        }
        let result = (|| {
            let sa = find(&msg.payloads, |p| match p {
                Payload::Sa(s) => Some(s),
                _ => None,
            })?;
            let suite =
                accepted_ike(sa, &self.config.ike_suites).ok_or(IkeError::NoProposalChosen)?;
            let ke = find(&msg.payloads, |p| match p {
                Payload::Ke(k) => Some(k),
                _ => None,
            })?;
            if ke.group != dh.group().iana_id() || suite.dh != dh.group() {
                return Err(IkeError::InvalidKePayload {
                    group: dh.group().iana_id(),
                });
            }
            let nr = find(&msg.payloads, |p| match p {
                Payload::Nonce(n) => Some(n.data.clone()),
                _ => None,
            })?;
            let g_ir = dh.agree(&ke.data)?;
            self.spi_r = msg.header.spi_r;
            let transcript = InitTranscript {
                ni,
                nr,
                request,
                response: data.to_vec(),
            };
            derive(suite, true, &g_ir, (self.spi_i, self.spi_r), transcript)
        })();
        let keyed = match result {
            Ok(k) => k,
            Err(e) => return Err(self.fail(e)),
        };
        let child_spi = child_spi(self.rng.as_mut());
        let auth = psk_auth(
            keyed.suite.prf,
            &self.config.psk,
            &keyed.init_request,
            &keyed.nr,
            &keyed.keys.sk_pi,
            &self.config.local_id,
        )?;
        let mut payloads = vec![Payload::IdI(self.config.local_id.clone())];
        if let Some(r) = &self.config.remote_id {
            payloads.push(Payload::IdR(r.clone()));
        }
        payloads.extend([
            Payload::Auth(AuthPayload {
                method: AuthMethod::SharedKeyMic,
                data: auth.as_bytes().to_vec(),
            }),
            Payload::Sa(child_offer(&self.config.child_suites, child_spi)),
            Payload::TsI(ts::payload(&self.config.local_ts)),
            Payload::TsR(ts::payload(&self.config.remote_ts)),
        ]);
        let mut out = Vec::new();
        let header = self.header(ExchangeType::IkeAuth, false, 1);
        keyed
            .send
            .seal_payloads(&header, &payloads, self.rng.as_mut(), &mut out)?;
        self.send_request(out, now);
        self.state = State::AuthSent {
            keyed: Box::new(keyed),
            child_spi,
        };
        Ok(())
    }

    /// Responder, IKE_SA_INIT request: choose a suite, answer with our KE and nonce.
    fn on_init_request(&mut self, data: &[u8]) -> Result<(), IkeError> {
        let msg = match Message::parse(data) {
            Ok(m) if m.header.spi_r == 0 && m.header.message_id == 0 => m,
            Ok(_) => {
                self.state = State::AwaitInit;
                return Err(IkeError::Unexpected(
                    "IKE_SA_INIT request with a responder SPI",
                ));
            }
            Err(e) => {
                self.spi_i = Header::parse(data).map_or(0, |r| r.header.spi_i);
                self.answer_init_error(&IkeError::Parse(e.clone()))?;
                return Err(self.fail(e.into()));
            }
        };
        self.spi_i = msg.header.spi_i;
        let outcome = (|| {
            let sa = find(&msg.payloads, |p| match p {
                Payload::Sa(s) => Some(s),
                _ => None,
            })?;
            let (suite, answer) =
                choose_ike(sa, &self.config.ike_suites).ok_or(IkeError::NoProposalChosen)?;
            let ke = find(&msg.payloads, |p| match p {
                Payload::Ke(k) => Some(k),
                _ => None,
            })?;
            if ke.group != suite.dh.iana_id() {
                return Err(IkeError::InvalidKePayload {
                    group: suite.dh.iana_id(),
                });
            }
            let ni = find(&msg.payloads, |p| match p {
                Payload::Nonce(n) => Some(n.data.clone()),
                _ => None,
            })?;
            Ok((suite, answer, ke.data.clone(), ni))
        })();
        let (suite, answer, peer_ke, ni) = match outcome {
            Ok(v) => v,
            Err(e @ IkeError::InvalidKePayload { .. }) => {
                // Not fatal: the initiator retries with the group we named (§1.2).
                self.answer_init_error(&e)?;
                self.last_response = None;
                self.spi_i = 0;
                self.state = State::AwaitInit;
                return Err(e);
            }
            Err(e) => {
                self.answer_init_error(&e)?;
                return Err(self.fail(e));
            }
        };
        let dh = DhSecret::generate(suite.dh, self.rng.as_mut())?;
        let g_ir = match dh.agree(&peer_ke) {
            Ok(g) => g,
            Err(e) => {
                let e = IkeError::from(e);
                self.answer_init_error(&e)?;
                return Err(self.fail(e));
            }
        };
        let nr = nonce(self.rng.as_mut());
        let response = Message {
            header: self.header(ExchangeType::IkeSaInit, true, 0),
            payloads: vec![
                Payload::Sa(answer),
                Payload::Ke(KePayload {
                    group: suite.dh.iana_id(),
                    data: dh.public_value().to_vec(),
                }),
                Payload::Nonce(NoncePayload { data: nr.clone() }),
            ],
        }
        .to_bytes()?;
        let transcript = InitTranscript {
            ni,
            nr,
            request: data.to_vec(),
            response: response.clone(),
        };
        let keyed = derive(suite, false, &g_ir, (self.spi_i, self.spi_r), transcript)?;
        self.send_response(0, response);
        self.state = State::AwaitAuth {
            keyed: Box::new(keyed),
        };
        Ok(())
    }

    fn answer_init_error(&mut self, err: &IkeError) -> Result<(), IkeError> {
        if let Some(ty) = err.notify_type() {
            let msg = Message {
                header: Header {
                    spi_r: 0,
                    ..self.header(ExchangeType::IkeSaInit, true, 0)
                },
                payloads: vec![Payload::Notify(NotifyPayload::new(ty, err.notify_data()))],
            };
            self.send_response(0, msg.to_bytes()?);
        }
        Ok(())
    }

    /// Responder, IKE_AUTH request: authenticate the initiator, pick the child SA,
    /// answer and report both SAs.
    fn on_auth_request(&mut self, data: &[u8], keyed: Box<Keyed>) -> Result<(), IkeError> {
        let (header, payloads) = match keyed.recv.open_payloads(data) {
            Ok(v) if v.0.message_id == 1 => v,
            Ok(_) => {
                self.state = State::AwaitAuth { keyed };
                return Err(IkeError::Unexpected("IKE_AUTH with a wrong message id"));
            }
            // Undecryptable messages are dropped silently and the SA waits on (§2.21.2).
            Err(e) => {
                self.state = State::AwaitAuth { keyed };
                return Err(e.into());
            }
        };
        match self.authorize_initiator(&payloads, &keyed) {
            Ok((answer, install)) => {
                let mut out = Vec::new();
                keyed.send.seal_payloads(
                    &self.header(ExchangeType::IkeAuth, true, header.message_id),
                    &answer,
                    self.rng.as_mut(),
                    &mut out,
                )?;
                self.send_response(header.message_id, out);
                self.events.push_back(Event::Established {
                    spi_i: self.spi_i,
                    spi_r: self.spi_r,
                });
                self.events.push_back(Event::ChildSaReady(install));
                self.state = State::Established { keyed };
                Ok(())
            }
            Err(e) => {
                let notify = e.notify_type().unwrap_or(NotifyType::AuthenticationFailed);
                let mut out = Vec::new();
                keyed.send.seal_payloads(
                    &self.header(ExchangeType::IkeAuth, true, header.message_id),
                    &[Payload::Notify(NotifyPayload::new(notify, e.notify_data()))],
                    self.rng.as_mut(),
                    &mut out,
                )?;
                self.send_response(header.message_id, out);
                Err(self.fail(e))
            }
        }
    }

    fn authorize_initiator(
        &mut self,
        payloads: &[Payload],
        keyed: &Keyed,
    ) -> Result<(Vec<Payload>, ChildSaInstall), IkeError> {
        let id_i = find(payloads, |p| match p {
            Payload::IdI(id) => Some(id),
            _ => None,
        })?;
        let auth = payloads.iter().find_map(|p| match p {
            Payload::Auth(a) => Some(a),
            _ => None,
        });
        // No AUTH payload means the initiator asks for EAP (RFC 7296 §2.16).
        let auth = auth.ok_or(IkeError::EapNotSupported)?;
        self.check_peer(
            id_i,
            auth,
            keyed,
            &keyed.init_request,
            &keyed.nr,
            &keyed.keys.sk_pi,
        )?;

        let sa = find(payloads, |p| match p {
            Payload::Sa(s) => Some(s),
            _ => None,
        })?;
        let our_spi = child_spi(self.rng.as_mut());
        let (suite, peer_spi, answer_sa) = choose_child(sa, &self.config.child_suites, our_spi)
            .ok_or(IkeError::NoProposalChosen)?;
        let (tsi, tsr) = ts_pair(payloads)?;
        let remote_ts = ts::narrow(tsi, &self.config.remote_ts);
        let local_ts = ts::narrow(tsr, &self.config.local_ts);
        if remote_ts.is_empty() || local_ts.is_empty() {
            return Err(IkeError::TsUnacceptable);
        }
        let install = child_install(
            keyed,
            suite,
            false,
            our_spi,
            peer_spi,
            local_ts.clone(),
            remote_ts.clone(),
        )?;
        let auth = psk_auth(
            keyed.suite.prf,
            &self.config.psk,
            &keyed.init_response,
            &keyed.ni,
            &keyed.keys.sk_pr,
            &self.config.local_id,
        )?;
        let answer = vec![
            Payload::IdR(self.config.local_id.clone()),
            Payload::Auth(AuthPayload {
                method: AuthMethod::SharedKeyMic,
                data: auth.as_bytes().to_vec(),
            }),
            Payload::Sa(answer_sa),
            Payload::TsI(ts::payload(&remote_ts)),
            Payload::TsR(ts::payload(&local_ts)),
        ];
        Ok((answer, install))
    }

    fn check_peer(
        &self,
        id: &Identity,
        auth: &AuthPayload,
        keyed: &Keyed,
        real_message: &[u8],
        our_nonce: &[u8],
        sk_p: &SecretBytes,
    ) -> Result<(), IkeError> {
        if self
            .config
            .remote_id
            .as_ref()
            .is_some_and(|want| want != id)
        {
            return Err(IkeError::AuthenticationFailed);
        }
        if auth.method != AuthMethod::SharedKeyMic {
            return Err(IkeError::AuthenticationFailed);
        }
        let expected = psk_auth(
            keyed.suite.prf,
            &self.config.psk,
            real_message,
            our_nonce,
            sk_p,
            id,
        )?;
        if !matches(&expected, &auth.data) {
            return Err(IkeError::AuthenticationFailed);
        }
        Ok(())
    }

    /// Initiator, IKE_AUTH response: authenticate the responder and take its choice.
    fn on_auth_response(
        &mut self,
        data: &[u8],
        keyed: Box<Keyed>,
        child_spi: u32,
    ) -> Result<(), IkeError> {
        let payloads = match keyed.recv.open_payloads(data) {
            Ok((h, p)) if h.message_id == 1 => p,
            Ok(_) => {
                self.state = State::AuthSent { keyed, child_spi };
                return Err(IkeError::Unexpected(
                    "IKE_AUTH response with a wrong message id",
                ));
            }
            Err(e) => {
                self.state = State::AuthSent { keyed, child_spi };
                return Err(e.into());
            }
        };
        self.request = None;
        self.retransmit_at = None;
        if payloads.iter().any(|p| matches!(p, Payload::Eap(_))) {
            return Err(self.fail(IkeError::EapNotSupported));
        }
        if let Some(err) = error_notify(&payloads) {
            return Err(self.fail(IkeError::PeerError(err)));
        }
        let result = (|| {
            let id_r = find(&payloads, |p| match p {
                Payload::IdR(id) => Some(id),
                _ => None,
            })?;
            let auth = find(&payloads, |p| match p {
                Payload::Auth(a) => Some(a),
                _ => None,
            })?;
            self.check_peer(
                id_r,
                auth,
                &keyed,
                &keyed.init_response,
                &keyed.ni,
                &keyed.keys.sk_pr,
            )?;
            let sa = find(&payloads, |p| match p {
                Payload::Sa(s) => Some(s),
                _ => None,
            })?;
            let (suite, peer_spi) =
                accepted_child(sa, &self.config.child_suites).ok_or(IkeError::NoProposalChosen)?;
            let (tsi, tsr) = ts_pair(&payloads)?;
            let local_ts =
                ts::within(tsi, &self.config.local_ts).ok_or(IkeError::TsUnacceptable)?;
            let remote_ts =
                ts::within(tsr, &self.config.remote_ts).ok_or(IkeError::TsUnacceptable)?;
            child_install(
                &keyed, suite, true, child_spi, peer_spi, local_ts, remote_ts,
            )
        })();
        match result {
            Ok(install) => {
                self.events.push_back(Event::Established {
                    spi_i: self.spi_i,
                    spi_r: self.spi_r,
                });
                self.events.push_back(Event::ChildSaReady(install));
                self.state = State::Established { keyed };
                Ok(())
            }
            Err(e) => Err(self.fail(e)),
        }
    }
}

fn ts_pair(payloads: &[Payload]) -> Result<(&TsPayload, &TsPayload), IkeError> {
    let tsi = find(payloads, |p| match p {
        Payload::TsI(t) => Some(t),
        _ => None,
    })?;
    let tsr = find(payloads, |p| match p {
        Payload::TsR(t) => Some(t),
        _ => None,
    })?;
    Ok((tsi, tsr))
}

/// SKEYSEED, the seven keys and the two SK ciphers of a fresh IKE SA.
fn derive(
    suite: IkeSuite,
    initiator: bool,
    g_ir: &SecretBytes,
    (spi_i, spi_r): (u64, u64),
    t: InitTranscript,
) -> Result<Keyed, IkeError> {
    let InitTranscript {
        ni,
        nr,
        request: init_request,
        response: init_response,
    } = t;
    let seed = skeyseed(suite.prf, &ni, &nr, g_ir.as_bytes());
    let lengths = IkeKeyLengths {
        integ: suite.integ.map_or(0, Integ::key_len),
        encr: suite.encr.key_material_len(),
    };
    let keys = ike_sa_keys(suite.prf, &seed, &ni, &nr, spi_i, spi_r, lengths)?;
    let cipher_i = SkCipher::new(
        suite.encr,
        suite.integ,
        keys.sk_ei.clone(),
        keys.sk_ai.clone(),
    )?;
    let cipher_r = SkCipher::new(
        suite.encr,
        suite.integ,
        keys.sk_er.clone(),
        keys.sk_ar.clone(),
    )?;
    let (send, recv) = if initiator {
        (cipher_i, cipher_r)
    } else {
        (cipher_r, cipher_i)
    };
    Ok(Keyed {
        suite,
        keys,
        send,
        recv,
        ni,
        nr,
        init_request,
        init_response,
    })
}

/// KEYMAT for the child SA created with IKE_AUTH (no PFS, RFC 7296 §2.17).
fn child_install(
    keyed: &Keyed,
    suite: ChildSuite,
    initiator: bool,
    our_spi: u32,
    peer_spi: u32,
    local_ts: Vec<IpSelector>,
    remote_ts: Vec<IpSelector>,
) -> Result<ChildSaInstall, IkeError> {
    let lengths = ChildKeyLengths {
        encr: suite.encr.key_material_len(),
        integ: suite.integ.map_or(0, Integ::key_len),
    };
    let k = child_keys(
        keyed.suite.prf,
        &keyed.keys.sk_d,
        None,
        &keyed.ni,
        &keyed.nr,
        lengths,
    )?;
    // Inbound traffic is protected with the keys of the peer's direction.
    let (inbound, outbound) = if initiator {
        ((k.encr_r, k.integ_r), (k.encr_i, k.integ_i))
    } else {
        ((k.encr_i, k.integ_i), (k.encr_r, k.integ_r))
    };
    Ok(ChildSaInstall {
        protocol: ProtocolId::Esp,
        encr_id: suite.encr.iana_id(),
        encr_key_bits: suite.encr.key_bits(),
        integ_id: suite.integ.map(Integ::iana_id),
        esn: suite.esn,
        inbound: ChildSaKeys {
            spi: our_spi,
            encr_key: inbound.0,
            integ_key: inbound.1,
        },
        outbound: ChildSaKeys {
            spi: peer_spi,
            encr_key: outbound.0,
            integ_key: outbound.1,
        },
        local_ts,
        remote_ts,
    })
}
