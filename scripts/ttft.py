"""Time to first token of a vLLM engine (CPU) with the TokenWarehouseConnector: cold (empty
warehouse) vs warm from twd's DRAM vs warm from NVMe after a twd restart, per prompt length.
Run by scripts/ttft.sh with the vLLM environment's interpreter; see docs/ttft.md.

    python scripts/ttft.py --twd BIN --out DIR [--lengths 1024,2048,4096,8192]

One process: twd is started empty; engine 1 computes each prompt (cold) — the connector
stores its chunks when the request finishes — and, once twd holds them all, computes each
prompt again (warm, DRAM); engine 1 stops, twd restarts (its DRAM tier is empty, so every
chunk comes from NVMe), engine 2 computes each prompt a third time (warm, NVMe). vLLM's own
prefix cache is off, so every warm prefix comes from the warehouse. TTFT is vLLM's
first_token_latency of the request (arrival to first token); each run also generates
--tokens greedy tokens, which must be identical in the three runs. Writes DIR/ttft.json,
DIR/ttft.md (a table) and DIR/ttft.png (the plot).
"""

import argparse
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "lib"))
sys.path.insert(0, os.path.join(HERE, "..", "client", "python"))
from random_llama import write_model  # noqa: E402

# Large enough that prefill dominates a cold request on a CPU core, small enough that an
# 8K-token prompt computes in tens of seconds: 4 layers, hidden 1024, GQA 8/2 heads of 128.
# float32: in bf16 the cold prefill and the warm one-token step round differently, enough to
# flip a near-tied greedy token of a random-weights model.
MODEL = {"hidden_size": 1024, "intermediate_size": 2816, "num_attention_heads": 8,
         "num_key_value_heads": 2, "head_dim": 128, "num_hidden_layers": 4,
         "vocab_size": 2048, "max_position_embeddings": 16384, "torch_dtype": "float32"}
DTYPE = "float32"


class Twd:
    def __init__(self, binary, workdir, dram, nvme):
        self.binary, self.workdir = binary, workdir
        self.socket = os.path.join(workdir, "twd.sock")
        self.args = [binary, "--socket", self.socket, "--admin-socket",
                     os.path.join(workdir, "twd-admin.sock"), "--data-dir",
                     os.path.join(workdir, "data"), "--dram-capacity", dram,
                     "--nvme-capacity", nvme, "--metrics-address", "127.0.0.1:0",
                     "--log-level", "warn"]
        self.proc = None

    def start(self):
        os.makedirs(os.path.join(self.workdir, "data"), exist_ok=True)
        log = open(os.path.join(self.workdir, "twd.log"), "ab")
        self.proc = subprocess.Popen(self.args, stdout=log, stderr=log)
        deadline = time.monotonic() + 60
        while not os.path.exists(self.socket):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("twd did not start; see " + log.name)
            time.sleep(0.05)

    def stop(self):
        self.proc.send_signal(signal.SIGTERM)
        self.proc.wait(120)
        self.proc = None


def make_engine(model_dir, socket, max_len):
    from vllm import LLM
    from vllm.config import KVTransferConfig
    ktc = KVTransferConfig(
        kv_connector="TokenWarehouseConnector", kv_connector_module_path="tokenwarehouse.vllm",
        kv_role="kv_both",
        kv_connector_extra_config={"socket": socket, "arena_size": "1GiB",
                                   "chunk_tokens": 256, "timeout": 30})
    return LLM(model=model_dir, skip_tokenizer_init=True, enforce_eager=True, dtype=DTYPE,
               seed=0, max_model_len=max_len, block_size=128, enable_prefix_caching=False,
               gpu_memory_utilization=0.05, kv_cache_memory_bytes=1 << 30,
               max_num_batched_tokens=max_len, disable_log_stats=False,
               kv_transfer_config=ktc)


def run(llm, tokens, n_tokens):
    from vllm import SamplingParams
    from vllm.inputs import TokensPrompt
    sp = SamplingParams(temperature=0, max_tokens=n_tokens, ignore_eos=True, detokenize=False,
                        logprobs=2)
    t = time.monotonic()
    out = llm.generate([TokensPrompt(prompt_token_ids=tokens)], sp, use_tqdm=False)[0]
    wall = time.monotonic() - t
    ttft = getattr(out.metrics, "first_token_latency", 0.0) or 0.0
    if ttft <= 0:
        raise RuntimeError("vLLM reported no first_token_latency (log stats are off?)")
    kv = (out.kv_transfer_params or {}).get("tokenwarehouse", {})
    first = out.outputs[0].logprobs[0] if out.outputs[0].logprobs else {}
    top2 = sorted((lp.logprob for lp in first.values()), reverse=True)[:2]
    return {"ttft": ttft, "wall": wall, "tokens": list(out.outputs[0].token_ids),
            "first_margin": top2[0] - top2[1] if len(top2) == 2 else None,
            "hit_chunks": kv.get("hit_chunks", 0), "tiers": kv.get("hit_tiers", {}),
            "loaded_chunks": kv.get("loaded_chunks", 0)}


def wait_stored(socket, n, timeout=300):
    import tokenwarehouse as tw
    deadline = time.monotonic() + timeout
    with tw.Client(socket, 2 << 20) as c:
        while time.monotonic() < deadline:
            if c.stats()["puts"]["stored"] >= n:
                return
            time.sleep(0.2)
    raise RuntimeError(f"twd did not store {n} chunks in {timeout}s")


