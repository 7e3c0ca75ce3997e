//! The verification report as text for a terminal (`custodia verify`):
//! the verdict first, then the case, the members, every item's custody
//! timeline, conflicts, withheld positions and problems, and the verdict
//! again as the last line, so that nothing printed before it can hide it.
//!
//! Every string from the bundle (names, titles, labels, descriptions,
//! custody fields) is another agency's text: it is shown through
//! [`safe`], and every line once more through the output's sanitizer, so
//! it can neither act on the terminal nor forge a line of the report.
//!
//! The rendering is linear in the report: names, item labels and entry
//! positions are looked up in maps built once ([`Index`]), and each
//! problem's consequences are grouped once, not searched for per problem.
//! The report itself lists a bounded number of problems
//! ([`custodia_protocol::bundle::LISTED`]); the others are counted here
//! by rule and class.

use std::io::Write;

use custodia_protocol::bundle::{ItemReport, Problem, Report};
use custodia_protocol::AgencyId;

use super::explain::{
    at, describe_event, describe_key_statement, grouped, key_logs_statement, keys_statement,
    refused, signed_name, trust_word, Index,
};
use super::Source;
use crate::output::iso_time;
use crate::untrusted::{safe, safe_lines};

/// `s` escaped for a terminal, owned.
fn t(s: &str) -> String {
    safe(s).into_owned()
}

/// Writes lines, each through the output's sanitizer; after the first
/// failure (a closed pipe) it writes nothing more and keeps the error.
pub(crate) struct Lines<W: Write> {
    w: W,
    failed: Option<std::io::Error>,
}

impl<W: Write> Lines<W> {
    pub(crate) fn new(w: W) -> Self {
        Lines { w, failed: None }
    }

    pub(crate) fn line(&mut self, s: &str) {
        if self.failed.is_some() {
            return;
        }
        let r = self
            .w
            .write_all(safe_lines(s).as_bytes())
            .and_then(|()| self.w.write_all(b"\n"));
        if let Err(e) = r {
            self.failed = Some(e);
        }
    }

    /// Flushes; the first error met, if any.
    pub(crate) fn finish(mut self) -> std::io::Result<()> {
        match self.failed.take() {
            Some(e) => Err(e),
            None => self.w.flush(),
        }
    }
}

