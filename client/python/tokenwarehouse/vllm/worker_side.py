"""The worker half of the vLLM connector: KV blocks <-> the shared-memory arena <-> twd.

Torch only (no vLLM import). One instance per worker process (one TP/PP rank). KV tensors
on a GPU are copied through the arena with plain torch copies (the GPU transfer queues of
docs/gpu.md are not used yet); on the CPU, arena and blocks meet in one copy each way.

Layout: `register()` takes vLLM's per-layer KV cache tensors as the attention backend laid
them out. Dimension 0 indexes blocks (vLLM's standard per-layer view); a block is whatever
the backend keeps under one index there, copied as raw bytes, so the connector never
assumes an order of K/V, heads or tokens. The connector puts the backend's layout name and
the block shape into the namespace (`kv_layout`), so bytes only ever meet an engine with the
same layout. A chunk's value has one segment per layer of this rank, each segment the
chunk's blocks back to back (`blocks_per_chunk × block_bytes`).

Arena: the first half holds two load buffers, the second half the chunks of a save.

Threads: the engine's thread calls start_load/wait_layer/end_step/finished/take_*; one I/O
thread talks to twd (loads before saves: they are on the time-to-first-token path). A step's
load runs layer by layer: the I/O thread fetches layer l of every loaded chunk into a free
load buffer while the engine copies layer l-1 from the other into its cache, and
`wait_layer(l)` returns once layer l is in place (layer l before l+1). A chunk that misses
(evicted since the lookup, corrupt, past its deadline, twd gone) is dropped for every
later layer and its blocks are reported by `take_load_errors()`, so vLLM recomputes them:
never wrong KV, never a failed request. Saves copy a finished request's blocks (vLLM keeps
them allocated until `finished()` reports the request) into the arena and put them, after
one EXISTS that skips chunks already stored. `_lock` guards the outcome and stats state the
two threads share; the client and the arena regions are used by the I/O thread alone,
except the load buffers, which pass between the threads through `_ready` / the job's `free`.
"""

import collections
import logging
import queue
import re
import threading
import time

from .. import client as twclient
from .._native import TokenWarehouseError
from ..keys import chunk_keys
from . import plan

log = logging.getLogger("vllm.tokenwarehouse")


def _layer_order(names):
    """Layer names in model order (the first integer in the name), else as given."""
    def key(item):
        i, name = item
        m = re.search(r"(\d+)", name)
        return (int(m.group(1)) if m else i, i)
    return [name for _, name in sorted(enumerate(names), key=key)]


class _LoadJob:
    def __init__(self, requests, units):
        self.requests = requests      # [LoadRequest]
        self.units = units            # [(layer, [(req_i, LoadChunk, nbytes, rel_off)])]
        self.consumed = 0
        self.failed = set()           # (req_i, chunk index)
        self.failed_lock = threading.Lock()
        self.done = threading.Event()
        self.free = threading.Semaphore(2)   # the two load buffers
        self.bytes = 0


