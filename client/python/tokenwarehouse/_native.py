"""ctypes binding of libtwclient's C ABI (client/include/tw_client.h).

Finding the library, in order:
  1. the path in the environment variable TW_CLIENT_LIB;
  2. libtwclient.so next to this package (an installed wheel/copy puts it there);
  3. a build tree of the source checkout this package lives in
     (build/*/lib/libtwclient.so, the most recently built first);
  4. the system loader's search path (ldconfig, LD_LIBRARY_PATH).

The library is loaded once, on first use, and shared by every thread.
"""

import ctypes
import glob
import os
import threading

KEY_SIZE = 32

_lock = threading.Lock()
_lib = None


class TokenWarehouseError(Exception):
    """A failed libtwclient call: `code` is the TW_E_* number, `name` its name."""

    def __init__(self, code, name, message):
        super().__init__(f"{name}: {message}" if message else name)
        self.code = code
        self.name = name
        self.message = message


class LibraryNotFound(TokenWarehouseError):
    """libtwclient.so could not be found or loaded."""

    def __init__(self, message):
        super().__init__(-1, "LIBRARY_NOT_FOUND", message)


class Namespace(ctypes.Structure):
    _fields_ = [(name, ctypes.c_char_p) for name in (
        "model", "model_revision", "tokenizer", "kv_dtype", "kv_layout", "parallel",
        "adapter", "tenant", "chunk_tokens")]


NAMESPACE_FIELDS = tuple(name for name, _ in Namespace._fields_)


class Bytes(ctypes.Structure):
    _fields_ = [("data", ctypes.c_void_p), ("size", ctypes.c_size_t)]


class ClientOptions(ctypes.Structure):
    _fields_ = [
        ("socket_path", ctypes.c_char_p),
        ("arena_size", ctypes.c_uint64),
        ("namespaces", ctypes.POINTER(Namespace)),
        ("n_namespaces", ctypes.c_size_t),
        ("timeout_ms", ctypes.c_uint32),
        ("max_in_flight", ctypes.c_uint32),
        ("client_name", ctypes.c_char_p),
    ]


class Scatter(ctypes.Structure):
    _fields_ = [
        ("segment", ctypes.c_uint32),
        ("offset", ctypes.c_uint64),
        ("length", ctypes.c_uint64),
        ("arena_offset", ctypes.c_uint64),
    ]


class LookupResult(ctypes.Structure):
    _fields_ = [
        ("prefix", ctypes.c_uint64),
        ("tiers", ctypes.POINTER(ctypes.c_uint8)),
        ("miss", ctypes.c_int32),
        ("lease", ctypes.c_uint64),
    ]


class GetItem(ctypes.Structure):
    _fields_ = [
        ("key", ctypes.c_void_p),
        ("namespace_digest", ctypes.c_void_p),
        ("scatter", ctypes.POINTER(Scatter)),
        ("n_scatter", ctypes.c_size_t),
        ("arena_offset", ctypes.c_uint64),
        ("arena_length", ctypes.c_uint64),
        ("tier", ctypes.c_int32),
        ("miss", ctypes.c_int32),
        ("bytes", ctypes.c_uint64),
    ]


class PutItem(ctypes.Structure):
    _fields_ = [
        ("key", ctypes.c_void_p),
        ("parent", ctypes.c_void_p),
        ("namespace_digest", ctypes.c_void_p),
        ("extra", ctypes.c_void_p),
        ("extra_size", ctypes.c_size_t),
        ("tokens", ctypes.POINTER(ctypes.c_uint32)),
        ("n_tokens", ctypes.c_size_t),
        ("segment_sizes", ctypes.POINTER(ctypes.c_uint64)),
        ("n_segments", ctypes.c_size_t),
        ("scatter", ctypes.POINTER(Scatter)),
        ("n_scatter", ctypes.c_size_t),
        ("result", ctypes.c_int32),
    ]


class KvPlane(ctypes.Structure):
    _fields_ = [("device_ptr", ctypes.c_uint64), ("block_stride", ctypes.c_uint64)]


class KvLayoutC(ctypes.Structure):
    _fields_ = [
        ("n_layers", ctypes.c_uint32),
        ("planes_per_layer", ctypes.c_uint32),
        ("plane_block_bytes", ctypes.c_uint64),
        ("block_size", ctypes.c_uint32),
        ("num_blocks", ctypes.c_uint64),
        ("planes", ctypes.POINTER(KvPlane)),
    ]


def _candidates():
    env = os.environ.get("TW_CLIENT_LIB")
    if env:
        return [env]
    here = os.path.dirname(os.path.abspath(__file__))
    found = [os.path.join(here, "libtwclient.so")]
    # <checkout>/client/python/tokenwarehouse → <checkout>/build/*/lib/libtwclient.so
    root = os.path.dirname(os.path.dirname(os.path.dirname(here)))
    built = glob.glob(os.path.join(root, "build", "*", "lib", "libtwclient.so"))
    built.sort(key=lambda p: os.path.getmtime(p), reverse=True)
    found.extend(built)
    found.append("libtwclient.so.1")
    return found


