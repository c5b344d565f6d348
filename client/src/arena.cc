#include "tw/client/arena.h"

#include <utility>

#include "tw/common/strings.h"
#include "tw/protocol/fd_passing.h"

namespace tw::client {

// The memfd and its mapping come from tw_protocol (the same helpers twd checks against):
// sealed against shrinking and growing, mapped shared and pre-faulted here, so the pages are
// charged to the client's cgroup and not to twd's.
struct Arena::Rep {
  protocol::UniqueFd fd;
  protocol::Arena map;
  uint64_t usable = 0;  // the caller's part; the rest of the mapping is reserved
};

StatusOr<Arena> Arena::Create(uint64_t size, const std::string& name, uint64_t reserved) {
  if (size == 0) return InvalidArgumentError("arena: size must be > 0");
  constexpr uint64_t kMax = uint64_t{1} << 46;
  if (size > kMax || reserved > kMax) {
    return InvalidArgumentError(
        StrCat("arena: size ", size, " (+", reserved, " reserved) is larger than 64 TiB"));
  }
  size = (size + kAlignment - 1) / kAlignment * kAlignment;
  reserved = (reserved + kAlignment - 1) / kAlignment * kAlignment;
  auto rep = std::make_unique<Rep>();
  rep->usable = size;
  auto fd = protocol::CreateArenaMemfd(name, size + reserved);
  if (!fd.ok()) return fd.status().WithPrefix("arena");
  rep->fd = std::move(*fd);
  auto map = protocol::Arena::Map(rep->fd.get(), size + reserved, /*prefault=*/true);
  if (!map.ok()) return map.status().WithPrefix("arena");
  rep->map = std::move(*map);
  Arena a;
  a.rep_ = std::move(rep);
  return a;
}

Arena::Arena() = default;
Arena::Arena(Arena&&) noexcept = default;
Arena& Arena::operator=(Arena&&) noexcept = default;
Arena::~Arena() = default;

int Arena::fd() const { return rep_ ? rep_->fd.get() : -1; }
uint8_t* Arena::data() const { return rep_ ? rep_->map.data() : nullptr; }
uint64_t Arena::size() const { return rep_ ? rep_->usable : 0; }
uint64_t Arena::mapped_size() const { return rep_ ? rep_->map.size() : 0; }

}  // namespace tw::client
