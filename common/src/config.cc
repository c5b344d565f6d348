#include "tw/common/config.h"

#include <yaml-cpp/yaml.h>

#include <fstream>
#include <functional>
#include <set>
#include <sstream>

#include "tw/common/keys.h"
#include "tw/common/log.h"
#include "tw/common/strings.h"
#include "tw/common/units.h"

namespace tw::config {
namespace {

template <typename E>
struct EnumName {
  E value;
  std::string_view name;
};

constexpr EnumName<Durability> kDurability[] = {{Durability::kMemory, "memory"},
                                                {Durability::kDisk, "disk"}};
constexpr EnumName<AdmissionPolicy> kAdmission[] = {
    {AdmissionPolicy::kAll, "all"},
    {AdmissionPolicy::kSecondSight, "second_sight"},
    {AdmissionPolicy::kWriteBudget, "write_budget"}};
constexpr EnumName<DramEviction> kEviction[] = {{DramEviction::kS3Fifo, "s3fifo"},
                                                {DramEviction::kLru, "lru"}};
constexpr EnumName<ReclaimOrder> kReclaim[] = {{ReclaimOrder::kFifo, "fifo"},
                                               {ReclaimOrder::kLru, "lru"}};
constexpr EnumName<Transport> kTransport[] = {
    {Transport::kTcp, "tcp"}, {Transport::kRdma, "rdma"}, {Transport::kAuto, "auto"}};
constexpr EnumName<CuFileMode> kCuFile[] = {
    {CuFileMode::kAuto, "auto"}, {CuFileMode::kOn, "on"}, {CuFileMode::kOff, "off"}};

template <typename E, size_t N>
std::string_view NameOf(const EnumName<E> (&table)[N], E v) {
  for (const auto& e : table) {
    if (e.value == v) return e.name;
  }
  return "unknown";
}

template <typename E, size_t N>
StatusOr<E> ParseEnum(const EnumName<E> (&table)[N], std::string_view text,
                      std::string_view field) {
  std::string options;
  for (const auto& e : table) {
    if (e.name == text) return e.value;
    StrAppend(&options, options.empty() ? "" : ", ", e.name);
  }
  return InvalidArgumentError(StrCat(field, ": \"", text, "\" is not one of ", options));
}

// The schema, written once: both the parser and the renderer walk it. A visitor provides
// Scalar(name, T&) for each field type, Section(name, fn) and List(name, vector&, fn).
template <typename V>
void VisitConfig(V& v, Config& c) {
  v.Scalar("log_level", c.log_level);
  v.Section("socket", [&] {
    v.Scalar("path", c.socket.path);
    v.Scalar("group", c.socket.group);
    v.Mode("mode", c.socket.mode);
  });
  v.Section("admin_socket", [&] { v.Scalar("path", c.admin_socket.path); });
  v.Section("metrics", [&] {
    v.Scalar("address", c.metrics.address);
    v.Scalar("max_namespace_labels", c.metrics.max_namespace_labels);
  });
  v.Section("dram", [&] {
    v.Size("capacity", c.dram.capacity);
    v.Scalar("hugepages", c.dram.hugepages);
    v.Scalar("pinned", c.dram.pinned);
    v.Enum("eviction", c.dram.eviction, kEviction);
    v.Scalar("high_watermark", c.dram.high_watermark);
    v.Scalar("low_watermark", c.dram.low_watermark);
  });
  v.Section("nvme", [&] {
    v.List("paths", c.nvme.paths, [&](NvmePathConfig& p) {
      v.Scalar("path", p.path);
      v.Size("capacity", p.capacity);
    });
    v.Size("region_size", c.nvme.region_size);
    v.Size("stripe_unit", c.nvme.stripe_unit);
    v.Scalar("queue_depth", c.nvme.queue_depth);
    v.Enum("reclaim", c.nvme.reclaim, kReclaim);
    v.Scalar("high_watermark", c.nvme.high_watermark);
    v.Scalar("low_watermark", c.nvme.low_watermark);
    v.Scalar("force_format", c.nvme.force_format);
  });
  v.Section("admission", [&] {
    v.Enum("policy", c.admission.policy, kAdmission);
    v.Size("write_budget", c.admission.write_budget);
  });
  v.Enum("default_durability", c.default_durability, kDurability);
  v.Size("default_namespace_quota", c.default_namespace_quota);
  v.List("quotas", c.quotas, [&](QuotaConfig& q) {
    v.Scalar("namespace", q.namespace_digest);
    v.Size("bytes", q.bytes);
  });
  v.Section("leases", [&] {
    v.Time("duration", c.leases.duration);
    v.Scalar("max_per_client", c.leases.max_per_client);
    v.Size("max_bytes_per_client", c.leases.max_bytes_per_client);
  });
  v.Section("limits", [&] {
    v.Scalar("max_clients", c.limits.max_clients);
    v.Scalar("max_inflight_per_client", c.limits.max_inflight_per_client);
    v.Size("max_arena_size", c.limits.max_arena_size);
    v.Scalar("max_batch", c.limits.max_batch);
    v.Size("max_frame_size", c.limits.max_frame_size);
    v.Size("max_value_size", c.limits.max_value_size);
  });
  v.Scalar("workers", c.workers);
  v.Time("shutdown_grace", c.shutdown_grace);
  v.List("tenants", c.tenants, [&](TenantConfig& t) {
    v.Scalar("name", t.name);
    v.Scalar("uids", t.uids);
    v.Scalar("gids", t.gids);
  });
  v.Section("mesh", [&] {
    v.Scalar("enabled", c.mesh.enabled);
    v.Enum("transport", c.mesh.transport, kTransport);
    v.Scalar("listen_address", c.mesh.listen_address);
    v.Scalar("port", c.mesh.port);
    v.Scalar("peers_file", c.mesh.peers_file);
    v.Scalar("node_name", c.mesh.node_name);
    v.Scalar("rdma_device", c.mesh.rdma_device);
    v.Time("peer_timeout", c.mesh.peer_timeout);
    v.Scalar("cache_remote_hits", c.mesh.cache_remote_hits);
    v.Section("tls", [&] {
      v.Scalar("ca", c.mesh.tls.ca);
      v.Scalar("cert", c.mesh.tls.cert);
      v.Scalar("key", c.mesh.tls.key);
      v.Scalar("server_name", c.mesh.tls.server_name);
    });
  });
  v.Section("gpu", [&] {
    v.Scalar("enabled", c.gpu.enabled);
    v.Scalar("devices", c.gpu.devices);
    v.Enum("cufile", c.gpu.cufile, kCuFile);
    v.Size("staging_buffer", c.gpu.staging_buffer);
  });
}

// Reads a YAML node tree into the struct. The first error sticks; later fields are skipped.
class Parser {
 public:
  explicit Parser(YAML::Node root) { stack_.push_back({root, ""}); }
  Status status() const { return status_; }

