//! IKE_SA_INIT and IKE_AUTH in both roles (RFC 7296 §1.2), with COOKIE and
//! INVALID_KE_PAYLOAD retries, NAT detection, fragmentation negotiation, the
//! configuration payload, and PSK or certificate authentication.
//!
//! Certificates (RFC 7296 §3.6, §3.7, RFC 7427): when we authenticate the peer by
//! certificate we announce SIGNATURE_HASH_ALGORITHMS in IKE_SA_INIT and send CERTREQ
//! for our CAs, in the IKE_SA_INIT response as a responder and in the IKE_AUTH request
//! as an initiator (where RFC 7296 §1.2 puts it). When we authenticate by certificate we
//! send our chain in CERT payloads, end-entity first, in IKE_AUTH, whether or not the
//! peer asked for it.

use std::net::{Ipv4Addr, SocketAddr};
use std::time::Instant;

use super::auth::{
    AuthInput, group_identity_matches, identity_matches, make_auth, verify_peer_auth,
};
use super::config::{ChildConfig, LocalAuth, PeerAuth};
use super::error::IkeError;
use super::keys::{ChildParams, InitTranscript, Keyed, child_install, derive};
use super::mode;
use super::natt::{NAT_T_PORT, NatStatus, natd_payloads};
use super::pool::Lease;
use super::proposal::{
    accepted_child, accepted_ike, child_mismatch, child_offer, choose_child, choose_ike,
    ike_mismatch, ike_offer,
};
use super::sa::{
    ActiveKind, ChildSaInstall, Deferred, Event, IkeSa, Phase, Session, child_spi, error_notify,
    error_payload, find, nonce, notify_of, ts_pair, wanted_group,
};
use super::ts;
use crate::cert::{certreq_hashes, supported_hashes};
use crate::crypto::{DhGroup, DhSecret};
use crate::wire::{
    AddrRange, AuthPayload, CertEncoding, CertReqPayload, CfgAttrType, CfgAttribute, CfgType,
    CpPayload, ExchangeType, Flags, Header, Identity, IpSelector, KePayload, Message, NoncePayload,
    NotifyPayload, NotifyType, Payload,
};

impl IkeSa {
    // ---- IKE_SA_INIT ----

    fn init_header(&self, response: bool) -> Header {
        Header {
            spi_i: self.spi_i,
            spi_r: if response { self.spi_r } else { 0 },
            minor_version: 0,
            exchange: ExchangeType::IkeSaInit,
            flags: Flags::new(!response, response),
            message_id: 0,
        }
    }

    /// Sends IKE_SA_INIT. A retry after a COOKIE keeps its KE and nonce (`keep`): the
    /// cookie covers Ni and RFC 7296 §2.6 wants the other payloads unchanged.
    pub(super) fn send_init(
        &mut self,
        group: DhGroup,
        keep: Option<(DhSecret, Vec<u8>)>,
        cookie: Option<Vec<u8>>,
        cookies: u8,
        now: Instant,
    ) -> Result<(), IkeError> {
        let (dh, ni) = match keep {
            Some(k) => k,
            None => (
                DhSecret::generate_ephemeral(group, self.rng.as_mut())?,
                nonce(self.rng.as_mut()),
            ),
        };
        let mut payloads = Vec::new();
        if let Some(c) = cookie {
            // RFC 7296 §2.6: the COOKIE notify comes first.
            payloads.push(Payload::Notify(NotifyPayload::new(NotifyType::Cookie, c)));
        }
        payloads.extend([
            Payload::Sa(ike_offer(&self.config.ike_suites, None)),
            Payload::Ke(KePayload {
                group: group.iana_id(),
                data: dh.public_value().to_vec(),
            }),
            Payload::Nonce(NoncePayload { data: ni.clone() }),
        ]);
        payloads.extend(natd_payloads(
            (self.spi_i, 0),
            self.local,
            self.remote,
            self.config.force_encap,
            self.rng.as_mut(),
        ));
        if self.config.fragmentation {
            payloads.push(Payload::Notify(NotifyPayload::new(
                NotifyType::Ikev2FragmentationSupported,
                vec![],
            )));
        }
        payloads.extend(self.hash_algorithms_notify());
        let request = Message {
            header: self.init_header(false),
            payloads,
        }
        .to_bytes()?;
        self.outgoing.push_back(request.clone());
        let at = now + self.backoff(1);
        self.phase = Phase::InitSent {
            dh,
            ni,
            request,
            tries: 1,
            at,
            cookies,
        };
        Ok(())
    }

