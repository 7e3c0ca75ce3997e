#!/usr/bin/env python3
"""Generate the Custodia entry conformance vectors (entries.json).

Written from spec/custodia.cddl and the validation rules V1..V24, independently
of the Rust implementation. Entries of format version 2 (SPEC.md 5.7) are
signed by officer and node keys certified in their author's key log (SPEC.md
3.4); those vectors carry the key logs, built with keylog.py's statement
builders. Output is deterministic: Ed25519 signatures are
deterministic, every time and key is fixed, and the JSON is written with sorted
keys. Before writing, every vector is replayed through validate.py (an
independent Python validator of V1..V24) and must give exactly the expected
result, so a mistake in building a vector fails the run.

Also writes bundles.json with bundle_vectors.py (court bundles, SPEC.md 10).

Usage:  python3 generate.py [--out entries.json] [--bundles-out bundles.json] [--no-check]
Needs:  cbor2, cryptography (see requirements.txt)
"""

import sys

sys.dont_write_bytecode = True  # keep spec/vectors free of __pycache__

import argparse
import hashlib
import json
import os
import struct

import cbor2
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from cbor_det import Indef, Pairs, Raw, Tag, WideBstr, WideUint, enc

HERE = os.path.dirname(os.path.abspath(__file__))

FORMAT = "custodia-entry-vectors/1"
CONTENT_TYPE = "application/custodia-entry+cbor"
T0 = 1_795_000_000_000  # 2026-11-18T11:06:40Z: the first entry of every vector
STEP = 60_000  # one minute between consecutive entries
SKEW = 300_000
KT0 = T0 - 30 * 86_400_000  # the key logs of the version 2 vectors start a month before the case
MAX_ENTRY = 65_536
L = 2**252 + 27742317777372353535851937790883648493  # Ed25519 group order
APPENDIX_B_ID = "7ce308290883f5db2f3bab3d5fb42414d5017ebe2e209e6efb7c08efe032e6b8"  # SPEC.md Appendix B

# ---------------------------------------------------------------------------
# Keys


def seed(label: str) -> bytes:
    return hashlib.sha256(b"custodia test key " + label.encode()).digest()


_PUB = {}


def pub(label: str) -> bytes:
    if label not in _PUB:
        sk = Ed25519PrivateKey.from_private_bytes(seed(label))
        _PUB[label] = sk.public_key().public_bytes(
            serialization.Encoding.Raw, serialization.PublicFormat.Raw
        )
    return _PUB[label]


def ed_sign(label: str, msg: bytes) -> bytes:
    return Ed25519PrivateKey.from_private_bytes(seed(label)).sign(msg)


def mixed_order_r(tbs: bytes, default_sig: bytes) -> bytes:
    """alpha's signature of tbs with a point of order 8 added to R (S recomputed)."""
    from validate import B, L as ORDER, _add, _decompress, _scalar_mult, is_small_order
    h = hashlib.sha512(seed("alpha")).digest()
    a = int.from_bytes(h[:32], "little")
    a &= (1 << 254) - 8
    a |= 1 << 254
    r = int.from_bytes(hashlib.sha512(h[32:] + tbs).digest(), "little") % ORDER
    t = _decompress(bytes.fromhex(TORSION_8))
    assert t is not None and _scalar_mult(4, t) != (0, 1) and _scalar_mult(8, t) == (0, 1)
    x, y = _add(_scalar_mult(r, B), t)
    big_r = (y | ((x & 1) << 255)).to_bytes(32, "little")
    assert not is_small_order(big_r)
    k = int.from_bytes(hashlib.sha512(big_r + pub("alpha") + tbs).digest(), "little") % ORDER
    return big_r + ((r + k * a) % ORDER).to_bytes(32, "little")


# A point of order 8 (canonical encoding).
TORSION_8 = "26e8958fc2b227b045c3f489f2ef98f0d5dfac05d3c63339b13802886d53fc05"

# The identity point (order 1, so small order); canonical encoding y = 1.
SMALL_ORDER_POINT = bytes([1]) + bytes(31)

AGENCY = {
    "alpha": ("Alpha Cybercrime Division", "PH"),
    "bravo": ("Bravo Digital Forensics Laboratory", "NL"),
    "charlie": ("Charlie Federal Police", "DE"),
    "mallory": ("Mallory Investigations", "SG"),
}


def det(value) -> bytes:
    """Deterministic CBOR, cross-checked against cbor2's canonical mode."""
    ours = enc(value)
    theirs = cbor2.dumps(value, canonical=True)
    if ours != theirs:
        raise AssertionError(f"encoders disagree: {ours.hex()} vs {theirs.hex()}")
    return ours


def sha256(b: bytes) -> bytes:
    return hashlib.sha256(b).digest()


def item_id(label: str) -> bytes:
    """A fixed RFC 9562 version-4-shaped UUID for an evidence item."""
    b = bytearray(sha256(b"custodia test item " + label.encode())[:16])
    b[6] = (b[6] & 0x0F) | 0x40
    b[8] = (b[8] & 0x3F) | 0x80
    return bytes(b)


def fake_id(label: str) -> bytes:
    """An entry id that no entry in any vector has."""
    return sha256(b"custodia unknown entry " + label.encode())


# ---------------------------------------------------------------------------
# Bodies


def case_opened(label="alpha", title="Operation Lantern", reference="ACD-2026-0417", jurisdiction="PH"):
    name, country = AGENCY[label]
    body = {"title": title, "reference": reference, "name": name, "country": country}
    if jurisdiction is not None:
        body["jurisdiction"] = jurisdiction
    return {"case-opened": body}


def member_added(label, role, country=None):
    name, c = AGENCY[label]
    return {"member-added": {"agency": pub(label), "name": name, "country": country or c, "role": role}}


def member_removed(label, reason=None):
    b = {"agency": pub(label)}
    if reason is not None:
        b["reason"] = reason
    return {"member-removed": b}


def note(text, item=None):
    b = {"text": text}
    if item is not None:
        b["item"] = item
    return {"note": b}


def evidence(label, exhibit=None, derived_from=None, all_digests=True):
    content = b"evidence content " + label.encode()
    digests = {"sha256": sha256(content)}
    if all_digests:
        digests["sha1"] = hashlib.sha1(content).digest()
        digests["md5"] = hashlib.md5(content).digest()
    b = {
        "item": item_id(label),
        "digests": digests,
        "size": 1_000_204_886_016,
        "media-type": "application/octet-stream",
        "acquired": {"by": "Team 3", "at": T0 - 86_400_000, "place": "Makati City", "tool": "write blocker WB-7"},
    }
    if exhibit is not None:
        b["exhibit"] = exhibit
    if derived_from is not None:
        b["derived-from"] = derived_from
    return {"evidence-registered": b}


def custody(item_label, action, **kw):
    b = {"item": item_id(item_label), "action": action}
    for k, v in kw.items():
        b[k.replace("_", "-")] = v
    return {"custody": b}


def witness(heads):
    return {"witness": {"heads": sorted([list(h) for h in heads], key=lambda h: h[0])}}


def retracted(entry, reason):
    return {"retracted": {"entry": entry, "reason": reason}}


def handling_changed(entry, tlp, to=None):
    b = {"entry": entry, "tlp": tlp}
    if to is not None:
        b["to"] = to
    return {"handling-changed": b}


def agencies(*labels):
    return sorted(pub(x) for x in labels)


# ---------------------------------------------------------------------------
# Entries


def sig_structure(protected: bytes, payload: bytes) -> bytes:
    return det(["Signature1", protected, b"", payload])


ALG_EDDSA = -8  # format version 1 (SPEC.md 5.2)
ALG_ED25519 = -19  # format version 2 (SPEC.md 5.7, RFC 9864)


def protected_header(kid: bytes, alg: int = ALG_EDDSA) -> dict:
    return {1: alg, 3: CONTENT_TYPE, 4: kid}


def alg_of(payload) -> int:
    """The alg of an entry's payload: -19 when its "v" is 2 (SPEC.md 5.7), else -8."""
    v = payload.get("v") if isinstance(payload, dict) else None
    return ALG_ED25519 if type(v) is int and v == 2 else ALG_EDDSA


def build_entry(signer, payload, *, kid=None, protected=None, protected_bytes=None,
                payload_bytes=None, unprotected=None, sign=None, outer=None):
    """Build the COSE_Sign1 bytes of an entry.

    signer: key label whose seed signs; payload: the payload map (ignored if
    payload_bytes is given); the header is that of the payload's format
    version (alg -19 when "v" is 2), with kid = the signer's key unless kid
    is given; protected / protected_bytes: header override;
    sign(tbs, default_sig) -> signature override; outer(p, u, pl, sig) -> bytes
    override of the whole entry encoding.
    """
    if kid is None:
        kid = pub(signer)
    if protected_bytes is None:
        hdr = protected if protected is not None else protected_header(kid, alg_of(payload))
        protected_bytes = det(hdr)
    if payload_bytes is None:
        payload_bytes = det(payload)
    tbs = sig_structure(protected_bytes, payload_bytes)
    sig = ed_sign(signer, tbs)
    if sign is not None:
        sig = sign(tbs, sig)
    u = {} if unprotected is None else unprotected
    if outer is not None:
        return outer(protected_bytes, u, payload_bytes, sig)
    if unprotected is None:
        return det(cbor2.CBORTag(18, [protected_bytes, {}, payload_bytes, sig]))
    return enc(Tag(18, [protected_bytes, u, payload_bytes, sig]))


