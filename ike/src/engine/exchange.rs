//! Exchanges of an established IKE SA: INFORMATIONAL (liveness, Delete, status
//! notifies) and CREATE_CHILD_SA (new child, child rekey, IKE SA rekey), each in both
//! roles, with the collision rules of RFC 7296 §2.8.1.

use std::time::{Duration, Instant};

use super::config::{ChildConfig, ChildSuite, IpsecMode};
use super::error::IkeError;
use super::keys::{ChildParams, InitTranscript, child_install, keyed_from_seed};
use super::mode;
use super::proposal::{
    accepted_child, accepted_ike, child_mismatch, child_offer, choose_child, choose_ike,
    ike_mismatch, ike_offer,
};
use super::sa::{
    Active, ActiveKind, ChildInit, ChildState, Deferred, IkeRekeyInit, IkeSa, Session, Task,
    child_spi, error_notify, error_payload, find, nonce, nonzero_spi, notify_of, ts_pair,
    wanted_group,
};
use super::ts;
use crate::crypto::derive::rekey_skeyseed;
use crate::crypto::{DhGroup, DhSecret, SecretBytes};
use crate::wire::{
    DeletePayload, ExchangeType, IpSelector, KePayload, NoncePayload, NotifyPayload, NotifyType,
    Payload, ProtocolId,
};

/// The lower of an exchange's two nonces: of two colliding rekeys, the one holding the
/// lowest of the four nonces is redundant (RFC 7296 §2.8.1).
fn lower(a: &[u8], b: &[u8]) -> Vec<u8> {
    a.min(b).to_vec()
}

/// What a responder allows for a child SA.
struct ChildPolicy<'a> {
    suites: Vec<ChildSuite>,
    /// Transport mode is granted only if this is transport.
    mode: IpsecMode,
    remote_ts: &'a [IpSelector],
    local_ts: &'a [IpSelector],
    pfs: Option<DhGroup>,
}

impl IkeSa {
    /// Delay before retrying after TEMPORARY_FAILURE (RFC 7296 §2.25: "retry later").
    fn retry_delay(&mut self) -> Duration {
        Duration::from_millis(2000 + u64::from(self.rng.next_u32() % 8000))
    }

    pub(super) fn start_task(
        &mut self,
        sess: &mut Session,
        task: Task,
        now: Instant,
    ) -> Result<(), IkeError> {
        match task {
            Task::Dpd => {
                self.send_request(sess, ExchangeType::Informational, &[], ActiveKind::Dpd, now)
            }
            Task::DeleteIke => self.send_request(
                sess,
                ExchangeType::Informational,
                &[Payload::Delete(DeletePayload::Ike)],
                ActiveKind::DeleteIke,
                now,
            ),
            Task::DeleteChild(spi) => {
                let Some(c) = self.children.iter_mut().find(|c| c.inbound == spi) else {
                    return Ok(());
                };
                c.state = ChildState::Deleting;
                c.rekey_at = None;
                c.expire_at = None;
                let protocol = c.install.protocol;
                self.send_request(
                    sess,
                    ExchangeType::Informational,
                    &[Payload::Delete(DeletePayload::Child {
                        protocol,
                        spis: vec![spi],
                    })],
                    ActiveKind::DeleteChildren(vec![spi]),
                    now,
                )
            }
            Task::RekeyChild(spi) => {
                let Some(c) = self
                    .children
                    .iter()
                    .find(|c| c.inbound == spi && c.state == ChildState::Installed)
                else {
                    return Ok(());
                };
                let config = c.config.clone();
                self.start_create(sess, config, Some(spi), false, now)
            }
            Task::CreateChild(config) => self.start_create(sess, config, None, false, now),
            Task::RekeyIke => {
                if self.ike_collision.is_some() {
                    return Ok(());
                }
                self.start_ike_rekey(sess, now)
            }
        }
    }

