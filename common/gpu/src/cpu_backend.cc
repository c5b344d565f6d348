#include "tw/gpu/cpu_backend.h"

#include <unistd.h>

#include <cerrno>
#include <condition_variable>
#include <cstdlib>
#include <cstring>
#include <deque>
#include <thread>
#include <utility>

#include "fmt/format.h"

namespace tw::gpu {
namespace {

constexpr char kIpcMagic[8] = {'t', 'w', 'c', 'p', 'u', 'i', 'p', 'c'};

std::string Hex(const void* p) { return fmt::format("{}", p); }

}  // namespace

// An event: complete when the stream reached its latest record (completed_gen >= record_gen).
struct CpuBackend::EventState {
  std::mutex mu;
  std::condition_variable cv;
  std::uint64_t record_gen = 0;     // guarded by mu
  std::uint64_t completed_gen = 0;  // guarded by mu
  Status error;                     // the stream's sticky error at the latest completion

  void Complete(std::uint64_t gen, const Status& status) {
    std::lock_guard lock(mu);
    if (gen <= completed_gen) return;
    completed_gen = gen;
    error = status;
    cv.notify_all();
  }
};

// A stream: an in-order queue and the worker thread that runs it.
struct CpuBackend::StreamState {
  struct Item {
    std::function<Status()> work;       // a copy or host function; empty for an event record
    std::shared_ptr<EventState> event;  // set for an event record
    std::uint64_t event_gen = 0;
  };

  std::mutex mu;
  std::condition_variable cv;
  std::deque<Item> queue;      // guarded by mu
  std::uint64_t enqueued = 0;  // guarded by mu
  std::uint64_t done = 0;      // guarded by mu
  Status sticky;               // guarded by mu: the first error, after which work is skipped
  bool closing = false;        // guarded by mu: exit once the queue is empty
  std::thread worker;

  void Enqueue(Item item) {
    std::lock_guard lock(mu);
    queue.push_back(std::move(item));
    ++enqueued;
    cv.notify_all();
  }

  void Run() {
    std::unique_lock lock(mu);
    for (;;) {
      cv.wait(lock, [&] { return closing || !queue.empty(); });
      if (queue.empty()) return;  // closing and drained
      Item item = std::move(queue.front());
      queue.pop_front();
      Status status = sticky;
      lock.unlock();
      if (item.event) {
        item.event->Complete(item.event_gen, status);
      } else if (status.ok()) {
        status = item.work();
      }
      lock.lock();
      if (sticky.ok() && !status.ok()) sticky = status;
      ++done;
      cv.notify_all();
    }
  }

  Status Synchronize() {
    std::unique_lock lock(mu);
    const std::uint64_t target = enqueued;
    cv.wait(lock, [&] { return done >= target; });
    return sticky;
  }