class Vector:
    """Builds one vector: a sequence of entries fed to a fresh validator."""

    def __init__(self, name, description):
        self.name = name
        self.description = description
        self.feed = []  # hex strings or withheld markers
        self.ids = []
        self.labels = set()
        self.next_seq = {}
        self.last = {}  # label -> id of its latest entry (accepted or withheld)
        self.case = None
        self.clock = T0 - STEP
        self.failing = None
        self.extra_keys = {}
        # ids a valid vector's state reports as concurrent with a removal
        # (SPEC.md 11.1), in author order, then sequence order
        self.after_removal = []
        # Key logs (SPEC.md 3.4), by agency label: every statement in the
        # order fed, and the ids of the statements the log holds (a
        # superseding recovery replaces some); `held` caps how many of an
        # agency's fed statements the validator is given.
        self.logs = {}
        self.chain = {}
        self.held = {}

    # -- key logs -----------------------------------------------------------
    def state(self, agency, signer, st, seq=None):
        """A key statement of `agency`'s log, signed by `signer`, at the next
        position (or at `seq`, for a recovery), a minute after the one before
        it. Returns its position."""
        import keylog  # lazily: keylog.py imports this module
        log = self.logs.setdefault(agency, [])
        chain = self.chain.setdefault(agency, [])
        seq = len(chain) if seq is None else seq
        p = {"v": 1, "agency": pub(agency), "seq": seq, "time": KT0 + len(log) * STEP, "st": st}
        if seq > 0:
            p["prev"] = chain[seq - 1]
        b = build_entry(signer, p, protected=keylog.key_header(pub(signer)))
        log.append(b)
        del chain[seq:]
        chain.append(sha256(b))
        self.labels.add(signer)
        (kind, body), = st.items()
        named = body.get("root", body.get("key"))
        if named is not None:  # the key the statement names, listed in the vector's keys
            self.labels.add(KEY_LABELS[named["pub"] if isinstance(named, dict) else named])
        return seq

    def log_len(self, agency):
        return len(self.chain.get(agency, []))

    # -- payloads ---------------------------------------------------------
    def payload(self, label, body, refs=(), tlp="GREEN", to=None, time=None, seq=None, prev=None, keys=None):
        """keys: None for format version 1; else format version 2, citing the
        first `keys` statements of the author's key log (SPEC.md 5.7)."""
        self.labels.add(label)
        genesis = "case-opened" in body and self.case is None
        if seq is None:
            seq = self.next_seq.get(label, 0)
        if time is None:
            time = self.clock + STEP
        p = {"v": 1, "author": pub(label), "seq": seq, "refs": sorted(refs),
             "time": time, "tlp": tlp, "body": body}
        if not genesis:
            p["case"] = self.case
        if seq > 0:
            p["prev"] = prev if prev is not None else self.last[label]
        if to is not None:
            p["to"] = to
        if keys is not None:
            p["v"] = 2
            p["keys"] = keys
        return p

    def _advance(self, label, payload, eid):
        self.next_seq[label] = payload["seq"] + 1
        self.last[label] = eid
        self.clock = max(self.clock, payload["time"])
        if self.case is None:
            self.case = eid

    # -- feeding ----------------------------------------------------------
    def add(self, label, body, **kw):
        """A valid entry: fed, and the author's chain advances. Returns its id."""
        bkw = {k: kw.pop(k) for k in list(kw) if k in ("sign_as", "sign")}
        p = self.payload(label, body, **kw)
        self.labels.add(bkw.get("sign_as", label))
        b = build_entry(bkw.get("sign_as", label), p, sign=bkw.get("sign"))
        eid = sha256(b)
        self.feed.append(b.hex())
        self.ids.append(eid.hex())
        self._advance(label, p, eid)
        return eid

    def again(self, eid_hex_index):
        """Feed an already-fed entry again (a duplicate)."""
        self.feed.append(self.feed[eid_hex_index])
        self.ids.append(self.ids[eid_hex_index])

    def withhold(self, label, body, **kw):
        """An entry the receiver may not see: fed as a withheld marker only."""
        p = self.payload(label, body, **kw)
        b = build_entry(label, p)
        eid = sha256(b)
        self.feed.append({"withheld": [pub(label).hex(), p["seq"], eid.hex()]})
        self.ids.append(eid.hex())
        self._advance(label, p, eid)
        return eid

    def fail(self, label, body=None, *, mutate=None, raw=None, entry_kw=None, signer=None, **kw):
        """The failing entry. mutate(payload) edits the payload map before
        encoding; entry_kw is passed to build_entry; raw gives final bytes."""
        assert self.failing is None
        if signer is not None:
            self.labels.add(signer)
        if raw is None:
            p = self.payload(label, body if body is not None else note("failing entry"), **kw)
            if mutate is not None:
                mutate(p)  # edits the payload map in place
            ekw = dict(entry_kw or {})
            if callable(ekw.get("payload_bytes")):
                ekw["payload_bytes"] = ekw["payload_bytes"](p)
            raw = build_entry(signer or label, p, **ekw)
        self.failing = len(self.feed)
        self.feed.append(raw.hex())
        self.clock = max(self.clock, kw.get("time") or 0)
        return raw

    def to_json(self, expect, now=None):
        if now is None:
            now = self.clock + STEP
        keys = {lab: pub(lab).hex() for lab in sorted(self.labels)}
        keys.update(self.extra_keys)
        v = {"name": self.name, "description": self.description, "keys": keys,
             "now": now, "entries": self.feed, "expect": expect}
        logs = [[b.hex() for b in log[:self.held.get(agency, len(log))]]
                for agency, log in sorted(self.logs.items(), key=lambda x: pub(x[0]))]
        if any(logs):
            v["keylogs"] = [log for log in logs if log]
        if expect == "valid":
            assert self.failing is None
            v["ids"] = self.ids
            v["after_removal"] = [x.hex() for x in self.after_removal]
        else:
            assert self.failing is not None and self.failing == len(self.feed) - 1
            v["failing_index"] = self.failing
        return v


# ---------------------------------------------------------------------------
# Common prefixes


def opened(name, desc):
    v = Vector(name, desc)
    v.add("alpha", case_opened())
    return v


def with_members(name, desc, *members):
    """alpha opens the case and adds each (label, role) in turn."""
    v = opened(name, desc)
    for label, role in members:
        v.add("alpha", member_added(label, role))
    return v


# ---------------------------------------------------------------------------
# Valid vectors


def valid_vectors():
    out = []

    v = Vector("genesis-only", "alpha opens a case; the case id is the genesis entry's id.")
    v.add("alpha", case_opened())
    out.append(v.to_json("valid"))

    v = opened("mixed-order-r",
               "alpha's note signed with R = [r]B + T, T a point of order 8, and S = r + k*a with "
               "k = SHA-512(R || A || M): the cofactored equation of SPEC.md 3.3 holds, the cofactorless one "
               "does not, so Custodia accepts it and OpenSSL (and so pycose) refuses it. Pins the verdict for "
               "signatures with a small-order component.")
    v.add("alpha", note("signed with a small-order component in R"), sign=mixed_order_r)
    out.append(v.to_json("valid"))

    v = opened("two-agencies-shared-case",
               "alpha opens, adds bravo as investigator; bravo's first entry (a note) refs the member-added; "
               "alpha answers with a note that refs bravo's note.")
    added = v.add("alpha", member_added("bravo", "investigator"))
    bn = v.add("bravo", note("Bravo joins; imaging capacity available."), refs=[added])
    v.add("alpha", note("Welcome. Exhibits follow."), refs=[bn])
    out.append(v.to_json("valid"))

    v = with_members("custody-transfer-with-receipt",
                     "alpha registers an item with sha256+sha1+md5, transfers it to bravo; bravo receives it "
                     "(accepted=true, digest-matched=true) and, now the holder, examines it.",
                     ("bravo", "investigator"))
    v.add("alpha", evidence("laptop", exhibit="A-1"))
    tr = v.add("alpha", custody("laptop", "transferred", to=pub("bravo"), purpose="imaging"))
    v.add("bravo", custody("laptop", "received", transfer=tr, accepted=True, digest_matched=True,
                           actor="J. de Vries"), refs=[tr])
    v.add("bravo", custody("laptop", "examined", tool="forensic suite 9.1", digest_matched=True))
    out.append(v.to_json("valid"))

    v = with_members("witness-countersigns-heads",
                     "alpha adds bravo (investigator) and charlie (observer); bravo writes a note; charlie, "
                     "an observer, countersigns the heads of alpha and bravo (heads ascending by author).",
                     ("bravo", "investigator"), ("charlie", "observer"))
    bn = v.add("bravo", note("Preliminary triage complete."), refs=[v.last["alpha"]])
    v.add("charlie", witness([(pub("alpha"), 2, v.last["alpha"]), (pub("bravo"), 0, bn)]),
          refs=[v.last["alpha"], bn])
    out.append(v.to_json("valid"))

    v = with_members("withheld-red-entry",
                     "alpha writes a RED entry addressed to alpha only; the receiver gets only its withheld "
                     "marker [author, seq, id]. alpha's next entry has prev = the withheld id and is accepted "
                     "(V17 skips the withheld predecessor, whose time is unknown); bravo, already a member "
                     "through its own earlier entry, then refs it.",
                     ("bravo", "investigator"))
    v.add("bravo", note("Ready."), refs=[v.last["alpha"]])
    v.withhold("alpha", note("Informant identity: see sealed annex."), tlp="RED", to=agencies("alpha"))
    a = v.add("alpha", note("Source debriefed; continuing."), tlp="AMBER")
    v.add("bravo", note("Acknowledged."), refs=[a])
    out.append(v.to_json("valid"))

    v = with_members("transfer-rejected-sender-keeps",
                     "alpha transfers an item to bravo; bravo refuses it (accepted=false with a reason), which "
                     "closes the transfer; alpha is still the holder and examines it.",
                     ("bravo", "investigator"))
    v.add("alpha", evidence("phone", exhibit="A-2"))
    tr = v.add("alpha", custody("phone", "transferred", to=pub("bravo")))
    rx = v.add("bravo", custody("phone", "received", transfer=tr, accepted=False,
                                reason="evidence bag seal broken on arrival", digest_matched=False), refs=[tr])
    v.add("alpha", custody("phone", "examined", purpose="seal inspection"), refs=[rx])
    out.append(v.to_json("valid"))

    v = with_members("retraction-and-handling-change",
                     "alpha retracts its own note; alpha re-labels another of its notes from AMBER to RED "
                     "(to alpha and bravo); bravo retracts its own note.",
                     ("bravo", "investigator"))
    n1 = v.add("alpha", note("Suspect resides at address 1."))
    v.add("alpha", retracted(n1, "wrong suspect"))
    n2 = v.add("alpha", note("Undercover officer assigned."), tlp="AMBER")
    h = v.add("alpha", handling_changed(n2, "RED", to=agencies("alpha", "bravo")))
    b1 = v.add("bravo", note("Lab slot booked."), refs=[h])
    v.add("bravo", retracted(b1, "slot cancelled"))
    out.append(v.to_json("valid"))

    v = opened("duplicate-is-noop",
               "the same entry fed twice: the second is a no-op (V10), not an error; the ids repeat.")
    v.add("alpha", note("Case file scanned."))
    v.again(1)
    v.add("alpha", note("Next step."))
    v.again(1)
    out.append(v.to_json("valid"))

    v = opened("max-size-entry",
               f"an entry of exactly {MAX_ENTRY} bytes (the V1 limit) is accepted.")
    b = sized_note(v, MAX_ENTRY)
    v.add("alpha", note(b))
    assert len(bytes.fromhex(v.feed[-1])) == MAX_ENTRY
    out.append(v.to_json("valid"))

    v = with_members("clock-skew-at-limits",
                     "time may be SKEW (300000 ms) before a predecessor (prev and ref) and SKEW after now: "
                     "all three limits met exactly, all accepted.",
                     ("bravo", "investigator"))
    a = v.add("alpha", note("t"), time=T0 + 10 * STEP)
    a2 = v.add("alpha", note("t - SKEW after prev"), time=T0 + 10 * STEP - SKEW)
    v.add("bravo", note("t - SKEW after ref"), refs=[a], time=T0 + 10 * STEP - SKEW)
    v.add("alpha", note("exactly now + SKEW"), time=T0 + 20 * STEP)
    out.append(v.to_json("valid", now=T0 + 20 * STEP - SKEW))

    v = with_members("write-concurrent-with-removal",
                     "alpha removes bravo, but bravo's next entry does not have the removal in its causal past "
                     "(prev/refs): bravo is still a member there, so it is accepted.",
                     ("bravo", "investigator"))
    b0 = v.add("bravo", note("Starting."), refs=[v.last["alpha"]])
    v.add("alpha", member_removed("bravo", reason="reassigned"), refs=[b0])
    v.after_removal.append(v.add("bravo", note("Concurrent with the removal.")))
    out.append(v.to_json("valid"))

    v = with_members("after-removal-reported-not-before-nor-withheld",
                     "bravo writes b0; alpha removes bravo with b0 in the removal's causal past; bravo then "
                     "writes b1 (accepted) and b2 (withheld from the receiver), neither with the removal in its "
                     "causal past. Only b1 is reported as concurrent with the removal: b0 is before it and a "
                     "withheld position is not listed (SPEC.md 11.1).",
                     ("bravo", "investigator"))
    b0 = v.add("bravo", note("Before the removal."), refs=[v.last["alpha"]])
    v.add("alpha", member_removed("bravo", reason="left the operation"), refs=[b0])
    v.after_removal.append(v.add("bravo", note("After the removal, not knowing of it.")))
    v.withhold("bravo", note("Also after it, withheld."), tlp="RED")
    out.append(v.to_json("valid"))

    v = with_members("after-removal-none-once-readded",
                     "bravo writes b0; alpha removes bravo; bravo writes b1 concurrent with the removal; alpha then "
                     "adds bravo again. bravo is a member in the state, so nothing is reported (SPEC.md 11.1).",
                     ("bravo", "investigator"))
    b0 = v.add("bravo", note("Before the removal."), refs=[v.last["alpha"]])
    v.add("alpha", member_removed("bravo"), refs=[b0])
    v.add("bravo", note("Concurrent with the removal."))
    v.add("alpha", member_added("bravo", "observer"))
    out.append(v.to_json("valid"))

    v = with_members("after-removal-by-another-manager",
                     "alpha adds bravo (liaison) and charlie; bravo removes charlie without charlie's latest "
                     "entry in its causal past: that entry, and charlie's next one, are concurrent with the "
                     "removal and reported, in sequence order (SPEC.md 11.1).",
                     ("bravo", "liaison"), ("charlie", "investigator"))
    c0 = v.add("charlie", note("Seized the phone."), refs=[v.last["alpha"]])
    v.add("bravo", member_removed("charlie", reason="withdrawn"), refs=[v.last["alpha"]])
    v.after_removal.append(c0)
    v.after_removal.append(v.add("charlie", note("Sent the image.")))
    out.append(v.to_json("valid"))

    v = with_members("withheld-relaxes-custody",
                     "alpha registers an item in a RED entry the receiver only sees withheld; alpha's later "
                     "custody event on that (to the receiver unknown) item is accepted by the V16 relaxation "
                     "because the case has withheld positions.",
                     ("bravo", "investigator"))
    v.withhold("alpha", evidence("sealed-drive"), tlp="RED", to=agencies("alpha"))
    v.add("alpha", custody("sealed-drive", "sealed", actor="evidence officer"))
    out.append(v.to_json("valid"))

    v = with_members("withheld-implies-chain-link",
                     "alpha adds bravo, then writes a RED entry the receiver holds only as a marker, then a "
                     "normal entry. bravo's first entry refs only that last alpha entry: its causal past "
                     "reaches the member-added through the withheld position's implied link to alpha's "
                     "previous position (SPEC.md 8.4), so bravo is a member.",
                     ("bravo", "investigator"))
    v.withhold("alpha", note("Covert measure authorised."), tlp="RED", to=agencies("alpha"))
    a = v.add("alpha", note("Proceeding."))
    v.add("bravo", note("Standing by."), refs=[a])
    out.append(v.to_json("valid"))

    v = with_members("concurrent-duplicate-registration",
                     "alpha and bravo register the same item id concurrently (neither registration is in the "
                     "other's causal past): both are valid; the state reports the conflict (SPEC.md 11.7).",
                     ("bravo", "investigator"))
    added = v.last["alpha"]
    v.add("alpha", evidence("laptop", exhibit="A-1"))
    v.add("bravo", evidence("laptop", exhibit="B-7"), refs=[added])
    out.append(v.to_json("valid"))

    v = Vector("spec-appendix-b-genesis", "the worked example of SPEC.md Appendix B: alpha opens a case at "
               "2026-01-01T00:00:00Z, TLP:AMBER; entry id 7ce30829...")
    v.add("alpha", {"case-opened": {"name": "Alpha Unit", "title": "Example", "country": "PH",
                                    "reference": "A-1"}}, tlp="AMBER", time=1_767_225_600_000)
    assert v.ids == [APPENDIX_B_ID], v.ids
    out.append(v.to_json("valid"))

    v = with_members("examiner-and-liaison-roles",
                     "a liaison may add members; an examiner may register evidence and act on it; an observer "
                     "may write notes.",
                     ("bravo", "liaison"))
    ba = v.add("bravo", member_added("charlie", "examiner"), refs=[v.last["alpha"]])
    ca = v.add("charlie", evidence("usb-stick"), refs=[ba])
    v.add("charlie", custody("usb-stick", "examined", digest_matched=True))
    v.add("bravo", member_added("mallory", "observer"), refs=[v.last["charlie"]])
    v.add("mallory", note("Observing."), refs=[v.last["bravo"]])
    del ca
    out.append(v.to_json("valid"))

    return out


