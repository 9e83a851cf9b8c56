//! Key material for Wireshark: reported only when configured, for the first IKE SA
//! and each rekeyed one, and exactly the keys that protect the messages on the wire.

use std::net::IpAddr;

use super::*;
use crate::crypto::{Encr, Integ, SkCipher};

fn ike_keys(events: &[Event]) -> Vec<&IkeSaKeyMaterial> {
    events
        .iter()
        .filter_map(|e| match e {
            Event::IkeSaKeys(k) => Some(k.as_ref()),
            _ => None,
        })
        .collect()
}

fn logged(ci: IkeConfig) -> Pair {
    let mut cr = config(false);
    cr.key_log = true;
    let mut ci = ci;
    ci.key_log = true;
    Pair::established(ci, cr)
}

/// A cipher built from the logged keys of one direction, as Wireshark would.
fn cipher(k: &IkeSaKeyMaterial, initiator: bool) -> SkCipher {
    let encr = Encr::from_transform(k.encr.0, k.encr.1).unwrap();
    let integ = k.integ.map(|i| Integ::from_iana(i).unwrap());
    let (e, a) = if initiator {
        (&k.sk_ei, &k.sk_ai)
    } else {
        (&k.sk_er, &k.sk_ar)
    };
    SkCipher::new(encr, integ, e.clone(), a.clone()).unwrap()
}

#[test]
fn the_logged_keys_open_the_captured_exchanges() {
    let mut pair = logged(config(true));
    let (ki, kr) = (ike_keys(&pair.events_i), ike_keys(&pair.events_r));
    assert_eq!((ki.len(), kr.len()), (1, 1));
    assert_eq!(ki[0], kr[0]);
    let k = ki[0].clone();
    assert_eq!((k.spi_i, k.spi_r), pair.initiator.spis());
    // Reported before IKE_AUTH completes: ahead of Established on both sides.
    for events in [&pair.events_i, &pair.events_r] {
        assert!(matches!(events[0], Event::IkeSaKeys(_)), "{events:?}");
    }
    // IKE_AUTH request and response decrypt with the logged keys.
    cipher(&k, true).open_payloads(&pair.log[2].1).unwrap();
    cipher(&k, false).open_payloads(&pair.log[3].1).unwrap();
    let line = k.key_log().wireshark_line().unwrap();
    assert!(line.starts_with(&format!("{:016x},{:016x},", k.spi_i, k.spi_r)));
    assert!(line.ends_with(",\"NONE [RFC4306]\""), "{}", line.as_str());
    assert!(!format!("{k:?}").contains(&format!("{:?}", k.sk_ei.as_bytes())));

    // A rekeyed IKE SA is logged with its new SPIs, and opens what follows it.
    let sent = pair.log.len();
    pair.initiator.rekey_ike(pair.now).unwrap();
    pair.drive();
    let ki = ike_keys(&pair.events_i);
    assert_eq!(ki.len(), 2);
    assert_eq!(ike_keys(&pair.events_r)[1], ki[1]);
    assert_eq!((ki[1].spi_i, ki[1].spi_r), pair.initiator.spis());
    assert_ne!(ki[1].sk_ei, k.sk_ei);
    let rekeyed = ki[1].clone();
    // The rekey and the old SA's Delete went under the old keys; a request on the new
    // SA opens with the new ones.
    pair.initiator
        .create_child(config(true).first_child(), pair.now)
        .unwrap();
    pair.drive();
    let request = pair.log[sent..]
        .iter()
        .rev()
        .find(|(i, _)| *i)
        .map(|(_, d)| d.clone())
        .unwrap();
    cipher(&rekeyed, true).open_payloads(&request).unwrap();
}

#[test]
fn keys_stay_in_the_engine_unless_asked_for() {
    let pair = Pair::established(config(true), config(false));
    assert!(ike_keys(&pair.events_i).is_empty());
    assert!(ike_keys(&pair.events_r).is_empty());
}

#[test]
fn esp_lines_pair_up_across_the_two_ends() {
    let pair = logged(config(true));
    let (ci, cr) = (installs(&pair.events_i)[0], installs(&pair.events_r)[0]);
    let (a, b) = (IpAddr::V4(IP_I), IpAddr::V4(IP_R));
    let lines = |c: &ChildSaInstall, l, r| {
        c.key_log(l, r)
            .expect("an ESP pair has key log lines")
            .map(|s| s.wireshark_line().unwrap().as_str().to_owned())
    };
    let [i_out, i_in] = lines(ci, a, b);
    let [r_out, r_in] = lines(cr, b, a);
    assert_eq!(i_out, r_in);
    assert_eq!(i_in, r_out);
    assert!(i_out.starts_with(&format!(
        "\"IPv4\",\"192.0.2.1\",\"192.0.2.2\",\"0x{:08x}\",\"AES-GCM [RFC4106]\",\"0x",
        ci.outbound.spi
    )));
}
