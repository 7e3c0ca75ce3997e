//! The validator's records — one per known entry — in memory and, once a
//! case outgrows a window, partly out of it.
//!
//! A record is 56 bytes and a case may hold millions: a node catching up a
//! case of ten million entries kept about 800 MB of them, and a court's
//! verifier as many for a large bundle. Rules reach back to old records
//! rarely (a reference to another agency's old entry, the target of a
//! retraction, a duplicate offered again); most lookups are of the newest
//! entries (the author's previous entry, other agencies' heads). So the
//! newest records stay in memory and, given a [`RecordSpill`], the older
//! ones go to files it opens:
//!
//! - a record file, each record at its number times [`REC_BYTES`], written
//!   once, in order, a window at a time;
//! - an id table file, of levels that are never rehashed: each level an
//!   open-addressing table of 8-byte slots (record number + 1, and 32 bits
//!   of the id's keyed hash), at most half full, twice the size of the
//!   level before it. A lookup reads one 64-byte block of slots (linear
//!   probing keeps a probe in it) and the record it points at.
//!
//! In memory stay: the newest records (one to two windows) with their id
//! index, and for each level a filter of one byte per id it can hold (a blocked
//! Bloom filter: four bits of one 64-bit word per id), so that looking up
//! an id not held — every new entry is one — reads no file at all about 97
//! times in 100 per level. Ids are hashed with the standard library's
//! keyed hasher: entries chosen to collide do not lengthen probes or defeat
//! the filters.
//!
//! protocol/ opens nothing: the files are whatever the caller's
//! [`RecordSpill`] gives (the node's and `custodia verify`'s are unnamed
//! temporary files). Nothing is lost when a file fails: a failed write
//! keeps the records in memory and stops spilling ([`Records::warning`]);
//! a failed read sets [`Records::failure`], after which the validator
//! refuses every entry as out of order (it cannot tell) and the caller
//! says so, instead of judging an entry on a record it could not read.

use std::borrow::Cow;
use std::collections::hash_map::RandomState;
use std::collections::HashMap;
use std::hash::BuildHasher;
use std::sync::{Arc, OnceLock};

use crate::ids::EntryId;
use crate::tlp::Tlp;

/// A file readable and writable by position, such as an unnamed temporary
/// file (`std::os::unix::fs::FileExt`).
pub trait SpillFile: Send + Sync {
    /// Writes all of `bytes` at `offset`, growing the file as needed.
    fn write_at(&mut self, offset: u64, bytes: &[u8]) -> std::io::Result<()>;
    /// Fills `buf` with the bytes at `offset`; reading past what was
    /// written is an error.
    fn read_at(&self, offset: u64, buf: &mut [u8]) -> std::io::Result<()>;
}

/// Where a validator puts its older records: a source of new, empty files,
/// each used by one validator only (two per validator that outgrows its
/// window; none for a smaller case).
pub trait RecordSpill: Send + Sync {
    /// A new empty file.
    fn open(&self) -> std::io::Result<Box<dyn SpillFile>>;
}

/// Files in memory. The records take the same path to and from them as to
/// and from files on disk, so tests and fuzzing exercise it without
/// opening files; it saves no memory.
#[derive(Debug, Clone, Copy, Default)]
pub struct MemorySpill;

/// A file of [`MemorySpill`].
#[derive(Debug, Default)]
struct MemoryFile(Vec<u8>);

impl SpillFile for MemoryFile {
    fn write_at(&mut self, offset: u64, bytes: &[u8]) -> std::io::Result<()> {
        let end = usize::try_from(offset)
            .ok()
            .and_then(|at| at.checked_add(bytes.len()))
            .ok_or_else(|| std::io::Error::from(std::io::ErrorKind::InvalidInput))?;
        if self.0.len() < end {
            self.0.resize(end, 0);
        }
        self.0[end - bytes.len()..end].copy_from_slice(bytes);
        Ok(())
    }

    fn read_at(&self, offset: u64, buf: &mut [u8]) -> std::io::Result<()> {
        let from = usize::try_from(offset)
            .ok()
            .and_then(|at| self.0.get(at..at.checked_add(buf.len())?))
            .ok_or_else(|| std::io::Error::from(std::io::ErrorKind::UnexpectedEof))?;
        buf.copy_from_slice(from);
        Ok(())
    }
}

impl RecordSpill for MemorySpill {
    fn open(&self) -> std::io::Result<Box<dyn SpillFile>> {
        Ok(Box::new(MemoryFile::default()))
    }
}

/// The records kept in memory before a spilling validator moves the older
/// half out: a case of fewer entries than twice this opens no file.
pub const DEFAULT_WINDOW: usize = 1 << 16;

/// The largest window: a larger one is taken as this (2^28 records, 15 GB
/// in memory, is "all" in practice), so that twice it and the clock words
/// of twice it are counted without overflow.
pub const MAX_WINDOW: usize = 1 << 28;