def nested(depth):
    """An array nested `depth` levels deep: nested(1) = [], nested(2) = [[]], ..."""
    x = []
    for _ in range(depth - 1):
        x = [x]
    return x


def sized_note(v: Vector, size: int) -> str:
    """A note text making alpha's next entry exactly `size` bytes long."""
    n = size - 400
    while True:
        p = v.payload("alpha", note("x" * n))
        got = len(build_entry("alpha", p))
        if got == size:
            return "x" * n
        if got > size:
            raise AssertionError("overshot entry size")
        n += size - got if size - got > 1 else 1


# ---------------------------------------------------------------------------
# Failing vectors


def vec_fail(out, name, expect, desc, build):
    """build(v) appends the prefix entries and the failing one to a fresh vector."""
    v = Vector(name, desc)
    now = build(v)
    out.append(v.to_json(expect, now=now))


def genesis_plus(v, *members):
    v.add("alpha", case_opened())
    for label, role in members:
        v.add("alpha", member_added(label, role))


def failing_vectors():
    out = []

    def F(name, expect, desc):
        def deco(fn):
            vec_fail(out, name, expect, desc, fn)
            return fn
        return deco

    # -- V1 oversize ------------------------------------------------------
    @F("oversize", "oversize",
       f"a correctly signed, otherwise valid note entry of {MAX_ENTRY + 1} bytes (one over the limit).")
    def _(v):
        genesis_plus(v)
        text = sized_note(v, MAX_ENTRY) + "x"
        b = v.fail("alpha", note(text))
        assert len(b) == MAX_ENTRY + 1

    @F("oversize-huge-note", "oversize", "a correctly signed note entry of about 100 kB.")
    def _(v):
        genesis_plus(v)
        v.fail("alpha", note("evidence log line\n" * 5600))

    # -- V2 malformed -----------------------------------------------------
    def mal(name, desc, make):
        @F("malformed-" + name, "malformed", desc)
        def _(v):
            genesis_plus(v)
            p = v.payload("alpha", note("will be damaged"))
            v.fail("alpha", raw=make(p))

    def good(p, **kw):
        return build_entry("alpha", p, **kw)

    mal("truncated", "the second entry cut short (its last 20 bytes missing).", lambda p: good(p)[:-20])
    mal("trailing-byte", "a valid entry followed by one extra byte 0x00.", lambda p: good(p) + b"\x00")
    mal("wrong-tag", "the array is tagged 17 (COSE_Mac0) instead of 18.",
        lambda p: b"\xd1" + good(p)[1:])
    mal("untagged-array", "the 4-element COSE_Sign1 array without tag 18.", lambda p: good(p)[1:])
    mal("unprotected-not-empty", "unprotected header {4: kid} instead of {}.",
        lambda p: good(p, unprotected={4: pub("alpha")}))
    mal("signature-63-bytes", "the signature bstr is 63 bytes (last byte dropped).",
        lambda p: good(p, sign=lambda tbs, s: s[:63]))
    mal("array-of-3", "tag 18 around [protected, unprotected, payload]: no signature.",
        lambda p: good(p, outer=lambda a, u, pl, s: det(cbor2.CBORTag(18, [a, {}, pl]))))
    mal("array-of-5", "tag 18 around a 5-element array (an extra empty bstr at the end).",
        lambda p: good(p, outer=lambda a, u, pl, s: det(cbor2.CBORTag(18, [a, {}, pl, s, b""]))))
    mal("garbage", "64 pseudo-random bytes.",
        lambda p: b"\x1f" + sha256(b"garbage 1") + sha256(b"garbage 2")[:31])
    mal("empty", "zero bytes.", lambda p: b"")
    mal("payload-not-a-map", "payload bstr holds a CBOR array, correctly signed.",
        lambda p: good(p, payload_bytes=det([1, 2, 3])))
    mal("payload-trailing-bytes", "payload bstr holds the payload map followed by one extra byte 0x00, "
        "correctly signed.", lambda p: good(p, payload_bytes=det(p) + b"\x00"))
    mal("protected-empty-bstr", "protected is h'' (COSE's empty header) instead of a map.",
        lambda p: good(p, protected_bytes=b""))
    @F("malformed-nesting-depth-17", "malformed",
       "payload refs holds arrays nested so that the payload's nesting depth is 17 (limit 16), correctly "
       "signed.")
    def _(v):
        genesis_plus(v)
        v.fail("alpha", note("deep"), mutate=lambda p: p.update(refs=nested(16)))

    mal("protected-is-map", "protected is a bare map instead of a bstr wrapping one.",
        lambda p: good(p, outer=lambda a, u, pl, s: enc(Tag(18, [Raw(a), {}, pl, s]))))

    # -- V3 non-canonical -------------------------------------------------
    def nc(name, desc, prefix_members=(), **fail_kw):
        @F("non-canonical-" + name, "non-canonical", desc)
        def _(v):
            genesis_plus(v, *prefix_members)
            v.fail("alpha", note("encoded non-deterministically"), **fail_kw)

    def wide_seq(p):
        pairs = [(k, WideUint(p[k], 1) if k == "seq" else p[k]) for k in sorted(p, key=lambda k: enc(k))]
        return enc(Pairs(pairs))

    nc("seq-non-shortest-int", "payload seq = 1 encoded as 0x18 0x01 (non-shortest), re-signed.",
       entry_kw={"payload_bytes": wide_seq})
    nc("unsorted-payload-keys", "payload map keys in schema order (v, case, author, ...) instead of bytewise "
       "order of their encodings, re-signed.",
       entry_kw={"payload_bytes": lambda p: enc(Pairs([(k, p[k]) for k in
                                                       ("v", "case", "author", "seq", "prev", "refs", "time",
                                                        "tlp", "body")]))})
    nc("duplicate-payload-key", "payload map holds \"tlp\": \"GREEN\" twice (same value, adjacent, otherwise "
       "sorted; map head counts 10 pairs), re-signed.",
       entry_kw={"payload_bytes": lambda p: enc(Pairs(
           [(k, p[k]) for k in sorted(p, key=lambda k: enc(k)) for _ in range(2 if k == "tlp" else 1)]))})
    nc("indefinite-refs", "payload refs [] encoded as an indefinite-length array 0x9f 0xff, re-signed.",
       entry_kw={"payload_bytes": lambda p: enc(Pairs(
           [(k, Indef(p[k]) if k == "refs" else p[k]) for k in sorted(p, key=lambda k: enc(k))]))})
    nc("indefinite-entry-array", "the outer COSE_Sign1 array has indefinite length (0x9f ... 0xff); "
       "it still holds exactly 4 elements and the signature is valid.",
       entry_kw={"outer": lambda a, u, pl, s: enc(Tag(18, Indef([a, {}, pl, s])))})
    nc("signature-length-head", "the signature's length is encoded 0x59 0x00 0x40 instead of 0x58 0x40.",
       entry_kw={"outer": lambda a, u, pl, s: enc(Tag(18, [a, {}, pl, WideBstr(s, 2)]))})
    nc("protected-non-shortest-int", "protected header alg -8 encoded as 0x39 0x00 0x07, re-signed.",
       entry_kw={"protected_bytes": enc(Pairs([(1, Raw(b"\x39\x00\x07")), (3, CONTENT_TYPE),
                                              (4, pub("alpha"))]))})
    nc("float-in-payload", "payload time encoded as a float64 of the same value, re-signed (no floats "
       "anywhere).", entry_kw={"payload_bytes": lambda p: enc(Pairs(
           [(k, Raw(b"\xfb" + struct.pack(">d", float(p[k]))) if k == "time" else p[k])
            for k in sorted(p, key=lambda k: enc(k))]))})
    nc("tag-in-payload", "payload time wrapped in tag 1 (epoch date/time), re-signed (no tags except the "
       "outer 18).", entry_kw={"payload_bytes": lambda p: enc(Pairs(
           [(k, Tag(1, p[k]) if k == "time" else p[k]) for k in sorted(p, key=lambda k: enc(k))]))})
    nc("protected-unsorted-keys", "protected header keys in order 4, 1, 3, re-signed.",
       entry_kw={"protected_bytes": enc(Pairs([(4, pub("alpha")), (1, -8), (3, CONTENT_TYPE)]))})

    @F("non-canonical-genesis-seq-0x1800", "non-canonical",
       "the genesis payload with seq 0 encoded as 0x18 0x00, correctly signed.")
    def _(v):
        v.fail("alpha", case_opened(), entry_kw={"payload_bytes": wide_seq})

    # -- V4 bad-header ----------------------------------------------------
    def bh(name, desc, hdr):
        @F("bad-header-" + name, "bad-header", desc)
        def _(v):
            genesis_plus(v)
            v.fail("alpha", note("header is wrong"), entry_kw={"protected": hdr})

    kid = pub("alpha")
    bh("alg-es256", "alg -7 (ES256) instead of -8; signed with Ed25519 anyway.",
       {1: -7, 3: CONTENT_TYPE, 4: kid})
    bh("kid-31-bytes", "kid is the first 31 bytes of alpha's key.", {1: -8, 3: CONTENT_TYPE, 4: kid[:31]})
    bh("missing-content-type", "protected header {1: -8, 4: kid} without the content type.", {1: -8, 4: kid})
    bh("extra-header-key", "protected header has an extra key 16 (typ) = the content type.",
       {1: -8, 3: CONTENT_TYPE, 4: kid, 16: CONTENT_TYPE})
    bh("wrong-content-type", "content type \"application/cbor\".", {1: -8, 3: "application/cbor", 4: kid})
    bh("missing-alg", "protected header {3: ..., 4: kid} without alg.", {3: CONTENT_TYPE, 4: kid})

    # -- V5 unsupported-version ------------------------------------------
    @F("unsupported-version", "unsupported-version",
       "payload v = 3 (format versions 1 and 2 are defined), otherwise a valid v1 note, correctly signed.")
    def _(v):
        genesis_plus(v)
        v.fail("alpha", note("from the future format"), mutate=lambda p: p.update(v=3))

    @F("unsupported-version-genesis", "unsupported-version",
       "a genesis entry with v = 3, correctly signed.")
    def _(v):
        v.fail("alpha", case_opened(), mutate=lambda p: p.update(v=3))

    # -- V6 schema --------------------------------------------------------
    def sch(name, desc, members=(), **kw):
        @F("schema-" + name, "schema", desc)
        def _(v):
            genesis_plus(v, *members)
            label = kw.pop("label", "alpha")
            body = kw.pop("body", None)
            if callable(body):
                body = body(v)
            refs = kw.pop("refs", None)
            if callable(refs):
                refs = refs(v)
            if refs is not None:
                kw["refs"] = refs
            v.fail(label, body if body is not None else note("schema"), **kw)

    def setp(**upd):
        def m(p):
            p.update(upd)
        return m

    sch("unknown-payload-key", "payload has an extra key \"comment\".", mutate=setp(comment="hi"))
    sch("prev-at-seq-0", "bravo's first entry (seq 0) carries a prev.", members=[("bravo", "investigator")],
        label="bravo", refs=lambda v: [v.last["alpha"]], mutate=lambda p: p.update(prev=p["refs"][0]))
    sch("missing-prev-at-seq-1", "alpha's seq 1 entry has no prev.", mutate=lambda p: p.pop("prev"))
    sch("red-without-to", "tlp RED and no \"to\".", tlp="RED")
    sch("to-with-non-red-tlp", "tlp AMBER with \"to\" [alpha].", tlp="AMBER", to=agencies("alpha"))
    sch("to-empty", "tlp RED with \"to\" [].", tlp="RED", to=[])
    sch("to-unsorted", "tlp RED with \"to\" in descending order.", members=[("bravo", "investigator")],
        tlp="RED", to=agencies("alpha", "bravo")[::-1])
    sch("refs-unsorted", "alpha refs bravo's and charlie's notes in descending id order.",
        members=[("bravo", "investigator"), ("charlie", "investigator")],
        refs=lambda v: refs_two(v), mutate=lambda p: p.update(refs=sorted(p["refs"], reverse=True)))
    sch("refs-duplicate", "alpha refs the same bravo entry twice (not strictly ascending).",
        members=[("bravo", "investigator")],
        refs=lambda v: [v.add("bravo", note("b"), refs=[v.last["alpha"]])],
        mutate=lambda p: p.update(refs=p["refs"] * 2))
    sch("refs-too-many", "65 refs (ascending) where at most 64 are allowed.",
        mutate=lambda p: p.update(refs=sorted(fake_id(f"r{i}") for i in range(65))))
    sch("unknown-body-kind", "body {\"comment\": {\"text\": ...}}.", body={"comment": {"text": "hello"}})
    sch("body-two-kinds", "body has two keys, note and witness.",
        body=lambda v: {"note": {"text": "x"}, "witness": {"heads": [[pub("alpha"), 0, v.case]]}})
    sch("received-without-transfer", "bravo's received event lacks \"transfer\".",
        members=[("bravo", "investigator")], label="bravo",
        body=lambda v: transfer_prefix(v, lambda c: c.pop("transfer")),
        refs=lambda v: [v.last["alpha"]])
    sch("rejected-without-reason", "bravo's received event has accepted=false and no reason.",
        members=[("bravo", "investigator")], label="bravo",
        body=lambda v: transfer_prefix(v, lambda c: c.update(accepted=False)),
        refs=lambda v: [v.last["alpha"]])
    sch("transferred-without-to", "alpha's transferred event lacks \"to\".",
        body=lambda v: (v.add("alpha", evidence("disk")), custody("disk", "transferred"))[1])
    sch("to-on-examined", "alpha's examined event carries \"to\".",
        members=[("bravo", "investigator")],
        body=lambda v: (v.add("alpha", evidence("disk")), custody("disk", "examined", to=pub("bravo")))[1])
    sch("country-lowercase", "member-added with country \"ph\".", body=member_added("bravo", "investigator", "ph"))
    sch("bad-role", "member-added with role \"admin\".",
        body={"member-added": {"agency": pub("bravo"), "name": "Bravo", "country": "NL", "role": "admin"}})
    sch("item-id-15-bytes", "evidence-registered with a 15-byte item id.",
        body={"evidence-registered": dict(evidence("disk")["evidence-registered"], item=item_id("disk")[:15])})
    sch("sha1-wrong-size", "digests.sha1 is 32 bytes.",
        body={"evidence-registered": dict(evidence("disk")["evidence-registered"],
                                          digests={"sha256": sha256(b"d"), "sha1": sha256(b"d")})})
    sch("witness-heads-unsorted", "charlie (observer) witnesses alpha's and bravo's heads in descending "
        "author order.", members=[("bravo", "investigator"), ("charlie", "observer")],
        body=lambda v: witness_unsorted(v), label="charlie", refs=lambda v: [v.last["bravo"]])
    sch("non-genesis-without-case", "alpha's seq 1 note has no \"case\".", mutate=lambda p: p.pop("case"))
    sch("case-opened-not-genesis", "alpha's seq 1 entry has body case-opened (and a case).",
        body=case_opened(title="Again"))
    sch("time-negative", "time is a negative integer.", mutate=setp(time=-1))
    sch("seq-text", "seq is the text \"1\".", mutate=setp(seq="1"))
    sch("tlp-unknown", "tlp \"WHITE\" (TLP 1.0, not 2.0).", tlp="WHITE")
    sch("version-missing", "payload without \"v\" (a missing v is schema, not unsupported-version).",
        mutate=lambda p: p.pop("v"))
    sch("version-text", "payload \"v\" is the text \"1\" (a v that is not a uint is schema).",
        mutate=setp(v="1"))
    sch("null-member", "note body {\"item\": null, \"text\": ...}: null appears nowhere (optional members "
        "are absent).", body={"note": {"item": Raw(b"\xf6"), "text": "null item"}},
        entry_kw={"payload_bytes": lambda p: enc(p)})
    sch("nesting-depth-16", "refs holds arrays nested so that the payload's nesting depth is exactly 16 "
        "(the limit, so not malformed); refs elements are not entry ids.",
        mutate=lambda p: p.update(refs=nested(15)))

    @F("schema-genesis-with-refs", "schema", "a genesis entry with a non-empty refs list.")
    def _(v):
        v.fail("alpha", case_opened(), refs=[fake_id("g")])

    @F("schema-genesis-with-case", "schema", "a genesis (case-opened, seq 0) entry that carries a case.")
    def _(v):
        v.fail("alpha", case_opened(), mutate=setp(case=fake_id("other case")))

    @F("schema-genesis-seq-1", "schema", "a genesis entry with seq 1 (and a prev).")
    def _(v):
        v.fail("alpha", case_opened(), seq=1, prev=fake_id("p"))

    @F("schema-genesis-country-lowercase", "schema", "case-opened with country \"ph\".")
    def _(v):
        b = case_opened()
        b["case-opened"]["country"] = "ph"
        v.fail("alpha", b)

    # -- V7 author-mismatch -----------------------------------------------
    @F("author-mismatch", "author-mismatch",
       "kid and signature are alpha's, payload author is bravo's key.")
    def _(v):
        genesis_plus(v, ("bravo", "investigator"))
        v.fail("bravo", note("impersonation"), refs=[v.last["alpha"]], signer="alpha",
               entry_kw={"kid": pub("alpha")})

    @F("author-mismatch-genesis", "author-mismatch",
       "a genesis whose kid and signature are bravo's but whose author is alpha's key.")
    def _(v):
        v.labels.add("bravo")
        v.fail("alpha", case_opened(), signer="bravo", entry_kw={"kid": pub("bravo")})

    # -- V8 bad-signature -------------------------------------------------
    def bs(name, desc, **fkw):
        @F("bad-signature-" + name, "bad-signature", desc)
        def _(v):
            genesis_plus(v)
            v.fail("alpha", note("signature is wrong"), **fkw)

    def flip(tbs, s):
        b = bytearray(s)
        b[32] ^= 0x01  # lowest bit of S
        return bytes(b)

    def s_plus_l(tbs, s):
        S = int.from_bytes(s[32:], "little") + L
        assert S < 2**256
        return s[:32] + S.to_bytes(32, "little")

    def small_order_r(tbs, s):
        # R = identity, S = k*a mod L: passes the cofactorless equation
        # [S]B = R + [k]A, which RFC 8032-only verifiers (e.g. OpenSSL) accept.
        h = hashlib.sha512(seed("alpha")).digest()
        a = int.from_bytes(h[:32], "little")
        a &= (1 << 254) - 8
        a |= 1 << 254
        R = SMALL_ORDER_POINT
        k = int.from_bytes(hashlib.sha512(R + pub("alpha") + tbs).digest(), "little") % L
        return R + ((k * a) % L).to_bytes(32, "little")

    bs("flipped-bit", "alpha's note with the lowest bit of S flipped.", entry_kw={"sign": flip})
    bs("other-key", "kid is alpha's but mallory signed.", signer="mallory", entry_kw={"kid": pub("alpha")})
    bs("non-canonical-s", "alpha's valid signature with S replaced by S + L (S >= L): the cofactorless "
       "equation still holds, a strict verifier must reject it.", entry_kw={"sign": s_plus_l})
    bs("small-order-r", "alpha's note signed with R = the identity point (small order) and S = k*a mod L: "
       "the RFC 8032 equation holds (OpenSSL, and so pycose, accepts it) but strict verification rejects a "
       "small-order R.", entry_kw={"sign": small_order_r})
    def payload_only(tbs, s):
        return ed_sign("alpha", cbor2.loads(tbs)[3])

    def with_aad(tbs, s):
        _, prot, _, pl = cbor2.loads(tbs)
        return ed_sign("alpha", det(["Signature1", prot, b"\x00", pl]))

    bs("payload-only", "signature over the payload bytes instead of the Sig_structure.",
       entry_kw={"sign": payload_only})
    bs("sig-structure-with-aad", "signature over a Sig_structure whose external_aad is h'00' instead of h''.",
       entry_kw={"sign": with_aad})
    bs("zero-signature", "64 zero bytes as the signature.", entry_kw={"sign": lambda tbs, s: bytes(64)})

    @F("bad-signature-small-order-key", "bad-signature",
       "alpha adds the identity point (a small-order public key) as a member; an entry whose kid and author "
       "are that key refs the member-added and is signed with R = identity, "
       "S = 0: the RFC 8032 equation holds for any message (OpenSSL, and so pycose, accepts it) but strict "
       "verification rejects a small-order A.")
    def _(v):
        genesis_plus(v)
        v.extra_keys["small-order"] = SMALL_ORDER_POINT.hex()
        added = v.add("alpha", {"member-added": {"agency": SMALL_ORDER_POINT, "name": "Weak Key Agency",
                                                 "country": "PH", "role": "investigator"}})
        p = v.payload("alpha", note("weak key"), refs=[added])
        p["author"] = SMALL_ORDER_POINT
        p["seq"] = 0
        del p["prev"]
        v.fail("alpha", raw=build_entry("alpha", p, kid=SMALL_ORDER_POINT,
                                        sign=lambda tbs, s: SMALL_ORDER_POINT + bytes(32)))

    # -- V9 wrong-case ----------------------------------------------------
    @F("wrong-case-other-case-id", "wrong-case",
       "alpha's seq 1 note names another case (the id of bravo's genesis of a different case).")
    def _(v):
        other = Vector("other", "")
        other.add("bravo", case_opened("bravo", title="Other case", reference="BR-1", jurisdiction="NL"))
        v.add("alpha", case_opened())
        v.fail("alpha", note("misfiled"), mutate=setp(case=other.case))

    @F("wrong-case-second-genesis", "wrong-case",
       "after alpha's genesis, bravo's genesis of its own case is fed to the same case.")
    def _(v):
        v.add("alpha", case_opened())
        other = Vector("other", "")
        b = build_entry("bravo", other.payload("bravo", case_opened("bravo", title="Other", reference="BR-1",
                                                                       jurisdiction="NL")))
        v.labels.add("bravo")
        v.fail("bravo", raw=b)

    @F("wrong-case-second-genesis-same-author", "wrong-case",
       "after alpha's genesis, a second alpha genesis (different title) is fed to the same case.")
    def _(v):
        v.add("alpha", case_opened())
        other = Vector("other", "")
        v.fail("alpha", raw=build_entry("alpha", other.payload("alpha", case_opened(title="Duplicate opening"))))

    # -- V10 equivocation -------------------------------------------------
    @F("equivocation", "equivocation",
       "alpha signs two different entries with seq 1 (same prev); the second one fed is the violation.")
    def _(v):
        v.add("alpha", case_opened())
        p = v.payload("alpha", note("version B"))
        v.add("alpha", note("version A"))
        v.fail("alpha", raw=build_entry("alpha", p))

    @F("equivocation-later-seq", "equivocation",
       "alpha has seq 0..3; a different alpha entry with seq 2 arrives.")
    def _(v):
        v.add("alpha", case_opened())
        v.add("alpha", note("one"))
        p = v.payload("alpha", note("two, rewritten"))
        v.add("alpha", note("two"))
        v.add("alpha", note("three"))
        v.fail("alpha", raw=build_entry("alpha", p))

    @F("equivocation-withheld-position", "equivocation",
       "alpha's seq 1 is held as a withheld marker; a different alpha entry with seq 1 arrives (a withheld "
       "position counts as an entry at its position for V10).")
    def _(v):
        v.add("alpha", case_opened())
        v.withhold("alpha", note("red"), tlp="RED", to=agencies("alpha"))
        v.fail("alpha", note("another seq 1"), seq=1, prev=v.case)

    @F("equivocation-marker-id-at-other-position", "equivocation",
       "a marker claims position (bravo, 0) for the id of alpha's next entry; that entry then arrives at "
       "position (alpha, 2): same id, different position.")
    def _(v):
        genesis_plus(v, ("bravo", "investigator"))
        x = build_entry("alpha", v.payload("alpha", note("X")))
        v.feed.append({"withheld": [pub("bravo").hex(), 0, sha256(x).hex()]})
        v.ids.append(sha256(x).hex())
        v.fail("alpha", raw=x)

    # -- V11 sequence-gap -------------------------------------------------
    @F("sequence-gap", "sequence-gap", "alpha's entry with seq 2 right after its genesis (seq 0); prev = genesis.")
    def _(v):
        v.add("alpha", case_opened())
        v.fail("alpha", note("skipped one"), seq=2)

    @F("sequence-gap-first-entry", "sequence-gap",
       "bravo's first entry in the case has seq 1 (prev = an id bravo never showed).")
    def _(v):
        genesis_plus(v, ("bravo", "investigator"))
        v.fail("bravo", note("where is my seq 0"), seq=1, prev=fake_id("bravo seq 0"), refs=[v.last["alpha"]])

    # -- V12 prev-mismatch ------------------------------------------------
    @F("prev-mismatch", "prev-mismatch", "alpha's seq 2 entry has prev = its seq 0 (genesis) id.")
    def _(v):
        v.add("alpha", case_opened())
        v.add("alpha", note("one"))
        v.fail("alpha", note("two"), prev=v.case)

    @F("prev-mismatch-unknown-id", "prev-mismatch", "alpha's seq 1 entry has prev = an unknown id.")
    def _(v):
        v.add("alpha", case_opened())
        v.fail("alpha", note("one"), prev=fake_id("nowhere"))

    # -- V13 unknown-reference --------------------------------------------
    @F("unknown-reference", "unknown-reference", "bravo refs an id that no entry of the case has.")
    def _(v):
        genesis_plus(v, ("bravo", "investigator"))
        v.fail("bravo", note("dangling"), refs=[v.last["alpha"], fake_id("dangling")])

    @F("unknown-reference-own-entry", "unknown-reference",
       "bravo's second entry refs its own first entry (refs may only name other authors' entries).")
    def _(v):
        genesis_plus(v, ("bravo", "investigator"))
        b0 = v.add("bravo", note("first"), refs=[v.last["alpha"]])
        v.fail("bravo", note("second"), refs=[b0])

    @F("unknown-reference-witness-wrong-seq", "unknown-reference",
       "charlie (observer) witnesses alpha's head with the right id but seq 5 instead of 2.")
    def _(v):
        genesis_plus(v, ("bravo", "investigator"), ("charlie", "observer"))
        v.fail("charlie", witness([(pub("alpha"), 5, v.last["alpha"])]), refs=[v.last["alpha"]])

    @F("unknown-reference-witness-unknown-id", "unknown-reference",
       "charlie (observer) witnesses a head [alpha, 2, unknown id].")
    def _(v):
        genesis_plus(v, ("bravo", "investigator"), ("charlie", "observer"))
        v.fail("charlie", witness([(pub("alpha"), 2, fake_id("not alpha's"))]), refs=[v.last["alpha"]])

    # -- V14 not-a-member -------------------------------------------------
    @F("not-a-member", "not-a-member", "bravo writes a note in alpha's case without ever being added.")
    def _(v):
        v.add("alpha", case_opened())
        v.fail("bravo", note("let me in"), refs=[v.case])

    @F("not-a-member-added-not-in-causal-past", "not-a-member",
       "alpha added bravo, but bravo's first entry refs only the genesis, so the member-added is not in its "
       "causal past.")
    def _(v):
        genesis_plus(v, ("bravo", "investigator"))
        v.fail("bravo", note("hello"), refs=[v.case])

    @F("not-a-member-after-removal", "not-a-member",
       "alpha adds bravo, bravo writes, alpha removes bravo (refs bravo's note), bravo writes again with the "
       "removal in its causal past.")
    def _(v):
        genesis_plus(v, ("bravo", "investigator"))
        b0 = v.add("bravo", note("working"), refs=[v.last["alpha"]])
        rm = v.add("alpha", member_removed("bravo", reason="conflict of interest"), refs=[b0])
        v.fail("bravo", note("still here?"), refs=[rm])

    # -- V15 not-authorized -----------------------------------------------
    @F("not-authorized-investigator-adds-member", "not-authorized",
       "bravo, an investigator, adds charlie.")
    def _(v):
        genesis_plus(v, ("bravo", "investigator"))
        v.fail("bravo", member_added("charlie", "investigator"), refs=[v.last["alpha"]])

    @F("not-authorized-examiner-removes-member", "not-authorized",
       "bravo, an examiner, removes charlie.")
    def _(v):
        genesis_plus(v, ("bravo", "examiner"), ("charlie", "investigator"))
        v.fail("bravo", member_removed("charlie"), refs=[v.last["alpha"]])

    @F("not-authorized-observer-custody-event", "not-authorized",
       "charlie, an observer, writes an examined custody event on alpha's item.")
    def _(v):
        genesis_plus(v, ("charlie", "observer"))
        reg = v.add("alpha", evidence("laptop"))
        v.fail("charlie", custody("laptop", "examined"), refs=[reg])

    @F("not-authorized-observer-receives-transfer", "not-authorized",
       "alpha transfers its item to charlie, an observer (a member, so the transfer is accepted); charlie's "
       "received event is refused by V15 (an observer may only write witness and note), though V16 alone "
       "would accept it.")
    def _(v):
        genesis_plus(v, ("charlie", "observer"))
        v.add("alpha", evidence("laptop"))
        tr = v.add("alpha", custody("laptop", "transferred", to=pub("charlie")))
        v.fail("charlie", custody("laptop", "received", transfer=tr, accepted=True), refs=[tr])

    @F("not-authorized-observer-registers-evidence", "not-authorized",
       "charlie, an observer, registers an evidence item.")
    def _(v):
        genesis_plus(v, ("charlie", "observer"))
        v.fail("charlie", evidence("camera"), refs=[v.last["alpha"]])

    @F("not-authorized-retract-other-author", "not-authorized",
       "bravo retracts alpha's note.")
    def _(v):
        genesis_plus(v, ("bravo", "investigator"))
        n = v.add("alpha", note("alpha's claim"))
        v.fail("bravo", retracted(n, "disagree"), refs=[n])

    @F("not-authorized-handling-change-other-author", "not-authorized",
       "bravo changes the handling of alpha's note to RED.")
    def _(v):
        genesis_plus(v, ("bravo", "investigator"))
        n = v.add("alpha", note("alpha's note"))
        v.fail("bravo", handling_changed(n, "RED", to=agencies("bravo")), refs=[n])

    @F("not-authorized-retract-withheld", "not-authorized",
       "alpha retracts its own entry that the receiver has only as a withheld marker (target must be known, "
       "not withheld).")
    def _(v):
        genesis_plus(v)
        w = v.withhold("alpha", note("red"), tlp="RED", to=agencies("alpha"))
        v.fail("alpha", retracted(w, "typo"))

    # -- V16 custody-violation --------------------------------------------
    @F("custody-violation-transfer-by-non-holder", "custody-violation",
       "bravo (investigator) transfers alpha's item to alpha.")
    def _(v):
        genesis_plus(v, ("bravo", "investigator"))
        reg = v.add("alpha", evidence("laptop"))
        v.fail("bravo", custody("laptop", "transferred", to=pub("alpha")), refs=[reg])

    @F("custody-violation-receive-addressed-to-other", "custody-violation",
       "alpha transfers an item to bravo; charlie (investigator) receives it.")
    def _(v):
        genesis_plus(v, ("bravo", "investigator"), ("charlie", "investigator"))
        v.add("alpha", evidence("laptop"))
        tr = v.add("alpha", custody("laptop", "transferred", to=pub("bravo")))
        v.fail("charlie", custody("laptop", "received", transfer=tr, accepted=True), refs=[tr])

    @F("custody-violation-duplicate-registration", "custody-violation",
       "alpha registers the same item id twice.")
    def _(v):
        genesis_plus(v)
        v.add("alpha", evidence("laptop", exhibit="A-1"))
        v.fail("alpha", evidence("laptop", exhibit="A-1 again"))

    @F("custody-violation-event-on-destroyed-item", "custody-violation",
       "alpha destroys its item, then examines it.")
    def _(v):
        genesis_plus(v)
        v.add("alpha", evidence("laptop"))
        v.add("alpha", custody("laptop", "destroyed", reason="court order"))
        v.fail("alpha", custody("laptop", "examined"))

    @F("custody-violation-unknown-item", "custody-violation",
       "alpha examines an item never registered (the case has no withheld positions).")
    def _(v):
        genesis_plus(v)
        v.fail("alpha", custody("ghost", "examined"))

    @F("custody-violation-transfer-to-non-member", "custody-violation",
       "alpha transfers its item to charlie, who is not a member.")
    def _(v):
        genesis_plus(v)
        v.add("alpha", evidence("laptop"))
        v.labels.add("charlie")
        v.fail("alpha", custody("laptop", "transferred", to=pub("charlie")))

    @F("custody-violation-transfer-to-self", "custody-violation", "alpha transfers its item to itself.")
    def _(v):
        genesis_plus(v)
        v.add("alpha", evidence("laptop"))
        v.fail("alpha", custody("laptop", "transferred", to=pub("alpha")))

    @F("custody-violation-act-during-open-transfer", "custody-violation",
       "alpha transfers its item to bravo and, before bravo answers, examines it.")
    def _(v):
        genesis_plus(v, ("bravo", "investigator"))
        v.add("alpha", evidence("laptop"))
        v.add("alpha", custody("laptop", "transferred", to=pub("bravo")))
        v.fail("alpha", custody("laptop", "examined"))

    @F("custody-violation-receive-closed-transfer", "custody-violation",
       "bravo receives the same transfer twice (the first receipt closed it).")
    def _(v):
        genesis_plus(v, ("bravo", "investigator"))
        v.add("alpha", evidence("laptop"))
        tr = v.add("alpha", custody("laptop", "transferred", to=pub("bravo")))
        v.add("bravo", custody("laptop", "received", transfer=tr, accepted=True), refs=[tr])
        v.fail("bravo", custody("laptop", "received", transfer=tr, accepted=True))

    @F("custody-violation-receive-non-transfer", "custody-violation",
       "bravo 'receives' with transfer = the id of the item's evidence-registered entry.")
    def _(v):
        genesis_plus(v, ("bravo", "investigator"))
        reg = v.add("alpha", evidence("laptop"))
        v.fail("bravo", custody("laptop", "received", transfer=reg, accepted=True), refs=[reg])

    @F("custody-violation-transfer-not-in-causal-past", "custody-violation",
       "alpha transfers its item to bravo; bravo's received refs only the registration, so the transfer is "
       "not in its causal past (V16 is evaluated on the state of CP(E)).")
    def _(v):
        genesis_plus(v, ("bravo", "investigator"))
        reg = v.add("alpha", evidence("laptop"))
        tr = v.add("alpha", custody("laptop", "transferred", to=pub("bravo")))
        v.fail("bravo", custody("laptop", "received", transfer=tr, accepted=True), refs=[reg])

    @F("custody-violation-withheld-not-in-causal-past", "custody-violation",
       "the case has a withheld position (alpha's RED registration), but it is not in the causal past of "
       "bravo's event on the unknown item, so the V16 relaxation does not apply.")
    def _(v):
        genesis_plus(v, ("bravo", "investigator"))
        added = v.last["alpha"]
        v.withhold("alpha", evidence("sealed-drive"), tlp="RED", to=agencies("alpha"))
        v.fail("bravo", custody("sealed-drive", "examined"), refs=[added])

    @F("custody-violation-derived-from-unknown", "custody-violation",
       "alpha registers an item derived-from an item that was never registered.")
    def _(v):
        genesis_plus(v)
        v.fail("alpha", evidence("image", derived_from=item_id("never-registered")))

    # -- V17 time-violation -----------------------------------------------
    @F("time-violation", "time-violation", "alpha's entry is 10 minutes earlier than its prev.")
    def _(v):
        genesis_plus(v)
        v.add("alpha", note("now"))
        v.fail("alpha", note("earlier"), time=v.clock - 600_000)

    @F("time-violation-skew-plus-1ms", "time-violation",
       "alpha's entry is SKEW + 1 ms (300001 ms) earlier than its prev.")
    def _(v):
        genesis_plus(v)
        v.add("alpha", note("now"))
        v.fail("alpha", note("earlier"), time=v.clock - SKEW - 1)

    @F("time-violation-ref", "time-violation",
       "bravo's first entry is 10 minutes earlier than the alpha entry it refs.")
    def _(v):
        genesis_plus(v, ("bravo", "investigator"))
        v.fail("bravo", note("earlier than my ref"), refs=[v.last["alpha"]], time=v.clock - 600_000)

    # -- V18 from-the-future ----------------------------------------------
    @F("from-the-future", "from-the-future", "alpha's entry is 10 minutes after the receiver's now.")
    def _(v):
        genesis_plus(v)
        now = v.clock + STEP
        v.fail("alpha", note("tomorrow's news"), time=now + 600_000)
        return now

    @F("from-the-future-skew-plus-1ms", "from-the-future",
       "alpha's entry is SKEW + 1 ms (300001 ms) after the receiver's now.")
    def _(v):
        genesis_plus(v)
        now = v.clock + STEP
        v.fail("alpha", note("slightly early"), time=now + SKEW + 1)
        return now

    @F("from-the-future-genesis", "from-the-future",
       "a genesis entry 10 minutes after the receiver's now.")
    def _(v):
        v.fail("alpha", case_opened(), time=T0 + 600_000)
        return T0

    return out


