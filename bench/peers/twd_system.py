"""twd through its Python client (client/python/tokenwarehouse over libtwclient), the same
language and process layout as the Python peers: each worker process has its own
connection and shared-memory arena; puts go from the arena (durability `disk`: acknowledged
once on NVMe), gets land in the arena. Chunk i is chunk i of one chain of 256-token chunks
(keys from tw.chunk_keys), so a lookup is twd's own longest-prefix lookup of the chain."""

import os
import time

import numpy as np

from common import ServerSystem, Unavailable, stamped

CHUNK_TOKENS = 256
NS = {"model": "peers-bench", "model_revision": "1", "tokenizer": "t", "kv_dtype": "bf16",
      "kv_layout": "bench", "parallel": "tp=0/1,pp=0/1", "adapter": "", "tenant": "",
      "chunk_tokens": str(CHUNK_TOKENS)}


def _size(n, least_mib):
    return f"{max(least_mib, -(-n // (1 << 20)))}MiB"


class TwdSystem(ServerSystem):
    name = "twd"
    label = "twd"
    put_kind = "durability disk (on NVMe when acknowledged)"
    restart_kind = "twd stopped (SIGTERM) and started again on its data directory"

    def __init__(self, binary, durability="disk"):
        self.binary = binary
        self.durability = durability
        self.proc = None
        self.workdir = None
        self.capacity = 0

    def version(self):
        try:
            import subprocess
            out = subprocess.run([self.binary, "--version"], capture_output=True, text=True,
                                 timeout=10)
            return (out.stdout or out.stderr).strip().splitlines()[0]
        except Exception:  # the version is a label, not a requirement
            return "this tree"

    def check(self):
        if not os.access(self.binary, os.X_OK):
            raise Unavailable(f"twd binary {self.binary} is missing (build target twd)")
        try:
            import tokenwarehouse as tw
            tw.chunk_keys(NS, list(range(CHUNK_TOKENS)))
        except Exception as e:
            raise Unavailable(f"tokenwarehouse client: {type(e).__name__}: {e}") from None

    def start(self, workdir, capacity):
        self.workdir, self.capacity = workdir, capacity
        data = os.path.join(workdir, "data")
        os.makedirs(data, exist_ok=True)
        self.socket = os.path.join(workdir, "twd.sock")
        argv = [self.binary, "--socket", self.socket, "--admin-socket",
                os.path.join(workdir, "twd-admin.sock"), "--data-dir", data,
                "--dram-capacity", _size(capacity * 5 // 4, 64),
                # Room for the data several times over: a 2 MiB disk put wrote about twice its
                # bytes here, and a full NVMe tier would reclaim (evict) the oldest chunks.
                "--nvme-capacity", _size(capacity * 4 + (512 << 20), 256), "--metrics-address", "127.0.0.1:0",
                "--log-level", "warn"]
        self.spawn(argv, os.path.join(workdir, "twd.log"), 60, "twd")

    def client_spec(self):
        return dict(super().client_spec(), socket=self.socket, durability=self.durability)


class Client:
    def __init__(self, spec, chunk_bytes, proc_index, n_chunks):
        import tokenwarehouse as tw
        self.size = chunk_bytes
        # Each process stores its share (ids first..) as a chain of its own (twd accepts a
        # chunk whose parent is stored or the namespace): distinct tokens per process.
        self.first = spec.get("first", 0)
        base = 1 + proc_index * (CHUNK_TOKENS * n_chunks + 1)
        tokens = list(range(base, base + CHUNK_TOKENS * (n_chunks - self.first)))
        self.tokens = tokens
        self.keys = [None] * self.first + tw.chunk_keys(NS, tokens)
        deadline = time.monotonic() + 60
        while True:
            try:
                self.c = tw.Client(spec["socket"], 2 * chunk_bytes, namespaces=[NS],
                                   timeout=120)
                break
            except tw.TokenWarehouseError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.01)
        self.durability = spec["durability"]
        arena = np.frombuffer(self.c.arena, dtype=np.uint8)
        self.src = arena[:chunk_bytes]
        self.dst = arena[chunk_bytes:2 * chunk_bytes]
        self.src[:] = 7

    def put(self, cid):
        j = cid - self.first
        parent = self.keys[cid - 1] if j else self.c.namespace_digests[0]
        r = self.c.put(self.keys[cid], parent, self.tokens[j * CHUNK_TOKENS:(j + 1) * CHUNK_TOKENS],
                       arena_offset=0, length=self.size, durability=self.durability)
        if r not in ("stored", "exists"):
            raise RuntimeError(f"twd put of chunk {cid}: {r}")

    def finish_puts(self):
        pass

    def get(self, cid):
        r = self.c.get(self.keys[cid], arena_offset=self.size, arena_length=self.size)
        return r.miss == "none" and r.bytes == self.size and stamped(self.dst, cid)

    def lookup_keys(self, cids):
        return [self.keys[i] for i in cids]

    def lookup(self, keys):
        # The chain's longest stored prefix, as an inference engine asks for it.
        return self.c.lookup(keys).prefix

    def close(self):
        self.c.close()

