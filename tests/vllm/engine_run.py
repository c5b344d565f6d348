"""Runs one vLLM engine (CPU, a small Llama with seeded random weights) with the
TokenWarehouseConnector over a job file, and writes what it generated. Started by
test_vllm_engines.py and scripts/ttft.py with the vLLM environment's interpreter
(scripts/vllm-venv.sh).

    python engine_run.py JOB.json OUT.json

JOB: {"model_dir", "socket", "prompts": [{"tokens": [...], "cache_salt": null}],
      "max_tokens", "dtype", "prefix_caching", "extra": {connector extra config},
      "tensor_parallel_size", "timed": false, "events_endpoint": "tcp://127.0.0.1:PORT",
      "events_wait": number of connector BlockStored events to wait for before stopping}
OUT: {"events": [KV events received: {"type", "hashes", "medium", "tokens", "block_size"}],
      "outputs": [{"tokens", "logprobs" (of each generated token), "kv" (the request's
      kv_transfer_params: the connector's hit counts), "ttft" (timed only)}], "init_s"}
With "timed", prompts run one at a time and each gets its time to first token.
"""

import json
import os
import sys
import time


def write_model(model_dir, spec):
    """A Llama-architecture model with seeded random weights (written once per directory).

    Not vLLM's load_format="dummy": its weights (uniform in +-1e-3, norms included) make the
    output independent of every earlier token, so equal outputs would prove nothing about
    the KV. These are scaled like a trained model's (unit norms, 1/sqrt(fan_in)
    projections), so attention depends on the context and wrong KV shows."""
    cfg = {"architectures": ["LlamaForCausalLM"], "model_type": "llama",
           "hidden_size": 256, "intermediate_size": 512, "num_attention_heads": 4,
           "num_key_value_heads": 2, "head_dim": 64, "num_hidden_layers": 2,
           "vocab_size": 1024, "max_position_embeddings": 16384, "rms_norm_eps": 1e-5,
           "rope_theta": 10000.0, "tie_word_embeddings": False, "bos_token_id": 1,
           "eos_token_id": 2, "torch_dtype": "float32"}
    cfg.update(spec or {})
    done = os.path.join(model_dir, "model.safetensors")
    if os.path.exists(done):
        return
    import torch
    from safetensors.torch import save_file
    os.makedirs(model_dir, exist_ok=True)
    g = torch.Generator().manual_seed(1234)
    h, inter, v = cfg["hidden_size"], cfg["intermediate_size"], cfg["vocab_size"]
    q, kv = cfg["num_attention_heads"] * cfg["head_dim"], \
        cfg["num_key_value_heads"] * cfg["head_dim"]

    def rand(*shape):
        return (torch.randn(*shape, generator=g) / shape[-1] ** 0.5).to(torch.bfloat16)

    w = {"model.embed_tokens.weight": torch.randn(v, h, generator=g).to(torch.bfloat16),
         "model.norm.weight": torch.ones(h, dtype=torch.bfloat16),
         "lm_head.weight": rand(v, h)}
    for i in range(cfg["num_hidden_layers"]):
        p = f"model.layers.{i}."
        w.update({p + "input_layernorm.weight": torch.ones(h, dtype=torch.bfloat16),
                  p + "post_attention_layernorm.weight": torch.ones(h, dtype=torch.bfloat16),
                  p + "self_attn.q_proj.weight": rand(q, h),
                  p + "self_attn.k_proj.weight": rand(kv, h),
                  p + "self_attn.v_proj.weight": rand(kv, h),
                  p + "self_attn.o_proj.weight": rand(h, q),
                  p + "mlp.gate_proj.weight": rand(inter, h),
                  p + "mlp.up_proj.weight": rand(inter, h),
                  p + "mlp.down_proj.weight": rand(h, inter)})
    with open(os.path.join(model_dir, "config.json"), "w") as f:
        json.dump(cfg, f)
    save_file(w, done + ".tmp", metadata={"format": "pt"})
    os.rename(done + ".tmp", done)


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

    outputs = []
    if job.get("timed"):
        for p in job["prompts"]:
            one = SamplingParams(temperature=0, max_tokens=1, detokenize=False)
            t = time.monotonic()
            first = llm.generate([prompt(p)], one, use_tqdm=False)[0]
            ttft = time.monotonic() - t
            rest = llm.generate([prompt(p)], sp, use_tqdm=False)[0] if sp.max_tokens > 1 \
                else first
            outputs.append({"tokens": list(rest.outputs[0].token_ids),
                            "first": list(first.outputs[0].token_ids),
                            "kv": first.kv_transfer_params, "ttft": ttft})
    else:
        for r in llm.generate([prompt(p) for p in job["prompts"]], sp, use_tqdm=False):
            o = r.outputs[0]
            logprobs = [step[t].logprob for t, step in zip(o.token_ids, o.logprobs or [])]
            outputs.append({"tokens": list(o.token_ids), "logprobs": logprobs,
                            "kv": r.kv_transfer_params})
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
