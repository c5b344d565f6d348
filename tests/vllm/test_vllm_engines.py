"""The vLLM connector in real vLLM engines (CPU, a small Llama with random weights) over the
real twd binary, all real processes:

1. twd starts empty; engine A computes prompt P and stores its full chunks; A stops.
2. twd stops; one byte of P's third chunk is flipped in its NVMe file; twd starts (its
   chunks now come from NVMe; recovery reads no data, so the chunk is still listed).
3. engine B, same configuration, prefix caching off so every prompt asks the warehouse:
   - P: every stored chunk hits (the hit count equals the chunks twd stored); the third
     fails its checksum when loaded, is reported to vLLM, which recomputes it; B's greedy
     tokens equal A's token for token (log-probabilities within 1e-4);
   - P cut after half its chunks, another tail: exactly that half hits;
   - P with a cache salt: no chunk hits (another chain);
   - P with its first chunk changed: no hit, and different log-probabilities, which shows
     the comparison above can see wrong KV;
   - P under LoRA adapter a and under adapter b (random adapters, CPU LoRA): no hit, and
     each stores chunks of its own.
   B announces what it stored through vLLM's KV-event stream (BlockStored, medium "cpu",
   with token ids).

VllmEnginesTP2 does the same store / restart / load with tensor parallelism 2 (two worker
processes, each storing its shard under its own rank's namespace; one rank's copy of a
chunk corrupt: that rank's load fails, both recompute, the tokens stay equal).

Run by the system Python; the engines run in the vLLM environment (scripts/vllm-venv.sh),
and the test is skipped (77) without it.
"""

import json
import os
import struct
import subprocess
import sys
import tempfile
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import common  # noqa: E402

import tokenwarehouse as tw  # noqa: E402
from servers import Server  # noqa: E402

BLOCK = 32
CHUNK = 64
P = [(t * 37 + 11) % 1000 + 3 for t in range(4 * CHUNK + 20)]   # 4 full chunks + a tail


def run_engine(py, workdir, name, job, timeout=240):
    path = os.path.join(workdir, f"{name}.job.json")
    out = os.path.join(workdir, f"{name}.out.json")
    with open(path, "w") as f:
        json.dump(job, f)
    log = os.path.join(workdir, f"{name}.log")
    # vLLM names its ZeroMQ IPC sockets after uuids in the temporary directory and leaves
    # them behind; the test's own directory takes them away with it.
    tmp = os.path.join(workdir, f"{name}.tmp")
    os.makedirs(tmp, exist_ok=True)
    env = dict(common.child_env(), TMPDIR=tmp)
    with open(log, "wb") as lf:
        r = subprocess.run([py, os.path.join(common.HERE, "engine_run.py"), path, out],
                           stdout=lf, stderr=subprocess.STDOUT, env=env, timeout=timeout)
    if r.returncode != 0:
        with open(log, "rb") as lf:
            tail = lf.read().decode("utf-8", "replace")[-6000:]
        raise AssertionError(f"engine {name} exited with {r.returncode}:\n{tail}")
    with open(out) as f:
        return json.load(f)


def corrupt_chunk(data_dir, tokens):
    """Flips a byte of the first segment of the record whose token ids are `tokens` (a
    record: a header with magic TWRC and the token ids, padded to 4 KiB, then the segments;
    docs/storage.md). Returns True when it found the record."""
    pattern = b"".join(struct.pack("<I", t) for t in tokens)
    for root, _, files in os.walk(data_dir):
        for name in files:
            path = os.path.join(root, name)
            with open(path, "r+b") as f:
                data = f.read()
                at = data.find(pattern)
                if at < 0:
                    continue
                record = data.rfind(b"TWRC", 0, at)
                if record < 0 or record % 4096:
                    continue
                victim = record + 4096 + 100
                f.seek(victim)
                f.write(bytes([data[victim] ^ 0xFF]))
                return True
    return False


