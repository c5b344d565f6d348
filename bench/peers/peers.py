"""twd side by side with the systems users would pick instead, in one run, on the same
machine and the same chunks: LMCache (CPU-memory and local-disk backends), Mooncake Store
(TCP), Redis (Unix socket) and a file per chunk (fsync'ed). Run by scripts/bench-peers.sh
with the peers' environment (scripts/peers-venv.sh); docs/benchmarks.md "Side by side with
the peers" says what each figure is and shows a run.

    python bench/peers/peers.py --twd BIN --out DIR [--systems twd,redis,...] [--smoke]

For each system, each chunk size (--big, --small) and each client-process count (--procs):
a fresh instance, every process puts its share of the chunks, then gets them back (page
cache of the system's files dropped in between); the instance is stopped. For the big chunks
with one process, the instance is then restarted and one process gets every chunk again
(fraction of hits, time to the first hit, cold get throughput). A fresh instance per system
stores a 512-chunk chain of small values and times the system's nearest lookup of the whole
chain. A system that cannot be installed or run here is reported with its exact error, and
the others still run. Writes DIR/peers.json, DIR/peers.md and DIR/peers.png (report.py).
"""

import argparse
import json
import multiprocessing as mp
import os
import shutil
import sys
import tempfile
import time
import traceback

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(HERE, "..", "..", "client", "python"))

from common import Unavailable, drop_file_cache, make_client, rss_bytes, stamp  # noqa: E402
from common import write_bytes  # noqa: E402

ALL = ["twd", "lmcache-cpu", "lmcache-disk", "mooncake", "redis", "file"]


def parse_size(s):
    s = s.strip()
    units = {"KiB": 1 << 10, "MiB": 1 << 20, "GiB": 1 << 30, "B": 1}
    for u, m in units.items():
        if s.endswith(u):
            return int(float(s[:-len(u)]) * m)
    return int(s)


def make_system(name, args):
    if name == "twd":
        from twd_system import TwdSystem
        return TwdSystem(args.twd)
    if name in ("lmcache-cpu", "lmcache-disk"):
        from lmcache_system import LMCacheSystem
        return LMCacheSystem(disk=name == "lmcache-disk")
    if name == "mooncake":
        from mooncake_system import MooncakeSystem
        return MooncakeSystem()
    if name == "redis":
        from redis_system import RedisSystem
        return RedisSystem()
    if name == "file":
        from file_system import FileSystem
        return FileSystem()
    raise ValueError(f"unknown system {name!r}; the systems are {', '.join(ALL)}")


def _why(e):
    return str(e) or type(e).__name__


# -- worker processes -------------------------------------------------------------------

def _fail(queue, barrier, what):
    queue.put({"error": what + ": " + traceback.format_exc(limit=3).strip().splitlines()[-1],
               "trace": traceback.format_exc()})
    barrier.abort()


def bulk_worker(spec, size, n_chunks, ids, index, barrier, queue):
    """Puts `ids`, then (after the orchestrator dropped caches) gets them back."""
    try:
        c = make_client(spec, size, index, n_chunks)
        me = os.getpid()
        rss0, io0 = rss_bytes(me), write_bytes(me)
    except Exception:
        return _fail(queue, barrier, "client")
    try:
        barrier.wait()
        t0 = time.monotonic()
        for cid in ids:
            stamp(c.src, cid)
            c.put(cid)
        c.finish_puts()
        t1 = time.monotonic()
        rss1, io1 = rss_bytes(me), write_bytes(me)
        barrier.wait()  # puts done: the orchestrator reads the holders, drops caches
        barrier.wait()
        g0 = time.monotonic()
        hits = sum(1 for cid in ids if c.get(cid))
        g1 = time.monotonic()
        queue.put({"put": (t0, t1), "get": (g0, g1), "hits": hits, "n": len(ids),
                   "rss": rss1 - rss0, "rss_after": rss1, "written": io1 - io0})
        barrier.wait()
        c.close()
    except Exception:
        _fail(queue, barrier, "bulk")


