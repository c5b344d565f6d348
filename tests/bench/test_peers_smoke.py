"""bench/peers/peers.py at tiny sizes (--smoke): the code paths of twd, the file per chunk and
Redis run end to end (puts, gets checked byte-stamped, the restart, the lookup, the report),
and a peer that is not installed is reported with its error while the others still run.

Interpreters: the peers' environment (scripts/peers-venv.sh --no-install, or
TW_PEERS_PYTHON) for the first test, the vLLM environment (which has none of the peers'
client packages) for the second; each test is skipped when its interpreter is missing, and
the whole file exits 77 when both are. Needs twd (TW_BIN_DIR) and redis-server.
"""

import json
import os
import subprocess
import sys
import tempfile
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
SOURCE = os.environ.get("TW_SOURCE_DIR") or os.path.dirname(os.path.dirname(HERE))
PEERS = os.path.join(SOURCE, "bench", "peers", "peers.py")
TWD = os.path.join(os.environ.get("TW_BIN_DIR", ""), "twd")


def interpreter(script, env_var):
    if os.environ.get(env_var):
        return os.environ[env_var]
    r = subprocess.run([os.path.join(SOURCE, "scripts", script), "--no-install"],
                       capture_output=True, text=True)
    return r.stdout.strip() if r.returncode == 0 else None


PEERS_PY = interpreter("peers-venv.sh", "TW_PEERS_PYTHON")
VLLM_PY = interpreter("vllm-venv.sh", "TW_VLLM_PYTHON")


def run(python, systems, tmp):
    out = os.path.join(tmp, "out")
    r = subprocess.run([python, PEERS, "--smoke", "--twd", TWD, "--out", out, "--systems",
                        systems, "--workdir", tmp, "--phase-timeout", "120"],
                       capture_output=True, text=True, timeout=300)
    if r.returncode != 0:
        raise AssertionError(f"peers.py exited {r.returncode}:\n{r.stdout}\n{r.stderr}")
    with open(os.path.join(out, "peers.json")) as f:
        report = json.load(f)
    with open(os.path.join(out, "peers.md")) as f:
        md = f.read()
    return report, md, out


def by_name(report):
    return {s["name"]: s for s in report["systems"]}


class PeersSmoke(unittest.TestCase):
    @unittest.skipIf(PEERS_PY is None, "the peers' environment is not installed")
    def test_twd_file_redis(self):
        with tempfile.TemporaryDirectory(prefix="peers-smoke-") as tmp:
            report, md, out = run(PEERS_PY, "twd,file,redis", tmp)
            systems = by_name(report)
            for name in ("twd", "file", "redis"):
                s = systems[name]
                self.assertEqual(s["status"], "ran", s)
                self.assertEqual(s["errors"], [], s)
                self.assertEqual(len(s["runs"]), 4, s)  # 2 sizes x 2 process counts
                for r in s["runs"]:
                    self.assertEqual(r["get_hits"], 1.0, (name, r))
                    self.assertGreater(r["put_gbps"], 0)
                    self.assertGreater(r["written_per_byte"] if name != "redis" else 1, 0.99)
                restart = s["runs"][0]["restart"]
                # twd (durability disk), the fsync'ed files and Redis' dump at shutdown all
                # come back whole.
                self.assertEqual(restart["hits"], 1.0, (name, restart))
                self.assertIsNotNone(restart["first_hit_s"])
                self.assertGreater(s["lookup"]["p50_us"], 0)
            self.assertEqual(set(report["ratios"]), {"file", "redis"})
            self.assertTrue(report["bars"]["twd_restart_hits"])
            self.assertIn("| twd |", md)
            self.assertIn("| file per chunk |", md)
            self.assertTrue(os.path.getsize(os.path.join(out, "peers.png")) > 10000)

    @unittest.skipIf(VLLM_PY is None, "the vLLM environment is not installed")
    def test_missing_peers_are_reported(self):
        with tempfile.TemporaryDirectory(prefix="peers-missing-") as tmp:
            report, md, _ = run(VLLM_PY, "lmcache-cpu,mooncake,redis,file", tmp)
            systems = by_name(report)
            self.assertEqual(systems["file"]["status"], "ran")
            for name, module in (("lmcache-cpu", "lmcache"), ("mooncake", "mooncake"),
                                 ("redis", "redis")):
                self.assertEqual(systems[name]["status"], "unavailable", systems[name])
                self.assertIn(f"No module named '{module}'", systems[name]["error"])
                self.assertIn(systems[name]["error"], md)


if __name__ == "__main__":
    if PEERS_PY is None and VLLM_PY is None:
        print("skipped: neither the peers' nor the vLLM environment is installed")
        sys.exit(77)
    if not os.access(TWD, os.X_OK):
        print(f"skipped: twd is not built ({TWD})")
        sys.exit(77)
    unittest.main()