/// Record flag: a withheld position (no time, no content).
pub(super) const WITHHELD: u8 = 1;
/// Record flag: a witness entry.
pub(super) const WITNESS: u8 = 2;
/// Record flag: recipients or a target are kept aside.
pub(super) const EXTRA: u8 = 4;

/// What the validator keeps of a known entry: enough to evaluate every rule
/// and to decide visibility, without the entry itself. 56 bytes in memory,
/// [`REC_BYTES`] in a record file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Rec {
    pub(super) id: EntryId,
    /// Asserted time; meaningless for a withheld position.
    pub(super) time: u64,
    /// The sequence number (below the chain's length, so below u32::MAX).
    pub(super) seq: u32,
    pub(super) author: u32,
    /// The causal past without the entry's own slot: an offset into the
    /// validator's clocks.
    pub(super) base: u32,
    pub(super) tlp: Tlp,
    pub(super) flags: u8,
}

/// A record's size in a record file: id 32, time 8, seq 4, author 4,
/// base 4, label 1, flags 1, two zero bytes.
pub(super) const REC_BYTES: usize = 56;

impl Rec {
    pub(super) fn withheld(&self) -> bool {
        self.flags & WITHHELD != 0
    }

    pub(super) fn time(&self) -> Option<u64> {
        (!self.withheld()).then_some(self.time)
    }

    pub(super) fn seq(&self) -> u64 {
        u64::from(self.seq)
    }

    fn write(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(self.id.as_bytes());
        out.extend_from_slice(&self.time.to_le_bytes());
        out.extend_from_slice(&self.seq.to_le_bytes());
        out.extend_from_slice(&self.author.to_le_bytes());
        out.extend_from_slice(&self.base.to_le_bytes());
        out.push(self.tlp.number());
        out.push(self.flags);
        out.extend_from_slice(&[0, 0]);
    }

    /// A record from its bytes; None if they are not a record written.
    fn read(b: &[u8]) -> Option<Rec> {
        let b: &[u8; REC_BYTES] = b.get(..REC_BYTES)?.try_into().ok()?;
        let u32_at = |at: usize| u32::from_le_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]]);
        let mut time = [0u8; 8];
        time.copy_from_slice(&b[32..40]);
        let mut id = [0u8; 32];
        id.copy_from_slice(&b[..32]);
        if b[54..] != [0, 0] {
            return None;
        }
        Some(Rec {
            id: EntryId(id),
            time: u64::from_le_bytes(time),
            seq: u32_at(40),
            author: u32_at(44),
            base: u32_at(48),
            tlp: Tlp::from_number(b[52])?,
            flags: b[53],
        })
    }
}

/// The id → record index of the records in memory: an open-addressing
/// table of positions in the in-memory records (4 bytes a slot, at most
/// three quarters full), the ids themselves read from the records. A
/// `HashMap<EntryId, u32>` would keep every id twice.
#[derive(Debug, Clone, Default)]
struct IdIndex {
    slots: Vec<u32>,
    len: usize,
    hasher: RandomState,
}

const EMPTY: u32 = u32::MAX;

impl IdIndex {
    fn find(&self, id: &EntryId, recs: &[Rec]) -> Option<u32> {
        if self.slots.is_empty() {
            return None;
        }
        let mask = self.slots.len() - 1;
        let mut i = self.hasher.hash_one(id) as usize & mask;
        loop {
            let r = self.slots[i];
            if r == EMPTY {
                return None;
            }
            if recs.get(r as usize).is_some_and(|rec| rec.id == *id) {
                return Some(r);
            }
            i = (i + 1) & mask;
        }
    }

    /// Adds a position (its id not yet in the index).
    fn insert(&mut self, id: &EntryId, r: u32, recs: &[Rec]) {
        if (self.len + 1) * 4 > self.slots.len() * 3 {
            self.grow(recs);
        }
        self.place(id, r);
        self.len += 1;
    }

    fn place(&mut self, id: &EntryId, r: u32) {
        let mask = self.slots.len() - 1;
        let mut i = self.hasher.hash_one(id) as usize & mask;
        while self.slots[i] != EMPTY {
            i = (i + 1) & mask;
        }
        self.slots[i] = r;
    }

    fn grow(&mut self, recs: &[Rec]) {
        let size = (self.slots.len() * 2).max(16);
        let old = std::mem::replace(&mut self.slots, vec![EMPTY; size]);
        for r in old.into_iter().filter(|&r| r != EMPTY) {
            if let Some(rec) = recs.get(r as usize) {
                self.place(&rec.id, r);
            }
        }
    }

    /// Indexes `recs` anew (after the older ones left memory).
    fn rebuild(&mut self, recs: &[Rec]) {
        let size = (recs.len() * 2).next_power_of_two().max(16);
        self.slots = vec![EMPTY; size];
        self.len = recs.len();
        for (r, rec) in recs.iter().enumerate() {
            self.place(&rec.id, r as u32);
        }
    }
}

