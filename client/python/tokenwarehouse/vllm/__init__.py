"""tokenwarehouse.vllm — the vLLM KV connector of Token Warehouse (docs/vllm.md).

    vllm serve MODEL --kv-transfer-config '{"kv_connector":"TokenWarehouseConnector",
        "kv_connector_module_path":"tokenwarehouse.vllm","kv_role":"kv_both",
        "kv_connector_extra_config":{"socket":"/run/tokenwarehouse/twd.sock"}}'

vLLM is imported only when `TokenWarehouseConnector` is first looked up (as vLLM's
connector factory does), so `import tokenwarehouse` and `import tokenwarehouse.vllm` work
without vLLM. `Settings`, `EngineIdentity` and the pure planning code need no vLLM either.
"""

from .settings import EngineIdentity, Settings

__all__ = ["EngineIdentity", "Settings", "TokenWarehouseConnector"]


def __getattr__(name):
    if name in ("TokenWarehouseConnector", "TokenWarehouseMetadata",
                "TokenWarehouseWorkerMetadata", "TokenWarehouseStats"):
        from . import connector
        return getattr(connector, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
