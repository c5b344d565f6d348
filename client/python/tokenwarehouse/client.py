"""tokenwarehouse.Client — a connection to a node's twd, over libtwclient's C ABI.

    c = Client("/run/tokenwarehouse/twd.sock", 1 << 30, namespaces=[ns])
    keys = chunk_keys(ns, tokens)
    found = c.lookup(keys)                       # LookupResult(prefix, tiers, miss, lease)
    view = c.arena_view(0, 32 << 20)             # writable memoryview into shared memory
    r = c.get(keys[0], arena_offset=0, arena_length=32 << 20)
    c.put(key, parent, chunk_tokens, arena_offset=0, length=n, durability="disk")

The arena is shared memory twd reads and writes directly: fill it (or let numpy/torch wrap
`arena` without copying) and name byte ranges of it in requests. KV bytes never cross the
socket. Calls release the GIL while they wait, and a Client may be used from several threads
at once (requests are pipelined). Namespaces are named by their index in `namespaces` or by
their 32-byte digest. Close the client (or use `with`) to free the arena; memoryviews taken
from it must not be used after that.
"""

import collections
import ctypes
import json

from . import _native
from .keys import KEY_SIZE

Scatter = collections.namedtuple("Scatter", "segment offset length arena_offset")
Scatter.__doc__ = "One byte range of a value segment <-> a byte range of the arena."

LookupResult = collections.namedtuple("LookupResult", "prefix tiers miss lease")
LookupResult.__doc__ = ("prefix: leading chunks stored; tiers: tier name of each chunk "
                        "('dram', 'nvme', 'peer', 'none' past the prefix); miss: why chunk "
                        "`prefix` is missing ('none' if all are stored); lease: id or 0.")

GetResult = collections.namedtuple("GetResult", "tier miss bytes")
GetResult.__doc__ = ("tier: 'dram'/'nvme'/'peer' (another node of the mesh) ('none' on a miss); "
                     "miss: 'none' on a hit; bytes.")

_DURABILITY = {"memory": 0, "disk": 1}


def _name(fn, code):
    return fn(code).decode()


_TIER_NAMES = {}


def _tier_names(lib, codes):
    """Tier names of a sequence of tier codes; each code is asked of the library once per
    process (a 512-chunk lookup otherwise spends most of its Python time in ctypes calls)."""
    names = []
    for code in codes:
        name = _TIER_NAMES.get(code)
        if name is None:
            name = _TIER_NAMES[code] = _name(lib.tw_tier_name, code)
        names.append(name)
    return names


