#include "tw/operator/spec.h"

#include <algorithm>
#include <cmath>

#include "tw/common/log.h"
#include "tw/common/strings.h"
#include "tw/common/units.h"

namespace tw::op {
namespace {

using nlohmann::json;

Status FieldError(std::string_view field, std::string_view what) {
  return InvalidArgumentError(StrCat(field, ": ", what));
}

// A typed view of one JSON object with field-path errors.
class Obj {
 public:
  Obj(const json& j, std::string path) : j_(j), path_(std::move(path)) {}
  bool Has(const char* k) const { return j_.is_object() && j_.contains(k) && !j_[k].is_null(); }
  std::string Path(const char* k) const { return StrCat(path_, ".", k); }
  const json& Raw(const char* k) const { return j_[k]; }
  Obj Child(const char* k) const {
    static const json kEmpty = json::object();
    return Has(k) ? Obj(j_[k], Path(k)) : Obj(kEmpty, Path(k));
  }

  StatusOr<std::string> String(const char* k, std::string def) const {
    if (!Has(k)) return def;
    if (!j_[k].is_string()) return FieldError(Path(k), "must be a string");
    return j_[k].get<std::string>();
  }
  StatusOr<std::string> Enum(const char* k, std::string def,
                             std::initializer_list<std::string_view> allowed) const {
    TW_ASSIGN_OR_RETURN(std::string v, String(k, def));
    for (auto a : allowed) {
      if (v == a) return v;
    }
    std::vector<std::string> names(allowed.begin(), allowed.end());
    return FieldError(Path(k), StrCat("\"", v, "\" is not one of ", Join(names, ", ")));
  }
  StatusOr<bool> Bool(const char* k, bool def) const {
    if (!Has(k)) return def;
    if (!j_[k].is_boolean()) return FieldError(Path(k), "must be true or false");
    return j_[k].get<bool>();
  }
  StatusOr<int64_t> Int(const char* k, int64_t def, int64_t lo, int64_t hi) const {
    if (!Has(k)) return def;
    if (!j_[k].is_number_integer()) return FieldError(Path(k), "must be an integer");
    int64_t v = j_[k].get<int64_t>();
    if (v < lo || v > hi) return FieldError(Path(k), StrCat(v, " is not in ", lo, "..", hi));
    return v;
  }
  StatusOr<double> Fraction(const char* k, double def) const {
    if (!Has(k)) return def;
    if (!j_[k].is_number()) return FieldError(Path(k), "must be a number");
    double v = j_[k].get<double>();
    if (!(v > 0 && v <= 1)) return FieldError(Path(k), StrCat(v, " is not in (0, 1]"));
    return v;
  }
  StatusOr<uint64_t> Bytes(const char* k, uint64_t def) const {
    if (!Has(k)) return def;
    return ParseQuantityBytes(j_[k], Path(k));
  }

