"""The scheduler half of the vLLM connector: lookups, load plans, save plans, KV events.

Pure Python over `tokenwarehouse.Client` (no vLLM import), so it is tested against the real
twd without an engine. The connector calls it with plain values taken from vLLM's Request.

- `match()` answers vLLM's get_num_new_matched_tokens from ONE lookup that names every rank's
  namespace (tensor and pipeline parallel: the prefix must be stored for all of them) and
  takes a read lease, so the chunks stay until the workers read them. Asked again for the
  same request, it releases the earlier lease first. twd unreachable: 0 tokens, never an error.
- `allocated()` turns a hit into a LoadRequest for the step's metadata (`take_plan()`); the
  lease passes to the workers, which release it after loading.
- `finished()` plans the save of a finished request's full chunks; the blocks stay allocated
  (vLLM's delay_free) until every worker reports the save done.
- `worker_results()` takes the workers' outcomes; once every rank has saved a request, the
  chunks all ranks hold are reported as BlockStored events (medium "cpu": the chunk is in
  twd's DRAM tier). A later lookup that finds an announced chunk moved to NVMe reports
  BlockRemoved("cpu") + BlockStored("disk"); one that finds it gone reports BlockRemoved.
  Events are plain tuples (`take_events()`); the connector turns them into vLLM's classes.

Threading: vLLM calls the scheduler connector from its one scheduler thread; this class is
not thread-safe and needs not be. Lifetime: close() releases leases and the connection.
"""

import collections
import logging

from .. import client as twclient
from .._native import TokenWarehouseError
from ..keys import chunk_keys
from . import plan

log = logging.getLogger("vllm.tokenwarehouse")

# A lookup needs no arena; libtwclient rounds this up to its minimum.
_LOOKUP_ARENA = 2 << 20
_MAX_ANNOUNCED = 1 << 17


class _Pending:
    __slots__ = ("adapter", "tokens", "extras", "hit", "lease", "num_computed", "tiers",
                 "lead_keys")


