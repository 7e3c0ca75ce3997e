#!/usr/bin/env python3
"""Cross-check entries.json with third-party libraries (cbor2 and pycose).

For every entry of every vector whose expect is "valid":
  (a) cbor2 decodes it as exactly one item, tag 18 around
      [bstr, {}, bstr, bstr(64)], and re-encoding the entry, its protected
      header and its payload with cbor2's canonical mode gives the same bytes;
  (b) pycose (Sign1Message.decode, OKPKey crv Ed25519, x = the protected kid)
      verifies the COSE_Sign1 signature, and the payload author equals the kid
      (format version 1). pycose 1.1.0 does not know alg -19 (Ed25519, RFC
      9864), which entries of format version 2 (SPEC.md 5.7) use: their
      signature is verified with the `cryptography` package's Ed25519 and the
      kid over the Sig_structure built by cbor2, and they are counted apart;
      their kid is a key of the author's key log, not the author;
  (c) SHA-256 of the entry bytes equals the vector's "ids" entry (a withheld
      marker's id must equal its "ids" entry too).
For the failing entry of every "bad-signature" vector, pycose (or, for alg
-19, cryptography) must NOT verify it, except where strict Ed25519 verification is what rejects it (small-order
R or public key: RFC 8032 verifiers such as OpenSSL, and so pycose, accept
those); such entries must then fail validate.strict_verify, and are counted
separately. A valid entry that pycose refuses must pass validate.strict_verify
(the cofactored equation, SPEC.md 3.3); such entries are counted too.

Optionally (--cose-wg DIR) also verifies the COSE WG Ed25519 Sign1 example
eddsa-examples/eddsa-sig-01.json the same way, as a check of this harness.

Usage:  python3 check_cose.py [entries.json] [--cose-wg DIR]
Prints "N passed, M failed" and exits non-zero if anything failed.
"""

import sys

sys.dont_write_bytecode = True  # keep spec/vectors free of __pycache__

import argparse
import hashlib
import io
import json
import os

import cbor2
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

try:  # pycose >= 1.0 installs as `pycose`; its predecessor on PyPI, `cose`, as `cose`.
    from pycose.headers import KID
    from pycose.keys import OKPKey
    from pycose.keys.curves import Ed25519
    from pycose.messages import Sign1Message
except ImportError:  # pragma: no cover
    from cose.headers import KID
    from cose.keys import OKPKey
    from cose.keys.curves import Ed25519
    from cose.messages import Sign1Message

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import validate  # noqa: E402  (only for the strict small-order checks)


class Check:
    def __init__(self):
        self.passed = 0
        self.failed = 0
        self.strict_only = 0
        self.cofactored_only = 0
        self.ed25519_v2 = 0  # entries of alg -19 verified with cryptography (pycose does not know -19)

    def ok(self, cond, what):
        if cond:
            self.passed += 1
        else:
            self.failed += 1
            print("FAIL", what)
        return cond


def cbor2_one(data: bytes):
    """Decode exactly one CBOR item with cbor2; raise if anything trails it."""
    fp = io.BytesIO(data)
    v = cbor2.CBORDecoder(fp).decode()
    if fp.tell() != len(data):
        raise ValueError("trailing bytes")
    return v


ALG_ED25519 = -19  # RFC 9864; the alg of entries of format version 2 (SPEC.md 5.7)


def alg_of(data: bytes):
    """The protected header's alg, read with cbor2."""
    return cbor2.loads(cbor2_one(data).value[0]).get(1)


def ed25519_verify(data: bytes) -> bool:
    """For alg -19, which pycose 1.1.0 does not know: the `cryptography`
    package's Ed25519 verifies the signature with the kid over the
    Sig_structure ["Signature1", protected, h'', payload] built by cbor2."""
    prot_b, _, pl_b, sig = cbor2_one(data).value
    tbs = cbor2.dumps(["Signature1", prot_b, b"", pl_b], canonical=True)
    try:
        Ed25519PublicKey.from_public_bytes(cbor2.loads(prot_b)[4]).verify(sig, tbs)
        return True
    except InvalidSignature:
        return False


def pycose_verify(data: bytes, x: bytes = None) -> bool:
    """True if pycose verifies the COSE_Sign1 `data` with Ed25519 key x (default: the protected kid)."""
    msg = Sign1Message.decode(data)
    if x is None:
        x = msg.phdr[KID]
    msg.key = OKPKey(crv=Ed25519, x=x)
    return bool(msg.verify_signature())


