"""tokenwarehouse.Client end to end over libtwclient.so against the real twd over a real store
in a temporary directory (including a restart that must keep disk-durable chunks)."""

import os
import subprocess
import sys
import tempfile
import threading
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
SOURCE = os.environ.get("TW_SOURCE_DIR") or os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(SOURCE, "client", "python"))

import tokenwarehouse as tw  # noqa: E402
from servers import Server, available_kinds  # noqa: E402

NS = {"model": "m", "model_revision": "r", "tokenizer": "t", "kv_dtype": "fp16",
      "kv_layout": "test", "parallel": "tp=0/1,pp=0/1", "adapter": "", "tenant": "",
      "chunk_tokens": "16"}
CHUNK = 16
VALUE = 256 * 1024


class ClientMixin:
    """One server per class (starting twd costs up to a second); every test uses token ids
    of its own, so tests never see each other's chunks."""
    kind = None
    _salt = 0

    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.TemporaryDirectory(prefix="twclient-py-")
        cls.server = Server(cls.kind, cls.tmp.name).start()

    @classmethod
    def tearDownClass(cls):
        cls.server.stop()
        cls.tmp.cleanup()

    def tokens(self, n):
        ClientMixin._salt += 1
        base = ClientMixin._salt * 100000
        return list(range(base, base + n))

    def connect(self, arena=8 << 20):
        return tw.Client(self.server.socket, arena, namespaces=[NS], timeout=10)

    def store(self, c, tokens, durability="memory", fill=None):
        keys = tw.chunk_keys(NS, tokens)
        parent = c.namespace_digests[0]
        results = []
        for j, key in enumerate(keys):
            view = c.arena_view(0, VALUE)
            view[:] = (fill or bytes([j % 251])) * (VALUE // len(fill or b"x"))
            results.append(c.put(key, parent, tokens[j * CHUNK:(j + 1) * CHUNK],
                                 arena_offset=0, length=VALUE, durability=durability))
            parent = key
        return keys, results

    def test_arena_and_digest(self):
        with self.connect(3 << 20) as c:
            self.assertEqual(c.arena_size, 4 << 20)
            self.assertEqual(len(c.arena), 4 << 20)
            self.assertEqual(c.namespace_digests[0], tw.namespace_digest(NS))
            c.arena[10] = 42
            self.assertEqual(c.arena_view(8, 4).tobytes()[2], 42)
            with self.assertRaises(ValueError):
                c.arena_view(4 << 20, 1)
            c.ping()

    def test_put_lookup_get(self):
        tokens = self.tokens(5 * CHUNK + 3)
        with self.connect() as c:
            keys, results = self.store(c, tokens)
            self.assertEqual(results, ["stored"] * 5)
            self.assertEqual(c.put(keys[0], c.namespace_digests[0], tokens[:CHUNK],
                                   arena_offset=0, length=VALUE), "exists")
            found = c.lookup(keys)
            self.assertEqual(found.prefix, 5)
            self.assertEqual(found.miss, "none")
            self.assertTrue(all(t in ("dram", "nvme") for t in found.tiers))
            for j in (4, 0, 2):
                r = c.get(keys[j], arena_offset=1 << 20, arena_length=VALUE)
                self.assertEqual(r.miss, "none")
                self.assertEqual(r.bytes, VALUE)
                got = c.arena_view(1 << 20, VALUE)
                self.assertEqual(got[0], j % 251)
                self.assertEqual(got.tobytes(), bytes([j % 251]) * VALUE)
            # Scatter: two ranges of chunk 3 to two places.
            r = c.get(keys[3], scatter=[tw.Scatter(0, 0, 100, 2 << 20),
                                        tw.Scatter(0, VALUE - 50, 50, 3 << 20)])
            self.assertEqual(r.bytes, 150)
            self.assertEqual(c.arena_view(2 << 20, 100).tobytes(), bytes([3]) * 100)
            # Batched get of two chunks in one request.
            rs = c.get_batch([(keys[1], 0, VALUE, None), (keys[2], VALUE, VALUE, None)])
            self.assertEqual([r.miss for r in rs], ["none", "none"])
            self.assertEqual(c.arena_view(VALUE, 1).tobytes(), bytes([2]))

    def test_misses_carry_reasons(self):
        tokens = self.tokens(3 * CHUNK)
        with self.connect() as c:
            keys = tw.chunk_keys(NS, tokens)
            r = c.get(keys[0], arena_offset=0, arena_length=VALUE)
            self.assertEqual(r.tier, "none")
            self.assertIn(r.miss, ("absent", "evicted"))
            found = c.lookup(keys)
            self.assertEqual(found.prefix, 0)
            self.assertEqual(found.miss, "absent")
            self.assertEqual(c.exists(keys), ["none"] * 3)

    def test_wrong_key_is_refused(self):
        with self.connect() as c:
            tokens = self.tokens(CHUNK + 1)
            key = tw.chunk_keys(NS, tokens[:CHUNK])[0]
            other = tokens[1:]
            before = c.stats()["puts"].get("invalid", 0)
            self.assertEqual(c.put(key, c.namespace_digests[0], other, length=1024), "invalid")
            # The refused put is counted in STATS (as in /metrics), once.
            self.assertEqual(c.stats()["puts"]["invalid"], before + 1)

    def test_exists_delete_stats(self):
        tokens = self.tokens(2 * CHUNK)
        with self.connect() as c:
            keys, _ = self.store(c, tokens)
            self.assertNotIn("none", c.exists(keys))
            self.assertEqual(c.delete([keys[1]]), [True])
            self.assertEqual(c.delete([keys[1]]), [False])
            self.assertEqual(c.exists(keys)[1], "none")
            self.assertEqual(c.lookup(keys).prefix, 1)
            s = c.stats()
            self.assertIn("tiers", s)
            self.assertIn("puts", s)

    def test_c_example(self):
        exe = os.path.join(os.environ.get("TW_BIN_DIR", ""), "tw-client-example")
        if not os.path.exists(exe):
            self.skipTest(f"{exe} is not built")
        r = subprocess.run([exe, self.server.socket], capture_output=True, text=True,
                           timeout=60)
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        self.assertIn("identical", r.stdout)

    def test_tensor_parallel_lookup(self):
        ranks = [dict(NS, parallel=f"tp={r}/2,pp=0/1") for r in range(2)]
        tokens = self.tokens(3 * CHUNK)
        with tw.Client(self.server.socket, 4 << 20, namespaces=ranks, timeout=10) as c:
            keys = [tw.chunk_keys(ns, tokens) for ns in ranks]
            self.assertNotEqual(keys[0][0], keys[1][0])
            c.arena_view(0, 4096)[:] = b"\x01" * 4096
            for rank, stored in ((0, 3), (1, 2)):
                parent = c.namespace_digests[rank]
                for j in range(stored):
                    r = c.put(keys[rank][j], parent, tokens[j * CHUNK:(j + 1) * CHUNK],
                              length=4096, namespace=rank)
                    self.assertEqual(r, "stored")
                    parent = keys[rank][j]
            self.assertEqual(c.lookup(keys[0], namespace=0).prefix, 3)
            both = c.lookup_ranks([(0, keys[0]), (1, keys[1])])
            self.assertEqual(both.prefix, 2)
            self.assertEqual(both.miss, "absent")

    def test_threads_share_a_client(self):
        tokens = self.tokens(8 * CHUNK)
        with self.connect(16 << 20) as c:
            keys, _ = self.store(c, tokens)
            errors = []

            def reader(slot):
                try:
                    for j in range(8):
                        off = (slot + 1) * (1 << 20)
                        r = c.get(keys[j], arena_offset=off, arena_length=VALUE)
                        if r.miss != "none" or c.arena_view(off, 1)[0] != j % 251:
                            errors.append((slot, j, r))
                except Exception as e:  # reported below
                    errors.append(e)

            threads = [threading.Thread(target=reader, args=(i,)) for i in range(4)]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
            self.assertEqual(errors, [])

    def test_errors(self):
        with self.assertRaises(tw.TokenWarehouseError) as cm:
            tw.Client(os.path.join(self.tmp.name, "missing.sock"), 1 << 20)
        self.assertEqual(cm.exception.name, "NOT_FOUND")
        with self.connect() as c:
            with self.assertRaises(ValueError):
                c.put(b"short", c.namespace_digests[0], [1], length=1)
            with self.assertRaises(ValueError):
                c.lookup([b"x" * 32], namespace=3)
            with self.assertRaises(ValueError):
                c.put(b"k" * 32, b"p" * 32, [1], length=1, durability="forever")
        with self.assertRaises(ValueError):
            c.ping()  # closed


class ClientTwdTest(ClientMixin, unittest.TestCase):
    kind = "twd"

    def test_disk_chunks_survive_restart(self):
        tokens = self.tokens(4 * CHUNK)
        with self.connect() as c:
            keys, results = self.store(c, tokens, durability="disk", fill=b"\xab\xcd")
            self.assertEqual(results, ["stored"] * 4)
        self.server.restart()
        with self.connect() as c:
            found = c.lookup(keys)
            self.assertEqual(found.prefix, 4)
            for j, key in enumerate(keys):
                r = c.get(key, arena_offset=0, arena_length=VALUE)
                self.assertEqual(r.miss, "none")
                self.assertEqual(c.arena_view(0, VALUE).tobytes(), b"\xab\xcd" * (VALUE // 2))


if __name__ == "__main__":
    unittest.main()
