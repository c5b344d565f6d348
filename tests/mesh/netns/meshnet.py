"""A mesh of real twd processes, each in its own network namespace (stdlib only, root only).

    net = MeshNet(workdir, nodes=4)       # n1..n4, 10.87.0.1..4, one switch namespace
    net.setup()                           # namespaces, veth pairs, the bridge
    net.write_peers(["n1", "n2", "n3"])   # the peers file every twd reads
    net.set_peers(["n1", "n2"])           # rewrite it and wait until every running twd read it
    net.start("n1")                       # ip netns exec <ns> twd --config ... (real binary)
    with net.client("n1") as c: ...      # tokenwarehouse.Client on n1's Unix socket
    net.partition("n2"); net.heal("n2")   # the switch port of n2 down / up
    net.kill("n2")                        # SIGKILL; net.start("n2") restarts on the same data
    net.close()                           # processes, then namespaces; always safe to call

Layout: a switch namespace `<run>-sw` holds a bridge; each node namespace `<run>-<node>` holds
`eth0` (10.87.0.<i>/24), one end of a veth pair whose other end is port `p-<node>` of the
bridge. Nothing is added to the root namespace, so deleting the run's namespaces removes every
link. twd's client and admin sockets are paths in the shared file system: the test process
talks to every twd from the root namespace.

Cleanup: `<run>` is `twmesh<pid in hex>`, this process's. twd is started with a parent-death
signal (SIGKILL), so no twd outlives its test process even when ctest kills it on a timeout;
close() is registered with atexit and on SIGTERM/SIGINT; and remove_leftovers(), called by
setup(), deletes the namespaces of earlier runs whose process is gone (killing, by id, any
process still inside them) and their temporary directories (made by workdir()).

Placement (docs/mesh.md) is reimplemented here so that a test can choose chunks whose home is a
given node: directory_key() and home() follow the spec, and the spec's vectors are checked by
test_meshnet.py.
"""

import atexit
import ctypes
import hashlib
import json
import math
import os
import re
import shutil
import signal
import struct
import subprocess
import tempfile
import time

PREFIX = "twmesh"
SUBNET = "10.87.0"
MESH_PORT = 7470


class Unavailable(Exception):
    """This machine cannot run the namespace tests (not root, no `ip netns`)."""


