"""tokenwarehouse — Python client of Token Warehouse (stdlib + ctypes over libtwclient).

    import tokenwarehouse as tw
    keys = tw.chunk_keys(namespace, tokens)          # docs/keys.md
    with tw.Client("/run/tokenwarehouse/twd.sock", 1 << 30, namespaces=[namespace]) as c:
        hit = c.lookup(keys)                           # longest stored prefix
        ...

See docs/clients.md. The package needs libtwclient.so: set TW_CLIENT_LIB to its path, or
put it next to this package, or build it in the source tree (target `twclient`).
"""

from ._native import KEY_SIZE, LibraryNotFound, TokenWarehouseError
from .keys import chunk_key, chunk_keys, namespace_digest, normalize_namespace
from .client import Client, GetResult, LookupResult, Scatter
from .gpu import LAYOUTS, Gpu, KvLayout, PagedKvCache, Transfer, gpu_availability

__all__ = [
    "KEY_SIZE", "LibraryNotFound", "TokenWarehouseError", "chunk_key", "chunk_keys",
    "namespace_digest", "normalize_namespace", "Client", "GetResult", "LookupResult",
    "Scatter", "LAYOUTS", "Gpu", "KvLayout", "PagedKvCache", "Transfer", "gpu_availability",
]

__version__ = "0.1.0"
