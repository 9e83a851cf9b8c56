//! The security policy database of policy-based VPNs (RFC 4301 §4.4.1).
//!
//! Policies form one ordered list and the first match wins, as in RFC 4301's ordered SPD and
//! Junos security policies: a `discard` placed before a `protect` shadows it. A packet that
//! no policy selects is dropped by the caller with [`crate::drop::DropReason::NoPolicy`]:
//! the SPD is default-deny.
//!
//! Lookup speed without changing that semantics comes from two places:
//! - an index, rebuilt on every change, that keeps per address family and per protocol the
//!   positions of the policies that could match at all, with policies whose destination is
//!   one address (remote-access clients) hashed by that address. A lookup merges the
//!   protocol's list, the any-protocol list and the list of the packet's destination in
//!   position order, so the first match is still the first in the whole list;
//! - an optional one-entry [`LookupCache`] owned by the caller (one per worker), keyed by
//!   the SPD's generation, which changes on every edit. The SPD itself stays immutable
//!   during lookups, so one published SPD can be shared by all workers.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};

use crate::selector::{FlowKey, Selector};

/// What to do with a packet a policy selects.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PolicyAction {
    /// Send through IPsec; the id is opaque here and mapped by the engine to an outbound SA
    /// or tunnel.
    Protect(u32),
    /// Forward in the clear.
    Bypass,
    /// Drop ([`crate::drop::DropReason::PolicyDiscard`]).
    Discard,
}

/// One named policy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Policy {
    /// Unique name, as in the configuration.
    pub name: String,
    /// The traffic the policy applies to (outbound direction).
    pub selector: Selector,
    /// What to do with that traffic.
    pub action: PolicyAction,
}

/// Errors from editing the SPD.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SpdError {
    /// A policy of that name already exists.
    #[error("a policy named {0:?} already exists")]
    DuplicateName(String),
    /// Insert position beyond the end of the list.
    #[error("position {index} is beyond the {len} policies")]
    BadIndex { index: usize, len: usize },
    /// More policies than positions the index can hold.
    #[error("too many policies")]
    Full,
}

/// Positions (into the policy list) of the policies one family can match.
#[derive(Debug, Clone)]
struct FamilyIndex {
    /// Per protocol number, positions of policies naming that protocol, ascending.
    by_protocol: Box<[Vec<u32>; 256]>,
    /// Positions of policies matching any protocol, ascending.
    any_protocol: Vec<u32>,
    /// Positions of policies whose destination is one address (each remote-access
    /// client's entry), by that address, ascending: a packet only ever tries those of
    /// its own destination, so thousands of clients cost a hash lookup, not a scan.
    /// They are in neither list above.
    by_dst_host: HashMap<IpAddr, Vec<u32>>,
}

impl Default for FamilyIndex {
    fn default() -> Self {
        Self {
            by_protocol: Box::new(std::array::from_fn(|_| Vec::new())),
            any_protocol: Vec::new(),
            by_dst_host: HashMap::new(),
        }
    }
}

/// Source of SPD generations. Global, so that two SPD instances (say an old and a newly
/// published one) never share a generation and a cache cannot outlive its SPD.
static NEXT_GENERATION: AtomicU64 = AtomicU64::new(1);

fn next_generation() -> u64 {
    NEXT_GENERATION.fetch_add(1, Ordering::Relaxed)
}

/// The ordered policy list with its lookup index.
#[derive(Debug, Clone)]
pub struct Spd {
    policies: Vec<Policy>,
    v4: FamilyIndex,
    v6: FamilyIndex,
    generation: u64,
}

impl Default for Spd {
    fn default() -> Self {
        Self::new()
    }
}

impl Spd {
    /// An empty SPD: every lookup misses (default deny).
    pub fn new() -> Self {
        Self {
            policies: Vec::new(),
            v4: FamilyIndex::default(),
            v6: FamilyIndex::default(),
            generation: next_generation(),
        }
    }

    /// Inserts `policy` at position `index` (0 = evaluated first).
    pub fn insert(&mut self, index: usize, policy: Policy) -> Result<(), SpdError> {
        if index > self.policies.len() {
            return Err(SpdError::BadIndex {
                index,
                len: self.policies.len(),
            });
        }
        if self.position(&policy.name).is_some() {
            return Err(SpdError::DuplicateName(policy.name));
        }
        if u32::try_from(self.policies.len()).is_err() {
            return Err(SpdError::Full);
        }
        self.policies.insert(index, policy);
        self.rebuild();
        Ok(())
    }

