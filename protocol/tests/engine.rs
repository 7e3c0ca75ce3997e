//! The verification engine (`bundle::engine`), as `custodia verify` and the
//! benchmark run it: for every bundle vector and a real case, any number
//! of threads and any cutting of the reads give the report (or the error)
//! of the whole file in memory.

mod common;

use std::io::{Cursor, Read};

use common::lantern;
use custodia_protocol::bundle::{self, engine, Bundle, BundleError, Report};

const VECTORS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../spec/vectors/bundles.json");

fn whole(bytes: &[u8]) -> Result<Report, BundleError> {
    Bundle::decode(bytes).map(|b| bundle::verify(&b, None))
}

/// A source that gives at most `n` bytes a read, as a pipe may.
struct Trickle<'a> {
    bytes: &'a [u8],
    n: usize,
}

impl Read for Trickle<'_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.n.min(buf.len()).min(self.bytes.len());
        buf[..n].copy_from_slice(&self.bytes[..n]);
        self.bytes = &self.bytes[n..];
        Ok(n)
    }
}

fn engine_trickled(bytes: &[u8], n: usize, threads: usize) -> Result<Report, BundleError> {
    let first = engine::first_pass(&mut Trickle { bytes, n }).expect("no I/O error")?;
    let mut done = 0;
    let report = engine::second_pass(&mut Trickle { bytes, n }, &first, None, threads, &mut |d| {
        done = d
    })
    .expect("no I/O error");
    if report.is_ok() {
        assert_eq!(done, first.len() as u64, "progress ends at every element");
    }
    report
}

#[test]
fn every_bundle_vector_gives_the_whole_file_verdict_on_any_threads() {
    let text = std::fs::read_to_string(VECTORS).expect("spec/vectors/bundles.json");
    let doc: serde_json::Value = serde_json::from_str(&text).expect("JSON");
    for v in doc["vectors"].as_array().expect("vectors") {
        let name = v["name"].as_str().expect("name");
        let bytes = hex::decode(v["bundle"].as_str().expect("hex")).expect("hex");
        let want = whole(&bytes);
        for threads in [1, 3] {
            let got = engine::verify_seekable(Cursor::new(&bytes), None, threads).expect("no I/O");
            assert_eq!(got, want, "{name}, {threads} threads");
        }
        assert_eq!(engine_trickled(&bytes, 7, 2), want, "{name}, trickled");
    }
}

#[test]
fn a_case_checked_on_many_threads_gives_the_one_thread_report() {
    let l = lantern();
    let bytes = l.sim.export(0, None);
    let want = whole(&bytes).expect("readable");
    assert!(want.is_valid());
    for (n, threads) in [(1, 1), (13, 2), (4096, 8), (1 << 20, 64)] {
        assert_eq!(
            engine_trickled(&bytes, n, threads),
            Ok(want.clone()),
            "{n} {threads}"
        );
    }
    // A file that is another file the second time is caught.
    let first = engine::first_pass(&mut Cursor::new(&bytes))
        .expect("no I/O")
        .expect("readable");
    let other = l.sim.export(1, None);
    let got = engine::second_pass(&mut Cursor::new(&other), &first, None, 2, &mut |_| {})
        .expect("no I/O");
    assert!(got.is_err(), "{got:?}");
}

/// The bytes of the bundle vector `name`.
fn vector(name: &str) -> Vec<u8> {
    let text = std::fs::read_to_string(VECTORS).expect("spec/vectors/bundles.json");
    let doc: serde_json::Value = serde_json::from_str(&text).expect("JSON");
    let v = doc["vectors"]
        .as_array()
        .expect("vectors")
        .iter()
        .find(|v| v["name"] == name)
        .expect("the vector");
    hex::decode(v["bundle"].as_str().expect("hex")).expect("hex")
}

