#!/usr/bin/env python3
"""Generate the Custodia court bundle vectors (bundles.json).

Written from SPEC.md section 10 and the CDDL, independently of the Rust code,
with the keys of SPEC.md Appendix A.2 and the entry builders of generate.py.
Every byte is deterministic. For each vector the generator declares the
verdict and the problems at their source (element index or None, rule); the
independent checker check_bundles.py must agree before the file is written,
and the file then records the checker's full problem list (with the
consequences), which the Rust tests must reproduce exactly.

Usage:  python3 bundle_vectors.py [--out bundles.json]   (generate.py runs it too)
"""

import sys

sys.dont_write_bytecode = True

import argparse
import json
import os

import generate as g
from cbor_det import Raw, Tag, enc, head
import check_bundles
import keylog

FORMAT = "custodia-bundle-vectors/1"
T0 = g.T0
STEP = g.STEP


# ---------------------------------------------------------------------------
# A case, entry by entry


class Case:
    def __init__(self):
        self.rows = []  # ("entry", bytes, payload) or ("marker", (author, seq, id))
        self.last = {}  # label -> (seq, id)
        self.clock = T0 - STEP
        self.case = None

    def payload(self, label, body, refs=None, seq=None, prev=None, time=None, keys=None):
        if seq is None:
            seq = self.last[label][0] + 1 if label in self.last else 0
        if refs is None:  # the other authors' current heads, as the reference implementation writes
            refs = [i for lab, (_, i) in self.last.items() if lab != label]
        self.clock = time if time is not None else self.clock + STEP
        p = {"v": 1, "author": g.pub(label), "seq": seq, "refs": sorted(refs), "time": self.clock,
             "tlp": "AMBER", "body": body}
        if self.case is not None:
            p["case"] = self.case
        if seq > 0:
            p["prev"] = prev if prev is not None else self.last[label][1]
        if keys is not None:  # format version 2 (SPEC.md 5.7), citing `keys` statements
            p["v"] = 2
            p["keys"] = keys
        return p

    def add(self, label, body, signer=None, **kw):
        """signer: the key that signs (an officer or node key, format version 2)."""
        p = self.payload(label, body, **kw)
        b = g.build_entry(signer or label, p)
        eid = g.sha256(b)
        self.rows.append(("entry", b, p))
        self.last[label] = (p["seq"], eid)
        if self.case is None:
            self.case = eid
        return eid

    def entry(self, i):
        return self.rows[i][1]

    def id(self, i):
        r = self.rows[i]
        return g.sha256(r[1]) if r[0] == "entry" else r[1][2]


def lantern():
    """Operation Lantern: alpha opens and adds bravo and charlie; bravo
    registers a phone and transfers it to charlie, who receives and examines
    it and registers an image derived from it; alpha registers a laptop and
    writes a note; bravo witnesses the others' heads."""
    c = Case()
    c.add("alpha", g.case_opened())  # 0
    c.add("alpha", g.member_added("bravo", "investigator"))  # 1
    c.add("alpha", g.member_added("charlie", "examiner"))  # 2
    c.add("bravo", g.evidence("phone", exhibit="Exhibit number 1"))  # 3
    t = c.add("bravo", g.custody("phone", "transferred", to=g.pub("charlie")))  # 4
    c.add("charlie", g.custody("phone", "received", transfer=t, accepted=True))  # 5
    c.add("charlie", g.custody("phone", "examined", tool="extractor 7"))  # 6
    c.add("charlie", g.evidence("image", exhibit="Exhibit number 2", derived_from=g.item_id("phone")))  # 7
    c.add("alpha", g.evidence("laptop", exhibit="Exhibit number 3"))  # 8
    c.add("alpha", g.note("the laptop is encrypted"))  # 9
    heads = [(g.pub(lab), c.last[lab][0], c.last[lab][1]) for lab in ("alpha", "charlie")]
    c.add("bravo", g.witness(heads))  # 10
    return c


# ---------------------------------------------------------------------------
# Bundles


def members_of(rows):
    """The agencies list (SPEC.md 11.1): the genesis author and every agency a
    member-added names, with the name and country of the last one in order."""
    out, lead = {}, None
    for r in rows:
        if r[0] != "entry":
            continue
        (kind, b), = r[2]["body"].items()
        if kind == "case-opened":
            lead = r[2]["author"]
            out[lead] = (b["name"], b["country"])
        elif kind == "member-added" and b["agency"] != lead:
            out[b["agency"]] = (b["name"], b["country"])
    return out


def agency_list(members):
    return [{"name": n, "agency": a, "country": c} for a, (n, c) in sorted(members.items())]


def element(r):
    return r[1] if r[0] == "entry" else list(r[1])


def payload_map(case, rows, exporter, *, items=None, proofs=(), agencies=None, exported_at=None, case_id=None,
                keys=None, version=None):
    p = {"v": 1, "case": case_id if case_id is not None else case.case, "proofs": [list(x) for x in proofs],
         "entries": [element(r) for r in rows],
         "agencies": agency_list(members_of(case.rows)) if agencies is None else agencies,
         "exporter": g.pub(exporter), "exported-at": exported_at or case.clock + STEP}
    if items is not None:
        p["items"] = sorted(items)
    if keys is not None:  # format version 2 (SPEC.md 10.1): the key logs, as given
        p["v"] = version or 2  # 3: the logs are key histories
        p["keys"] = keys
    return p


# ---------------------------------------------------------------------------
# Key logs (SPEC.md 3.4), built with keylog.py's statement builders

KT0 = T0 - 30 * 86_400_000  # the key logs start a month before the case


