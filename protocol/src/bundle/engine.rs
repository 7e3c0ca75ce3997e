//! The verification engine: a bundle read from a byte source, twice, and
//! checked on every core (SPEC.md §10.5). `custodia verify` and the
//! benchmark run this same code; what differs is where the bytes come
//! from (a file, a pipe kept in a temporary copy), which stays with them.
//!
//! 1. [`first_pass`] checks the structure and finds the export time and
//!    the signature (the [`Summary`]);
//! 2. [`second_pass`] replays the elements and checks the exporter's
//!    signature over the bytes it reads. Elements are gathered into
//!    chunks; a pool of checkers, one per core, each takes a whole chunk
//!    and decodes its entries and verifies their signatures (V1–V8) in one
//!    batch; a replay thread puts the chunks back in order and applies
//!    the case rules. Reading, checking and replaying run side by side, so
//!    no core waits for the single-threaded parts (the reading, the
//!    exporter's hash, the replay) or for the slowest part of a chunk.
//!
//! Memory holds one read buffer, one chunk being read, at most one more
//! chunk than there are checkers being checked, waiting or replayed, and
//! what the report keeps, never the file; and, for a version 2 or 3
//! bundle, its key logs once (the first pass keeps them: the replay checks
//! entries of format version 2 against them from its first entry, V20 to
//! V24, and judges them, B8 and B9; the second keeps a digest). The report
//! does not depend on the number of threads or on how the source cuts its
//! reads. A panic in a checker or in the replay (a bug) ends the pass
//! instead of leaving the other threads waiting.
//!
//! The engine reads through [`std::io::Read`] and starts threads; it opens
//! nothing, and has no clock: the replay's time is the bundle's own.

use std::any::Any;
use std::collections::BTreeMap;
use std::io::{Read, Seek, SeekFrom};
use std::ops::Range;
use std::panic::AssertUnwindSafe;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{channel, sync_channel, Receiver, Sender, SyncSender};
use std::sync::{Arc, Mutex};

use crate::state::WithheldPosition;
use crate::validate::RecordSpill;

use super::{
    check_entries, oversize, BundleError, Checked, Element, NoteSpill, Report, StreamDecoder,
    Streamed, Summary, TrustList, Verifier,
};

/// The source is read this many bytes at a time.
pub const READ_CHUNK: usize = 1 << 16;

/// Elements checked together (in parallel) before being replayed in order.
const CHUNK: usize = 2048;

