//! Sentences a lawyer can follow, one per rule.
//!
//! A court reads these, not the rule text: each says what the failure
//! means for the record in plain words, without CBOR or COSE. The rule
//! number and class travel beside the sentence for the expert.

use crate::error::RejectKind;

use super::report::{BundleRule, Rule};
use super::SKEW_MINUTES;
use crate::utc::iso_seconds as iso_time;

/// Explains why an entry was refused, for a reader who has never seen
/// Custodia. `seq` is the entry's claimed position in its author's
/// history, when known.
pub fn explain(kind: &RejectKind, seq: Option<u64>) -> String {
    let here = seq.map_or_else(|| "this entry".to_owned(), |s| format!("entry #{s}"));
    match kind {
        RejectKind::Oversize { size } => format!(
            "This entry is {size} bytes long, more than any valid entry can be (65,536 bytes): it cannot have been produced by a conforming system."
        ),
        RejectKind::Malformed(_) => "This entry is damaged: its bytes are not a complete, well-formed signed record, so nothing in it can be relied on.".into(),
        RejectKind::NonCanonical(_) => "This entry's bytes are not in the single standard encoding every signed record must use: it was altered after signing or produced by faulty software.".into(),
        RejectKind::BadHeader(_) => "The signature header of this entry is not the one every Custodia entry carries: it was altered or does not come from a Custodia system.".into(),
        RejectKind::UnsupportedVersion(v) => format!(
            "This entry is written in format version {v}, which this verifier does not know; it cannot be checked here."
        ),
        RejectKind::Schema(_) => "This entry's content does not have the required structure: it was altered or produced by faulty software.".into(),
        RejectKind::AuthorMismatch { .. } => "This entry names one agency as its author but carries the key of another: it does not say truthfully who signed it.".into(),
        RejectKind::BadSignature => "The digital signature on this entry does not match its content: the entry was altered after its author signed it, or it was not signed by the agency it names.".into(),
        RejectKind::WrongCase(_) => "This entry does not belong to this case (it belongs to another case, opens a second case, or comes before the case was opened), so it cannot be part of this record.".into(),
        RejectKind::Equivocation { seq, .. } => format!(
            "The author signed two different entries as #{seq} of its history: it has shown different versions of its record, and only one of them can be followed here."
        ),
        RejectKind::SequenceGap { expected, found } if found > expected => {
            let missing = if found - expected == 1 {
                format!("entry #{expected} is")
            } else {
                format!("entries #{expected} to #{} are", found - 1)
            };
            format!(
                "This is entry #{found} of the author's history, but {missing} neither in the bundle nor disclosed as withheld: part of the author's history is missing."
            )
        }
        RejectKind::SequenceGap { expected, found } => format!(
            "This entry claims to be #{found} of the author's history, but that place is already taken; the next entry expected was #{expected}."
        ),
        RejectKind::PrevMismatch { seq } => format!(
            "This entry claims to follow the author's entry #{}, but the record of that entry is different: the author's history was altered or a different version was substituted.",
            seq.saturating_sub(1)
        ),
        RejectKind::UnknownReference { id, why } if why.contains("witness") => format!(
            "This entry countersigns another agency's entry ({}) that is not in the bundle in that form: that entry was removed or altered.",
            id.short()
        ),
        RejectKind::UnknownReference { why, .. } if why.contains("other authors") => format!(
            "{} lists one of its own author's entries as if it were another agency's; the record's links are not well formed.",
            capitalise(&here)
        ),
        RejectKind::UnknownReference { id, .. } => format!(
            "This entry relies on another entry ({}) that is neither in the bundle nor disclosed as withheld: something it depends on was removed.",
            id.short()
        ),
        RejectKind::NotAMember(_) => "When this entry was written, its author was not, or no longer, a member of the case according to the membership entries it had seen: it had no right to write in this case.".into(),
        RejectKind::NotAuthorized(why) => format!(
            "The author's role in the case did not allow this entry ({why})."
        ),
        RejectKind::CustodyViolation(why) => format!(
            "This custody record breaks the custody rules ({why}). Only the agency holding an item may act on it or hand it on, and a receipt must answer an open transfer addressed to the receiver."
        ),
        RejectKind::TimeViolation {
            time,
            predecessor_time,
            ..
        } => format!(
            "This entry is dated {}, more than {SKEW_MINUTES} minutes before an entry it builds on (dated {}): an entry cannot be written before what it refers to, so its date is false.",
            iso_time(*time),
            iso_time(*predecessor_time)
        ),
        RejectKind::FromTheFuture { time, now } => format!(
            "This entry is dated {}, more than {SKEW_MINUTES} minutes after the bundle was exported ({}): either the entry's date or the export date is false.",
            iso_time(*time),
            iso_time(*now)
        ),
        RejectKind::VersionMismatch { case, entry } => format!(
            "This entry is written in format version {entry}, but the case was opened in format version {case}, and every entry of a case keeps the version it was opened in."
        ),
        RejectKind::KeyLogPending { need, held, .. } => format!(
            "This entry was signed under the first {need} statements of its agency's history of keys, but only {held} of them are in the bundle: who was entitled to sign it cannot be checked."
        ),
        RejectKind::UncertifiedKey { why, .. } => format!(
            "This entry was signed with a key its agency had not issued to an officer or a node when the entry was written ({why}): it does not show who acted for the agency."
        ),
        RejectKind::RevokedKey { reason, effective, time, .. } => format!(
            "This entry was signed with a key its agency had withdrawn (reason: {reason}, from {}), and it is dated {}: the key was no longer the agency's to use.",
            iso_time(*effective),
            iso_time(*time)
        ),
        RejectKind::KeyRole { role, body, want, .. } => format!(
            "This {body} entry was signed with a {role} key; the agency's history of keys gives that kind of entry to {want} keys only."
        ),
        RejectKind::KeyValidity { valid, .. } => format!(
            "This entry is dated outside the period its signing key was issued for ({valid})."
        ),
        RejectKind::TooManyEntries { held } => format!(
            "This verifier already holds {held} entries of this case, the most it can keep, so it could not check this one; the entry itself may be sound."
        ),
        RejectKind::RecordsUnavailable(why) => format!(
            "This verifier could not read back what it had set aside of this case ({why}), so it could not check this entry; the entry itself may be sound."
        ),
    }
}