    /// `ke_retry` marks the one retry allowed after INVALID_KE_PAYLOAD.
    fn start_create(
        &mut self,
        sess: &mut Session,
        config: ChildConfig,
        rekeys: Option<u32>,
        ke_retry: bool,
        now: Instant,
    ) -> Result<(), IkeError> {
        let our_spi = child_spi(self.rng.as_mut());
        let ni = nonce(self.rng.as_mut());
        let dh = config
            .pfs
            .map(|g| DhSecret::generate(g, self.rng.as_mut()))
            .transpose()?;
        let mut payloads = Vec::new();
        if let Some(old) = rekeys {
            // The SPI we receive on; the peer finds the child by its outbound SPI and
            // protocol.
            let protocol = self
                .children
                .iter()
                .find(|c| c.inbound == old)
                .map_or(ProtocolId::Esp, |c| c.install.protocol);
            payloads.push(Payload::Notify(NotifyPayload {
                protocol: Some(protocol),
                spi: old.to_be_bytes().to_vec(),
                notify_type: NotifyType::RekeySa,
                data: vec![],
            }));
        }
        payloads.extend(mode::notify(config.mode));
        payloads.push(Payload::Sa(child_offer(
            &self.usable_suites(&config.suites, true),
            our_spi,
            config.pfs,
        )));
        payloads.push(Payload::Nonce(NoncePayload { data: ni.clone() }));
        if let Some(dh) = &dh {
            payloads.push(Payload::Ke(KePayload {
                group: dh.group().iana_id(),
                data: dh.public_value().to_vec(),
            }));
        }
        payloads.push(Payload::TsI(ts::payload(&config.local_ts)));
        payloads.push(Payload::TsR(ts::payload(&config.remote_ts)));
        let init = ChildInit {
            config,
            our_spi,
            ni,
            dh,
            rekeys,
            collision: None,
            ke_retry,
        };
        self.send_request(
            sess,
            ExchangeType::CreateChildSa,
            &payloads,
            ActiveKind::CreateChild(Box::new(init)),
            now,
        )
    }

    fn start_ike_rekey(&mut self, sess: &mut Session, now: Instant) -> Result<(), IkeError> {
        let current = sess.keyed.suite;
        let mut suites = vec![current];
        suites.extend(self.config.ike_suites.iter().filter(|s| **s != current));
        let new_spi = nonzero_spi(self.rng.as_mut());
        let ni = nonce(self.rng.as_mut());
        let dh = DhSecret::generate(current.dh, self.rng.as_mut())?;
        let payloads = [
            Payload::Sa(ike_offer(&suites, Some(new_spi))),
            Payload::Nonce(NoncePayload { data: ni.clone() }),
            Payload::Ke(KePayload {
                group: current.dh.iana_id(),
                data: dh.public_value().to_vec(),
            }),
        ];
        let init = IkeRekeyInit {
            new_spi,
            ni,
            dh,
            suites,
        };
        self.send_request(
            sess,
            ExchangeType::CreateChildSa,
            &payloads,
            ActiveKind::RekeyIke(Box::new(init)),
            now,
        )
    }

    // ---- requests from the peer ----

    /// Answers a request on an established SA. Failures become notifies in the answer;
    /// the IKE SA survives them.
    pub(super) fn on_request(
        &mut self,
        sess: &mut Session,
        current: bool,
        exchange: ExchangeType,
        payloads: &[Payload],
        now: Instant,
    ) -> (Vec<Payload>, Option<IkeError>) {
        match exchange {
            ExchangeType::Informational => (self.on_informational(sess, current, payloads), None),
            ExchangeType::CreateChildSa => {
                let answer = if !current {
                    // Nothing new on an SA that is being replaced.
                    Err(IkeError::TemporaryFailure)
                } else if let Some(n) = notify_of(payloads, NotifyType::RekeySa) {
                    let spi = <[u8; 4]>::try_from(n.spi.as_slice())
                        .map(u32::from_be_bytes)
                        .map_err(|_| IkeError::InvalidSyntax("REKEY_SA SPI"));
                    let protocol = n.protocol;
                    spi.and_then(|spi| {
                        self.answer_rekey_child(sess, payloads, (protocol, spi), now)
                    })
                } else if payloads.iter().any(|p| {
                    matches!(p, Payload::Sa(sa)
                        if sa.proposals.iter().any(|p| p.protocol == ProtocolId::Ike))
                }) {
                    self.answer_rekey_ike(sess, payloads)
                } else {
                    self.answer_new_child(sess, payloads, now)
                };
                match answer {
                    Ok(p) => (p, None),
                    Err(e) => {
                        // The peer learns of it from the notify; the daemon from the
                        // event, which names the mismatch. TEMPORARY_FAILURE is only
                        // "retry later" (RFC 7296 §2.25), not a failure of ours.
                        if e != IkeError::TemporaryFailure {
                            self.events
                                .push_back(super::sa::Event::ChildSaFailed(e.clone()));
                        }
                        (vec![error_payload(&e)], None)
                    }
                }
            }
            _ => (
                vec![],
                Some(IkeError::Unexpected("exchange type not supported")),
            ),
        }
    }

