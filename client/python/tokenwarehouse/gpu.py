"""GPU transfers of paged KV blocks (tw_gpu.h through ctypes).

    import tokenwarehouse as tw
    gpu = tw.Gpu("cuda")                                   # tw.gpu_availability() says why not
    client.pin_arena(gpu)                                  # DMA to and from the arena
    layout = tw.KvLayout.from_tensors(kv_caches, "flash_attn")   # one tensor per layer
    cache = gpu.kv_cache(layout)
    n = cache.segment_bytes(len(block_ids))                # one layer's bytes in the arena
    t = cache.load(block_ids, client, [l * n for l in range(layout.n_layers)])
    t.stream_wait(0, torch.cuda.current_stream())          # layer 0 before its attention
    ...
    t.wait()

Tensors are used through what they expose (data_ptr(), stride(), shape, element_size()), so
this module never imports torch: raw device pointers work as well (KvLayout(...)). Streams are
an int (a cudaStream_t), an object with a `cuda_stream` attribute (torch.cuda.Stream), or None:
PyTorch's current stream when torch is already imported and the backend is CUDA, else 0 (CUDA's
legacy default stream). See docs/gpu.md for the layouts in terms of planes.
"""

import ctypes
import sys

from . import _native

# How vLLM's attention backends lay out one layer's cache: the dimension of blocks, of K/V
# (None: a single plane) and of the tokens of a block.
LAYOUTS = {
    # FlashAttention: [2, num_blocks, block_size, num_kv_heads, head_size]
    "flash_attn": dict(block=1, kv=0, token=2),
    # FlashInfer (NHD): [num_blocks, 2, block_size, num_kv_heads, head_size]
    "flashinfer": dict(block=0, kv=1, token=2),
    # FlashInfer HND: [num_blocks, 2, num_kv_heads, block_size, head_size]
    "flashinfer_hnd": dict(block=0, kv=1, token=3),
    # MLA: [num_blocks, block_size, kv_lora_rank + qk_rope_head_dim]
    "mla": dict(block=0, kv=None, token=1),
    # One tensor per plane, given per layer as a (k, v) pair: [num_blocks, block_size, ...]
    "separate": dict(block=0, kv=None, token=1),
}


def gpu_availability():
    """One line: "gpu on: ..." or "gpu off: <why>", and whether GDS is usable."""
    native = _native.lib()
    needed = ctypes.c_size_t(0)
    buf = ctypes.create_string_buffer(1024)
    code = native.tw_gpu_availability(buf, len(buf), ctypes.byref(needed))
    if code != 0 and needed.value > len(buf):
        buf = ctypes.create_string_buffer(needed.value)
        code = native.tw_gpu_availability(buf, len(buf), ctypes.byref(needed))
    _native.check(code)
    return buf.value.decode()


def _shape(t):
    s = t.shape
    return tuple(int(x) for x in (s() if callable(s) else s))


def _planes_of(tensor, dims, what):
    """[(address, block_stride)], plane_block_bytes, block_size, num_blocks of one tensor."""
    shape = _shape(tensor)
    stride = tuple(int(x) for x in tensor.stride())
    elt = int(tensor.element_size())
    block, kv, token = dims["block"], dims["kv"], dims["token"]
    if max(d for d in (block, kv, token) if d is not None) >= len(shape):
        raise ValueError(f"{what}: shape {shape} has too few dimensions for this layout")
    rest = [d for d in range(len(shape)) if d not in (block, kv)]
    # The dimensions inside one block must be dense (any order): a block is one byte range.
    expect = 1
    for d in sorted(rest, key=lambda d: stride[d]):
        if shape[d] != 1 and stride[d] != expect:
            raise ValueError(f"{what}: the dimensions inside a block (shape {shape}, strides "
                             f"{stride}) are not contiguous; a block must be one byte range")
        expect *= shape[d]
    block_bytes = expect * elt
    base = int(tensor.data_ptr())
    n_planes = 1 if kv is None else shape[kv]
    planes = [(base + p * stride[kv] * elt if kv is not None else base, stride[block] * elt)
              for p in range(n_planes)]
    return planes, block_bytes, shape[token], shape[block]


