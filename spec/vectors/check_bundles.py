#!/usr/bin/env python3
"""An independent Python verifier of Custodia court bundles (SPEC.md 10.5).

Written from SPEC.md sections 10, 11 and 14 and the CDDL, sharing no code with
the Rust crates. It reuses validate.py for the entry rules V1..V24 (its CBOR
decoder, its strict Ed25519 and its case validator), and adds what a bundle
needs on top: the reader of step 1 with its kinds of error, markers (8.3),
reveals, V16's checks on the item's current record, the consequence rules of
step 3, the bundle rules B1..B9, the conflicts of 11.7, and the conflicts of
10.6 (entries signed by keys revoked after their cited prefix). For the key logs
of a version 2 bundle (B8, B9) it reuses check_keylogs.py, the independent
checker of the key log rules K1..K12; entries of format version 2 are checked
(V20..V24) against the logs of "keys" that replay (SPEC.md 10.5 step 2).

    python3 check_bundles.py [bundles.json]

replays every vector and compares the verdict, the kind of read error, the
full problem list (index, rule, class, caused_by, in order), the conflicts (their
count and their kinds in report order), and the counts of withheld and disclosed
positions. It prints "N passed, N failed" and
exits non-zero on any mismatch.
"""

import hashlib
import json
import os
import sys

sys.dont_write_bytecode = True

import validate
from validate import Invalid, NotWellFormed, decode_one, strict_verify, Tagged
from cbor_det import enc
import check_keylogs

BUNDLE_CONTENT_TYPE = "application/custodia-bundle+cbor"
RULE_NUMBER = {c: i + 1 for i, c in enumerate(validate.RULE_ORDER)}
BUNDLE_CLASS = {1: "bundle-signature", 2: "exporter-mismatch", 3: "case-mismatch",
                4: "exporter-not-member", 5: "agency-list", 6: "bad-proof", 7: "selection",
                8: "key-log", 9: "key-log-agency"}
# Deterministic order: shorter keys first, then bytewise ("case" < "keys").
KEYS = ["v", "case", "keys", "items", "proofs", "entries", "agencies", "exporter", "exported-at"]
VERSIONS = (1, 2, 3)
KEYED = (2, 3)  # the versions that carry "keys" (3: as key histories)
MAX_HISTORY_SUPERSEDED = 1024  # SPEC.md 16: statements of a history taken as a recovery or superseded
AGENCY_KEYS = ["name", "agency", "country"]


def sha256(b):
    return hashlib.sha256(b).digest()


def bundle_header(kid):
    return enc({1: -8, 3: BUNDLE_CONTENT_TYPE, 4: kid})


# ---------------------------------------------------------------------------
# Step 1: reading (SPEC.md 10.5 step 1, "Reading a bundle")


class ReadError(Exception):
    def __init__(self, kind, why):
        super().__init__(f"{kind}: {why}")
        self.kind = kind


