//! A small simulated case for bundle tests: agencies write entries the way
//! the reference node does (every entry references the current heads of
//! the other authors), into one validator that plays the exporting node.

#![allow(dead_code)]

use custodia_protocol::bundle::Element;
use custodia_protocol::keylog::{
    key_of, Certify, KeyLog, KeyRole, KeyStatement, Officer, PublicKey, Revoke, RevokeReason,
    Statement, StatementPayload,
};
use custodia_protocol::*;
use sha2::{Digest, Sha256};

/// The first entry's time (as in the entry vectors).
pub(crate) const T0: u64 = 1_795_000_000_000;

/// Test key of a label (SPEC.md Appendix A.2).
pub(crate) fn key(label: &str) -> Identity {
    let seed: [u8; 32] = Sha256::digest(format!("custodia test key {label}")).into();
    Identity::from_seed(seed)
}

/// A row as the node stores it.
#[derive(Debug, Clone)]
pub(crate) enum Row {
    /// An entry the node holds.
    Entry(Entry),
    /// A position the node holds only as a marker.
    Withheld(WithheldPosition),
}

/// A case being written.
pub(crate) struct Sim {
    pub(crate) agencies: Vec<(Identity, &'static str, &'static str)>,
    pub(crate) v: Validator,
    pub(crate) rows: Vec<Row>,
    pub(crate) proofs: Vec<EquivocationProof>,
    pub(crate) time: u64,
}

impl Sim {
    /// Alpha (PH, lead) opens "Operation Lantern"; bravo (DE) and charlie
    /// (FR, liaison) are created but not yet added.
    pub(crate) fn new() -> Sim {
        let mut s = Sim {
            agencies: vec![
                (key("alpha"), "NBI Cybercrime Division", "PH"),
                (key("bravo"), "BKA Cybercrime Unit", "DE"),
                (key("charlie"), "Interpol Liaison Desk", "FR"),
            ],
            v: Validator::new(),
            rows: Vec::new(),
            proofs: Vec::new(),
            time: T0,
        };
        let p = Payload::genesis(
            s.id(0),
            T0,
            Tlp::Amber,
            CaseOpened {
                title: "Operation Lantern".into(),
                reference: "NBI-2026-0042".into(),
                jurisdiction: Some("PH".into()),
                name: s.agencies[0].1.into(),
                country: "PH".into(),
            },
        );
        let g = Entry::sign(&s.agencies[0].0, &p);
        s.v.apply(&g, T0).expect("genesis");
        s.rows.push(Row::Entry(g));
        s
    }

    pub(crate) fn id(&self, who: usize) -> AgencyId {
        self.agencies[who].0.agency()
    }

    pub(crate) fn case(&self) -> CaseId {
        self.v.case().expect("opened")
    }

    /// The payload `who` would write next, like the reference node.
    pub(crate) fn payload(&mut self, who: usize, body: Body, extra_refs: &[EntryId]) -> Payload {
        self.time += 60_000;
        let me = self.id(who);
        let seq = self.v.next_seq(&me);
        let mut refs: Vec<EntryId> = extra_refs.to_vec();
        for (a, (_, id)) in &self.v.state().heads {
            if *a != me {
                refs.push(*id);
            }
        }
        refs.sort();
        refs.dedup();
        Payload {
            v: 1,
            keys: None,
            case: Some(self.case()),
            author: me,
            seq,
            prev: seq.checked_sub(1).and_then(|s| self.v.at(&me, s)),
            refs,
            time: self.time,
            tlp: Tlp::Amber,
            to: None,
            body,
        }
    }

    /// Writes and accepts an entry.
    pub(crate) fn write(&mut self, who: usize, body: Body) -> Entry {
        self.write_refs(who, body, &[])
    }

    pub(crate) fn write_refs(&mut self, who: usize, body: Body, refs: &[EntryId]) -> Entry {
        let p = self.payload(who, body, refs);
        let e = Entry::sign(&self.agencies[who].0, &p);
        self.v.apply(&e, self.time).expect("a valid entry");
        self.rows.push(Row::Entry(e.clone()));
        e
    }

    pub(crate) fn add(&mut self, who: usize, whom: usize, role: Role) -> Entry {
        let body = Body::MemberAdded(MemberAdded {
            agency: self.id(whom),
            name: self.agencies[whom].1.into(),
            country: self.agencies[whom].2.into(),
            role,
        });
        self.write(who, body)
    }

    pub(crate) fn register(&mut self, who: usize, n: u8, derived_from: Option<ItemId>) -> ItemId {
        let item = ItemId::new_v4([n; 16]);
        self.write(
            who,
            Body::EvidenceRegistered(EvidenceRegistered {
                item,
                exhibit: Some(format!("EX-{n}")),
                digests: Digests {
                    sha256: [n; 32],
                    sha1: Some([n; 20]),
                    md5: None,
                },
                size: 1000 + u64::from(n),
                media_type: "image/jpeg".into(),
                description: Some(format!("Exhibit number {n}, seized phone image")),
                acquired: Acquisition {
                    by: "Det. J. Cruz".into(),
                    at: self.time,
                    place: Some("Manila".into()),
                    method: Some("seizure".into()),
                    tool: None,
                },
                authority: Some("Warrant W-2026-17".into()),
                derived_from,
            }),
        );
        item
    }

    pub(crate) fn custody(&mut self, who: usize, item: ItemId, action: CustodyAction) -> Entry {
        let mut ev = CustodyEvent::new(item, action);
        ev.place = Some("Lab 2".into());
        ev.actor = Some("Examiner K.".into());
        if action == CustodyAction::Examined {
            ev.digest_matched = Some(true);
        }
        self.write(who, Body::Custody(ev))
    }

