"""The key scheme of Token Warehouse (docs/keys.md), over libtwclient's C ABI.

chunk_keys(namespace, tokens, extras) gives the 32-byte key of every full chunk of a token
sequence; the namespace (a dict of the nine fields) is normalised first, as every client
does, so two clients never miss each other over spelling. All functions are pure and
thread-safe.
"""

import ctypes

from . import _native

KEY_SIZE = _native.KEY_SIZE


def _tokens_array(tokens):
    n = len(tokens)
    try:
        return (ctypes.c_uint32 * n)(*tokens), n
    except (TypeError, OverflowError) as e:
        raise ValueError(f"tokens must be integers in 0..2^32-1: {e}") from None


def _check_tokens(tokens):
    for t in tokens:
        if isinstance(t, bool) or not isinstance(t, int) or t < 0 or t > 0xFFFFFFFF:
            raise ValueError(f"token id {t!r} is not an integer in 0..2^32-1")


def normalize_namespace(namespace):
    """The canonical spelling of a namespace dict (a new dict of the nine fields)."""
    native = _native.lib()
    c_ns = _native.to_c_namespace(namespace)
    out = _native.Namespace()
    needed = ctypes.c_size_t(0)
    size = 1024 + sum(len(getattr(c_ns, f) or b"") for f in _native.NAMESPACE_FIELDS)
    buf = ctypes.create_string_buffer(size)
    _native.check(native.tw_namespace_normalize(ctypes.byref(c_ns), ctypes.byref(out), buf,
                                                size, ctypes.byref(needed)))
    return {f: getattr(out, f).decode("utf-8") for f in _native.NAMESPACE_FIELDS}


def namespace_digest(namespace, normalize=True):
    """The 32-byte namespace digest (normalised first unless normalize=False)."""
    native = _native.lib()
    c_ns = _native.to_c_namespace(namespace)
    out = ctypes.create_string_buffer(KEY_SIZE)
    flags = 0 if normalize else 1
    _native.check(native.tw_namespace_digest(ctypes.byref(c_ns), flags, out))
    return out.raw


def chunk_keys(namespace, tokens, extras=None, normalize=True):
    """The keys (list of 32-byte bytes) of every full chunk of `tokens`.

    namespace: dict of the nine fields (docs/keys.md). tokens: list of int token ids.
    extras: None, or a list whose entry j is chunk j's extra bytes (bytes; b"" for none);
    entries past the last full chunk are ignored.
    """
    native = _native.lib()
    c_ns = _native.to_c_namespace(namespace)
    tokens = list(tokens)
    _check_tokens(tokens)
    c_tokens, n_tokens = _tokens_array(tokens)
    extras = list(extras or [])
    c_extras = (_native.Bytes * max(1, len(extras)))()
    keep = []
    for i, e in enumerate(extras):
        if e is None:
            e = b""
        if not isinstance(e, (bytes, bytearray, memoryview)):
            raise TypeError(f"extras[{i}] must be bytes")
        b = ctypes.create_string_buffer(bytes(e), max(1, len(e)))
        keep.append(b)
        c_extras[i].data = ctypes.cast(b, ctypes.c_void_p)
        c_extras[i].size = len(e)
    # One key per full chunk; chunk_tokens >= 1, so len(tokens) keys always suffice, but ask
    # for the exact number first to size the output.
    n_keys = ctypes.c_size_t(0)
    code = native.tw_chunk_keys(ctypes.byref(c_ns), 0 if normalize else 1, c_tokens, n_tokens,
                                c_extras, len(extras), None, 0, ctypes.byref(n_keys))
    if code != 0 and n_keys.value == 0:
        _native.check(code)
    out = ctypes.create_string_buffer(max(1, n_keys.value) * KEY_SIZE)
    _native.check(native.tw_chunk_keys(ctypes.byref(c_ns), 0 if normalize else 1, c_tokens,
                                       n_tokens, c_extras, len(extras), out, n_keys.value,
                                       ctypes.byref(n_keys)))
    raw = out.raw
    return [raw[i * KEY_SIZE:(i + 1) * KEY_SIZE] for i in range(n_keys.value)]


def chunk_key(parent, tokens, extra=b""):
    """One step of the chain: the key of a chunk from its parent key (32 bytes)."""
    native = _native.lib()
    if len(parent) != KEY_SIZE:
        raise ValueError(f"parent must be {KEY_SIZE} bytes, got {len(parent)}")
    tokens = list(tokens)
    _check_tokens(tokens)
    c_tokens, n = _tokens_array(tokens)
    out = ctypes.create_string_buffer(KEY_SIZE)
    extra = bytes(extra)
    _native.check(native.tw_chunk_key(bytes(parent), extra, len(extra), c_tokens, n, out))
    return out.raw