def key_log(agency, statements, after=None):
    """A log of `agency`: [(signer label, st)] or [(signer label, st, time)],
    each at the next position, a minute apart unless its time is given,
    chained to the one before; with `after` (statements already made), the
    first one continues after the last of them (a branch)."""
    out = list(after or [])
    start = len(out)
    for seq, (signer, st, *time) in enumerate(statements, start):
        p = {"v": 1, "agency": g.pub(agency), "seq": seq, "time": time[0] if time else KT0 + seq * STEP, "st": st}
        if seq > 0:
            p["prev"] = g.sha256(out[-1])
        out.append(g.build_entry(signer, p, protected=keylog.key_header(g.pub(signer))))
    return out[start:]


def alpha_log():
    """Alpha: its inception, a profile under a longer name than the case
    gives it, an officer certified and then revoked (retired)."""
    return key_log("alpha", [
        ("alpha", keylog.root_st("inception", "alpha", "alpha-root-1")),
        ("alpha", keylog.profile("Alpha National Cybercrime Division", "PH")),
        ("alpha", keylog.officer("alpha-officer-1", "Maria Santos", "PNP-ACG-0412", not_before=KT0)),
        ("alpha", keylog.revoke("alpha-officer-1", "retired", effective=KT0 + 86_400_000)),
    ])


def bravo_log():
    """Bravo: its inception, a root rotation to the key it committed to, and
    a node key certified by the new root."""
    return key_log("bravo", [
        ("bravo", keylog.root_st("inception", "bravo", "bravo-root-1")),
        ("bravo-root-1", keylog.root_st("rotate-root", "bravo-root-1", "bravo-root-2")),
        ("bravo-root-1", keylog.certify("bravo-node-1", not_before=KT0)),
    ])


def by_agency(*logs):
    """Logs (with their agency label) in ascending order of agency."""
    return [log for _, log in sorted(logs, key=lambda x: g.pub(x[0]))]


def sign_bundle(signer, payload_bytes, kid=None):
    protected = check_bundles.bundle_header(kid or g.pub(signer))
    sig = g.ed_sign(signer, enc(["Signature1", protected, b"", payload_bytes]))
    return enc(Tag(18, [protected, {}, payload_bytes, sig]))


def export(case, rows=None, exporter="alpha", signer=None, **kw):
    rows = case.rows if rows is None else rows
    return sign_bundle(signer or exporter, enc(payload_map(case, rows, exporter, **kw)))


def marker(case, i):
    r = case.rows[i]
    return ("marker", (r[2]["author"], r[2]["seq"], g.sha256(r[1])))


def selective(case, items):
    """SPEC.md 10.4: the rows an export for `items` discloses; the rest as markers."""
    wanted, regs = set(items), {}
    for r in case.rows:
        (kind, b), = r[2]["body"].items()
        if kind == "evidence-registered":
            regs[b["item"]] = b
    keep_items = set(wanted)
    for i in wanted:
        x = regs.get(i, {})
        while "derived-from" in x:
            keep_items.add(x["derived-from"])
            x = regs.get(x["derived-from"], {})
    out = []
    for i, r in enumerate(case.rows):
        (kind, b), = r[2]["body"].items()
        show = (i == 0 or kind in ("member-added", "member-removed")
                or (kind == "evidence-registered" and b["item"] in keep_items)
                or (kind == "custody" and b["item"] in wanted))
        out.append(r if show else marker(case, i))
    return out


def edit(b, old, new):
    assert b.count(old) == 1, old
    return b.replace(old, new)


def resigned_entry(label, payload_bytes):
    """An entry over arbitrary payload bytes, validly signed by `label`."""
    return g.build_entry(label, None, payload_bytes=payload_bytes)


def wrap(raw_payload_bytes, signer="alpha"):
    return sign_bundle(signer, raw_payload_bytes)


# ---------------------------------------------------------------------------
# The vectors


