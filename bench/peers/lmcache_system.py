"""LMCache (the `lmcache` package) through its storage manager
(lmcache.v1.storage_backend.storage_manager.StorageManager), the layer under its vLLM
connector, with CPU tensors: LMCache finds no GPU here and runs its CPU code paths. Two
configurations, each in the worker's own process (LMCache is a library inside the inference
process, not a service):

  lmcache-cpu   its CPU-memory backend (local_cpu, the "hot" tier its users run)
  lmcache-disk  its local-disk backend alone (local_cpu off): a file per chunk, written by its
                own threads with buffered writes and no fsync

A put allocates a memory object from LMCache's allocator, copies the chunk into it (what its
connector does from the GPU) and hands it to batched_put; for the disk backend the put
phase ends when every chunk is in its disk index (the file written). A get is batched_get,
copied into the worker's tensor (from the backend of the configuration, as
LMCache's engine names the backend that its lookup found). The lookup is batched_contains of the 512 keys (its
prefix-hit count). Chunks are bf16 tensors of shape (layers, 2, 256, 8, 128): 1 MiB a layer,
32 layers for a 32 MiB chunk."""

import os
import time

from common import System, Unavailable, stamped


def _shape(chunk_bytes):
    per_token_layer = 2 * 8 * 128 * 2  # K and V, 8 heads of 128, bf16
    if chunk_bytes % (256 * per_token_layer) == 0:
        return (chunk_bytes // (256 * per_token_layer), 2, 256, 8, 128)
    if chunk_bytes % per_token_layer:
        raise ValueError(f"LMCache chunks here are multiples of {per_token_layer} bytes")
    return (1, 2, chunk_bytes // per_token_layer, 8, 128)


class LMCacheSystem(System):
    in_process = True

    def __init__(self, disk):
        self.disk = disk
        self.name = "lmcache-disk" if disk else "lmcache-cpu"
        self.label = "LMCache disk" if disk else "LMCache CPU"
        self.put_kind = ("its local-disk backend: buffered write, no fsync, async" if disk
                         else "its CPU-memory backend (in the process)")
        self.restart_kind = ("a new process (a new StorageManager) over the same directory"
                             if disk else "a new process (a new StorageManager)")

    def version(self):
        try:
            from importlib.metadata import version
            import torch
            return f"lmcache {version('lmcache')} (torch {torch.__version__})"
        except Exception:
            return "?"

    def check(self):
        os.environ.setdefault("LMCACHE_LOG_LEVEL", "WARNING")
        try:
            from lmcache.v1.storage_backend.storage_manager import StorageManager  # noqa
        except Exception as e:
            raise Unavailable(f"import lmcache: {type(e).__name__}: {e}") from None

    def start(self, workdir, capacity):
        self.dir = os.path.join(workdir, "lmcache")
        os.makedirs(self.dir, exist_ok=True)
        self.capacity = capacity

    def client_spec(self):
        return dict(super().client_spec(), disk=self.disk, dir=self.dir,
                    capacity=self.capacity)


class Client:
    def __init__(self, spec, chunk_bytes, proc_index, n_chunks):
        os.environ.setdefault("LMCACHE_LOG_LEVEL", "WARNING")
        import torch
        from lmcache.utils import CacheEngineKey
        from lmcache.v1.config import LMCacheEngineConfig
        from lmcache.v1.event_manager import EventManager
        from lmcache.v1.memory_management import MemoryFormat
        from lmcache.v1.metadata import LMCacheMetadata
        from lmcache.v1.storage_backend.storage_manager import StorageManager
        self.torch, self.fmt = torch, MemoryFormat.KV_2LTD
        # One copy thread: torch's OpenMP pair on 2 shared CPUs made each copy of a chunk into
        # LMCache's memory object 10-25x slower here (2 MiB: 19 ms against 0.76 ms).
        torch.set_num_threads(1)
        self.disk = spec["disk"]
        self.size = chunk_bytes
        self.shape = torch.Size(_shape(chunk_bytes))
        gib = 1 << 30
        # Each process's allocator holds its share of the data set (and a chunk's slack).
        cpu_gb = (spec["capacity"] + 2 * chunk_bytes) * 1.1 / gib + 0.05
        disk_dir = os.path.join(spec["dir"], f"p{proc_index}")
        if self.disk:
            os.makedirs(disk_dir, exist_ok=True)
        self.keys = [CacheEngineKey("peers-bench", 1, 0, i, torch.bfloat16)
                     for i in range(n_chunks)]
        self.src_t = torch.full(self.shape, 1.0, dtype=torch.bfloat16)
        self.dst_t = torch.zeros(self.shape, dtype=torch.bfloat16)
        self.src = self.src_t.view(-1).view(torch.uint8).numpy()
        self.dst = self.dst_t.view(-1).view(torch.uint8).numpy()
        self.t_open = time.monotonic()
        cfg = LMCacheEngineConfig.from_defaults(
            chunk_size=self.shape[2], local_cpu=not self.disk, max_local_cpu_size=cpu_gb,
            local_disk=("file://" + disk_dir + "/") if self.disk else None,
            max_local_disk_size=(spec["capacity"] * 2 / gib + 0.1) if self.disk else 0.0)
        md = LMCacheMetadata(model_name="peers-bench", world_size=1, local_world_size=1,
                             worker_id=0, local_worker_id=0, kv_dtype=torch.bfloat16,
                             kv_shape=tuple(self.shape), chunk_size=self.shape[2])
        self.sm = StorageManager(cfg, md, EventManager())
        self.backend = "LocalDiskBackend" if self.disk else "LocalCPUBackend"
        self.pending = []

    def put(self, cid):
        obj = self.sm.allocate(self.shape, self.torch.bfloat16, self.fmt)
        if obj is None:
            raise RuntimeError("LMCache could not allocate a memory object")
        obj.tensor.copy_(self.src_t)
        self.sm.batched_put([self.keys[cid]], [obj])
        self.pending.append(self.keys[cid])

    def finish_puts(self):
        deadline = time.monotonic() + 600
        for k in self.pending:
            while self.sm.contains(k, [self.backend]) is None:
                if time.monotonic() > deadline:
                    raise RuntimeError("LMCache did not finish its puts in 600 s")
                time.sleep(0.001)
        self.pending = []

    def get(self, cid):
        # As its cache engine does: the backend that holds the chunk is named (batched_get
        # without a location stops at the first backend, the CPU one, even when it misses).
        objs = self.sm.batched_get([self.keys[cid]], location=self.backend)
        obj = objs[0] if objs else None
        if obj is None:
            return False
        self.dst_t.copy_(obj.tensor.view(self.shape))
        obj.ref_count_down()
        return stamped(self.dst, cid)

    def lookup_keys(self, cids):
        return [self.keys[i] for i in cids]

    def lookup(self, keys):
        return self.sm.batched_contains(keys)[0]

    def close(self):
        self.sm.close()
