// BufferPool: value buffers of the holder's Fetch answers (gRPC streams and the raw wire),
// reused so that a fetch does not fault in fresh memory.
//
// Threading: Get may be called from any thread; a buffer's owner may be released on any thread.
// Lifetime: a buffer outliving its pool is freed instead of returned.
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <mutex>
#include <vector>

namespace tw::mesh::net {

// Value buffers of Fetch streams, reused: a buffer goes back to the pool when its last
// reference is gone (the stream's and those of the slices gRPC still holds), so the pages
// stay mapped and a stream does not fault in fresh memory. Holds at most kMaxPooled buffers.
class BufferPool : public std::enable_shared_from_this<BufferPool> {
 public:
  static constexpr size_t kMaxPooled = 4;
  static constexpr uint64_t kMaxPooledSize = uint64_t{64} << 20;

  // A buffer of at least `size` bytes (uninitialised).
  std::shared_ptr<std::byte[]> Get(uint64_t size) {
    size = std::max<uint64_t>(size, 1);
    std::unique_ptr<Block> b;
    {
      std::lock_guard lock(mu_);
      for (auto it = free_.begin(); it != free_.end(); ++it) {
        if ((*it)->size >= size) {
          b = std::move(*it);
          free_.erase(it);
          break;
        }
      }
    }
    if (!b) {
      b = std::make_unique<Block>();
      b->size = size;
      b->bytes.reset(new std::byte[size]);
    }
    std::byte* p = b->bytes.get();
    std::weak_ptr<BufferPool> pool = weak_from_this();
    return std::shared_ptr<std::byte[]>(p, [pool, blk = b.release()](std::byte*) {
      std::unique_ptr<Block> owned(blk);
      if (auto self = pool.lock()) self->Put(std::move(owned));
    });
  }

 private:
  struct Block {
    uint64_t size = 0;
    std::unique_ptr<std::byte[]> bytes;
  };
  void Put(std::unique_ptr<Block> b) {
    if (b->size > kMaxPooledSize) return;
    std::lock_guard lock(mu_);
    if (free_.size() < kMaxPooled) free_.push_back(std::move(b));
  }
  std::mutex mu_;
  std::vector<std::unique_ptr<Block>> free_;  // GUARDED_BY(mu_)
};

}  // namespace tw::mesh::net
