#!/usr/bin/env python3
"""test_keygen.py: `gaggle keygen` end to end, through the real CLI binary.

Checks the files it writes (names, modes, contents), that it never
overwrites, its exit codes and one-line errors, and its --json output. The
key material is checked independently of the C code: the node key pair with
an X25519 ladder, the operator pair and the certificate signature with
Ed25519 (RFC 7748 / RFC 8032 arithmetic, Python standard library only), over
the canonical msgpack bytes the certificate signs.
"""
import hashlib
import json
import os
import re
import stat
import subprocess
import tempfile
import unittest

GAGGLE_BIN = os.environ.get("GAGGLE_BIN") or os.path.join(
    os.environ.get("GAGGLE_SOURCE", "."), "build", "bin")
GAGGLE = os.path.join(GAGGLE_BIN, "gaggle")

# ---- Z85 (ZeroMQ RFC 32) ----
Z85_CHARS = ("0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
             ".-:+=^!/*?&<>()[]{}@%$#")


def z85_decode(text):
    if len(text) % 5:
        raise ValueError("bad z85 length")
    out = bytearray()
    for i in range(0, len(text), 5):
        value = 0
        for ch in text[i:i + 5]:
            value = value * 85 + Z85_CHARS.index(ch)
        out += value.to_bytes(4, "big")
    return bytes(out)


# ---- X25519 (RFC 7748) ----
P = 2**255 - 19


def x25519_base(secret):
    k = bytearray(secret)
    k[0] &= 248
    k[31] &= 127
    k[31] |= 64
    k = int.from_bytes(k, "little")
    x1, x2, z2, x3, z3, swap = 9, 1, 0, 9, 1, 0
    for t in reversed(range(255)):
        bit = (k >> t) & 1
        swap ^= bit
        if swap:
            x2, x3, z2, z3 = x3, x2, z3, z2
        swap = bit
        a, b = (x2 + z2) % P, (x2 - z2) % P
        aa, bb = a * a % P, b * b % P
        e = (aa - bb) % P
        c, d = (x3 + z3) % P, (x3 - z3) % P
        da, cb = d * a % P, c * b % P
        x3 = (da + cb) ** 2 % P
        z3 = x1 * (da - cb) ** 2 % P
        x2 = aa * bb % P
        z2 = e * (aa + 121665 * e) % P
    if swap:
        x2, z2 = x3, z3
    return (x2 * pow(z2, P - 2, P) % P).to_bytes(32, "little")


# ---- Ed25519 (RFC 8032) ----
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


def _equal(p1, p2):
    return ((p1[0] * p2[2] - p2[0] * p1[2]) % P == 0
            and (p1[1] * p2[2] - p2[1] * p1[2]) % P == 0)


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


_GY = 4 * pow(5, P - 2, P) % P
_GX = _recover_x(_GY, 0)
G = (_GX, _GY, 1, _GX * _GY % P)


def _compress(point):
    zinv = pow(point[2], P - 2, P)
    x, y = point[0] * zinv % P, point[1] * zinv % P
    return (y | ((x & 1) << 255)).to_bytes(32, "little")


def _decompress(data):
    y = int.from_bytes(data, "little")
    sign = y >> 255
    y &= (1 << 255) - 1
    x = _recover_x(y, sign)
    return None if x is None else (x, y, 1, x * y % P)


def ed25519_public_from_seed(seed):
    h = hashlib.sha512(seed).digest()
    a = int.from_bytes(h[:32], "little")
    a &= (1 << 254) - 8
    a |= 1 << 254
    return _compress(_mul(a, G))


def ed25519_verify(public, msg, sig):
    a_point = _decompress(public)
    r_point = _decompress(sig[:32])
    s = int.from_bytes(sig[32:], "little")
    if a_point is None or r_point is None or s >= Q:
        return False
    h = int.from_bytes(hashlib.sha512(sig[:32] + public + msg).digest(), "little") % Q
    return _equal(_mul(s, G), _add(r_point, _mul(h, a_point)))


