#!/usr/bin/env python3
"""The Token Warehouse demo client: stores the KV cache of a synthetic prompt shaped like
Llama-3.1-8B's (32 layers x K,V x 8 KV heads x 128 dims, bf16: 32 MiB per 256-token chunk),
then, in a later run against a restarted twd, finds it again and reads it back.

    kv_demo.py put --socket S [--tokens 4096] [--layers 32]    # store every chunk, disk-durable
    kv_demo.py get --socket S [...same shape...]                # lookup + get + verify

Each chunk's value has one segment per layer (K and V of 256 tokens: 1 MiB at full shape),
written from and read into per-layer places of the arena with a scatter list, as an engine
with per-layer KV buffers would. Values are deterministic (derived from the chunk key and the
layer), so `get` verifies every byte. Prints what it did as `key: value` lines.

Stdlib only; uses the tokenwarehouse package (client/python) and libtwclient.so.
"""

import argparse
import hashlib
import os
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(os.path.dirname(HERE), "python"))

import tokenwarehouse as tw  # noqa: E402


def namespace(args):
    return {
        "model": "meta-llama/Llama-3.1-8B-Instruct",
        "model_revision": "0e9e39f249a16976918f6564b8830bc894c89659",
        "tokenizer": "meta-llama/Llama-3.1-8B-Instruct",
        "kv_dtype": "bf16",
        "kv_layout": f"demo/layers={args.layers},kv_heads={args.kv_heads},head_dim=128",
        "parallel": "tp=0/1,pp=0/1",
        "adapter": "",
        "tenant": "",
        "chunk_tokens": str(args.chunk_tokens),
    }


def layer_bytes(args):
    # K and V, kv_heads x head_dim, bf16, for every token of the chunk.
    return 2 * args.kv_heads * 128 * 2 * args.chunk_tokens


def prompt_tokens(args):
    # A synthetic prompt: deterministic token ids in Llama-3's vocabulary.
    return [(i * 2654435761 + 12345) % 128256 for i in range(args.tokens)]


