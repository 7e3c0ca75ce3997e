//! Court bundles read as a stream (`bundle::StreamDecoder`): for any bytes,
//! in chunks of any size, the same errors (class, offset, wording) and the
//! same report as reading the whole file (`Bundle::decode` +
//! `bundle::verify`); truncated and garbage input in streaming mode; a
//! buffer bounded by one element; and a file that changes between the two
//! passes.

mod common;

use common::{lantern, Sim, T0};
use custodia_protocol::bundle::{
    self, Bundle, BundleAgency, BundleError, Element, Header, Report, StreamDecoder, Streamed,
    Summary, Verifier,
};
use custodia_protocol::*;

const VECTORS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../spec/vectors/bundles.json");

fn whole(bytes: &[u8]) -> Result<Report, BundleError> {
    Bundle::decode(bytes).map(|b| bundle::verify(&b, None))
}

/// Feeds `bytes` to `d` in chunks of `chunk`, handing every element to
/// `on`; returns the summary at the end. Also returns the largest buffer
/// the decoder held.
fn drive(
    d: &mut StreamDecoder,
    bytes: &[u8],
    chunk: usize,
    mut on: impl FnMut(Streamed<'_>),
) -> (Result<Summary, BundleError>, usize) {
    let mut chunks = bytes.chunks(chunk.max(1));
    let (mut most, mut ended) = (0, false);
    loop {
        loop {
            match d.next_item() {
                Ok(Some(Streamed::End(s))) => return (Ok(s), most),
                Ok(Some(other)) => on(other),
                Ok(None) => {
                    // After finish(), next_item() never asks for more.
                    assert!(!ended, "no progress after finish");
                    break;
                }
                Err(e) => {
                    // An error is final.
                    assert_eq!(d.next_item().err(), Some(e.clone()));
                    return (Err(e), most);
                }
            }
        }
        match chunks.next() {
            Some(c) => d.push(c),
            None => {
                d.finish();
                ended = true;
            }
        }
        most = most.max(d.buffered());
    }
}

/// First pass only.
fn summary(bytes: &[u8], chunk: usize) -> Result<Summary, BundleError> {
    drive(&mut StreamDecoder::new(), bytes, chunk, |_| {}).0
}

/// Both passes and the replay, as `custodia verify` does; `second` is the
/// file as read the second time.
fn streamed_with(
    first: &[u8],
    second: &[u8],
    chunk: usize,
) -> (Result<Report, BundleError>, usize) {
    let s = match summary(first, chunk) {
        Ok(s) => s,
        Err(e) => return (Err(e), 0),
    };
    let mut v = Verifier::streamed(&s, None);
    let mut d = StreamDecoder::second_pass(&s);
    let (end, most) = drive(&mut d, second, chunk, |item| match item {
        Streamed::Element(e) => v.push(e),
        Streamed::Oversize { id, size } => v.push_checked(bundle::oversize(id, size)),
        Streamed::End(_) => unreachable!("handled by drive"),
    });
    (
        end.map(|s2| v.finish_streamed(&s2).expect("records in memory")),
        most,
    )
}

fn streamed(bytes: &[u8], chunk: usize) -> Result<Report, BundleError> {
    streamed_with(bytes, bytes, chunk).0
}

fn small_case() -> Vec<u8> {
    let mut s = Sim::new();
    s.add(0, 1, Role::Investigator);
    let item = s.register(1, 7, None);
    let t = s.transfer(1, item, 0);
    s.receive(0, &t, item);
    s.export(0, None)
}

#[test]
fn a_valid_bundle_streams_to_the_same_report_in_any_chunks() {
    let l = lantern();
    let bytes = l.sim.export(0, None);
    let want = whole(&bytes).expect("readable");
    assert!(want.is_valid());
    for chunk in [1, 2, 3, 64, 1000, bytes.len()] {
        let got = streamed(&bytes, chunk).expect("readable");
        assert_eq!(got, want, "chunks of {chunk}");
    }
    let s = summary(&bytes, 100).expect("readable");
    assert_eq!(s.len(), l.sim.rows.len());
    assert_eq!(s.case(), l.sim.case());
    assert_eq!(s.signature_valid(), None, "a first pass does not check B1");
}

#[test]
fn every_prefix_streams_to_the_same_error_as_the_whole_file() {
    let bytes = small_case();
    for n in 0..bytes.len() {
        let want = Bundle::decode(&bytes[..n]).err();
        assert!(
            matches!(
                want,
                Some(BundleError::Truncated { at, .. }) if at == n
            ) || (n == 0 && want == Some(BundleError::Empty)),
            "{n}: {want:?}"
        );
        for chunk in [13, 4096] {
            assert_eq!(
                summary(&bytes[..n], chunk).err(),
                want,
                "prefix {n}, chunks of {chunk}"
            );
        }
        if n % 7 == 0 {
            assert_eq!(summary(&bytes[..n], 1).err(), want, "prefix {n}, bytewise");
        }
    }
}

#[test]
fn every_byte_flip_streams_to_the_same_verdict_or_error() {
    let bytes = small_case();
    for i in 0..bytes.len() {
        for mask in [0x01u8, 0x80] {
            let mut b = bytes.clone();
            b[i] ^= mask;
            if i % 3 == usize::from(mask == 0x80) {
                // The whole report (a replay each) on a third of the flips.
                let want = whole(&b);
                let got = streamed(&b, 61);
                assert_eq!(got, want, "byte {i} ^ {mask:#x}");
                assert!(!matches!(got, Ok(ref r) if r.is_valid()), "byte {i}");
            } else {
                let want = Bundle::decode(&b).err();
                assert_eq!(summary(&b, 61).err(), want, "byte {i} ^ {mask:#x}");
            }
        }
    }
}

#[test]
fn the_bundle_vectors_stream_to_their_expected_results() {
    let text = std::fs::read_to_string(VECTORS).expect("spec/vectors/bundles.json");
    let doc: serde_json::Value = serde_json::from_str(&text).expect("JSON");
    let vectors = doc["vectors"].as_array().expect("vectors");
    for v in vectors {
        let name = v["name"].as_str().expect("name");
        let bytes = hex::decode(v["bundle"].as_str().expect("hex")).expect("hex");
        let want = whole(&bytes);
        assert_eq!(streamed(&bytes, 97), want, "{name}");
        // As `custodia verify` runs it, with one record of the case in
        // memory and the others in temporary files: the same report.
        if let Ok(first) = summary(&bytes, 4096) {
            let spills = bundle::engine::Spills {
                notes: None,
                records: Some((std::sync::Arc::new(common::TempFiles), 1)),
            };
            let out = bundle::engine::second_pass_spilling(
                &mut std::io::Cursor::new(&bytes),
                &first,
                None,
                2,
                &mut |_| {},
                spills,
            )
            .expect("the temporary files work");
            assert_eq!(out, want, "{name}: records out of memory");
        }
        match (streamed(&bytes, 5), v["expect"].as_str().expect("expect")) {
            (Err(e), "unreadable") => assert_eq!(e.class(), v["error"], "{name}"),
            (Ok(r), "valid") => assert!(r.is_valid(), "{name}"),
            (Ok(r), "invalid") => assert!(!r.is_valid(), "{name}"),
            (got, want) => panic!("{name}: expected {want}, got {got:?}"),
        }
    }
}

#[test]
fn truncated_and_garbage_input_gives_typed_errors_with_positions() {
    let bytes = small_case();
    let half = bytes.len() / 2;
    match streamed(&bytes[..half], 100) {
        Err(e @ BundleError::Truncated { at, .. }) => {
            assert_eq!(at, half);
            assert!(
                e.to_string()
                    .starts_with(&format!("truncated at byte {half}")),
                "{e}"
            );
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(streamed(b"", 10), Err(BundleError::Empty));
    match streamed(b"%PDF-1.7 not a bundle at all", 4) {
        Err(BundleError::NotABundle(why)) => assert!(why.contains("PDF"), "{why}"),
        other => panic!("{other:?}"),
    }
    // A bundle with bytes after its end.
    let mut longer = bytes.clone();
    longer.extend_from_slice(&[0; 5]);
    assert_eq!(
        streamed(&longer, 100),
        Err(BundleError::TrailingBytes {
            at: bytes.len(),
            extra: 5
        })
    );
    // A payload that claims more bytes than the file has.
    let mut cut = bytes.clone();
    cut.truncate(200);
    match streamed(&cut, 50) {
        Err(BundleError::Truncated {
            at: 200,
            inside: "the payload",
            needed: Some(n),
        }) => assert!(n > 200),
        other => panic!("{other:?}"),
    }
    // A count larger than what is left is truncation, as for the whole
    // file, though the streaming reader learns the length only at its end.
    let short = [0xD2, 0x89, 0, 0, 0, 0, 0, 0, 0, 0];
    assert_eq!(streamed(&short, 1), whole(&short));
    assert!(matches!(
        streamed(&short, 3),
        Err(BundleError::Truncated { at: 10, .. })
    ));
    // Garbage after a genuine envelope head: an error, never a panic.
    let mut garbage = bytes[..90].to_vec();
    garbage.extend((0..3000u32).map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8));
    assert_eq!(streamed(&garbage, 33), whole(&garbage));
    assert!(streamed(&garbage, 33).is_err());
}

#[test]
fn an_element_too_large_for_an_entry_is_not_buffered_and_fails_v1() {
    let mut s = Sim::new();
    s.add(0, 1, Role::Investigator);
    let big = vec![0xAB; 1 << 20];
    let mut elements = s.elements();
    elements.push(Element::Entry(&big));
    let header = Header {
        case: s.case(),
        items: None,
        proofs: Vec::new(),
        agencies: s
            .v
            .state()
            .members
            .values()
            .map(|m| BundleAgency {
                agency: m.agency,
                name: m.name.clone(),
                country: m.country.clone(),
            })
            .collect(),
        exported_at: s.export_time(),
        keys: None,
        key_histories: false,
    };
    let bytes = bundle::write(&s.agencies[0].0, &header, &elements);
    let want = whole(&bytes).expect("readable");
    let (got, most) = streamed_with(&bytes, &bytes, 4096);
    let got = got.expect("readable");
    assert_eq!(got, want);
    assert_eq!(got.problems.len(), 1);
    assert_eq!(got.problems[0].rule, bundle::Rule::Entry(1));
    assert_eq!(got.problems[0].entry, Some(EntryId::of(&big)));
    assert!(got.signature_valid);
    assert!(
        most < 3 * 4096,
        "the decoder held {most} bytes for an element of {}",
        big.len()
    );
}

#[test]
fn the_buffer_holds_one_element_not_the_bundle() {
    let mut s = Sim::new();
    s.add(0, 1, Role::Investigator);
    for i in 0..300 {
        s.note(
            i % 2,
            "a note long enough to make the bundle much larger than one chunk",
            None,
        );
    }
    let bytes = s.export(0, None);
    let (report, most) = streamed_with(&bytes, &bytes, 512);
    assert!(report.expect("readable").is_valid());
    assert!(bytes.len() > 100_000, "{}", bytes.len());
    assert!(
        most < 4 * 1024,
        "the decoder held {most} of {} bytes",
        bytes.len()
    );
}

#[test]
fn a_file_that_changes_between_the_passes_is_caught() {
    let mut s = Sim::new();
    s.add(0, 1, Role::Investigator);
    let before = s.export(0, None);
    // Same entries, exported again later: another export time.
    s.time += 60_000;
    let after = s.export(0, None);
    assert_ne!(before, after);
    assert_eq!(
        streamed_with(&before, &after, 64).0,
        Err(BundleError::Changed)
    );
    assert_eq!(BundleError::Changed.class(), "changed");
    // An entry edited between the passes: the summary is the same, so the
    // report is that of the bytes read the second time, and B1 fails.
    let l = lantern();
    let ok = l.sim.export(0, None);
    let needle = b"Operation Lantern";
    let at = ok
        .windows(needle.len())
        .position(|w| w == needle)
        .expect("title");
    let mut edited = ok.clone();
    edited[at] ^= 0x20;
    let r = streamed_with(&ok, &edited, 64).0.expect("readable");
    assert!(!r.signature_valid);
    assert!(r
        .problems
        .iter()
        .any(|p| p.rule == bundle::Rule::Bundle(bundle::BundleRule::Signature)));
    assert_eq!(Ok(r), whole(&edited));
    let _ = T0;
}

proptest::proptest! {
    /// Garbage, and garbage that starts like a bundle, streams to the same
    /// error (or report) as the whole file, in random chunks.
    #[test]
    fn arbitrary_bytes_stream_like_the_whole_file(
        body in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..1500),
        start in 0usize..5,
        chunk in 1usize..200,
    ) {
        let bytes = [&[0xD2u8, 0x84, 0x58, 0x49][..start.min(4)], &body].concat();
        proptest::prop_assert_eq!(streamed(&bytes, chunk), whole(&bytes));
    }

    /// Random edits of a valid bundle: the same verdict or error.
    #[test]
    fn random_edits_stream_like_the_whole_file(
        edits in proptest::collection::vec((proptest::prelude::any::<usize>(), 1u8..=255), 1..4),
        chunk in 1usize..300,
    ) {
        let mut s = Sim::new();
        s.add(0, 1, Role::Investigator);
        let item = s.register(1, 5, None);
        s.custody(1, item, CustodyAction::Sealed);
        let mut bytes = s.export(0, None);
        for (at, x) in edits {
            let n = bytes.len();
            bytes[at % n] ^= x;
        }
        proptest::prop_assert_eq!(streamed(&bytes, chunk), whole(&bytes));
    }
}

#[test]
fn every_index_in_the_report_names_the_element_it_describes() {
    let l = lantern();
    for items in [None, Some(vec![l.phone]), Some(vec![l.image])] {
        let bytes = l.sim.export(0, items.as_deref());
        let b = Bundle::decode(&bytes).expect("readable");
        let ids: Vec<EntryId> = b
            .elements()
            .map(|e| match e {
                Element::Entry(bytes) => EntryId::of(bytes),
                Element::Withheld(w) => w.id,
            })
            .collect();
        let r = streamed(&bytes, 100).expect("readable");
        assert!(r.is_valid(), "{:?}", r.problems);
        let mut checked = 0;
        for i in &r.items {
            for e in &i.timeline {
                assert_eq!(e.index.map(|x| ids[x]), Some(e.entry), "{items:?}");
                if let Some(rc) = &e.receipt {
                    assert_eq!(rc.index.map(|x| ids[x]), Some(rc.entry));
                }
                checked += 1;
            }
        }
        for m in &r.members {
            assert_eq!(m.added_index.map(|x| ids[x]), Some(m.added_by));
            checked += 1;
        }
        for w in &r.withheld {
            assert_eq!(ids[w.index], w.id);
        }
        assert!(checked >= 5, "{checked}");
        assert_eq!(items.is_some(), !r.withheld.is_empty());
    }
}