class VllmEngines(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.py = common.require_vllm_python()

    def test_store_restart_load(self):
        with tempfile.TemporaryDirectory(prefix="tw-vllm-e2e-") as tmp:
            server = Server("twd", tmp, dram="256MiB", nvme="512MiB")
            server.start()
            self.addCleanup(server.stop)
            base = {"model_dir": os.path.join(tmp, "model"), "socket": server.socket,
                    "block_size": BLOCK, "max_tokens": 6, "dtype": "float32",
                    "prefix_caching": False,
                    "extra": {"chunk_tokens": CHUNK, "arena_size": "32MiB"}}

            a = run_engine(self.py, tmp, "A", dict(base, prompts=[{"tokens": P}]))
            with tw.Client(server.socket, 2 << 20) as c:
                stored = c.stats()["puts"]["stored"]
            self.assertEqual(stored, len(P) // CHUNK)
            self.assertEqual(a["outputs"][0]["kv"]["tokenwarehouse"]["hit_chunks"], 0)

            server.stop()
            self.assertTrue(corrupt_chunk(server.data_dir, P[2 * CHUNK:3 * CHUNK]))
            server.start()
            half = P[:2 * CHUNK] + [(t * 11) % 997 + 2 for t in range(100)]
            other = [(P[0] + 1) % 1000 + 3] + P[1:]
            b = run_engine(self.py, tmp, "B", dict(
                base, events_endpoint="ipc://" + os.path.join(tmp, "events.ipc"),
                events_wait=1,
                prompts=[{"tokens": P}, {"tokens": half}, {"tokens": P, "cache_salt": "t2"},
                         {"tokens": other}, {"tokens": P, "lora": "adapter-a"},
                         {"tokens": P, "lora": "adapter-b"}]))
            full, halfp, salted, changed, lora_a, lora_b = b["outputs"]

            kv = full["kv"]["tokenwarehouse"]
            self.assertEqual(kv["hit_chunks"], stored)
            self.assertEqual(kv["loaded_chunks"], stored - 1)
            self.assertEqual(kv["failed_chunks"], 1)   # the corrupt one: recomputed
            self.assertEqual(kv["hit_tiers"], {"nvme": stored})
            self.assertEqual(full["tokens"], a["outputs"][0]["tokens"])
            for x, y in zip(full["logprobs"], a["outputs"][0]["logprobs"]):
                self.assertAlmostEqual(x, y, delta=1e-4)

            self.assertEqual(halfp["kv"]["tokenwarehouse"]["hit_chunks"], 2)
            self.assertEqual(halfp["kv"]["tokenwarehouse"]["loaded_chunks"], 2)
            self.assertEqual(salted["kv"]["tokenwarehouse"]["hit_chunks"], 0)
            self.assertEqual(salted["tokens"], a["outputs"][0]["tokens"])
            self.assertEqual(changed["kv"]["tokenwarehouse"]["hit_chunks"], 0)
            self.assertGreater(max(abs(x - y) for x, y in
                                   zip(changed["logprobs"], a["outputs"][0]["logprobs"])),
                               1e-3, "the model's output does not depend on earlier KV")

            for out in (lora_a, lora_b):
                self.assertEqual(out["kv"]["tokenwarehouse"]["hit_chunks"], 0)
            self.assertNotEqual(lora_a["logprobs"], lora_b["logprobs"])
            # B stored: P's third chunk again (twd dropped the corrupt one), the salted P (4
            # chunks), the half prompt's third chunk, the changed P (4), P under each adapter
            # (4 + 4).
            with tw.Client(server.socket, 2 << 20) as c:
                s = c.stats()
                self.assertEqual(s["puts"]["stored"], 1 + 4 + 1 + 4 + 4 + 4)
                self.assertEqual(s["get_misses"]["corrupt"], 1)

            stored_events = [e for e in b["events"] if e["type"] == "BlockStored"]
            self.assertTrue(stored_events, b["events"])
            for e in stored_events:
                self.assertEqual(e["medium"], "cpu")
                self.assertEqual(e["block_size"], CHUNK)
                self.assertEqual(len(e["tokens"]), CHUNK * len(e["hashes"]))


class VllmEnginesTP2(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.py = common.require_vllm_python()

    def test_two_ranks(self):
        with tempfile.TemporaryDirectory(prefix="tw-vllm-tp2-") as tmp:
            server = Server("twd", tmp, dram="256MiB", nvme="512MiB")
            server.start()
            self.addCleanup(server.stop)
            # One OpenMP thread per worker, one core each (vLLM's automatic binding wants
            # a NUMA node per worker).
            job = {"model_dir": os.path.join(tmp, "model"), "socket": server.socket,
                   "block_size": BLOCK, "max_tokens": 6, "dtype": "float32",
                   "prefix_caching": False, "tensor_parallel_size": 2,
                   "env": {"VLLM_CPU_OMP_THREADS_BIND": "0|1"},
                   "extra": {"chunk_tokens": CHUNK, "arena_size": "32MiB"},
                   "prompts": [{"tokens": P}]}
            a = run_engine(self.py, tmp, "A", job)
            n = len(P) // CHUNK
            with tw.Client(server.socket, 2 << 20) as c:
                self.assertEqual(c.stats()["puts"]["stored"], 2 * n)   # a shard per rank
            server.stop()
            self.assertTrue(corrupt_chunk(server.data_dir, P[CHUNK:2 * CHUNK]))
            server.start()
            b = run_engine(self.py, tmp, "B", job)
            kv = b["outputs"][0]["kv"]["tokenwarehouse"]
            self.assertEqual(kv["hit_chunks"], n)
            self.assertEqual(kv["failed_chunks"], 1)     # one rank's copy of chunk 1
            self.assertEqual(kv["loaded_chunks"], n - 1)
            self.assertEqual(b["outputs"][0]["tokens"], a["outputs"][0]["tokens"])
            for x, y in zip(b["outputs"][0]["logprobs"], a["outputs"][0]["logprobs"]):
                self.assertAlmostEqual(x, y, delta=1e-4)


if __name__ == "__main__":
    unittest.main()