    pub(super) fn handle_init(
        &mut self,
        now: Instant,
        from: SocketAddr,
        to: SocketAddr,
        data: &[u8],
        h: Header,
    ) -> Result<(), IkeError> {
        match (&self.phase, h.flags.response()) {
            (Phase::InitSent { .. }, true)
                if h.spi_i == self.spi_i && h.message_id == 0 && !h.flags.initiator() =>
            {
                self.on_init_response(now, from, to, data)
            }
            (Phase::AwaitInit, false) if h.spi_r == 0 && h.message_id == 0 => {
                self.on_init_request(now, from, to, data)
            }
            (_, false) if h.spi_i == self.spi_i && h.spi_r == 0 && h.message_id == 0 => {
                // A retransmitted IKE_SA_INIT: the cached answer, unprocessed.
                let cached = self
                    .init_response
                    .clone()
                    .ok_or(IkeError::Unexpected("IKE_SA_INIT for another SA"))?;
                self.outgoing.push_back(cached);
                Ok(())
            }
            _ => Err(IkeError::Unexpected("IKE_SA_INIT not expected")),
        }
    }

    /// Initiator, IKE_SA_INIT response (RFC 7296 §1.2): check the choice, derive keys,
    /// detect NATs, send IKE_AUTH.
    fn on_init_response(
        &mut self,
        now: Instant,
        from: SocketAddr,
        to: SocketAddr,
        data: &[u8],
    ) -> Result<(), IkeError> {
        let msg = Message::parse(data)?;
        let Phase::InitSent { dh, cookies, .. } = &self.phase else {
            return Err(IkeError::Unexpected("IKE_SA_INIT response"));
        };
        let (group, cookies) = (dh.group(), *cookies);
        if let Some(n) = notify_of(&msg.payloads, NotifyType::Cookie) {
            // RFC 7296 §2.6: retry with the cookie, a bounded number of times.
            if cookies >= 2 {
                return Err(self.fail(IkeError::PeerError(NotifyType::Cookie)));
            }
            let cookie = n.data.clone();
            let Phase::InitSent { dh, ni, .. } =
                std::mem::replace(&mut self.phase, Phase::AwaitInit)
            else {
                return Err(IkeError::Unexpected("IKE_SA_INIT response"));
            };
            return self.send_init(group, Some((dh, ni)), Some(cookie), cookies + 1, now);
        }
        if let Some(n) = notify_of(&msg.payloads, NotifyType::InvalidKePayload) {
            // RFC 7296 §1.2: retry with the group the responder asked for, if we offered it.
            let wanted = wanted_group(n)
                .filter(|g| self.config.ike_suites.iter().any(|s| s.dh == *g) && *g != group);
            return match wanted {
                Some(g) => self.send_init(g, None, None, cookies, now),
                None => Err(self.fail(IkeError::PeerError(NotifyType::InvalidKePayload))),
            };
        }
        if let Some(err) = error_notify(&msg.payloads) {
            return Err(self.fail(IkeError::PeerError(err)));
        }
        let Phase::InitSent {
            dh, ni, request, ..
        } = std::mem::replace(&mut self.phase, Phase::Auth)
        else {
            return Err(IkeError::Unexpected("IKE_SA_INIT response"));
        };
        let result = (|| {
            let sa = find(&msg.payloads, |p| match p {
                Payload::Sa(s) => Some(s),
                _ => None,
            })?;
            let (suite, _) = accepted_ike(sa, &self.config.ike_suites, false)
                .ok_or_else(|| ike_mismatch(sa, &self.config.ike_suites))?;
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
            let transcript = InitTranscript {
                ni,
                nr,
                request,
                response: data.to_vec(),
            };
            derive(
                suite,
                true,
                &g_ir,
                (self.spi_i, msg.header.spi_r),
                transcript,
            )
        })();
        let keyed = match result {
            Ok(k) => k,
            Err(e) => return Err(self.fail(e)),
        };
        self.spi_r = msg.header.spi_r;
        self.negotiate_extensions(&msg.payloads, (self.spi_i, self.spi_r), from, to);
        if self.encap {
            // Float to 4500 for IKE_AUTH onwards (RFC 7296 §2.23).
            self.local.set_port(NAT_T_PORT);
            self.remote.set_port(NAT_T_PORT);
            self.floated = true;
        }
        let mut sess = Session::new(true, (self.spi_i, self.spi_r), keyed);
        self.report_keys(&sess);
        // IKE_SA_INIT used message ID 0 of the initiator's direction.
        sess.next_id = 1;
        let r = self.send_auth(&mut sess, now);
        self.session = Some(sess);
        r.map_err(|e| self.fail(e))
    }