class Client:
    """A connection with a shared-memory arena. See the module documentation."""

    def __init__(self, socket_path, arena_size, namespaces=(), timeout=10.0,
                 max_in_flight=64, name="tokenwarehouse-python"):
        self._lib = _native.lib()
        self._handle = None
        self._namespaces = [_native.to_c_namespace(ns) for ns in namespaces]
        c_ns = (_native.Namespace * max(1, len(self._namespaces)))(*self._namespaces)
        opts = _native.ClientOptions(
            socket_path=str(socket_path).encode(), arena_size=int(arena_size),
            namespaces=ctypes.cast(c_ns, ctypes.POINTER(_native.Namespace)),
            n_namespaces=len(self._namespaces), timeout_ms=int(timeout * 1000),
            max_in_flight=int(max_in_flight), client_name=name.encode())
        handle = ctypes.c_void_p()
        _native.check(self._lib.tw_client_connect(ctypes.byref(opts), ctypes.byref(handle)))
        self._handle = handle
        size = ctypes.c_uint64(0)
        base = self._lib.tw_client_arena(handle, ctypes.byref(size))
        self._arena_size = size.value
        self._arena_buf = (ctypes.c_uint8 * size.value).from_address(base)
        self._arena = memoryview(self._arena_buf).cast("B")
        self._digests = []
        for i in range(len(self._namespaces)):
            out = ctypes.create_string_buffer(KEY_SIZE)
            _native.check(self._lib.tw_client_namespace_digest(handle, i, out))
            self._digests.append(out.raw)

    # -- lifetime -------------------------------------------------------------------------
    def close(self):
        """Closes the connection and unmaps the arena (memoryviews of it become invalid)."""
        if self._handle is not None:
            self._arena.release()
            self._arena_buf = None
            self._lib.tw_client_close(self._handle)
            self._handle = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def __del__(self):
        try:
            self.close()
        except Exception:  # interpreter shutdown: the library may already be gone
            pass

    def _h(self):
        if self._handle is None:
            raise ValueError("the client is closed")
        return self._handle

    # -- arena ----------------------------------------------------------------------------
    @property
    def arena(self):
        """The whole arena as a writable memoryview of bytes."""
        self._h()
        return self._arena

    @property
    def arena_size(self):
        return self._arena_size

    def arena_view(self, offset, length):
        """A writable memoryview of arena bytes [offset, offset + length)."""
        if offset < 0 or length < 0 or offset + length > self._arena_size:
            raise ValueError(f"arena range [{offset}, {offset + length}) is outside the "
                             f"{self._arena_size}-byte arena")
        return self.arena[offset:offset + length]

    @property
    def arena_address(self):
        """The arena's base address (for GPU transfers: tokenwarehouse.gpu)."""
        self._h()
        return ctypes.addressof(self._arena_buf)

    def pin_arena(self, gpu, slice_bytes=0):
        """Pins the whole arena for DMA with `gpu` (a tokenwarehouse.Gpu), in slices of
        slice_bytes (0: 1 GiB); close() unpins it before unmapping."""
        _native.check(self._lib.tw_client_pin_arena(self._h(), gpu.handle(), int(slice_bytes)))

    @property
    def namespace_digests(self):
        """The digests of the declared namespaces, in order (32 bytes each)."""
        return list(self._digests)

    def _digest(self, namespace):
        if isinstance(namespace, int):
            try:
                return self._digests[namespace]
            except IndexError:
                raise ValueError(f"namespace index {namespace}: {len(self._digests)} "
                                 "namespaces are declared") from None
        d = bytes(namespace)
        if len(d) != KEY_SIZE:
            raise ValueError(f"a namespace digest is {KEY_SIZE} bytes, got {len(d)}")
        return d

    @staticmethod
    def _keys_blob(keys):
        blob = b"".join(bytes(k) for k in keys)
        if len(blob) != KEY_SIZE * len(keys):
            raise ValueError(f"every key must be {KEY_SIZE} bytes")
        return blob

    @staticmethod
    def _ms(timeout):
        return 0 if timeout is None else max(1, int(timeout * 1000))

    # -- operations -----------------------------------------------------------------------
    def lookup(self, keys, namespace=0, lease=False, timeout=None):
        """The longest stored prefix of a key chain (keys[0] is chunk 1)."""
        return self.lookup_ranks([(namespace, keys)], lease=lease, timeout=timeout)

    def lookup_ranks(self, chains, lease=False, timeout=None):
        """Tensor parallelism: `chains` is [(namespace, keys), ...], one per rank, all of the
        same length; the answer is the longest prefix stored for every rank."""
        if not chains:
            raise ValueError("lookup needs at least one chain")
        length = len(chains[0][1])
        if any(len(k) != length for _, k in chains):
            raise ValueError("every chain of a lookup must have the same length")
        digests = b"".join(self._digest(ns) for ns, _ in chains)
        keys = b"".join(self._keys_blob(k) for _, k in chains)
        tiers = (ctypes.c_uint8 * max(1, length))()
        res = _native.LookupResult(tiers=ctypes.cast(tiers, ctypes.POINTER(ctypes.c_uint8)))
        _native.check(self._lib.tw_client_lookup(
            self._h(), digests, keys, length, len(chains), 1 if lease else 0,
            self._ms(timeout), ctypes.byref(res)))
        names = _tier_names(self._lib, bytes(tiers)[:length])
        return LookupResult(res.prefix, names, _name(self._lib.tw_miss_name, res.miss),
                            res.lease)

    def release_leases(self, leases, timeout=None):
        arr = (ctypes.c_uint64 * max(1, len(leases)))(*leases)
        released = ctypes.c_uint32(0)
        _native.check(self._lib.tw_client_release_leases(
            self._h(), arr, len(leases), ctypes.byref(released), self._ms(timeout)))
        return released.value

    def get(self, key, arena_offset=0, arena_length=None, scatter=None, namespace=0, lease=0,
            timeout=None):
        """Reads one chunk into the arena: its whole value at arena_offset (arena_length bytes
        available there; default: the rest of the arena), or the ranges of `scatter`."""
        return self.get_batch([(key, arena_offset, arena_length, scatter)], namespace, lease,
                              timeout)[0]

    def get_batch(self, items, namespace=0, lease=0, timeout=None):
        """items: [(key, arena_offset, arena_length, scatter or None), ...]; one request."""
        n = len(items)
        c_items = (_native.GetItem * max(1, n))()
        keep = []
        digest = self._digest(namespace)
        for i, (key, off, length, scatter) in enumerate(items):
            key = bytes(key)
            if len(key) != KEY_SIZE:
                raise ValueError(f"items[{i}]: a key is {KEY_SIZE} bytes")
            keep.append(key)
            it = c_items[i]
            it.key = ctypes.cast(ctypes.c_char_p(key), ctypes.c_void_p)
            it.namespace_digest = ctypes.cast(ctypes.c_char_p(digest), ctypes.c_void_p)
            if scatter:
                arr = (_native.Scatter * len(scatter))(*[_native.Scatter(*s) for s in scatter])
                keep.append(arr)
                it.scatter = arr
                it.n_scatter = len(scatter)
            else:
                it.arena_offset = off
                it.arena_length = (self._arena_size - off) if length is None else length
        keep.append(digest)
        _native.check(self._lib.tw_client_get(self._h(), c_items, n, lease, self._ms(timeout)))
        return [GetResult(_name(self._lib.tw_tier_name, c_items[i].tier),
                          _name(self._lib.tw_miss_name, c_items[i].miss), c_items[i].bytes)
                for i in range(n)]

    def put(self, key, parent, tokens, arena_offset=0, length=None, extra=b"",
            segment_sizes=None, scatter=None, namespace=0, durability="memory", timeout=None):
        """Stores one chunk from the arena: `length` bytes at arena_offset as one segment, or
        `segment_sizes` + `scatter`. Returns the result name ('stored', 'exists', ...)."""
        item = dict(key=key, parent=parent, tokens=tokens, arena_offset=arena_offset,
                    length=length, extra=extra, segment_sizes=segment_sizes, scatter=scatter)
        return self.put_batch([item], namespace, durability, timeout)[0]

    def put_batch(self, items, namespace=0, durability="memory", timeout=None):
        """items: dicts with key, parent, tokens and either (arena_offset, length) or
        (segment_sizes, scatter), optionally extra. One request; a result name per item."""
        if durability not in _DURABILITY:
            raise ValueError(f"durability must be 'memory' or 'disk', not {durability!r}")
        n = len(items)
        c_items = (_native.PutItem * max(1, n))()
        keep = []
        digest = self._digest(namespace)
        keep.append(digest)

        def ptr(b):
            keep.append(b)
            return ctypes.cast(ctypes.c_char_p(b), ctypes.c_void_p)

        for i, item in enumerate(items):
            it = c_items[i]
            key, parent = bytes(item["key"]), bytes(item["parent"])
            if len(key) != KEY_SIZE or len(parent) != KEY_SIZE:
                raise ValueError(f"items[{i}]: key and parent are {KEY_SIZE} bytes each")
            it.key, it.parent, it.namespace_digest = ptr(key), ptr(parent), ptr(digest)
            extra = bytes(item.get("extra") or b"")
            if extra:
                it.extra, it.extra_size = ptr(extra), len(extra)
            tokens = list(item["tokens"])
            tok = (ctypes.c_uint32 * max(1, len(tokens)))(*tokens)
            keep.append(tok)
            it.tokens, it.n_tokens = tok, len(tokens)
            scatter = item.get("scatter")
            if scatter:
                sizes = list(item.get("segment_sizes") or [])
                if sizes:
                    arr = (ctypes.c_uint64 * len(sizes))(*sizes)
                    keep.append(arr)
                    it.segment_sizes, it.n_segments = arr, len(sizes)
                sc = (_native.Scatter * len(scatter))(*[_native.Scatter(*s) for s in scatter])
            else:
                off = item.get("arena_offset", 0)
                length = item.get("length")
                if length is None:
                    raise ValueError(f"items[{i}]: give length (or segment_sizes + scatter)")
                sc = (_native.Scatter * 1)(_native.Scatter(0, 0, length, off))
            keep.append(sc)
            it.scatter, it.n_scatter = sc, len(sc)
        _native.check(self._lib.tw_client_put(self._h(), c_items, n, _DURABILITY[durability],
                                              self._ms(timeout)))
        return [_name(self._lib.tw_put_result_name, c_items[i].result) for i in range(n)]

    def exists(self, keys, namespace=0, timeout=None):
        """Tier name of each key ('none' when not stored)."""
        n = len(keys)
        tiers = (ctypes.c_uint8 * max(1, n))()
        _native.check(self._lib.tw_client_exists(
            self._h(), self._digest(namespace), self._keys_blob(keys), n, tiers, None,
            self._ms(timeout)))
        return _tier_names(self._lib, bytes(tiers)[:n])

    def delete(self, keys, namespace=0, timeout=None):
        """Whether each key was stored (and is now gone)."""
        n = len(keys)
        out = (ctypes.c_uint8 * max(1, n))()
        _native.check(self._lib.tw_client_delete(
            self._h(), self._digest(namespace), self._keys_blob(keys), n, out,
            self._ms(timeout)))
        return [bool(out[i]) for i in range(n)]

    def stats(self, timeout=None):
        """twd's counters as a dict (see docs/clients.md)."""
        needed = ctypes.c_size_t(0)
        size = 8192
        for _ in range(3):
            buf = ctypes.create_string_buffer(size)
            code = self._lib.tw_client_stats(self._h(), buf, size, ctypes.byref(needed),
                                             self._ms(timeout))
            if code == 0:
                return json.loads(buf.value.decode())
            if needed.value <= size:
                _native.check(code)
            size = needed.value
        _native.check(code)

    def ping(self, timeout=None):
        _native.check(self._lib.tw_client_ping(self._h(), self._ms(timeout)))
