// PagedKvCopier: moves the blocks of one chunk between an engine's paged KV cache (kv_layout.h)
// and the chunk's per-layer segments in host memory (the client's arena, pinned for DMA), on the
// caller's stream through a Backend, with one event per layer.
//
// Save gathers the table's blocks into the segments (device → host); Load scatters the segments
// into the blocks (host → device). Both queue, layer after layer, the layer's merged copies
// (PlanLayerCopies) and then a record of that layer's event, and return at once: an engine waits
// for (or makes its compute stream wait for) layer l's event while layer l + 1 still copies.
// Events come from a pool owned by the copier and go back to it when the transfer is destroyed.
//
// Errors: bad tables, ranges outside the host buffer, overlapping save segments and layers out of
// range are INVALID_ARGUMENT before anything is queued. A backend error while queueing returns
// that error; copies queued before it still run, so the caller must synchronise the stream before
// reusing the memory. Errors of the copies themselves surface from the layer events (sticky, as
// in CUDA).
//
// Threading: a copier may be used from several threads at once (the event pool is locked); a
// KvTransfer is used by one thread at a time. Lifetime: the copier and its transfers share the
// backend (shared_ptr), so they may outlive whoever made them. Device memory named by the layout
// and the host buffer must stay valid until the transfer's events have completed.
#ifndef TW_GPU_PAGED_KV_COPIER_H_
#define TW_GPU_PAGED_KV_COPIER_H_

#include <cstdint>
#include <memory>
#include <mutex>
#include <span>
#include <vector>

#include "tw/gpu/backend.h"
#include "tw/gpu/kv_layout.h"

namespace tw::gpu {

// Which way a transfer goes.
enum class KvDirection {
  kSave,  // paged blocks → chunk segments (device to host)
  kLoad,  // chunk segments → paged blocks (host to device)
};
std::string_view ToString(KvDirection direction);

// What a transfer names besides the layout.
struct KvTransferSpec {
  KvDirection direction = KvDirection::kLoad;
  std::span<const std::int32_t> block_table;     // the chunk's blocks; -1 = a hole
  std::uint8_t* host_base = nullptr;             // the host buffer (the arena)
  std::uint64_t host_size = 0;                   // its size in bytes
  std::span<const std::uint64_t> layer_offsets;  // per transferred layer: segment's offset
  std::uint32_t first_layer = 0;                 // layers [first_layer, first_layer + count)
  Stream stream{};  // the caller's stream (0: CUDA's legacy default stream)
};

class PagedKvCopier;

// One queued transfer: its per-layer events and how many copies it queued.
class KvTransfer {
 public:
  ~KvTransfer();
  KvTransfer(const KvTransfer&) = delete;
  KvTransfer& operator=(const KvTransfer&) = delete;

  std::uint32_t first_layer() const { return first_layer_; }
  std::uint32_t num_layers() const { return static_cast<std::uint32_t>(events_.size()); }
  // Copy calls queued (merged runs: a run of blocks is one call per plane).
  std::uint64_t copies() const { return copies_; }
  std::uint64_t bytes() const { return bytes_; }
  // The event of absolute layer `layer` (in [first_layer, first_layer + num_layers)).
  StatusOr<Event> LayerEvent(std::uint32_t layer) const;
  // true once layer `layer`'s copies completed (an error if they failed).
  StatusOr<bool> LayerDone(std::uint32_t layer) const;
  Status WaitLayer(std::uint32_t layer) const;
  // Work queued on `stream` after this call waits for layer `layer`.
  Status StreamWaitLayer(std::uint32_t layer, Stream stream) const;
  // Waits for every layer; the first error.
  Status Wait() const;

 private:
  friend class PagedKvCopier;
  struct Pool;
  KvTransfer(std::shared_ptr<Backend> backend, std::shared_ptr<Pool> pool,
             std::uint32_t first_layer)
      : backend_(std::move(backend)), pool_(std::move(pool)), first_layer_(first_layer) {}
  StatusOr<Event> Find(std::uint32_t layer) const;

  std::shared_ptr<Backend> backend_;
  std::shared_ptr<Pool> pool_;
  std::uint32_t first_layer_;
  std::vector<Event> events_;
  std::uint64_t copies_ = 0;
  std::uint64_t bytes_ = 0;
};

class PagedKvCopier {
 public:
  // INVALID_ARGUMENT when the layout does not validate.
  static StatusOr<std::unique_ptr<PagedKvCopier>> Create(std::shared_ptr<Backend> backend,
                                                         KvLayout layout);
  ~PagedKvCopier();

  const KvLayout& layout() const { return layout_; }
  Backend& backend() const { return *backend_; }
  // Queues the transfer (see the top of this file).
  StatusOr<std::unique_ptr<KvTransfer>> Start(const KvTransferSpec& spec);

 private:
  PagedKvCopier(std::shared_ptr<Backend> backend, KvLayout layout);
  Status CheckSpec(const KvTransferSpec& spec, std::uint64_t segment_bytes) const;

  std::shared_ptr<Backend> backend_;
  const KvLayout layout_;
  std::shared_ptr<KvTransfer::Pool> pool_;
};

}  // namespace tw::gpu

#endif  // TW_GPU_PAGED_KV_COPIER_H_