/// The whole text report, ending with `last` (e.g. where the HTML report
/// went) and then the verdict again.
pub(crate) fn text<W: Write>(r: &Report, file: &Source, last: Option<&str>, out: &mut Lines<W>) {
    let ix = Index::new(r);
    let name = |a: &AgencyId| t(&ix.name(a));
    // Gives the line back: a caller may reuse its buffer.
    let mut line = |s: String| {
        out.line(&s);
        s
    };
    line(r.verdict());
    if let Some(p) = r.problems.first() {
        line(format!(
            "First problem: {} {} {}: {}",
            at(p.index),
            p.rule,
            p.class,
            t(&p.sentence)
        ));
    }
    if !r.conflicts.is_empty() {
        line(format!(
            "The record shows {} conflict(s) between agencies: see Conflicts below.",
            r.conflicts.len()
        ));
    }
    line(String::new());
    let field = |k: &str, v: String| format!("{k:<12}{v}");
    line(field("File", t(&file.name)));
    line(field("SHA-256", hex::encode(file.sha256)));
    line(field("Size", format!("{} bytes", file.size)));
    line(field("Verifier", file.verifier()));
    line(field(
        "Case",
        format!(
            "{} ({}){}{}",
            t(&r.title),
            t(&r.reference),
            r.jurisdiction
                .as_ref()
                .map_or_else(String::new, |j| format!(", jurisdiction {}", t(j))),
            r.tlp.map_or_else(String::new, |tlp| format!(", {tlp}"))
        ),
    ));
    line(field("Case id", r.case.to_hex()));
    if let Some((time, by)) = &r.opened {
        line(field(
            "Opened",
            format!("{} by {}", iso_time(*time), name(by)),
        ));
    }
    line(field(
        "Exported",
        format!(
            "{} by {} ({}), key {}",
            iso_time(r.exported_at),
            name(&r.exporter),
            r.exporter.fingerprint(),
            trust_word(&r.exporter_trust, &t)
        ),
    ));
    line(field(
        "Signature",
        if r.signature_valid {
            "the exporter's signature over the bundle verifies".into()
        } else {
            "the exporter's signature over the bundle DOES NOT verify".into()
        },
    ));
    line(field(
        "Contents",
        format!(
            "{} positions: {} entries verified, {} disclosed as withheld{}, {} equivocation proof(s) checked",
            r.elements,
            r.disclosed,
            r.withheld.len(),
            refused(r),
            r.conflicts.iter().filter(|c| c.kind == "equivocation").count()
        ),
    ));
    if let Some(items) = &r.selective {
        let labels: Vec<String> = items.iter().map(|i| t(&ix.item_label(i))).collect();
        line(field(
            "Selective",
            format!(
                "this bundle discloses only what establishes the custody of {}; everything else is withheld",
                labels.join(", ")
            ),
        ));
    }
    line(String::new());
    line(wrap(&keys_statement(r, &t), 0));
    line(String::new());

    line(format!("Members ({})", r.members.len()));
    let w = r
        .members
        .iter()
        .map(|m| safe(&m.name).chars().count())
        .max()
        .unwrap_or(4)
        .max(4);
    line(format!(
        "  {:<w$}  {:<7}  {:<12}  {:<24}  {:>7}  {:>8}  KEY",
        "NAME", "COUNTRY", "ROLE", "FINGERPRINT", "ENTRIES", "WITHHELD"
    ));
    for m in &r.members {
        let mut status = trust_word(&m.trust, &t);
        if m.removed_by.is_some() {
            status.push_str(&format!("; removed by {}", at(m.removed_index)));
        }
        if !m.after_removal.is_empty() {
            status.push_str(&format!(
                "; {} entries concurrent with its removal",
                m.after_removal.len()
            ));
        }
        line(format!(
            "  {:<w$}  {:<7}  {:<12}  {:<24}  {:>7}  {:>8}  {status}",
            t(&m.name),
            t(&m.country),
            m.role.as_str(),
            m.fingerprint,
            m.disclosed,
            m.withheld
        ));
    }
    line(String::new());
    let late: Vec<(&str, &custodia_protocol::EntryId, Option<usize>)> = r
        .members
        .iter()
        .flat_map(|m| {
            m.after_removal
                .iter()
                .map(move |(id, i)| (m.name.as_str(), id, *i))
        })
        .collect();
    if !late.is_empty() {
        line(format!("Written after removal ({})", late.len()));
        for (name, id, i) in late {
            line(format!(
                "  {} wrote entry {} {} after it was removed from the case, without the removal in its causal past: it did not know of it, or ignored it",
                t(name),
                id.short(),
                at(i)
            ));
        }
        line(String::new());
    }

    line(format!("Items ({})", r.items.len()));
    for i in &r.items {
        item_text(&ix, i, &mut line);
    }
    if r.items.is_empty() {
        line("  none registered".into());
    }
    line(String::new());

    line(format!("Conflicts ({})", r.conflicts.len()));
    for c in &r.conflicts {
        let ids: Vec<String> = c
            .entries
            .iter()
            .map(|(id, i)| format!("{} {}", at(*i), id.short()))
            .collect();
        line(format!(
            "  {}: {}",
            c.kind,
            wrap(&t(&c.sentence), 4).trim_start()
        ));
        if !ids.is_empty() {
            line(format!("    entries: {}", ids.join(", ")));
        }
        // An equivocation's two versions, one under the other.
        for (n, v) in c.versions.iter().enumerate() {
            line(format!(
                "    version {}: {} {} at {}, TLP:{}{}",
                n + 1,
                at(v.index),
                v.entry.short(),
                iso_time(v.time),
                v.tlp.as_str().to_uppercase(),
                if v.in_record {
                    " (the record here follows it)"
                } else {
                    ""
                }
            ));
            line(format!(
                "      says: {}",
                wrap(&t(&v.says), 12).trim_start()
            ));
        }
    }
    if r.conflicts.is_empty() {
        line("  none".into());
    }
    line(String::new());

    line(format!("Notes ({})", r.notes.len()));
    // A bundle may hold millions of notes: each is written through two
    // buffers kept from one note to the next.
    let (mut note, mut wrapped) = (String::new(), String::new());
    for n in r.notes.iter() {
        note.clear();
        note_line(&ix, &n, &mut note);
        wrapped.clear();
        wrap_into(&mut wrapped, &note, 2, 4);
        wrapped = line(wrapped);
    }
    if r.notes.is_empty() {
        line("  none".into());
    }
    line(String::new());

    line(format!(
        "Withheld positions ({}): disclosed as withheld, not missing",
        r.withheld.len()
    ));
    for w in &r.withheld {
        line(format!(
            "  {:<6} {} #{}  {}{}",
            at(Some(w.index)),
            name(&w.author),
            w.seq,
            w.id,
            if w.corroborated {
                ""
            } else {
                "  (not corroborated by a signed entry)"
            }
        ));
    }
    if r.withheld.is_empty() {
        line("  none".into());
    }
    line(String::new());

    line(format!("Key histories ({})", r.key_logs.len()));
    line(wrap(key_logs_statement(r), 2));
    for log in &r.key_logs {
        line(format!(
            "  {}  {}",
            name(&log.agency),
            log.agency.fingerprint()
        ));
        if let Some(n) = signed_name(log, &t) {
            line(wrap(&format!("signed name: {n}"), 4));
        }
        line(format!("    root in force: {}", log.root));
        let statement = |s: &custodia_protocol::bundle::KeyStatementReport| {
            format!(
                "    #{:<3} {}  {}",
                s.seq,
                iso_time(s.time),
                wrap(&describe_key_statement(&s.statement, &t), 8).trim_start()
            )
        };
        for s in &log.statements {
            line(statement(s));
        }
        if !log.superseded.is_empty() {
            line(wrap(
                &format!(
                    "SUPERSEDED by a recovery ({}): void, signed by a root the agency took back:",
                    log.superseded.len()
                ),
                4,
            ));
            for s in &log.superseded {
                line(statement(s));
            }
        }
    }
    line(String::new());

    line(format!("Problems ({})", r.problem_count));
    for p in r.problems.iter().filter(|p| !p.is_consequence()) {
        problem_text(&ix, p, &mut line);
    }
    if r.unlisted_count() > 0 {
        line(wrap(
            &format!(
                "{} more problem(s) are counted but not listed one by one (a report lists the first {} at the source and the first {} consequences):",
                r.unlisted_count(),
                custodia_protocol::bundle::LISTED,
                custodia_protocol::bundle::LISTED
            ),
            2,
        ));
        for u in &r.unlisted {
            line(format!("    {:>9}  {} {}", u.count, u.rule, u.class));
        }
    }
    if r.is_valid() {
        line("  none".into());
    }
    line(String::new());
    line("Times are each signing agency's own clock; the order of the record is its chain of signed links.".into());
    if let Some(last) = last {
        line(String::new());
        line(last.to_owned());
    }
    // The verdict again, last: nothing printed above can hide it.
    line(String::new());
    line(r.verdict());
}