 private:
  const json& j_;
  std::string path_;
};

uint64_t RoundUp(uint64_t v, uint64_t unit) { return (v + unit - 1) / unit * unit; }

}  // namespace

StatusOr<uint64_t> ParseQuantityBytes(const json& value, std::string_view field) {
  if (value.is_number_unsigned()) return value.get<uint64_t>();
  if (value.is_number_integer()) {
    if (value.get<int64_t>() < 0) return FieldError(field, "must not be negative");
    return static_cast<uint64_t>(value.get<int64_t>());
  }
  if (!value.is_string()) return FieldError(field, "must be a size such as \"64GiB\"");
  return ParseByteSize(value.get<std::string>(), field);
}

StatusOr<TokenWarehouseSpec> ParseSpec(const json& spec_json) {
  if (!spec_json.is_object()) return FieldError("spec", "is missing");
  Obj s(spec_json, "spec");
  TokenWarehouseSpec out;
  TW_ASSIGN_OR_RETURN(out.image, s.String("image", ""));
  TW_ASSIGN_OR_RETURN(out.image_pull_policy, s.Enum("imagePullPolicy", "IfNotPresent",
                                                    {"Always", "IfNotPresent", "Never"}));
  if (s.Has("imagePullSecrets")) {
    for (const auto& ref : s.Raw("imagePullSecrets")) {
      if (!ref.is_object() || !ref.contains("name") || !ref["name"].is_string()) {
        return FieldError("spec.imagePullSecrets", "entries need a name");
      }
      out.image_pull_secrets.push_back(ref["name"].get<std::string>());
    }
  }
  if (s.Has("nodeSelector")) {
    out.node_selector = s.Raw("nodeSelector");
    if (!out.node_selector.is_object()) return FieldError("spec.nodeSelector", "must be a map");
    for (const auto& [k, v] : out.node_selector.items()) {
      if (!v.is_string()) return FieldError("spec.nodeSelector." + k, "must be a string");
    }
  }
  if (s.Has("affinity")) out.affinity = s.Raw("affinity");
  if (s.Has("tolerations")) {
    out.tolerations = s.Raw("tolerations");
    if (!out.tolerations.is_array()) return FieldError("spec.tolerations", "must be a list");
  }
  TW_ASSIGN_OR_RETURN(out.priority_class_name, s.String("priorityClassName", ""));
  {
    Obj sc = s.Child("seccompProfile");
    TW_ASSIGN_OR_RETURN(out.seccomp_type,
                        sc.Enum("type", "RuntimeDefault", {"RuntimeDefault", "Localhost"}));
    TW_ASSIGN_OR_RETURN(out.seccomp_localhost_profile, sc.String("localhostProfile", ""));
    if ((out.seccomp_type == "Localhost") == out.seccomp_localhost_profile.empty()) {
      return FieldError("spec.seccompProfile.localhostProfile",
                        "is required with type Localhost and allowed only with it");
    }
  }
  TW_ASSIGN_OR_RETURN(out.log_level,
                      s.Enum("logLevel", "info", {"debug", "info", "warn", "error"}));
  TW_ASSIGN_OR_RETURN(int64_t chunk, s.Int("chunkTokens", 256, 1, 65536));
  out.chunk_tokens = static_cast<int>(chunk);
  TW_ASSIGN_OR_RETURN(std::string durability,
                      s.Enum("defaultDurability", "memory", {"memory", "disk"}));
  TW_ASSIGN_OR_RETURN(out.default_durability,
                      config::ParseDurability(durability, "spec.defaultDurability"));
  TW_ASSIGN_OR_RETURN(std::string grace, s.String("shutdownGrace", "20s"));
  TW_ASSIGN_OR_RETURN(out.shutdown_grace, ParseDuration(grace, "spec.shutdownGrace"));

  if (!s.Has("tiers")) return FieldError("spec.tiers", "is required");
  Obj tiers = s.Child("tiers");
  if (tiers.Has("dram")) {
    Obj d = tiers.Child("dram");
    out.has_dram = true;
    if (!d.Has("capacity")) return FieldError(d.Path("capacity"), "is required");
    TW_ASSIGN_OR_RETURN(out.dram_capacity, d.Bytes("capacity", 0));
    TW_ASSIGN_OR_RETURN(out.dram_pinned, d.Bool("pinned", false));
    TW_ASSIGN_OR_RETURN(out.dram_hugepages, d.Bool("hugepages", false));
    TW_ASSIGN_OR_RETURN(std::string ev, d.Enum("eviction", "s3fifo", {"s3fifo", "lru"}));
    out.dram_eviction = ev == "lru" ? config::DramEviction::kLru : config::DramEviction::kS3Fifo;
    TW_ASSIGN_OR_RETURN(out.dram_high_watermark, d.Fraction("highWatermark", 0.95));
    TW_ASSIGN_OR_RETURN(out.dram_low_watermark, d.Fraction("lowWatermark", 0.85));
    if (out.dram_low_watermark > out.dram_high_watermark) {
      return FieldError(d.Path("lowWatermark"), "must not exceed highWatermark");
    }
  }
  if (tiers.Has("nvme")) {
    Obj n = tiers.Child("nvme");
    if (!n.Has("devices") || !n.Raw("devices").is_array() || n.Raw("devices").empty()) {
      return FieldError(n.Path("devices"), "needs at least one device");
    }
    size_t i = 0;
    for (const auto& dj : n.Raw("devices")) {
      Obj d(dj, StrCat(n.Path("devices"), "[", i++, "]"));
      NvmeDeviceSpec dev;
      TW_ASSIGN_OR_RETURN(dev.name, d.String("name", ""));
      if (dev.name.empty()) return FieldError(d.Path("name"), "is required");
      TW_ASSIGN_OR_RETURN(dev.host_path, d.String("hostPath", ""));
      TW_ASSIGN_OR_RETURN(dev.host_path_type, d.Enum("hostPathType", "FileOrCreate",
                                                     {"FileOrCreate", "File", "BlockDevice"}));
      if (d.Has("persistentVolumeClaim")) {
        TW_ASSIGN_OR_RETURN(dev.claim_name,
                            d.Child("persistentVolumeClaim").String("claimName", ""));
        if (dev.claim_name.empty()) {
          return FieldError(d.Path("persistentVolumeClaim.claimName"), "is required");
        }
      }
      if (dev.host_path.empty() == dev.claim_name.empty()) {
        return FieldError(d.Path("hostPath"), "exactly one of hostPath and persistentVolumeClaim");
      }
      if (!dev.host_path.empty() && dev.host_path[0] != '/') {
        return FieldError(d.Path("hostPath"), "must be an absolute path");
      }
      if (!d.Has("capacity")) return FieldError(d.Path("capacity"), "is required");
      TW_ASSIGN_OR_RETURN(dev.capacity, d.Bytes("capacity", 0));
      if (dev.capacity == 0 && dev.host_path_type != "BlockDevice") {
        return FieldError(d.Path("capacity"), "must be positive for a data file");
      }
      for (const auto& other : out.nvme_devices) {
        if (other.name == dev.name) return FieldError(d.Path("name"), "is listed twice");
      }
      out.nvme_devices.push_back(std::move(dev));
    }
    TW_ASSIGN_OR_RETURN(out.nvme_region_size, n.Bytes("regionSize", uint64_t{64} << 20));
    TW_ASSIGN_OR_RETURN(out.nvme_stripe_unit, n.Bytes("stripeUnit", uint64_t{4} << 20));
    TW_ASSIGN_OR_RETURN(int64_t qd, n.Int("queueDepth", 32, 1, 4096));
    out.nvme_queue_depth = static_cast<uint32_t>(qd);
    TW_ASSIGN_OR_RETURN(std::string reclaim, n.Enum("reclaim", "fifo", {"fifo", "lru"}));
    out.nvme_reclaim = reclaim == "lru" ? config::ReclaimOrder::kLru : config::ReclaimOrder::kFifo;
    TW_ASSIGN_OR_RETURN(out.nvme_high_watermark, n.Fraction("highWatermark", 0.95));
    TW_ASSIGN_OR_RETURN(out.nvme_low_watermark, n.Fraction("lowWatermark", 0.90));
    if (out.nvme_low_watermark > out.nvme_high_watermark) {
      return FieldError(n.Path("lowWatermark"), "must not exceed highWatermark");
    }
  }
  if (!out.has_dram && out.nvme_devices.empty()) {
    return FieldError("spec.tiers", "at least one of tiers.dram and tiers.nvme is required");
  }
  Obj gpu = tiers.Child("gpu");
  TW_ASSIGN_OR_RETURN(out.gpu_visible, gpu.Bool("visible", false));
  TW_ASSIGN_OR_RETURN(out.gpu_devices, gpu.String("devices", "all"));
  TW_ASSIGN_OR_RETURN(out.runtime_class_name, gpu.String("runtimeClassName", ""));

  Obj adm = s.Child("admission");
  TW_ASSIGN_OR_RETURN(std::string policy,
                      adm.Enum("policy", "all", {"all", "second-sight", "write-budget"}));
  out.admission_policy = policy == "all"            ? config::AdmissionPolicy::kAll
                         : policy == "second-sight" ? config::AdmissionPolicy::kSecondSight
                                                    : config::AdmissionPolicy::kWriteBudget;
  TW_ASSIGN_OR_RETURN(out.admission_write_budget, adm.Bytes("writeBudget", uint64_t{500} << 20));

  Obj quotas = s.Child("quotas");
  TW_ASSIGN_OR_RETURN(out.default_namespace_quota, quotas.Bytes("defaultNamespaceQuota", 0));
  if (quotas.Has("namespaces")) {
    size_t i = 0;
    for (const auto& qj : quotas.Raw("namespaces")) {
      Obj q(qj, StrCat(quotas.Path("namespaces"), "[", i++, "]"));
      config::QuotaConfig qc;
      TW_ASSIGN_OR_RETURN(qc.namespace_digest, q.String("digest", ""));
      if (!q.Has("bytes")) return FieldError(q.Path("bytes"), "is required");
      TW_ASSIGN_OR_RETURN(qc.bytes, q.Bytes("bytes", 0));
      out.quotas.push_back(std::move(qc));
    }
  }

  Obj sock = s.Child("socket");
  TW_ASSIGN_OR_RETURN(out.socket_host_directory,
                      sock.String("hostDirectory", "/run/tokenwarehouse"));
  if (out.socket_host_directory.empty() || out.socket_host_directory[0] != '/') {
    return FieldError(sock.Path("hostDirectory"), "must be an absolute path");
  }
  while (out.socket_host_directory.size() > 1 && out.socket_host_directory.back() == '/') {
    out.socket_host_directory.pop_back();
  }
  TW_ASSIGN_OR_RETURN(out.socket_group, sock.String("group", ""));
  TW_ASSIGN_OR_RETURN(int64_t mode, sock.Int("mode", 0660, 0, 0777));
  out.socket_mode = static_cast<uint32_t>(mode);

  Obj csi = s.Child("csi");
  TW_ASSIGN_OR_RETURN(out.csi_enabled, csi.Bool("enabled", false));
  TW_ASSIGN_OR_RETURN(out.csi_image, csi.String("image", ""));
  TW_ASSIGN_OR_RETURN(out.csi_registrar_image,
                      csi.String("registrarImage", kDefaultRegistrarImage));
  TW_ASSIGN_OR_RETURN(out.csi_kubelet_directory,
                      csi.String("kubeletDirectory", "/var/lib/kubelet"));
  while (out.csi_kubelet_directory.size() > 1 && out.csi_kubelet_directory.back() == '/') {
    out.csi_kubelet_directory.pop_back();
  }
  if (out.csi_kubelet_directory.size() < 2 || out.csi_kubelet_directory[0] != '/') {
    return FieldError(csi.Path("kubeletDirectory"), "must be an absolute path other than /");
  }
  if (out.csi_registrar_image.empty()) {
    return FieldError(csi.Path("registrarImage"), "must not be empty");
  }

  Obj fed = s.Child("federation");
  TW_ASSIGN_OR_RETURN(out.federation_enabled, fed.Bool("enabled", false));
  TW_ASSIGN_OR_RETURN(std::string transport, fed.Enum("transport", "tcp", {"tcp", "rdma", "auto"}));
  out.transport = transport == "rdma"   ? config::Transport::kRdma
                  : transport == "auto" ? config::Transport::kAuto
                                        : config::Transport::kTcp;
  TW_ASSIGN_OR_RETURN(int64_t port, fed.Int("port", 7470, 1, 65535));
  out.federation_port = static_cast<uint32_t>(port);
  TW_ASSIGN_OR_RETURN(out.host_network, fed.Bool("hostNetwork", false));
  if (fed.Has("rdmaResource")) {
    Obj r = fed.Child("rdmaResource");
    TW_ASSIGN_OR_RETURN(out.rdma_resource, r.String("name", ""));
    if (out.rdma_resource.empty()) return FieldError(r.Path("name"), "is required");
    TW_ASSIGN_OR_RETURN(int64_t count, r.Int("count", 1, 1, 64));
    out.rdma_count = static_cast<int>(count);
  }
  if (fed.Has("tls")) {
    Obj tls = fed.Child("tls");
    TW_ASSIGN_OR_RETURN(out.federation_tls_secret, tls.String("secretName", ""));
    if (out.federation_tls_secret.empty()) return FieldError(tls.Path("secretName"), "is required");
    TW_ASSIGN_OR_RETURN(out.federation_tls_server_name, tls.String("serverName", ""));
  }
  TW_ASSIGN_OR_RETURN(out.cache_remote_hits, fed.Bool("cacheRemoteHits", true));
  if (out.transport == config::Transport::kRdma && out.rdma_resource.empty() && !out.host_network) {
    return FieldError("spec.federation.transport", "rdma requires rdmaResource or hostNetwork");
  }

  Obj metrics = s.Child("metrics");
  TW_ASSIGN_OR_RETURN(int64_t mport, metrics.Int("port", 9400, 1, 65535));
  out.metrics_port = static_cast<uint32_t>(mport);
  if (out.federation_enabled && out.metrics_port == out.federation_port) {
    return FieldError("spec.metrics.port", "must differ from spec.federation.port");
  }
  Obj sm = metrics.Child("serviceMonitor");
  TW_ASSIGN_OR_RETURN(out.service_monitor, sm.Bool("enabled", false));
  TW_ASSIGN_OR_RETURN(out.service_monitor_interval, sm.String("interval", "30s"));
  if (sm.Has("labels")) out.service_monitor_labels = sm.Raw("labels");

  if (s.Has("resources")) {
    out.resources = s.Raw("resources");
    if (!out.resources.is_object()) return FieldError("spec.resources", "must be an object");
  }
  if (s.Has("updateStrategy") && s.Child("updateStrategy").Has("maxUnavailable")) {
    out.max_unavailable = s.Child("updateStrategy").Raw("maxUnavailable");
    const json& mu = out.max_unavailable;
    bool ok = (mu.is_number_integer() && mu.get<int64_t>() >= 0) ||
              (mu.is_string() && !mu.get<std::string>().empty());
    if (!ok)
      return FieldError("spec.updateStrategy.maxUnavailable", "must be a count or a percentage");
  }
  return out;
}

std::string DevicePathInPod(const NvmeDeviceSpec& d) {
  if (!d.claim_name.empty()) return StrCat(kDataDir, "/", d.name, "/twd.data");
  if (d.host_path_type == "BlockDevice") return StrCat("/dev/tokenwarehouse/", d.name);
  return StrCat(kDataDir, "/", d.name, ".data");
}

MemoryNeeds ComputeMemoryNeeds(const TokenWarehouseSpec& spec) {
  constexpr uint64_t kMiB = uint64_t{1} << 20;
  MemoryNeeds m;
  uint64_t nvme_total = 0;
  for (const auto& d : spec.nvme_devices) nvme_total += d.capacity;
  if (spec.has_dram) {
    if (spec.dram_hugepages) {
      m.hugepages = RoundUp(spec.dram_capacity, 2 * kMiB);
    } else {
      m.dram_arena = spec.dram_capacity;
    }
  }
  // 256 bytes of index per 1 MiB of capacity: an index slot is 43-75 bytes (plus ~70 for a
  // chunk in DRAM), so this covers chunks of about 1 MiB or more on average. Chunks are
  // normally tens of MiB; docs/sizing.md tells users of smaller ones to set the limit.
  m.index = (spec.dram_capacity + nvme_total) / 4096;
  if (!spec.nvme_devices.empty()) {
    uint64_t paths = spec.nvme_devices.size();
    // Reads and writes in flight on every ring, plus one open region buffer per path.
    m.io_buffers = 2 * uint64_t{spec.nvme_queue_depth} * spec.nvme_stripe_unit * paths +
                   spec.nvme_region_size * paths;
  }
  uint64_t base = m.dram_arena + m.index + m.io_buffers;
  m.margin = RoundUp(256 * kMiB + base / 20, kMiB);
  m.total = RoundUp(base + m.margin, kMiB);
  return m;
}

config::Config TwdConfig(const TokenWarehouseSpec& spec) {
  config::Config c;
  c.log_level = spec.log_level;
  c.socket.path = StrCat(kSocketDir, "/twd.sock");
  c.socket.group = spec.socket_group;
  c.socket.mode = spec.socket_mode;
  c.admin_socket.path = StrCat(kAdminSocketDir, "/twd-admin.sock");
  c.metrics.address = StrCat("0.0.0.0:", spec.metrics_port);
  c.dram.capacity = spec.has_dram ? spec.dram_capacity : 0;
  c.dram.hugepages = spec.dram_hugepages;
  c.dram.pinned = spec.dram_pinned;
  c.dram.eviction = spec.dram_eviction;
  c.dram.high_watermark = spec.dram_high_watermark;
  c.dram.low_watermark = spec.dram_low_watermark;
  for (const auto& d : spec.nvme_devices) {
    c.nvme.paths.push_back({DevicePathInPod(d), d.capacity});
  }
  c.nvme.region_size = spec.nvme_region_size;
  c.nvme.stripe_unit = spec.nvme_stripe_unit;
  c.nvme.queue_depth = spec.nvme_queue_depth;
  c.nvme.reclaim = spec.nvme_reclaim;
  c.nvme.high_watermark = spec.nvme_high_watermark;
  c.nvme.low_watermark = spec.nvme_low_watermark;
  c.admission.policy = spec.admission_policy;
  c.admission.write_budget = spec.admission_write_budget;
  c.default_durability = spec.default_durability;
  c.default_namespace_quota = spec.default_namespace_quota;
  c.quotas = spec.quotas;
  c.shutdown_grace = spec.shutdown_grace;
  c.mesh.enabled = spec.federation_enabled;
  c.mesh.transport = spec.transport;
  c.mesh.port = spec.federation_port;
  c.mesh.peers_file = StrCat(kPeersDir, "/", kPeersFile);
  c.mesh.cache_remote_hits = spec.cache_remote_hits;
  if (!spec.federation_tls_secret.empty()) {
    c.mesh.tls.ca = StrCat(kMeshTlsDir, "/ca.crt");
    c.mesh.tls.cert = StrCat(kMeshTlsDir, "/tls.crt");
    c.mesh.tls.key = StrCat(kMeshTlsDir, "/tls.key");
    c.mesh.tls.server_name = spec.federation_tls_server_name;
  }
  c.gpu.enabled = false;  // GPU queues are second wave; visibility is set on the pod
  c.gpu.devices = spec.gpu_devices;
  return c;
}

std::string_view ToString(SpecProblem p) {
  switch (p) {
    case SpecProblem::kNone:
      return "None";
    case SpecProblem::kInvalidConfig:
      return "InvalidConfig";
    case SpecProblem::kMemoryLimitTooLow:
      return "MemoryLimitTooLow";
  }
  return "Unknown";
}

SpecCheck CheckSpec(const TokenWarehouseSpec& spec) {
  Status valid = config::Validate(TwdConfig(spec));
  if (!valid.ok()) {
    return {SpecProblem::kInvalidConfig, StrCat("twd config: ", valid.message())};
  }
  MemoryNeeds needs = ComputeMemoryNeeds(spec);
  const json& limits = spec.resources.value("limits", json::object());
  if (limits.is_object() && limits.contains("memory")) {
    auto limit = ParseQuantityBytes(limits["memory"], "spec.resources.limits.memory");
    if (!limit.ok()) return {SpecProblem::kInvalidConfig, std::string(limit.status().message())};
    if (*limit < needs.total) {
      return {
          SpecProblem::kMemoryLimitTooLow,
          StrCat("spec.resources.limits.memory ", FormatByteSize(*limit),
                 " is below what the tiers need: ", FormatByteSize(needs.total), " (DRAM arena ",
                 FormatByteSize(needs.dram_arena), " + index ", FormatByteSize(needs.index),
                 " + I/O buffers ", FormatByteSize(needs.io_buffers), " + margin ",
                 FormatByteSize(needs.margin), ")")};
    }
  }
  if (needs.hugepages > 0 && limits.is_object() && limits.contains("hugepages-2Mi")) {
    auto limit = ParseQuantityBytes(limits["hugepages-2Mi"], "spec.resources.limits.hugepages-2Mi");
    if (!limit.ok()) return {SpecProblem::kInvalidConfig, std::string(limit.status().message())};
    if (*limit < needs.hugepages) {
      return {SpecProblem::kMemoryLimitTooLow,
              StrCat("spec.resources.limits.hugepages-2Mi ", FormatByteSize(*limit),
                     " is below the DRAM tier ", FormatByteSize(needs.hugepages))};
    }
  }
  return {};
}

int ResolveMaxUnavailable(const json& value, int desired) {
  int n = 1;
  if (value.is_number_integer()) {
    n = static_cast<int>(value.get<int64_t>());
  } else if (value.is_string()) {
    std::string s = value.get<std::string>();
    if (!s.empty() && s.back() == '%') {
      double pct = std::atof(s.substr(0, s.size() - 1).c_str());
      n = static_cast<int>(std::floor(desired * pct / 100.0));
    } else {
      n = std::atoi(s.c_str());
    }
  }
  return std::max(n, 1);
}

}  // namespace tw::op
