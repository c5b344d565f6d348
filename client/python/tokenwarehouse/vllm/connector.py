"""TokenWarehouseConnector: vLLM's KVConnectorBase_V1 over twd (written against vLLM 0.32).

Selected with
  --kv-transfer-config '{"kv_connector":"TokenWarehouseConnector",
                         "kv_connector_module_path":"tokenwarehouse.vllm","kv_role":"kv_both",
                         "kv_connector_extra_config":{"socket":"/run/tokenwarehouse/twd.sock"}}'

vLLM makes one instance per role, in different processes: the SCHEDULER instance wraps a
SchedulerSide (lookups, plans, events), each WORKER instance a WorkerSide (copies and
twd I/O). This module is the only one of the package that imports vLLM; it is imported by
vLLM itself through kv_connector_module_path. Threading and lifetimes: see the two sides.

Loads are synchronous and layer-wise (get_num_new_matched_tokens answers load_async=False;
wait_for_layer_load returns when the layer is in place). Saves run when a request finishes,
off the forward path, from blocks vLLM keeps allocated until get_finished reports them, so
save_kv_layer has nothing to do. KV events leave through the scheduler's take_events, so
the chunks every rank holds are announced once, with token ids.
"""

import dataclasses
import logging
from typing import Any

import torch
from vllm.distributed.kv_events import BlockRemoved, BlockStored
from vllm.distributed.kv_transfer.kv_connector.v1.base import (
    KVConnectorBase_V1,
    KVConnectorMetadata,
    KVConnectorRole,
    KVConnectorWorkerMetadata,
)
from vllm.distributed.kv_transfer.kv_connector.v1.metrics import KVConnectorStats
from vllm.v1.metrics.cache_hit_source import CacheHitSource

from .plan import StepPlan
from .scheduler_side import SchedulerSide
from .settings import EngineIdentity, Settings
from .worker_side import WorkerSide

log = logging.getLogger("vllm.tokenwarehouse")


@dataclasses.dataclass
class TokenWarehouseMetadata(KVConnectorMetadata):
    plan: StepPlan


@dataclasses.dataclass
class TokenWarehouseWorkerMetadata(KVConnectorWorkerMetadata):
    saves: dict   # req_id -> {(tp, pp): SaveOutcome}
    loads: dict   # req_id -> {(tp, pp): LoadOutcome}

    def aggregate(self, other):
        for mine, theirs in ((self.saves, other.saves), (self.loads, other.loads)):
            for req_id, per_rank in theirs.items():
                mine.setdefault(req_id, {}).update(per_rank)
        return self


@dataclasses.dataclass
class TokenWarehouseStats(KVConnectorStats):
    """Counters since the last report, summed over workers: chunks and bytes loaded and
    saved, chunks that failed either way, seconds spent loading."""

    def reset(self):
        self.data = {}

    def aggregate(self, other):
        for k, v in (other.data or {}).items():
            self.data[k] = self.data.get(k, 0) + v
        return self

    def reduce(self):
        return dict(self.data)

    def is_empty(self):
        return not any(self.data.values())


def _kv_dtype(vllm_config):
    cache_dtype = str(vllm_config.cache_config.cache_dtype)
    if cache_dtype != "auto":
        return cache_dtype
    return str(vllm_config.model_config.dtype).replace("torch.", "")


def _attention_spec(kv_cache_config):
    groups = kv_cache_config.kv_cache_groups
    if len(groups) != 1:
        raise ValueError(f"TokenWarehouseConnector supports models with one KV cache group; "
                         f"this one has {len(groups)} (hybrid attention)")
    return groups[0].kv_cache_spec


