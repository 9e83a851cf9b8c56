//! [`IkeSa::restore`]: an [`IkeSaSnapshot`] checked against the configuration and
//! turned back into a running IKE SA.
//!
//! A snapshot arrives from the network (the other cluster node), so nothing in it is
//! trusted: every algorithm number, key size, SPI, message ID, list length and timer is
//! checked, and a bad one is a [`RestoreError`], never a panic.

use std::net::Ipv4Addr;
use std::time::{Duration, Instant};

use rand_core::CryptoRngCore;
use thiserror::Error;

use super::config::{ChildConfig, ChildSuite, IkeConfig, IkeSuite};
use super::keys::{InitTranscript, Keyed};
use super::pool::Lease;
use super::sa::{
    Active, ActiveKind, Child, ChildInit, ChildSaKeys, IkeRekeyInit, IkeSa, Phase, Session, Task,
};
use super::snapshot::{
    ActiveKindSnapshot, ActiveSnapshot, ChildConfigSnapshot, ChildSnapshot, ChildSuiteIds,
    DhPrivate, FORMAT, IkeSaSnapshot, IkeSuiteIds, SessionSnapshot, TaskSnapshot,
};
use super::version::StateVersion;
use crate::crypto::{CryptoError, DhGroup, DhSecret, Encr, IkeSaKeys, Integ, Prf, SecretBytes};
use crate::wire::{Header, IpSelector};

/// More child SAs, queued tasks, selectors, suites or SPIs than this in one list is not
/// a snapshot of a real SA.
const MAX_LIST: usize = 1024;
/// Old IKE SAs awaiting deletion: one per rekey within the settle time.
const MAX_RETIRING: usize = 16;
/// Datagrams of one message: SKF fragments number at most this many in practice.
const MAX_DATAGRAMS: usize = 256;
/// The largest UDP payload.
const MAX_DATAGRAM_LEN: usize = 65_535;
/// Nonce sizes RFC 7296 §3.9 allows.
const NONCE_LEN: std::ops::RangeInclusive<usize> = 16..=256;

