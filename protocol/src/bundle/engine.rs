//! The verification engine: a bundle read from a byte source, twice, and
//! checked on every core (SPEC.md §10.5). `custodia verify` and the
//! benchmark run this same code; what differs is where the bytes come
//! from (a file, a pipe kept in a temporary copy), which stays with them.
//!
//! 1. [`first_pass`] checks the structure and finds the export time and
//!    the signature (the [`Summary`]);
//! 2. [`second_pass`] replays the elements and checks the exporter's
//!    signature over the bytes it reads. Elements are gathered into
//!    chunks; each chunk's entries are decoded and their signatures
//!    verified (V1–V8) on every core ([`map_in_parallel`]); the chunk then
//!    goes, in order, to a replay thread that applies the case rules. The
//!    reading of one chunk, the checking of the one before and the replay
//!    of the one before that run side by side, so no core waits for the
//!    single-threaded parts (reading, the exporter's hash, the replay).
//!
//! Memory holds one read buffer, one chunk being read, one being checked,
//! one waiting, one being replayed and what the report keeps, never the
//! file; and, for a version 2 or 3 bundle, its key logs once (the first pass keeps them: the replay checks entries of
//! format version 2 against them from its first entry, V20 to V24, and
//! judges them, B8 and B9; the second keeps a digest). The report does not
//! depend on the number of threads or on how the source cuts its reads.
//!
//! The engine reads through [`std::io::Read`] and starts threads; it opens
//! nothing, and has no clock: the replay's time is the bundle's own.

use std::collections::BTreeMap;
use std::io::{Read, Seek, SeekFrom};
use std::ops::Range;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{channel, sync_channel, Receiver, Sender, SyncSender};
use std::sync::{Arc, Mutex};

use crate::parallel::map_in_parallel;
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
    // Hand-overs without room, so that few chunks exist at once: a
    // checker's chunk waits in the checker until the replay takes it (the
    // replay takes any chunk while it waits for the next in order, so it
    // never waits for a checker that waits for it), the reader's next
    // chunk until a checker is free.
    let (to_replay, checked) = sync_channel::<(u64, Vec<Next>)>(0);
    let (to_check, jobs) = sync_channel::<Job>(0);
    let (spare, spares) = channel::<Vec<u8>>();
    let jobs = Mutex::new(jobs);
    std::thread::scope(|scope| {
        let (replayed, jobs) = (&replayed, &jobs);
        let replayer = scope.spawn(move || {
            let mut v = Verifier::streamed(first, trust);
            if let Some(spill) = spills.notes {
                v.spill_notes(spill);
            }
            if let Some((spill, window)) = spills.records {
                v.spill_records(spill, window);
            }
            // Chunks arrive in the order their checks end; they are
            // replayed in the bundle's.
            let mut early = BTreeMap::new();
            let mut next = 0u64;
            for (n, chunk) in checked {
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
                }
            }
            v
        });
        let checkers: Vec<_> = (0..threads)
            .map(|_| {
                let (to_replay, spare) = (to_replay.clone(), spare.clone());
                scope.spawn(move || check_jobs(jobs, &to_replay, &spare))
            })
            .collect();
        drop((to_replay, spare));
        let mut replay = Replay::new(to_check, spares, &mut *progress, replayed);
        let second = read_pass(src, StreamDecoder::second_pass(first), |item| {
            replay.take(item)
        });
        replay.finish();
        for c in checkers {
            // A checker that panicked (a bug) lost its chunk: going on
            // would replay the bundle without it.
            c.join().unwrap_or_else(|p| std::panic::resume_unwind(p));
        }
        let v = replayer
            .join()
            .map_err(|_| std::io::Error::other("internal error: the replay stopped"))?;
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

/// Checks entries' bytes (V1–V8) on `threads` threads, in order: the
/// verdicts of [`check_entries`] on the whole slice.
pub fn check_entries_parallel(entries: &[&[u8]], threads: usize) -> Vec<Checked> {
    map_in_parallel(entries, threads, check_entries)
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
/// or for the slowest part of a chunk. At most one chunk being read, one
/// waiting for a checker, one per checker being checked or waiting for
/// the replay, and those the replay holds (the one being replayed, and
/// those that came before their turn: at most one per checker) exist
/// besides what the report keeps.
struct Replay<'p, 'r> {
    arena: Vec<u8>,
    pending: Vec<Pending>,
    to_check: SyncSender<Job>,
    /// Arenas of checked chunks, reused.
    spares: Receiver<Vec<u8>>,
    chunks: u64,
    progress: &'p mut dyn FnMut(u64),
    replayed: &'r AtomicU64,
}

impl<'p, 'r> Replay<'p, 'r> {
    fn new(
        to_check: SyncSender<Job>,
        spares: Receiver<Vec<u8>>,
        progress: &'p mut dyn FnMut(u64),
        replayed: &'r AtomicU64,
    ) -> Self {
        Replay {
            arena: Vec::new(),
            pending: Vec::with_capacity(CHUNK),
            to_check,
            spares,
            chunks: 0,
            progress,
            replayed,
        }
    }

    fn take(&mut self, item: Streamed<'_>) {
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

    /// Hands the gathered chunk to the checkers.
    fn flush(&mut self) {
        if self.pending.is_empty() {
            return;
        }
        let spare = self.spares.try_recv().unwrap_or_default();
        let job = Job {
            n: self.chunks,
            pending: std::mem::replace(&mut self.pending, Vec::with_capacity(CHUNK)),
            arena: std::mem::replace(&mut self.arena, spare),
        };
        self.chunks += 1;
        // A closed channel means every checker stopped (a panic); the
        // caller learns it from joining them.
        let _ = self.to_check.send(job);
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
/// in order, to the replay; gives the arena back for reuse.
fn check_jobs(
    jobs: &Mutex<Receiver<Job>>,
    to_replay: &SyncSender<(u64, Vec<Next>)>,
    spare: &Sender<Vec<u8>>,
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
        let entries: Vec<&[u8]> = pending
            .iter()
            .filter_map(|p| match p {
                Pending::Entry(r) => Some(&arena[r.clone()]),
                Pending::Withheld(_) | Pending::Oversize(_) => None,
            })
            .collect();
        let mut checked = check_entries(&entries).into_iter();
        let mut ordered = Vec::with_capacity(pending.len());
        for p in pending {
            ordered.push(match p {
                Pending::Oversize(c) => Next::Checked(c),
                Pending::Withheld(w) => Next::Withheld(w),
                Pending::Entry(r) => Next::Checked(
                    checked
                        .next()
                        .unwrap_or_else(|| super::check_entry(&arena[r])),
                ),
            });
        }
        // The entries hold their own bytes: the arena goes back before
        // the chunk waits for the replay.
        arena.clear();
        let _ = spare.send(arena);
        // A closed channel means the replay thread stopped; the caller
        // learns it from joining that thread.
        if to_replay.send((n, ordered)).is_err() {
            return;
        }
    }
}