# ---- the canonical msgpack bytes a certificate signature covers ----
def mp_uint(v):
    if v < 128:
        return bytes([v])
    for tag, size in ((0xcc, 1), (0xcd, 2), (0xce, 4), (0xcf, 8)):
        if v < 1 << (8 * size):
            return bytes([tag]) + v.to_bytes(size, "big")
    raise ValueError("too big")


def mp_str(s):
    b = s.encode()
    if len(b) < 32:
        return bytes([0xa0 | len(b)]) + b
    return bytes([0xd9, len(b)]) + b


def mp_bin(b):
    return bytes([0xc4, len(b)]) + b


def cert_signed_bytes(cert):
    return (bytes([0x97]) + mp_str("gaggle-cert") + mp_uint(int(cert["version"]))
            + mp_str(cert["name"]) + mp_bin(z85_decode(cert["curve-public-key"]))
            + mp_bin(z85_decode(cert["operator-key"])) + mp_uint(int(cert["issued"]))
            + mp_uint(int(cert["expires"])))


def read_zpl(path, section):
    """The name = "value" pairs of one section of a file gaggle wrote."""
    fields, current = {}, None
    with open(path) as f:
        for line in f:
            if line.startswith("#") or not line.strip():
                continue
            if not line.startswith(" "):
                current = line.strip()
                continue
            m = re.match(r'^    ([a-z-]+) = "([^"]*)"$', line.rstrip("\n"))
            if current == section and m:
                fields[m.group(1)] = m.group(2)
    return fields


def read_text(path):
    with open(path) as f:
        return f.read()


def mode(path):
    return stat.S_IMODE(os.stat(path).st_mode)


