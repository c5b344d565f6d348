"""Starts the real twd (TW_BIN_DIR/twd, over a real store in a temporary directory) for the
script tests of twctl and the Python package. Stdlib only.

    with Server("twd", tmpdir) as s:       # s.socket, s.admin_socket; s.restart()
        ...

The only kind is "twd": these tests need no behaviour the real twd never shows (the C++
tests keep a misbehaving stand-in for that, tests/client/misbehaving_twd.h).
"""

import os
import signal
import subprocess
import time
import unittest

BIN = os.environ.get("TW_BIN_DIR", "")


def binary(name):
    return os.path.join(BIN, name)


def available_kinds():
    return ["twd"]


class Server:
    def __init__(self, kind, workdir, dram="64MiB", nvme="256MiB"):
        self.kind = kind
        self.workdir = workdir
        self.socket = os.path.join(workdir, "twd.sock")
        self.admin_socket = os.path.join(workdir, "twd-admin.sock")
        self.data_dir = os.path.join(workdir, "data")
        self.dram = dram
        self.nvme = nvme
        self.proc = None
        self.log_path = os.path.join(workdir, f"{kind}.log")
        if kind != "twd":
            raise ValueError(f"unknown server kind {kind!r}")
        if not os.path.exists(binary("twd")):
            raise RuntimeError(f"twd is not built ({binary('twd')} missing)")

    def command(self):
        os.makedirs(self.data_dir, exist_ok=True)
        return [binary("twd"), "--socket", self.socket, "--admin-socket", self.admin_socket,
                "--data-dir", self.data_dir, "--dram-capacity", self.dram,
                "--nvme-capacity", self.nvme, "--metrics-address", "127.0.0.1:0",
                "--log-level", "warn"]

    def start(self, timeout=30.0):
        log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(self.command(), stdout=log, stderr=log,
                                     stdin=subprocess.DEVNULL)
        log.close()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.kind} exited with {self.proc.returncode}:\n"
                                   + self.log())
            if os.path.exists(self.socket) and os.path.exists(self.admin_socket):
                return self
            time.sleep(0.02)
        raise RuntimeError(f"{self.kind} did not create {self.socket} in {timeout}s:\n"
                           + self.log())

    def stop(self, timeout=30.0):
        """SIGTERM and wait: a clean shutdown (twd writes back and leaves a summary)."""
        if self.proc is None:
            return None
        self.proc.send_signal(signal.SIGTERM)
        try:
            rc = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            rc = self.proc.wait()
        self.proc = None
        return rc

    def restart(self):
        self.stop()
        return self.start()

    def log(self):
        try:
            with open(self.log_path, "rb") as f:
                return f.read().decode("utf-8", "replace")[-4000:]
        except OSError:
            return ""

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()