def restart_worker(spec, size, n_chunks, barrier, queue):
    """After the orchestrator restarted the system: open it (retrying until it answers),
    then get every chunk once."""
    try:
        barrier.wait()  # the orchestrator starts the system right after this
        t_open = time.monotonic()
        c = make_client(spec, size, 0, n_chunks)
        t_ready = time.monotonic()
        first = None
        hits = 0
        for cid in range(n_chunks):
            if c.get(cid):
                hits += 1
                if first is None:
                    first = time.monotonic()
        t_end = time.monotonic()
        queue.put({"open": t_open, "ready": t_ready, "first": first, "end": t_end,
                   "hits": hits, "n": n_chunks})
        c.close()
    except Exception:
        _fail(queue, barrier, "restart")


def lookup_worker(spec, size, n, lookups, barrier, queue):
    try:
        c = make_client(spec, size, 0, n)
        for cid in range(n):
            stamp(c.src, cid)
            c.put(cid)
        c.finish_puts()
        keys = c.lookup_keys(range(n))  # the engine has its chain's keys at hand
        times = []
        for i in range(lookups + 10):
            t = time.perf_counter()
            found = c.lookup(keys)
            dt = time.perf_counter() - t
            if found != n:
                raise RuntimeError(f"lookup found {found} of {n} chunks")
            if i >= 10:
                times.append(dt)
        times.sort()
        queue.put({"p50": times[len(times) // 2], "p99": times[min(len(times) - 1,
                                                                 int(len(times) * 0.99))]})
        c.close()
    except Exception:
        _fail(queue, barrier, "lookup")


# -- the orchestrator -------------------------------------------------------------------