def engine_identity(vllm_config, kv_cache_config, settings):
    """The namespace source of an engine: model, weights, tokenizer, KV dtype and layout,
    parallelism, tenant and chunk size (docs/vllm.md lists where each comes from)."""
    mc, cc, pc = vllm_config.model_config, vllm_config.cache_config, vllm_config.parallel_config
    if getattr(pc, "decode_context_parallel_size", 1) > 1:
        raise ValueError("TokenWarehouseConnector does not support decode context parallelism")
    spec = _attention_spec(kv_cache_config)
    try:
        layout = cc.get_resolved_kv_cache_layout().name
    except Exception:  # not resolved in this process: the backend's default
        layout = "default"
    device = vllm_config.device_config.device_type
    kv_layout = (f"vllm/{device}/{layout}/{type(spec).__name__}/kvh{spec.num_kv_heads}"
                 f"/hd{spec.head_size}/bs{spec.block_size}/page{spec.page_size_bytes}")
    revision = settings.model_revision or (mc.revision or "")
    load_format = str(getattr(vllm_config.load_config, "load_format", ""))
    if not settings.model_revision and "dummy" in load_format.lower():
        revision += "+dummy-weights"  # random weights never share KV with real ones
    tokenizer = mc.tokenizer or ""
    if getattr(mc, "tokenizer_revision", None):
        tokenizer += "@" + mc.tokenizer_revision
    return EngineIdentity(
        model=settings.model_name or mc.model, model_revision=revision, tokenizer=tokenizer,
        kv_dtype=_kv_dtype(vllm_config), kv_layout=kv_layout,
        tp_size=pc.tensor_parallel_size, pp_size=pc.pipeline_parallel_size,
        tenant=settings.tenant, chunk_tokens=settings.resolve_chunk_tokens(cc.block_size))


def _request_fields(request):
    adapter = request.lora_request.lora_name if request.lora_request is not None else ""
    mm = []
    for f in request.mm_features or ():
        pos = f.mm_position
        mm.append((f.identifier, pos.offset, pos.length))
    return adapter, getattr(request, "cache_salt", None), mm


