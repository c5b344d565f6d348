#!/usr/bin/python3
"""Generates tests/common/key_vectors.json from an independent reference implementation.

This is a second implementation of docs/keys.md, in Python with hashlib, written separately
from the C++ one in common/src/keys.cc. Every client (C++, C ABI, Python package, twctl)
must reproduce the vectors it writes. The canonical ("normalized") spelling of each case is
written by hand: the generator does not normalise, it only hashes.

Usage: gen_key_vectors.py > tests/common/key_vectors.json
"""
import hashlib
import json
import struct
import sys

FIELDS = ["model", "model_revision", "tokenizer", "kv_dtype", "kv_layout", "parallel",
          "adapter", "tenant", "chunk_tokens"]


def ns_digest(ns):
    h = hashlib.sha256(b"tokenwarehouse/ns/v1")
    for i, name in enumerate(FIELDS, start=1):
        raw = ns[name].encode("utf-8")
        h.update(struct.pack("<BI", i, len(raw)))
        h.update(raw)
    return h.digest()


def chunk_keys(ns, tokens, extras):
    ct = int(ns["chunk_tokens"])
    parent = ns_digest(ns)
    keys = []
    for j in range(len(tokens) // ct):
        extra = extras[j] if j < len(extras) else b""
        h = hashlib.sha256(b"tokenwarehouse/chunk/v1")
        h.update(parent)
        h.update(struct.pack("<I", len(extra)))
        h.update(extra)
        h.update(struct.pack("<%dI" % ct, *tokens[j * ct:(j + 1) * ct]))
        parent = h.digest()
        keys.append(parent)
    return keys


def ns(model="meta-llama/Llama-3.1-8B-Instruct", model_revision="0e9e39f249a16976918f6564b8830bc894c89659",
       tokenizer="meta-llama/Llama-3.1-8B-Instruct@0e9e39f", kv_dtype="bf16",
       kv_layout="vllm/flash_attn/block16", parallel="tp=0/1,pp=0/1", adapter="", tenant="default",
       chunk_tokens="256"):
    return dict(model=model, model_revision=model_revision, tokenizer=tokenizer, kv_dtype=kv_dtype,
                kv_layout=kv_layout, parallel=parallel, adapter=adapter, tenant=tenant,
                chunk_tokens=chunk_tokens)


def tokens_of(n, seed):
    # A deterministic token sequence with large ids too (ids are u32).
    out, x = [], seed
    for _ in range(n):
        x = (x * 1103515245 + 12345) & 0xFFFFFFFF
        out.append(x if x % 7 == 0 else x % 128256)
    return out


CASES = []


def case(name, input_ns, normalized, tokens, extras=()):
    extras = list(extras)
    CASES.append({
        "name": name,
        "namespace": input_ns,
        "normalized": normalized,
        "ns_digest": ns_digest(normalized).hex(),
        "tokens": tokens,
        "extras": [e.hex() for e in extras],
        "keys": [k.hex() for k in chunk_keys(normalized, tokens, extras)],
    })


def main():
    base = ns(chunk_tokens="4")
    case("zero_chunks_empty_tokens", base, base, [])
    case("zero_chunks_partial", base, base, [1, 2, 3])
    case("one_chunk", base, base, [1, 2, 3, 4])
    case("one_chunk_partial_tail", base, base, [1, 2, 3, 4, 5, 6])
    case("three_chunks", base, base, tokens_of(12, 1))
    case("three_chunks_with_extras", base, base, tokens_of(12, 1),
         [b"\x01\x02\x03", b"", bytes(range(32))])
    case("extras_on_first_chunk_only", base, base, tokens_of(8, 2), [b"salt:request-42"])
    case("big_token_ids", base, base, [0, 1, 0xFFFFFFFF, 0x80000000, 7, 8, 9, 10])
    empty = dict((f, "") for f in FIELDS)
    empty_ct = dict(empty, chunk_tokens="2")
    canon_empty = dict(empty_ct, parallel="tp=0/1,pp=0/1")
    case("empty_fields", empty_ct, canon_empty, [5, 6, 7, 8])
    uni = ns(model="Qwen/通义千问-7B", tokenizer="qwen✓", tenant="équipe-α", adapter="lora/日本語",
             chunk_tokens="3")
    case("unicode_fields", uni, uni, tokens_of(9, 3))
    lora = ns(adapter="sql-lora@v2", chunk_tokens="4")
    case("lora_adapter", lora, lora, tokens_of(8, 4))
    tp = ns(parallel="tp=3/8,pp=1/2", chunk_tokens="4")
    case("tensor_parallel_rank", tp, tp, tokens_of(8, 4))
    # Normalisation: non-canonical spellings map to the canonical ones.
    raw = ns(kv_dtype="torch.BFloat16", parallel=" pp=0/1 , TP=0/2 ", chunk_tokens="0016")
    canon = ns(kv_dtype="bf16", parallel="tp=0/2,pp=0/1", chunk_tokens="16")
    case("normalize_spellings", raw, canon, tokens_of(32, 5))
    raw = ns(kv_dtype="half", parallel="tp=1/4", chunk_tokens="2")
    canon = ns(kv_dtype="fp16", parallel="tp=1/4,pp=0/1", chunk_tokens="2")
    case("normalize_defaults_pp", raw, canon, [1, 2])
    raw = ns(kv_dtype="float8_e4m3fn", parallel="heads=0-7,tp=0/1", chunk_tokens="2")
    canon = ns(kv_dtype="fp8_e4m3", parallel="tp=0/1,pp=0/1,heads=0-7", chunk_tokens="2")
    case("normalize_extra_parallel_items", raw, canon, [3, 4])
    big = ns(chunk_tokens="256")
    case("llama_256_token_chunks", big, big, tokens_of(768, 6))
    # Digests of namespaces hashed exactly as given (no normalisation), empty fields included.
    raw_digests = [{"namespace": n, "ns_digest": ns_digest(n).hex()}
                   for n in (empty, base, uni, dict(empty, model="ab", model_revision="c"),
                             dict(empty, model="a", model_revision="bc"))]
    json.dump({"spec": "docs/keys.md", "version": 1, "raw_digests": raw_digests, "cases": CASES},
              sys.stdout, indent=1,
              ensure_ascii=False)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()