/// One note, appended to `out`: where, when, who, about what, and its
/// text, each made safe for the output.
pub(crate) fn note_line(
    ix: &Index<'_>,
    n: &custodia_protocol::bundle::NoteReport,
    out: &mut String,
) {
    out.push_str(&at(n.index));
    out.push(' ');
    out.push_str(&iso_time(n.time));
    out.push_str("  ");
    out.push_str(&safe(&ix.who(&n.author, n.signer)));
    if let Some(i) = n.item {
        out.push_str(" on item ");
        out.push_str(&safe(&ix.item_label(&i)));
    }
    out.push_str(": ");
    out.push_str(&safe(&n.text));
    if let Some(why) = &n.retracted {
        out.push_str(" (RETRACTED by its author: ");
        out.push_str(&safe(why));
        out.push(')');
    }
}

fn item_text(ix: &Index<'_>, i: &ItemReport, line: &mut impl FnMut(String) -> String) {
    line(String::new());
    line(format!(
        "  {}  {}, {} bytes{}",
        t(&ix.item_label(&i.id)),
        t(&i.media_type),
        grouped(i.size),
        if i.incomplete {
            "  (INCOMPLETE: part of its history was withheld)"
        } else {
            ""
        }
    ));
    let kv = |k: &str, v: String| format!("    {k:<12} {v}");
    if let Some(d) = &i.description {
        line(kv("Description", t(d)));
    }
    line(kv("SHA-256", hex::encode(i.digests.sha256)));
    if let Some(h) = i.digests.sha1 {
        line(kv("SHA-1", hex::encode(h)));
    }
    if let Some(h) = i.digests.md5 {
        line(kv("MD5", hex::encode(h)));
    }
    let a = &i.acquired;
    let mut acq = format!("{} by {}", iso_time(a.at), t(&a.by));
    for (label, v) in [("at", &a.place), ("method", &a.method), ("tool", &a.tool)] {
        if let Some(v) = v {
            acq.push_str(&format!(", {label} {}", t(v)));
        }
    }
    line(kv("Acquired", acq));
    if let Some(a) = &i.authority {
        line(kv("Authority", t(a)));
    }
    if let Some(d) = &i.derived_from {
        line(kv("Derived from", t(&ix.item_label(d))));
    }
    if !i.copies.is_empty() {
        let c: Vec<String> = i.copies.iter().map(|c| t(&ix.item_label(c))).collect();
        line(kv("Copies", c.join(", ")));
    }
    let state = if i.destroyed {
        "destroyed".to_owned()
    } else if let Some(tr) = &i.in_transit {
        format!(
            "{} (in transit: transfer {} awaits its receipt)",
            t(&ix.name(&i.holder)),
            at(ix.position(tr))
        )
    } else {
        t(&ix.name(&i.holder))
    };
    line(kv("Holder", format!("{state} at the end of the record")));
    line("    Custody timeline".into());
    let w = i
        .timeline
        .iter()
        .map(|e| safe(&ix.who(&e.author, e.signer)).chars().count())
        .max()
        .unwrap_or(0);
    for e in &i.timeline {
        line(format!(
            "      {:<6} {}  {:<w$}  {:<11}  {}",
            at(e.index),
            iso_time(e.time),
            t(&ix.who(&e.author, e.signer)),
            t(&e.action),
            describe_event(ix, e, &t)
        ));
    }
}

