"""The peers benchmark's report (bench/peers/peers.py): ratios twd / peer against the bars
of the comparison, a markdown table and a PNG chart (matplotlib)."""

BARS = {"put": 2.0, "get": 2.0, "lookup": 0.5}


def _run(entry, size, procs):
    for r in entry.get("runs", []):
        if r["chunk_bytes"] == size and r["procs"] == procs:
            return r
    return None


def _ran(report):
    return [s for s in report["systems"] if s.get("status") == "ran"]


def add_ratios(report):
    """report["ratios"][peer] = twd's figure / the peer's, same run: put and get of the big
    chunks per process count (bar ≥ 2), lookup p50 (bar ≤ 0.5); report["bars"] the verdicts."""
    ds = report["dataset"]
    twd = next((s for s in _ran(report) if s["name"] == "twd"), None)
    report["ratios"], report["bars"] = {}, {}
    if twd is None:
        return
    for peer in _ran(report):
        if peer["name"] == "twd":
            continue
        ratios = {}
        for procs in ds["procs"]:
            a, b = _run(twd, ds["big_chunk_bytes"], procs), _run(peer, ds["big_chunk_bytes"], procs)
            if a and b:
                for op in ("put", "get"):
                    if b[f"{op}_gbps"] > 0:
                        ratios[f"{op}_x{procs}"] = a[f"{op}_gbps"] / b[f"{op}_gbps"]
        if "lookup" in twd and "lookup" in peer:
            ratios["lookup_p50"] = twd["lookup"]["p50_us"] / peer["lookup"]["p50_us"]
        report["ratios"][peer["name"]] = ratios
        verdict = {}
        for k, v in ratios.items():
            op = k.split("_")[0]
            verdict[k] = v <= BARS[op] if op == "lookup" else v >= BARS[op]
        report["bars"][peer["name"]] = verdict
    r = _run(twd, ds["big_chunk_bytes"], ds["procs"][0])
    if r and "restart" in r:
        report["bars"]["twd_restart_hits"] = r["restart"]["hits"] == 1.0


def json_lines(report):
    """The figures in tw-bench's --json form, one object a line: every system's own figures
    (reference null), then twd's against each peer's (reference the peer's, ratio twd/peer)."""
    import json
    ds = report["dataset"]
    lines = []

    def emit(name, value, unit, reference=None):
        if value is None:
            return
        ratio = value / reference if reference else None
        lines.append(json.dumps({"name": name, "value": value, "unit": unit,
                                 "reference": reference, "ratio": ratio}))

    def figures(s):
        out = {}
        for r in s.get("runs", []):
            tag = f"{r['chunk_bytes'] >> 10}KiB_x{r['procs']}"
            out[f"put_{tag}"] = (r["put_gbps"], "GB/s")
            out[f"get_{tag}"] = (r["get_gbps"], "GB/s")
            out[f"written_per_byte_{tag}"] = (r["written_per_byte"], "ratio")
            out[f"rss_per_chunk_{tag}"] = (r["rss_per_chunk"], "B")
            if "restart" in r and "hits" in r["restart"]:
                out[f"restart_hits_{tag}"] = (r["restart"]["hits"], "fraction")
                out[f"restart_first_hit_{tag}"] = (r["restart"].get("first_hit_s"), "s")
        if "lookup" in s:
            out[f"lookup_{ds['lookup_chain']}_p50"] = (s["lookup"]["p50_us"], "us")
            out[f"lookup_{ds['lookup_chain']}_p99"] = (s["lookup"]["p99_us"], "us")
        return out

    ran = {s["name"]: figures(s) for s in _ran(report)}
    for name, figs in ran.items():
        for k, (v, unit) in figs.items():
            emit(f"{name}.{k}", v, unit)
    for name, figs in ran.items():
        if name == "twd":
            continue
        for k, (v, unit) in figs.items():
            if k.startswith(("put_", "get_", "lookup_")) and k in ran.get("twd", {}):
                emit(f"twd_vs_{name}.{k}", ran["twd"][k][0], unit, v)
    return "\n".join(lines) + "\n"


def _f(v, fmt="{:.2f}"):
    return "—" if v is None else fmt.format(v)


def _mib(n):
    return f"{n / (1 << 20):g} MiB" if n >= (1 << 20) else f"{n / 1024:g} KiB"


