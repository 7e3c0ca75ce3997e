//! Generated inputs: a large evidence file from a cheap PRNG, and cases of
//! any size whose entries are valid (signed, chained, cross-referenced by
//! several writers, as nodes write them).

use std::io::{self, Write};
use std::path::Path;

use custodia_protocol::bundle::BundleAgency;
use custodia_protocol::{
    AgencyId, Body, CaseId, CaseOpened, Entry, EntryId, Identity, MemberAdded, Note, Payload, Role,
    Tlp, FORMAT_VERSION, MAX_REFS,
};
use ed25519_dalek::{Signature, VerifyingKey};

/// wyrand: a tiny, fast PRNG (good enough for filler bytes).
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    /// A generator from a seed.
    pub fn new(seed: u64) -> Rng {
        Rng(seed)
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0xa076_1d64_78bd_642f);
        let t = u128::from(self.0) * u128::from(self.0 ^ 0xe703_7ed1_a0b4_28db);
        ((t >> 64) as u64) ^ (t as u64)
    }
}

/// Writes `size` pseudo-random bytes to `path`.
pub fn write_random_file(path: &Path, size: u64, seed: u64) -> io::Result<()> {
    const BUF: usize = 8 << 20;
    let mut rng = Rng::new(seed);
    let mut f = std::fs::File::create(path)?;
    let mut buf = vec![0u8; BUF];
    let mut left = size;
    while left > 0 {
        for w in buf.chunks_exact_mut(8) {
            w.copy_from_slice(&rng.next_u64().to_le_bytes());
        }
        let n = left.min(BUF as u64) as usize;
        f.write_all(&buf[..n])?;
        left -= n as u64;
    }
    f.sync_all()
}

/// Reads a whole file once (a warm-up: afterwards it is in the page cache).
pub fn read_through(path: &Path) -> io::Result<u64> {
    let mut f = std::fs::File::open(path)?;
    io::copy(&mut f, &mut io::sink())
}

/// A note body like the ones investigators write (about 90 bytes of text).
pub fn note(i: usize) -> Body {
    Body::Note(Note {
        text: format!(
            "Observation {i}: device imaged, image hash verified, sealed in bag A-{i:07}."
        ),
        item: None,
    })
}

/// A generated case: its entries in dependency order.
#[derive(Debug)]
pub struct Generated {
    /// The case id.
    pub case: CaseId,
    /// The entries, genesis first.
    pub entries: Vec<Entry>,
    /// Every writer's last sequence number.
    pub heads: Vec<(AgencyId, u64)>,
    /// The members as a bundle lists them (ascending by key).
    pub agencies: Vec<BundleAgency>,
    /// The time every entry asserts.
    pub time: u64,
}

/// Generates a case of `n` entries (at least the genesis and the member
/// additions): `lead` opens it and adds every writer and reader, then the
/// lead and the writers take turns writing notes, each naming the others'
/// heads in its refs, as a node does. All in memory: for a case too large
/// for that, use [`CaseGen`] (the same entries, chunk by chunk).
pub fn generate_case(
    lead: &Identity,
    writers: &[Identity],
    readers: &[AgencyId],
    n: usize,
    time: u64,
) -> Generated {
    let mut g = CaseGen::new(lead, writers, readers, n, time);
    let mut entries = Vec::with_capacity(g.total());
    entries.extend(&mut g);
    Generated {
        case: g.case(),
        entries,
        heads: g.heads(),
        agencies: g.agencies(),
        time,
    }
}

/// The entries of [`generate_case`], produced one at a time (it is an
/// [`Iterator`]), so that a case of millions of entries is written to a
/// store in chunks without ever being held whole.
pub struct CaseGen<'a> {
    /// The lead first, then the writers.
    authors: Vec<&'a Identity>,
    /// Each author's last (sequence number, entry id).
    heads: Vec<Option<(u64, EntryId)>>,
    case: CaseId,
    time: u64,
    /// The genesis, until it is yielded.
    genesis: Option<Entry>,
    /// Member additions still to write, in order.
    members: std::collections::VecDeque<(AgencyId, String)>,
    /// The members as a bundle lists them (in the order added).
    agencies: Vec<BundleAgency>,
    /// Entries yielded so far.
    produced: usize,
    /// Entries to yield in all.
    total: usize,
    /// The next note's number.
    note: usize,
}

