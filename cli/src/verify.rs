//! `custodia verify FILE [--trust KEYS] [--json] [--html OUT]`: checks a
//! court bundle with nothing but the file (SPEC.md §10.5) and prints the
//! report: verdict first, then the case, the members, every item's custody
//! timeline, conflicts, withheld positions and problems.
//!
//! Exit codes: 0 valid, 1 invalid, 2 unreadable or not a bundle.

use std::io::{IsTerminal, Read as _, Seek as _, SeekFrom, Write as _};
use std::ops::Range;
use std::path::Path;
use std::process::ExitCode;

use anyhow::Context;
use custodia_protocol::bundle::{
    self, BundleError, Checked, Element, EventReport, ItemReport, KeyTrust, Problem, Report,
    StreamDecoder, Streamed, Summary, TrustList, Verifier,
};
use custodia_protocol::{AgencyId, EntryId, ItemId, WithheldPosition};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use serde_json::{json, Value};

use crate::output::{iso_time, Out, EXIT_REFUSED};

/// Elements checked together (in parallel) before being replayed in order.
const CHUNK: usize = 2048;
/// A progress bar is drawn for bundles with at least this many elements.
const BAR_FROM: usize = 20_000;

/// Verifies `file`; prints the report; returns the exit code.
pub(crate) fn run(
    file: &Path,
    trust: Option<&Path>,
    html: Option<&Path>,
    out: &Out,
) -> anyhow::Result<ExitCode> {
    let trust = match trust {
        Some(p) => {
            let text = std::fs::read_to_string(p)
                .with_context(|| format!("reading the trust file {}", p.display()))?;
            Some(TrustList::parse(&text).with_context(|| format!("trust file {}", p.display()))?)
        }
        None => None,
    };
    let report = check_file(file, trust.as_ref())?;
    if let Some(path) = html {
        let page = crate::report_html::page(&report, &file.display().to_string());
        std::fs::write(path, page).with_context(|| format!("writing {}", path.display()))?;
    }
    // Written directly, ignoring a closed pipe (`custodia verify F | head`).
    let mut stdout = std::io::stdout().lock();
    let _ = if out.json() {
        writeln!(
            stdout,
            "{}",
            serde_json::to_string_pretty(&to_json(&report)).unwrap_or_default()
        )
    } else {
        let mut t = text(&report, &file.display().to_string());
        if let Some(path) = html {
            t.push_str(&format!("\n\nHTML report written to {}", path.display()));
        }
        writeln!(stdout, "{t}")
    };
    Ok(if report.is_valid() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(EXIT_REFUSED)
    })
}

/// Reads the file in this many bytes at a time.
const READ: usize = 1 << 16;

/// Verifies a bundle file, read as a stream twice (SPEC.md §10.5): the
/// first pass checks its structure and finds the export time and the
/// signature, the second replays the elements and checks the exporter's
/// signature over the bytes it reads. Memory holds one read buffer, one
/// chunk of elements and what the replay keeps, never the file.
fn check_file(file: &Path, trust: Option<&TrustList>) -> anyhow::Result<Report> {
    let reading = || format!("reading {}", file.display());
    let mut f = std::fs::File::open(file).with_context(reading)?;
    if !f.metadata().with_context(reading)?.is_file() {
        // A pipe or device cannot be read twice: copy it to a temporary
        // file first (on disk, not in memory).
        let mut copy = tempfile::tempfile().context("creating a temporary file")?;
        std::io::copy(&mut f, &mut copy).with_context(reading)?;
        copy.seek(SeekFrom::Start(0)).with_context(reading)?;
        f = copy;
    }
    let summary = stream(&mut f, StreamDecoder::new(), |_| {})
        .with_context(reading)?
        .with_context(|| file.display().to_string())?;
    f.seek(SeekFrom::Start(0)).with_context(reading)?;
    // The replay (one thread, in order) runs beside the checking of the
    // next chunk (all cores), so neither waits for the other.
    std::thread::scope(|scope| {
        let (tx, rx) = std::sync::mpsc::sync_channel::<Vec<Next>>(1);
        let first = &summary;
        let replayer = scope.spawn(move || {
            let mut v = Verifier::streamed(first, trust);
            for chunk in rx {
                for next in chunk {
                    match next {
                        Next::Checked(c) => v.push_checked(c),
                        Next::Withheld(w) => v.push_withheld(w),
                    }
                }
            }
            v
        });
        let mut replay = Replay::new(&summary, tx);
        let second = stream(&mut f, StreamDecoder::second_pass(&summary), |item| {
            replay.take(item)
        });
        replay.finish();
        let v = replayer
            .join()
            .map_err(|_| anyhow::anyhow!("internal error: the replay stopped"))?;
        let second = second
            .with_context(reading)?
            .with_context(|| file.display().to_string())?;
        Ok(v.finish_streamed(&second))
    })
}

