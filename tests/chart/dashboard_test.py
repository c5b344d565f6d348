"""The chart's Grafana dashboard and PrometheusRule against a real twd.

    dashboard_test.py                  # the test (ctest chart_dashboard)
    dashboard_test.py --shot OUT.png   # scripts/dashboard-shot.sh: a longer run, drawn to a PNG

The test renders the chart with dashboards and alerts on (helm, as in the other chart tests),
checks the ConfigMap carries the dashboard file unchanged with the Grafana sidecar's label,
starts the real twd, drives traffic through the Python client until every metric family a
panel or an alert reads exists, and runs tw-promql (scripts/promql.sh: Prometheus' own PromQL
parser, rule validator and query engine): every expression parses, the rules load as Prometheus
loads them, every metric they read is one this twd exports, and every panel's queries evaluate
over samples scraped from it. A dashboard with a misspelt metric must fail the same check.

Needs TW_BIN_DIR (twd), TW_CLIENT_LIB (libtwclient.so) and Go (tw-promql's build). Exits 77
(skipped) when helm or Go cannot be had.
"""

import argparse
import copy
import json
import os
import random
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import chartlib  # noqa: E402
from chartlib import Failure, log, run  # noqa: E402

sys.path.insert(0, os.path.join(chartlib.SOURCE_DIR, "tests", "client"))
sys.path.insert(0, os.path.join(chartlib.SOURCE_DIR, "client", "python"))
import tokenwarehouse as tw  # noqa: E402
from servers import Server  # noqa: E402

DASHBOARD = os.path.join(chartlib.CHART_DIR, "dashboards", "tokenwarehouse.json")
CHUNK = 16
VALUE = 64 * 1024


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class MetricsServer(Server):
    """The real twd with its metrics endpoint on a known port."""

    def __init__(self, workdir, port, **kw):
        super().__init__("twd", workdir, **kw)
        self.port = port

    def command(self):
        cmd = super().command()
        cmd[cmd.index("--metrics-address") + 1] = "127.0.0.1:%d" % self.port
        return cmd

    def metrics(self):
        with urllib.request.urlopen("http://127.0.0.1:%d/metrics" % self.port, timeout=10) as r:
            return r.read().decode()


def namespace(i):
    return {"model": "dash-%d" % i, "model_revision": "r", "tokenizer": "t", "kv_dtype": "fp16",
            "kv_layout": "test", "parallel": "tp=0/1,pp=0/1", "adapter": "", "tenant": "",
            "chunk_tokens": str(CHUNK)}


class Traffic:
    """An engine's pattern: prompts stored once (memory or disk durability), then looked up and
    read back, with misses for prompts never stored. `prompts` bounds the working set so that a
    small NVMe tier fills and reclaims in a long run."""

    def __init__(self, server, prompts=64, chunks=8, seed=1):
        self.ns = namespace(seed)
        self.client = tw.Client(server.socket, 8 << 20, namespaces=[self.ns], timeout=10)
        self.rng = random.Random(seed)
        self.prompts = prompts
        self.chunks = chunks
        self.stored = set()

    def close(self):
        self.client.close()

    def tokens(self, p):
        return list(range(p * 1000, p * 1000 + self.chunks * CHUNK))

    def step(self):
        c = self.client
        p = self.rng.randrange(self.prompts * 2)  # half of them are never stored: misses
        toks = self.tokens(p)
        keys = tw.chunk_keys(self.ns, toks)
        found = c.lookup(keys, lease=True)
        for j in range(found.prefix):
            c.get(keys[j], arena_offset=0, arena_length=VALUE, lease=found.lease)
        if found.lease:
            c.release_leases([found.lease])
        if found.prefix < len(keys):
            c.get(keys[found.prefix], arena_offset=0, arena_length=VALUE)  # a miss, by reason
            if p < self.prompts:
                parent = c.namespace_digests[0] if found.prefix == 0 else keys[found.prefix - 1]
                for j in range(found.prefix, len(keys)):
                    c.arena_view(0, VALUE)[:] = bytes([(p + j) % 251]) * VALUE
                    c.put(keys[j], parent, toks[j * CHUNK:(j + 1) * CHUNK], arena_offset=0,
                          length=VALUE, durability="disk" if p % 2 else "memory")
                    parent = keys[j]
                self.stored.add(p)