class Cursor:
    """Reads heads front to back inside bytes [0, len)."""

    def __init__(self, data):
        self.d = data
        self.i = 0

    def left(self):
        return len(self.d) - self.i

    def take(self, n, what):
        if n > self.left():
            raise ReadError("truncated", what)
        b = self.d[self.i:self.i + n]
        self.i += n
        return b

    def head(self, what):
        first = self.take(1, what)[0]
        major, ai = first >> 5, first & 31
        if ai < 24:
            return major, ai
        if ai <= 27:
            width = 1 << (ai - 24)
            v = int.from_bytes(self.take(width, what), "big")
            if v < (24 if width == 1 else 1 << (4 * width)):
                raise ReadError("non-canonical", f"{what}: head not in its shortest form")
            return major, v
        if ai == 31 and major in (2, 3, 4, 5):
            raise ReadError("non-canonical", f"{what}: indefinite length")
        raise ReadError("malformed", f"{what}: byte {first:#04x}")

    def expect(self, want, what):
        major, arg = self.head(what)
        if major != want:
            raise ReadError("schema", f"{what}: major type {major}, expected {want}")
        return arg

    def uint(self, what):
        return self.expect(0, what)

    def bstr(self, what):
        return self.take(self.expect(2, what), what)

    def fixed(self, n, what):
        b = self.bstr(what)
        if len(b) != n:
            raise ReadError("schema", f"{what}: {len(b)} bytes, expected {n}")
        return b

    def text(self, what):
        raw = self.take(self.expect(3, what), what)
        try:
            return raw.decode("utf-8")
        except UnicodeDecodeError:
            raise ReadError("malformed", f"{what}: invalid UTF-8")

    def array(self, what):
        n = self.expect(4, what)
        if n > self.left():
            raise ReadError("truncated", f"{what}: {n} items in {self.left()} bytes")
        return n

    def map(self, what):
        n = self.expect(5, what)
        if 2 * n > self.left():
            raise ReadError("truncated", f"{what}: {n} pairs in {self.left()} bytes")
        return n

    def members(self, count, keys, what, each):
        seen, last = set(), -1
        for _ in range(count):
            k = self.text(what)
            if k not in keys:
                raise ReadError("schema", f"{what}: unknown key {k!r}")
            if keys.index(k) <= last:
                raise ReadError("non-canonical", f"{what}: keys out of order or repeated")
            last = keys.index(k)
            seen.add(k)
            each(k)
        return seen


class Bundle:
    pass


def read(data):
    """SPEC.md 10.5 step 1. Returns a Bundle or raises ReadError."""
    if not data:
        raise ReadError("empty", "the file is empty")
    if data[0] != 0xD2:
        raise ReadError("not-a-bundle", "no COSE_Sign1 tag")
    c = Cursor(data)
    c.head("tag")

    def envelope(f):
        try:
            return f()
        except ReadError as e:
            if e.kind == "truncated":
                raise
            raise ReadError("not-a-bundle", str(e))

    if envelope(lambda: c.array("COSE_Sign1")) != 4:
        raise ReadError("not-a-bundle", "not an array of 4")
    protected = envelope(lambda: c.bstr("protected header"))
    if len(protected) < 32 or protected != bundle_header(protected[-32:]):
        raise ReadError("not-a-bundle", "not the bundle's protected header")
    b = Bundle()
    b.kid = protected[-32:]
    b.protected = protected
    if c.map("unprotected header") != 0:
        raise ReadError("schema", "unprotected header not empty")
    b.payload = c.bstr("payload")
    b.signature = c.fixed(64, "signature")
    if c.left():
        raise ReadError("trailing-bytes", f"{c.left()} bytes after the bundle")
    read_payload(b, Cursor(b.payload))
    return b