/// Bytes of one id table slot: record number + 1 (0: empty), then the
/// high 32 bits of the id's hash, little-endian.
const SLOT_BYTES: usize = 8;
/// Slots read at a time: a 64-byte block.
const BLOCK_SLOTS: u64 = 8;

/// One level of the id table: `slots` slots (a power of two) at `offset`
/// in the table file, holding at most `slots / 2` ids, and its filter.
#[derive(Debug)]
struct Level {
    offset: u64,
    slots: u64,
    len: u64,
    /// A blocked Bloom filter: one 64-bit word per id's hash, four bits in
    /// it; a word per 16 slots (one byte per id the level can hold).
    filter: Vec<u64>,
    /// Which slots are taken, a bit each: a new id's slot is found without
    /// reading the file, and a lookup whose first slot is free reads
    /// nothing.
    used: Vec<u64>,
}

impl Level {
    fn new(offset: u64, slots: u64) -> Level {
        Level {
            offset,
            slots,
            len: 0,
            filter: vec![0; usize::try_from(slots / 16).unwrap_or(usize::MAX).max(1)],
            used: vec![0; usize::try_from(slots.div_ceil(64)).unwrap_or(usize::MAX)],
        }
    }

    fn capacity(&self) -> u64 {
        self.slots / 2
    }

    /// The filter's word and bits for an id's second hash.
    fn bits(&self, h2: u64) -> (usize, u64) {
        let word = ((h2 & 0xffff_ffff) * self.filter.len() as u64) >> 32;
        let mut bits = 0u64;
        for k in 0..4 {
            bits |= 1 << ((h2 >> (32 + 6 * k)) & 63);
        }
        (word as usize, bits)
    }

    fn may_hold(&self, h2: u64) -> bool {
        let (w, bits) = self.bits(h2);
        self.filter[w] & bits == bits
    }

    fn is_used(&self, slot: u64) -> bool {
        self.used[(slot / 64) as usize] & (1 << (slot % 64)) != 0
    }

    fn take(&mut self, slot: u64) {
        self.used[(slot / 64) as usize] |= 1 << (slot % 64);
    }

    fn note(&mut self, h2: u64) {
        let (w, bits) = self.bits(h2);
        self.filter[w] |= bits;
    }
}

/// The records out of memory: the record file and the id table.
struct Cold {
    recs: Box<dyn SpillFile>,
    table: Box<dyn SpillFile>,
    levels: Vec<Level>,
    hasher: RandomState,
}

impl std::fmt::Debug for Cold {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cold")
            .field("levels", &self.levels)
            .finish_non_exhaustive()
    }
}

impl Cold {
    fn hashes(&self, id: &EntryId) -> (u64, u64) {
        (
            self.hasher.hash_one(id),
            self.hasher.hash_one((0x5a_u8, id)),
        )
    }

