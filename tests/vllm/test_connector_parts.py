"""The vLLM connector's two halves against the real twd, without a vLLM engine.

SchedulerSide (lookups over every rank's namespace, adapters and cache salts that never
share chunks, KV events) and WorkerSide (KV blocks of torch tensors saved to twd and loaded
back layer by layer; a chunk that fails to load is reported, never copied), plus the pure
settings and chunk arithmetic. Needs torch: run by the system Python, it re-runs itself with
the vLLM environment's interpreter (skipped, exit 77, when that is not installed).
"""

import os
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import common  # noqa: E402

try:
    import torch
except ImportError:
    if os.environ.get("TW_TEST_REEXEC"):
        raise
    py = common.require_vllm_python()
    env = common.child_env()
    env["TW_TEST_REEXEC"] = "1"
    sys.exit(subprocess.call([py, os.path.abspath(__file__)] + sys.argv[1:], env=env))

import tempfile  # noqa: E402
import unittest  # noqa: E402

import tokenwarehouse as tw  # noqa: E402
from servers import Server  # noqa: E402
from tokenwarehouse.vllm import plan  # noqa: E402
from tokenwarehouse.vllm.scheduler_side import SchedulerSide  # noqa: E402
from tokenwarehouse.vllm.settings import EngineIdentity, Settings, parse_size  # noqa: E402
from tokenwarehouse.vllm.worker_side import WorkerSide  # noqa: E402

BS = 16      # block size
C = 32       # chunk tokens: two blocks
LAYERS = 3
NUM_BLOCKS = 64
BLOCK_SHAPE = (2, BS, 8)   # [H, N, C] of vLLM's per-layer view


def identity(tp_size=1, tenant=""):
    return EngineIdentity(model="m", model_revision="r", tokenizer="t", kv_dtype="float32",
                          kv_layout="test/LBHNC/bs16", tp_size=tp_size, tenant=tenant,
                          chunk_tokens=C)


class PureParts(unittest.TestCase):
    def test_import_needs_no_vllm(self):
        code = ("import sys, tokenwarehouse, tokenwarehouse.vllm\n"
                "assert 'vllm' not in sys.modules, 'vllm imported'\n"
                "assert 'torch' not in sys.modules, 'torch imported'\n"
                "tokenwarehouse.vllm.Settings()\n")
        r = subprocess.run([sys.executable, "-c", code], env=common.child_env(),
                           capture_output=True, text=True)
        self.assertEqual(r.returncode, 0, r.stderr)

    def test_settings(self):
        s = Settings.from_extra_config({"socket": "/s", "arena_size": "64MiB",
                                        "chunk_tokens": 64, "durability": "disk",
                                        "save": "false"})
        self.assertEqual((s.arena_size, s.chunk_tokens, s.durability, s.save),
                         (64 << 20, 64, "disk", False))
        self.assertEqual(s.resolve_chunk_tokens(32), 64)
        self.assertEqual(Settings().resolve_chunk_tokens(16), 256)
        self.assertEqual(Settings().resolve_chunk_tokens(128), 256)
        self.assertEqual(Settings().resolve_chunk_tokens(96), 288)
        with self.assertRaisesRegex(ValueError, "not a multiple"):
            s.resolve_chunk_tokens(48)
        for bad, msg in (({"sockt": "x"}, "unknown key"), ({"arena_size": "1 parsec"}, "size"),
                         ({"durability": "tape"}, "durability"), ({"timeout": 0}, "timeout"),
                         ({"chunk_tokens": -3}, "chunk_tokens"), ({"load": "maybe"}, "load")):
            with self.assertRaisesRegex(ValueError, msg):
                Settings.from_extra_config(bad)
        self.assertEqual(parse_size("2GiB", "x"), 2 << 30)

    def test_namespace(self):
        ident = identity(tp_size=2)
        ns = ident.namespace(1, 0, "lora-a")
        self.assertEqual(ns["parallel"], "tp=1/2,pp=0/1")
        self.assertEqual(ns["adapter"], "lora-a")
        self.assertEqual(ns["chunk_tokens"], "32")
        self.assertEqual(ident.ranks(), [(0, 0), (1, 0)])
        with self.assertRaises(ValueError):
            ident.namespace(2, 0)

    def test_chunk_extras(self):
        ex = plan.chunk_extras(3, 32, "salt", [("img", 40, 30)])
        self.assertEqual(ex[0], b"salt:salt\n")
        self.assertEqual(ex[1], b"mm:img@40+30\n")
        self.assertEqual(ex[2], b"mm:img@40+30\n")
        self.assertEqual(plan.chunk_extras(2, 32), [b"", b""])

    def test_load_chunks(self):
        blocks = list(range(100, 110))
        # vLLM has the first 3 blocks: chunk 0 is skipped, chunk 1 loads its second block.
        got = plan.load_chunks(3 * BS, 4, C, BS, blocks)
        self.assertEqual([(c.index, c.first_block, c.block_ids) for c in got],
                         [(1, 1, [103]), (2, 0, [104, 105]), (3, 0, [106, 107])])
        with self.assertRaises(ValueError):
            plan.load_chunks(5, 2, C, BS, blocks)


