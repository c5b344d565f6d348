"""What the scheduler side tells the workers each step, and the chunk arithmetic behind it.

Pure Python, no vLLM import. A request's tokens are cut into chunks of `chunk_tokens`
(a multiple of vLLM's block size, so a chunk is `blocks_per_chunk` whole blocks); only full
chunks get keys (docs/keys.md). `chunk_extras` gives each chunk the extra bytes that make
equal token ids mean different KV: the request's cache salt on the first chunk, the hashes of
the multimodal inputs whose placeholders the chunk covers.

`LoadRequest`/`SaveRequest`/`StepPlan` travel from the scheduler process to every worker
(pickled by vLLM with the step's metadata); `SaveOutcome`/`LoadOutcome` travel back in the
worker metadata. All are plain values.
"""

import dataclasses


def chunk_extras(n_chunks, chunk_tokens, cache_salt=None, mm_features=()):
    """Extra bytes of chunks 0..n_chunks-1.

    cache_salt: str or None (vLLM's per-request salt), hashed into chunk 0 only: the chain
    carries it to every later key. mm_features: (identifier, offset, length) of each
    multimodal input's placeholder tokens; its identifier goes into every chunk it overlaps.
    """
    extras = [b""] * n_chunks
    if n_chunks == 0:
        return extras
    if cache_salt:
        extras[0] = b"salt:" + str(cache_salt).encode() + b"\n"
    for ident, offset, length in mm_features or ():
        if length <= 0:
            continue
        first = offset // chunk_tokens
        last = (offset + length - 1) // chunk_tokens
        for j in range(max(0, first), min(n_chunks - 1, last) + 1):
            extras[j] += b"mm:%s@%d+%d\n" % (str(ident).encode(), offset, length)
    return extras


@dataclasses.dataclass
class LoadChunk:
    """Blocks [first_block, blocks_per_chunk) of chunk `index` go to `block_ids`."""
    index: int
    first_block: int
    block_ids: list


@dataclasses.dataclass
class LoadRequest:
    req_id: str
    adapter: str
    tokens: list        # the token ids of chunks 0..last loaded (their keys chain from 0)
    extras: list        # extra bytes of those chunks
    lease: int          # twd read lease taken by the scheduler's lookup (0: none)
    chunks: list        # [LoadChunk]


@dataclasses.dataclass
class SaveRequest:
    req_id: str
    adapter: str
    tokens: list        # token ids of the full chunks to store
    extras: list
    block_ids: list     # the blocks holding those tokens, in order


@dataclasses.dataclass
class StepPlan:
    loads: list = dataclasses.field(default_factory=list)   # [LoadRequest]
    saves: list = dataclasses.field(default_factory=list)   # [SaveRequest]


@dataclasses.dataclass
class SaveOutcome:
    """One rank's save of a request: leading chunks now held by the warehouse."""
    present: int        # chunks 0..present-1 are stored (new or already there)
    stored: int         # of which this save stored
    failed: int         # chunks it could not store (busy, quota, io_error, twd down, ...)


@dataclasses.dataclass
class LoadOutcome:
    loaded: int         # chunks copied into vLLM's cache
    failed: int         # chunks that failed (reported through the invalid block ids)


def load_chunks(num_computed, hit_chunks, chunk_tokens, block_size, block_ids):
    """The chunks (and their blocks) a load must fill.

    num_computed: tokens vLLM already has (its own prefix cache, block-aligned); hit_chunks:
    leading chunks the warehouse holds; block_ids: the request's blocks. Chunks wholly inside
    vLLM's hit are skipped; a chunk it covers in part loads only its blocks past the hit."""
    if num_computed % block_size:
        raise ValueError(f"num_computed={num_computed} is not a multiple of the block size")
    bpc = chunk_tokens // block_size
    first_block = num_computed // block_size
    out = []
    for j in range(num_computed // chunk_tokens, hit_chunks):
        start = max(0, first_block - j * bpc)
        ids = list(block_ids[j * bpc + start:(j + 1) * bpc])
        if len(ids) != bpc - start:
            raise ValueError(f"chunk {j}: the request has {len(block_ids)} blocks, fewer "
                             f"than its {hit_chunks} chunks need")
        out.append(LoadChunk(j, start, ids))
    return out
