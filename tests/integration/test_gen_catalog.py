#!/usr/bin/env python3
"""test_gen_catalog.py: tools/gen-catalog.py, the catalog and repository
generator used by benchmarks, demos and end-to-end plan tests.

Checks that the same seed gives the same files (and the same git commits),
that the summary agrees with the generated entities, that every catalog file
is well-formed, and that the per-consumer repositories behave as documented:
precheck.sh says whether migration is needed, check.sh fails while the old
table is referenced or a file is malformed, and the demo behaviours
(already-migrated, flaky, broken-check) do what their names say.
"""
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import unittest

SOURCE = os.environ.get("GAGGLE_SOURCE") or os.path.join(os.path.dirname(__file__), "..", "..")
SCRIPT = os.path.join(SOURCE, "tools", "gen-catalog.py")


def gen(out, *args):
    return subprocess.run([sys.executable, SCRIPT, "--out", out, *args], check=True,
                          capture_output=True, text=True, timeout=300)


def tree(root):
    """{relative path: bytes} for every file outside .git folders."""
    files = {}
    for folder, dirs, names in os.walk(root):
        dirs[:] = sorted(d for d in dirs if d != ".git")
        for name in sorted(names):
            path = os.path.join(folder, name)
            with open(path, "rb") as f:
                files[os.path.relpath(path, root)] = f.read()
    return files


def run(cmd, cwd, env=None):
    e = dict(os.environ)
    e.pop("GAGGLE_ATTEMPT", None)
    e.update(env or {})
    return subprocess.run(cmd, cwd=cwd, env=e, capture_output=True, text=True, timeout=60)


def rewrite(folder, old, new):
    for rel in ("sql/report.sql", "config/pipeline.yaml", "scripts/load.py"):
        path = os.path.join(folder, rel)
        with open(path) as f:
            text = f.read()
        with open(path, "w") as f:
            f.write(text.replace(old, new))


def entity_docs(path):
    """The top-level keys of each YAML document (the generator's own subset)."""
    docs = []
    with open(path) as f:
        for chunk in f.read().split("---\n"):
            if chunk.strip():
                docs.append({m.group(1): m.group(2) for m in
                             re.finditer(r"^([A-Za-z]+):(.*)$", chunk, re.M)})
    return docs


class GenCatalogTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.mkdtemp(prefix="gg-gen-catalog-")
        cls.addClassCleanup(shutil.rmtree, cls.tmp, ignore_errors=True)
        cls.repos = os.path.join(cls.tmp, "repos")
        gen(cls.repos, "--consumers", "60", "--owners", "4", "--seed", "11", "--repos")
        with open(os.path.join(cls.repos, ".gen-summary.json")) as f:
            cls.summary = json.load(f)

    def folder(self, ref):
        return os.path.join(self.repos, "components", ref.split("/", 1)[1])

    def work_copy(self, ref):
        """A private copy of a consumer's repository, for tests that change it."""
        dest = tempfile.mkdtemp(prefix="repo-", dir=self.tmp)
        shutil.rmtree(dest)
        shutil.copytree(self.folder(ref), dest, symlinks=True)
        return dest

    def test_deterministic(self):
        a, b = os.path.join(self.tmp, "a"), os.path.join(self.tmp, "b")
        gen(a, "--consumers", "300", "--owners", "4", "--seed", "5")
        gen(b, "--consumers", "300", "--owners", "4", "--seed", "5")
        self.assertEqual(tree(a), tree(b))
        c = os.path.join(self.tmp, "c")
        gen(c, "--consumers", "300", "--owners", "4", "--seed", "6")
        self.assertNotEqual(tree(a), tree(c))
        # Writing over an existing catalog needs --force.
        with self.assertRaises(subprocess.CalledProcessError):
            gen(a, "--consumers", "3")

    def test_repos_deterministic(self):
        other = os.path.join(self.tmp, "repos-again")
        gen(other, "--consumers", "60", "--owners", "4", "--seed", "11", "--repos")
        self.assertEqual(tree(self.repos), tree(other))
        ref = self.summary["direct"][0]
        heads = [run(["git", "rev-parse", "HEAD"], os.path.join(root, "components",
                                                                 ref.split("/", 1)[1])).stdout
                 for root in (self.repos, other)]
        self.assertEqual(heads[0], heads[1])
        self.assertRegex(heads[0], r"^[0-9a-f]{40}\n$")

    def test_summary_matches_files(self):
        s = self.summary
        self.assertEqual(s["counts"]["Component"], 60)
        self.assertEqual(s["entities"], sum(s["counts"].values()))
        self.assertTrue(s["direct"])
        self.assertGreater(len(s["transitive"]), len(s["direct"]))
        self.assertTrue(set(s["direct"]) <= set(s["transitive"]))
        self.assertTrue(s["unrelated"])
        self.assertFalse(set(s["unrelated"]) & set(s["transitive"]))
        comps = os.listdir(os.path.join(self.repos, "components"))
        self.assertEqual(len(comps), 60)
        kinds = {}
        for folder, dirs, names in os.walk(self.repos):
            dirs[:] = [d for d in dirs if not d.startswith(".")]
            for name in names:
                if name == "catalog-info.yaml" or folder.endswith(("org", "teams", "datasets")):
                    for doc in entity_docs(os.path.join(folder, name)):
                        self.assertEqual(doc["apiVersion"].strip(), "backstage.io/v1alpha1")
                        kind = doc["kind"].strip()
                        kinds[kind] = kinds.get(kind, 0) + 1
        self.assertEqual(kinds, s["counts"])
        for b in ("already-migrated", "flaky", "broken-check"):
            self.assertTrue(s["behaviours"][b], b)
            self.assertTrue(set(s["behaviours"][b]) <= set(s["direct"]))
        self.assertTrue(s["security"])
        for ref in s["security"][:5]:
            with open(os.path.join(self.folder(ref), "catalog-info.yaml")) as f:
                self.assertIn("myorg.org/security: 'true'", f.read())

    def test_plain_consumer(self):
        special = {r for refs in self.summary["behaviours"].values() for r in refs}
        ref = next(r for r in self.summary["direct"] if r not in special)
        d = self.work_copy(ref)
        self.assertEqual(run(["git", "status", "--porcelain"], d).stdout, "")
        self.assertEqual(run(["git", "log", "--oneline"], d).stdout.count("\n"), 1)
        self.assertEqual(run(["./precheck.sh"], d).returncode, 0)  # needs migration
        r = run(["./check.sh"], d)
        self.assertEqual(r.returncode, 1)
        self.assertIn("still references user_ds_v1", r.stderr)
        rewrite(d, "user_ds_v1", "user_ds_v2")
        self.assertEqual(run(["./precheck.sh"], d).returncode, 1)  # done
        r = run(["./check.sh"], d)
        self.assertEqual(r.returncode, 0, r.stderr)
        # Malformed files fail the check even without the old table.
        with open(os.path.join(d, "scripts/load.py"), "a") as f:
            f.write("def broken(:\n")
        self.assertNotEqual(run(["./check.sh"], d).returncode, 0)
        run(["git", "checkout", "-q", "--", "scripts/load.py"], d)
        rewrite(d, "user_ds_v1", "user_ds_v2")
        with open(os.path.join(d, "config/pipeline.yaml"), "a") as f:
            f.write("\tbad: indent\n")
        self.assertNotEqual(run(["./check.sh"], d).returncode, 0)

    def test_already_migrated(self):
        for ref in self.summary["behaviours"]["already-migrated"]:
            d = self.work_copy(ref)
            self.assertEqual(run(["./precheck.sh"], d).returncode, 1)
            self.assertEqual(run(["./check.sh"], d).returncode, 0)
            with open(os.path.join(d, "catalog-info.yaml")) as f:
                self.assertIn("gaggle.dev/demo-behaviour: already-migrated", f.read())

    def test_flaky(self):
        ref = self.summary["behaviours"]["flaky"][0]
        d = self.work_copy(ref)
        rewrite(d, "user_ds_v1", "user_ds_v2")
        self.assertEqual(run(["./check.sh"], d, {"GAGGLE_ATTEMPT": "1"}).returncode, 75)
        self.assertEqual(run(["./check.sh"], d, {"GAGGLE_ATTEMPT": "2"}).returncode, 0)
        # Without the attempt number a marker file makes only the first run fail.
        self.assertEqual(run(["./check.sh"], d).returncode, 75)
        self.assertEqual(run(["./check.sh"], d).returncode, 0)
        self.assertEqual(run(["./check.sh"], d).returncode, 0)
        # The marker is ignored by git.
        self.assertNotIn("flaky", run(["git", "status", "--porcelain"], d).stdout)

    def test_broken_check(self):
        ref = self.summary["behaviours"]["broken-check"][0]
        d = self.work_copy(ref)
        rewrite(d, "user_ds_v1", "user_ds_v2")
        for attempt in ("1", "2", "3"):
            self.assertEqual(run(["./check.sh"], d, {"GAGGLE_ATTEMPT": attempt}).returncode, 1)

    def test_large_is_fast(self):
        out = os.path.join(self.tmp, "large")
        t0 = time.monotonic()
        r = gen(out, "--consumers", "10000", "--owners", "40", "--seed", "2")
        elapsed = time.monotonic() - t0
        with open(os.path.join(out, ".gen-summary.json")) as f:
            s = json.load(f)
        self.assertGreaterEqual(s["entities"], 10000)
        self.assertIn(f"{s['entities']} entities", r.stdout)
        # A few seconds on a laptop; generous for a loaded CI machine.
        self.assertLess(elapsed, 60.0)
        shutil.rmtree(out)


if __name__ == "__main__":
    unittest.main(verbosity=2)
