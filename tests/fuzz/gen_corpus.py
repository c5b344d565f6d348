#!/usr/bin/python3
"""Writes the seed corpus of the protocol fuzz target (tests/fuzz/corpus/frame/): valid frames of
every request type and hostile variants. Stdlib only; run from anywhere."""
import os
import struct

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "corpus", "frame")
MAGIC = 0x50435754


def varint(v):
    out = b""
    while True:
        b = v & 0x7F
        v >>= 7
        if v:
            out += bytes([b | 0x80])
        else:
            return out + bytes([b])


def field(num, wire, payload):
    key = varint((num << 3) | wire)
    if wire == 0:
        return key + varint(payload)
    return key + varint(len(payload)) + payload


def msg(*parts):
    return b"".join(parts)


def frame(op, body, flags=0, rid=1, version=1, magic=MAGIC, length=None):
    n = len(body) if length is None else length
    return struct.pack("<IHHIQI", magic, version, op, flags, rid, n) + body


KEY = bytes(range(32))
NS = bytes(range(100, 132))
ref = msg(field(1, 2, KEY), field(2, 2, NS))
scatter = msg(field(1, 0, 0), field(2, 0, 0), field(3, 0, 64), field(4, 0, 128))
namespace = msg(field(1, 2, b"m"), field(4, 2, b"bf16"), field(6, 2, b"tp=0/1,pp=0/1"),
                field(9, 2, b"4"))

seeds = {
    "hello": frame(1, msg(field(1, 0, 1), field(2, 0, 1), field(3, 2, b"x"),
                          field(4, 2, namespace), field(5, 0, 4096))),
    "declare": frame(2, field(1, 2, namespace)),
    "lookup": frame(3, msg(field(1, 2, field(1, 2, msg(field(1, 2, NS), field(2, 2, KEY),
                                                        field(2, 2, KEY)))),
                           field(2, 0, 1), field(3, 0, 1000))),
    "lookup_packed": frame(3, msg(field(1, 2, field(1, 2, msg(field(1, 2, NS),
                                                               field(3, 2, KEY * 3)))),
                                  field(3, 0, 1000))),
    "lookup_packed_ragged": frame(3, field(1, 2, field(1, 2, msg(field(1, 2, NS),
                                                                 field(3, 2, KEY + b"x"))))),
    "lookup_packed_and_keys": frame(3, field(1, 2, field(1, 2, msg(field(1, 2, NS),
                                                                   field(2, 2, KEY),
                                                                   field(3, 2, KEY))))),
    "lookup_arena": frame(3, msg(field(1, 2, field(1, 2, msg(field(1, 2, NS), field(4, 0, 4096),
                                                              field(5, 0, 3)))),
                                 field(3, 0, 1000))),
    "lookup_arena_outside": frame(3, field(1, 2, field(1, 2, msg(field(1, 2, NS),
                                                                 field(4, 0, (1 << 20) - 31),
                                                                 field(5, 0, 1))))),
    "lookup_arena_and_packed": frame(3, field(1, 2, field(1, 2, msg(field(1, 2, NS),
                                                                    field(3, 2, KEY),
                                                                    field(5, 0, 1))))),
    "release": frame(4, field(1, 2, varint(7) + varint(8))),
    "get_ranges": frame(5, field(1, 2, msg(field(1, 2, ref), field(2, 2, scatter)))),
    "get_whole": frame(5, field(1, 2, msg(field(1, 2, ref), field(3, 0, 0),
                                          field(4, 0, 4096)))),
    "get_overlap": frame(5, field(1, 2, msg(field(1, 2, ref), field(2, 2, scatter),
                                            field(2, 2, scatter)))),
    "put": frame(6, field(1, 2, msg(field(1, 2, ref), field(2, 2, NS), field(3, 2, b"extra"),
                                    field(4, 2, b"".join(varint(t) for t in (1, 2, 3, 4))),
                                    field(5, 2, varint(64)), field(6, 2, scatter),
                                    field(7, 0, 2)))),
    "exists": frame(7, field(1, 2, ref)),
    "delete": frame(8, field(1, 2, ref)),
    "stats": frame(9, b""),
    "ping_pipelined": frame(10, b"", rid=1) + frame(10, b"", rid=2) + frame(9, b"", rid=3),
    "admin_export": frame(66, field(1, 2, NS)),
    "admin_evict": frame(65, field(1, 2, NS)),
    "bad_magic": b"GET / HTTP/1.1\r\n\r\n",
    "bad_version": frame(10, b"", version=7),
    "oversize": frame(6, b"", length=0xFFFFFFFF),
    "unknown_op": frame(999, b"\x08\x01"),
    "truncated_body": frame(6, b"\x0a\x05\x0a", length=40),
    "garbage_body": frame(5, b"\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\x01"),
    "error_reply": frame(5, msg(field(1, 0, 3), field(2, 2, b"bad"), field(3, 0, 1)), flags=3),
}

os.makedirs(OUT, exist_ok=True)
for name, data in seeds.items():
    with open(os.path.join(OUT, name), "wb") as f:
        f.write(data)
print(f"wrote {len(seeds)} seeds to {OUT}")