    /// INFORMATIONAL (RFC 7296 §1.4): an empty one is a liveness check; Delete payloads
    /// close the IKE SA or child SAs; status notifies such as strongSwan's
    /// NO_ADDITIONAL_ADDRESSES or MOBIKE's UPDATE_SA_ADDRESSES (we never offer MOBIKE)
    /// are acknowledged with an empty answer, COOKIE2 is echoed (RFC 4555 §3.5).
    fn on_informational(
        &mut self,
        sess: &mut Session,
        current: bool,
        payloads: &[Payload],
    ) -> Vec<Payload> {
        let in_flight: Vec<u32> = match &sess.active {
            Some(Active {
                kind: ActiveKind::DeleteChildren(spis),
                ..
            }) => spis.clone(),
            _ => Vec::new(),
        };
        let mut ours = Vec::new();
        let mut answer = Vec::new();
        for p in payloads {
            match p {
                Payload::Delete(DeletePayload::Ike) => {
                    if current {
                        self.deferred.push(Deferred::Close {
                            by_peer: true,
                            dead: false,
                        });
                    } else {
                        sess.finished = true;
                    }
                    return Vec::new();
                }
                Payload::Delete(DeletePayload::Child { protocol, spis }) => {
                    for spi in spis {
                        let Some(i) = self
                            .children
                            .iter()
                            .position(|c| c.outbound == *spi && c.install.protocol == *protocol)
                        else {
                            continue;
                        };
                        let c = self.children.remove(i);
                        // §1.4.1: deletes that crossed ours are not echoed back.
                        if !in_flight.contains(&c.inbound) {
                            ours.push((c.install.protocol, c.inbound));
                        }
                        if c.installed {
                            self.events.push_back(super::sa::Event::ChildSaDeleted {
                                inbound_spi: c.inbound,
                                outbound_spi: c.outbound,
                            });
                        }
                    }
                }
                Payload::Notify(n) if n.notify_type == NotifyType::Cookie2 => {
                    answer.push(Payload::Notify(n.clone()));
                }
                Payload::Notify(n) if n.notify_type == NotifyType::AuthenticationFailed => {
                    // RFC 7296 §2.21.2: the initiator could not authenticate us (our
                    // certificate, ID or AUTH) and tells us in its own INFORMATIONAL.
                    if current {
                        self.deferred.push(Deferred::Close {
                            by_peer: true,
                            dead: false,
                        });
                    }
                    return Vec::new();
                }
                _ => {}
            }
        }
        // One Delete payload per protocol (RFC 7296 §3.11), ESP first.
        let deletes = [ProtocolId::Esp, ProtocolId::Ah]
            .into_iter()
            .filter_map(|protocol| {
                let spis: Vec<u32> = ours
                    .iter()
                    .filter(|(p, _)| *p == protocol)
                    .map(|(_, spi)| *spi)
                    .collect();
                (!spis.is_empty())
                    .then_some(Payload::Delete(DeletePayload::Child { protocol, spis }))
            });
        answer.splice(0..0, deletes);
        answer
    }

