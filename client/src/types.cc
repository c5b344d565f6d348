#include "tw/client/types.h"

#include <nlohmann/json.hpp>

namespace tw::client {

std::string StatsToJson(const Stats& s, int indent) {
  nlohmann::ordered_json j;
  j["version"] = s.version;
  j["server_version"] = s.server_version;
  j["gpu"] = s.gpu;
  j["tenant"] = s.tenant;
  j["connected_clients"] = s.connected_clients;
  j["live_leases"] = s.live_leases;
  j["inflight"] = s.inflight;
  j["arena_size"] = s.arena_size;
  j["dropped_unwritten"] = s.dropped_unwritten;
  j["puts"] = s.puts;
  j["get_hits"] = s.get_hits;
  j["get_misses"] = s.get_misses;
  auto tiers = nlohmann::ordered_json::object();
  for (const TierCounters& t : s.tiers) {
    nlohmann::ordered_json o;
    o["hits"] = t.hits;
    o["misses"] = t.misses;
    o["bytes_read"] = t.bytes_read;
    o["bytes_written"] = t.bytes_written;
    o["evictions"] = t.evictions;
    o["io_errors"] = t.io_errors;
    o["corrupt"] = t.corrupt;
    o["used_bytes"] = t.used_bytes;
    o["capacity_bytes"] = t.capacity_bytes;
    o["chunks"] = t.chunks;
    tiers[std::string(ToString(t.tier))] = std::move(o);
  }
  j["tiers"] = std::move(tiers);
  return j.dump(indent);
}

}  // namespace tw::client
