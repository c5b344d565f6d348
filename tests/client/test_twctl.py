"""twctl's socket and admin commands end to end against the real twd over a real store in a
temporary directory. Checks outputs, exit codes (3 on a miss), and error messages."""

import json
import os
import subprocess
import sys
import tempfile
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from servers import Server, available_kinds, binary  # noqa: E402

NAMESPACE = {
    "model": "meta-llama/Llama-3.1-8B-Instruct", "model_revision": "r1", "tokenizer": "t",
    "kv_dtype": "bfloat16", "kv_layout": "vllm/NHD", "parallel": "tp=0/1", "adapter": "",
    "tenant": "", "chunk_tokens": "4",
}


class TwctlMixin:
    """One server per class; every test uses a namespace of its own (its model name), so
    tests never see each other's chunks."""
    kind = None

    @classmethod
    def setUpClass(cls):
        cls.server_tmp = tempfile.TemporaryDirectory(prefix="twctl-server-")
        cls.server = Server(cls.kind, cls.server_tmp.name).start()

    @classmethod
    def tearDownClass(cls):
        cls.server.stop()
        cls.server_tmp.cleanup()

    def setUp(self):
        self.tmp = tempfile.TemporaryDirectory(prefix="twctl-test-")
        self.dir = self.tmp.name
        self.ns = self.write("ns.json", json.dumps(dict(NAMESPACE, model=self.id())))
        self.tokens = self.write("tokens.txt", " ".join(str(t) for t in range(10)))
        self.value = os.path.join(self.dir, "value.bin")
        with open(self.value, "wb") as f:
            f.write(os.urandom(300000))

    def tearDown(self):
        self.tmp.cleanup()

    def digest(self):
        r = subprocess.run([binary("twctl"), "keys", "--namespace", self.ns, "--digest"],
                           capture_output=True, text=True)
        self.assertEqual(r.returncode, 0, r.stderr)
        return r.stdout.strip()

    def write(self, name, text):
        path = os.path.join(self.dir, name)
        with open(path, "w") as f:
            f.write(text)
        return path

    def twctl(self, *args, admin=False):
        sock = ["--admin-socket", self.server.admin_socket] if admin else [
            "--socket", self.server.socket]
        return subprocess.run([binary("twctl"), args[0], *sock, *args[1:]],
                              capture_output=True, text=True, timeout=60)

    def keys(self, tokens_file=None):
        r = subprocess.run([binary("twctl"), "keys", "--namespace", self.ns, "--tokens",
                            tokens_file or self.tokens], capture_output=True, text=True)
        self.assertEqual(r.returncode, 0, r.stderr)
        return r.stdout.split()

    def test_put_lookup_get_delete(self):
        keys = self.keys()
        self.assertEqual(len(keys), 2)  # 10 tokens, chunks of 4
        # Chunk 0 first (a token file of its 4 tokens), then chunk 1 with its parent.
        first = self.write("first.txt", "0 1 2 3")
        r = self.twctl("put", "--namespace", self.ns, "--tokens", first, "--file", self.value)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual(r.stdout.strip(), keys[0])
        r = self.twctl("put", "--namespace", self.ns, "--tokens", self.tokens, "--file",
                       self.value, "--durability", "disk")
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual(r.stdout.strip(), keys[1])

        r = self.twctl("lookup", "--namespace", self.ns, "--tokens", self.tokens)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIn("prefix 2/2 chunks (8 of 10 tokens cached)", r.stdout)
        self.assertIn(keys[1], r.stdout)

        out = os.path.join(self.dir, "out.bin")
        r = self.twctl("get", "--namespace", self.ns, "--key", keys[1], "--out", out)
        self.assertEqual(r.returncode, 0, r.stderr)
        with open(out, "rb") as a, open(self.value, "rb") as b:
            self.assertEqual(a.read(), b.read())

        r = self.twctl("delete", "--namespace", self.ns, "--key", keys[1])
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual(r.stdout.strip(), "deleted")
        r = self.twctl("get", "--namespace", self.ns, "--key", keys[1], "--out", out)
        self.assertEqual(r.returncode, 3, r.stderr)
        self.assertIn("miss", r.stderr)
        self.assertRegex(r.stderr, r"absent|evicted")
        r = self.twctl("lookup", "--namespace", self.ns, "--tokens", self.tokens)
        self.assertIn("prefix 1/2", r.stdout)

    def test_get_and_delete_by_key_alone(self):
        keys = self.keys()
        first = self.write("first.txt", "0 1 2 3")
        r = self.twctl("put", "--namespace", self.ns, "--tokens", first, "--file", self.value)
        self.assertEqual(r.returncode, 0, r.stderr)
        # No --namespace and no --admin-socket: the admin socket beside --socket names the
        # chunk's namespace, and the get is an ordinary client get in it.
        out = os.path.join(self.dir, "out.bin")
        r = self.twctl("get", "--key", keys[0], "--out", out)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIn("hit", r.stderr)
        with open(out, "rb") as a, open(self.value, "rb") as b:
            self.assertEqual(a.read(), b.read())
        # A key never stored: exit 3 with the reason.
        r = self.twctl("get", "--key", keys[1], "--out", out)
        self.assertEqual(r.returncode, 3, r.stderr)
        self.assertIn("miss: absent", r.stderr)
        r = self.twctl("delete", "--key", keys[0])
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual(r.stdout.strip(), "deleted")
        r = self.twctl("delete", "--key", keys[0])
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual(r.stdout.strip(), "not stored")
        r = self.twctl("get", "--key", keys[0], "--out", out)
        self.assertEqual(r.returncode, 3, r.stderr)
        self.assertIn("miss:", r.stderr)
        # An admin socket that is not there: the error names it and the way around it.
        r = self.twctl("get", "--key", keys[0], "--out", out, "--admin-socket",
                       os.path.join(self.dir, "none.sock"))
        self.assertEqual(r.returncode, 1)
        self.assertIn("none.sock", r.stderr)

    def test_get_and_delete_by_key_alone_after_restart(self):
        keys = self.keys()
        first = self.write("first.txt", "0 1 2 3")
        r = self.twctl("put", "--namespace", self.ns, "--tokens", first, "--file", self.value,
                       "--durability", "disk")
        self.assertEqual(r.returncode, 0, r.stderr)
        # twd keeps the fields of the namespaces clients declared next to the store's data:
        # after a restart, before any client declares the namespace again, the admin socket
        # still names the chunk's namespace and get and delete by key alone work.
        self.server.restart()
        r = self.twctl("namespaces", "--json", admin=True)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIn(self.id(), r.stdout)
        out = os.path.join(self.dir, "out.bin")
        r = self.twctl("get", "--key", keys[0], "--out", out)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIn("hit", r.stderr)
        with open(out, "rb") as a, open(self.value, "rb") as b:
            self.assertEqual(a.read(), b.read())
        r = self.twctl("delete", "--key", keys[0])
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual(r.stdout.strip(), "deleted")
        r = self.twctl("get", "--key", keys[0], "--out", out)
        self.assertEqual(r.returncode, 3, r.stderr)

    def test_get_by_key_without_the_registry_needs_namespace(self):
        keys = self.keys()
        first = self.write("first.txt", "0 1 2 3")
        r = self.twctl("put", "--namespace", self.ns, "--tokens", first, "--file", self.value,
                       "--durability", "disk")
        self.assertEqual(r.returncode, 0, r.stderr)
        # Without the registry file (removed while twd was stopped) twd knows the chunk's
        # namespace digest, not its fields, until a client declares it: the error says to
        # pass --namespace, and that works (and records the fields again).
        self.server.stop()
        os.remove(os.path.join(self.server.data_dir, "twd.data.namespaces"))
        self.server.start()
        out = os.path.join(self.dir, "out.bin")
        r = self.twctl("get", "--key", keys[0], "--out", out)
        self.assertEqual(r.returncode, 1, r.stderr)
        self.assertIn("--namespace", r.stderr)
        r = self.twctl("get", "--namespace", self.ns, "--key", keys[0], "--out", out)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.server.restart()
        r = self.twctl("get", "--key", keys[0], "--out", out)
        self.assertEqual(r.returncode, 0, r.stderr)

    def test_stat(self):
        r = self.twctl("stat", "--json")
        self.assertEqual(r.returncode, 0, r.stderr)
        stats = json.loads(r.stdout)
        self.assertIn("tiers", stats)
        self.assertIn("puts", stats)
        self.assertEqual(stats["gpu"], "gpu disabled (gpu.enabled is false)")
        r = self.twctl("stat")
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIn("puts:", r.stdout)
        self.assertIn("gpu disabled (gpu.enabled is false)\n", r.stdout)
        # One version line: twd's version with the protocol range it speaks, then this
        # connection's version.
        lines = r.stdout.splitlines()
        self.assertRegex(lines[0],
                         r"^twd \d+\.\d+\.\d+ \(protocol 1-3\), this connection protocol v3")
        self.assertEqual(r.stdout.count("protocol"), 2, r.stdout)

    def test_admin_namespaces_export_evict(self):
        keys = self.keys()
        first = self.write("first.txt", "0 1 2 3")
        for tokens in (first, self.tokens):
            r = self.twctl("put", "--namespace", self.ns, "--tokens", tokens, "--file",
                           self.value)
            self.assertEqual(r.returncode, 0, r.stderr)
        r = self.twctl("namespaces", "--json", admin=True)
        self.assertEqual(r.returncode, 0, r.stderr)
        digest = self.digest()
        rows = [json.loads(line) for line in r.stdout.splitlines()]
        rows = [row for row in rows if row["namespace_digest"] == digest]
        self.assertEqual(len(rows), 1)
        self.assertEqual(rows[0]["chunks"], 2)
        r = self.twctl("export", "--namespace", digest, admin=True)
        self.assertEqual(r.returncode, 0, r.stderr)
        chunks = {c["key"]: c for c in map(json.loads, r.stdout.splitlines())}
        self.assertEqual(set(chunks), set(keys))
        self.assertEqual(chunks[keys[1]]["parent"], keys[0])
        self.assertEqual(chunks[keys[1]]["tokens"], [4, 5, 6, 7])
        self.assertEqual(chunks[keys[0]]["parent"], digest)
        if chunks[keys[0]]["namespace"] is not None:
            self.assertEqual(chunks[keys[0]]["namespace"]["kv_dtype"], "bf16")
        r = self.twctl("evict", "--namespace", digest, admin=True)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIn("evicted 2 chunks", r.stdout)
        r = self.twctl("lookup", "--namespace", self.ns, "--tokens", self.tokens)
        self.assertIn("prefix 0/2", r.stdout)

    def test_errors(self):
        r = self.twctl("get", "--namespace", self.ns, "--key", "abc", "--out", "/dev/null")
        self.assertEqual(r.returncode, 1)
        self.assertIn("--key", r.stderr)
        r = self.twctl("put", "--namespace", self.ns, "--tokens", self.write("t.txt", "1 2"),
                       "--file", self.value)
        self.assertEqual(r.returncode, 1)
        self.assertIn("fewer than one chunk", r.stderr)
        r = subprocess.run([binary("twctl"), "stat", "--socket",
                            os.path.join(self.dir, "none.sock")], capture_output=True, text=True)
        self.assertEqual(r.returncode, 1)
        self.assertIn("none.sock", r.stderr)
        r = subprocess.run([binary("twctl"), "put", "--help"], capture_output=True, text=True)
        self.assertEqual(r.returncode, 0)
        self.assertIn("--durability", r.stdout)
        r = subprocess.run([binary("twctl"), "get"], capture_output=True, text=True)
        self.assertEqual(r.returncode, 2)


class TwctlTwdTest(TwctlMixin, unittest.TestCase):
    kind = "twd"


if __name__ == "__main__":
    unittest.main()