class TokenWarehouseConnector(KVConnectorBase_V1):
    _cache_hit_source = CacheHitSource.HOST

    def __init__(self, vllm_config, role, kv_cache_config=None):
        super().__init__(vllm_config=vllm_config, role=role, kv_cache_config=kv_cache_config)
        ktc = self._kv_transfer_config
        settings = Settings.from_extra_config(ktc.kv_connector_extra_config)
        if ktc.kv_role == "kv_producer":
            settings = dataclasses.replace(settings, load=False)
        elif ktc.kv_role == "kv_consumer":
            settings = dataclasses.replace(settings, save=False)
        self.settings = settings
        self.identity = engine_identity(vllm_config, kv_cache_config, settings)
        block_size = vllm_config.cache_config.block_size
        self._sched = None
        self._worker = None
        self._hit_tiers = {}
        if role == KVConnectorRole.SCHEDULER:
            if settings.recompute_on_load_failure and ktc.kv_load_failure_policy != "recompute":
                # The scheduler reads the policy after making its connector: a chunk that
                # fails to load is then recomputed, never a failed request.
                ktc.kv_load_failure_policy = "recompute"
            self._sched = SchedulerSide(settings, self.identity, block_size)
            log.info("tokenwarehouse: socket %s, %d-token chunks, namespace %s",
                     settings.socket, self.identity.chunk_tokens, self.identity.namespace())
        else:
            from vllm.distributed.parallel_state import get_pp_group, get_tp_group
            self._worker = WorkerSide(settings, self.identity, get_tp_group().rank_in_group,
                                      get_pp_group().rank_in_group, block_size)

    @property
    def requires_kv_delivery(self):
        return False  # a cache: a save lost to preemption is a later miss, nothing more

    # ---- worker side ------------------------------------------------------------------------
    def register_kv_caches(self, kv_caches: dict[str, torch.Tensor]):
        w = self._worker
        w.register(kv_caches, self._kv_cache_config.num_blocks)
        spec = _attention_spec(self._kv_cache_config)
        if w.block_bytes != spec.page_size_bytes:
            raise ValueError(f"TokenWarehouseConnector: a KV block is {w.block_bytes} bytes "
                             f"in the cache tensors but {spec.page_size_bytes} in vLLM's "
                             f"spec; this attention backend's layout is not supported")
        log.info("tokenwarehouse: rank %s, %d layers, block %s %s (%d bytes), chunk value "
                 "%d bytes", w.rank, len(kv_caches), tuple(w.block_shape), w.dtype,
                 w.block_bytes, w.value_bytes)

    def start_load_kv(self, forward_context, **kwargs: Any) -> None:
        meta = self._get_connector_metadata()
        self._worker.start_load(meta.plan.loads)

    def wait_for_layer_load(self, layer_name: str) -> None:
        self._worker.wait_layer(layer_name)

    def save_kv_layer(self, layer_name, kv_layer, attn_metadata, **kwargs: Any) -> None:
        return  # saves copy from blocks held after the request finishes (wait_for_save)

    def wait_for_save(self):
        self._worker.end_step()
        if self.has_connector_metadata():
            self._worker.submit_saves(self._get_connector_metadata().plan.saves)

    def get_finished(self, finished_req_ids):
        done = self._worker.finished(finished_req_ids)
        return (done or None), None

    def get_block_ids_with_load_errors(self) -> set[int]:
        return self._worker.take_load_errors()

    def get_kv_connector_stats(self):
        data = self._worker.take_stats() if self._worker else self._sched_stats()
        return TokenWarehouseStats(data=data) if any(data.values()) else None

    def build_connector_worker_meta(self):
        saves, loads = self._worker.take_outcomes()
        if not saves and not loads:
            return None
        return TokenWarehouseWorkerMetadata(saves, loads)

    def shutdown(self):
        if self._worker is not None:
            self._worker.close()
        if self._sched is not None:
            self._sched.close()

    # ---- scheduler side ---------------------------------------------------------------------
    def get_num_new_matched_tokens(self, request, num_computed_tokens):
        adapter, salt, mm = _request_fields(request)
        n = self._sched.match(request.request_id, list(request.all_token_ids),
                              num_computed_tokens, adapter, salt, mm)
        return n, False

    def get_external_cache_hit_sources(self, request, num_external_tokens):
        tiers = self._hit_tiers.pop(request.request_id, None)
        if num_external_tokens == 0 or not tiers:
            return super().get_external_cache_hit_sources(request, num_external_tokens)
        disk = min(num_external_tokens, tiers.get("nvme", 0) * self.identity.chunk_tokens)
        out = {CacheHitSource.HOST: num_external_tokens - disk, CacheHitSource.DISK: disk}
        return {k: v for k, v in out.items() if v}

    def update_state_after_alloc(self, request, blocks, num_external_tokens):
        if num_external_tokens > 0:
            self._hit_tiers[request.request_id] = self._sched.hit_tiers(request.request_id)
        self._sched.allocated(request.request_id, blocks.get_block_ids()[0],
                              num_external_tokens)

    def build_connector_meta(self, scheduler_output):
        return TokenWarehouseMetadata(self._sched.take_plan())

    def update_connector_output(self, connector_output):
        meta = connector_output.kv_connector_worker_meta
        if isinstance(meta, TokenWarehouseWorkerMetadata):
            self._sched.worker_results(meta.saves, meta.loads)

    def request_finished(self, request, block_ids):
        self._hit_tiers.pop(request.request_id, None)
        adapter, salt, mm = _request_fields(request)
        delay = self._sched.finished(request.request_id, list(request.all_token_ids),
                                     request.num_computed_tokens, block_ids, adapter, salt, mm)
        stats = self._sched.request_stats(request.request_id)
        return delay, ({"tokenwarehouse": stats} if stats else None)

    def take_events(self):
        from vllm.v1.core.kv_cache_utils import maybe_convert_block_hash
        for ev in self._sched.take_events():
            if ev[0] == "stored":
                _, keys, parent, tokens, size, adapter, medium = ev
                yield BlockStored(
                    block_hashes=[maybe_convert_block_hash(k) for k in keys],
                    parent_block_hash=(maybe_convert_block_hash(parent)
                                       if parent is not None else None),
                    token_ids=list(tokens), block_size=size, lora_id=None,
                    medium=medium, lora_name=adapter or None)
            else:
                _, keys, medium = ev
                yield BlockRemoved(block_hashes=[maybe_convert_block_hash(k) for k in keys],
                                   medium=medium)

    def _sched_stats(self):
        # Prefixed: vLLM sums these with the workers' counters of the same names.
        data = {"scheduler_" + k: v for k, v in self._sched.stats.items()}
        self._sched.stats.clear()
        return data

    @classmethod
    def build_kv_connector_stats(cls, data=None):
        return TokenWarehouseStats(data=dict(data or {}))
