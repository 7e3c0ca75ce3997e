//! The node's fuzz targets (`config`, `keyfile` in `protocol/fuzz`) in the
//! normal test suite, on stable Rust: every seed and every input a fuzzer
//! once crashed on (`tests/fuzz-regressions/<target>/`) gives a typed
//! result without a panic, and so do arbitrary bytes and structured
//! mutations of the seeds (property tests). Also writes the seed corpora
//! (`write_fuzz_seeds`, ignored).

mod fuzz_checks;

use std::path::{Path, PathBuf};

use custodia_protocol::Identity;
use proptest::prelude::*;
use proptest::sample::Index;

const MANIFEST: &str = env!("CARGO_MANIFEST_DIR");

fn corpus(target: &str) -> PathBuf {
    Path::new(MANIFEST)
        .join("../protocol/fuzz/corpus")
        .join(target)
}

fn files(dir: &Path) -> Vec<PathBuf> {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut out: Vec<PathBuf> = rd
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.is_file())
        .collect();
    out.sort();
    out
}

fn seeds(target: &str) -> Vec<Vec<u8>> {
    let s: Vec<Vec<u8>> = files(&corpus(target))
        .iter()
        .map(|f| std::fs::read(f).expect("readable seed"))
        .collect();
    assert!(!s.is_empty(), "no seeds for {target}");
    s
}

#[test]
fn every_seed_and_every_former_crash_gives_a_typed_result() {
    let dir = tempfile::tempdir().expect("tempdir");
    let key = dir.path().join("key.pem");
    for target in ["config", "keyfile"] {
        let crashes = files(
            &Path::new(MANIFEST)
                .join("tests/fuzz-regressions")
                .join(target),
        );
        for f in files(&corpus(target)).iter().chain(&crashes) {
            let data = std::fs::read(f).expect("readable");
            let r = std::panic::catch_unwind(|| match target {
                "config" => drop(fuzz_checks::config(&data)),
                _ => drop(fuzz_checks::keyfile(&data, &key)),
            });
            assert!(r.is_ok(), "{target}: {} panics", f.display());
        }
    }
    assert!(
        fuzz_checks::config(&std::fs::read(corpus("config").join("two-peers")).expect("seed"))
            .is_ok()
    );
}

/// A byte-level mutation of a seed.
fn mutate(mut data: Vec<u8>, other: &[u8], ms: &[(u8, Index, Index, u8)]) -> Vec<u8> {
    for (kind, a, b, byte) in ms {
        let len = data.len();
        match kind % 6 {
            0 if len > 0 => data[a.index(len)] ^= byte | 1,
            1 => data.truncate(a.index(len + 1)),
            2 => data.insert(a.index(len + 1), *byte),
            3 if len > 0 => {
                let at = a.index(len);
                let end = (at + usize::from(*byte % 16) + 1).min(len);
                data.drain(at..end);
            }
            4 => {
                data.truncate(a.index(len + 1));
                if !other.is_empty() {
                    data.extend_from_slice(&other[b.index(other.len())..]);
                }
            }
            5 => {
                // Insert TOML and PEM punctuation, where most of the
                // grammar is.
                const BITS: [&[u8]; 8] = [
                    b"\n",
                    b"\"",
                    b"=",
                    b"[[",
                    b"]",
                    b"'''",
                    b"\\u{10FFFF}",
                    b"-----",
                ];
                let at = a.index(len + 1);
                let bit = BITS[b.index(BITS.len())];
                data.splice(at..at, bit.iter().copied());
            }
            _ => {}
        }
    }
    data
}

