//! The properties behind the fuzz targets, one function per target.
//!
//! Shared by three harnesses so they test exactly the same thing:
//! the cargo-fuzz targets in `protocol/fuzz` (which include this file by
//! path), the property tests in `tests/fuzz_props.rs`, and the regression
//! corpus runner in `tests/fuzz_regressions.rs`.
//!
//! Each function takes arbitrary bytes and returns `Ok` when the input was
//! accepted or `Err` with the typed error's message when it was refused.
//! Anything else — a panic inside the protocol crate, or a broken
//! invariant, asserted here — is a finding.

#![allow(dead_code, unreachable_pub)]

use custodia_protocol::bundle::{
    self, Bundle, BundleError, Report, StreamDecoder, Streamed, Summary, TrustList, Verifier,
};
use custodia_protocol::cbor;
use custodia_protocol::{
    protected_header, AgencyId, Applied, Body, Conflict, Entry, EntryId, EquivocationProof, Head,
    Identity, MemorySpill, Message, Payload, Validator, WithheldPosition, MAX_ENTRY_SIZE,
};
use sha2::{Digest, Sha256};

/// The receiver's clock of the `validate` target: one hour after the
/// vectors' T0, so every vector's entries are in the past.
pub const NOW: u64 = 1_795_000_000_000 + 3_600_000;

/// Labels of the test keys (SPEC.md Appendix A.2), in the order the
/// `validate` target's signing chunks index them.
pub const KEY_LABELS: [&str; 4] = ["alpha", "bravo", "charlie", "mallory"];

/// The test key of a label: seed = SHA-256("custodia test key " + label).
pub fn test_key(label: &str) -> Identity {
    let seed: [u8; 32] = Sha256::digest(format!("custodia test key {label}")).into();
    Identity::from_seed(seed)
}

fn bstr_head(len: usize, out: &mut Vec<u8>) {
    match len {
        0..=23 => out.push(0x40 | len as u8),
        24..=0xFF => out.extend_from_slice(&[0x58, len as u8]),
        0x100..=0xFFFF => {
            out.push(0x59);
            out.extend_from_slice(&(len as u16).to_be_bytes());
        }
        _ => {
            out.push(0x5A);
            out.extend_from_slice(&(len as u32).to_be_bytes());
        }
    }
}

fn bstr(b: &[u8], out: &mut Vec<u8>) {
    bstr_head(b.len(), out);
    out.extend_from_slice(b);
}

/// `entry_decode`: [`Entry::decode`] on arbitrary bytes.
///
/// On success the entry re-encodes from its typed parts (protected header
/// of the author, the payload encoded again, the signature) to exactly the
/// input: one meaning, one encoding. The same is checked after V1–V7 alone
/// ([`Entry::decode_unverified`]), so the property is exercised without a
/// valid signature too.
pub fn entry_decode(data: &[u8]) -> Result<(), String> {
    let id = EntryId::of(data);
    let full = Entry::decode(data);
    let unverified = match Entry::decode_unverified(data) {
        Ok(u) => u,
        Err(r) => {
            assert_eq!(r.entry, Some(id), "a rejection names the offered bytes");
            assert!((1..=7).contains(&r.rule()), "V1-V7 only: {r}");
            assert_eq!(full.as_ref().err(), Some(&r), "decode fails the same way");
            return Err(r.to_string());
        }
    };
    assert!(data.len() <= MAX_ENTRY_SIZE);
    let signature = *unverified.signature();
    let message = unverified.signed_message().to_vec();
    let entry = unverified.clone().assume_verified();
    let payload_bytes = cbor::to_vec(entry.payload());
    // The typed payload encodes back to the signed bytes.
    let protected = protected_header(&entry.author());
    assert_eq!(
        message,
        custodia_protocol::sig_structure(&protected, &payload_bytes),
        "the payload does not re-encode to the bytes that were signed"
    );
    // And the whole entry re-encodes to the input.
    let mut again = vec![0xD2, 0x84];
    bstr(&protected, &mut again);
    again.push(0xA0);
    bstr(&payload_bytes, &mut again);
    bstr(&signature, &mut again);
    assert_eq!(again, data, "the entry does not re-encode to its bytes");
    assert_eq!(entry.bytes(), data);
    assert_eq!(entry.id(), id);
    // The payload decodes alone, to the same value.
    assert_eq!(
        cbor::from_slice::<Payload>(&payload_bytes).as_ref(),
        Ok(entry.payload())
    );
    let _ = entry.visible_to(&entry.author());
    let _ = entry.case_id();
    match (full, unverified.verify()) {
        (Ok(a), Ok(b)) => {
            assert_eq!(a, b);
            assert_eq!(a.bytes(), data, "bytes() equals the input");
            Ok(())
        }
        (Err(a), Err(b)) => {
            assert_eq!(a, b);
            assert_eq!(a.rule(), 8);
            Err(a.to_string())
        }
        (a, b) => panic!("decode and decode_unverified+verify disagree: {a:?} / {b:?}"),
    }
}

