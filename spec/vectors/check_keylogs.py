#!/usr/bin/env python3
"""A small, independent Python checker of the key log rules K1..K12 (SPEC.md 3.4).

Written from SPEC.md 3.4 and spec/custodia.cddl (key-statement ...) alone; it
shares no code with the Rust crates. keylog.py replays every vector through it
before writing keylogs.json, and it runs on its own:

    python3 check_keylogs.py [keylogs.json]

It uses validate.py's CBOR decoder (which notes anything not deterministic)
and its strict, cofactored Ed25519 verification (SPEC.md 3.3). Where SPEC.md
3.4 leaves a point open, the choice is written next to the code and listed in
README.md.
"""

import hashlib
import json
import os
import re
import sys

sys.dont_write_bytecode = True

from cbor_det import Tag, enc
from validate import NotWellFormed, Tagged, decode_one, strict_verify

HERE = os.path.dirname(os.path.abspath(__file__))
FORMAT = "custodia-keylog-vectors/1"
MAX_STATEMENT = 4096
MAX_LOG = 100_000
CONTENT_TYPE = "application/custodia-key+cbor"
ROOT_KINDS = ("inception", "rotate-root")
KINDS = ROOT_KINDS + ("certify", "revoke", "profile")
REASONS = ("retired", "lost", "compromised")

# The class each refusal is reported as: rule number and a short name.
CLASSES = {
    "oversize": "K1", "malformed": "K2", "non-canonical": "K3", "bad-header": "K4",
    "schema": "K5", "bad-signature": "K5", "wrong-log": "K6", "gap": "K7",
    "broken-chain": "K8", "wrong-signer": "K9", "time-reversed": "K10", "bad-key": "K11",
    "fork": "K12",
}


class Refused(Exception):
    def __init__(self, cls, why):
        assert cls in CLASSES, cls
        super().__init__(f"{CLASSES[cls]} {cls}: {why}")
        self.cls = cls
        self.rule = CLASSES[cls]
        self.why = why


def sha256(b: bytes) -> bytes:
    return hashlib.sha256(b).digest()


# ---------------------------------------------------------------------------
# K1 to K5: a statement from its bytes alone


def _has_tag_or_float(x, outer=False):
    # SPEC.md 4.1: no tags (except the outer 18), no floats, no undefined.
    if isinstance(x, Tagged):
        return not outer or x.tag != 18 or _has_tag_or_float(x.value)
    if isinstance(x, tuple) and x and x[0] in ("float", "simple"):
        return True
    if isinstance(x, list):
        return any(_has_tag_or_float(i) for i in x)
    if isinstance(x, dict):
        return any(_has_tag_or_float(k) or _has_tag_or_float(v) for k, v in x.items())
    return False


def _decode(data: bytes, what: str):
    """Decode one of the three byte strings; K2 if not well formed, K3 if not deterministic.

    Choice: a protected header or payload that is not well-formed CBOR is K2
    (K2 names the structure; SPEC.md 4.2 makes the same choice for entries).
    """
    try:
        v, d = decode_one(data)
    except NotWellFormed as e:
        raise Refused("malformed", f"{what}: {e}")
    return v, d


def _plain(x):
    """validate.py's decoded value, in the form cbor_det.enc re-encodes."""
    if isinstance(x, Tagged):
        return Tag(x.tag, _plain(x.value))
    if isinstance(x, list):
        return [_plain(i) for i in x]
    if isinstance(x, dict):
        return {k: _plain(v) for k, v in x.items()}
    return x


def _canonical(data: bytes, v, d, what: str, outer=False):
    if not d.deterministic or _has_tag_or_float(v, outer):
        raise Refused("non-canonical", f"{what}: {', '.join(d.why) or 'tag, float or undefined'}")
    # decode, re-encode, compare (SPEC.md 4.2)
    try:
        again = enc(_plain(v))
    except (TypeError, ValueError):
        raise Refused("non-canonical", f"{what}: cannot be re-encoded")
    if again != data:
        raise Refused("non-canonical", f"{what}: re-encoding differs")


def _text(x):
    # SPEC.md 3.4: 1 to 256 bytes without control characters. Choice (the
    # spec does not list them): the Unicode control characters, general
    # category Cc: C0 (U+0000..U+001F), DEL (U+007F), C1 (U+0080..U+009F).
    return (type(x) is str and 1 <= len(x.encode("utf-8")) <= 256
            and not any(ord(c) < 0x20 or 0x7F <= ord(c) <= 0x9F for c in x))


def _uint(x):
    return type(x) is int and x >= 0


def _b32(x):
    return type(x) is bytes and len(x) == 32