def refs_two(v):
    bn = v.add("bravo", note("b"), refs=[v.last["alpha"]])
    cn = v.add("charlie", note("c"), refs=[v.last["alpha"]])
    assert bn != cn
    return sorted([bn, cn])


def transfer_prefix(v, edit):
    """alpha registers + transfers 'disk' to bravo; returns bravo's received body with edit applied."""
    v.add("alpha", evidence("disk"))
    tr = v.add("alpha", custody("disk", "transferred", to=pub("bravo")))
    body = custody("disk", "received", transfer=tr, accepted=True)
    edit(body["custody"])
    return body


def witness_unsorted(v):
    a = v.last["alpha"]
    bn = v.add("bravo", note("b"), refs=[a])
    heads = sorted([[pub("alpha"), v.next_seq["alpha"] - 1, a], [pub("bravo"), 0, bn]], key=lambda h: h[0],
                   reverse=True)
    return {"witness": {"heads": heads}}

# ---------------------------------------------------------------------------
# Format version 2 (SPEC.md 5.7; V4, V5, V6, V19 to V24): entries signed by the
# officer or node key that acted, citing in "keys" the prefix of the author's
# key log (SPEC.md 3.4) they were made under. The key logs are built with the
# statement builders of keylog.py and carried by the vector ("keylogs").