def check_valid_entry(c: Check, where: str, data: bytes, want_id: str):
    # (a) cbor2 structure and canonical round trip
    try:
        top = cbor2_one(data)
        good = (isinstance(top, cbor2.CBORTag) and top.tag == 18 and isinstance(top.value, list)
                and len(top.value) == 4)
        if good:
            prot_b, unprot, pl_b, sig = top.value
            good = (isinstance(prot_b, bytes) and unprot == {} and isinstance(pl_b, bytes)
                    and isinstance(sig, bytes) and len(sig) == 64)
        c.ok(good, f"{where}: not tag 18 around [bstr, {{}}, bstr, bstr(64)]")
        if not good:
            return
        prot, payload = cbor2_one(prot_b), cbor2_one(pl_b)
        c.ok(cbor2.dumps(top, canonical=True) == data
             and cbor2.dumps(prot, canonical=True) == prot_b
             and cbor2.dumps(payload, canonical=True) == pl_b,
             f"{where}: cbor2 canonical re-encoding differs")
        if payload.get("v") == 2:
            c.ok(prot.get(1) == ALG_ED25519 and isinstance(payload.get("keys"), int),
                 f"{where}: format version 2 without alg -19 or keys")
        else:
            c.ok(prot.get(4) == payload.get("author"), f"{where}: payload author != kid")
    except Exception as e:
        c.ok(False, f"{where}: cbor2 decode failed: {e!r}")
        return
    if prot.get(1) == ALG_ED25519:
        if c.ok(ed25519_verify(data), f"{where}: cryptography's Ed25519 does not verify the alg -19 signature"):
            c.ed25519_v2 += 1
        c.ok(hashlib.sha256(data).hexdigest() == want_id, f"{where}: id != sha256(entry)")
        return
    # (b) pycose signature. pycose (OpenSSL) evaluates the cofactorless
    # equation; an entry it refuses is valid only if SPEC.md 3.3's cofactored
    # check (validate.strict_verify) accepts it, which happens only for a
    # signature with a small-order component (vector mixed-order-r).
    try:
        if pycose_verify(data):
            c.ok(True, where)
        else:
            msg = Sign1Message.decode(data)
            tbs = cbor2.dumps(["Signature1", msg.phdr_encoded, b"", msg.payload])
            why = validate.strict_verify(msg.phdr[KID], msg.signature, tbs)
            if c.ok(why == "", f"{where}: pycose does not verify the signature ({why})"):
                c.cofactored_only += 1
                print(f"note: {where}: pycose refuses it; the cofactored equation (SPEC.md 3.3) accepts it")
    except Exception as e:
        c.ok(False, f"{where}: pycose raised {e!r}")
    # (c) id
    c.ok(hashlib.sha256(data).hexdigest() == want_id, f"{where}: id != sha256(entry)")


def check_bad_signature(c: Check, where: str, data: bytes):
    if alg_of(data) == ALG_ED25519:
        c.ok(not ed25519_verify(data), f"{where}: cryptography's Ed25519 verifies an alg -19 bad-signature entry")
        return
    try:
        verified = pycose_verify(data)
    except Exception:
        verified = False
    if not verified:
        c.ok(True, where)
        return
    # pycose accepted it: only strict verification (RFC 8032 + small-order/S checks) may reject it.
    msg = Sign1Message.decode(data)
    kid = msg.phdr[KID]
    tbs = cbor2.dumps(["Signature1", msg.phdr_encoded, b"", msg.payload])
    why = validate.strict_verify(kid, msg.signature, tbs)
    if c.ok(why in ("small-order public key", "small-order R"),
            f"{where}: pycose verifies it and strict verification does not reject it ({why or 'accepted'})"):
        c.strict_only += 1
        print(f"note: {where}: pycose accepts it; rejected only by strict verification ({why})")


def check_cose_wg(c: Check, root: str):
    path = os.path.join(root, "eddsa-examples", "eddsa-sig-01.json")
    with open(path) as f:
        ex = json.load(f)
    data = bytes.fromhex(ex["output"]["cbor"])
    x = bytes.fromhex(ex["input"]["sign0"]["key"]["x_hex"])
    msg = Sign1Message.decode(data)
    tbs = cbor2.dumps(["Signature1", msg.phdr_encoded, b"", msg.payload])
    c.ok(tbs.hex().upper() == ex["intermediates"]["ToBeSign_hex"].upper(),
         "cose-wg eddsa-sig-01: Sig_structure differs from ToBeSign_hex")
    c.ok(pycose_verify(data, x), "cose-wg eddsa-sig-01: pycose does not verify it")


def main():
    ap = argparse.ArgumentParser(description="Cross-check entries.json with cbor2 and pycose.")
    ap.add_argument("path", nargs="?", default=os.path.join(HERE, "entries.json"))
    ap.add_argument("--cose-wg", metavar="DIR", help="COSE WG examples directory (optional self-test)")
    args = ap.parse_args()
    with open(args.path) as f:
        doc = json.load(f)

    c = Check()
    c.ok(doc.get("format") == "custodia-entry-vectors/1", "format string")
    names = set()
    n_valid = n_badsig = 0
    for v in doc["vectors"]:
        name = v["name"]
        c.ok(name not in names, f"{name}: duplicate vector name")
        names.add(name)
        c.ok(v["expect"] == "valid" or v["expect"] in validate.RULE_ORDER, f"{name}: unknown expect class")
        if v["expect"] == "valid":
            n_valid += 1
            if not c.ok(len(v["ids"]) == len(v["entries"]), f"{name}: ids/entries length"):
                continue
            for i, (e, want) in enumerate(zip(v["entries"], v["ids"])):
                where = f"{name}[{i}]"
                if isinstance(e, dict):
                    c.ok(e["withheld"][2] == want, f"{where}: withheld id != ids entry")
                else:
                    check_valid_entry(c, where, bytes.fromhex(e), want)
        else:
            c.ok(0 <= v["failing_index"] < len(v["entries"]), f"{name}: failing_index out of range")
            if v["expect"] == "bad-signature":
                n_badsig += 1
                check_bad_signature(c, f"{name}[{v['failing_index']}]",
                                    bytes.fromhex(v["entries"][v["failing_index"]]))
    if args.cose_wg:
        check_cose_wg(c, args.cose_wg)
    print(f"checked {len(doc['vectors'])} vectors ({n_valid} valid, {n_badsig} bad-signature); "
          f"{c.strict_only} bad-signature entries are accepted by pycose and rejected only by strict checks; "
          f"{c.cofactored_only} valid entries are refused by pycose and accepted by the cofactored equation; "
          f"{c.ed25519_v2} valid entries of alg -19 (format version 2) verified with cryptography's Ed25519, "
          f"since pycose does not know alg -19")
    print(f"{c.passed} passed, {c.failed} failed")
    sys.exit(1 if c.failed else 0)


if __name__ == "__main__":
    main()
