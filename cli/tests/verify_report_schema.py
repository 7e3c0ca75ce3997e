"""Validates `custodia --json verify` reports against the published JSON
Schema (docs/schemas/verify-report.schema.json, draft 2020-12).

Usage: verify_report_schema.py CUSTODIA_BIN SCHEMA BUNDLES_JSON [BUNDLE...]

Verifies every bundle vector of BUNDLES_JSON (spec/vectors/bundles.json)
that is readable, valid or not, and every BUNDLE file given, with the real
binary, and checks each report against the schema. Exits non-zero on the
first report that does not conform, or if no report was checked.
"""

import json
import os
import subprocess
import sys
import tempfile

import jsonschema


def report(binary, path):
    r = subprocess.run([binary, "--json", "verify", path], capture_output=True, text=True)
    if r.returncode == 2:
        return None  # unreadable: an error document on stderr, no report
    if r.returncode not in (0, 1):
        raise SystemExit(f"{path}: custodia verify exited {r.returncode}: {r.stderr}")
    return json.loads(r.stdout)


def main():
    binary, schema_path, vectors_path, *bundles = sys.argv[1:]
    with open(schema_path, encoding="utf-8") as f:
        schema = json.load(f)
    jsonschema.Draft202012Validator.check_schema(schema)
    validator = jsonschema.Draft202012Validator(schema)
    with open(vectors_path, encoding="utf-8") as f:
        vectors = json.load(f)["vectors"]
    checked = 0
    with tempfile.TemporaryDirectory() as tmp:
        paths = list(bundles)
        for v in vectors:
            p = os.path.join(tmp, v["name"] + ".custodia")
            with open(p, "wb") as f:
                f.write(bytes.fromhex(v["bundle"]))
            paths.append(p)
        for p in paths:
            doc = report(binary, p)
            if doc is None:
                continue
            errors = sorted(validator.iter_errors(doc), key=lambda e: list(e.path))
            if errors:
                for e in errors[:5]:
                    print(f"{p}: {e.json_path}: {e.message}", file=sys.stderr)
                raise SystemExit(f"{p}: the report does not conform to {schema_path}")
            checked += 1
    if checked == 0:
        raise SystemExit("no report was checked")
    print(f"verify-report schema: {checked} reports conform")


if __name__ == "__main__":
    main()
