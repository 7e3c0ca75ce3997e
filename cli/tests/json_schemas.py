"""Every `custodia --json` output conforms to its JSON Schema in
docs/schemas/ (draft 2020-12; shared types in defs.schema.json), and every
command that writes JSON has a schema and is run here.

Usage: json_schemas.py CUSTODIA_BIN SCHEMA_DIR

Runs a scripted case with the real binary, every command with --json:
Manila and Berlin (and Lyon, a third agency) made with init, pinned with
peer add, a case opened, shared (and unshared with Lyon), evidence added
and checked, custody recorded and transferred; both nodes run until Berlin
has the case and signs the receipt; then case show/log/list and status on
both, the key log (start, certify-officer, revoke, rotate-root, log, a
partner's log, confirm), key
protect and key passphrase (Lyon), export (bundle, selective, CASE/UCO),
store check, backup and restore (the restored node is on hold: status and
case show show the hold, case release-hold releases it), peer remove,
man --dir, demo, verify of the bundle, and errors: a missing case, a
missing option, a release-hold of a case not on hold, a missing --dir, a
refused duplicate, a file that is no bundle, each a JSON document on
stderr.

Each document on stdout is validated against the schema of its command
(docs/schemas/COMMAND-WORDS.schema.json; verify: verify-report), each
error document on stderr against error.schema.json. Then the commands are
listed from `custodia --help`, recursively: the check fails if one writes
JSON and has no schema, if a schema names no command, if a command
with a schema was not run, or if docs/json.md does not list a schema with
its schema_version. Exit non-zero on the first failure, naming the
command and the validation error.
"""

import json
import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import time

import jsonschema
from referencing import Registry, Resource

# Commands that write no JSON document, and why (--json does not apply).
NO_JSON = {
    "node run": "it logs; `--log-format json` gives JSON log lines",
    "completions": "it prints a shell script",
}
# Commands whose schema is not named after them.
SCHEMA_OF = {"verify": "verify-report"}

PASSPHRASE = "correct horse battery staple"


def fail(msg):
    raise SystemExit(f"json-schemas: {msg}")


def free_port():
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