    /// Responder side of a child SA: proposal, optional PFS, selectors and KEYMAT.
    /// Returns the answer, the install and the child's own configuration, and the
    /// lower nonce of the exchange.
    fn answer_child(
        &mut self,
        sess: &Session,
        payloads: &[Payload],
        policy: ChildPolicy<'_>,
    ) -> Result<
        (
            Vec<Payload>,
            super::sa::ChildSaInstall,
            ChildConfig,
            Vec<u8>,
        ),
        IkeError,
    > {
        let sa = find(payloads, |p| match p {
            Payload::Sa(s) => Some(s),
            _ => None,
        })?;
        let ni = find(payloads, |p| match p {
            Payload::Nonce(n) => Some(n.data.clone()),
            _ => None,
        })?;
        let ke = payloads.iter().find_map(|p| match p {
            Payload::Ke(k) => Some(k),
            _ => None,
        });
        let our_spi = child_spi(self.rng.as_mut());
        let suites = self.usable_suites(&policy.suites, false);
        let (suite, peer_spi, answer_sa) = match choose_child(sa, &suites, our_spi, policy.pfs) {
            Some(c) => c,
            // The proposal would do with our group but the KE is for another one.
            None => match (policy.pfs, ke) {
                (Some(g), Some(k)) if k.group != g.iana_id() => {
                    return Err(IkeError::InvalidKePayload { group: g.iana_id() });
                }
                _ => return Err(child_mismatch(sa, &suites, policy.pfs)),
            },
        };
        let pfs = match policy.pfs {
            Some(g) => {
                let ke = ke
                    .filter(|k| k.group == g.iana_id())
                    .ok_or(IkeError::InvalidKePayload { group: g.iana_id() })?;
                let dh = DhSecret::generate(g, self.rng.as_mut())?;
                let g_ir = dh.agree(&ke.data)?;
                Some((dh, g_ir))
            }
            None => None,
        };
        let (tsi, tsr) = ts_pair(payloads)?;
        let remote_ts = ts::narrow(tsi, policy.remote_ts);
        let local_ts = ts::narrow(tsr, policy.local_ts);
        if remote_ts.is_empty() || local_ts.is_empty() {
            return Err(ts::mismatch(tsi, tsr, (policy.remote_ts, policy.local_ts)));
        }
        let nr = nonce(self.rng.as_mut());
        let mode = mode::answer(payloads, policy.mode);
        let install = child_install(
            &sess.keyed,
            ChildParams {
                suite,
                initiator: false,
                g_ir: pfs.as_ref().map(|(_, g)| g),
                nonces: (&ni, &nr),
                spis: (our_spi, peer_spi),
                mode,
            },
            local_ts.clone(),
            remote_ts.clone(),
        )?;
        let mut answer: Vec<Payload> = mode::notify(mode).into_iter().collect();
        answer.extend([
            Payload::Sa(answer_sa),
            Payload::Nonce(NoncePayload { data: nr.clone() }),
        ]);
        if let Some((dh, _)) = &pfs {
            answer.push(Payload::Ke(KePayload {
                group: dh.group().iana_id(),
                data: dh.public_value().to_vec(),
            }));
        }
        answer.push(Payload::TsI(ts::payload(&remote_ts)));
        answer.push(Payload::TsR(ts::payload(&local_ts)));
        let config = ChildConfig {
            suites: vec![suite],
            local_ts,
            remote_ts,
            pfs: policy.pfs,
            mode,
        };
        Ok((answer, install, config, lower(&ni, &nr)))
    }

    fn answer_new_child(
        &mut self,
        sess: &Session,
        payloads: &[Payload],
        now: Instant,
    ) -> Result<Vec<Payload>, IkeError> {
        let (remote_ts, local_ts) = (self.config.remote_ts.clone(), self.config.local_ts.clone());
        let policy = ChildPolicy {
            suites: self.config.child_suites.clone(),
            mode: self.config.child_mode,
            remote_ts: &remote_ts,
            local_ts: &local_ts,
            pfs: self.config.child_pfs,
        };
        let (answer, install, config, _) = self.answer_child(sess, payloads, policy)?;
        self.adopt_child(install, config, true, now);
        Ok(answer)
    }

    /// Responder side of a child rekey (RFC 7296 §1.3.3), with the collision rules of
    /// §2.8.1: a child we are deleting or that is already replaced gets
    /// TEMPORARY_FAILURE; one we are rekeying ourselves is rekeyed again and the nonces
    /// decide later which new pair survives. The old child is the one whose outbound
    /// SPI and protocol the REKEY_SA notify names.
    fn answer_rekey_child(
        &mut self,
        sess: &mut Session,
        payloads: &[Payload],
        (protocol, peer_inbound): (Option<ProtocolId>, u32),
        now: Instant,
    ) -> Result<Vec<Payload>, IkeError> {
        let old = self
            .children
            .iter()
            .find(|c| {
                c.outbound == peer_inbound && protocol.is_none_or(|p| p == c.install.protocol)
            })
            .ok_or(IkeError::ChildSaNotFound)?;
        if old.state != ChildState::Installed {
            return Err(IkeError::TemporaryFailure);
        }
        let old_inbound = old.inbound;
        let old_mode = old.config.mode;
        let mut suites = old.config.suites.clone();
        suites.extend(
            self.config
                .child_suites
                .iter()
                .filter(|s| !old.config.suites.contains(s)),
        );
        let (remote_ts, local_ts) = (old.config.remote_ts.clone(), old.config.local_ts.clone());
        // The replacement keeps the mode of the SA it replaces.
        let policy = ChildPolicy {
            suites,
            mode: old_mode,
            remote_ts: &remote_ts,
            local_ts: &local_ts,
            pfs: self.config.child_pfs,
        };
        let (answer, mut install, config, low) = self.answer_child(sess, payloads, policy)?;
        install.rekeys = Some(old_inbound);
        install.outbound_deferred = true;
        let settle = self.settle_time();
        if let Some(c) = self.children.iter_mut().find(|c| c.inbound == old_inbound) {
            // The rekey initiator deletes it; if that never comes, we do.
            c.state = ChildState::Rekeyed;
            c.rekey_at = None;
            c.expire_at = Some(now + settle);
        }
        self.tasks.retain(|t| *t != Task::RekeyChild(old_inbound));
        if let Some(Active {
            kind: ActiveKind::CreateChild(init),
            ..
        }) = &mut sess.active
            && init.rekeys == Some(old_inbound)
        {
            init.collision = Some(low);
        }
        self.adopt_child(install, config, true, now);
        Ok(answer)
    }