def read_payload(b, c):
    b.items = None
    b.version = None
    b.keys = None  # version 2: a list of key logs, each a list of statement bytes
    b.proofs, b.elements, b.agencies = [], [], []

    def element():
        if not c.left():
            raise ReadError("truncated", "element")
        major = c.d[c.i] >> 5
        if major == 2:
            return c.bstr("entry")
        if major == 4:
            if c.array("marker") != 3:
                raise ReadError("schema", "a marker has 3 items")
            return (c.fixed(32, "marker author"), c.uint("marker seq"), c.fixed(32, "marker id"))
        raise ReadError("schema", "element neither bytes nor marker")

    def agency():
        n = c.map("agency")
        got = {}

        def each(k):
            got[k] = c.fixed(32, "agency key") if k == "agency" else c.text(k)

        seen = c.members(n, AGENCY_KEYS, "agency", each)
        if len(seen) != 3:
            raise ReadError("schema", "agency member missing")
        if b.agencies and b.agencies[-1]["agency"] >= got["agency"]:
            raise ReadError("schema", "agencies not strictly ascending")
        cc = got["country"]
        if not (len(cc) == 2 and all("A" <= ch <= "Z" for ch in cc)):
            raise ReadError("schema", "country")
        b.agencies.append(got)

    def each(k):
        if k == "v":
            v = c.uint("v")
            if v not in VERSIONS:
                raise ReadError("unsupported-version", str(v))
            b.version = v
        elif k == "case":
            b.case = c.fixed(32, "case")
        elif k == "keys":
            # Choice (SPEC.md 10.5 step 1): "keys" is known only once "v"
            # said 2 or 3; in a version 1 payload (or one without "v") it is
            # an unknown key.
            if b.version not in KEYED:
                raise ReadError("schema", "keys in a version 1 bundle")
            b.keys = []
            for _ in range(c.array("keys")):
                n = c.array("key log")
                if n == 0:
                    raise ReadError("schema", "an empty key log")
                b.keys.append([c.bstr("key statement") for _ in range(n)])
        elif k == "items":
            n = c.array("items")
            if n == 0:
                raise ReadError("schema", "items empty")
            b.items = []
            for _ in range(n):
                i = c.fixed(16, "item")
                if b.items and b.items[-1] >= i:
                    raise ReadError("schema", "items not strictly ascending")
                b.items.append(i)
        elif k == "proofs":
            for _ in range(c.array("proofs")):
                if c.array("proof") != 2:
                    raise ReadError("schema", "a proof has 2 entries")
                b.proofs.append((c.bstr("proof entry"), c.bstr("proof entry")))
        elif k == "entries":
            n = c.array("entries")
            if n == 0:
                raise ReadError("schema", "entries empty")
            b.elements = [element() for _ in range(n)]
        elif k == "agencies":
            for _ in range(c.array("agencies")):
                agency()
        elif k == "exporter":
            b.exporter = c.fixed(32, "exporter")
        else:
            b.exported_at = c.uint("exported-at")

    seen = c.members(c.map("payload"), KEYS, "payload", each)
    for k in KEYS:
        optional = k == "items" or (k == "keys" and b.version not in KEYED)
        if not optional and k not in seen:
            raise ReadError("schema", f"payload has no {k}")
    if c.left():
        raise ReadError("trailing-bytes", "after the payload map")


# ---------------------------------------------------------------------------
# Step 2: replay (Section 8 as validate.py implements it, plus markers,
# reveals, V16 on the current item record, and the case state of Section 11)


