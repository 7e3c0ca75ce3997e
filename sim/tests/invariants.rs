//! The federation simulator at a small size, with fixed seeds: every kind
//! of fault, and the invariants checked after each run.

use custodia_sim::{run, Config, Faults, Topology};

/// A few seconds of the test suite: enough seeds to cross every fault.
const SEEDS: std::ops::Range<u64> = 1..60;

#[test]
fn a_small_federation_keeps_its_invariants_under_every_fault() {
    let mut errors = 0u64;
    let mut entries = 0usize;
    let mut seen = std::collections::BTreeMap::new();
    for seed in SEEDS {
        let r = run(Config::small(seed));
        assert!(
            r.violations.is_empty(),
            "seed {seed} (reproduce: Config::small({seed})): {:#?}",
            r.violations
        );
        errors += r.session_errors.values().sum::<u64>();
        entries += r.entries;
        for (k, n) in r.faults_seen {
            *seen.entry(k).or_insert(0u64) += n;
        }
    }
    // Every kind of fault happened in some run.
    for fault in [
        "crash",
        "restore of an older backup",
        "store lost",
        "partition",
        "dropped connection",
        "peer unpinned",
        "member removed",
        "frame repeated or reordered",
        "equivocation proof stored",
        "intruder probe",
    ] {
        assert!(
            seen.get(fault).is_some_and(|n| *n > 0),
            "never: {fault} ({seen:?})"
        );
    }
    // The faults did happen: broken links ended sessions with errors, and
    // entries were written and delivered.
    assert!(
        errors > 0,
        "no session ended with an error: the faults did not bite"
    );
    assert!(entries > 100, "{entries} entries written");
}

#[test]
fn the_same_seed_gives_the_same_run() {
    let a = run(Config::small(7));
    let b = run(Config::small(7));
    assert_eq!(a.frames, b.frames);
    assert_eq!(a.bytes, b.bytes);
    assert_eq!(a.reach_all_ms, b.reach_all_ms);
    assert_eq!(a.session_errors, b.session_errors);
    let c = run(Config::small(8));
    assert_ne!((a.frames, a.bytes), (c.frames, c.bytes));
}

#[test]
fn a_session_that_serves_non_members_is_caught() {
    // The member check of the real session code, disabled on purpose:
    // the intruder asks for case 0 and gets it.
    let cfg = Config {
        session_hook: Some(|s| s.disable_member_check()),
        ..Config::small(3)
    };
    let r = run(cfg);
    assert!(
        r.violations
            .iter()
            .any(|v| v.contains("not a member") || v.contains("intruder")),
        "{:#?}",
        r.violations
    );
}

#[test]
fn liaison_desks_relay_to_agencies_they_connect() {
    let cfg = Config {
        agencies: 12,
        cases: vec![6, 5],
        topology: Topology::Liaisons { hubs: 3 },
        faults: Faults {
            disconnects: 3,
            crashes: 1,
            ..Faults::default()
        },
        ..Config::small(11)
    };
    let r = run(cfg);
    assert!(r.violations.is_empty(), "{:#?}", r.violations);
    // Agencies reach each other only through their desks.
    assert!(r.max_hops >= 2, "max hops {}", r.max_hops);
}
