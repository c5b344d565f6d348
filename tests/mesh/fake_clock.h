// The mesh tests' helpers: the shared FakeClock (its Fn() is a mesh::NowFn), and keys that
// spread like SHA-256 outputs.
#pragma once

#include "testing/fake_clock.h"
#include "tw/mesh/mesh_types.h"

namespace tw::mesh::testing {

using ::tw::testing::FakeClock;

// A key whose first bytes spell `i` (little-endian); the rest from a fixed mix, so keys spread
// like SHA-256 outputs.
inline Key TestKey(uint64_t i) {
  Key k;
  uint64_t x = i * 0x9e3779b97f4a7c15ULL + 0x1234567;
  for (size_t b = 0; b < k.bytes.size(); ++b) {
    x ^= x >> 31;
    x *= 0xbf58476d1ce4e5b9ULL;
    x ^= x >> 29;
    k.bytes[b] = static_cast<uint8_t>(x >> 56);
  }
  return k;
}

}  // namespace tw::mesh::testing