    /// Responder side of an IKE SA rekey (RFC 7296 §1.3.2, §2.18). Without a collision
    /// the new SA takes over at once and the old one waits for the peer's Delete.
    fn answer_rekey_ike(
        &mut self,
        sess: &mut Session,
        payloads: &[Payload],
    ) -> Result<Vec<Payload>, IkeError> {
        let deleting = matches!(
            sess.active,
            Some(Active {
                kind: ActiveKind::DeleteIke,
                ..
            })
        );
        if deleting || self.ike_collision.is_some() || self.tasks.contains(&Task::DeleteIke) {
            return Err(IkeError::TemporaryFailure);
        }
        let sa = find(payloads, |p| match p {
            Payload::Sa(s) => Some(s),
            _ => None,
        })?;
        let new_spi = nonzero_spi(self.rng.as_mut());
        let (suite, peer_spi, answer_sa) =
            choose_ike(sa, &self.config.ike_suites, Some(new_spi))
                .ok_or_else(|| ike_mismatch(sa, &self.config.ike_suites))?;
        let peer_spi = peer_spi
            .filter(|s| *s != 0)
            .ok_or(IkeError::InvalidSyntax("IKE rekey SPI"))?;
        let ke = find(payloads, |p| match p {
            Payload::Ke(k) => Some(k),
            _ => None,
        })?;
        if ke.group != suite.dh.iana_id() {
            return Err(IkeError::InvalidKePayload {
                group: suite.dh.iana_id(),
            });
        }
        let ni = find(payloads, |p| match p {
            Payload::Nonce(n) => Some(n.data.clone()),
            _ => None,
        })?;
        let nr = nonce(self.rng.as_mut());
        let dh = DhSecret::generate(suite.dh, self.rng.as_mut())?;
        let g_ir = dh.agree(&ke.data)?;
        let seed = rekey_skeyseed(
            sess.keyed.suite.prf,
            &sess.keyed.keys.sk_d,
            g_ir.as_bytes(),
            &ni,
            &nr,
        );
        let low = lower(&ni, &nr);
        let answer = vec![
            Payload::Sa(answer_sa),
            Payload::Nonce(NoncePayload { data: nr.clone() }),
            Payload::Ke(KePayload {
                group: suite.dh.iana_id(),
                data: dh.public_value().to_vec(),
            }),
        ];
        let keyed = keyed_from_seed(
            suite,
            false,
            &seed,
            (peer_spi, new_spi),
            InitTranscript {
                ni,
                nr,
                request: Vec::new(),
                response: Vec::new(),
            },
        )?;
        let new = Box::new(Session::new(false, (peer_spi, new_spi), keyed));
        self.report_keys(&new);
        let colliding = matches!(
            sess.active,
            Some(Active {
                kind: ActiveKind::RekeyIke(_),
                ..
            })
        );
        if colliding {
            self.ike_collision = Some((new, low));
        } else {
            self.deferred.push(Deferred::Swap {
                new,
                we_delete_old: false,
            });
        }
        Ok(answer)
    }

    // ---- responses to our requests ----