    /// NAT-D and fragmentation support from the peer's IKE_SA_INIT message.
    fn negotiate_extensions(
        &mut self,
        payloads: &[Payload],
        spis: (u64, u64),
        from: SocketAddr,
        to: SocketAddr,
    ) {
        if let Some(nat) = NatStatus::detect(payloads, spis, from, to) {
            self.nat = nat;
            self.encap = nat.any() || self.config.force_encap;
            if self.encap {
                self.events.push_back(Event::NatDetected(nat));
            }
        }
        self.fragmentation = self.config.fragmentation
            && notify_of(payloads, NotifyType::Ikev2FragmentationSupported).is_some();
        self.peer_hashes = notify_of(payloads, NotifyType::SignatureHashAlgorithms).map(|n| {
            n.data
                .chunks_exact(2)
                .map(|h| u16::from_be_bytes([h[0], h[1]]))
                .collect()
        });
    }

    /// SIGNATURE_HASH_ALGORITHMS (RFC 7427 §4): the hashes we verify signatures with,
    /// announced when we authenticate the peer by certificate.
    fn hash_algorithms_notify(&self) -> Option<Payload> {
        matches!(self.config.peer_auth, PeerAuth::Certificate(_)).then(|| {
            let data = supported_hashes()
                .iter()
                .flat_map(|h| h.to_be_bytes())
                .collect();
            Payload::Notify(NotifyPayload::new(
                NotifyType::SignatureHashAlgorithms,
                data,
            ))
        })
    }

    /// CERTREQ naming our CAs by the SHA-1 of their public keys (RFC 7296 §3.7), when
    /// we authenticate the peer by certificate.
    fn certreq(&self) -> Option<Payload> {
        match &self.config.peer_auth {
            PeerAuth::Certificate(store) => Some(Payload::CertReq(CertReqPayload {
                encoding: CertEncoding::X509Signature,
                authorities: certreq_hashes(store),
            })),
            PeerAuth::Psk(_) => None,
        }
    }

    /// Our CERT payloads, end-entity first, when we authenticate by certificate.
    fn cert_payloads(&self) -> Vec<Payload> {
        match &self.config.auth {
            LocalAuth::Certificate(c) => c.cert_payloads().into_iter().map(Payload::Cert).collect(),
            LocalAuth::Psk(_) => Vec::new(),
        }
    }

    fn send_auth(&mut self, sess: &mut Session, now: Instant) -> Result<(), IkeError> {
        let child_spi = child_spi(self.rng.as_mut());
        let keyed = &sess.keyed;
        let auth = make_auth(
            &self.config.auth,
            &AuthInput {
                prf: keyed.suite.prf,
                real_message: &keyed.init_request,
                nonce: &keyed.nr,
                sk_p: &keyed.keys.sk_pi,
                id: &self.config.local_id,
            },
            self.peer_hashes.as_deref(),
        )?;
        // RFC 7296 §1.2: IDi, [CERT,] [CERTREQ,] [IDr,] AUTH.
        let mut payloads = vec![Payload::IdI(self.config.local_id.clone())];
        payloads.extend(self.cert_payloads());
        payloads.extend(self.certreq());
        if let Some(r) = &self.config.remote_id {
            payloads.push(Payload::IdR(r.clone()));
        }
        payloads.push(Payload::Auth(auth));
        payloads.extend(self.initial_contact());
        if self.config.request_address {
            payloads.push(Payload::Cp(CpPayload {
                cfg_type: CfgType::Request,
                attributes: [
                    CfgAttrType::InternalIp4Address,
                    CfgAttrType::InternalIp4Netmask,
                    CfgAttrType::InternalIp4Dns,
                ]
                .into_iter()
                .map(|ty| CfgAttribute { ty, value: vec![] })
                .collect(),
            }));
        }
        payloads.extend(mode::notify(self.config.child_mode));
        payloads.extend([
            Payload::Sa(child_offer(
                &self.usable_suites(&self.config.child_suites, true),
                child_spi,
                None,
            )),
            Payload::TsI(ts::payload(&self.config.local_ts)),
            Payload::TsR(ts::payload(&self.config.remote_ts)),
        ]);
        self.send_request(
            sess,
            ExchangeType::IkeAuth,
            &payloads,
            ActiveKind::Auth { child_spi },
            now,
        )
    }

