"""tokenwarehouse's GPU API (tw_gpu.h through ctypes) on the CPU backend: layouts taken from
tensor-like objects for each of vLLM's arrangements, byte-exact save/load round trips with holes
and reversed block tables, merged copy counts, per-layer events, errors for bad layouts, and the
arena pinned in slices through a real twd. Nothing here imports torch: the tensors are stand-ins
that expose what torch tensors expose (data_ptr, stride, shape, element_size)."""

import ctypes
import mmap
import os
import random
import sys
import tempfile
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
SOURCE = os.environ.get("TW_SOURCE_DIR") or os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, os.path.join(SOURCE, "tests", "client"))
sys.path.insert(0, os.path.join(SOURCE, "client", "python"))

import tokenwarehouse as tw  # noqa: E402

LAYERS, BLOCKS, BLOCK_SIZE, HEADS, HEAD_DIM, ELT = 3, 10, 4, 2, 8, 2


class FakeTensor:
    """A strided view of device memory, as a torch tensor exposes it."""

    def __init__(self, ptr, shape, stride=None, elt=ELT):
        self.ptr, self.shape, self.elt = ptr, tuple(shape), elt
        if stride is None:
            stride, acc = [], 1
            for n in reversed(self.shape):
                stride.insert(0, acc)
                acc *= n
        self._stride = tuple(stride)

    def data_ptr(self):
        return self.ptr

    def stride(self):
        return self._stride

    def element_size(self):
        return self.elt

    def numel(self):
        n = 1
        for s in self.shape:
            n *= s
        return n


def shape_of(layout):
    token = (BLOCK_SIZE, HEADS, HEAD_DIM)
    return {
        "flash_attn": (2, BLOCKS) + token,
        "flashinfer": (BLOCKS, 2) + token,
        "flashinfer_hnd": (BLOCKS, 2, HEADS, BLOCK_SIZE, HEAD_DIM),
        "mla": (BLOCKS, BLOCK_SIZE, HEADS * HEAD_DIM),
        "separate": (BLOCKS,) + token,
    }[layout]


class Cache:
    """Device memory for one cache of `layout` on `gpu`, filled with random bytes."""

    def __init__(self, gpu, layout, seed):
        self.gpu = gpu
        shape = shape_of(layout)
        per = 1
        for s in shape:
            per *= s
        per_tensor = per * ELT
        n_tensors = LAYERS * (2 if layout == "separate" else 1)
        self.nbytes = per_tensor * n_tensors
        self.ptr = gpu.alloc_device(self.nbytes)
        rng = random.Random(seed)
        data = bytes(rng.getrandbits(8) for _ in range(self.nbytes))
        ctypes.memmove(self.ptr, data, self.nbytes)  # CPU backend: device memory is host memory
        tensors = [FakeTensor(self.ptr + i * per_tensor, shape) for i in range(n_tensors)]
        if layout == "separate":
            tensors = [(tensors[2 * l], tensors[2 * l + 1]) for l in range(LAYERS)]
        self.tensors = tensors
        self.layout = tw.KvLayout.from_tensors(tensors, layout)

    def block(self, layer, plane, b):
        addr, stride = self.layout.planes[layer * self.layout.planes_per_layer + plane]
        return ctypes.string_at(addr + b * stride, self.layout.plane_block_bytes)

    def free(self):
        self.gpu.free_device(self.ptr)