  template <typename T>
  void Scalar(std::string_view name, T& out) {
    YAML::Node n = Child(name);
    if (!n) return;
    try {
      if constexpr (std::is_same_v<T, std::string>) {
        if (!n.IsScalar()) return Fail(name, "must be a string");
        // YAML text is Unicode; a byte that is not UTF-8 could not be rendered back (the
        // config_yaml fuzz target found RenderYaml turning one into U+FFFD).
        if (!IsValidUtf8(n.Scalar())) return Fail(name, "must be UTF-8 text");
        out = n.Scalar();
      } else if constexpr (std::is_same_v<T, std::vector<uint32_t>>) {
        if (!n.IsSequence()) return Fail(name, "must be a list of integers");
        out.clear();
        for (const auto& e : n) out.push_back(ParseUint(name, e.Scalar(), UINT32_MAX));
      } else if constexpr (std::is_same_v<T, bool>) {
        if (!n.IsScalar()) return Fail(name, "must be true or false");
        const std::string& s = n.Scalar();
        if (s == "true" || s == "True" || s == "yes")
          out = true;
        else if (s == "false" || s == "False" || s == "no")
          out = false;
        else
          return Fail(name, StrCat("\"", s, "\" is not true or false"));
      } else if constexpr (std::is_same_v<T, double>) {
        if (!n.IsScalar()) return Fail(name, "must be a number");
        out = n.as<double>();
      } else {
        static_assert(std::is_same_v<T, uint32_t>);
        if (!n.IsScalar()) return Fail(name, "must be an integer");
        out = static_cast<uint32_t>(ParseUint(name, n.Scalar(), UINT32_MAX));
      }
    } catch (const YAML::Exception&) {
      Fail(name, StrCat("\"", n.Scalar(), "\" has the wrong type"));
    }
  }

