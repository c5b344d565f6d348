#include "tw/client/client.h"

#include <array>
#include <cstring>

#include "connection.h"
#include "key_area.h"
#include "tw/common/strings.h"
#include "wire.h"

namespace tw::client {

using protocol::Opcode;
namespace pb = ::tokenwarehouse::v1;

namespace {

uint64_t TimeoutUs(std::chrono::milliseconds t) { return static_cast<uint64_t>(t.count()) * 1000; }

Status CountMismatch(std::string_view op, size_t got, size_t want) {
  return InternalError(StrCat("twd answered ", got, " ", op, " results for ", want, " items"));
}

}  // namespace

StatusOr<std::unique_ptr<Client>> Client::Connect(ClientOptions options) {
  if (options.timeout.count() <= 0) options.timeout = std::chrono::milliseconds(10000);
  std::vector<Namespace> canonical;
  for (size_t i = 0; i < options.namespaces.size(); ++i) {
    auto n = NormalizeNamespace(options.namespaces[i]);
    if (!n.ok()) return n.status().WithPrefix(StrCat("namespaces[", i, "]"));
    canonical.push_back(std::move(*n));
  }
  options.namespaces = std::move(canonical);
  auto c = ConnectOnce(options);
  // A twd whose limits.max_arena_size leaves no room for the key area refuses the arena:
  // connect again without one (lookups then send their keys in the message).
  if (!c.ok() && options.key_area_size > 0 && c.status().code() == StatusCode::kResourceExhausted &&
      c.status().message().find("max_arena_size") != std::string_view::npos) {
    options.key_area_size = 0;
    c = ConnectOnce(options);
  }
  return c;
}

StatusOr<std::unique_ptr<Client>> Client::ConnectOnce(const ClientOptions& options) {
  TW_ASSIGN_OR_RETURN(Arena arena,
                      Arena::Create(options.arena_size, "tw-client-arena", options.key_area_size));
  TW_ASSIGN_OR_RETURN(
      auto conn, Connection::Connect(options.socket_path, options.timeout, options.max_in_flight));
  std::unique_ptr<Client> c(new Client(std::move(options), std::move(arena), std::move(conn)));

  pb::HelloRequest hello;
  hello.set_min_version(protocol::kMinProtocolVersion);
  hello.set_max_version(protocol::kMaxProtocolVersion);
  hello.set_client_name(c->options_.client_name);
  for (const Namespace& ns : c->options_.namespaces) {
    *hello.add_namespaces() = protocol::ToProto(ns);
  }
  hello.set_arena_size(c->arena_.mapped_size());
  size_t declared = c->options_.namespaces.size();
  auto session = wire::CallSync<pb::HelloResponse, SessionInfo>(
      *c->conn_, Opcode::kHello, hello,
      [declared](const pb::HelloResponse& r) -> StatusOr<SessionInfo> {
        SessionInfo s;
        s.version = r.version();
        s.server_version = r.server_version();
        if (static_cast<size_t>(r.namespace_digests_size()) != declared) {
          return CountMismatch("namespace digest", r.namespace_digests_size(), declared);
        }
        for (const std::string& d : r.namespace_digests()) {
          TW_ASSIGN_OR_RETURN(Key k, wire::KeyFromWire(d, "namespace digest"));
          s.namespace_digests.push_back(k);
        }
        s.tenant = r.tenant();
        s.max_inflight = r.limits().max_inflight();
        s.max_batch = r.limits().max_batch();
        s.max_frame_size = r.limits().max_frame_size();
        s.max_value_size = r.limits().max_value_size();
        s.lease_duration_us = r.lease_duration_us();
        s.session_id = r.session_id();
        return s;
      },
      c->options_.timeout, c->arena_.fd());
  if (!session.ok())
    return session.status().WithPrefix(StrCat("hello to ", c->options_.socket_path));
  c->session_ = std::move(*session);
  if (c->session_.version >= protocol::kArenaKeysVersion &&
      c->arena_.mapped_size() > c->arena_.size()) {
    c->key_area_ = std::make_unique<KeyArea>(c->arena_.data() + c->arena_.size(), c->arena_.size(),
                                             c->arena_.mapped_size() - c->arena_.size());
  }
  // Digests are computed locally too: a mismatch means twd hashes differently (a bug).
  for (size_t i = 0; i < declared; ++i) {
    if (NamespaceDigest(c->options_.namespaces[i]) != c->session_.namespace_digests[i]) {
      return InternalError(StrCat("twd's digest of namespaces[", i, "] differs from ours"));
    }
  }
  c->conn_->SetMaxInFlight(c->session_.max_inflight);
  return c;
}

Client::Client(ClientOptions options, Arena arena, std::unique_ptr<Connection> conn)
    : options_(std::move(options)), arena_(std::move(arena)), conn_(std::move(conn)) {}

Client::~Client() { Close(); }

void Client::Close() {
  if (conn_) conn_->Close();
}

Client::ReadsOwnReply::ReadsOwnReply() { Connection::CallerReads::Begin(); }
Client::ReadsOwnReply::~ReadsOwnReply() { Connection::CallerReads::End(); }

void Client::WaitReady(const std::function<bool()>& ready,
                       std::chrono::steady_clock::time_point deadline) {
  conn_->WaitReady(ready, deadline);
}

StatusOr<std::vector<Key>> Client::DeclareNamespaces(const std::vector<Namespace>& namespaces,
                                                     ms timeout) {
  pb::DeclareNamespacesRequest req;
  for (size_t i = 0; i < namespaces.size(); ++i) {
    auto n = NormalizeNamespace(namespaces[i]);
    if (!n.ok()) return n.status().WithPrefix(StrCat("namespaces[", i, "]"));
    *req.add_namespaces() = protocol::ToProto(*n);
  }
  size_t want = namespaces.size();
  auto digests = wire::CallSync<pb::DeclareNamespacesResponse, std::vector<Key>>(
      *conn_, Opcode::kDeclareNamespaces, req,
      [want](const pb::DeclareNamespacesResponse& r) -> StatusOr<std::vector<Key>> {
        if (static_cast<size_t>(r.namespace_digests_size()) != want) {
          return CountMismatch("namespace digest", r.namespace_digests_size(), want);
        }
        std::vector<Key> out;
        for (const std::string& d : r.namespace_digests()) {
          TW_ASSIGN_OR_RETURN(Key k, wire::KeyFromWire(d, "namespace digest"));
          out.push_back(k);
        }
        return out;
      },
      Effective(timeout));
  if (!digests.ok()) return digests.status();
  session_.namespace_digests.insert(session_.namespace_digests.end(), digests->begin(),
                                    digests->end());
  return digests;
}

namespace {

// Where a lookup's key chains go: into one key-area slot when the session speaks version 3
// and one is free (twd reads them there), else into the message — packed from version 2 on,
// one field per key before.
class ChainWriter {
 public:
  ChainWriter(KeyArea* area, uint64_t total_keys, uint32_t version)
      : slot_(area ? area->Take(total_keys * sizeof(Key)) : nullptr),
        packed_(version >= protocol::kPackedKeysVersion) {}
  void Set(std::span<const Key> keys, pb::KeyChain* chain) {
    if (!slot_ || keys.empty()) {
      protocol::SetChainKeys(keys, packed_, chain);
      return;
    }
    std::memcpy(slot_->data + used_, keys.data(), keys.size_bytes());
    chain->set_keys_arena_offset(slot_->arena_offset + used_);
    chain->set_keys_count(static_cast<uint32_t>(keys.size()));
    used_ += keys.size_bytes();
  }
  // The slot, to be held until twd has answered (null when none was taken).
  std::shared_ptr<const KeyArea::Slot> slot() const { return slot_; }