/// Feeds `f` from its current position to `d`, handing each element to
/// `on`; returns the summary at the end, or why the bytes are not a
/// readable bundle (the outer error is the file's).
fn stream(
    f: &mut std::fs::File,
    mut d: StreamDecoder,
    mut on: impl FnMut(Streamed<'_>),
) -> std::io::Result<Result<Summary, BundleError>> {
    let mut buf = vec![0u8; READ];
    let mut ended = false;
    loop {
        loop {
            match d.next_item() {
                Ok(Some(Streamed::End(s))) => return Ok(Ok(s)),
                Ok(Some(item)) => on(item),
                Ok(None) if ended => {
                    // The decoder promises progress after finish().
                    return Err(std::io::Error::other("the bundle reader stopped"));
                }
                Ok(None) => break,
                Err(e) => return Ok(Err(e)),
            }
        }
        let n = match f.read(&mut buf) {
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        if n == 0 {
            d.finish();
            ended = true;
        } else {
            d.push(&buf[..n]);
        }
    }
}

/// One element waiting in a chunk.
enum Pending {
    /// An entry: its bytes in the chunk's arena.
    Entry(Range<usize>),
    Withheld(WithheldPosition),
    /// An element too large for an entry (V1), already judged.
    Oversize(Checked),
}

/// What the replay takes next, in the bundle's order.
enum Next {
    Checked(Checked),
    Withheld(WithheldPosition),
}

/// The checking side of the replay of a streamed bundle: elements are
/// gathered into chunks, checked (decoding and signatures, V1–V8) on every
/// core a chunk at a time, and sent in order to the replay thread; at most
/// one chunk being checked and one waiting exist besides what the report
/// keeps.
struct Replay {
    arena: Vec<u8>,
    pending: Vec<Pending>,
    threads: usize,
    to_replay: std::sync::mpsc::SyncSender<Vec<Next>>,
    sent: u64,
    bar: Option<ProgressBar>,
}

impl Replay {
    fn new(summary: &Summary, to_replay: std::sync::mpsc::SyncSender<Vec<Next>>) -> Self {
        let total = summary.len();
        let bar = (total >= BAR_FROM && std::io::stderr().is_terminal()).then(|| {
            let bar =
                ProgressBar::with_draw_target(Some(total as u64), ProgressDrawTarget::stderr());
            if let Ok(style) = ProgressStyle::with_template(
                "verifying [{bar:30}] {human_pos}/{human_len} entries  ETA {eta}",
            ) {
                bar.set_style(style.progress_chars("=> "));
            }
            bar
        });
        Replay {
            arena: Vec::new(),
            pending: Vec::with_capacity(CHUNK),
            threads: std::thread::available_parallelism().map_or(1, |n| n.get()),
            to_replay,
            sent: 0,
            bar,
        }
    }

    fn take(&mut self, item: Streamed<'_>) {
        match item {
            Streamed::Element(Element::Entry(bytes)) => {
                let start = self.arena.len();
                self.arena.extend_from_slice(bytes);
                self.pending.push(Pending::Entry(start..self.arena.len()));
            }
            Streamed::Element(Element::Withheld(w)) => self.pending.push(Pending::Withheld(w)),
            Streamed::Oversize { id, size } => self
                .pending
                .push(Pending::Oversize(bundle::oversize(id, size))),
            Streamed::End(_) => {}
        }
        if self.pending.len() >= CHUNK {
            self.flush();
        }
    }

    fn flush(&mut self) {
        let pending = std::mem::take(&mut self.pending);
        let chunk: Vec<Element<'_>> = pending
            .iter()
            .filter_map(|p| match p {
                Pending::Entry(r) => Some(Element::Entry(&self.arena[r.clone()])),
                Pending::Withheld(w) => Some(Element::Withheld(*w)),
                Pending::Oversize(_) => None,
            })
            .collect();
        let mut checked = chunk
            .iter()
            .zip(check_chunk(&chunk, self.threads))
            .map(|(e, c)| match (e, c) {
                (Element::Withheld(w), _) => Next::Withheld(*w),
                (Element::Entry(_), Some(c)) => Next::Checked(c),
                (Element::Entry(bytes), None) => Next::Checked(bundle::check_entry(bytes)),
            })
            .collect::<Vec<_>>()
            .into_iter();
        drop(chunk);
        let mut ordered = Vec::with_capacity(pending.len());
        for p in pending {
            match p {
                Pending::Oversize(c) => ordered.push(Next::Checked(c)),
                Pending::Entry(_) | Pending::Withheld(_) => ordered.extend(checked.next()),
            }
        }
        self.sent += ordered.len() as u64;
        // A closed channel means the replay thread stopped; the caller
        // learns it from joining that thread.
        let _ = self.to_replay.send(ordered);
        self.arena.clear();
        if let Some(bar) = &self.bar {
            bar.set_position(self.sent);
        }
    }

    /// Sends the last chunk; dropping the sender ends the replay.
    fn finish(mut self) {
        self.flush();
        if let Some(bar) = self.bar.take() {
            bar.finish_and_clear();
        }
    }
}

/// Checks the entries of a chunk on `threads` threads, keeping order; each
/// thread verifies its share of the signatures in one batch
/// (`bundle::check_entries`, SPEC.md §3.3).
fn check_chunk(chunk: &[Element<'_>], threads: usize) -> Vec<Option<Checked>> {
    let entries: Vec<&[u8]> = chunk
        .iter()
        .filter_map(|e| match e {
            Element::Entry(bytes) => Some(*bytes),
            Element::Withheld(_) => None,
        })
        .collect();
    let checked: Vec<Checked> = if threads <= 1 || entries.len() < 64 {
        bundle::check_entries(&entries)
    } else {
        let per = entries.len().div_ceil(threads);
        std::thread::scope(|s| {
            let handles: Vec<_> = entries
                .chunks(per)
                .map(|part| s.spawn(move || bundle::check_entries(part)))
                .collect();
            handles
                .into_iter()
                .zip(entries.chunks(per))
                // A panicking checker thread is a bug; fall back to checking
                // that part here rather than losing its entries.
                .flat_map(|(h, part)| h.join().unwrap_or_else(|_| bundle::check_entries(part)))
                .collect()
        })
    };
    let mut checked = checked.into_iter();
    chunk
        .iter()
        .map(|e| match e {
            Element::Entry(_) => checked.next(),
            Element::Withheld(_) => None,
        })
        .collect()
}

/// An item's label: exhibit and UUID.
pub(crate) fn item_label(r: &Report, id: &ItemId) -> String {
    match r
        .items
        .iter()
        .find(|i| i.id == *id)
        .and_then(|i| i.exhibit.clone())
    {
        Some(x) => format!("{x} ({})", id.to_uuid_string()),
        None => id.to_uuid_string(),
    }
}

/// Thousands separators: 1234567 → "1,234,567".
pub(crate) fn grouped(n: u64) -> String {
    let s = n.to_string();
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// What the report says about the keys.
pub(crate) fn keys_statement(r: &Report) -> String {
    if !r.trust_checked {
        return "The agencies' keys were NOT independently confirmed. This report shows that the record is intact and signed by the keys below; it does not show who holds those keys. Compare each fingerprint with the agency over a trusted channel, or verify again with --trust FILE.".into();
    }
    let unconfirmed: Vec<String> = r
        .members
        .iter()
        .filter(|m| m.trust == KeyTrust::NotConfirmed)
        .map(|m| m.name.clone())
        .collect();
    let exporter = match &r.exporter_trust {
        KeyTrust::NotConfirmed => " The exporter's key is NOT confirmed.",
        _ => "",
    };
    if unconfirmed.is_empty() {
        format!(
            "All {} members' keys are confirmed by the trust file.{exporter}",
            r.members.len()
        )
    } else {
        format!(
            "{} of {} members' keys are NOT confirmed by the trust file: {}.{exporter}",
            unconfirmed.len(),
            r.members.len(),
            unconfirmed.join(", ")
        )
    }
}

pub(crate) fn trust_word(t: &KeyTrust) -> String {
    match t {
        KeyTrust::NotChecked => "not checked".into(),
        KeyTrust::Confirmed(n) => format!("confirmed ({n})"),
        KeyTrust::NotConfirmed => "NOT confirmed".into(),
    }
}

/// Where an element is: `[7]`, or `-` for the bundle itself.
pub(crate) fn at(index: Option<usize>) -> String {
    index.map_or_else(|| "-".into(), |i| format!("[{i}]"))
}

/// What an event records, in words (without who and when).
pub(crate) fn describe_event(r: &Report, e: &EventReport) -> String {
    let mut parts: Vec<String> = Vec::new();
    let who = |a: &AgencyId| r.name_of(a);
    match e.action.as_str() {
        "transferred" => {
            if let Some(to) = &e.to {
                parts.push(format!("to {}", who(to)));
            }
            match &e.receipt {
                Some(rc) => parts.push(format!(
                    "receipt {} {} by {} at {}",
                    at(rc.index),
                    if rc.accepted { "accepted" } else { "REFUSED" },
                    who(&rc.author),
                    iso_time(rc.time)
                )),
                None => parts.push("NO RECEIPT: in transit".into()),
            }
        }
        "received" => {
            parts.push(
                if e.accepted == Some(false) {
                    "custody refused"
                } else {
                    "custody accepted"
                }
                .into(),
            );
            if let Some(t) = &e.answers {
                let idx = r
                    .items
                    .iter()
                    .flat_map(|i| &i.timeline)
                    .find(|x| x.entry == *t)
                    .and_then(|x| x.index);
                parts.push(format!("answers transfer {}", at(idx)));
            }
        }
        _ => {}
    }
    if let Some(a) = &e.actor {
        parts.push(format!("by {a}"));
    }
    if let Some(p) = &e.place {
        parts.push(format!("at {p}"));
    }
    if let Some(p) = &e.purpose {
        parts.push(format!("purpose: {p}"));
    }
    if let Some(t) = &e.tool {
        parts.push(format!("tool: {t}"));
    }
    if let Some(a) = &e.authority {
        parts.push(format!("authority: {a}"));
    }
    match e.digest_matched {
        Some(true) => parts.push("digest matched".into()),
        Some(false) => parts.push("DIGEST DID NOT MATCH".into()),
        None => {}
    }
    if let Some(c) = &e.copy {
        parts.push(format!("copy: {}", item_label(r, c)));
    }
    if let Some(reason) = &e.reason {
        parts.push(format!("reason: {reason}"));
    }
    if let Some(why) = &e.retracted {
        parts.push(format!("RETRACTED by its author: {why}"));
    }
    parts.join("; ")
}

fn text(r: &Report, file: &str) -> String {
    let mut t = String::new();
    let mut line = |s: String| {
        t.push_str(&s);
        t.push('\n');
    };
    line(r.verdict());
    if let Some(p) = r.problems.first() {
        line(format!(
            "First problem: {} {} {}: {}",
            at(p.index),
            p.rule,
            p.class,
            p.sentence
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
    line(field("File", file.to_owned()));
    line(field(
        "Case",
        format!(
            "{} ({}){}{}",
            r.title,
            r.reference,
            r.jurisdiction
                .as_ref()
                .map_or_else(String::new, |j| format!(", jurisdiction {j}")),
            r.tlp.map_or_else(String::new, |t| format!(", {t}"))
        ),
    ));
    line(field("Case id", r.case.to_hex()));
    if let Some((time, by)) = &r.opened {
        line(field(
            "Opened",
            format!("{} by {}", iso_time(*time), r.name_of(by)),
        ));
    }
    line(field(
        "Exported",
        format!(
            "{} by {} ({}), key {}",
            iso_time(r.exported_at),
            r.name_of(&r.exporter),
            r.exporter.fingerprint(),
            trust_word(&r.exporter_trust)
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
            crate::report_html::refused(r),
            r.conflicts.iter().filter(|c| c.kind == "equivocation").count()
        ),
    ));
    if let Some(items) = &r.selective {
        let labels: Vec<String> = items.iter().map(|i| item_label(r, i)).collect();
        line(field(
            "Selective",
            format!(
                "this bundle discloses only what establishes the custody of {}; everything else is withheld",
                labels.join(", ")
            ),
        ));
    }
    line(String::new());
    line(wrap(&keys_statement(r), 0));
    line(String::new());

    line(format!("Members ({})", r.members.len()));
    let w = r
        .members
        .iter()
        .map(|m| m.name.len())
        .max()
        .unwrap_or(4)
        .max(4);
    line(format!(
        "  {:<w$}  {:<7}  {:<12}  {:<24}  {:>7}  {:>8}  KEY",
        "NAME", "COUNTRY", "ROLE", "FINGERPRINT", "ENTRIES", "WITHHELD"
    ));
    for m in &r.members {
        let mut status = trust_word(&m.trust);
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
            m.name,
            m.country,
            m.role.as_str(),
            m.fingerprint,
            m.disclosed,
            m.withheld
        ));
    }
    line(String::new());
    let late: Vec<(&str, &EntryId, Option<usize>)> = r
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
                "  {name} wrote entry {} {} after it was removed from the case, without the removal in its causal past: it did not know of it, or ignored it",
                &id.to_hex()[..12],
                at(i)
            ));
        }
        line(String::new());
    }

    line(format!("Items ({})", r.items.len()));
    for i in &r.items {
        item_text(r, i, &mut line);
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
            .map(|(id, i)| format!("{} {}", at(*i), &id.to_hex()[..12]))
            .collect();
        line(format!(
            "  {}: {}",
            c.kind,
            wrap(&c.sentence, 4).trim_start()
        ));
        if !ids.is_empty() {
            line(format!("    entries: {}", ids.join(", ")));
        }
    }
    if r.conflicts.is_empty() {
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
            r.name_of(&w.author),
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

    line(format!("Problems ({})", r.problems.len()));
    for p in r.problems.iter().filter(|p| !p.is_consequence()) {
        problem_text(r, p, &mut line);
    }
    if r.problems.is_empty() {
        line("  none".into());
    }
    line(String::new());
    line("Times are each signing agency's own clock; the order of the record is its chain of signed links.".into());
    t.trim_end().to_owned()
}

fn item_text(r: &Report, i: &ItemReport, line: &mut impl FnMut(String)) {
    line(String::new());
    line(format!(
        "  {}  {}, {} bytes{}",
        item_label(r, &i.id),
        i.media_type,
        grouped(i.size),
        if i.incomplete {
            "  (INCOMPLETE: part of its history was withheld)"
        } else {
            ""
        }
    ));
    let kv = |k: &str, v: String| format!("    {k:<12} {v}");
    if let Some(d) = &i.description {
        line(kv("Description", d.clone()));
    }
    line(kv("SHA-256", hex::encode(i.digests.sha256)));
    if let Some(h) = i.digests.sha1 {
        line(kv("SHA-1", hex::encode(h)));
    }
    if let Some(h) = i.digests.md5 {
        line(kv("MD5", hex::encode(h)));
    }
    let a = &i.acquired;
    let mut acq = format!("{} by {}", iso_time(a.at), a.by);
    for (label, v) in [("at", &a.place), ("method", &a.method), ("tool", &a.tool)] {
        if let Some(v) = v {
            acq.push_str(&format!(", {label} {v}"));
        }
    }
    line(kv("Acquired", acq));
    if let Some(a) = &i.authority {
        line(kv("Authority", a.clone()));
    }
    if let Some(d) = &i.derived_from {
        line(kv("Derived from", item_label(r, d)));
    }
    if !i.copies.is_empty() {
        let c: Vec<String> = i.copies.iter().map(|c| item_label(r, c)).collect();
        line(kv("Copies", c.join(", ")));
    }
    let state = if i.destroyed {
        "destroyed".to_owned()
    } else if let Some(t) = &i.in_transit {
        let idx = i
            .timeline
            .iter()
            .find(|e| e.entry == *t)
            .and_then(|e| e.index);
        format!(
            "{} (in transit: transfer {} awaits its receipt)",
            r.name_of(&i.holder),
            at(idx)
        )
    } else {
        r.name_of(&i.holder)
    };
    line(kv("Holder", format!("{state} at the end of the record")));
    line("    Custody timeline".into());
    let w = i
        .timeline
        .iter()
        .map(|e| r.name_of(&e.author).len())
        .max()
        .unwrap_or(0);
    for e in &i.timeline {
        line(format!(
            "      {:<6} {}  {:<w$}  {:<11}  {}",
            at(e.index),
            iso_time(e.time),
            r.name_of(&e.author),
            e.action,
            describe_event(r, e)
        ));
    }
}

fn problem_text(r: &Report, p: &Problem, line: &mut impl FnMut(String)) {
    let who = match (&p.author_name, &p.author) {
        (Some(n), Some(a)) => format!(" by {n} ({})", a.fingerprint()),
        (None, Some(a)) => format!(" by {}", a.fingerprint()),
        _ => String::new(),
    };
    let seq = p.seq.map_or_else(String::new, |s| format!(" #{s}"));
    let entry = p
        .entry
        .map_or_else(String::new, |e| format!(" entry {}", &e.to_hex()[..12]));
    let proof = p.proof.map_or_else(String::new, |k| format!(" proof {k}"));
    line(format!(
        "  {} {} {}{entry}{proof}{who}{seq}",
        at(p.index),
        p.rule,
        p.class
    ));
    line(wrap(&p.sentence, 4));
    line(format!("    detail: {}", p.detail));
    let follow: Vec<&Problem> = r
        .problems
        .iter()
        .filter(|c| c.caused_by.is_some() && c.caused_by == p.index)
        .collect();
    if !follow.is_empty() {
        let list: Vec<String> = follow
            .iter()
            .map(|c| format!("{} {}", at(c.index), c.rule))
            .collect();
        line(wrap(
            &format!(
                "{} later element(s) depend on it and are refused with it: {}",
                follow.len(),
                list.join(", ")
            ),
            4,
        ));
    }
}

/// Wraps text at 96 columns with `indent` spaces.
fn wrap(s: &str, indent: usize) -> String {
    let mut out = String::new();
    let mut col = 0;
    let pad = " ".repeat(indent);
    for word in s.split_whitespace() {
        if col > 0 && col + 1 + word.len() > 96 {
            out.push('\n');
            col = 0;
        }
        if col == 0 {
            out.push_str(&pad);
            col = indent;
        } else {
            out.push(' ');
            col += 1;
        }
        out.push_str(word);
        col += word.len();
    }
    out
}

fn trust_json(t: &KeyTrust) -> Value {
    match t {
        KeyTrust::NotChecked => json!("not-checked"),
        KeyTrust::Confirmed(n) => json!({"confirmed": n}),
        KeyTrust::NotConfirmed => json!("not-confirmed"),
    }
}

fn event_json(e: &EventReport) -> Value {
    json!({
        "index": e.index,
        "entry": e.entry.to_hex(),
        "time": e.time,
        "time_iso": iso_time(e.time),
        "author": e.author.to_hex(),
        "action": e.action,
        "to": e.to.map(|a| a.to_hex()),
        "receipt": e.receipt.as_ref().map(|r| json!({"entry": r.entry.to_hex(), "index": r.index, "author": r.author.to_hex(), "time": r.time, "accepted": r.accepted})),
        "answers": e.answers.map(|t| t.to_hex()),
        "accepted": e.accepted,
        "actor": e.actor,
        "place": e.place,
        "purpose": e.purpose,
        "tool": e.tool,
        "reason": e.reason,
        "authority": e.authority,
        "digest_matched": e.digest_matched,
        "copy": e.copy.map(|c| c.to_uuid_string()),
        "tlp": e.tlp.as_str(),
        "retracted": e.retracted,
    })
}

fn to_json(r: &Report) -> Value {
    json!({
        "verdict": if r.is_valid() { "valid" } else { "invalid" },
        "summary": r.verdict(),
        "problem_count": r.problems.len(),
        "root_problems": r.root_problems(),
        "case": {
            "id": r.case.to_hex(),
            "title": r.title,
            "reference": r.reference,
            "jurisdiction": r.jurisdiction,
            "tlp": r.tlp.map(|t| t.as_str()),
            "opened_at": r.opened.map(|o| o.0),
            "opened_by": r.opened.map(|o| o.1.to_hex()),
        },
        "exporter": {
            "agency": r.exporter.to_hex(),
            "name": r.name_of(&r.exporter),
            "fingerprint": r.exporter.fingerprint(),
            "signer": r.signer.to_hex(),
            "trust": trust_json(&r.exporter_trust),
        },
        "exported_at": r.exported_at,
        "exported_at_iso": iso_time(r.exported_at),
        "signature_valid": r.signature_valid,
        "selective_items": r.selective.as_ref().map(|v| v.iter().map(|i| i.to_uuid_string()).collect::<Vec<_>>()),
        "positions": r.elements,
        "disclosed": r.disclosed,
        "keys_confirmed": r.trust_checked,
        "keys": keys_statement(r),
        "members": r.members.iter().map(|m| json!({
            "agency": m.agency.to_hex(),
            "fingerprint": m.fingerprint,
            "name": m.name,
            "country": m.country,
            "role": m.role.as_str(),
            "added_by": m.added_by.to_hex(),
            "added_index": m.added_index,
            "removed_by": m.removed_by.map(|x| x.to_hex()),
            "removed_index": m.removed_index,
            "after_removal": m.after_removal.iter().map(|(id, index)| json!({"entry": id.to_hex(), "index": index})).collect::<Vec<_>>(),
            "disclosed": m.disclosed,
            "withheld": m.withheld,
            "trust": trust_json(&m.trust),
        })).collect::<Vec<_>>(),
        "items": r.items.iter().map(|i| json!({
            "id": i.id.to_uuid_string(),
            "exhibit": i.exhibit,
            "sha256": hex::encode(i.digests.sha256),
            "sha1": i.digests.sha1.map(hex::encode),
            "md5": i.digests.md5.map(hex::encode),
            "size": i.size,
            "media_type": i.media_type,
            "description": i.description,
            "acquired": {"by": i.acquired.by, "at": i.acquired.at, "place": i.acquired.place, "method": i.acquired.method, "tool": i.acquired.tool},
            "authority": i.authority,
            "derived_from": i.derived_from.map(|d| d.to_uuid_string()),
            "copies": i.copies.iter().map(|c| c.to_uuid_string()).collect::<Vec<_>>(),
            "holder": i.holder.to_hex(),
            "in_transit": i.in_transit.map(|t| t.to_hex()),
            "destroyed": i.destroyed,
            "incomplete": i.incomplete,
            "timeline": i.timeline.iter().map(event_json).collect::<Vec<_>>(),
        })).collect::<Vec<_>>(),
        "conflicts": r.conflicts.iter().map(|c| json!({
            "kind": c.kind,
            "author": c.author.map(|a| a.to_hex()),
            "item": c.item.map(|i| i.to_uuid_string()),
            "entries": c.entries.iter().map(|(id, i)| json!({"entry": id.to_hex(), "index": i})).collect::<Vec<_>>(),
            "sentence": c.sentence,
        })).collect::<Vec<_>>(),
        "withheld": r.withheld.iter().map(|w| json!({
            "index": w.index, "author": w.author.to_hex(), "seq": w.seq, "id": w.id.to_hex(), "corroborated": w.corroborated,
        })).collect::<Vec<_>>(),
        "problems": r.problems.iter().map(|p| json!({
            "index": p.index,
            "proof": p.proof,
            "entry": p.entry.map(|e| e.to_hex()),
            "author": p.author.map(|a| a.to_hex()),
            "author_name": p.author_name,
            "seq": p.seq,
            "rule": p.rule.to_string(),
            "class": p.class,
            "sentence": p.sentence,
            "detail": p.detail,
            "caused_by": p.caused_by,
        })).collect::<Vec<_>>(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use custodia_protocol::bundle::{Bundle, BundleAgency, Header};
    use custodia_protocol::{Body, CaseOpened, Entry, Identity, Note, Payload, Tlp};

    const T0: u64 = 1_795_000_000_000;

    /// A valid bundle of one author's genesis and `notes` notes: larger
    /// than one read when `notes` is a few hundred.
    fn bundle(notes: usize) -> Vec<u8> {
        let alpha = Identity::from_seed([7; 32]);
        let genesis = Entry::sign(
            &alpha,
            &Payload::genesis(
                alpha.agency(),
                T0,
                Tlp::Amber,
                CaseOpened {
                    title: "Streaming".into(),
                    reference: "S-1".into(),
                    jurisdiction: None,
                    name: "Alpha".into(),
                    country: "PH".into(),
                },
            ),
        );
        let mut entries = vec![genesis];
        for i in 0..notes {
            let prev = entries.last().map(Entry::id);
            let mut p = entries[0].payload().clone();
            p.case = Some(entries[0].id());
            p.seq = i as u64 + 1;
            p.prev = prev;
            p.body = Body::Note(Note {
                text: format!(
                    "note {i}: long enough to fill the bundle quickly, {}",
                    "x".repeat(200)
                ),
                item: None,
            });
            entries.push(Entry::sign(&alpha, &p));
        }
        let elements: Vec<Element<'_>> =
            entries.iter().map(|e| Element::Entry(e.bytes())).collect();
        let header = Header {
            case: entries[0].id(),
            items: None,
            proofs: Vec::new(),
            agencies: vec![BundleAgency {
                agency: alpha.agency(),
                name: "Alpha".into(),
                country: "PH".into(),
            }],
            exported_at: T0 + 1_000,
        };
        bundle::write(&alpha, &header, &elements)
    }

    fn in_memory(bytes: &[u8]) -> Result<Report, BundleError> {
        Bundle::decode(bytes).map(|b| bundle::verify(&b, None))
    }

    #[test]
    fn a_file_read_in_pieces_gives_the_report_of_the_whole_file() {
        let bytes = bundle(600);
        assert!(bytes.len() > 3 * READ, "{} bytes", bytes.len());
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("b.custodia");
        std::fs::write(&path, &bytes).expect("write");
        let report = check_file(&path, None).expect("readable");
        assert!(report.is_valid(), "{:?}", report.problems);
        assert_eq!(report.elements, 601);
        assert_eq!(Ok(report), in_memory(&bytes));

        // An edited byte in the middle of the file: the same problems.
        let mut edited = bytes.clone();
        let mid = edited.len() / 2;
        let at = mid + edited[mid..].iter().position(|b| *b == b'x').expect("an x");
        edited[at] = b'y';
        std::fs::write(&path, &edited).expect("write");
        let report = check_file(&path, None).expect("readable");
        assert!(!report.is_valid());
        assert_eq!(Ok(report), in_memory(&edited));
    }

    #[test]
    fn truncated_and_garbage_files_are_typed_errors_with_the_offset() {
        let bytes = bundle(600);
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("b.custodia");
        for cut in [1, READ - 1, READ, READ + 1, 2 * READ + 17, bytes.len() - 1] {
            std::fs::write(&path, &bytes[..cut]).expect("write");
            let err = check_file(&path, None).expect_err("truncated");
            let want = in_memory(&bytes[..cut]).expect_err("truncated");
            assert!(matches!(want, BundleError::Truncated { at, .. } if at == cut));
            assert_eq!(
                err.downcast_ref::<BundleError>(),
                Some(&want),
                "cut at {cut}"
            );
            assert!(
                format!("{err:#}").contains(&format!("truncated at byte {cut}")),
                "{err:#}"
            );
        }
        // Garbage in the middle of the entries: the first damaged byte.
        let mut garbage = bytes.clone();
        let mid = garbage.len() / 2;
        garbage[mid..mid + 4000].fill(0xFF);
        std::fs::write(&path, &garbage).expect("write");
        let err = check_file(&path, None).expect_err("damaged");
        let want = in_memory(&garbage).expect_err("damaged");
        assert!(
            matches!(want, BundleError::Schema { at, .. } if at >= mid && at < mid + 4000),
            "{want:?}"
        );
        assert_eq!(err.downcast_ref::<BundleError>(), Some(&want));
        // Bytes after the end.
        let mut longer = bytes.clone();
        longer.extend_from_slice(&[0u8; 3 * READ]);
        std::fs::write(&path, &longer).expect("write");
        let err = check_file(&path, None).expect_err("trailing");
        assert_eq!(
            err.downcast_ref::<BundleError>(),
            Some(&BundleError::TrailingBytes {
                at: bytes.len(),
                extra: 3 * READ
            })
        );
    }
}