  void Size(std::string_view name, uint64_t& out) {
    YAML::Node n = Child(name);
    if (!n) return;
    if (!n.IsScalar()) return Fail(name, "must be a byte size such as \"64GiB\"");
    auto v = ParseByteSize(n.Scalar(), Path(name));
    if (!v.ok()) return SetError(v.status());
    out = *v;
  }

  void Time(std::string_view name, Duration& out) {
    YAML::Node n = Child(name);
    if (!n) return;
    if (!n.IsScalar()) return Fail(name, "must be a duration such as \"250ms\"");
    auto v = ParseDuration(n.Scalar(), Path(name));
    if (!v.ok()) return SetError(v.status());
    out = *v;
  }

  void Mode(std::string_view name, uint32_t& out) {
    YAML::Node n = Child(name);
    if (!n) return;
    const std::string s = n.IsScalar() ? n.Scalar() : "";
    uint32_t v = 0;
    bool ok = !s.empty() && s.size() <= 4;
    for (char ch : s) {
      if (ch < '0' || ch > '7') ok = false;
      v = v * 8 + static_cast<uint32_t>(ch - '0');
    }
    if (!ok) return Fail(name, StrCat("\"", s, "\" is not an octal file mode like \"0660\""));
    out = v;
  }

  template <typename E, size_t N>
  void Enum(std::string_view name, E& out, const EnumName<E> (&table)[N]) {
    YAML::Node n = Child(name);
    if (!n) return;
    auto v = ParseEnum(table, n.IsScalar() ? n.Scalar() : "", Path(name));
    if (!v.ok()) return SetError(v.status());
    out = *v;
  }

  void Section(std::string_view name, const std::function<void()>& fn) {
    YAML::Node n = Child(name);
    if (!n) return;
    if (!n.IsMap()) return Fail(name, "must be a mapping");
    Enter(n, Path(name), fn);
  }

  template <typename T, typename Fn>
  void List(std::string_view name, std::vector<T>& out, Fn&& fn) {
    YAML::Node n = Child(name);
    if (!n) return;
    if (!n.IsSequence()) return Fail(name, "must be a list");
    out.clear();
    size_t i = 0;
    for (const auto& e : n) {
      std::string path = StrCat(Path(name), "[", i++, "]");
      if (!e.IsMap()) return SetError(InvalidArgumentError(path + ": must be a mapping"));
      out.emplace_back();
      T& item = out.back();
      Enter(e, path, [&] { fn(item); });
    }
  }

  // Call after the walk: any key of the root that the schema did not visit is unknown.
  void CheckRootKeys() { CheckKeys(stack_.front()); }

 private:
  struct Frame {
    YAML::Node node;
    std::string path;
    std::set<std::string> seen;
  };

  std::string Path(std::string_view name) const {
    const std::string& base = stack_.back().path;
    return base.empty() ? std::string(name) : StrCat(base, ".", name);
  }

  YAML::Node Child(std::string_view name) {
    if (!status_.ok()) return YAML::Node(YAML::NodeType::Undefined);
    Frame& f = stack_.back();
    f.seen.insert(std::string(name));
    YAML::Node n = f.node[std::string(name)];
    if (!n.IsDefined() || n.IsNull()) return YAML::Node(YAML::NodeType::Undefined);
    return n;
  }

  void Enter(YAML::Node n, std::string path, const std::function<void()>& fn) {
    stack_.push_back({n, std::move(path), {}});
    fn();
    CheckKeys(stack_.back());
    stack_.pop_back();
  }

  void CheckKeys(const Frame& f) {
    if (!status_.ok()) return;
    for (const auto& kv : f.node) {
      std::string key = kv.first.Scalar();
      if (f.seen.count(key) == 0) {
        SetError(InvalidArgumentError(StrCat(f.path.empty() ? key : StrCat(f.path, ".", key),
                                             ": unknown field (see docs/config.md)")));
        return;
      }
    }
  }

