"""The namespace harness itself (meshnet.py), without twd: its placement against the spec's
vectors (docs/mesh.md), and its network: nodes reach each other over the bridge, a partition
cuts a node off and healing restores it, and nothing is left behind (namespaces of this run
and of an earlier run whose process is gone). Exit 77 (skipped) when not root or without
`ip netns`; the placement vectors run everywhere."""

import os
import subprocess
import sys
import tempfile
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import meshnet  # noqa: E402

try:
    meshnet.check_available()
    UNAVAILABLE = None
except meshnet.Unavailable as e:
    UNAVAILABLE = str(e)

SERVER = """
import socket, sys
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("0.0.0.0", 9999))
s.listen()
print("listening", flush=True)
while True:
    c, _ = s.accept()
    c.sendall(c.recv(64))
    c.close()
"""

CLIENT = """
import socket, sys
try:
    s = socket.create_connection((sys.argv[1], 9999), timeout=float(sys.argv[2]))
    s.sendall(b"hello")
    print(s.recv(64).decode())
except OSError as e:
    print("error", type(e).__name__)
"""


class PlacementSpec(unittest.TestCase):
    """docs/mesh.md's vectors: members a (1), b (1), c (2), d (1), e (0.5)."""

    def test_vectors(self):
        import hashlib
        self.assertEqual(meshnet.fmix64(1), 0xB456BCFC34C2CB2C)
        self.assertEqual(meshnet.placement_seed("a"), 0x3E18FC1B88EEE38E)
        self.assertEqual(meshnet.placement_seed("node-1"), 0x8F9F751D5170E265)
        self.assertEqual(meshnet.placement_seed("worker-03.example"), 0xA7C7476FA8A8D3CB)
        weights = {"a": 1, "b": 1, "c": 2, "d": 1, "e": 0.5}
        want = [("acdeb", 4.6532618651155664), ("cbade", 1.444259086831319),
                ("cbdea", 0.24564105286233559), ("cbade", 1.0478876764472271)]
        for i, (order, score_a) in enumerate(want):
            key = hashlib.sha256(b"tokenwarehouse/place/test/" + str(i).encode()).digest()
            ranked = sorted(weights, key=lambda n: (
                -meshnet.placement_score(key, meshnet.placement_seed(n), weights[n]), n))
            self.assertEqual("".join(ranked), order)
            self.assertEqual(meshnet.placement_score(key, meshnet.placement_seed("a")), score_a)
        # Uniform weights: home() is the first of ranking().
        key = hashlib.sha256(b"x").digest()
        self.assertEqual(meshnet.home(key, ["n1", "n2", "n3"]),
                         meshnet.ranking(key, ["n3", "n1", "n2"])[0])


@unittest.skipIf(UNAVAILABLE, f"namespace tests skipped: {UNAVAILABLE}")
class Network(unittest.TestCase):
    def setUp(self):
        self.tmp = meshnet.workdir()
        bin_dir = os.environ.get("TW_BIN_DIR", "")
        self.net = meshnet.MeshNet(self.tmp.name, nodes=3, bin_dir=bin_dir).setup()
        self.addCleanup(self.tmp.cleanup)
        self.addCleanup(self.net.close)

    def echo(self, frm, to, timeout):
        r = self.net[frm].exec(sys.executable, "-c", CLIENT, self.net[to].address,
                               str(timeout), timeout=timeout + 10)
        return r.stdout.strip()

    def test_reach_partition_heal_and_cleanup(self):
        n3 = self.net["n3"]
        server = subprocess.Popen(["ip", "netns", "exec", n3.ns, sys.executable, "-c", SERVER],
                                  stdout=subprocess.PIPE, text=True,
                                  preexec_fn=meshnet._die_with_parent)
        try:
            self.assertEqual(server.stdout.readline().strip(), "listening")
            self.assertEqual(self.echo("n1", "n3", 5), "hello")
            self.assertEqual(self.echo("n2", "n3", 5), "hello")
            self.net.partition("n3")
            self.assertTrue(self.echo("n1", "n3", 0.5).startswith("error"))
            self.net.heal("n3")
            meshnet.wait_until(lambda: self.echo("n1", "n3", 1) == "hello", 20,
                               what="n3 reachable again after healing")
            # The root namespace cannot reach the nodes: the mesh lives in its own network.
            r = subprocess.run([sys.executable, "-c", CLIENT, n3.address, "0.3"],
                               stdout=subprocess.PIPE, text=True, timeout=10)
            self.assertTrue(r.stdout.startswith("error"), r.stdout)
        finally:
            server.kill()
            server.wait()
            server.stdout.close()
        names = [n.ns for n in self.net.nodes.values()] + [self.net.switch]
        self.assertTrue(set(names) <= set(meshnet._namespaces()))
        self.net.close()
        self.assertFalse(set(names) & set(meshnet._namespaces()))
        self.net.close()  # idempotent

    def test_leftovers_of_a_dead_run_are_removed(self):
        dead = subprocess.Popen(["true"])
        dead.wait()
        stale = f"{meshnet.PREFIX}{dead.pid:x}-n1"
        mine = self.net.switch
        subprocess.run(["ip", "netns", "add", stale], check=True)
        stale_dir = os.path.join(tempfile.gettempdir(), f"{meshnet.PREFIX}{dead.pid:x}-abc")
        os.makedirs(os.path.join(stale_dir, "n1"))
        try:
            removed = meshnet.remove_leftovers()
            self.assertIn(stale, removed)
            self.assertNotIn(stale, meshnet._namespaces())
            self.assertFalse(os.path.exists(stale_dir))
            self.assertIn(mine, meshnet._namespaces())  # a live run's stay
            self.assertTrue(os.path.isdir(self.tmp.name))
        finally:
            subprocess.run(["ip", "netns", "del", stale], stderr=subprocess.DEVNULL)


if __name__ == "__main__":
    if UNAVAILABLE:
        print(f"namespace tests skipped: {UNAVAILABLE}", file=sys.stderr)
    result = unittest.main(exit=False).result
    if not result.wasSuccessful():
        sys.exit(1)
    sys.exit(77 if UNAVAILABLE else 0)