    pub(crate) fn transfer(&mut self, who: usize, item: ItemId, to: usize) -> Entry {
        let mut ev = CustodyEvent::new(item, CustodyAction::Transferred);
        ev.to = Some(self.id(to));
        ev.purpose = Some("forensic examination".into());
        self.write(who, Body::Custody(ev))
    }

    pub(crate) fn receive(&mut self, who: usize, transfer: &Entry, item: ItemId) -> Entry {
        let mut ev = CustodyEvent::new(item, CustodyAction::Received);
        ev.transfer = Some(transfer.id());
        ev.accepted = Some(true);
        ev.digest_matched = Some(true);
        self.write_refs(who, Body::Custody(ev), &[transfer.id()])
    }

    pub(crate) fn note(&mut self, who: usize, text: &str, item: Option<ItemId>) -> Entry {
        self.write(
            who,
            Body::Note(Note {
                text: text.into(),
                item,
            }),
        )
    }

    pub(crate) fn witness(&mut self, who: usize) -> Entry {
        let me = self.id(who);
        let heads = self
            .v
            .state()
            .heads
            .iter()
            .filter(|(a, _)| **a != me)
            .map(|(a, (s, id))| Head(*a, *s, *id))
            .collect();
        self.write(who, Body::Witness(Witness { heads }))
    }

    /// The rows as bundle elements.
    pub(crate) fn elements(&self) -> Vec<Element<'_>> {
        self.rows
            .iter()
            .map(|r| match r {
                Row::Entry(e) => Element::Entry(e.bytes()),
                Row::Withheld(w) => Element::Withheld(*w),
            })
            .collect()
    }

    /// The export time: a minute after the last entry.
    pub(crate) fn export_time(&self) -> u64 {
        self.time + 60_000
    }

    /// Exports as agency `who`.
    pub(crate) fn export(&self, who: usize, items: Option<&[ItemId]>) -> Vec<u8> {
        bundle::export(
            &self.agencies[who].0,
            &self.v,
            &self.elements(),
            &self.proofs,
            &[],
            self.export_time(),
            items,
        )
        .expect("exports")
    }
}

/// The case of the tests: three agencies, three items (one derived from
/// another), a transfer with its receipt, an examination, a note, a
/// witness and a seal.
pub(crate) struct Lantern {
    pub(crate) sim: Sim,
    pub(crate) phone: ItemId,
    pub(crate) image: ItemId,
    pub(crate) laptop: ItemId,
}

pub(crate) fn lantern() -> Lantern {
    let mut s = Sim::new();
    s.add(0, 1, Role::Investigator);
    s.add(0, 2, Role::Liaison);
    let phone = s.register(1, 1, None);
    let laptop = s.register(1, 2, None);
    let t = s.transfer(1, phone, 0);
    s.receive(0, &t, phone);
    s.custody(0, phone, CustodyAction::Examined);
    let image = s.register(0, 3, Some(phone));
    s.note(2, "MLA request sent to DE", None);
    s.witness(2);
    s.custody(1, laptop, CustodyAction::Sealed);
    s.note(1, "laptop imaged; keep sealed", Some(laptop));
    Lantern {
        sim: s,
        phone,
        image,
        laptop,
    }
}

/// Test key `n` (a seed of `n` repeated).
pub(crate) fn id(n: u8) -> Identity {
    Identity::from_seed([n; 32])
}

/// One agency: its root (the agency id), its key log, and the keys it
/// certified.
pub(crate) struct Agency {
    pub(crate) root: Identity,
    pub(crate) log: KeyLog,
}

impl Agency {
    /// Root `n`, next root `n + 100`.
    pub(crate) fn new(n: u8) -> Agency {
        let root = id(n);
        let s = KeyStatement::sign(&root, &StatementPayload::inception(&root, &id(n + 100), T0));
        Agency {
            log: KeyLog::from_inception(s).expect("inception"),
            root,
        }
    }

    pub(crate) fn agency(&self) -> AgencyId {
        self.root.agency()
    }

    pub(crate) fn state(&mut self, dt: u64, st: Statement) {
        let s = KeyStatement::sign(&self.root, &StatementPayload::after(&self.log, T0 + dt, st));
        self.log.append(s).expect("statement");
    }

    pub(crate) fn certify(&mut self, key: &Identity, role: KeyRole, not_after: Option<u64>) -> u64 {
        self.state(
            0,
            Statement::Certify(Certify {
                key: PublicKey::ed25519(key_of(key)),
                role,
                officer: (role == KeyRole::Officer).then(|| Officer {
                    name: "Insp. R. Santos".into(),
                    number: "PNP-0042".into(),
                }),
                not_before: T0,
                not_after,
            }),
        );
        self.log.len()
    }

    pub(crate) fn revoke(&mut self, key: &Identity, reason: RevokeReason, effective: u64) -> u64 {
        self.state(
            0,
            Statement::Revoke(Revoke {
                key: key_of(key),
                effective,
                reason,
            }),
        );
        self.log.len()
    }
}

/// Unnamed temporary files, as a node's and `custodia verify`'s.
pub(crate) struct TempFiles;

pub(crate) struct TempFile(std::fs::File);

impl SpillFile for TempFile {
    fn write_at(&mut self, offset: u64, bytes: &[u8]) -> std::io::Result<()> {
        std::os::unix::fs::FileExt::write_all_at(&self.0, bytes, offset)
    }

    fn read_at(&self, offset: u64, buf: &mut [u8]) -> std::io::Result<()> {
        std::os::unix::fs::FileExt::read_exact_at(&self.0, buf, offset)
    }
}

impl RecordSpill for TempFiles {
    fn open(&self) -> std::io::Result<Box<dyn SpillFile>> {
        Ok(Box::new(TempFile(tempfile::tempfile()?)))
    }
}
