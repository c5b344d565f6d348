#include "tw/client/admin_client.h"

#include <nlohmann/json.hpp>

#include "connection.h"
#include "tw/common/strings.h"
#include "wire.h"

namespace tw::client {

using protocol::Opcode;
namespace pb = ::tokenwarehouse::v1;

namespace {

nlohmann::ordered_json NamespaceJson(const std::optional<Namespace>& ns) {
  if (!ns) return nullptr;
  nlohmann::ordered_json j;
  for (size_t i = 0; i < kNamespaceFieldCount; ++i) {
    j[std::string(kNamespaceFieldNames[i])] = (*ns).*kNamespaceFields[i];
  }
  return j;
}

}  // namespace

std::string ExportedChunkToJson(const ExportedChunk& c) {
  nlohmann::ordered_json j;
  j["namespace"] = NamespaceJson(c.fields);
  j["namespace_digest"] = c.namespace_digest.Hex();
  j["key"] = c.key.Hex();
  j["parent"] = c.parent.Hex();
  j["tokens"] = c.tokens;
  j["extra"] = HexEncode({reinterpret_cast<const uint8_t*>(c.extra.data()), c.extra.size()});
  j["value_size"] = c.value_size;
  j["tier"] = ToString(c.tier);
  j["created_unix_ms"] = c.created_unix_ms;
  return j.dump();
}

StatusOr<std::unique_ptr<AdminClient>> AdminClient::Connect(const std::string& path, ms timeout) {
  TW_ASSIGN_OR_RETURN(auto conn, Connection::Connect(path, timeout, 16));
  return std::unique_ptr<AdminClient>(new AdminClient(std::move(conn), timeout));
}

AdminClient::AdminClient(std::unique_ptr<Connection> conn, ms timeout)
    : conn_(std::move(conn)), timeout_(timeout) {}

AdminClient::~AdminClient() { conn_->Close(); }

StatusOr<std::vector<NamespaceInfo>> AdminClient::Namespaces() {
  pb::NamespacesRequest req;
  Connection::CallerReads caller_reads;  // this thread reads the reply
  auto f = wire::Call<pb::NamespacesResponse, std::vector<NamespaceInfo>>(
      *conn_, Opcode::kAdminNamespaces, req,
      [](const pb::NamespacesResponse& r) -> StatusOr<std::vector<NamespaceInfo>> {
        std::vector<NamespaceInfo> out;
        for (const pb::NamespaceInfo& n : r.namespaces()) {
          NamespaceInfo i;
          TW_ASSIGN_OR_RETURN(i.digest, wire::KeyFromWire(n.namespace_digest(), "digest"));
          i.chunks = n.chunks();
          i.bytes = n.bytes();
          i.quota = n.quota();
          if (n.fields_known()) i.fields = protocol::FromProto(n.fields());
          out.push_back(std::move(i));
        }
        return out;
      });
  return wire::Wait(*conn_, f, timeout_);
}

StatusOr<uint64_t> AdminClient::EvictNamespace(const Key& digest) {
  pb::EvictNamespaceRequest req;
  req.set_namespace_digest(wire::KeyBytes(digest));
  Connection::CallerReads caller_reads;  // this thread reads the reply
  auto f = wire::Call<pb::EvictNamespaceResponse, uint64_t>(
      *conn_, Opcode::kAdminEvictNamespace, req,
      [](const pb::EvictNamespaceResponse& r) -> StatusOr<uint64_t> { return r.evicted(); });
  return wire::Wait(*conn_, f, timeout_);
}

namespace {

// Sends an export request and hands every chunk of the streamed reply to `on_chunk`.
Status StreamExport(Connection& conn, const pb::ExportRequest& req,
                    const std::function<void(const ExportedChunk&)>& on_chunk) {
  // The reply is a stream of frames: the completion runs once per frame; the last one (no
  // MORE flag) completes the promise.
  auto done = std::make_shared<std::promise<Status>>();
  auto future = done->get_future();
  auto failed = std::make_shared<Status>();
  Status sent = conn.Send(
      Opcode::kAdminExport, protocol::FrameMessage(req),
      [done, failed, on_chunk](StatusOr<ReplyFrame> reply) {
        Status s = reply.ok() ? wire::ErrorOf(*reply) : reply.status();
        pb::ExportResponse resp;
        if (s.ok()) s = protocol::ParseBody(reply->body, &resp);
        if (s.ok() && failed->ok()) {
          for (const pb::ExportedChunk& c : resp.chunks()) {
            ExportedChunk e;
            auto key = wire::KeyFromWire(c.key(), "key");
            auto parent = wire::KeyFromWire(c.parent(), "parent");
            auto ns = wire::KeyFromWire(c.namespace_digest(), "namespace digest");
            if (!key.ok() || !parent.ok() || !ns.ok()) {
              *failed = !key.ok() ? key.status() : !parent.ok() ? parent.status() : ns.status();
              break;
            }
            e.key = *key;
            e.parent = *parent;
            e.namespace_digest = *ns;
            if (c.fields_known()) e.fields = protocol::FromProto(c.fields());
            e.tokens.assign(c.tokens().begin(), c.tokens().end());
            e.extra = c.extra();
            e.value_size = c.value_size();
            e.tier = wire::FromProto(c.tier());
            e.created_unix_ms = c.created_unix_ms();
            on_chunk(e);
          }
        }
        if (!s.ok() && failed->ok()) *failed = s;
        if (!reply.ok() || !reply->more()) done->set_value(*failed);
      });
  if (!sent.ok()) return sent;
  // An export may be long: no deadline on the whole stream beyond the connection's life.
  return future.get();
}

}  // namespace

Status AdminClient::Export(const std::optional<Key>& digest, uint64_t max_chunks,
                           const std::function<void(const ExportedChunk&)>& on_chunk) {
  pb::ExportRequest req;
  if (digest) req.set_namespace_digest(wire::KeyBytes(*digest));
  req.set_max_chunks(max_chunks);
  return StreamExport(*conn_, req, on_chunk);
}

StatusOr<std::optional<ExportedChunk>> AdminClient::FindChunk(const Key& key) {
  pb::ExportRequest req;
  req.set_key(wire::KeyBytes(key));
  std::optional<ExportedChunk> found;
  TW_RETURN_IF_ERROR(StreamExport(*conn_, req, [&](const ExportedChunk& c) {
    if (c.key == key) found = c;
  }));
  return found;
}

std::string PeersInfoToJson(const PeersInfo& p) {
  nlohmann::ordered_json j;
  j["enabled"] = p.enabled;
  j["node"] = p.node;
  j["transport"] = p.transport;
  j["membership_version"] = p.membership_version;
  j["directory_keys"] = p.directory_keys;
  j["announce_batches_failed"] = p.announce_batches_failed;
  auto peers = nlohmann::ordered_json::array();
  for (const PeerInfo& i : p.peers) {
    nlohmann::ordered_json o;
    o["node"] = i.node;
    o["up"] = i.up;
    o["transport"] = i.transport;
    o["fetches"] = i.fetches;
    o["failures"] = i.failures;
    o["bytes_in"] = i.bytes_in;
    o["bytes_out"] = i.bytes_out;
    o["last_error"] = i.last_error;
    peers.push_back(std::move(o));
  }
  j["peers"] = std::move(peers);
  return j.dump();
}

StatusOr<PeersInfo> AdminClient::Peers() {
  pb::AdminPeersRequest req;
  Connection::CallerReads caller_reads;  // this thread reads the reply
  auto f = wire::Call<pb::AdminPeersResponse, PeersInfo>(
      *conn_, Opcode::kAdminPeers, req, [](const pb::AdminPeersResponse& r) -> StatusOr<PeersInfo> {
        PeersInfo p;
        p.enabled = r.enabled();
        p.node = r.node();
        p.transport = r.transport();
        p.membership_version = r.membership_version();
        p.directory_keys = r.directory_keys();
        p.announce_batches_failed = r.announce_batches_failed();
        for (const auto& l : r.peers()) {
          p.peers.push_back({l.node(), l.up(), l.transport(), l.fetches(), l.failures(),
                             l.bytes_in(), l.bytes_out(), l.last_error()});
        }
        return p;
      });
  return wire::Wait(*conn_, f, timeout_);
}

StatusOr<std::pair<Stats, std::string>> AdminClient::GetStats() {
  pb::AdminStatsRequest req;
  Connection::CallerReads caller_reads;  // this thread reads the reply
  auto f = wire::Call<pb::AdminStatsResponse, std::pair<Stats, std::string>>(
      *conn_, Opcode::kAdminStats, req,
      [](const pb::AdminStatsResponse& r) -> StatusOr<std::pair<Stats, std::string>> {
        return std::make_pair(wire::FromProto(r.stats()), r.metrics_text());
      });
  return wire::Wait(*conn_, f, timeout_);
}

}  // namespace tw::client