class WithTwd(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.TemporaryDirectory(prefix="tw-vllm-parts-")
        cls.server = Server("twd", cls.tmp.name).start()
        cls.settings = Settings(socket=cls.server.socket, arena_size=8 << 20, chunk_tokens=C,
                                timeout=10.0)

    @classmethod
    def tearDownClass(cls):
        cls.server.stop()
        cls.tmp.cleanup()

    _base = 0

    def tokens(self, n):
        WithTwd._base += 1
        return list(range(WithTwd._base * 10000, WithTwd._base * 10000 + n))

    def store(self, ident, tokens, rank=(0, 0), adapter="", salt=None):
        """Puts the full chunks of `tokens` as one rank would (filler bytes)."""
        ns = ident.namespace(*rank, adapter)
        n = len(tokens) // C
        extras = plan.chunk_extras(n, C, salt)
        keys = tw.chunk_keys(ns, tokens, extras)
        with tw.Client(self.server.socket, 2 << 20, namespaces=[ns]) as c:
            parent = c.namespace_digests[0]
            for j, k in enumerate(keys):
                self.assertIn(c.put(k, parent, tokens[j * C:(j + 1) * C], length=1024,
                                    extra=extras[j]), ("stored", "exists"))
                parent = k
        return keys


class SchedulerPath(WithTwd):
    def side(self, ident):
        s = SchedulerSide(self.settings, ident, BS)
        self.addCleanup(s.close)
        return s

    def test_hit_plan_and_last_token(self):
        ident = identity()
        toks = self.tokens(3 * C + 5)
        s = self.side(ident)
        self.assertEqual(s.match("a", toks, 0), 0)
        self.store(ident, toks[:2 * C])
        self.assertEqual(s.match("a", toks, 0), 2 * C)
        # vLLM's own hit of one block: only the rest is the warehouse's.
        self.assertEqual(s.match("a", toks, BS), 2 * C - BS)
        s.allocated("a", list(range(10, 20)), 2 * C - BS)
        p = s.take_plan()
        self.assertEqual(len(p.loads), 1)
        self.assertEqual([(c.index, c.first_block, c.block_ids) for c in p.loads[0].chunks],
                         [(0, 1, [11]), (1, 0, [12, 13])])
        self.assertTrue(p.loads[0].lease)
        self.assertEqual(s.take_plan().loads, [])
        # A prompt that is entirely stored still leaves its last token to compute.
        self.assertEqual(s.match("b", toks[:2 * C], 0), 2 * C - 1)
        self.assertEqual(s.request_stats("b")["hit_chunks"], 2)

    def test_two_ranks_need_both(self):
        ident = identity(tp_size=2)
        toks = self.tokens(2 * C)
        s = self.side(ident)
        self.store(ident, toks, rank=(0, 0))
        self.assertEqual(s.match("r", toks + [1], 0), 0)   # rank 1 holds nothing
        self.store(ident, toks[:C], rank=(1, 0))
        self.assertEqual(s.match("r", toks + [1], 0), C)   # the prefix both ranks hold
        self.store(ident, toks, rank=(1, 0))
        self.assertEqual(s.match("r", toks + [1], 0), 2 * C)

    def test_adapter_and_salt_never_share(self):
        ident = identity()
        toks = self.tokens(2 * C + 1)
        self.store(ident, toks[:2 * C])
        s = self.side(ident)
        self.assertEqual(s.match("plain", toks, 0), 2 * C)
        self.assertEqual(s.match("lora", toks, 0, adapter="lora-a"), 0)
        self.assertEqual(s.match("salted", toks, 0, cache_salt="tenant-b"), 0)
        self.store(ident, toks[:2 * C], adapter="lora-a")
        self.assertEqual(s.match("lora", toks, 0, adapter="lora-a"), 2 * C)
        self.assertEqual(s.match("lora-b", toks, 0, adapter="lora-b"), 0)
        # Another tenant's namespace is another chain.
        self.assertEqual(self.side(identity(tenant="t2")).match("x", toks, 0), 0)

    def test_twd_down_is_a_miss(self):
        s = SchedulerSide(Settings(socket=os.path.join(self.tmp.name, "nope.sock"),
                                   chunk_tokens=C, timeout=1.0), identity(), BS)
        self.assertEqual(s.match("a", self.tokens(3 * C), 0), 0)
        self.assertEqual(s.stats["lookup_errors"], 1)

    def test_events(self):
        ident = identity()
        toks = self.tokens(3 * C)
        keys = self.store(ident, toks[:2 * C])
        s = self.side(ident)
        self.assertTrue(s.finished("q", toks, 3 * C, list(range(6))))
        save = s.take_plan().saves[0]
        self.assertEqual((len(save.tokens), save.block_ids), (3 * C, list(range(6))))
        s.worker_results({"q": {(0, 0): plan.SaveOutcome(present=2, stored=0, failed=1)}}, {})
        ev = s.take_events()
        self.assertEqual(len(ev), 1)
        kind, hashes, parent, token_ids, size, adapter, medium = ev[0]
        self.assertEqual((kind, hashes, parent, token_ids, size, medium),
                         ("stored", keys, None, toks[:2 * C], C, "cpu"))
        # A lookup that finds an announced chunk gone reports its removal.
        with tw.Client(self.server.socket, 2 << 20, namespaces=[ident.namespace()]) as c:
            self.assertEqual(c.delete([keys[1]]), [True])
        s.match("q2", toks, 0)
        self.assertEqual(s.take_events(), [("removed", [keys[1]], "cpu")])

    def test_event_on_demotion_to_nvme(self):
        ident = identity()
        toks = self.tokens(C + 1)
        keys = self.store(ident, toks[:C])
        s = self.side(ident)
        self.assertTrue(s.finished("d", toks, C, [0, 1]))
        s.worker_results({"d": {(0, 0): plan.SaveOutcome(present=1, stored=1, failed=0)}}, {})
        self.assertEqual([e[0] for e in s.take_events()], ["stored"])
        # After a restart twd's DRAM tier is empty: the chunk is on NVMe only. The side's
        # connection died with the old twd: its first lookup is a miss, the next reconnects.
        self.server.restart()
        hits = [s.match("d2", toks, 0) for _ in range(2)]
        self.assertEqual(hits[-1], C)
        self.assertEqual(s.take_events(), [
            ("removed", [keys[0]], "cpu"),
            ("stored", [keys[0]], None, toks[:C], C, "", "disk")])


class WorkerPath(WithTwd):
    def worker(self, ident, rank=(0, 0)):
        w = WorkerSide(self.settings, ident, rank[0], rank[1], BS)
        caches = {f"model.layers.{i}.self_attn.attn": torch.randn(NUM_BLOCKS, *BLOCK_SHAPE)
                  for i in range(LAYERS)}
        w.register(caches, NUM_BLOCKS)
        self.addCleanup(w.close)
        return w, caches

    def wait_saved(self, w, req_id):
        # The save runs on the worker's I/O thread; close() below would also wait for it.
        import time
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if req_id in w.finished([req_id]):
                return
            time.sleep(0.01)
        self.fail(f"save of {req_id} did not finish")

    def test_save_then_layerwise_load_and_a_failed_chunk(self):
        ident = identity()
        toks = self.tokens(3 * C)
        extras = plan.chunk_extras(3, C)
        wa, ca = self.worker(ident)
        self.assertEqual(wa.block_bytes, 2 * BS * 8 * 4)
        wa.submit_saves([plan.SaveRequest("s", "", toks, extras, [5, 6, 7, 8, 9, 10])])
        self.wait_saved(wa, "s")
        saves, _ = wa.take_outcomes()
        self.assertEqual(saves["s"][(0, 0)], plan.SaveOutcome(present=3, stored=3, failed=0))
        keys = tw.chunk_keys(ident.namespace(), toks, extras)
        with tw.Client(self.server.socket, 2 << 20, namespaces=[ident.namespace()]) as c:
            self.assertEqual(c.exists(keys), ["dram"] * 3)
            self.assertEqual(c.delete([keys[1]]), [True])   # gone after the lookup
        # Another worker (another engine) loads the three chunks into other blocks.
        wb, cb = self.worker(ident)
        before = {n: t.clone() for n, t in cb.items()}
        load = plan.LoadRequest("l", "", toks, extras, 0, [
            plan.LoadChunk(0, 0, [20, 21]), plan.LoadChunk(1, 0, [22, 23]),
            plan.LoadChunk(2, 1, [25])])
        wb.start_load([load])
        names = sorted(cb, key=lambda n: int(n.split(".")[2]))
        for i, name in enumerate(names):
            wb.wait_layer(name)
            # Layer i is in place when wait_layer returns (and no later layer need be).
            self.assertTrue(torch.equal(cb[name][[20, 21]], ca[name][[5, 6]]))
            self.assertTrue(torch.equal(cb[name][25], ca[name][10]))
        wb.end_step()
        for name in names:
            # The failed chunk's blocks were never written.
            self.assertTrue(torch.equal(cb[name][[22, 23]], before[name][[22, 23]]))
        self.assertEqual(wb.take_load_errors(), {22, 23})
        self.assertEqual(wb.take_load_errors(), set())
        _, loads = wb.take_outcomes()
        self.assertEqual(loads["l"][(0, 0)], plan.LoadOutcome(loaded=2, failed=1))
        # A second save of the same request stores only the missing chunk.
        wa.submit_saves([plan.SaveRequest("s2", "", toks, extras, [5, 6, 7, 8, 9, 10])])
        self.wait_saved(wa, "s2")
        saves, _ = wa.take_outcomes()
        self.assertEqual(saves["s2"][(0, 0)], plan.SaveOutcome(present=3, stored=1, failed=0))

    def test_ranks_and_adapters_are_separate_chains(self):
        toks = self.tokens(2 * C)
        extras = plan.chunk_extras(2, C)
        ident = identity(tp_size=2)
        w1, _ = self.worker(ident, rank=(1, 0))
        w1.submit_saves([plan.SaveRequest("x", "lora-a", toks, extras, [1, 2, 3, 4])])
        self.wait_saved(w1, "x")
        s = SchedulerSide(self.settings, ident, BS)
        self.addCleanup(s.close)
        self.assertEqual(s.match("x", toks + [0], 0, adapter="lora-a"), 0)  # rank 0 missing
        w0, _ = self.worker(ident, rank=(0, 0))
        w0.submit_saves([plan.SaveRequest("x", "lora-a", toks, extras, [1, 2, 3, 4])])
        self.wait_saved(w0, "x")
        self.assertEqual(s.match("x", toks + [0], 0, adapter="lora-a"), 2 * C)
        self.assertEqual(s.match("y", toks + [0], 0), 0)   # no adapter: another chain

    def test_twd_down_fails_loads_and_finishes_saves(self):
        ident = identity()
        settings = Settings(socket=os.path.join(self.tmp.name, "nope.sock"), chunk_tokens=C,
                            arena_size=8 << 20, timeout=1.0)
        w = WorkerSide(settings, ident, 0, 0, BS)
        caches = {f"l.{i}": torch.zeros(NUM_BLOCKS, *BLOCK_SHAPE) for i in range(LAYERS)}
        w.register(caches, NUM_BLOCKS)
        self.addCleanup(w.close)
        toks = self.tokens(C)
        w.start_load([plan.LoadRequest("l", "", toks, [b""], 0, [plan.LoadChunk(0, 0, [3, 4])])])
        for name in caches:
            w.wait_layer(name)
        w.end_step()
        self.assertEqual(w.take_load_errors(), {3, 4})
        w.submit_saves([plan.SaveRequest("s", "", toks, [b""], [3, 4])])
        self.wait_saved(w, "s")   # blocks are given back even though nothing was saved


if __name__ == "__main__":
    unittest.main()