  uint64_t ParseUint(std::string_view name, const std::string& s, uint64_t max) {
    uint64_t v = 0;
    bool ok = !s.empty() && s.size() <= 20;
    for (char ch : s) {
      if (ch < '0' || ch > '9') {
        ok = false;
        break;
      }
      unsigned __int128 next = static_cast<unsigned __int128>(v) * 10 + (ch - '0');
      if (next > max) {
        ok = false;
        break;
      }
      v = static_cast<uint64_t>(next);
    }
    if (!ok) Fail(name, StrCat("\"", s, "\" is not an integer in 0..", max));
    return v;
  }

  void Fail(std::string_view name, std::string_view what) {
    SetError(InvalidArgumentError(StrCat(Path(name), ": ", what)));
  }
  void SetError(Status s) {
    if (status_.ok()) status_ = std::move(s);
  }

  std::vector<Frame> stack_;
  Status status_;
};

// Writes every field in schema order.
class Renderer {
 public:
  Renderer() { out_ << YAML::BeginMap; }
  std::string Finish() {
    out_ << YAML::EndMap;
    return std::string(out_.c_str()) + "\n";
  }

  template <typename T>
  void Scalar(std::string_view name, T& v) {
    out_ << YAML::Key << std::string(name) << YAML::Value;
    if constexpr (std::is_same_v<T, std::string>) {
      out_ << YAML::DoubleQuoted << v;
    } else if constexpr (std::is_same_v<T, std::vector<uint32_t>>) {
      out_ << YAML::Flow << YAML::BeginSeq;
      for (uint32_t x : v) out_ << x;
      out_ << YAML::EndSeq;
    } else if constexpr (std::is_same_v<T, bool>) {
      out_ << (v ? "true" : "false");
    } else if constexpr (std::is_same_v<T, double>) {
      out_ << fmt::format("{}", v);
    } else {
      out_ << v;
    }
  }
  void Size(std::string_view name, uint64_t& v) {
    out_ << YAML::Key << std::string(name) << YAML::Value << YAML::DoubleQuoted
         << FormatByteSize(v);
  }
  void Time(std::string_view name, Duration& v) {
    out_ << YAML::Key << std::string(name) << YAML::Value << YAML::DoubleQuoted
         << FormatDuration(v);
  }
  void Mode(std::string_view name, uint32_t& v) {
    out_ << YAML::Key << std::string(name) << YAML::Value << YAML::DoubleQuoted
         << fmt::format("{:04o}", v);
  }
  template <typename E, size_t N>
  void Enum(std::string_view name, E& v, const EnumName<E> (&table)[N]) {
    out_ << YAML::Key << std::string(name) << YAML::Value << std::string(NameOf(table, v));
  }
  void Section(std::string_view name, const std::function<void()>& fn) {
    out_ << YAML::Key << std::string(name) << YAML::Value << YAML::BeginMap;
    fn();
    out_ << YAML::EndMap;
  }
  template <typename T, typename Fn>
  void List(std::string_view name, std::vector<T>& items, Fn&& fn) {
    out_ << YAML::Key << std::string(name) << YAML::Value << YAML::BeginSeq;
    for (T& item : items) {
      out_ << YAML::BeginMap;
      fn(item);
      out_ << YAML::EndMap;
    }
    out_ << YAML::EndSeq;
  }

