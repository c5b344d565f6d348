"""Runs one vLLM engine (CPU, a small Llama with seeded random weights) with the
TokenWarehouseConnector over a job file, and writes what it generated. Started by
test_vllm_engines.py with the vLLM environment's interpreter
(scripts/vllm-venv.sh).

    python engine_run.py JOB.json OUT.json

JOB: {"model_dir", "socket", "prompts": [{"tokens": [...], "cache_salt": null,
      "lora": null (or an adapter name: enables LoRA, adapter written next to the model)}],
      "max_tokens", "dtype", "prefix_caching", "extra": {connector extra config},
      "tensor_parallel_size", "events_endpoint": "ipc://PATH" (vLLM's KV-event stream),
      "events_wait": number of connector BlockStored events to wait for before stopping,
      "env": {variables set before vLLM is imported}}
OUT: {"events": [KV events received: {"type", "hashes", "medium", "tokens", "block_size"}],
      "outputs": [{"tokens", "logprobs" (of each generated token), "kv" (the request's
      kv_transfer_params: the connector's hit counts)}], "init_s"}
"""

import json
import os
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..",
                                "scripts", "lib"))
from random_llama import write_lora, write_model  # noqa: E402


class EventListener:
    """Subscribes to vLLM's KV-event stream (ZMQ PUB: topic, sequence, msgpack batch) and
    keeps every BlockStored/BlockRemoved it sees."""

    def __init__(self, endpoint):
        import threading

        import zmq
        self.events = []
        self.cv = threading.Condition()
        self.ctx = zmq.Context()
        self.sock = self.ctx.socket(zmq.SUB)
        self.sock.setsockopt(zmq.SUBSCRIBE, b"")
        self.sock.setsockopt(zmq.RCVTIMEO, 100)
        self.sock.connect(endpoint)
        self.stop = False
        self.thread = threading.Thread(target=self.run, daemon=True)
        self.thread.start()

    def run(self):
        import msgspec
        import zmq
        while not self.stop:
            try:
                frames = self.sock.recv_multipart()
            except zmq.Again:
                continue
            batch = msgspec.msgpack.decode(frames[-1])
            for ev in batch[1]:
                self.add(ev)

    def add(self, ev):
        # Events are tagged maps ({"type": ...}) or tagged arrays ([tag, fields...]).
        if isinstance(ev, dict):
            kind = ev.get("type")
            fields = ev
        else:
            kind = ev[0]
            names = (["block_hashes", "parent_block_hash", "token_ids", "block_size",
                      "lora_id", "medium"] if kind == "BlockStored" else
                     ["block_hashes", "medium"])
            fields = dict(zip(names, ev[1:]))
        with self.cv:
            self.events.append({"type": kind, "hashes": fields.get("block_hashes"),
                                "medium": fields.get("medium"),
                                "tokens": fields.get("token_ids"),
                                "block_size": fields.get("block_size")})
            self.cv.notify_all()

    def wait_stored(self, n, timeout):
        deadline = time.monotonic() + timeout
        with self.cv:
            while sum(e["type"] == "BlockStored" for e in self.events) < n:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self.cv.wait(left)
        return True


def main():
    job = json.load(open(sys.argv[1]))
    write_model(job["model_dir"], job.get("model"))
    os.environ.update(job.get("env") or {})
    t0 = time.monotonic()
    from vllm import LLM, SamplingParams
    from vllm.config import KVTransferConfig
    from vllm.inputs import TokensPrompt

    extra = {"socket": job["socket"]}
    extra.update(job.get("extra") or {})
    ktc = KVTransferConfig(kv_connector="TokenWarehouseConnector",
                           kv_connector_module_path="tokenwarehouse.vllm", kv_role="kv_both",
                           kv_connector_extra_config=extra)
    kw = {}
    loras = sorted({p["lora"] for p in job["prompts"] if p.get("lora")})
    if loras:
        kw.update(enable_lora=True, max_lora_rank=8, max_loras=len(loras))
    listener = None
    if job.get("events_endpoint"):
        from vllm.config import KVEventsConfig
        kw["kv_events_config"] = KVEventsConfig(enable_kv_cache_events=True, publisher="zmq",
                                                endpoint=job["events_endpoint"])
        listener = EventListener(job["events_endpoint"])
    llm = LLM(model=job["model_dir"], skip_tokenizer_init=True,
              enforce_eager=True, dtype=job.get("dtype", "float32"), seed=0,
              max_model_len=job.get("max_model_len", 4096),
              block_size=job.get("block_size"),
              gpu_memory_utilization=0.05,
              kv_cache_memory_bytes=job.get("kv_cache_bytes", 256 << 20),
              enable_prefix_caching=job.get("prefix_caching", False),
              tensor_parallel_size=job.get("tensor_parallel_size", 1),
              kv_transfer_config=ktc, **kw)
    init_s = time.monotonic() - t0
    sp = SamplingParams(temperature=0, max_tokens=job.get("max_tokens", 8), ignore_eos=True,
                        detokenize=False, logprobs=1)

    def prompt(p):
        kw = {"prompt_token_ids": p["tokens"]}
        if p.get("cache_salt"):
            kw["cache_salt"] = p["cache_salt"]
        return TokensPrompt(**kw)

    def lora(p):
        if not p.get("lora"):
            return None
        from vllm.lora.request import LoRARequest
        path = os.path.join(job["model_dir"] + "-lora", p["lora"])
        write_lora(path, job["model_dir"], seed=loras.index(p["lora"]) + 1)
        return LoRARequest(p["lora"], loras.index(p["lora"]) + 1, path)

    # One batch per adapter (no adapter first): vLLM 0.32's CPU LoRA changes the tokens
    # of requests without an adapter that share a batch with LoRA requests (seen without
    # any connector), so batches never mix adapters here.
    order = sorted(range(len(job["prompts"])),
                   key=lambda i: (job["prompts"][i].get("lora") or "",))
    results = [None] * len(job["prompts"])
    i = 0
    while i < len(order):
        name = job["prompts"][order[i]].get("lora")
        group = [k for k in order[i:] if job["prompts"][k].get("lora") == name]
        i += len(group)
        ps = [job["prompts"][k] for k in group]
        outs = llm.generate([prompt(p) for p in ps], sp, use_tqdm=False,
                            lora_request=lora(ps[0]) if name else None)
        for k, r in zip(group, outs):
            o = r.outputs[0]
            logprobs = [step[t].logprob for t, step in zip(o.token_ids, o.logprobs or [])]
            results[k] = {"tokens": list(o.token_ids), "logprobs": logprobs,
                          "kv": r.kv_transfer_params}
    outputs = results
    events = []
    if listener is not None:
        # Saves finish after their requests do: the events follow within a few steps.
        listener.wait_stored(job.get("events_wait", 1), 60)
        listener.stop = True
        listener.thread.join()
        events = listener.events
    llm.llm_engine.engine_core.shutdown()
    with open(sys.argv[2], "w") as f:
        json.dump({"outputs": outputs, "events": events, "init_s": init_s}, f)


if __name__ == "__main__":
    main()
