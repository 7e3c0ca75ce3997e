//! A validator whose older records are in files (SPEC.md §8.7) that stop
//! giving them back: it refuses what it cannot judge as
//! `records-unavailable` and keeps nothing of it, never a verdict made on
//! a record it could not read; an export and a verification end with an
//! error instead of a bundle or a report.

mod common;

use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;

use common::{Row, Sim};
use custodia_protocol::bundle::{self, engine, ExportError, StreamDecoder, Streamed};
use custodia_protocol::*;

/// Files in memory. Reads of the first file a validator opens, its record
/// file, fail once `reads_left` runs out (negative: never); the others
/// (its id table, its clocks) keep working, so records still go out of
/// memory (a table that cannot be read while records go out keeps them in
/// memory instead, which loses nothing).
struct Flaky {
    reads_left: Arc<AtomicI64>,
    opened: std::sync::atomic::AtomicUsize,
}

impl Flaky {
    fn new(reads_left: &Arc<AtomicI64>) -> Flaky {
        Flaky {
            reads_left: reads_left.clone(),
            opened: Default::default(),
        }
    }
}

struct FlakyFile {
    inner: Box<dyn SpillFile>,
    /// None for a file that never fails.
    reads_left: Option<Arc<AtomicI64>>,
}

impl SpillFile for FlakyFile {
    fn write_at(&mut self, offset: u64, bytes: &[u8]) -> std::io::Result<()> {
        self.inner.write_at(offset, bytes)
    }

    fn read_at(&self, offset: u64, buf: &mut [u8]) -> std::io::Result<()> {
        if let Some(left) = &self.reads_left {
            if left.fetch_sub(1, Ordering::SeqCst) == 0 {
                left.store(0, Ordering::SeqCst);
                return Err(std::io::Error::other("the disk went away (test)"));
            }
        }
        self.inner.read_at(offset, buf)
    }
}

impl RecordSpill for Flaky {
    fn open(&self) -> std::io::Result<Box<dyn SpillFile>> {
        let first = self.opened.fetch_add(1, Ordering::SeqCst) == 0;
        Ok(Box::new(FlakyFile {
            inner: MemorySpill.open()?,
            reads_left: first.then(|| self.reads_left.clone()),
        }))
    }
}

/// A case of 300 entries by two agencies, and the first note.
fn case() -> (Sim, Entry) {
    let mut s = Sim::new();
    s.add(0, 1, Role::Investigator);
    let first = s.note(0, "the first observation", None);
    for i in 0..300 {
        s.note(i % 2, &format!("observation {i}"), None);
    }
    (s, first)
}

/// The case's rows replayed into a validator keeping 2 to 4 records in
/// memory, its files failing once `reads_left` reads are done.
fn replayed(s: &Sim, reads_left: &Arc<AtomicI64>) -> Validator {
    let spill = Arc::new(Flaky::new(reads_left));
    let mut v = Validator::lean().with_spill(spill, 2);
    for row in &s.rows {
        match row {
            Row::Entry(e) => v.apply(e, u64::MAX).expect("a valid entry"),
            Row::Withheld(w) => v.apply_withheld(*w).expect("a position"),
        };
    }
    v
}

#[test]
fn an_entry_judged_on_a_record_that_cannot_be_read_is_refused_as_unavailable() {
    let (mut s, first) = case();
    let never = Arc::new(AtomicI64::new(-1));
    let mut v = replayed(&s, &never);
    assert_eq!(v.failure(), None);
    // The retraction needs the first note's record, long out of memory.
    let retraction = s.write(
        0,
        Body::Retracted(Retracted {
            entry: first.id(),
            reason: "another stream".into(),
        }),
    );
    let before = v.state().clone();
    never.store(0, Ordering::SeqCst);
    let refused = v.apply(&retraction, u64::MAX).expect_err("not judged");
    assert_eq!(refused.class(), "records-unavailable", "{refused}");
    assert_eq!(
        refused.kind.receiver_class(),
        ReceiverClass::Transient,
        "offered again later"
    );
    assert!(v
        .failure()
        .is_some_and(|f| f.contains("the disk went away")));
    assert_eq!(v.state(), &before, "nothing of it was kept");
    // Once a record was lost, nothing more is judged, even with the files
    // back: the caller loads the case again.
    never.store(-1, Ordering::SeqCst);
    let again = v.apply(&retraction, u64::MAX).expect_err("not judged");
    assert_eq!(again.class(), "records-unavailable");
    let note = s.note(1, "a later observation", None);
    assert_eq!(
        v.apply(&note, u64::MAX).expect_err("not judged").class(),
        "records-unavailable"
    );

    // The same retraction, with the files working, is accepted: the
    // refusal was the files', not the entry's.
    let mut fresh = replayed(&s, &Arc::new(AtomicI64::new(-1)));
    assert!(fresh.knows(&retraction.id()));
    assert_eq!(fresh.failure(), None);
    assert_eq!(fresh.apply(&retraction, u64::MAX), Ok(Applied::Duplicate));
}

#[test]
fn a_case_whose_records_cannot_be_read_is_not_exported() {
    let (s, _) = case();
    let reads = Arc::new(AtomicI64::new(-1));
    let v = replayed(&s, &reads);
    let export = |v: &Validator| {
        bundle::export(
            &s.agencies[0].0,
            v,
            &s.elements(),
            &[],
            &[],
            s.export_time(),
            None,
        )
    };
    assert!(export(&v).is_ok());
    reads.store(0, Ordering::SeqCst);
    // Whatever the export reads first fails: no bundle, whole or
    // selective, is made from what could not be read.
    let _ = v.knows(
        &s.rows
            .iter()
            .find_map(|r| match r {
                Row::Entry(e) => Some(e.id()),
                Row::Withheld(_) => None,
            })
            .expect("an entry"),
    );
    match export(&v) {
        Err(ExportError::RecordsUnavailable(why)) => assert!(why.contains("disk went away")),
        other => panic!("expected RecordsUnavailable, got {other:?}"),
    }
}

#[test]
fn a_verification_whose_records_cannot_be_read_ends_with_an_error_not_a_report() {
    let (s, _) = case();
    let bytes = s.export(0, None);
    let mut d = StreamDecoder::new();
    d.push(&bytes);
    d.finish();
    let first = loop {
        match d.next_item().expect("readable") {
            Some(Streamed::End(summary)) => break summary,
            Some(_) => {}
            None => panic!("the decoder stopped before the end"),
        }
    };
    let verify = |reads_left: i64| {
        engine::second_pass_spilling(
            &mut std::io::Cursor::new(&bytes),
            &first,
            None,
            2,
            &mut |_| {},
            engine::Spills {
                notes: None,
                records: Some((
                    Arc::new(Flaky::new(&Arc::new(AtomicI64::new(reads_left)))),
                    1,
                )),
            },
        )
    };
    let report = verify(-1).expect("files that work").expect("a bundle");
    assert!(report.is_valid());
    // Failing at the 1st, 10th, 100th read: an error every time.
    for n in [0, 9, 99] {
        match verify(n) {
            Err(e) => assert!(e.to_string().contains("disk went away"), "{e}"),
            Ok(r) => panic!("a report after the records failed at read {n}: {r:?}"),
        }
    }
}
