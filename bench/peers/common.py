"""What the systems of the peers benchmark share (bench/peers/peers.py drives them).

A system has two halves. The orchestrator's half (a `System`) starts, stops and restarts
whatever runs outside the benchmark's client processes (twd, redis-server, Mooncake's master
and the process holding its memory; nothing for the in-process stores LMCache and the file
per chunk) and says which processes hold the data. The client half (a `Client`, made by
`System.client_spec()` + `make_client` in each worker process) puts and gets chunks through
the system's public API. Chunks are named by integer ids; each client maps them to its own
keys. A value's first 8 bytes carry its id, so every get is checked for the right bytes.

Threading: a System belongs to the orchestrator's thread; a Client to its worker process.
"""

import importlib
import os
import struct
import subprocess
import time


class Unavailable(Exception):
    """A system cannot be installed or run here; the message says why, exactly."""


def fill_random(buf, seed=1):
    """Fills a value with incompressible bytes (KV caches are: Redis would otherwise
    compress its dump of repeated bytes)."""
    import numpy as np
    a = np.frombuffer(memoryview(buf).cast("B"), dtype=np.uint8)
    a[:] = np.random.default_rng(seed).integers(0, 256, size=a.size, dtype=np.uint8)


def stamp(buf, chunk_id):
    """Marks a value with its chunk id (buf: a writable uint8 buffer)."""
    memoryview(buf)[:8] = struct.pack("<Q", chunk_id + 1)


def stamped(buf, chunk_id):
    return bytes(memoryview(buf)[:8]) == struct.pack("<Q", chunk_id + 1)


def rss_bytes(pid):
    """Resident set size of a process (VmRSS), 0 when it is gone."""
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def write_bytes(pid):
    """Bytes a process caused to be sent to the storage layer (/proc/PID/io write_bytes)."""
    try:
        with open(f"/proc/{pid}/io") as f:
            for line in f:
                if line.startswith("write_bytes:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def drop_file_cache(root):
    """Writes back and evicts from the page cache every file under `root` (fdatasync, then
    posix_fadvise DONTNEED): the next read of them comes from the disk. Only these files'
    pages are dropped, not the whole machine's cache (/proc/sys/vm/drop_caches)."""
    for dirpath, _, files in os.walk(root):
        for name in files:
            path = os.path.join(dirpath, name)
            try:
                fd = os.open(path, os.O_RDONLY)
            except OSError:
                continue
            try:
                os.fdatasync(fd)
                os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
            except OSError:
                pass
            finally:
                os.close(fd)


def wait_for(predicate, timeout, what):
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise RuntimeError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.02)


class Process:
    """A child process whose output goes to a log file; `stop` sends SIGTERM, waits, and
    returns the child's resource usage (os.wait4), whose ru_oublock counts the blocks it
    wrote over its whole life, its shutdown included."""

    def __init__(self, argv, log_path, env=None):
        self.argv, self.log_path = argv, log_path
        log = open(log_path, "ab")
        self.proc = subprocess.Popen(argv, stdout=log, stderr=log, stdin=subprocess.DEVNULL,
                                     env=env)
        log.close()
        self.pid = self.proc.pid

    def alive(self):
        return self.proc.poll() is None

    def log_tail(self, n=20):
        try:
            with open(self.log_path, errors="replace") as f:
                return "".join(f.readlines()[-n:])
        except OSError:
            return ""

    def stop(self, timeout=120):
        """SIGTERM, then SIGKILL after `timeout` s. Returns bytes written over its life."""
        if self.proc.returncode is not None:
            return 0
        self.proc.terminate()
        deadline = time.monotonic() + timeout
        while True:
            pid, status, usage = os.wait4(self.pid, os.WNOHANG)
            if pid == self.pid:
                self.proc.returncode = os.waitstatus_to_exitcode(status)
                return usage.ru_oublock * 512
            if time.monotonic() > deadline:
                self.proc.kill()
                _, status, usage = os.wait4(self.pid, 0)
                self.proc.returncode = os.waitstatus_to_exitcode(status)
                return usage.ru_oublock * 512
            time.sleep(0.02)


class System:
    """The orchestrator's half of a system. Subclasses set `name`, `label`, `put_kind` (what
    an acknowledged put means) and override the methods."""

    name = ""
    label = ""
    put_kind = ""
    restart_kind = ""  # what "restart" means for it

    def version(self):
        return ""

    def check(self):
        """Raises Unavailable with the exact error when the system cannot run here."""

    def start(self, workdir, capacity):
        """Starts it empty (or, after `stop`, on the same workdir) for `capacity` bytes."""

    def stop(self):
        """Stops it; returns bytes its processes wrote over their lives (0 if none)."""
        return 0

    def holder_pids(self):
        """Processes (besides the clients) that hold its data."""
        return []

    def client_spec(self):
        """A picklable dict from which make_client() builds a client in a worker."""
        return {"module": type(self).__module__, "name": self.name}


class ServerSystem(System):
    """A system served by one server process listening on a Unix socket (twd, Redis)."""

    proc = None
    socket = ""

    def spawn(self, argv, log_path, timeout, what):
        """Starts `argv` and waits until it listens on `self.socket` (or dies)."""
        if os.path.exists(self.socket):
            os.unlink(self.socket)
        self.proc = Process(argv, log_path)
        wait_for(lambda: os.path.exists(self.socket) or not self.proc.alive(), timeout, what)
        if not self.proc.alive():
            raise RuntimeError(f"{what} exited:\n" + self.proc.log_tail())

    def stop(self):
        written = self.proc.stop() if self.proc else 0
        self.proc = None
        return written

    def holder_pids(self):
        return [self.proc.pid] if self.proc else []


def make_client(spec, chunk_bytes, proc_index, n_chunks):
    """A client of the system `spec` describes, in the calling (worker) process."""
    module = importlib.import_module(spec["module"])
    client = module.Client(spec, chunk_bytes, proc_index, n_chunks)
    fill_random(client.src, seed=proc_index + 1)
    return client