OFFICERS = {"alpha": ("Maria Santos", "PNP-ACG-0412"), "bravo": ("Jan de Vries", "NHT-DF-0193")}
# The labels of the keys the key logs of the version 2 vectors name, by public key.
KEY_LABELS = {pub(x): x for x in ("alpha", "bravo", "alpha-root-1", "alpha-officer-1", "alpha-officer-2",
                                  "alpha-node-1", "bravo-officer-1", "bravo-node-1", "thief-officer")}


def officer_st(label, agency=None, **kw):
    """A certify statement of an officer key (keylog.py's builder), valid from KT0 unless told."""
    import keylog
    kw.setdefault("not_before", KT0)
    name, number = OFFICERS[agency or label.split("-")[0]]
    return keylog.officer(label, name, number, **kw)


def node_st(label, **kw):
    import keylog
    kw.setdefault("not_before", KT0)
    return keylog.certify(label, "node", **kw)


def start_log(v, agency, officer=True, node=True):
    """The agency's inception (committing to <agency>-root-1), then its officer
    <agency>-officer-1 and its node <agency>-node-1, certified by the root."""
    import keylog
    v.state(agency, agency, keylog.root_st("inception", agency, agency + "-root-1"))
    if officer:
        v.state(agency, agency, officer_st(agency + "-officer-1"))
    if node:
        v.state(agency, agency, node_st(agency + "-node-1"))