class WorkerSide:
    def __init__(self, settings, identity, tp_rank, pp_rank, block_size,
                 client_cls=twclient.Client):
        self.settings = settings
        self.identity = identity
        self.rank = (tp_rank, pp_rank)
        self.block_size = block_size
        self.chunk_tokens = identity.chunk_tokens
        self.bpc = self.chunk_tokens // block_size
        self._client_cls = client_cls
        self._client = None
        self._adapters = [""]
        self._layers = []
        self._blocks = {}             # layer name -> tensor indexed by block on dim 0
        self._block_shape = None
        self.block_bytes = 0
        self._jobs = collections.deque()
        self._cv = threading.Condition()
        self._stopping = False
        self._thread = None
        self._job = None              # the step's load job (engine thread)
        self._ready = queue.Queue()
        self._lock = threading.Lock()
        self._load_errors = set()
        self._submitted = set()       # req ids whose save is queued or running
        self._saved = set()           # req ids whose save finished
        self._seen_finished = set()   # of those, the ones vLLM has named as finished
        self._save_outcomes = {}
        self._load_outcomes = {}
        self._stats = collections.Counter()
        self._down_logged = False

    # -- registration ------------------------------------------------------------------
    def register(self, kv_caches, num_blocks):
        """kv_caches: {layer name: tensor}; num_blocks: vLLM's block count."""
        import torch
        if not kv_caches:
            raise ValueError("register_kv_caches: no KV cache tensors")
        self._layers = _layer_order(list(kv_caches))
        for name in self._layers:
            t = kv_caches[name]
            if t.shape[0] != num_blocks:
                if t.shape[0] % num_blocks:
                    raise ValueError(f"{name}: dimension 0 ({t.shape[0]}) is not a multiple "
                                     f"of vLLM's {num_blocks} blocks")
                t = t.unflatten(0, (num_blocks, t.shape[0] // num_blocks))
            shape = tuple(t.shape[1:])
            if self._block_shape is None:
                self._block_shape, self._dtype = shape, t.dtype
            elif shape != self._block_shape or t.dtype != self._dtype:
                raise ValueError(f"{name}: block shape {shape} {t.dtype} differs from the "
                                 f"first layer's {self._block_shape} {self._dtype}")
            self._blocks[name] = t
        self._elsize = torch.empty((), dtype=self._dtype).element_size()
        n = 1
        for d in self._block_shape:
            n *= d
        self.block_bytes = n * self._elsize
        self.segment_bytes = self.bpc * self.block_bytes
        self.value_bytes = self.segment_bytes * len(self._layers)
        # Connect now: making and pre-faulting the arena belongs to engine start-up, not to
        # the first request's time to first token. twd away: the first job retries.
        self._connect("")
        self._thread = threading.Thread(target=self._run, name="tokenwarehouse-io",
                                        daemon=True)
        self._thread.start()

    @property
    def block_shape(self):
        return self._block_shape

    @property
    def dtype(self):
        return self._dtype

    def close(self):
        """Finishes queued saves (vLLM holds their blocks), then closes the connection."""
        with self._cv:
            self._stopping = True
            self._cv.notify_all()
        if self._thread is not None:
            self._thread.join()
        if self._client is not None:
            self._client.close()
            self._client = None

    # -- connection (I/O thread) -------------------------------------------------------------
    def _connect(self, adapter):
        if adapter not in self._adapters:
            self._adapters.append(adapter)
            if self._client is not None:
                self._client.close()
                self._client = None
        if self._client is None:
            try:
                namespaces = [self.identity.namespace(*self.rank, a) for a in self._adapters]
                self._client = self._client_cls(
                    self.settings.socket, self.settings.arena_size, namespaces=namespaces,
                    timeout=self.settings.timeout, name="tokenwarehouse-vllm-worker")
                self._down_logged = False
            except (TokenWarehouseError, OSError) as e:
                self._unavailable(e)
                return None
        return self._client

    def _unavailable(self, err):
        if not self._down_logged:
            log.warning("tokenwarehouse: twd at %s unavailable (%s); loads are recomputed "
                        "and saves skipped until it is back", self.settings.socket, err)
            self._down_logged = True
        if self._client is not None:
            try:
                self._client.close()
            except Exception:  # already broken
                pass
            self._client = None

    def _keys(self, adapter, tokens, extras):
        return chunk_keys(self.identity.namespace(*self.rank, adapter), tokens, extras)

    # -- loads (engine thread) ---------------------------------------------------------------
    def start_load(self, loads):
        """Queues the step's loads ahead of any save; wait_layer() consumes them."""
        if not loads or not self._layers:
            return
        buf = self.settings.arena_size // 4
        units = []
        for layer in range(len(self._layers)):
            group, used = [], 0
            for ri, r in enumerate(loads):
                for c in r.chunks:
                    nbytes = len(c.block_ids) * self.block_bytes
                    if nbytes > buf:
                        raise ValueError(f"arena_size {self.settings.arena_size} is too "
                                         f"small: a chunk's layer ({nbytes} bytes) needs an "
                                         f"arena of at least {4 * nbytes} bytes")
                    if used + nbytes > buf:
                        units.append((layer, group))
                        group, used = [], 0
                    group.append((ri, c, nbytes, used))
                    used += nbytes
            units.append((layer, group))
        job = _LoadJob(loads, units)
        self._job = job
        with self._cv:
            self._jobs.appendleft(("load", job))
            self._cv.notify_all()

    def wait_layer(self, layer_name):
        """Returns once this layer's loaded blocks are in vLLM's cache."""
        job = self._job
        if job is None:
            return
        try:
            layer = self._layers.index(layer_name)
        except ValueError:
            return
        self._consume(job, layer)

    def end_step(self):
        """After the forward: completes the step's load (layers the model never waited
        for) and records its outcome."""
        job = self._job
        if job is None:
            return
        self._consume(job, len(self._layers) - 1)

    def _consume(self, job, last_layer):
        import torch
        while job.consumed < len(job.units) and job.units[job.consumed][0] <= last_layer:
            layer, items = job.units[job.consumed]
            base, fetched = self._ready.get()
            dst = self._blocks[self._layers[layer]]
            arena = self._client.arena if self._client is not None else None
            for ri, c, nbytes, rel in items:
                if (ri, c.index) not in fetched:
                    continue
                src = torch.frombuffer(arena, dtype=self._dtype,
                                       count=nbytes // self._elsize, offset=base + rel)
                src = src.view(len(c.block_ids), *self._block_shape)
                if dst.device.type != "cpu":
                    src = src.to(dst.device)  # a plain host-to-device copy, not the GPU queues
                dst.index_copy_(0, torch.tensor(c.block_ids, dtype=torch.long,
                                                device=dst.device), src)
            job.free.release()
            job.consumed += 1
        if job.consumed == len(job.units):
            self._finish_load(job)

    def _finish_load(self, job):
        self._job = None
        errors = set()
        with self._lock:
            for ri, r in enumerate(job.requests):
                failed = [c for c in r.chunks if (ri, c.index) in job.failed]
                for c in failed:
                    errors.update(c.block_ids)
                self._load_outcomes.setdefault(r.req_id, {})[self.rank] = plan.LoadOutcome(
                    len(r.chunks) - len(failed), len(failed))
                self._stats["loaded_chunks"] += len(r.chunks) - len(failed)
                self._stats["load_failed_chunks"] += len(failed)
            self._stats["loaded_bytes"] += job.bytes
            self._load_errors |= errors
        job.done.set()

    def take_load_errors(self):
        with self._lock:
            out, self._load_errors = self._load_errors, set()
        return out

    # -- saves (engine thread) ---------------------------------------------------------------
    def submit_saves(self, saves):
        if not saves:
            return
        with self._lock:
            self._submitted.update(s.req_id for s in saves)
        with self._cv:
            for s in saves:
                self._jobs.append(("save", s))
            self._cv.notify_all()

    def finished(self, finished_req_ids):
        """Requests whose save is done; each was first named in finished_req_ids."""
        with self._lock:
            self._seen_finished |= set(finished_req_ids or ()) & self._submitted
            done = self._saved & self._seen_finished
            self._saved -= done
            self._seen_finished -= done
            self._submitted -= done
        return done

    def take_outcomes(self):
        with self._lock:
            saves, self._save_outcomes = self._save_outcomes, {}
            loads, self._load_outcomes = self._load_outcomes, {}
        return saves, loads

    def take_stats(self):
        with self._lock:
            out, self._stats = dict(self._stats), collections.Counter()
        return out

    # -- the I/O thread ------------------------------------------------------------------------
    def _run(self):
        while True:
            with self._cv:
                while not self._jobs and not self._stopping:
                    self._cv.wait()
                if not self._jobs:
                    return
                kind, job = self._jobs.popleft()
            if kind == "load":
                self._do_load(job)
            else:
                self._do_save(job)

    def _do_load(self, job):
        start = time.monotonic()
        produced = [0]
        try:
            self._fetch(job, produced)
        except Exception:  # a bug must cost a recompute, not a hung engine
            log.exception("tokenwarehouse: load failed; recomputing")
            job.failed.update((ri, c.index) for ri, r in enumerate(job.requests)
                              for c in r.chunks)
            for _ in range(produced[0], len(job.units)):
                job.free.acquire()
                self._ready.put((0, set()))
        # The engine thread still copies out of the load buffers: no reconnect (which
        # would unmap the arena) before it is done.
        job.done.wait()
        with self._lock:
            self._stats["load_seconds"] += time.monotonic() - start

    def _fetch(self, job, produced):
        keys, ns = [], []
        for r in job.requests:
            self._connect(r.adapter)
            keys.append(self._keys(r.adapter, r.tokens, r.extras) if self._client else None)
            ns.append(self._adapters.index(r.adapter))
        client = self._client
        base_of = [0, self.settings.arena_size // 4]
        for n, (layer, items) in enumerate(job.units):
            job.free.acquire()
            base = base_of[n % 2]
            fetched = set()
            by_req = collections.defaultdict(list)
            for ri, c, nbytes, rel in items:
                if (ri, c.index) not in job.failed:
                    by_req[ri].append((c, nbytes, rel))
            for ri, chunk_items in by_req.items():
                r = job.requests[ri]
                if client is None or keys[ri] is None:
                    job.failed.update((ri, c.index) for c, _, _ in chunk_items)
                    continue
                get_items = [(keys[ri][c.index], None, None,
                              [twclient.Scatter(layer, c.first_block * self.block_bytes,
                                                nbytes, base + rel)])
                             for c, nbytes, rel in chunk_items]
                try:
                    results = client.get_batch(get_items, namespace=ns[ri], lease=r.lease,
                                               timeout=self.settings.timeout)
                except (TokenWarehouseError, OSError) as e:
                    log.warning("tokenwarehouse: load of %s failed (%s): recomputing",
                                r.req_id, e)
                    job.failed.update((ri, c.index) for c, _, _ in chunk_items)
                    continue
                for (c, nbytes, _), res in zip(chunk_items, results):
                    if res.miss == "none" and res.bytes == nbytes:
                        fetched.add((ri, c.index))
                        job.bytes += nbytes
                    else:
                        job.failed.add((ri, c.index))
            self._ready.put((base, fetched))
            produced[0] += 1
        leases = [r.lease for r in job.requests if r.lease]
        if client is not None and leases:
            try:
                client.release_leases(leases)
            except (TokenWarehouseError, OSError):
                pass  # they expire on their own

    def _do_save(self, s):
        n = len(s.tokens) // self.chunk_tokens
        stored = failed = present = 0
        try:
            client = self._connect(s.adapter)
            if client is None:
                failed = n
            elif self.value_bytes > self.settings.arena_size // 2:
                log.warning("tokenwarehouse: a chunk (%d bytes) does not fit half the arena "
                            "(%d bytes): nothing is saved; raise arena_size",
                            self.value_bytes, self.settings.arena_size)
                failed = n
            else:
                stored, failed, present = self._save_chunks(client, s, n)
        except (TokenWarehouseError, OSError) as e:
            self._unavailable(e)
            failed = n - stored
        with self._lock:
            self._save_outcomes.setdefault(s.req_id, {})[self.rank] = plan.SaveOutcome(
                present, stored, failed)
            self._stats["saved_chunks"] += stored
            self._stats["saved_bytes"] += stored * self.value_bytes
            self._stats["save_failed_chunks"] += failed
            self._saved.add(s.req_id)

    def _save_chunks(self, client, s, n):
        import torch
        ns = self._adapters.index(s.adapter)
        keys = self._keys(s.adapter, s.tokens, s.extras)
        tiers = client.exists(keys, namespace=ns, timeout=self.settings.timeout)
        have = [t != "none" for t in tiers]
        region = self.settings.arena_size // 2
        per_batch = max(1, region // self.value_bytes)
        todo = [j for j in range(n) if not have[j]]
        arena = client.arena
        digest = client.namespace_digests[ns]
        C, L, seg = self.chunk_tokens, len(self._layers), self.segment_bytes
        stored = failed = 0
        for b in range(0, len(todo), per_batch):
            batch = todo[b:b + per_batch]
            items = []
            for k, j in enumerate(batch):
                off = region + k * self.value_bytes
                ids = torch.tensor(s.block_ids[j * self.bpc:(j + 1) * self.bpc],
                                   dtype=torch.long)
                for li, name in enumerate(self._layers):
                    dst = torch.frombuffer(arena, dtype=self._dtype, count=seg // self._elsize,
                                           offset=off + li * seg)
                    dst = dst.view(self.bpc, *self._block_shape)
                    blocks = self._blocks[name]
                    if blocks.device.type == "cpu":
                        torch.index_select(blocks, 0, ids, out=dst)
                    else:
                        dst.copy_(torch.index_select(blocks, 0, ids.to(blocks.device)))
                items.append(dict(
                    key=keys[j], parent=keys[j - 1] if j else digest,
                    tokens=s.tokens[j * C:(j + 1) * C], extra=s.extras[j],
                    segment_sizes=[seg] * L,
                    scatter=[twclient.Scatter(li, 0, seg, off + li * seg) for li in range(L)]))
            results = client.put_batch(items, namespace=ns, durability=self.settings.durability,
                                       timeout=self.settings.timeout)
            for j, res in zip(batch, results):
                if res in ("stored", "exists"):
                    have[j] = True
                    stored += res == "stored"
                else:
                    failed += 1
                    log.info("tokenwarehouse: put of chunk %d of %s: %s", j, s.req_id, res)
        present = 0
        while present < n and have[present]:
            present += 1
        return stored, failed, present
