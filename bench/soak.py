#!/usr/bin/env python3
"""Runs tw-torture's soak mode, prints each sample, judges the trend of every series and draws
soak.png (bench/soak.sh builds the binaries and picks the interpreter).

A series passes when the least-squares line through its samples after warm-up (the first
quarter, at least one sample, while the tiers fill) rises less over the run than the noise
allows: max(10% of its median, 2 standard deviations of the residuals, an absolute floor
of 8 MiB for memory, 2 for fds, 1 ms for latency). A fall is reported, not failed: memory
and latency that go down are not a leak.
"""
import argparse
import json
import os
import statistics
import subprocess
import sys

SERIES = [  # key, label, absolute floor of an allowed change
    ("rss_mib", "RSS (MiB)", 8.0),
    ("anon_mib", "RSS anon (MiB)", 8.0),
    ("fds", "open fds", 2.0),
    ("threads", "threads", 1.0),
    ("lookup_p50_ms", "lookup p50 (ms)", 1.0),
    ("lookup_p99_ms", "lookup p99 (ms)", 1.0),
    ("get_p50_ms", "get p50 (ms)", 1.0),
    ("get_p99_ms", "get p99 (ms)", 1.0),
]


def trend(xs, ys, floor):
    """(change over the run of the fitted line, allowed change, flat?)"""
    n = len(xs)
    if n < 3:
        return 0.0, 0.0, True
    mx, my = statistics.fmean(xs), statistics.fmean(ys)
    sxx = sum((x - mx) ** 2 for x in xs)
    slope = sum((x - mx) * (y - my) for x, y in zip(xs, ys)) / sxx if sxx else 0.0
    resid = [y - (my + slope * (x - mx)) for x, y in zip(xs, ys)]
    noise = 2 * statistics.pstdev(resid)
    change = slope * (xs[-1] - xs[0])
    allowed = max(0.10 * abs(statistics.median(ys)), noise, floor)
    return change, allowed, change <= allowed


def plot(samples, warm, path, title):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    t = [s["t_s"] / 60 for s in samples]
    fig, ax = plt.subplots(2, 2, figsize=(11, 7))
    a = ax[0][0]
    a.plot(t, [s["rss_mib"] for s in samples], label="RSS (with client arenas)")
    a.plot(t, [s["anon_mib"] for s in samples], label="RSS anon (twd's own)")
    a.set_ylabel("MiB")
    a.set_title("twd memory")
    a.legend(fontsize=8)
    a = ax[0][1]
    a.plot(t, [s["fds"] for s in samples], label="fds")
    a.plot(t, [s["threads"] for s in samples], label="threads")
    a.set_title("twd fds and threads")
    a.legend(fontsize=8)
    for a, op in ((ax[1][0], "lookup"), (ax[1][1], "get")):
        a.plot(t, [s[f"{op}_p50_ms"] for s in samples], label="p50")
        a.plot(t, [s[f"{op}_p99_ms"] for s in samples], label="p99")
        a.set_yscale("log")
        a.set_ylabel("ms")
        a.set_title(f"{op} latency (client side, per sample)")
        a.legend(fontsize=8)
    for row in ax:
        for a in row:
            a.set_xlabel("minutes")
            if warm > 0:
                a.axvspan(t[0] - (t[1] - t[0] if len(t) > 1 else 0), t[warm - 1], color="0.9")
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=90)


def main():
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--bin", required=True, help="folder holding twd and tw-torture")
    p.add_argument("--out", required=True)
    p.add_argument("--minutes", type=float, default=30)
    p.add_argument("--clients", type=int, default=64)
    p.add_argument("--sample-seconds", type=float, default=60)
    p.add_argument("--dram-mib", type=int, default=256)
    p.add_argument("--nvme-mib", type=int, default=1024)
    p.add_argument("--seed", type=int, default=1)
    a = p.parse_args()
    os.makedirs(a.out, exist_ok=True)
    jsonl = os.path.join(a.out, "soak.jsonl")
    cmd = [os.path.join(a.bin, "tw-torture"), "--twd", os.path.join(a.bin, "twd"),
           "--torture-twd", os.path.join(a.bin, "twd"),
           "--soak-minutes", str(a.minutes), "--sample-seconds", str(a.sample_seconds),
           "--clients", str(a.clients), "--dram-mib", str(a.dram_mib),
           "--nvme-mib", str(a.nvme_mib), "--seed", str(a.seed), "--out", jsonl]
    samples, summary = [], None
    with subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True) as proc:
        for line in proc.stdout:
            line = line.strip()
            if not line.startswith("{"):
                print(line, flush=True)
                continue
            rec = json.loads(line)
            if "summary" in rec:
                summary = rec["summary"]
                continue
            samples.append(rec)
            print(f"{rec['t_s'] / 60:5.1f} min  RSS {rec['rss_mib']:7.1f} MiB "
                  f"(anon {rec['anon_mib']:6.1f})  fds {rec['fds']:4d}  thr {rec['threads']:3d}  "
                  f"lookup p50/p99 {rec['lookup_p50_ms']:6.2f}/{rec['lookup_p99_ms']:7.2f} ms  "
                  f"get {rec['get_p50_ms']:6.2f}/{rec['get_p99_ms']:7.2f} ms  "
                  f"{rec['ops_per_s']:6.0f} ops/s  wrong {rec['wrong']}", flush=True)
    rc = proc.returncode
    if not samples or summary is None:
        print("soak: no samples (tw-torture exit status %d)" % rc, file=sys.stderr)
        return 1
    warm = max(1, len(samples) // 4)
    steady = samples[warm:] if len(samples) - warm >= 3 else samples
    verdicts = []
    print("\nseries after warm-up (%d of %d samples): change of the fitted line over the run"
          % (len(steady), len(samples)))
    for key, label, floor in SERIES:
        xs = [s["t_s"] for s in steady]
        ys = [float(s[key]) for s in steady]
        change, allowed, flat = trend(xs, ys, floor)
        verdicts.append(flat)
        print(f"  {label:18s} median {statistics.median(ys):9.2f}  change {change:+9.2f}  "
              f"allowed ±{allowed:7.2f}  "
              f"{'RISING' if not flat else 'falling' if change < -allowed else 'flat'}")
    last = samples[-1]
    print(f"\n{summary['ops']} operations, {summary['chunks_verified']} chunks verified, "
          f"{summary['wrong']} wrong; DRAM evictions {last.get('dram_evictions', 0)}, "
          f"NVMe evictions {last.get('nvme_evictions', 0)} (in the last twd lifetime)")
    for n in summary["notes"]:
        print("  " + n)
    for f in summary["failures"]:
        print("  FAILED: " + f)
    ok = rc == 0 and summary["wrong"] == 0 and all(verdicts)
    print("soak verdict: " + ("flat, nothing leaked, no wrong byte" if ok else "FAILED"))
    png = os.path.join(a.out, "soak.png")
    plot(samples, warm, png, f"twd soak: {a.clients} clients, {a.minutes:g} min, working set "
         f"≥3x DRAM ({a.dram_mib} MiB) and ≥1.5x NVMe ({a.nvme_mib} MiB)")
    with open(os.path.join(a.out, "summary.json"), "w") as f:
        json.dump({"summary": summary, "verdict_flat": all(verdicts), "ok": ok}, f, indent=1)
    print("wrote " + png)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