def _fields(m, required, optional, what):
    if type(m) is not dict:
        raise Refused("schema", f"{what} is not a map")
    for k in m:
        if k not in required and k not in optional:
            raise Refused("schema", f"{what}: unknown member {k!r}")
    for k in required:
        if k not in m:
            raise Refused("schema", f"{what}: missing {k!r}")
    for k, ok in list(required.items()) + list(optional.items()):
        if k in m and not ok(m[k]):
            raise Refused("schema", f"{what}: bad {k!r}")


def _key(x):
    # public-key = {"alg": -19, "pub": key-id}; version 1 knows Ed25519 only
    _fields(x, {"alg": lambda a: a == -19 and type(a) is int, "pub": _b32}, {}, "key")
    return True


def _check_st(st):
    if type(st) is not dict or len(st) != 1:
        raise Refused("schema", "st is not a map with one member")
    (kind, body), = st.items()
    if kind not in KINDS:
        raise Refused("schema", f"unknown statement kind {kind!r}")
    if kind in ROOT_KINDS:
        _fields(body, {"root": _key, "next": _b32}, {}, kind)
    elif kind == "certify":
        officer = lambda o: _fields(o, {"name": _text, "number": _text}, {}, "officer") or True
        _fields(body, {"key": _key, "role": lambda r: r in ("node", "officer"), "not-before": _uint},
                {"officer": officer, "not-after": _uint}, kind)
        if (body["role"] == "officer") != ("officer" in body):
            raise Refused("schema", "officer is present exactly when the role is officer")
        if "not-after" in body and body["not-after"] < body["not-before"]:
            raise Refused("schema", "not-after before not-before")
    elif kind == "revoke":
        _fields(body, {"key": _b32, "effective": _uint, "reason": lambda r: r in REASONS}, {}, kind)
    else:
        _fields(body, {"name": _text,
                       "country": lambda c: type(c) is str and re.fullmatch(r"[A-Z]{2}", c) is not None},
                {}, kind)
    return kind, body


class Statement:
    def __init__(self, data, kid, payload, kind, body):
        self.data = data
        self.id = sha256(data)
        self.signer = kid
        self.agency = payload["agency"]
        self.seq = payload["seq"]
        self.prev = payload.get("prev")
        self.time = payload["time"]
        self.kind = kind
        self.body = body


def decode(data: bytes) -> Statement:
    """K1 to K5."""
    if len(data) > MAX_STATEMENT:
        raise Refused("oversize", f"{len(data)} bytes")
    outer, d = _decode(data, "statement")
    if not isinstance(outer, Tagged) or outer.tag != 18:
        raise Refused("malformed", "not tagged 18")
    a = outer.value
    if type(a) is not list or len(a) != 4:
        raise Refused("malformed", "not an array of four items")
    prot, unprot, payload_bytes, sig = a
    if type(prot) is not bytes or type(payload_bytes) is not bytes:
        raise Refused("malformed", "protected header or payload not a byte string")
    if type(unprot) is not dict or unprot:
        raise Refused("malformed", "unprotected header not an empty map")
    if type(sig) is not bytes or len(sig) != 64:
        raise Refused("malformed", "signature not 64 bytes")
    hdr, hd = _decode(prot, "protected header")
    payload, pd = _decode(payload_bytes, "payload")
    _canonical(data, outer, d, "statement", outer=True)
    _canonical(prot, hdr, hd, "protected header")
    _canonical(payload_bytes, payload, pd, "payload")
    # K4
    if type(hdr) is not dict or set(hdr) != {1, 3, 4}:
        raise Refused("bad-header", "not exactly the members 1, 3, 4")
    if hdr[1] != -19 or type(hdr[1]) is not int:
        raise Refused("bad-header", f"alg {hdr[1]!r}, not -19")
    if hdr[3] != CONTENT_TYPE:
        raise Refused("bad-header", f"content type {hdr[3]!r}")
    if not _b32(hdr[4]):
        raise Refused("bad-header", "kid is not 32 bytes")
    # K5: schema
    _fields(payload, {"v": lambda v: v == 1 and type(v) is int, "agency": _b32, "seq": _uint, "time": _uint,
                      "st": lambda s: type(s) is dict}, {"prev": _b32}, "payload")
    kind, body = _check_st(payload["st"])
    if (kind == "inception") != (payload["seq"] == 0):
        raise Refused("schema", "the inception is at seq 0 and only there")
    if ("prev" in payload) != (payload["seq"] != 0):
        raise Refused("schema", "prev is absent exactly when seq is 0")
    # K5: signature (Sig_structure of SPEC.md 5.3, empty external AAD)
    tbs = enc(["Signature1", prot, b"", payload_bytes])
    why = strict_verify(hdr[4], sig, tbs)
    if why:
        raise Refused("bad-signature", why)
    return Statement(data, hdr[4], payload, kind, body)


