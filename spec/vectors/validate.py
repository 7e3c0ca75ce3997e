#!/usr/bin/env python3
"""A small, independent Python validator of the Custodia entry rules V1..V24.

Used by generate.py to replay every vector before writing entries.json (a
vector whose outcome differs from its "expect" / "failing_index" / "ids" stops
the generation), and runnable on its own:

    python3 validate.py [entries.json]

It follows spec/custodia.cddl and the numbered rules; where they leave a point
open the choice is written next to the code (and in README.md). Entries of
format version 2 (SPEC.md 5.7) are checked against the key logs a vector
carries ("keylogs"), replayed by check_keylogs.py's checker of K1..K12. It has its own
CBOR decoder (so V2/V3 do not depend on cbor2) and its own Ed25519 point code
for the checks of SPEC.md 3.3 (canonical A and R, small-order A and R, S < L,
and the cofactored equation); the `cryptography` package's cofactorless check
is tried first as a fast path, since it implies the cofactored one.
"""

import hashlib
import json
import os
import re
import sys

sys.dont_write_bytecode = True

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from cbor_det import enc

MAX_ENTRY = 65_536
MAX_DEPTH = 16  # arrays and maps, the outermost counting as 1 (SPEC.md 4.1)
SKEW = 300_000
CONTENT_TYPE = "application/custodia-entry+cbor"
RULE_ORDER = ["oversize", "malformed", "non-canonical", "bad-header", "unsupported-version", "schema",
              "author-mismatch", "bad-signature", "wrong-case", "equivocation", "sequence-gap",
              "prev-mismatch", "unknown-reference", "not-a-member", "not-authorized", "custody-violation",
              "time-violation", "from-the-future",
              # V19 to V24, added with format version 2 (SPEC.md 8.2); the list is
              # in rule-number order, the evaluation order is SPEC.md 8.1's.
              "version-mismatch", "key-log-pending", "uncertified-key", "revoked-key", "key-role",
              "key-validity"]
ALG = {1: -8, 2: -19}  # the alg of each format version (SPEC.md 5.2, 5.7)


class Invalid(Exception):
    def __init__(self, cls, why):
        assert cls in RULE_ORDER, cls
        super().__init__(f"{cls}: {why}")
        self.cls = cls
        self.why = why


# ---------------------------------------------------------------------------
# CBOR decoding (RFC 8949), noting anything that is not deterministic


class Tagged:
    def __init__(self, tag, value):
        self.tag = tag
        self.value = value


class NotWellFormed(Exception):
    pass