def drive_until_complete(server, needed, timeout=60):
    """Runs traffic until the metrics page has every family in `needed`."""
    t = Traffic(server, prompts=8, chunks=4)
    try:
        deadline = time.monotonic() + timeout
        while True:
            for _ in range(20):
                t.step()
            text = server.metrics()
            have = {line.split()[2] for line in text.splitlines() if line.startswith("# TYPE")}
            missing = sorted(needed - have)
            if not missing:
                return text
            if time.monotonic() > deadline:
                raise Failure("after %ds of traffic twd still exports none of %s" %
                              (timeout, missing))
    finally:
        t.close()


def render_chart():
    helms, kubectl = chartlib.require_tools()
    helm = helms[max(helms)]
    _, text, _ = run([helm, "template", "tw", chartlib.CHART_DIR, "--namespace", "monitoring",
                      "--set", "dashboards.enabled=true", "--set", "prometheusRule.enabled=true",
                      "--set", "dashboards.annotations.grafana_folder=KV",
                      "--api-versions", "monitoring.coreos.com/v1/PrometheusRule"])
    objects = chartlib.parse_manifests(kubectl, text)
    maps = [o for o in objects if o["kind"] == "ConfigMap" and
            "tokenwarehouse.json" in o.get("data", {})]
    rules = [o for o in objects if o["kind"] == "PrometheusRule"]
    if len(maps) != 1 or len(rules) != 1:
        raise Failure("expected one dashboard ConfigMap and one PrometheusRule, got %d and %d" %
                      (len(maps), len(rules)))
    cm = maps[0]
    if cm["metadata"]["labels"].get("grafana_dashboard") != "1":
        raise Failure("the dashboard ConfigMap lacks the grafana_dashboard label")
    if cm["metadata"].get("annotations", {}).get("grafana_folder") != "KV":
        raise Failure("dashboards.annotations did not reach the ConfigMap")
    with open(DASHBOARD) as f:
        if json.loads(cm["data"]["tokenwarehouse.json"]) != json.load(f):
            raise Failure("the ConfigMap's dashboard differs from %s" % DASHBOARD)
    # Without the CRD the chart refuses the rule rather than rendering an object that fails.
    rc, _, err = run([helm, "template", "tw", chartlib.CHART_DIR,
                      "--set", "prometheusRule.enabled=true"], check=False)
    if rc == 0 or "monitoring.coreos.com/v1 PrometheusRule" not in err:
        raise Failure("prometheusRule.enabled without the CRD rendered (rc %d): %s" % (rc, err))
    return rules[0]


def promql_tool():
    rc, out, err = run(["bash", os.path.join(chartlib.SOURCE_DIR, "scripts", "promql.sh")],
                       check=False, timeout=900)
    if rc != 0:
        if "no Go on PATH" in err:
            log("SKIP: " + err.strip())
            sys.exit(chartlib.SKIP)
        raise Failure("scripts/promql.sh failed:\n" + err)
    return out.strip().splitlines()[-1]


def families_read(tool, dashboard_path, rules_path, metrics_path):
    """Runs the check; returns (rc, stdout, stderr)."""
    return run([tool, "check", "--dashboard", dashboard_path, "--rules", rules_path,
                "--metrics", metrics_path], check=False)