# ---------------------------------------------------------------------------
# K6 to K12: a statement against the log


class Log:
    def __init__(self):
        self.agency = None
        self.held = []
        self.superseded = []

    @staticmethod
    def root_in_force(prefix):
        for s in reversed(prefix):
            if s.kind in ROOT_KINDS:
                return s.body
        return None

    def _check_against(self, s, prefix):
        """K8 to K11 for s at position len(prefix)."""
        if s.seq > 0 and s.prev != prefix[-1].id:
            raise Refused("broken-chain", f"prev is not the id of statement {s.seq - 1}")
        root = self.root_in_force(prefix)
        if s.kind == "inception":
            want = s.body["root"]["pub"]
            if want != s.agency:
                raise Refused("wrong-signer", "the inception's root is not the agency id")
        elif s.kind == "rotate-root":
            want = s.body["root"]["pub"]
            if sha256(want) != root["next"]:
                raise Refused("wrong-signer", "the new root is not the one committed to")
        else:
            want = root["root"]["pub"]
        if s.signer != want:
            raise Refused("wrong-signer", f"{s.kind} signed by {s.signer.hex()}, not {want.hex()}")
        if s.seq > 0 and s.time < prefix[-1].time:
            raise Refused("time-reversed", "dated before the previous statement")
        named, certified, revoked = set(), set(), set()
        for p in prefix:
            if p.kind in ROOT_KINDS:
                named.add(p.body["root"]["pub"])
            elif p.kind == "certify":
                named.add(p.body["key"]["pub"])
                certified.add(p.body["key"]["pub"])
            elif p.kind == "revoke":
                revoked.add(p.body["key"])
        # Choice: "named before" is named in any way (as a root or certified),
        # for a rotate-root as for a certify.
        if s.kind == "certify" and s.body["key"]["pub"] in named:
            raise Refused("bad-key", "certifies a key named before")
        if s.kind == "rotate-root" and s.body["root"]["pub"] in named:
            raise Refused("bad-key", "rotates to a key named before")
        if s.kind == "revoke":
            k = s.body["key"]
            if k not in certified:
                raise Refused("bad-key", "revokes a key not certified")
            if k in revoked:
                raise Refused("bad-key", "revokes a key revoked before")

    def append(self, data: bytes):
        """Returns "new", "duplicate", ("recovered", n) or ("superseded", 1); raises Refused."""
        s = decode(data)
        if self.agency is None:
            self.agency = s.agency
        if s.agency != self.agency:
            raise Refused("wrong-log", "another agency's statement")
        if s.seq > len(self.held):
            raise Refused("gap", f"statement {s.seq}, the log holds {len(self.held)}")
        if s.seq == len(self.held):
            if len(self.held) >= MAX_LOG:
                raise Refused("wrong-log", "the log is full")
            self._check_against(s, self.held)
            self.held.append(s)
            return "new"
        if self.held[s.seq].data == data:
            # Choice (SPEC.md 3.4 says nothing of it): the same bytes again
            # change nothing and are not refused.
            return "duplicate"
        # Choice: a second statement at a held position is first checked
        # against the statements before it (K8 to K11); one that fails is
        # refused by that rule, one that passes is a recovery if it is a
        # rotate-root (K9 then proves it is signed by the pre-committed key),
        # else a fork (K12), signed by the root in force.
        prefix = self.held[:s.seq]
        self._check_against(s, prefix)
        held = self.held[s.seq]
        if held.kind == "rotate-root" and s.kind != "rotate-root":
            # SPEC.md 3.4: signed by the root the held rotation replaced, at
            # its position: superseded by it, not a fork.
            if any(x.data == data for x in self.superseded):
                return "duplicate"
            self.superseded.append(s)
            return ("superseded", 1)
        if held.kind == "rotate-root" and s.kind == "rotate-root":
            raise Refused("fork", f"two rotations at position {s.seq}")
        if s.kind == "rotate-root":
            gone = self.held[s.seq:]
            self.superseded.extend(gone)
            self.held = prefix + [s]
            return ("recovered", len(gone))
        raise Refused("fork", f"two statements at position {s.seq}")

    def status(self, key: bytes, n: int):
        st = {"status": "unknown"}
        for p in self.held[:n]:
            if p.kind in ROOT_KINDS:
                if st["status"] == "root":
                    st = {"status": "former-root"}
                if p.body["root"]["pub"] == key:
                    st = {"status": "root"}
            elif p.kind == "certify" and p.body["key"]["pub"] == key:
                c = p.body
                st = {"status": "certified", "certified_by": p.seq, "role": c["role"],
                      "not_before": c["not-before"]}
                if "officer" in c:
                    st["officer"] = dict(c["officer"])
                if "not-after" in c:
                    st["not_after"] = c["not-after"]
            elif p.kind == "revoke" and p.body["key"] == key:
                st = dict(st, status="revoked", revoked_by=p.seq, effective=p.body["effective"],
                          reason=p.body["reason"])
        return st