class Check:
    def __init__(self, binary, schema_dir, work):
        self.bin = binary
        self.dir = schema_dir
        self.work = work
        self.schemas = {}
        resources = []
        for f in sorted(os.listdir(schema_dir)):
            if not f.endswith(".schema.json"):
                continue
            with open(os.path.join(schema_dir, f), encoding="utf-8") as h:
                s = json.load(h)
            jsonschema.Draft202012Validator.check_schema(s)
            if not s.get("$id", "").endswith("/" + f):
                fail(f"{f}: its $id must end in /{f}")
            self.schemas[f[: -len(".schema.json")]] = s
            resources.append((s["$id"], Resource.from_contents(s)))
        self.registry = Registry().with_resources(resources)
        self.validators = {}
        self.leaves = leaf_commands(binary)
        self.validated = {}  # command -> number of documents
        self.errors = 0

    def validate(self, what, schema_name, doc):
        if schema_name not in self.schemas:
            fail(f"{what}: no schema {schema_name}.schema.json in {self.dir}")
        v = self.validators.get(schema_name)
        if v is None:
            v = jsonschema.Draft202012Validator(
                self.schemas[schema_name], registry=self.registry
            )
            self.validators[schema_name] = v
        errors = sorted(v.iter_errors(doc), key=lambda e: list(e.path))
        if errors:
            for e in errors[:5]:
                print(f"{what}: {e.json_path}: {e.message}", file=sys.stderr)
            print(json.dumps(doc, indent=1)[:4000], file=sys.stderr)
            fail(f"{what}: the output does not conform to {schema_name}.schema.json")

    def command_of(self, args):
        words = [a for a in args]
        for k in range(len(words), 0, -1):
            name = " ".join(words[:k])
            if name in self.leaves:
                return name
        fail(f"{args}: not a command of `custodia --help`")

    def run(self, node, *args, code=0, env=None, fds=(), dir_arg=True, stdin=None):
        """Runs `custodia [--dir WORK/node] --json ARGS`; validates what it
        writes; returns the document on stdout (None if none)."""
        argv = [self.bin]
        if dir_arg and node is not None:
            argv += ["--dir", os.path.join(self.work, node)]
        argv += ["--json", *args]
        cmd = self.command_of(list(args))
        what = f"custodia {' '.join(argv[1:])}"
        e = dict(os.environ)
        e.pop("CUSTODIA_PASSPHRASE", None)
        e.pop("CUSTODIA_DIR", None)
        e.update(env or {})
        r = subprocess.run(
            argv, capture_output=True, text=True, env=e, pass_fds=fds, stdin=stdin or subprocess.DEVNULL
        )
        if r.returncode != code:
            fail(f"{what}: exit {r.returncode}, {code} expected\nstdout: {r.stdout}\nstderr: {r.stderr}")
        docs_err = [l for l in r.stderr.splitlines() if l.startswith("{")]
        others = [l for l in r.stderr.splitlines() if not l.startswith("{") and l.strip()]
        for l in others:
            if not l.startswith("warning: "):
                fail(f"{what}: stderr holds a line that is neither a JSON document nor a warning: {l!r}")
        doc = None
        if r.stdout.strip():
            try:
                doc = json.loads(r.stdout)
            except ValueError as x:
                fail(f"{what}: stdout is not one JSON document ({x}): {r.stdout[:500]}")
            if not isinstance(doc, dict):
                fail(f"{what}: the document is not an object")
            self.validate(what, SCHEMA_OF.get(cmd, cmd.replace(" ", "-")), doc)
            self.validated[cmd] = self.validated.get(cmd, 0) + 1
        if code == 0 and docs_err:
            fail(f"{what}: succeeded with an error document on stderr: {docs_err}")
        if code != 0 and doc is None:
            if len(docs_err) != 1:
                fail(f"{what}: exit {code}: one JSON error document expected on stderr, got: {r.stderr!r}")
            err = json.loads(docs_err[0])
            self.validate(what + " (stderr)", "error", err)
            self.errors += 1
            return err
        return doc

    def coverage(self):
        """A schema for every command that writes JSON, a command for every
        schema, and every command with a schema run."""
        problems = []
        expected = set()
        for c in sorted(self.leaves):
            if c in NO_JSON:
                continue
            name = SCHEMA_OF.get(c, c.replace(" ", "-"))
            expected.add(name)
            if name not in self.schemas:
                problems.append(f"`custodia {c}` writes JSON and has no schema ({name}.schema.json)")
            elif c not in self.validated:
                problems.append(f"`custodia {c}` has a schema and was not run by this check")
        for name in self.schemas:
            if name not in expected and name not in ("defs", "error"):
                problems.append(f"{name}.schema.json names no command of `custodia --help`")
        if self.errors == 0:
            problems.append("no error document was checked")
        # docs/json.md's table: every schema, with its schema_version.
        doc = os.path.join(self.dir, "..", "json.md")
        with open(doc, encoding="utf-8") as h:
            rows = re.findall(r"^\| .* \| \[[^]]*\]\(schemas/([a-z-]+)\.schema\.json\).* \| (\d+) \|$", h.read(), re.M)
        listed = {name: int(v) for name, v in rows}
        for name, s in self.schemas.items():
            if name == "defs":
                continue
            version = s.get("properties", {}).get("schema_version", {}).get("const")
            if name not in listed:
                problems.append(f"docs/json.md does not list {name}.schema.json")
            elif listed[name] != version:
                problems.append(f"docs/json.md gives {name} schema_version {listed[name]}, its schema {version}")
        if problems:
            fail("\n  ".join(["coverage:"] + problems))


def leaf_commands(binary):
    """Every command that does something, from `custodia [words] --help`:
    e.g. {"init", "case open", "key log", ...}."""
    leaves = set()

    def walk(words):
        r = subprocess.run([binary, *words, "--help"], capture_output=True, text=True, check=True)
        m = re.search(r"^Commands:\n((?:  .*\n?)+)", r.stdout, re.M)
        subs = []
        if m:
            for line in m.group(1).splitlines():
                name = line.split()[0]
                if name != "help":
                    subs.append(name)
        if not subs:
            leaves.add(" ".join(words))
        for s in subs:
            walk(words + [s])

    walk([])
    leaves.discard("")
    if len(leaves) < 20:
        fail(f"only {len(leaves)} commands found in --help: {sorted(leaves)}")
    return leaves


def wait_for(what, fn, timeout=60):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if fn():
            return
        time.sleep(0.5)
    fail(f"timed out waiting for {what}")


