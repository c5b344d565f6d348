// StagingRing: a registered memory area cut into variable-size extents, for RDMA bytes that
// cannot land in (or be read from) memory registered by its owner: on a holder, the copy of a
// chunk a peer READs; on a requester, the landing area of a fetch into unregistered memory.
//
// The area is allocated and registered once (with the rights given) when the ring is made.
// Extents are 4 KiB aligned, first fit, freed in any order and merged with their free
// neighbours. Allocate waits for space until its deadline: a full ring costs a caller at most
// its deadline and then a clear ResourceExhausted error, and a request larger than the ring is
// refused at once.
//
// Threading: all methods may be called from any thread; one mutex guards the free list.
// Lifetime: the ring deregisters its area when destroyed; every extent must be freed first.
#pragma once

#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>

#include "tw/common/status.h"
#include "tw/mesh/rdma/verbs.h"
#include "tw/mesh/transport.h"

namespace tw::mesh::rdma {

class StagingRing {
 public:
  static constexpr uint64_t kAlign = 4096;

  struct Extent {
    std::byte* data = nullptr;
    uint64_t length = 0;  // as asked (the ring reserves it rounded up to kAlign)
    uint32_t lkey = 0;
    uint32_t rkey = 0;
  };

  // REQUIRES: bytes > 0; `verbs` and `pd` outlive the ring.
  static StatusOr<std::unique_ptr<StagingRing>> Create(Verbs* verbs, PdHandle pd, uint64_t bytes,
                                                       uint32_t access, std::string name);
  ~StagingRing();
  StagingRing(const StagingRing&) = delete;
  StagingRing& operator=(const StagingRing&) = delete;

  // An extent of `length` bytes (> 0), waiting until `deadline` for space.
  StatusOr<Extent> Allocate(uint64_t length, Deadline deadline);
  void Free(const Extent& extent);

  uint64_t capacity() const { return capacity_; }
  uint64_t used() const;

 private:
  StagingRing(Verbs* verbs, std::string name) : verbs_(verbs), name_(std::move(name)) {}
  bool TryAllocateLocked(uint64_t rounded, uint64_t* offset);

  Verbs* verbs_;
  std::string name_;
  std::unique_ptr<std::byte[]> storage_;
  std::byte* base_ = nullptr;  // storage_ aligned to kAlign
  uint64_t capacity_ = 0;
  MemoryRegion mr_;

  mutable std::mutex mu_;
  std::condition_variable freed_;
  std::map<uint64_t, uint64_t> free_;  // offset → length, GUARDED_BY(mu_)
  uint64_t used_ = 0;                  // GUARDED_BY(mu_)
};

}  // namespace tw::mesh::rdma
