#!/usr/bin/env python3
"""Generate the Custodia key log conformance vectors (keylogs.json).

Written from SPEC.md 3.4 (rules K1..K12) and spec/custodia.cddl
(key-statement ...) alone, sharing no code with the Rust crates. Keys come
from labels as in generate.py (seed = SHA-256("custodia test key " + label),
SPEC.md A.2). The output is the same on every run. Before writing, every
vector is replayed through check_keylogs.py and must give exactly what it
expects.

Usage:  python3 keylog.py [--out keylogs.json] [--no-check]
Needs:  cbor2, cryptography (see requirements.txt)
"""

import sys

sys.dont_write_bytecode = True

import argparse
import json
import os

import cbor2

from cbor_det import Indef, Pairs, Raw, Tag, WideUint, enc
from check_keylogs import CLASSES, CONTENT_TYPE, FORMAT, check_document
from generate import build_entry, det, pub, sha256

HERE = os.path.dirname(os.path.abspath(__file__))
T0 = 1_796_000_000_000  # 2026-11-30T00:53:20Z: the inception of every vector
STEP = 60_000
DAY = 86_400_000
AGENCY = "alpha"  # the inception key, so the agency id


def key(label):
    return {"alg": -19, "pub": pub(label)}


def root_st(kind, root, nxt):
    return {kind: {"root": key(root), "next": sha256(pub(nxt))}}


def certify(label, role="node", officer=None, not_before=T0, not_after=None):
    c = {"key": key(label), "role": role, "not-before": not_before}
    if officer is not None:
        c["officer"] = {"name": officer[0], "number": officer[1]}
    if not_after is not None:
        c["not-after"] = not_after
    return {"certify": c}


def officer(label, name="Maria Santos", number="PNP-ACG-0412", **kw):
    return certify(label, "officer", (name, number), **kw)


def revoke(label, reason, effective=None):
    return {"revoke": {"key": pub(label), "effective": T0 + DAY if effective is None else effective,
                       "reason": reason}}


def profile(name="Alpha Cybercrime Division", country="PH"):
    return {"profile": {"name": name, "country": country}}


def key_header(kid):
    return {1: -19, 3: CONTENT_TYPE, 4: kid}


class Vec:
    """One vector: statements fed in order to a fresh log."""

    def __init__(self, name, description):
        self.name = name
        self.description = description
        self.statements = []  # bytes, as fed
        self.held = []  # (id, time) of the statements the log holds
        self.labels = {AGENCY}
        self.superseded = 0
        self.final = None
        self.final_class = None

    def payload(self, st, seq=None, prev=None, time=None, agency=AGENCY):
        if seq is None:
            seq = len(self.held)
        if time is None:
            time = (self.held[min(seq, len(self.held)) - 1][1] + STEP) if seq > 0 else T0
        p = {"v": 1, "agency": pub(agency), "seq": seq, "time": time, "st": st}
        if seq > 0:
            p["prev"] = prev if prev is not None else self.held[seq - 1][0]
        return p

    def build(self, signer, st, mutate=None, entry_kw=None, **kw):
        self.labels.add(signer)
        p = self.payload(st, **kw)
        if mutate is not None:
            mutate(p)
        ekw = dict(entry_kw or {})
        if "protected" not in ekw and "protected_bytes" not in ekw:
            ekw["protected"] = key_header(pub(signer))
        if callable(ekw.get("payload_bytes")):
            ekw["payload_bytes"] = ekw["payload_bytes"](p)
        return build_entry(signer, p, **ekw), p

    def add(self, signer, st, **kw):
        """A statement the log accepts; at `seq` below the length, a recovery."""
        b, p = self.build(signer, st, **kw)
        self.statements.append(b)
        if p["seq"] < len(self.held):
            self.superseded += len(self.held) - p["seq"]
            del self.held[p["seq"]:]
        self.held.append((sha256(b), p["time"]))
        return b

    def supersede(self, signer, st, **kw):
        """A statement the held rotation at its position supersedes."""
        b, _ = self.build(signer, st, **kw)
        self.statements.append(b)
        self.superseded += 1
        return b

    def start(self, nxt="alpha-root-1"):
        return self.add(AGENCY, root_st("inception", AGENCY, nxt))

    def fail(self, cls, signer=None, st=None, raw=None, **kw):
        """The last statement, refused with class cls."""
        if raw is None:
            raw, _ = self.build(signer or AGENCY, st if st is not None else profile(), **kw)
        self.statements.append(raw)
        self.final_class = cls
        return raw

    def to_json(self, status=()):
        v = {"name": self.name, "description": self.description,
             "keys": {lab: pub(lab).hex() for lab in sorted(self.labels)},
             "statements": [b.hex() for b in self.statements]}
        if self.final_class is None:
            v["expect"] = "valid"
            v["length"] = len(self.held)
            v["head"] = self.held[-1][0].hex()
            v["superseded"] = self.superseded
            v["status"] = list(status)
            v["root"] = None  # filled in by valid()
        else:
            v["expect"] = CLASSES[self.final_class]
            v["class"] = self.final_class
        return v