_PROTOTYPES = {
    "tw_error_name": (ctypes.c_char_p, [ctypes.c_int]),
    "tw_last_error": (ctypes.c_char_p, []),
    "tw_client_version": (ctypes.c_char_p, []),
    "tw_client_abi_version": (ctypes.c_int, []),
    "tw_namespace_normalize": (ctypes.c_int, [
        ctypes.POINTER(Namespace), ctypes.POINTER(Namespace), ctypes.c_char_p, ctypes.c_size_t,
        ctypes.POINTER(ctypes.c_size_t)]),
    "tw_namespace_digest": (ctypes.c_int, [
        ctypes.POINTER(Namespace), ctypes.c_uint32, ctypes.c_char_p]),
    "tw_chunk_keys": (ctypes.c_int, [
        ctypes.POINTER(Namespace), ctypes.c_uint32, ctypes.POINTER(ctypes.c_uint32),
        ctypes.c_size_t, ctypes.POINTER(Bytes), ctypes.c_size_t, ctypes.c_char_p,
        ctypes.c_size_t, ctypes.POINTER(ctypes.c_size_t)]),
    "tw_chunk_key": (ctypes.c_int, [
        ctypes.c_char_p, ctypes.c_char_p, ctypes.c_size_t, ctypes.POINTER(ctypes.c_uint32),
        ctypes.c_size_t, ctypes.c_char_p]),
    "tw_tier_name": (ctypes.c_char_p, [ctypes.c_int]),
    "tw_miss_name": (ctypes.c_char_p, [ctypes.c_int]),
    "tw_put_result_name": (ctypes.c_char_p, [ctypes.c_int]),
    "tw_client_connect": (ctypes.c_int, [
        ctypes.POINTER(ClientOptions), ctypes.POINTER(ctypes.c_void_p)]),
    "tw_client_close": (None, [ctypes.c_void_p]),
    "tw_client_arena": (ctypes.c_void_p, [ctypes.c_void_p, ctypes.POINTER(ctypes.c_uint64)]),
    "tw_client_namespace_digest": (ctypes.c_int, [
        ctypes.c_void_p, ctypes.c_size_t, ctypes.c_char_p]),
    "tw_client_max_batch": (ctypes.c_uint32, [ctypes.c_void_p]),
    "tw_client_lookup": (ctypes.c_int, [
        ctypes.c_void_p, ctypes.c_char_p, ctypes.c_char_p, ctypes.c_size_t, ctypes.c_size_t,
        ctypes.c_uint32, ctypes.c_uint32, ctypes.POINTER(LookupResult)]),
    "tw_client_get": (ctypes.c_int, [
        ctypes.c_void_p, ctypes.POINTER(GetItem), ctypes.c_size_t, ctypes.c_uint64,
        ctypes.c_uint32]),
    "tw_client_put": (ctypes.c_int, [
        ctypes.c_void_p, ctypes.POINTER(PutItem), ctypes.c_size_t, ctypes.c_int,
        ctypes.c_uint32]),
    "tw_client_exists": (ctypes.c_int, [
        ctypes.c_void_p, ctypes.c_char_p, ctypes.c_char_p, ctypes.c_size_t,
        ctypes.POINTER(ctypes.c_uint8), ctypes.POINTER(ctypes.c_uint64), ctypes.c_uint32]),
    "tw_client_delete": (ctypes.c_int, [
        ctypes.c_void_p, ctypes.c_char_p, ctypes.c_char_p, ctypes.c_size_t,
        ctypes.POINTER(ctypes.c_uint8), ctypes.c_uint32]),
    "tw_client_release_leases": (ctypes.c_int, [
        ctypes.c_void_p, ctypes.POINTER(ctypes.c_uint64), ctypes.c_size_t,
        ctypes.POINTER(ctypes.c_uint32), ctypes.c_uint32]),
    "tw_client_ping": (ctypes.c_int, [ctypes.c_void_p, ctypes.c_uint32]),
    "tw_client_stats": (ctypes.c_int, [
        ctypes.c_void_p, ctypes.c_char_p, ctypes.c_size_t, ctypes.POINTER(ctypes.c_size_t),
        ctypes.c_uint32]),
    # tw_gpu.h
    "tw_gpu_availability": (ctypes.c_int, [
        ctypes.c_char_p, ctypes.c_size_t, ctypes.POINTER(ctypes.c_size_t)]),
    "tw_gpu_open": (ctypes.c_int, [ctypes.c_int, ctypes.c_int, ctypes.POINTER(ctypes.c_void_p)]),
    "tw_gpu_close": (None, [ctypes.c_void_p]),
    "tw_gpu_backend_name": (ctypes.c_char_p, [ctypes.c_void_p]),
    "tw_gpu_alloc_device": (ctypes.c_int, [
        ctypes.c_void_p, ctypes.c_uint64, ctypes.POINTER(ctypes.c_uint64)]),
    "tw_gpu_free_device": (ctypes.c_int, [ctypes.c_void_p, ctypes.c_uint64]),
    "tw_gpu_stream_create": (ctypes.c_int, [ctypes.c_void_p, ctypes.POINTER(ctypes.c_uint64)]),
    "tw_gpu_stream_destroy": (ctypes.c_int, [ctypes.c_void_p, ctypes.c_uint64]),
    "tw_gpu_stream_synchronize": (ctypes.c_int, [ctypes.c_void_p, ctypes.c_uint64]),
    "tw_gpu_copy": (ctypes.c_int, [
        ctypes.c_void_p, ctypes.c_uint64, ctypes.c_uint64, ctypes.c_uint64, ctypes.c_int,
        ctypes.c_uint64]),
    "tw_gpu_register_host": (ctypes.c_int, [
        ctypes.c_void_p, ctypes.c_void_p, ctypes.c_uint64, ctypes.c_uint64]),
    "tw_gpu_unregister_host": (ctypes.c_int, [
        ctypes.c_void_p, ctypes.c_void_p, ctypes.c_uint64, ctypes.c_uint64]),
    "tw_client_pin_arena": (ctypes.c_int, [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_uint64]),
    "tw_kv_cache_create": (ctypes.c_int, [
        ctypes.c_void_p, ctypes.POINTER(KvLayoutC), ctypes.POINTER(ctypes.c_void_p)]),
    "tw_kv_cache_free": (None, [ctypes.c_void_p]),
    "tw_kv_cache_segment_bytes": (ctypes.c_uint64, [ctypes.c_void_p, ctypes.c_size_t]),
    "tw_kv_transfer_start": (ctypes.c_int, [
        ctypes.c_void_p, ctypes.c_int, ctypes.POINTER(ctypes.c_int32), ctypes.c_size_t,
        ctypes.c_void_p, ctypes.c_uint64, ctypes.POINTER(ctypes.c_uint64), ctypes.c_uint32,
        ctypes.c_uint32, ctypes.c_uint64, ctypes.POINTER(ctypes.c_void_p)]),
    "tw_kv_transfer_wait_layer": (ctypes.c_int, [ctypes.c_void_p, ctypes.c_uint32]),
    "tw_kv_transfer_query_layer": (ctypes.c_int, [
        ctypes.c_void_p, ctypes.c_uint32, ctypes.POINTER(ctypes.c_int)]),
    "tw_kv_transfer_stream_wait_layer": (ctypes.c_int, [
        ctypes.c_void_p, ctypes.c_uint32, ctypes.c_uint64]),
    "tw_kv_transfer_event": (ctypes.c_uint64, [ctypes.c_void_p, ctypes.c_uint32]),
    "tw_kv_transfer_wait": (ctypes.c_int, [ctypes.c_void_p]),
    "tw_kv_transfer_copies": (ctypes.c_uint64, [ctypes.c_void_p]),
    "tw_kv_transfer_bytes": (ctypes.c_uint64, [ctypes.c_void_p]),
    "tw_kv_transfer_free": (None, [ctypes.c_void_p]),
}


