//! Hostile bundles for `custodia verify`: well-formed, correctly signed
//! files whose elements are built to make a verifier's report as large or
//! as slow as possible. Used by `cli/tests/verify_hostile.rs` and by the
//! `hostile_bundle` example that the benchmark of bench/RESULTS.md runs.
//!
//! - `garbage`: a genesis, then `n` elements that are one byte each: `n`
//!   problems (V2, malformed) from 2 bytes of bundle each.
//! - `distinct`: as `garbage`, with elements of 3 bytes, each different
//!   (so each has its own id, which the verifier keeps: a later entry
//!   naming it is a consequence of it).
//! - `same-id`: a genesis, then `n` withheld markers of the genesis's
//!   author at positions 1, 2, …, `n`, all carrying one id.
//! - `markers`: a genesis, then `n` withheld markers at positions 1 … `n`,
//!   each with its own id: a valid bundle whose report lists `n` withheld
//!   positions.
//! - `consequences`: a genesis, one byte of garbage, then `n` withheld
//!   markers at positions 2 … `n` + 1: one problem at the source and `n`
//!   consequences of it (V11: position 1 is missing).

use custodia_protocol::bundle::{self, BundleAgency, Element, Header};
use custodia_protocol::{CaseOpened, EntryId, Identity, Payload, Tlp, WithheldPosition};

/// The export time of every hostile bundle (2026-11-18).
pub(crate) const T0: u64 = 1_795_000_000_000;

/// The shapes, by name.
pub(crate) const SHAPES: [&str; 5] = ["garbage", "distinct", "same-id", "consequences", "markers"];

/// A bundle of `shape` with `n` hostile elements after the genesis, or
/// None for an unknown shape.
pub(crate) fn bundle(shape: &str, n: usize) -> Option<Vec<u8>> {
    let alpha = Identity::from_seed([0x48; 32]);
    let genesis = custodia_protocol::Entry::sign(
        &alpha,
        &Payload::genesis(
            alpha.agency(),
            T0,
            Tlp::Amber,
            CaseOpened {
                title: "Hostile".into(),
                reference: "H-1".into(),
                jurisdiction: None,
                name: "Alpha".into(),
                country: "PH".into(),
            },
        ),
    );
    let garbage: Vec<[u8; 1]> = (0..n).map(|i| [(i % 251) as u8]).collect();
    let distinct: Vec<[u8; 3]> = (0..n)
        .map(|i| {
            let [_, a, b, c] = (i as u32).to_be_bytes();
            [a, b, c]
        })
        .collect();
    let one_id = EntryId::of(b"one id for every marker");
    let mut elements = vec![Element::Entry(genesis.bytes())];
    match shape {
        "garbage" => elements.extend(garbage.iter().map(|b| Element::Entry(&b[..]))),
        "distinct" => elements.extend(distinct.iter().map(|b| Element::Entry(&b[..]))),
        "consequences" => {
            elements.push(Element::Entry(&[0xFF]));
            elements.extend((2..=n as u64 + 1).map(|seq| {
                Element::Withheld(WithheldPosition {
                    author: alpha.agency(),
                    seq,
                    id: EntryId::of(&seq.to_be_bytes()),
                })
            }));
        }
        "same-id" | "markers" => elements.extend((1..=n as u64).map(|seq| {
            Element::Withheld(WithheldPosition {
                author: alpha.agency(),
                seq,
                id: if shape == "same-id" {
                    one_id
                } else {
                    EntryId::of(&seq.to_be_bytes())
                },
            })
        })),
        _ => return None,
    }
    let header = Header {
        case: genesis.id(),
        items: None,
        proofs: Vec::new(),
        agencies: vec![BundleAgency {
            agency: alpha.agency(),
            name: "Alpha".into(),
            country: "PH".into(),
        }],
        exported_at: T0 + 1_000,
        keys: None,
        key_histories: false,
    };
    Some(bundle::write(&alpha, &header, &elements))
}