fn problem_text(ix: &Index<'_>, p: &Problem, line: &mut impl FnMut(String) -> String) {
    let who = match (&p.author_name, &p.author) {
        (Some(n), Some(a)) => format!(" by {} ({})", t(n), a.fingerprint()),
        (None, Some(a)) => format!(" by {}", a.fingerprint()),
        _ => String::new(),
    };
    let seq = p.seq.map_or_else(String::new, |s| format!(" #{s}"));
    let entry = p
        .entry
        .map_or_else(String::new, |e| format!(" entry {}", e.short()));
    let proof = p.proof.map_or_else(String::new, |k| format!(" proof {k}"));
    line(format!(
        "  {} {} {}{entry}{proof}{who}{seq}",
        at(p.index),
        p.rule,
        p.class
    ));
    line(wrap(&t(&p.sentence), 4));
    line(format!("    detail: {}", t(&p.detail)));
    if p.consequences > 0 {
        let listed = ix.consequences(p.index);
        let mut list: Vec<String> = listed
            .iter()
            .map(|c| format!("{} {}", at(c.index), c.rule))
            .collect();
        if p.consequences > listed.len() {
            list.push(format!(
                "and {} more not listed",
                p.consequences - listed.len()
            ));
        }
        line(wrap(
            &format!(
                "{} later element(s) depend on it and are refused with it: {}",
                p.consequences,
                list.join(", ")
            ),
            4,
        ));
    }
}

/// The width text is wrapped at.
const WIDTH: usize = 96;

/// Whether `s` is ASCII words each followed by one space but the last:
/// what `split_whitespace` would join again into `s` itself.
fn single_spaced(s: &str) -> bool {
    let b = s.as_bytes();
    b.first() != Some(&b' ')
        && b.last() != Some(&b' ')
        && b.iter()
            .all(|&c| c.is_ascii() && (c == b' ' || !c.is_ascii_whitespace() && c != 0x0B))
        && !s.contains("  ")
}

/// Wraps text at 96 columns with `indent` spaces.
pub(crate) fn wrap(s: &str, indent: usize) -> String {
    let mut out = String::new();
    wrap_into(&mut out, s, indent, indent);
    out
}