  void Close() {
    {
      std::lock_guard lock(mu);
      closing = true;
      cv.notify_all();
    }
  }
};

CpuBackend::CpuBackend(Options options) : options_(options) {}

CpuBackend::~CpuBackend() {
  std::vector<std::shared_ptr<StreamState>> all;
  {
    std::lock_guard lock(mu_);
    for (auto& [id, s] : streams_) all.push_back(s);
    for (auto& s : retired_streams_) all.push_back(s);
    streams_.clear();
    retired_streams_.clear();
  }
  for (auto& s : all) {
    s->Close();
    if (s->worker.joinable()) s->worker.join();
  }
  for (auto& [base, bytes] : device_allocs_) std::free(reinterpret_cast<void*>(base));
  for (auto& [base, bytes] : host_allocs_) std::free(reinterpret_cast<void*>(base));
}

StatusOr<void*> CpuBackend::AllocateHost(std::size_t bytes) {
  if (bytes == 0) return InvalidArgumentError("AllocateHost: zero bytes");
  void* p = std::calloc(1, bytes);
  if (p == nullptr) return ResourceExhaustedError(fmt::format("AllocateHost: {} bytes", bytes));
  std::lock_guard lock(mu_);
  host_allocs_[reinterpret_cast<std::uintptr_t>(p)] = bytes;
  return p;
}

Status CpuBackend::FreeHost(void* ptr) {
  {
    std::lock_guard lock(mu_);
    if (host_allocs_.erase(reinterpret_cast<std::uintptr_t>(ptr)) == 0) {
      return InvalidArgumentError("FreeHost: " + Hex(ptr) + " is not from AllocateHost");
    }
  }
  std::free(ptr);
  return OkStatus();
}

Status CpuBackend::RegisterHost(void* ptr, std::size_t bytes) {
  if (ptr == nullptr || bytes == 0) return InvalidArgumentError("RegisterHost: empty range");
  if (bytes > options_.max_register_bytes) {
    return ResourceExhaustedError(fmt::format("RegisterHost: {} bytes in one call (at most {})",
                                              bytes, options_.max_register_bytes));
  }
  const auto begin = reinterpret_cast<std::uintptr_t>(ptr);
  std::lock_guard lock(mu_);
  auto next = registered_.lower_bound(begin);
  if (next != registered_.end() && next->first < begin + bytes) {
    return AlreadyExistsError("RegisterHost: " + Hex(ptr) + " overlaps a registered range");
  }
  if (next != registered_.begin()) {
    auto prev = std::prev(next);
    if (prev->first + prev->second > begin) {
      return AlreadyExistsError("RegisterHost: " + Hex(ptr) + " overlaps a registered range");
    }
  }
  registered_[begin] = bytes;
  return OkStatus();
}

Status CpuBackend::UnregisterHost(void* ptr) {
  std::lock_guard lock(mu_);
  if (registered_.erase(reinterpret_cast<std::uintptr_t>(ptr)) == 0) {
    return InvalidArgumentError("UnregisterHost: " + Hex(ptr) + " is not registered");
  }
  return OkStatus();
}

std::size_t CpuBackend::registered_ranges() const {
  std::lock_guard lock(mu_);
  return registered_.size();
}

StatusOr<void*> CpuBackend::AllocateDevice(std::size_t bytes) {
  if (bytes == 0) return InvalidArgumentError("AllocateDevice: zero bytes");
  void* p = std::calloc(1, bytes);
  if (p == nullptr) {
    return ResourceExhaustedError(fmt::format("AllocateDevice: {} bytes", bytes));
  }
  std::lock_guard lock(mu_);
  device_allocs_[reinterpret_cast<std::uintptr_t>(p)] = bytes;
  return p;
}

Status CpuBackend::FreeDevice(void* ptr) {
  {
    std::lock_guard lock(mu_);
    const auto base = reinterpret_cast<std::uintptr_t>(ptr);
    if (ipc_opens_.count(base) != 0) {
      return FailedPreconditionError("FreeDevice: " + Hex(ptr) + " is still open through IPC");
    }
    if (device_allocs_.erase(base) == 0) {
      return InvalidArgumentError("FreeDevice: " + Hex(ptr) + " is not from AllocateDevice");
    }
  }
  std::free(ptr);
  return OkStatus();
}

Status CpuBackend::CheckDeviceRange(const void* ptr, std::size_t bytes) const {
  const auto begin = reinterpret_cast<std::uintptr_t>(ptr);
  std::lock_guard lock(mu_);
  auto it = device_allocs_.upper_bound(begin);
  if (it != device_allocs_.begin()) {
    --it;
    if (begin + bytes <= it->first + it->second) return OkStatus();
  }
  return InvalidArgumentError(
      fmt::format("{} bytes at {} are not inside device memory", bytes, ptr));
}

StatusOr<Stream> CpuBackend::CreateStream() {
  auto state = std::make_shared<StreamState>();
  state->worker = std::thread([s = state.get()] { s->Run(); });
  std::lock_guard lock(mu_);
  const std::uintptr_t id = next_handle_++;
  streams_[id] = std::move(state);
  return Stream{id};
}

StatusOr<std::shared_ptr<CpuBackend::StreamState>> CpuBackend::FindStream(Stream stream) const {
  std::lock_guard lock(mu_);
  auto it = streams_.find(static_cast<std::uintptr_t>(stream));
  if (it == streams_.end()) {
    return InvalidArgumentError(fmt::format("no stream {}", static_cast<std::uintptr_t>(stream)));
  }
  return it->second;
}

StatusOr<std::shared_ptr<CpuBackend::EventState>> CpuBackend::FindEvent(Event event) const {
  std::lock_guard lock(mu_);
  auto it = events_.find(static_cast<std::uintptr_t>(event));
  if (it == events_.end()) {
    return InvalidArgumentError(fmt::format("no event {}", static_cast<std::uintptr_t>(event)));
  }
  return it->second;
}

Status CpuBackend::DestroyStream(Stream stream) {
  std::shared_ptr<StreamState> state;
  {
    std::lock_guard lock(mu_);
    auto it = streams_.find(static_cast<std::uintptr_t>(stream));
    if (it == streams_.end()) return InvalidArgumentError("DestroyStream: no such stream");
    state = std::move(it->second);
    streams_.erase(it);
    retired_streams_.push_back(state);
  }
  // Queued work still runs; the worker exits when the queue is empty and is joined by ~CpuBackend.
  state->Close();
  return OkStatus();
}

Status CpuBackend::CopyAsync(void* dst, const void* src, std::size_t bytes, CopyKind kind,
                             Stream stream) {
  if (bytes == 0) return OkStatus();
  if (dst == nullptr || src == nullptr) return InvalidArgumentError("CopyAsync: null pointer");
  TW_ASSIGN_OR_RETURN(auto state, FindStream(stream));
  {
    std::lock_guard lock(mu_);
    ++copies_queued_;
  }
  const bool dst_device = kind != CopyKind::kDeviceToHost;
  const bool src_device = kind != CopyKind::kHostToDevice;
  state->Enqueue({.work = [this, dst, src, bytes, kind, dst_device, src_device]() -> Status {
    if (dst_device) {
      TW_RETURN_IF_ERROR(CheckDeviceRange(dst, bytes)
                             .WithPrefix(fmt::format("CopyAsync {} destination", ToString(kind))));
    }
    if (src_device) {
      TW_RETURN_IF_ERROR(CheckDeviceRange(src, bytes)
                             .WithPrefix(fmt::format("CopyAsync {} source", ToString(kind))));
    }
    std::memmove(dst, src, bytes);
    return OkStatus();
  }});
  return OkStatus();
}

Status CpuBackend::Copy2DAsync(void* dst, std::size_t dpitch, const void* src, std::size_t spitch,
                               std::size_t width, std::size_t height, CopyKind kind,
                               Stream stream) {
  if (width == 0 || height == 0) return OkStatus();
  if (dst == nullptr || src == nullptr) return InvalidArgumentError("Copy2DAsync: null pointer");
  if (width > dpitch || width > spitch) {
    return InvalidArgumentError(fmt::format(
        "Copy2DAsync: width {} is larger than a pitch (dst {}, src {})", width, dpitch, spitch));
  }
  TW_ASSIGN_OR_RETURN(auto state, FindStream(stream));
  {
    std::lock_guard lock(mu_);
    ++copies_queued_;
  }
  const bool dst_device = kind != CopyKind::kDeviceToHost;
  const bool src_device = kind != CopyKind::kHostToDevice;
  state->Enqueue({.work = [=, this]() -> Status {
    const std::size_t dst_span = dpitch * (height - 1) + width;
    const std::size_t src_span = spitch * (height - 1) + width;
    if (dst_device) {
      TW_RETURN_IF_ERROR(
          CheckDeviceRange(dst, dst_span)
              .WithPrefix(fmt::format("Copy2DAsync {} destination", ToString(kind))));
    }
    if (src_device) {
      TW_RETURN_IF_ERROR(CheckDeviceRange(src, src_span)
                             .WithPrefix(fmt::format("Copy2DAsync {} source", ToString(kind))));
    }
    for (std::size_t row = 0; row < height; ++row) {
      std::memmove(static_cast<char*>(dst) + row * dpitch,
                   static_cast<const char*>(src) + row * spitch, width);
    }
    return OkStatus();
  }});
  return OkStatus();
}

Status CpuBackend::StreamWaitEvent(Stream stream, Event event) {
  TW_ASSIGN_OR_RETURN(auto ev, FindEvent(event));
  TW_ASSIGN_OR_RETURN(auto state, FindStream(stream));
  std::uint64_t target;
  {
    std::lock_guard lock(ev->mu);
    target = ev->record_gen;
  }
  // The stream's worker blocks until the event's stream reached the record; the other stream's
  // error becomes this stream's, as a wait on a failed event does in CUDA.
  state->Enqueue({.work = [ev, target]() -> Status {
    std::unique_lock lock(ev->mu);
    ev->cv.wait(lock, [&] { return ev->completed_gen >= target; });
    return target == 0 ? OkStatus() : ev->error;
  }});
  return OkStatus();
}

std::uint64_t CpuBackend::copies_queued() const {
  std::lock_guard lock(mu_);
  return copies_queued_;
}

Status CpuBackend::LaunchHostFunc(Stream stream, std::function<void()> fn) {
  if (!fn) return InvalidArgumentError("LaunchHostFunc: empty function");
  TW_ASSIGN_OR_RETURN(auto state, FindStream(stream));
  state->Enqueue({.work = [fn = std::move(fn)]() -> Status {
    fn();
    return OkStatus();
  }});
  return OkStatus();
}

Status CpuBackend::SynchronizeStream(Stream stream) {
  TW_ASSIGN_OR_RETURN(auto state, FindStream(stream));
  return state->Synchronize();
}

StatusOr<Event> CpuBackend::CreateEvent() {
  std::lock_guard lock(mu_);
  const std::uintptr_t id = next_handle_++;
  events_[id] = std::make_shared<EventState>();
  return Event{id};
}

Status CpuBackend::DestroyEvent(Event event) {
  std::lock_guard lock(mu_);
  if (events_.erase(static_cast<std::uintptr_t>(event)) == 0) {
    return InvalidArgumentError("DestroyEvent: no such event");
  }
  return OkStatus();
}

Status CpuBackend::RecordEvent(Event event, Stream stream) {
  TW_ASSIGN_OR_RETURN(auto ev, FindEvent(event));
  TW_ASSIGN_OR_RETURN(auto state, FindStream(stream));
  std::uint64_t gen;
  {
    std::lock_guard lock(ev->mu);
    gen = ++ev->record_gen;
  }
  state->Enqueue({.event = std::move(ev), .event_gen = gen});
  return OkStatus();
}

StatusOr<bool> CpuBackend::QueryEvent(Event event) {
  TW_ASSIGN_OR_RETURN(auto ev, FindEvent(event));
  std::lock_guard lock(ev->mu);
  if (ev->completed_gen < ev->record_gen) return false;
  if (!ev->error.ok()) return ev->error;
  return true;
}

Status CpuBackend::SynchronizeEvent(Event event) {
  TW_ASSIGN_OR_RETURN(auto ev, FindEvent(event));
  std::unique_lock lock(ev->mu);
  const std::uint64_t target = ev->record_gen;
  ev->cv.wait(lock, [&] { return ev->completed_gen >= target; });
  return ev->error;
}

StatusOr<IpcMemHandle> CpuBackend::GetIpcHandle(void* device_ptr) {
  const auto base = reinterpret_cast<std::uintptr_t>(device_ptr);
  {
    std::lock_guard lock(mu_);
    if (device_allocs_.count(base) == 0) {
      return InvalidArgumentError("GetIpcHandle: " + Hex(device_ptr) +
                                  " is not the base of a device allocation");
    }
  }
  IpcMemHandle handle;
  const std::int64_t pid = ::getpid();
  std::memcpy(handle.bytes.data(), kIpcMagic, sizeof(kIpcMagic));
  std::memcpy(handle.bytes.data() + 8, &pid, sizeof(pid));
  std::memcpy(handle.bytes.data() + 16, &base, sizeof(base));
  return handle;
}

StatusOr<void*> CpuBackend::OpenIpcHandle(const IpcMemHandle& handle) {
  if (std::memcmp(handle.bytes.data(), kIpcMagic, sizeof(kIpcMagic)) != 0) {
    return InvalidArgumentError("OpenIpcHandle: not a handle of the CPU backend");
  }
  std::int64_t pid;
  std::uintptr_t base;
  std::memcpy(&pid, handle.bytes.data() + 8, sizeof(pid));
  std::memcpy(&base, handle.bytes.data() + 16, sizeof(base));
  if (pid != ::getpid()) {
    return UnimplementedError(
        "OpenIpcHandle: the CPU backend opens handles of its own process only");
  }
  std::lock_guard lock(mu_);
  if (device_allocs_.count(base) == 0) {
    return NotFoundError("OpenIpcHandle: the allocation was freed");
  }
  ++ipc_opens_[base];
  return reinterpret_cast<void*>(base);
}

Status CpuBackend::CloseIpcHandle(void* mapped_base) {
  std::lock_guard lock(mu_);
  auto it = ipc_opens_.find(reinterpret_cast<std::uintptr_t>(mapped_base));
  if (it == ipc_opens_.end()) {
    return InvalidArgumentError("CloseIpcHandle: " + Hex(mapped_base) + " is not open");
  }
  if (--it->second == 0) ipc_opens_.erase(it);
  return OkStatus();
}

StatusOr<std::size_t> CpuBackend::ReadFile(int fd, void* device_ptr, std::size_t bytes,
                                           std::int64_t file_offset) {
  TW_RETURN_IF_ERROR(CheckDeviceRange(device_ptr, bytes).WithPrefix("ReadFile"));
  std::size_t got = 0;
  while (got < bytes) {
    const ssize_t n = ::pread(fd, static_cast<char*>(device_ptr) + got, bytes - got,
                              static_cast<off_t>(file_offset + static_cast<std::int64_t>(got)));
    if (n < 0) {
      if (errno == EINTR) continue;
      return ErrnoStatus(errno, "ReadFile: pread");
    }
    if (n == 0) break;
    got += static_cast<std::size_t>(n);
  }
  return got;
}

}  // namespace tw::gpu