/// One chunk of a `validate` input.
#[derive(Debug, Clone)]
pub enum Chunk {
    /// Entry bytes (decoded with [`Entry::decode`]).
    Raw(Vec<u8>),
    /// A payload (deterministic CBOR) to sign with test key `key`; the
    /// payload's author is set to that key. Lets the fuzzer build entries
    /// with valid signatures from mutated payloads.
    Sign(u8, Vec<u8>),
    /// Like `Sign`, but the harness first links the payload into the case
    /// so far: `case`, `prev` and every id the payload names (refs, witness
    /// heads, the transfer a receipt answers, the entry a handling change or
    /// retraction is about) are replaced by known ids, chosen by the first
    /// byte of the id the fuzzer wrote. Mutations then reach the rules
    /// after V9–V13 instead of breaking the hash links.
    Link(u8, Vec<u8>),
    /// A withheld marker.
    Withheld(WithheldPosition),
}

/// Marks a signing chunk.
pub const SIGN: u8 = b'S';
/// Marks a linking chunk.
pub const LINK: u8 = b'L';
/// Marks a withheld chunk (then author 32, seq 8 big-endian, id 32).
pub const WITHHELD: u8 = b'W';

/// Splits a `validate` input: a sequence of chunks, each a 2-byte
/// big-endian length and that many bytes (the last may be short). A chunk
/// of 73 bytes starting with `W` is a withheld marker; one starting with
/// `S` is a key index and a payload to sign, one starting with `L` the same
/// to link and sign; anything else is entry bytes.
pub fn chunks(mut data: &[u8]) -> Vec<Chunk> {
    let mut out = Vec::new();
    while data.len() >= 2 {
        let n = usize::from(u16::from_be_bytes([data[0], data[1]]));
        let rest = &data[2..];
        let (c, tail) = rest.split_at(n.min(rest.len()));
        data = tail;
        out.push(to_chunk(c));
    }
    out
}

fn to_chunk(c: &[u8]) -> Chunk {
    if c.len() == 73 && c[0] == WITHHELD {
        let mut author = [0u8; 32];
        author.copy_from_slice(&c[1..33]);
        let mut seq = [0u8; 8];
        seq.copy_from_slice(&c[33..41]);
        let mut id = [0u8; 32];
        id.copy_from_slice(&c[41..73]);
        return Chunk::Withheld(WithheldPosition {
            author: custodia_protocol::AgencyId(author),
            seq: u64::from_be_bytes(seq),
            id: EntryId(id),
        });
    }
    if c.len() >= 2 && c[0] == SIGN {
        return Chunk::Sign(c[1], c[2..].to_vec());
    }
    if c.len() >= 2 && c[0] == LINK {
        return Chunk::Link(c[1], c[2..].to_vec());
    }
    Chunk::Raw(c.to_vec())
}

/// Encodes chunks as a `validate` input (for seeds and property tests).
pub fn join(chunks: &[Chunk]) -> Vec<u8> {
    let mut out = Vec::new();
    for c in chunks {
        let body = match c {
            Chunk::Raw(b) => b.clone(),
            Chunk::Sign(k, p) | Chunk::Link(k, p) => {
                let mut b = vec![
                    if matches!(c, Chunk::Link(..)) {
                        LINK
                    } else {
                        SIGN
                    },
                    *k,
                ];
                b.extend_from_slice(p);
                b
            }
            Chunk::Withheld(w) => {
                let mut b = vec![WITHHELD];
                b.extend_from_slice(&w.author.0);
                b.extend_from_slice(&w.seq.to_be_bytes());
                b.extend_from_slice(&w.id.0);
                b
            }
        };
        let n = u16::try_from(body.len()).unwrap_or(u16::MAX);
        out.extend_from_slice(&n.to_be_bytes());
        out.extend_from_slice(&body[..usize::from(n)]);
    }
    out
}