    fn read_rec(&self, r: u32) -> std::io::Result<Rec> {
        let mut b = [0u8; REC_BYTES];
        self.recs.read_at(u64::from(r) * REC_BYTES as u64, &mut b)?;
        Rec::read(&b).ok_or_else(|| {
            std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                format!("record {r} read back is not a record written"),
            )
        })
    }

    /// Reads up to a block of slots of `level` from slot `pos` (not past
    /// the level's end): (record number + 1, fingerprint) each.
    fn read_slots(
        &self,
        level: &Level,
        pos: u64,
        out: &mut Vec<(u32, u32)>,
    ) -> std::io::Result<()> {
        let n = BLOCK_SLOTS.min(level.slots - pos) as usize;
        let mut b = [0u8; BLOCK_SLOTS as usize * SLOT_BYTES];
        let b = &mut b[..n * SLOT_BYTES];
        self.table
            .read_at(level.offset + pos * SLOT_BYTES as u64, b)?;
        out.clear();
        out.extend(b.chunks_exact(SLOT_BYTES).map(|s| {
            (
                u32::from_le_bytes([s[0], s[1], s[2], s[3]]),
                u32::from_le_bytes([s[4], s[5], s[6], s[7]]),
            )
        }));
        Ok(())
    }

    fn find(&self, id: &EntryId) -> std::io::Result<Option<(u32, Rec)>> {
        let (h, h2) = self.hashes(id);
        let fp = (h >> 32) as u32;
        let mut slots = Vec::with_capacity(BLOCK_SLOTS as usize);
        for level in self.levels.iter().filter(|l| l.may_hold(h2)) {
            let mask = level.slots - 1;
            let mut pos = h & mask;
            if !level.is_used(pos) {
                continue;
            }
            // At most half full: an empty slot ends every probe.
            'probe: loop {
                self.read_slots(level, pos, &mut slots)?;
                for &(r1, f) in &slots {
                    if r1 == 0 {
                        break 'probe;
                    }
                    if f == fp {
                        let rec = self.read_rec(r1 - 1)?;
                        if rec.id == *id {
                            return Ok(Some((r1 - 1, rec)));
                        }
                    }
                }
                pos = (pos + slots.len() as u64) & mask;
            }
        }
        Ok(None)
    }

    /// Appends records numbered from `first` to the record file and indexes
    /// them. On an error some may be indexed: they are still in memory, and
    /// a record number names one record in memory or out of it alike.
    fn append(&mut self, first: u32, recs: &[Rec]) -> std::io::Result<()> {
        let mut bytes = Vec::with_capacity(recs.len() * REC_BYTES);
        for rec in recs {
            rec.write(&mut bytes);
        }
        self.recs
            .write_at(u64::from(first) * REC_BYTES as u64, &bytes)?;
        let need = recs.len() as u64;
        if self
            .levels
            .last()
            .is_none_or(|l| l.len + need > l.capacity())
        {
            let (offset, slots) = self
                .levels
                .last()
                .map_or((0, (need * 2).next_power_of_two()), |l| {
                    (l.offset + l.slots * SLOT_BYTES as u64, l.slots * 2)
                });
            let slots = slots.max((need * 2).next_power_of_two());
            // A level's slots read as zero (empty) until written.
            self.table
                .write_at(offset + slots * SLOT_BYTES as u64 - 1, &[0])?;
            self.levels.push(Level::new(offset, slots));
        }
        // Each id's slot, found in the level's bitmap; then the slots are
        // written in order of position, adjacent ones in one write.
        let (hasher, level) = (
            &self.hasher,
            self.levels.last_mut().expect("a level was made above"),
        );
        let mask = level.slots - 1;
        let mut writes: Vec<(u64, [u8; SLOT_BYTES])> = Vec::with_capacity(recs.len());
        for (i, rec) in recs.iter().enumerate() {
            let h = hasher.hash_one(rec.id);
            let mut at = h & mask;
            // At most half full: a free slot is always found.
            while level.is_used(at) {
                at = (at + 1) & mask;
            }
            level.take(at);
            let mut slot = [0u8; SLOT_BYTES];
            slot[..4].copy_from_slice(&(first + i as u32 + 1).to_le_bytes());
            slot[4..].copy_from_slice(&((h >> 32) as u32).to_le_bytes());
            writes.push((at, slot));
        }
        writes.sort_unstable_by_key(|w| w.0);
        let mut run: Vec<u8> = Vec::new();
        let mut k = 0;
        while k < writes.len() {
            let start = writes[k].0;
            run.clear();
            while k < writes.len() && writes[k].0 == start + (run.len() / SLOT_BYTES) as u64 {
                run.extend_from_slice(&writes[k].1);
                k += 1;
            }
            self.table
                .write_at(level.offset + start * SLOT_BYTES as u64, &run)?;
        }
        for rec in recs {
            let h2 = self.hasher.hash_one((0x5a_u8, &rec.id));
            level.note(h2);
            level.len += 1;
        }
        Ok(())
    }
}

/// Every record of a validator, by record number: the newest in memory,
/// the older ones (numbers below `cold_len`) in a [`Cold`] store.
#[derive(Debug, Default)]
pub(super) struct Records {
    /// Records `cold_len..`, in order.
    hot: Vec<Rec>,
    cold_len: u32,
    index: IdIndex,
    cold: Option<Cold>,
    spill: Option<Arc<dyn RecordSpill>>,
    window: usize,
    /// Records out of memory changed since (a withheld position revealed).
    patched: HashMap<u32, Rec>,
    /// The vector clocks (see [`Records::push_clock`]): words
    /// `clocks_cold..` in memory, the ones before in `clock_file`.
    clocks: Vec<u32>,
    clocks_cold: u32,
    clock_file: Option<Box<dyn SpillFile>>,
    failure: OnceLock<String>,
    warning: Option<String>,
}

impl std::fmt::Debug for dyn SpillFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SpillFile")
    }
}

impl std::fmt::Debug for dyn RecordSpill {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("RecordSpill")
    }
}

impl Clone for Records {
    /// A copy with every record in memory (read back from the files if
    /// some were out of it), spilling again through the same source when
    /// it grows: two validators never share a file.
    fn clone(&self) -> Records {
        let mut hot = Vec::with_capacity(self.len());
        self.for_each(|_, rec| hot.push(*rec));
        let mut index = IdIndex::default();
        index.rebuild(&hot);
        let clocks = self
            .words(0, self.clock_len())
            .map(Cow::into_owned)
            .unwrap_or_default();
        Records {
            hot,
            cold_len: 0,
            index,
            cold: None,
            spill: self.spill.clone(),
            window: self.window,
            patched: HashMap::new(),
            clocks,
            clocks_cold: 0,
            clock_file: None,
            failure: self.failure.clone(),
            warning: self.warning.clone(),
        }
    }
}

impl Records {
    /// From now on, moves the older half of `2 * window` records out of
    /// memory through `spill`.
    pub(super) fn spill_to(&mut self, spill: Arc<dyn RecordSpill>, window: usize) {
        self.spill = Some(spill);
        self.window = window.clamp(1, MAX_WINDOW);
    }