fn inputs(target: &str) -> impl Strategy<Value = Vec<u8>> {
    let s = seeds(target);
    prop_oneof![
        1 => prop::collection::vec(any::<u8>(), 0..256),
        4 => (
            prop::sample::select(s.clone()),
            prop::sample::select(s),
            prop::collection::vec((any::<u8>(), any::<Index>(), any::<Index>(), any::<u8>()), 1..4),
        )
            .prop_map(|(a, b, ms)| mutate(a, &b, &ms)),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn config_never_panics(data in inputs("config")) {
        let _ = fuzz_checks::config(&data);
    }

    #[test]
    fn keyfile_never_panics(data in inputs("keyfile")) {
        let dir = tempfile::tempdir().expect("tempdir");
        let _ = fuzz_checks::keyfile(&data, &dir.path().join("key.pem"));
    }
}

/// Where seeds go: the committed corpora with CUSTODIA_WRITE_FUZZ_SEEDS=1
/// (to regenerate them), else a scratch folder (the generator still runs,
/// so a change that breaks it fails the suite).
fn write_seed(target: &str, name: &str, data: &[u8]) {
    let dir = if std::env::var_os("CUSTODIA_WRITE_FUZZ_SEEDS").is_some() {
        corpus(target)
    } else {
        std::env::temp_dir()
            .join(format!("custodia-node-seeds-{}", std::process::id()))
            .join(target)
    };
    assert!(!data.is_empty(), "seed {target}/{name} is empty");
    std::fs::create_dir_all(&dir).expect("mkdir");
    std::fs::write(dir.join(name), data).expect("write seed");
}

/// Writes the `config` and `keyfile` seed corpora:
/// `CUSTODIA_WRITE_FUZZ_SEEDS=1 cargo test -p custodia-node --test fuzz_regressions write_fuzz_seeds`.
#[test]
fn write_fuzz_seeds() {
    let bravo = Identity::from_seed([2; 32]).agency().to_hex();
    let charlie = Identity::from_seed([3; 32]).agency().to_hex();
    let minimal = "[agency]\nname = \"Alpha\"\ncountry = \"PH\"\nkey = \"identity.key\"\n\n[node]\nlisten = \"127.0.0.1:7400\"\ndata = \"store.sqlite\"\n";
    write_seed("config", "minimal", minimal.as_bytes());
    let two = format!(
        "# NBI node\n[agency]\nname = \"NBI Cybercrime Division\"\ncountry = \"PH\"\nkey = \"identity.key\"\n\n[node]\nlisten = \"[::1]:7400\"\ndata = \"store.sqlite\"\nwitness_interval_secs = 30\n\n[[peer]]\nname = \"bka\"\naddr = \"127.0.0.1:7401\"\nkey = \"{bravo}\"\ncountry = \"DE\"\n\n[[peer]]\nname = 'interpol'\naddr = \"127.0.0.1:7402\"\nkey = \"{charlie}\"\n"
    );
    write_seed("config", "two-peers", two.as_bytes());
    let inline = format!(
        "agency = {{ name = \"Alpha\", country = \"PH\", key = \"k\" }}\nnode = {{ listen = \"0.0.0.0:1\", data = \"d\" }}\npeer = [{{ name = \"b\", addr = \"10.0.0.1:7401\", key = \"{bravo}\" }}]\n"
    );
    write_seed("config", "inline-tables", inline.as_bytes());
    write_seed(
        "config",
        "bad-key",
        two.replace(&bravo, "not hex").as_bytes(),
    );

    let dir = tempfile::tempdir().expect("tempdir");
    let p = dir.path().join("v1.pem");
    custodia_node::write_key_file(&p, &Identity::from_seed([7; 32])).expect("write");
    write_seed("keyfile", "pkcs8-v1", &std::fs::read(&p).expect("read"));
    {
        use base64::Engine;
        use ed25519_dalek::pkcs8::EncodePrivateKey;
        let der = Identity::from_seed([8; 32])
            .signing_key()
            .to_pkcs8_der()
            .expect("der");
        let pem = format!(
            "-----BEGIN PRIVATE KEY-----\n{}\n-----END PRIVATE KEY-----\n",
            base64::engine::general_purpose::STANDARD.encode(der.as_bytes())
        );
        write_seed("keyfile", "pkcs8-v2", pem.as_bytes());
    }
    write_seed("keyfile", "not-a-key", b"hello\n");
    let p = dir.path().join("encrypted.pem");
    custodia_node::write_key_file_with(
        &p,
        &Identity::from_seed([9; 32]),
        Some(&custodia_node::Passphrase::from("fuzz".to_owned())),
    )
    .expect("write");
    write_seed(
        "keyfile",
        "pkcs8-encrypted",
        &std::fs::read(&p).expect("read"),
    );
}