def shutdown(llm):
    llm.llm_engine.engine_core.shutdown()


def measure(args):
    lengths = [int(x) for x in args.lengths.split(",")]
    rng = random.Random(7)
    prompts = {n: [rng.randrange(3, MODEL["vocab_size"]) for _ in range(n)] for n in lengths}
    warm_up = [rng.randrange(3, MODEL["vocab_size"]) for _ in range(200)]
    max_len = max(lengths) + args.tokens + 256
    work = tempfile.mkdtemp(prefix="tw-ttft-")
    model_dir = os.path.join(work, "model")
    write_model(model_dir, MODEL)
    twd = Twd(args.twd, work, args.dram, args.nvme)
    twd.start()
    results = {n: {} for n in lengths}
    try:
        llm = make_engine(model_dir, twd.socket, max_len)
        run(llm, warm_up, 2)   # first-call costs (threads, allocator) out of the figures
        for n in lengths:
            results[n]["cold"] = run(llm, prompts[n], args.tokens)
            print(f"ttft: {n} tokens cold {results[n]['cold']['ttft']:.3f}s", flush=True)
        wait_stored(twd.socket, sum(n // 256 for n in lengths))
        for n in lengths:
            results[n]["dram"] = run(llm, prompts[n], args.tokens)
            print(f"ttft: {n} tokens warm (DRAM) {results[n]['dram']['ttft']:.3f}s", flush=True)
        shutdown(llm)
        twd.stop()
        twd.start()
        llm = make_engine(model_dir, twd.socket, max_len)
        run(llm, warm_up, 2)
        for n in lengths:
            results[n]["nvme"] = run(llm, prompts[n], args.tokens)
            print(f"ttft: {n} tokens warm (NVMe) {results[n]['nvme']['ttft']:.3f}s", flush=True)
        shutdown(llm)
    finally:
        if twd.proc is not None:
            twd.stop()
        shutil.rmtree(work, ignore_errors=True)
    return {"model": MODEL, "chunk_tokens": 256, "block_size": 128, "dtype": DTYPE,
            "generated_tokens": args.tokens, "results": {str(n): r for n, r in results.items()}}


def report(data, out):
    rows = []
    ok = True
    for n, r in data["results"].items():
        cold, dram, nvme = r["cold"], r["dram"], r["nvme"]
        same = cold["tokens"] == dram["tokens"] == nvme["tokens"]
        ok &= same
        rows.append((int(n), cold["ttft"], dram["ttft"], nvme["ttft"],
                     cold["ttft"] / dram["ttft"], cold["ttft"] / nvme["ttft"],
                     f"{dram['hit_chunks']}/{nvme['hit_chunks']}", same))
    lines = ["| prompt tokens | cold TTFT | warm TTFT (DRAM) | warm TTFT (NVMe, after twd "
             "restart) | cold/DRAM | cold/NVMe | chunks hit (DRAM/NVMe) | outputs identical |",
             "|---:|---:|---:|---:|---:|---:|---:|---|"]
    for n, c, d, v, rd, rv, hits, same in rows:
        lines.append(f"| {n} | {c * 1000:.0f} ms | {d * 1000:.0f} ms | {v * 1000:.0f} ms | "
                     f"{rd:.1f}× | {rv:.1f}× | {hits} | {'yes' if same else 'NO'} |")
    with open(os.path.join(out, "ttft.md"), "w") as f:
        f.write("\n".join(lines) + "\n")
    print("\n".join(lines))

    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    xs = range(len(rows))
    w = 0.27
    fig, ax = plt.subplots(figsize=(7, 4))
    for i, (label, col) in enumerate((("cold", 1), ("warm, DRAM", 2),
                                      ("warm, NVMe after restart", 3))):
        ax.bar([x + (i - 1) * w for x in xs], [r[col] * 1000 for r in rows], w, label=label)
    ax.set_xticks(list(xs), [str(r[0]) for r in rows])
    ax.set_yscale("log")
    ax.set_xlabel("prompt tokens")
    ax.set_ylabel("time to first token (ms, log scale)")
    ax.set_title("vLLM (CPU) with the TokenWarehouseConnector")
    ax.legend()
    fig.tight_layout()
    fig.savefig(os.path.join(out, "ttft.png"), dpi=110)
    return ok, rows


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--twd", required=True, help="the twd binary")
    ap.add_argument("--out", required=True, help="directory for ttft.json/.md/.png")
    ap.add_argument("--lengths", default="1024,2048,4096,8192")
    ap.add_argument("--tokens", type=int, default=16, help="greedy tokens per run")
    ap.add_argument("--dram", default="1GiB")
    ap.add_argument("--nvme", default="2GiB")
    args = ap.parse_args()
    os.makedirs(args.out, exist_ok=True)
    data = measure(args)
    with open(os.path.join(args.out, "ttft.json"), "w") as f:
        json.dump(data, f, indent=1)
    ok, rows = report(data, args.out)
    if not ok:
        print("ttft: outputs differ between cold and warm runs", file=sys.stderr)
        return 1
    bar = [r for r in rows if r[0] == 4096]
    if bar and (bar[0][4] < 10 or bar[0][5] < 10):
        print("ttft: warm TTFT at 4096 tokens is more than 1/10 of cold", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
