"""A file per chunk on the local file system (ext4 here): the design of LMCache's local-disk
backend, SGLang HiCache's file backend and llm-d's file-system offload. A put writes the
chunk to a new file with buffered writes and fsyncs it (durable when acknowledged; no
directory fsync, as those backends); a get reads the file into the worker's buffer. Before
every get phase the benchmark drops the files from the page cache (posix_fadvise DONTNEED
after fdatasync, common.drop_file_cache), so gets read the disk. The lookup is an os.stat of
each of the 512 files. There is no process to restart: "restart" is a new process over the
same directory."""

import os

import numpy as np

from common import System, stamped


class FileSystem(System):
    name = "file"
    label = "file per chunk"
    put_kind = "buffered write + fsync per file"
    restart_kind = "a new process over the same directory"
    in_process = True

    def version(self):
        return "Linux " + os.uname().release

    def start(self, workdir, capacity):
        self.dir = os.path.join(workdir, "chunks")
        os.makedirs(self.dir, exist_ok=True)

    def client_spec(self):
        return dict(super().client_spec(), dir=self.dir)


class Client:
    def __init__(self, spec, chunk_bytes, proc_index, n_chunks):
        self.dir = spec["dir"]
        self.size = chunk_bytes
        self.src = np.full(chunk_bytes, 7, dtype=np.uint8)
        self.dst = np.zeros(chunk_bytes, dtype=np.uint8)
        self.dst_view = memoryview(self.dst)

    def _path(self, cid):
        return os.path.join(self.dir, f"{cid:08d}.chunk")

    def put(self, cid):
        with open(self._path(cid), "wb") as f:
            f.write(memoryview(self.src))
            f.flush()
            os.fsync(f.fileno())

    def finish_puts(self):
        pass

    def get(self, cid):
        try:
            with open(self._path(cid), "rb", buffering=0) as f:
                n = f.readinto(self.dst_view)
        except FileNotFoundError:
            return False
        return n == self.size and stamped(self.dst, cid)

    def lookup_keys(self, cids):
        return [self._path(i) for i in cids]

    def lookup(self, paths):
        n = 0
        for path in paths:
            try:
                os.stat(path)
                n += 1
            except FileNotFoundError:
                pass
        return n

    def close(self):
        pass
