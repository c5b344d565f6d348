#!/usr/bin/env python3
"""System calls per synchronous request, on each side of twd's client socket.

Runs `tw-bench service --latency-only` under `strace -f` twice, with N1 and N2 PINGs and
lookups of the 512-chunk chain, and prints, per side (the benchmark process with its
libtwclient threads; twd with its threads), the system calls that the N2 - N1 extra
requests made, divided by the number of extra requests (PINGs and lookups together).
Subtracting two runs removes start-up, the references and shutdown.

    bench/syscalls_per_call.py build/release/bin/tw-bench [--n1 500] [--n2 5500]

Needs strace. Figures, not pass/fail.
"""

import argparse
import collections
import os
import re
import subprocess
import sys
import tempfile

# "PID<comm> name(" — strace -Y names each task by its command: twd's threads are "twd",
# the benchmark's (its libtwclient reader thread included) "tw-bench".
LINE = re.compile(r"^(\d+)<([^>]*)>\s+(\w+)\(")


def trace(bench, n, extra):
    with tempfile.TemporaryDirectory() as tmp:
        out = os.path.join(tmp, "trace")
        cmd = ["strace", "-f", "-Y", "-qq", "-o", out, bench, "service", "--latency-only",
               "--lookups", str(n), "--pings", "100"] + extra
        subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
        counts = {"client": collections.Counter(), "twd": collections.Counter()}
        with open(out) as f:
            for line in f:
                m = LINE.match(line)  # "<... x resumed>" lines do not match: counted once
                if not m:
                    continue
                side = {"tw-bench": "client", "twd": "twd"}.get(m.group(2))
                if side:
                    counts[side][m.group(3)] += 1
        return counts


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("bench", help="path of tw-bench")
    p.add_argument("--n1", type=int, default=500)
    p.add_argument("--n2", type=int, default=5500)
    p.add_argument("extra", nargs="*", help="more tw-bench service options")
    a = p.parse_args()
    lo = trace(a.bench, a.n1, a.extra)
    hi = trace(a.bench, a.n2, a.extra)
    requests = 2 * (a.n2 - a.n1)  # each run makes N PINGs and N lookups
    for s in ("client", "twd"):
        names = sorted(set(lo[s]) | set(hi[s]), key=lambda k: -(hi[s][k] - lo[s][k]))
        print(f"{s}: system calls per request ({requests} extra requests)")
        for k in names:
            d = hi[s][k] - lo[s][k]
            if abs(d) >= requests * 0.01:
                print(f"  {k:16s} {d / requests:6.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