class SchedulerSide:
    def __init__(self, settings, identity, block_size, client_cls=twclient.Client):
        self.settings = settings
        self.identity = identity
        self.block_size = block_size
        self.chunk_tokens = identity.chunk_tokens
        if self.chunk_tokens % block_size:
            raise ValueError(f"chunk_tokens={self.chunk_tokens} is not a multiple of the "
                             f"block size {block_size}")
        self._client_cls = client_cls
        self._clients = {}          # adapter -> Client declaring every rank's namespace
        self._down_logged = False
        self._pending = {}          # req_id -> _Pending (looked up, maybe leased)
        self._loads = []            # LoadRequests for the next step
        self._saves = []            # SaveRequests for the next step
        self._saving = {}           # req_id -> (SaveRequest, {rank: SaveOutcome})
        self._load_results = {}     # req_id -> {rank: LoadOutcome}
        self._request_stats = {}    # req_id -> dict for kv_transfer_params
        self._announced = collections.OrderedDict()  # event hash -> medium
        self._events = []
        self.stats = collections.Counter()

    # -- connections ----------------------------------------------------------------------
    def _client(self, adapter):
        c = self._clients.get(adapter)
        if c is None:
            namespaces = [self.identity.namespace(t, p, adapter)
                          for t, p in self.identity.ranks()]
            c = self._client_cls(self.settings.socket, _LOOKUP_ARENA, namespaces=namespaces,
                                 timeout=self.settings.timeout, name="tokenwarehouse-vllm")
            self._clients[adapter] = c
            self._down_logged = False
        return c

    def _drop_client(self, adapter, err):
        if not self._down_logged:
            log.warning("tokenwarehouse: twd at %s unavailable (%s); requests compute their "
                        "prefill until it is back", self.settings.socket, err)
            self._down_logged = True
        c = self._clients.pop(adapter, None)
        if c is not None:
            try:
                c.close()
            except Exception:  # the connection is already gone
                pass

    def close(self):
        for p in list(self._pending.values()):
            self._release(p)
        self._pending.clear()
        for adapter in list(self._clients):
            self._clients.pop(adapter).close()

    def _release(self, p):
        if p.lease:
            try:
                self._client(p.adapter).release_leases([p.lease])
            except (TokenWarehouseError, OSError):
                pass  # leases expire on their own
            p.lease = 0

    # -- lookup -----------------------------------------------------------------------------
    def _keys(self, tokens, extras, adapter):
        return [chunk_keys(self.identity.namespace(t, p, adapter), tokens, extras)
                for t, p in self.identity.ranks()]

    def match(self, req_id, tokens, num_computed, adapter="", cache_salt=None,
              mm_features=()):
        """Tokens beyond num_computed that the warehouse can supply (vLLM's
        get_num_new_matched_tokens). Always leaves the last token to compute."""
        old = self._pending.pop(req_id, None)
        if old is not None:
            self._release(old)
        if not self.settings.load:
            return 0
        C = self.chunk_tokens
        total = len(tokens)
        n_chunks = total // C
        if n_chunks == 0 or num_computed >= n_chunks * C:
            return 0
        tokens = list(tokens[:n_chunks * C])
        extras = plan.chunk_extras(n_chunks, C, cache_salt, mm_features)
        chains = self._keys(tokens, extras, adapter)
        try:
            c = self._client(adapter)
            found = c.lookup_ranks(list(enumerate(chains)), lease=True,
                                   timeout=self.settings.timeout)
        except (TokenWarehouseError, OSError) as e:
            self._drop_client(adapter, e)
            self.stats["lookup_errors"] += 1
            return 0
        self.stats["lookups"] += 1
        self.stats["lookup_chunks"] += n_chunks
        self._observe(chains[0], found, tokens, adapter)
        hit = found.prefix
        hit_tokens = hit * C
        ext = hit_tokens - num_computed
        if num_computed + ext >= total:
            ext = total - 1 - num_computed  # vLLM computes at least the last token
        p = _Pending()
        p.adapter, p.tokens, p.extras, p.hit = adapter, tokens[:hit_tokens], extras[:hit], hit
        p.lease, p.num_computed, p.tiers = found.lease, num_computed, found.tiers[:hit]
        p.lead_keys = chains[0][:hit]
        self._request_stats[req_id] = {"lookup_chunks": n_chunks, "hit_chunks": hit,
                                       "hit_tiers": dict(collections.Counter(p.tiers)),
                                       "loaded_chunks": 0, "failed_chunks": 0}
        if ext <= 0:
            self._release(p)
            return 0
        self._pending[req_id] = p
        return ext

    # -- load plan --------------------------------------------------------------------------
    def allocated(self, req_id, block_ids, num_external):
        """vLLM's update_state_after_alloc: the hit becomes a load of the step's plan."""
        p = self._pending.pop(req_id, None)
        if p is None:
            return
        if num_external <= 0:
            self._release(p)
            return
        chunks = plan.load_chunks(p.num_computed, p.hit, self.chunk_tokens, self.block_size,
                                  block_ids)
        if not chunks:
            self._release(p)
            return
        self._loads.append(plan.LoadRequest(req_id, p.adapter, p.tokens, p.extras, p.lease,
                                            chunks))
        self.stats["load_requests"] += 1
        self.stats["load_chunks"] += len(chunks)

    def hit_tiers(self, req_id):
        """{tier: chunks} of the hit match() found for a request not yet allocated."""
        p = self._pending.get(req_id)
        return dict(collections.Counter(p.tiers)) if p is not None else {}

    def take_plan(self):
        out = plan.StepPlan(self._loads, self._saves)
        self._loads, self._saves = [], []
        return out

    # -- save plan --------------------------------------------------------------------------
    def finished(self, req_id, tokens, num_computed, block_ids, adapter="", cache_salt=None,
                 mm_features=()):
        """vLLM's request_finished: True when the blocks must stay until the save is done."""
        p = self._pending.pop(req_id, None)
        if p is not None:
            self._release(p)
        if not self.settings.save:
            return False
        C = self.chunk_tokens
        n = min(num_computed, len(tokens)) // C
        bpc = C // self.block_size
        n = min(n, len(block_ids) // bpc)
        if n == 0:
            return False
        extras = plan.chunk_extras(n, C, cache_salt, mm_features)
        s = plan.SaveRequest(req_id, adapter, list(tokens[:n * C]), extras,
                             list(block_ids[:n * bpc]))
        self._saves.append(s)
        self._saving[req_id] = (s, {})
        self.stats["save_requests"] += 1
        return True

    def request_stats(self, req_id):
        """What the connector reports in the request's kv_transfer_params."""
        return self._request_stats.pop(req_id, None)

    # -- results from the workers -----------------------------------------------------------
    def worker_results(self, saves, loads):
        """saves: {req_id: {rank: SaveOutcome}}; loads: {req_id: {rank: LoadOutcome}}."""
        n_ranks = len(self.identity.ranks())
        for req_id, per_rank in (loads or {}).items():
            acc = self._load_results.setdefault(req_id, {})
            acc.update(per_rank)
            if len(acc) == n_ranks:
                del self._load_results[req_id]
                failed = max(o.failed for o in acc.values())
                loaded = min(o.loaded for o in acc.values())
                st = self._request_stats.get(req_id)
                if st is not None:
                    st["loaded_chunks"] += loaded
                    st["failed_chunks"] += failed
                self.stats["loaded_chunks"] += loaded
                self.stats["load_failed_chunks"] += failed
        for req_id, per_rank in (saves or {}).items():
            entry = self._saving.get(req_id)
            if entry is None:
                continue
            entry[1].update(per_rank)
            if len(entry[1]) == n_ranks:
                del self._saving[req_id]
                present = min(o.present for o in entry[1].values())
                self.stats["saved_chunks"] += min(o.stored for o in entry[1].values())
                self.stats["save_failed_chunks"] += max(o.failed for o in entry[1].values())
                self._announce_saved(entry[0], present)

    def _lead_keys(self, s, n):
        ns = self.identity.namespace(0, 0, s.adapter)
        return chunk_keys(ns, s.tokens[:n * self.chunk_tokens], s.extras[:n])

    def _announce_saved(self, s, present):
        if present <= 0:
            return
        keys = self._lead_keys(s, present)
        self._stored_event(keys, 0, present, s.tokens, s.adapter, "cpu")

    def _stored_event(self, keys, start, end, tokens, adapter, medium):
        C = self.chunk_tokens
        parent = keys[start - 1] if start > 0 else None
        self._events.append(("stored", keys[start:end], parent, tokens[start * C:end * C], C,
                             adapter, medium))
        for k in keys[start:end]:
            self._announced[k] = medium
            self._announced.move_to_end(k)
        while len(self._announced) > _MAX_ANNOUNCED:
            self._announced.popitem(last=False)

    def _observe(self, lead_keys, found, tokens, adapter):
        """Tier changes and removals of announced chunks, as this lookup sees them."""
        for j in range(found.prefix):
            old = self._announced.get(lead_keys[j])
            now = "disk" if found.tiers[j] == "nvme" else "cpu"
            if old is not None and old != now:
                self._events.append(("removed", [lead_keys[j]], old))
                self._stored_event(lead_keys, j, j + 1, tokens, adapter, now)
        if found.prefix < len(lead_keys):
            gone = lead_keys[found.prefix]
            old = self._announced.pop(gone, None)
            if old is not None:
                self._events.append(("removed", [gone], old))

    def take_events(self):
        out, self._events = self._events, []
        return out
