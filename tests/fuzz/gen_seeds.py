#!/usr/bin/python3
"""Writes the seed inputs of the fuzz targets other than `frame` (gen_corpus.py writes
those) into tests/fuzz/corpus/<target>/seed_*: valid inputs of every parser and a few hostile
ones, from the project's own examples and golden files. The committed corpora are these seeds
plus what scripts/fuzz.sh found and minimized. Run from anywhere; PyYAML (python3-yaml) turns
the example TokenWarehouse objects into JSON and is skipped when absent."""
import glob
import json
import os
import struct

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))


def write(target, name, data):
    d = os.path.join(HERE, "corpus", target)
    os.makedirs(d, exist_ok=True)
    if isinstance(data, str):
        data = data.encode()
    # Inputs that once found a defect keep their regress_ name; the rest are seeds.
    if not name.startswith("regress_"):
        name = "seed_" + name
    with open(os.path.join(d, name), "wb") as f:
        f.write(data)


def config_seeds():
    golden = json.load(open(os.path.join(ROOT, "tests/operator/golden/configmap.json")))
    write("config_yaml", "rendered", golden["data"]["twd.yaml"])
    write("config_yaml", "empty", "")
    write("config_yaml", "nvme", "socket: {path: /run/tokenwarehouse/twd.sock, group: inference}\n"
          "dram: {capacity: 8GiB}\nnvme:\n  paths:\n"
          "    - {path: /mnt/nvme0/tokenwarehouse.data, capacity: 1TiB}\n"
          "    - {path: /mnt/nvme1/tokenwarehouse.data, capacity: 1TiB}\n"
          "default_durability: memory\n")
    write("config_yaml", "dram", "dram: {capacity: 64GiB, hugepages: true, pinned: true}\n")
    write("config_yaml", "tenants", "tenants:\n  - {name: team-a, uids: [1000]}\n"
          "  - {name: team-b, gids: [2000]}\n")
    write("config_yaml", "quota", "default_namespace_quota: 1GiB\nquotas:\n"
          "  - {namespace_digest: " + "ab" * 32 + ", bytes: 2GiB}\n")
    write("config_yaml", "mesh", "mesh: {enabled: true, transport: auto, port: 7470, "
          "peers_file: /etc/peers.json, peer_timeout: 150ms, tls: {ca: /a, cert: /b, key: /c}}\n")
    write("config_yaml", "unknown_field", "dram: {capacitty: 1GiB}\n")
    write("config_yaml", "anchors", "a: &x {capacity: 1GiB}\ndram: *x\n")


def peers_seeds():
    write("peers_json", "two", '{"peers":[{"address":"10.0.0.1","node":"node-a","port":7470},'
          '{"address":"10.0.0.2","node":"node-b","port":7470}]}\n')
    write("peers_json", "empty", '{"peers":[]}')
    write("peers_json", "weights", '{"peers":[{"node":"a","address":"h","port":1,"weight":2.5},'
          '{"node":"b","address":"h2","port":65535,"weight":1e-3,"extra":[1,{}]}]}')
    write("peers_json", "duplicate", '{"peers":[{"node":"a","address":"h","port":1},'
          '{"node":"a","address":"h","port":2}]}')
    write("peers_json", "bad_port", '{"peers":[{"node":"a","address":"h","port":70000}]}')
    write("peers_json", "not_object", '[1,2,3]')


def twctl_seeds():
    write("twctl_inputs", "namespace", json.dumps({
        "model": "meta-llama/Llama-3.1-8B-Instruct", "model_revision": "0e9e39f",
        "tokenizer": "meta-llama/Llama-3.1-8B-Instruct", "kv_dtype": "bf16",
        "kv_layout": "vllm/NHD/block16", "parallel": "tp=0/1,pp=0/1", "adapter": "",
        "tenant": "", "chunk_tokens": 256}))
    write("twctl_inputs", "tokens", " ".join(str(i * 7919 % 128000) for i in range(64)) + "\n")
    write("twctl_inputs", "tokens_max", "0 4294967295\n4294967296\n")
    write("twctl_inputs", "extras", "\n00ff10\n\nDEADbeef\n")
    write("twctl_inputs", "args",
          b"twctl\0--socket\0/run/x.sock\0--json\0stat\0--timeout-ms=5\0")
    write("twctl_inputs", "args_value_last", b"twctl\0--admin-socket\0export\0--socket")


def record_header(segments, extra=b"", tokens=(), header_len=4096, value_size=None):
    """A chunk record header (record_format.cc); its CRC is left to the fuzz body (mode 1)."""
    if value_size is None:
        value_size = sum(segments)
    fixed = struct.pack("<IHHII32s32s32sQqQIIII", 0x43525754, 1, 0, header_len, len(segments),
                        b"\x11" * 32, b"\x22" * 32, b"\x33" * 32, 42, 1700000000000,
                        value_size, len(extra), len(tokens), 0, 0)
    assert len(fixed) == 152
    body = b"".join(struct.pack("<QII", s, 0, 0) for s in segments) + extra
    body += b"".join(struct.pack("<I", t) for t in tokens)
    return fixed + body


def store_record_seeds():
    fix = b"\x01"
    write("store_record", "one_segment", fix + record_header([1 << 20], tokens=range(16)))
    write("store_record", "layers", fix + record_header([4096 * 3 + 5] * 32, b"extra"))
    write("store_record", "no_crc_fix", b"\x00" + record_header([100]))
    write("store_record", "regress_segment_sizes_wrap",
          fix + record_header([1 << 63, 1 << 63], value_size=0))
    write("store_record", "header_8k", fix + record_header([1], tokens=range(1100),
                                                            header_len=8192))