class Replay(validate.Case):
    def __init__(self, now, keylogs=None):
        # keylogs: the logs of "keys" that replay (B8), which entries of
        # format version 2 are checked against (V20 to V24, SPEC.md 10.5 step 2)
        super().__init__(now, keylogs=keylogs)
        self.items = {}  # current state: item id -> record
        self.members = {}  # agency -> (name, country): the agencies list (11.1)
        self.conflicts = []  # ("equivocation", author, seq) or (kind,)
        self.first_accepted_pos = {}
        self.signed_by = {}  # accepted entry of format version 2: id -> (kid, "keys")
        self.witness_past = {}  # accepted witness: id -> its causal past when it was accepted

    # 8.3, for a validator that may already be bound or not (8.1)
    def add_withheld(self, author, seq, eid):
        if self.case_id is None:
            raise Invalid("wrong-case", "a marker before the genesis")
        if eid in self.accepted or eid in self.withheld:
            held = self.withheld.get(eid) or (self.accepted[eid].author, self.accepted[eid].seq)
            if held == (author, seq):
                return "duplicate"
            raise Invalid("equivocation", "id known at another position")
        if (author, seq) in self.pos:
            raise Invalid("equivocation", "position held with another id")
        if seq != self.top.get(author, -1) + 1:
            raise Invalid("sequence-gap", f"seq {seq}, expected {self.top.get(author, -1) + 1}")
        self.withheld[eid] = (author, seq)
        self.pos[(author, seq)] = eid
        self.top[author] = seq
        return "accepted"

    def accept(self, data):
        eid = sha256(data)
        try:
            result = super().accept(data)
        except Invalid as e:
            if e.cls == "equivocation":
                p = payload_of(data)
                other = self.pos.get((p["author"], p["seq"]))
                if other is not None and other != eid:
                    self.conflicts.append(("equivocation", p["author"], p["seq"]))
            raise
        if result == "accepted":
            p = payload_of(data)
            if p["v"] == 2:
                self.signed_by[eid] = (kid_of(data), p["keys"])
            e = self.accepted[eid]
            if e.kind == "witness":
                # SPEC.md 10.6: CP(W) as the replay computed it when it
                # accepted W (a position then held only as a marker adds its
                # chain link, not the refs of an entry revealed later)
                self.witness_past[eid] = self.past(e.prev, e.refs)
            self.apply_state(self.accepted[eid])
        return result

    # V16 as SPEC.md 8.2 details split it: CP(E) for registration,
    # derived-from, "to" a member and the receipt's transfer; the item's
    # current record for the rest.
    def _check_custody(self, kind, b, author, past):
        if kind not in ("evidence-registered", "custody"):
            return
        in_past = [self.accepted[x] for x in self.order if x in past]
        registered = {e.body["item"] for e in in_past if e.kind == "evidence-registered"}
        relaxed = any(x in self.withheld for x in past)
        if kind == "evidence-registered":
            if b["item"] in registered:
                self._fail("custody-violation", "item already registered in CP(E)")
            if "derived-from" in b and b["derived-from"] not in registered and not relaxed:
                self._fail("custody-violation", "derived-from an item not registered in CP(E)")
            return
        item = self.items.get(b["item"])
        a = b["action"]
        if item is None:
            if not relaxed:
                self._fail("custody-violation", "unknown item")
            return
        if item["destroyed"]:
            self._fail("custody-violation", "item destroyed")
        if a != "received":
            if item["holder"] != author:
                self._fail("custody-violation", "author is not the holder")
            if item["open"] is not None:
                self._fail("custody-violation", "item has an open transfer")
        if a == "transferred":
            if b["to"] == author or self.role_in(b["to"], past) is None:
                self._fail("custody-violation", "transfer to self or to a non-member")
        if a == "received":
            t = self.accepted.get(b["transfer"])
            if t is None:
                if not relaxed:
                    self._fail("custody-violation", "transfer unknown")
                return
            if b["transfer"] not in past:
                self._fail("custody-violation", "transfer not in CP(E)")
            if not (t.kind == "custody" and t.body["action"] == "transferred" and t.body["item"] == b["item"]
                    and item["open"] == t.id and t.body["to"] == author):
                self._fail("custody-violation", "not the item's open transfer to the author")

    def apply_state(self, e):
        b = e.body
        if e.kind == "case-opened":
            self.members[e.author] = (b["name"], b["country"])
        elif e.kind == "member-added" and b["agency"] != self.genesis_author:
            self.members[b["agency"]] = (b["name"], b["country"])  # the last in bundle order
        elif e.kind == "evidence-registered":
            if b["item"] in self.items:
                self.conflicts.append(("duplicate-registration",))
                return
            origin = self.origin(b["derived-from"]) if "derived-from" in b else None
            if any(i["sha256"] == b["digests"]["sha256"] and origin != self.origin(k)
                   for k, i in self.items.items()):
                self.conflicts.append(("duplicate-digest",))
            self.items[b["item"]] = {"holder": e.author, "open": None, "destroyed": False,
                                     "sha256": b["digests"]["sha256"], "from": b.get("derived-from")}
        elif e.kind == "custody":
            if b.get("digest-matched") is False:
                self.conflicts.append(("digest-mismatch",))
            item = self.items.get(b["item"])
            if item is None:
                return
            a = b["action"]
            if a == "transferred":
                item["open"] = e.id
            elif a == "received":
                item["open"] = None
                if b["accepted"]:
                    item["holder"] = e.author
            elif a == "destroyed":
                item["destroyed"] = True

    def origin(self, item):
        at = item
        for _ in range(64):
            parent = self.items.get(at, {}).get("from")
            if parent is None or parent == at:
                break
            at = parent
        return at


def payload_of(data):
    """The payload map of an entry that passed V1..V7."""
    top, _ = decode_one(data)
    p, _ = decode_one(top.value[2])
    return p


def kid_of(data):
    """The kid of an entry that passed V1..V7."""
    top, _ = decode_one(data)
    h, _ = decode_one(top.value[0])
    return h[4]