    /// Appends `policy`, evaluated after all others.
    pub fn push(&mut self, policy: Policy) -> Result<(), SpdError> {
        self.insert(self.policies.len(), policy)
    }

    /// Removes and returns the policy named `name`.
    pub fn remove(&mut self, name: &str) -> Option<Policy> {
        let i = self.position(name)?;
        let p = self.policies.remove(i);
        self.rebuild();
        Some(p)
    }

    /// Position of the policy named `name`.
    pub fn position(&self, name: &str) -> Option<usize> {
        self.policies.iter().position(|p| p.name == name)
    }

    /// The policy named `name`.
    pub fn get(&self, name: &str) -> Option<&Policy> {
        self.policies.iter().find(|p| p.name == name)
    }

    /// The policies in evaluation order.
    pub fn policies(&self) -> &[Policy] {
        &self.policies
    }

    /// Number of policies.
    pub fn len(&self) -> usize {
        self.policies.len()
    }

    /// True when there is no policy.
    pub fn is_empty(&self) -> bool {
        self.policies.is_empty()
    }

    /// Changes on every edit; [`LookupCache`] entries of another generation are stale.
    pub fn generation(&self) -> u64 {
        self.generation
    }

    /// The first policy selecting `key`, or `None` (the caller drops: default deny).
    pub fn lookup(&self, key: &FlowKey) -> Option<&Policy> {
        self.lookup_index(key).and_then(|i| self.policies.get(i))
    }

    /// [`Spd::lookup`] through a caller-owned one-entry cache of the last match, which
    /// suits bursts of packets of one flow.
    pub fn lookup_cached(&self, cache: &mut LookupCache, key: &FlowKey) -> Option<&Policy> {
        if let Some((generation, k, i)) = cache.last
            && generation == self.generation
            && k == *key
        {
            return self.policies.get(i);
        }
        let i = self.lookup_index(key)?;
        cache.last = Some((self.generation, *key, i));
        self.policies.get(i)
    }

    fn lookup_index(&self, key: &FlowKey) -> Option<usize> {
        let fam = if key.src.is_ipv6() {
            &self.v6
        } else {
            &self.v4
        };
        let lists: [&[u32]; 3] = [
            fam.by_protocol.get(usize::from(key.protocol))?,
            &fam.any_protocol,
            fam.by_dst_host.get(&key.dst).map_or(&[], Vec::as_slice),
        ];
        // Merge the ascending position lists so candidates are tried in list order.
        let mut next = [0usize; 3];
        loop {
            let (list, pos) = lists
                .iter()
                .enumerate()
                .filter_map(|(l, v)| v.get(next[l]).map(|p| (l, *p)))
                .min_by_key(|(_, p)| *p)?;
            next[list] += 1;
            let pos = pos as usize;
            if self
                .policies
                .get(pos)
                .is_some_and(|p| p.selector.matches(key))
            {
                return Some(pos);
            }
        }
    }

    fn rebuild(&mut self) {
        self.generation = next_generation();
        for fam in [&mut self.v4, &mut self.v6] {
            fam.any_protocol.clear();
            fam.by_dst_host.clear();
            for v in fam.by_protocol.iter_mut() {
                v.clear();
            }
        }
        for (i, p) in self.policies.iter().enumerate() {
            // insert() keeps the list within u32 positions.
            let Ok(pos) = u32::try_from(i) else { break };
            let fam = if p.selector.src.is_ipv6() {
                &mut self.v6
            } else {
                &mut self.v4
            };
            let dst = &p.selector.dst;
            if dst.start() == dst.end() {
                fam.by_dst_host.entry(dst.start()).or_default().push(pos);
                continue;
            }
            match p.selector.protocol {
                Some(proto) => {
                    if let Some(v) = fam.by_protocol.get_mut(usize::from(proto)) {
                        v.push(pos);
                    }
                }
                None => fam.any_protocol.push(pos),
            }
        }
    }
}

/// A one-entry cache of the last lookup, owned by one worker and used with
/// [`Spd::lookup_cached`].
#[derive(Debug, Clone, Copy, Default)]
pub struct LookupCache {
    last: Option<(u64, FlowKey, usize)>,
}

impl LookupCache {
    /// Forgets the cached entry.
    pub fn clear(&mut self) {
        self.last = None;
    }
}