class Decoder:
    def __init__(self, data: bytes):
        self.d = data
        self.i = 0
        self.deterministic = True
        self.why = []

    def _nd(self, why):
        self.deterministic = False
        self.why.append(why)

    def _take(self, n):
        if self.i + n > len(self.d):
            raise NotWellFormed("truncated")
        b = self.d[self.i:self.i + n]
        self.i += n
        return b

    def _arg(self, ai):
        if ai < 24:
            return ai
        if ai in (24, 25, 26, 27):
            width = 1 << (ai - 24)
            n = int.from_bytes(self._take(width), "big")
            if n < (24 if width == 1 else 1 << (8 * (width // 2))):
                self._nd("non-shortest head")
            return n
        if ai == 31:
            return None
        raise NotWellFormed("reserved additional info")

    def item(self, allow_break=False, depth=0):
        """depth: the number of arrays/maps enclosing this item."""
        ib = self._take(1)[0]
        major, ai = ib >> 5, ib & 31
        if ib == 0xFF:
            if allow_break:
                return _BREAK
            raise NotWellFormed("unexpected break")
        if major == 7:
            # SPEC.md 4.2: false, true, null and undefined are the simple
            # values a decoder represents; an unassigned one (0..19, 32..255)
            # is malformed (V2), undefined is non-canonical (V3), null is V6.
            if ai < 24:
                if ai == 23:
                    return ("simple", 23)
                if ai not in (20, 21, 22):
                    raise NotWellFormed(f"unassigned simple value {ai}")
                return {20: False, 21: True, 22: None}[ai]
            if ai == 24:
                v = self._take(1)[0]
                raise NotWellFormed("bad simple value" if v < 32 else f"unassigned simple value {v}")
            if ai in (25, 26, 27):
                self._take(1 << (ai - 24))
                self._nd("float")
                return ("float",)
            raise NotWellFormed("bad major 7")
        n = self._arg(ai)
        if n is None and major in (0, 1, 6):
            raise NotWellFormed("indefinite length on int or tag")
        if major == 0:
            return n
        if major == 1:
            return -1 - n
        if major in (2, 3):
            if n is None:
                self._nd("indefinite-length string")
                parts = []
                while True:
                    c = self._take(1)[0]
                    if c == 0xFF:
                        break
                    if c >> 5 != major:
                        raise NotWellFormed("bad chunk")
                    m = self._arg(c & 31)
                    if m is None:
                        raise NotWellFormed("nested indefinite chunk")
                    parts.append(self._take(m))
                raw = b"".join(parts)
            else:
                raw = self._take(n)
            if major == 2:
                return raw
            try:
                return raw.decode("utf-8")
            except UnicodeDecodeError:
                raise NotWellFormed("invalid UTF-8")
        if major in (4, 5) and depth + 1 > MAX_DEPTH:
            raise NotWellFormed("nesting deeper than 16")
        if major == 4:
            out = []
            if n is None:
                self._nd("indefinite-length array")
                while True:
                    x = self.item(allow_break=True, depth=depth + 1)
                    if x is _BREAK:
                        return out
                    out.append(x)
            for _ in range(n):
                out.append(self.item(depth=depth + 1))
            return out
        if major == 5:
            out = {}
            keys = []
            count = 0
            if n is None:
                self._nd("indefinite-length map")
            while n is None or count < n:
                start = self.i
                k = self.item(allow_break=n is None, depth=depth + 1)
                if k is _BREAK:
                    break
                kb = self.d[start:self.i]
                keys.append(kb)
                v = self.item(depth=depth + 1)
                hk = _hashable(k)
                if hk in out:
                    self._nd("duplicate map key")
                out[hk] = v
                count += 1
            if any(a >= b for a, b in zip(keys, keys[1:])):
                self._nd("map keys not in bytewise order")
            return out
        if major == 6:
            return Tagged(n, self.item(depth=depth))
        raise AssertionError


_BREAK = object()


def _hashable(k):
    if isinstance(k, list):
        return tuple(_hashable(x) for x in k)
    if isinstance(k, dict):
        return tuple(sorted((repr(a), repr(b)) for a, b in k.items()))
    if isinstance(k, Tagged):
        return ("tag", k.tag, _hashable(k.value))
    return k


def decode_one(data: bytes):
    """Decode exactly one item; returns (value, decoder). Raises NotWellFormed."""
    d = Decoder(data)
    v = d.item()
    if d.i != len(data):
        raise NotWellFormed("trailing bytes")
    return v, d


def _has_tag_or_float(x):
    # null is left to V6 (SPEC.md 8.2 V6 details: "null nowhere"); undefined is V3 (SPEC.md 4.2)
    if isinstance(x, Tagged) or (isinstance(x, tuple) and x and x[0] in ("float", "simple")):
        return True
    if isinstance(x, list):
        return any(_has_tag_or_float(i) for i in x)
    if isinstance(x, dict):
        return any(_has_tag_or_float(k) or _has_tag_or_float(v) for k, v in x.items())
    return False


# ---------------------------------------------------------------------------
# Ed25519 verification (SPEC.md 3.3: strict and cofactored)

P = 2**255 - 19
L = 2**252 + 27742317777372353535851937790883648493
D = (-121665 * pow(121666, P - 2, P)) % P
SQRT_M1 = pow(2, (P - 1) // 4, P)


def _decompress(b: bytes):
    y = int.from_bytes(b, "little")
    sign = y >> 255
    y &= (1 << 255) - 1
    if y >= P:
        return None
    x2 = (y * y - 1) * pow(D * y * y + 1, P - 2, P) % P
    x = pow(x2, (P + 3) // 8, P)
    if (x * x - x2) % P != 0:
        x = x * SQRT_M1 % P
    if (x * x - x2) % P != 0:
        return None
    if x == 0 and sign:
        return None
    if x & 1 != sign:
        x = P - x
    return (x, y)


def _add(p1, p2):
    (x1, y1), (x2, y2) = p1, p2
    t = D * x1 * x2 * y1 * y2 % P
    x3 = (x1 * y2 + x2 * y1) * pow(1 + t, P - 2, P) % P
    y3 = (y1 * y2 + x1 * x2) * pow(1 - t, P - 2, P) % P
    return (x3, y3)


def is_small_order(b: bytes) -> bool:
    pt = _decompress(b)
    if pt is None:
        return False
    for _ in range(3):
        pt = _add(pt, pt)
    return pt == (0, 1)


def _scalar_mult(n: int, pt):
    """[n]pt by double-and-add in affine coordinates (slow, fine here)."""
    acc = (0, 1)
    while n:
        if n & 1:
            acc = _add(acc, pt)
        pt = _add(pt, pt)
        n >>= 1
    return acc


def _neg(pt):
    return ((P - pt[0]) % P, pt[1])


B = _decompress(bytes.fromhex("5866666666666666666666666666666666666666666666666666666666666666"))


def cofactored_equation_holds(pub: bytes, sig: bytes, msg: bytes) -> bool:
    """[8]([S]B - [k]A - R) == identity (SPEC.md 3.3, check 5)."""
    a, r = _decompress(pub), _decompress(sig[:32])
    s = int.from_bytes(sig[32:], "little")
    k = int.from_bytes(hashlib.sha512(sig[:32] + pub + msg).digest(), "little") % L
    d = _add(_add(_scalar_mult(s, B), _neg(_scalar_mult(k, a))), _neg(r))
    return _scalar_mult(8, d) == (0, 1)


def strict_verify(pub: bytes, sig: bytes, msg: bytes) -> str:
    """'' if the signature passes SPEC.md 3.3 (canonical S, A and R, no
    small-order A or R, the cofactored equation), else the reason."""
    if len(pub) != 32 or len(sig) != 64:
        return "bad length"
    if int.from_bytes(sig[32:], "little") >= L:
        return "non-canonical S (S >= L)"
    # _decompress refuses y >= p (non-canonical) as well as non-points.
    if _decompress(pub) is None:
        return "public key is not a canonical encoding of a point"
    if is_small_order(pub):
        return "small-order public key"
    if _decompress(sig[:32]) is None:
        return "R is not a canonical encoding of a point"
    if is_small_order(sig[:32]):
        return "small-order R"
    try:
        # OpenSSL evaluates the cofactorless equation; when it holds, the
        # cofactored one does too, so the slow pure-Python check below only
        # runs for signatures OpenSSL refuses.
        Ed25519PublicKey.from_public_bytes(pub).verify(sig, msg)
        return ""
    except InvalidSignature:
        pass
    if cofactored_equation_holds(pub, sig, msg):
        return ""
    return "equation does not hold"


# ---------------------------------------------------------------------------
# Schema (V6)

TLPS = {"CLEAR", "GREEN", "AMBER", "AMBER+STRICT", "RED"}
ROLES = {"lead", "investigator", "examiner", "liaison", "observer"}
ACTIONS = {"acquired", "transferred", "received", "examined", "copied", "sealed", "unsealed", "returned",
           "destroyed"}


def _uint(x):
    return type(x) is int and x >= 0


def _tstr(x):
    return type(x) is str


def _bool(x):
    return type(x) is bool


def _bstr(n):
    return lambda x: type(x) is bytes and len(x) == n


def _country(x):
    return _tstr(x) and re.fullmatch(r"[A-Z]{2}", x) is not None


def _one_of(s):
    return lambda x: _tstr(x) and x in s


def _ascending(xs):
    return all(a < b for a, b in zip(xs, xs[1:]))


def _agency_list(x, max_len):
    return (type(x) is list and 0 < len(x) <= max_len and all(_bstr(32)(a) for a in x) and _ascending(x))


def _map(m, required, optional, what):
    if type(m) is not dict:
        raise Invalid("schema", f"{what} is not a map")
    for k in m:
        if k not in required and k not in optional:
            raise Invalid("schema", f"{what}: unknown key {k!r}")
    for k, pred in required.items():
        if k not in m:
            raise Invalid("schema", f"{what}: missing {k!r}")
        if not pred(m[k]):
            raise Invalid("schema", f"{what}: bad {k!r}")
    for k, pred in optional.items():
        if k in m and not pred(m[k]):
            raise Invalid("schema", f"{what}: bad {k!r}")


def _digests(x):
    _map(x, {"sha256": _bstr(32)}, {"sha1": _bstr(20), "md5": _bstr(16)}, "digests")
    return True


def _acquisition(x):
    _map(x, {"by": _tstr, "at": _uint}, {"place": _tstr, "method": _tstr, "tool": _tstr}, "acquisition")
    return True


def _head(h):
    return type(h) is list and len(h) == 3 and _bstr(32)(h[0]) and _uint(h[1]) and _bstr(32)(h[2])


def check_body(kind, b):
    if kind == "case-opened":
        _map(b, {"title": _tstr, "reference": _tstr, "name": _tstr, "country": _country},
             {"jurisdiction": _country}, kind)
    elif kind == "member-added":
        _map(b, {"agency": _bstr(32), "name": _tstr, "country": _country, "role": _one_of(ROLES)}, {}, kind)
    elif kind == "member-removed":
        _map(b, {"agency": _bstr(32)}, {"reason": _tstr}, kind)
    elif kind == "evidence-registered":
        _map(b, {"item": _bstr(16), "digests": _digests, "size": _uint, "media-type": _tstr,
                 "acquired": _acquisition},
             {"exhibit": _tstr, "description": _tstr, "authority": _tstr, "derived-from": _bstr(16)}, kind)
    elif kind == "custody":
        _map(b, {"item": _bstr(16), "action": _one_of(ACTIONS)},
             {"to": _bstr(32), "transfer": _bstr(32), "accepted": _bool, "copy": _bstr(16), "actor": _tstr,
              "place": _tstr, "purpose": _tstr, "tool": _tstr, "reason": _tstr, "digest-matched": _bool}, kind)
        a = b["action"]
        if ("to" in b) != (a == "transferred"):
            raise Invalid("schema", "custody: to iff transferred")
        if ("transfer" in b) != (a == "received") or ("accepted" in b) != (a == "received"):
            raise Invalid("schema", "custody: transfer and accepted iff received")
        if ("copy" in b) != (a == "copied"):
            raise Invalid("schema", "custody: copy iff copied")
        if b.get("accepted") is False and "reason" not in b:
            raise Invalid("schema", "custody: reason required when accepted = false")
    elif kind == "witness":
        _map(b, {"heads": lambda h: type(h) is list and 0 < len(h) <= 256 and all(_head(x) for x in h)}, {}, kind)
        if not _ascending([h[0] for h in b["heads"]]):
            raise Invalid("schema", "witness heads not strictly ascending by author")
    elif kind == "note":
        _map(b, {"text": _tstr}, {"item": _bstr(16)}, kind)
    elif kind == "handling-changed":
        _map(b, {"entry": _bstr(32), "tlp": _one_of(TLPS)}, {"to": lambda x: _agency_list(x, 64)}, kind)
        if ("to" in b) != (b["tlp"] == "RED"):
            raise Invalid("schema", "handling-changed: to iff RED")
    elif kind == "retracted":
        _map(b, {"entry": _bstr(32), "reason": _tstr}, {}, kind)
    else:
        raise Invalid("schema", f"unknown body kind {kind!r}")


def check_payload_schema(p):
    _map(p, {"v": lambda x: type(x) is int and x in ALG, "author": _bstr(32), "seq": _uint,
             "refs": lambda r: type(r) is list and len(r) <= 64 and all(_bstr(32)(x) for x in r),
             "time": _uint, "tlp": _one_of(TLPS), "body": lambda b: type(b) is dict},
         {"case": _bstr(32), "prev": _bstr(32), "to": lambda x: type(x) is list, "keys": _uint}, "payload")
    # SPEC.md 5.4: "keys" iff v = 2, at least 1
    if ("keys" in p) != (p["v"] == 2):
        raise Invalid("schema", "keys present iff v = 2")
    if p.get("keys") == 0:
        raise Invalid("schema", "keys is at least 1")
    if not _ascending(p["refs"]):
        raise Invalid("schema", "refs not strictly ascending")
    body = p["body"]
    if len(body) != 1:
        raise Invalid("schema", "body must have exactly one key")
    (kind, b), = body.items()
    if not _tstr(kind):
        raise Invalid("schema", "body key not text")
    check_body(kind, b)
    genesis = kind == "case-opened"
    if ("case" in p) == genesis:
        raise Invalid("schema", "case absent iff genesis")
    if genesis and (p["seq"] != 0 or p["refs"]):
        raise Invalid("schema", "genesis must have seq 0 and no refs")
    if ("prev" in p) != (p["seq"] > 0):
        raise Invalid("schema", "prev present iff seq > 0")
    if ("to" in p) != (p["tlp"] == "RED"):
        raise Invalid("schema", "to present iff RED")
    if "to" in p and not _agency_list(p["to"], 64):
        raise Invalid("schema", "to must be non-empty, ascending, <= 64 agency ids")
    return kind, b


# ---------------------------------------------------------------------------
# Case state


class Entry:
    def __init__(self, eid, p, kind, body):
        self.id = eid
        self.author = p["author"]
        self.seq = p["seq"]
        self.prev = p.get("prev")
        self.refs = p["refs"]
        self.time = p["time"]
        self.kind = kind
        self.body = body


class Case:
    def __init__(self, now, skip=(), keylogs=None):
        self.now = now
        self.skip = set(skip)  # diagnostics only: rule classes not enforced
        # agency id -> its key log as held (check_keylogs.Log: .held is the
        # list of statements the log holds, after any superseding recovery)
        self.keylogs = dict(keylogs or {})
        self.version = None  # the case's format version: its genesis's "v"
        self.case_id = None
        self.genesis_author = None
        self.accepted = {}  # id -> Entry
        self.order = []  # accepted ids in order
        self.withheld = {}  # id -> (author, seq)
        self.pos = {}  # (author, seq) -> id (accepted or withheld)
        self.top = {}  # author -> highest known seq
        self._past = {}

    def _fail(self, cls, why):
        if cls not in self.skip:
            raise Invalid(cls, why)

    # -- withheld markers --------------------------------------------------
    def add_withheld(self, author, seq, eid):
        if seq != self.top.get(author, -1) + 1 or eid in self.accepted or eid in self.withheld:
            raise ValueError("inconsistent withheld marker in vector")
        self.withheld[eid] = (author, seq)
        self.pos[(author, seq)] = eid
        self.top[author] = seq

    # -- causal past -------------------------------------------------------
    def past(self, prev, refs):
        """ids reachable through prev and refs (withheld ids included but not expanded)."""
        seen = set()
        stack = ([prev] if prev is not None else []) + list(refs)
        while stack:
            x = stack.pop()
            if x in seen:
                continue
            if x in self.accepted:
                seen.add(x)
                stack.extend(self._past_of(x))
            elif x in self.withheld:
                # SPEC.md 8.4: a withheld position (A, s > 0) implies (A, s - 1); its refs are unknown
                seen.add(x)
                a, s = self.withheld[x]
                if s > 0 and (a, s - 1) in self.pos:
                    stack.append(self.pos[(a, s - 1)])
        return seen

    def _past_of(self, eid):
        if eid not in self._past:
            e = self.accepted[eid]
            self._past[eid] = self.past(e.prev, e.refs)
        return self._past[eid]

    def role_in(self, agency, past):
        """The agency's role in a causal past, or None if not a member there."""
        if agency == self.genesis_author:
            return "lead"
        role = None
        for eid in self.order:
            if eid not in past:
                continue
            e = self.accepted[eid]
            if e.kind == "member-added" and e.body["agency"] == agency:
                removed = any(
                    r in past and self.accepted[r].kind == "member-removed"
                    and self.accepted[r].body["agency"] == agency and eid in self._past_of(r)
                    for r in self.order)
                if not removed:
                    role = e.body["role"]
        return role

    # -- reports -------------------------------------------------------------
    def after_removal(self):
        """SPEC.md 11.1: accepted entries of an agency that is not a member in the state, concurrent
        with a member-removed naming it (neither in the other's causal past). Author order, then seq."""
        everything = set(self.order) | set(self.withheld)
        out = []
        authors = sorted({e.author for e in self.accepted.values()})
        for agency in authors:
            if agency == self.genesis_author or self.role_in(agency, everything) is not None:
                continue
            removals = [r for r in self.order if self.accepted[r].kind == "member-removed"
                        and self.accepted[r].body["agency"] == agency]
            mine = sorted((e for e in self.accepted.values() if e.author == agency), key=lambda e: e.seq)
            for e in mine:
                if any(e.id not in self._past_of(r) and r not in self._past_of(e.id) for r in removals):
                    out.append(e.id)
        return out

    # -- the rules -----------------------------------------------------------
    def accept(self, data: bytes) -> str:
        """Validate and apply one entry. Returns 'accepted' or 'duplicate'; raises Invalid."""
        # V1
        if len(data) > MAX_ENTRY:
            self._fail("oversize", f"{len(data)} bytes")
        # V2
        try:
            top, outer_dec = decode_one(data)
        except NotWellFormed as e:
            self._fail("malformed", f"entry: {e}")
        if not (isinstance(top, Tagged) and top.tag == 18):
            self._fail("malformed", "not tag 18")
        arr = top.value
        if not (type(arr) is list and len(arr) == 4):
            self._fail("malformed", "not an array of 4")
        pb, unprot, plb, sig = arr
        if not (type(pb) is bytes and type(unprot) is dict and type(plb) is bytes and type(sig) is bytes):
            self._fail("malformed", "element types")
        if unprot:
            self._fail("malformed", "unprotected map not empty")
        if len(sig) != 64:
            self._fail("malformed", "signature length")
        try:
            prot, prot_dec = decode_one(pb)
            payload, pl_dec = decode_one(plb)
        except NotWellFormed as e:
            self._fail("malformed", f"protected/payload: {e}")
        if type(prot) is not dict or type(payload) is not dict:
            self._fail("malformed", "protected/payload not a map")
        # V3
        for name, dec, raw, val in (("entry", outer_dec, data, None), ("protected", prot_dec, pb, prot),
                                    ("payload", pl_dec, plb, payload)):
            if not dec.deterministic:
                self._fail("non-canonical", f"{name}: {dec.why[0]}")
            if name == "entry":
                if _has_tag_or_float(arr):
                    self._fail("non-canonical", "tag or float inside the entry")
                continue
            if _has_tag_or_float(val):
                self._fail("non-canonical", f"{name}: tag or float")
            if enc(val) != raw:  # belt and braces: re-encoding must give the same bytes
                self._fail("non-canonical", f"{name}: re-encoding differs")
        # V4, on the header alone: its alg is one of the versions' (-8 or -19)
        if not (set(prot) == {1, 3, 4} and type(prot[1]) is int and prot[1] in ALG.values()
                and prot[3] == CONTENT_TYPE and _bstr(32)(prot[4])):
            self._fail("bad-header", repr(prot))
        kid = prot[4]
        # V5 -- a missing "v", or one that is not a uint, is left to V6 (SPEC.md 8.2 V5 details)
        if "v" in payload and _uint(payload["v"]) and payload["v"] not in ALG:
            self._fail("unsupported-version", repr(payload["v"]))
        # V4, the part that needs the version, once it is read (SPEC.md 8.2 V4 details)
        if "v" in payload and _uint(payload["v"]) and prot[1] != ALG[payload["v"]]:
            self._fail("bad-header", f"alg {prot[1]} in format version {payload['v']}")
        # V6
        kind, body = check_payload_schema(payload)
        genesis = kind == "case-opened"
        # V7 (format version 1 only: in version 2 the kid is a key of the author's log, SPEC.md 5.7)
        if payload["v"] == 1 and payload["author"] != kid:
            self._fail("author-mismatch", "author != kid")
        # V8
        why = strict_verify(kid, sig, enc(["Signature1", pb, b"", plb]))
        if why:
            self._fail("bad-signature", why)
        eid = hashlib.sha256(data).digest()
        # V9
        if genesis:
            if self.case_id is not None:
                self._fail("wrong-case", "a genesis entry for an existing case")
        else:
            if self.case_id is None or payload["case"] != self.case_id:
                self._fail("wrong-case", "case id differs")
        # V19 (SPEC.md 8.1 checks it after V9, before V10)
        if not genesis and payload["v"] != self.version:
            self._fail("version-mismatch", f"v {payload['v']} in a case of format version {self.version}")
        # V10
        author, seq = payload["author"], payload["seq"]
        if eid in self.accepted:
            return "duplicate"
        # V20 to V24 (format version 2; SPEC.md 8.1 checks them after V19,
        # before V10: a position is taken only by a key the log certifies)
        if payload["v"] == 2:
            self._check_key(kid, payload, kind)
        # (SPEC.md 8.2 V10 details: a withheld position counts as an entry at its position)
        other = self.pos.get((author, seq))
        if other is not None and other != eid:
            self._fail("equivocation", "same (author, seq), different id")
        if eid in self.withheld and self.withheld[eid] != (author, seq):
            self._fail("equivocation", "id of a withheld position at another position")
        reveal = eid in self.withheld
        # V11 (a reveal of a withheld position satisfies it)
        if not reveal and seq != self.top.get(author, -1) + 1:
            self._fail("sequence-gap", f"seq {seq}, expected {self.top.get(author, -1) + 1}")
        # V12
        if seq > 0 and payload["prev"] != self.pos.get((author, seq - 1)):
            self._fail("prev-mismatch", "prev is not the author's previous entry")
        # V13
        for r in payload["refs"]:
            if r in self.accepted:
                if self.accepted[r].author == author:
                    self._fail("unknown-reference", "ref to own entry")
            elif r in self.withheld:
                if self.withheld[r][0] == author:
                    self._fail("unknown-reference", "ref to own entry")
            else:
                self._fail("unknown-reference", "unknown ref")
        if kind == "witness":
            for a, s, hid in body["heads"]:
                if self.pos.get((a, s)) != hid:
                    self._fail("unknown-reference", "witness head is not a known entry")
        # V14
        past = self.past(payload.get("prev"), payload["refs"])
        if genesis:
            role = "lead"
        else:
            role = self.role_in(author, past)
            if role is None:
                self._fail("not-a-member", "no member-added in causal past, or removed")
        # V15
        if kind in ("member-added", "member-removed") and role not in ("lead", "liaison"):
            self._fail("not-authorized", f"{role} cannot change membership")
        if role == "observer" and kind not in ("witness", "note"):
            self._fail("not-authorized", f"observer cannot write {kind}")
        if kind in ("handling-changed", "retracted"):
            t = self.accepted.get(body["entry"])
            if t is None or t.author != author:
                self._fail("not-authorized", "target is not a known earlier entry of the same author")
        # V16
        self._check_custody(kind, body, author, past)
        # V17
        for pred in ([payload["prev"]] if seq > 0 else []) + payload["refs"]:
            if pred in self.accepted and payload["time"] < self.accepted[pred].time - SKEW:
                self._fail("time-violation", "earlier than a predecessor by more than SKEW")
        # V18
        if payload["time"] > self.now + SKEW:
            self._fail("from-the-future", "later than now + SKEW")
        # apply
        e = Entry(eid, payload, kind, body)
        self.accepted[eid] = e
        self.order.append(eid)
        self.pos[(author, seq)] = eid
        self.top[author] = max(seq, self.top.get(author, -1))
        self.withheld.pop(eid, None)
        self._past.clear()
        if genesis:
            self.case_id = eid
            self.genesis_author = author
            self.version = payload["v"]
        return "accepted"

    def _check_key(self, kid, p, kind):
        """V20 to V24 for an entry of format version 2 (SPEC.md 8.2, 5.7): the
        kid's status in the cited prefix, the first "keys" statements of the
        author's key log as held."""
        log = self.keylogs.get(p["author"])
        held = log.held if log is not None else []
        n = p["keys"]
        # V20
        if len(held) < n:
            self._fail("key-log-pending", f"keys {n}, {len(held)} statements of the author's log held")
        cert = revoked = None
        for s in held[:n]:
            if s.kind == "certify" and s.body["key"]["pub"] == kid:
                cert = s
            elif s.kind == "revoke" and s.body["key"] == kid:
                revoked = s
        # V21: a root (in force or former) is named by inception / rotate-root,
        # never by a certify, so it is not certified
        if cert is None:
            self._fail("uncertified-key", f"no certify statement names the kid in the first {n} statements")
            return
        # V22: whatever the reason and the effective time
        if revoked is not None:
            self._fail("revoked-key", f"revoked ({revoked.body['reason']}) by statement {revoked.seq}")
        # V23
        want = "node" if kind == "witness" else "officer"
        if cert.body["role"] != want:
            self._fail("key-role", f"a {cert.body['role']} key signs a {kind}")
        # V24
        c, t = cert.body, p["time"]
        if t < c["not-before"] or ("not-after" in c and t > c["not-after"]):
            self._fail("key-validity", f"time {t} outside the key's validity")

    def custody_state(self, past):
        """Items and transfers derived from the accepted entries in `past` (SPEC.md 8.2 V16 details)."""
        st = {"items": {}, "transfers": {}}
        for eid in self.order:  # acceptance order is a topological order
            if eid in past:
                _apply_custody(st, self.accepted[eid])
        return st

    def _check_custody(self, kind, b, author, past):
        if kind not in ("evidence-registered", "custody"):
            return
        st = self.custody_state(past)
        items, transfers = st["items"], st["transfers"]
        relaxed = any(x in self.withheld for x in past)  # CP(E) holds a withheld position
        if kind == "evidence-registered":
            if b["item"] in items:
                self._fail("custody-violation", "item already registered in the causal past")
            if "derived-from" in b and b["derived-from"] not in items:
                self._fail("custody-violation", "derived-from an item not registered in the causal past")
            return
        item = items.get(b["item"])
        a = b["action"]
        if item is None:
            if not relaxed:
                self._fail("custody-violation", "unknown item")
            item = {"holder": None, "destroyed": False, "open": None, "incomplete": True}
        if item["destroyed"]:
            self._fail("custody-violation", "item destroyed")
        if a != "received" and not item["incomplete"]:
            if item["holder"] != author:
                self._fail("custody-violation", "author is not the holder")
            if item["open"] is not None:
                self._fail("custody-violation", "item has an open transfer")
        if a == "transferred":
            if b["to"] == author or self.role_in(b["to"], past) is None:
                self._fail("custody-violation", "transfer to self or to a non-member")
        if a == "received":
            t = transfers.get(b["transfer"])
            if t is None:
                if not relaxed:
                    self._fail("custody-violation", "transfer is not a transferred event in the causal past")
            elif t["item"] != b["item"] or not t["open"] or t["to"] != author:
                self._fail("custody-violation", "transfer not for this item, closed, or not to the author")


def _apply_custody(st, e):
    items, transfers = st["items"], st["transfers"]
    b = e.body
    if e.kind == "evidence-registered":
        if b["item"] not in items:  # a concurrent second registration leaves the first in place
            items[b["item"]] = {"holder": e.author, "destroyed": False, "open": None, "incomplete": False}
        return
    if e.kind != "custody":
        return
    item = items.get(b["item"])
    if item is None:  # accepted under the relaxation
        item = items[b["item"]] = {"holder": None, "destroyed": False, "open": None, "incomplete": True}
    a = b["action"]
    if a == "transferred":
        transfers[e.id] = {"item": b["item"], "frm": e.author, "to": b["to"], "open": True}
        item["open"] = e.id
    elif a == "received":
        t = transfers.get(b["transfer"])
        if t is None:
            item["incomplete"] = True
        else:
            t["open"] = False
            item["open"] = None
        if b["accepted"]:
            item["holder"] = e.author
    elif a == "destroyed":
        item["destroyed"] = True


# ---------------------------------------------------------------------------
# Replaying vectors


def key_logs(v):
    """The vector's key logs ("keylogs": each a list of statement hex strings,
    fed in order), replayed by check_keylogs.py's checker of K1..K12, by agency
    id. A statement the checker refuses is a broken vector, not an outcome."""
    import check_keylogs  # lazily: it imports this module
    logs = {}
    for statements in v.get("keylogs", []):
        log = check_keylogs.Log()
        for h in statements:
            log.append(bytes.fromhex(h))
        if log.agency in logs:
            raise ValueError("two key logs of one agency in a vector")
        logs[log.agency] = log
    return logs


def run_vector(v, skip=()):
    """Returns (result, index, ids, why): result 'valid' or an error class; index of the failing entry."""
    case = Case(v["now"], skip, key_logs(v))
    run_vector.last_case = case
    ids = []
    for i, x in enumerate(v["entries"]):
        if isinstance(x, dict):
            a, s, eid = x["withheld"]
            case.add_withheld(bytes.fromhex(a), s, bytes.fromhex(eid))
            ids.append(eid)
            continue
        data = bytes.fromhex(x)
        try:
            case.accept(data)
        except Invalid as e:
            return e.cls, i, ids, e.why
        ids.append(hashlib.sha256(data).hexdigest())
    return "valid", None, ids, ""


def check_document(doc):
    failures = []
    for v in doc["vectors"]:
        try:
            got, idx, ids, why = run_vector(v)
        except Exception as e:  # a broken vector, not a rule outcome
            failures.append(f"{v['name']}: exception {e!r}")
            continue
        if got != v["expect"]:
            failures.append(f"{v['name']}: expected {v['expect']}, got {got} at {idx} ({why})")
        elif got == "valid" and ids != v["ids"]:
            failures.append(f"{v['name']}: ids differ")
        elif got == "valid" and [x.hex() for x in run_vector.last_case.after_removal()] != v.get("after_removal", []):
            failures.append(f"{v['name']}: after_removal differs: "
                            f"{[x.hex() for x in run_vector.last_case.after_removal()]} != {v.get('after_removal')}")
        elif got != "valid" and idx != v["failing_index"]:
            failures.append(f"{v['name']}: failed at {idx}, expected {v['failing_index']} ({why})")
    return failures


def later_rules(v):
    """Diagnostics for an invalid vector: the classes its failing entry would be refused for if the
    expected rule (and then each newly reported one) were not enforced."""
    skip, seen = [v["expect"]], []
    while True:
        try:
            got, idx, _, _ = run_vector(v, skip)
        except Exception:
            return seen + ["(cannot continue)"]
        if got == "valid" or idx != v["failing_index"]:
            return seen
        if got in skip:
            return seen + ["(cannot continue)"]
        seen.append(got)
        skip.append(got)


def main():
    if len(sys.argv) > 1 and sys.argv[1] == "--later-rules":
        with open(sys.argv[2] if len(sys.argv) > 2 else os.path.join(
                os.path.dirname(os.path.abspath(__file__)), "entries.json")) as f:
            doc = json.load(f)
        for v in doc["vectors"]:
            if v["expect"] != "valid":
                print(f"{v['name']:55} {v['expect']:20} then: {', '.join(later_rules(v)) or '-'}")
        return
    path = sys.argv[1] if len(sys.argv) > 1 else os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                                             "entries.json")
    with open(path) as f:
        doc = json.load(f)
    failures = check_document(doc)
    for f in failures:
        print("FAIL", f)
    print(f"{len(doc['vectors']) - len(failures)} passed, {len(failures)} failed")
    sys.exit(1 if failures else 0)


if __name__ == "__main__":
    main()
