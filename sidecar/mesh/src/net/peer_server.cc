#include "tw/mesh/peer_server.h"

#include <algorithm>
#include <atomic>
#include <cstring>
#include <mutex>

#include "absl/container/flat_hash_map.h"
#include "buffer_pool.h"
#include "fetch_wire.h"
#include "grpc_util.h"
#include "tokenwarehouse/v1/peer.grpc.pb.h"
#include "tw/common/log.h"
#include "tw/common/strings.h"
#include "wire_server.h"

namespace tw::mesh {

namespace pb = ::tokenwarehouse::v1;
using net::BufferPool;

namespace {

grpc::Status ToGrpc(const Status& s) {
  if (s.ok()) return grpc::Status::OK;
  return grpc::Status(static_cast<grpc::StatusCode>(static_cast<int>(s.code())),
                      std::string(s.message()));
}

class Service final : public pb::Peer::Service {
 public:
  Service(const PeerServer::Options& o, PeerServer::Handlers h)
      : o_(o), h_(std::move(h)), pool_(std::make_shared<BufferPool>()) {
    // Fetch answers with raw messages (fetch_wire.h): the value's slices reference the
    // stream's buffer instead of being copied into a message per slice. The method stays a
    // server stream on the wire.
    MarkMethodStreamed(
        2, new grpc::internal::SplitServerStreamingHandler<pb::FetchRequest, grpc::ByteBuffer>(
               [this](grpc::ServerContext* ctx,
                      grpc::ServerSplitStreamer<pb::FetchRequest, grpc::ByteBuffer>* stream) {
                 pb::FetchRequest req;
                 if (!stream->Read(&req)) {
                   return grpc::Status(grpc::StatusCode::INVALID_ARGUMENT, "no fetch request");
                 }
                 return RawFetch(ctx, req, stream);
               }));
  }

  grpc::Status Update(grpc::ServerContext*, const pb::UpdateRequest* req,
                      pb::UpdateResponse*) override {
    if (req->from_node().empty()) {
      return grpc::Status(grpc::StatusCode::INVALID_ARGUMENT, "from_node: must not be empty");
    }
    UpdateBatch batch;
    batch.from_node = req->from_node();
    batch.updates.reserve(static_cast<size_t>(req->updates_size()));
    for (int i = 0; i < req->updates_size(); ++i) {
      auto k = net::KeyField(req->updates(i).dir_key(), "updates[].dir_key");
      if (!k.ok()) return ToGrpc(k.status());
      batch.updates.push_back(
          {*k, req->updates(i).withdraw() ? UpdateKind::kWithdraw : UpdateKind::kAnnounce});
    }
    h_.directory->Apply(batch);
    return grpc::Status::OK;
  }

  grpc::Status Locate(grpc::ServerContext*, const pb::LocateRequest* req,
                      pb::LocateResponse* resp) override {
    std::vector<Key> keys;
    if (req->dir_keys_size() == 0) {
      const std::string& packed = req->packed_dir_keys();
      if (packed.size() % 32 != 0) {
        return grpc::Status(grpc::StatusCode::INVALID_ARGUMENT,
                            "packed_dir_keys: not a whole number of 32-byte keys");
      }
      keys.resize(packed.size() / 32);
      for (size_t i = 0; i < keys.size(); ++i) {
        std::memcpy(keys[i].bytes.data(), packed.data() + 32 * i, 32);
      }
      Directory::Packed answer;
      h_.directory->LookupPacked(keys, &answer);
      for (std::string& n : answer.nodes) resp->add_node_names(std::move(n));
      std::string* out = resp->mutable_packed_holders();
      out->reserve(keys.size() + answer.holders.size() * 2);
      for (size_t i = 0; i < keys.size(); ++i) {
        net::AppendVarint(out, answer.offsets[i + 1] - answer.offsets[i]);
        for (uint32_t j = answer.offsets[i]; j < answer.offsets[i + 1]; ++j) {
          net::AppendVarint(out, answer.holders[j]);
        }
      }
      return grpc::Status::OK;
    }
    keys.reserve(static_cast<size_t>(req->dir_keys_size()));
    for (const std::string& raw : req->dir_keys()) {
      auto k = net::KeyField(raw, "dir_keys[]");
      if (!k.ok()) return ToGrpc(k.status());
      keys.push_back(*k);
    }
    for (auto& holders : h_.directory->Lookup(keys)) {
      auto* out = resp->add_keys();
      for (auto& n : holders) out->add_nodes(std::move(n));
    }
    return grpc::Status::OK;
  }