/// Explains a problem with the bundle itself (rules B1 to B9 of SPEC.md
/// §10.5), given the detail the verifier found.
pub fn explain_bundle_rule(rule: Rule, detail: &str) -> String {
    match rule {
        Rule::Bundle(BundleRule::Signature) => "The exporter's signature over the bundle does not verify: the file was changed after it was exported, or it was not signed by the agency named as exporter.".into(),
        Rule::Bundle(BundleRule::ExporterMismatch) => format!("The bundle is signed under one agency's key but names another as its exporter ({detail})."),
        Rule::Bundle(BundleRule::CaseMismatch) => format!("The bundle says it holds one case, but its first element is not the entry that opened that case ({detail})."),
        Rule::Bundle(BundleRule::ExporterNotMember) => format!("The agency that exported and signed this bundle has never been a member of the case ({detail}): it could not have held this record legitimately."),
        Rule::Bundle(BundleRule::AgencyList) => format!("The bundle's list of agencies does not match the case's signed membership entries ({detail})."),
        Rule::Bundle(BundleRule::BadProof) => format!("The bundle presents evidence that an agency signed two conflicting entries, but that evidence does not hold up ({detail})."),
        Rule::Bundle(BundleRule::Selection) => format!("The bundle says it covers an item whose registration it does not contain ({detail})."),
        Rule::Bundle(BundleRule::KeyLog) => format!("The bundle carries an agency's history of keys that does not check: a statement in it was altered, is missing, or was not signed by the key that had to sign it ({detail})."),
        Rule::Bundle(BundleRule::KeyLogAgency) => format!("The bundle carries a history of keys that is out of place: of an agency it does not list, or twice, or out of order ({detail})."),
        _ => detail.to_owned(),
    }
}

/// The sentence for an entry refused because it depends on one refused
/// before it.
pub(super) fn explain_consequence(root: usize) -> String {
    format!(
        "This entry depends on entry [{root}] of the bundle, which was refused; it cannot be accepted without it. It is reported as a consequence of that problem, not as a separate one."
    )
}

fn capitalise(s: &str) -> String {
    let mut c = s.chars();
    match c.next() {
        Some(f) => f.to_uppercase().chain(c).collect(),
        None => String::new(),
    }
}
