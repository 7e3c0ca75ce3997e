//! The fuzz targets as property tests, on stable Rust in the normal suite:
//! arbitrary bytes, and structured mutations of the seed corpora (flip a
//! byte, truncate, extend, insert, delete, splice two seeds) never panic
//! and give typed errors. The properties themselves are in
//! `fuzz_checks/mod.rs`, shared with the cargo-fuzz targets.

mod fuzz_checks;
// The hostile bundles `custodia verify` is measured on (bench/RESULTS.md).
#[path = "../../cli/tests/common/hostile.rs"]
#[allow(dead_code)]
mod hostile;

use std::path::Path;

use fuzz_checks::Chunk;
use proptest::prelude::*;
use proptest::sample::Index;

/// Cases per property: enough to catch a regression, cheap enough for CI.
const CASES: u32 = 256;

fn seeds(target: &str) -> Vec<Vec<u8>> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fuzz/corpus")
        .join(target);
    let mut out: Vec<(std::path::PathBuf, Vec<u8>)> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .filter_map(|e| e.ok().map(|e| e.path()))
        .map(|p| {
            let d = std::fs::read(&p).expect("readable seed");
            (p, d)
        })
        .collect();
    out.sort();
    assert!(!out.is_empty(), "no seeds for {target}");
    out.into_iter().map(|(_, d)| d).collect()
}

/// One structured mutation.
#[derive(Debug, Clone)]
enum Mutation {
    /// XOR one byte with a non-zero mask.
    Flip(Index, u8),
    /// Keep a prefix.
    Truncate(Index),
    /// Append bytes.
    Extend(Vec<u8>),
    /// Insert bytes at a position.
    Insert(Index, Vec<u8>),
    /// Delete up to `n` bytes at a position.
    Delete(Index, usize),
    /// Overwrite bytes at a position with an interesting value.
    Overwrite(Index, Vec<u8>),
    /// Replace the tail from a position with the tail of another seed.
    Splice(Index, Index),
}

fn interesting() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        prop::collection::vec(any::<u8>(), 1..8),
        Just(vec![0xFF; 8]),
        Just(vec![0x00]),
        Just(vec![0x7F, 0xFF, 0xFF, 0xFF]),
        // CBOR heads claiming huge lengths and counts.
        Just(vec![0x5B, 0x7F, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF]),
        Just(vec![0x9B, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF]),
        Just(vec![0xBA, 0xFF, 0xFF, 0xFF, 0xFF]),
        Just(vec![0x9F]),
        Just(vec![0xF6]),
        Just(vec![0xD2]),
    ]
}

fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        3 => (any::<Index>(), 1..=255u8).prop_map(|(i, m)| Mutation::Flip(i, m)),
        1 => any::<Index>().prop_map(Mutation::Truncate),
        1 => prop::collection::vec(any::<u8>(), 1..64).prop_map(Mutation::Extend),
        1 => (any::<Index>(), interesting()).prop_map(|(i, b)| Mutation::Insert(i, b)),
        1 => (any::<Index>(), 1..16usize).prop_map(|(i, n)| Mutation::Delete(i, n)),
        2 => (any::<Index>(), interesting()).prop_map(|(i, b)| Mutation::Overwrite(i, b)),
        1 => (any::<Index>(), any::<Index>()).prop_map(|(a, b)| Mutation::Splice(a, b)),
    ]
}

fn mutate(mut data: Vec<u8>, other: &[u8], ms: &[Mutation]) -> Vec<u8> {
    for m in ms {
        match m {
            Mutation::Flip(i, mask) if !data.is_empty() => {
                let i = i.index(data.len());
                data[i] ^= mask;
            }
            Mutation::Truncate(i) => data.truncate(i.index(data.len() + 1)),
            Mutation::Extend(b) => data.extend_from_slice(b),
            Mutation::Insert(i, b) => {
                let at = i.index(data.len() + 1);
                data.splice(at..at, b.iter().copied());
            }
            Mutation::Delete(i, n) if !data.is_empty() => {
                let at = i.index(data.len());
                let end = (at + n).min(data.len());
                data.drain(at..end);
            }
            Mutation::Overwrite(i, b) if !data.is_empty() => {
                let at = i.index(data.len());
                for (d, s) in data[at..].iter_mut().zip(b) {
                    *d = *s;
                }
            }
            Mutation::Splice(a, b) => {
                data.truncate(a.index(data.len() + 1));
                if !other.is_empty() {
                    data.extend_from_slice(&other[b.index(other.len())..]);
                }
            }
            _ => {}
        }
    }
    data
}