  grpc::Status Fetch(grpc::ServerContext*, const pb::FetchRequest*,
                     grpc::ServerWriter<pb::FetchChunk>*) override {
    // Replaced by RawFetch in the constructor.
    return grpc::Status(grpc::StatusCode::INTERNAL, "fetch: raw handler not installed");
  }

  grpc::Status RawFetch(grpc::ServerContext* ctx, const pb::FetchRequest& request,
                        grpc::ServerSplitStreamer<pb::FetchRequest, grpc::ByteBuffer>* writer) {
    const pb::FetchRequest* req = &request;
    auto ns = net::KeyField(req->namespace_digest(), "namespace_digest");
    if (!ns.ok()) return ToGrpc(ns.status());
    auto key = net::KeyField(req->key(), "key");
    if (!key.ok()) return ToGrpc(key.status());
    const FetchSpec spec{*ns, *key};
    const Deadline deadline = net::FromSystem(ctx->deadline());

    pb::FetchChunk first;
    pb::FetchHeader* h = first.mutable_header();
    auto write_first = [&] {
      return writer->Write(net::SerializedMessage(first.SerializeAsString()));
    };
    const std::optional<uint64_t> size = h_.source->ValueSize(spec);
    if (!size) {
      h->set_miss_reason(static_cast<uint32_t>(MissReason::kAbsent));
      write_first();
      return grpc::Status::OK;
    }
    if (*size > o_.max_value_size) {
      h->set_miss_reason(static_cast<uint32_t>(MissReason::kIoError));
      h->set_error(StrCat("value of ", *size, " bytes is over the served maximum"));
      write_first();
      return grpc::Status::OK;
    }
    // The stream's buffer (uninitialised: the source writes every byte it reports), shared
    // with the slices gRPC sends from; back to the pool when the last of them is released.
    std::shared_ptr<std::byte[]> buf = pool_->Get(*size);
    FetchResult r = h_.source->Read(spec, std::span<std::byte>(buf.get(), *size), deadline);
    if (r.miss != MissReason::kNone) {
      h->set_miss_reason(static_cast<uint32_t>(r.miss));
      h->set_error(std::string(r.error.message()));
      write_first();
      return grpc::Status::OK;
    }
    for (uint64_t s : r.segment_sizes) h->add_segment_sizes(s);
    h->set_value_size(r.bytes);
    if (r.lineage) {
      h->set_parent(std::string(r.lineage->parent.View()));
      h->set_extra(r.lineage->extra);
      for (uint32_t t : r.lineage->tokens) h->add_tokens(t);
    }
    if (!write_first()) return grpc::Status::CANCELLED;
    const std::shared_ptr<const void> owner(buf, buf.get());
    for (uint64_t at = 0; at < r.bytes; at += o_.fetch_slice) {
      const uint64_t n = std::min<uint64_t>(o_.fetch_slice, r.bytes - at);
      if (!writer->Write(net::DataMessage(buf.get() + at, n, owner))) {
        return grpc::Status::CANCELLED;  // the requester gave up
      }
    }
    CountServed(req->from_node(), r.bytes);
    return grpc::Status::OK;
  }

  grpc::Status Connect(grpc::ServerContext* ctx, const pb::ConnectRequest* req,
                       pb::ConnectResponse* resp) override {
    resp->set_node(o_.node);
    if (!h_.connect) {
      resp->add_transports("tcp");
      return grpc::Status::OK;
    }
    PeerServer::ConnectOffer offer;
    offer.from_node = req->from_node();
    offer.transports.assign(req->transports().begin(), req->transports().end());
    offer.transport_data = req->transport_data();
    offer.deadline = net::FromSystem(ctx->deadline());
    auto answer = h_.connect(offer);
    if (!answer.ok()) return ToGrpc(answer.status());
    for (auto& t : answer->transports) resp->add_transports(std::move(t));
    resp->set_transport_data(std::move(answer->transport_data));
    return grpc::Status::OK;
  }

  grpc::Status Health(grpc::ServerContext*, const pb::HealthRequest*,
                      pb::HealthResponse* resp) override {
    resp->set_node(o_.node);
    resp->set_version(o_.version);
    resp->set_wire_port(wire_port_.load());
    return grpc::Status::OK;
  }

  std::vector<PeerServer::Served> GetServed() const {
    std::lock_guard lock(mu_);
    std::vector<PeerServer::Served> out;
    for (const auto& [node, s] : served_) out.push_back(s);
    std::sort(out.begin(), out.end(), [](const auto& a, const auto& b) { return a.node < b.node; });
    return out;
  }