def key_conflicts(case):
    """SPEC.md 10.6: each accepted entry of format version 2 signed by a key
    that its author's log (the log of "keys" the replay used) revokes after
    the entry's cited prefix, in the order the entries were accepted.

    key-retired: reason "retired" and the entry dated at or after "effective".
    key-reported-compromised: reason "lost" or "compromised", and no witness
    entry of another agency, accepted, dated strictly before "effective", has
    the entry in its causal past (8.4: through its prev and refs, so a
    witness held only as a marker, whose time and refs are unknown, does not
    count, and neither do heads that its prev and refs do not reach). The
    causal past is the one the replay computed when it accepted the witness:
    the refs of an entry revealed after it are not followed.
    """
    def revocation(eid):
        if eid not in case.signed_by:
            return None
        kid, keys = case.signed_by[eid]
        log = case.keylogs.get(case.accepted[eid].author)
        # V20 held the prefix; K11 lets a key be revoked once at most
        return next((s for s in (log.held[keys:] if log else [])
                     if s.kind == "revoke" and s.body["key"] == kid), None)

    # A witness signed by a key its own log reports lost or compromised
    # after the witness's cited prefix does not count (whoever held that
    # key may have dated it), whatever its own date.
    untrusted = {x for x in case.order
                 if (r := revocation(x)) is not None and r.body["reason"] != "retired"}
    out = []
    for eid in case.order:
        revoke = revocation(eid)
        if revoke is None:
            continue
        e = case.accepted[eid]
        effective, reason = revoke.body["effective"], revoke.body["reason"]
        if reason == "retired":
            if e.time >= effective:
                out.append(("key-retired", eid))
            continue
        witnessed = any(
            w.kind == "witness" and w.author != e.author and w.time < effective
            and w.id not in untrusted and eid in case.witness_past[w.id]
            for w in (case.accepted[x] for x in case.order))
        if not witnessed:
            out.append(("key-reported-compromised", eid))
    return out


def names_of(p):
    """Every id an entry names (10.5 step 3): prev, refs, witness heads, the
    transfer a receipt answers, the target of a retraction or handling change."""
    out = ([p["prev"]] if "prev" in p else []) + list(p["refs"])
    (kind, b), = p["body"].items()
    if kind == "witness":
        out += [h[2] for h in b["heads"]]
    elif kind == "custody" and "transfer" in b:
        out.append(b["transfer"])
    elif kind in ("retracted", "handling-changed"):
        out.append(b["entry"])
    return out


def unknown_id(case, p):
    """The id V13 names: the first offending ref, else the first offending witness head."""
    for r in p["refs"]:
        if r in case.accepted:
            if case.accepted[r].author == p["author"]:
                return r
        elif r in case.withheld:
            if case.withheld[r][0] == p["author"]:
                return r
        else:
            return r
    (kind, b), = p["body"].items()
    if kind == "witness":
        for a, s, hid in b["heads"]:
            if case.pos.get((a, s)) != hid:
                return hid
    return None


# ---------------------------------------------------------------------------
# Steps 2 to 5


KEY_RULES = {"key-log-pending", "uncertified-key", "revoked-key", "key-role", "key-validity"}


def check_proof(a, b, logs=None):
    """SPEC.md 14.2 steps 2 to 6 (step 1 is the bundle's reading), with the
    bundle's replayed key logs for entries of format version 2. Returns the
    case id or None."""
    got = []
    for data in (a, b):
        c = validate.Case(0, keylogs=logs)
        c.case_id = None
        try:
            # V1..V8 alone, and V20..V24 for format version 2: the rest is
            # not part of a proof check
            c.skip = set(validate.RULE_ORDER[8:]) - KEY_RULES
            c.accept(data)
        except Invalid:
            return None
        p = payload_of(data)
        got.append((p.get("case", sha256(data)), p["author"], p["seq"], sha256(data)))
    (ca, aa, sa, ia), (cb, ab, sb, ib) = got
    if ca != cb or aa != ab or sa != sb or not ia < ib:
        return None
    return ca, aa, sa


