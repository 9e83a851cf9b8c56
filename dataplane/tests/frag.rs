//! Fragmentation, reassembly and ICMP too-big errors.

use std::net::IpAddr;
use std::time::{Duration, Instant};

use dataplane::buf::PacketBuf;
use dataplane::frag::{
    FragError, Fragmenter, Reassembler, Reassembly, ReassemblyLimits, icmp_too_big,
};
use etherparse::{Ipv4HeaderSlice, Ipv6HeaderSlice};
use proptest::prelude::*;

const UDP: u8 = 17;
const ICMP: u8 = 1;
const ICMPV6: u8 = 58;
const HOP_BY_HOP: u8 = 0;
const ROUTING: u8 = 43;
const FRAGMENT: u8 = 44;
const DEST_OPTS: u8 = 60;

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

/// Internet checksum (RFC 1071), written independently of the library's.
fn checksum(parts: &[&[u8]]) -> u16 {
    let mut sum: u32 = 0;
    for part in parts {
        let mut i = 0;
        while i < part.len() {
            let hi = u32::from(part[i]) << 8;
            let lo = part.get(i + 1).map_or(0, |b| u32::from(*b));
            sum += hi | lo;
            i += 2;
        }
    }
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

/// An IPv4 packet; `options` must be a multiple of 4 bytes.
fn ipv4(protocol: u8, flags: u16, options: &[u8], payload: &[u8]) -> Vec<u8> {
    let hlen = 20 + options.len();
    let total = hlen + payload.len();
    let mut p = vec![0x40 | (hlen / 4) as u8, 0];
    p.extend_from_slice(&(total as u16).to_be_bytes());
    p.extend_from_slice(&[0xbe, 0xef]);
    p.extend_from_slice(&flags.to_be_bytes());
    p.extend_from_slice(&[64, protocol, 0, 0]);
    p.extend_from_slice(&[192, 0, 2, 1]);
    p.extend_from_slice(&[198, 51, 100, 7]);
    p.extend_from_slice(options);
    let c = checksum(&[&p]);
    p[10..12].copy_from_slice(&c.to_be_bytes());
    p.extend_from_slice(payload);
    p
}

/// An IPv6 packet with extension headers `exts` (type, length in bytes), then `upper`.
fn ipv6(exts: &[(u8, usize)], upper: u8, payload: &[u8]) -> Vec<u8> {
    let mut body = Vec::new();
    for (i, (_, len)) in exts.iter().enumerate() {
        let next = exts.get(i + 1).map_or(upper, |e| e.0);
        let mut h = vec![0u8; *len];
        h[0] = next;
        h[1] = (len / 8 - 1) as u8;
        body.extend_from_slice(&h);
    }
    body.extend_from_slice(payload);
    let mut p = vec![0x60, 0, 0, 0];
    p.extend_from_slice(&(body.len() as u16).to_be_bytes());
    p.push(exts.first().map_or(upper, |e| e.0));
    p.push(64);
    p.extend_from_slice(&[0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1]);
    p.extend_from_slice(&[0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2]);
    p.extend_from_slice(&body);
    p
}

fn payload(n: usize) -> Vec<u8> {
    (0..n).map(|i| (i * 7 + i / 251) as u8).collect()
}

fn fragments(f: &mut Fragmenter, pkt: &[u8], mtu: usize) -> Result<Vec<Vec<u8>>, FragError> {
    let mut out = Vec::new();
    let n = f.fragment(pkt, mtu, |frag| out.push(frag.to_vec()))?;
    assert_eq!(n, out.len());
    Ok(out)
}

/// Small deterministic permutation with duplicates, driven by `seed`.
fn shuffle_with_dups(frags: &[Vec<u8>], seed: u64, dups: usize) -> Vec<Vec<u8>> {
    let mut s = seed | 1;
    let mut next = move || {
        s ^= s << 13;
        s ^= s >> 7;
        s ^= s << 17;
        s
    };
    let mut v: Vec<Vec<u8>> = frags.to_vec();
    for _ in 0..dups {
        let i = (next() % frags.len() as u64) as usize;
        v.push(frags[i].clone());
    }
    for i in (1..v.len()).rev() {
        let j = (next() % (i as u64 + 1)) as usize;
        v.swap(i, j);
    }
    v
}

/// Pushes all fragments and returns the reassembled datagram. Duplicates arriving after
/// completion may form the datagram again (as in any reassembler without a memory of
/// finished datagrams; anti-replay catches the copy): every completion must be identical.
fn reassemble(r: &mut Reassembler, now: Instant, frags: &[Vec<u8>]) -> Vec<u8> {
    let mut out = PacketBuf::default();
    let mut done: Option<Vec<u8>> = None;
    for f in frags {
        match r.push(now, f, &mut out).unwrap() {
            Reassembly::Complete => {
                if let Some(d) = &done {
                    assert_eq!(d.as_slice(), out.data(), "completions differ");
                }
                done = Some(out.data().to_vec());
            }
            Reassembly::Pending => {}
            Reassembly::NotFragment => panic!("fragment not recognised"),
        }
    }
    done.expect("datagram never completed")
}

fn check_v4_fragment(f: &[u8], mtu: usize) {
    assert!(f.len() <= mtu, "fragment of {} > mtu {mtu}", f.len());
    let h = Ipv4HeaderSlice::from_slice(f).unwrap();
    assert_eq!(usize::from(h.total_len()), f.len());
    assert_eq!(h.header_checksum(), h.to_header().calc_header_checksum());
    assert_eq!(checksum(&[h.slice()]), 0);
    if h.more_fragments() {
        assert_eq!((f.len() - h.slice().len()) % 8, 0);
    }
}

#[test]
fn small_packets_pass_unchanged() {
    let mut f = Fragmenter::new(1);
    let p = ipv4(UDP, 0x4000, &[], &payload(100));
    assert_eq!(fragments(&mut f, &p, 1500).unwrap(), vec![p.clone()]);
    let p6 = ipv6(&[], UDP, &payload(100));
    assert_eq!(fragments(&mut f, &p6, 1280).unwrap(), vec![p6.clone()]);
    let mut r = Reassembler::new(ReassemblyLimits::default());
    let mut out = PacketBuf::default();
    assert_eq!(
        r.push(Instant::now(), &p, &mut out).unwrap(),
        Reassembly::NotFragment
    );
    assert_eq!(
        r.push(Instant::now(), &p6, &mut out).unwrap(),
        Reassembly::NotFragment
    );
}

#[test]
fn ipv4_fragments_have_valid_headers_and_8_byte_offsets() {
    let mut f = Fragmenter::new(0x1234);
    let p = ipv4(UDP, 0, &[], &payload(3000));
    let frags = fragments(&mut f, &p, 1000).unwrap();
    assert_eq!(frags.len(), 4);
    let mut expect_off = 0;
    for (i, fr) in frags.iter().enumerate() {
        check_v4_fragment(fr, 1000);
        let h = Ipv4HeaderSlice::from_slice(fr).unwrap();
        assert_eq!(h.identification(), 0x1234);
        assert_eq!(h.more_fragments(), i + 1 < frags.len());
        assert_eq!(usize::from(h.fragments_offset().value()) * 8, expect_off);
        expect_off += fr.len() - 20;
    }
    // The next datagram gets the next identification.
    let frags = fragments(&mut f, &p, 1000).unwrap();
    assert_eq!(
        Ipv4HeaderSlice::from_slice(&frags[0])
            .unwrap()
            .identification(),
        0x1235
    );
}

#[test]
fn ipv4_only_copied_options_go_into_later_fragments() {
    // Router alert (type 148, copied flag set) and a record-route (type 7, not copied),
    // padded with end-of-options.
    let options = [148, 4, 0, 0, 7, 7, 4, 0, 0, 0, 0, 0];
    let p = ipv4(UDP, 0, &options, &payload(2000));
    let mut f = Fragmenter::new(9);
    let frags = fragments(&mut f, &p, 600).unwrap();
    assert_eq!(&frags[0][20..32], &options);
    for fr in &frags[1..] {
        check_v4_fragment(fr, 600);
        assert_eq!(fr[0] & 0x0f, 6, "24-byte header");
        assert_eq!(&fr[20..24], &[148, 4, 0, 0]);
    }
    let mut r = Reassembler::new(ReassemblyLimits::default());
    let got = reassemble(&mut r, Instant::now(), &frags);
    assert_eq!(&got[20..], &p[20..]);
}

#[test]
fn ipv4_dont_fragment_is_refused() {
    let mut f = Fragmenter::default();
    let p = ipv4(UDP, 0x4000, &[], &payload(1500));
    assert_eq!(
        fragments(&mut f, &p, 1400),
        Err(FragError::DontFragment { mtu: 1400 })
    );
    let p = ipv4(UDP, 0, &[], &payload(100));
    assert!(matches!(
        fragments(&mut f, &p, 27),
        Err(FragError::MtuTooSmall { .. })
    ));
}

#[test]
fn ipv4_fragment_of_a_fragment_keeps_identification_and_offsets() {
    // The second half of a datagram (offset 1000, MF clear) re-fragmented at 300.
    let p = ipv4(UDP, 125, &[], &payload(600));
    let mut f = Fragmenter::new(77);
    let frags = fragments(&mut f, &p, 300).unwrap();
    let last = Ipv4HeaderSlice::from_slice(frags.last().unwrap()).unwrap();
    assert!(!last.more_fragments());
    let first = Ipv4HeaderSlice::from_slice(&frags[0]).unwrap();
    assert_eq!(first.identification(), 0xbeef);
    assert_eq!(first.fragments_offset().value(), 125);
    assert!(first.more_fragments());
}

#[test]
fn ipv6_fragment_header_follows_the_unfragmentable_part() {
    // HBH, Destination Options, Routing are unfragmentable; the final Destination Options
    // (after Routing) is fragmentable.
    let exts = [
        (HOP_BY_HOP, 8),
        (DEST_OPTS, 16),
        (ROUTING, 24),
        (DEST_OPTS, 8),
    ];
    let p = ipv6(&exts, UDP, &payload(4000));
    let mut f = Fragmenter::new(0xdead_beef);
    let frags = fragments(&mut f, &p, 1280).unwrap();
    assert!(frags.len() > 1);
    for (i, fr) in frags.iter().enumerate() {
        assert!(fr.len() <= 1280);
        let h = Ipv6HeaderSlice::from_slice(fr).unwrap();
        assert_eq!(usize::from(h.payload_length()) + 40, fr.len());
        // Fragment header right after the routing header (40 + 8 + 16 + 24 = 88).
        assert_eq!(
            fr[40 + 8 + 16],
            FRAGMENT,
            "routing header names the fragment header"
        );
        let fh = &fr[88..96];
        assert_eq!(fh[0], DEST_OPTS);
        assert_eq!(
            u32::from_be_bytes([fh[4], fh[5], fh[6], fh[7]]),
            0xdead_beef
        );
        let more = fh[3] & 1 == 1;
        assert_eq!(more, i + 1 < frags.len());
        if more {
            assert_eq!((fr.len() - 96) % 8, 0);
        }
    }
    let mut r = Reassembler::new(ReassemblyLimits::default());
    assert_eq!(reassemble(&mut r, Instant::now(), &frags), p);
}

#[test]
fn ipv6_limits() {
    let mut f = Fragmenter::default();
    let p = ipv6(&[], UDP, &payload(3000));
    assert_eq!(
        fragments(&mut f, &p, 1000),
        Err(FragError::MtuTooSmall {
            mtu: 1000,
            min: 1280
        })
    );
    let frags = fragments(&mut f, &p, 1280).unwrap();
    let mut big = frags[0].clone();
    big.extend_from_slice(&payload(2000));
    let plen = (big.len() - 40) as u16;
    big[4..6].copy_from_slice(&plen.to_be_bytes());
    assert_eq!(
        fragments(&mut f, &big, 1280),
        Err(FragError::AlreadyFragmented)
    );
}

#[test]
fn ipv6_atomic_fragment_completes_alone() {
    let mut fh = vec![UDP, 0, 0, 0, 0, 0, 0, 5];
    fh.extend_from_slice(&payload(50));
    let p = ipv6(&[(HOP_BY_HOP, 8)], FRAGMENT, &fh);
    let mut r = Reassembler::new(ReassemblyLimits::default());
    let mut out = PacketBuf::default();
    assert_eq!(
        r.push(Instant::now(), &p, &mut out).unwrap(),
        Reassembly::Complete
    );
    assert_eq!(out.data(), ipv6(&[(HOP_BY_HOP, 8)], UDP, &payload(50)));
    assert_eq!(r.pending(), 0);
}

/// IPv4 fragment at byte `offset` with `len` bytes of `fill`.
fn v4_frag(id: u16, offset: usize, more: bool, data: &[u8]) -> Vec<u8> {
    let flags = (offset / 8) as u16 | if more { 0x2000 } else { 0 };
    let mut p = ipv4(UDP, flags, &[], data);
    p[4..6].copy_from_slice(&id.to_be_bytes());
    p[10..12].copy_from_slice(&[0, 0]);
    let c = checksum(&[&p[..20]]);
    p[10..12].copy_from_slice(&c.to_be_bytes());
    p
}

#[test]
fn overlapping_fragments_drop_the_datagram() {
    let now = Instant::now();
    let mut r = Reassembler::new(ReassemblyLimits::default());
    let mut out = PacketBuf::default();
    assert_eq!(
        r.push(now, &v4_frag(1, 0, true, &[1; 16]), &mut out),
        Ok(Reassembly::Pending)
    );
    assert_eq!(
        r.push(now, &v4_frag(1, 8, true, &[2; 16]), &mut out),
        Err(FragError::Overlap)
    );
    assert_eq!(r.pending(), 0);
    assert_eq!(r.bytes_used(), 0);
    // The rest of the datagram starts afresh and cannot complete with the lost part.
    assert_eq!(
        r.push(now, &v4_frag(1, 16, false, &[3; 4]), &mut out),
        Ok(Reassembly::Pending)
    );

    // Same start, different content: also an overlap (RFC 5722 for IPv6).
    let p = ipv6(&[], UDP, &payload(3000));
    let mut f = Fragmenter::new(3);
    let frags = fragments(&mut f, &p, 1280).unwrap();
    let mut tampered = frags[1].clone();
    let last = tampered.len() - 1;
    tampered[last] ^= 0xff;
    assert_eq!(r.push(now, &frags[1], &mut out), Ok(Reassembly::Pending));
    assert_eq!(r.push(now, &tampered, &mut out), Err(FragError::Overlap));
    // An exact duplicate is fine.
    assert_eq!(r.push(now, &frags[0], &mut out), Ok(Reassembly::Pending));
    assert_eq!(r.push(now, &frags[0], &mut out), Ok(Reassembly::Pending));
}

#[test]
fn inconsistent_and_invalid_fragments() {
    let now = Instant::now();
    let mut r = Reassembler::new(ReassemblyLimits::default());
    let mut out = PacketBuf::default();
    // Non-last fragment not a multiple of 8.
    assert_eq!(
        r.push(now, &v4_frag(2, 0, true, &[1; 12]), &mut out),
        Err(FragError::BadFragmentLength)
    );
    // Two different ends.
    r.push(now, &v4_frag(3, 16, false, &[1; 8]), &mut out)
        .unwrap();
    assert_eq!(
        r.push(now, &v4_frag(3, 32, false, &[1; 8]), &mut out),
        Err(FragError::Inconsistent)
    );
    // Beyond 65535 bytes.
    assert_eq!(
        r.push(now, &v4_frag(4, 65528, false, &[1; 16]), &mut out),
        Err(FragError::Oversize)
    );
    // A corrupted header checksum.
    let mut bad = v4_frag(5, 0, true, &[1; 8]);
    bad[8] ^= 1;
    assert_eq!(r.push(now, &bad, &mut out), Err(FragError::BadIpHeader));
}

#[test]
fn too_many_fragments() {
    let now = Instant::now();
    let limits = ReassemblyLimits {
        max_fragments: 4,
        ..ReassemblyLimits::default()
    };
    let mut r = Reassembler::new(limits);
    let mut out = PacketBuf::default();
    for i in 0..4 {
        r.push(now, &v4_frag(6, i * 8, true, &[0; 8]), &mut out)
            .unwrap();
    }
    assert_eq!(
        r.push(now, &v4_frag(6, 32, false, &[0; 8]), &mut out),
        Err(FragError::TooManyFragments)
    );
    assert_eq!(r.pending(), 0);
}

#[test]
fn timed_out_datagrams_expire() {
    let t0 = Instant::now();
    let mut r = Reassembler::new(ReassemblyLimits::default());
    let mut out = PacketBuf::default();
    r.push(t0, &v4_frag(7, 0, true, &[0; 8]), &mut out).unwrap();
    let p6 = ipv6(&[], UDP, &payload(2000));
    let frags6 = fragments(&mut Fragmenter::new(1), &p6, 1280).unwrap();
    r.push(t0, &frags6[0], &mut out).unwrap();
    assert_eq!(r.pending(), 2);
    assert_eq!(r.expire(t0 + Duration::from_secs(29)), 0);
    // IPv4 lives 30 s, IPv6 60 s.
    assert_eq!(r.expire(t0 + Duration::from_secs(30)), 1);
    assert_eq!(r.pending(), 1);
    // push expires lazily: the IPv6 remainder arrives too late and starts a new entry.
    let late = t0 + Duration::from_secs(61);
    assert_eq!(r.push(late, &frags6[1], &mut out), Ok(Reassembly::Pending));
    assert_eq!(r.pending(), 1);
    // The IPv4 tail after expiry cannot complete the dropped head.
    assert_eq!(
        r.push(late, &v4_frag(7, 8, false, &[0; 8]), &mut out),
        Ok(Reassembly::Pending)
    );
}

#[test]
fn memory_and_count_limits_evict_the_oldest() {
    let t0 = Instant::now();
    let limits = ReassemblyLimits {
        max_bytes: 8000,
        max_datagrams: 3,
        ..ReassemblyLimits::default()
    };
    let mut r = Reassembler::new(limits);
    let mut out = PacketBuf::default();
    // Count limit: a fourth datagram evicts the first.
    for id in 10..14u16 {
        let t = t0 + Duration::from_millis(u64::from(id));
        r.push(t, &v4_frag(id, 0, true, &[0; 8]), &mut out).unwrap();
    }
    assert_eq!(r.pending(), 3);
    // Datagram 10 was evicted: its tail does not complete it.
    assert_eq!(
        r.push(t0, &v4_frag(10, 8, false, &[0; 8]), &mut out),
        Ok(Reassembly::Pending)
    );
    // Datagram 13 still completes.
    assert_eq!(
        r.push(t0, &v4_frag(13, 8, false, &[0; 8]), &mut out),
        Ok(Reassembly::Complete)
    );

    // Memory limit: a large datagram pushes older ones out.
    let mut r = Reassembler::new(ReassemblyLimits {
        max_bytes: 8000,
        ..ReassemblyLimits::default()
    });
    r.push(t0, &v4_frag(20, 0, true, &[0; 3000]), &mut out)
        .unwrap();
    r.push(
        t0 + Duration::from_millis(1),
        &v4_frag(21, 0, true, &[0; 3000]),
        &mut out,
    )
    .unwrap();
    assert_eq!(r.pending(), 2);
    r.push(
        t0 + Duration::from_millis(2),
        &v4_frag(22, 0, true, &[0; 3000]),
        &mut out,
    )
    .unwrap();
    assert_eq!(r.pending(), 2);
    assert!(r.bytes_used() <= 8000);
    // One datagram alone larger than the limit is refused.
    assert_eq!(
        r.push(t0, &v4_frag(23, 9000, true, &[0; 8]), &mut out),
        Err(FragError::OutOfMemory)
    );
    assert!(r.bytes_used() <= 8000);
}

/// Parses an ICMP error and checks both checksums independently.
fn check_icmpv4(out: &[u8], original: &[u8], mtu: u16) {
    assert!(out.len() <= 576);
    let h = Ipv4HeaderSlice::from_slice(out).unwrap();
    assert_eq!(checksum(&[h.slice()]), 0);
    assert_eq!(usize::from(h.total_len()), out.len());
    assert_eq!(h.protocol().0, ICMP);
    assert_eq!(h.source(), [203, 0, 113, 1]);
    assert_eq!(h.destination(), original[12..16]);
    let icmp = &out[20..];
    assert_eq!(checksum(&[icmp]), 0);
    assert_eq!((icmp[0], icmp[1]), (3, 4));
    assert_eq!(u16::from_be_bytes([icmp[6], icmp[7]]), mtu);
    let quoted = &icmp[8..];
    assert_eq!(quoted, &original[..quoted.len()]);
    assert_eq!(quoted.len(), original.len().min(576 - 28));
    // etherparse agrees on the ICMP checksum.
    let slice = etherparse::Icmpv4Slice::from_slice(icmp).unwrap();
    let header = slice.header();
    assert_eq!(
        header.checksum,
        header.icmp_type.calc_checksum(slice.payload())
    );
}

#[test]
fn icmpv4_fragmentation_needed() {
    let from = ip("203.0.113.1");
    let mut out = PacketBuf::default();
    for size in [60, 500, 1400] {
        let p = ipv4(UDP, 0x4000, &[], &payload(size));
        icmp_too_big(&p, 1400, from, &mut out).unwrap();
        check_icmpv4(out.data(), &p, 1400);
    }
    // MTU beyond 16 bits is clamped.
    let p = ipv4(UDP, 0x4000, &[], &payload(40));
    icmp_too_big(&p, 100_000, from, &mut out).unwrap();
    check_icmpv4(out.data(), &p, u16::MAX);
    // Echo requests get an error; ICMP errors do not.
    let echo = ipv4(ICMP, 0x4000, &[], &[8, 0, 0, 0, 0, 1, 0, 1]);
    assert!(icmp_too_big(&echo, 1400, from, &mut out).is_ok());
    let unreachable = ipv4(ICMP, 0x4000, &[], &[3, 1, 0, 0, 0, 0, 0, 0]);
    assert_eq!(
        icmp_too_big(&unreachable, 1400, from, &mut out),
        Err(FragError::IcmpError)
    );
    // Nor non-first fragments, nor broadcast/multicast, nor the wrong family.
    let later = ipv4(UDP, 0x4000 | 5, &[], &payload(100));
    assert_eq!(
        icmp_too_big(&later, 1400, from, &mut out),
        Err(FragError::NotFirstFragment)
    );
    let mut mcast = p.clone();
    mcast[16] = 224;
    assert_eq!(
        icmp_too_big(&mcast, 1400, from, &mut out),
        Err(FragError::NotUnicast)
    );
    assert_eq!(
        icmp_too_big(&p, 1400, ip("2001:db8::1"), &mut out),
        Err(FragError::FamilyMismatch)
    );
}

fn check_icmpv6(out: &[u8], original: &[u8], from: IpAddr, mtu: u32) {
    assert!(out.len() <= 1280);
    let h = Ipv6HeaderSlice::from_slice(out).unwrap();
    assert_eq!(usize::from(h.payload_length()) + 40, out.len());
    assert_eq!(h.next_header().0, ICMPV6);
    let IpAddr::V6(from6) = from else { panic!() };
    assert_eq!(h.source_addr(), from6);
    assert_eq!(h.destination(), original[8..24]);
    let icmp = &out[40..];
    let len = (icmp.len() as u32).to_be_bytes();
    let pseudo_tail = [0, 0, 0, ICMPV6];
    assert_eq!(checksum(&[&out[8..40], &len, &pseudo_tail, icmp]), 0);
    assert_eq!((icmp[0], icmp[1]), (2, 0));
    assert_eq!(
        u32::from_be_bytes([icmp[4], icmp[5], icmp[6], icmp[7]]),
        mtu
    );
    let quoted = &icmp[8..];
    assert_eq!(quoted, &original[..quoted.len()]);
    assert_eq!(quoted.len(), original.len().min(1280 - 48));
    // etherparse agrees.
    let slice = etherparse::Icmpv6Slice::from_slice(icmp).unwrap();
    let header = slice.header();
    let expect = header
        .icmp_type
        .calc_checksum(h.source(), h.destination(), slice.payload())
        .unwrap();
    assert_eq!(header.checksum, expect);
}

#[test]
fn icmpv6_packet_too_big() {
    let from = ip("2001:db8:ffff::1");
    let mut out = PacketBuf::default();
    for size in [10, 1000, 3000] {
        let p = ipv6(&[(HOP_BY_HOP, 8)], UDP, &payload(size));
        icmp_too_big(&p, 1400, from, &mut out).unwrap();
        check_icmpv6(out.data(), &p, from, 1400);
    }
    // Echo request yes, ICMPv6 error (behind extension headers) no.
    let echo = ipv6(&[], ICMPV6, &[128, 0, 0, 0, 0, 0, 0, 0]);
    assert!(icmp_too_big(&echo, 1280, from, &mut out).is_ok());
    let err = ipv6(&[(DEST_OPTS, 8)], ICMPV6, &[1, 4, 0, 0, 0, 0, 0, 0]);
    assert_eq!(
        icmp_too_big(&err, 1280, from, &mut out),
        Err(FragError::IcmpError)
    );
    // Non-first fragment: no; first fragment: yes (and checks the ICMP type behind it).
    let p = ipv6(&[], UDP, &payload(3000));
    let frags = fragments(&mut Fragmenter::new(1), &p, 1280).unwrap();
    assert!(icmp_too_big(&frags[0], 1280, from, &mut out).is_ok());
    assert_eq!(
        icmp_too_big(&frags[1], 1280, from, &mut out),
        Err(FragError::NotFirstFragment)
    );
    let err_frags = fragments(
        &mut Fragmenter::new(1),
        &ipv6(&[], ICMPV6, &[3u8, 0, 0, 0].repeat(800)),
        1280,
    )
    .unwrap();
    assert_eq!(
        icmp_too_big(&err_frags[0], 1280, from, &mut out),
        Err(FragError::IcmpError)
    );
    // Multicast source: no. Multicast destination: yes (RFC 4443 §2.4 e.3).
    let mut m = echo.clone();
    m[8] = 0xff;
    assert_eq!(
        icmp_too_big(&m, 1280, from, &mut out),
        Err(FragError::NotUnicast)
    );
    let mut m = echo.clone();
    m[24] = 0xff;
    assert!(icmp_too_big(&m, 1280, from, &mut out).is_ok());
}

fn arb_v4_options() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        Just(vec![]),
        Just(vec![148, 4, 0, 0]),
        Just(vec![1, 1, 1, 0]),
        Just(vec![7, 7, 4, 0, 0, 0, 0, 148, 4, 0, 0, 0]),
    ]
}

