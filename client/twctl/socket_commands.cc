// twctl commands on twd's client socket: stat, lookup, put, get, delete. Each connects as an
// ordinary client (hello with a small memfd arena, declaring the namespace it names), so what
// they see is what an inference process sees, tenancy included. get and delete given a key
// alone first ask the admin socket which namespace the chunk is stored under (twd knows its
// fields once a client declared it, and keeps them across restarts), then declare that
// namespace on the client socket like any client: the tenant check is the ordinary one.
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdlib>
#include <iostream>
#include <memory>

#include "commands.h"
#include "inputs.h"
#include "tw/client/admin_client.h"
#include "tw/client/client.h"
#include "tw/common/keys.h"
#include "tw/common/strings.h"

namespace tw::twctl {
namespace {

using client::Client;
using client::ClientOptions;

constexpr const char* kDefaultSocket = "/run/tokenwarehouse/twd.sock";

struct SocketOptions {
  std::string socket;
  uint32_t timeout_ms = 10000;
  std::string namespace_file;
  std::string tokens_file;
  std::string extras_file;
  std::string value_file;
  std::string durability = "memory";
  std::string key_hex;
  std::string out_file;
  std::string admin_socket;  // "" = next to --socket (twd's own default), or $TW_ADMIN_SOCKET
  bool json = false;
};

// "1.5 GiB": for people, not for parsing back.
std::string HumanBytes(uint64_t n) {
  static constexpr const char* kUnits[] = {"B", "KiB", "MiB", "GiB", "TiB", "PiB"};
  double v = static_cast<double>(n);
  int u = 0;
  while (v >= 1024 && u < 5) {
    v /= 1024;
    ++u;
  }
  char buf[32];
  snprintf(buf, sizeof buf, u == 0 ? "%.0f %s" : "%.1f %s", v, kUnits[u]);
  return buf;
}

std::string DefaultSocket() {
  const char* env = std::getenv("TW_SOCKET");
  return env != nullptr && *env != '\0' ? env : kDefaultSocket;
}

// --namespace, --tokens, --extras: a token sequence under a namespace (lookup, put).
void AddTokenSequenceOptions(CLI::App* cmd, SocketOptions* o) {
  cmd->add_option("--namespace", o->namespace_file, "JSON file with the nine namespace fields")
      ->required();
  cmd->add_option("--tokens", o->tokens_file, "file of whitespace-separated token ids")->required();
  cmd->add_option("--extras", o->extras_file, "one hex line of extra bytes per chunk");
}

void AddSocketOption(CLI::App* cmd, SocketOptions* o) {
  o->socket = DefaultSocket();
  cmd->add_option(
      "--socket", o->socket,
      "twd's client socket (default: $TW_SOCKET or " + std::string(kDefaultSocket) + ")");
  cmd->add_option("--timeout-ms", o->timeout_ms, "connect and request timeout in milliseconds")
      ->check(CLI::Range(1u, 3600000u));
}

int Error(std::string_view cmd, const Status& s) {
  std::cerr << "twctl " << cmd << ": " << s.message() << "\n";
  return 1;
}

StatusOr<std::unique_ptr<Client>> Connect(const SocketOptions& o, std::vector<Namespace> ns,
                                          uint64_t arena_size) {
  ClientOptions c;
  c.socket_path = o.socket;
  c.arena_size = std::max<uint64_t>(arena_size, 1);
  c.namespaces = std::move(ns);
  c.timeout = std::chrono::milliseconds(o.timeout_ms);
  c.client_name = "twctl";
  return Client::Connect(std::move(c));
}

// The namespace (normalised), its chunk keys and the token ids of the file arguments.
struct Chain {
  Namespace ns;
  Key digest;
  std::vector<uint32_t> tokens;
  std::vector<std::string> extras;
  std::vector<Key> keys;
  uint32_t chunk_tokens = 0;
};

StatusOr<Chain> ReadChain(const SocketOptions& o) {
  Chain c;
  TW_ASSIGN_OR_RETURN(Namespace raw, ReadNamespaceFile(o.namespace_file));
  auto canonical = NormalizeNamespace(raw);
  if (!canonical.ok()) return canonical.status().WithPrefix(o.namespace_file);
  c.ns = std::move(*canonical);
  c.digest = NamespaceDigest(c.ns);
  TW_ASSIGN_OR_RETURN(c.chunk_tokens, ChunkTokens(c.ns));
  TW_ASSIGN_OR_RETURN(c.tokens, ReadTokensFile(o.tokens_file));
  if (!o.extras_file.empty()) {
    TW_ASSIGN_OR_RETURN(c.extras, ReadExtrasFile(o.extras_file));
  }
  TW_ASSIGN_OR_RETURN(c.keys, ChunkKeys(c.ns, c.tokens, c.extras));
  return c;
}

StatusOr<Key> ParseKey(const std::string& hex) {
  auto k = Key::FromHex(hex);
  if (!k.ok()) return k.status().WithPrefix("--key");
  return k;
}

StatusOr<Namespace> ReadCanonicalNamespace(const std::string& path) {
  TW_ASSIGN_OR_RETURN(Namespace raw, ReadNamespaceFile(path));
  auto canonical = NormalizeNamespace(raw);
  if (!canonical.ok()) return canonical.status().WithPrefix(path);
  return canonical;
}

// The admin socket that goes with the client socket: --admin-socket, else
// $TW_ADMIN_SOCKET, else twd-admin.sock beside the client socket (where twd puts it).
std::string AdminSocketOf(const SocketOptions& o) {
  if (!o.admin_socket.empty()) return o.admin_socket;
  const char* env = std::getenv("TW_ADMIN_SOCKET");
  if (env != nullptr && *env != '\0') return env;
  const size_t slash = o.socket.rfind('/');
  return (slash == std::string::npos ? std::string() : o.socket.substr(0, slash + 1)) +
         "twd-admin.sock";
}

// The namespace a key-addressed command works in: --namespace when given, else the one the
// chunk is stored under (admin socket). nullopt when the chunk is not stored.
StatusOr<std::optional<Namespace>> KeyNamespace(const SocketOptions& o, const Key& key) {
  if (!o.namespace_file.empty()) {
    TW_ASSIGN_OR_RETURN(Namespace ns, ReadCanonicalNamespace(o.namespace_file));
    return std::optional<Namespace>(std::move(ns));
  }
  const std::string admin = AdminSocketOf(o);
  auto a = client::AdminClient::Connect(admin, std::chrono::milliseconds(o.timeout_ms));
  if (!a.ok()) {
    return a.status().WithPrefix(StrCat("without --namespace the key's namespace is looked up on ",
                                        "the admin socket ", admin));
  }
  TW_ASSIGN_OR_RETURN(std::optional<client::ExportedChunk> chunk, (*a)->FindChunk(key));
  if (!chunk) return std::optional<Namespace>();
  if (!chunk->fields) {
    return FailedPreconditionError(
        StrCat("chunk ", key.Hex().substr(0, 16), "… is stored under namespace ",
               chunk->namespace_digest.Hex().substr(0, 16),
               "…, whose fields twd does not know (no client has declared it since twd's ",
               "namespace registry was lost or, on a block device, since twd started): ",
               "pass --namespace"));
  }
  return chunk->fields;
}

void AddKeyOptions(CLI::App* cmd, SocketOptions* o) {
  cmd->add_option("--key", o->key_hex, "the chunk key, 64 hex digits")->required();
  cmd->add_option("--namespace", o->namespace_file,
                  "JSON file of the chunk's namespace (default: the namespace the chunk is "
                  "stored under, asked of the admin socket)");
  cmd->add_option("--admin-socket", o->admin_socket,
                  "twd's admin socket, used without --namespace (default: $TW_ADMIN_SOCKET or "
                  "twd-admin.sock beside --socket)");
}

// ---- stat ----------------------------------------------------------------------------------
int RunStat(const SocketOptions& o) {
  auto c = Connect(o, {}, 1);
  if (!c.ok()) return Error("stat", c.status());
  auto s = (*c)->GetStats();
  if (!s.ok()) return Error("stat", s.status());
  if (o.json) {
    std::cout << client::StatsToJson(*s, 2) << "\n";
    return 0;
  }
  // server_version names twd and the protocol versions it speaks; then this connection's.
  std::cout << s->server_version << ", this connection protocol v" << s->version
            << (s->tenant.empty() ? "" : ", tenant " + s->tenant) << "\n"
            << "connected clients: " << s->connected_clients << ", live leases: " << s->live_leases
            << "\n";
  if (!s->gpu.empty()) std::cout << s->gpu << "\n";
  for (const auto& t : s->tiers) {
    uint64_t misses = 0;
    for (const auto& [reason, n] : t.misses) misses += n;
    std::cout << ToString(t.tier) << ": " << t.chunks << " chunks, " << HumanBytes(t.used_bytes)
              << " used of " << HumanBytes(t.capacity_bytes) << "; hits " << t.hits << ", misses "
              << misses;
    for (const auto& [reason, n] : t.misses) {
      if (n != 0) std::cout << " (" << reason << " " << n << ")";
    }
    std::cout << "; read " << HumanBytes(t.bytes_read) << ", written "
              << HumanBytes(t.bytes_written) << ", evictions " << t.evictions << "\n";
  }
  uint64_t misses = 0;
  for (const auto& [reason, n] : s->get_misses) misses += n;
  std::cout << "gets: hits " << s->get_hits << ", misses " << misses;
  for (const auto& [reason, n] : s->get_misses) {
    if (n != 0) std::cout << " (" << reason << " " << n << ")";
  }
  std::cout << "\n";
  std::cout << "puts:";
  for (const auto& [result, n] : s->puts) std::cout << " " << result << " " << n;
  std::cout << "\n";
  return 0;
}

// ---- lookup --------------------------------------------------------------------------------
int RunLookup(const SocketOptions& o) {
  auto chain = ReadChain(o);
  if (!chain.ok()) return Error("lookup", chain.status());
  auto c = Connect(o, {chain->ns}, 1);
  if (!c.ok()) return Error("lookup", c.status());
  auto r = (*c)->LookupChainOf(chain->digest, chain->keys);
  if (!r.ok()) return Error("lookup", r.status());
  std::cout << "prefix " << r->prefix << "/" << chain->keys.size() << " chunks ("
            << r->prefix * chain->chunk_tokens << " of " << chain->tokens.size()
            << " tokens cached)";
  if (r->prefix < chain->keys.size())
    std::cout << "; chunk " << r->prefix << ": " << ToString(r->miss);
  std::cout << "\n";
  for (size_t j = 0; j < r->prefix && !r->tiers.empty() && j < r->tiers[0].size(); ++j) {
    std::cout << j << " " << chain->keys[j].Hex() << " " << ToString(r->tiers[0][j]) << "\n";
  }
  return 0;
}

// ---- put -----------------------------------------------------------------------------------
int RunPut(const SocketOptions& o) {
  auto chain = ReadChain(o);
  if (!chain.ok()) return Error("put", chain.status());
  if (chain->keys.empty()) {
    return Error("put", InvalidArgumentError(StrCat("the token file holds ", chain->tokens.size(),
                                                    " tokens: fewer than one chunk of ",
                                                    chain->chunk_tokens)));
  }
  client::Durability durability;
  if (o.durability == "memory") {
    durability = client::Durability::kMemory;
  } else if (o.durability == "disk") {
    durability = client::Durability::kDisk;
  } else {
    return Error("put", InvalidArgumentError("--durability must be memory or disk"));
  }
  int fd = open(o.value_file.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return Error("put", ErrnoStatus(errno, StrCat("open ", o.value_file)));
  struct stat st;
  if (fstat(fd, &st) != 0 || st.st_size <= 0) {
    close(fd);
    return Error("put", InvalidArgumentError(StrCat(o.value_file, ": empty or unreadable")));
  }
  const uint64_t size = static_cast<uint64_t>(st.st_size);
  auto c = Connect(o, {chain->ns}, size);
  if (!c.ok()) {
    close(fd);
    return Error("put", c.status());
  }
  // The value is read straight into the arena: twd copies it from there.
  uint64_t done = 0;
  while (done < size) {
    ssize_t n = read(fd, (*c)->arena_data() + done, size - done);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) {
      close(fd);
      return Error("put", ErrnoStatus(n < 0 ? errno : EIO, StrCat("read ", o.value_file)));
    }
    done += static_cast<uint64_t>(n);
  }
  close(fd);
  const size_t j = chain->keys.size() - 1;  // the last full chunk
  client::PutItem p;
  p.ref = {chain->keys[j], chain->digest};
  p.parent = j == 0 ? chain->digest : chain->keys[j - 1];
  if (j < chain->extras.size()) p.extra = chain->extras[j];
  p.tokens.assign(chain->tokens.begin() + static_cast<ptrdiff_t>(j * chain->chunk_tokens),
                  chain->tokens.begin() + static_cast<ptrdiff_t>((j + 1) * chain->chunk_tokens));
  p.segment_sizes = {size};
  p.ranges = {client::ScatterRange{0, 0, size, 0}};
  p.durability = durability;
  auto r = (*c)->Put({p});
  if (!r.ok()) return Error("put", r.status());
  const client::PutReply& reply = (*r)[0];
  if (reply.result != client::PutResult::kStored && reply.result != client::PutResult::kExists) {
    std::cerr << "twctl put: " << ToString(reply.result)
              << (reply.message.empty() ? "" : ": " + reply.message) << "\n";
    return 1;
  }
  std::cout << chain->keys[j].Hex() << "\n";
  std::cerr << "twctl put: " << ToString(reply.result) << " chunk " << j << " (" << HumanBytes(size)
            << ", durability " << o.durability << ")\n";
  return 0;
}

// ---- get -----------------------------------------------------------------------------------
int RunGet(const SocketOptions& o) {
  auto key = ParseKey(o.key_hex);
  if (!key.ok()) return Error("get", key.status());
  auto found = KeyNamespace(o, *key);
  if (!found.ok()) return Error("get", found.status());
  if (!found->has_value()) {
    std::cerr << "twctl get: miss: " << ToString(client::MissReason::kAbsent) << "\n";
    return 3;
  }
  const Namespace& ns = **found;
  client::KeyRef ref{*key, NamespaceDigest(ns)};
  // The value's size first (exists), then an arena that holds it.
  auto probe = Connect(o, {ns}, 1);
  if (!probe.ok()) return Error("get", probe.status());
  auto e = (*probe)->Exists({ref});
  if (!e.ok()) return Error("get", e.status());
  uint64_t size = (*e)[0].exists ? (*e)[0].value_size : 0;
  std::unique_ptr<Client> c = std::move(*probe);
  if (size > c->arena_size()) {
    c.reset();
    auto bigger = Connect(o, {ns}, size);
    if (!bigger.ok()) return Error("get", bigger.status());
    c = std::move(*bigger);
  }
  client::GetItem g;
  g.ref = ref;
  g.arena_offset = 0;
  g.arena_length = c->arena_size();
  auto r = c->Get({g});
  if (!r.ok()) return Error("get", r.status());
  const client::GetReply& reply = (*r)[0];
  if (reply.miss != client::MissReason::kNone) {
    std::cerr << "twctl get: miss: " << ToString(reply.miss) << "\n";
    return 3;
  }
  int fd = o.out_file == "-"
               ? dup(STDOUT_FILENO)
               : open(o.out_file.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) return Error("get", ErrnoStatus(errno, StrCat("open ", o.out_file)));
  uint64_t done = 0;
  while (done < reply.bytes) {
    ssize_t n = write(fd, c->arena_data() + done, reply.bytes - done);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) {
      close(fd);
      return Error("get", ErrnoStatus(errno, StrCat("write ", o.out_file)));
    }
    done += static_cast<uint64_t>(n);
  }
  close(fd);
  std::cerr << "twctl get: hit from " << ToString(reply.tier) << ", " << HumanBytes(reply.bytes)
            << "\n";
  return 0;
}

// ---- delete --------------------------------------------------------------------------------
int RunDelete(const SocketOptions& o) {
  auto key = ParseKey(o.key_hex);
  if (!key.ok()) return Error("delete", key.status());
  auto found = KeyNamespace(o, *key);
  if (!found.ok()) return Error("delete", found.status());
  if (!found->has_value()) {
    std::cout << "not stored\n";
    return 0;
  }
  const Namespace& ns = **found;
  auto c = Connect(o, {ns}, 1);
  if (!c.ok()) return Error("delete", c.status());
  auto r = (*c)->Delete({client::KeyRef{*key, NamespaceDigest(ns)}});
  if (!r.ok()) return Error("delete", r.status());
  std::cout << ((*r)[0] ? "deleted" : "not stored") << "\n";
  return 0;
}

}  // namespace