    /// Responder, IKE_SA_INIT request: choose a suite, answer with our KE and nonce.
    fn on_init_request(
        &mut self,
        now: Instant,
        from: SocketAddr,
        to: SocketAddr,
        data: &[u8],
    ) -> Result<(), IkeError> {
        self.spi_i = Header::parse(data).map_or(0, |r| r.header.spi_i);
        let msg = match Message::parse(data) {
            Ok(m) => m,
            Err(e) => {
                let e = IkeError::Parse(e);
                self.answer_init_error(&e)?;
                return Err(self.fail(e));
            }
        };
        self.remote = from;
        self.local = to;
        let outcome = (|| {
            let sa = find(&msg.payloads, |p| match p {
                Payload::Sa(s) => Some(s),
                _ => None,
            })?;
            let (suite, _, answer) = choose_ike(sa, &self.config.ike_suites, None)
                .ok_or_else(|| ike_mismatch(sa, &self.config.ike_suites))?;
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
                self.init_response = None;
                self.spi_i = 0;
                return Err(e);
            }
            Err(e) => {
                self.answer_init_error(&e)?;
                return Err(self.fail(e));
            }
        };
        let dh = DhSecret::generate_ephemeral(suite.dh, self.rng.as_mut())?;
        let g_ir = match dh.agree(&peer_ke) {
            Ok(g) => g,
            Err(e) => {
                let e = IkeError::from(e);
                self.answer_init_error(&e)?;
                return Err(self.fail(e));
            }
        };
        self.negotiate_extensions(&msg.payloads, (self.spi_i, 0), from, to);
        let nr = nonce(self.rng.as_mut());
        let mut payloads = vec![
            Payload::Sa(answer),
            Payload::Ke(KePayload {
                group: suite.dh.iana_id(),
                data: dh.public_value().to_vec(),
            }),
            Payload::Nonce(NoncePayload { data: nr.clone() }),
        ];
        payloads.extend(self.certreq());
        if notify_of(&msg.payloads, NotifyType::NatDetectionSourceIp).is_some() {
            payloads.extend(natd_payloads(
                (self.spi_i, self.spi_r),
                to,
                from,
                self.config.force_encap,
                self.rng.as_mut(),
            ));
        }
        if self.fragmentation {
            payloads.push(Payload::Notify(NotifyPayload::new(
                NotifyType::Ikev2FragmentationSupported,
                vec![],
            )));
        }
        payloads.extend(self.hash_algorithms_notify());
        let response = Message {
            header: self.init_header(true),
            payloads,
        }
        .to_bytes()?;
        let transcript = InitTranscript {
            ni,
            nr,
            request: data.to_vec(),
            response: response.clone(),
        };
        let keyed = derive(suite, false, &g_ir, (self.spi_i, self.spi_r), transcript)?;
        self.outgoing.push_back(response.clone());
        self.init_response = Some(response);
        let mut sess = Session::new(false, (self.spi_i, self.spi_r), keyed);
        self.report_keys(&sess);
        sess.peer_next = 1;
        self.session = Some(sess);
        self.phase = Phase::Auth;
        self.last_seen = now;
        Ok(())
    }

    fn answer_init_error(&mut self, err: &IkeError) -> Result<(), IkeError> {
        if err.notify_type().is_some() {
            let msg = Message {
                header: Header {
                    spi_r: 0,
                    ..self.init_header(true)
                },
                payloads: vec![error_payload(err)],
            }
            .to_bytes()?;
            self.outgoing.push_back(msg.clone());
            self.init_response = Some(msg);
        }
        Ok(())
    }

