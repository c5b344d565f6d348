"""The mesh across real processes: four twd (the real binary), each in its own network
namespace, joined by veth pairs to a bridge (meshnet.py), and the Python client on each twd's
Unix socket. Root only: exits 77 (skipped) with the reason when not root or without
`ip netns`. A twd that does not serve the mesh fails the suite, naming what it lacks.

    remote hits            a chunk put on one node is a byte-exact `peer` hit on the others
    holder killed          SIGKILL mid-fetch: peer_unreachable within the deadline, twd serves
    partition              link down: misses within the deadline; healed: hits again
    membership             the peers file gains a node, then loses one: lookups converge
    holder restarted       its disk-durable chunks become remote hits again

n1..n3 are the peers file's members at the start of every test (setUp restores that, heals
links, restarts what a test killed); n4 runs only in the membership test. Every wait is on a
condition with a bound; each test takes well under 60 s. TW_MESH_KEEP=1 keeps the run's
directory (each node's log, config, data and sockets).
"""

import hashlib
import itertools
import os
import sys
import threading
import time
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
SOURCE = os.environ.get("TW_SOURCE_DIR") or os.path.dirname(os.path.dirname(os.path.dirname(
    HERE)))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(SOURCE, "client", "python"))

import meshnet  # noqa: E402
from meshnet import wait_until  # noqa: E402

try:
    meshnet.check_available()
    UNAVAILABLE = None
except meshnet.Unavailable as e:
    UNAVAILABLE = str(e)

import tokenwarehouse as tw  # noqa: E402

NS = {"model": "mesh-test", "model_revision": "r", "tokenizer": "t", "kv_dtype": "fp16",
      "kv_layout": "test", "parallel": "tp=0/1,pp=0/1", "adapter": "", "tenant": "",
      "chunk_tokens": "16"}
CHUNK = 16
VALUE = 256 * 1024
BIG = 16 << 20          # the chunk killed mid-fetch
PEER_TIMEOUT = 2.0      # mesh.peer_timeout of every node
DEADLINE = 4.0          # the client's deadline in the fault tests
SLACK = 0.5             # what the client's own code may add to a deadline
CONVERGE = 30.0         # bound on every wait for the mesh to converge
BASE = ["n1", "n2", "n3"]
_counter = itertools.count(1)


def value_of(key, size):
    """The bytes stored under `key`: different for every key and every offset."""
    return hashlib.shake_256(key).digest(size)


def fresh_tokens():
    base = next(_counter) * 1_000_000
    return itertools.count(base)