def st_(label, at, status, **kw):
    d = {"key": label, "at": at, "status": status}
    d.update(kw)
    return d


# ---------------------------------------------------------------------------
# Valid vectors


def valid_vectors():
    out = []

    def done(v, root, status=()):
        for s in status:
            v.labels.add(s["key"])
        j = v.to_json(status)
        j["root"] = pub(root).hex()
        v.labels.add(root)
        j["keys"] = {lab: pub(lab).hex() for lab in sorted(v.labels)}
        out.append(j)

    v = Vec("inception", "The inception alone: alpha's root is the agency id, committing to alpha-root-1.")
    v.start()
    done(v, AGENCY, [st_(AGENCY, 0, "unknown"), st_(AGENCY, 1, "root"), st_("alpha-root-1", 1, "unknown")])

    v = Vec("profile", "The inception, then the agency's profile (name and country).")
    v.start()
    v.add(AGENCY, profile())
    done(v, AGENCY, [st_(AGENCY, 2, "root")])

    v = Vec("certify-node", "A node key certified by the root, without not-after.")
    v.start()
    v.add(AGENCY, certify("alpha-node-1"))
    done(v, AGENCY, [st_("alpha-node-1", 1, "unknown"),
                     st_("alpha-node-1", 2, "certified", certified_by=1, role="node", not_before=T0)])

    v = Vec("certify-officer", "An officer key certified with the officer's name and number and a not-after.")
    v.start()
    v.add(AGENCY, officer("alpha-officer-1", not_after=T0 + 365 * DAY))
    done(v, AGENCY, [st_("alpha-officer-1", 2, "certified", certified_by=1, role="officer", not_before=T0,
                         officer={"name": "Maria Santos", "number": "PNP-ACG-0412"},
                         not_after=T0 + 365 * DAY)])

    for reason in ("retired", "lost", "compromised"):
        v = Vec(f"revoke-{reason}", f"A node key certified, then revoked as {reason}.")
        v.start()
        v.add(AGENCY, certify("alpha-node-1"))
        v.add(AGENCY, revoke("alpha-node-1", reason, effective=T0 + 2 * DAY))
        done(v, AGENCY, [
            st_("alpha-node-1", 2, "certified", certified_by=1, role="node", not_before=T0),
            st_("alpha-node-1", 3, "revoked", certified_by=1, role="node", not_before=T0, revoked_by=2,
                effective=T0 + 2 * DAY, reason=reason)])

    v = Vec("rotate-root", "A planned rotation: alpha-root-1, committed to by the inception, signs the "
            "rotate-root naming itself and committing to alpha-root-2.")
    v.start()
    v.add("alpha-root-1", root_st("rotate-root", "alpha-root-1", "alpha-root-2"))
    done(v, "alpha-root-1", [st_(AGENCY, 1, "root"), st_(AGENCY, 2, "former-root"),
                             st_("alpha-root-1", 1, "unknown"), st_("alpha-root-1", 2, "root"),
                             st_("alpha-root-2", 2, "unknown")])

    v = Vec("equal-times", "Two statements with the same time: K10 asks only that time does not go back.")
    v.start()
    v.add(AGENCY, profile(), time=T0)
    done(v, AGENCY)

    v = Vec("duplicate", "The same statement fed twice: the log holds it once, and nothing is refused.")
    v.start()
    v.add(AGENCY, certify("alpha-node-1"))
    v.statements.append(v.statements[-1])
    j_status = [st_("alpha-node-1", 2, "certified", certified_by=1, role="node", not_before=T0)]
    done(v, AGENCY, j_status)
    out[-1]["duplicates"] = True

    v = Vec("lifecycle", "A full life: inception, profile, a node and an officer certified, the root "
            "rotated twice, the node revoked by the second root, a new node, the officer revoked as "
            "retired, a new profile.")
    v.start()
    v.add(AGENCY, profile())                                                     # 1
    v.add(AGENCY, certify("alpha-node-1"))                                        # 2
    v.add(AGENCY, officer("alpha-officer-1", not_after=T0 + 365 * DAY))           # 3
    v.add("alpha-root-1", root_st("rotate-root", "alpha-root-1", "alpha-root-2"))  # 4
    v.add("alpha-root-1", revoke("alpha-node-1", "lost", effective=T0 + 3 * DAY))  # 5
    v.add("alpha-root-1", certify("alpha-node-2", not_before=T0 + DAY))           # 6
    v.add("alpha-root-2", root_st("rotate-root", "alpha-root-2", "alpha-root-3"))  # 7
    v.add("alpha-root-2", revoke("alpha-officer-1", "retired", effective=T0 + 4 * DAY))  # 8
    v.add("alpha-root-2", profile("Alpha Cybercrime Group", "PH"))                 # 9
    officer_st = dict(certified_by=3, role="officer", not_before=T0,
                      officer={"name": "Maria Santos", "number": "PNP-ACG-0412"}, not_after=T0 + 365 * DAY)
    done(v, "alpha-root-2", [
        st_(AGENCY, 4, "root"), st_(AGENCY, 5, "former-root"), st_(AGENCY, 10, "former-root"),
        st_("alpha-root-1", 5, "root"), st_("alpha-root-1", 8, "former-root"),
        st_("alpha-root-2", 7, "unknown"), st_("alpha-root-2", 10, "root"),
        st_("alpha-root-3", 10, "unknown"),
        st_("alpha-node-1", 2, "unknown"),
        st_("alpha-node-1", 5, "certified", certified_by=2, role="node", not_before=T0),
        st_("alpha-node-1", 6, "revoked", certified_by=2, role="node", not_before=T0, revoked_by=5,
            effective=T0 + 3 * DAY, reason="lost"),
        st_("alpha-node-2", 10, "certified", certified_by=6, role="node", not_before=T0 + DAY),
        st_("alpha-officer-1", 8, "certified", **officer_st),
        st_("alpha-officer-1", 10, "revoked", **officer_st, revoked_by=8, effective=T0 + 4 * DAY,
            reason="retired"),
    ])

    v = Vec("recovery-supersedes-thief", "A thief of the inception key certifies a node key of its own "
            "and a profile; the agency recovers with a rotate-root by the pre-committed alpha-root-1 at "
            "position 2 (prev = its own certification at 1), superseding the thief's two statements.")
    v.start()
    v.add(AGENCY, certify("alpha-node-1"))                      # 1, the agency's
    v.add(AGENCY, certify("thief-node"))                        # 2, the thief's
    v.add(AGENCY, profile("Alpha Cybercrime Division (new)", "PH"))  # 3, the thief's
    v.add("alpha-root-1", root_st("rotate-root", "alpha-root-1", "alpha-root-2"), seq=2)
    done(v, "alpha-root-1", [
        st_("thief-node", 3, "unknown"), st_("thief-node", 4, "unknown"),
        st_("alpha-node-1", 3, "certified", certified_by=1, role="node", not_before=T0),
        st_(AGENCY, 3, "former-root"), st_("alpha-root-1", 3, "root")])

    v = Vec("recovery-then-continue", "A recovery superseding one statement, then the new root "
            "certifies a node key and the log goes on from the recovery.")
    v.start()
    v.add(AGENCY, certify("thief-node"))
    v.add("alpha-root-1", root_st("rotate-root", "alpha-root-1", "alpha-root-2"), seq=1)
    v.add("alpha-root-1", certify("alpha-node-1"))
    done(v, "alpha-root-1", [
        st_("thief-node", 3, "unknown"),
        st_("alpha-node-1", 3, "certified", certified_by=2, role="node", not_before=T0)])

    v = Vec("superseded-arrives-after-recovery", "The agency rotates to the pre-committed alpha-root-1 "
            "at position 2; then a statement the inception key signed at position 2 arrives (a thief's, "
            "made before the rotation reached this log): superseded by the rotation, kept for reports, "
            "not a fork (the two statements are by different roots).")
    v.start()
    v.add(AGENCY, certify("alpha-node-1"))                                          # 1
    v.add("alpha-root-1", root_st("rotate-root", "alpha-root-1", "alpha-root-2"))   # 2
    v.supersede(AGENCY, certify("thief-node"), seq=2, time=T0 + 2 * STEP)
    done(v, "alpha-root-1", [st_("thief-node", 3, "unknown"), st_(AGENCY, 3, "former-root")])

    v = Vec("recovery-after-rotation", "After a planned rotation to alpha-root-1, a thief of "
            "alpha-root-1 certifies a node key; alpha-root-2, committed to by the rotation, recovers at "
            "that position.")
    v.start()
    v.add("alpha-root-1", root_st("rotate-root", "alpha-root-1", "alpha-root-2"))  # 1
    v.add("alpha-root-1", certify("thief-node"))                                   # 2, the thief's
    v.add("alpha-root-2", root_st("rotate-root", "alpha-root-2", "alpha-root-3"), seq=2)
    done(v, "alpha-root-2", [
        st_("thief-node", 3, "unknown"), st_(AGENCY, 3, "former-root"),
        st_("alpha-root-1", 2, "root"), st_("alpha-root-1", 3, "former-root"),
        st_("alpha-root-2", 3, "root")])
    return out