impl<'a> CaseGen<'a> {
    /// A generator of the case [`generate_case`] returns for the same
    /// arguments. Signs the genesis at once (its id is the case id).
    pub fn new(
        lead: &'a Identity,
        writers: &'a [Identity],
        readers: &[AgencyId],
        n: usize,
        time: u64,
    ) -> CaseGen<'a> {
        let genesis = Entry::sign(
            lead,
            &Payload::genesis(
                lead.agency(),
                time,
                Tlp::Amber,
                CaseOpened {
                    title: "Operation Benchmark".into(),
                    reference: "BENCH-0001".into(),
                    jurisdiction: Some("PH".into()),
                    name: "Lead agency".into(),
                    country: "PH".into(),
                },
            ),
        );
        let case = genesis.id();
        let authors: Vec<&Identity> = std::iter::once(lead).chain(writers).collect();
        let mut heads = vec![None; authors.len()];
        heads[0] = Some((0, case));
        let members: std::collections::VecDeque<(AgencyId, String)> = writers
            .iter()
            .enumerate()
            .map(|(i, w)| (w.agency(), format!("Writer agency {i}")))
            .chain(
                readers
                    .iter()
                    .enumerate()
                    .map(|(i, r)| (*r, format!("Reader agency {i}"))),
            )
            .collect();
        let mut agencies = vec![BundleAgency {
            agency: lead.agency(),
            name: "Lead agency".into(),
            country: "PH".into(),
        }];
        agencies.extend(members.iter().map(|(agency, name)| BundleAgency {
            agency: *agency,
            name: name.clone(),
            country: "DE".into(),
        }));
        CaseGen {
            authors,
            heads,
            case,
            time,
            genesis: Some(genesis),
            total: n.max(1 + members.len()),
            members,
            agencies,
            produced: 0,
            note: 0,
        }
    }

    /// The case id.
    pub fn case(&self) -> CaseId {
        self.case
    }

    /// How many entries the generator yields in all.
    pub fn total(&self) -> usize {
        self.total
    }

    /// Every author's last sequence number so far (the case's heads once
    /// every entry has been yielded).
    pub fn heads(&self) -> Vec<(AgencyId, u64)> {
        self.authors
            .iter()
            .zip(&self.heads)
            .filter_map(|(a, h)| h.map(|(s, _)| (a.agency(), s)))
            .collect()
    }

    /// The members as a bundle lists them (ascending by key).
    pub fn agencies(&self) -> Vec<BundleAgency> {
        let mut a = self.agencies.clone();
        a.sort_by_key(|a| a.agency);
        a
    }

    /// Up to `max` more entries (none once every entry was yielded).
    pub fn chunk(&mut self, max: usize) -> Vec<Entry> {
        self.by_ref().take(max).collect()
    }

    /// Author `who`'s next entry, naming the others' heads in its refs.
    fn write(&mut self, who: usize, body: Body) -> Entry {
        let me = self.authors[who];
        let (seq, prev) = match self.heads[who] {
            Some((s, id)) => (s + 1, Some(id)),
            None => (0, None),
        };
        let mut refs: Vec<EntryId> = self
            .heads
            .iter()
            .enumerate()
            .filter(|(i, _)| *i != who)
            .filter_map(|(_, h)| h.map(|(_, id)| id))
            .collect();
        refs.sort();
        refs.truncate(MAX_REFS);
        let payload = Payload {
            v: FORMAT_VERSION,
            keys: None,
            case: Some(self.case),
            author: me.agency(),
            seq,
            prev,
            refs,
            time: self.time,
            tlp: Tlp::Amber,
            to: None,
            body,
        };
        let e = Entry::sign(me, &payload);
        self.heads[who] = Some((seq, e.id()));
        e
    }
}

impl Iterator for CaseGen<'_> {
    type Item = Entry;

    fn next(&mut self) -> Option<Entry> {
        if let Some(g) = self.genesis.take() {
            self.produced += 1;
            return Some(g);
        }
        if let Some((agency, name)) = self.members.pop_front() {
            self.produced += 1;
            return Some(self.write(
                0,
                Body::MemberAdded(MemberAdded {
                    agency,
                    name,
                    country: "DE".into(),
                    role: Role::Investigator,
                }),
            ));
        }
        if self.produced >= self.total {
            return None;
        }
        let i = self.note;
        self.note += 1;
        self.produced += 1;
        Some(self.write(i % self.authors.len(), note(i)))
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        let left = self.total - self.produced;
        (left, Some(left))
    }
}