    // ---- IKE_AUTH ----

    /// Responder, IKE_AUTH request: authenticate the initiator, then try the first
    /// child SA. A child failure is reported in the answer but leaves the IKE SA up
    /// (RFC 7296 §1.2); an authentication failure kills it.
    pub(super) fn on_auth_request(
        &mut self,
        sess: &mut Session,
        payloads: &[Payload],
        now: Instant,
    ) -> (Vec<Payload>, Option<IkeError>) {
        if let Err(e) = self.authenticate_initiator(payloads, &sess.keyed) {
            self.deferred.push(Deferred::Fail(e.clone()));
            return (vec![error_payload(&e)], Some(e));
        }
        let auth = make_auth(
            &self.config.auth,
            &AuthInput {
                prf: sess.keyed.suite.prf,
                real_message: &sess.keyed.init_response,
                nonce: &sess.keyed.ni,
                sk_p: &sess.keyed.keys.sk_pr,
                id: &self.config.local_id,
            },
            self.peer_hashes.as_deref(),
        );
        let auth = match auth {
            Ok(a) => a,
            Err(e) => {
                self.deferred.push(Deferred::Fail(e.clone()));
                return (vec![error_payload(&e)], Some(e));
            }
        };
        // RFC 7296 §1.2: IDr, [CERT,] AUTH.
        let mut answer = vec![Payload::IdR(self.config.local_id.clone())];
        answer.extend(self.cert_payloads());
        answer.push(Payload::Auth(auth));
        answer.extend(self.initial_contact());
        self.phase = Phase::Established;
        self.events.push_back(Event::Established {
            spi_i: sess.spi_i,
            spi_r: sess.spi_r,
        });
        self.note_initial_contact(payloads, |p| match p {
            Payload::IdI(id) => Some(id),
            _ => None,
        });
        self.arm_ike_rekey(now);
        match self.answer_first_child(sess, payloads) {
            Ok((more, install, config)) => {
                answer.extend(more);
                self.adopt_child(install, config, true, now);
            }
            Err(e) => {
                answer.push(error_payload(&e));
                self.events.push_back(Event::ChildSaFailed(e));
            }
        }
        (answer, None)
    }