 private:
  std::shared_ptr<const KeyArea::Slot> slot_;
  bool packed_;
  uint64_t used_ = 0;
};

// The Tier of each byte of a packed tier list: FromProto's mapping, tabled once (a lookup
// reply holds one tier per chunk).
class UnpackedTiers {
 public:
  UnpackedTiers() {
    for (size_t i = 0; i < tiers_.size(); ++i) {
      tiers_[i] = wire::FromProto(static_cast<pb::Tier>(i));
    }
  }
  void Fill(const std::string& packed, std::vector<Tier>* out) const {
    for (char c : packed) out->push_back(tiers_[static_cast<uint8_t>(c)]);
  }

 private:
  std::array<Tier, 256> tiers_{};  // by byte
};

// Completes a lookup request (its items already filled) and returns the converter of its
// reply, which holds `slot` (the key-area slot the chains lie in, if any) until the request is
// over.
auto FinishLookup(pb::LookupRequest& req, bool take_lease, uint64_t timeout_us,
                  std::shared_ptr<const KeyArea::Slot> slot) {
  req.set_take_lease(take_lease);
  req.set_timeout_us(timeout_us);
  const size_t want = static_cast<size_t>(req.items_size());
  return [want, slot = std::move(slot)](
             const pb::LookupResponse& r) -> StatusOr<std::vector<LookupReply>> {
    if (static_cast<size_t>(r.results_size()) != want) {
      return CountMismatch("lookup", r.results_size(), want);
    }
    std::vector<LookupReply> out;
    for (const pb::LookupResult& res : r.results()) {
      LookupReply l;
      l.prefix = res.prefix();
      l.tiers.reserve(static_cast<size_t>(res.chains_size()));
      for (const pb::ChainTiers& ct : res.chains()) {
        std::vector<Tier> tiers;
        // Version 2 packs one byte per chunk; version 1 repeats the enum.
        const std::string& packed = ct.packed_tiers();
        tiers.reserve(packed.empty() ? ct.tiers_size() : packed.size());
        if (!packed.empty()) {
          static const UnpackedTiers kUnpacked;
          kUnpacked.Fill(packed, &tiers);
        }
        for (int t : ct.tiers()) tiers.push_back(wire::FromProto(static_cast<pb::Tier>(t)));
        l.tiers.push_back(std::move(tiers));
      }
      l.miss = wire::FromProto(res.miss());
      l.lease = res.lease();
      out.push_back(std::move(l));
    }
    return out;
  };
}

// Fills `req`'s items with `items`' chains, written through `writer`.
void FillLookup(const std::vector<std::vector<LookupChain>>& items, ChainWriter& writer,
                pb::LookupRequest* req) {
  for (const auto& item : items) {
    pb::LookupItem* it = req->add_items();
    for (const LookupChain& chain : item) {
      pb::KeyChain* c = it->add_chains();
      c->set_namespace_digest(wire::KeyBytes(chain.namespace_digest));
      writer.Set(chain.keys, c);
    }
  }
}

uint64_t TotalKeys(const std::vector<std::vector<LookupChain>>& items) {
  uint64_t total = 0;
  for (const auto& item : items) {
    for (const LookupChain& chain : item) total += chain.keys.size();
  }
  return total;
}

}  // namespace

Future<std::vector<LookupReply>> Client::LookupAsync(
    const std::vector<std::vector<LookupChain>>& items, bool take_lease, ms timeout) {
  pb::LookupRequest req;
  ChainWriter writer(key_area_.get(), TotalKeys(items), session_.version);
  FillLookup(items, writer, &req);
  auto convert = FinishLookup(req, take_lease, TimeoutUs(Effective(timeout)), writer.slot());
  return wire::Call<pb::LookupResponse, std::vector<LookupReply>>(*conn_, Opcode::kLookup, req,
                                                                  std::move(convert));
}

StatusOr<std::vector<LookupReply>> Client::Lookup(
    const std::vector<std::vector<LookupChain>>& items, bool take_lease, ms timeout) {
  pb::LookupRequest req;
  ChainWriter writer(key_area_.get(), TotalKeys(items), session_.version);
  FillLookup(items, writer, &req);
  auto convert = FinishLookup(req, take_lease, TimeoutUs(Effective(timeout)), writer.slot());
  return wire::CallSync<pb::LookupResponse, std::vector<LookupReply>>(
      *conn_, Opcode::kLookup, req, std::move(convert), Effective(timeout));
}

StatusOr<LookupReply> Client::LookupChainOf(const Key& namespace_digest, std::span<const Key> keys,
                                            bool take_lease, ms timeout) {
  // The request is built from `keys` directly (no LookupChain copy of them).
  pb::LookupRequest req;
  pb::KeyChain* c = req.add_items()->add_chains();
  c->set_namespace_digest(wire::KeyBytes(namespace_digest));
  ChainWriter writer(key_area_.get(), keys.size(), session_.version);
  writer.Set(keys, c);
  auto convert = FinishLookup(req, take_lease, TimeoutUs(Effective(timeout)), writer.slot());
  TW_ASSIGN_OR_RETURN(auto replies,
                      (wire::CallSync<pb::LookupResponse, std::vector<LookupReply>>(
                          *conn_, Opcode::kLookup, req, std::move(convert), Effective(timeout))));
  return std::move(replies[0]);
}

StatusOr<uint32_t> Client::ReleaseLeases(const std::vector<uint64_t>& leases, ms timeout) {
  pb::ReleaseLeasesRequest req;
  for (uint64_t l : leases) req.add_leases(l);
  return wire::CallSync<pb::ReleaseLeasesResponse, uint32_t>(
      *conn_, Opcode::kReleaseLeases, req,
      [](const pb::ReleaseLeasesResponse& r) -> StatusOr<uint32_t> { return r.released(); },
      Effective(timeout));
}

namespace {

pb::GetRequest GetRequestOf(const std::vector<GetItem>& items, uint64_t timeout_us) {
  pb::GetRequest req;
  for (const GetItem& item : items) {
    pb::GetItem* g = req.add_items();
    wire::ToProto(item.ref, g->mutable_ref());
    for (const ScatterRange& r : item.ranges) wire::ToProto(r, g->add_ranges());
    g->set_arena_offset(item.arena_offset);
    g->set_arena_length(item.arena_length);
    g->set_lease(item.lease);
  }
  req.set_timeout_us(timeout_us);
  return req;
}

// Converts a get's reply of `want` items.
auto GetConverter(size_t want) {
  return [want](const pb::GetResponse& r) -> StatusOr<std::vector<GetReply>> {
    if (static_cast<size_t>(r.results_size()) != want) {
      return CountMismatch("get", r.results_size(), want);
    }
    std::vector<GetReply> out;
    for (const pb::GetResult& res : r.results()) {
      GetReply g;
      g.tier = wire::FromProto(res.tier());
      g.miss = wire::FromProto(res.miss());
      g.bytes = res.bytes();
      g.segment_sizes.assign(res.segment_sizes().begin(), res.segment_sizes().end());
      out.push_back(std::move(g));
    }
    return out;
  };
}

pb::PutRequest PutRequestOf(const std::vector<PutItem>& items, uint64_t timeout_us) {
  pb::PutRequest req;
  for (const PutItem& item : items) {
    pb::PutItem* p = req.add_items();
    wire::ToProto(item.ref, p->mutable_ref());
    p->set_parent(wire::KeyBytes(item.parent));
    p->set_extra(item.extra);
    p->mutable_tokens()->Add(item.tokens.begin(), item.tokens.end());
    p->mutable_segment_sizes()->Add(item.segment_sizes.begin(), item.segment_sizes.end());
    for (const ScatterRange& r : item.ranges) wire::ToProto(r, p->add_ranges());
    p->set_durability(wire::ToProto(item.durability));
  }
  req.set_timeout_us(timeout_us);
  return req;
}

// Converts a put's reply of `want` items.
auto PutConverter(size_t want) {
  return [want](const pb::PutResponse& r) -> StatusOr<std::vector<PutReply>> {
    if (static_cast<size_t>(r.results_size()) != want) {
      return CountMismatch("put", r.results_size(), want);
    }
    std::vector<PutReply> out;
    for (const pb::PutItemResult& res : r.results()) {
      out.push_back(PutReply{wire::FromProto(res.result()), res.message()});
    }
    return out;
  };
}

}  // namespace

Future<std::vector<GetReply>> Client::GetAsync(const std::vector<GetItem>& items, ms timeout) {
  return wire::Call<pb::GetResponse, std::vector<GetReply>>(
      *conn_, Opcode::kGet, GetRequestOf(items, TimeoutUs(Effective(timeout))),
      GetConverter(items.size()));
}

StatusOr<std::vector<GetReply>> Client::Get(const std::vector<GetItem>& items, ms timeout) {
  return wire::CallSync<pb::GetResponse, std::vector<GetReply>>(
      *conn_, Opcode::kGet, GetRequestOf(items, TimeoutUs(Effective(timeout))),
      GetConverter(items.size()), Effective(timeout));
}

Future<std::vector<PutReply>> Client::PutAsync(const std::vector<PutItem>& items, ms timeout) {
  return wire::Call<pb::PutResponse, std::vector<PutReply>>(
      *conn_, Opcode::kPut, PutRequestOf(items, TimeoutUs(Effective(timeout))),
      PutConverter(items.size()));
}

StatusOr<std::vector<PutReply>> Client::Put(const std::vector<PutItem>& items, ms timeout) {
  return wire::CallSync<pb::PutResponse, std::vector<PutReply>>(
      *conn_, Opcode::kPut, PutRequestOf(items, TimeoutUs(Effective(timeout))),
      PutConverter(items.size()), Effective(timeout));
}

StatusOr<std::vector<ExistsReply>> Client::Exists(const std::vector<KeyRef>& refs, ms timeout) {
  pb::ExistsRequest req;
  for (const KeyRef& r : refs) wire::ToProto(r, req.add_items());
  size_t want = refs.size();
  return wire::CallSync<pb::ExistsResponse, std::vector<ExistsReply>>(
      *conn_, Opcode::kExists, req,
      [want](const pb::ExistsResponse& r) -> StatusOr<std::vector<ExistsReply>> {
        if (static_cast<size_t>(r.results_size()) != want) {
          return CountMismatch("exists", r.results_size(), want);
        }
        std::vector<ExistsReply> out;
        for (const pb::ExistsResult& res : r.results()) {
          ExistsReply e;
          e.exists = res.exists();
          e.tier = wire::FromProto(res.tier());
          e.value_size = res.value_size();
          e.segment_sizes.assign(res.segment_sizes().begin(), res.segment_sizes().end());
          out.push_back(std::move(e));
        }
        return out;
      },
      Effective(timeout));
}

StatusOr<std::vector<bool>> Client::Delete(const std::vector<KeyRef>& refs, ms timeout) {
  pb::DeleteRequest req;
  for (const KeyRef& r : refs) wire::ToProto(r, req.add_items());
  size_t want = refs.size();
  return wire::CallSync<pb::DeleteResponse, std::vector<bool>>(
      *conn_, Opcode::kDelete, req,
      [want](const pb::DeleteResponse& r) -> StatusOr<std::vector<bool>> {
        if (static_cast<size_t>(r.deleted_size()) != want) {
          return CountMismatch("delete", r.deleted_size(), want);
        }
        return std::vector<bool>(r.deleted().begin(), r.deleted().end());
      },
      Effective(timeout));
}

StatusOr<Stats> Client::GetStats(ms timeout) {
  pb::StatsRequest req;
  return wire::CallSync<pb::StatsResponse, Stats>(
      *conn_, Opcode::kStats, req,
      [](const pb::StatsResponse& r) -> StatusOr<Stats> { return wire::FromProto(r); },
      Effective(timeout));
}

Status Client::Ping(ms timeout) {
  pb::PingRequest req;
  return wire::CallSync<pb::PingResponse, bool>(
             *conn_, Opcode::kPing, req,
             [](const pb::PingResponse&) -> StatusOr<bool> { return true; }, Effective(timeout))
      .status();
}

}  // namespace tw::client
