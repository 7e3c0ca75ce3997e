//! The verification report as one self-contained HTML page: inline CSS,
//! inline SVG, no script and nothing fetched, readable in any browser and
//! on paper. Every text from the bundle is escaped: a bundle is untrusted
//! input and could hold markup, control characters, or direction
//! overrides that would reorder what a reader sees (they are shown as
//! visible escapes, as on a terminal). Names, labels and entry positions
//! are looked up in maps built once ([`Index`]): the page is linear in the
//! report.

use std::collections::{BTreeMap, HashMap};
use std::fmt::Write as _;

use custodia_protocol::bundle::{
    ItemReport, KeyStatementReport, KeyTrust, Problem, Report, LISTED,
};
use custodia_protocol::AgencyId;

use super::explain::{
    at, describe_event, describe_key_statement, grouped, key_logs_statement, keys_statement,
    refused, signed_name, trust_word, Index,
};
use super::Source;
use crate::output::iso_time;
use crate::untrusted::safe_lines;

/// Escapes text for HTML and SVG element content and attribute values:
/// markup characters as entities, and control characters and direction
/// marks and overrides as visible escapes (`\u{202e}`).
pub(crate) fn esc(s: &str) -> String {
    let s = safe_lines(s);
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// A string as it is (the page escapes whole sentences with [`esc`]).
fn raw(s: &str) -> String {
    s.to_owned()
}

const CSS: &str = r#"
:root { --ink: #1b1f24; --muted: #5b636d; --line: #d0d5db; --ok: #1f7a3a; --bad: #b3261e; --warn: #8a5a00; }
* { box-sizing: border-box; }
body { font: 15px/1.45 "Segoe UI", "Helvetica Neue", Arial, sans-serif; color: var(--ink); background: #fff; margin: 0 auto; max-width: 1100px; padding: 24px 32px 48px; }
h1 { font-size: 22px; margin: 0 0 4px; }
h2 { font-size: 18px; margin: 32px 0 10px; padding-bottom: 4px; border-bottom: 2px solid var(--ink); }
h3 { font-size: 16px; margin: 20px 0 6px; }
.verdict { border: 3px solid; border-radius: 6px; padding: 14px 20px; margin: 12px 0 20px; }
.verdict.valid { border-color: var(--ok); background: #eaf6ed; }
.verdict.invalid { border-color: var(--bad); background: #fbeceb; }
.verdict.conflicts { border-color: var(--warn); background: #fdf3e1; }
.verdict .word { font-size: 30px; font-weight: 800; letter-spacing: .04em; }
.verdict.valid .word { color: var(--ok); }
.verdict.invalid .word { color: var(--bad); }
.verdict.conflicts .word { color: var(--warn); }
.verdict p { margin: 6px 0 0; }
dl.facts { display: grid; grid-template-columns: 170px 1fr; gap: 4px 16px; margin: 0; }
dl.facts dt { color: var(--muted); }
dl.facts dd { margin: 0; overflow-wrap: anywhere; }
.nowrap { white-space: nowrap; }
.mono { font-family: "DejaVu Sans Mono", Consolas, monospace; font-size: 13px; white-space: nowrap; }
.versions td { vertical-align: top; width: 50%; border: 1px solid #ccc; }
.path { font-family: "DejaVu Sans Mono", Consolas, monospace; font-size: 13px; overflow-wrap: anywhere; }
table { border-collapse: collapse; width: 100%; margin: 8px 0; font-size: 14px; }
th, td { text-align: left; vertical-align: top; padding: 5px 8px; border-bottom: 1px solid var(--line); }
th { color: var(--muted); font-weight: 600; border-bottom: 2px solid var(--line); }
.note { border-left: 4px solid var(--warn); background: #fff7e6; padding: 8px 12px; margin: 10px 0; }
.good { color: var(--ok); font-weight: 600; }
.alarm { color: var(--bad); font-weight: 700; }
.item { page-break-before: always; break-before: page; }
.item:first-of-type { page-break-before: auto; break-before: auto; }
.timeline { width: 100%; height: auto; border: 1px solid var(--line); border-radius: 4px; margin: 8px 0; }
.problem { border: 1px solid var(--line); border-left: 5px solid var(--bad); border-radius: 4px; padding: 8px 12px; margin: 10px 0; page-break-inside: avoid; break-inside: avoid; }
.problem .head { font-weight: 700; }
.problem .detail { color: var(--muted); font-size: 13px; }
.legend span { display: inline-block; margin-right: 14px; font-size: 13px; color: var(--muted); }
footer { margin-top: 40px; color: var(--muted); font-size: 13px; border-top: 1px solid var(--line); padding-top: 8px; }
@media print {
  body { max-width: none; padding: 0; font-size: 11pt; }
  h2 { page-break-after: avoid; break-after: avoid; }
  tr, .timeline { page-break-inside: avoid; break-inside: avoid; }
  a { color: inherit; text-decoration: none; }
}
"#;

/// Where the page goes, written as it is rendered (never held whole: it
/// grows with the record). After a failed write nothing more is written,
/// and [`write()`] returns that error.
struct Page<'w> {
    w: &'w mut dyn std::io::Write,
    failed: Option<std::io::Error>,
}

impl std::fmt::Write for Page<'_> {
    fn write_str(&mut self, s: &str) -> std::fmt::Result {
        if self.failed.is_none() {
            if let Err(e) = self.w.write_all(s.as_bytes()) {
                self.failed = Some(e);
            }
        }
        Ok(())
    }
}

impl Page<'_> {
    fn push_str(&mut self, s: &str) {
        let _ = std::fmt::Write::write_str(self, s);
    }
}

/// Writes the whole page to `w`.
pub(crate) fn write(r: &Report, file: &Source, w: &mut dyn std::io::Write) -> std::io::Result<()> {
    let mut page = Page { w, failed: None };
    render(r, file, &mut page);
    match page.failed {
        Some(e) => Err(e),
        None => page.w.flush(),
    }
}

/// The whole page.
fn render(r: &Report, file: &Source, h: &mut Page<'_>) {
    let ix = Index::new(r);
    let _ = writeln!(
        h,
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n<meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; style-src 'unsafe-inline'; base-uri 'none'; form-action 'none'\">\n<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n<title>Custodia verification report: {}</title>\n<style>{CSS}</style>\n</head>\n<body>",
        esc(&r.title)
    );
    let _ = writeln!(
        h,
        "<h1>Chain of custody verification report</h1>\n<div class=\"path\">{}</div>\n<div>SHA-256 <span class=\"mono\">{}</span>, {} bytes; verified by {}</div>",
        esc(&file.name),
        hex::encode(file.sha256),
        file.size,
        esc(&file.verifier())
    );
    verdict(h, r);
    facts(h, &ix);
    members(h, r);
    let _ = writeln!(h, "<h2>Evidence items ({})</h2>", r.items.len());
    if r.items.is_empty() {
        h.push_str(if r.is_valid() {
            "<p>No item is registered in this bundle.</p>\n"
        } else {
            "<p>No item is registered by an entry that passed verification.</p>\n"
        });
    } else {
        h.push_str("<p class=\"legend\">Each item has a custody timeline: one lane per agency, time from left to right. <span>● event</span><span>→ transfer to another agency</span><span>✔ receipt accepted</span><span>✘ receipt refused</span><span>[n] position of the entry in the bundle</span></p>\n");
    }
    for i in &r.items {
        item(h, &ix, i);
    }
    conflicts(h, r);
    notes(h, &ix);
    withheld(h, &ix);
    key_histories(h, &ix);
    problems(h, r);
    let _ = writeln!(
        h,
        "<footer>Produced by <span class=\"mono\">custodia verify</span> from the bundle alone, as of its export at {}. Times are each signing agency's own clock; the order of the record is its chain of signed links (each entry names the entries it follows). Numbers in brackets are positions in the bundle.</footer>\n</body>\n</html>",
        iso_time(r.exported_at)
    );
}

fn verdict(h: &mut Page<'_>, r: &Report) {
    let (class, word) = match r.verdict_kind() {
        "valid" => ("valid", "VALID"),
        "valid-with-conflicts" => ("conflicts", "VALID, WITH CONFLICTS"),
        _ => ("invalid", "INVALID"),
    };
    let _ = write!(
        h,
        "<div class=\"verdict {class}\"><div class=\"word\">{word}</div><p><strong>{}</strong></p>",
        esc(&r.verdict())
    );
    if r.is_valid() {
        h.push_str("<p>Every entry is signed by the agency that wrote it, every link between entries checks, and the exporter's signature covers the whole file: nothing in this record was altered after it was signed.</p>");
    } else if let Some(p) = r.problems.first() {
        let _ = write!(
            h,
            "<p>First problem, at {} ({} {}): {}</p>",
            esc(&at(p.index)),
            p.rule,
            esc(p.class),
            esc(&p.sentence)
        );
    }
    if !r.conflicts.is_empty() {
        let _ = write!(
            h,
            "<p class=\"alarm\">The record shows {} conflict(s) between agencies (see Conflicts).</p>",
            r.conflicts.len()
        );
    }
    h.push_str("</div>\n");
}

fn facts(h: &mut Page<'_>, ix: &Index<'_>) {
    let r = ix.report();
    h.push_str("<h2>The case</h2>\n<dl class=\"facts\">\n");
    let mut dd = |k: &str, v: String| {
        let _ = writeln!(h, "<dt>{}</dt><dd>{v}</dd>", esc(k));
    };
    dd("Title", esc(&r.title));
    dd("Reference", esc(&r.reference));
    if let Some(j) = &r.jurisdiction {
        dd("Jurisdiction", esc(j));
    }
    if let Some(t) = &r.tlp {
        dd("Handling", esc(&t.to_string()));
    }
    dd(
        "Case id",
        format!("<span class=\"mono\">{}</span>", r.case.to_hex()),
    );
    if let Some((time, by)) = &r.opened {
        dd(
            "Opened",
            format!("{} by {}", iso_time(*time), esc(&ix.name(by))),
        );
    }
    dd(
        "Exported",
        format!(
            "{} by {} (<span class=\"mono\">{}</span>), key {}",
            iso_time(r.exported_at),
            esc(&ix.name(&r.exporter)),
            r.exporter.fingerprint(),
            esc(&trust_word(&r.exporter_trust, &raw))
        ),
    );
    dd(
        "Exporter's signature",
        if r.signature_valid {
            "<span class=\"good\">verifies</span>".into()
        } else {
            "<span class=\"alarm\">DOES NOT VERIFY</span>".into()
        },
    );
    dd(
        "Contents",
        format!(
            "{} positions: {} entries verified, {} disclosed as withheld{}",
            r.elements,
            r.disclosed,
            r.withheld.len(),
            refused(r)
        ),
    );
    if let Some(items) = &r.selective {
        let labels: Vec<String> = items.iter().map(|i| esc(&ix.item_label(i))).collect();
        dd(
            "Selective export",
            format!(
                "discloses only what establishes the custody of {}; everything else is withheld",
                labels.join(", ")
            ),
        );
    }
    h.push_str("</dl>\n");
}

fn members(h: &mut Page<'_>, r: &Report) {
    let _ = writeln!(h, "<h2>Agencies ({})</h2>", r.members.len());
    let class = if r.trust_checked
        && r.members
            .iter()
            .all(|m| matches!(m.trust, KeyTrust::Confirmed(_)))
    {
        "good"
    } else {
        "note"
    };
    let _ = writeln!(
        h,
        "<p class=\"{class}\">{}</p>",
        esc(&keys_statement(r, &raw))
    );
    h.push_str("<table>\n<thead><tr><th>Agency</th><th>Country</th><th>Role</th><th>Key fingerprint</th><th>Entries</th><th>Withheld</th><th>Key</th><th>Membership</th></tr></thead>\n<tbody>\n");
    for m in &r.members {
        let key = match &m.trust {
            KeyTrust::Confirmed(n) => {
                format!("<span class=\"good\">confirmed</span> as {}", esc(n))
            }
            KeyTrust::NotConfirmed => "<span class=\"alarm\">NOT confirmed</span>".into(),
            KeyTrust::NotChecked => "not checked".into(),
        };
        let mut membership = format!("added {}", esc(&at(m.added_index)));
        if m.removed_by.is_some() {
            membership.push_str(&format!(", removed {}", esc(&at(m.removed_index))));
        }
        if !m.after_removal.is_empty() {
            let at_list: Vec<String> = m.after_removal.iter().map(|(_, i)| at(*i)).collect();
            membership.push_str(&format!(
                "; <span class=\"alarm\">{} entries concurrent with its removal ({})</span>",
                m.after_removal.len(),
                esc(&at_list.join(", "))
            ));
        }
        let _ = writeln!(
            h,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td class=\"mono\">{}</td><td>{}</td><td>{}</td><td>{key}</td><td>{membership}</td></tr>",
            esc(&m.name),
            esc(&m.country),
            m.role.as_str(),
            m.fingerprint,
            m.disclosed,
            m.withheld
        );
    }
    h.push_str("</tbody>\n</table>\n");
}

fn item(h: &mut Page<'_>, ix: &Index<'_>, i: &ItemReport) {
    let _ = writeln!(
        h,
        "<section class=\"item\">\n<h3>Item {}</h3>\n<dl class=\"facts\">",
        esc(&ix.item_label(&i.id))
    );
    let mut dd = |k: &str, v: String| {
        let _ = writeln!(h, "<dt>{}</dt><dd>{v}</dd>", esc(k));
    };
    if let Some(d) = &i.description {
        dd("Description", esc(d));
    }
    dd(
        "Content",
        format!("{}, {} bytes", esc(&i.media_type), grouped(i.size)),
    );
    dd(
        "SHA-256",
        format!(
            "<span class=\"mono\">{}</span>",
            hex::encode(i.digests.sha256)
        ),
    );
    if let Some(d) = i.digests.sha1 {
        dd(
            "SHA-1",
            format!("<span class=\"mono\">{}</span>", hex::encode(d)),
        );
    }
    if let Some(d) = i.digests.md5 {
        dd(
            "MD5",
            format!("<span class=\"mono\">{}</span>", hex::encode(d)),
        );
    }
    let a = &i.acquired;
    let mut acq = format!("{} by {}", iso_time(a.at), esc(&a.by));
    for (label, v) in [("at", &a.place), ("method", &a.method), ("tool", &a.tool)] {
        if let Some(v) = v {
            acq.push_str(&format!(", {label} {}", esc(v)));
        }
    }
    dd("Acquired", acq);
    if let Some(x) = &i.authority {
        dd("Authority", esc(x));
    }
    if let Some(d) = &i.derived_from {
        dd("Derived from", esc(&ix.item_label(d)));
    }
    if !i.copies.is_empty() {
        let c: Vec<String> = i.copies.iter().map(|c| esc(&ix.item_label(c))).collect();
        dd("Copies", c.join(", "));
    }
    let holder = if i.destroyed {
        "<span class=\"alarm\">destroyed</span>".to_owned()
    } else if i.in_transit.is_some() {
        format!(
            "{} <span class=\"alarm\">(in transit: the transfer awaits its receipt)</span>",
            esc(&ix.name(&i.holder))
        )
    } else {
        esc(&ix.name(&i.holder))
    };
    dd("Holder at the end", holder);
    if i.incomplete {
        dd(
            "Completeness",
            "<span class=\"alarm\">part of this item's history was withheld from the exporter</span>"
                .into(),
        );
    }
    h.push_str("</dl>\n");
    h.push_str(&timeline_svg(ix, i));
    h.push_str("<table>\n<thead><tr><th>#</th><th>Time</th><th>Agency</th><th>What</th><th>Details</th></tr></thead>\n<tbody>\n");
    for e in &i.timeline {
        let _ = writeln!(
            h,
            "<tr><td>{}</td><td class=\"nowrap\">{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            esc(&at(e.index)),
            iso_time(e.time).replace('T', " "),
            esc(&ix.who(&e.author, e.signer)),
            esc(&e.action),
            esc(&describe_event(ix, e, &raw))
        );
    }
    h.push_str("</tbody>\n</table>\n</section>\n");
}

fn color(action: &str) -> &'static str {
    match action {
        "registered" => "#1f5fbf",
        "transferred" => "#c46a00",
        "received" => "#1f7a3a",
        "examined" => "#6b3fa0",
        "destroyed" => "#222222",
        "copied" => "#00838f",
        _ => "#5b636d",
    }
}

/// The custody timeline of one item as an SVG: one lane per agency, events
/// as dots over time, transfers as arrows between lanes, receipts marked.
fn timeline_svg(ix: &Index<'_>, i: &ItemReport) -> String {
    const W: f64 = 1000.0;
    const LEFT: f64 = 190.0;
    const RIGHT: f64 = 70.0;
    const LANE: f64 = 64.0;
    const TOP: f64 = 34.0;
    // Lanes: agencies in order of first appearance.
    let mut lanes: Vec<AgencyId> = Vec::new();
    let mut lane: HashMap<AgencyId, usize> = HashMap::new();
    for e in &i.timeline {
        for a in std::iter::once(&e.author).chain(e.to.iter()) {
            lane.entry(*a).or_insert_with(|| {
                lanes.push(*a);
                lanes.len() - 1
            });
        }
    }
    let lane_of = |a: &AgencyId| lane.get(a).copied().unwrap_or(0);
    // Each event's place in the timeline (the first, if listed twice).
    let mut place: HashMap<custodia_protocol::EntryId, usize> = HashMap::new();
    for (k, e) in i.timeline.iter().enumerate() {
        place.entry(e.entry).or_insert(k);
    }
    let n = i.timeline.len();
    // x: proportional to time, with a minimum gap so events stay apart.
    let (t0, t1) = i.timeline.iter().fold((u64::MAX, 0u64), |(lo, hi), e| {
        (lo.min(e.time), hi.max(e.time))
    });
    let span = (t1.saturating_sub(t0)).max(1) as f64;
    let usable = W - LEFT - RIGHT;
    let gap = (usable / (n.max(2) as f64 * 1.6)).min(90.0);
    let mut xs: Vec<f64> = Vec::with_capacity(n);
    for e in &i.timeline {
        let raw = (e.time.saturating_sub(t0)) as f64 / span * usable;
        let x = match xs.last() {
            Some(prev) => raw.max(prev + gap),
            None => raw,
        };
        xs.push(x);
    }
    let max = xs.last().copied().unwrap_or(0.0).max(1.0);
    let scale = if max > usable { usable / max } else { 1.0 };
    let xs: Vec<f64> = xs.iter().map(|x| LEFT + x * scale + 8.0).collect();
    let height = TOP + LANE * lanes.len() as f64 + 44.0;
    let y = |lane: usize| TOP + LANE * lane as f64 + LANE / 2.0;
    let mut s = String::new();
    let _ = writeln!(
        s,
        "<svg class=\"timeline\" viewBox=\"0 0 {W} {height}\" xmlns=\"http://www.w3.org/2000/svg\" role=\"img\" aria-label=\"Custody timeline of item {}\">\n<defs><marker id=\"arrow\" viewBox=\"0 0 10 10\" refX=\"9\" refY=\"5\" markerWidth=\"7\" markerHeight=\"7\" orient=\"auto-start-reverse\"><path d=\"M0,0 L10,5 L0,10 z\" fill=\"#c46a00\"/></marker></defs>",
        esc(&ix.item_label(&i.id))
    );
    for (k, a) in lanes.iter().enumerate() {
        let top = TOP + LANE * k as f64;
        let fill = if k % 2 == 0 { "#f4f6f8" } else { "#ffffff" };
        let _ = writeln!(
            s,
            "<rect x=\"0\" y=\"{top}\" width=\"{W}\" height=\"{LANE}\" fill=\"{fill}\"/>\n<line x1=\"{LEFT}\" y1=\"{}\" x2=\"{}\" y2=\"{}\" stroke=\"#c5ccd4\" stroke-width=\"2\"/>\n<text x=\"10\" y=\"{}\" font-size=\"13\" font-weight=\"600\" fill=\"#1b1f24\">{}</text>\n<text x=\"10\" y=\"{}\" font-size=\"11\" fill=\"#5b636d\">{}</text>",
            y(k),
            W - RIGHT + 10.0,
            y(k),
            y(k) - 3.0,
            esc(&truncate(&ix.name(a), 24)),
            y(k) + 13.0,
            a.fingerprint()
        );
    }
    // Transfers: arrows from the sender's lane to the receiver's, ending at
    // the receipt (or the right edge when none was signed).
    for (k, e) in i.timeline.iter().enumerate() {
        if e.action != "transferred" {
            continue;
        }
        let Some(to) = &e.to else { continue };
        let (x2, dashed) = match &e.receipt {
            Some(rc) => (place.get(&rc.entry).map_or(W - RIGHT, |p| xs[*p]), false),
            None => (W - RIGHT, true),
        };
        let (y1, y2) = (y(lane_of(&e.author)), y(lane_of(to)));
        let dy = if y2 > y1 { -9.0 } else { 9.0 };
        let _ = writeln!(
            s,
            "<line x1=\"{}\" y1=\"{y1}\" x2=\"{}\" y2=\"{}\" stroke=\"#c46a00\" stroke-width=\"2.2\"{} marker-end=\"url(#arrow)\"/>",
            xs[k],
            x2,
            y2 + dy,
            if dashed { " stroke-dasharray=\"6 4\"" } else { "" }
        );
        if dashed {
            let _ = writeln!(
                s,
                "<text x=\"{}\" y=\"{}\" font-size=\"11\" fill=\"#b3261e\" text-anchor=\"end\">no receipt</text>",
                W - RIGHT,
                y2 - 14.0
            );
        }
    }
    for (k, e) in i.timeline.iter().enumerate() {
        let (x, yy) = (xs[k], y(lane_of(&e.author)));
        let c = color(&e.action);
        let _ = write!(
            s,
            "<g><title>{}</title>",
            esc(&format!(
                "{} {} {} — {}",
                at(e.index),
                iso_time(e.time),
                e.action,
                describe_event(ix, e, &raw)
            ))
        );
        if e.action == "received" {
            let ok = e.accepted != Some(false);
            let (fill, mark) = if ok {
                ("#1f7a3a", "✔")
            } else {
                ("#b3261e", "✘")
            };
            let _ = write!(
                s,
                "<rect x=\"{}\" y=\"{}\" width=\"18\" height=\"18\" rx=\"3\" fill=\"{fill}\"/><text x=\"{x}\" y=\"{}\" font-size=\"13\" fill=\"#ffffff\" text-anchor=\"middle\">{mark}</text>",
                x - 9.0,
                yy - 9.0,
                yy + 5.0
            );
        } else {
            let _ = write!(
                s,
                "<circle cx=\"{x}\" cy=\"{yy}\" r=\"8\" fill=\"{c}\" stroke=\"#ffffff\" stroke-width=\"2\"/>"
            );
        }
        if e.retracted.is_some() {
            let _ = write!(
                s,
                "<line x1=\"{}\" y1=\"{}\" x2=\"{}\" y2=\"{}\" stroke=\"#b3261e\" stroke-width=\"3\"/>",
                x - 11.0,
                yy - 11.0,
                x + 11.0,
                yy + 11.0
            );
        }
        let label = match e.digest_matched {
            Some(false) => format!("{} ⚠", e.action),
            _ => e.action.clone(),
        };
        let _ = writeln!(
            s,
            "<text x=\"{x}\" y=\"{}\" font-size=\"11\" fill=\"{c}\" text-anchor=\"middle\" font-weight=\"600\">{}</text><text x=\"{x}\" y=\"{}\" font-size=\"10\" fill=\"#5b636d\" text-anchor=\"middle\">{}</text></g>",
            yy - 14.0,
            esc(&label),
            yy + 22.0,
            esc(&at(e.index))
        );
    }
    // Time axis: the first and last times, and the middle when they differ.
    let axis = TOP + LANE * lanes.len() as f64 + 18.0;
    let mut ticks: BTreeMap<u64, f64> = BTreeMap::new();
    if let (Some(first), Some(last)) = (xs.first(), xs.last()) {
        ticks.insert(t0, *first);
        ticks.insert(t1, *last);
    }
    let last = ticks.len().saturating_sub(1);
    for (k, (time, x)) in ticks.iter().enumerate() {
        let anchor = if k == last && last > 0 {
            "end"
        } else {
            "start"
        };
        let x = if anchor == "end" { x + 10.0 } else { x - 10.0 };
        let _ = writeln!(
            s,
            "<text x=\"{x}\" y=\"{axis}\" font-size=\"11\" fill=\"#5b636d\" text-anchor=\"{anchor}\">{}</text>",
            iso_time(*time).replace('T', " ")
        );
    }
    let _ = writeln!(
        s,
        "<text x=\"10\" y=\"{axis}\" font-size=\"11\" fill=\"#5b636d\">time (UTC) →</text>\n</svg>"
    );
    s
}

fn truncate(s: &str, n: usize) -> String {
    if s.chars().count() <= n {
        s.to_owned()
    } else {
        let mut t: String = s.chars().take(n - 1).collect();
        t.push('…');
        t
    }
}

fn conflicts(h: &mut Page<'_>, r: &Report) {
    let _ = writeln!(h, "<h2>Conflicts ({})</h2>", r.conflicts.len());
    if r.conflicts.is_empty() {
        h.push_str("<p>None: no agency contradicted itself or another in this record.</p>\n");
        return;
    }
    h.push_str("<p>A conflict is not damage to the file: the record is intact and shows agencies disagreeing, or one agency contradicting itself.</p>\n<table>\n<thead><tr><th>Kind</th><th>What it means</th><th>Entries</th></tr></thead>\n<tbody>\n");
    for c in &r.conflicts {
        let ids: Vec<String> = c
            .entries
            .iter()
            .map(|(id, i)| {
                format!(
                    "{} <span class=\"mono\">{}</span>",
                    esc(&at(*i)),
                    id.short()
                )
            })
            .collect();
        let _ = writeln!(
            h,
            "<tr><td class=\"alarm\">{}</td><td>{}{}</td><td>{}</td></tr>",
            esc(c.kind),
            esc(&c.sentence),
            versions(c),
            ids.join("<br>")
        );
    }
    h.push_str("</tbody>\n</table>\n");
}

/// An equivocation's two versions side by side: what each says, when,
/// under which label, and which one the record follows.
fn versions(c: &custodia_protocol::bundle::ConflictReport) -> String {
    if c.versions.is_empty() {
        return String::new();
    }
    let mut out = String::from("<table class=\"versions\"><tr>");
    for (n, v) in c.versions.iter().enumerate() {
        let _ = write!(
            out,
            "<td><b>Version {}</b>{}<br><span class=\"mono\">{}</span> {}<br>{} · TLP:{}<br>{}</td>",
            n + 1,
            if v.in_record {
                " (the record here follows it)"
            } else {
                ""
            },
            v.entry.short(),
            esc(&at(v.index)),
            esc(&iso_time(v.time)),
            esc(&v.tlp.as_str().to_uppercase()),
            esc(&v.says)
        );
    }
    out.push_str("</tr></table>");
    out
}

fn notes(h: &mut Page<'_>, ix: &Index<'_>) {
    let r = ix.report();
    let _ = writeln!(h, "<h2>Notes ({})</h2>", r.notes.len());
    if r.notes.is_empty() {
        h.push_str("<p>None: no agency signed a note in this record.</p>\n");
        return;
    }
    h.push_str("<p>Free text each agency signed about the case or an item, as written.</p>\n<table>\n<thead><tr><th>#</th><th>Time</th><th>Agency</th><th>Item</th><th>Note</th></tr></thead>\n<tbody>\n");
    for n in r.notes.iter() {
        let _ = writeln!(
            h,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}{}</td></tr>",
            esc(&at(n.index)),
            esc(&iso_time(n.time)),
            esc(&ix.who(&n.author, n.signer)),
            n.item
                .map_or_else(|| "the case".to_owned(), |i| esc(&ix.item_label(&i))),
            esc(&n.text),
            n.retracted.as_ref().map_or_else(String::new, |why| format!(
                " <strong class=\"alarm\">RETRACTED by its author: {}</strong>",
                esc(why)
            )),
        );
    }
    h.push_str("</tbody>\n</table>\n");
}

fn withheld(h: &mut Page<'_>, ix: &Index<'_>) {
    let r = ix.report();
    let _ = writeln!(h, "<h2>Withheld positions ({})</h2>", r.withheld.len());
    if r.withheld.is_empty() {
        h.push_str("<p>None: every entry of the record is disclosed in this bundle.</p>\n");
        return;
    }
    h.push_str("<p>These entries exist in the record but were not disclosed in this bundle: each is <strong>disclosed as withheld</strong> (its author, position and entry id are given), which is not the same as missing. The entries around them still link through them.</p>\n<table>\n<thead><tr><th>#</th><th>Agency</th><th>Position</th><th>Entry id</th><th>Corroborated</th></tr></thead>\n<tbody>\n");
    for w in &r.withheld {
        let _ = writeln!(
            h,
            "<tr><td>{}</td><td>{}</td><td>#{}</td><td class=\"mono\">{}</td><td>{}</td></tr>",
            esc(&at(Some(w.index))),
            esc(&ix.name(&w.author)),
            w.seq,
            w.id,
            if w.corroborated {
                "yes, a signed entry names it"
            } else {
                "no (the exporter's statement only)"
            }
        );
    }
    h.push_str("</tbody>\n</table>\n");
}

/// Each agency's key history (a version 2 or 3 bundle's key logs). Every text
/// from a log (officers' names and numbers, profile names) is escaped:
/// sentences are built from the raw strings and escaped whole.
fn key_histories(h: &mut Page<'_>, ix: &Index<'_>) {
    let r = ix.report();
    let _ = writeln!(h, "<h2>Key histories ({})</h2>", r.key_logs.len());
    let _ = writeln!(h, "<p>{}</p>", esc(key_logs_statement(r)));
    for log in &r.key_logs {
        let _ = writeln!(
            h,
            "<h3>{} <span class=\"mono\">{}</span></h3>",
            esc(&ix.name(&log.agency)),
            log.agency.fingerprint()
        );
        if let Some(n) = signed_name(log, &raw) {
            let _ = writeln!(h, "<p>Signed name: {}</p>", esc(&n));
        }
        let _ = writeln!(
            h,
            "<p>Root key in force: <span class=\"mono\">{}</span></p>\n<table>\n<thead><tr><th>Position</th><th>Time</th><th>Statement</th></tr></thead>\n<tbody>",
            log.root
        );
        statement_rows(h, &log.statements);
        if !log.superseded.is_empty() {
            let _ = writeln!(
                h,
                "<p class=\"note\">Superseded by a recovery ({}): void, signed by a root the agency took back.</p>\n<table>\n<thead><tr><th>Position</th><th>Time</th><th>Statement</th></tr></thead>\n<tbody>",
                log.superseded.len()
            );
            statement_rows(h, &log.superseded);
        }
    }
}

/// A key log's statements as the rows of the open table, then its end.
fn statement_rows(h: &mut Page<'_>, statements: &[KeyStatementReport]) {
    for s in statements {
        let _ = writeln!(
            h,
            "<tr><td>#{}</td><td>{}</td><td>{}</td></tr>",
            s.seq,
            esc(&iso_time(s.time)),
            esc(&describe_key_statement(&s.statement, &raw))
        );
    }
    h.push_str("</tbody>\n</table>\n");
}

fn problems(h: &mut Page<'_>, r: &Report) {
    let _ = writeln!(h, "<h2>Problems ({})</h2>", r.problem_count);
    if r.is_valid() {
        h.push_str("<p class=\"good\">None.</p>\n");
        return;
    }
    for p in r.problems.iter().filter(|p| !p.is_consequence()) {
        problem(h, p);
    }
    if r.unlisted_count() > 0 {
        let _ = writeln!(
            h,
            "<h3>Not listed one by one ({})</h3>\n<p>This report lists the first {LISTED} problems at the source and the first {LISTED} consequences; the others were found and are counted here.</p>\n<table>\n<thead><tr><th>Problems</th><th>Rule</th><th>Class</th></tr></thead>\n<tbody>",
            r.unlisted_count()
        );
        for u in &r.unlisted {
            let _ = writeln!(
                h,
                "<tr><td>{}</td><td>{}</td><td>{}</td></tr>",
                grouped(u.count as u64),
                u.rule,
                esc(u.class)
            );
        }
        h.push_str("</tbody>\n</table>\n");
    }
    let follow: Vec<&Problem> = r.problems.iter().filter(|p| p.is_consequence()).collect();
    if follow.is_empty() {
        return;
    }
    let _ = writeln!(
        h,
        "<h3>Consequences (listed: {})</h3>\n<p>These entries depend on an entry refused above and are refused with it; they are not separate problems.</p>\n<table>\n<thead><tr><th>#</th><th>Entry</th><th>Agency</th><th>Rule</th><th>Follows from</th></tr></thead>\n<tbody>",
        follow.len()
    );
    for p in follow {
        let _ = writeln!(
            h,
            "<tr><td>{}</td><td class=\"mono\">{}</td><td>{}</td><td>{} ({})</td><td>{}</td></tr>",
            esc(&at(p.index)),
            p.entry.map_or_else(String::new, |e| e.short()),
            esc(p.author_name.as_deref().unwrap_or("")),
            p.rule,
            esc(p.class),
            esc(&at(p.caused_by))
        );
    }
    h.push_str("</tbody>\n</table>\n");
}

fn problem(h: &mut Page<'_>, p: &Problem) {
    let who = match (&p.author_name, &p.author) {
        (Some(n), Some(a)) => format!(" — {} ({})", esc(n), a.fingerprint()),
        (None, Some(a)) => format!(" — {}", a.fingerprint()),
        _ => String::new(),
    };
    let place = match (p.index, p.proof) {
        (Some(i), _) => format!("Entry [{i}]"),
        (None, Some(k)) => format!("Equivocation proof {k}"),
        _ => "The bundle".into(),
    };
    let _ = writeln!(
        h,
        "<div class=\"problem\"><div class=\"head\">{place}: rule {} ({}){who}{}</div><p>{}</p><div class=\"detail\">Technical detail: {}{}</div></div>",
        p.rule,
        esc(p.class),
        p.seq.map_or_else(String::new, |s| format!(", position #{s}")),
        esc(&p.sentence),
        esc(&p.detail),
        p.entry
            .map_or_else(String::new, |e| format!(" — entry id <span class=\"mono\">{e}</span>"))
    );
}