# ---------------------------------------------------------------------------
# Failing vectors: the last statement is refused, every one before it accepted


def failing_vectors():
    out = []

    def vf(name, desc, cls, build):
        v = Vec(name, desc)
        v.start()
        build(v)
        assert v.final_class == cls, name
        out.append(v.to_json())

    # K1
    vf("oversize", "A statement of 4097 bytes (a profile padded with an unknown member).",
       "oversize", lambda v: v.fail("oversize", raw=oversize(v)))

    # K2
    def untagged(p, u, pl, sig):
        return enc([p, u, pl, sig])
    vf("untagged", "The COSE_Sign1 array without tag 18.", "malformed",
       lambda v: v.fail("malformed", entry_kw={"outer": untagged}))
    vf("three-items", "A tagged array of three items (no signature).", "malformed",
       lambda v: v.fail("malformed", entry_kw={"outer": lambda p, u, pl, s: enc(Tag(18, [p, u, pl]))}))
    vf("five-items", "A tagged array of five items.", "malformed",
       lambda v: v.fail("malformed", entry_kw={"outer": lambda p, u, pl, s: enc(Tag(18, [p, u, pl, s, b""]))}))
    vf("unprotected-not-empty", "The unprotected header holds the kid (4: key).", "malformed",
       lambda v: v.fail("malformed", entry_kw={"unprotected": {4: pub(AGENCY)}}))
    vf("signature-63-bytes", "The signature is 63 bytes.", "malformed",
       lambda v: v.fail("malformed", entry_kw={"sign": lambda tbs, s: s[:63]}))
    vf("signature-65-bytes", "The signature is 65 bytes.", "malformed",
       lambda v: v.fail("malformed", entry_kw={"sign": lambda tbs, s: s + b"\x00"}))
    vf("trailing-bytes", "A valid statement followed by one more byte.", "malformed",
       lambda v: v.fail("malformed", raw=v.build(AGENCY, profile())[0] + b"\x00"))

    # K3
    def unsorted_payload(p):
        return enc(Pairs(sorted(p.items(), key=lambda kv: enc(kv[0]), reverse=True)))
    vf("payload-map-order", "The payload's keys in reverse order (signed as encoded).", "non-canonical",
       lambda v: v.fail("non-canonical", entry_kw={"payload_bytes": unsorted_payload}))

    def wide_seq(p):
        return enc(Pairs(sorted(((k, WideUint(x, 8) if k == "seq" else x) for k, x in p.items()),
                                key=lambda kv: enc(kv[0]))))
    vf("payload-wide-int", "seq 1 written with an eight-byte head.", "non-canonical",
       lambda v: v.fail("non-canonical", entry_kw={"payload_bytes": wide_seq}))
    vf("indefinite-array", "The COSE_Sign1 array with indefinite length.", "non-canonical",
       lambda v: v.fail("non-canonical", entry_kw={"outer": lambda p, u, pl, s: enc(Tag(18, Indef([p, u, pl, s])))}))
    vf("header-map-order", "The protected header with keys 4, 3, 1.", "non-canonical",
       lambda v: v.fail("non-canonical", entry_kw={"protected_bytes": enc(Pairs(
           [(4, pub(AGENCY)), (3, CONTENT_TYPE), (1, -19)]))}))

    # K4
    vf("alg-eddsa", "alg -8 (polymorphic EdDSA) instead of -19.", "bad-header",
       lambda v: v.fail("bad-header", entry_kw={"protected": {1: -8, 3: CONTENT_TYPE, 4: pub(AGENCY)}}))
    vf("missing-kid", "The protected header without a kid.", "bad-header",
       lambda v: v.fail("bad-header", entry_kw={"protected": {1: -19, 3: CONTENT_TYPE}}))
    vf("extra-header-param", "The protected header with a fourth member (2: crit).", "bad-header",
       lambda v: v.fail("bad-header", entry_kw={"protected": {1: -19, 2: [4], 3: CONTENT_TYPE, 4: pub(AGENCY)}}))
    vf("entry-content-type", "The content type of an entry, not of a key statement.", "bad-header",
       lambda v: v.fail("bad-header", entry_kw={"protected": {1: -19, 3: "application/custodia-entry+cbor",
                                                               4: pub(AGENCY)}}))
    vf("kid-31-bytes", "A kid of 31 bytes.", "bad-header",
       lambda v: v.fail("bad-header", entry_kw={"protected": {1: -19, 3: CONTENT_TYPE, 4: pub(AGENCY)[:31]}}))

    # K5
    def schema(name, desc, st=None, mutate=None, signer=AGENCY, **kw):
        vf(name, desc, "schema", lambda v: v.fail("schema", signer, st, mutate=mutate, **kw))

    schema("unknown-member", "The payload has a member \"note\".", mutate=lambda p: p.update(note="x"))
    schema("version-2", "v = 2.", mutate=lambda p: p.update(v=2))
    schema("unknown-kind", "A statement kind \"suspend\".", st={"suspend": {"key": pub("alpha-node-1")}})
    schema("officer-missing", "role officer without the officer member.", st=certify("alpha-officer-1", "officer"))
    schema("officer-on-node", "role node with an officer member.",
           st=certify("alpha-node-1", "node", ("Maria Santos", "PNP-ACG-0412")))
    schema("not-after-before-not-before", "not-after one millisecond before not-before.",
           st=certify("alpha-node-1", not_before=T0 + DAY, not_after=T0 + DAY - 1))
    schema("control-character-in-name", "An officer name with a line feed.",
           st=certify("alpha-officer-1", "officer", ("Maria\nSantos", "PNP-ACG-0412")))
    schema("c1-control-in-name", "A profile name with U+0085 (next line, a C1 control character).",
           st=profile("Alpha\u0085Division"))
    schema("empty-name", "A profile with an empty name.", st=profile(""))
    schema("name-257-bytes", "An officer number of 257 bytes.",
           st=certify("alpha-officer-1", "officer", ("Maria Santos", "9" * 257)))
    schema("bad-country", "A profile whose country is \"ph\".", st=profile(country="ph"))
    schema("bad-reason", "A revoke with reason \"expired\".",
           st={"revoke": {"key": pub("alpha-node-1"), "effective": T0, "reason": "expired"}})
    schema("key-alg-not-ed25519", "A certified key with alg -8.",
           st={"certify": {"key": {"alg": -8, "pub": pub("alpha-node-1")}, "role": "node", "not-before": T0}})
    schema("inception-at-seq-1", "An inception at seq 1.", st=root_st("inception", AGENCY, "alpha-root-1"))
    schema("non-inception-at-seq-0", "A profile at seq 0 after the inception.", st=profile(), seq=0,
           mutate=lambda p: p.pop("prev", None))
    schema("prev-at-seq-0", "An inception at seq 0 with a prev: the second statement fed.",
           st=root_st("inception", AGENCY, "alpha-root-1"), seq=0,
           mutate=lambda p: p.update(prev=sha256(b"nothing")))
    schema("prev-missing", "A profile at seq 1 without prev.", mutate=lambda p: p.pop("prev"))
    vf("bad-signature", "A profile signed by alpha with one bit of the signature flipped.", "bad-signature",
       lambda v: v.fail("bad-signature", entry_kw={"sign": lambda tbs, s: s[:10] + bytes([s[10] ^ 1]) + s[11:]}))
    vf("kid-not-signer", "A profile whose kid is alpha but signed by mallory.", "bad-signature",
       lambda v: v.fail("bad-signature", "mallory", entry_kw={"protected": key_header(pub(AGENCY))}))

    # K6
    vf("other-agency", "A statement of another agency (bravo's inception, which is valid by itself) "
       "fed to alpha's log.", "wrong-log",
       lambda v: v.fail("wrong-log", "bravo", root_st("inception", "bravo", "bravo-root-1"), agency="bravo", seq=0))
    # K7
    vf("gap", "Statement 2 fed to a log of one statement.", "gap",
       lambda v: v.fail("gap", st=profile(), seq=2, prev=sha256(b"statement 1")))
    # K8
    vf("prev-wrong", "Statement 1 whose prev is not the inception's id.", "broken-chain",
       lambda v: v.fail("broken-chain", st=profile(), prev=sha256(b"another inception")))

    # K9
    vf("thief-rotates", "A thief of the current root key (alpha) signs a rotate-root to a key of its own, "
       "thief-root: refused, the inception committed to alpha-root-1.", "wrong-signer",
       lambda v: v.fail("wrong-signer", "thief-root", root_st("rotate-root", "thief-root", "thief-root-2")))
    vf("thief-rotates-with-current-root", "The current root (alpha) signs a rotate-root naming "
       "alpha-root-1: only alpha-root-1 itself may sign it.", "wrong-signer",
       lambda v: v.fail("wrong-signer", AGENCY, root_st("rotate-root", "alpha-root-1", "alpha-root-2")))
    vf("rotate-uncommitted", "A rotate-root signed by and naming alpha-root-2, which no root committed to.",
       "wrong-signer",
       lambda v: v.fail("wrong-signer", "alpha-root-2", root_st("rotate-root", "alpha-root-2", "alpha-root-3")))

    def old_root_after_rotation(v):
        v.add("alpha-root-1", root_st("rotate-root", "alpha-root-1", "alpha-root-2"))
        v.fail("wrong-signer", AGENCY, certify("alpha-node-1"))
    vf("old-root-certifies", "After the rotation to alpha-root-1, the former root certifies a key.",
       "wrong-signer", old_root_after_rotation)
    vf("node-key-certifies", "A certified node key signs a certification.", "wrong-signer",
       lambda v: (v.add(AGENCY, certify("alpha-node-1")),
                  v.fail("wrong-signer", "alpha-node-1", certify("alpha-node-2"))))
    vf("inception-not-agency", "A log started by an inception whose root is not the agency id.",
       "wrong-signer", lambda v: inception_not_agency(v))

    # K10
    vf("time-reversed", "Statement 1 dated one millisecond before the inception.", "time-reversed",
       lambda v: v.fail("time-reversed", st=profile(), time=T0 - 1))

    # K11
    vf("certify-twice", "The same node key certified twice.", "bad-key",
       lambda v: (v.add(AGENCY, certify("alpha-node-1")), v.fail("bad-key", st=certify("alpha-node-1"))))
    vf("certify-root", "The root in force certified as a node key.", "bad-key",
       lambda v: v.fail("bad-key", st=certify(AGENCY)))
    vf("revoke-uncertified", "A revoke of a key never certified.", "bad-key",
       lambda v: v.fail("bad-key", st=revoke("alpha-node-1", "lost")))
    vf("revoke-twice", "A node key revoked, then revoked again.", "bad-key",
       lambda v: (v.add(AGENCY, certify("alpha-node-1")), v.add(AGENCY, revoke("alpha-node-1", "lost")),
                  v.fail("bad-key", st=revoke("alpha-node-1", "compromised"))))
    vf("revoke-root", "The root in force revoked as compromised.", "bad-key",
       lambda v: v.fail("bad-key", st=revoke(AGENCY, "compromised")))
    vf("rotate-to-certified", "The inception commits to alpha-node-1, certified as a node key; the "
       "rotation to it names a key named before.", "bad-key",
       lambda v: rotate_to_certified(v))

    # K12
    vf("root-fork", "The root signs two different statements at position 1.", "fork",
       lambda v: (v.add(AGENCY, profile()),
                  v.fail("fork", st=profile("Alpha Cybercrime Group", "PH"), seq=1)))
    vf("two-rotations-at-one-position", "The pre-committed alpha-root-1 signs two different rotations "
       "at position 1: the new root equivocated (K12).", "fork",
       lambda v: (v.add("alpha-root-1", root_st("rotate-root", "alpha-root-1", "alpha-root-2")),
                  v.fail("fork", "alpha-root-1", root_st("rotate-root", "alpha-root-1", "alpha-root-3"),
                         seq=1)))
    vf("fork-at-position-2", "Two certifications at position 2, both by the root in force.", "fork",
       lambda v: (v.add(AGENCY, certify("alpha-node-1")), v.add(AGENCY, certify("alpha-node-2")),
                  v.fail("fork", st=certify("alpha-node-3"), seq=2)))

    # A second statement at a held position that is not a recovery is
    # checked against the statements before it (K8 to K11) before it is
    # called a fork: only a root-signed, well-chained one proves that the
    # root equivocated.
    vf("stranger-at-held-position", "mallory signs a well-chained profile at position 1, which the log "
       "holds: refused as the wrong signer, not as a fork (it proves nothing of alpha's root).",
       "wrong-signer",
       lambda v: (v.add(AGENCY, profile()),
                  v.fail("wrong-signer", "mallory", profile("Alpha Cybercrime Group", "PH"), seq=1)))
    vf("thief-rotates-at-held-position", "A thief's rotate-root to thief-root at position 1, which the "
       "log holds: not the pre-committed key, so no recovery; refused by K9, not as a fork.",
       "wrong-signer",
       lambda v: (v.add(AGENCY, profile()),
                  v.fail("wrong-signer", "thief-root", root_st("rotate-root", "thief-root", "thief-root-2"),
                         seq=1)))
    vf("held-position-prev-wrong", "The root signs a second statement at position 1 whose prev is not "
       "the inception's id: K8, not a fork.", "broken-chain",
       lambda v: (v.add(AGENCY, profile()),
                  v.fail("broken-chain", st=profile("Alpha Cybercrime Group", "PH"), seq=1,
                         prev=sha256(b"another inception"))))
    vf("recovery-time-reversed", "A rotate-root by the pre-committed key at position 1 dated before the "
       "inception: not a recovery, K10.", "time-reversed",
       lambda v: (v.add(AGENCY, certify("thief-node")),
                  v.fail("time-reversed", "alpha-root-1", root_st("rotate-root", "alpha-root-1", "alpha-root-2"),
                         seq=1, time=T0 - 1)))
    return out


