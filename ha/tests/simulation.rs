//! Deterministic simulation of a whole cluster: node0, node1 and the witness run the real
//! `sa_sync::Replica` (raft-rs) and `ha::GroupFsm` over a simulated network with delays,
//! loss and partitions, crashes with restarts from "disk", pauses (a stopped process,
//! or a clock that stood still while the others ran), and clocks that disagree: each
//! member reads its own monotonic clock, whose rate differs from true time by up to
//! ±0.5 % and jumps to another rate at random moments. (CLOCK_MONOTONIC, which the
//! leases use, is never stepped on Linux; NTP slews its rate by at most 500 ppm, a tenth
//! of what is simulated. A step would be a pause, which is simulated too. Wall-clock
//! steps only shift the age of replicated IKE SA records, which changes when a rekey
//! fires, not who forwards.) Virtual time advances in 1 ms steps;
//! everything random comes from one seed, so a failing seed reproduces exactly:
//!
//! ```text
//! SIM_SEED=1234 cargo test -p ha --test simulation
//! SIM_SEEDS=5000 cargo test -p ha --test simulation   # more seeds
//! ```
//!
//! Checked at every step, for one redundancy group carrying one SA pair with traffic in
//! both directions:
//! (a) no outbound sequence number of the SA is ever sent twice by the cluster;
//! (b) at most one node forwards at any moment;
//! (c) after a takeover the new owner accepts no inbound packet at or below the
//!     replicated mark, and what an attacker could replay (packets the old owner
//!     accepted above that mark) stays within `lease + mark interval`.

use std::collections::{BTreeMap, HashSet, VecDeque};
use std::time::{Duration, Instant};

use ha::{ClusterConfig, GroupConfig, GroupFsm, PeerView, ReservePolicy};
use raft::eraftpb::Message;
use rand_chacha::ChaCha8Rng;
use rand_core::{RngCore, SeedableRng};
use sa_sync::{
    ChildSaRecord, Command, Fence, IkeSaRecord, MemLogStore, Member, ProposalId, Replica,
    ReplicaConfig, SaId, Secret,
};

const GROUP: u8 = 1;
const GATEWAY: &str = "gw";
const INBOUND_SPI: u32 = 0x100;
const OUTBOUND_SPI: u32 = 0x200;
/// Virtual time per seed.
const RUN_MS: u64 = 12_000;
/// A Raft tick.
const TICK_MS: u64 = 10;
/// Replay marks are proposed this often.
const MARK_MS: u64 = 10;
/// Packets each way per millisecond while a node forwards.
const PPS_MS: u64 = 2;

fn outbound() -> SaId {
    SaId {
        gateway: GATEWAY.into(),
        spi: OUTBOUND_SPI,
    }
}

