"""Redis: Debian's redis-server over a Unix socket, driven by redis-py (with its hiredis
parser). Started with its defaults but for the socket and the data directory: no AOF, the
default RDB save points, so a clean shutdown (SIGTERM) writes dump.rdb and a restart loads
it. A put is a SET (in memory when acknowledged); a get is a GET whose value is copied into
the worker's buffer; the lookup is one EXISTS of the 512 keys."""

import os
import subprocess
import time

import numpy as np

from common import ServerSystem, Unavailable, stamped

SERVER = "/usr/bin/redis-server"


class RedisSystem(ServerSystem):
    name = "redis"
    label = "Redis"
    put_kind = "SET, in memory (default RDB save points; dump.rdb written at shutdown)"
    restart_kind = "redis-server stopped (SIGTERM: saves dump.rdb) and started again"

    def __init__(self):
        self.proc = None

    def version(self):
        try:
            out = subprocess.run([SERVER, "--version"], capture_output=True, text=True,
                                 timeout=10).stdout.split()
            server = next(w for w in out if w.startswith("v=")) [2:]
        except Exception:
            server = "?"
        try:
            import redis
            client = redis.__version__
        except Exception:
            client = "?"
        return f"redis-server {server} (Debian), redis-py {client}"

    def check(self):
        if not os.access(SERVER, os.X_OK):
            raise Unavailable(f"{SERVER} is missing (Debian package redis-server)")
        try:
            import redis  # noqa: F401
        except Exception as e:
            raise Unavailable(f"import redis: {type(e).__name__}: {e}") from None

    def start(self, workdir, capacity):
        self.workdir = workdir
        self.socket = os.path.join(workdir, "redis.sock")
        argv = [SERVER, "--port", "0", "--unixsocket", self.socket, "--unixsocketperm", "700",
                "--dir", workdir, "--dbfilename", "dump.rdb", "--daemonize", "no",
                "--protected-mode", "yes", "--logfile", ""]
        self.spawn(argv, os.path.join(workdir, "redis.log"), 30, "redis-server")

    def client_spec(self):
        return dict(super().client_spec(), socket=self.socket)


class Client:
    def __init__(self, spec, chunk_bytes, proc_index, n_chunks):
        import redis
        self.size = chunk_bytes
        self.r = redis.Redis(unix_socket_path=spec["socket"], socket_timeout=300)
        deadline = time.monotonic() + 120
        while True:
            try:
                self.r.ping()
                break
            except (redis.exceptions.BusyLoadingError, redis.exceptions.ConnectionError):
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.01)
        self.src = np.full(chunk_bytes, 7, dtype=np.uint8)
        self.dst = np.zeros(chunk_bytes, dtype=np.uint8)
        self.busy = redis.exceptions.BusyLoadingError

    def put(self, cid):
        self.r.set(f"chunk:{cid}", memoryview(self.src))

    def finish_puts(self):
        pass

    def get(self, cid):
        while True:
            try:
                v = self.r.get(f"chunk:{cid}")
                break
            except self.busy:  # still loading dump.rdb after a restart
                time.sleep(0.005)
        if v is None or len(v) != self.size:
            return False
        self.dst[:] = np.frombuffer(v, dtype=np.uint8)
        return stamped(self.dst, cid)

    def lookup_keys(self, cids):
        return [f"chunk:{i}" for i in cids]

    def lookup(self, keys):
        return self.r.exists(*keys)

    def close(self):
        self.r.close()
