"""Mooncake Store (the `mooncake-transfer-engine` project) with its TCP transport: its
master (`mooncake_master`, with its built-in HTTP metadata server, every port on 127.0.0.1)
and one store process that contributes the memory segment holding the chunks
(mooncake_holder.py, a MooncakeDistributedStore with a segment of the data set's size), as a
Mooncake node does; the worker processes are clients with no segment of their own, so every
byte crosses the transfer engine's TCP path. A put is put_from and a get get_into, both from
or into a buffer registered with the client; the lookup is batch_is_exist of the 512 keys.
Mooncake Store keeps chunks in memory: its SSD offload is not configured here.

The package named `mooncake-transfer-engine` is its CUDA build, whose store.so needs
libcuda.so.1; the benchmark runs the project's CPU build of the same version
(`mooncake-transfer-engine-non-cuda`) and reports the CUDA build's import error."""

import os
import socket
import subprocess
import sys
import time

import numpy as np

from common import Process, System, Unavailable, stamped, wait_for

HERE = os.path.dirname(os.path.abspath(__file__))


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _env():
    env = dict(os.environ)
    env["MC_TCP_BIND_ADDRESS"] = "127.0.0.1"
    env.setdefault("MC_LOG_LEVEL", "WARNING")
    env.setdefault("GLOG_minloglevel", "1")
    return env


def cuda_build_error():
    """Why the CUDA build (peers-venv.sh puts it in <venv>/mooncake-cuda) does not load here,
    or None when it loads or is not installed."""
    path = os.path.join(sys.prefix, "mooncake-cuda")
    if not os.path.isdir(path):
        return None
    r = subprocess.run([sys.executable, "-c", "import mooncake.store"], capture_output=True,
                       text=True, env=dict(os.environ, PYTHONPATH=path), timeout=120)
    if r.returncode == 0:
        return None
    lines = [l for l in r.stderr.strip().splitlines() if l.strip()]
    return lines[-1] if lines else f"exit status {r.returncode}"


class MooncakeSystem(System):
    name = "mooncake"
    label = "Mooncake Store"
    put_kind = "put_from into the holder's memory segment over TCP"
    restart_kind = "master and holder stopped (SIGTERM) and started again"

    def __init__(self):
        self.master = self.holder = None

    def version(self):
        try:
            from importlib.metadata import version
            return f"mooncake-transfer-engine-non-cuda {version('mooncake-transfer-engine-non-cuda')}"
        except Exception:
            return "?"

    def check(self):
        try:
            import mooncake
            from mooncake.store import MooncakeDistributedStore  # noqa: F401
        except Exception as e:
            raise Unavailable(f"import mooncake.store: {type(e).__name__}: {e}") from None
        self.master_bin = os.path.join(os.path.dirname(mooncake.__file__), "mooncake_master")
        if not os.access(self.master_bin, os.X_OK):
            raise Unavailable(f"{self.master_bin} is missing")

    def start(self, workdir, capacity):
        if workdir != getattr(self, "workdir", None):  # a restart keeps its addresses
            self.rpc, self.meta, self.metrics = _free_port(), _free_port(), _free_port()
        self.workdir, self.capacity = workdir, capacity
        metrics = self.metrics
        argv = [self.master_bin, "--rpc_address=127.0.0.1", f"--rpc_port={self.rpc}",
                "--enable_http_metadata_server=true", "--http_metadata_server_host=127.0.0.1",
                f"--http_metadata_server_port={self.meta}", f"--metrics_port={metrics}",
                "--enable_metric_reporting=false"]
        self.master = Process(argv, os.path.join(workdir, "mooncake_master.log"), env=_env())
        ready = os.path.join(workdir, "holder.ready")
        if os.path.exists(ready):
            os.unlink(ready)
        segment = capacity * 5 // 4 + (64 << 20)
        self.holder = Process([sys.executable, os.path.join(HERE, "mooncake_holder.py"),
                               self.spec_meta(), self.spec_master(), str(segment), ready],
                              os.path.join(workdir, "mooncake_holder.log"), env=_env())
        wait_for(lambda: os.path.exists(ready) or not self.holder.alive()
                 or not self.master.alive(), 120, "the Mooncake holder")
        if not self.master.alive():
            raise RuntimeError("mooncake_master exited:\n" + self.master.log_tail())
        if not self.holder.alive():
            raise RuntimeError("the Mooncake holder exited:\n" + self.holder.log_tail())

    def spec_meta(self):
        return f"http://127.0.0.1:{self.meta}/metadata"

    def spec_master(self):
        return f"127.0.0.1:{self.rpc}"

    def stop(self):
        written = 0
        for p in (self.holder, self.master):
            if p:
                written += p.stop(timeout=15)
        self.holder = self.master = None
        return written

    def holder_pids(self):
        return [p.pid for p in (self.holder, self.master) if p]

    def client_spec(self):
        return dict(super().client_spec(), meta=self.spec_meta(), master=self.spec_master())


class Client:
    def __init__(self, spec, chunk_bytes, proc_index, n_chunks):
        os.environ.update(_env())
        from mooncake.store import MooncakeDistributedStore
        self.size = chunk_bytes
        self.src = np.full(chunk_bytes, 7, dtype=np.uint8)
        self.dst = np.zeros(chunk_bytes, dtype=np.uint8)
        deadline = time.monotonic() + 60
        while True:  # a fresh store object per try: the master may still be starting
            self.s = MooncakeDistributedStore()
            rc = self.s.setup("127.0.0.1", spec["meta"], 0, 16 << 20, "tcp", "",
                              spec["master"])
            if rc == 0:
                break
            if time.monotonic() > deadline:
                raise RuntimeError(f"MooncakeDistributedStore.setup: {rc}")
            time.sleep(0.05)
        for b in (self.src, self.dst):
            rc = self.s.register_buffer(b.ctypes.data, chunk_bytes)
            if rc != 0:
                raise RuntimeError(f"MooncakeDistributedStore.register_buffer: {rc}")

    def put(self, cid):
        rc = self.s.put_from(f"chunk:{cid}", self.src.ctypes.data, self.size)
        if rc != 0:
            raise RuntimeError(f"Mooncake put_from of chunk {cid}: {rc}")

    def finish_puts(self):
        pass

    def get(self, cid):
        n = self.s.get_into(f"chunk:{cid}", self.dst.ctypes.data, self.size)
        return n == self.size and stamped(self.dst, cid)

    def lookup_keys(self, cids):
        return [f"chunk:{i}" for i in cids]

    def lookup(self, keys):
        return sum(1 for r in self.s.batch_is_exist(keys) if r == 1)

    def close(self):
        self.s.close()