  void set_wire_port(uint32_t port) { wire_port_.store(port); }

  void CountServed(const std::string& node, uint64_t bytes) {
    std::lock_guard lock(mu_);
    if (served_.size() >= 4096 && !served_.contains(node)) return;  // bounded by the peers
    auto& s = served_[node];
    s.node = node;
    s.fetches++;
    s.bytes += bytes;
  }

  const PeerServer::Options& o_;
  const PeerServer::Handlers h_;
  const std::shared_ptr<BufferPool> pool_;
  std::atomic<uint32_t> wire_port_{0};
  mutable std::mutex mu_;
  absl::flat_hash_map<std::string, PeerServer::Served> served_;  // GUARDED_BY(mu_)
};

}  // namespace

class PeerServer::Impl {
 public:
  Impl(Options o, Handlers h) : o_(std::move(o)), service_(o_, std::move(h)) {}
  Options o_;
  Service service_;
  std::unique_ptr<grpc::Server> server_;
  std::unique_ptr<net::WireServer> wire_;
  int port_ = 0;
  std::once_flag stopped_;
};

StatusOr<std::unique_ptr<PeerServer>> PeerServer::Start(Options options, Handlers handlers) {
  if (handlers.directory == nullptr || handlers.source == nullptr) {
    return InvalidArgumentError("peer server: a directory and a chunk source are required");
  }
  if (options.fetch_slice == 0) return InvalidArgumentError("peer server: fetch_slice: 0");
  Directory* const handlers_directory = handlers.directory;
  ChunkSource* const handlers_source = handlers.source;
  auto impl = std::make_unique<Impl>(std::move(options), std::move(handlers));
  grpc::ServerBuilder b;
  const std::string addr = net::Target(impl->o_.listen_address, impl->o_.port);
  b.AddListeningPort(addr, net::ServerCredentials(impl->o_.tls), &impl->port_);
  b.RegisterService(&impl->service_);
  grpc::ResourceQuota quota("tw-peer-server");
  quota.SetMaxThreads(std::max(impl->o_.max_threads, 2));
  b.SetResourceQuota(quota);
  b.SetMaxReceiveMessageSize(16 << 20);
  b.AddChannelArgument(GRPC_ARG_ALLOW_REUSEPORT, 0);
  impl->server_ = b.BuildAndStart();
  if (!impl->server_ || impl->port_ == 0) {
    return UnavailableError(StrCat("peer server: cannot listen on ", addr));
  }
  if (impl->o_.raw_wire && !impl->o_.tls.enabled()) {
    net::WireServer::Options wo;
    wo.listen_address = impl->o_.listen_address;
    wo.port = impl->o_.wire_port;
    wo.max_connections = impl->o_.wire_max_connections;
    wo.max_value_size = impl->o_.max_value_size;
    Service* service = &impl->service_;
    wo.on_served = [service](const std::string& node, uint64_t bytes) {
      service->CountServed(node, bytes);
    };
    auto wire = net::WireServer::Start(wo, handlers_directory, handlers_source);
    if (!wire.ok() && wo.port != 0) {
      // Its usual port is taken: any port will do, as requesters learn it from Health.
      TW_LOG(kWarn, "mesh: the raw wire's port is taken; listening on a free one",
             {{"port", wo.port}, {"error", wire.status().ToString()}});
      wo.port = 0;
      wire = net::WireServer::Start(wo, handlers_directory, handlers_source);
    }
    if (!wire.ok()) {
      impl->server_->Shutdown();
      impl->server_->Wait();
      return wire.status();
    }
    impl->wire_ = std::move(*wire);
    impl->service_.set_wire_port(impl->wire_->port());
  }
  return std::unique_ptr<PeerServer>(new PeerServer(std::move(impl)));
}

PeerServer::PeerServer(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
PeerServer::~PeerServer() { Stop(); }

uint32_t PeerServer::port() const { return static_cast<uint32_t>(impl_->port_); }
uint32_t PeerServer::wire_port() const { return impl_->wire_ ? impl_->wire_->port() : 0; }

void PeerServer::Stop(std::chrono::nanoseconds grace) {
  std::call_once(impl_->stopped_, [&] {
    if (impl_->wire_) impl_->wire_->Stop();
    impl_->server_->Shutdown(net::ToSystem(Clock::now() + grace));
    impl_->server_->Wait();
  });
}

std::vector<PeerServer::Served> PeerServer::GetServed() const {
  return impl_->service_.GetServed();
}

}  // namespace tw::mesh
