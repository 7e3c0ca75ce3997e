//! What the three renderers of a verification report say alike: the
//! index of names, labels and positions built once per report, and the
//! sentences shared by the text, JSON and HTML forms (the keys statement,
//! the trust words, a custody event described in one line).

use std::borrow::Cow;
use std::collections::HashMap;

use custodia_protocol::bundle::{EventReport, ItemReport, KeyLogReport, KeyTrust, Problem, Report};
use custodia_protocol::keylog::Statement;
use custodia_protocol::{AgencyId, EntryId, ItemId, KeyId};

use crate::output::iso_time;

/// What a renderer looks up many times, built once per report.
pub(crate) struct Index<'r> {
    r: &'r Report,
    names: HashMap<AgencyId, &'r str>,
    items: HashMap<ItemId, &'r ItemReport>,
    positions: HashMap<EntryId, Option<usize>>,
    /// The listed consequences of each listed problem at the source, by
    /// the element index of that problem.
    follow: HashMap<usize, Vec<&'r Problem>>,
}

impl<'r> Index<'r> {
    pub(crate) fn new(r: &'r Report) -> Self {
        // As `Report::name_of`: the case's name first, else the bundle
        // list's (the first of each).
        let mut names = HashMap::with_capacity(r.members.len() + r.listed.len());
        for m in &r.members {
            names.entry(m.agency).or_insert(m.name.as_str());
        }
        for a in &r.listed {
            names.entry(a.agency).or_insert(a.name.as_str());
        }
        let mut items = HashMap::with_capacity(r.items.len());
        let mut positions = HashMap::new();
        for i in &r.items {
            items.entry(i.id).or_insert(i);
            for e in &i.timeline {
                positions.entry(e.entry).or_insert(e.index);
            }
        }
        let mut follow: HashMap<usize, Vec<&Problem>> = HashMap::new();
        for p in &r.problems {
            if let Some(root) = p.caused_by {
                follow.entry(root).or_default().push(p);
            }
        }
        Index {
            r,
            names,
            items,
            positions,
            follow,
        }
    }

    /// The report this indexes.
    pub(crate) fn report(&self) -> &'r Report {
        self.r
    }

    /// A display name for an agency (raw: the caller escapes it for its
    /// medium): the case's name, else the bundle list's, else its
    /// fingerprint.
    pub(crate) fn name(&self, agency: &AgencyId) -> Cow<'r, str> {
        match self.names.get(agency) {
            Some(n) => Cow::Borrowed(n),
            None => Cow::Owned(agency.fingerprint()),
        }
    }

    /// Who signed an entry (raw): the agency's name, and for an entry of
    /// format version 2 the officer (name and service number) or the
    /// node key that signed it, from the agency's key log.
    pub(crate) fn who(&self, agency: &AgencyId, key: Option<KeyId>) -> Cow<'r, str> {
        let name = self.name(agency);
        match self.r.signer(agency, key) {
            Some(s) => Cow::Owned(crate::keylog::signed_by(&name, &s.key, s.officer.as_ref())),
            None => name,
        }
    }

    /// An item's label (raw): exhibit and UUID.
    pub(crate) fn item_label(&self, id: &ItemId) -> String {
        match self.items.get(id).and_then(|i| i.exhibit.as_deref()) {
            Some(x) => format!("{x} ({})", id.to_uuid_string()),
            None => id.to_uuid_string(),
        }
    }

    /// The bundle index of an entry of some item's timeline.
    pub(crate) fn position(&self, entry: &EntryId) -> Option<usize> {
        self.positions.get(entry).copied().flatten()
    }

    /// The listed consequences of the problem at element `index`.
    pub(crate) fn consequences(&self, index: Option<usize>) -> &[&'r Problem] {
        index
            .and_then(|i| self.follow.get(&i))
            .map_or(&[], Vec::as_slice)
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

/// What the report says about the keys (member names raw).
pub(crate) fn keys_statement(r: &Report, name: &dyn Fn(&str) -> String) -> String {
    if !r.trust_checked {
        return "The agencies' keys were NOT independently confirmed. This report shows that the record is intact and signed by the keys below; it does not show who holds those keys. Compare each fingerprint with the agency over a trusted channel, or verify again with --trust FILE.".into();
    }
    let unconfirmed: Vec<String> = r
        .members
        .iter()
        .filter(|m| m.trust == KeyTrust::NotConfirmed)
        .map(|m| name(&m.name))
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

/// How a key stands against the trust file (the name in it as given).
pub(crate) fn trust_word(t: &KeyTrust, name: &dyn Fn(&str) -> String) -> String {
    match t {
        KeyTrust::NotChecked => "not checked".into(),
        KeyTrust::Confirmed(n) => format!("confirmed ({})", name(n)),
        KeyTrust::NotConfirmed => "NOT confirmed".into(),
    }
}

/// Where an element is: `[7]`, or `-` for the bundle itself.
pub(crate) fn at(index: Option<usize>) -> String {
    index.map_or_else(|| "-".into(), |i| format!("[{i}]"))
}

/// ", N refused" when elements were refused (listed or only counted).
pub(crate) fn refused(r: &Report) -> String {
    let listed = r.problems.iter().filter(|p| p.index.is_some()).count();
    let counted: usize = r
        .unlisted
        .iter()
        .filter(|u| matches!(u.rule, custodia_protocol::bundle::Rule::Entry(_)))
        .map(|u| u.count)
        .sum();
    match listed + counted {
        0 => String::new(),
        n => format!(", {n} refused"),
    }
}

/// What an event records, in words (without who and when). Every string
/// from the bundle goes through `text`: [`crate::untrusted::safe`] for a terminal, the
/// identity for a medium that escapes the whole sentence itself.
pub(crate) fn describe_event(
    ix: &Index<'_>,
    e: &EventReport,
    text: &dyn Fn(&str) -> String,
) -> String {
    let mut parts: Vec<String> = Vec::new();
    let who = |a: &AgencyId| text(&ix.name(a));
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
                parts.push(format!("answers transfer {}", at(ix.position(t))));
            }
        }
        _ => {}
    }
    let mut field = |label: &str, v: &Option<String>| {
        if let Some(v) = v {
            parts.push(format!("{label}{}", text(v)));
        }
    };
    // A note's own text (its action column already says `note`).
    field("", &e.note);
    field("by ", &e.actor);
    field("at ", &e.place);
    field("purpose: ", &e.purpose);
    field("tool: ", &e.tool);
    field("authority: ", &e.authority);
    match e.digest_matched {
        Some(true) => parts.push("digest matched".into()),
        Some(false) => parts.push("DIGEST DID NOT MATCH".into()),
        None => {}
    }
    if let Some(c) = &e.copy {
        parts.push(format!("copy: {}", text(&ix.item_label(c))));
    }
    if let Some(reason) = &e.reason {
        parts.push(format!("reason: {}", text(reason)));
    }
    if let Some(why) = &e.retracted {
        parts.push(format!("RETRACTED by its author: {}", text(why)));
    }
    parts.join("; ")
}

