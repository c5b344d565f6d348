// Helpers for the storage engine tests: store options and opening, deterministic chunks and
// their expected bytes.
#pragma once

#include <gtest/gtest.h>

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "testing/fake_clock.h"
#include "tw/common/keys.h"
#include "tw/store/device.h"
#include "tw/store/store.h"
#include "tw/store/testing/await_idle.h"
#include "tw/store/testing/fault_device.h"
#include "tw/store/testing/mem_device.h"

namespace tw::store::testing {

using ::tw::testing::FakeClock;

inline constexpr uint64_t KiB = 1024, MiB = 1024 * 1024;

// A store of `dram` bytes of DRAM and, when `nvme` is not 0, one NVMe path of `nvme` bytes
// named `path`, with regions of `region` bytes and 256 KiB stripe units, on the devices `f`
// opens (null: real files).
inline Options TestOptions(std::shared_ptr<DeviceFactory> f, uint64_t dram, uint64_t nvme,
                           uint64_t region = 1 * MiB, const char* path = "/dev/test0") {
  Options o;
  o.dram.capacity = dram;
  if (nvme) {
    o.nvme.paths.push_back({path, nvme});
    o.nvme.region_size = region;
    o.nvme.stripe_unit = 256 * KiB;
  }
  o.device_factory = std::move(f);
  return o;
}

// The usage of namespace `ns` as Namespaces() lists it; nullopt when it is not listed.
inline std::optional<NamespaceUsage> UsageOf(Store& s, const Key& ns) {
  for (const NamespaceUsage& u : s.Namespaces()) {
    if (u.namespace_digest == ns) return u;
  }
  return std::nullopt;
}

// Opens the store, failing the test (and returning null) when it cannot.
inline std::unique_ptr<Store> MustOpen(const Options& o) {
  auto s = Store::Open(o);
  EXPECT_TRUE(s.ok()) << s.status().ToString();
  return s.ok() ? std::move(*s) : nullptr;
}

// A chunk whose key, namespace and bytes all derive from `id`.
struct TestChunk {
  ChunkInfo info;
  std::vector<std::vector<uint8_t>> segments;

  PutRequest Request(Durability d) const {
    PutRequest r;
    r.chunk = info;
    r.durability = d;
    for (uint32_t s = 0; s < segments.size(); ++s) {
      r.data.push_back({s, 0, segments[s].size(), const_cast<uint8_t*>(segments[s].data())});
    }
    return r;
  }
  uint64_t value_size() const {
    uint64_t t = 0;
    for (auto& s : segments) t += s.size();
    return t;
  }
};

inline Key TestNamespace(uint32_t n = 0) {
  Namespace ns;
  ns.model = "test-model";
  ns.chunk_tokens = "4";
  ns.tenant = std::to_string(n);
  return NamespaceDigest(ns);
}

inline TestChunk MakeChunk(uint64_t id, std::vector<uint64_t> sizes, const Key& parent,
                           uint32_t ns = 0) {
  TestChunk c;
  c.info.namespace_digest = TestNamespace(ns);
  c.info.parent = parent;
  c.info.tokens = {uint32_t(id), uint32_t(id >> 32), 7, 9};
  c.info.extra = id % 3 == 0 ? "extra-bytes" : "";
  c.info.key =
      ChunkKey(parent, {reinterpret_cast<const uint8_t*>(c.info.extra.data()), c.info.extra.size()},
               c.info.tokens);
  c.info.segment_sizes = sizes;
  uint64_t x = id * 0x9E3779B97F4A7C15ull + 1;
  for (uint64_t sz : sizes) {
    std::vector<uint8_t> b(sz);
    for (uint64_t i = 0; i < sz; i += 8) {
      x ^= x << 13;
      x ^= x >> 7;
      x ^= x << 17;
      std::memcpy(b.data() + i, &x, std::min<uint64_t>(8, sz - i));
    }
    c.segments.push_back(std::move(b));
  }
  return c;
}

inline TestChunk MakeChunk(uint64_t id, std::vector<uint64_t> sizes) {
  return MakeChunk(id, std::move(sizes), TestNamespace());
}

// Reads every segment whole; true when the bytes match.
inline GetResult ReadAll(Store& s, const TestChunk& c, bool* equal) {
  std::vector<std::vector<uint8_t>> out;
  std::vector<ScatterEntry> ranges;
  for (uint32_t i = 0; i < c.segments.size(); ++i) out.emplace_back(c.segments[i].size(), 0xEE);
  for (uint32_t i = 0; i < c.segments.size(); ++i) {
    ranges.push_back({i, 0, out[i].size(), out[i].data()});
  }
  GetResult r = s.Get(c.info.key, ranges);
  *equal = r.miss == MissReason::kNone && out == c.segments;
  return r;
}

}  // namespace tw::store::testing
