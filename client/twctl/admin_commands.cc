// twctl commands on twd's admin socket (mode 0600): namespaces, evict, export, peers. Token ids are
// prompts, so these never run on the client socket.
#include <cstdio>
#include <cstdlib>
#include <iostream>
#include <iterator>
#include <memory>
#include <nlohmann/json.hpp>

#include "commands.h"
#include "tw/client/admin_client.h"
#include "tw/common/keys.h"

namespace tw::twctl {
namespace {

using client::AdminClient;

constexpr const char* kDefaultAdminSocket = "/run/tokenwarehouse/twd-admin.sock";

struct AdminOptions {
  std::string admin_socket;
  uint32_t timeout_ms = 10000;
  std::string digest_hex;
  uint64_t max_chunks = 0;
  bool json = false;
};

void AddAdminSocketOption(CLI::App* cmd, AdminOptions* o) {
  const char* env = std::getenv("TW_ADMIN_SOCKET");
  o->admin_socket = env != nullptr && *env != '\0' ? env : kDefaultAdminSocket;
  cmd->add_option(
      "--admin-socket", o->admin_socket,
      "twd's admin socket (default: $TW_ADMIN_SOCKET or " + std::string(kDefaultAdminSocket) + ")");
  cmd->add_option("--timeout-ms", o->timeout_ms, "connect and request timeout in milliseconds")
      ->check(CLI::Range(1u, 3600000u));
}

int Error(std::string_view cmd, const Status& s) {
  std::cerr << "twctl " << cmd << ": " << s.message() << "\n";
  return 1;
}

StatusOr<std::unique_ptr<AdminClient>> Connect(const AdminOptions& o) {
  return AdminClient::Connect(o.admin_socket, std::chrono::milliseconds(o.timeout_ms));
}

int RunNamespaces(const AdminOptions& o) {
  auto c = Connect(o);
  if (!c.ok()) return Error("namespaces", c.status());
  auto r = (*c)->Namespaces();
  if (!r.ok()) return Error("namespaces", r.status());
  for (const auto& n : *r) {
    if (o.json) {
      nlohmann::ordered_json j;
      j["namespace_digest"] = n.digest.Hex();
      j["chunks"] = n.chunks;
      j["bytes"] = n.bytes;
      j["quota"] = n.quota;
      if (n.fields) {
        nlohmann::ordered_json f;
        for (size_t i = 0; i < kNamespaceFieldCount; ++i) {
          f[std::string(kNamespaceFieldNames[i])] = (*n.fields).*kNamespaceFields[i];
        }
        j["namespace"] = f;
      } else {
        j["namespace"] = nullptr;
      }
      std::cout << j.dump() << "\n";
    } else {
      std::cout << n.digest.Hex() << " chunks=" << n.chunks << " bytes=" << n.bytes
                << " quota=" << n.quota;
      if (n.fields) {
        std::cout << " model=" << n.fields->model << " tenant=" << n.fields->tenant
                  << " parallel=" << n.fields->parallel;
      }
      std::cout << "\n";
    }
  }
  return 0;
}

int RunEvict(const AdminOptions& o) {
  auto digest = Key::FromHex(o.digest_hex);
  if (!digest.ok()) return Error("evict", digest.status().WithPrefix("--namespace"));
  auto c = Connect(o);
  if (!c.ok()) return Error("evict", c.status());
  auto r = (*c)->EvictNamespace(*digest);
  if (!r.ok()) return Error("evict", r.status());
  std::cout << "evicted " << *r << " chunks\n";
  return 0;
}

int RunExport(const AdminOptions& o) {
  std::optional<Key> digest;
  if (!o.digest_hex.empty()) {
    auto d = Key::FromHex(o.digest_hex);
    if (!d.ok()) return Error("export", d.status().WithPrefix("--namespace"));
    digest = *d;
  }
  auto c = Connect(o);
  if (!c.ok()) return Error("export", c.status());
  Status s = (*c)->Export(digest, o.max_chunks, [](const client::ExportedChunk& chunk) {
    std::cout << client::ExportedChunkToJson(chunk) << "\n";
  });
  std::cout << std::flush;
  if (!s.ok()) return Error("export", s);
  return 0;
}

std::string HumanBytes(uint64_t b) {
  const char* units[] = {"B", "KiB", "MiB", "GiB", "TiB"};
  double v = static_cast<double>(b);
  size_t u = 0;
  while (v >= 1024 && u + 1 < std::size(units)) {
    v /= 1024;
    ++u;
  }
  char buf[32];
  std::snprintf(buf, sizeof buf, u == 0 ? "%.0f %s" : "%.1f %s", v, units[u]);
  return buf;
}

int RunPeers(const AdminOptions& o) {
  auto c = Connect(o);
  if (!c.ok()) return Error("peers", c.status());
  auto r = (*c)->Peers();
  if (!r.ok()) return Error("peers", r.status());
  if (o.json) {
    std::cout << client::PeersInfoToJson(*r) << "\n";
    return 0;
  }
  if (!r->enabled) {
    std::cout << "the mesh is off (mesh.enabled: false)\n";
    return 0;
  }
  std::cout << "node " << r->node << ", transport " << r->transport << ", peers file version "
            << r->membership_version << ", " << r->directory_keys << " directory keys\n";
  for (const client::PeerInfo& p : r->peers) {
    std::cout << p.node << "  " << (p.up ? "up" : "down") << "  " << p.transport << "  "
              << p.fetches << " fetches  " << p.failures << " failures  in "
              << HumanBytes(p.bytes_in) << "  out " << HumanBytes(p.bytes_out);
    if (!p.last_error.empty()) std::cout << "  last error: " << p.last_error;
    std::cout << "\n";
  }
  return 0;
}

}  // namespace

void RegisterAdminCommands(CLI::App& app, int* exit_code) {
  {
    auto o = std::make_shared<AdminOptions>();
    CLI::App* cmd =
        app.add_subcommand("namespaces",
                           "List the namespaces with stored chunks: digest, chunks, bytes, quota "
                           "(admin socket)");
    AddAdminSocketOption(cmd, o.get());
    cmd->add_flag("--json", o->json, "one JSON object per line");
    cmd->callback([o, exit_code] { *exit_code = RunNamespaces(*o); });
  }
  {
    auto o = std::make_shared<AdminOptions>();
    CLI::App* cmd =
        app.add_subcommand("evict", "Remove every chunk of one namespace (admin socket)");
    AddAdminSocketOption(cmd, o.get());
    cmd->add_option("--namespace", o->digest_hex, "the namespace digest, 64 hex digits")
        ->required();
    cmd->callback([o, exit_code] { *exit_code = RunEvict(*o); });
  }
  {
    auto o = std::make_shared<AdminOptions>();
    CLI::App* cmd = app.add_subcommand(
        "export",
        "Print the stored chunks as JSON lines: namespace fields, key, parent key, "
        "token ids, extra bytes (admin socket; for rebuilding prefixes)");
    AddAdminSocketOption(cmd, o.get());
    cmd->add_option("--namespace", o->digest_hex, "only this namespace digest (64 hex digits)");
    cmd->add_option("--max-chunks", o->max_chunks, "stop after this many chunks (0 = all)");
    cmd->callback([o, exit_code] { *exit_code = RunExport(*o); });
  }
  {
    auto o = std::make_shared<AdminOptions>();
    CLI::App* cmd = app.add_subcommand(
        "peers",
        "Show the mesh's peers: up/down, transport, fetches, failures, bytes in and out, last "
        "error (admin socket)");
    AddAdminSocketOption(cmd, o.get());
    cmd->add_flag("--json", o->json, "one JSON object");
    cmd->callback([o, exit_code] { *exit_code = RunPeers(*o); });
  }
}

}  // namespace tw::twctl