/// Reads `src` from its current position to its end through `decoder`,
/// handing every element to `on`; returns the summary at the end, or why
/// the bytes are not a readable bundle. The outer error is the source's
/// (a failed read); the inner one the bundle's.
pub fn read_pass<R: Read + ?Sized>(
    src: &mut R,
    mut decoder: StreamDecoder,
    mut on: impl FnMut(Streamed<'_>),
) -> std::io::Result<Result<Summary, BundleError>> {
    let mut buf = vec![0u8; READ_CHUNK];
    let mut ended = false;
    loop {
        loop {
            match decoder.next_item() {
                Ok(Some(Streamed::End(s))) => return Ok(Ok(s)),
                Ok(Some(item)) => on(item),
                Ok(None) if ended => {
                    // The decoder promises progress after finish().
                    return Err(std::io::Error::other("the bundle reader stopped"));
                }
                Ok(None) => break,
                Err(e) => return Ok(Err(e)),
            }
        }
        let n = match src.read(&mut buf) {
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        if n == 0 {
            decoder.finish();
            ended = true;
        } else {
            decoder.push(&buf[..n]);
        }
    }
}

/// The first pass: the structure, checked to the end of the source.
pub fn first_pass<R: Read + ?Sized>(src: &mut R) -> std::io::Result<Result<Summary, BundleError>> {
    read_pass(src, StreamDecoder::first_pass(), |_| {})
}

/// The second pass over the same bytes, from the source's current
/// position: the replay on `threads` threads, the exporter's signature,
/// and the report. `progress` is told how many elements were checked so
/// far, after each chunk. A source that differs from the first pass's is
/// [`BundleError::Changed`].
pub fn second_pass<R: Read + ?Sized>(
    src: &mut R,
    first: &Summary,
    trust: Option<&TrustList>,
    threads: usize,
    progress: &mut dyn FnMut(u64),
) -> std::io::Result<Result<Report, BundleError>> {
    second_pass_spilling(src, first, trust, threads, progress, Spills::default())
}

/// What a verifier keeps out of memory, in places its caller opens (such
/// as temporary files): the report's notes (a bundle may be mostly notes;
/// see [`super::Notes`]) and the validator's older records (see
/// [`Validator::with_spill`](crate::Validator::with_spill)). Nothing given:
/// everything stays in memory.
#[derive(Default)]
pub struct Spills {
    /// Where the notes go.
    pub notes: Option<Box<dyn NoteSpill>>,
    /// Where the older records go, and how many stay in memory.
    pub records: Option<(Arc<dyn RecordSpill>, usize)>,
}

/// [`second_pass`], with what `spills` names kept out of memory. A record
/// that cannot be read back ends it with an error, not a report.
pub fn second_pass_spilling<R: Read + ?Sized>(
    src: &mut R,
    first: &Summary,
    trust: Option<&TrustList>,
    threads: usize,
    progress: &mut dyn FnMut(u64),
    spills: Spills,
) -> std::io::Result<Result<Report, BundleError>> {
    let threads = threads.max(1);
    let replayed = AtomicU64::new(0);
    // A checker's panic (a bug), kept to go on once every thread is done.
    let lost: Mutex<Option<Box<dyn Any + Send>>> = Mutex::new(None);
    // Hand-overs without room: a checker's chunk waits in the checker
    // until the replay takes it (the replay takes any chunk while it waits
    // for the next in order, so it never waits for a checker that waits
    // for it), the reader's next chunk until a checker is free.
    let (to_replay, checked) = sync_channel::<(u64, Option<Vec<Next>>)>(0);
    let (to_check, jobs) = sync_channel::<Job>(0);
    // The checkers alone hold the jobs' end: when the last one stops, the
    // reader's hand-over fails instead of waiting for nobody.
    let jobs = Arc::new(Mutex::new(jobs));
    let (spare, spares) = channel::<Vec<u8>>();
    // A chunk is handed over only with a credit, which the replay gives
    // back once it has replayed the chunk: at most `window` chunks are
    // being checked, waiting or replayed, however unevenly their checks
    // end.
    let window = threads + 1;
    let (credit, credits) = sync_channel::<()>(window);
    for _ in 0..window {
        let _ = credit.send(());
    }
    std::thread::scope(|scope| {
        let (replayed, lost) = (&replayed, &lost);
        let replayer = scope.spawn(move || {
            let mut v = Verifier::streamed(first, trust);
            if let Some(spill) = spills.notes {
                v.spill_notes(spill);
            }
            if let Some((spill, window)) = spills.records {
                v.spill_records(spill, window);
            }
            // Chunks arrive in the order their checks end; they are
            // replayed in the bundle's. A chunk lost to a checker's panic
            // ends the replay: what follows it must not be judged without
            // it.
            let mut early = BTreeMap::new();
            let mut next = 0u64;
            for (n, chunk) in checked {
                let Some(chunk) = chunk else { break };
                early.insert(n, chunk);
                while let Some(chunk) = early.remove(&next) {
                    let len = chunk.len() as u64;
                    for item in chunk {
                        match item {
                            Next::Checked(c) => v.push_checked(c),
                            Next::Withheld(w) => v.push_withheld(w),
                        }
                    }
                    next += 1;
                    replayed.fetch_add(len, Ordering::Relaxed);
                    let _ = credit.send(());
                }
            }
            v
        });
        let checkers: Vec<_> = (0..threads)
            .map(|_| {
                let (jobs, to_replay, spare) = (jobs.clone(), to_replay.clone(), spare.clone());
                scope.spawn(move || check_jobs(&jobs, &to_replay, &spare, lost))
            })
            .collect();
        drop((jobs, to_replay, spare));
        let mut replay = Replay::new(to_check, spares, credits, &mut *progress, replayed);
        let second = read_pass(src, StreamDecoder::second_pass(first), |item| {
            replay.take(item)
        });
        replay.finish();
        for c in checkers {
            // A checker catches its panics; this one would be in the
            // hand-over itself.
            c.join().unwrap_or_else(|p| std::panic::resume_unwind(p));
        }
        let v = replayer.join();
        if let Some(p) = lost.lock().unwrap_or_else(|e| e.into_inner()).take() {
            // A chunk lost to a bug: the report would lack it.
            std::panic::resume_unwind(p);
        }
        let v = v.map_err(|_| std::io::Error::other("internal error: the replay stopped"))?;
        progress(replayed.load(Ordering::Relaxed));
        match second? {
            Ok(s) => v.finish_streamed(&s).map(Ok),
            Err(e) => Ok(Err(e)),
        }
    })
}

/// Both passes over a source that can be read again from its start (a
/// file): what a verifier with nothing to record about the bytes needs.
pub fn verify_seekable<R: Read + Seek>(
    mut src: R,
    trust: Option<&TrustList>,
    threads: usize,
) -> std::io::Result<Result<Report, BundleError>> {
    let start = src.stream_position()?;
    let first = match first_pass(&mut src)? {
        Ok(s) => s,
        Err(e) => return Ok(Err(e)),
    };
    src.seek(SeekFrom::Start(start))?;
    second_pass(&mut src, &first, trust, threads, &mut |_| {})
}

/// One element waiting in a chunk.
enum Pending {
    /// An entry: its bytes in the chunk's arena.
    Entry(Range<usize>),
    Withheld(WithheldPosition),
    /// An element too large for an entry (V1), already judged.
    Oversize(Checked),
}

/// What the replay takes next, in the bundle's order.
enum Next {
    Checked(Checked),
    Withheld(WithheldPosition),
}

/// A chunk to check: its number in the bundle, its elements, and the
/// arena holding its entries' bytes.
struct Job {
    n: u64,
    pending: Vec<Pending>,
    arena: Vec<u8>,
}

/// The reading side of the replay: elements are gathered into chunks and
/// handed to the checkers, each of which checks a whole chunk alone (its
/// signatures in one batch) and sends it to the replay thread, which puts
/// the chunks back in order. Reading, checking and replaying thus
/// overlap, and no checker waits for another: no core waits for the
/// single-threaded parts (the reading, the exporter's hash, the replay)
/// or for the slowest part of a chunk. Besides what the report keeps, at
/// most one chunk being read and one per credit (one more than there are
/// checkers) being checked, waiting or replayed exist at once.
struct Replay<'p, 'r> {
    arena: Vec<u8>,
    pending: Vec<Pending>,
    to_check: SyncSender<Job>,
    /// Arenas of checked chunks, reused.
    spares: Receiver<Vec<u8>>,
    /// One per chunk that may be handed over; the replay gives them back.
    credits: Receiver<()>,
    /// The replay or every checker stopped: nothing more is gathered.
    stopped: bool,
    chunks: u64,
    progress: &'p mut dyn FnMut(u64),
    replayed: &'r AtomicU64,
}

impl<'p, 'r> Replay<'p, 'r> {
    fn new(
        to_check: SyncSender<Job>,
        spares: Receiver<Vec<u8>>,
        credits: Receiver<()>,
        progress: &'p mut dyn FnMut(u64),
        replayed: &'r AtomicU64,
    ) -> Self {
        Replay {
            arena: Vec::new(),
            pending: Vec::with_capacity(CHUNK),
            to_check,
            spares,
            credits,
            stopped: false,
            chunks: 0,
            progress,
            replayed,
        }
    }

    fn take(&mut self, item: Streamed<'_>) {
        if self.stopped {
            return;
        }
        match item {
            Streamed::Element(Element::Entry(bytes)) => {
                let start = self.arena.len();
                self.arena.extend_from_slice(bytes);
                self.pending.push(Pending::Entry(start..self.arena.len()));
            }
            Streamed::Element(Element::Withheld(w)) => self.pending.push(Pending::Withheld(w)),
            Streamed::Oversize { id, size } => {
                self.pending.push(Pending::Oversize(oversize(id, size)))
            }
            Streamed::End(_) => {}
        }
        if self.pending.len() >= CHUNK {
            self.flush();
        }
    }

    /// Hands the gathered chunk to the checkers, once the replay has room
    /// for it.
    fn flush(&mut self) {
        if self.pending.is_empty() || self.stopped {
            return;
        }
        let spare = self.spares.try_recv().unwrap_or_default();
        let job = Job {
            n: self.chunks,
            pending: std::mem::replace(&mut self.pending, Vec::with_capacity(CHUNK)),
            arena: std::mem::replace(&mut self.arena, spare),
        };
        self.chunks += 1;
        // Either fails only when the replay, or every checker, stopped (a
        // panic, or a record that could not be read): the caller learns
        // it from joining them.
        if self.credits.recv().is_err() || self.to_check.send(job).is_err() {
            self.stopped = true;
        }
        (self.progress)(self.replayed.load(Ordering::Relaxed));
    }

    /// Hands over the last chunk; dropping the sender ends the checkers,
    /// and with them the replay.
    fn finish(mut self) {
        self.flush();
    }
}

/// A checker: takes chunks until there are none, checks each one's
/// entries (V1–V8, the signatures in one batch) and sends its elements,
/// in order, to the replay; gives the arena back for reuse. A panic (a
/// bug) is kept in `lost`, and the replay told the chunk is lost.
fn check_jobs(
    jobs: &Mutex<Receiver<Job>>,
    to_replay: &SyncSender<(u64, Option<Vec<Next>>)>,
    spare: &Sender<Vec<u8>>,
    lost: &Mutex<Option<Box<dyn Any + Send>>>,
) {
    loop {
        // Holding the lock only to take a job; a poisoned lock (another
        // checker panicked while taking one) still hands out the rest.
        let job = jobs.lock().unwrap_or_else(|e| e.into_inner()).recv();
        let Ok(Job {
            n,
            pending,
            mut arena,
        }) = job
        else {
            return;
        };
        let checked = std::panic::catch_unwind(AssertUnwindSafe(|| check_chunk(pending, &arena)));
        let ordered = match checked {
            Ok(ordered) => Some(ordered),
            Err(p) => {
                *lost.lock().unwrap_or_else(|e| e.into_inner()) = Some(p);
                None
            }
        };
        let failed = ordered.is_none();
        // The entries hold their own bytes: the arena goes back before
        // the chunk waits for the replay.
        arena.clear();
        let _ = spare.send(arena);
        // A closed channel means the replay thread stopped; the caller
        // learns it from joining that thread.
        if to_replay.send((n, ordered)).is_err() || failed {
            return;
        }
    }
}

/// One chunk's elements in order, its entries checked (V1–V8) in one
/// batch.
fn check_chunk(pending: Vec<Pending>, arena: &[u8]) -> Vec<Next> {
    let entries: Vec<&[u8]> = pending
        .iter()
        .filter_map(|p| match p {
            Pending::Entry(r) => Some(&arena[r.clone()]),
            Pending::Withheld(_) | Pending::Oversize(_) => None,
        })
        .collect();
    let mut checked = check_entries(&entries).into_iter();
    pending
        .into_iter()
        .map(|p| match p {
            Pending::Oversize(c) => Next::Checked(c),
            Pending::Withheld(w) => Next::Withheld(w),
            Pending::Entry(r) => Next::Checked(
                checked
                    .next()
                    .unwrap_or_else(|| super::check_entry(&arena[r])),
            ),
        })
        .collect()
}
