"""A Llama-architecture model with seeded random weights, for vLLM runs without downloads
(tests/vllm/engine_run.py, scripts/ttft.py). Needs torch and safetensors (the vLLM
environment, scripts/vllm-venv.sh).

    write_model(directory, {"num_hidden_layers": 4, ...})   # config.json + model.safetensors

Not vLLM's load_format="dummy": its weights (uniform in +-1e-3, norms included) make the
output independent of every earlier token, so equal outputs would prove nothing about the
KV. These are scaled like a trained model's (unit norms, 1/sqrt(fan_in) projections), so
attention depends on the context and wrong KV shows. The same config gives the same weights
on every machine (a fixed torch seed); a directory that already holds them is left alone.
"""

import json
import os

def write_model(model_dir, spec):
    """Writes config.json (defaults below, updated with `spec`) and seeded weights."""
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


def write_lora(adapter_dir, model_dir, rank=8, seed=1):
    """A PEFT LoRA adapter (q_proj and v_proj of every layer) with seeded random weights for
    the model of write_model(model_dir); written once per directory."""
    done = os.path.join(adapter_dir, "adapter_model.safetensors")
    if os.path.exists(done):
        return
    import torch
    from safetensors.torch import save_file
    with open(os.path.join(model_dir, "config.json")) as f:
        cfg = json.load(f)
    os.makedirs(adapter_dir, exist_ok=True)
    g = torch.Generator().manual_seed(seed)
    h = cfg["hidden_size"]
    out = {"q_proj": cfg["num_attention_heads"] * cfg["head_dim"],
           "v_proj": cfg["num_key_value_heads"] * cfg["head_dim"]}
    w = {}
    for i in range(cfg["num_hidden_layers"]):
        for m, n in out.items():
            p = f"base_model.model.model.layers.{i}.self_attn.{m}."
            w[p + "lora_A.weight"] = torch.randn(rank, h, generator=g) / h ** 0.5
            w[p + "lora_B.weight"] = torch.randn(n, rank, generator=g) / rank ** 0.5
    with open(os.path.join(adapter_dir, "adapter_config.json"), "w") as f:
        json.dump({"peft_type": "LORA", "r": rank, "lora_alpha": rank, "lora_dropout": 0.0,
                   "target_modules": list(out), "bias": "none",
                   "base_model_name_or_path": model_dir, "task_type": "CAUSAL_LM"}, f)
    save_file(w, done + ".tmp", metadata={"format": "pt"})
    os.rename(done + ".tmp", done)