# ---------------------------------------------------------------------------
# Replaying vectors


def run_vector(v):
    """The list of differences between what the vector says and what this checker finds."""
    out = []
    log = Log()
    stmts = [bytes.fromhex(h) for h in v["statements"]]
    superseded = 0
    for i, data in enumerate(stmts):
        last = i == len(stmts) - 1
        try:
            r = log.append(data)
        except Refused as e:
            if last and v["expect"] == e.rule and v["class"] == e.cls:
                return out
            out.append(f"statement {i} refused ({e}), expected "
                       + (f"{v['expect']} {v.get('class')}" if last else "accepted"))
            return out
        if isinstance(r, tuple):
            superseded += r[1]
        if r == "duplicate" and not v.get("duplicates"):
            out.append(f"statement {i} is a duplicate")
    if v["expect"] != "valid":
        out.append(f"last statement accepted, expected {v['expect']} {v['class']}")
        return out
    if len(log.held) != v["length"]:
        out.append(f"length {len(log.held)}, expected {v['length']}")
    if log.held[-1].id.hex() != v["head"]:
        out.append("head differs")
    if log.root_in_force(log.held)["root"]["pub"].hex() != v["root"]:
        out.append("current root differs")
    if superseded != v["superseded"]:
        out.append(f"superseded {superseded}, expected {v['superseded']}")
    for want in v["status"]:
        got = log.status(bytes.fromhex(v["keys"][want["key"]]), want["at"])
        exp = {k: x for k, x in want.items() if k not in ("key", "at")}
        if got != exp:
            out.append(f"status of {want['key']} at {want['at']}: {got}, expected {exp}")
    return out


def check_document(doc):
    failures = []
    if doc.get("format") != FORMAT:
        failures.append(f"format {doc.get('format')!r}")
    for v in doc["vectors"]:
        for f in run_vector(v):
            failures.append(f"{v['name']}: {f}")
    return failures


def cross_check(doc):
    """Third-party cross-check of every statement of the valid vectors: cbor2
    decodes it (and re-encodes it canonically to the same bytes), and the
    `cryptography` package's Ed25519 verifies its signature with the kid over
    the Sig_structure built by cbor2. pycose 1.1.0 does not know alg -19
    (RFC 9864), so it is not used here."""
    import cbor2
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

    failures, n = [], 0
    for v in doc["vectors"]:
        if v["expect"] != "valid":
            continue
        for i, h in enumerate(v["statements"]):
            data = bytes.fromhex(h)
            msg = cbor2.loads(data)
            if not isinstance(msg, cbor2.CBORTag) or msg.tag != 18 or cbor2.dumps(msg, canonical=True) != data:
                failures.append(f"{v['name']}: statement {i}: cbor2 round trip differs")
                continue
            prot, _, payload, sig = msg.value
            hdr = cbor2.loads(prot)
            if hdr != {1: -19, 3: CONTENT_TYPE, 4: hdr.get(4)}:
                failures.append(f"{v['name']}: statement {i}: header {hdr}")
            tbs = cbor2.dumps(["Signature1", prot, b"", payload], canonical=True)
            try:
                Ed25519PublicKey.from_public_bytes(hdr[4]).verify(sig, tbs)
            except Exception as e:  # noqa: BLE001 - any failure is reported
                failures.append(f"{v['name']}: statement {i}: cryptography refuses the signature ({e!r})")
            n += 1
    return failures, n


def main():
    path = sys.argv[1] if len(sys.argv) > 1 else os.path.join(HERE, "keylogs.json")
    with open(path, encoding="utf-8") as f:
        doc = json.load(f)
    failures = check_document(doc)
    cross, n = cross_check(doc)
    failures += cross
    for f in failures:
        print("FAIL", f)
    if failures:
        sys.exit(1)
    print(f"check_keylogs.py: {len(doc['vectors'])} key log vectors replayed, all as expected; "
          f"cbor2 and cryptography's Ed25519 agree on the {n} statements of the valid vectors")


if __name__ == "__main__":
    main()