class Runner:
    def __init__(self, args):
        self.args = args
        self.ctx = mp.get_context("spawn")
        self.root = tempfile.mkdtemp(prefix="tw-peers-", dir=args.workdir)

    def _collect(self, procs, queue, n, timeout):
        out = []
        deadline = time.monotonic() + timeout
        while len(out) < n:
            try:
                out.append(queue.get(timeout=max(0.1, deadline - time.monotonic())))
            except Exception:
                raise RuntimeError(f"workers did not answer in {timeout} s") from None
            if "error" in out[-1]:
                raise RuntimeError(out[-1]["error"] + "\n" + out[-1].get("trace", ""))
        return out

    def _spawn(self, target, argsets):
        queue = self.ctx.Queue()
        barrier = self.ctx.Barrier(len(argsets) + 1, timeout=self.args.phase_timeout)
        procs = [self.ctx.Process(target=target, args=(*a, barrier, queue)) for a in argsets]
        for p in procs:
            p.start()
        return procs, barrier, queue

    @staticmethod
    def _worker_error(queue):
        """The first error a worker reported, as an exception (None when none did)."""
        try:
            while True:
                r = queue.get(timeout=1)
                if "error" in r:
                    return RuntimeError(r["error"] + "\n" + r.get("trace", ""))
        except Exception:
            return None

    @staticmethod
    def _join(procs):
        for p in procs:
            p.join(60)
            if p.is_alive():
                p.kill()
                p.join()

    def bulk(self, system, size, n_chunks, nprocs, restart):
        work = os.path.join(self.root, f"{system.name}-{size}-{nprocs}")
        os.makedirs(work)
        system.start(work, n_chunks * size)
        spec = system.client_spec()
        per = -(-n_chunks // nprocs)
        spec["capacity"] = per * size  # what one process holds (in-process stores)
        spec["procs"] = nprocs
        shares = [list(range(i * per, min(n_chunks, (i + 1) * per))) for i in range(nprocs)]
        procs, barrier, queue = self._spawn(
            bulk_worker, [(dict(spec, first=ids[0]), size, n_chunks, ids, i)
                          for i, ids in enumerate(shares)])
        result = {}
        try:
            barrier.wait()
            holders = system.holder_pids()
            rss0 = sum(rss_bytes(p) for p in holders)
            barrier.wait()
            rss1 = sum(rss_bytes(p) for p in holders)
            drop_file_cache(work)
            barrier.wait()
            rs = self._collect(procs, queue, nprocs, self.args.phase_timeout)
            barrier.wait()
        except BaseException as e:
            barrier.abort()
            self._join(procs)
            system.stop()
            raise self._worker_error(queue) or e
        self._join(procs)
        stored = n_chunks * size
        put_s = max(r["put"][1] for r in rs) - min(r["put"][0] for r in rs)
        get_s = max(r["get"][1] for r in rs) - min(r["get"][0] for r in rs)
        hits = sum(r["hits"] for r in rs)
        result.update(put_gbps=stored / put_s / 1e9, get_gbps=hits * size / get_s / 1e9,
                      get_hits=hits / n_chunks)
        holder_written = system.stop()
        written = holder_written + sum(r["written"] for r in rs)
        result["written_per_byte"] = written / stored
        in_process = getattr(system, "in_process", False)
        rss = sum(r["rss"] for r in rs) if in_process else rss1 - rss0
        result["rss_per_chunk"] = rss / n_chunks
        # What the processes holding the data occupy once it is in (a store that reserves
        # its memory up front grows by nothing per chunk).
        result["rss_after"] = sum(r["rss_after"] for r in rs) if in_process else rss1
        if restart:
            try:
                result["restart"] = self.restart(system, work, size, n_chunks)
            except Exception as e:
                result["restart"] = {"error": _why(e)}
        shutil.rmtree(work, ignore_errors=True)
        return result

    def restart(self, system, work, size, n_chunks):
        drop_file_cache(work)
        procs, barrier, queue = self._spawn(restart_worker,
                                            [(system.client_spec(), size, n_chunks)])
        try:
            barrier.wait()
            t_start = time.monotonic()
            system.start(work, n_chunks * size)
            r = self._collect(procs, queue, 1, self.args.phase_timeout)[0]
        finally:
            self._join(procs)
            system.stop()
        origin = r["open"] if getattr(system, "in_process", False) else t_start
        out = {"hits": r["hits"] / n_chunks,
               "first_hit_s": (r["first"] - origin) if r["first"] else None,
               "ready_s": r["ready"] - origin}
        if r["hits"]:
            out["cold_get_gbps"] = r["hits"] * size / (r["end"] - r["ready"]) / 1e9
        return out

    def lookup(self, system):
        a = self.args
        work = os.path.join(self.root, f"{system.name}-lookup")
        os.makedirs(work)
        system.start(work, a.lookup_chain * a.lookup_value)
        spec = system.client_spec()
        spec["capacity"] = a.lookup_chain * a.lookup_value
        procs, barrier, queue = self._spawn(
            lookup_worker, [(spec, a.lookup_value, a.lookup_chain, a.lookups)])
        try:
            r = self._collect(procs, queue, 1, a.phase_timeout)[0]
        finally:
            self._join(procs)
            system.stop()
            shutil.rmtree(work, ignore_errors=True)
        return {"p50_us": r["p50"] * 1e6, "p99_us": r["p99"] * 1e6}

    def run_system(self, name):
        a = self.args
        entry = {"name": name}
        try:
            system = make_system(name, a)
            entry.update(label=system.label, put_kind=system.put_kind,
                         restart_kind=system.restart_kind)
            system.check()
            entry["version"] = system.version()
        except Unavailable as e:
            entry.update(status="unavailable", error=str(e))
            return entry
        entry["status"] = "ran"
        entry["errors"] = []
        entry["runs"] = []
        for size, n in ((a.big, a.big_chunks), (a.small, a.small_chunks)):
            for nprocs in a.procs:
                what = f"{n} chunks of {size} bytes, {nprocs} process(es)"
                print(f"peers: {name}: {what}", file=sys.stderr, flush=True)
                try:
                    r = self.bulk(system, size, n, nprocs,
                                  restart=(size == a.big and nprocs == a.procs[0]))
                    entry["runs"].append(dict(chunk_bytes=size, chunks=n, procs=nprocs, **r))
                except Exception as e:
                    entry["errors"].append(f"{what}: {_why(e)}")
                    print(f"peers: {name}: {what}: {_why(e)}", file=sys.stderr, flush=True)
        print(f"peers: {name}: lookup", file=sys.stderr, flush=True)
        try:
            entry["lookup"] = self.lookup(system)
        except Exception as e:
            entry["errors"].append(f"lookup: {_why(e)}")
            print(f"peers: {name}: lookup: {_why(e)}", file=sys.stderr, flush=True)
        if entry["errors"] and not entry["runs"]:
            entry["status"] = "failed"
        return entry


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--twd", default="build/release/bin/twd")
    p.add_argument("--out", default="bench/results/peers")
    p.add_argument("--systems", default=",".join(ALL))
    p.add_argument("--big", default="32MiB")
    p.add_argument("--big-chunks", type=int, default=48)
    p.add_argument("--small", default="2MiB")
    p.add_argument("--small-chunks", type=int, default=256)
    p.add_argument("--procs", default="1,8")
    p.add_argument("--lookup-chain", type=int, default=512)
    p.add_argument("--lookup-value", default="64KiB")
    p.add_argument("--lookups", type=int, default=300)
    p.add_argument("--workdir", default="/var/tmp", help="where the systems keep their data")
    p.add_argument("--phase-timeout", type=float, default=600)
    p.add_argument("--smoke", action="store_true",
                   help="tiny sizes (64 KiB and 16 KiB chunks, 1 and 2 processes): a check")
    p.add_argument("--no-chart", action="store_true")
    p.add_argument("--json", action="store_true",
                   help="print the figures as tw-bench --json does (one object a line)")
    a = p.parse_args()
    if a.smoke:
        a.big, a.big_chunks, a.small, a.small_chunks = "64KiB", 8, "16KiB", 8
        a.procs, a.lookup_chain, a.lookup_value, a.lookups = "1,2", 16, "4KiB", 20
    a.big, a.small, a.lookup_value = map(parse_size, (a.big, a.small, a.lookup_value))
    a.procs = [int(x) for x in a.procs.split(",")]
    names = [s for s in a.systems.split(",") if s]
    runner = Runner(a)
    started = time.time()
    report = {"started": time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(started)),
              "machine": {"cpus": os.cpu_count(), "kernel": os.uname().release},
              "dataset": {"big_chunk_bytes": a.big, "big_chunks": a.big_chunks,
                          "small_chunk_bytes": a.small, "small_chunks": a.small_chunks,
                          "procs": a.procs, "lookup_chain": a.lookup_chain,
                          "lookup_value_bytes": a.lookup_value, "lookups": a.lookups},
              "command": " ".join(sys.argv), "systems": []}
    if "mooncake" in names:
        try:
            from mooncake_system import cuda_build_error
            err = cuda_build_error()
            if err:
                report["mooncake_cuda_build"] = err
        except Exception as e:
            report["mooncake_cuda_build"] = f"{type(e).__name__}: {e}"
    try:
        for name in names:
            report["systems"].append(runner.run_system(name))
    finally:
        shutil.rmtree(runner.root, ignore_errors=True)
    report["seconds"] = time.time() - started
    import report as rep
    rep.add_ratios(report)
    os.makedirs(a.out, exist_ok=True)
    with open(os.path.join(a.out, "peers.json"), "w") as f:
        json.dump(report, f, indent=1)
    md = rep.markdown(report)
    with open(os.path.join(a.out, "peers.md"), "w") as f:
        f.write(md)
    if not a.no_chart:
        try:
            rep.chart(report, os.path.join(a.out, "peers.png"))
        except ImportError as e:
            print(f"peers: no chart ({e})", file=sys.stderr)
    print(rep.json_lines(report) if a.json else md, end="")
    return 0


if __name__ == "__main__":
    sys.exit(main())