class KeygenTest(unittest.TestCase):
    def setUp(self):
        self._tmp = tempfile.TemporaryDirectory(prefix="gg-keygen-")
        self.dir = self._tmp.name

    def tearDown(self):
        self._tmp.cleanup()

    def gaggle(self, *args):
        return subprocess.run([GAGGLE, "keygen", *args], capture_output=True, text=True,
                              timeout=60)

    def assert_error(self, proc, code, *words):
        self.assertEqual(proc.returncode, code, proc.stderr)
        lines = proc.stderr.splitlines()
        self.assertEqual(len(lines), 1, proc.stderr)
        self.assertTrue(lines[0].startswith("gaggle: "), lines[0])
        for word in words:
            self.assertIn(word, lines[0])

    def make_operator(self, name="alice"):
        out = os.path.join(self.dir, "ops")
        proc = self.gaggle("operator", "--out", out, "--name", name)
        self.assertEqual(proc.returncode, 0, proc.stderr)
        return os.path.join(out, name + ".key"), os.path.join(out, name + ".pub"), proc

    def test_operator(self):
        key, pub, proc = self.make_operator()
        self.assertEqual(mode(key), 0o600)
        self.assertEqual(mode(pub) & 0o022, 0, "public key file writable by others")
        self.assertEqual(mode(os.path.dirname(key)), 0o700)
        secret = read_zpl(key, "operator")
        public = read_zpl(pub, "operator")
        self.assertEqual(secret["name"], "alice")
        self.assertEqual(public["name"], "alice")
        self.assertNotIn("secret-key", public)
        self.assertEqual(secret["public-key"], public["public-key"])
        sk = z85_decode(secret["secret-key"])
        pk = z85_decode(public["public-key"])
        self.assertEqual(len(sk), 64)
        self.assertEqual(ed25519_public_from_seed(sk[:32]), pk)
        self.assertEqual(sk[32:], pk)
        self.assertIn(public["public-key"], proc.stdout)
        self.assertNotIn(secret["secret-key"], proc.stdout + proc.stderr)

    def test_operator_default_name_and_json(self):
        out = os.path.join(self.dir, "a", "b")
        proc = self.gaggle("operator", "--json", "--out", out)
        self.assertEqual(proc.returncode, 0, proc.stderr)
        doc = json.loads(proc.stdout)
        self.assertEqual(doc["name"], "operator")
        self.assertEqual(doc["secret_key_file"], os.path.join(out, "operator.key"))
        self.assertEqual(doc["public_key_file"], os.path.join(out, "operator.pub"))
        self.assertEqual(mode(doc["secret_key_file"]), 0o600)
        self.assertEqual(doc["public_key"], read_zpl(doc["public_key_file"],
                                                     "operator")["public-key"])

    def test_node(self):
        op_key, op_pub, _ = self.make_operator()
        out = os.path.join(self.dir, "nodes")
        proc = self.gaggle("node", "--name", "node-1", "--out", out, "--sign-with", op_key)
        self.assertEqual(proc.returncode, 0, proc.stderr)
        key, cert = os.path.join(out, "node-1.key"), os.path.join(out, "node-1.cert")
        self.assertEqual(mode(key), 0o600)
        self.assertEqual(mode(cert) & 0o022, 0)
        node = read_zpl(key, "node")
        c = read_zpl(cert, "certificate")
        self.assertEqual(node["name"], "node-1")
        self.assertEqual(x25519_base(z85_decode(node["secret-key"])),
                         z85_decode(node["public-key"]))
        self.assertEqual(c["version"], "1")
        self.assertEqual(c["name"], "node-1")
        self.assertEqual(c["curve-public-key"], node["public-key"])
        self.assertEqual(c["operator-key"], read_zpl(op_pub, "operator")["public-key"])
        self.assertEqual(int(c["expires"]) - int(c["issued"]), 365 * 86400)
        signed = cert_signed_bytes(c)
        sig = z85_decode(c["signature"])
        op_pk = z85_decode(c["operator-key"])
        self.assertTrue(ed25519_verify(op_pk, signed, sig), "signature does not verify")
        tampered = cert_signed_bytes(dict(c, name="node-2"))
        self.assertFalse(ed25519_verify(op_pk, tampered, sig))
        self.assertIn(node["public-key"], proc.stdout)
        self.assertNotIn(node["secret-key"], proc.stdout + proc.stderr)

    def test_node_json_and_validity(self):
        op_key, _, _ = self.make_operator()
        out = os.path.join(self.dir, "nodes")
        proc = self.gaggle("node", "--json", "--name", "n7", "--out", out, "--sign-with",
                           op_key, "--valid-days", "7")
        self.assertEqual(proc.returncode, 0, proc.stderr)
        doc = json.loads(proc.stdout)
        self.assertEqual(doc["cert_file"], os.path.join(out, "n7.cert"))
        self.assertEqual(doc["secret_key_file"], os.path.join(out, "n7.key"))
        self.assertEqual(doc["expires"] - doc["issued"], 7 * 86400)
        c = read_zpl(doc["cert_file"], "certificate")
        self.assertEqual(doc["public_key"], c["curve-public-key"])
        self.assertEqual(int(c["expires"]), doc["expires"])

    def test_refuses_to_overwrite(self):
        op_key, op_pub, _ = self.make_operator()
        before = read_text(op_key)
        proc = self.gaggle("operator", "--out", os.path.dirname(op_key), "--name", "alice")
        self.assert_error(proc, 1, op_key, "exists")
        self.assertEqual(read_text(op_key), before)

        out = os.path.join(self.dir, "nodes")
        first = self.gaggle("node", "--name", "n1", "--out", out, "--sign-with", op_key)
        self.assertEqual(first.returncode, 0, first.stderr)
        cert = os.path.join(out, "n1.cert")
        cert_before = read_text(cert)
        again = self.gaggle("node", "--name", "n1", "--out", out, "--sign-with", op_key)
        self.assert_error(again, 1, os.path.join(out, "n1.key"), "exists")
        self.assertEqual(read_text(cert), cert_before)
        # Only the certificate left over: still refused, and no key is written.
        os.unlink(os.path.join(out, "n1.key"))
        again = self.gaggle("node", "--name", "n1", "--out", out, "--sign-with", op_key)
        self.assert_error(again, 1, cert, "exists")
        self.assertFalse(os.path.exists(os.path.join(out, "n1.key")))

    def test_usage_errors(self):
        op_key, op_pub, _ = self.make_operator()
        out = os.path.join(self.dir, "x")
        cases = [
            (["operator", "--out", out, "--bogus"], "--bogus"),
            (["operator", "--out"], "--out"),
            (["operator"], "--out"),
            (["operator", "--out", out, "--name", "bad name"], "bad name"),
            (["node", "--name", "n1", "--out", out], "--sign-with"),
            (["node", "--out", out, "--sign-with", op_key], "--name"),
            (["node", "--name", "n1", "--out", out, "--sign-with", op_key,
              "--valid-days", "0"], "--valid-days"),
            (["node", "--name", "n1", "--out", out, "--sign-with", op_key,
              "--valid-days", "36501"], "--valid-days"),
            (["node", "--name", "n1", "--out", out, "--sign-with", op_key,
              "--valid-days", "ten"], "--valid-days"),
            (["operator", "--out", out, "--sign-with", op_key], "--sign-with"),
            (["wizard", "--out", out], "wizard"),
            ([], "operator"),
        ]
        for args, word in cases:
            with self.subTest(args=args):
                self.assert_error(self.gaggle(*args), 2, word)
        self.assertFalse(os.path.exists(out), "a usage error created files")

    def test_runtime_errors(self):
        op_key, op_pub, _ = self.make_operator()
        out = os.path.join(self.dir, "nodes")
        # A public key cannot sign; nothing is left behind.
        self.assert_error(self.gaggle("node", "--name", "n1", "--out", out, "--sign-with",
                                      op_pub), 1, op_pub)
        missing = os.path.join(self.dir, "missing.key")
        self.assert_error(self.gaggle("node", "--name", "n1", "--out", out, "--sign-with",
                                      missing), 1, missing)
        garbage = os.path.join(self.dir, "garbage.key")
        with open(garbage, "w") as f:
            f.write("operator\n    secret-key: \"oops\"\n")
        self.assert_error(self.gaggle("node", "--name", "n1", "--out", out, "--sign-with",
                                      garbage), 1, garbage)
        self.assertFalse(os.path.exists(os.path.join(out, "n1.key")))
        self.assertFalse(os.path.exists(os.path.join(out, "n1.cert")))
        # --out naming a file.
        self.assert_error(self.gaggle("operator", "--out", op_key), 1, op_key)

    def test_help(self):
        for flag in ("--help", "-h"):
            proc = self.gaggle(flag)
            self.assertEqual(proc.returncode, 0, proc.stderr)
            self.assertIn("gaggle keygen operator", proc.stdout)
            self.assertIn("--sign-with", proc.stdout)
            self.assertIn("--valid-days", proc.stdout)