fn inbound() -> SaId {
    SaId {
        gateway: GATEWAY.into(),
        spi: INBOUND_SPI,
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Pending {
    Group,
    Reserve,
}

/// A gateway node's volatile state: lost in a crash.
struct Gateway {
    fsm: GroupFsm,
    proposals: BTreeMap<(u64, u64), (Pending, Instant)>,
    forwarding: bool,
    next_seq: u64,
    limit: u64,
    reserving: bool,
    in_high: u64,
}

struct Host {
    me: Member,
    store: MemLogStore,
    replica: Option<Replica<MemLogStore>>,
    gateway: Option<Gateway>,
    /// Paused (SIGSTOP) until then: no ticks, no messages, no forwarding.
    paused_until: u64,
    down_until: u64,
    incarnation: u64,
    /// This member's monotonic clock, in nanoseconds since the start.
    clock_ns: u64,
    /// How much faster (or slower, negative) its clock runs than true time, in parts
    /// per million.
    rate_ppm: i64,
}

struct Sim {
    rng: ChaCha8Rng,
    now: u64,
    base: Instant,
    hosts: Vec<Host>,
    /// In flight: (deliver at, from index, message).
    wire: Vec<(u64, Message)>,
    /// Members cut off from everyone until then.
    cut: [u64; 3],
    loss_percent: u32,
    cluster: ClusterConfig,
    replica: ReplicaConfig,
    policy: ReservePolicy,
    sent: HashSet<u64>,
    peer_seq: u64,
    /// Highest inbound seq any owner accepted, and the node.
    accepted_high: u64,
    takeovers: u32,
    max_exposure: u64,
    log: VecDeque<String>,
}

impl Sim {
    fn new(seed: u64) -> Self {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let cluster = ClusterConfig {
            heartbeat_interval: Duration::from_millis(100),
            heartbeat_threshold: 3,
            groups: vec![GroupConfig::new(0), GroupConfig::new(GROUP)],
            ..ClusterConfig::default()
        };
        let replica = ReplicaConfig {
            election_ticks: 10,
            heartbeat_ticks: 2,
            fixed_election_timeout: None,
            snapshot_interval: 200,
        };
        let base = Instant::now();
        let hosts = Member::ALL
            .iter()
            .map(|&me| Host {
                me,
                store: MemLogStore::new(),
                replica: None,
                gateway: None,
                paused_until: 0,
                down_until: 0,
                incarnation: rng.next_u64(),
                clock_ns: 0,
                rate_ppm: random_rate(&mut rng),
            })
            .collect();
        let mut sim = Self {
            rng,
            now: 0,
            base,
            hosts,
            wire: Vec::new(),
            cut: [0; 3],
            loss_percent: 0,
            cluster,
            replica,
            policy: ReservePolicy {
                min_block: 64,
                max_block: 4096,
                horizon: Duration::from_millis(200),
            },
            sent: HashSet::new(),
            peer_seq: 0,
            accepted_high: 0,
            takeovers: 0,
            max_exposure: 0,
            log: VecDeque::new(),
        };
        for i in 0..3 {
            sim.boot(i);
        }
        sim
    }

    /// Member `i`'s clock now.
    fn instant(&self, i: usize) -> Instant {
        self.base + Duration::from_nanos(self.hosts[i].clock_ns)
    }

    fn note(&mut self, s: String) {
        push_note(&mut self.log, self.now, s);
    }

    fn boot(&mut self, i: usize) {
        let timeout = 10 + (self.rng.next_u32() % 10) as usize;
        let config = ReplicaConfig {
            fixed_election_timeout: Some(timeout),
            ..self.replica.clone()
        };
        let host = &mut self.hosts[i];
        host.incarnation = host.incarnation.wrapping_add(1);
        let logger = slog::Logger::root(slog::Discard, slog::o!());
        let replica = Replica::open(
            host.me,
            host.store.clone(),
            &config,
            host.incarnation,
            &logger,
        )
        .expect("replica opens on its store");
        host.replica = Some(replica);
        let now = self.base + Duration::from_nanos(host.clock_ns);
        host.gateway = host.me.is_gateway().then(|| Gateway {
            fsm: GroupFsm::new(
                host.me,
                &self.cluster,
                self.cluster.group(GROUP).expect("group configured"),
                now,
            ),
            proposals: BTreeMap::new(),
            forwarding: false,
            next_seq: 0,
            limit: 0,
            reserving: false,
            in_high: 0,
        });
    }

    fn crash(&mut self, i: usize, for_ms: u64) {
        self.note(format!("crash {} for {for_ms} ms", self.hosts[i].me));
        let h = &mut self.hosts[i];
        h.replica = None;
        h.gateway = None;
        h.down_until = self.now + for_ms;
    }

    fn running(&self, i: usize) -> bool {
        let h = &self.hosts[i];
        h.replica.is_some() && self.now >= h.paused_until
    }

    /// Random faults: crash, pause, partition one member, lossy network.
    fn inject(&mut self) {
        let roll = self.rng.next_u32() % 4000;
        let who = (self.rng.next_u32() % 3) as usize;
        let len = 50 + u64::from(self.rng.next_u32() % 2000);
        match roll {
            0..=2 if self.hosts[who].replica.is_some() => self.crash(who, len),
            3..=5 => {
                self.note(format!("pause {} for {len} ms", self.hosts[who].me));
                self.hosts[who].paused_until = self.now + len;
            }
            6..=8 => {
                self.note(format!("partition {} for {len} ms", self.hosts[who].me));
                self.cut[who] = self.now + len;
            }
            9 => {
                self.loss_percent = self.rng.next_u32() % 30;
                self.note(format!("loss {}%", self.loss_percent));
            }
            10..=12 => {
                let rate = random_rate(&mut self.rng);
                self.note(format!("clock of {} now {rate:+} ppm", self.hosts[who].me));
                self.hosts[who].rate_ppm = rate;
            }
            _ => {}
        }
    }

    fn step(&mut self) {
        self.now += 1;
        for h in &mut self.hosts {
            h.clock_ns = h.clock_ns.saturating_add_signed(1_000_000 + h.rate_ppm);
        }
        self.inject();
        for i in 0..3 {
            if self.hosts[i].replica.is_none() && self.now >= self.hosts[i].down_until {
                self.note(format!("restart {}", self.hosts[i].me));
                self.boot(i);
            }
        }
        self.deliver();
        for i in 0..3 {
            if !self.running(i) {
                continue;
            }
            if self.now.is_multiple_of(TICK_MS) {
                self.hosts[i].replica.as_mut().expect("running").tick();
            }
            self.process(i);
            self.gateway(i);
            self.process(i);
        }
        self.check_single_forwarder();
    }

    fn deliver(&mut self) {
        let now = self.now;
        let due: Vec<Message>;
        (due, self.wire) = {
            let (d, w): (Vec<_>, Vec<_>) = std::mem::take(&mut self.wire)
                .into_iter()
                .partition(|(at, _)| *at <= now);
            (d.into_iter().map(|(_, m)| m).collect(), w)
        };
        let mut held = Vec::new();
        for m in due {
            let to = Member::from_raft_id(m.to).expect("member").index();
            if self.hosts[to].replica.is_none() {
                continue;
            }
            if now < self.hosts[to].paused_until {
                // A stopped process's socket buffer keeps the message.
                held.push((self.hosts[to].paused_until, m));
                continue;
            }
            let r = self.hosts[to].replica.as_mut().expect("up");
            r.step(m).expect("step");
        }
        self.wire.extend(held);
    }

    fn process(&mut self, i: usize) {
        let now = self.now;
        let Some(r) = self.hosts[i].replica.as_mut() else {
            return;
        };
        r.process().expect("process");
        let from = r.me().index();
        for m in r.take_messages() {
            let to = Member::from_raft_id(m.to).expect("member").index();
            let cut = now < self.cut[from] || now < self.cut[to];
            let lost = self.rng.next_u32() % 100 < self.loss_percent;
            if cut || lost {
                continue;
            }
            let delay = 1 + u64::from(self.rng.next_u32() % 5);
            self.wire.push((now + delay, m));
        }
        self.applied(i);
    }

    fn applied(&mut self, i: usize) {
        let now = self.instant(i);
        let host = &mut self.hosts[i];
        let (Some(r), Some(g)) = (host.replica.as_mut(), host.gateway.as_mut()) else {
            if let Some(r) = host.replica.as_mut() {
                while r.poll_applied().is_some() {}
            }
            return;
        };
        while let Some(a) = r.poll_applied() {
            g.fsm.observe(r.state().group(GROUP), now);
            let Some(p) = a.proposal.filter(|p| p.proposer == host.me) else {
                continue;
            };
            let Some((kind, at)) = g.proposals.remove(&(p.incarnation, p.seq)) else {
                continue;
            };
            match (kind, &a.command, a.outcome) {
                (Pending::Group, Command::Acquire { .. }, Ok(())) => g.fsm.acquired(at),
                (Pending::Group, Command::Renew(..), Ok(())) => g.fsm.renewed(at),
                (Pending::Group, _, _) => g.fsm.proposal_lost(),
                (Pending::Reserve, Command::Reserve { upto, .. }, Ok(())) => {
                    g.limit = g.limit.max(*upto);
                    g.reserving = false;
                }
                (Pending::Reserve, _, _) => g.reserving = false,
            }
        }
    }

    fn propose(
        r: &mut Replica<MemLogStore>,
        g: &mut Gateway,
        cmd: &Command,
        kind: Pending,
        at: Instant,
    ) -> bool {
        match r.propose(cmd) {
            Ok(ProposalId {
                incarnation, seq, ..
            }) => {
                g.proposals.insert((incarnation, seq), (kind, at));
                true
            }
            Err(_) => false,
        }
    }

    fn gateway(&mut self, i: usize) {
        let now = self.instant(i);
        let Some(other) = self.hosts[i].me.peer().map(Member::index) else {
            return;
        };
        let peer = PeerView {
            priority: if self.hosts[other].gateway.is_some() {
                100
            } else {
                0
            },
            alive: self.running(other),
        };
        let policy = self.policy;
        let host = &mut self.hosts[i];
        let me = host.me;
        let (Some(r), Some(g)) = (host.replica.as_mut(), host.gateway.as_mut()) else {
            return;
        };
        // Proposals older than two leases are forgotten (their entries may still
        // commit; the FSM then ignores them, which only shortens a lease).
        let stale = self.cluster.lease() * 2;
        let before = g.proposals.len();
        g.proposals
            .retain(|_, (_, at)| now.duration_since(*at) < stale);
        if g.proposals.len() != before {
            g.fsm.proposal_lost();
            g.reserving = g.proposals.values().any(|(k, _)| *k == Pending::Reserve);
        }
        if let Some(mut cmd) = g.fsm.poll(now, peer) {
            if let Command::Renew(_, marks) = &mut cmd
                && g.in_high > 0
            {
                marks.push((inbound(), g.in_high));
            }
            if !Self::propose(r, g, &cmd, Pending::Group, now) {
                g.fsm.proposal_lost();
            }
        }
        let forwarding = g.fsm.forward_until(now).is_some();
        let fence = Fence {
            group: GROUP,
            node: me,
            epoch: g.fsm.seen().epoch,
        };
        if forwarding && !g.forwarding {
            // Start (or restart) forwarding: continue above what the cluster committed.
            // A new incarnation starts from the committed state; the same process
            // resuming after a lapse keeps its own counters, which are never below it.
            let state = r.state();
            g.next_seq = g.next_seq.max(state.reservation(&outbound()).unwrap_or(0));
            g.limit = g.next_seq;
            g.in_high = g.in_high.max(state.replay_mark(&inbound()).unwrap_or(0));
            g.reserving = false;
            let exposure = self.accepted_high.saturating_sub(g.in_high);
            self.max_exposure = self.max_exposure.max(exposure);
            self.takeovers += 1;
            let bound = exposure_bound(&self.cluster);
            assert!(
                exposure <= bound,
                "(c) violated: {me} starts at mark {}, {exposure} replayable packets > bound {bound}",
                g.in_high
            );
            let line = format!("{me} forwards from seq {} mark {}", g.next_seq, g.in_high);
            push_note(&mut self.log, self.now, line);
        }
        g.forwarding = forwarding;
        if !forwarding {
            return;
        }
        // Write-ahead: no traffic on the SA before its record is committed (the first
        // owner creates it, as a node does when IKE installs a child SA).
        if r.state().child_sas(GATEWAY).next().is_none() {
            if self.now.is_multiple_of(50) {
                let ike = IkeSaRecord {
                    gateway: GATEWAY.into(),
                    group: GROUP,
                    spi_i: 1,
                    spi_r: 2,
                    version: 1,
                    state: Secret::new(vec![1; 16]),
                };
                let child = ChildSaRecord {
                    gateway: GATEWAY.into(),
                    group: GROUP,
                    inbound_spi: INBOUND_SPI,
                    outbound_spi: OUTBOUND_SPI,
                    anchor: 0,
                    install: Secret::new(vec![2; 16]),
                };
                let _ = r.propose(&Command::PutIkeSa(fence, ike));
                let _ = r.propose(&Command::PutChildSa {
                    fence,
                    record: child,
                    reserve: 0,
                });
            }
            return;
        }
        // Outbound: never above the committed reservation.
        for _ in 0..PPS_MS {
            if g.next_seq >= g.limit {
                break;
            }
            g.next_seq += 1;
            assert!(
                self.sent.insert(g.next_seq),
                "(a) violated: sequence {} sent twice (by {me})",
                g.next_seq
            );
        }
        if !g.reserving && g.limit - g.next_seq < policy.low_water(PPS_MS as f64 * 1000.0) {
            let upto = policy.next_limit(g.next_seq, g.limit, PPS_MS as f64 * 1000.0);
            let cmd = Command::Reserve {
                fence,
                sa: outbound(),
                upto,
            };
            g.reserving = Self::propose(r, g, &cmd, Pending::Reserve, now);
        }
        // Inbound: the peer keeps sending; the owner accepts what is above its window.
        for _ in 0..PPS_MS {
            self.peer_seq += 1;
            if self.peer_seq > g.in_high {
                g.in_high = self.peer_seq;
                self.accepted_high = self.accepted_high.max(g.in_high);
            }
        }
        // Marks go out every interval while the committed one lags, so a lost proposal
        // is simply superseded by the next.
        let committed = r.state().replay_mark(&inbound()).unwrap_or(0);
        if self.now.is_multiple_of(MARK_MS) && g.in_high > committed {
            let _ = r.propose(&Command::ReplayMarks(fence, vec![(inbound(), g.in_high)]));
        }
    }

    fn check_single_forwarder(&self) {
        let forwarding: Vec<Member> = (0..3)
            .filter(|&i| self.running(i))
            .filter_map(|i| {
                let h = &self.hosts[i];
                let now = self.instant(i);
                h.gateway
                    .as_ref()
                    .filter(|g| g.fsm.forward_until(now).is_some())
                    .map(|_| h.me)
            })
            .collect();
        assert!(
            forwarding.len() <= 1,
            "(b) violated: {forwarding:?} forward at once"
        );
    }
}

/// Keeps the last events of a run, printed when a seed fails.
fn push_note(log: &mut VecDeque<String>, now: u64, s: String) {
    if log.len() == 60 {
        log.pop_front();
    }
    log.push_back(format!("{now:>6} ms {s}"));
}

/// (c): what owners before a takeover accepted above the replicated mark. Every renewal
/// carries the marks, so each owner adds at most what it accepts in one lease after its
/// last successful renewal; the bound allows two such owners in a row (an owner that
/// took over and lost its quorum before its first renewal, then the one before it),
/// plus slack for the millisecond steps. The worst case is printed.
fn exposure_bound(cluster: &ClusterConfig) -> u64 {
    (2 * cluster.lease().as_millis() as u64 + MARK_MS + 100) * PPS_MS
}

fn run(seed: u64) -> (u32, u64, u64) {
    let mut sim = Sim::new(seed);
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        for _ in 0..RUN_MS {
            sim.step();
        }
    }));
    if let Err(e) = result {
        eprintln!("seed {seed} failed; last events:");
        for l in &sim.log {
            eprintln!("  {l}");
        }
        std::panic::resume_unwind(e);
    }
    (sim.takeovers, sim.max_exposure, sim.sent.len() as u64)
}

/// A clock rate within ±0.5 % of true time.
fn random_rate(rng: &mut ChaCha8Rng) -> i64 {
    i64::from(rng.next_u32() % 10_001) - 5_000
}

#[test]
fn cluster_properties_hold_across_seeds() {
    let seeds: Vec<u64> = match std::env::var("SIM_SEED") {
        Ok(s) => vec![s.parse().expect("SIM_SEED is a number")],
        Err(_) => {
            let n = std::env::var("SIM_SEEDS")
                .ok()
                .and_then(|s| s.parse().ok())
                .unwrap_or(2000u64);
            (0..n).collect()
        }
    };
    let mut takeovers = 0;
    let mut worst = 0;
    let mut sent = 0;
    for seed in seeds {
        let (t, exposure, s) = run(seed);
        takeovers += t;
        worst = worst.max(exposure);
        sent += s;
    }
    eprintln!(
        "simulation: {takeovers} takeovers, {sent} packets sent, worst replay exposure {worst} packets"
    );
    assert!(
        takeovers > 0 && sent > 0,
        "the simulation exercised nothing"
    );
}