def add2(v, label, signer, body, **kw):
    """A valid entry of format version 2 by `label`, signed by `signer`, citing
    the whole log of `label` the vector has built so far unless keys is given."""
    kw.setdefault("keys", v.log_len(label))
    return v.add(label, body, sign_as=signer, **kw)


def fail2(v, label, signer, body, **kw):
    kw.setdefault("keys", v.log_len(label))
    return v.fail(label, body, signer=signer, **kw)


def v2_case(v, bravo=True):
    """alpha and bravo start their logs (officer and node each); alpha's
    officer opens a case of format version 2 and adds bravo (investigator)."""
    start_log(v, "alpha")
    start_log(v, "bravo")
    add2(v, "alpha", "alpha-officer-1", case_opened())
    if bravo:
        add2(v, "alpha", "alpha-officer-1", member_added("bravo", "investigator"))


def v2_vectors():
    import keylog
    out = []

    def V(name, expect, desc):
        def deco(fn):
            v = Vector(name, desc)
            now = fn(v)
            out.append(v.to_json(expect, now=now))
            return fn
        return deco

    # -- valid ----------------------------------------------------------------
    @V("v2-officer-and-node-keys", "valid",
       "format version 2: alpha's officer key opens the case and adds bravo; bravo's officer writes a note; "
       "alpha's node key witnesses bravo's head. Each entry has alg -19, its signing key as kid and cites "
       "its author's whole key log (keys 3: inception, officer, node).")
    def _(v):
        v2_case(v)
        bn = add2(v, "bravo", "bravo-officer-1", note("Phone imaged; report follows."), refs=[v.last["alpha"]])
        add2(v, "alpha", "alpha-node-1", witness([(pub("bravo"), 0, bn)]), refs=[bn])

    @V("v2-after-root-rotation", "valid",
       "alpha certifies alpha-officer-1, rotates its root to alpha-root-1, which certifies alpha-officer-2. "
       "Officer 1 opens the case citing the 2 statements before the rotation, then writes a note citing all 4 "
       "(certified by the former root, still certified); officer 2 writes a note citing all 4.")
    def _(v):
        v.state("alpha", "alpha", keylog.root_st("inception", "alpha", "alpha-root-1"))
        v.state("alpha", "alpha", officer_st("alpha-officer-1"))
        v.state("alpha", "alpha-root-1", keylog.root_st("rotate-root", "alpha-root-1", "alpha-root-2"))
        v.state("alpha", "alpha-root-1", officer_st("alpha-officer-2"))
        add2(v, "alpha", "alpha-officer-1", case_opened(), keys=2)
        add2(v, "alpha", "alpha-officer-1", note("Warrant served."))
        add2(v, "alpha", "alpha-officer-2", note("Devices bagged."))

    @V("v2-revoked-after-cited-prefix", "valid",
       "alpha's log revokes alpha-officer-1 (compromised, effective 30 s after the member-added) in statement "
       "3, after the 3 statements the officer's note cites; the note is dated after the effective time. Valid by "
       "the rules (V22 reads the cited prefix); a receiver holding the revocation refuses it as a new entry "
       "(SPEC.md 8.6), which is a receiver's policy, not a rule, and not what this vector tests.")
    def _(v):
        v2_case(v)
        v.state("alpha", "alpha", keylog.revoke("alpha-officer-1", "compromised", effective=T0 + STEP + 30_000))
        add2(v, "alpha", "alpha-officer-1", note("Written under the old prefix."), keys=3)

    @V("v2-key-validity-at-limits", "valid",
       "alpha-officer-2 is certified from T0 + 2 min to T0 + 3 min; its notes dated exactly at not-before and "
       "exactly at not-after are valid (V24 is inclusive at both ends).")
    def _(v):
        start_log(v, "alpha", node=False)
        v.state("alpha", "alpha", officer_st("alpha-officer-2", not_before=T0 + 2 * STEP,
                                            not_after=T0 + 3 * STEP))
        add2(v, "alpha", "alpha-officer-1", case_opened())
        add2(v, "alpha", "alpha-officer-1", note("Shift handover."))
        add2(v, "alpha", "alpha-officer-2", note("At not-before."), time=T0 + 2 * STEP)
        add2(v, "alpha", "alpha-officer-2", note("At not-after."), time=T0 + 3 * STEP)

    @V("v2-prefix-read-in-recovered-log", "valid",
       "a thief of alpha's root certifies thief-officer (statement 2); alpha recovers with a rotate-root by "
       "alpha-root-1 at position 2. alpha-officer-1 (certified in statement 1, before the theft) writes a note "
       "citing keys 3: its prefix is read in the log as held after the recovery (inception, officer, "
       "rotation), where the officer is certified (SPEC.md 5.7).")
    def _(v):
        v.state("alpha", "alpha", keylog.root_st("inception", "alpha", "alpha-root-1"))
        v.state("alpha", "alpha", officer_st("alpha-officer-1"))
        v.state("alpha", "alpha", officer_st("thief-officer", agency="alpha"))
        add2(v, "alpha", "alpha-officer-1", case_opened(), keys=2)
        v.state("alpha", "alpha-root-1", keylog.root_st("rotate-root", "alpha-root-1", "alpha-root-2"), seq=2)
        add2(v, "alpha", "alpha-officer-1", note("Under a prefix the recovery reached into."), keys=3)

    # -- V21 uncertified-key ----------------------------------------------
    @V("v2-uncertified-stranger-key", "uncertified-key",
       "alpha's note signed by a key no log certifies (label stranger), as its kid.")
    def _(v):
        v2_case(v)
        fail2(v, "alpha", "stranger", note("Who am I?"))

    @V("v2-uncertified-root-as-kid", "uncertified-key",
       "alpha's note of format version 2 signed by alpha's root in force (the agency id) as kid: a root signs "
       "key statements only.")
    def _(v):
        v2_case(v)
        fail2(v, "alpha", "alpha", note("Signed by the root."))

    @V("v2-uncertified-former-root", "uncertified-key",
       "after alpha rotated its root to alpha-root-1, a note signed by the former root alpha (kid alpha).")
    def _(v):
        v.state("alpha", "alpha", keylog.root_st("inception", "alpha", "alpha-root-1"))
        v.state("alpha", "alpha", officer_st("alpha-officer-1"))
        v.state("alpha", "alpha-root-1", keylog.root_st("rotate-root", "alpha-root-1", "alpha-root-2"))
        add2(v, "alpha", "alpha-officer-1", case_opened())
        fail2(v, "alpha", "alpha", note("Signed by the former root."))

    @V("v2-uncertified-other-agencys-officer", "uncertified-key",
       "a note whose author is alpha, signed by bravo's officer (certified in bravo's log, not alpha's).")
    def _(v):
        v2_case(v)
        fail2(v, "alpha", "bravo-officer-1", note("Posing as alpha."))

    @V("v2-uncertified-certified-after-prefix", "uncertified-key",
       "alpha certifies alpha-officer-2 in statement 3; its note cites keys 3 (statements 0 to 2), where the "
       "key is not yet certified.")
    def _(v):
        v2_case(v)
        v.state("alpha", "alpha", officer_st("alpha-officer-2"))
        fail2(v, "alpha", "alpha-officer-2", note("Too early a prefix."), keys=3)

    @V("v2-uncertified-superseded-certification", "uncertified-key",
       "a thief of alpha's root certifies thief-officer in statement 2; alpha recovers with a rotate-root by "
       "the pre-committed alpha-root-1 at position 2, superseding it (SPEC.md 3.4). The thief's note cites "
       "keys 3: in the log as held after the recovery, statement 2 is the rotation, and thief-officer is not "
       "certified (SPEC.md 5.7).")
    def _(v):
        v.state("alpha", "alpha", keylog.root_st("inception", "alpha", "alpha-root-1"))
        v.state("alpha", "alpha", officer_st("alpha-officer-1"))
        v.state("alpha", "alpha", officer_st("thief-officer", agency="alpha"))
        add2(v, "alpha", "alpha-officer-1", case_opened(), keys=2)
        v.state("alpha", "alpha-root-1", keylog.root_st("rotate-root", "alpha-root-1", "alpha-root-2"), seq=2)
        fail2(v, "alpha", "thief-officer", note("Written with a superseded certification."), keys=3)

    # -- V22 revoked-key ----------------------------------------------------
    for reason, effective, when in (("retired", T0 + 86_400_000, "a day after the note"),
                                    ("lost", KT0 + 86_400_000, "before the case"),
                                    ("compromised", T0 + STEP, "at the member-added's time")):
        @V(f"v2-revoked-{reason}", "revoked-key",
           f"alpha's log revokes alpha-officer-1 as {reason}, effective {when}, in statement 3; the officer's "
           f"note cites keys 4, so the revocation is in its cited prefix (V22, whatever the effective time).")
        def _(v, reason=reason, effective=effective):
            v2_case(v)
            v.state("alpha", "alpha", keylog.revoke("alpha-officer-1", reason, effective=effective))
            fail2(v, "alpha", "alpha-officer-1", note("Still writing."))

    # -- V23 key-role -------------------------------------------------------
    @V("v2-key-role-note-by-node-key", "key-role",
       "alpha's note signed by alpha-node-1 (role node): only witnesses are signed by node keys.")
    def _(v):
        v2_case(v)
        fail2(v, "alpha", "alpha-node-1", note("Node speaking."))

    @V("v2-key-role-genesis-by-node-key", "key-role",
       "alpha's genesis of format version 2 signed by alpha-node-1: a genesis, like every body but a witness, "
       "is signed by an officer key.")
    def _(v):
        start_log(v, "alpha")
        fail2(v, "alpha", "alpha-node-1", case_opened())

    @V("v2-key-role-witness-by-officer-key", "key-role",
       "bravo's witness of alpha's head signed by bravo-officer-1 (role officer): witnesses are signed by "
       "node keys.")
    def _(v):
        v2_case(v)
        a = v.last["alpha"]
        fail2(v, "bravo", "bravo-officer-1", witness([(pub("alpha"), 1, a)]), refs=[a])

    # -- V24 key-validity ---------------------------------------------------
    @V("v2-key-validity-before-not-before", "key-validity",
       "alpha-officer-2 is certified from T0 + 10 min; its note is dated T0 + 2 min.")
    def _(v):
        v2_case(v)
        v.state("alpha", "alpha", officer_st("alpha-officer-2", not_before=T0 + 10 * STEP))
        fail2(v, "alpha", "alpha-officer-2", note("Before my time."))

    @V("v2-key-validity-after-not-after", "key-validity",
       "alpha-officer-2 is certified until T0 + 1 min; its note is dated T0 + 2 min.")
    def _(v):
        v2_case(v)
        v.state("alpha", "alpha", officer_st("alpha-officer-2", not_after=T0 + STEP))
        fail2(v, "alpha", "alpha-officer-2", note("After my time."))

    # -- V20 key-log-pending ------------------------------------------------
    @V("v2-key-log-pending", "key-log-pending",
       "alpha's note by alpha-officer-1 cites keys 4 (statement 3 certifies alpha-officer-2); the validator "
       "holds alpha's first 3 statements only, which certify alpha-officer-1: V20 asks for the whole cited "
       "prefix.")
    def _(v):
        v2_case(v)
        v.state("alpha", "alpha", officer_st("alpha-officer-2"))
        v.held["alpha"] = 3
        fail2(v, "alpha", "alpha-officer-1", note("Ahead of the receiver's log."))

    @V("v2-key-log-pending-after-recovery", "key-log-pending",
       "a thief of alpha's root certifies thief-officer (statement 2) and a profile (3); alpha recovers with a "
       "rotate-root by alpha-root-1 at position 2, so the log it holds has 3 statements. The thief's note "
       "cites keys 4: fewer are held, so it waits (V20) before V21 is read; it would fail V21 once the "
       "recovered log has 4 statements (SPEC.md 5.7).")
    def _(v):
        v.state("alpha", "alpha", keylog.root_st("inception", "alpha", "alpha-root-1"))
        v.state("alpha", "alpha", officer_st("alpha-officer-1"))
        v.state("alpha", "alpha", officer_st("thief-officer", agency="alpha"))
        v.state("alpha", "alpha", keylog.profile("Alpha Cybercrime Division", "PH"))
        add2(v, "alpha", "alpha-officer-1", case_opened(), keys=2)
        v.state("alpha", "alpha-root-1", keylog.root_st("rotate-root", "alpha-root-1", "alpha-root-2"), seq=2)
        fail2(v, "alpha", "thief-officer", note("Written with a superseded certification."), keys=4)

    @V("v2-key-log-pending-no-log", "key-log-pending",
       "bravo's first note cites keys 3 of bravo's log; the validator holds alpha's log only.")
    def _(v):
        v2_case(v)
        v.held["bravo"] = 0
        fail2(v, "bravo", "bravo-officer-1", note("Ready."), refs=[v.last["alpha"]])

    # -- V19 version-mismatch -----------------------------------------------
    @V("v2-version-mismatch-v1-in-v2-case", "version-mismatch",
       "in a case of format version 2, alpha's note of format version 1 (alg -8, kid = author = alpha, "
       "signed by alpha's root).")
    def _(v):
        v2_case(v)
        v.fail("alpha", note("Old habits."))

    @V("v2-version-mismatch-v2-in-v1-case", "version-mismatch",
       "in a case of format version 1 (alpha's genesis signed by its agency key), alpha's note of format "
       "version 2 by alpha-officer-1, citing alpha's log, which the validator holds.")
    def _(v):
        start_log(v, "alpha")
        v.add("alpha", case_opened())
        fail2(v, "alpha", "alpha-officer-1", note("New habits."))

    # -- V4 bad-header ------------------------------------------------------
    @V("v2-bad-header-v2-alg-eddsa", "bad-header",
       "an entry of format version 2 (v 2, keys 3, kid alpha-officer-1) with alg -8 instead of -19, signed by "
       "the kid.")
    def _(v):
        v2_case(v)
        fail2(v, "alpha", "alpha-officer-1", note("Polymorphic alg."),
              entry_kw={"protected": protected_header(pub("alpha-officer-1"), ALG_EDDSA)})

    @V("v2-bad-header-v1-alg-ed25519", "bad-header",
       "in a case of format version 1, alpha's note of format version 1 with alg -19 instead of -8, signed by "
       "alpha (kid = author).")
    def _(v):
        v.add("alpha", case_opened())
        v.fail("alpha", note("Fully specified alg."),
               entry_kw={"protected": protected_header(pub("alpha"), ALG_ED25519)})

    # -- V5 unsupported-version --------------------------------------------
    @V("v2-unsupported-version-alg-ed25519", "unsupported-version",
       "in a case of format version 2, a note with v 3 and alg -19 (kid alpha-officer-1, keys 3), signed by the "
       "kid: V5 is read before the part of V4 that needs the version, so an unknown version is V5 whatever "
       "the alg (-8 or -19).")
    def _(v):
        v2_case(v)
        fail2(v, "alpha", "alpha-officer-1", note("From a later format."), mutate=lambda p: p.update(v=3),
              entry_kw={"protected": protected_header(pub("alpha-officer-1"), ALG_ED25519)})

    # -- V6 schema ----------------------------------------------------------
    @V("v2-schema-keys-missing", "schema",
       "an entry of format version 2 (alg -19, kid alpha-officer-1) without \"keys\".")
    def _(v):
        v2_case(v)
        fail2(v, "alpha", "alpha-officer-1", note("No prefix."), mutate=lambda p: p.pop("keys"))

    @V("v2-schema-keys-zero", "schema",
       "an entry of format version 2 with \"keys\" 0 (at least 1: the inception).")
    def _(v):
        v2_case(v)
        fail2(v, "alpha", "alpha-officer-1", note("Empty prefix."), keys=0)

    @V("v2-schema-keys-in-v1", "schema",
       "in a case of format version 1, alpha's note of format version 1 (alg -8, kid alpha) with \"keys\" 3.")
    def _(v):
        v.add("alpha", case_opened())
        v.fail("alpha", note("A prefix in version 1."), mutate=lambda p: p.update(keys=3))

    # -- the order of SPEC.md 8.1, where an entry breaks two rules on purpose --
    @V("v2-bad-header-before-schema", "bad-header",
       "an entry with v 2, alg -8 and no \"keys\" (kid alpha-officer-1, signed by the kid): it breaks V4 and V6; "
       "the alg of the version is read right after V5, so V4 is reported.")
    def _(v):
        v2_case(v)
        fail2(v, "alpha", "alpha-officer-1", note("Two faults."), mutate=lambda p: p.pop("keys"),
              entry_kw={"protected": protected_header(pub("alpha-officer-1"), ALG_EDDSA)})

    @V("v2-version-mismatch-before-equivocation", "version-mismatch",
       "in a case of format version 2, alpha's note of format version 1 at seq 1, which the member-added "
       "holds: it breaks V19 and V10; V19 is checked right after V9, so it is reported.")
    def _(v):
        v2_case(v)
        v.fail("alpha", note("Same position, old format."), seq=1, prev=v.case)

    @V("v2-uncertified-before-not-a-member", "uncertified-key",
       "bravo, never added to the case, writes a note signed by a key no log certifies: it breaks V21 and "
       "V14; V20 to V24 come before V14, so V21 is reported.")
    def _(v):
        v2_case(v, bravo=False)
        fail2(v, "bravo", "stranger", note("Not a member, not certified."), refs=[v.last["alpha"]])

    # -- V8 bad-signature ---------------------------------------------------
    @V("v2-bad-signature-root-signs-for-officer", "bad-signature",
       "an entry of format version 2 whose kid is alpha-officer-1, signed by alpha's root: V8 verifies with "
       "the kid.")
    def _(v):
        v2_case(v)
        fail2(v, "alpha", "alpha", note("The root signs for its officer."),
              entry_kw={"kid": pub("alpha-officer-1")})
        v.labels.add("alpha-officer-1")

    return out