def expected(key, layer, size):
    pattern = hashlib.sha256(key + layer.to_bytes(4, "little")).digest()
    return (pattern * (size // len(pattern) + 1))[:size]


def arena_layout(args, batch):
    """Arena offset of (slot, layer): per-layer buffers, one slot per chunk in a request."""
    lb = layer_bytes(args)
    return lambda slot, layer: (layer * batch + slot) * lb


def report(**kv):
    for k, v in kv.items():
        print(f"{k}: {v}")
    sys.stdout.flush()


def run_put(args, c, ns_digest, keys, tokens):
    lb = layer_bytes(args)
    batch = args.batch
    where = arena_layout(args, batch)
    stored = exists = 0
    total = 0
    elapsed = 0.0
    parent = ns_digest
    for first in range(0, len(keys), batch):
        items = []
        for slot, j in enumerate(range(first, min(first + batch, len(keys)))):
            scatter = []
            for layer in range(args.layers):
                off = where(slot, layer)
                c.arena_view(off, lb)[:] = expected(keys[j], layer, lb)
                scatter.append(tw.Scatter(layer, 0, lb, off))
            items.append(dict(key=keys[j], parent=parent,
                              tokens=tokens[j * args.chunk_tokens:(j + 1) * args.chunk_tokens],
                              segment_sizes=[lb] * args.layers, scatter=scatter))
            parent = keys[j]
        t0 = time.perf_counter()
        results = c.put_batch(items, durability=args.durability)
        elapsed += time.perf_counter() - t0
        for r in results:
            if r == "stored":
                stored += 1
            elif r == "exists":
                exists += 1
            else:
                print(f"put failed: {r}", file=sys.stderr)
                return 1
        total += len(items) * lb * args.layers
    report(phase="put", chunks=len(keys), stored=stored, already_stored=exists,
           bytes=total, seconds=f"{elapsed:.3f}",
           put_gb_per_s=f"{total / elapsed / 1e9:.2f}" if elapsed > 0 else "inf",
           durability=args.durability)
    return 0


def run_get(args, c, ns_digest, keys, tokens):
    del ns_digest
    lb = layer_bytes(args)
    batch = args.batch
    where = arena_layout(args, batch)
    t0 = time.perf_counter()
    found = c.lookup(keys)
    lookup_s = time.perf_counter() - t0
    tiers = {}
    for t in found.tiers[:found.prefix]:
        tiers[t] = tiers.get(t, 0) + 1
    served = {}
    hits = misses = 0
    total = 0
    elapsed = 0.0
    bad = 0
    reasons = {}
    for first in range(0, found.prefix, batch):
        js = list(range(first, min(first + batch, found.prefix)))
        items = [(keys[j], 0, 0, [tw.Scatter(layer, 0, lb, where(slot, layer))
                                  for layer in range(args.layers)])
                 for slot, j in enumerate(js)]
        t1 = time.perf_counter()
        results = c.get_batch(items, lease=found.lease)
        elapsed += time.perf_counter() - t1
        for slot, (j, r) in enumerate(zip(js, results)):
            if r.miss != "none":
                misses += 1
                reasons[r.miss] = reasons.get(r.miss, 0) + 1
                continue
            hits += 1
            total += r.bytes
            served[r.tier] = served.get(r.tier, 0) + 1
            for layer in range(args.layers):
                if c.arena_view(where(slot, layer), lb) != expected(keys[j], layer, lb):
                    bad += 1
                    break
    missing = len(keys) - found.prefix
    report(phase="get", chunks=len(keys), lookup_prefix=found.prefix,
           lookup_ms=f"{lookup_s * 1e3:.2f}",
           lookup_miss_after_prefix=found.miss if missing else "none",
           lookup_tiers=", ".join(f"{k}={v}" for k, v in sorted(tiers.items())) or "none",
           served_from=", ".join(f"{k}={v}" for k, v in sorted(served.items())) or "none",
           hits=hits, misses=misses + missing,
           miss_reasons=", ".join(f"{k}={v}" for k, v in sorted(reasons.items())) or "none",
           bytes=total, seconds=f"{elapsed:.3f}",
           get_gb_per_s=f"{total / elapsed / 1e9:.2f}" if elapsed > 0 else "inf",
           verified_chunks=hits - bad, corrupt_chunks=bad,
           prefill_tokens_saved=hits * args.chunk_tokens,
           prompt_tokens=len(tokens))
    if bad:
        print(f"{bad} chunks differ from what was stored", file=sys.stderr)
        return 1
    if args.expect_all and hits != len(keys):
        print(f"expected every one of {len(keys)} chunks back, got {hits}", file=sys.stderr)
        return 1
    return 0


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("phase", choices=["put", "get"])
    p.add_argument("--socket", required=True, help="twd's client socket")
    p.add_argument("--tokens", type=int, default=4096, help="prompt length in tokens")
    p.add_argument("--chunk-tokens", type=int, default=256)
    p.add_argument("--layers", type=int, default=32)
    p.add_argument("--kv-heads", type=int, default=8)
    p.add_argument("--batch", type=int, default=4, help="chunks per request")
    p.add_argument("--durability", choices=["memory", "disk"], default="disk")
    p.add_argument("--expect-all", action="store_true",
                   help="get: fail unless every chunk comes back")
    args = p.parse_args()

    ns = namespace(args)
    tokens = prompt_tokens(args)
    keys = tw.chunk_keys(ns, tokens)
    if not keys:
        print("the prompt is shorter than one chunk", file=sys.stderr)
        return 2
    arena = layer_bytes(args) * args.layers * args.batch
    with tw.Client(args.socket, arena, namespaces=[ns], timeout=60,
                   name=f"kv-demo-{args.phase}") as c:
        if args.phase == "put":
            return run_put(args, c, c.namespace_digests[0], keys, tokens)
        return run_get(args, c, c.namespace_digests[0], keys, tokens)


if __name__ == "__main__":
    sys.exit(main())