    /// Notes a record read back that cannot be one this validator wrote.
    pub(super) fn damaged(&self, what: &str) {
        self.failed(&std::io::Error::new(std::io::ErrorKind::InvalidData, what));
    }

    pub(super) fn len(&self) -> usize {
        self.cold_len as usize + self.hot.len()
    }

    /// Why a record could not be read back, if one could not.
    pub(super) fn failure(&self) -> Option<&str> {
        self.failure.get().map(String::as_str)
    }

    /// Why records stopped leaving memory, if they did.
    pub(super) fn warning(&self) -> Option<&str> {
        self.warning.as_deref()
    }

    fn failed(&self, e: &std::io::Error) {
        let _ = self.failure.set(format!(
            "a record set aside out of memory could not be read back: {e}"
        ));
    }

    /// The record numbered `r`, if there is one (and it could be read).
    pub(super) fn get(&self, r: u32) -> Option<Rec> {
        if r >= self.cold_len {
            return self.hot.get((r - self.cold_len) as usize).copied();
        }
        if let Some(rec) = self.patched.get(&r) {
            return Some(*rec);
        }
        let cold = self.cold.as_ref()?;
        match cold.read_rec(r) {
            Ok(rec) => Some(rec),
            Err(e) => {
                self.failed(&e);
                None
            }
        }
    }

    /// The record of an id, with its number.
    pub(super) fn find(&self, id: &EntryId) -> Option<(u32, Rec)> {
        if let Some(i) = self.index.find(id, &self.hot) {
            return Some((self.cold_len + i, self.hot[i as usize]));
        }
        let cold = self.cold.as_ref()?;
        match cold.find(id) {
            Ok(Some((r, rec))) => Some((r, self.patched.get(&r).copied().unwrap_or(rec))),
            Ok(None) => None,
            Err(e) => {
                self.failed(&e);
                None
            }
        }
    }

    /// Adds a record (its id not known), numbered [`Records::len`].
    pub(super) fn push(&mut self, rec: Rec) -> u32 {
        let r = self.len() as u32;
        self.hot.push(rec);
        self.index
            .insert(&rec.id, (self.hot.len() - 1) as u32, &self.hot);
        if self.spill.is_some() && self.hot.len() >= 2 * self.window {
            self.move_out();
        }
        r
    }

    /// Replaces the record numbered `r` (a withheld position revealed).
    pub(super) fn set(&mut self, r: u32, rec: Rec) {
        if r >= self.cold_len {
            if let Some(slot) = self.hot.get_mut((r - self.cold_len) as usize) {
                *slot = rec;
            }
        } else {
            self.patched.insert(r, rec);
        }
    }

    /// Words of clocks held (the next clock's offset).
    pub(super) fn clock_len(&self) -> usize {
        self.clocks_cold as usize + self.clocks.len()
    }