/// What a validator said about one element: accepted (how), or refused
/// (rule, class and the id the refusal names).
pub type Verdict = Result<Applied, (u8, &'static str, Option<EntryId>)>;

/// `validate`: feeds the chunks of the input to a fresh
/// [`Validator::lean`] that keeps only its newest record in memory (the
/// others go to files, as a node's and a verifier's older records do:
/// [`Validator::with_spill`]) and a fresh [`Validator::new`] with the fixed clock
/// [`NOW`]; both must give the same verdict on every element, end in the
/// same state (apart from the equivocation proofs only the full validator
/// can build), and an accepted entry applied again is a duplicate.
/// Returns the verdicts.
pub fn validate(data: &[u8]) -> Vec<Verdict> {
    let mut lean = Validator::lean().with_spill(std::sync::Arc::new(MemorySpill), 1);
    let mut full = Validator::new();
    let mut verdicts = Vec::new();
    let keys: Vec<Identity> = KEY_LABELS.iter().map(|l| test_key(l)).collect();
    // Every id a validator came to know, in order (for linking chunks).
    let mut known: Vec<EntryId> = Vec::new();
    for chunk in chunks(data) {
        let (a, b) = match chunk {
            Chunk::Withheld(w) => {
                let r = (lean.apply_withheld(w), full.apply_withheld(w));
                if full.knows(&w.id) && !known.contains(&w.id) {
                    known.push(w.id);
                }
                r
            }
            Chunk::Raw(bytes) => match Entry::decode(&bytes) {
                Ok(e) => apply_both(&mut lean, &mut full, &e, &mut known),
                Err(_) => continue,
            },
            Chunk::Sign(k, ref payload) | Chunk::Link(k, ref payload) => {
                let Ok(mut p) = cbor::from_slice::<Payload>(payload) else {
                    continue;
                };
                let key = &keys[usize::from(k) % keys.len()];
                p.author = key.agency();
                if matches!(chunk, Chunk::Link(..)) {
                    link(&mut p, &full, &known);
                }
                let signed = Entry::sign(key, &p);
                match Entry::decode(signed.bytes()) {
                    Ok(e) => {
                        assert_eq!(e.payload(), &p, "a signed entry decodes to its payload");
                        assert_eq!(e, signed);
                        apply_both(&mut lean, &mut full, &e, &mut known)
                    }
                    Err(r) => {
                        // What a correct signer can still get wrong: size,
                        // version and the schema rules beyond the types.
                        assert!(
                            matches!(r.class(), "oversize" | "unsupported-version" | "schema"),
                            "a freshly signed entry was refused by {r}"
                        );
                        continue;
                    }
                }
            }
        };
        let a = verdict(a);
        assert_eq!(a, verdict(b), "lean and full validators disagree");
        verdicts.push(a);
    }
    assert_eq!(lean.case(), full.case());
    let strip = |v: &Validator| {
        let mut s = v.state().clone();
        for c in &mut s.conflicts {
            if let Conflict::Equivocation { proof, .. } = c {
                *proof = None;
            }
        }
        s
    };
    assert_eq!(strip(&lean), strip(&full), "lean and full states differ");
    assert_eq!(lean.failure(), None);
    verdicts
}

/// Links a payload into the case as `full` knows it (see [`Chunk::Link`]).
fn link(p: &mut Payload, full: &Validator, known: &[EntryId]) {
    // A known id stays (so a valid case replays unchanged); an unknown one
    // becomes a known one.
    let pick = |id: &EntryId| match known.len() {
        _ if full.knows(id) => *id,
        0 => *id,
        n => known[usize::from(id.0[0]) % n],
    };
    if p.case.is_some() {
        p.case = full.case().or(p.case);
    }
    if p.case.is_some() {
        // The author's next position, unless it names a known one (which
        // tests V10); its previous entry, unless it names a known one
        // (which tests V12).
        let next = full.next_seq(&p.author);
        if p.seq > next {
            p.seq = next;
        }
        if p.seq == 0 {
            p.prev = None;
        } else if p.prev.is_none_or(|prev| !full.knows(&prev)) {
            p.prev = full.at(&p.author, p.seq - 1);
        }
    }
    let author = p.author;
    let mut refs: Vec<EntryId> = p
        .refs
        .iter()
        .map(pick)
        .filter(|r| full.meta(r).is_none_or(|m| m.author != author))
        .collect();
    refs.sort();
    refs.dedup();
    p.refs = refs;
    match &mut p.body {
        Body::Custody(ev) => ev.transfer = ev.transfer.as_ref().map(pick),
        Body::HandlingChanged(h) => h.entry = pick(&h.entry),
        Body::Retracted(r) => r.entry = pick(&r.entry),
        Body::Witness(w) => {
            for h in &mut w.heads {
                let id = pick(&h.2);
                if let Some(m) = full.meta(&id) {
                    *h = Head(m.author, m.seq, id);
                }
            }
            w.heads.sort();
            w.heads.dedup_by_key(|h| h.0);
        }
        _ => {}
    }
}

fn apply_both(
    lean: &mut Validator,
    full: &mut Validator,
    e: &Entry,
    known: &mut Vec<EntryId>,
) -> (
    Result<Applied, custodia_protocol::Rejection>,
    Result<Applied, custodia_protocol::Rejection>,
) {
    let a = lean.apply(e, NOW);
    let b = full.apply(e, NOW);
    if matches!(a, Ok(Applied::New | Applied::Revealed)) {
        if !known.contains(&e.id()) {
            known.push(e.id());
        }
        assert_eq!(
            lean.apply(e, NOW),
            Ok(Applied::Duplicate),
            "lean: not idempotent"
        );
        assert_eq!(
            full.apply(e, NOW),
            Ok(Applied::Duplicate),
            "full: not idempotent"
        );
        assert!(lean.knows(&e.id()) && full.knows(&e.id()));
        assert_eq!(full.entry(&e.id()), Some(e));
        assert_eq!(lean.meta(&e.id()), full.meta(&e.id()));
        let author = e.author();
        assert_eq!(
            lean.may_see(&e.id(), &author),
            full.may_see(&e.id(), &author)
        );
        // Serving looks an entry up by position: the same answers.
        for who in [author, AgencyId([7; 32])] {
            assert_eq!(
                lean.served(&author, e.seq(), &e.id(), &who),
                (true, full.may_see(&e.id(), &who)),
                "served by position"
            );
        }
        assert_eq!(
            lean.served(&author, e.seq(), &EntryId([0; 32]), &author),
            (false, false),
            "another id at the position is not served"
        );
    }
    (a, b)
}

fn verdict(r: Result<Applied, custodia_protocol::Rejection>) -> Verdict {
    r.map_err(|e| {
        let _ = e.to_string();
        (e.rule(), e.class(), e.entry)
    })
}

/// `sync_message`: [`Message::frame_len`] on the first four bytes, then
/// [`Message::decode`] on the frame's body (the bytes the prefix announces,
/// or all that follow). A decoded message's frame decodes to the same
/// value, and its body is the input body (deterministic encoding).
pub fn sync_message(data: &[u8]) -> Result<(), String> {
    let Some((prefix, rest)) = data.split_first_chunk::<4>() else {
        return Err("shorter than a length prefix".into());
    };
    let body = match Message::frame_len(*prefix) {
        Ok(n) if n <= rest.len() => &rest[..n],
        Ok(_) => rest,
        Err(e) => {
            assert_eq!(e.code().as_u64(), 3);
            rest
        }
    };
    match Message::decode(body) {
        Ok(m) => {
            let frame = m.to_frame();
            let (p, again) = frame
                .split_first_chunk::<4>()
                .expect("a frame has a prefix");
            assert_eq!(Message::frame_len(*p), Ok(again.len()));
            assert_eq!(Message::decode(again).as_ref(), Ok(&m), "round trip");
            assert_eq!(again, body, "a message re-encodes to other bytes");
            Ok(())
        }
        Err(e) => {
            let _ = e.code();
            Err(e.to_string())
        }
    }
}

/// `equivocation_proof`: [`EquivocationProof::from_bytes`] then
/// [`EquivocationProof::check`]. A decoded proof re-encodes to the input;
/// a proof that checks holds two valid, different entries of one author,
/// case and position, in ascending id order.
pub fn equivocation_proof(data: &[u8]) -> Result<(), String> {
    let proof = EquivocationProof::from_bytes(data).map_err(|e| e.to_string())?;
    assert_eq!(proof.to_bytes(), data, "a proof re-encodes to other bytes");
    let eq = proof.check().map_err(|e| e.to_string())?;
    let a = Entry::decode(&proof.0).expect("entry 0 of a checked proof");
    let b = Entry::decode(&proof.1).expect("entry 1 of a checked proof");
    assert!(a.id() < b.id());
    assert_eq!((a.author(), b.author()), (eq.author, eq.author));
    assert_eq!((a.seq(), b.seq()), (eq.seq, eq.seq));
    assert_eq!((a.case_id(), b.case_id()), (eq.case, eq.case));
    assert_eq!(EquivocationProof::new(&b, &a), proof);
    Ok(())
}

/// `bundle`: [`Bundle::decode`], then [`bundle::verify`] without and with
/// a trust file naming the listed agencies. The decoder's counts match
/// what the iterators yield; the report covers every element; a trust
/// file changes what is confirmed, never the problems found.
pub fn bundle(data: &[u8]) -> Result<(), String> {
    // The streaming reader (what `custodia verify` uses), fed in chunks of
    // a size taken from the input, must give exactly the whole-file path's
    // error or report.
    let chunk = 1 + data.len() % 61;
    let whole = Bundle::decode(data).map(|b| bundle::verify(&b, None));
    assert_eq!(
        bundle_streamed(data, chunk),
        whole,
        "streamed in chunks of {chunk}"
    );
    let b = match Bundle::decode(data) {
        Ok(b) => b,
        Err(e) => {
            let _ = e.class();
            return Err(e.to_string());
        }
    };
    assert_eq!(b.elements().count(), b.len());
    assert!(!b.is_empty());
    assert_eq!(b.proofs().len(), b.proof_count());
    let report = bundle::verify(&b, None);
    assert_eq!(report.elements, b.len());
    assert!(report.disclosed + report.withheld.len() <= b.len());
    assert_eq!(report.is_valid(), report.problems.is_empty());
    let _ = report.verdict();
    for p in &report.problems {
        assert!(p.index.is_none_or(|i| i < b.len()));
        assert!(p.caused_by.is_none_or(|c| p.index.is_some_and(|i| c < i)));
        let _ = (p.rule.to_string(), p.is_consequence());
    }
    listing_is_bounded_and_adds_up(&report);
    for m in &report.members {
        let _ = report.name_of(&m.agency);
    }
    let trust: String = b
        .agencies()
        .iter()
        .map(|a| format!("{} {}\n", a.agency.to_hex(), a.name))
        .collect();
    if let Ok(t) = TrustList::parse(&trust) {
        let trusted = bundle::verify(&b, Some(&t));
        assert_eq!(
            trusted.problems, report.problems,
            "trust changed the problems"
        );
        assert!(trusted.trust_checked);
    }
    if report.is_valid() {
        Ok(())
    } else {
        Err(report.verdict())
    }
}

/// Every problem is counted; a report lists at most [`bundle::LISTED`]
/// problems at the source (and B1 to B4, found once each) and
/// [`bundle::LISTED`] consequences, each of a listed problem; the rest are
/// counted by rule and class. So a report's size is bounded however many
/// problems a crafted bundle holds.
pub fn listing_is_bounded_and_adds_up(report: &Report) {
    let roots: Vec<&bundle::Problem> = report
        .problems
        .iter()
        .filter(|p| !p.is_consequence())
        .collect();
    let consequences = report.problems.len() - roots.len();
    assert!(
        roots.len() <= bundle::LISTED + 4,
        "{} listed at the source",
        roots.len()
    );
    assert!(
        consequences <= bundle::LISTED,
        "{consequences} consequences listed"
    );
    let unlisted: usize = report.unlisted.iter().map(|u| u.count).sum();
    assert_eq!(unlisted, report.unlisted_count());
    assert_eq!(report.problems.len() + unlisted, report.problem_count);
    assert!(report.root_count >= roots.len() && report.root_count <= report.problem_count);
    assert!(report
        .unlisted
        .windows(2)
        .all(|w| (w[0].rule, w[0].class) < (w[1].rule, w[1].class)));
    assert!(report.unlisted.iter().all(|u| u.count > 0));
    if report.unlisted.is_empty() {
        assert_eq!(report.root_count, roots.len());
    }
    for p in report.problems.iter().filter(|p| p.is_consequence()) {
        let root = roots
            .iter()
            .find(|r| r.index == p.caused_by && matches!(r.rule, bundle::Rule::Entry(_)));
        assert!(
            root.is_some(),
            "a listed consequence of an unlisted problem: {p:?}"
        );
    }
    let counted: usize = roots.iter().map(|r| r.consequences).sum();
    assert!(counted >= consequences);
    assert!(counted <= report.problem_count - report.root_count);
}

/// `trust_list`: [`TrustList::parse`] on arbitrary text. A parsed list
/// written back out parses to the same list.
pub fn trust_list(data: &[u8]) -> Result<(), String> {
    let text = String::from_utf8_lossy(data);
    let t = TrustList::parse(&text).map_err(|e| e.to_string())?;
    assert!(t.len() <= text.lines().count());
    Ok(())
}

/// Feeds `data` to `d` in chunks, handing every element to `on`.
fn drive_stream(
    d: &mut StreamDecoder,
    data: &[u8],
    chunk: usize,
    mut on: impl FnMut(Streamed<'_>),
) -> Result<Summary, BundleError> {
    let mut chunks = data.chunks(chunk);
    let mut ended = false;
    loop {
        loop {
            match d.next_item()? {
                Some(Streamed::End(s)) => return Ok(s),
                Some(other) => on(other),
                None => {
                    assert!(!ended, "the stream decoder made no progress after finish");
                    break;
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
    }
}

/// Both passes and the replay, as `custodia verify` reads a file.
fn bundle_streamed(data: &[u8], chunk: usize) -> Result<Report, BundleError> {
    let first = drive_stream(&mut StreamDecoder::new(), data, chunk, |_| {})?;
    let mut v = Verifier::streamed(&first, None);
    let second = drive_stream(
        &mut StreamDecoder::second_pass(&first),
        data,
        chunk,
        |item| match item {
            Streamed::Element(e) => v.push(e),
            Streamed::Oversize { id, size } => v.push_checked(bundle::oversize(id, size)),
            Streamed::End(_) => {}
        },
    )?;
    Ok(v.finish_streamed(&second).expect("records in memory"))
}

/// The replica of the `session` target: alpha's node, holding one case
/// that alpha opened with bravo and charlie as members, and a note each.
/// Bravo (the peer) is pinned.
pub fn session_replica() -> (
    custodia_protocol::session::MemoryReplica,
    custodia_protocol::CaseId,
) {
    use custodia_protocol::session::MemoryReplica;
    use custodia_protocol::{CaseOpened, MemberAdded, Note, Role, Tlp};
    let (alpha, bravo, charlie) = (test_key("alpha"), test_key("bravo"), test_key("charlie"));
    let mut r = MemoryReplica::of(alpha.agency());
    r.pin(bravo.agency());
    let opened = Body::CaseOpened(CaseOpened {
        title: "Operation Lantern".into(),
        reference: "NBI-2026-0042".into(),
        jurisdiction: Some("PH".into()),
        name: "NBI Cybercrime Division".into(),
        country: "PH".into(),
    });
    let t = NOW - 600_000;
    let case = r
        .write(&alpha, None, opened, Tlp::Amber, t)
        .expect("genesis")
        .case_id();
    for (who, name) in [(&bravo, "BKA"), (&charlie, "Interpol")] {
        let body = Body::MemberAdded(MemberAdded {
            agency: who.agency(),
            name: name.into(),
            country: "DE".into(),
            role: Role::Investigator,
        });
        r.write(&alpha, Some(&case), body, Tlp::Amber, t + 1)
            .expect("member");
    }
    let note = Body::Note(Note {
        text: "seized phone imaged".into(),
        item: None,
    });
    r.write(&alpha, Some(&case), note, Tlp::Amber, t + 2)
        .expect("note");
    (r, case)
}

/// `session`: alpha's sync session with bravo (authenticated), after
/// bravo's hello, fed the input as a sequence of frames (4-byte length,
/// body). Each frame that decodes is handled; a frame that does not, or
/// an error, ends the session as a node would. Whatever the frames: no
/// panic, the session's send queue stays within its window, entries go
/// only to a member, the replica only grows by valid entries, and key logs
/// are held only of agencies alpha knows.
pub fn session(data: &[u8]) -> Result<(), String> {
    use custodia_protocol::session::{Replica, Session};
    use custodia_protocol::{Hello, SYNC_VERSIONS};
    let (mut replica, case) = session_replica();
    let (alpha, bravo) = (test_key("alpha").agency(), test_key("bravo").agency());
    let before = replica.len();
    let mut s = Session::new(alpha, bravo);
    let hello = Message::Hello(Hello {
        versions: SYNC_VERSIONS.to_vec(),
        agency: bravo,
    });
    let mut result = s
        .handle(hello, &mut replica, NOW)
        .map_err(|e| e.to_string());
    let mut rest = data;
    let mut sent_entries = 0usize;
    while result.is_ok() && !s.is_closed() {
        let Some((prefix, tail)) = rest.split_first_chunk::<4>() else {
            break;
        };
        let n = match Message::frame_len(*prefix) {
            Ok(n) => n.min(tail.len()),
            Err(e) => {
                result = Err(e.to_string());
                break;
            }
        };
        let (body, after) = tail.split_at(n);
        rest = after;
        result = Message::decode(body)
            .map_err(|e| e.to_string())
            .and_then(|m| s.handle(m, &mut replica, NOW).map_err(|e| e.to_string()));
        assert!(
            s.queued() <= 4 * custodia_protocol::MAX_UNACKED_BATCHES + 8,
            "the send queue grew to {}",
            s.queued()
        );
        while let Some(m) = s.poll_transmit() {
            if let Message::Entries(e) = m {
                assert_eq!(e.case, case, "entries of a case bravo was not offered");
                sent_entries += 1;
            }
        }
        while s.poll_event().is_some() {}
    }
    assert!(
        sent_entries <= 1 + data.len() / 4,
        "{sent_entries} batches sent"
    );
    assert!(replica.len() >= before, "the replica lost rows");
    let v = replica.case(&case).expect("the case is still held");
    assert!(v.is_member(&bravo));
    // Key logs are taken only of agencies the node knows (SPEC.md §9.15):
    // a peer cannot plant the log of a made-up agency, and every log held
    // checks.
    for log in replica.key_logs() {
        let a = log.agency();
        assert!(
            v.state().members.contains_key(&a) || replica.pinned(&a),
            "a key log of an agency alpha does not know: {}",
            a.fingerprint()
        );
    }
    result
}

/// `key_log`: the input is chunks (see [`chunks`]), each the bytes of a
/// key statement. The first that decodes starts a log (if it is an
/// inception); every later one that decodes is appended. A statement that
/// decodes re-encodes to its bytes and decodes to itself; a refused
/// append leaves the log exactly as it was; the log never holds more
/// statements than were offered; a recovery changes the root.
pub fn key_log(data: &[u8]) -> Result<(), String> {
    use custodia_protocol::keylog::{Appended, KeyLog, KeyStatement};
    let mut log: Option<KeyLog> = None;
    let mut offered = 0u64;
    let mut refused = 0usize;
    for c in chunks(data) {
        let bytes = match c {
            Chunk::Raw(b) | Chunk::Sign(_, b) | Chunk::Link(_, b) => b,
            Chunk::Withheld(_) => continue,
        };
        let s = match KeyStatement::decode(&bytes) {
            Ok(s) => s,
            Err(_) => {
                refused += 1;
                continue;
            }
        };
        assert_eq!(s.bytes(), bytes.as_slice(), "a statement is its bytes");
        assert_eq!(
            KeyStatement::decode(s.bytes()).as_ref(),
            Ok(&s),
            "a statement decodes to itself"
        );
        offered += 1;
        match &mut log {
            None => match KeyLog::from_inception(s) {
                Ok(l) => log = Some(l),
                Err(_) => refused += 1,
            },
            Some(l) => {
                let (len, head, root) = (l.len(), l.head(), l.current_root());
                match l.append(s) {
                    Ok(Appended::New) => assert_eq!(l.len(), len + 1),
                    Ok(Appended::Duplicate) => {
                        assert_eq!((l.len(), l.head()), (len, head))
                    }
                    Ok(Appended::Superseded) => {
                        assert_eq!(
                            (l.len(), l.head(), l.current_root()),
                            (len, head, root),
                            "a superseded statement changes nothing in the log"
                        );
                    }
                    Ok(Appended::Recovered { superseded }) => {
                        assert!(superseded >= 1);
                        assert_ne!(l.current_root(), root, "a recovery rotates the root");
                    }
                    Err(_) => {
                        refused += 1;
                        assert_eq!(
                            (l.len(), l.head(), l.current_root()),
                            (len, head, root),
                            "a refused statement changes nothing"
                        );
                    }
                }
            }
        }
    }
    let held = log.as_ref().map_or(0, KeyLog::len);
    assert!(held <= offered, "the log holds only what was offered");
    if refused > 0 {
        Err(format!("{refused} refused"))
    } else {
        Ok(())
    }
}
