#!/usr/bin/env python3
"""test_plan_validate.py: `gaggle plan validate` and `gaggle plan apply`
through the real CLI binary.

Plans in tests/data/plans are checked against the Backstage example catalog
($GAGGLE_SOURCE/../shared/testdata/backstage-examples): the valid ones give
exactly the expected targets (resource artists-db is used by artist-lookup
only), the invalid ones report every error with its file, line and field.
A generated catalog (tools/gen-catalog.py) checks direct and transitive
consumers against the generator's own list. apply is checked against a small
stand-in agent (an HTTP server in this process): --dry-run assigns each target
to the alive member with the highest rendezvous score (recomputed here), and
apply posts a signed document whose signature verifies (Ed25519 in pure
Python) and whose payload hashes (BLAKE2b-256) to the printed plan id.
"""
import hashlib
import http.server
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import unittest

SOURCE = os.path.realpath(os.environ.get("GAGGLE_SOURCE") or
                          os.path.join(os.path.dirname(__file__), "..", ".."))
GAGGLE_BIN = os.environ.get("GAGGLE_BIN") or os.path.join(SOURCE, "build", "bin")
GAGGLE = os.path.join(GAGGLE_BIN, "gaggle")
PLANS = os.path.join(SOURCE, "tests", "data", "plans")
EXAMPLES = os.path.realpath(os.path.join(SOURCE, "..", "shared", "testdata",
                                         "backstage-examples"))
GEN_CATALOG = os.path.join(SOURCE, "tools", "gen-catalog.py")
TIMEOUT = 120


def run(*args, env=None, cwd=None):
    full_env = dict(os.environ)
    full_env.pop("GAGGLE_KEY", None)
    full_env.update(env or {})
    return subprocess.run([GAGGLE, *args], capture_output=True, text=True, timeout=TIMEOUT,
                          env=full_env, cwd=cwd)


def plan_path(name):
    return os.path.join(PLANS, name)