def verify(b):
    """Returns the report: problems [(index, rule, class, caused_by)], conflicts, withheld, disclosed."""
    case = Replay(b.exported_at, replayed_logs(b))
    problems = []
    refused_ids, refused_at = {}, {}
    first_unplaced = first_refused = None
    withheld = disclosed = 0
    for index, el in enumerate(b.elements):
        if isinstance(el, tuple):
            author, seq, eid = el
            claimed = (author, seq, [])
            try:
                if case.add_withheld(author, seq, eid) == "accepted":
                    withheld += 1
                continue
            except Invalid as e:
                err = e
        else:
            eid = sha256(el)
            claimed = None
            try:
                if case.accept(el) == "accepted":
                    disclosed += 1
                continue
            except Invalid as e:
                err = e
            if RULE_NUMBER[err.cls] >= 8:  # passed V1..V7: its position is known
                p = payload_of(el)
                claimed = (p["author"], p["seq"], names_of(p))
        rule = RULE_NUMBER[err.cls]
        root = None
        refused_dep = next((refused_ids[d] for d in (claimed[2] if claimed else []) if d in refused_ids), None)
        if case.case_id is None and rule >= 9:
            root = first_refused
        elif err.cls == "sequence-gap":
            author, seq, _ = claimed
            expected = case.top.get(author, -1) + 1
            root = next((refused_at[(author, s)] for s in range(expected, seq) if (author, s) in refused_at),
                        None)
            if root is None:
                root = first_unplaced
        elif err.cls == "unknown-reference":
            unk = unknown_id(case, payload_of(el))
            root = refused_ids.get(unk)
            if root is None:
                root = refused_dep
            if root is None:
                root = first_unplaced
        elif err.cls in ("not-a-member", "not-authorized", "custody-violation"):
            root = refused_dep
        key = index if root is None else root
        refused_ids.setdefault(eid, key)
        if claimed:
            refused_at.setdefault((claimed[0], claimed[1]), key)
        elif first_unplaced is None:
            first_unplaced = key
        if first_refused is None:
            first_refused = key
        problems.append((index, f"V{rule}", err.cls if root is None else "depends-on-invalid", root))

    def bundle_problem(n):
        problems.append((None, f"B{n}", BUNDLE_CLASS[n], None))

    elements_ok = not problems
    tbs = enc(["Signature1", b.protected, b"", b.payload])
    if strict_verify(b.kid, b.signature, tbs):
        bundle_problem(1)
    if b.exporter != b.kid:
        bundle_problem(2)
    first = b.elements[0]
    if isinstance(first, tuple) or sha256(first) != b.case:
        bundle_problem(3)
    if elements_ok:
        if b.exporter not in case.members:
            bundle_problem(4)
        listed = {a["agency"]: (a["name"], a["country"]) for a in b.agencies}
        for agency in sorted(set(listed) | set(case.members)):
            if listed.get(agency) != case.members.get(agency):
                bundle_problem(5)
        for item in b.items or []:
            if item not in case.items:
                bundle_problem(7)
    # The conflicts in report order (SPEC.md 10.5 step 5, 10.6): the replay's,
    # in the order recorded; then each valid proof not already listed; then
    # the entries signed by keys revoked after their cited prefix.
    equivocations = {(c[1], c[2]) for c in case.conflicts if c[0] == "equivocation"}
    conflicts = [c[0] for c in case.conflicts]
    for pa, pb in b.proofs:
        got = check_proof(pa, pb, replayed_logs(b))
        if got is None or got[0] != b.case:
            bundle_problem(6)
        elif (got[1], got[2]) not in equivocations:
            equivocations.add((got[1], got[2]))
            conflicts.append("equivocation")
    conflicts += [kind for kind, _ in key_conflicts(case)]
    logs = check_key_logs(b, bundle_problem)
    return {"problems": problems, "conflicts": conflicts, "withheld": withheld, "disclosed": disclosed,
            "key_logs": logs}