    /// `n` words of clocks from offset `from`, from memory or the file;
    /// None past the end or when the file could not be read.
    fn words(&self, from: usize, n: usize) -> Option<Cow<'_, [u32]>> {
        let cold = self.clocks_cold as usize;
        if from >= cold {
            return self
                .clocks
                .get(from - cold..from - cold + n)
                .map(Cow::Borrowed);
        }
        if from + n > self.clock_len() {
            return None;
        }
        let file = self.clock_file.as_ref()?;
        let in_file = n.min(cold - from);
        let mut bytes = vec![0u8; in_file * 4];
        if let Err(e) = file.read_at(from as u64 * 4, &mut bytes) {
            self.failed(&e);
            return None;
        }
        let mut out: Vec<u32> = bytes
            .chunks_exact(4)
            .map(|w| u32::from_le_bytes([w[0], w[1], w[2], w[3]]))
            .collect();
        out.extend_from_slice(&self.clocks[..n - in_file]);
        Some(Cow::Owned(out))
    }

    /// The clock stored at an offset ([`Records::push_clock`]); empty for
    /// an offset never given.
    pub(super) fn clock(&self, at: u32) -> Cow<'_, [u32]> {
        let at = at as usize;
        let len = self.words(at, 1).map_or(0, |w| w[0] as usize);
        self.words(at + 1, len).unwrap_or(Cow::Borrowed(&[]))
    }

    /// Slot `x` of the clock stored at an offset (0 if it has none).
    pub(super) fn clock_slot(&self, at: u32, x: usize) -> u32 {
        let at = at as usize;
        match self.words(at, 1) {
            Some(len) if x < len[0] as usize => self.words(at + 1 + x, 1).map_or(0, |w| w[0]),
            _ => 0,
        }
    }

    /// Stores a vector clock: at its offset the number of slots, then the
    /// slots (each at most the number of records, below u32::MAX). None if
    /// offsets would outgrow u32. Clock words go out of memory as records
    /// do, four words per record of the window at a time (a clock of three
    /// writers is four words).
    pub(super) fn push_clock(&mut self, clock: &[u64]) -> Option<u32> {
        let at = u32::try_from(self.clock_len()).ok()?;
        let len = u32::try_from(clock.len()).ok()?;
        if self.clock_len() + 1 + clock.len() > u32::MAX as usize {
            return None;
        }
        self.clocks.push(len);
        self.clocks
            .extend(clock.iter().map(|&c| u32::try_from(c).unwrap_or(u32::MAX)));
        let words = self.window.saturating_mul(4);
        if self.spill.is_some() && self.clocks.len() >= words.saturating_mul(2) {
            self.move_clocks_out(words);
        }
        Some(at)
    }

    /// Moves the oldest `n` words of clocks out of memory.
    fn move_clocks_out(&mut self, n: usize) {
        let Some(spill) = self.spill.clone() else {
            return;
        };
        let at = u64::from(self.clocks_cold) * 4;
        let moved = (|| -> std::io::Result<()> {
            if self.clock_file.is_none() {
                self.clock_file = Some(spill.open()?);
            }
            let mut bytes = Vec::with_capacity(n * 4);
            for w in &self.clocks[..n] {
                bytes.extend_from_slice(&w.to_le_bytes());
            }
            let file = self.clock_file.as_mut().expect("opened above");
            file.write_at(at, &bytes)
        })();
        match moved {
            Ok(()) => {
                self.clocks.drain(..n);
                self.clocks_cold += n as u32;
            }
            Err(e) => self.stop_spilling(&e),
        }
    }

    fn stop_spilling(&mut self, e: &std::io::Error) {
        self.warning = Some(format!(
            "records could not be set aside out of memory ({e}); the rest stay in memory"
        ));
        self.spill = None;
    }

    /// Moves the oldest window of records out of memory.
    fn move_out(&mut self) {
        let Some(spill) = self.spill.clone() else {
            return;
        };
        let n = self.window;
        let moved = (|| -> std::io::Result<()> {
            if self.cold.is_none() {
                self.cold = Some(Cold {
                    recs: spill.open()?,
                    table: spill.open()?,
                    levels: Vec::new(),
                    hasher: RandomState::new(),
                });
            }
            let cold = self.cold.as_mut().expect("made above");
            cold.append(self.cold_len, &self.hot[..n])
        })();
        match moved {
            Ok(()) => {
                self.hot.drain(..n);
                self.cold_len += n as u32;
                self.index.rebuild(&self.hot);
            }
            Err(e) => self.stop_spilling(&e),
        }
    }

    /// Calls `f` with every record, in order of number. Records out of
    /// memory are read back a block at a time.
    pub(super) fn for_each(&self, mut f: impl FnMut(u32, &Rec)) {
        if let Some(cold) = &self.cold {
            const AT_ONCE: u32 = 4096;
            let mut buf = vec![0u8; AT_ONCE as usize * REC_BYTES];
            let mut r = 0;
            while r < self.cold_len {
                let n = AT_ONCE.min(self.cold_len - r);
                let b = &mut buf[..n as usize * REC_BYTES];
                if let Err(e) = cold.recs.read_at(u64::from(r) * REC_BYTES as u64, b) {
                    self.failed(&e);
                    return;
                }
                for (i, bytes) in b.chunks_exact(REC_BYTES).enumerate() {
                    let at = r + i as u32;
                    let Some(rec) = Rec::read(bytes) else {
                        self.failed(&std::io::Error::new(
                            std::io::ErrorKind::InvalidData,
                            format!("record {at} read back is not a record written"),
                        ));
                        return;
                    };
                    f(at, self.patched.get(&at).unwrap_or(&rec));
                }
                r += n;
            }
        }
        for (i, rec) in self.hot.iter().enumerate() {
            f(self.cold_len + i as u32, rec);
        }
    }

    pub(super) fn shrink_to_fit(&mut self) {
        self.hot.shrink_to_fit();
        self.clocks.shrink_to_fit();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

    fn rec(id: EntryId, i: u32) -> Rec {
        Rec {
            id,
            time: u64::from(i) * 1_000,
            seq: i,
            author: i % 3,
            base: i / 2,
            tlp: Tlp::from_number((i % 5) as u8).expect("a label"),
            flags: (i % 8) as u8,
        }
    }

    fn id_of(i: u32) -> EntryId {
        let mut b = [0u8; 32];
        b[..4].copy_from_slice(&i.to_le_bytes());
        EntryId(b)
    }

    /// Files in memory, which can be told to fail.
    /// [`MemorySpill`]'s files, which can be told to fail.
    #[derive(Default)]
    struct Files {
        opened: AtomicUsize,
        fail_writes: Arc<AtomicBool>,
        fail_reads: Arc<AtomicBool>,
        damage: Arc<AtomicBool>,
    }

    struct FailingFile {
        inner: Box<dyn SpillFile>,
        fail_writes: Arc<AtomicBool>,
        fail_reads: Arc<AtomicBool>,
        damage: Arc<AtomicBool>,
    }

    impl SpillFile for FailingFile {
        fn write_at(&mut self, offset: u64, bytes: &[u8]) -> std::io::Result<()> {
            if self.fail_writes.load(Ordering::SeqCst) {
                return Err(std::io::Error::other("no space left (test)"));
            }
            self.inner.write_at(offset, bytes)
        }

        fn read_at(&self, offset: u64, buf: &mut [u8]) -> std::io::Result<()> {
            if self.fail_reads.load(Ordering::SeqCst) {
                return Err(std::io::Error::other("input/output error (test)"));
            }
            self.inner.read_at(offset, buf)?;
            if self.damage.load(Ordering::SeqCst) && buf.len() == REC_BYTES {
                buf[54] = 0xff;
            }
            Ok(())
        }
    }

    impl RecordSpill for Files {
        fn open(&self) -> std::io::Result<Box<dyn SpillFile>> {
            self.opened.fetch_add(1, Ordering::SeqCst);
            Ok(Box::new(FailingFile {
                inner: MemorySpill.open()?,
                fail_writes: self.fail_writes.clone(),
                fail_reads: self.fail_reads.clone(),
                damage: self.damage.clone(),
            }))
        }
    }

    fn spilling(window: usize) -> (Records, Arc<Files>) {
        let files = Arc::new(Files::default());
        let mut recs = Records::default();
        recs.spill_to(files.clone(), window);
        (recs, files)
    }

    #[test]
    fn index_finds_every_record_through_growth() {
        let mut recs = Vec::new();
        let mut index = IdIndex::default();
        assert_eq!(index.find(&id_of(0), &recs), None);
        for i in 0..10_000u32 {
            recs.push(rec(id_of(i), i));
            index.insert(&id_of(i), i, &recs);
        }
        for i in 0..10_000u32 {
            assert_eq!(index.find(&id_of(i), &recs), Some(i), "record {i}");
        }
        for i in 10_000..11_000u32 {
            assert_eq!(index.find(&id_of(i), &recs), None, "absent {i}");
        }
        // At most three quarters full, so a miss always ends.
        assert!(index.slots.len() * 3 >= index.len * 4);
    }

    #[test]
    fn a_record_reads_back_as_written_and_damaged_bytes_are_not_one() {
        let r = rec(id_of(7), 7);
        let mut b = Vec::new();
        r.write(&mut b);
        assert_eq!(b.len(), REC_BYTES);
        assert_eq!(Rec::read(&b), Some(r));
        let mut bad = b.clone();
        bad[52] = 9; // no such label
        assert_eq!(Rec::read(&bad), None);
        bad = b.clone();
        bad[55] = 1; // padding not zero
        assert_eq!(Rec::read(&bad), None);
        assert_eq!(Rec::read(&b[..REC_BYTES - 1]), None);
    }

    #[test]
    fn records_out_of_memory_are_found_by_id_and_number_as_in_memory() {
        // Windows of 1 to 64 records: levels of every size, probes that
        // wrap, blocks cut at a level's end.
        for window in [1, 2, 3, 7, 64] {
            let (mut spilled, files) = spilling(window);
            let mut memory = Records::default();
            for i in 0..3_000u32 {
                assert_eq!(spilled.push(rec(id_of(i), i)), i);
                assert_eq!(memory.push(rec(id_of(i), i)), i);
            }
            assert!(
                spilled.cold_len as usize >= 3_000 - 2 * window,
                "window {window}"
            );
            assert!(spilled.hot.len() < 2 * window);
            assert!(spilled.cold.as_ref().is_some_and(|c| c.levels.len() > 1));
            assert_eq!(files.opened.load(Ordering::SeqCst), 2);
            for i in 0..3_000u32 {
                assert_eq!(spilled.find(&id_of(i)), memory.find(&id_of(i)), "id {i}");
                assert_eq!(spilled.get(i), memory.get(i), "number {i}");
            }
            for i in 3_000..4_000u32 {
                assert_eq!(spilled.find(&id_of(i)), None, "absent {i}");
            }
            assert_eq!(spilled.get(3_000), None);
            let (mut a, mut b) = (Vec::new(), Vec::new());
            spilled.for_each(|r, rec| a.push((r, *rec)));
            memory.for_each(|r, rec| b.push((r, *rec)));
            assert_eq!(a, b);
            assert_eq!(spilled.failure(), None);
            assert_eq!(spilled.warning(), None);
        }
    }

    #[test]
    fn clocks_read_back_the_same_in_memory_and_out_of_it() {
        let clocks: Vec<Vec<u64>> = (0..500u64)
            .map(|i| (0..(i % 7)).map(|x| (i * 31 + x) % 1_000).collect())
            .collect();
        // A window of 1 record moves 4 words at a time: clocks straddle
        // the file's end and memory's start.
        for window in [1, 2, 5] {
            let (mut spilled, files) = spilling(window);
            let mut memory = Records::default();
            let mut at = Vec::new();
            for c in &clocks {
                let a = spilled.push_clock(c).expect("room");
                assert_eq!(memory.push_clock(c), Some(a));
                at.push(a);
            }
            assert!(spilled.clocks_cold > 0 && spilled.clock_file.is_some());
            assert_eq!(files.opened.load(Ordering::SeqCst), 1);
            assert_eq!(spilled.clock_len(), memory.clock_len());
            for (c, &a) in clocks.iter().zip(&at) {
                let want: Vec<u32> = c.iter().map(|&v| v as u32).collect();
                assert_eq!(&*spilled.clock(a), &want[..], "clock at {a}");
                assert_eq!(&*memory.clock(a), &want[..]);
                for x in 0..8 {
                    assert_eq!(spilled.clock_slot(a, x), want.get(x).copied().unwrap_or(0));
                }
            }
            // An offset past the end reads as the empty clock, not a panic.
            let end = spilled.clock_len() as u32;
            assert_eq!(&*spilled.clock(end + 1_000), &[] as &[u32]);
            assert_eq!(spilled.clock_slot(end, 0), 0);
            assert_eq!(spilled.failure(), None);
            // A copy holds them all in memory.
            let copy = spilled.clone();
            assert!(copy.clock_file.is_none());
            for &a in &at {
                assert_eq!(copy.clock(a), spilled.clock(a));
            }
        }
    }

    #[test]
    fn a_clock_that_cannot_be_read_back_is_a_failure() {
        let (mut recs, files) = spilling(1);
        let first = recs.push_clock(&[1, 2, 3]).expect("room");
        for i in 0..50 {
            recs.push_clock(&[i, i]).expect("room");
        }
        files.fail_reads.store(true, Ordering::SeqCst);
        assert_eq!(&*recs.clock(first), &[] as &[u32]);
        assert!(recs
            .failure()
            .is_some_and(|f| f.contains("input/output error")));
    }

    #[test]
    fn a_record_changed_out_of_memory_reads_back_changed() {
        let (mut recs, _) = spilling(4);
        for i in 0..100u32 {
            recs.push(rec(id_of(i), i));
        }
        let mut revealed = rec(id_of(5), 5);
        revealed.flags = WITNESS;
        revealed.time = 42;
        recs.set(5, revealed);
        // In memory: replaced in place (a reveal keeps the id).
        let mut revealed_hot = rec(id_of(99), 99);
        revealed_hot.flags = WITNESS;
        recs.set(99, revealed_hot);
        assert_eq!(recs.find(&id_of(99)), Some((99, revealed_hot)));
        assert_eq!(recs.get(5), Some(revealed));
        assert_eq!(recs.find(&id_of(5)), Some((5, revealed)));
        let mut seen = None;
        recs.for_each(|r, rec| {
            if r == 5 {
                seen = Some(*rec);
            }
        });
        assert_eq!(seen, Some(revealed));
        // A copy holds everything in memory and opens no file of the
        // original's.
        let copy = recs.clone();
        assert!(copy.cold.is_none());
        assert_eq!(copy.get(5), Some(revealed));
        assert_eq!(copy.find(&id_of(50)), recs.find(&id_of(50)));
    }

    #[test]
    fn a_file_that_cannot_be_written_keeps_the_records_in_memory() {
        let (mut recs, files) = spilling(4);
        for i in 0..20u32 {
            recs.push(rec(id_of(i), i));
        }
        files.fail_writes.store(true, Ordering::SeqCst);
        for i in 20..200u32 {
            recs.push(rec(id_of(i), i));
        }
        assert!(recs.warning().is_some_and(|w| w.contains("no space left")));
        assert_eq!(recs.failure(), None);
        files.fail_writes.store(false, Ordering::SeqCst);
        for i in 0..200u32 {
            assert_eq!(recs.find(&id_of(i)).map(|(r, _)| r), Some(i), "id {i}");
            assert_eq!(recs.get(i), Some(rec(id_of(i), i)));
        }
        assert_eq!(recs.failure(), None);
    }

    #[test]
    fn a_record_that_cannot_be_read_back_is_a_failure_not_an_absence_unnoticed() {
        let (mut recs, files) = spilling(4);
        for i in 0..100u32 {
            recs.push(rec(id_of(i), i));
        }
        files.fail_reads.store(true, Ordering::SeqCst);
        assert_eq!(recs.get(0), None);
        assert!(recs
            .failure()
            .is_some_and(|f| f.contains("input/output error")));

        let (mut recs, files) = spilling(4);
        for i in 0..100u32 {
            recs.push(rec(id_of(i), i));
        }
        files.damage.store(true, Ordering::SeqCst);
        assert_eq!(recs.get(3), None);
        assert!(recs
            .failure()
            .is_some_and(|f| f.contains("not a record written")));
    }
}