class ReferenceCryptoTest(unittest.TestCase):
    """The independent checks above must themselves be able to fail."""

    def test_ed25519_rfc8032_vector(self):
        # RFC 8032 section 7.1, TEST 1 (empty message).
        seed = bytes.fromhex("9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60")
        public = bytes.fromhex("d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a")
        sig = bytes.fromhex("e5564300c360ac729086e2cc806e828a84877f1eb8e5d974d873e06522490155"
                            "5fb8821590a33bacc61e39701cf9b46bd25bf5f0595bbe24655141438e7a100b")
        self.assertEqual(ed25519_public_from_seed(seed), public)
        self.assertTrue(ed25519_verify(public, b"", sig))
        self.assertFalse(ed25519_verify(public, b"x", sig))

    def test_x25519_rfc7748_vector(self):
        # RFC 7748 section 6.1: Alice's key pair.
        secret = bytes.fromhex("77076d0a7318a57d3c16c17251b26645df4c2f87ebc0992ab177fba51db92c2a")
        public = bytes.fromhex("8520f0098930a754748b7ddcb43ef75a0dbf3a0d26381af4eba4a98eaa9b4e6a")
        self.assertEqual(x25519_base(secret), public)

    def test_z85_spec_vector(self):
        self.assertEqual(z85_decode("HelloWorld"),
                         bytes([0x86, 0x4F, 0xD2, 0x6F, 0xB5, 0x59, 0xF7, 0x5B]))


if __name__ == "__main__":
    unittest.main(verbosity=2)
