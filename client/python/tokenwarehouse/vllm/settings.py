"""The connector's settings (vLLM's `kv_connector_extra_config`) and namespaces.

Pure Python, no vLLM import: `Settings.from_extra_config(dict)` validates the keys of
docs/vllm.md and raises ValueError naming the bad one; `EngineIdentity` is what the namespace
needs from vLLM's configuration (filled by the connector from a VllmConfig, or by hand in
tests), and `namespace()` turns it into the nine fields of docs/keys.md for one rank and one
LoRA adapter. Both are immutable values, safe to share between threads.
"""

import dataclasses
import re

DEFAULT_SOCKET = "/run/tokenwarehouse/twd.sock"
_SIZE_UNITS = {"": 1, "b": 1, "kib": 1 << 10, "mib": 1 << 20, "gib": 1 << 30, "tib": 1 << 40,
               "kb": 10**3, "mb": 10**6, "gb": 10**9}


def parse_size(value, what):
    """Bytes from an int or a string with a unit ("512MiB", "1GiB")."""
    if isinstance(value, bool):
        raise ValueError(f"{what}: a size, not {value!r}")
    if isinstance(value, int):
        if value <= 0:
            raise ValueError(f"{what}: a size must be positive, got {value}")
        return value
    m = re.fullmatch(r"\s*(\d+)\s*([A-Za-z]*)\s*", str(value))
    if not m or m.group(2).lower() not in _SIZE_UNITS:
        raise ValueError(f"{what}: {value!r} is not a size such as 512MiB or 1GiB")
    n = int(m.group(1)) * _SIZE_UNITS[m.group(2).lower()]
    if n <= 0:
        raise ValueError(f"{what}: a size must be positive, got {value!r}")
    return n


def _positive_float(value, what):
    try:
        f = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{what}: a number of seconds, not {value!r}") from None
    if not f > 0:
        raise ValueError(f"{what}: must be > 0, got {value!r}")
    return f


def _bool(value, what):
    if isinstance(value, bool):
        return value
    if str(value).lower() in ("1", "true", "yes", "on"):
        return True
    if str(value).lower() in ("0", "false", "no", "off"):
        return False
    raise ValueError(f"{what}: true or false, not {value!r}")


@dataclasses.dataclass(frozen=True)
class Settings:
    """Every key of `kv_connector_extra_config` (docs/vllm.md) with its default."""
    socket: str = DEFAULT_SOCKET   # twd's client socket
    arena_size: int = 1 << 30      # each worker's shared-memory arena, bytes
    chunk_tokens: int = 0          # tokens per chunk; 0: the block-size multiple nearest 256
    durability: str = "memory"     # puts acknowledged in DRAM ("memory") or on NVMe ("disk")
    timeout: float = 5.0           # seconds a lookup, get or put may take (then: a miss)
    tenant: str = ""               # namespace field `tenant` (isolation salt)
    model_name: str = ""           # namespace `model`; default vLLM's model
    model_revision: str = ""       # namespace `model_revision`; default vLLM's revision
    load: bool = True              # look up and load stored prefixes
    save: bool = True              # store computed chunks when requests finish
    recompute_on_load_failure: bool = True  # sets vLLM's kv_load_failure_policy=recompute

    _KEYS = ("socket", "arena_size", "chunk_tokens", "durability", "timeout", "tenant",
             "model_name", "model_revision", "load", "save", "recompute_on_load_failure")

    @classmethod
    def from_extra_config(cls, extra):
        extra = dict(extra or {})
        unknown = sorted(set(extra) - set(cls._KEYS))
        if unknown:
            raise ValueError(f"kv_connector_extra_config: unknown key(s) {unknown}; the "
                             f"TokenWarehouseConnector takes {list(cls._KEYS)}")
        kw = {}
        if "socket" in extra:
            if not isinstance(extra["socket"], str) or not extra["socket"]:
                raise ValueError("socket: the path of twd's client socket")
            kw["socket"] = extra["socket"]
        if "arena_size" in extra:
            kw["arena_size"] = parse_size(extra["arena_size"], "arena_size")
        if "chunk_tokens" in extra:
            try:
                n = int(extra["chunk_tokens"])
            except (TypeError, ValueError):
                n = -1
            if n <= 0:
                raise ValueError(f"chunk_tokens: a positive multiple of the block size, not "
                                 f"{extra['chunk_tokens']!r}")
            kw["chunk_tokens"] = n
        if "durability" in extra:
            if extra["durability"] not in ("memory", "disk"):
                raise ValueError(f"durability: 'memory' or 'disk', not {extra['durability']!r}")
            kw["durability"] = extra["durability"]
        if "timeout" in extra:
            kw["timeout"] = _positive_float(extra["timeout"], "timeout")
        for key in ("tenant", "model_name", "model_revision"):
            if key in extra:
                kw[key] = str(extra[key])
        for key in ("load", "save", "recompute_on_load_failure"):
            if key in extra:
                kw[key] = _bool(extra[key], key)
        return cls(**kw)

    def resolve_chunk_tokens(self, block_size):
        """The chunk size for vLLM's block size: a multiple of it (ValueError if the
        configured one is not)."""
        if block_size <= 0:
            raise ValueError(f"block size must be positive, got {block_size}")
        if self.chunk_tokens:
            if self.chunk_tokens % block_size:
                raise ValueError(f"chunk_tokens={self.chunk_tokens} is not a multiple of "
                                 f"vLLM's block size {block_size}")
            return self.chunk_tokens
        return block_size * max(1, round(256 / block_size))


@dataclasses.dataclass(frozen=True)
class EngineIdentity:
    """What makes KV bytes of one engine reusable by another: equal identities, equal keys."""
    model: str
    model_revision: str
    tokenizer: str
    kv_dtype: str
    kv_layout: str      # attention layout, per-rank block shape and block size
    tp_size: int = 1
    pp_size: int = 1
    tenant: str = ""
    chunk_tokens: int = 256

    def ranks(self):
        """Every (tp_rank, pp_rank) of the engine, the order of lookup chains."""
        return [(t, p) for p in range(self.pp_size) for t in range(self.tp_size)]

    def namespace(self, tp_rank=0, pp_rank=0, adapter=""):
        """The nine namespace fields (docs/keys.md) of one rank and one LoRA adapter."""
        if not (0 <= tp_rank < self.tp_size and 0 <= pp_rank < self.pp_size):
            raise ValueError(f"rank tp={tp_rank},pp={pp_rank} outside tp={self.tp_size},"
                             f"pp={self.pp_size}")
        return {"model": self.model, "model_revision": self.model_revision,
                "tokenizer": self.tokenizer, "kv_dtype": self.kv_dtype,
                "kv_layout": self.kv_layout,
                "parallel": f"tp={tp_rank}/{self.tp_size},pp={pp_rank}/{self.pp_size}",
                "adapter": adapter or "", "tenant": self.tenant,
                "chunk_tokens": str(self.chunk_tokens)}
