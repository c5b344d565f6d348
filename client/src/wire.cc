#include "wire.h"

#include "tw/common/strings.h"

namespace tw::client::wire {

void ToProto(const ScatterRange& r, pb::ScatterEntry* out) {
  out->set_segment(r.segment);
  out->set_offset(r.offset);
  out->set_length(r.length);
  out->set_arena_offset(r.arena_offset);
}

std::string KeyBytes(const Key& k) { return std::string(k.View()); }

void ToProto(const KeyRef& r, pb::KeyRef* out) {
  out->set_key(KeyBytes(r.key));
  out->set_namespace_digest(KeyBytes(r.namespace_digest));
}

StatusOr<Key> KeyFromWire(const std::string& raw, std::string_view what) {
  auto k = Key::FromBytes(raw);
  if (!k.ok())
    return InternalError(StrCat("twd sent a malformed ", what, ": ", k.status().message()));
  return k;
}

Stats FromProto(const pb::StatsResponse& s) {
  Stats out;
  for (const pb::TierStats& t : s.tiers()) {
    TierCounters c;
    c.tier = FromProto(t.tier());
    c.hits = t.hits();
    c.misses = {t.misses().begin(), t.misses().end()};
    c.bytes_read = t.bytes_read();
    c.bytes_written = t.bytes_written();
    c.evictions = t.evictions();
    c.io_errors = t.io_errors();
    c.corrupt = t.corrupt();
    c.used_bytes = t.used_bytes();
    c.capacity_bytes = t.capacity_bytes();
    c.chunks = t.chunks();
    out.tiers.push_back(std::move(c));
  }
  out.puts = {s.puts().begin(), s.puts().end()};
  out.get_hits = s.get_hits();
  out.get_misses = {s.get_misses().begin(), s.get_misses().end()};
  out.dropped_unwritten = s.dropped_unwritten();
  out.connected_clients = s.connected_clients();
  out.live_leases = s.live_leases();
  out.inflight = s.inflight();
  out.arena_size = s.arena_size();
  out.tenant = s.tenant();
  out.version = s.version();
  out.server_version = s.server_version();
  out.gpu = s.gpu();
  return out;
}

Status ErrorOf(const ReplyFrame& f) {
  if (!f.error()) return OkStatus();
  pb::ErrorReply reply;
  if (!reply.ParseFromString(f.body)) {
    return InternalError("twd sent an error reply that does not parse");
  }
  return protocol::ErrorReplyToStatus(reply);
}

}  // namespace tw::client::wire
