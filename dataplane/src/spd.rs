//! The security policy database of policy-based VPNs (RFC 4301 §4.4.1).
//!
//! Configured policies form one ordered list and the first match wins, as in RFC 4301's
//! ordered SPD and Junos security policies: a `discard` placed before a `protect` shadows
//! it. A packet that no policy selects is dropped by the caller with
//! [`crate::drop::DropReason::NoPolicy`]: the SPD is default-deny.
//!
//! In front of that list sit the entries of remote-access clients ([`Spd::insert_client`]):
//! they come and go with SAs, thousands of them, so they are kept apart from the list.
//! One SPD is published to all workers and replaced, never edited, while they use it;
//! with the clients in the list every client's arrival copied and re-indexed the whole
//! SPD (at 10,000 clients that doubled a dial-up gateway's CPU per setup). Now client
//! entries are bucketed by the network their destination lies in and an edit copies
//! one shard of them (~1/256), and the configured list is shared between the SPDs a
//! client edit derives.
//!
//! Lookup speed without changing the first-match semantics comes from:
//! - an index of the configured list, rebuilt on every change of it, that keeps per
//!   address family and per protocol the positions of the policies that could match at
//!   all, with policies whose destination is one address hashed by that address. A lookup
//!   merges the protocol's list, the any-protocol list and the list of the packet's
//!   destination in position order, so the first match is still the first in the list;
//! - an optional one-entry [`LookupCache`] owned by the caller (one per worker), keyed by
//!   the SPD's generation, which changes on every edit. The SPD itself stays immutable
//!   during lookups, so one published SPD can be shared by all workers.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Arc;
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
    /// Positions of policies whose destination is one address (a server, a host-to-host
    /// tunnel), by that address, ascending: a packet only ever tries those of its own
    /// destination, so many of them cost a hash lookup, not a scan. They are in neither
    /// list above.
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

/// The configured policies in order, with their lookup index.
#[derive(Debug, Clone, Default)]
struct Ordered {
    policies: Vec<Policy>,
    v4: FamilyIndex,
    v6: FamilyIndex,
}

/// Shards of the clients' entries.
const CLIENT_SHARDS: usize = 256;

/// Where a client entry is kept: its destination range lies within one prefix of
/// `bits` (the full address length for one address), the network `net`. A lookup tries
/// the packet destination's bucket at each level, most specific first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
struct Bucket {
    bits: u8,
    net: IpAddr,
}

/// Bucket levels: one address, then the networks a client usually brings (a LAN behind
/// a dial-up peer). A range wider than the last level is kept in the scanned list.
const V4_LEVELS: [u8; 3] = [32, 24, 16];
const V6_LEVELS: [u8; 3] = [128, 64, 48];

fn levels(addr: &IpAddr) -> [u8; 3] {
    if addr.is_ipv6() { V6_LEVELS } else { V4_LEVELS }
}

/// `addr` with all but its first `bits` bits cleared.
fn masked(addr: IpAddr, bits: u8) -> IpAddr {
    match addr {
        IpAddr::V4(a) => {
            let mask = u32::MAX.checked_shl(32 - u32::from(bits)).unwrap_or(0);
            IpAddr::V4((a.to_bits() & mask).into())
        }
        IpAddr::V6(a) => {
            let mask = u128::MAX.checked_shl(128 - u32::from(bits)).unwrap_or(0);
            IpAddr::V6((a.to_bits() & mask).into())
        }
    }
}

/// The most specific bucket holding the whole of `dst`, if any level does.
fn bucket_of(dst: &crate::selector::IpRange) -> Option<Bucket> {
    let (start, end) = (dst.start(), dst.end());
    levels(&start)
        .into_iter()
        .map(|bits| (bits, masked(start, bits)))
        .find(|&(bits, net)| masked(end, bits) == net)
        .map(|(bits, net)| Bucket { bits, net })
}

/// One shard: entries by bucket, newest first.
type ClientShard = HashMap<Bucket, Vec<Policy>>;