void RegisterSocketCommands(CLI::App& app, int* exit_code) {
  {
    auto o = std::make_shared<SocketOptions>();
    CLI::App* cmd = app.add_subcommand("stat",
                                       "Show twd's counters: tiers, hits, misses by "
                                       "reason, put results (client socket)");
    AddSocketOption(cmd, o.get());
    cmd->add_flag("--json", o->json, "print the counters as JSON");
    cmd->callback([o, exit_code] { *exit_code = RunStat(*o); });
  }
  {
    auto o = std::make_shared<SocketOptions>();
    CLI::App* cmd = app.add_subcommand(
        "lookup",
        "Show how much of a token sequence is cached: the longest stored prefix of "
        "its chunk keys, the tier of each chunk, and why the next one is missing");
    AddSocketOption(cmd, o.get());
    AddTokenSequenceOptions(cmd, o.get());
    cmd->callback([o, exit_code] { *exit_code = RunLookup(*o); });
  }
  {
    auto o = std::make_shared<SocketOptions>();
    CLI::App* cmd = app.add_subcommand(
        "put",
        "Store FILE as the value of the last full chunk of a token sequence (its parent "
        "derived from the chunks before it) and print the chunk's key");
    AddSocketOption(cmd, o.get());
    AddTokenSequenceOptions(cmd, o.get());
    cmd->add_option("--file", o->value_file, "the value bytes")->required();
    cmd->add_option("--durability", o->durability, "memory (default) or disk")
        ->check(CLI::IsMember({"memory", "disk"}));
    cmd->callback([o, exit_code] { *exit_code = RunPut(*o); });
  }
  {
    auto o = std::make_shared<SocketOptions>();
    CLI::App* cmd = app.add_subcommand(
        "get",
        "Read a chunk's value into a file. Exit 0 on a hit; exit 3 on a miss, printing "
        "the reason (absent, evicted, corrupt, ...)");
    AddSocketOption(cmd, o.get());
    AddKeyOptions(cmd, o.get());
    cmd->add_option("--out", o->out_file, "output file (\"-\" = stdout)")->required();
    cmd->callback([o, exit_code] { *exit_code = RunGet(*o); });
  }
  {
    auto o = std::make_shared<SocketOptions>();
    CLI::App* cmd = app.add_subcommand("delete", "Remove a chunk from every tier");
    AddSocketOption(cmd, o.get());
    AddKeyOptions(cmd, o.get());
    cmd->callback([o, exit_code] { *exit_code = RunDelete(*o); });
  }
}

}  // namespace tw::twctl
