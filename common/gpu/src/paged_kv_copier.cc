#include "tw/gpu/paged_kv_copier.h"

#include <algorithm>
#include <utility>

#include "fmt/format.h"

namespace tw::gpu {

// Events made by the copier, reused across transfers. Released events may still be pending on a
// stream; re-recording one later is what CUDA allows (the newer record wins).
struct KvTransfer::Pool {
  explicit Pool(std::shared_ptr<Backend> b) : backend(std::move(b)) {}
  ~Pool() {
    for (Event e : free) backend->DestroyEvent(e).IgnoreError();  // teardown: nothing to report
  }
  StatusOr<Event> Acquire() {
    {
      std::lock_guard lock(mu);
      if (!free.empty()) {
        Event e = free.back();
        free.pop_back();
        return e;
      }
    }
    return backend->CreateEvent();
  }
  void Release(std::span<const Event> events) {
    std::lock_guard lock(mu);
    free.insert(free.end(), events.begin(), events.end());
  }

  std::shared_ptr<Backend> backend;
  std::mutex mu;
  std::vector<Event> free;  // guarded by mu
};

std::string_view ToString(KvDirection direction) {
  switch (direction) {
    case KvDirection::kSave:
      return "save";
    case KvDirection::kLoad:
      return "load";
  }
  return "unknown";
}

KvTransfer::~KvTransfer() { pool_->Release(events_); }

StatusOr<Event> KvTransfer::Find(std::uint32_t layer) const {
  if (layer < first_layer_ || layer - first_layer_ >= events_.size()) {
    return InvalidArgumentError(fmt::format("layer {} is not in this transfer (layers {}..{})",
                                            layer, first_layer_,
                                            first_layer_ + events_.size() - 1));
  }
  return events_[layer - first_layer_];
}

StatusOr<Event> KvTransfer::LayerEvent(std::uint32_t layer) const { return Find(layer); }

StatusOr<bool> KvTransfer::LayerDone(std::uint32_t layer) const {
  TW_ASSIGN_OR_RETURN(Event e, Find(layer));
  return backend_->QueryEvent(e);
}

Status KvTransfer::WaitLayer(std::uint32_t layer) const {
  TW_ASSIGN_OR_RETURN(Event e, Find(layer));
  return backend_->SynchronizeEvent(e);
}

Status KvTransfer::StreamWaitLayer(std::uint32_t layer, Stream stream) const {
  TW_ASSIGN_OR_RETURN(Event e, Find(layer));
  return backend_->StreamWaitEvent(stream, e);
}

Status KvTransfer::Wait() const {
  Status first;
  for (Event e : events_) {
    Status s = backend_->SynchronizeEvent(e);
    if (first.ok() && !s.ok()) first = s;
  }
  return first;
}

PagedKvCopier::PagedKvCopier(std::shared_ptr<Backend> backend, KvLayout layout)
    : backend_(std::move(backend)),
      layout_(std::move(layout)),
      pool_(std::make_shared<KvTransfer::Pool>(backend_)) {}

PagedKvCopier::~PagedKvCopier() = default;

StatusOr<std::unique_ptr<PagedKvCopier>> PagedKvCopier::Create(std::shared_ptr<Backend> backend,
                                                               KvLayout layout) {
  if (backend == nullptr) return InvalidArgumentError("paged kv copier: no backend");
  TW_RETURN_IF_ERROR(layout.Validate());
  return std::unique_ptr<PagedKvCopier>(new PagedKvCopier(std::move(backend), std::move(layout)));
}

Status PagedKvCopier::CheckSpec(const KvTransferSpec& spec, std::uint64_t segment_bytes) const {
  const std::size_t n = spec.layer_offsets.size();
  if (n == 0) return InvalidArgumentError("kv transfer: no layers");
  if (spec.first_layer >= layout_.num_layers || n > layout_.num_layers - spec.first_layer) {
    return InvalidArgumentError(fmt::format("kv transfer: layers {}..{} are not in 0..{}",
                                            spec.first_layer, spec.first_layer + n - 1,
                                            layout_.num_layers - 1));
  }
  if (spec.host_base == nullptr) return InvalidArgumentError("kv transfer: no host buffer");
  std::vector<std::uint64_t> sorted(spec.layer_offsets.begin(), spec.layer_offsets.end());
  for (std::size_t i = 0; i < n; ++i) {
    const std::uint64_t off = spec.layer_offsets[i];
    if (off > spec.host_size || segment_bytes > spec.host_size - off) {
      return InvalidArgumentError(fmt::format(
          "kv transfer: layer {}'s segment [{}, +{}) is outside the host buffer of {} bytes",
          spec.first_layer + i, off, segment_bytes, spec.host_size));
    }
  }
  if (spec.direction == KvDirection::kSave) {  // two layers gathered into one place: a bug
    std::sort(sorted.begin(), sorted.end());
    for (std::size_t i = 1; i < n; ++i) {
      if (sorted[i] - sorted[i - 1] < segment_bytes) {
        return InvalidArgumentError(
            fmt::format("kv transfer: save segments at {} and {} overlap ({} bytes each)",
                        sorted[i - 1], sorted[i], segment_bytes));
      }
    }
  }
  return OkStatus();
}

StatusOr<std::unique_ptr<KvTransfer>> PagedKvCopier::Start(const KvTransferSpec& spec) {
  TW_ASSIGN_OR_RETURN(std::vector<BlockRun> runs,
                      PlanBlockRuns(spec.block_table, layout_.num_blocks));
  const std::size_t table_size = spec.block_table.size();
  const std::uint64_t segment_bytes = layout_.SegmentBytes(table_size);
  TW_RETURN_IF_ERROR(CheckSpec(spec, segment_bytes));

  std::unique_ptr<KvTransfer> transfer(new KvTransfer(backend_, pool_, spec.first_layer));
  const std::size_t layers = spec.layer_offsets.size();
  transfer->events_.reserve(layers);
  for (std::size_t i = 0; i < layers; ++i) {
    auto e = pool_->Acquire();
    if (!e.ok()) return e.status().WithPrefix("kv transfer: event");  // ~KvTransfer releases
    transfer->events_.push_back(*e);
  }

  const bool save = spec.direction == KvDirection::kSave;
  const CopyKind kind = save ? CopyKind::kDeviceToHost : CopyKind::kHostToDevice;
  std::vector<KvCopy> copies;
  for (std::size_t i = 0; i < layers; ++i) {
    const std::uint32_t layer = spec.first_layer + static_cast<std::uint32_t>(i);
    copies.clear();
    PlanLayerCopies(layout_, layer, runs, table_size, &copies);
    std::uint8_t* segment = spec.host_base + spec.layer_offsets[i];
    for (const KvCopy& c : copies) {
      void* device = reinterpret_cast<void*>(c.device);
      std::uint8_t* host = segment + c.host_offset;
      Status s;
      if (c.contiguous()) {
        const std::size_t bytes = c.width * c.rows;
        s = save ? backend_->CopyAsync(host, device, bytes, kind, spec.stream)
                 : backend_->CopyAsync(device, host, bytes, kind, spec.stream);
      } else {
        s = save ? backend_->Copy2DAsync(host, c.width, device, c.device_pitch, c.width, c.rows,
                                         kind, spec.stream)
                 : backend_->Copy2DAsync(device, c.device_pitch, host, c.width, c.width, c.rows,
                                         kind, spec.stream);
      }
      if (!s.ok()) {
        return s.WithPrefix(fmt::format("kv {} layer {}", ToString(spec.direction), layer));
      }
      ++transfer->copies_;
      transfer->bytes_ += c.width * c.rows;
    }
    TW_RETURN_IF_ERROR(backend_->RecordEvent(transfer->events_[i], spec.stream)
                           .WithPrefix(fmt::format("kv transfer: layer {} event", layer)));
  }
  return transfer;
}

}  // namespace tw::gpu
