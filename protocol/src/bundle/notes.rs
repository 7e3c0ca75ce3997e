//! The notes of a report, kept as records in one byte sequence that can
//! move out of memory.
//!
//! A bundle may be mostly notes, and the report shows every one, so the
//! notes were most of the memory of verifying a large bundle: a
//! [`NoteReport`] each (160 bytes and an allocation for its text), then one
//! 80-byte record each and one shared text buffer. Here each note is one
//! record (its fixed fields, its length, then its text) appended to a byte
//! sequence that is only ever read from its start, in order. Given a
//! [`NoteSpill`] (the command-line tool gives an unnamed temporary file),
//! the records go there a block at a time, so the notes of a bundle of any
//! size take a constant amount of memory: the block being filled, the
//! block being read, and the distinct authors and keys. Without one they
//! stay in memory. `protocol/` opens nothing: it only writes to and reads
//! from what the caller gave.

use std::collections::HashMap;
use std::fmt;
use std::sync::OnceLock;

use crate::body::Note;
use crate::entry::Payload;
use crate::ids::{AgencyId, EntryId, ItemId, KeyId};
use crate::tlp::Tlp;

use super::report::NoteReport;

/// Where a report's notes go instead of memory: bytes appended in order
/// and read back by offset, such as a temporary file.
pub trait NoteSpill: Send {
    /// Appends `bytes` after everything appended before.
    fn append(&mut self, bytes: &[u8]) -> std::io::Result<()>;
    /// Fills `buf` with the bytes appended at `offset` (all of them were
    /// appended before).
    fn read_at(&self, offset: u64, buf: &mut [u8]) -> std::io::Result<()>;
}

/// Records are moved to the spill once this many bytes wait in memory, and
/// read back this many at a time.
const BLOCK: usize = 1 << 20;

/// The fixed part of a record: entry id 32, time 8, index 4, author 4,
/// key 4, label 1, item flag 1, text length 4; then the item (16 bytes,
/// if the flag is 1) and the text.
const FIXED: usize = 58;

/// The notes of a report, in bundle order. [`Notes::iter`] gives them back
/// as [`NoteReport`]s, one at a time.
#[derive(Default)]
pub struct Notes {
    /// How many notes.
    len: usize,
    /// The records not (or not yet) in the spill: the sequence from
    /// `spilled` on.
    tail: Vec<u8>,
    /// How many bytes of the sequence are in the spill.
    spilled: u64,
    spill: Option<Box<dyn NoteSpill>>,
    /// False once a write to the spill failed: what it holds stays
    /// readable, later records stay in memory.
    writing: bool,
    /// Why writing to the spill was given up (what it holds stays
    /// readable; the later notes stay in memory).
    warning: Option<String>,
    /// Why a note could not be read back.
    error: OnceLock<String>,
    /// The distinct authors, in the order they first wrote a note.
    authors: Vec<AgencyId>,
    author_at: HashMap<AgencyId, u32>,
    /// The distinct keys that signed notes of format version 2.
    keys: Vec<KeyId>,
    key_at: HashMap<KeyId, u32>,
    /// The case's retracted entries, with the reasons (set at the end).
    retracted: HashMap<EntryId, String>,
}

/// A note's record, read back.
struct Rec<'a> {
    entry: EntryId,
    time: u64,
    index: u32,
    author: u32,
    key: u32,
    tlp: Tlp,
    item: Option<ItemId>,
    text: &'a [u8],
}

impl Notes {
    /// Notes that go to `spill` a block at a time instead of memory.
    pub fn spilling(spill: Box<dyn NoteSpill>) -> Notes {
        Notes {
            spill: Some(spill),
            writing: true,
            ..Notes::default()
        }
    }

    /// How many notes.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether there is no note.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Why a note could not be read back from the spill, if one could
    /// not: [`Notes::iter`] then stopped early, and a report written from
    /// it is incomplete.
    pub fn error(&self) -> Option<&str> {
        self.error.get().map(String::as_str)
    }

    /// Why writing to the spill was given up, if it was: the notes after
    /// the failure were kept in memory, none was lost.
    pub fn warning(&self) -> Option<&str> {
        self.warning.as_deref()
    }

