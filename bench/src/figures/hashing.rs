//! Evidence hashing: registering a generated file into a real store
//! (node::local registration, the code path of `custodia evidence add`)
//! versus coreutils `sha256sum` on the same file, both with the file in
//! the page cache.

use std::process::{Command, Stdio};

use anyhow::Context as _;
use custodia_node::EvidenceInfo;
use custodia_node::Wanted;
use custodia_protocol::Tlp;
use custodia_tests::Agency;

use super::Ctx;
use crate::gen;
use crate::measure::timed;
use crate::report::{Quantity, Row};
use crate::TARGET_SIZES;

/// Measures the hashing figures.
pub fn run(ctx: &mut Ctx) -> anyhow::Result<Vec<Row>> {
    let s = ctx.cfg.sizes.clone();
    let tmp = tempfile::tempdir()?;
    let file = tmp.path().join("evidence.bin");
    ctx.say(&format!("writing a {} MiB file", s.hash_bytes >> 20));
    gen::write_random_file(&file, s.hash_bytes, 0x5eed)?;
    gen::read_through(&file)?; // warm-up: both read from the page cache

    let a = Agency::new("hashing", "PH");
    let mut l = a.local();
    // The same file is registered again and again: each registration goes
    // into a case of its own (a case refuses a second item with the same
    // SHA-256), opened outside the timed section.
    let mut cases = Vec::with_capacity(2 * s.reps);
    for i in 0..2 * s.reps {
        cases.push(
            l.open_case(
                "Hashing",
                &format!("BENCH-HASH-{i}"),
                Some("PH"),
                Tlp::Amber,
            )?
            .id(),
        );
    }
    let files = custodia_node::evidence_files(std::slice::from_ref(&file))?;
    let plain = EvidenceInfo::default();
    let legacy = EvidenceInfo {
        also: Wanted {
            sha1: true,
            md5: true,
        },
        ..EvidenceInfo::default()
    };
    let (mut reference, mut custodia, mut both) = (Vec::new(), Vec::new(), Vec::new());
    for rep in 0..s.reps {
        let (out, t_ref) = timed(|| {
            Command::new("sha256sum")
                .arg(&file)
                .stdin(Stdio::null())
                .stderr(Stdio::null())
                .output()
        });
        let out = out.context("running sha256sum")?;
        anyhow::ensure!(out.status.success(), "sha256sum failed");
        let (case, case2) = (cases[2 * rep], cases[2 * rep + 1]);
        let (regs, t_c) = timed(|| l.register_evidence(&case, &files, &plain, &mut |_, _| {}));
        let regs = regs?;
        let (regs2, t_b) = timed(|| l.register_evidence(&case2, &files, &legacy, &mut |_, _| {}));
        let regs2 = regs2?;
        // The same digest as coreutils, and the legacy ones really computed.
        let want = String::from_utf8_lossy(&out.stdout)
            .split_whitespace()
            .next()
            .unwrap_or("")
            .to_string();
        let got = hex(&regs[0].item.digests.sha256);
        anyhow::ensure!(got == want, "sha256 differs: {got} vs sha256sum {want}");
        anyhow::ensure!(
            regs2[0].item.digests.md5.is_some() && regs2[0].item.digests.sha1.is_some(),
            "the legacy digests were not computed"
        );
        ctx.say(&format!(
            "rep {rep}: sha256sum {t_ref:.3} s, register {t_c:.3} s, register +md5+sha1 {t_b:.3} s"
        ));
        reference.push(t_ref);
        custodia.push(t_c);
        both.push(t_b);
    }
    let size_note = (s.hash_bytes != TARGET_SIZES.hash_bytes).then(|| {
        format!(
            "file of {} MiB (target stated at {} MiB)",
            s.hash_bytes >> 20,
            TARGET_SIZES.hash_bytes >> 20
        )
    });
    let ratio = crate::measure::Stat::ratio_of(&custodia, &reference);
    let ratio_both = crate::measure::Stat::ratio_of(&both, &reference);
    let mut notes = vec![format!(
        "`custodia evidence add` path: node::local::register_evidence into a real store (hashing + media type + one signed, fsynced entry); file in the page cache for both ({} MiB, {} cores)",
        s.hash_bytes >> 20,
        std::thread::available_parallelism().map_or(1, |n| n.get())
    )];
    notes.extend(size_note.clone());
    let mut notes_both = vec![
        "SHA-256 + SHA-1 + MD5 from one read (MD5 on a second thread); no target in DESIGN.md beyond \"from the same read\"".to_string(),
    ];
    notes_both.extend(size_note);
    Ok(vec![
        Row {
            name: "hashing".into(),
            figure: "evidence hashing: register 1 file (time)".into(),
            custodia: Quantity::of(&custodia, "s"),
            reference_label: "sha256sum".into(),
            reference: Some(Quantity::of(&reference, "s")),
            ratio: Some(ratio),
            target: "≤ 0.4× sha256sum".into(),
            met: Some(ratio.median <= 0.4),
            notes,
        },
        Row {
            name: "hashing_md5_sha1".into(),
            figure: "evidence hashing with --also md5,sha1 (time)".into(),
            custodia: Quantity::of(&both, "s"),
            reference_label: "sha256sum".into(),
            reference: Some(Quantity::of(&reference, "s")),
            ratio: Some(ratio_both),
            target: "one read (informational)".into(),
            met: None,
            notes: notes_both,
        },
    ])
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}