class GpuApiTest(unittest.TestCase):
    def setUp(self):
        self.gpu = tw.Gpu("cpu")
        self.stream = self.gpu.create_stream()

    def tearDown(self):
        self.gpu.destroy_stream(self.stream)
        self.gpu.close()

    def test_import_does_not_import_torch(self):
        self.assertNotIn("torch", sys.modules)

    def test_availability_and_cuda_refusal_say_why(self):
        line = tw.gpu_availability()
        self.assertRegex(line, r"^gpu (on|off)")
        if line.startswith("gpu off"):
            with self.assertRaises(tw.TokenWarehouseError) as e:
                tw.Gpu("cuda")
            self.assertEqual(e.exception.name, "FAILED_PRECONDITION")
            self.assertIn("the GPU path is off", str(e.exception))
        with self.assertRaises(ValueError):
            tw.Gpu("tpu")

    def test_round_trip_every_layout(self):
        save_table = [3, 4, 5, -1, 9, 8, 0]
        load_table = [9, 8, 7, -1, 1, 2, 3]
        for name in tw.LAYOUTS:
            with self.subTest(layout=name):
                src, dst = Cache(self.gpu, name, 1), Cache(self.gpu, name, 2)
                planes = src.layout.planes_per_layer
                self.assertEqual(planes, 1 if name == "mla" else 2)
                self.assertEqual(src.layout.plane_block_bytes,
                                 BLOCK_SIZE * HEADS * HEAD_DIM * ELT)
                s_cache, d_cache = self.gpu.kv_cache(src.layout), self.gpu.kv_cache(dst.layout)
                seg = s_cache.segment_bytes(len(save_table))
                self.assertEqual(seg, planes * len(save_table) * src.layout.plane_block_bytes)
                host = bytearray(b"\xab" * (LAYERS * seg))
                offsets = [l * seg for l in range(LAYERS)]
                t = s_cache.save(save_table, host, offsets, stream=self.stream)
                t.wait()
                # Runs: (3,4,5), 9, 8, 0 → 4 copies per plane and layer.
                self.assertEqual(t.copies, LAYERS * planes * 4)
                bb = src.layout.plane_block_bytes
                for l in range(LAYERS):
                    for p in range(planes):
                        for i, b in enumerate(save_table):
                            at = offsets[l] + (p * len(save_table) + i) * bb
                            got = bytes(host[at:at + bb])
                            want = b"\xab" * bb if b < 0 else src.block(l, p, b)
                            self.assertEqual(got, want, (name, l, p, i))
                t = d_cache.load(load_table, host, offsets, stream=self.stream)
                for l in range(LAYERS):
                    t.wait_layer(l)
                    self.assertTrue(t.done(l))
                    for p in range(planes):
                        for i, b in enumerate(load_table):
                            if b >= 0:
                                self.assertEqual(dst.block(l, p, b),
                                                 src.block(l, p, save_table[i]), (name, l, p, i))
                self.assertNotEqual(t.event(0), 0)
                self.assertEqual(t.event(LAYERS), 0)
                t.close()
                s_cache.close()
                d_cache.close()
                src.free()
                dst.free()

    def test_one_layer_at_a_time_and_stream_wait(self):
        src = Cache(self.gpu, "flash_attn", 3)
        cache = self.gpu.kv_cache(src.layout)
        table = list(range(BLOCKS))
        seg = cache.segment_bytes(len(table))
        host = bytearray(LAYERS * seg)
        other = self.gpu.create_stream()
        for l in range(LAYERS):
            t = cache.save(table, host, [l * seg], first_layer=l, stream=self.stream)
            self.assertEqual(t.copies, 2)  # one run: one copy per plane
            t.stream_wait(l, other)
            self.gpu.synchronize(other)
            self.assertTrue(t.done(l))
            with self.assertRaises(tw.TokenWarehouseError):
                t.wait_layer(l + 1)
        self.assertEqual(bytes(host[:src.layout.plane_block_bytes]), src.block(0, 0, 0))
        self.gpu.destroy_stream(other)
        cache.close()
        src.free()

    def test_bad_layouts_and_tables(self):
        src = Cache(self.gpu, "flashinfer", 4)
        bad = tw.KvLayout(src.layout.planes, 2, src.layout.plane_block_bytes * 3,
                          BLOCK_SIZE, BLOCKS)
        with self.assertRaises(tw.TokenWarehouseError) as e:
            self.gpu.kv_cache(bad)
        self.assertEqual(e.exception.name, "INVALID_ARGUMENT")
        self.assertIn("overlap", str(e.exception))
        strided = FakeTensor(src.ptr, shape_of("flashinfer"),
                             stride=(2 * 64 * 2, 64 * 2, 16 * 2, 8 * 2, 1))
        with self.assertRaises(ValueError) as v:
            tw.KvLayout.from_tensors([strided], "flashinfer")
        self.assertIn("not contiguous", str(v.exception))
        with self.assertRaises(ValueError):
            tw.KvLayout.from_tensors(src.tensors, "paged_attention_v9")
        mixed = [src.tensors[0], FakeTensor(src.ptr, (BLOCKS, 2, 2 * BLOCK_SIZE, HEADS, 4))]
        with self.assertRaises(ValueError):
            tw.KvLayout.from_tensors(mixed, "flashinfer")
        cache = self.gpu.kv_cache(src.layout)
        seg = cache.segment_bytes(2)
        host = bytearray(LAYERS * seg)
        for table, want in (([0, BLOCKS], "is block 10"), ([1, 1], "appears twice"), ([], "no")):
            with self.assertRaises(tw.TokenWarehouseError) as e:
                cache.save(table, host, [0, seg, 2 * seg], stream=self.stream)
            self.assertIn(want, str(e.exception))
        with self.assertRaises(tw.TokenWarehouseError) as e:
            cache.save([0, 1], host, [0, seg, 2 * seg + 1], stream=self.stream)
        self.assertIn("outside the host buffer", str(e.exception))
        cache.close()
        src.free()

    def test_register_host_in_slices(self):
        buf = mmap.mmap(-1, 3 * 4096 + 100)  # page-aligned: slices must not share a page
        with self.assertRaises(tw.TokenWarehouseError) as e:
            self.gpu.register_host(buf, slice_bytes=4000)
        self.assertIn("4 KiB aligned", str(e.exception))
        self.gpu.register_host(buf, slice_bytes=4096)
        with self.assertRaises(tw.TokenWarehouseError) as e:
            self.gpu.register_host(buf, slice_bytes=4096)
        self.assertEqual(e.exception.name, "ALREADY_EXISTS")
        self.assertIn("slice at offset 0", str(e.exception))
        self.gpu.unregister_host(buf, slice_bytes=4096)
        with self.assertRaises(tw.TokenWarehouseError):
            self.gpu.unregister_host(buf, slice_bytes=4096)


class PinnedArenaTest(unittest.TestCase):
    def test_pin_arena_then_close_unpins(self):
        from servers import Server
        with tempfile.TemporaryDirectory(prefix="twgpu-py-") as tmp:
            server = Server("twd", tmp).start()
            try:
                gpu = tw.Gpu("cpu")
                ns = {"model": "m", "chunk_tokens": "16"}
                c = tw.Client(server.socket, 8 << 20, namespaces=[ns])
                c.pin_arena(gpu, slice_bytes=2 << 20)
                with self.assertRaises(tw.TokenWarehouseError) as e:
                    c.pin_arena(gpu)
                self.assertEqual(e.exception.name, "ALREADY_EXISTS")
                # The arena's slices are registered: registering one again fails.
                with self.assertRaises(tw.TokenWarehouseError):
                    gpu.register_host((c.arena_address, 2 << 20))
                addr, size = c.arena_address, c.arena_size
                c.close()
                # close() unregistered them: the same range registers again (the backend only
                # records ranges; nothing touches the unmapped memory).
                gpu.register_host((addr, size), slice_bytes=2 << 20)
                gpu.unregister_host((addr, size), slice_bytes=2 << 20)
                gpu.close()
            finally:
                server.stop()


if __name__ == "__main__":
    unittest.main()
