"""The twd image's smoke test (scripts/images.sh smoke): from the host, through the socket a
twd container made in a host directory, store a chunk and read it back byte for byte; the data
files the container wrote belong to the image's user (65532), not root.

    image_smoke.py SOCKET DATA_DIR      (TW_CLIENT_LIB and PYTHONPATH set by the script)
"""

import os
import sys
import time

import tokenwarehouse as tw

NS = {"model": "image-smoke", "model_revision": "r", "tokenizer": "t", "kv_dtype": "fp16",
      "kv_layout": "test", "parallel": "tp=0/1,pp=0/1", "adapter": "", "tenant": "",
      "chunk_tokens": "16"}
VALUE = 1 << 20


def main():
    sock, data = sys.argv[1], sys.argv[2]
    deadline = time.monotonic() + 60
    while not os.path.exists(sock):
        if time.monotonic() > deadline:
            print("FAIL: the container made no socket at %s in 60 s" % sock)
            return 1
        time.sleep(0.1)
    tokens = list(range(16))
    key = tw.chunk_keys(NS, tokens)[0]
    payload = bytes((i * 7) % 251 for i in range(VALUE))
    with tw.Client(sock, 4 << 20, namespaces=[NS], timeout=10) as c:
        c.arena_view(0, VALUE)[:] = payload
        put = c.put(key, c.namespace_digests[0], tokens, arena_offset=0, length=VALUE,
                    durability="disk")
        c.arena_view(0, VALUE)[:] = bytes(VALUE)
        got = c.get(key, arena_offset=VALUE, arena_length=VALUE)
        if got.miss != "none" or c.arena_view(VALUE, VALUE).tobytes() != payload:
            print("FAIL: put %r, get %r: the bytes did not come back" % (put, got))
            return 1
    owners = {os.stat(os.path.join(d, f)).st_uid
              for d, _, files in os.walk(data) for f in files}
    if owners != {65532}:
        print("FAIL: the data files belong to uids %s, not the image's 65532" % sorted(owners))
        return 1
    print("ok: put and get through the container's socket; data files owned by uid 65532")
    return 0


if __name__ == "__main__":
    sys.exit(main())