class KvLayout:
    """The paged KV cache as planes: block b of plane p of layer l is plane_block_bytes bytes
    at planes[l * planes_per_layer + p][0] + b * planes[...][1] (device addresses)."""

    def __init__(self, planes, planes_per_layer, plane_block_bytes, block_size, num_blocks):
        planes = [(int(a), int(s)) for a, s in planes]
        if planes_per_layer <= 0 or len(planes) % planes_per_layer:
            raise ValueError(f"{len(planes)} planes are not a multiple of planes_per_layer "
                             f"{planes_per_layer}")
        self.planes = planes
        self.planes_per_layer = int(planes_per_layer)
        self.n_layers = len(planes) // self.planes_per_layer
        self.plane_block_bytes = int(plane_block_bytes)
        self.block_size = int(block_size)
        self.num_blocks = int(num_blocks)

    @classmethod
    def from_tensors(cls, tensors, layout="flash_attn", block_size=None, dims=None):
        """From one tensor per layer (or a (k, v) pair per layer for "separate"). `layout` is a
        key of LAYOUTS, or give `dims` = dict(block=, kv=, token=) for another arrangement.
        `block_size` overrides the size of the token dimension."""
        if dims is None:
            if layout not in LAYOUTS:
                raise ValueError(f"unknown layout {layout!r}; known: {', '.join(LAYOUTS)}, "
                                 "or give dims=dict(block=, kv=, token=)")
            dims = LAYOUTS[layout]
        tensors = list(tensors)
        if not tensors:
            raise ValueError("no layers")
        planes, common, per_layer = [], None, None
        for l, layer in enumerate(tensors):
            parts = list(layer) if isinstance(layer, (tuple, list)) else [layer]
            layer_planes = []
            for i, t in enumerate(parts):
                p, bb, bs, nb = _planes_of(t, dims, f"layer {l} tensor {i}")
                key = (bb, bs if block_size is None else int(block_size), nb)
                if common is None:
                    common = key
                elif key != common:
                    raise ValueError(f"layer {l}: block bytes, block size and block count "
                                     f"{key} differ from layer 0's {common}")
                layer_planes.extend(p)
            if per_layer is None:
                per_layer = len(layer_planes)
            elif per_layer != len(layer_planes):
                raise ValueError(f"layer {l} has {len(layer_planes)} planes, layer 0 {per_layer}")
            planes.extend(layer_planes)
        return cls(planes, per_layer, common[0], common[1], common[2])

    def _c(self):
        arr = (_native.KvPlane * len(self.planes))(*[_native.KvPlane(a, s) for a, s in self.planes])
        c = _native.KvLayoutC(self.n_layers, self.planes_per_layer, self.plane_block_bytes,
                              self.block_size, self.num_blocks,
                              ctypes.cast(arr, ctypes.POINTER(_native.KvPlane)))
        return c, arr


def _host_range(host):
    """(address, size) of a Client's arena, an (address, size) pair or a writable buffer."""
    if hasattr(host, "arena_address") and hasattr(host, "arena_size"):
        return host.arena_address, host.arena_size
    if isinstance(host, tuple) and len(host) == 2:
        return int(host[0]), int(host[1])
    buf = (ctypes.c_char * len(memoryview(host).cast("B"))).from_buffer(host)
    return ctypes.addressof(buf), len(buf)


class Gpu:
    """A backend: "cuda" (the CUDA runtime, loaded at run time) or "cpu" (tests)."""

    def __init__(self, kind="cuda", device=0):
        kinds = {"cuda": 0, "cpu": 1}
        if kind not in kinds:
            raise ValueError(f"gpu kind {kind!r} is not 'cuda' or 'cpu'")
        self._lib = _native.lib()
        h = ctypes.c_void_p()
        _native.check(self._lib.tw_gpu_open(kinds[kind], int(device), ctypes.byref(h)))
        self._h = h
        self.kind = kind

    def close(self):
        if self._h:
            self._lib.tw_gpu_close(self._h)
            self._h = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def __del__(self):
        try:
            self.close()
        except Exception:
            pass

    def handle(self):
        if not self._h:
            raise ValueError("the gpu is closed")
        return self._h

    def stream(self, stream):
        """The int handle of `stream` (see the module documentation)."""
        if stream is None:
            torch = sys.modules.get("torch")
            if self.kind == "cuda" and torch is not None and torch.cuda.is_available():
                return int(torch.cuda.current_stream().cuda_stream)
            return 0
        if hasattr(stream, "cuda_stream"):
            return int(stream.cuda_stream)
        return int(stream)

    def alloc_device(self, nbytes):
        p = ctypes.c_uint64()
        _native.check(self._lib.tw_gpu_alloc_device(self.handle(), int(nbytes), ctypes.byref(p)))
        return p.value

    def free_device(self, ptr):
        _native.check(self._lib.tw_gpu_free_device(self.handle(), int(ptr)))

    def create_stream(self):
        s = ctypes.c_uint64()
        _native.check(self._lib.tw_gpu_stream_create(self.handle(), ctypes.byref(s)))
        return s.value

    def destroy_stream(self, stream):
        _native.check(self._lib.tw_gpu_stream_destroy(self.handle(), self.stream(stream)))

    def synchronize(self, stream=None):
        _native.check(self._lib.tw_gpu_stream_synchronize(self.handle(), self.stream(stream)))

    def register_host(self, host, slice_bytes=0):
        """Pins a host range (see _host_range) in slices; undo with unregister_host."""
        addr, size = _host_range(host)
        _native.check(self._lib.tw_gpu_register_host(self.handle(), addr, size, slice_bytes))

    def unregister_host(self, host, slice_bytes=0):
        addr, size = _host_range(host)
        _native.check(self._lib.tw_gpu_unregister_host(self.handle(), addr, size, slice_bytes))

    def kv_cache(self, layout):
        return PagedKvCache(self, layout)