    pub(super) fn on_response(
        &mut self,
        sess: &mut Session,
        current: bool,
        active: Active,
        payloads: &[Payload],
        now: Instant,
    ) -> Result<(), IkeError> {
        match active.kind {
            ActiveKind::Auth { child_spi } => self.on_auth_response(sess, child_spi, payloads, now),
            ActiveKind::Dpd => Ok(()),
            ActiveKind::DeleteIke => {
                if current {
                    self.deferred.push(Deferred::Close {
                        by_peer: false,
                        dead: false,
                    });
                } else {
                    sess.finished = true;
                }
                Ok(())
            }
            ActiveKind::DeleteChildren(spis) => {
                for spi in spis {
                    if let Some(i) = self.children.iter().position(|c| c.inbound == spi) {
                        let c = self.children.remove(i);
                        if c.installed {
                            self.events.push_back(super::sa::Event::ChildSaDeleted {
                                inbound_spi: c.inbound,
                                outbound_spi: c.outbound,
                            });
                        }
                    }
                }
                Ok(())
            }
            ActiveKind::CreateChild(init) => self.on_create_response(sess, *init, payloads, now),
            ActiveKind::RekeyIke(init) => {
                self.on_ike_rekey_response(sess, *init, payloads, now);
                Ok(())
            }
        }
    }

    fn on_create_response(
        &mut self,
        sess: &mut Session,
        init: ChildInit,
        payloads: &[Payload],
        now: Instant,
    ) -> Result<(), IkeError> {
        // RFC 7296 §1.3: INVALID_KE_PAYLOAD names the group the responder wants; retry
        // once with it if we support it and used another.
        let wanted = notify_of(payloads, NotifyType::InvalidKePayload).and_then(wanted_group);
        if let (Some(g), Some(dh), false) = (wanted, &init.dh, init.ke_retry)
            && g != dh.group()
        {
            let config = ChildConfig {
                pfs: Some(g),
                ..init.config
            };
            return self.start_create(sess, config, init.rekeys, true, now);
        }
        let result = (|| {
            if let Some(err) = error_notify(payloads) {
                return Err(IkeError::PeerError(err));
            }
            let sa = find(payloads, |p| match p {
                Payload::Sa(s) => Some(s),
                _ => None,
            })?;
            let (suite, peer_spi) = accepted_child(sa, &init.config.suites, init.config.pfs)
                .ok_or_else(|| child_mismatch(sa, &init.config.suites, init.config.pfs))?;
            let nr = find(payloads, |p| match p {
                Payload::Nonce(n) => Some(n.data.clone()),
                _ => None,
            })?;
            let g_ir: Option<SecretBytes> = match &init.dh {
                Some(dh) => {
                    let ke = find(payloads, |p| match p {
                        Payload::Ke(k) => Some(k),
                        _ => None,
                    })?;
                    if ke.group != dh.group().iana_id() {
                        return Err(IkeError::InvalidKePayload {
                            group: dh.group().iana_id(),
                        });
                    }
                    Some(dh.agree(&ke.data)?)
                }
                None => None,
            };
            let (tsi, tsr) = ts_pair(payloads)?;
            let unacceptable =
                || ts::mismatch(tsi, tsr, (&init.config.local_ts, &init.config.remote_ts));
            let local_ts = ts::within(tsi, &init.config.local_ts).ok_or_else(unacceptable)?;
            let remote_ts = ts::within(tsr, &init.config.remote_ts).ok_or_else(unacceptable)?;
            let install = child_install(
                &sess.keyed,
                ChildParams {
                    suite,
                    initiator: true,
                    g_ir: g_ir.as_ref(),
                    nonces: (&init.ni, &nr),
                    spis: (init.our_spi, peer_spi),
                    mode: mode::of(payloads),
                },
                local_ts.clone(),
                remote_ts.clone(),
            )?;
            let config = ChildConfig {
                suites: vec![suite],
                local_ts,
                remote_ts,
                pfs: init.config.pfs,
                mode: install.mode,
            };
            Ok((install, config, lower(&init.ni, &nr)))
        })();
        match result {
            Err(e) => {
                if let Some(old) = init.rekeys
                    && init.collision.is_none()
                    && e == IkeError::PeerError(NotifyType::TemporaryFailure)
                {
                    let delay = self.retry_delay();
                    if let Some(c) = self
                        .children
                        .iter_mut()
                        .find(|c| c.inbound == old && c.state == ChildState::Installed)
                    {
                        c.rekey_at = Some(now + delay);
                    }
                }
                self.events.push_back(super::sa::Event::ChildSaFailed(e));
                Ok(())
            }
            Ok((mut install, config, low)) => {
                if self.refuse_child(&install, &config, init.config.mode, now) {
                    // A rekey refused so: the old pair carries on until its lifetime.
                    return Ok(());
                }
                let lost = init.collision.as_ref().is_some_and(|other| low < *other);
                if lost {
                    // The peer's rekey of the same child survives; ours is redundant:
                    // never installed here, deleted at the peer.
                    let spi = install.inbound.spi;
                    self.adopt_child(install, config, false, now);
                    self.push_task(Task::DeleteChild(spi));
                    return Ok(());
                }
                install.rekeys = init.rekeys;
                self.adopt_child(install, config, true, now);
                if let Some(old) = init.rekeys
                    && let Some(c) = self
                        .children
                        .iter_mut()
                        .find(|c| c.inbound == old && c.state != ChildState::Deleting)
                {
                    // Make-before-break: the new pair is reported, now the old one goes.
                    c.state = ChildState::Deleting;
                    c.rekey_at = None;
                    self.push_task(Task::DeleteChild(old));
                }
                Ok(())
            }
        }
    }