def scenario(c, work):
    p = lambda *x: os.path.join(work, *x)
    pm, pb = free_port(), free_port()
    m = c.run("manila", "init", "--no-passphrase", "--agency", "Manila Cybercrime Unit",
              "--country", "PH", "--listen", f"127.0.0.1:{pm}")
    b = c.run("berlin", "init", "--no-passphrase", "--agency", "Berlin Digital Forensics",
              "--country", "DE", "--listen", f"127.0.0.1:{pb}")
    lyon = c.run("lyon", "init", "--no-passphrase", "--agency", "Lyon Liaison Desk",
                 "--country", "FR", "--listen", f"127.0.0.1:{free_port()}")
    km, kb, kl = m["agency"], b["agency"], lyon["agency"]
    c.run("manila", "id")
    c.run("manila", "peer", "add", "berlin", "--addr", f"127.0.0.1:{pb}", "--key", kb, "--country", "DE")
    c.run("manila", "peer", "add", "lyon", "--addr", "127.0.0.1:9", "--key", kl, "--country", "FR")
    c.run("berlin", "peer", "add", "manila", "--addr", f"127.0.0.1:{pm}", "--key", km, "--country", "PH")
    c.run("manila", "peer", "list")
    c.run("manila", "agency", "list")

    case = c.run("manila", "case", "open", "--title", "Operation Lantern", "--reference",
                 "MCU-2026-0042", "--jurisdiction", "PH", "--tlp", "amber")["case"]
    c.run("manila", "case", "share", case, "--with", "berlin", "--role", "examiner",
          "--name", "Berlin Digital Forensics", "--country", "DE")
    c.run("manila", "case", "share", case, "--with", "lyon", "--role", "liaison")
    c.run("manila", "case", "unshare", case, "--with", "lyon", "--reason", "left the task force")

    with open(p("phone.img"), "w") as f:
        f.write("sample evidence: a seized phone image\n")
    with open(p("other.img"), "w") as f:
        f.write("not the phone image\n")
    reg = c.run("manila", "evidence", "add", case, p("phone.img"), "--exhibit", "MCU-EX-1",
                "--description", "Seized phone, full image", "--authority", "Search warrant QC-2026-117",
                "--also", "md5,sha1", "--acquired-by", "Insp. Reyes", "--place", "Quezon City",
                "--method", "seizure", "--tool", "FTK Imager 4.7")
    item = reg["registered"][0]["item"]
    c.run("manila", "evidence", "check", item, p("phone.img"))
    c.run("manila", "evidence", "check", item, p("other.img"), code=1)
    c.run("manila", "custody", "record", item, "--action", "examined", "--digest-matched", "yes",
          "--tool", "X-Ways 21.3", "--actor", "Insp. Reyes")
    c.run("manila", "custody", "record", item, "--action", "sealed", "--note", "sealed in evidence bag A-17")
    c.run("manila", "custody", "transfer", item, "--to", "berlin", "--purpose", "forensic examination",
          "--actor", "Insp. Reyes")
    c.run("manila", "case", "show", case)
    c.run("manila", "status", code=0)

    nodes = []
    try:
        for n in ("manila", "berlin"):
            log = open(p(n + ".log"), "w")
            nodes.append(subprocess.Popen([c.bin, "--dir", p(n), "node", "run"], stdout=log, stderr=log))

        def berlin_has_transfer():
            r = subprocess.run([c.bin, "--dir", p("berlin"), "--json", "case", "show", case],
                               capture_output=True, text=True)
            return r.returncode == 0 and json.loads(r.stdout)["open_transfers"]

        wait_for("Berlin to receive the case", berlin_has_transfer)
        c.run("berlin", "custody", "receive", item, "--note", "seal intact on arrival", "--place", "Wiesbaden lab")
        c.run("berlin", "custody", "record", item, "--action", "unsealed")

        def manila_peer_view():
            r = subprocess.run([c.bin, "--dir", p("manila"), "--json", "status", case],
                               capture_output=True, text=True)
            return r.returncode == 0 and json.loads(r.stdout)["cases"][0]["peers"]

        wait_for("Berlin's view of Manila's chain", manila_peer_view)
    finally:
        for n in nodes:
            n.send_signal(signal.SIGTERM)
        for n in nodes:
            try:
                n.wait(timeout=30)
            except subprocess.TimeoutExpired:
                n.kill()

    for node in ("manila", "berlin"):
        c.run(node, "case", "list")
        c.run(node, "case", "show", case)
        c.run(node, "case", "log", case)
        c.run(node, "status")
        c.run(node, "agency", "list")
    c.run("manila", "status", case)

    # The key log: none yet, then started, an officer certified and revoked.
    c.run("manila", "key", "log")
    c.run("manila", "key", "list")
    c.run("manila", "key", "start", "--next-key", p("manila-next-root.key"), "--no-passphrase")
    officer = c.run("manila", "key", "certify-officer", "--name", "Insp. R. Santos", "--number", "PNP-0042",
                    "--out", p("santos.key"), "--no-passphrase")["key"]
    c.run("manila", "key", "certify-node", "--no-passphrase")
    # A case of format version 2: opened and written by the officer (--as,
    # here through CUSTODIA_OFFICER_KEY); without it the agency key may not
    # write in it (exit 2).
    santos = {"CUSTODIA_OFFICER_KEY": p("santos.key")}
    v2 = c.run("manila", "case", "open", "--title", "Operation Lantern II", "--reference",
               "MCU-2026-0043", "--tlp", "amber", env=santos)["case"]
    c.run("manila", "case", "show", v2, env=santos)
    c.run("manila", "evidence", "add", v2, p("phone.img"), "--exhibit", "MCU-EX-2", env=santos)
    rows = c.run("manila", "case", "log", v2)["entries"]
    if not any(r["signer"] and r["signer"]["officer"]["name"] == "Insp. R. Santos" for r in rows):
        fail(f"case log names no officer: {rows!r}")
    c.run("manila", "export", v2, "--out", p("v2.custodia"))
    report = c.run(None, "verify", p("v2.custodia"))
    signer = report["items"][0]["timeline"][0]["signer"]
    if signer is None or signer["officer"]["name"] != "Insp. R. Santos":
        fail(f"the officer's registration does not name the officer: {signer!r}")
    c.run("manila", "case", "share", v2, "--with", "berlin", "--role", "examiner", code=2)
    c.run("manila", "key", "revoke", officer, "--reason", "lost")
    c.run("manila", "key", "rotate-root", "--root", p("manila-next-root.key"),
          "--next-key", p("manila-next-root-2.key"), "--no-passphrase")
    c.run("manila", "key", "log")
    # Every key the log named, and what each is now.
    listed = {k["key"]: k for k in c.run("manila", "key", "list")["keys"]}
    statuses = sorted((k["role"], k["status"]) for k in listed.values())
    if statuses != [("node", "active"), ("officer", "revoked"), ("root", "former-root"), ("root", "in-force")]:
        fail(f"key list: {statuses}")
    if listed[officer]["revoked"]["reason"] != "lost" or listed[officer]["officer"]["number"] != "PNP-0042":
        fail(f"key list, the revoked officer: {listed[officer]!r}")
    # Berlin reads Manila's log (none has reached it: the nodes ran before
    # Manila started it).
    c.run("berlin", "key", "log", "manila")
    c.run("manila", "key", "confirm")

    # Lyon encrypts its key, then changes the passphrase.
    c.run("lyon", "key", "protect", env={"CUSTODIA_PASSPHRASE": PASSPHRASE})
    r, w = os.pipe()
    os.write(w, b"a new passphrase, long enough\n")
    os.close(w)
    try:
        c.run("lyon", "key", "passphrase", "--new-passphrase-fd", str(r),
              env={"CUSTODIA_PASSPHRASE": PASSPHRASE}, fds=(r,))
    finally:
        os.close(r)

    bundle = p("case.custodia")
    c.run("berlin", "export", case, "--out", bundle)
    c.run("berlin", "export", case, "--out", p("item.custodia"), "--items", item)
    c.run("berlin", "export", case, "--format", "case-uco", "--out", p("case.jsonld"))
    c.run("berlin", "export", case, "--format", "case-uco", "--out", p("item.jsonld"), "--items", item)
    c.run(None, "verify", bundle)
    c.run("manila", "store", "check")

    # A backup restored: the shared case is on hold until a peer confirms
    # this agency's head (none runs), and the operator releases it.
    c.run("manila", "backup", "--out", p("manila.custodia-backup"))
    c.run("restored", "restore", p("manila.custodia-backup"), "--key", p("manila", "identity.key"))
    c.run("restored", "status", code=1)
    c.run("restored", "case", "show", case)
    c.run("restored", "case", "release-hold", case, "--reason", "the check releases it")
    c.run("restored", "status")

    c.run("manila", "peer", "remove", "lyon")
    c.run(None, "man", "--dir", p("man"), dir_arg=False)
    c.run(None, "demo")

    # Errors: a document on stderr, nothing on stdout.
    c.run("manila", "case", "show", "no-such-case", code=2)
    c.run("manila", "case", "open", "--title", "missing its reference", code=2)
    c.run("manila", "case", "release-hold", case, "--reason", "not on hold", code=2)
    c.run(None, "case", "list", code=2)
    c.run("manila", "evidence", "add", case, p("phone.img"), code=1)
    c.run(None, "verify", p("phone.img"), code=2)


def main():
    binary, schema_dir = sys.argv[1:]
    with tempfile.TemporaryDirectory() as work:
        c = Check(binary, schema_dir, work)
        scenario(c, work)
        c.coverage()
        n = sum(c.validated.values())
        print(f"json schemas: {n} documents of {len(c.validated)} commands and {c.errors} error documents conform")


if __name__ == "__main__":
    main()
