//! Micro-benchmarks of the protocol core: sign, verify, encode, decode,
//! validate. Run with `cargo bench -p custodia-protocol --bench core`.
//! These are for finding regressions and hot spots; the figures DESIGN.md
//! sets targets for are measured by `custodia-bench`.

#![allow(missing_docs)]

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use custodia_protocol::{
    cbor, verify, Body, CaseOpened, Entry, EntryId, Identity, MemberAdded, Note, Payload, Role,
    Tlp, Validator, FORMAT_VERSION,
};

const TIME: u64 = 1_795_000_000_000;

/// A case with `n` entries: the lead opens it, adds a second writer, and
/// both take turns writing notes that name the other's head.
fn case(n: usize) -> (Identity, Identity, Vec<Entry>) {
    let lead = Identity::from_seed([1; 32]);
    let other = Identity::from_seed([2; 32]);
    let genesis = Entry::sign(
        &lead,
        &Payload::genesis(
            lead.agency(),
            TIME,
            Tlp::Amber,
            CaseOpened {
                title: "Operation Lantern".into(),
                reference: "NBI-2026-0042".into(),
                jurisdiction: Some("PH".into()),
                name: "NBI Cybercrime Division".into(),
                country: "PH".into(),
            },
        ),
    );
    let case = genesis.id();
    let mut entries = vec![genesis];
    let mut heads: [Option<(u64, EntryId)>; 2] = [Some((0, case)), None];
    let ids = [&lead, &other];
    let mut write = |who: usize, body: Body, entries: &mut Vec<Entry>| {
        let (seq, prev) = match heads[who] {
            Some((s, id)) => (s + 1, Some(id)),
            None => (0, None),
        };
        let refs = heads[1 - who].map(|(_, id)| vec![id]).unwrap_or_default();
        let p = Payload {
            v: FORMAT_VERSION,
            keys: None,
            case: Some(case),
            author: ids[who].agency(),
            seq,
            prev,
            refs,
            time: TIME,
            tlp: Tlp::Amber,
            to: None,
            body,
        };
        let e = Entry::sign(ids[who], &p);
        heads[who] = Some((seq, e.id()));
        entries.push(e);
    };
    write(
        0,
        Body::MemberAdded(MemberAdded {
            agency: other.agency(),
            name: "BKA".into(),
            country: "DE".into(),
            role: Role::Investigator,
        }),
        &mut entries,
    );
    let mut i = 0;
    while entries.len() < n {
        write(
            i % 2,
            Body::Note(Note {
                text: format!("Observation {i}: device imaged, image hash verified, sealed."),
                item: None,
            }),
            &mut entries,
        );
        i += 1;
    }
    (lead, other, entries)
}

fn bench(c: &mut Criterion) {
    let (lead, _, entries) = case(202);
    let last = entries.last().cloned().expect("entries");
    let payload = last.payload().clone();
    let bytes = last.bytes().to_vec();
    let unverified = Entry::decode_unverified(&bytes).expect("decodes");
    let message = unverified.signed_message().to_vec();
    let signature = *unverified.signature();
    let author = unverified.author();

    let mut g = c.benchmark_group("entry");
    g.throughput(Throughput::Elements(1));
    g.bench_function("sign (encode + Ed25519 + id)", |b| {
        b.iter(|| Entry::sign(black_box(&lead), black_box(&payload)))
    });
    g.bench_function("verify (one signature, SPEC.md 3.3)", |b| {
        b.iter(|| verify(black_box(&author), black_box(&message), &signature))
    });
    g.bench_function("encode (payload to deterministic CBOR)", |b| {
        b.iter(|| cbor::to_vec(black_box(&payload)))
    });
    g.bench_function("decode (V1-V7, no signature)", |b| {
        b.iter(|| Entry::decode_unverified(black_box(&bytes)).map(|u| u.assume_verified()))
    });
    g.bench_function("decode + verify (V1-V8)", |b| {
        b.iter(|| Entry::decode(black_box(&bytes)))
    });
    // Validate: apply the next entry to a case of 200 validated entries.
    let (prefix, next) = entries.split_at(entries.len() - 1);
    let mut base = Validator::new();
    for e in prefix {
        base.apply(e, TIME).expect("valid");
    }
    let next = next[0].clone();
    g.bench_function("validate (Validator::apply, V9-V18)", |b| {
        b.iter_batched(
            || base.clone(),
            |mut v| {
                v.apply(black_box(&next), TIME).expect("valid");
                v
            },
            BatchSize::LargeInput,
        )
    });
    g.finish();
    // Many entries at once: decode each, verify the signatures in one
    // batch (Entry::decode_many); throughput is per entry.
    let all: Vec<Vec<u8>> = entries.iter().map(|e| e.bytes().to_vec()).collect();
    let mut many = c.benchmark_group("entries");
    many.throughput(Throughput::Elements(all.len() as u64));
    many.bench_function("decode + verify in one batch (Entry::decode_many)", |b| {
        b.iter(|| Entry::decode_many(black_box(&all)))
    });
    many.finish();

    let mut g = c.benchmark_group("case");
    g.throughput(Throughput::Elements(entries.len() as u64));
    g.sample_size(20);
    g.bench_function("validate 202 decoded entries from scratch", |b| {
        b.iter(|| {
            let mut v = Validator::new();
            for e in &entries {
                v.apply(e, TIME).expect("valid");
            }
            v
        })
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