    fn on_ike_rekey_response(
        &mut self,
        sess: &Session,
        init: IkeRekeyInit,
        payloads: &[Payload],
        now: Instant,
    ) {
        let result = (|| {
            if let Some(err) = error_notify(payloads) {
                return Err(IkeError::PeerError(err));
            }
            let sa = find(payloads, |p| match p {
                Payload::Sa(s) => Some(s),
                _ => None,
            })?;
            let (suite, spi_r) = accepted_ike(sa, &init.suites, true)
                .ok_or_else(|| ike_mismatch(sa, &init.suites))?;
            let spi_r = spi_r
                .filter(|s| *s != 0)
                .ok_or(IkeError::InvalidSyntax("IKE rekey SPI"))?;
            let ke = find(payloads, |p| match p {
                Payload::Ke(k) => Some(k),
                _ => None,
            })?;
            if ke.group != init.dh.group().iana_id() || suite.dh != init.dh.group() {
                return Err(IkeError::InvalidKePayload {
                    group: init.dh.group().iana_id(),
                });
            }
            let nr = find(payloads, |p| match p {
                Payload::Nonce(n) => Some(n.data.clone()),
                _ => None,
            })?;
            let g_ir = init.dh.agree(&ke.data)?;
            let seed = rekey_skeyseed(
                sess.keyed.suite.prf,
                &sess.keyed.keys.sk_d,
                g_ir.as_bytes(),
                &init.ni,
                &nr,
            );
            let low = lower(&init.ni, &nr);
            let keyed = keyed_from_seed(
                suite,
                true,
                &seed,
                (init.new_spi, spi_r),
                InitTranscript {
                    ni: init.ni.clone(),
                    nr,
                    request: Vec::new(),
                    response: Vec::new(),
                },
            )?;
            Ok((
                Box::new(Session::new(true, (init.new_spi, spi_r), keyed)),
                low,
            ))
        })();
        if let Ok((ours, _)) = &result {
            self.report_keys(ours);
        }
        match (result, self.ike_collision.take()) {
            (Err(e), None) => {
                if e == IkeError::PeerError(NotifyType::TemporaryFailure) {
                    let delay = self.retry_delay();
                    self.ike_rekey_at = Some(now + delay);
                }
            }
            // Ours failed but the peer's rekey went through: it deletes the old SA.
            (Err(_), Some((theirs, _))) => self.deferred.push(Deferred::Swap {
                new: theirs,
                we_delete_old: false,
            }),
            (Ok((ours, _)), None) => self.deferred.push(Deferred::Swap {
                new: ours,
                we_delete_old: true,
            }),
            (Ok((ours, ours_low)), Some((theirs, theirs_low))) => {
                let (winner, loser, we_won) = if ours_low < theirs_low {
                    (theirs, ours, false)
                } else {
                    (ours, theirs, true)
                };
                // The winner's initiator deletes the old SA; each side deletes the
                // redundant SA it initiated.
                self.deferred.push(Deferred::Swap {
                    new: winner,
                    we_delete_old: we_won,
                });
                self.deferred.push(Deferred::Retire {
                    session: loser,
                    we_delete: !we_won,
                });
            }
        }
    }
}
