#include "wire_client.h"

#include <unistd.h>

#include <cstring>

#include "tokenwarehouse/v1/peer.pb.h"
#include "tw/common/strings.h"

namespace tw::mesh::net {

namespace pb = ::tokenwarehouse::v1;

WirePool::~WirePool() {
  for (auto& [node, idle] : idle_) {
    for (int fd : idle.fds) close(fd);
  }
}

StatusOr<WirePool::Taken> WirePool::Take(const std::string& node, const std::string& address,
                                         uint32_t port, Deadline deadline, bool fresh) {
  const std::string target = StrCat(address, ":", port);
  if (!fresh) {
    std::lock_guard lock(mu_);
    auto it = idle_.find(node);
    if (it != idle_.end() && it->second.target == target && !it->second.fds.empty()) {
      const int fd = it->second.fds.back();
      it->second.fds.pop_back();
      return Taken{fd, true};
    }
  }
  TW_ASSIGN_OR_RETURN(int fd, WireConnect(address, port, deadline));
  {
    std::lock_guard lock(mu_);
    Idle& idle = idle_[node];
    if (idle.target != target) {
      for (int old : idle.fds) close(old);
      idle.fds.clear();
      idle.target = target;
    }
  }
  return Taken{fd, false};
}

void WirePool::Give(const std::string& node, int fd) {
  {
    std::lock_guard lock(mu_);
    Idle& idle = idle_[node];
    if (idle.fds.size() < max_idle_) {
      idle.fds.push_back(fd);
      return;
    }
  }
  close(fd);
}

void WirePool::Drop(const std::string& node) {
  std::vector<int> fds;
  {
    std::lock_guard lock(mu_);
    auto it = idle_.find(node);
    if (it == idle_.end()) return;
    fds.swap(it->second.fds);
  }
  for (int fd : fds) close(fd);
}

Status WireLocateSend(int fd, std::span<const Key> keys, Deadline deadline) {
  auto h = EncodeWireHeader(WireType::kLocate, static_cast<uint32_t>(32 * keys.size()));
  // The keys straight from the caller's array (Key is 32 bytes, packed).
  static_assert(sizeof(Key) == 32);
  iovec iov[2] = {{h.data(), h.size()}, {const_cast<Key*>(keys.data()), 32 * keys.size()}};
  return WireSendAll(fd, iov, deadline);
}

StatusOr<LocateAnswer> WireLocateRecv(int fd, size_t keys, Deadline deadline, size_t* got) {
  TW_ASSIGN_OR_RETURN(WireFrame f, WireRecvFrame(fd, deadline, got));
  if (f.header.type == WireType::kError) return DecodeError(f.body);
  if (f.header.type != WireType::kLocateAnswer) {
    return InternalError("mesh wire: a locate answered with another frame");
  }
  auto out = DecodeLocateAnswer(f.body, keys);
  if (!out.ok()) return InternalError(std::string(out.status().message()));
  return out;
}

StatusOr<FetchResult> WireFetch(int fd, const FetchSpec& spec, const std::string& from_node,
                                std::span<std::byte> dest, Deadline deadline, bool* reusable,
                                size_t* got) {
  *reusable = false;
  WireFetchRequest req;
  req.namespace_digest = spec.namespace_digest;
  req.key = spec.key;
  const auto left = deadline == Deadline::max() ? std::chrono::hours(1) : deadline - Clock::now();
  req.budget_ns = static_cast<uint64_t>(
      std::max<int64_t>(1, std::chrono::duration_cast<std::chrono::nanoseconds>(left).count()));
  req.from_node = from_node;
  TW_RETURN_IF_ERROR(WireSendFrame(fd, WireType::kFetch, EncodeFetch(req), deadline));
  TW_ASSIGN_OR_RETURN(WireFrame f, WireRecvFrame(fd, deadline, got));
  if (f.header.type == WireType::kError) return DecodeError(f.body);
  FetchResult r;
  pb::FetchHeader h;
  if (f.header.type != WireType::kFetchHeader || !h.ParseFromString(f.body)) {
    r.miss = MissReason::kIoError;
    r.error = InternalError("mesh wire: malformed fetch header");
    return r;
  }
  if (h.miss_reason() != 0) {
    *reusable = true;
    r.miss = h.miss_reason() < kMissReasonCount ? static_cast<MissReason>(h.miss_reason())
                                                : MissReason::kIoError;
    r.error = NotFoundError(StrCat(ToString(r.miss), " ", h.error()));
    return r;
  }
  uint64_t sum = 0;
  r.segment_sizes.assign(h.segment_sizes().begin(), h.segment_sizes().end());
  for (uint64_t s : r.segment_sizes) sum += s;
  if (sum != h.value_size()) {
    r = FetchResult{};
    r.miss = MissReason::kIoError;
    r.error = InternalError("mesh wire: segment sizes do not add up");
    return r;
  }
  if (h.value_size() > dest.size()) {
    r.miss = MissReason::kIoError;
    r.error = InvalidArgumentError(
        StrCat("remote value of ", h.value_size(), " bytes does not fit ", dest.size(), " bytes"));
    return r;
  }
  // The bytes, straight from the socket into the destination, on this thread only.
  TW_RETURN_IF_ERROR(WireRecvAll(fd, dest.data(), h.value_size(), deadline, got));
  if (h.parent().size() == 32) {
    r.lineage = ChunkLineage{*Key::FromBytes(h.parent()), h.extra(),
                             std::vector<uint32_t>(h.tokens().begin(), h.tokens().end())};
  }
  r.bytes = h.value_size();
  *reusable = true;
  return r;
}

}  // namespace tw::mesh::net