    /// The notes, in bundle order. A note that cannot be read back from
    /// the spill ends the sequence early and sets [`Notes::error`].
    pub fn iter(&self) -> impl Iterator<Item = NoteReport> + '_ {
        let mut reader = Reader::default();
        std::iter::from_fn(move || reader.next(self, |b| self.report(parse(b)?)))
    }

    /// The case's retracted entries and the reasons: the notes among them
    /// are shown retracted.
    pub(super) fn set_retracted(&mut self, retracted: HashMap<EntryId, String>) {
        self.retracted = retracted;
    }

    /// Adds a note accepted at element `index` of the bundle.
    pub(super) fn push(
        &mut self,
        entry: EntryId,
        index: usize,
        p: &Payload,
        note: &Note,
        key: Option<KeyId>,
    ) {
        // Fewer authors and keys than notes, and notes are fewer than
        // u32::MAX (the validator's bound on entries).
        let author = *self.author_at.entry(p.author).or_insert_with(|| {
            self.authors.push(p.author);
            u32::try_from(self.authors.len() - 1).unwrap_or(u32::MAX)
        });
        let key = key.map_or(u32::MAX, |k| {
            *self.key_at.entry(k).or_insert_with(|| {
                self.keys.push(k);
                u32::try_from(self.keys.len() - 1).unwrap_or(u32::MAX)
            })
        });
        // A note's text is within an entry (at most 64 KiB, V1).
        let Ok(len) = u32::try_from(note.text.len()) else {
            return;
        };
        let t = &mut self.tail;
        t.extend_from_slice(&entry.0);
        t.extend_from_slice(&p.time.to_le_bytes());
        // An index past u32 (4 billion elements) is recorded as unknown.
        t.extend_from_slice(&u32::try_from(index).unwrap_or(u32::MAX).to_le_bytes());
        t.extend_from_slice(&author.to_le_bytes());
        t.extend_from_slice(&key.to_le_bytes());
        t.push(p.tlp.number());
        t.push(u8::from(note.item.is_some()));
        t.extend_from_slice(&len.to_le_bytes());
        if let Some(item) = &note.item {
            t.extend_from_slice(&item.0);
        }
        t.extend_from_slice(note.text.as_bytes());
        self.len += 1;
        if self.tail.len() >= BLOCK {
            self.flush();
        }
    }

    /// Moves the records waiting in memory to the spill. If it fails they
    /// stay in memory, and so do later ones.
    fn flush(&mut self) {
        let Some(spill) = self.spill.as_mut().filter(|_| self.writing) else {
            return;
        };
        match spill.append(&self.tail) {
            Ok(()) => {
                self.spilled += self.tail.len() as u64;
                self.tail.clear();
            }
            Err(e) => {
                self.warning = Some(format!(
                    "the notes could not be written to the temporary file ({e}); they were kept in memory"
                ));
                self.writing = false;
            }
        }
    }

    /// A record as the report shows it; None if it names an author or a
    /// key the notes do not hold (bytes read back are not what was
    /// written).
    fn report(&self, r: Rec<'_>) -> Option<NoteReport> {
        let author = *self.authors.get(r.author as usize)?;
        let signer = match r.key {
            u32::MAX => None,
            k => Some(*self.keys.get(k as usize)?),
        };
        Some(NoteReport {
            entry: r.entry,
            index: (r.index != u32::MAX).then_some(r.index as usize),
            time: r.time,
            author,
            item: r.item,
            text: std::str::from_utf8(r.text).ok()?.to_owned(),
            tlp: r.tlp,
            retracted: self.retracted.get(&r.entry).cloned(),
            signer,
        })
    }

    /// Records that bytes read back are not a record written.
    fn damaged(&self, at: u64) {
        let _ = self.error.set(format!(
            "the notes read back from the temporary file at byte {at} are not the records written; the report is incomplete"
        ));
    }
}

/// The length of the record that starts with `head` (at least [`FIXED`]
/// bytes), if its header is well formed.
fn record_len(head: &[u8]) -> Option<usize> {
    let len = u32::from_le_bytes(head.get(54..58)?.try_into().ok()?) as usize;
    let item = match head.get(53)? {
        0 => 0,
        1 => 16,
        _ => return None,
    };
    FIXED.checked_add(item)?.checked_add(len)
}