def superblock(**kw):
    f = dict(version=1, device_index=0, store_id=b"\x5a" * 16, device_count=1, region_count=61,
             region_size=64 << 20, stripe_unit=4 << 20, data_offset=16 << 20,
             per_device_data=4096 << 20, max_entries=2048, journal_blocks=2056,
             header_off=1 << 20, dense_off=(1 << 20) + 61 * 4096,
             journal_off=(1 << 20) + 61 * 4096 + 61 * 2048 * 128, generation=1,
             journal_base=1, seq_floor=1)
    f.update(kw)
    raw = struct.pack("<8sII16sIIQQQQIIQQQQQQII", b"TWSTORE1", f["version"], f["device_index"],
                      f["store_id"], f["device_count"], f["region_count"], f["region_size"],
                      f["stripe_unit"], f["data_offset"], f["per_device_data"],
                      f["max_entries"], f["journal_blocks"], f["header_off"], f["dense_off"],
                      f["journal_off"], f["generation"], f["journal_base"], f["seq_floor"], 0, 0)
    assert len(raw) == 136
    return raw


def entry(record_4k=16, tail=4096, region=0, seq=5, epoch=2, offset_4k=0, flags=1):
    return (b"\x44" * 32 + b"\x55" * 32 + struct.pack("<Q", 0x1234) + b"\x00" * 23 +
            bytes([flags]) + struct.pack("<IIQQII", offset_4k, region, seq, epoch, record_4k, tail))


def store_metadata_seeds():
    device = struct.pack("<Q", 8 << 30)
    # kind 0 (superblock) | 4 (recompute the checksum)
    write("store_metadata", "superblock", b"\x04" + superblock() + device)
    write("store_metadata", "regress_superblock_zero_region", b"\x04" + superblock(region_size=0) + device)
    write("store_metadata", "regress_superblock_zero_stripe", b"\x04" + superblock(stripe_unit=0) + device)
    write("store_metadata", "superblock_small_device",
          b"\x04" + superblock() + struct.pack("<Q", 64 << 20))
    write("store_metadata", "superblock_version", b"\x04" + superblock(version=2) + device)
    region = struct.pack("<IHHIIQII16s", 0x48525754, 1, 2, 7, 12, 3, 0xabcdef, 0, b"\x5a" * 16)
    write("store_metadata", "region_sealed", b"\x05" + region)
    journal = struct.pack("<IHHQ16sI28s", 0x424a5754, 1, 2, 9, b"\x5a" * 16, 0, b"\x00" * 28)
    write("store_metadata", "journal", b"\x06" + journal + entry() + entry(0, 1))
    write("store_metadata", "journal_overfull",
          b"\x06" + struct.pack("<IHHQ16sI28s", 0x424a5754, 1, 40, 9, b"\x5a" * 16, 0, b"\0" * 28))
    write("store_metadata", "entry_record", b"\x03" + entry())
    write("store_metadata", "entry_tombstone", b"\x03" + entry(0, 2))
    write("store_metadata", "entry_unknown_kind", b"\x03" + entry(0, 77))


def operator_seeds():
    try:
        import yaml
    except ImportError:
        yaml = None
    if yaml is not None:
        for path in sorted(glob.glob(os.path.join(ROOT, "examples", "*.yaml"))):
            for i, doc in enumerate(yaml.safe_load_all(open(path))):
                if not doc or doc.get("kind") != "TokenWarehouse":
                    continue
                doc["metadata"].setdefault("namespace", "inference")
                doc["metadata"].setdefault("uid", "0b1c")
                name = os.path.basename(path)[:-5]
                write("operator_json", name, json.dumps(doc, sort_keys=True))
    tw = {"apiVersion": "tokenwarehouse.io/v1alpha1", "kind": "TokenWarehouse",
          "metadata": {"name": "pool", "namespace": "inference", "uid": "u1",
                       "resourceVersion": "7", "generation": 2},
          "spec": {"tiers": {"dram": {"capacity": "4Gi"}}}}
    write("operator_json", "minimal", json.dumps(tw))
    ds = {"apiVersion": "apps/v1", "kind": "DaemonSet",
          "metadata": {"name": "pool-twd", "namespace": "inference",
                       "annotations": {"tokenwarehouse.io/template-hash": "abc"}},
          "status": {"desiredNumberScheduled": 2, "numberReady": 1, "updatedNumberScheduled": 2,
                     "numberAvailable": 1, "observedGeneration": 3}}
    pod = {"metadata": {"name": "pool-twd-x", "namespace": "inference"},
           "spec": {"nodeName": "node-a"},
           "status": {"podIP": "10.0.0.1",
                      "conditions": [{"type": "Ready", "status": "True"}]}}
    write("operator_json", "with_pods", json.dumps([tw, ds, pod, pod]))
    bad = dict(tw, spec={"tiers": {"dram": {"capacity": -5}}, "updateStrategy":
                         {"maxUnavailable": "200%"}})
    write("operator_json", "bad_spec", json.dumps(bad))
    write("operator_json", "api_error", json.dumps(
        {"kind": "Status", "message": "conflict", "reason": "AlreadyExists", "code": 409}))


if __name__ == "__main__":
    config_seeds()
    peers_seeds()
    twctl_seeds()
    store_record_seeds()
    store_metadata_seeds()
    operator_seeds()
