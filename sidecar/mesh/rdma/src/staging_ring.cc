#include "tw/mesh/rdma/staging_ring.h"

#include <cstdint>
#include <string>

namespace tw::mesh::rdma {

StatusOr<std::unique_ptr<StagingRing>> StagingRing::Create(Verbs* verbs, PdHandle pd,
                                                           uint64_t bytes, uint32_t access,
                                                           std::string name) {
  if (bytes == 0) return InvalidArgumentError(name + ": staging ring size must be > 0");
  uint64_t capacity = (bytes + kAlign - 1) / kAlign * kAlign;
  std::unique_ptr<StagingRing> ring(new StagingRing(verbs, std::move(name)));
  ring->storage_ = std::make_unique<std::byte[]>(capacity + kAlign);
  auto addr = reinterpret_cast<uintptr_t>(ring->storage_.get());
  ring->base_ = reinterpret_cast<std::byte*>((addr + kAlign - 1) / kAlign * kAlign);
  ring->capacity_ = capacity;
  auto mr = verbs->RegMr(pd, ring->base_, capacity, access);
  if (!mr.ok()) return mr.status().WithPrefix(ring->name_ + ": registering the staging ring");
  ring->mr_ = *mr;
  ring->free_.emplace(0, capacity);
  return ring;
}

StagingRing::~StagingRing() {
  if (mr_.handle.v != 0) verbs_->DeregMr(mr_.handle).IgnoreError();
}

uint64_t StagingRing::used() const {
  std::lock_guard<std::mutex> l(mu_);
  return used_;
}

bool StagingRing::TryAllocateLocked(uint64_t rounded, uint64_t* offset) {
  for (auto it = free_.begin(); it != free_.end(); ++it) {
    if (it->second < rounded) continue;
    *offset = it->first;
    uint64_t rest = it->second - rounded;
    free_.erase(it);
    if (rest > 0) free_.emplace(*offset + rounded, rest);
    used_ += rounded;
    return true;
  }
  return false;
}

StatusOr<StagingRing::Extent> StagingRing::Allocate(uint64_t length, Deadline deadline) {
  if (length == 0) return InvalidArgumentError(name_ + ": staging extent of 0 bytes");
  uint64_t rounded = (length + kAlign - 1) / kAlign * kAlign;
  if (rounded > capacity_) {
    return ResourceExhaustedError(name_ + ": " + std::to_string(length) +
                                  " bytes do not fit the staging ring of " +
                                  std::to_string(capacity_) + " bytes");
  }
  std::unique_lock<std::mutex> l(mu_);
  uint64_t offset = 0;
  while (!TryAllocateLocked(rounded, &offset)) {
    if (freed_.wait_until(l, deadline) == std::cv_status::timeout) {
      if (TryAllocateLocked(rounded, &offset)) break;
      return ResourceExhaustedError(name_ + ": staging ring full (" + std::to_string(used_) +
                                    " of " + std::to_string(capacity_) +
                                    " bytes in use) until the deadline; " + std::to_string(length) +
                                    " bytes asked");
    }
  }
  return Extent{base_ + offset, length, mr_.lkey, mr_.rkey};
}

void StagingRing::Free(const Extent& extent) {
  uint64_t offset = static_cast<uint64_t>(extent.data - base_);
  uint64_t rounded = (extent.length + kAlign - 1) / kAlign * kAlign;
  {
    std::lock_guard<std::mutex> l(mu_);
    used_ -= rounded;
    auto [it, inserted] = free_.emplace(offset, rounded);
    (void)inserted;
    auto next = std::next(it);
    if (next != free_.end() && it->first + it->second == next->first) {
      it->second += next->second;
      free_.erase(next);
    }
    if (it != free_.begin()) {
      auto prev = std::prev(it);
      if (prev->first + prev->second == it->first) {
        prev->second += it->second;
        free_.erase(it);
      }
    }
  }
  freed_.notify_all();
}

}  // namespace tw::mesh::rdma
