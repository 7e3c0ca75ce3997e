#!/usr/bin/env python3
"""Differential check: check_bundles.py against a verifier program, on damaged bundles.

For each bundle vector named on the command line (default: valid-selective-derived-item), it
flips every byte of the bundle with each mask (default 0x01 and 0x80), runs the verifier on the
result (by default `custodia verify --json`) and compares: both unreadable, or the same problem
list (index, rule, class, caused_by, in order), the same conflict kinds in order (SPEC.md
10.5 step 5, 10.6) and the same verdict. Not run by CI (it needs the Rust binary); it
measures how often two implementations of SPEC.md 10.5 agree.

    python3 differential.py --verifier target/debug/custodia [--step 1] [NAME ...]
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile

sys.dont_write_bytecode = True

import check_bundles

HERE = os.path.dirname(os.path.abspath(__file__))


def rust_outcome(verifier, path):
    p = subprocess.run([verifier, "verify", "--json", path], capture_output=True, text=True)
    if p.returncode == 2:
        return {"expect": "unreadable"}
    r = json.loads(p.stdout)
    problems = [{"index": x["index"], "rule": x["rule"], "class": x["class"], "caused_by": x["caused_by"]}
                for x in r["problems"]]
    return {"expect": "invalid" if problems else "valid", "problems": problems,
            "conflict_kinds": [c["kind"] for c in r["conflicts"]]}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--verifier", required=True)
    ap.add_argument("--step", type=int, default=1, help="flip every STEP-th byte")
    ap.add_argument("--masks", default="01,80")
    ap.add_argument("names", nargs="*", default=["valid-selective-derived-item"])
    a = ap.parse_args()
    with open(os.path.join(HERE, "bundles.json")) as f:
        vectors = {v["name"]: v for v in json.load(f)["vectors"]}
    masks = [int(m, 16) for m in a.masks.split(",")]
    total = same = 0
    differ = []
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "b.custodia")
        for name in a.names:
            base = bytes.fromhex(vectors[name]["bundle"])
            for i in range(0, len(base), a.step):
                for m in masks:
                    b = bytearray(base)
                    b[i] ^= m
                    with open(path, "wb") as f:
                        f.write(b)
                    py = check_bundles.outcome(bytes(b))
                    py = {k: py[k] for k in ("expect", "problems", "conflict_kinds") if k in py}
                    rs = rust_outcome(a.verifier, path)
                    total += 1
                    if py == rs:
                        same += 1
                    else:
                        differ.append((name, i, m, py, rs))
    for name, i, m, py, rs in differ[:10]:
        print(f"DIFFER {name} byte {i} ^ {m:#04x}:\n  python {py}\n  rust   {rs}")
    print(f"{total} damaged bundles: {same} the same outcome, {len(differ)} different")
    sys.exit(1 if differ else 0)


if __name__ == "__main__":
    main()