fn arb_v6_exts() -> impl Strategy<Value = Vec<(u8, usize)>> {
    prop_oneof![
        Just(vec![]),
        Just(vec![(HOP_BY_HOP, 8)]),
        Just(vec![(DEST_OPTS, 16)]),
        Just(vec![
            (HOP_BY_HOP, 8),
            (DEST_OPTS, 8),
            (ROUTING, 24),
            (DEST_OPTS, 8)
        ]),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(128))]

    #[test]
    fn ipv4_round_trip(
        size in 1usize..6000,
        mtu in 68usize..1600,
        options in arb_v4_options(),
        seed in any::<u64>(),
        dups in 0usize..4,
    ) {
        let p = ipv4(UDP, 0, &options, &payload(size));
        let mut f = Fragmenter::new(seed as u32);
        let frags = match fragments(&mut f, &p, mtu) {
            Err(FragError::MtuTooSmall { .. }) => {
                prop_assume!(false);
                unreachable!()
            }
            r => r.unwrap(),
        };
        for fr in &frags {
            check_v4_fragment(fr, mtu);
        }
        if frags.len() == 1 {
            prop_assert_eq!(&frags[0], &p);
            return Ok(());
        }
        let mut r = Reassembler::new(ReassemblyLimits::default());
        let got = reassemble(&mut r, Instant::now(), &shuffle_with_dups(&frags, seed, dups));
        prop_assert_eq!(got.len(), p.len());
        prop_assert_eq!(checksum(&[&got[..20 + options.len()]]), 0);
        // Identical except the identification (fresh) and so the checksum.
        prop_assert_eq!(&got[..4], &p[..4]);
        prop_assert_eq!(&got[6..10], &p[6..10]);
        prop_assert_eq!(&got[12..], &p[12..]);
    }

    #[test]
    fn ipv6_round_trip(
        size in 1usize..12000,
        mtu in 1280usize..3000,
        exts in arb_v6_exts(),
        seed in any::<u64>(),
        dups in 0usize..4,
    ) {
        let p = ipv6(&exts, UDP, &payload(size));
        let mut f = Fragmenter::new(seed as u32);
        let frags = fragments(&mut f, &p, mtu).unwrap();
        for fr in &frags {
            prop_assert!(fr.len() <= mtu);
        }
        if frags.len() == 1 {
            prop_assert_eq!(&frags[0], &p);
            return Ok(());
        }
        let mut r = Reassembler::new(ReassemblyLimits::default());
        let got = reassemble(&mut r, Instant::now(), &shuffle_with_dups(&frags, seed, dups));
        prop_assert_eq!(got, p);
    }

    /// Arbitrary bytes never panic any entry point.
    #[test]
    fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..300), mtu in 0usize..2000) {
        let mut f = Fragmenter::default();
        let _ = f.fragment(&bytes, mtu, |_| {});
        let mut r = Reassembler::new(ReassemblyLimits::default());
        let mut out = PacketBuf::default();
        let _ = r.push(Instant::now(), &bytes, &mut out);
        let _ = icmp_too_big(&bytes, mtu as u32, ip("192.0.2.9"), &mut out);
        let _ = icmp_too_big(&bytes, mtu as u32, ip("2001:db8::9"), &mut out);
    }

    /// Valid fragments with random corruption never panic the reassembler or ICMP code.
    #[test]
    fn corrupted_fragments_never_panic(
        v6 in any::<bool>(),
        flips in proptest::collection::vec((any::<usize>(), any::<u8>()), 1..8),
        cut in any::<usize>(),
    ) {
        let p = if v6 {
            ipv6(&[(HOP_BY_HOP, 8), (ROUTING, 8)], UDP, &payload(3000))
        } else {
            ipv4(UDP, 0, &[148, 4, 0, 0], &payload(3000))
        };
        let frags = fragments(&mut Fragmenter::new(1), &p, 1280).unwrap();
        let mut r = Reassembler::new(ReassemblyLimits::default());
        let mut out = PacketBuf::default();
        let now = Instant::now();
        for fr in &frags {
            let mut fr = fr.clone();
            for (at, x) in &flips {
                let i = at % fr.len();
                fr[i] ^= x;
            }
            fr.truncate(cut % (fr.len() + 1));
            let _ = r.push(now, &fr, &mut out);
            let _ = icmp_too_big(&fr, 1280, ip("2001:db8::9"), &mut out);
            let _ = icmp_too_big(&fr, 1280, ip("192.0.2.9"), &mut out);
            let _ = Fragmenter::default().fragment(&fr, 1280, |_| {});
        }
    }
}