/// A record's fields (the whole record, as [`record_len`] measured it).
fn parse(b: &[u8]) -> Option<Rec<'_>> {
    let u32_at = |at: usize| Some(u32::from_le_bytes(b.get(at..at + 4)?.try_into().ok()?));
    let (item, text_at) = if *b.get(53)? == 1 {
        (
            Some(ItemId(b.get(FIXED..FIXED + 16)?.try_into().ok()?)),
            FIXED + 16,
        )
    } else {
        (None, FIXED)
    };
    Some(Rec {
        entry: EntryId(b.get(..32)?.try_into().ok()?),
        time: u64::from_le_bytes(b.get(32..40)?.try_into().ok()?),
        index: u32_at(40)?,
        author: u32_at(44)?,
        key: u32_at(48)?,
        tlp: Tlp::from_number(*b.get(52)?)?,
        item,
        text: b.get(text_at..)?,
    })
}

/// Reads the records in order: from the spill a block at a time (one read
/// a block, not one a note), then from memory.
#[derive(Default)]
struct Reader {
    /// Where the next record starts in the whole sequence.
    pos: u64,
    /// How many records were read.
    read: usize,
    /// Bytes of the spill from `start` on.
    start: u64,
    block: Vec<u8>,
}

impl Reader {
    /// The next record's bytes, given to `f`; None at the end, or (with
    /// the notes' error set) when it cannot be read back or `f` finds it
    /// is not a record written.
    fn next<T>(&mut self, notes: &Notes, f: impl FnOnce(&[u8]) -> Option<T>) -> Option<T> {
        if self.read >= notes.len || notes.error().is_some() {
            return None;
        }
        let at = self.pos;
        let got = if at >= notes.spilled {
            let from = usize::try_from(at - notes.spilled).ok();
            from.and_then(|s| {
                let rest = notes.tail.get(s..)?;
                let n = record_len(rest.get(..FIXED)?)?;
                Some((n, rest.get(..n)?))
            })
            .map(Ok)
        } else {
            self.in_spill(notes, at).transpose()
        };
        let (n, bytes) = match got {
            Some(Ok(x)) => x,
            Some(Err(e)) => {
                let _ = notes.error.set(format!(
                    "a note could not be read back from the temporary file ({e}); the report is incomplete"
                ));
                return None;
            }
            None => {
                notes.damaged(at);
                return None;
            }
        };
        let out = f(bytes);
        if out.is_none() {
            notes.damaged(at);
            return None;
        }
        self.pos = at + n as u64;
        self.read += 1;
        out
    }

    /// The record at `at` of the spill: its length and bytes; None if its
    /// header is not well formed or it runs past what was spilled.
    fn in_spill<'a>(
        &'a mut self,
        notes: &Notes,
        at: u64,
    ) -> std::io::Result<Option<(usize, &'a [u8])>> {
        let Some(spill) = notes.spill.as_deref() else {
            // Not reached: bytes below `spilled` were appended to it.
            return Err(std::io::Error::other("no temporary file"));
        };
        let Some(head_end) = at.checked_add(FIXED as u64).filter(|&e| e <= notes.spilled) else {
            return Ok(None);
        };
        self.load(spill, at, head_end, notes.spilled)?;
        let Some(n) = self.slice(at, head_end).and_then(record_len) else {
            return Ok(None);
        };
        let Some(end) = at.checked_add(n as u64).filter(|&e| e <= notes.spilled) else {
            return Ok(None);
        };
        self.load(spill, at, end, notes.spilled)?;
        Ok(self.slice(at, end).map(|b| (n, b)))
    }

    /// The held bytes `from..to` of the spill.
    fn slice(&self, from: u64, to: u64) -> Option<&[u8]> {
        let s = usize::try_from(from.checked_sub(self.start)?).ok()?;
        let e = usize::try_from(to.checked_sub(self.start)?).ok()?;
        self.block.get(s..e)
    }

    /// Makes the block hold `from..to` of the spill (which holds `spilled`
    /// bytes), reading a block's worth from `from` if it does not.
    fn load(
        &mut self,
        spill: &dyn NoteSpill,
        from: u64,
        to: u64,
        spilled: u64,
    ) -> std::io::Result<()> {
        if self.slice(from, to).is_some() {
            return Ok(());
        }
        let end = spilled.min(from.saturating_add(BLOCK as u64)).max(to);
        let n = usize::try_from(end - from).map_err(std::io::Error::other)?;
        self.block.clear();
        self.block.resize(n, 0);
        if let Err(e) = spill.read_at(from, &mut self.block) {
            self.block.clear();
            return Err(e);
        }
        self.start = from;
        Ok(())
    }
}

impl fmt::Debug for Notes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Notes")
            .field("len", &self.len)
            .field("spilled", &self.spilled)
            .field("warning", &self.warning())
            .field("error", &self.error())
            .finish_non_exhaustive()
    }
}