/// Why a snapshot cannot be restored.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum RestoreError {
    #[error("snapshot format {0} is not supported (this build reads {FORMAT})")]
    Format(u16),
    /// An algorithm number this build does not implement, or a DH private value that
    /// is not one of its group.
    #[error("snapshot algorithm or key: {0}")]
    Crypto(#[from] CryptoError),
    /// The IKE SA uses a suite the configuration no longer offers.
    #[error("IKE suite {0:?} is not in the configuration")]
    SuiteNotConfigured(IkeSuite),
    /// The snapshot uses something the configuration does not allow.
    #[error("snapshot does not match the configuration: {0}")]
    ConfigMismatch(&'static str),
    /// The internal address the SA assigned is not free in the configured pool (or
    /// there is no pool).
    #[error("internal address {0} cannot be claimed")]
    LeaseUnavailable(Ipv4Addr),
    /// A value out of range or inconsistent with the rest of the snapshot.
    #[error("invalid snapshot: {0}")]
    Invalid(&'static str),
}

impl IkeSa {
    /// Continues the IKE SA of `snapshot` with `config` (which must offer its IKE
    /// suite), from `now`, the instant in this process's clock at which the snapshot
    /// was taken (see [`IkeSaSnapshot`] on timers).
    ///
    /// The result is established and carries on with `handle_datagram`,
    /// `handle_timeout` and `poll_*`. It queues no datagram (a request in flight is
    /// retransmitted when its timer fires) and reports no event: not
    /// [`super::Event::Established`], and no [`super::Event::ChildSaReady`] for the child
    /// SAs it already has; the node installs those from its own records, or from
    /// [`IkeSaSnapshot::child_installs`]. Children created from here on are reported as
    /// usual.
    pub fn restore(
        config: IkeConfig,
        snapshot: IkeSaSnapshot,
        rng: Box<dyn CryptoRngCore + Send>,
        now: Instant,
    ) -> Result<IkeSa, RestoreError> {
        let s = snapshot;
        if s.format != FORMAT {
            return Err(RestoreError::Format(s.format));
        }
        if s.local.is_ipv4() != s.remote.is_ipv4() {
            return Err(RestoreError::Invalid(
                "local and remote address families differ",
            ));
        }
        if s.fragmentation && !config.fragmentation {
            return Err(RestoreError::ConfigMismatch("fragmentation is not enabled"));
        }
        let session = restore_session(&config, s.session, now)?;
        bounded(&s.retiring, MAX_RETIRING, "old IKE SAs")?;
        let retiring = s
            .retiring
            .into_iter()
            .map(|r| restore_session(&config, r, now))
            .collect::<Result<Vec<_>, _>>()?;
        let ike_collision = match s.ike_collision {
            Some((theirs, low)) => {
                let theirs = restore_session(&config, theirs, now)?;
                Some((Box::new(theirs), nonce(low)?))
            }
            None => None,
        };
        bounded(&s.children, MAX_LIST, "child SAs")?;
        let children = s
            .children
            .into_iter()
            .map(|c| restore_child(c, now))
            .collect::<Result<Vec<_>, _>>()?;
        for (i, c) in children.iter().enumerate() {
            if children.iter().skip(i + 1).any(|o| o.inbound == c.inbound) {
                return Err(RestoreError::Invalid("two child SAs with one inbound SPI"));
            }
        }
        bounded(&s.tasks, MAX_LIST, "queued tasks")?;
        let tasks = s
            .tasks
            .into_iter()
            .map(restore_task)
            .collect::<Result<Vec<_>, _>>()?;
        // Only DPD reads it, and a DPD overdue by more than its interval is just due:
        // going back no further keeps a freshly booted node's clock from underflowing.
        let since = s
            .since_last_seen
            .min(config.dpd_interval.unwrap_or_default());
        let last_seen = now.checked_sub(since).unwrap_or(now);
        let ike_rekey_at = s.ike_rekey_in.map(|d| later(now, d)).transpose()?;
        // Last: the address is taken from the pool only for an SA that will exist.
        let lease = match s.lease {
            Some(a) => {
                let pool = config
                    .address_pool
                    .as_ref()
                    .ok_or(RestoreError::LeaseUnavailable(a))?;
                Some(Lease::claim(pool, a).ok_or(RestoreError::LeaseUnavailable(a))?)
            }
            None => None,
        };
        let mut sa = IkeSa::blank(config, s.local, s.remote, rng, Phase::Established, now);
        (sa.spi_i, sa.spi_r) = session.spis();
        sa.session = Some(session);
        sa.retiring = retiring;
        sa.ike_collision = ike_collision;
        sa.children = children;
        sa.tasks = tasks;
        sa.nat = s.nat;
        sa.encap = s.encap;
        sa.floated = s.floated;
        sa.fragmentation = s.fragmentation;
        sa.last_seen = last_seen;
        sa.ike_rekey_at = ike_rekey_at;
        sa.lease = lease;
        sa.version = StateVersion::resumed(s.state_version, sa.fingerprint());
        Ok(sa)
    }
}

fn bounded<T>(list: &[T], max: usize, what: &'static str) -> Result<(), RestoreError> {
    if list.len() > max {
        return Err(RestoreError::Invalid(what));
    }
    Ok(())
}

fn later(now: Instant, d: Duration) -> Result<Instant, RestoreError> {
    now.checked_add(d)
        .ok_or(RestoreError::Invalid("timer out of range"))
}

fn nonce(n: Vec<u8>) -> Result<Vec<u8>, RestoreError> {
    if !NONCE_LEN.contains(&n.len()) {
        return Err(RestoreError::Invalid("nonce size"));
    }
    Ok(n)
}

fn restore_session(
    config: &IkeConfig,
    s: SessionSnapshot,
    now: Instant,
) -> Result<Session, RestoreError> {
    let suite = s.suite.parse()?;
    if !config.ike_suites.contains(&suite) {
        return Err(RestoreError::SuiteNotConfigured(suite));
    }
    let (spi_i, spi_r) = s.spis;
    if spi_i == 0 || spi_r == 0 {
        return Err(RestoreError::Invalid("zero IKE SPI"));
    }
    if s.keys.sk_d.len() != suite.prf.output_len() {
        return Err(RestoreError::Invalid("SK_d size"));
    }
    let keys = IkeSaKeys {
        sk_d: s.keys.sk_d,
        sk_ai: s.keys.sk_ai,
        sk_ar: s.keys.sk_ar,
        sk_ei: s.keys.sk_ei,
        sk_er: s.keys.sk_er,
        // Only IKE_AUTH used them.
        sk_pi: SecretBytes::new(Vec::new()),
        sk_pr: SecretBytes::new(Vec::new()),
    };
    let keyed = Keyed::new(suite, s.initiator, keys, InitTranscript::default())
        .map_err(|_| RestoreError::Invalid("SK_e/SK_a sizes"))?;
    let mut sess = Session::new(s.initiator, (spi_i, spi_r), keyed);
    sess.next_id = s.next_id;
    sess.peer_next = s.peer_next;
    if let Some((id, datagrams)) = &s.last_response {
        if id.wrapping_add(1) != s.peer_next {
            return Err(RestoreError::Invalid("message ID of the cached response"));
        }
        check_datagrams(datagrams, &sess, *id, true)?;
    }
    sess.last_response = s.last_response;
    sess.active = s
        .active
        .map(|a| restore_active(config, a, &sess, now))
        .transpose()?;
    sess.retire_at = s.retire_in.map(|d| later(now, d)).transpose()?;
    Ok(sess)
}

/// Datagrams of one message of `sess`: a request of ours (`response` false) or our
/// answer, with this message ID.
fn check_datagrams(
    datagrams: &[Vec<u8>],
    sess: &Session,
    message_id: u32,
    response: bool,
) -> Result<(), RestoreError> {
    if datagrams.is_empty() || datagrams.len() > MAX_DATAGRAMS {
        return Err(RestoreError::Invalid("datagram count of a message"));
    }
    for d in datagrams {
        let header = Header::parse(d)
            .map_err(|_| RestoreError::Invalid("stored message header"))?
            .header;
        let ours = d.len() <= MAX_DATAGRAM_LEN
            && (header.spi_i, header.spi_r) == sess.spis()
            && header.message_id == message_id
            && header.flags.response() == response
            && header.flags.initiator() == sess.initiator;
        if !ours {
            return Err(RestoreError::Invalid("stored message of another exchange"));
        }
    }
    Ok(())
}

fn restore_active(
    config: &IkeConfig,
    a: ActiveSnapshot,
    sess: &Session,
    now: Instant,
) -> Result<Active, RestoreError> {
    if a.message_id.wrapping_add(1) != sess.next_id {
        return Err(RestoreError::Invalid("message ID of the request in flight"));
    }
    if a.tries == 0 || a.tries > config.retransmit.max_tries {
        return Err(RestoreError::Invalid("retransmission count"));
    }
    check_datagrams(&a.datagrams, sess, a.message_id, false)?;
    let kind = match a.kind {
        ActiveKindSnapshot::Dpd => ActiveKind::Dpd,
        ActiveKindSnapshot::DeleteIke => ActiveKind::DeleteIke,
        ActiveKindSnapshot::DeleteChildren(spis) => {
            bounded(&spis, MAX_LIST, "child SAs being deleted")?;
            ActiveKind::DeleteChildren(spis)
        }
        ActiveKindSnapshot::CreateChild(c) => {
            let config = c.config.parse()?;
            let dh = c.dh.map(DhPrivate::parse).transpose()?;
            if dh.as_ref().map(DhSecret::group) != config.pfs {
                return Err(RestoreError::Invalid("DH group of a child SA in flight"));
            }
            if c.our_spi <= 255 {
                return Err(RestoreError::Invalid("child SPI"));
            }
            ActiveKind::CreateChild(Box::new(ChildInit {
                config,
                our_spi: c.our_spi,
                ni: nonce(c.ni)?,
                dh,
                rekeys: c.rekeys,
                ke_retry: c.ke_retry,
                collision: c.collision.map(nonce).transpose()?,
            }))
        }
        ActiveKindSnapshot::RekeyIke(r) => {
            bounded(&r.suites, MAX_LIST, "IKE suites")?;
            let suites = r
                .suites
                .iter()
                .map(IkeSuiteIds::parse)
                .collect::<Result<Vec<_>, _>>()?;
            let dh = r.dh.parse()?;
            if suites.first().map(|s| s.dh) != Some(dh.group()) || r.new_spi == 0 {
                return Err(RestoreError::Invalid("IKE rekey in flight"));
            }
            ActiveKind::RekeyIke(Box::new(IkeRekeyInit {
                new_spi: r.new_spi,
                ni: nonce(r.ni)?,
                dh,
                suites,
            }))
        }
    };
    Ok(Active {
        id: a.message_id,
        kind,
        datagrams: a.datagrams,
        tries: a.tries,
        at: later(now, a.retransmit_in)?,
    })
}

fn restore_child(c: ChildSnapshot, now: Instant) -> Result<Child, RestoreError> {
    let i = &c.install;
    let suite = ChildSuiteIds {
        encr: i.encr_id,
        encr_key_bits: i.encr_key_bits,
        integ: i.integ_id,
        esn: i.esn,
    }
    .parse()?;
    if i.protocol != suite.protocol() {
        return Err(RestoreError::Invalid("child SA protocol"));
    }
    let sized = |k: &ChildSaKeys| {
        k.encr_key.len() == suite.encr().map_or(0, Encr::key_material_len)
            && k.integ_key.len() == suite.integ().map_or(0, Integ::key_len)
    };
    if !sized(&i.inbound) || !sized(&i.outbound) {
        return Err(RestoreError::Invalid("child SA key sizes"));
    }
    if i.inbound.spi <= 255 || i.outbound.spi == 0 {
        return Err(RestoreError::Invalid("child SPI"));
    }
    selectors(&i.local_ts)?;
    selectors(&i.remote_ts)?;
    let config = ChildConfig {
        suites: vec![suite],
        local_ts: i.local_ts.clone(),
        remote_ts: i.remote_ts.clone(),
        pfs: c.pfs.map(DhGroup::from_iana).transpose()?,
        mode: i.mode,
    };
    Ok(Child {
        inbound: i.inbound.spi,
        outbound: i.outbound.spi,
        config,
        state: c.state,
        installed: c.installed,
        rekey_at: c.rekey_in.map(|d| later(now, d)).transpose()?,
        expire_at: c.expire_in.map(|d| later(now, d)).transpose()?,
        install: c.install,
    })
}

fn restore_task(t: TaskSnapshot) -> Result<Task, RestoreError> {
    Ok(match t {
        TaskSnapshot::DeleteIke => Task::DeleteIke,
        TaskSnapshot::DeleteChild(spi) => Task::DeleteChild(spi),
        TaskSnapshot::RekeyIke => Task::RekeyIke,
        TaskSnapshot::RekeyChild(spi) => Task::RekeyChild(spi),
        TaskSnapshot::CreateChild(c) => Task::CreateChild(c.parse()?),
        TaskSnapshot::Dpd => Task::Dpd,
    })
}

fn selectors(ts: &[IpSelector]) -> Result<(), RestoreError> {
    if ts.is_empty() || ts.len() > MAX_LIST {
        return Err(RestoreError::Invalid("traffic selector count"));
    }
    Ok(())
}

impl IkeSuiteIds {
    fn parse(&self) -> Result<IkeSuite, RestoreError> {
        let suite = IkeSuite {
            encr: Encr::from_transform(self.encr, self.encr_key_bits)?,
            integ: self.integ.map(Integ::from_iana).transpose()?,
            prf: Prf::from_iana(self.prf)?,
            dh: DhGroup::from_iana(self.dh)?,
        };
        if suite.encr.is_aead() != suite.integ.is_none() {
            return Err(RestoreError::Invalid("encryption/integrity pairing"));
        }
        Ok(suite)
    }
}

impl ChildSuiteIds {
    fn parse(&self) -> Result<ChildSuite, RestoreError> {
        let integ = self.integ.map(Integ::from_iana).transpose()?;
        let Some(encr) = self.encr else {
            let integ = integ.ok_or(RestoreError::Invalid("AH without integrity"))?;
            return Ok(ChildSuite::Ah {
                integ,
                esn: self.esn,
            });
        };
        let encr = Encr::from_transform(encr, self.encr_key_bits)?;
        if encr.is_aead() != integ.is_none() {
            return Err(RestoreError::Invalid("encryption/integrity pairing"));
        }
        Ok(ChildSuite::Esp {
            encr,
            integ,
            esn: self.esn,
        })
    }
}

impl ChildConfigSnapshot {
    fn parse(self) -> Result<ChildConfig, RestoreError> {
        if self.suites.is_empty() {
            return Err(RestoreError::Invalid("child proposal without suites"));
        }
        bounded(&self.suites, MAX_LIST, "child suites")?;
        selectors(&self.local_ts)?;
        selectors(&self.remote_ts)?;
        Ok(ChildConfig {
            suites: self
                .suites
                .iter()
                .map(ChildSuiteIds::parse)
                .collect::<Result<_, _>>()?,
            local_ts: self.local_ts,
            remote_ts: self.remote_ts,
            pfs: self.pfs.map(DhGroup::from_iana).transpose()?,
            mode: self.mode,
        })
    }
}

impl DhPrivate {
    fn parse(self) -> Result<DhSecret, RestoreError> {
        let group = DhGroup::from_iana(self.group)?;
        Ok(DhSecret::from_private_bytes(
            group,
            self.private.as_bytes(),
        )?)
    }
}