@unittest.skipIf(UNAVAILABLE, f"namespace tests skipped: {UNAVAILABLE}")
class Mesh(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.tmp = meshnet.workdir()
        cls.net = meshnet.MeshNet(cls.tmp.name, nodes=4, peer_timeout=f"{int(PEER_TIMEOUT)}s",
                                  cache_remote_hits=False)
        try:
            cls.net.setup()
            cls.net.write_peers(BASE)
            for n in BASE:
                cls.net.start(n)
            cls.digest = tw.namespace_digest(NS)
        except BaseException:
            cls.net.close()
            cls.tmp.cleanup()
            raise

    @classmethod
    def tearDownClass(cls):
        cls.net.close()
        if os.environ.get("TW_MESH_KEEP"):
            sys.stderr.write(f"TW_MESH_KEEP: logs, configs and data kept in {cls.tmp.name}\n")
        else:
            cls.tmp.cleanup()

    def setUp(self):
        net = self.net
        for n in net.nodes.values():
            net.heal(n.name)
            n.exec("tc", "qdisc", "del", "dev", "eth0", "root", check=False)
        if net.running("n4"):
            net.stop("n4")
        for n in BASE:
            if not net.running(n):
                net[n].proc = None
                net.start(n)
        net.set_peers(BASE)

    def run(self, result=None):
        # Each test's time, and on failure the logs of every twd (the client only sees misses).
        t0 = time.monotonic()
        r = super().run(result)
        sys.stderr.write(f"{self.id()}: {time.monotonic() - t0:.1f} s\n")
        if r is not None and (r.failures or r.errors):
            last = (r.failures + r.errors)[-1]
            if last[0] is self:
                sys.stderr.write(self.net.logs() + "\n")
        return r

    # -- helpers --

    def client(self, node, arena=64 << 20):
        return self.net.client(node, [NS], arena=arena, timeout=10)

    def chain(self, homes, members):
        """Token ids and keys of a chain whose chunk j has directory home homes[j] over
        `members` (None: any home)."""
        tokens, keys, parent = [], [], self.digest
        gen = fresh_tokens()
        for want in homes:
            while True:
                block = [next(gen) for _ in range(CHUNK)]
                key = tw.chunk_key(parent, block)
                if want is None or meshnet.home(meshnet.directory_key(self.digest, key),
                                                members) == want:
                    break
            tokens += block
            keys.append(key)
            parent = key
        return tokens, keys

    def put(self, node, tokens, keys, size=VALUE, durability="memory"):
        with self.client(node, arena=max(64 << 20, 2 * size)) as c:
            parent = self.digest
            for j, key in enumerate(keys):
                c.arena_view(0, size)[:] = value_of(key, size)
                r = c.put(key, parent, tokens[j * CHUNK:(j + 1) * CHUNK], arena_offset=0,
                          length=size, durability=durability)
                self.assertEqual(r, "stored", f"put of chunk {j} on {node}")
                parent = key

    def remote_prefix(self, node, keys, timeout=DEADLINE):
        with self.client(node) as c:
            return c.lookup(keys, timeout=timeout)

    def get(self, node, key, size=VALUE, timeout=DEADLINE):
        """(GetResult, bytes read, seconds)."""
        with self.client(node, arena=max(64 << 20, 2 * size)) as c:
            t0 = time.monotonic()
            r = c.get(key, arena_offset=0, arena_length=size, timeout=timeout)
            took = time.monotonic() - t0
            data = c.arena_view(0, r.bytes).tobytes() if r.miss == "none" else b""
            return r, data, took

    def wait_remote_hits(self, node, keys, size=VALUE, what=""):
        """Waits until `node` finds every key (a lookup prefix of all of them), then checks
        every chunk is a byte-exact `peer` hit there."""
        wait_until(lambda: self.remote_prefix(node, keys).prefix == len(keys), CONVERGE,
                   what=f"{node} to find {len(keys)} remote chunks {what}")
        found = self.remote_prefix(node, keys)
        self.assertEqual(found.tiers, ["peer"] * len(keys), f"tiers on {node}")
        for j, key in enumerate(keys):
            r, data, _ = self.get(node, key, size)
            self.assertEqual((r.miss, r.tier, r.bytes), ("none", "peer", size),
                             f"get of chunk {j} on {node} {what}")
            self.assertTrue(data == value_of(key, size), f"bytes of chunk {j} on {node}")

    def assert_serving(self, node):
        """`node` still answers, stores and serves its own chunks."""
        tokens, keys = self.chain([None], BASE)
        self.put(node, tokens, keys)
        r, data, _ = self.get(node, keys[0])
        self.assertEqual((r.miss, r.tier), ("none", "dram"))
        self.assertTrue(data == value_of(keys[0], VALUE))

    def acked_bytes(self, node):
        """Bytes the peer service's connections on `node` have had acknowledged (ss -ti): gRPC's
        on the mesh port and the raw wire's on the next one (docs/mesh.md "The raw wire")."""
        port = self.net.mesh_port
        r = self.net[node].exec("ss", "-Htin", "state", "established", "(", "sport", f"= :{port}",
                                "or", "sport", f"= :{port + 1}", ")", check=False)
        total = 0
        for field in r.stdout.split():
            if field.startswith("bytes_acked:"):
                total += int(field.split(":", 1)[1])
        return total

    # -- the tests --

    def test_remote_hits_are_byte_exact(self):
        # Chunk j held by n1 has its directory on n1, n2, n3 (every home role), and each
        # other node finds and reads the whole chain.
        tokens, keys = self.chain(["n1", "n2", "n3", "n2", "n3", None], BASE)
        self.put("n1", tokens, keys)
        for node in ("n2", "n3"):
            self.wait_remote_hits(node, keys, what="held by n1")
        # The holder itself answers from its own tiers.
        self.assertEqual(self.remote_prefix("n1", keys).tiers, ["dram"] * len(keys))
        # A chain whose first half is local and second half remote: one prefix across both.
        tail_tokens, tail_keys = tokens[:2 * CHUNK], keys[:2]
        self.put("n2", tail_tokens, tail_keys)
        found = self.remote_prefix("n2", keys)
        self.assertEqual(found.prefix, len(keys))
        self.assertEqual(found.tiers, ["dram"] * 2 + ["peer"] * (len(keys) - 2))

    def test_holder_killed_mid_fetch(self):
        tokens, keys = self.chain(["n2"], BASE)  # held by n3, its directory on n2
        self.put("n3", tokens, keys, size=BIG)
        wait_until(lambda: self.remote_prefix("n1", keys).prefix == 1, CONVERGE,
                   what="n1 to find n3's chunk")
        # n3 sends at 100 Mbit/s: 16 MiB take 1.3 s, and the fetch is still running when n3
        # dies after its first MiB is acknowledged.
        self.net["n3"].exec("tc", "qdisc", "add", "dev", "eth0", "root", "tbf", "rate",
                            "100mbit", "burst", "64kb", "latency", "1s")
        before = self.acked_bytes("n3")
        out = {}

        def fetch():
            try:
                out["result"] = self.get("n1", keys[0], size=BIG, timeout=DEADLINE)
            except Exception as e:  # noqa: BLE001 — reported by the assertions below
                out["error"] = e

        t = threading.Thread(target=fetch)
        t.start()
        try:
            wait_until(lambda: self.acked_bytes("n3") - before > (1 << 20), DEADLINE,
                       interval=0.01, what="n3 to be sending the chunk to n1")
        finally:
            self.net.kill("n3")
            t.join(DEADLINE + 10)
        self.assertNotIn("error", out, "the client must get an answer, not its own timeout")
        r, data, took = out["result"]
        self.assertEqual(r.miss, "peer_unreachable")
        self.assertEqual(r.bytes, 0)
        self.assertLess(took, DEADLINE + SLACK)
        # n1 keeps serving: ping, its own chunks, and remote chunks of live holders.
        self.assertTrue(self.net.running("n1"), self.net["n1"].log())
        with self.client("n1") as c:
            c.ping()
        self.assert_serving("n1")
        # (Homed on live nodes: n3 is still in the peers file, so what it homes is unreachable.)
        tokens2, keys2 = self.chain(["n1", "n2"], BASE)
        self.put("n2", tokens2, keys2)
        self.wait_remote_hits("n1", keys2, what="held by n2 after n3 died")

    def test_partition_misses_within_deadline_then_heals(self):
        # Held by n3; one directory entry on n3 itself, one on n1 (the asker), one on n2.
        tokens, keys = self.chain(["n3", "n1", "n2"], BASE)
        self.put("n3", tokens, keys)
        self.wait_remote_hits("n1", keys, what="before the partition")
        self.net.partition("n3")
        for j, key in enumerate(keys):
            r, _, took = self.get("n1", key)
            self.assertNotEqual(r.miss, "none", f"chunk {j} must miss while n3 is cut off")
            self.assertEqual(r.miss, "peer_unreachable", f"chunk {j}")
            self.assertLess(took, DEADLINE + SLACK, f"chunk {j}")
        t0 = time.monotonic()
        found = self.remote_prefix("n1", keys)
        self.assertLess(time.monotonic() - t0, DEADLINE + SLACK)
        self.assertLess(found.prefix, len(keys))
        self.assert_serving("n1")
        self.net.heal("n3")
        self.wait_remote_hits("n1", keys, what="after the partition healed")

    def test_peers_file_rewritten_lookups_converge(self):
        net = self.net
        members4 = BASE + ["n4"]
        # A node is added: n4 starts outside the peers file, stores chunks; n1 stores chunks
        # whose home moves to n4 when n4 joins.
        net.start("n4")
        tokens4, keys4 = self.chain([None, None], members4)
        self.put("n4", tokens4, keys4)
        moving = []
        while len(moving) < 2:
            t, k = self.chain(["n4"], members4)
            if meshnet.home(meshnet.directory_key(self.digest, k[0]), BASE) != "n4":
                moving.append((t, k))
        for t, k in moving:
            self.put("n1", t, k)
        for t, k in moving:
            wait_until(lambda k=k: self.remote_prefix("n2", k).prefix == 1, CONVERGE,
                       what="n2 to find n1's chunk before n4 joins")
        r, _, _ = self.get("n1", keys4[0])
        self.assertNotEqual(r.miss, "none", "n4 is no member yet: n1 cannot reach it")
        net.set_peers(members4)  # and every twd has read it: no answer from the old view
        self.wait_remote_hits("n1", keys4, what="held by n4 after it joined")
        self.wait_remote_hits("n2", keys4, what="held by n4 after it joined")
        for t, k in moving:  # re-announced by n1 to their new home, n4
            self.wait_remote_hits("n2", k, what="homed on n4 after it joined")
            self.wait_remote_hits("n4", k, what="homed on n4 after it joined")
        # A node is removed: n3 leaves the file (its twd keeps running). n2's chunks homed on
        # n3 are re-announced to their new homes; n3's own chunks become misses.
        gone = [n for n in members4 if n != "n3"]
        tokens_r, keys_r = self.chain(["n3", "n3"], members4)
        self.put("n2", tokens_r, keys_r)
        tokens3, keys3 = self.chain([None], members4)
        self.put("n3", tokens3, keys3)
        self.wait_remote_hits("n1", keys_r, what="homed on n3 before it left")
        self.wait_remote_hits("n1", keys3, what="held by n3 before it left")
        net.set_peers(gone)
        self.wait_remote_hits("n1", keys_r, what="re-homed after n3 left")
        self.wait_remote_hits("n4", keys_r, what="re-homed after n3 left")
        wait_until(lambda: self.get("n1", keys3[0])[0].miss != "none", CONVERGE,
                   what="n3's chunk to miss on n1 once n3 left the peers file")

    def test_restarted_holder_serves_again(self):
        tokens, keys = self.chain([None, None, None], BASE)
        self.put("n2", tokens, keys, durability="disk")
        self.wait_remote_hits("n1", keys, what="before n2 restarts")
        self.net.kill("n2")
        r, _, took = self.get("n1", keys[0])
        self.assertEqual(r.miss, "peer_unreachable")
        self.assertLess(took, DEADLINE + SLACK)
        self.net.start("n2")
        # n2 recovered its chunks from disk and re-announces them: remote hits again.
        self.wait_remote_hits("n1", keys, what="after n2 restarted")
        self.wait_remote_hits("n3", keys, what="after n2 restarted")


if __name__ == "__main__":
    if UNAVAILABLE:
        print(f"namespace tests skipped: {UNAVAILABLE}", file=sys.stderr)
    result = unittest.main(exit=False).result
    if not result.wasSuccessful():
        sys.exit(1)
    sys.exit(77 if UNAVAILABLE else 0)
