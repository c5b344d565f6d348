// RdmaTransport: the requester's fetch (prepare, READ slices, fence) and the holder's grants.
#include <algorithm>
#include <cstring>
#include <string>

#include "rdma_internal.h"
#include "tw/mesh/rdma/rdma_transport.h"

namespace tw::mesh::rdma {

namespace {

FetchResult Miss(MissReason reason, Status error) {
  FetchResult r;
  r.miss = reason;
  r.error = std::move(error);
  return r;
}

}  // namespace

// ---- registered memory ----

Status RdmaTransport::RegisterMemory(void* base, size_t length) {
  if (base == nullptr || length == 0) {
    return InvalidArgumentError("rdma: RegisterMemory needs a non-empty range");
  }
  auto b = reinterpret_cast<uintptr_t>(base);
  std::lock_guard<std::mutex> l(regions_mu_);
  auto next = regions_.lower_bound(b);
  bool overlaps = (next != regions_.end() && next->first < b + length);
  if (!overlaps && next != regions_.begin()) {
    auto prev = std::prev(next);
    overlaps = prev->first + prev->second.first > b;
  }
  if (overlaps) return AlreadyExistsError("rdma: range overlaps a registered one");
  TW_ASSIGN_OR_RETURN(auto mr, verbs_->RegMr(pd_, base, length, kLocalWrite | kRemoteRead));
  regions_.emplace(b, std::make_pair(uint64_t{length}, mr));
  return OkStatus();
}

void RdmaTransport::UnregisterMemory(void* base) {
  std::lock_guard<std::mutex> l(regions_mu_);
  auto it = regions_.find(reinterpret_cast<uintptr_t>(base));
  if (it == regions_.end()) return;
  verbs_->DeregMr(it->second.second.handle).IgnoreError();
  regions_.erase(it);
}

std::optional<uint32_t> RdmaTransport::FindLkey(const std::byte* p, uint64_t n) const {
  auto a = reinterpret_cast<uintptr_t>(p);
  std::lock_guard<std::mutex> l(regions_mu_);
  auto it = regions_.upper_bound(a);
  if (it == regions_.begin()) return std::nullopt;
  --it;
  if (a + n > it->first + it->second.first) return std::nullopt;
  return it->second.second.lkey;
}

// ---- requester ----

Status RdmaTransport::ReadSlices(const std::shared_ptr<Link>& link_ptr,
                                 const std::shared_ptr<QpSlot>& qp, const ReadGrant& grant,
                                 std::byte* local, uint32_t lkey, Deadline post_deadline,
                                 Deadline deadline, bool* replaced) {
  Link& link = *link_ptr;
  *replaced = false;
  auto transfer = std::make_shared<Transfer>();
  Status post_error;
  uint64_t offset = 0;
  while (offset < grant.length) {
    {
      std::lock_guard<std::mutex> l(transfer->mu);
      if (transfer->failed) break;
    }
    std::unique_lock<std::mutex> l(link.mu);
    bool ready = link.cv.wait_until(l, post_deadline, [&] {
      return link.qp != qp || qp->retiring || qp->outstanding < options_.max_outstanding_per_qp;
    });
    if (link.qp != qp || qp->retiring) {
      post_error = UnavailableError(
          link.state == LinkState::kDown
              ? "rdma: the queue pair to " + link.node + " failed (" + link.last_error + ")"
              : "rdma: the queue pair to " + link.node + " was replaced by a new connection");
      break;
    }
    if (!ready) {
      post_error = DeadlineExceededError("rdma: deadline while reading from " + link.node);
      break;
    }
    uint32_t len =
        static_cast<uint32_t>(std::min<uint64_t>(options_.slice_bytes, grant.length - offset));
    ReadRequest wr{next_wr_id_.fetch_add(1),
                   reinterpret_cast<uint64_t>(local + offset),
                   lkey,
                   len,
                   grant.remote_addr + offset,
                   grant.rkey};
    {
      std::lock_guard<std::mutex> w(wr_mu_);
      wrs_.emplace(wr.wr_id, std::make_shared<WrRef>(WrRef{link_ptr, qp, transfer}));
    }
    {
      std::lock_guard<std::mutex> t(transfer->mu);
      ++transfer->outstanding;
    }
    ++qp->outstanding;
    Status st = verbs_->PostRead(qp->handle, wr);
    if (!st.ok()) {
      --qp->outstanding;
      {
        std::lock_guard<std::mutex> w(wr_mu_);
        wrs_.erase(wr.wr_id);
      }
      {
        std::lock_guard<std::mutex> t(transfer->mu);
        --transfer->outstanding;
      }
      post_error = st.WithPrefix("rdma: posting a READ to " + link.node);
      MarkDownLocked(link, post_error);
      break;
    }
    offset += len;
  }

  // Wait for the posted slices; past the deadline, fence: ERR flushes whatever is left, and
  // we return only once every slice of ours has completed.
  std::unique_lock<std::mutex> t(transfer->mu);
  bool drained = transfer->cv.wait_until(t, deadline, [&] { return transfer->outstanding == 0; });
  if (!drained) {
    t.unlock();
    {
      std::lock_guard<std::mutex> l(link.mu);
      if (link.qp == qp && !qp->retiring) {
        MarkDownLocked(link, DeadlineExceededError("rdma: READs from " + link.node +
                                                   " outstanding at the deadline: fenced"));
      } else {
        RetireQpLocked(link, qp);
      }
    }
    {
      std::lock_guard<std::mutex> c(counters_mu_);
      ++counters_.fences;
    }
    t.lock();
    transfer->cv.wait(t, [&] { return transfer->outstanding == 0; });
    return DeadlineExceededError("rdma: READs from " + link.node +
                                 " still outstanding at the deadline: queue pair fenced");
  }
  bool failed = transfer->failed;
  WcStatus first_error = transfer->first_error;
  t.unlock();
  if (failed || !post_error.ok()) {
    std::lock_guard<std::mutex> l(link.mu);
    *replaced = link.qp != qp && link.state != LinkState::kDown &&
                (!failed || first_error == WcStatus::kFlushed) &&
                post_error.code() != StatusCode::kDeadlineExceeded;
  }
  if (failed) {
    return UnavailableError("rdma: READ from " + link.node +
                            " failed: " + std::string(ToString(first_error)));
  }
  return post_error;
}

FetchResult RdmaTransport::Fetch(const Peer& holder, const FetchSpec& spec,
                                 std::span<std::byte> dest, Deadline deadline) {
  auto link_or = GetLink(holder.node);
  if (!link_or.ok()) return Miss(MissReason::kPeerUnreachable, link_or.status());
  Link& link = **link_or;
  {
    std::lock_guard<std::mutex> l(link.mu);
    ++link.fetches;
  }
  auto qp = EnsureConnected(link, holder, deadline, /*rebuild_qpn=*/0);
  if (!qp.ok()) return Miss(MissReason::kPeerUnreachable, qp.status());

  auto sent = Clock::now();
  auto grant = control_->PrepareRead(holder, options_.node_name, spec, deadline);
  if (!grant.ok()) {
    std::lock_guard<std::mutex> l(link.mu);
    if (link.qp == *qp) MarkDownLocked(link, grant.status().WithPrefix("rdma: PrepareRead"));
    return Miss(MissReason::kPeerUnreachable, grant.status());
  }
  if (grant->miss != MissReason::kNone) return Miss(grant->miss, grant->error);

  FetchResult result;
  auto release = [&] { control_->Release(holder, grant->token); };
  // Our connection goes to a queue pair the holder no longer has (it restarted): rebuild it
  // now rather than let the READ time out. Not a failure of the peer: no cool-off.
  bool reconnect = false;
  {
    std::lock_guard<std::mutex> l(link.mu);
    if (link.qp == *qp && link.state == LinkState::kUp && grant->holder_qpn != link.remote_qpn) {
      RetireQpLocked(link, link.qp);
      link.qp.reset();
      link.state = LinkState::kIdle;
      link.cv.notify_all();
    }
    reconnect = link.qp != *qp;
  }
  if (reconnect) {
    qp = EnsureConnected(link, holder, deadline, /*rebuild_qpn=*/0);
    if (!qp.ok()) {
      release();
      return Miss(MissReason::kPeerUnreachable, qp.status());
    }
  }
  if (grant->length > dest.size()) {
    release();
    result = Miss(MissReason::kIoError,
                  InvalidArgumentError("rdma: value of " + std::to_string(grant->length) +
                                       " bytes does not fit a destination of " +
                                       std::to_string(dest.size())));
    result.segment_sizes = grant->segment_sizes;
    return result;
  }

  // Where the READs land: the destination itself when registered, else the staging ring.
  std::optional<StagingRing::Extent> staged;
  std::byte* local = dest.data();
  std::optional<uint32_t> lkey;
  if (grant->length > 0) lkey = FindLkey(dest.data(), grant->length);
  if (grant->length > 0 && !lkey) {
    auto extent = staging_->Allocate(grant->length, deadline);
    if (!extent.ok()) {
      release();
      return Miss(MissReason::kDeadline, extent.status());
    }
    staged = *extent;
    local = staged->data;
    lkey = staged->lkey;
    std::lock_guard<std::mutex> c(counters_mu_);
    ++counters_.staged_fetches;
  }

  // Stop posting early enough for slices in flight to finish by the deadline, and never READ
  // a grant the holder may have freed.
  auto now = Clock::now();
  auto left = deadline == Deadline::max() ? options_.fence_reserve * 4 : deadline - now;
  auto reserve = std::min<Clock::duration>(options_.fence_reserve, left / 4);
  auto post_deadline = std::min(deadline == Deadline::max() ? Deadline::max() : deadline - reserve,
                                sent + grant->ttl - options_.fence_reserve);
  Status st;
  if (grant->length > 0) {
    bool replaced = false;
    st = ReadSlices(*link_or, *qp, *grant, local, *lkey, post_deadline, deadline, &replaced);
    if (!st.ok() && replaced && Clock::now() < post_deadline) {
      // A rebuild of the pair's connection (the peer's request, or its restart) retired the
      // queue pair under us: every slice of ours has completed, so read again on the new one.
      qp = EnsureConnected(link, holder, deadline, /*rebuild_qpn=*/0);
      if (qp.ok()) {
        st = ReadSlices(*link_or, *qp, *grant, local, *lkey, post_deadline, deadline, &replaced);
      }
    }
  }
  release();
  if (st.ok() && staged) std::memcpy(dest.data(), staged->data, grant->length);
  if (staged) staging_->Free(*staged);
  if (!st.ok()) return Miss(MissReason::kPeerUnreachable, st);

  {
    std::lock_guard<std::mutex> l(link.mu);
    link.bytes_in += grant->length;
  }
  result.bytes = grant->length;
  result.segment_sizes = grant->segment_sizes;
  result.lineage = std::move(grant->lineage);
  return result;
}

// ---- holder ----

void RdmaTransport::ExpireGrantsLocked(Clock::time_point now) {
  for (auto it = grants_.begin(); it != grants_.end();) {
    if (it->second->expires <= now) {
      holder_staging_->Free(it->second->extent);
      it = grants_.erase(it);
      std::lock_guard<std::mutex> c(counters_mu_);
      ++counters_.grants_expired;
    } else {
      ++it;
    }
  }
}

size_t RdmaTransport::ExpireGrants() {
  std::lock_guard<std::mutex> l(grants_mu_);
  size_t before = grants_.size();
  ExpireGrantsLocked(options_.now());
  return before - grants_.size();
}

ReadGrant RdmaTransport::HandlePrepareRead(const std::string& from_node, const FetchSpec& spec,
                                           Deadline deadline) {
  ReadGrant g;
  ExpireGrants();
  auto size = source_->ValueSize(spec);
  if (!size) {
    g.miss = MissReason::kAbsent;
    g.error = NotFoundError("rdma: not stored on " + options_.node_name);
    return g;
  }
  StagingRing::Extent extent;
  if (*size > 0) {
    auto e = holder_staging_->Allocate(*size, deadline);
    if (!e.ok()) {
      g.miss = MissReason::kDeadline;
      g.error = e.status().WithPrefix("rdma holder " + options_.node_name);
      return g;
    }
    extent = *e;
  }
  FetchResult read = source_->Read(spec, std::span<std::byte>(extent.data, *size), deadline);
  if (read.miss != MissReason::kNone) {
    if (*size > 0) holder_staging_->Free(extent);
    g.miss = read.miss;
    g.error = read.error;
    return g;
  }
  g.remote_addr = reinterpret_cast<uint64_t>(extent.data);
  g.rkey = extent.rkey;
  g.length = read.bytes;
  g.segment_sizes = read.segment_sizes;
  g.lineage = std::move(read.lineage);
  g.ttl = options_.grant_ttl;
  if (*size > 0) {
    std::lock_guard<std::mutex> l(grants_mu_);
    g.token = next_token_++;
    grants_.emplace(g.token,
                    std::make_unique<Grant>(Grant{extent, options_.now() + options_.grant_ttl}));
  }
  auto link = GetLink(from_node);
  if (link.ok()) {
    std::lock_guard<std::mutex> l((*link)->mu);
    (*link)->bytes_out += g.length;
    g.holder_qpn = (*link)->qp ? (*link)->qp->qpn : (*link)->connecting_qpn;
  }
  return g;
}

void RdmaTransport::HandleRelease(uint64_t token) {
  std::lock_guard<std::mutex> l(grants_mu_);
  auto it = grants_.find(token);
  if (it == grants_.end()) return;  // expired, or released twice
  holder_staging_->Free(it->second->extent);
  grants_.erase(it);
}

}  // namespace tw::mesh::rdma