def build():
    out = []

    def V(name, description, bundle, roots=None, error=None):
        """roots: the problems at their source, [(index or None, rule)], declared by hand."""
        out.append({"name": name, "description": description, "bundle": bundle, "roots": roots,
                    "error": error})

    L = lantern()
    n = len(L.rows)
    full = export(L)
    V("valid-whole-case", "Three agencies, three items, a transfer with its receipt, a witness; exported whole "
      "by the lead agency.", full, [])
    V("valid-selective-one-item", "The same case exported for one item (the phone): every other entry is a "
      "withheld marker (SPEC.md 10.4).", export(L, selective(L, [g.item_id("phone")]),
                                                items=[g.item_id("phone")]), [])
    V("valid-selective-derived-item", "Exported for the image, which derives from the phone: the phone's "
      "registration is disclosed, not its custody.",
      export(L, selective(L, [g.item_id("image")]), exporter="charlie", items=[g.item_id("image")]), [])

    # -- tampering ----------------------------------------------------------
    edited = edit(full, b"Exhibit number 1", b"exhibit number 1")
    V("edited-entry-byte", "One letter of element 3's exhibit label changed case after export: element 3 fails "
      "its signature, the entries that name it or follow it in bravo's chain are consequences, and the "
      "exporter's signature fails.", edited, [(3, "V8"), (None, "B1")])
    V("truncated", "The whole-case bundle cut in half.", full[:len(full) // 2], error="truncated")
    V("not-a-bundle-single-entry", "A single entry (the genesis) given instead of a bundle.", L.entry(0),
      error="not-a-bundle")
    V("empty-file", "An empty file.", b"", error="empty")
    rows = list(L.rows)
    rows[3], rows[4] = rows[4], rows[3]
    reordered = export(L, rows)
    reordered = reordered[:-64] + full[-64:]
    V("reordered-entries", "Elements 3 and 4 (bravo #0 and #1) swapped after export, the exporter's signature "
      "kept: element 3 is a sequence gap, what follows from it is a consequence, and B1 fails.",
      reordered, [(3, "V11"), (None, "B1")])
    payload = enc(payload_map(L, L.rows, "alpha"))
    V("re-signed-by-another-key", "The payload re-signed by mallory, who is not the exporter it names.",
      sign_bundle("mallory", payload), [(None, "B2")])
    V("re-signed-as-exporter-by-a-non-member", "The same entries exported and signed by mallory, who is not in "
      "the case's agencies list.", export(L, exporter="mallory"), [(None, "B4")])
    rows = L.rows[:4] + L.rows[5:]
    V("missing-entry", "Element 4 (bravo's transfer, bravo #1) left out by the exporter: charlie's receipt names "
      "an unknown id, and bravo's witness is a sequence gap.", export(L, rows), [(4, "V13"), (9, "V11")])

    # -- equivocation (question 8: counted once) ------------------------------
    other_p = dict(L.rows[4][2])
    other_p["body"] = g.note("a different history")
    other = g.build_entry("bravo", other_p)
    proof = sorted([L.entry(4), other], key=g.sha256)
    V("equivocating-author-proof", "Bravo signed two different entries as its #1; the bundle carries the proof. "
      "The record verifies and shows one conflict.", export(L, proofs=[proof]), [])
    rows = L.rows[:5] + [("entry", other, other_p)] + L.rows[5:]
    V("equivocating-author-in-entries", "Both of bravo's #1 entries in the entries list: the second fails V10 "
      "and is recorded as a conflict.", export(L, rows), [(5, "V10")])
    V("equivocation-in-entries-and-proofs", "Both of bravo's #1 entries in the entries list and their proof in "
      "proofs: one V10 problem, and the equivocation is one conflict, not two (SPEC.md 10.5 step 5).",
      export(L, rows, proofs=[proof]), [(5, "V10")])

    # -- B6: one problem per bad proof, in order -----------------------------
    G = Case()
    G.add("alpha", g.case_opened(title="Another case"))
    G.add("alpha", g.note("one"))
    other_case_p = G.payload("alpha", g.note("two"), seq=1, prev=G.id(0))
    foreign = sorted([G.entry(1), g.build_entry("alpha", other_case_p)], key=g.sha256)
    not_same_seq = sorted([L.entry(1), L.entry(2)], key=g.sha256)
    V("bad-proofs", "Three proofs: a valid one, one about another case, and one whose two entries are at "
      "different positions. Each bad proof is one B6 problem, in the order of proofs.",
      export(L, proofs=[proof, foreign, not_same_seq]), [(None, "B6"), (None, "B6")])

    # -- B7: one problem per item -------------------------------------------
    sel = selective(L, [g.item_id("phone")])
    V("selection-unregistered-items", "A selective bundle for the phone that also names two items no disclosed "
      "entry registers: one B7 problem for each.",
      export(L, sel, items=[g.item_id("phone"), g.item_id("ghost-1"), g.item_id("ghost-2")]),
      [(None, "B7"), (None, "B7")])

    # -- question 3: B3 -----------------------------------------------------
    V("case-mismatch", "The bundle names a case id that is not its first element's id; every element is "
      "accepted. B3 is a bundle-level problem: its index is null.", export(L, case_id=g.fake_id("case")),
      [(None, "B3")])
    rows = [("marker", (g.pub("alpha"), 0, L.case))] + L.rows[1:]
    V("genesis-as-marker", "The genesis replaced by a marker whose id is the case id: the marker fails V9 (no "
      "marker before a genesis), every later element is its consequence, and B3 fails, since a marker is not "
      "the genesis (SPEC.md 8.3: a genesis is never a marker).", export(L, rows), [(0, "V9"), (None, "B3")])
    rows = [("entry", b"\xd2\x84\x40\xa0\x40\x40", None)] + L.rows[1:]
    V("genesis-garbage", "The genesis replaced by a malformed entry: V2 at element 0, every later element is "
      "its consequence, and B3 fails.", export(L, rows), [(0, "V2"), (None, "B3")])

    # -- question 1: the agencies list --------------------------------------
    M = lantern()
    M.add("alpha", g.member_removed("charlie", reason="left the team"))  # 11
    V("removed-member-listed", "Charlie is removed at the end; the agencies list still names it, with the name "
      "and country of its member-added (SPEC.md 11.1): valid.", export(M), [])
    V("removed-member-exports", "The same case exported by charlie after its removal: B4 holds, since a "
      "removed member is in the agencies list.", export(M, exporter="charlie"), [])
    C = Case()
    C.add("alpha", g.case_opened())  # 0
    C.add("alpha", g.member_added("bravo", "liaison"))  # 1
    C.add("alpha", g.member_added("charlie", "examiner"))  # 2
    C.add("bravo", g.member_added("charlie", "examiner", country="AT"), refs=[C.id(1)])  # 3, concurrent with 2
    renamed = dict(g.member_added("charlie", "examiner")["member-added"])
    renamed["name"] = "Charlie Cyber Unit"
    C.add("alpha", {"member-added": renamed}, refs=[C.id(3)])  # 4
    C.add("alpha", g.member_removed("bravo"))  # 5
    V("agencies-concurrent-names", "Charlie is added twice concurrently with different countries, then "
      "renamed; bravo is removed. The list names each agency once, with the last member-added in the bundle's "
      "order, removed ones included: valid.", export(C), [])
    wrong = agency_list({**members_of(C.rows), g.pub("mallory"): ("Mallory Investigations", "SG")})
    wrong = [a for a in wrong if a["agency"] != g.pub("bravo")]
    for a in wrong:
        if a["agency"] == g.pub("charlie"):
            a["name"] = g.AGENCY["charlie"][0]
    V("agency-list-differences", "The list leaves out removed bravo, gives charlie the name of its first "
      "member-added (not the last), and adds mallory: one B5 problem per agency, in ascending order of agency id.",
      export(C, agencies=wrong), [(None, "B5")] * 3)

    # -- question 2: positions of refused elements ---------------------------
    bad_p = dict(L.rows[4][2])
    bad_p["body"] = {"custody": {"item": g.item_id("phone"), "action": "transferred"}}  # no "to": V6
    bad = g.build_entry("bravo", bad_p)
    rows = L.rows[:4] + [("entry", bad, None)] + L.rows[5:]
    V("position-unknown-schema", "Bravo's transfer (element 4) fails V6: its position is not read (SPEC.md "
      "10.5 step 3). Charlie's receipt names the real transfer's id, unknown (V13), and bravo's witness is a "
      "gap (V11): both are consequences of element 4, as is everything that follows from them.",
      export(L, rows), [(4, "V6")])
    mis_p = dict(L.rows[4][2])
    mis = g.build_entry("bravo", mis_p, kid=g.pub("alpha"))
    rows = L.rows[:4] + [("entry", mis, None)] + L.rows[5:]
    V("position-unknown-author-mismatch", "Element 4 claims bravo as author under alpha's kid (V7): its position "
      "is neither bravo's nor alpha's; the elements that need bravo #1 are its consequences.", export(L, rows),
      [(4, "V7")])
    B = Case()
    B.add("alpha", g.case_opened())  # 0
    B.add("alpha", g.member_added("bravo", "investigator"))  # 1
    B.add("alpha", g.member_added("charlie", "investigator"))  # 2
    B.add("bravo", g.note("b"), refs=[])  # 3: nothing admits bravo in its causal past
    B.add("charlie", g.note("c"), refs=[])  # 4: likewise
    B.add("alpha", g.note("both"))  # 5: refs bravo #0 and charlie #0
    first = min(B.id(3), B.id(4))
    V("unknown-reference-two-refused", "Bravo's and charlie's first entries both fail V14 (nothing in their "
      "causal past admits them); alpha's note refers to both. V13 names the first of its refs in ascending "
      f"order, and the consequence follows that element ({'3' if first == B.id(3) else '4'}).", export(B),
      [(3, "V14"), (4, "V14")])
    B.rows[3] = ("entry", edit(B.entry(3), b"\x61b", b"\x61B"), B.rows[3][2])
    rows = B.rows[:3] + [("entry", b"\xd2\x84\x40\xa0\x40\x40", None)] + B.rows[3:4]
    rows.append(("entry", g.build_entry("bravo", B.payload("bravo", g.note("b2"), seq=1, prev=B.id(3))), None))
    V("missing-position-before-undecodable", "Element 3 is garbage (V2, position unknown); bravo #0 (element 4) "
      "fails V8; bravo #1 at the end is a gap. Its missing position was refused, so it follows element 4, not "
      "the earlier garbage.", export(B, rows), [(3, "V2"), (4, "V8")])

    # -- question 5: simple values ------------------------------------------
    S = lantern()
    base = S.payload("alpha", g.note("X"))
    text = enc(g.note("X"))
    plb = enc(base)
    rows = list(S.rows)
    for raw in (b"\xf0", b"\xf7", b"\xf6"):  # simple(16), undefined, null in place of the note's text
        rows.append(("entry", resigned_entry("alpha", edit(plb, text, text[:-2] + raw)), None))
    V("simple-values", "Three entries at the end hold, as a note's text, simple(16), undefined and null: the "
      "first is malformed (V2), the second non-canonical (V3), the third a schema error (V6), each at its "
      "source (SPEC.md 4.2).", export(S, rows), [(11, "V2"), (12, "V3"), (13, "V6")])

    # V2 before V3: the structure is checked before the encoding (SPEC.md 8.2).
    good_entry = S.rows[9][1]  # alpha's note: d2 84 58 48 <protected> a0 <payload> 58 40 <signature>
    no_sig = good_entry[:-66] + b"\xf7"
    long_tag = b"\xd8\x12" + good_entry[1:]
    prot = enc({1: -8, 3: g.CONTENT_TYPE, 4: g.pub("alpha")})
    wide_prot = edit(prot, b"\x58\x20", b"\x59\x00\x20")
    not_map = enc(Tag(18, [wide_prot, {}, enc(["not", "a", "map"]), bytes(64)]))
    rows = list(S.rows) + [("entry", x, None) for x in (no_sig, long_tag, not_map)]
    V("structure-before-encoding", "Three entries at the end: one whose signature is undefined (V2: not a byte "
      "string, although undefined is also non-canonical), one whose tag 18 has a two-byte head (V3: it is tag "
      "18), and one with a long-form head in its protected header whose payload is an array (V2: the "
      "structure is checked before the encoding).", export(S, rows), [(11, "V2"), (12, "V3"), (13, "V2")])

    # -- question 6 and 7: reading -------------------------------------------
    base_p = payload_map(L, L.rows, "alpha")

    def tweak(f):
        p = dict(base_p)
        f(p)
        return p

    m = marker(L, 9)
    for name, desc, p in [
        ("marker-short-id", "A marker whose id is 31 bytes: the file is unreadable (schema); SPEC.md 8.3 step 1 "
         "never fires inside a bundle.", tweak(lambda p: p.__setitem__(
             "entries", p["entries"][:9] + [[m[1][0], m[1][1], m[1][2][:31]]] + p["entries"][10:]))),
        ("marker-negative-seq", "A marker whose seq is -1: unreadable (schema).", tweak(lambda p: p.__setitem__(
            "entries", p["entries"][:9] + [[m[1][0], -1, m[1][2]]] + p["entries"][10:]))),
        ("marker-four-items", "A marker of 4 items: unreadable (schema).", tweak(lambda p: p.__setitem__(
            "entries", p["entries"][:9] + [[m[1][0], m[1][1], m[1][2], 0]] + p["entries"][10:]))),
        ("items-not-ascending", "items in descending order: unreadable (schema).", tweak(lambda p: p.__setitem__(
            "items", sorted([g.item_id("phone"), g.item_id("laptop")], reverse=True)))),
        ("proof-of-three", "A proof of three entries: unreadable (schema); SPEC.md 14.2 step 1 never fails "
         "inside a readable bundle.", tweak(lambda p: p.__setitem__("proofs", [proof + [proof[0]]]))),
        ("unsupported-version", "A bundle of format version 4: unreadable.", tweak(lambda p: p.__setitem__("v", 4))),
        ("unknown-payload-key", "A payload with a key the format does not define.",
         tweak(lambda p: p.__setitem__("note", "x"))),
    ]:
        expect = {"unsupported-version": "unsupported-version"}.get(name, "schema")
        V(name, desc, wrap(enc(p)), error=expect)
    good = enc(base_p)
    # A non-shortest head early in the payload and a 31-byte marker id later: the first in file order wins.
    early = tweak(lambda p: p.__setitem__(
        "entries", p["entries"][:9] + [[m[1][0], m[1][1], m[1][2][:31]]] + p["entries"][10:]))
    early_b = enc(early)
    assert early_b[:3] == b"\xa7\x61v"
    V("two-read-errors", "The payload's \"v\" is written with a two-byte head (non-canonical) and a marker "
      "later has a 31-byte id (schema): the reader reports the first defect in file order.",
      wrap(early_b[:3] + b"\x18\x01" + early_b[4:]), error="non-canonical")
    V("trailing-bytes-and-damaged-payload", "A byte after the signature, and a damaged payload: the envelope "
      "is read first, so trailing bytes are reported.", wrap(good[:-4] + b"\xff" + good[-3:]) + b"\x00",
      error="trailing-bytes")
    sig_b = sign_bundle("alpha", good)
    V("protected-header-not-a-byte-string", "The protected header is a map instead of a byte string: not a "
      "Custodia bundle.", b"\xd2\x84\xa0" + sig_b[2 + 2 + 73:], error="not-a-bundle")

    # -- question 8: derived-from outside the causal past ----------------------
    D = Case()
    D.add("alpha", g.case_opened())  # 0
    D.add("alpha", g.member_added("bravo", "investigator"))  # 1
    D.add("alpha", g.evidence("laptop"))  # 2
    D.add("bravo", g.evidence("copy", derived_from=g.item_id("laptop")), refs=[D.id(1)])  # 3: laptop not in CP
    V("derived-from-outside-causal-past", "Bravo registers a copy derived from the laptop, whose registration "
      "is earlier in the bundle but not in the copy's causal past: V16 (SPEC.md 8.2 V16: registered in CP(E)).",
      export(D), [(3, "V16")])

    # -- question 9: a reveal later in the bundle ------------------------------
    rows = L.rows[:4] + [marker(L, 4)] + L.rows[5:] + [L.rows[4]]
    V("reveal-after-later-events", "Bravo's transfer is a marker at its position and its entry is appended at "
      "the end. The reveal is checked against the item's current record, where charlie already holds the "
      "phone: V16 (SPEC.md 10.5 step 2).", export(L, rows), [(11, "V16")])

    # -- version 2: key logs (SPEC.md 10.1 "keys", B8, B9) -----------------------
    A, Bv = alpha_log(), bravo_log()
    logs = by_agency(("alpha", A), ("bravo", Bv))
    v2 = export(L, keys=logs)
    V("valid-key-logs", "Format version 2: the whole case with the key logs of alpha (a profile under another "
      "name, an officer certified and then revoked) and bravo (a root rotation, a node key), ascending by "
      "agency; charlie's log is not held. Valid; each log replays from its inception.", v2, [])
    V("valid-no-key-logs", "Format version 2 with \"keys\" empty (the exporter holds no log): valid.",
      export(L, keys=[]), [])
    V("key-log-edited-after-export", "One letter of the officer's name in alpha's log changed after export: "
      "the statement's signature fails (K5), so alpha's log does not replay (B8), and the exporter's "
      "signature fails (B1).", edit(v2, b"Maria Santos", b"Maria Sandos"), [(None, "B1"), (None, "B8")])
    broken = list(A)
    broken[2] = edit(broken[2], b"Maria Santos", b"Maria Sandos")
    V("key-log-broken-statement", "Alpha's log carries a certification whose signature does not verify (K5), "
      "in a bundle the exporter signed as it is: B8 for alpha's log.",
      export(L, keys=by_agency(("alpha", broken), ("bravo", Bv))), [(None, "B8")])
    V("key-log-not-from-inception", "Bravo's log without its inception: its first statement is at position 1 "
      "(K7), so it does not replay from an inception (B8); its agency is still known and in order.",
      export(L, keys=by_agency(("alpha", A), ("bravo", Bv[1:]))), [(None, "B8")])
    mallory = key_log("mallory", [("mallory", keylog.root_st("inception", "mallory", "mallory-root-1"))])
    V("key-log-of-a-non-agency", "The key log of mallory, which the agencies list does not name, beside "
      "alpha's and bravo's: B9 (the log itself replays).",
      export(L, keys=by_agency(("alpha", A), ("bravo", Bv), ("mallory", mallory))), [(None, "B9")])
    V("key-log-duplicate-agency", "Alpha's log twice: the second is not after the first, B9.",
      export(L, keys=by_agency(("alpha", A), ("alpha", A), ("bravo", Bv))), [(None, "B9")])
    V("key-logs-not-ascending", "The two logs in descending order of agency: the second is B9.",
      export(L, keys=list(reversed(logs))), [(None, "B9")])
    V("key-log-bad-inception-unknown-agency", "Mallory's log without a valid first statement (its "
      "inception's signature broken): B8, and no B9, since a log whose first statement fails K1 to K5 has no "
      "known agency.", export(L, keys=by_agency(("alpha", A), ("bravo", Bv))
                              + [[mallory[0][:-1] + bytes([mallory[0][-1] ^ 1])]]), [(None, "B8")])
    # -- version 3: key histories, with what a recovery superseded (SPEC.md 10.1)
    # Alpha's first three statements; a thief of alpha's root certifies an
    # officer key of its own and signs a profile (positions 3, 4); alpha
    # recovers with a rotate-root by its pre-committed alpha-root-1 at 3 and
    # certifies a new officer with it at 4.
    base = key_log("alpha", [
        ("alpha", keylog.root_st("inception", "alpha", "alpha-root-1")),
        ("alpha", keylog.profile("Alpha National Cybercrime Division", "PH")),
        ("alpha", keylog.officer("alpha-officer-1", "Maria Santos", "PNP-ACG-0412", not_before=KT0)),
    ])
    thief = key_log("alpha", [
        ("alpha", keylog.officer("thief-officer", "A. Nobody", "X-0000", not_before=KT0)),
        ("alpha", keylog.profile("Alpha (under new management)", "PH")),
    ], after=base)
    recovered = key_log("alpha", [
        ("alpha-root-1", keylog.root_st("rotate-root", "alpha-root-1", "alpha-root-2"), KT0 + 5 * STEP),
        ("alpha-root-1", keylog.officer("alpha-officer-2", "Jose Reyes", "PNP-ACG-0519", not_before=KT0),
         KT0 + 6 * STEP),
    ], after=base)
    history = base + thief + recovered
    V("v3-recovery-with-what-it-superseded", "Format version 3: alpha's key history carries the two statements "
      "a thief of its root signed at positions 3 and 4 (an officer key of its own, a profile), then the "
      "recovery by the pre-committed alpha-root-1 at 3, which supersedes them, and an officer the new root "
      "certified. Valid: alpha's log is 5 statements, rooted in alpha-root-1, with 2 superseded.",
      export(L, keys=by_agency(("alpha", history), ("bravo", Bv)), version=3), [])
    V("v3-superseded-after-the-recovery", "Format version 3: the thief's first statement comes after the "
      "recovery in alpha's history (a node learnt it after the recovery): superseded as it arrives. Valid, "
      "1 superseded.",
      export(L, keys=by_agency(("alpha", base + recovered + thief[:1]), ("bravo", Bv)), version=3), [])
    V("v3-plain-logs", "Format version 3 whose histories hold no superseded statement (a plain log is a "
      "history): valid, as in version 2.", export(L, keys=logs, version=3), [])
    V("v3-history-with-a-duplicate", "Format version 3: a statement of alpha's history twice. A history takes "
      "each statement as new, as a recovery or as superseded, never as a duplicate: B8.",
      export(L, keys=by_agency(("alpha", base + base[2:] + recovered), ("bravo", Bv)), version=3),
      [(None, "B8")])
    V("v3-superseded-twice", "Format version 3: the thief's first statement twice after the recovery. The "
      "second gives bytes the history gave before (a superseded statement is a duplicate too): B8.",
      export(L, keys=by_agency(("alpha", base + recovered + thief[:1] + thief[:1]), ("bravo", Bv)), version=3),
      [(None, "B8")])
    V("v3-history-refused-statement", "Format version 3: the thief's second statement after the recovery. It "
      "chains to the thief's first, which the recovery superseded, not to the recovery (K8): refused, B8.",
      export(L, keys=by_agency(("alpha", base + recovered[:1] + thief), ("bravo", Bv)), version=3),
      [(None, "B8")])
    V("v2-log-with-a-recovery", "Format version 2 with alpha's key history as its log: in version 2 each "
      "statement must be the log's next, and the recovery is not (B8). Only version 3 carries histories.",
      export(L, keys=by_agency(("alpha", history), ("bravo", Bv))), [(None, "B8")])

    keyed = payload_map(L, L.rows, "alpha", keys=logs)
    for name, desc, p in [
        ("keys-in-version-1", "A version 1 payload with \"keys\": unreadable (schema; \"keys\" is a member of "
         "version 2 only).", dict(keyed, v=1)),
        ("version-2-without-keys", "A version 2 payload without \"keys\": unreadable (schema).",
         {k: x for k, x in keyed.items() if k != "keys"}),
        ("key-log-empty", "A version 2 payload whose \"keys\" holds an empty log: unreadable (schema).",
         dict(keyed, keys=logs + [[]])),
    ]:
        V(name, desc, wrap(enc(p)), error="schema")

    # -- entries of format version 2 (SPEC.md 5.7), checked against "keys" -----
    alpha2 = key_log("alpha", [
        ("alpha", keylog.root_st("inception", "alpha", "alpha-root-1")),
        ("alpha", keylog.officer("alpha-officer-1", "Maria Santos", "PNP-ACG-0412", not_before=KT0)),
        ("alpha", keylog.certify("alpha-node-1", not_before=KT0)),
    ])
    bravo2 = key_log("bravo", [
        ("bravo", keylog.root_st("inception", "bravo", "bravo-root-1")),
        ("bravo", keylog.officer("bravo-officer-1", "Jan de Vries", "NHT-DF-0193", not_before=KT0)),
    ])
    K = Case()
    K.add("alpha", g.case_opened(), signer="alpha-officer-1", keys=3)  # 0
    K.add("alpha", g.member_added("bravo", "investigator"), signer="alpha-officer-1", keys=3)  # 1
    bn = K.add("bravo", g.note("phone imaged"), signer="bravo-officer-1", keys=2)  # 2
    K.add("alpha", g.witness([(g.pub("bravo"), 0, bn)]), signer="alpha-node-1", keys=3)  # 3
    V("v2-entries-with-key-logs", "A case of format version 2 (alpha's officer opens it and adds bravo, "
      "bravo's officer writes a note, alpha's node key witnesses it), exported by alpha with both agencies' "
      "key logs: every entry is checked against its author's log (V20 to V24, SPEC.md 10.5 step 2). Valid.",
      export(K, keys=by_agency(("alpha", alpha2), ("bravo", bravo2))), [])
    V("v2-entries-without-a-key-log", "The same case exported with alpha's key log only: bravo's note cannot "
      "be checked (V20 key-log-pending), and alpha's witness of it is a consequence.",
      export(K, keys=[alpha2]), [(2, "V20")])

    # -- entries by keys revoked after their cited prefix (SPEC.md 10.6) -----
    # Alpha's log: its inception, the lead officer (alpha-officer-2), the
    # officer whose key is revoked later (alpha-officer-1), alpha's node key;
    # position 4, written after the case, revokes alpha-officer-1. Bravo's:
    # its inception, an officer, a node key. Every entry cites the whole log
    # its author held (alpha 4, bravo 3), so the revocation is after the
    # prefix, except in `revoked-key-in-cited-prefix`.
    def alpha_revoking(reason, effective, key="alpha-officer-1", at=T0 + 9 * STEP // 2):
        return key_log("alpha", [
            ("alpha", keylog.root_st("inception", "alpha", "alpha-root-1")),
            ("alpha", keylog.officer("alpha-officer-2", "Ana Reyes", "PNP-ACG-0077", not_before=KT0)),
            ("alpha", keylog.officer("alpha-officer-1", "Maria Santos", "PNP-ACG-0412", not_before=KT0)),
            ("alpha", keylog.certify("alpha-node-1", not_before=KT0)),
            ("alpha", keylog.revoke(key, reason, effective=effective), at),
        ])

    bravo3 = key_log("bravo", [
        ("bravo", keylog.root_st("inception", "bravo", "bravo-root-1")),
        ("bravo", keylog.officer("bravo-officer-1", "Jan de Vries", "NHT-DF-0193", not_before=KT0)),
        ("bravo", keylog.certify("bravo-node-1", not_before=KT0)),
    ])

    def revoked_case(witness="bravo", heads_only=False, alpha_keys=4):
        """0 alpha-officer-2 opens the case (T0) and 1 adds bravo (T0 + 1 min);
        2 bravo's officer writes a note (T0 + 2 min); 3 alpha-officer-1
        registers the phone (T0 + 3 min, the entry in question); 4 a witness
        at T0 + 4 min: by bravo's node key, naming alpha #2 (element 3) as a
        head and in refs, or by alpha's own node key (its prev is element 3,
        its head bravo #0)."""
        R = Case()
        R.add("alpha", g.case_opened(), signer="alpha-officer-2", keys=4)  # 0
        R.add("alpha", g.member_added("bravo", "investigator"), signer="alpha-officer-2", keys=4)  # 1
        R.add("bravo", g.note("phone seized at the suspect's flat"), signer="bravo-officer-1", keys=3)  # 2
        e = R.add("alpha", g.evidence("phone", exhibit="Exhibit number 1"), signer="alpha-officer-1",
                  keys=alpha_keys)  # 3
        if witness == "bravo":
            refs = [R.id(1)] if heads_only else None
            R.add("bravo", g.witness([(g.pub("alpha"), 2, e)]), signer="bravo-node-1", keys=3, refs=refs)  # 4
        else:
            R.add("alpha", g.witness([(g.pub("bravo"), 0, R.id(2))]), signer="alpha-node-1", keys=4)  # 4
        return R

    def revoked(R, log, **kw):
        return export(R, keys=by_agency(("alpha", log), ("bravo", bravo3)), **kw)

    E_T, W_T = T0 + 3 * STEP, T0 + 4 * STEP  # the registration's and the witness's times
    R = revoked_case()
    V("revoked-key-witnessed-before-effective", "Alpha's log, after the case, reports alpha-officer-1's key "
      "compromised from one millisecond after bravo's witness (by bravo's node key) of the phone's "
      "registration that key signed: the witness shows the entry existed before the compromise. Valid, no "
      "conflict (SPEC.md 10.6).", revoked(R, alpha_revoking("compromised", W_T + 1)), [])
    V("revoked-key-witnessed-after-effective", "As revoked-key-witnessed-before-effective, but the compromise "
      "is effective from 30 seconds after the registration, before bravo's witness: the registration, dated "
      "before the compromise, is one conflict key-reported-compromised (a thief can backdate). Valid, with "
      "conflicts.", revoked(R, alpha_revoking("compromised", E_T + STEP // 2)), [])
    V("revoked-key-witnessed-at-effective", "The compromise is effective at exactly the witness's time: a "
      "witness counts only when dated strictly before effective, so the registration is a conflict "
      "key-reported-compromised.", revoked(R, alpha_revoking("compromised", W_T)), [])
    V("revoked-key-lost", "As revoked-key-witnessed-after-effective with the reason lost: lost is read as "
      "compromised, one conflict key-reported-compromised.", revoked(R, alpha_revoking("lost", E_T + STEP // 2)),
      [])
    V("revoked-key-witnessed-only-by-own-agency", "The witness is by alpha's own node key, dated before the "
      "compromise, and its prev reaches the registration: only a witness of another agency counts, so the "
      "registration is a conflict key-reported-compromised.",
      revoked(revoked_case(witness="alpha"), alpha_revoking("compromised", W_T + 1)), [])
    V("revoked-key-witness-withheld", "As revoked-key-witnessed-before-effective, but bravo's witness is a "
      "withheld marker: its time and refs are not disclosed, so it does not count, and the registration is a "
      "conflict key-reported-compromised.",
      revoked(R, alpha_revoking("compromised", W_T + 1), rows=R.rows[:4] + [marker(R, 4)]), [])
    V("revoked-key-witness-head-only", "Bravo's witness, dated before the compromise, names the registration as "
      "a head but refers only to alpha's member-added: heads do not enter the causal past (SPEC.md 13), so the "
      "registration is not in the witness's causal past and is a conflict key-reported-compromised.",
      revoked(revoked_case(heads_only=True), alpha_revoking("compromised", W_T + 1)), [])
    X = Case()
    X.add("alpha", g.case_opened(), signer="alpha-officer-2", keys=4)  # 0
    X.add("alpha", g.member_added("bravo", "investigator"), signer="alpha-officer-2", keys=4)  # 1
    X.add("alpha", g.evidence("phone", exhibit="Exhibit number 1"), signer="alpha-officer-1", keys=4)  # 2
    X.add("bravo", g.note("phone seen at alpha's lab"), signer="bravo-officer-1", keys=3)  # 3: refs element 2
    X.add("bravo", g.witness([(g.pub("alpha"), 1, X.id(1))]), signer="bravo-node-1", keys=3,
          refs=[X.id(1)])  # 4: prev element 3, refs alpha #1 only
    V("revoked-key-witness-through-reveal", "Bravo's note (bravo #0) refers to the registration by "
      "alpha-officer-1, and bravo's witness, dated before the compromise, reaches the registration only through "
      "that note. The note is a marker at its position and its entry is revealed at the end: when the replay "
      "accepted the witness, the note's refs were unknown, so the registration was not in the witness's causal "
      "past, and it is a conflict key-reported-compromised (SPEC.md 10.6).",
      revoked(X, alpha_revoking("compromised", T0 + 4 * STEP + 1, at=T0 + 5 * STEP),
              rows=X.rows[:3] + [marker(X, 3)] + X.rows[4:] + [X.rows[3]]), [])
    V("revoked-key-retired-before-effective", "Alpha's log retires alpha-officer-1's key from one millisecond "
      "after the registration it signed: a retired key's holder's dates are believed, so no conflict.",
      revoked(R, alpha_revoking("retired", E_T + 1)), [])
    V("revoked-key-retired-at-effective", "The retirement is effective at exactly the registration's time: "
      "one conflict key-retired (dated at or after effective; for a retirement no witness is looked for).",
      revoked(R, alpha_revoking("retired", E_T)), [])
    R22 = revoked_case(alpha_keys=5)
    V("revoked-key-in-cited-prefix", "The registration cites 5 statements of alpha's log, the revocation "
      "(retired, effective after the registration) among them: V22, whatever the reason and effective time; "
      "bravo's witness of it is a consequence.",
      revoked(R22, alpha_revoking("retired", E_T + 1, at=T0 + 5 * STEP // 2)), [(3, "V22")])

    # The order of the conflicts: the case state's, then the key conflicts in
    # the order the entries were accepted.
    O = Case()
    O.add("alpha", g.case_opened(), signer="alpha-officer-2", keys=4)  # 0
    O.add("alpha", g.member_added("bravo", "investigator"), signer="alpha-officer-2", keys=4)  # 1
    O.add("bravo", g.note("phone seized"), signer="bravo-officer-1", keys=3)  # 2
    O.add("alpha", g.evidence("phone", exhibit="Exhibit number 1"), signer="alpha-officer-1", keys=4)  # 3
    O.add("alpha", g.custody("phone", "examined", tool="extractor 7", digest_matched=False),
          signer="alpha-officer-2", keys=4)  # 4
    O.add("alpha", g.witness([(g.pub("bravo"), 0, O.id(2))]), signer="alpha-node-1", keys=4)  # 5
    both = key_log("alpha", [
        ("alpha", keylog.root_st("inception", "alpha", "alpha-root-1")),
        ("alpha", keylog.officer("alpha-officer-2", "Ana Reyes", "PNP-ACG-0077", not_before=KT0)),
        ("alpha", keylog.officer("alpha-officer-1", "Maria Santos", "PNP-ACG-0412", not_before=KT0)),
        ("alpha", keylog.certify("alpha-node-1", not_before=KT0)),
        ("alpha", keylog.revoke("alpha-node-1", "retired", effective=T0 + 5 * STEP), T0 + 6 * STEP),
        ("alpha", keylog.revoke("alpha-officer-1", "compromised", effective=T0), T0 + 6 * STEP),
    ])
    V("revoked-keys-conflict-order", "Alpha-officer-1 (compromised from T0, no witness of another agency) "
      "registers the phone (element 3), alpha-officer-2 records an examination whose digest did not match "
      "(element 4), and alpha's node key, retired from T0 + 5 min, witnesses at T0 + 5 min (element 5): the "
      "conflicts are digest-mismatch (the case state's), then key-reported-compromised and key-retired, in the "
      "order their entries were accepted, although the node key's revocation comes first in the log.",
      export(O, keys=by_agency(("alpha", both), ("bravo", bravo3))), [])

    return out


def finish(raw):
    vectors = []
    for v in raw:
        got = check_bundles.outcome(v["bundle"])
        if v["error"] is not None:
            assert got == {"expect": "unreadable", "error": v["error"]}, (v["name"], got)
        else:
            roots = [(p["index"], p["rule"]) for p in got.get("problems", []) if p["caused_by"] is None]
            assert got["expect"] != "unreadable" and roots == v["roots"], (v["name"], got)
        item = {"name": v["name"], "description": v["description"], "bundle": v["bundle"].hex()}
        item.update(got)
        vectors.append(item)
    names = [v["name"] for v in vectors]
    assert len(names) == len(set(names)), "duplicate vector names"
    return {"format": FORMAT,
            "description": "Court bundles (SPEC.md section 10), valid and damaged, with the expected outcome. "
                           "Made by bundle_vectors.py; see README.md.",
            "keys": {lab: g.pub(lab).hex() for lab in ("alpha", "bravo", "charlie", "mallory")},
            "exported_at_note": "each bundle is verified as of its own exported-at",
            "vectors": vectors}


def write(path):
    doc = finish(build())
    text = json.dumps(doc, indent=1, sort_keys=True, ensure_ascii=True) + "\n"
    with open(path, "w", encoding="ascii", newline="\n") as f:
        f.write(text)
    print(f"wrote {len(doc['vectors'])} bundle vectors to {path}")


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default=os.path.join(g.HERE, "bundles.json"))
    write(ap.parse_args().out)


if __name__ == "__main__":
    main()