def test(tmp):
    rule = render_chart()
    tool = promql_tool()
    rules_path = os.path.join(tmp, "rule.json")
    with open(rules_path, "w") as f:
        json.dump(rule, f)

    # What the panels and alerts read (tw-promql lists it, with their own parser).
    with open(DASHBOARD) as f:
        dash = json.load(f)
    empty = os.path.join(tmp, "empty.txt")
    with open(empty, "w") as f:
        f.write("# TYPE nothing counter\n")
    _, listing, _ = families_read(tool, DASHBOARD, rules_path, empty)
    needed = set()
    for line in listing.splitlines():
        names = line.split("\t")[1] if "\t" in line else ""
        for n in filter(None, names.split(",")):
            if n != "up":
                needed.add(n[:-len("_bucket")] if n.endswith("_bucket") else n)
    if len(needed) < 10:
        raise Failure("tw-promql listed only %s" % sorted(needed))

    server = MetricsServer(os.path.join(tmp, "twd"), free_port(), dram="16MiB", nvme="256MiB")
    os.makedirs(server.workdir)
    server.start()
    try:
        text = drive_until_complete(server, needed)
        metrics_path = os.path.join(tmp, "metrics.txt")
        with open(metrics_path, "w") as f:
            f.write(text)
        rc, out, err = families_read(tool, DASHBOARD, rules_path, metrics_path)
        if rc != 0:
            raise Failure("tw-promql check failed:\n%s%s" % (out, err))
        log("every query parses and reads metrics twd exports (%d families)" % len(needed))

        # The check can fail: a misspelt metric in a panel.
        bad = copy.deepcopy(dash)
        for p in bad["panels"]:
            if p.get("targets"):
                p["targets"][0]["expr"] = p["targets"][0]["expr"].replace(
                    "tokenwarehouse_get_hits_total", "tokenwarehouse_get_hit_total")
        bad_path = os.path.join(tmp, "bad.json")
        with open(bad_path, "w") as f:
            json.dump(bad, f)
        rc, _, err = families_read(tool, bad_path, rules_path, metrics_path)
        if rc == 0 or "tokenwarehouse_get_hit_total, which twd does not export" not in err:
            raise Failure("a misspelt metric passed the check: %s" % err)

        # Every panel's queries evaluate with the PromQL engine over samples of this twd.
        stop = threading.Event()
        worker = threading.Thread(target=keep_busy, args=(server, stop))
        worker.start()
        try:
            png = os.path.join(tmp, "dashboard.png")
            _, out, err = run([tool, "render", "--dashboard", DASHBOARD, "--url",
                               "http://127.0.0.1:%d/metrics" % server.port, "--scrapes", "6",
                               "--interval", "250ms", "--out", png], timeout=120)
        finally:
            stop.set()
            worker.join()
        with open(png, "rb") as f:
            if f.read(8) != b"\x89PNG\r\n\x1a\n":
                raise Failure("tw-promql render wrote no PNG")
    finally:
        server.stop()


def keep_busy(server, stop, seed=2, prompts=64):
    t = Traffic(server, prompts=prompts, seed=seed)
    try:
        while not stop.is_set():
            t.step()
    finally:
        t.close()


def shot(out, seconds):
    """A longer run for docs/monitoring.md: two clients, a working set larger than the DRAM
    tier and an NVMe tier small enough to reclaim."""
    tool = promql_tool()
    with tempfile.TemporaryDirectory(prefix="tw-dash-") as tmp:
        server = MetricsServer(os.path.join(tmp, "twd"), free_port(), dram="32MiB",
                               nvme="256MiB")
        os.makedirs(server.workdir)
        server.start()
        stop = threading.Event()
        workers = [threading.Thread(target=keep_busy, args=(server, stop, s, 512))
                   for s in (3, 4)]
        for w in workers:
            w.start()
        try:
            interval = 1.0
            run([tool, "render", "--dashboard", DASHBOARD, "--url",
                 "http://127.0.0.1:%d/metrics" % server.port, "--scrapes",
                 str(int(seconds / interval)), "--interval", "%gs" % interval, "--out", out],
                timeout=seconds + 120)
        finally:
            stop.set()
            for w in workers:
                w.join()
            server.stop()
    log("wrote %s" % out)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--shot", help="write a PNG of the dashboard after a longer run")
    ap.add_argument("--seconds", type=float, default=120)
    args = ap.parse_args()
    try:
        if args.shot:
            shot(args.shot, args.seconds)
        else:
            with tempfile.TemporaryDirectory(prefix="tw-dash-") as tmp:
                test(tmp)
    except Failure as e:
        log("FAIL: %s" % e)
        return 1
    log("PASS")
    return 0


if __name__ == "__main__":
    sys.exit(main())