/// Arbitrary bytes, or a seed with one to four mutations (sometimes
/// spliced with another seed).
fn inputs(target: &str) -> impl Strategy<Value = Vec<u8>> {
    let s = seeds(target);
    prop_oneof![
        1 => prop::collection::vec(any::<u8>(), 0..512),
        4 => (
            prop::sample::select(s.clone()),
            prop::sample::select(s),
            prop::collection::vec(mutation(), 1..4),
        )
            .prop_map(|(a, b, ms)| mutate(a, &b, &ms)),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(CASES))]

    #[test]
    fn entry_decode_never_panics(data in inputs("entry_decode")) {
        let _ = fuzz_checks::entry_decode(&data);
    }

    #[test]
    fn validate_never_panics_and_lean_agrees(data in inputs("validate")) {
        let _ = fuzz_checks::validate(&data);
    }

    /// Structured: the chunks of a vector in any order, some repeated or
    /// dropped, and a signing chunk's payload edited.
    #[test]
    fn validate_any_order_lean_agrees(
        seed in prop::sample::select(seeds("validate")),
        order in prop::collection::vec(any::<Index>(), 0..12),
        edit in proptest::option::of((any::<Index>(), any::<Index>(), 1..=255u8)),
    ) {
        let all = fuzz_checks::chunks(&seed);
        prop_assume!(!all.is_empty());
        let mut picked: Vec<Chunk> = order.iter().map(|i| all[i.index(all.len())].clone()).collect();
        if let Some((which, at, mask)) = edit {
            if !picked.is_empty() {
                let n = which.index(picked.len());
                if let Chunk::Sign(_, payload) | Chunk::Link(_, payload) = &mut picked[n] {
                    if !payload.is_empty() {
                        let i = at.index(payload.len());
                        payload[i] ^= mask;
                    }
                }
            }
        }
        let _ = fuzz_checks::validate(&fuzz_checks::join(&picked));
    }

    #[test]
    fn sync_message_never_panics(data in inputs("sync_message")) {
        let _ = fuzz_checks::sync_message(&data);
    }

    #[test]
    fn session_never_panics(data in inputs("session")) {
        let _ = fuzz_checks::session(&data);
    }

    #[test]
    fn equivocation_proof_never_panics(data in inputs("equivocation_proof")) {
        let _ = fuzz_checks::equivocation_proof(&data);
    }

    #[test]
    fn bundle_never_panics(data in inputs("bundle")) {
        let _ = fuzz_checks::bundle(&data);
    }

    #[test]
    fn trust_list_never_panics(data in inputs("trust_list")) {
        let _ = fuzz_checks::trust_list(&data);
    }

    #[test]
    fn key_log_never_panics(data in inputs("key_log")) {
        let _ = fuzz_checks::key_log(&data);
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(12))]

    /// The hostile shapes at any size up to past the listing limit: the
    /// streamed and whole-file reports agree, every problem is counted,
    /// and what is listed stays within the limit (`fuzz_checks::bundle`).
    #[test]
    fn hostile_shapes_are_counted_and_listed_within_bounds(
        shape in 0..hostile::SHAPES.len(),
        n in 0..2_400usize,
    ) {
        let shape = hostile::SHAPES[shape];
        let bytes = hostile::bundle(shape, n).expect("a shape");
        let _ = fuzz_checks::bundle(&bytes);
        let b = custodia_protocol::bundle::Bundle::decode(&bytes).expect("well-formed");
        let report = custodia_protocol::bundle::verify(&b, None);
        let want = match shape {
            "garbage" | "distinct" => n,
            "same-id" => n.saturating_sub(1),
            "consequences" => n + 1,
            _ => 0,
        };
        prop_assert_eq!(report.problem_count, want, "{} {}", shape, n);
        prop_assert!(report.problems.len() <= 2 * custodia_protocol::bundle::LISTED);
    }
}

#[test]
fn the_valid_seeds_are_accepted() {
    // The seeds exercise the success paths, not only the refusals.
    let corpus = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/corpus");
    for name in [
        "genesis-only",
        "valid-whole-case",
        "valid-selective-one-item",
    ] {
        let b = std::fs::read(corpus.join("bundle").join(name)).expect("seed");
        assert_eq!(fuzz_checks::bundle(&b), Ok(()), "{name}");
    }
    for s in seeds("sync_message") {
        assert_eq!(fuzz_checks::sync_message(&s), Ok(()));
    }
    for s in seeds("session") {
        assert_eq!(fuzz_checks::session(&s), Ok(()));
    }
    for s in seeds("key_log") {
        assert_eq!(
            fuzz_checks::key_log(&s),
            Ok(()),
            "every statement of a key_log seed is taken"
        );
    }
    let ok = seeds("equivocation_proof")
        .iter()
        .filter(|s| fuzz_checks::equivocation_proof(s).is_ok())
        .count();
    assert!(ok >= 2);
    let accepted = seeds("validate")
        .iter()
        .map(|s| {
            fuzz_checks::validate(s)
                .iter()
                .filter(|v| v.is_ok())
                .count()
        })
        .sum::<usize>();
    assert!(accepted > 50, "{accepted}");
}