def replay_log(log, history=False):
    """B8: the log replays from its first statement, an inception, by K1..K12,
    each statement taken as the log's next (a duplicate, a recovery or a
    superseded statement is not its next); in a key history (version 3,
    SPEC.md 10.1) also as a recovery or as superseded, never as a duplicate.
    The Log, or None."""
    kl = check_keylogs.Log()
    turns = 0
    try:
        for i, data in enumerate(log):
            got = kl.append(data)
            if history and isinstance(got, tuple) and got[0] in ("recovered", "superseded"):
                turns += 1
                if turns > MAX_HISTORY_SUPERSEDED:
                    raise check_keylogs.Refused("gap", "too many recoveries and superseded statements")
                continue
            if got != "new":
                raise check_keylogs.Refused("gap", f"statement {i} is not the log's next")
    except check_keylogs.Refused:
        return None
    return kl


def replayed_logs(b):
    """The logs of "keys" that replay (B8), by agency; of an agency with two
    (B9), the first (SPEC.md 10.5 step 2)."""
    out = {}
    for log in b.keys or []:
        kl = replay_log(log, b.version == 3)
        if kl is not None and kl.agency not in out:
            out[kl.agency] = kl
    return out


def check_key_logs(b, bundle_problem):
    """B8 then B9 (SPEC.md 10.5 step 4), each in the order of "keys".

    B8: a log replays from its first statement, an inception, by K1..K12,
    each statement taken as the log's next (a duplicate, a recovery or a
    superseded statement is not its next). B9: the agency of a log whose
    first statement passes K1..K5 is listed in "agencies" and greater than
    that of every earlier log whose agency is known. Returns, for each log
    that replays, (agency, length, root in force, superseded statements).
    """
    agencies, replayed = [], []
    for log in b.keys or []:
        try:
            agencies.append(check_keylogs.decode(log[0]).agency)
        except check_keylogs.Refused:
            agencies.append(None)
        kl = replay_log(log, b.version == 3)
        if kl is None:
            bundle_problem(8)
            continue
        replayed.append((kl.agency, len(kl.held), check_keylogs.Log.root_in_force(kl.held)["root"]["pub"],
                         len(kl.superseded)))
    listed = {a["agency"] for a in b.agencies}
    last = None
    for a in agencies:
        if a is None:
            continue
        if a not in listed or (last is not None and a <= last):
            bundle_problem(9)
        last = a if last is None else max(last, a)
    return replayed


def outcome(data):
    """What a vector records for these bytes."""
    try:
        b = read(data)
    except ReadError as e:
        return {"expect": "unreadable", "error": e.kind}
    r = verify(b)
    out = {"expect": "invalid" if r["problems"] else "valid",
           "problems": [{"index": i, "rule": rule, "class": cls, "caused_by": by}
                        for i, rule, cls, by in r["problems"]],
           "conflicts": len(r["conflicts"]), "conflict_kinds": r["conflicts"],
           "withheld": r["withheld"], "disclosed": r["disclosed"]}
    if b.version in KEYED:
        # Version 2 and 3 vectors also record each log that replays (B8);
        # version 3, how many statements its history superseded.
        out["key_logs"] = [dict({"agency": a.hex(), "length": n, "root": root.hex()},
                                **({"superseded": sup} if b.version == 3 else {}))
                           for a, n, root, sup in r["key_logs"]]
    return out


FIELDS = ("expect", "error", "problems", "conflicts", "conflict_kinds", "withheld", "disclosed", "key_logs")


def check_document(doc):
    failures = []
    for v in doc["vectors"]:
        try:
            got = outcome(bytes.fromhex(v["bundle"]))
        except Exception as e:  # a checker bug, reported as a failure
            failures.append(f"{v['name']}: exception {e!r}")
            continue
        for k in FIELDS:
            if got.get(k) != v.get(k):
                failures.append(f"{v['name']}: {k}: expected {v.get(k)!r}, got {got.get(k)!r}")
                break
    return failures


def main():
    path = sys.argv[1] if len(sys.argv) > 1 else os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                                             "bundles.json")
    with open(path) as f:
        doc = json.load(f)
    failures = check_document(doc)
    for f in failures:
        print("FAIL", f)
    print(f"bundles: {len(doc['vectors']) - len(failures)} passed, {len(failures)} failed")
    sys.exit(1 if failures else 0)


if __name__ == "__main__":
    main()
