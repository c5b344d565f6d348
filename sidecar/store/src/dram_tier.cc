#include "dram_tier.h"

#include <sys/mman.h>

#include <cerrno>

#include "tw/common/log.h"
#include "tw/common/strings.h"

namespace tw::store {
namespace {
constexpr uint64_t kUnit = 4096;
constexpr uint64_t kHuge = 2 << 20;
}  // namespace

StatusOr<std::unique_ptr<DramTier>> DramTier::Create(const Options& o) {
  std::unique_ptr<DramTier> t(new DramTier());
  t->eviction_ = o.eviction;
  t->capacity_ = o.capacity / kUnit * kUnit;
  if (t->capacity_ == 0) return t;
  uint64_t len = (t->capacity_ + kHuge - 1) / kHuge * kHuge;
  void* p = MAP_FAILED;
  if (o.hugepages) {
    p = mmap(nullptr, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_HUGETLB, -1,
             0);
    if (p == MAP_FAILED) {
      TW_LOG(kWarn, "dram: no hugepages available; using normal pages with THP advice");
    }
  }
  if (p == MAP_FAILED) {
    // Over-map by 2 MiB so the arena can start on a 2 MiB boundary.
    uint64_t over = len + kHuge;
    void* raw = mmap(nullptr, over, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (raw == MAP_FAILED) {
      return ErrnoStatus(errno, StrCat("mmap of the ", len, "-byte DRAM arena"));
    }
    uintptr_t a = (reinterpret_cast<uintptr_t>(raw) + kHuge - 1) / kHuge * kHuge;
    uintptr_t head = a - reinterpret_cast<uintptr_t>(raw);
    if (head) munmap(raw, head);
    if (over - head > len) munmap(reinterpret_cast<void*>(a + len), over - head - len);
    p = reinterpret_cast<void*>(a);
    // Transparent hugepages where the system allows them: fewer TLB misses on large copies.
    madvise(p, len, MADV_HUGEPAGE);
  }
  t->base_ = static_cast<uint8_t*>(p);
  t->map_len_ = len;
  if (o.pinned) {
    if (mlock(p, len) != 0) {
      TW_LOG(kWarn, "dram: mlock failed (needs IPC_LOCK); arena not pinned",
             {{"errno", int64_t(errno)}});
    } else {
      t->pinned_ = true;
    }
  }
  // Pre-fault: the first put into a page should not pay for its fault.
  madvise(p, len, MADV_WILLNEED);
  for (uint64_t off = 0; off < len; off += kUnit) t->base_[off] = 0;
  t->free_by_off_[0] = t->capacity_;
  t->free_by_len_.insert({t->capacity_, 0});
  return t;
}

DramTier::~DramTier() {
  if (base_) munmap(base_, map_len_);
}

std::optional<uint64_t> DramTier::Allocate(uint64_t len) {
  len = (len + kUnit - 1) / kUnit * kUnit;
  if (len == 0) len = kUnit;
  auto it = free_by_len_.lower_bound(len);
  if (it == free_by_len_.end()) return std::nullopt;
  uint64_t flen = it->first, off = it->second;
  free_by_len_.erase(it);
  free_by_off_.erase(off);
  if (flen > len) {
    free_by_off_[off + len] = flen - len;
    free_by_len_.insert({flen - len, off + len});
  }
  used_ += len;
  return off;
}

void DramTier::Free(uint64_t off, uint64_t len) {
  len = (len + kUnit - 1) / kUnit * kUnit;
  if (len == 0) len = kUnit;
  used_ -= len;
  auto erase_len = [&](uint64_t o, uint64_t l) {
    auto [b, e] = free_by_len_.equal_range(l);
    for (auto i = b; i != e; ++i) {
      if (i->second == o) {
        free_by_len_.erase(i);
        return;
      }
    }
  };
  auto next = free_by_off_.lower_bound(off);
  if (next != free_by_off_.end() && next->first == off + len) {
    len += next->second;
    erase_len(next->first, next->second);
    next = free_by_off_.erase(next);
  }
  if (next != free_by_off_.begin()) {
    auto prev = std::prev(next);
    if (prev->first + prev->second == off) {
      erase_len(prev->first, prev->second);
      off = prev->first;
      len += prev->second;
      free_by_off_.erase(prev);
    }
  }
  free_by_off_[off] = len;
  free_by_len_.insert({len, off});
}

uint64_t DramTier::largest_free() const {
  return free_by_len_.empty() ? 0 : free_by_len_.rbegin()->first;
}

DramTier::Obj& DramTier::obj(uint32_t id) {
  if (id >= objs_.size()) objs_.resize(id + 1);
  return objs_[id];
}

void DramTier::Insert(uint32_t id, uint64_t bytes, bool was_ghost) {
  Obj& o = obj(id);
  o.bytes = bytes;
  o.freq = 0;
  o.gen++;
  if (eviction_ == DramEviction::kLru) {
    lru_.push_front(id);
    o.lru = lru_.begin();
    o.queue = 2;
    return;
  }
  if (was_ghost) {
    o.queue = 2;
    main_.push_back({id, o.gen});
  } else {
    o.queue = 1;
    small_.push_back({id, o.gen});
    small_bytes_ += bytes;
  }
}

void DramTier::Touch(uint32_t id) {
  Obj& o = obj(id);
  if (o.queue == 0) return;
  if (eviction_ == DramEviction::kLru) {
    lru_.splice(lru_.begin(), lru_, o.lru);
    return;
  }
  if (o.freq < 3) o.freq++;
}

void DramTier::TouchLastFirst(std::span<const uint32_t> ids) {
  // As Touch(), without obj()'s growth: an id past the end has no object, so nothing to touch.
  const size_t n = objs_.size();
  if (eviction_ == DramEviction::kLru) {
    for (size_t i = ids.size(); i-- > 0;) {
      if (ids[i] >= n) continue;
      Obj& o = objs_[ids[i]];
      if (o.queue != 0) lru_.splice(lru_.begin(), lru_, o.lru);
    }
    return;
  }
  for (size_t i = ids.size(); i-- > 0;) {
    if (ids[i] >= n) continue;
    Obj& o = objs_[ids[i]];
    if (o.queue != 0 && o.freq < 3) o.freq++;
  }
}

void DramTier::Remove(uint32_t id) {
  Obj& o = obj(id);
  if (o.queue == 0) return;
  if (eviction_ == DramEviction::kLru) {
    lru_.erase(o.lru);
  } else if (o.queue == 1) {
    small_bytes_ -= o.bytes;
  }
  o.queue = 0;
  o.gen++;  // queue entries of the old generation are skipped lazily
}

std::optional<uint32_t> DramTier::PickVictim(const std::function<bool(uint32_t)>& evictable) {
  if (eviction_ == DramEviction::kLru) {
    for (auto it = lru_.rbegin(); it != lru_.rend(); ++it) {
      if (evictable(*it)) {
        uint32_t id = *it;
        Remove(id);
        return id;
      }
    }
    return std::nullopt;
  }
  // S3-FIFO. Each object is looked at a bounded number of times per call.
  size_t budget = 2 * (small_.size() + main_.size()) + 8;
  while (budget-- > 0 && (!small_.empty() || !main_.empty())) {
    bool from_small = !small_.empty() && (small_bytes_ * 10 >= capacity_ || main_.empty());
    auto& q = from_small ? small_ : main_;
    auto [id, gen] = q.front();
    q.pop_front();
    Obj& o = obj(id);
    if (o.gen != gen || o.queue == 0) continue;  // stale
    if (from_small) {
      small_bytes_ -= o.bytes;
      if (o.freq > 0) {  // hit while probationary: promote
        o.freq = 0;
        o.queue = 2;
        main_.push_back({id, gen});
        continue;
      }
      if (!evictable(id)) {
        small_.push_back({id, gen});
        small_bytes_ += o.bytes;
        continue;
      }
    } else {
      if (o.freq > 0) {  // reinsertion
        o.freq--;
        main_.push_back({id, gen});
        continue;
      }
      if (!evictable(id)) {
        main_.push_back({id, gen});
        continue;
      }
    }
    o.queue = 0;
    o.gen++;
    return id;
  }
  return std::nullopt;
}

}  // namespace tw::store