/// Appends `s` wrapped at 96 columns, its words joined by one space: the
/// lines after the first start with `indent` spaces; the first starts
/// with `first` spaces but breaks as if it had `indent`.
fn wrap_into(out: &mut String, s: &str, first: usize, indent: usize) {
    out.reserve(s.len() + first + (s.len() / 64 + 1) * (indent + 1));
    if indent < WIDTH && single_spaced(s) {
        wrap_lines(out, s, first, indent)
    } else {
        wrap_words(out, s, first, indent)
    }
}

/// `n` spaces.
fn pad(out: &mut String, n: usize) {
    const SPACES: &str = "                                                                ";
    for _ in 0..n / SPACES.len() {
        out.push_str(SPACES);
    }
    out.push_str(&SPACES[..n % SPACES.len()]);
}

/// [`wrap_into`] a word at a time: any text.
fn wrap_words(out: &mut String, s: &str, first: usize, indent: usize) {
    let mut col = 0;
    let mut first_line = true;
    for word in s.split_whitespace() {
        if col > 0 && col + 1 + word.len() > WIDTH {
            out.push('\n');
            col = 0;
        }
        if col == 0 {
            pad(out, if first_line { first } else { indent });
            first_line = false;
            col = indent;
        } else {
            out.push(' ');
            col += 1;
        }
        out.push_str(word);
        col += word.len();
    }
}

/// [`wrap_words`]' lines, found a line at a time rather than a word at a
/// time (a large report wraps millions of notes), for [`single_spaced`]
/// text and `indent` below the width.
fn wrap_lines(out: &mut String, s: &str, first: usize, indent: usize) {
    let room = WIDTH - indent;
    let mut rest = s;
    let mut first_line = true;
    while !rest.is_empty() {
        let (line, next) = if rest.len() <= room {
            (rest, "")
        } else if rest.as_bytes()[room] == b' ' {
            (&rest[..room], &rest[room + 1..])
        } else {
            // The last space that leaves the line within the width, or
            // else the first word alone however long.
            match rest[..room].rfind(' ').or_else(|| rest.find(' ')) {
                Some(k) => (&rest[..k], &rest[k + 1..]),
                None => (rest, ""),
            }
        };
        if !first_line {
            out.push('\n');
        }
        pad(out, if first_line { first } else { indent });
        out.push_str(line);
        first_line = false;
        rest = next;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Words of 1 to 120 letters from a fixed sequence.
    fn words(seed: u64, n: usize) -> Vec<String> {
        let mut x = seed;
        (0..n)
            .map(|_| {
                x = x
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                let len = match (x >> 33) % 10 {
                    0 => 1 + (x >> 40) as usize % 120,
                    _ => 1 + (x >> 40) as usize % 12,
                };
                "w".repeat(len)
            })
            .collect()
    }

    #[test]
    fn lines_at_a_time_are_the_word_at_a_time_lines() {
        for seed in 0..400 {
            let text = words(seed, (seed % 60) as usize).join(" ");
            assert!(single_spaced(&text));
            for (first, indent) in [(0, 0), (2, 4), (4, 4), (0, 12), (12, 12), (2, 95)] {
                let (mut a, mut b) = (String::new(), String::new());
                wrap_lines(&mut a, &text, first, indent);
                wrap_words(&mut b, &text, first, indent);
                assert_eq!(a, b, "seed {seed}, first {first}, indent {indent}");
            }
        }
        // Lines that end exactly at the width, and one word over it.
        for len in 90..100 {
            let text = format!("{} {} b", "a".repeat(len - 2), "c");
            let (mut a, mut b) = (String::new(), String::new());
            wrap_lines(&mut a, &text, 4, 4);
            wrap_words(&mut b, &text, 4, 4);
            assert_eq!(a, b, "{len}");
        }
    }

    #[test]
    fn only_single_spaced_ascii_takes_the_line_path() {
        for s in [
            "a  b",
            " a",
            "a ",
            "a\tb",
            "a\u{b}b",
            "a\u{c}b",
            "caf\u{e9} b",
            "a\u{a0}b",
        ] {
            assert!(!single_spaced(s), "{s:?}");
        }
        for s in ["", "a", "a b", "a-b c"] {
            assert!(single_spaced(s), "{s:?}");
        }
        // Text the line path refuses wraps as before.
        let mut out = String::new();
        wrap_into(&mut out, "  a\tb  c\u{a0}d ", 2, 4);
        assert_eq!(out, "  a b c d");
    }
}
