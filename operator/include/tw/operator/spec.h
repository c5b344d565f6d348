// TokenWarehouseSpec: the parsed, defaulted and checked spec of a TokenWarehouse object, the
// twd configuration it stands for, and the memory a twd pod of it needs.
//
// ParseSpec() applies the CRD's defaults itself (an API server without defaulting, or an
// older CRD, must not change what gets rendered) and rejects what the schema would, naming
// the field ("spec.tiers.dram.capacity: ..."). CheckSpec() adds the rules the schema cannot
// express: the rendered twd config must pass tw_config's Validate(), and a memory limit given
// in spec.resources must cover MemoryNeeds. Pure functions over values; no threading rules.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "nlohmann/json.hpp"
#include "tw/common/config.h"
#include "tw/common/status.h"

namespace tw::op {

struct NvmeDeviceSpec {
  // Volume name, unique within the TokenWarehouse.
  std::string name;
  // Host path of the data file or block device ("" when a claim is used).
  std::string host_path;
  // FileOrCreate, File or BlockDevice.
  std::string host_path_type = "FileOrCreate";
  // PersistentVolumeClaim holding a data file ("" when a host path is used).
  std::string claim_name;
  // Bytes of the path the store may use (0 = whole block device).
  uint64_t capacity = 0;
};

// The kubelet's plugin registration sidecar of kubernetes-csi, pinned.
inline constexpr char kDefaultRegistrarImage[] =
    "registry.k8s.io/sig-storage/csi-node-driver-registrar:v2.16.0";

struct TokenWarehouseSpec {
  std::string image;  // "" = the operator's default
  std::string image_pull_policy = "IfNotPresent";
  std::vector<std::string> image_pull_secrets;
  nlohmann::json node_selector = nlohmann::json::object();
  nlohmann::json affinity;     // null when absent
  nlohmann::json tolerations;  // null when absent
  std::string priority_class_name;
  // The twd pod's seccomp profile (spec.seccompProfile): RuntimeDefault, or Localhost with
  // the path of a profile installed on every node (docs/security.md).
  std::string seccomp_type = "RuntimeDefault";
  std::string seccomp_localhost_profile;  // only with Localhost
  std::string log_level = "info";
  int chunk_tokens = 256;
  config::Durability default_durability = config::Durability::kMemory;
  std::chrono::nanoseconds shutdown_grace = std::chrono::seconds(20);

  bool has_dram = false;
  uint64_t dram_capacity = 0;
  bool dram_pinned = false;
  bool dram_hugepages = false;
  config::DramEviction dram_eviction = config::DramEviction::kS3Fifo;
  double dram_high_watermark = 0.95;
  double dram_low_watermark = 0.85;

  std::vector<NvmeDeviceSpec> nvme_devices;  // empty = no NVMe tier
  uint64_t nvme_region_size = uint64_t{64} << 20;
  uint64_t nvme_stripe_unit = uint64_t{4} << 20;
  uint32_t nvme_queue_depth = 32;
  config::ReclaimOrder nvme_reclaim = config::ReclaimOrder::kFifo;
  double nvme_high_watermark = 0.95;
  double nvme_low_watermark = 0.90;

  bool gpu_visible = false;
  std::string gpu_devices = "all";
  std::string runtime_class_name;

  config::AdmissionPolicy admission_policy = config::AdmissionPolicy::kAll;
  uint64_t admission_write_budget = uint64_t{500} << 20;
  uint64_t default_namespace_quota = 0;
  std::vector<config::QuotaConfig> quotas;

  std::string socket_host_directory = "/run/tokenwarehouse";
  std::string socket_group;
  uint32_t socket_mode = 0660;

  // spec.csi: the CSI node plugin tw-csi and the kubelet's node-driver-registrar as two more
  // containers of the twd pod, so inference pods get the socket through a CSI volume.
  bool csi_enabled = false;
  std::string csi_image;  // "" = the twd image, which carries tw-csi
  std::string csi_registrar_image = kDefaultRegistrarImage;
  std::string csi_kubelet_directory = "/var/lib/kubelet";

