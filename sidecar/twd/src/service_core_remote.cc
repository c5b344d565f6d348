// The service core's use of the mesh (RemoteChunks): lookups extended with chunks other nodes
// hold (tier kPeer), gets served from a holder, and the local copy of a remote hit
// (mesh.cache_remote_hits). Compiled into tw_service with service_core.cc.
#include <algorithm>
#include <cstring>
#include <memory>

#include "service_core.h"
#include "tw/common/log.h"
#include "tw/common/strings.h"

namespace tw::twd {

void ServiceCore::ExtendWithPeers(const LookupItem& item, size_t local_prefix,
                                  std::span<const std::span<const Tier>> deeper, Deadline deadline,
                                  LookupItemResult& out) {
  size_t min_len = SIZE_MAX;
  for (const LookupChain& chain : item.chains) min_len = std::min(min_len, chain.keys.size());
  if (item.chains.empty() || local_prefix >= min_len) return;
  const size_t n = item.chains.size();
  const size_t rest = min_len - local_prefix;
  // Position (j, c) is local when chain c is stored here that deep; the others are asked.
  auto local = [&](size_t j, size_t c) { return j < deeper[c].size(); };
  std::vector<ChunkRef> refs;
  refs.reserve(rest * n);
  std::vector<size_t> ref_of(rest * n, SIZE_MAX);  // (j, c) → index into refs
  for (size_t j = 0; j < rest; ++j) {
    for (size_t c = 0; c < n; ++c) {
      if (local(j, c)) continue;
      ref_of[j * n + c] = refs.size();
      refs.push_back({item.chains[c].keys[local_prefix + j], item.chains[c].namespace_digest});
    }
  }
  // Every remaining key of every chain in one call: one batched request per home node.
  const std::vector<MissReason> found = remote_->Locate(refs, deadline);
  size_t ext = 0;
  MissReason why = MissReason::kNone;
  for (size_t j = 0; j < rest && why == MissReason::kNone; ++j) {
    for (size_t c = 0; c < n; ++c) {
      const size_t k = ref_of[j * n + c];
      if (k != SIZE_MAX && found[k] != MissReason::kNone) {
        why = found[k];
        break;
      }
    }
    if (why == MissReason::kNone) ++ext;
  }
  if (ext == 0) {
    if (why == MissReason::kPeerUnreachable) out.miss = why;
    return;
  }
  for (size_t c = 0; c < n; ++c) {
    for (size_t j = 0; j < ext; ++j) {
      out.tiers[c].push_back(local(j, c) ? deeper[c][j] : Tier::kPeer);
    }
  }
  out.prefix = local_prefix + ext;
  out.miss = out.prefix < min_len ? why : MissReason::kNone;
}

StatusOr<bool> ServiceCore::GetFromPeer(Session& s, const GetItem& item, Deadline deadline,
                                        GetItemResult& out) {
  const auto cfg = config();
  const bool cache = cfg->mesh.cache_remote_hits;
  const MissReason local_miss = out.miss;
  std::byte* arena = reinterpret_cast<std::byte*>(s.arena.data());
  const bool whole = item.ranges.empty();
  // The whole-value form lands straight in the arena. A copy to keep is fetched into twd's own
  // buffer first: the client may write its arena at any time, and what twd keeps must be the
  // bytes the holder sent. The ranges form needs the value's layout before it can place them.
  std::unique_ptr<std::byte[]> buf;
  mesh::FetchResult f;
  if (whole && !cache) {
    f = remote_->Fetch(item.ref, {arena + item.arena_offset, item.arena_length}, deadline);
  } else {
    const uint64_t cap = whole ? item.arena_length : cfg->limits.max_value_size;
    buf.reset(new std::byte[std::max<uint64_t>(cap, 1)]);
    f = remote_->Fetch(item.ref, {buf.get(), cap}, deadline);
  }
  if (f.miss == MissReason::kIoError && f.error.code() == StatusCode::kInvalidArgument && whole) {
    return InvalidArgumentError(std::string(f.error.message()));
  }
  if (f.miss != MissReason::kNone) {
    out.miss = f.miss == MissReason::kAbsent ? local_miss : f.miss;
    TW_LOG(kDebug, "remote get missed",
           {{"key", item.ref.key.Hex()}, {"reason", ToString(out.miss)}, {"error", f.error}});
    return false;
  }
  if (whole) {
    if (buf) std::memcpy(arena + item.arena_offset, buf.get(), f.bytes);
    out.bytes = f.bytes;
  } else {
    std::vector<uint64_t> starts(f.segment_sizes.size());
    uint64_t at = 0;
    for (size_t i = 0; i < starts.size(); ++i) {
      starts[i] = at;
      at += f.segment_sizes[i];
    }
    for (const ArenaRange& e : item.ranges) {
      if (e.segment >= f.segment_sizes.size() || e.offset > f.segment_sizes[e.segment] ||
          e.length > f.segment_sizes[e.segment] - e.offset) {
        return InvalidArgumentError("get: a range lies outside the stored value");
      }
    }
    out.bytes = 0;
    for (const ArenaRange& e : item.ranges) {
      if (e.length == 0) continue;
      std::memcpy(arena + e.arena_offset, buf.get() + starts[e.segment] + e.offset, e.length);
      out.bytes += e.length;
    }
  }
  out.tier = Tier::kPeer;
  out.miss = MissReason::kNone;
  if (cache) CacheRemoteHit(item.ref, f, buf.get());
  out.segment_sizes = std::move(f.segment_sizes);
  return true;
}

void ServiceCore::CacheRemoteHit(const ChunkRef& ref, const mesh::FetchResult& f,
                                 const std::byte* value) {
  if (!f.lineage) return;
  const mesh::ChunkLineage& l = *f.lineage;
  const Key computed = ChunkKey(
      l.parent,
      std::span<const uint8_t>(reinterpret_cast<const uint8_t*>(l.extra.data()), l.extra.size()),
      l.tokens);
  if (computed != ref.key) {
    TW_LOG(kWarn, "a peer sent a chunk whose lineage does not give its key; not kept",
           {{"key", ref.key.Hex()}});
    return;
  }
  store::PutRequest req;
  req.chunk.key = ref.key;
  req.chunk.namespace_digest = ref.namespace_digest;
  req.chunk.parent = l.parent;
  req.chunk.extra = l.extra;
  req.chunk.tokens = l.tokens;
  req.chunk.segment_sizes = f.segment_sizes;
  uint64_t at = 0;
  for (uint32_t i = 0; i < f.segment_sizes.size(); ++i) {
    if (f.segment_sizes[i] > 0) {
      req.data.push_back({i, 0, f.segment_sizes[i], const_cast<std::byte*>(value) + at});
    }
    at += f.segment_sizes[i];
  }
  req.durability = config::Durability::kMemory;
  // Not announced: a copy of a remote hit lives in DRAM only and is evicted first; the holder
  // that produced the chunk stays its directory entry (docs/mesh.md).
  const PutResult r = store_->Put(req);
  TW_LOG(kDebug, "remote hit kept", {{"key", ref.key.Hex()}, {"result", ToString(r)}});
}

}  // namespace tw::twd