class PagedKvCache:
    """Saves and loads chunks between a paged KV cache (a KvLayout) and host memory."""

    def __init__(self, gpu, layout):
        self._gpu = gpu
        self._lib = gpu._lib
        self.layout = layout
        c, keep = layout._c()
        h = ctypes.c_void_p()
        _native.check(self._lib.tw_kv_cache_create(gpu.handle(), ctypes.byref(c), ctypes.byref(h)))
        del keep
        self._h = h

    def close(self):
        if self._h:
            self._lib.tw_kv_cache_free(self._h)
            self._h = None

    def __del__(self):
        try:
            self.close()
        except Exception:
            pass

    def segment_bytes(self, n_blocks):
        """Bytes of one layer's segment for a block table of n_blocks entries."""
        return self._lib.tw_kv_cache_segment_bytes(self._h, int(n_blocks))

    def save(self, block_ids, host, layer_offsets, first_layer=0, stream=None):
        """Gathers the blocks into the host segments (a Transfer); see tw_gpu.h."""
        return self._start(0, block_ids, host, layer_offsets, first_layer, stream)

    def load(self, block_ids, host, layer_offsets, first_layer=0, stream=None):
        """Scatters the host segments into the blocks (a Transfer); -1 entries are skipped."""
        return self._start(1, block_ids, host, layer_offsets, first_layer, stream)

    def _start(self, direction, block_ids, host, layer_offsets, first_layer, stream):
        if not self._h:
            raise ValueError("the kv cache is closed")
        ids = block_ids.tolist() if hasattr(block_ids, "tolist") else list(block_ids)
        ids_c = (ctypes.c_int32 * len(ids))(*[int(b) for b in ids])
        offsets = [int(o) for o in layer_offsets]
        offs_c = (ctypes.c_uint64 * len(offsets))(*offsets)
        addr, size = _host_range(host)
        h = ctypes.c_void_p()
        _native.check(self._lib.tw_kv_transfer_start(
            self._h, direction, ids_c, len(ids), addr, size, offs_c, int(first_layer),
            len(offsets), self._gpu.stream(stream), ctypes.byref(h)))
        return Transfer(self._lib, self._gpu, h, int(first_layer), len(offsets))


class Transfer:
    """A queued save or load: per-layer events (layer numbers are absolute)."""

    def __init__(self, lib, gpu, handle, first_layer, n_layers):
        self._lib, self._gpu, self._h = lib, gpu, handle
        self.first_layer, self.n_layers = first_layer, n_layers

    def wait_layer(self, layer):
        _native.check(self._lib.tw_kv_transfer_wait_layer(self._h, int(layer)))

    def done(self, layer):
        d = ctypes.c_int()
        _native.check(self._lib.tw_kv_transfer_query_layer(self._h, int(layer), ctypes.byref(d)))
        return bool(d.value)

    def stream_wait(self, layer, stream=None):
        """Work queued on `stream` afterwards waits for layer `layer`."""
        _native.check(self._lib.tw_kv_transfer_stream_wait_layer(
            self._h, int(layer), self._gpu.stream(stream)))

    def event(self, layer):
        """The layer's cudaEvent_t as an int (0 when out of range)."""
        return self._lib.tw_kv_transfer_event(self._h, int(layer))

    def wait(self):
        _native.check(self._lib.tw_kv_transfer_wait(self._h))

    @property
    def copies(self):
        return self._lib.tw_kv_transfer_copies(self._h)

    @property
    def bytes(self):
        return self._lib.tw_kv_transfer_bytes(self._h)

    def close(self):
        if self._h:
            self._lib.tw_kv_transfer_free(self._h)
            self._h = None

    def __del__(self):
        try:
            self.close()
        except Exception:
            pass