/// Two lists of notes are equal when they give back the same notes.
impl PartialEq for Notes {
    fn eq(&self, other: &Notes) -> bool {
        self.len == other.len && self.iter().eq(other.iter())
    }
}

impl Eq for Notes {}

/// A copy in memory, for tests and tools (what the spill holds is read
/// back; a note that cannot be ends the copy, with [`Notes::error`] set).
impl Clone for Notes {
    fn clone(&self) -> Notes {
        let mut copy = Notes {
            authors: self.authors.clone(),
            author_at: self.author_at.clone(),
            keys: self.keys.clone(),
            key_at: self.key_at.clone(),
            retracted: self.retracted.clone(),
            warning: self.warning.clone(),
            ..Notes::default()
        };
        let mut reader = Reader::default();
        while reader
            .next(self, |b| {
                parse(b)?;
                copy.tail.extend_from_slice(b);
                copy.len += 1;
                Some(())
            })
            .is_some()
        {}
        if let Some(e) = self.error() {
            let _ = copy.error.set(e.to_owned());
        }
        copy
    }
}

#[cfg(test)]
mod tests {
    use super::{NoteSpill, Notes, BLOCK};
    use crate::body::{CaseOpened, Note};
    use crate::bundle::NoteReport;
    use crate::entry::Payload;
    use crate::ids::{AgencyId, EntryId, ItemId, KeyId};
    use crate::tlp::Tlp;
    use std::sync::{Arc, Mutex};

    /// A spill in memory that can be told to fail, and counts its calls.
    #[derive(Clone, Default)]
    struct Shared {
        bytes: Arc<Mutex<Vec<u8>>>,
        fail_writes_after: Option<usize>,
        fail_reads: Arc<Mutex<bool>>,
        writes: Arc<Mutex<usize>>,
    }

    impl NoteSpill for Shared {
        fn append(&mut self, bytes: &[u8]) -> std::io::Result<()> {
            let mut writes = self.writes.lock().expect("lock");
            if self.fail_writes_after.is_some_and(|n| *writes >= n) {
                return Err(std::io::Error::other("disk full"));
            }
            *writes += 1;
            self.bytes.lock().expect("lock").extend_from_slice(bytes);
            Ok(())
        }

        fn read_at(&self, offset: u64, buf: &mut [u8]) -> std::io::Result<()> {
            if *self.fail_reads.lock().expect("lock") {
                return Err(std::io::Error::other("bad sector"));
            }
            let all = self.bytes.lock().expect("lock");
            let at = offset as usize;
            let got = all
                .get(at..at + buf.len())
                .ok_or_else(|| std::io::Error::other("read past the end"))?;
            buf.copy_from_slice(got);
            Ok(())
        }
    }

    /// `n` notes, their texts of every length up to a few KB (some far
    /// longer than others, some empty, some not ASCII), with what each
    /// must read back as.
    fn fill(notes: &mut Notes, n: usize) -> Vec<NoteReport> {
        let authors = [AgencyId([1; 32]), AgencyId([2; 32]), AgencyId([3; 32])];
        let labels = [
            Tlp::Clear,
            Tlp::Green,
            Tlp::Amber,
            Tlp::AmberStrict,
            Tlp::Red,
        ];
        let mut want = Vec::new();
        for k in 0..n {
            let mut p = Payload::genesis(
                authors[k % 3],
                1_000 + k as u64,
                labels[k % 5],
                CaseOpened {
                    title: String::new(),
                    reference: String::new(),
                    jurisdiction: None,
                    name: String::new(),
                    country: String::new(),
                },
            );
            p.seq = k as u64;
            let text = match k % 4 {
                0 => String::new(),
                1 => "seal intact".to_owned(),
                2 => "état: scellé — 封印完好 ".repeat(k % 300),
                _ => "x".repeat(k * 7 % 5_000),
            };
            let note = Note {
                text,
                item: (k % 3 == 1).then_some(ItemId([(k % 251) as u8; 16])),
            };
            let id = EntryId::of(&k.to_be_bytes());
            // Every other note signed by one of two officers' keys, the
            // others by agency keys (format version 1).
            let key = (k % 2 == 1).then_some(KeyId([(k % 4) as u8; 32]));
            let index = if k == 5 { u64::MAX as usize } else { 2 * k };
            notes.push(id, index, &p, &note, key);
            want.push(NoteReport {
                signer: key,
                entry: id,
                index: (k != 5).then_some(2 * k),
                time: p.time,
                author: p.author,
                item: note.item,
                text: note.text,
                tlp: p.tlp,
                retracted: None,
            });
        }
        want
    }