def _ip(*args, check=True):
    r = subprocess.run(["ip", *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    if check and r.returncode != 0:
        raise RuntimeError(f"ip {' '.join(args)}: {r.stderr.strip()}")
    return r


def check_available():
    """Raises Unavailable with the reason when namespaces cannot be made here."""
    if os.geteuid() != 0:
        raise Unavailable("needs root (network namespaces and veth pairs)")
    if shutil.which("ip") is None:
        raise Unavailable("needs `ip` (iproute2)")
    probe = f"{PREFIX}{os.getpid():x}-probe"
    r = _ip("netns", "add", probe, check=False)
    if r.returncode != 0:
        raise Unavailable(f"`ip netns add` fails here: {r.stderr.strip()}")
    _ip("netns", "del", probe, check=False)


def _namespaces():
    r = _ip("netns", "list", check=False)
    return [line.split()[0] for line in r.stdout.splitlines() if line.strip()]


def _pid_alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _kill_namespace(ns):
    """SIGKILLs, by id, every process inside namespace `ns`, then deletes it."""
    r = _ip("netns", "pids", ns, check=False)
    for pid in r.stdout.split():
        try:
            os.kill(int(pid), signal.SIGKILL)
        except (ProcessLookupError, ValueError):
            pass
    _ip("netns", "del", ns, check=False)


def workdir():
    """A temporary directory for a run (`twmesh<pid>-…`: remove_leftovers() finds it if this
    process dies without removing it)."""
    return tempfile.TemporaryDirectory(prefix=f"{PREFIX}{os.getpid():x}-")


def remove_leftovers():
    """Deletes the namespaces and temporary directories of earlier runs (`twmesh<pid>-…`)
    whose process is gone."""
    removed = []
    for ns in _namespaces():
        m = re.match(rf"{PREFIX}([0-9a-f]+)-", ns)
        if m and not _pid_alive(int(m.group(1), 16)):
            _kill_namespace(ns)
            removed.append(ns)
    tmp = tempfile.gettempdir()
    for name in os.listdir(tmp):
        m = re.match(rf"{PREFIX}([0-9a-f]+)-", name)
        if m and not _pid_alive(int(m.group(1), 16)):
            shutil.rmtree(os.path.join(tmp, name), ignore_errors=True)
            removed.append(name)
    return removed


_libc = ctypes.CDLL(None, use_errno=True)
_PR_SET_PDEATHSIG = 1


def _die_with_parent():
    # Runs in the child between fork and exec: ip netns exec then execs twd, which keeps it.
    _libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)


# ---- placement (docs/mesh.md), for choosing chunks by home ---------------------------------

_M64 = (1 << 64) - 1


def fmix64(x):
    x ^= x >> 33
    x = (x * 0xFF51AFD7ED558CCD) & _M64
    x ^= x >> 33
    x = (x * 0xC4CEB9FE1A85EC53) & _M64
    x ^= x >> 33
    return x


def placement_seed(node):
    d = hashlib.sha256(b"tokenwarehouse/place/v1" + node.encode()).digest()
    return struct.unpack("<Q", d[:8])[0]


def placement_score(key, seed, weight=1.0):
    k0, k1 = struct.unpack("<QQ", key[:16])
    h = fmix64(fmix64(k0 ^ seed) ^ k1)
    u = ((h >> 11) + 0.5) / float(1 << 53)
    return -weight / math.log(u)


def ranking(key, nodes):
    """Node names best first (weights 1; ties: the smaller name)."""
    return sorted(nodes, key=lambda n: (-placement_score(key, placement_seed(n)), n.encode()))


def home(key, nodes):
    return ranking(key, nodes)[0]


def directory_key(namespace_digest, key):
    """The key the homes place and index: SHA-256("tokenwarehouse/dir/v1" ‖ ns ‖ chunk key)."""
    return hashlib.sha256(b"tokenwarehouse/dir/v1" + namespace_digest + key).digest()


# ---- the network and the processes ---------------------------------------------------------

class Node:
    def __init__(self, net, index, name):
        self.net = net
        self.name = name
        self.index = index
        self.address = f"{SUBNET}.{index + 1}"
        self.ns = f"{net.run}-{name}"
        self.port = f"p-{name}"  # its port on the switch
        self.dir = os.path.join(net.workdir, name)
        self.socket = os.path.join(self.dir, "twd.sock")
        self.admin_socket = os.path.join(self.dir, "twd-admin.sock")
        self.data_dir = os.path.join(self.dir, "data")
        self.config = os.path.join(self.dir, "twd.yaml")
        self.log_path = os.path.join(self.dir, "twd.log")
        self.proc = None

    def log(self, tail=6000):
        try:
            with open(self.log_path, "rb") as f:
                return f.read().decode("utf-8", "replace")[-tail:]
        except OSError:
            return ""

    def exec(self, *argv, check=True, timeout=10):
        """Runs argv inside this node's namespace; returns the CompletedProcess."""
        r = subprocess.run(["ip", "netns", "exec", self.ns, *argv], stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE, text=True, timeout=timeout)
        if check and r.returncode != 0:
            raise RuntimeError(f"{self.ns}: {' '.join(argv)}: {r.stderr.strip()}")
        return r

    def listening(self, port):
        r = self.exec("ss", "-Hltn", f"sport = :{port}", check=False)
        return r.returncode == 0 and r.stdout.strip() != ""


class MeshNet:
    def __init__(self, workdir, nodes=3, bin_dir=None, mesh_port=MESH_PORT,
                 peer_timeout="300ms", cache_remote_hits=False, dram="64MiB", nvme="256MiB",
                 log_level="info"):
        if not 1 <= nodes <= 250:
            raise ValueError("nodes: 1..250")
        self.run = f"{PREFIX}{os.getpid():x}"
        self.workdir = workdir
        self.bin_dir = bin_dir or os.environ.get("TW_BIN_DIR", "")
        self.twd = os.path.join(self.bin_dir, "twd")
        for tool in ("twd", "twctl"):
            if not os.path.exists(os.path.join(self.bin_dir, tool)):
                raise RuntimeError(f"{tool} is not built ({os.path.join(self.bin_dir, tool)} "
                                   "missing)")
        self.mesh_port = mesh_port
        self.peer_timeout = peer_timeout
        self.cache_remote_hits = cache_remote_hits
        self.dram = dram
        self.nvme = nvme
        self.log_level = log_level
        self.switch = f"{self.run}-sw"
        self.peers_file = os.path.join(workdir, "peers.json")
        self.nodes = {}
        for i in range(nodes):
            n = Node(self, i, f"n{i + 1}")
            self.nodes[n.name] = n
        self._made = []
        self._closed = False
        atexit.register(self.close)
        for sig in (signal.SIGTERM, signal.SIGINT):
            if signal.getsignal(sig) in (signal.SIG_DFL, signal.default_int_handler):
                signal.signal(sig, self._on_signal)

    def _on_signal(self, signum, frame):
        self.close()
        raise SystemExit(128 + signum)

    def __getitem__(self, name):
        return self.nodes[name]

    # -- network --

    def setup(self):
        remove_leftovers()
        self._add_ns(self.switch)
        _ip("-n", self.switch, "link", "add", "br0", "type", "bridge")
        _ip("-n", self.switch, "link", "set", "dev", "br0", "up")
        for n in self.nodes.values():
            self._add_ns(n.ns)
            _ip("link", "add", "eth0", "netns", n.ns, "type", "veth", "peer", "name", n.port,
                "netns", self.switch)
            _ip("-n", self.switch, "link", "set", "dev", n.port, "master", "br0")
            _ip("-n", self.switch, "link", "set", "dev", n.port, "up")
            _ip("-n", n.ns, "link", "set", "dev", "lo", "up")
            _ip("-n", n.ns, "addr", "add", f"{n.address}/24", "dev", "eth0")
            _ip("-n", n.ns, "link", "set", "dev", "eth0", "up")
            os.makedirs(n.data_dir, exist_ok=True)
        return self

    def _add_ns(self, ns):
        _ip("netns", "add", ns)
        self._made.append(ns)

    def partition(self, name):
        """Cuts `name` off: its switch port goes down (its eth0 loses carrier)."""
        _ip("-n", self.switch, "link", "set", "dev", self.nodes[name].port, "down")

    def heal(self, name):
        _ip("-n", self.switch, "link", "set", "dev", self.nodes[name].port, "up")

    # -- membership --

    def write_peers(self, names):
        """Writes the peers file listing `names` (atomically: a new file renamed over it)."""
        peers = [{"node": n, "address": self.nodes[n].address, "port": self.mesh_port}
                 for n in names]
        tmp = self.peers_file + ".tmp"
        with open(tmp, "w") as f:
            json.dump({"peers": peers}, f)
        os.rename(tmp, self.peers_file)

    def peers_in_file(self):
        """The node names the peers file lists now ([] when there is none)."""
        try:
            with open(self.peers_file) as f:
                return [p["node"] for p in json.load(f)["peers"]]
        except FileNotFoundError:
            return []

    def membership_version(self, name):
        """The peers-file version twd on `name` runs with (`twctl peers --json`): +1 for every
        change it has read."""
        n = self.nodes[name]
        r = subprocess.run([os.path.join(self.bin_dir, "twctl"), "peers", "--json",
                            "--admin-socket", n.admin_socket], stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE, text=True, timeout=10)
        if r.returncode != 0:
            raise RuntimeError(f"twctl peers on {name}: {r.stderr.strip()}")
        return json.loads(r.stdout)["membership_version"]

    def set_peers(self, names, timeout=20.0):
        """Rewrites the peers file to list `names` (when it lists others) and waits until every
        running twd has read it, so that no node answers from the old membership."""
        if self.peers_in_file() == list(names):
            return
        running = [n for n in self.nodes if self.running(n)]
        before = {n: self.membership_version(n) for n in running}
        self.write_peers(names)
        wait_until(lambda: all(self.membership_version(n) > before[n] for n in running),
                   timeout, interval=0.1, what=f"every twd to read the peers file {names}")

    # -- processes --

    def _write_config(self, n):
        with open(n.config, "w") as f:
            f.write(
                "mesh:\n"
                "  enabled: true\n"
                f"  port: {self.mesh_port}\n"
                f"  peers_file: {self.peers_file}\n"
                f"  node_name: {n.name}\n"
                f"  peer_timeout: {self.peer_timeout}\n"
                f"  cache_remote_hits: {'true' if self.cache_remote_hits else 'false'}\n")

    def start(self, name, timeout=30.0):
        """Starts (or restarts) twd on node `name`; returns once its client socket exists and
        its peer service listens. Raises with twd's log when it does not come up."""
        n = self.nodes[name]
        if n.proc is not None:
            raise RuntimeError(f"{name}: twd already runs")
        self._write_config(n)
        for path in (n.socket, n.admin_socket):
            if os.path.exists(path):
                os.unlink(path)
        argv = ["ip", "netns", "exec", n.ns, self.twd, "--config", n.config,
                "--socket", n.socket, "--admin-socket", n.admin_socket,
                "--data-dir", n.data_dir, "--dram-capacity", self.dram,
                "--nvme-capacity", self.nvme, "--metrics-address", "127.0.0.1:9400",
                "--log-level", self.log_level]
        with open(n.log_path, "ab") as log:
            log.write(f"---- start {time.strftime('%H:%M:%S')}\n".encode())
            log.flush()
            # ip netns exec execs twd: the child's pid is twd's.
            n.proc = subprocess.Popen(argv, stdout=log, stderr=log, stdin=subprocess.DEVNULL,
                                      preexec_fn=_die_with_parent)
        deadline = time.monotonic() + timeout
        port_deadline = None  # the peer port follows the socket within seconds
        while time.monotonic() < deadline and (port_deadline is None
                                               or time.monotonic() < port_deadline):
            if n.proc.poll() is not None:
                rc = n.proc.returncode
                n.proc = None
                raise RuntimeError(f"twd on {name} exited with {rc}:\n{n.log()}")
            if os.path.exists(n.socket):
                if n.listening(self.mesh_port):
                    return n
                if port_deadline is None:
                    port_deadline = time.monotonic() + 10
            time.sleep(0.05)
        sock = os.path.exists(n.socket)
        self.kill(name)
        what = ("its peer service does not listen on " f"{n.address}:{self.mesh_port}"
                if sock else f"it did not create {n.socket}")
        raise RuntimeError(f"twd on {name} did not come up: {what} "
                           f"(is twd built with the mesh wired in?)\n{n.log()}")

    def kill(self, name, sig=signal.SIGKILL):
        """Sends `sig` (default SIGKILL) to twd on `name` and reaps it."""
        n = self.nodes[name]
        if n.proc is None:
            return None
        n.proc.send_signal(sig)
        try:
            rc = n.proc.wait(30)
        except subprocess.TimeoutExpired:
            n.proc.kill()
            rc = n.proc.wait()
        n.proc = None
        return rc

    def stop(self, name):
        """A clean shutdown (SIGTERM)."""
        return self.kill(name, signal.SIGTERM)

    def running(self, name):
        n = self.nodes[name]
        return n.proc is not None and n.proc.poll() is None

    def client(self, name, namespaces, arena=64 << 20, timeout=10.0):
        import tokenwarehouse as tw
        return tw.Client(self.nodes[name].socket, arena, namespaces=namespaces, timeout=timeout)

    def logs(self):
        return "\n".join(f"==== {n.name} ({n.ns}, {n.address}) twd log:\n{n.log(3000)}"
                         for n in self.nodes.values())

    def close(self):
        """Kills every twd (by its id), then deletes this run's namespaces. Idempotent."""
        if self._closed:
            return
        self._closed = True
        for n in self.nodes.values():
            if n.proc is not None:
                try:
                    n.proc.kill()
                    n.proc.wait(10)
                except (OSError, subprocess.TimeoutExpired):
                    pass
                n.proc = None
        for ns in reversed(self._made):
            _kill_namespace(ns)
        self._made = []


def wait_until(condition, timeout, interval=0.05, what="condition"):
    """Polls condition() until it returns a true value (returned) or `timeout` s pass
    (AssertionError naming `what` and the last value)."""
    deadline = time.monotonic() + timeout
    last = None
    while True:
        last = condition()
        if last:
            return last
        if time.monotonic() >= deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what} "
                                 f"(last: {last!r})")
        time.sleep(interval)