/// What a verifier checks of an entry: key, signed message, signature.
pub type Triple = (VerifyingKey, Vec<u8>, Signature);

/// The (key, message, signature) of each entry, for the raw Ed25519
/// references.
pub fn triples<'a>(entries: impl IntoIterator<Item = &'a Entry>) -> Vec<Triple> {
    entries
        .into_iter()
        .filter_map(|e| {
            let u = Entry::decode_unverified(e.bytes()).ok()?;
            let key = VerifyingKey::from_bytes(u.author().as_bytes()).ok()?;
            Some((
                key,
                u.signed_message(),
                Signature::from_bytes(u.signature()),
            ))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use custodia_protocol::Validator;

    #[test]
    fn generated_cases_validate() {
        let lead = Identity::from_seed([1; 32]);
        let writers = [Identity::from_seed([2; 32]), Identity::from_seed([3; 32])];
        let reader = Identity::from_seed([4; 32]).agency();
        let g = generate_case(&lead, &writers, &[reader], 50, 1_795_000_000_000);
        assert_eq!(g.entries.len(), 50);
        let mut v = Validator::new();
        for e in &g.entries {
            let again = Entry::decode(e.bytes()).expect("decodes");
            v.apply(&again, g.time).expect("valid");
        }
        assert!(v.is_member(&reader));
        assert_eq!(g.agencies.len(), 4);
        assert_eq!(triples(&g.entries).len(), 50);
    }

    #[test]
    fn generated_cases_are_the_same_as_before_streaming() {
        // The last entry's id names, through prev and refs, every entry
        // before it: these are the ids the all-in-memory generator gave
        // before CaseGen existed, so the other figures' cases are unchanged.
        let lead = Identity::from_seed([1; 32]);
        let writers = [Identity::from_seed([2; 32]), Identity::from_seed([3; 32])];
        let reader = Identity::from_seed([4; 32]).agency();
        let last = |g: &Generated| g.entries.last().map(|e| e.id().to_hex());
        let g = generate_case(&lead, &writers, &[reader], 1000, 1_795_000_000_000);
        assert_eq!(g.entries.len(), 1000);
        assert_eq!(
            last(&g).as_deref(),
            Some("a5883deb01799956b8ecffe915ecc750c3e4c4e3ca6ae29368dd1dbd00b18baa")
        );
        let g = generate_case(&lead, &[], &[], 2, 1_795_000_000_000);
        assert_eq!(
            last(&g).as_deref(),
            Some("cd1d7b504a5bcc3b25bbf49bb59d268f41c83f0fa3e7c9dac7769c20dce0b785")
        );
    }

    #[test]
    fn chunks_are_the_whole_case_in_order() {
        let lead = Identity::from_seed([1; 32]);
        let writers = [Identity::from_seed([2; 32]), Identity::from_seed([3; 32])];
        let reader = Identity::from_seed([4; 32]).agency();
        let whole = generate_case(&lead, &writers, &[reader], 101, 1_795_000_000_000);
        let mut g = CaseGen::new(&lead, &writers, &[reader], 101, 1_795_000_000_000);
        assert_eq!(g.total(), 101);
        let mut bytes = Vec::new();
        loop {
            let part = g.chunk(7);
            if part.is_empty() {
                break;
            }
            assert!(part.len() <= 7);
            bytes.extend(part.iter().map(|e| e.bytes().to_vec()));
        }
        let want: Vec<Vec<u8>> = whole.entries.iter().map(|e| e.bytes().to_vec()).collect();
        assert_eq!(bytes, want);
        assert_eq!(g.case(), whole.case);
        assert_eq!(g.heads(), whole.heads);
        assert_eq!(g.agencies().len(), whole.agencies.len());
        // Fewer entries asked than members: the genesis and the additions.
        let small = CaseGen::new(&lead, &writers, &[reader], 1, 1_795_000_000_000);
        assert_eq!(small.count(), 4);
    }

    #[test]
    fn random_files_have_the_size_asked() {
        let dir = tempfile::tempdir().expect("tmp");
        let p = dir.path().join("f");
        write_random_file(&p, 1_000_003, 7).expect("write");
        assert_eq!(read_through(&p).expect("read"), 1_000_003);
    }
}