  bool federation_enabled = false;
  config::Transport transport = config::Transport::kTcp;
  uint32_t federation_port = 7470;
  bool host_network = false;
  std::string rdma_resource;  // "" = none
  int rdma_count = 1;
  // spec.federation.tls: a Secret (ca.crt, tls.crt, tls.key) mounted for the mesh's mutual TLS.
  std::string federation_tls_secret;  // "" = no TLS (twd warns that the mesh is unauthenticated)
  std::string federation_tls_server_name;
  bool cache_remote_hits = true;

  uint32_t metrics_port = 9400;
  bool service_monitor = false;
  std::string service_monitor_interval = "30s";
  nlohmann::json service_monitor_labels = nlohmann::json::object();

  nlohmann::json resources = nlohmann::json::object();  // spec.resources as given
  nlohmann::json max_unavailable = 1;                   // int or "N%"
};

// Parses `spec` (the object's .spec), applying defaults. Errors are kInvalidArgument and
// name the field.
StatusOr<TokenWarehouseSpec> ParseSpec(const nlohmann::json& spec);

// Memory a twd pod needs, in bytes.
struct MemoryNeeds {
  uint64_t dram_arena = 0;  // the DRAM tier (0 with hugepages: it is a hugepages request)
  uint64_t index = 0;       // in-memory index of every chunk the tiers can hold
  uint64_t io_buffers = 0;  // io_uring queues and region write buffers
  uint64_t margin = 0;      // process, allocator and metrics overhead
  uint64_t total = 0;       // the memory limit the operator sets, rounded up to 1 MiB
  uint64_t hugepages = 0;   // hugepages-2Mi to request (the arena, rounded up to 2 MiB)
};
MemoryNeeds ComputeMemoryNeeds(const TokenWarehouseSpec& spec);

// Parses a Kubernetes quantity of bytes ("80Gi", "85899345920", 1024).
StatusOr<uint64_t> ParseQuantityBytes(const nlohmann::json& value, std::string_view field);

// Paths inside the twd container.
inline constexpr char kConfigDir[] = "/etc/tokenwarehouse/config";
inline constexpr char kConfigFile[] = "twd.yaml";
inline constexpr char kPeersDir[] = "/etc/tokenwarehouse/peers";
// Where the spec.federation.tls Secret is mounted (ca.crt, tls.crt, tls.key).
inline constexpr char kMeshTlsDir[] = "/etc/tokenwarehouse/mesh-tls";
inline constexpr char kPeersFile[] = "peers.json";
inline constexpr char kSocketDir[] = "/run/tokenwarehouse";
inline constexpr char kAdminSocketDir[] = "/run/tokenwarehouse-admin";
inline constexpr char kDataDir[] = "/var/lib/tokenwarehouse";
// uid and gid twd runs as in its image (docker/twd.Dockerfile).
inline constexpr int kTwdUid = 65532;

// The path twd uses for NVMe device `d` inside the container.
std::string DevicePathInPod(const NvmeDeviceSpec& d);

// twd's configuration for this spec.
config::Config TwdConfig(const TokenWarehouseSpec& spec);

// Why a spec that parsed is still refused.
enum class SpecProblem {
  kNone,               // the spec is usable
  kInvalidConfig,      // tw_config's Validate() rejects the rendered config
  kMemoryLimitTooLow,  // spec.resources.limits.memory is below MemoryNeeds::total
};
std::string_view ToString(SpecProblem p);

struct SpecCheck {
  SpecProblem problem = SpecProblem::kNone;
  std::string message;
};
// The rules the schema cannot express.
SpecCheck CheckSpec(const TokenWarehouseSpec& spec);

// spec.updateStrategy.maxUnavailable resolved against `desired` nodes (at least 1).
int ResolveMaxUnavailable(const nlohmann::json& value, int desired);

}  // namespace tw::op
