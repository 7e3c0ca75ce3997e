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
/// heads in its refs, as a node does.
pub fn generate_case(
    lead: &Identity,
    writers: &[Identity],
    readers: &[AgencyId],
    n: usize,
    time: u64,
) -> Generated {
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
    let mut heads: Vec<Option<(u64, EntryId)>> = vec![None; authors.len()];
    heads[0] = Some((0, case));
    let mut entries = Vec::with_capacity(n.max(1 + writers.len() + readers.len()));
    entries.push(genesis);
    let mut agencies = vec![BundleAgency {
        agency: lead.agency(),
        name: "Lead agency".into(),
        country: "PH".into(),
    }];
    let mut write = |who: usize, body: Body, entries: &mut Vec<Entry>| {
        let me = authors[who];
        let (seq, prev) = match heads[who] {
            Some((s, id)) => (s + 1, Some(id)),
            None => (0, None),
        };
        let mut refs: Vec<EntryId> = heads
            .iter()
            .enumerate()
            .filter(|(i, _)| *i != who)
            .filter_map(|(_, h)| h.map(|(_, id)| id))
            .collect();
        refs.sort();
        refs.truncate(MAX_REFS);
        let payload = Payload {
            v: FORMAT_VERSION,
            case: Some(case),
            author: me.agency(),
            seq,
            prev,
            refs,
            time,
            tlp: Tlp::Amber,
            to: None,
            body,
        };
        let e = Entry::sign(me, &payload);
        heads[who] = Some((seq, e.id()));
        entries.push(e);
    };
    let members: Vec<(AgencyId, String)> = writers
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
    for (agency, name) in members {
        agencies.push(BundleAgency {
            agency,
            name: name.clone(),
            country: "DE".into(),
        });
        write(
            0,
            Body::MemberAdded(MemberAdded {
                agency,
                name,
                country: "DE".into(),
                role: Role::Investigator,
            }),
            &mut entries,
        );
    }
    let mut i = 0;
    while entries.len() < n {
        write(i % authors.len(), note(i), &mut entries);
        i += 1;
    }
    agencies.sort_by_key(|a| a.agency);
    let heads = authors
        .iter()
        .zip(&heads)
        .filter_map(|(a, h)| h.map(|(s, _)| (a.agency(), s)))
        .collect();
    Generated {
        case,
        entries,
        heads,
        agencies,
        time,
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
    fn random_files_have_the_size_asked() {
        let dir = tempfile::tempdir().expect("tmp");
        let p = dir.path().join("f");
        write_random_file(&p, 1_000_003, 7).expect("write");
        assert_eq!(read_through(&p).expect("read"), 1_000_003);
    }
}