#[test]
fn a_key_statement_changed_between_the_two_readings_is_caught() {
    // The file is swapped between the passes for one whose only change is
    // a letter of an officer's name in a key log (same signature bytes):
    // the second reading is not the bundle the first one read.
    let bytes = vector("valid-key-logs");
    let at = bytes
        .windows(12)
        .position(|w| w == b"Maria Santos")
        .expect("the officer's name");
    let mut other = bytes.clone();
    other[at + 9] = b'd';
    let first = engine::first_pass(&mut Cursor::new(&bytes))
        .expect("no I/O")
        .expect("readable");
    assert_eq!(first.version(), 2);
    assert!(
        first.key_logs().is_some(),
        "the first pass keeps the key logs: the replay checks entries against them"
    );
    let got = engine::second_pass(&mut Cursor::new(&other), &first, None, 2, &mut |_| {})
        .expect("no I/O");
    assert_eq!(got, Err(BundleError::Changed));
    // Read twice as it is, it verifies, with both agencies' histories.
    let report = engine::second_pass(&mut Cursor::new(&bytes), &first, None, 2, &mut |_| {})
        .expect("no I/O")
        .expect("readable");
    assert!(report.is_valid());
    assert_eq!(report.key_logs.len(), 2);
}

/// Entries of format version 2 are checked against the bundle's key logs
/// (SPEC.md §10.5 step 2) from the first entry on, in the two passes of
/// `custodia verify` as in memory: the replay of the second pass starts
/// from the first pass's summary, which must hold the logs.
#[test]
fn the_engine_checks_version_2_entries_against_the_bundles_key_logs() {
    let bytes = vector("v2-entries-with-key-logs");
    let report = engine::verify_seekable(Cursor::new(&bytes), None, 2)
        .expect("no I/O")
        .expect("readable");
    assert!(report.is_valid(), "{:?}", report.problems);
    assert_eq!(report.disclosed, 4);
    let bytes = vector("v2-entries-without-a-key-log");
    let report = engine::verify_seekable(Cursor::new(&bytes), None, 2)
        .expect("no I/O")
        .expect("readable");
    let classes: Vec<_> = report.problems.iter().map(|p| (p.index, p.class)).collect();
    assert_eq!(
        classes,
        [
            (Some(2), "key-log-pending"),
            (Some(3), "depends-on-invalid")
        ]
    );
}

/// Record files that cannot even be made: the replay thread panics at its
/// first spill (a bug's stand-in; the spills are the replay's only
/// outside code).
struct PanickingSpill;

impl custodia_protocol::RecordSpill for PanickingSpill {
    fn open(&self) -> std::io::Result<Box<dyn custodia_protocol::SpillFile>> {
        panic!("a record spill that panics (test)")
    }
}

#[test]
fn a_replay_that_stops_early_ends_the_verification_instead_of_hanging_it() {
    // A genesis and 12,000 withheld positions: six chunks, so that the
    // reader still has chunks to hand over after the replay is gone.
    let mut s = common::Sim::new();
    let author = s.id(0);
    for seq in 1..=12_000u64 {
        let mut id = [0u8; 32];
        id[..8].copy_from_slice(&seq.to_le_bytes());
        s.rows
            .push(common::Row::Withheld(custodia_protocol::WithheldPosition {
                author,
                seq,
                id: custodia_protocol::EntryId(id),
            }));
    }
    let bytes = s.export(0, None);
    let first = engine::first_pass(&mut Cursor::new(&bytes))
        .expect("no I/O")
        .expect("readable");
    let (done, finished) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let got = engine::second_pass_spilling(
            &mut Cursor::new(&bytes),
            &first,
            None,
            2,
            &mut |_| {},
            engine::Spills {
                notes: None,
                records: Some((std::sync::Arc::new(PanickingSpill), 1)),
            },
        );
        let _ = done.send(got.map(|r| r.is_ok()).map_err(|e| e.to_string()));
    });
    match finished.recv_timeout(std::time::Duration::from_secs(120)) {
        Ok(Err(e)) => assert!(e.contains("the replay stopped"), "{e}"),
        Ok(Ok(report)) => panic!("a report without its replay: {report}"),
        Err(_) => panic!("the verification hung after its replay stopped"),
    }
}
