//! Measures bundle verification against raw Ed25519 verification on one
//! core, in the same run (absolute figures drift on shared machines).
//!
//! `cargo run --release -p custodia-protocol --example bundle_rate -- 10000 /tmp/big.custodia`
//! builds a three-agency case of about N entries (notes, registrations,
//! transfers and receipts), exports it, verifies it with
//! `bundle::verify` on one thread, and verifies the same number of
//! signatures one at a time with `verify` (SPEC.md §3.3). With a path, it also writes the bundle
//! there (for timing `custodia verify` on it).

use std::time::Instant;

use custodia_protocol::bundle::{self, Bundle, Element};
use custodia_protocol::*;

fn main() {
    let mut args = std::env::args().skip(1);
    let n: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(10_000);
    let out = args.next();
    let ids: Vec<Identity> = (1..=3u8).map(|i| Identity::from_seed([i; 32])).collect();
    let t0 = 1_795_000_000_000u64;
    let mut v = Validator::lean();
    let mut rows: Vec<Entry> = Vec::with_capacity(n);
    let mut time = t0;
    let mut write = |v: &mut Validator, rows: &mut Vec<Entry>, who: usize, body: Body| {
        time += 1000;
        let me = ids[who].agency();
        let seq = v.next_seq(&me);
        let mut refs: Vec<EntryId> = v
            .state()
            .heads
            .iter()
            .filter(|(a, _)| **a != me)
            .map(|(_, (_, id))| *id)
            .collect();
        refs.sort();
        let p = Payload {
            v: 1,
            keys: None,
            case: v.case(),
            author: me,
            seq,
            prev: seq.checked_sub(1).and_then(|s| v.at(&me, s)),
            refs,
            time,
            tlp: Tlp::Amber,
            to: None,
            body,
        };
        let e = Entry::sign(&ids[who], &p);
        v.apply(&e, time).expect("valid");
        rows.push(e);
    };
    let g = Payload::genesis(
        ids[0].agency(),
        t0,
        Tlp::Amber,
        CaseOpened {
            title: "Rate".into(),
            reference: "R-1".into(),
            jurisdiction: None,
            name: "A".into(),
            country: "PH".into(),
        },
    );
    let g = Entry::sign(&ids[0], &g);
    v.apply(&g, t0).expect("genesis");
    rows.push(g);
    for (k, name) in [(1usize, "B"), (2, "C")] {
        let body = Body::MemberAdded(MemberAdded {
            agency: ids[k].agency(),
            name: name.into(),
            country: "DE".into(),
            role: Role::Investigator,
        });
        write(&mut v, &mut rows, 0, body);
    }
    let mut k = 0u32;
    while rows.len() < n {
        k += 1;
        let item = ItemId::new_v4([
            (k % 251) as u8,
            (k / 251) as u8,
            7,
            7,
            7,
            7,
            7,
            7,
            7,
            7,
            7,
            7,
            7,
            7,
            7,
            7,
        ]);
        let by = (k % 3) as usize;
        let to = ((k + 1) % 3) as usize;
        write(
            &mut v,
            &mut rows,
            by,
            Body::EvidenceRegistered(EvidenceRegistered {
                item,
                exhibit: Some(format!("EX-{k}")),
                digests: Digests {
                    sha256: [(k % 256) as u8; 32],
                    sha1: None,
                    md5: None,
                },
                size: 1000,
                media_type: "image/jpeg".into(),
                description: Some("an item".into()),
                acquired: Acquisition {
                    by: "someone".into(),
                    at: t0,
                    place: None,
                    method: None,
                    tool: None,
                },
                authority: None,
                derived_from: None,
            }),
        );
        let mut ev = CustodyEvent::new(item, CustodyAction::Transferred);
        ev.to = Some(ids[to].agency());
        write(&mut v, &mut rows, by, Body::Custody(ev));
        let transfer = rows.last().map(Entry::id).expect("transfer");
        let mut ev = CustodyEvent::new(item, CustodyAction::Received);
        ev.transfer = Some(transfer);
        ev.accepted = Some(true);
        write(&mut v, &mut rows, to, Body::Custody(ev));
        for _ in 0..3 {
            let body = Body::Note(Note {
                text: "a note of some length, as investigators write them".into(),
                item: None,
            });
            write(&mut v, &mut rows, (k as usize + 2) % 3, body);
        }
    }
    let elements: Vec<Element<'_>> = rows.iter().map(|e| Element::Entry(e.bytes())).collect();
    let bytes =
        bundle::export(&ids[0], &v, &elements, &[], &[], time + 60_000, None).expect("export");
    if let Some(path) = out {
        std::fs::write(&path, &bytes).expect("write the bundle");
        println!("wrote {path}");
    }
    let start = Instant::now();
    let b = Bundle::decode(&bytes).expect("decodes");
    let report = bundle::verify(&b, None);
    let verify_s = start.elapsed().as_secs_f64();
    assert!(report.is_valid());

    // Raw Ed25519 (one signature at a time) on one core, over the same entries' messages.
    let checked: Vec<Unverified> = rows
        .iter()
        .map(|e| Entry::decode_unverified(e.bytes()).expect("decodes"))
        .collect();
    let messages: Vec<Vec<u8>> = checked.iter().map(Unverified::signed_message).collect();
    let start = Instant::now();
    for (u, m) in checked.iter().zip(&messages) {
        assert!(verify(&u.author(), m, u.signature()));
    }
    let raw_s = start.elapsed().as_secs_f64();
    let m = rows.len() as f64;
    println!(
        "{} entries, {} bytes: bundle verify {:.0} entries/s on one thread; raw Ed25519 verify {:.0}/s on one core; ratio {:.2}",
        rows.len(),
        bytes.len(),
        m / verify_s,
        m / raw_s,
        raw_s / verify_s
    );
}
