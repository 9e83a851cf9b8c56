//! Why packets are dropped, counted per reason.
//!
//! A dropped packet is not an error of the engine: it is a fact an operator wants to
//! see (`show security ipsec statistics`). Every drop site names one reason; counters are
//! plain integers owned by one worker and summed by the control plane.

/// One reason a packet was dropped. The order is the display order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum DropReason {
    /// Shorter than the headers its protocol needs.
    Truncated,
    /// An IP header that does not parse (version, length, checksum fields).
    BadIpHeader,
    /// No inbound SA for (destination, protocol, SPI).
    UnknownSpi,
    /// Sequence number already seen or left of the window.
    Replay,
    /// Integrity check value (or AEAD tag) did not verify.
    IcvFailure,
    /// Decrypted trailer with invalid padding bytes or pad length.
    BadPadding,
    /// Next-header value does not match the SA's mode.
    BadNextHeader,
    /// Payload length not a multiple of the cipher block size.
    BadLength,
    /// Decrypted inner packet outside the SA's traffic selectors.
    SelectorMismatch,
    /// Outer CE mark on a not-ECN-capable inner packet (RFC 6040 §4.2).
    EcnDrop,
    /// SA's hard lifetime (bytes or packets) reached.
    LifetimeExpired,
    /// Outbound sequence number space exhausted: the SA must be rekeyed.
    SequenceExhausted,
    /// Outbound sequence number beyond the reservation granted by the cluster.
    SequenceNotReserved,
    /// No outbound SA for the tunnel or policy that selected the packet.
    NoOutboundSa,
    /// A security policy with action `discard` matched.
    PolicyDiscard,
    /// No security policy matched (default deny).
    NoPolicy,
    /// A `bypass` policy matched a packet read from the policy tunnel. The kernel routed
    /// it into that device, so writing it back in the clear would bring it straight
    /// back: the worker drops it instead (see `Outbound::Bypass`).
    PolicyBypass,
    /// Packet larger than the path MTU with DF set (an ICMP error was generated).
    TooBig,
    /// Packet too large for the buffer after encapsulation.
    Oversize,
    /// Fragment that could not be reassembled (overlap, too many, timed out, out of memory).
    Reassembly,
    /// Protocol the engine does not handle here.
    UnsupportedProtocol,
    /// The SA's anchor worker's queue was full.
    QueueFull,
    /// Sending on a socket or device failed.
    TxError,
    /// ESP/AH traffic of an SA whose redundancy group's fence has passed: a cluster
    /// node whose lease on the group ran out must not forward it, even with its control
    /// plane frozen (see [`crate::fence`]).
    Fenced,
}

impl DropReason {
    /// Every reason, in display order.
    pub const ALL: [DropReason; 24] = [
        DropReason::Truncated,
        DropReason::BadIpHeader,
        DropReason::UnknownSpi,
        DropReason::Replay,
        DropReason::IcvFailure,
        DropReason::BadPadding,
        DropReason::BadNextHeader,
        DropReason::BadLength,
        DropReason::SelectorMismatch,
        DropReason::EcnDrop,
        DropReason::LifetimeExpired,
        DropReason::SequenceExhausted,
        DropReason::SequenceNotReserved,
        DropReason::NoOutboundSa,
        DropReason::PolicyDiscard,
        DropReason::NoPolicy,
        DropReason::PolicyBypass,
        DropReason::TooBig,
        DropReason::Oversize,
        DropReason::Reassembly,
        DropReason::UnsupportedProtocol,
        DropReason::QueueFull,
        DropReason::TxError,
        DropReason::Fenced,
    ];

    /// Stable snake-case name for APIs, metrics and logs.
    pub fn name(self) -> &'static str {
        match self {
            DropReason::Truncated => "truncated",
            DropReason::BadIpHeader => "bad_ip_header",
            DropReason::UnknownSpi => "unknown_spi",
            DropReason::Replay => "replay",
            DropReason::IcvFailure => "icv_failure",
            DropReason::BadPadding => "bad_padding",
            DropReason::BadNextHeader => "bad_next_header",
            DropReason::BadLength => "bad_length",
            DropReason::SelectorMismatch => "selector_mismatch",
            DropReason::EcnDrop => "ecn_drop",
            DropReason::LifetimeExpired => "lifetime_expired",
            DropReason::SequenceExhausted => "sequence_exhausted",
            DropReason::SequenceNotReserved => "sequence_not_reserved",
            DropReason::NoOutboundSa => "no_outbound_sa",
            DropReason::PolicyDiscard => "policy_discard",
            DropReason::NoPolicy => "no_policy",
            DropReason::PolicyBypass => "policy_bypass",
            DropReason::TooBig => "too_big",
            DropReason::Oversize => "oversize",
            DropReason::Reassembly => "reassembly",
            DropReason::UnsupportedProtocol => "unsupported_protocol",
            DropReason::QueueFull => "queue_full",
            DropReason::TxError => "tx_error",
            DropReason::Fenced => "fenced",
        }
    }
}

/// Drop counters, one slot per [`DropReason`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DropCounters([u64; DropReason::ALL.len()]);

impl DropCounters {
    /// Counts one drop.
    #[inline]
    pub fn count(&mut self, reason: DropReason) {
        self.0[reason as usize] += 1;
    }

    /// The count for one reason.
    pub fn get(&self, reason: DropReason) -> u64 {
        self.0[reason as usize]
    }

    /// Adds another set of counters (summing workers).
    pub fn add(&mut self, other: &DropCounters) {
        for (a, b) in self.0.iter_mut().zip(other.0.iter()) {
            *a += b;
        }
    }

    /// Total drops over all reasons.
    pub fn total(&self) -> u64 {
        self.0.iter().sum()
    }

    /// (reason, count) pairs with a non-zero count.
    pub fn nonzero(&self) -> impl Iterator<Item = (DropReason, u64)> + '_ {
        DropReason::ALL
            .iter()
            .map(|r| (*r, self.get(*r)))
            .filter(|(_, n)| *n > 0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn all_lists_every_reason_once_in_discriminant_order() {
        for (i, r) in DropReason::ALL.iter().enumerate() {
            assert_eq!(*r as usize, i, "{r:?}");
        }
    }

    #[test]
    fn counts_and_sums() {
        let mut a = DropCounters::default();
        a.count(DropReason::Replay);
        a.count(DropReason::Replay);
        let mut b = DropCounters::default();
        b.count(DropReason::IcvFailure);
        a.add(&b);
        assert_eq!(a.get(DropReason::Replay), 2);
        assert_eq!(a.total(), 3);
        assert_eq!(
            a.nonzero().collect::<Vec<_>>(),
            vec![(DropReason::Replay, 2), (DropReason::IcvFailure, 1)]
        );
    }
}