    fn authenticate_initiator(&self, payloads: &[Payload], keyed: &Keyed) -> Result<(), IkeError> {
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
            payloads,
            auth,
            &AuthInput {
                prf: keyed.suite.prf,
                real_message: &keyed.init_request,
                nonce: &keyed.nr,
                sk_p: &keyed.keys.sk_pi,
                id: id_i,
            },
        )
    }

    fn answer_first_child(
        &mut self,
        sess: &Session,
        payloads: &[Payload],
    ) -> Result<(Vec<Payload>, ChildSaInstall, ChildConfig), IkeError> {
        let sa = find(payloads, |p| match p {
            Payload::Sa(s) => Some(s),
            _ => None,
        })?;
        let our_spi = child_spi(self.rng.as_mut());
        let suites = self.usable_suites(&self.config.child_suites, false);
        let (suite, peer_spi, answer_sa) = choose_child(sa, &suites, our_spi, None)
            .ok_or_else(|| child_mismatch(sa, &suites, None))?;
        let (tsi, tsr) = ts_pair(payloads)?;
        let mut more = Vec::new();
        let mut remote_allowed = self.config.remote_ts.clone();
        let cp_request = payloads.iter().find_map(|p| match p {
            Payload::Cp(cp) if cp.cfg_type == CfgType::Request => Some(cp),
            _ => None,
        });
        if let (Some(cp), Some(pool)) = (cp_request, self.config.address_pool.clone())
            && cp
                .attributes
                .iter()
                .any(|a| a.ty == CfgAttrType::InternalIp4Address)
        {
            let lease = Lease::take(&pool).ok_or(IkeError::InternalAddressFailure)?;
            let (netmask, dns) = pool
                .lock()
                .map(|p| (p.netmask, p.dns.clone()))
                .map_err(|_| IkeError::InternalAddressFailure)?;
            let addr = lease.address;
            let mut attributes = vec![
                CfgAttribute {
                    ty: CfgAttrType::InternalIp4Address,
                    value: addr.octets().to_vec(),
                },
                CfgAttribute {
                    ty: CfgAttrType::InternalIp4Netmask,
                    value: netmask.octets().to_vec(),
                },
            ];
            attributes.extend(dns.iter().map(|d| CfgAttribute {
                ty: CfgAttrType::InternalIp4Dns,
                value: d.octets().to_vec(),
            }));
            more.push(Payload::Cp(CpPayload {
                cfg_type: CfgType::Reply,
                attributes,
            }));
            // TSi narrows to the assigned address (RFC 7296 §3.15).
            remote_allowed = vec![IpSelector::any(AddrRange::V4 {
                start: addr,
                end: addr,
            })];
            self.lease = Some(lease);
        }
        let remote_ts = ts::narrow(tsi, &remote_allowed);
        let local_ts = ts::narrow(tsr, &self.config.local_ts);
        if remote_ts.is_empty() || local_ts.is_empty() {
            self.lease = None;
            return Err(ts::mismatch(
                tsi,
                tsr,
                (&remote_allowed, &self.config.local_ts),
            ));
        }
        let mode = mode::answer(payloads, self.config.child_mode);
        let keyed = &sess.keyed;
        let install = child_install(
            keyed,
            ChildParams {
                suite,
                initiator: false,
                g_ir: None,
                nonces: (&keyed.ni, &keyed.nr),
                spis: (our_spi, peer_spi),
                mode,
            },
            local_ts.clone(),
            remote_ts.clone(),
        )?;
        more.extend(mode::notify(mode));
        more.extend([
            Payload::Sa(answer_sa),
            Payload::TsI(ts::payload(&remote_ts)),
            Payload::TsR(ts::payload(&local_ts)),
        ]);
        let config = ChildConfig {
            suites: vec![suite],
            local_ts,
            remote_ts,
            pfs: self.config.child_pfs,
            mode,
        };
        Ok((more, install, config))
    }

    /// INITIAL_CONTACT for our IKE_AUTH request or response, when configured: RFC 7296
    /// §2.4 allows it only there, never in a later exchange.
    fn initial_contact(&self) -> Option<Payload> {
        self.config
            .initial_contact
            .then(|| Payload::Notify(NotifyPayload::new(NotifyType::InitialContact, vec![])))
    }

    /// Reports INITIAL_CONTACT from an authenticated IKE_AUTH message of the peer, with
    /// the identity it authenticated as (`id` picks IDi or IDr). RFC 7296 §2.4 allows
    /// it in the first IKE_AUTH request or response, so both roles look for it; it is
    /// ignored anywhere else.
    fn note_initial_contact<'a>(
        &mut self,
        payloads: &'a [Payload],
        id: impl Fn(&'a Payload) -> Option<&'a Identity>,
    ) {
        if notify_of(payloads, NotifyType::InitialContact).is_some()
            && let Some(peer) = payloads.iter().find_map(id)
        {
            self.events
                .push_back(Event::InitialContact { peer: peer.clone() });
        }
    }

    /// The peer's ID must be the configured one (if any), then its AUTH (and
    /// certificates, which must name that ID) must verify.
    fn check_peer(
        &self,
        payloads: &[Payload],
        auth: &AuthPayload,
        input: &AuthInput<'_>,
    ) -> Result<(), IkeError> {
        if self.config.remote_id.as_ref().is_some_and(|want| {
            if self.config.remote_id_group {
                !group_identity_matches(want, input.id)
            } else {
                !identity_matches(want, input.id)
            }
        }) {
            return Err(IkeError::AuthenticationFailed);
        }
        verify_peer_auth(&self.config.peer_auth, input, auth, payloads, self.wall)
    }

    /// Initiator, IKE_AUTH response: authenticate the responder and take its choice.
    pub(super) fn on_auth_response(
        &mut self,
        sess: &mut Session,
        child_spi: u32,
        payloads: &[Payload],
        now: Instant,
    ) -> Result<(), IkeError> {
        if payloads.iter().any(|p| matches!(p, Payload::Eap(_))) {
            return Err(self.fail(IkeError::EapNotSupported));
        }
        let has_auth = payloads.iter().any(|p| matches!(p, Payload::Auth(_)));
        if !has_auth && let Some(err) = error_notify(payloads) {
            return Err(self.fail(IkeError::PeerError(err)));
        }
        let authenticated = (|| {
            let id_r = find(payloads, |p| match p {
                Payload::IdR(id) => Some(id),
                _ => None,
            })?;
            let auth = find(payloads, |p| match p {
                Payload::Auth(a) => Some(a),
                _ => None,
            })?;
            let keyed = &sess.keyed;
            self.check_peer(
                payloads,
                auth,
                &AuthInput {
                    prf: keyed.suite.prf,
                    real_message: &keyed.init_response,
                    nonce: &keyed.ni,
                    sk_p: &keyed.keys.sk_pr,
                    id: id_r,
                },
            )
        })();
        if let Err(e) = authenticated {
            if e.notify_type() == Some(NotifyType::AuthenticationFailed) {
                // RFC 7296 §2.21.2: tell the responder, which already considers the SA
                // up, in an INFORMATIONAL of its own. Sent once: the SA is closed next,
                // so nothing retransmits it and no answer is awaited.
                let n =
                    Payload::Notify(NotifyPayload::new(NotifyType::AuthenticationFailed, vec![]));
                let _ = self.send_request(
                    sess,
                    ExchangeType::Informational,
                    &[n],
                    ActiveKind::Dpd,
                    now,
                );
            }
            return Err(self.fail(e));
        }
        self.phase = Phase::Established;
        self.events.push_back(Event::Established {
            spi_i: sess.spi_i,
            spi_r: sess.spi_r,
        });
        self.note_initial_contact(payloads, |p| match p {
            Payload::IdR(id) => Some(id),
            _ => None,
        });
        self.arm_ike_rekey(now);
        if let Some(cp) = payloads.iter().find_map(|p| match p {
            Payload::Cp(cp) if cp.cfg_type == CfgType::Reply => Some(cp),
            _ => None,
        }) && let Some(event) = address_event(cp)
        {
            self.events.push_back(event);
        }
        let child = (|| {
            if let Some(err) = error_notify(payloads) {
                return Err(IkeError::PeerError(err));
            }
            let sa = find(payloads, |p| match p {
                Payload::Sa(s) => Some(s),
                _ => None,
            })?;
            let (suite, peer_spi) = accepted_child(sa, &self.config.child_suites, None)
                .ok_or_else(|| child_mismatch(sa, &self.config.child_suites, None))?;
            let (tsi, tsr) = ts_pair(payloads)?;
            let unacceptable =
                || ts::mismatch(tsi, tsr, (&self.config.local_ts, &self.config.remote_ts));
            let local_ts = ts::within(tsi, &self.config.local_ts).ok_or_else(unacceptable)?;
            let remote_ts = ts::within(tsr, &self.config.remote_ts).ok_or_else(unacceptable)?;
            let keyed = &sess.keyed;
            let install = child_install(
                keyed,
                ChildParams {
                    suite,
                    initiator: true,
                    g_ir: None,
                    nonces: (&keyed.ni, &keyed.nr),
                    spis: (child_spi, peer_spi),
                    mode: mode::of(payloads),
                },
                local_ts.clone(),
                remote_ts.clone(),
            )?;
            let config = ChildConfig {
                suites: vec![suite],
                local_ts,
                remote_ts,
                pfs: self.config.child_pfs,
                mode: install.mode,
            };
            Ok((install, config))
        })();
        match child {
            Ok((install, config)) => {
                if !self.refuse_child(&install, &config, self.config.child_mode, now) {
                    self.adopt_child(install, config, true, now);
                }
            }
            Err(e) => self.events.push_back(Event::ChildSaFailed(e)),
        }
        Ok(())
    }
}

fn address_event(cp: &CpPayload) -> Option<Event> {
    let v4 = |ty| {
        cp.attributes
            .iter()
            .filter(move |a| a.ty == ty)
            .filter_map(|a| <[u8; 4]>::try_from(a.value.as_slice()).ok())
            .map(Ipv4Addr::from)
    };
    Some(Event::AddressAssigned {
        address: v4(CfgAttrType::InternalIp4Address).next()?,
        netmask: v4(CfgAttrType::InternalIp4Netmask).next(),
        dns: v4(CfgAttrType::InternalIp4Dns).collect(),
    })
}