def build_all():
    vectors = valid_vectors() + failing_vectors() + v2_vectors()
    names = [v["name"] for v in vectors]
    assert len(names) == len(set(names)), "duplicate vector names"
    return {"format": FORMAT, "vectors": vectors}


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default=os.path.join(HERE, "entries.json"))
    ap.add_argument("--no-check", action="store_true", help="skip the replay through validate.py")
    ap.add_argument("--bundles-out", default=os.path.join(HERE, "bundles.json"),
                    help="where bundle_vectors.py writes the bundle vectors")
    args = ap.parse_args()
    doc = build_all()
    if not args.no_check:
        import validate
        failures = validate.check_document(doc)
        if failures:
            for f in failures:
                print("SELF-CHECK FAILED:", f, file=sys.stderr)
            sys.exit(1)
    text = json.dumps(doc, indent=1, sort_keys=True, ensure_ascii=True) + "\n"
    with open(args.out, "w", encoding="ascii", newline="\n") as f:
        f.write(text)
    counts = {}
    for v in doc["vectors"]:
        counts[v["expect"]] = counts.get(v["expect"], 0) + 1
    print(f"wrote {len(doc['vectors'])} vectors to {args.out}: "
          + ", ".join(f"{k} {n}" for k, n in sorted(counts.items())))
    import bundle_vectors  # the court bundle vectors (SPEC.md 10, Appendix A.3)
    bundle_vectors.write(args.bundles_out)


if __name__ == "__main__":
    main()
