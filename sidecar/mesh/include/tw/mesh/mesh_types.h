// Plain value types shared by the mesh's units: the clock they read, and the announce and
// withdraw messages a holder sends to a key's home (domain structs: the peer service will
// translate them to and from its wire messages; nothing here knows a wire format).
//
// Plain values: no threading rules. Lifetime: values own their data.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <string>
#include <string_view>
#include <vector>

#include "tw/common/keys.h"

namespace tw::mesh {

using Clock = std::chrono::steady_clock;
// Where a unit reads the time. Real code passes Clock::now; tests pass a clock they advance.
using NowFn = std::function<Clock::time_point()>;

// What a holder tells a key's home about one chunk.
enum class UpdateKind : uint8_t {
  kAnnounce = 0,  // the sender holds the chunk (stored, recovered, or re-homed)
  kWithdraw = 1,  // the sender no longer holds the chunk (evicted or deleted)
};
std::string_view ToString(UpdateKind kind);

struct Update {
  Key key;
  UpdateKind kind = UpdateKind::kAnnounce;

  friend bool operator==(const Update&, const Update&) = default;
};

// The key of a chunk in the homes' directories: SHA-256("tokenwarehouse/dir/v1" ‖ namespace
// digest ‖ chunk key). Placement and the directory work on it, so a home answers a Locate
// only with holders that stored the chunk under the namespace asked for: a lookup across nodes
// is no oracle for another tenant's chunks, as a local one is not.
Key DirectoryKey(const Key& namespace_digest, const Key& key);

// A batch of updates from one holder to one home, applied in order (a withdraw after an
// announce of the same key in one batch leaves the key withdrawn, and the reverse).
struct UpdateBatch {
  std::string from_node;  // the holder's node name
  std::vector<Update> updates;

  friend bool operator==(const UpdateBatch&, const UpdateBatch&) = default;
};

}  // namespace tw::mesh