def lib():
    """The loaded library, with every prototype declared. Raises LibraryNotFound."""
    global _lib
    with _lock:
        if _lib is not None:
            return _lib
        errors = []
        for path in _candidates():
            if os.sep in path and not os.path.exists(path):
                continue
            try:
                loaded = ctypes.CDLL(path)
            except OSError as e:
                errors.append(f"{path}: {e}")
                continue
            for name, (restype, argtypes) in _PROTOTYPES.items():
                fn = getattr(loaded, name, None)
                if fn is not None:
                    fn.restype = restype
                    fn.argtypes = argtypes
            _lib = loaded
            return _lib
        detail = "; ".join(errors) if errors else "no candidate exists"
        raise LibraryNotFound(
            "cannot load libtwclient.so (set TW_CLIENT_LIB to its path, or build the "
            f"`twclient` target): {detail}")


def check(code):
    """Raises TokenWarehouseError for a non-zero C error code."""
    if code != 0:
        native = lib()
        name = native.tw_error_name(code).decode()
        message = native.tw_last_error().decode("utf-8", "replace")
        raise TokenWarehouseError(code, name, message)


def to_c_namespace(namespace):
    """A ctypes Namespace from a dict of the nine fields (missing = "", unknown = error).

    Values are str (or int for chunk_tokens). Returns the struct; it keeps its own
    references to the encoded bytes.
    """
    if not isinstance(namespace, dict):
        raise TypeError("namespace must be a dict of the nine namespace fields")
    unknown = sorted(set(namespace) - set(NAMESPACE_FIELDS))
    if unknown:
        raise ValueError(f"namespace: unknown field(s) {', '.join(unknown)}; "
                         f"the fields are {', '.join(NAMESPACE_FIELDS)}")
    values = {}
    for name in NAMESPACE_FIELDS:
        v = namespace.get(name, "")
        if v is None:
            v = ""
        if isinstance(v, bool) or not isinstance(v, (str, int)):
            raise TypeError(f"namespace.{name} must be a string")
        if isinstance(v, int) and name != "chunk_tokens":
            raise TypeError(f"namespace.{name} must be a string")
        s = str(v)
        if "\0" in s:
            raise ValueError(f"namespace.{name} contains a NUL character")
        values[name] = s.encode("utf-8")
    return Namespace(**values)