def oversize(v):
    # A statement of exactly 4097 bytes. Texts are at most 256 bytes, so no
    # valid payload is that large: the payload carries an unknown member
    # "pad" (K5), but K1 is checked first, on the bytes alone.
    for n in range(3000, 4200):
        b, _ = v.build(AGENCY, profile(), mutate=lambda p: p.update(pad=b"\x00" * n))
        if len(b) == 4097:
            return b
    raise AssertionError("no size gives 4097 bytes")


def inception_not_agency(v):
    # The only statement fed: an inception signed by the root it names,
    # which is not the agency id.
    v.statements.clear()
    v.held.clear()
    raw, _ = v.build("alpha-root-1", root_st("inception", "alpha-root-1", "alpha-root-2"), seq=0)
    v.fail("wrong-signer", raw=raw)


def rotate_to_certified(v):
    v.statements.clear()
    v.held.clear()
    v.add(AGENCY, root_st("inception", AGENCY, "alpha-node-1"))
    v.add(AGENCY, certify("alpha-node-1"))
    v.fail("bad-key", "alpha-node-1", root_st("rotate-root", "alpha-node-1", "alpha-root-2"))


def build_all():
    vectors = valid_vectors() + failing_vectors()
    names = [v["name"] for v in vectors]
    assert len(names) == len(set(names)), "duplicate vector names"
    return {"format": FORMAT, "vectors": vectors}


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default=os.path.join(HERE, "keylogs.json"))
    ap.add_argument("--no-check", action="store_true", help="skip the replay through check_keylogs.py")
    args = ap.parse_args()
    doc = build_all()
    if not args.no_check:
        failures = check_document(doc)
        if failures:
            for f in failures:
                print("SELF-CHECK FAILED:", f, file=sys.stderr)
            sys.exit(1)
    text = json.dumps(doc, indent=1, sort_keys=True, ensure_ascii=True) + "\n"
    with open(args.out, "w", encoding="ascii", newline="\n") as f:
        f.write(text)
    counts = {}
    for v in doc["vectors"]:
        k = v["expect"] if v["expect"] == "valid" else f"{v['expect']} {v['class']}"
        counts[k] = counts.get(k, 0) + 1
    print(f"wrote {len(doc['vectors'])} vectors to {args.out}: "
          + ", ".join(f"{k} {n}" for k, n in sorted(counts.items())))


if __name__ == "__main__":
    main()