/// A key statement of an agency's key log in words, kind first (as
/// `custodia key log` shows it). Every text from the bundle (officers'
/// names and numbers, profile names, countries) goes through `text`.
pub(crate) fn describe_key_statement(st: &Statement, text: &dyn Fn(&str) -> String) -> String {
    match st {
        Statement::Inception(r) => format!("inception: root {}", r.root.key),
        Statement::RotateRoot(r) => format!("rotate-root: root {}", r.root.key),
        Statement::Certify(c) => {
            let who = c
                .officer
                .as_ref()
                .map(|o| format!(" {} (service number {})", text(&o.name), text(&o.number)))
                .unwrap_or_default();
            let until = c
                .not_after
                .map(|t| format!(" until {}", iso_time(t)))
                .unwrap_or_default();
            format!(
                "certify {}{who}: key {}, valid from {}{until}",
                c.role.as_str(),
                c.key.key,
                iso_time(c.not_before)
            )
        }
        Statement::Revoke(r) => format!(
            "revoke ({}): key {} from {}",
            r.reason.as_str(),
            r.key,
            iso_time(r.effective)
        ),
        Statement::Profile(p) => format!("profile: {} ({})", text(&p.name), text(&p.country)),
        other => other.kind().to_owned(),
    }
}

/// The name an agency signed for itself in its key log, and the one the
/// bundle's agencies list gives it where they differ: `Signed` or
/// `Signed (listed as Listed)`. None when the log holds no profile.
pub(crate) fn signed_name(log: &KeyLogReport, text: &dyn Fn(&str) -> String) -> Option<String> {
    let p = log.profile.as_ref()?;
    Some(match &log.listed_name {
        Some(l) if *l != p.name => format!(
            "{} ({}; listed in the bundle as {})",
            text(&p.name),
            text(&p.country),
            text(l)
        ),
        _ => format!("{} ({})", text(&p.name), text(&p.country)),
    })
}

/// What the report says about the key logs, once.
pub(crate) fn key_logs_statement(r: &Report) -> &'static str {
    if r.version < 2 {
        "This bundle (format version 1) carries no key logs."
    } else if r.version == 2 {
        "Each agency's key log, as the exporter held it, replayed from its inception: who certified which keys and officers, rotations and revocations. Statements superseded by a recovery are not carried, and a log may be older than the agency's latest. Entries signed by an officer or node key (format version 2) are checked against these logs; entries signed by an agency key (format version 1) are not."
    } else {
        "Each agency's key log, as the exporter held it, replayed from its inception: who certified which keys and officers, rotations and revocations, and the statements a recovery superseded that the exporter held (void: signed by a root the agency took back with its pre-committed key, such as what a thief of the root signed). A log may be older than the agency's latest. Entries signed by an officer or node key (format version 2) are checked against these logs; entries signed by an agency key (format version 1) are not."
    }
}