# ---- Ed25519 verification (RFC 8032), independent of the C code ----
P = 2**255 - 19
Q = 2**252 + 27742317777372353535851937790883648493
D = -121665 * pow(121666, P - 2, P) % P
SQRT_M1 = pow(2, (P - 1) // 4, P)


def _add(p1, p2):
    x1, y1, z1, t1 = p1
    x2, y2, z2, t2 = p2
    a = (y1 - x1) * (y2 - x2) % P
    b = (y1 + x1) * (y2 + x2) % P
    c = t1 * 2 * D * t2 % P
    d = z1 * 2 * z2 % P
    e, f, g, h = b - a, d - c, d + c, b + a
    return (e * f % P, g * h % P, f * g % P, e * h % P)


def _mul(s, point):
    result = (0, 1, 1, 0)
    while s > 0:
        if s & 1:
            result = _add(result, point)
        point = _add(point, point)
        s >>= 1
    return result


def _recover_x(y, sign):
    if y >= P:
        return None
    x2 = (y * y - 1) * pow(D * y * y + 1, P - 2, P) % P
    if x2 == 0:
        return None if sign else 0
    x = pow(x2, (P + 3) // 8, P)
    if (x * x - x2) % P:
        x = x * SQRT_M1 % P
    if (x * x - x2) % P:
        return None
    if (x & 1) != sign:
        x = P - x
    return x


def _decompress(data):
    y = int.from_bytes(data, "little")
    sign = y >> 255
    y &= (1 << 255) - 1
    x = _recover_x(y, sign)
    return None if x is None else (x, y, 1, x * y % P)


_GY = 4 * pow(5, P - 2, P) % P
_GX = _recover_x(_GY, 0)
G = (_GX, _GY, 1, _GX * _GY % P)


def ed25519_verify(public, msg, sig):
    a_point, r_point = _decompress(public), _decompress(sig[:32])
    s = int.from_bytes(sig[32:], "little")
    if a_point is None or r_point is None or s >= Q:
        return False
    h = int.from_bytes(hashlib.sha512(sig[:32] + public + msg).digest(), "little") % Q
    left, right = _mul(s, G), _add(r_point, _mul(h, a_point))
    return ((left[0] * right[2] - right[0] * left[2]) % P == 0
            and (left[1] * right[2] - right[1] * left[2]) % P == 0)


# ---- Z85 and the operator's public key file ----
Z85 = "0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ.-:+=^!/*?&<>()[]{}@%$#"


def z85_decode(text):
    out = bytearray()
    for i in range(0, len(text), 5):
        value = 0
        for ch in text[i:i + 5]:
            value = value * 85 + Z85.index(ch)
        out += value.to_bytes(4, "big")
    return bytes(out)


def z85_encode(data):
    out = []
    for i in range(0, len(data), 4):
        value = int.from_bytes(data[i:i + 4], "big")
        chunk = []
        for _ in range(5):
            chunk.append(Z85[value % 85])
            value //= 85
        out.append("".join(reversed(chunk)))
    return "".join(out)


def operator_public_key(pub_path):
    with open(pub_path) as f:
        m = re.search(r'public-key = "([^"]+)"', f.read())
    return z85_decode(m.group(1))


# ---- rendezvous ownership, recomputed (coordination/rendezvous.c) ----
M64 = (1 << 64) - 1


def _rotl(x, b):
    return ((x << b) | (x >> (64 - b))) & M64


def siphash24(key, data):
    k0, k1 = int.from_bytes(key[:8], "little"), int.from_bytes(key[8:16], "little")
    v0, v1 = k0 ^ 0x736f6d6570736575, k1 ^ 0x646f72616e646f6d
    v2, v3 = k0 ^ 0x6c7967656e657261, k1 ^ 0x7465646279746573

    def rounds(n):
        nonlocal v0, v1, v2, v3
        for _ in range(n):
            v0 = (v0 + v1) & M64
            v1 = _rotl(v1, 13) ^ v0
            v0 = _rotl(v0, 32)
            v2 = (v2 + v3) & M64
            v3 = _rotl(v3, 16) ^ v2
            v0 = (v0 + v3) & M64
            v3 = _rotl(v3, 21) ^ v0
            v2 = (v2 + v1) & M64
            v1 = _rotl(v1, 17) ^ v2
            v2 = _rotl(v2, 32)

    tail = len(data) % 8
    for i in range(0, len(data) - tail, 8):
        m = int.from_bytes(data[i:i + 8], "little")
        v3 ^= m
        rounds(2)
        v0 ^= m
    last = (len(data) & 0xff) << 56 | int.from_bytes(data[len(data) - tail:], "little")
    v3 ^= last
    rounds(2)
    v0 ^= last
    v2 ^= 0xff
    rounds(4)
    return v0 ^ v1 ^ v2 ^ v3


RENDEZVOUS_KEY = b"gaggle-owners-01"


def rendezvous_score(seed, key):
    z = seed ^ ((key * 0x9E3779B97F4A7C15) & M64)
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & M64
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & M64
    return z ^ (z >> 31)


def rendezvous_owner(members, ref):
    """members: [(id bytes, name)], any order."""
    ordered = sorted(members)
    key = siphash24(RENDEZVOUS_KEY, ref.encode())
    best, best_score = None, -1
    for node_id, name in ordered:
        score = rendezvous_score(siphash24(RENDEZVOUS_KEY, node_id), key)
        if score > best_score:
            best, best_score = name, score
    return best


# ---- a stand-in agent: /v1/members and POST /v1/plans ----
class FakeAgent:
    def __init__(self, members):
        self.members = members
        self.posted = []
        agent = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def _reply(self, status, body):
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_GET(self):
                if self.path == "/v1/members":
                    self._reply(200, {"members": agent.members})
                else:
                    self._reply(404, {"error": "no such resource"})

            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                agent.posted.append((self.path, body))
                doc = json.loads(body)
                payload = doc["payload"]
                # The id is the payload's hash: the test recomputes it itself.
                self._reply(201, {"id": agent.plan_id(body), "name":
                                  payload["metadata"]["name"], "total": len(payload["targets"])})

        self.server = http.server.HTTPServer(("127.0.0.1", 0), Handler)
        self.addr = "127.0.0.1:%d" % self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    @staticmethod
    def payload_bytes(body):
        """The canonical payload bytes inside the canonical signed document."""
        prefix = b'{"payload":'
        cut = body.rindex(b',"signature":')
        assert body.startswith(prefix)
        return body[len(prefix):cut]

    @classmethod
    def plan_id(cls, body):
        return hashlib.blake2b(cls.payload_bytes(body), digest_size=32).hexdigest()

    def close(self):
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=10)


class PlanValidateTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        if not os.path.isdir(EXAMPLES):
            raise AssertionError("the Backstage examples are missing: %s" % EXAMPLES)

    def setUp(self):
        self.tmp = tempfile.mkdtemp(prefix="gaggle-plan-test-")

    def tearDown(self):
        shutil.rmtree(self.tmp, ignore_errors=True)

    def validate_json(self, path, expect_rc):
        proc = run("plan", "validate", path, "--json")
        self.assertEqual(proc.returncode, expect_rc, proc.stdout + proc.stderr)
        out = json.loads(proc.stdout)
        self.assertEqual(set(["valid", "targets", "errors", "warnings"]) - set(out), set())
        self.assertIsInstance(out["valid"], bool)
        for key in ("errors", "warnings"):
            for d in out[key]:
                self.assertEqual(set(d), {"where", "message"})
                self.assertIsInstance(d["where"], str)
                self.assertIsInstance(d["message"], str)
        return out

    # ---- the example catalog ----

    def test_valid_plan_exact_targets(self):
        out = self.validate_json(plan_path("artists-db.yaml"), 0)
        self.assertTrue(out["valid"])
        # artist-lookup is the only entity whose dependsOn names artists-db; nothing
        # depends on artist-lookup (www-artist only consumes its API).
        self.assertEqual(out["targets"], ["component:default/artist-lookup"])
        self.assertEqual(out["errors"], [])
        # The invalid example entity is a warning naming its file, not an error.
        self.assertTrue(any("invalid-component.yaml" in w["where"] for w in out["warnings"]),
                        out["warnings"])
        self.assertRegex(out["id"], r"^[0-9a-f]{64}$")
        self.assertEqual(out["name"], "artists-db-v2")

        human = run("plan", "validate", plan_path("artists-db.yaml"))
        self.assertEqual(human.returncode, 0, human.stderr)
        self.assertIn("valid: 1 target", human.stdout)
        self.assertIn("component:default/artist-lookup", human.stdout)
        self.assertIn("warning: ", human.stdout)
        # Global flags may come first, and the id is stable.
        again = run("--json", "plan", "validate", plan_path("artists-db.yaml"))
        self.assertEqual(json.loads(again.stdout)["id"], out["id"])

    def test_json_plan_with_filters(self):
        out = self.validate_json(plan_path("all-components.json"), 0)
        # The Location file lists components only: the consumer still names
        # artists-db (a warning says it is not in this catalog), owner team-a keeps
        # artist-lookup, www-artist is included by hand, wayback-search excluded.
        self.assertEqual(out["targets"], ["component:default/artist-lookup",
                                          "component:default/www-artist"])
        self.assertTrue(any("consumersOf" in w["where"] for w in out["warnings"]))

    def test_five_errors(self):
        out = self.validate_json(plan_path("five-errors.yaml"), 1)
        self.assertFalse(out["valid"])
        self.assertEqual(out["targets"], [])
        wheres = [e["where"] for e in out["errors"]]
        self.assertEqual(len(out["errors"]), 5, out["errors"])
        name = plan_path("five-errors.yaml")
        expected = [
            (name + ":2: apiVersion", "gaggle/v1"),
            (name + ":9: spec.colour", "unknown field"),
            (name + ":11: spec.steps[0]", "exactly one of run, rewrite"),
            (name + ":12: spec.retry.maxAttempts", "between 1 and 1000"),
            (name + ":13: spec.rollout.maxFailureRatio", "between 0 and 1"),
        ]
        for where, words in expected:
            self.assertTrue(any(e["where"].startswith(where) and words in e["message"]
                                for e in out["errors"]), (where, words, wheres))
        human = run("plan", "validate", plan_path("five-errors.yaml"))
        self.assertEqual(human.returncode, 1)
        self.assertEqual(human.stdout.count("error: "), 5, human.stdout)
        self.assertIn("invalid: 5 errors", human.stdout)
        self.assertEqual(len(human.stderr.strip().splitlines()), 1, human.stderr)
        self.assertTrue(human.stderr.startswith("gaggle: "), human.stderr)

    def test_unknown_template_variable_names_the_step(self):
        out = self.validate_json(plan_path("unknown-var.yaml"), 1)
        name = plan_path("unknown-var.yaml")
        errors = {e["where"]: e["message"] for e in out["errors"]}
        self.assertEqual(len(errors), 2, out["errors"])
        self.assertIn("step 'deploy'", errors[name + ":10: spec.steps[1].run"])
        self.assertIn("{{target.colour}}", errors[name + ":10: spec.steps[1].run"])
        self.assertIn("step 'rename'", errors[name + ":11: spec.steps[2].run"])
        self.assertIn("{{vars.to}}", errors[name + ":11: spec.steps[2].run"])

        out = self.validate_json(plan_path("unterminated.yaml"), 1)
        self.assertEqual(len(out["errors"]), 1)
        self.assertIn("spec.steps[0].run", out["errors"][0]["where"])
        self.assertIn("unterminated", out["errors"][0]["message"])

    def test_other_invalid_plans(self):
        out = self.validate_json(plan_path("syntax-error.yaml"), 1)
        self.assertEqual(len(out["errors"]), 1)
        self.assertRegex(out["errors"][0]["where"], r"syntax-error\.yaml:\d+:\d+$")

        out = self.validate_json(plan_path("missing-include.yaml"), 1)
        self.assertEqual(len(out["errors"]), 1, out["errors"])
        self.assertIn(":7: spec.targets.include[0]", out["errors"][0]["where"])
        self.assertIn("no-such-thing", out["errors"][0]["message"])

        out = self.validate_json(plan_path("no-targets.yaml"), 0)
        self.assertTrue(out["valid"])
        self.assertEqual(out["targets"], [])
        self.assertTrue(any("no targets" in w["message"] for w in out["warnings"]))

        root = os.geteuid() == 0
        out = self.validate_json(plan_path("sandbox.yaml"), 0 if root else 1)
        if not root:
            self.assertIn("sandbox.network", out["errors"][0]["where"])
            self.assertIn("root", out["errors"][0]["message"])

        missing = run("plan", "validate", os.path.join(self.tmp, "nope.yaml"), "--json")
        self.assertEqual(missing.returncode, 1)
        self.assertFalse(json.loads(missing.stdout)["valid"])

    def test_usage(self):
        for args in (["plan"], ["plan", "validate"], ["plan", "explode", "x"],
                     ["plan", "validate", "a.yaml", "b.yaml"],
                     ["plan", "validate", "a.yaml", "--bogus"]):
            proc = run(*args)
            self.assertEqual(proc.returncode, 2, (args, proc.stdout, proc.stderr))
        helped = run("plan", "--help")
        self.assertEqual(helped.returncode, 0)
        self.assertIn("plan validate FILE", helped.stdout)

    # ---- a generated catalog ----

    def gen_catalog(self):
        out = os.path.join(self.tmp, "catalog")
        subprocess.run([sys.executable, GEN_CATALOG, "--out", out, "--consumers", "60",
                        "--owners", "5", "--seed", "11"], check=True, capture_output=True,
                       timeout=TIMEOUT)
        with open(os.path.join(out, ".gen-summary.json")) as f:
            return json.load(f)

    def write_plan(self, name, body):
        path = os.path.join(self.tmp, name)
        with open(path, "w") as f:
            f.write(body)
        return path

    def generated_plan(self, transitive):
        return self.write_plan("plan-%s.yaml" % transitive, (
            "apiVersion: gaggle/v1\nkind: MigrationPlan\nmetadata: {name: gen}\n"
            "spec:\n  catalog: ./catalog/catalog-info.yaml\n"
            "  dataset: {from: user-ds-v1, to: user-ds-v2}\n"
            "  targets: {transitive: %s}\n"
            "  vars: {from: user_ds_v1, to: user_ds_v2}\n"
            "  steps:\n"
            "    - {name: rewrite, rewrite: {paths: ['**/*.sql'], "
            "replace: {'{{vars.from}}': '{{vars.to}}'}}}\n"
            "    - {name: check, run: 'cd {{target.path}} && ./check.sh'}\n"
            "  approval: {when: {annotations: {myorg.org/security: 'true'}}}\n"
            % ("true" if transitive else "false")))

    def test_generated_catalog(self):
        if not os.path.isfile(GEN_CATALOG):
            self.skipTest("tools/gen-catalog.py is not there")
        summary = self.gen_catalog()
        direct = self.validate_json(self.generated_plan(False), 0)
        self.assertEqual(direct["targets"], sorted(summary["direct"]))
        transitive = self.validate_json(self.generated_plan(True), 0)
        self.assertEqual(transitive["targets"], sorted(summary["transitive"]))
        self.assertNotEqual(direct["id"], transitive["id"])
        for ref in summary["unrelated"]:
            self.assertNotIn(ref, transitive["targets"])

    # ---- apply ----

    def keygen(self):
        keys = os.path.join(self.tmp, "keys")
        proc = run("keygen", "operator", "--out", keys)
        self.assertEqual(proc.returncode, 0, proc.stderr)
        return os.path.join(keys, "operator.key"), os.path.join(keys, "operator.pub")

    def test_dry_run_assignments(self):
        ids = [hashlib.sha256(b"node-%d" % i).digest() for i in range(5)]
        members = [
            {"name": "n0", "id": ids[0].hex(), "address": "tcp://a:7700", "state": "alive",
             "incarnation": 1},
            {"name": "n1", "id": ids[1].hex(), "address": "tcp://b:7700", "state": "alive",
             "incarnation": 3},
            {"name": "n2", "id": ids[2].hex(), "address": "tcp://c:7700", "state": "dead",
             "incarnation": 1},
            {"name": "n3", "id": z85_encode(ids[3]), "address": "tcp://d:7700",
             "state": "alive", "incarnation": 1},
            {"name": "n4", "id": ids[4].hex(), "address": "tcp://e:7700", "state": "suspect",
             "incarnation": 1},
        ]
        summary = self.gen_catalog()
        plan = self.generated_plan(True)
        agent = FakeAgent(members)
        try:
            proc = run("--addr", agent.addr, "plan", "apply", plan, "--dry-run", "--json")
            self.assertEqual(proc.returncode, 0, proc.stderr)
            out = json.loads(proc.stdout)
            refs = [a["ref"] for a in out["assignments"]]
            self.assertEqual(refs, sorted(summary["transitive"]))
            alive = [(ids[i], "n%d" % i) for i in (0, 1, 3)]
            for a in out["assignments"]:
                self.assertEqual(a["node"], rendezvous_owner(alive, a["ref"]), a)
            self.assertEqual(set(a["node"] for a in out["assignments"]), {"n0", "n1", "n3"})
            human = run("--addr", agent.addr, "plan", "apply", plan, "--dry-run")
            self.assertEqual(human.returncode, 0, human.stderr)
            self.assertEqual(len(human.stdout.strip().splitlines()), len(refs))
            self.assertEqual(agent.posted, [])  # a dry run changes nothing
            agent.members = [dict(m, state="dead") for m in members]
            none = run("--addr", agent.addr, "plan", "apply", plan, "--dry-run")
            self.assertEqual(none.returncode, 1)
            self.assertIn("no alive members", none.stderr)
        finally:
            agent.close()

    def test_apply_signs_and_posts(self):
        key, pub = self.keygen()
        agent = FakeAgent([])
        try:
            valid = self.validate_json(plan_path("artists-db.yaml"), 0)
            proc = run("--addr", agent.addr, "plan", "apply", plan_path("artists-db.yaml"),
                       "--key", key, "--json")
            self.assertEqual(proc.returncode, 0, proc.stderr)
            out = json.loads(proc.stdout)
            self.assertEqual(out, {"id": valid["id"], "name": "artists-db-v2", "total": 1})
            self.assertEqual(len(agent.posted), 1)
            path, body = agent.posted[0]
            self.assertEqual(path, "/v1/plans")
            doc = json.loads(body)
            self.assertEqual(set(doc), {"payload", "signature"})
            payload = FakeAgent.payload_bytes(body)
            self.assertEqual(hashlib.blake2b(payload, digest_size=32).hexdigest(), valid["id"])
            public = operator_public_key(pub)
            self.assertEqual(doc["signature"]["key"], public.hex())
            sig = bytes.fromhex(doc["signature"]["sig"])
            self.assertTrue(ed25519_verify(public, payload, sig))
            self.assertFalse(ed25519_verify(public, payload.replace(b"artist", b"Artist"), sig))
            # The payload is the resolved plan: frozen targets, absolute paths, defaults.
            plan = doc["payload"]
            self.assertEqual([t["ref"] for t in plan["targets"]],
                             ["component:default/artist-lookup"])
            target = plan["targets"][0]
            self.assertEqual(target["path"], os.path.join(EXAMPLES, "components"))
            self.assertEqual(target["owner"], "group:default/team-a")
            self.assertFalse(target["approval"])
            self.assertEqual(plan["spec"]["catalog"], EXAMPLES)
            self.assertEqual(plan["spec"]["docs"]["report"], os.path.join(PLANS, "reports"))
            self.assertEqual(plan["spec"]["steps"][1]["timeout"], "10m")
            self.assertEqual(plan["spec"]["steps"][0]["rewrite"]["replace"],
                             [{"from": "{{vars.from}}", "to": "{{vars.to}}"}])

            # GAGGLE_KEY works too; human output is the id alone.
            proc = run("--addr", agent.addr, "plan", "apply", plan_path("artists-db.yaml"),
                       env={"GAGGLE_KEY": key})
            self.assertEqual(proc.returncode, 0, proc.stderr)
            self.assertEqual(proc.stdout.strip(), valid["id"])

            # No key, a public key, or an invalid plan: nothing is posted.
            posted = len(agent.posted)
            self.assertEqual(run("--addr", agent.addr, "plan", "apply",
                                 plan_path("artists-db.yaml")).returncode, 2)
            self.assertEqual(run("--addr", agent.addr, "plan", "apply",
                                 plan_path("artists-db.yaml"), "--key", pub).returncode, 1)
            bad = run("--addr", agent.addr, "plan", "apply", plan_path("five-errors.yaml"),
                      "--key", key)
            self.assertEqual(bad.returncode, 1)
            self.assertEqual(bad.stderr.count("error: "), 5, bad.stderr)
            self.assertEqual(len(agent.posted), posted)
        finally:
            agent.close()

    def test_apply_without_agent(self):
        key, _ = self.keygen()
        proc = run("--addr", "127.0.0.1:9", "plan", "apply", plan_path("artists-db.yaml"),
                   "--key", key)
        self.assertEqual(proc.returncode, 1)
        self.assertIn("cannot reach the agent", proc.stderr)


if __name__ == "__main__":
    unittest.main(verbosity=2)