/// The remote-access clients' entries.
#[derive(Debug, Clone, Default)]
struct Clients {
    /// Entries by bucket, sharded ([`CLIENT_SHARDS`], empty until the first client):
    /// cloning the SPD copies pointers, an edit one shard.
    shards: Arc<Vec<Arc<ClientShard>>>,
    /// Entries wider than every bucket level, newest first: rare, and scanned.
    wide: Arc<Vec<Policy>>,
    len: usize,
}

/// The shard of `bucket`. The mix only spreads entries; each shard's own `HashMap` is
/// keyed with a random hasher, so chosen addresses cannot degrade it.
fn shard_of(bucket: &Bucket) -> usize {
    let bits = match bucket.net {
        IpAddr::V4(a) => u64::from(a.to_bits()),
        IpAddr::V6(a) => {
            let b = a.to_bits();
            (b as u64) ^ ((b >> 64) as u64)
        }
    } ^ u64::from(bucket.bits);
    (bits.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 56) as usize % CLIENT_SHARDS
}

/// The SPD: remote-access clients' entries, then the ordered configured policies.
#[derive(Debug, Clone)]
pub struct Spd {
    clients: Clients,
    /// Shared by the SPDs that client edits derive from one another.
    ordered: Arc<Ordered>,
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
            clients: Clients::default(),
            ordered: Arc::default(),
            generation: next_generation(),
        }
    }

    /// Inserts configured policy `policy` at position `index` of the list (0 = evaluated
    /// first, after the clients' entries).
    pub fn insert(&mut self, index: usize, policy: Policy) -> Result<(), SpdError> {
        let len = self.ordered.policies.len();
        if index > len {
            return Err(SpdError::BadIndex { index, len });
        }
        if self.position(&policy.name).is_some() {
            return Err(SpdError::DuplicateName(policy.name));
        }
        if u32::try_from(len).is_err() {
            return Err(SpdError::Full);
        }
        let ordered = Arc::make_mut(&mut self.ordered);
        ordered.policies.insert(index, policy);
        ordered.rebuild();
        self.generation = next_generation();
        Ok(())
    }

    /// Appends configured policy `policy`, evaluated after all others.
    pub fn push(&mut self, policy: Policy) -> Result<(), SpdError> {
        self.insert(self.ordered.policies.len(), policy)
    }

    /// Removes and returns the configured policy named `name`.
    pub fn remove(&mut self, name: &str) -> Option<Policy> {
        let i = self.position(name)?;
        let ordered = Arc::make_mut(&mut self.ordered);
        let p = ordered.policies.remove(i);
        ordered.rebuild();
        self.generation = next_generation();
        Some(p)
    }

    /// Replaces the configured policies by those of `configured`, keeping this SPD's
    /// client entries (a configuration reload).
    pub fn replace_policies(&mut self, configured: &Spd) {
        self.ordered = Arc::clone(&configured.ordered);
        self.generation = next_generation();
    }

    /// Position of the configured policy named `name`.
    pub fn position(&self, name: &str) -> Option<usize> {
        self.ordered.policies.iter().position(|p| p.name == name)
    }

    /// The configured policy named `name`.
    pub fn get(&self, name: &str) -> Option<&Policy> {
        self.ordered.policies.iter().find(|p| p.name == name)
    }

    /// The configured policies in evaluation order.
    pub fn policies(&self) -> &[Policy] {
        &self.ordered.policies
    }

    /// Number of configured policies.
    pub fn len(&self) -> usize {
        self.ordered.policies.len()
    }

    /// True when there is no configured policy.
    pub fn is_empty(&self) -> bool {
        self.ordered.policies.is_empty()
    }

    /// Adds a remote-access client's entry, evaluated before every configured policy.
    /// Among client entries, those whose destination lies in a smaller network come first
    /// (one address, then a /24 or /64, then a /16 or /48, then wider), the newest first
    /// within each. Names are unique per destination network.
    pub fn insert_client(&mut self, policy: Policy) -> Result<(), SpdError> {
        match bucket_of(&policy.selector.dst) {
            Some(bucket) => {
                let shards = Arc::make_mut(&mut self.clients.shards);
                if shards.is_empty() {
                    shards.resize_with(CLIENT_SHARDS, Arc::default);
                }
                let shard = Arc::make_mut(&mut shards[shard_of(&bucket)]);
                let entries = shard.entry(bucket).or_default();
                if entries.iter().any(|p| p.name == policy.name) {
                    return Err(SpdError::DuplicateName(policy.name));
                }
                entries.insert(0, policy);
            }
            None => {
                if self.clients.wide.iter().any(|p| p.name == policy.name) {
                    return Err(SpdError::DuplicateName(policy.name));
                }
                Arc::make_mut(&mut self.clients.wide).insert(0, policy);
            }
        }
        self.clients.len += 1;
        self.generation = next_generation();
        Ok(())
    }

    /// Removes and returns the client entry named `name` whose selector is `selector`.
    pub fn remove_client(&mut self, name: &str, selector: &Selector) -> Option<Policy> {
        let removed = match bucket_of(&selector.dst) {
            Some(bucket) => {
                let i = shard_of(&bucket);
                let entries = self.clients.shards.get(i)?.get(&bucket)?;
                let at = entries.iter().position(|p| p.name == name)?;
                let shards = Arc::make_mut(&mut self.clients.shards);
                let shard = Arc::make_mut(shards.get_mut(i)?);
                let entries = shard.get_mut(&bucket)?;
                let p = entries.remove(at);
                if entries.is_empty() {
                    shard.remove(&bucket);
                }
                p
            }
            None => {
                let at = self.clients.wide.iter().position(|p| p.name == name)?;
                Arc::make_mut(&mut self.clients.wide).remove(at)
            }
        };
        self.clients.len -= 1;
        self.generation = next_generation();
        Some(removed)
    }

    /// The clients' entries, in no particular order.
    pub fn clients(&self) -> impl Iterator<Item = &Policy> {
        let bucketed = self
            .clients
            .shards
            .iter()
            .flat_map(|shard| shard.values().flatten());
        bucketed.chain(self.clients.wide.iter())
    }

    /// Number of client entries.
    pub fn client_count(&self) -> usize {
        self.clients.len
    }

    /// Changes on every edit; [`LookupCache`] entries of another generation are stale.
    pub fn generation(&self) -> u64 {
        self.generation
    }

    /// The first entry selecting `key`, or `None` (the caller drops: default deny).
    pub fn lookup(&self, key: &FlowKey) -> Option<&Policy> {
        self.client_lookup(key).or_else(|| {
            self.ordered
                .lookup_index(key)
                .and_then(|i| self.ordered.policies.get(i))
        })
    }

    /// The action of [`Spd::lookup`]'s entry, through a caller-owned one-entry cache of
    /// the last match, which suits bursts of packets of one flow.
    pub fn lookup_cached(&self, cache: &mut LookupCache, key: &FlowKey) -> Option<PolicyAction> {
        if let Some((generation, k, action)) = cache.last
            && generation == self.generation
            && k == *key
        {
            return Some(action);
        }
        let action = self.lookup(key)?.action;
        cache.last = Some((self.generation, *key, action));
        Some(action)
    }

    fn client_lookup(&self, key: &FlowKey) -> Option<&Policy> {
        if self.clients.len == 0 {
            return None;
        }
        let shards = &self.clients.shards;
        let bucketed = levels(&key.dst).into_iter().flat_map(move |bits| {
            let bucket = Bucket {
                bits,
                net: masked(key.dst, bits),
            };
            shards
                .get(shard_of(&bucket))
                .and_then(|shard| shard.get(&bucket))
                .map_or(&[][..], Vec::as_slice)
        });
        bucketed
            .chain(self.clients.wide.iter())
            .find(|p| p.selector.matches(key))
    }
}

impl Ordered {
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
    last: Option<(u64, FlowKey, PolicyAction)>,
}

impl LookupCache {
    /// Forgets the cached entry.
    pub fn clear(&mut self) {
        self.last = None;
    }
}