def markdown(report):
    ds = report["dataset"]
    big, small, procs = ds["big_chunk_bytes"], ds["small_chunk_bytes"], ds["procs"]
    out = [f"Run of {report['started']}, {report['machine']['cpus']} CPUs, Linux "
           f"{report['machine']['kernel']}; {report.get('seconds', 0):.0f} s. Data set: "
           f"{ds['big_chunks']} chunks of {_mib(big)} and {ds['small_chunks']} of "
           f"{_mib(small)}; lookup chain {ds['lookup_chain']} chunks of "
           f"{_mib(ds['lookup_value_bytes'])}, {ds['lookups']} lookups.", ""]
    out += ["| system | version | a put is | status |", "|---|---|---|---|"]
    for s in report["systems"]:
        status = s.get("status", "?")
        if status != "ran":
            status += ": `" + s.get("error", "; ".join(s.get("errors", []))) + "`"
        elif s.get("errors"):
            status += " (errors: " + "; ".join(e.splitlines()[0] for e in s["errors"]) + ")"
        out.append(f"| {s.get('label', s['name'])} | {s.get('version', '—')} | "
                   f"{s.get('put_kind', '')} | {status} |")
    if "mooncake_cuda_build" in report:
        out.append(f"| Mooncake, CUDA build (`mooncake-transfer-engine`) | | | does not load "
                   f"here: `{report['mooncake_cuda_build']}` |")
    out.append("")
    cols = [(big, p) for p in procs] + [(small, p) for p in procs]
    head = "| system | " + " | ".join(f"put {_mib(c)} ×{p}" for c, p in cols) + " | " + \
        " | ".join(f"get {_mib(c)} ×{p}" for c, p in cols) + " |"
    out += ["Throughput, GB/s (×N: N client processes at once):", "", head,
            "|---|" + "---|" * (2 * len(cols))]
    for s in _ran(report):
        cells = []
        for op in ("put", "get"):
            for c, p in cols:
                r = _run(s, c, p)
                cells.append(_f(r and r[f"{op}_gbps"]) + ("" if not r or op == "put" or
                                                         r["get_hits"] == 1 else
                                                         f" ({r['get_hits']:.0%} hits)"))
        out.append(f"| {s.get('label', s['name'])} | " + " | ".join(cells) + " |")
    out += ["", f"Lookup of the chain, restart ({_mib(big)} chunks, ×{procs[0]}), memory and "
            "disk writes:", "",
            "| system | lookup p50 / p99 (µs) | hits after restart | first hit after (s) | "
            "cold get after restart (GB/s) | RSS after the puts | RSS growth per chunk | "
            "bytes written per byte stored |", "|---|---|---|---|---|---|---|---|"]
    for s in _ran(report):
        lk = s.get("lookup")
        r = _run(s, big, procs[0]) or {}
        rs = r.get("restart", {})
        out.append(
            f"| {s.get('label', s['name'])} | "
            f"{_f(lk and lk['p50_us'], '{:.0f}')} / {_f(lk and lk['p99_us'], '{:.0f}')} | "
            f"{_f(rs.get('hits'), '{:.0%}')} | {_f(rs.get('first_hit_s'), '{:.2f}')} | "
            f"{_f(rs.get('cold_get_gbps'))} | "
            f"{_f(r.get('rss_after') and r['rss_after'] / (1 << 30), '{:.2f}')} GiB | "
            f"{_f(r.get('rss_per_chunk') and r['rss_per_chunk'] / big, '{:.2f}')} × chunk | "
            f"{_f(r.get('written_per_byte'))} |")
    if report.get("ratios"):
        keys = [f"{op}_x{p}" for op in ("put", "get") for p in procs] + ["lookup_p50"]
        out += ["", f"twd / peer, same run ({_mib(big)} chunks; bars: put and get ≥ 2, "
                "lookup p50 ≤ 0.5):", "",
                "| peer | " + " | ".join(k.replace("_x", " ×").replace("_", " ")
                                        for k in keys) + " |",
                "|---|" + "---|" * len(keys)]
        for name, ratios in report["ratios"].items():
            verdict = report["bars"].get(name, {})
            cells = [(_f(ratios.get(k)) + (" ✔" if verdict.get(k) else " ✘"))
                     if k in ratios else "—" for k in keys]
            label = next(s.get("label", name) for s in report["systems"] if s["name"] == name)
            out.append(f"| {label} | " + " | ".join(cells) + " |")
        if "twd_restart_hits" in report["bars"]:
            out += ["", "twd: 100 % hits after a restart: " +
                    ("✔" if report["bars"]["twd_restart_hits"] else "✘")]
    return "\n".join(out) + "\n"


def chart(report, path):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    ds = report["dataset"]
    systems = _ran(report)
    labels = [s.get("label", s["name"]) for s in systems]
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(13, 4.8),
                                   gridspec_kw={"width_ratios": [3, 1.2]})
    series = [(op, p) for op in ("put", "get") for p in ds["procs"]]
    width = 0.8 / len(series)
    for j, (op, p) in enumerate(series):
        vals = []
        for s in systems:
            r = _run(s, ds["big_chunk_bytes"], p)
            vals.append(r[f"{op}_gbps"] if r else 0)
        xs = [i + (j - (len(series) - 1) / 2) * width for i in range(len(systems))]
        ax1.bar(xs, vals, width, label=f"{op}, {p} process{'es' if p > 1 else ''}")
    ax1.set_xticks(range(len(systems)), labels, rotation=15)
    ax1.set_ylabel("GB/s")
    ax1.set_title(f"Put and get of {_mib(ds['big_chunk_bytes'])} chunks")
    ax1.legend(fontsize=8)
    ax1.text(0.01, -0.2, "Durable puts: twd (durability disk) and the file per chunk (fsync); "
             "LMCache disk writes without fsync; the others keep chunks in memory.",
             transform=ax1.transAxes, fontsize=8)
    hits = []
    for s in systems:
        r = _run(s, ds["big_chunk_bytes"], ds["procs"][0]) or {}
        hits.append(100 * r.get("restart", {}).get("hits", 0))
    ax2.barh(range(len(systems)), hits, color="tab:green")
    for i, h in enumerate(hits):
        ax2.text(min(h, 80) + 2, i, f"{h:.0f} %", va="center", fontsize=9)
    ax2.set_yticks(range(len(systems)), labels)
    ax2.invert_yaxis()
    ax2.set_xlim(0, 105)
    ax2.set_xlabel("% of stored chunks")
    ax2.set_title("Hits after a restart")
    fig.suptitle("Token Warehouse and its peers, one run, same machine and chunks "
                 f"({report['started']})", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