 private:
  YAML::Emitter out_;
};

Status CheckWatermarks(std::string_view section, double high, double low) {
  if (!(high > 0 && high <= 1)) {
    return InvalidArgumentError(StrCat(section, ".high_watermark: ", high, " must be in (0, 1]"));
  }
  if (!(low > 0 && low <= high)) {
    return InvalidArgumentError(
        StrCat(section, ".low_watermark: ", low, " must be in (0, high_watermark]"));
  }
  return OkStatus();
}

Status FieldError(std::string_view field, std::string_view what) {
  return InvalidArgumentError(StrCat(field, ": ", what));
}

}  // namespace

std::string_view ToString(Durability v) { return NameOf(kDurability, v); }
std::string_view ToString(AdmissionPolicy v) { return NameOf(kAdmission, v); }
std::string_view ToString(DramEviction v) { return NameOf(kEviction, v); }
std::string_view ToString(ReclaimOrder v) { return NameOf(kReclaim, v); }
std::string_view ToString(Transport v) { return NameOf(kTransport, v); }
std::string_view ToString(CuFileMode v) { return NameOf(kCuFile, v); }

StatusOr<Durability> ParseDurability(std::string_view text, std::string_view field) {
  return ParseEnum(kDurability, text, field);
}

Status Validate(const Config& c) {
  TW_RETURN_IF_ERROR(log::ParseLevel(c.log_level, "log_level").status());
  if (c.socket.path.empty()) return FieldError("socket.path", "must not be empty");
  if (c.socket.path.size() >= 108) {
    return FieldError("socket.path", "longer than a Unix socket path may be (107 bytes)");
  }
  if (c.socket.mode > 0777) return FieldError("socket.mode", "must be at most 0777");
  if (c.admin_socket.path.empty()) return FieldError("admin_socket.path", "must not be empty");
  if (c.admin_socket.path.size() >= 108) {
    return FieldError("admin_socket.path", "longer than a Unix socket path may be (107 bytes)");
  }
  if (c.admin_socket.path == c.socket.path) {
    return FieldError("admin_socket.path", "must differ from socket.path");
  }
  if (c.dram.capacity == 0 && c.nvme.paths.empty()) {
    return FieldError("dram.capacity",
                      "is 0 and nvme.paths is empty: at least one tier must be configured");
  }
  if (c.dram.capacity % (uint64_t{2} << 20) != 0) {
    return FieldError("dram.capacity", StrCat("\"", FormatByteSize(c.dram.capacity),
                                              "\" must be a multiple of 2MiB"));
  }
  TW_RETURN_IF_ERROR(CheckWatermarks("dram", c.dram.high_watermark, c.dram.low_watermark));
  TW_RETURN_IF_ERROR(CheckWatermarks("nvme", c.nvme.high_watermark, c.nvme.low_watermark));
  std::set<std::string> seen_paths;
  for (size_t i = 0; i < c.nvme.paths.size(); ++i) {
    const auto& p = c.nvme.paths[i];
    std::string f = StrCat("nvme.paths[", i, "]");
    if (p.path.empty()) return FieldError(f + ".path", "must not be empty");
    if (!seen_paths.insert(p.path).second) {
      return FieldError(f + ".path", StrCat("\"", p.path, "\" is listed twice"));
    }
    if (p.capacity != 0 && p.capacity < 2 * c.nvme.region_size) {
      return FieldError(f + ".capacity", StrCat("\"", FormatByteSize(p.capacity),
                                                "\" must hold at least two regions (",
                                                FormatByteSize(2 * c.nvme.region_size), ")"));
    }
  }
  auto pow2_mib = [](uint64_t v) { return v >= (1u << 20) && (v & (v - 1)) == 0; };
  if (!pow2_mib(c.nvme.region_size) || c.nvme.region_size > (uint64_t{4} << 30)) {
    return FieldError("nvme.region_size", "must be a power of two between 1MiB and 4GiB");
  }
  if (!pow2_mib(c.nvme.stripe_unit) || c.nvme.stripe_unit > c.nvme.region_size) {
    return FieldError("nvme.stripe_unit",
                      "must be a power of two of at least 1MiB and at most nvme.region_size");
  }
  if (c.nvme.queue_depth < 1 || c.nvme.queue_depth > 4096) {
    return FieldError("nvme.queue_depth", "must be in 1..4096");
  }
  if (c.admission.policy == AdmissionPolicy::kWriteBudget && c.admission.write_budget == 0) {
    return FieldError("admission.write_budget", "must be positive with policy write_budget");
  }
  std::set<std::string> seen_ns;
  for (size_t i = 0; i < c.quotas.size(); ++i) {
    std::string f = StrCat("quotas[", i, "]");
    if (!Key::FromHex(c.quotas[i].namespace_digest).ok()) {
      return FieldError(f + ".namespace", StrCat("\"", c.quotas[i].namespace_digest,
                                                 "\" is not a 64-hex-digit namespace "
                                                 "digest"));
    }
    if (!seen_ns.insert(c.quotas[i].namespace_digest).second) {
      return FieldError(f + ".namespace", "is listed twice");
    }
    if (c.quotas[i].bytes == 0) return FieldError(f + ".bytes", "must be positive");
  }
  if (c.leases.duration <= Duration::zero()) return FieldError("leases.duration", "must be > 0");
  if (c.leases.max_per_client == 0) return FieldError("leases.max_per_client", "must be > 0");
  if (c.limits.max_clients == 0) return FieldError("limits.max_clients", "must be > 0");
  if (c.limits.max_inflight_per_client == 0) {
    return FieldError("limits.max_inflight_per_client", "must be > 0");
  }
  if (c.limits.max_batch == 0) return FieldError("limits.max_batch", "must be > 0");
  if (c.limits.max_frame_size < 4096) {
    return FieldError("limits.max_frame_size", "must be at least 4KiB");
  }
  if (c.limits.max_value_size == 0) return FieldError("limits.max_value_size", "must be > 0");
  if (c.workers > kMaxWorkers) {
    return FieldError("workers", StrCat(c.workers, " is more than ", kMaxWorkers));
  }
  std::set<std::string> tenant_names;
  std::set<uint32_t> uids, gids;
  for (size_t i = 0; i < c.tenants.size(); ++i) {
    const auto& t = c.tenants[i];
    std::string f = StrCat("tenants[", i, "]");
    if (t.name.empty()) return FieldError(f + ".name", "must not be empty");
    if (!tenant_names.insert(t.name).second) {
      return FieldError(f + ".name", StrCat("\"", t.name, "\" is listed twice"));
    }
    if (t.uids.empty() && t.gids.empty()) {
      return FieldError(f, "needs at least one uid or gid");
    }
    for (uint32_t u : t.uids) {
      if (!uids.insert(u).second) {
        return FieldError(f + ".uids", StrCat("uid ", u, " belongs to two tenants"));
      }
    }
    for (uint32_t g : t.gids) {
      if (!gids.insert(g).second) {
        return FieldError(f + ".gids", StrCat("gid ", g, " belongs to two tenants"));
      }
    }
  }
  if (c.mesh.port == 0 || c.mesh.port > 65535) return FieldError("mesh.port", "must be 1..65535");
  if (c.mesh.enabled && c.mesh.peers_file.empty()) {
    return FieldError("mesh.peers_file", "must be set when mesh.enabled is true");
  }
  if (c.mesh.peer_timeout <= Duration::zero()) {
    return FieldError("mesh.peer_timeout", "must be > 0");
  }
  {
    const auto& t = c.mesh.tls;
    const int set = int(!t.ca.empty()) + int(!t.cert.empty()) + int(!t.key.empty());
    if (set != 0 && set != 3) {
      const char* missing = t.ca.empty()     ? "mesh.tls.ca"
                            : t.cert.empty() ? "mesh.tls.cert"
                                             : "mesh.tls.key";
      return FieldError(missing, "mesh.tls needs ca, cert and key together (or none of them)");
    }
    if (set == 0 && !t.server_name.empty()) {
      return FieldError("mesh.tls.server_name", "needs mesh.tls.ca, cert and key");
    }
  }
  if (c.gpu.devices.empty()) return FieldError("gpu.devices", "must be \"all\" or a list");
  return OkStatus();
}

StatusOr<Config> ParseYaml(std::string_view yaml) {
  YAML::Node root;
  try {
    root = YAML::Load(std::string(yaml));
  } catch (const YAML::Exception& e) {
    return InvalidArgumentError(StrCat("config: not valid YAML: ", e.what()));
  }
  Config c;
  if (root.IsNull() || !root.IsDefined()) {
    TW_RETURN_IF_ERROR(Validate(c));
    return c;
  }
  if (!root.IsMap()) return InvalidArgumentError("config: the document must be a mapping");
  Parser p(root);
  VisitConfig(p, c);
  p.CheckRootKeys();
  TW_RETURN_IF_ERROR(p.status());
  TW_RETURN_IF_ERROR(Validate(c));
  return c;
}

StatusOr<Config> LoadFile(const std::string& path) {
  std::ifstream in(path);
  if (!in) return NotFoundError(StrCat("config: cannot read \"", path, "\""));
  std::stringstream ss;
  ss << in.rdbuf();
  auto c = ParseYaml(ss.str());
  if (!c.ok()) {
    return Status(c.status().code(), StrCat(path, ": ", c.status().message()));
  }
  return c;
}

std::string RenderYaml(const Config& config) {
  Config copy = config;  // the visitor takes mutable references; rendering reads only
  Renderer r;
  VisitConfig(r, copy);
  return r.Finish();
}

}  // namespace tw::config