    #[test]
    fn notes_give_back_every_note_as_it_was_signed_in_memory_or_spilled() {
        for spilled in [false, true] {
            let spill = Shared::default();
            let mut notes = if spilled {
                Notes::spilling(Box::new(spill.clone()))
            } else {
                Notes::default()
            };
            let mut want = fill(&mut notes, 3_000);
            assert_eq!(notes.len(), want.len());
            assert_eq!(notes.authors.len(), 3, "each author once");
            assert_eq!(notes.keys.len(), 2, "each key once");
            if spilled {
                let held = spill.bytes.lock().expect("lock").len();
                assert!(
                    held >= BLOCK,
                    "most records went to the spill ({held} bytes)"
                );
                assert!(notes.tail.len() < BLOCK, "memory keeps less than a block");
                assert!(notes.spilled > 0);
            } else {
                assert_eq!(notes.spilled, 0);
            }
            assert!(notes.iter().eq(want.iter().cloned()));
            // Twice, and two readers at once.
            let mut a = notes.iter();
            let mut b = notes.iter();
            for w in &want {
                assert_eq!(a.next().as_ref(), Some(w));
                assert_eq!(b.next().as_ref(), Some(w));
            }
            assert_eq!((a.next(), b.next()), (None, None));
            drop((a, b));
            // Retractions, marked at the end by entry id.
            notes.set_retracted([(want[2].entry, "wrong item".to_owned())].into());
            want[2].retracted = Some("wrong item".into());
            assert!(notes.iter().eq(want.iter().cloned()));
            // A copy is in memory and equal.
            let copy = notes.clone();
            assert_eq!((copy.spilled, copy.len()), (0, want.len()));
            assert_eq!(copy, notes);
            assert!(copy.iter().eq(want.iter().cloned()));
            assert_eq!((notes.error(), notes.warning()), (None, None));
        }
        assert!(Notes::default().is_empty());
    }

    #[test]
    fn a_spill_that_fails_to_write_keeps_every_note_in_memory() {
        let spill = Shared {
            fail_writes_after: Some(1),
            ..Shared::default()
        };
        let mut notes = Notes::spilling(Box::new(spill.clone()));
        let want = fill(&mut notes, 3_000);
        assert_eq!(
            *spill.writes.lock().expect("lock"),
            1,
            "one block written, then none"
        );
        assert!(
            notes.warning().is_some_and(|e| e.contains("disk full")),
            "{:?}",
            notes.warning()
        );
        assert_eq!(notes.error(), None);
        // The block written is read back from the spill; the rest from
        // memory: nothing lost.
        assert!(notes.iter().eq(want.iter().cloned()));
    }

    #[test]
    fn a_note_that_cannot_be_read_back_ends_the_list_with_an_error() {
        let spill = Shared::default();
        let mut notes = Notes::spilling(Box::new(spill.clone()));
        let want = fill(&mut notes, 3_000);
        *spill.fail_reads.lock().expect("lock") = true;
        assert_eq!(notes.iter().count(), 0, "the first note is in the spill");
        assert!(notes
            .error()
            .is_some_and(|e| e.contains("bad sector") && e.contains("incomplete")));
        // A spill that gives back other bytes than it took is caught too:
        // a label, an author or a length out of range.
        for (at, byte) in [(52, 9u8), (44, 0xff), (57, 0xff), (53, 7)] {
            let spill = Shared::default();
            let mut notes = Notes::spilling(Box::new(spill.clone()));
            fill(&mut notes, 3_000);
            spill.bytes.lock().expect("lock")[at] = byte;
            assert_eq!(notes.iter().next(), None, "byte {at}");
            assert!(
                notes
                    .error()
                    .is_some_and(|e| e.contains("not the records written")),
                "byte {at}: {:?}",
                notes.error()
            );
        }
        // An entry id read back changed is not noticed here (the record is
        // well formed); the temporary file is the process's own.
        let spill = Shared::default();
        let mut notes = Notes::spilling(Box::new(spill.clone()));
        fill(&mut notes, 3_000);
        spill.bytes.lock().expect("lock")[0..4].copy_from_slice(&[0xff; 4]);
        assert_ne!(notes.iter().next().map(|n| n.entry), Some(want[0].entry));
    }
}
