// tw_config: twd's configuration, the one contract between twd and the operator.
//
// twd reads its YAML file with LoadFile()/ParseYaml(); tw-operator renders the ConfigMap it
// writes with RenderYaml() and its tests re-parse every rendered config with ParseYaml(), so
// the two can never drift (docs/config.md documents every field).
//
// Rules: every field has a default and a comment; sizes and durations are strings with units
// ("64GiB", "250ms"); unknown fields are errors (a typo must not silently keep a default);
// Validate() names the bad field. ParseYaml() applies defaults and then Validate(). The
// struct is a plain value: copy it freely; no threading rules.
#pragma once

#include <chrono>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "tw/common/status.h"
#include "tw/common/storage_policies.h"

namespace tw::config {

using Duration = std::chrono::nanoseconds;

enum class Transport {
  kTcp,   // peer data over TCP (always available)
  kRdma,  // peer data over RDMA verbs (rdma-core); twd fails to start without a device
  kAuto,  // RDMA with peers that have it too, TCP otherwise (and with all when no device)
};
enum class CuFileMode {
  kAuto,  // use cuFile (GPUDirect Storage) when libcufile loads, else pinned staging
  kOn,    // require cuFile
  kOff,   // always pinned staging
};

std::string_view ToString(Transport v);
std::string_view ToString(CuFileMode v);
StatusOr<Durability> ParseDurability(std::string_view text, std::string_view field);

struct SocketConfig {
  // Client socket path. Its directory is what inference pods mount.
  std::string path = "/run/tokenwarehouse/twd.sock";
  // Group owning the socket ("" keeps twd's group). Clients must be in it.
  std::string group;
  // File mode of the socket, octal.
  uint32_t mode = 0660;

  friend bool operator==(const SocketConfig&, const SocketConfig&) = default;
};

struct AdminSocketConfig {
  // Admin socket path (mode 0600, owner only): export, evict, namespaces.
  std::string path = "/run/tokenwarehouse/twd-admin.sock";

  friend bool operator==(const AdminSocketConfig&, const AdminSocketConfig&) = default;
};

struct MetricsConfig {
  // HOST:PORT of the HTTP server for /metrics, /healthz and /readyz; "" disables it.
  std::string address = "0.0.0.0:9400";
  // Namespaces labelled individually in metrics (top by traffic); the rest are "other".
  uint32_t max_namespace_labels = 16;

  friend bool operator==(const MetricsConfig&, const MetricsConfig&) = default;
};

struct DramConfig {
  // Size of the DRAM tier arena, allocated once at start.
  uint64_t capacity = uint64_t{1} << 30;
  // Back the arena with 2 MiB hugepages (falls back to normal pages with a warning).
  bool hugepages = false;
  // mlock the arena and register it for DMA (needs IPC_LOCK).
  bool pinned = false;
  // Eviction policy of the DRAM tier.
  DramEviction eviction = DramEviction::kS3Fifo;
  // Start evicting when used/capacity exceeds this; evict down to low_watermark.
  double high_watermark = 0.95;
  double low_watermark = 0.85;

  friend bool operator==(const DramConfig&, const DramConfig&) = default;
};

struct NvmePathConfig {
  // A preallocated data file (created on first start) or a raw block device.
  std::string path;
  // Bytes of this path the store may use (for a block device: 0 = whole device).
  uint64_t capacity = 0;

  friend bool operator==(const NvmePathConfig&, const NvmePathConfig&) = default;
};

struct NvmeConfig {
  // Data paths, one per device; a value is striped over all of them. Empty = no NVMe tier.
  std::vector<NvmePathConfig> paths;
  // Size of a log-structured region (the unit of reclaim).
  uint64_t region_size = uint64_t{64} << 20;
  // Stripe unit across paths.
  uint64_t stripe_unit = uint64_t{4} << 20;
  // io_uring queue depth per ring.
  uint32_t queue_depth = 32;
  // Region reclaim order.
  ReclaimOrder reclaim = ReclaimOrder::kFifo;
  // Reclaim regions when used/capacity exceeds this, down to low_watermark.
  double high_watermark = 0.95;
  double low_watermark = 0.90;
  // Format a path even if it holds something that is neither ours nor zeros. Dangerous.
  bool force_format = false;

  friend bool operator==(const NvmeConfig&, const NvmeConfig&) = default;
};

struct AdmissionConfig {
  // Which puts (and demotions) are written to NVMe.
  AdmissionPolicy policy = AdmissionPolicy::kAll;
  // NVMe write budget in bytes per second, for policy write_budget.
  uint64_t write_budget = uint64_t{500} << 20;

  friend bool operator==(const AdmissionConfig&, const AdmissionConfig&) = default;
};

struct QuotaConfig {
  // Namespace digest (64 hex digits, as `twctl keys` and `twctl namespaces` print).
  std::string namespace_digest;
  // Bytes this namespace may hold across tiers; it evicts inside itself first.
  uint64_t bytes = 0;

  friend bool operator==(const QuotaConfig&, const QuotaConfig&) = default;
};

struct LeaseConfig {
  // How long a lookup's read lease keeps its chunks from being reclaimed.
  Duration duration = std::chrono::seconds(5);
  // Live leases a client may hold.
  uint32_t max_per_client = 1024;
  // Bytes a client may hold under leases.
  uint64_t max_bytes_per_client = uint64_t{64} << 30;

  friend bool operator==(const LeaseConfig&, const LeaseConfig&) = default;
};

struct LimitsConfig {
  // Concurrent client connections.
  uint32_t max_clients = 256;
  // Requests a client may have in flight.
  uint32_t max_inflight_per_client = 256;
  // Largest shared-memory arena a client may register.
  uint64_t max_arena_size = uint64_t{64} << 30;
  // Most items in one batched request.
  uint32_t max_batch = 4096;
  // Largest frame body on the socket.
  uint64_t max_frame_size = uint64_t{16} << 20;
  // Largest value (chunk) accepted.
  uint64_t max_value_size = uint64_t{256} << 20;

  friend bool operator==(const LimitsConfig&, const LimitsConfig&) = default;
};

struct TenantConfig {
  // Tenant name: the `tenant` namespace field this tenant's clients may use.
  std::string name;
  // Client uids and gids (SO_PEERCRED) mapped to this tenant.
  std::vector<uint32_t> uids;
  std::vector<uint32_t> gids;

  friend bool operator==(const TenantConfig&, const TenantConfig&) = default;
};

// Mutual TLS of the peer service: all three files or none (then the mesh is unauthenticated).
struct MeshTlsConfig {
  // PEM file of the CA that signs every node's certificate.
  std::string ca;
  // PEM certificate of this node (presented as server and as client).
  std::string cert;
  // PEM private key of `cert`.
  std::string key;
  // Name a peer's certificate must carry ("" = the peer's address from the peers file).
  std::string server_name;

  friend bool operator==(const MeshTlsConfig&, const MeshTlsConfig&) = default;
};

struct MeshConfig {
  // Federate hits with the other twd of the cluster (docs/mesh.md).
  bool enabled = false;
  // Data transport between peers.
  Transport transport = Transport::kTcp;
  // Address the peer service binds.
  std::string listen_address = "0.0.0.0";
  // Port of the peer service.
  uint32_t port = 7470;
  // Peers file ({"peers":[{"node","address","port"}]}), reloaded on change.
  std::string peers_file = "/etc/tokenwarehouse/peers/peers.json";
  // This node's name in the peers file ("" = $TW_NODE_NAME, else the hostname).
  std::string node_name;
  // RDMA device name ("" = first found).
  std::string rdma_device;
  // A peer request gives up after this and becomes a miss (peer_unreachable).
  Duration peer_timeout = std::chrono::milliseconds(200);
  // Keep a chunk fetched from a peer in local DRAM (memory durability), so the next get of it
  // is a local hit.
  bool cache_remote_hits = true;
  // Mutual TLS between peers (docs/mesh.md "Security").
  MeshTlsConfig tls;

  friend bool operator==(const MeshConfig&, const MeshConfig&) = default;
};

struct GpuConfig {
  // Check the GPU path at start (dlopen of the CUDA runtime and cuFile) and report it in the
  // log, `twctl stat` and /readyz (docs/gpu.md). twd's transfer queues are not served yet.
  bool enabled = false;
  // CUDA devices twd may use: "all" or a comma list of ordinals.
  std::string devices = "all";
  // GPUDirect Storage for NVMe → GPU reads.
  CuFileMode cufile = CuFileMode::kAuto;
  // Pinned staging buffer per GPU queue.
  uint64_t staging_buffer = uint64_t{64} << 20;

  friend bool operator==(const GpuConfig&, const GpuConfig&) = default;
};

// Most request worker threads twd accepts (Config::workers).
inline constexpr uint32_t kMaxWorkers = 1024;

struct Config {
  // debug, info, warn or error. Reloadable.
  std::string log_level = "info";
  SocketConfig socket;
  AdminSocketConfig admin_socket;
  MetricsConfig metrics;
  DramConfig dram;
  NvmeConfig nvme;
  AdmissionConfig admission;
  // Durability of puts that do not ask for one.
  Durability default_durability = Durability::kMemory;
  // Byte quota of any namespace not listed in `quotas`; 0 = no quota.
  uint64_t default_namespace_quota = 0;
  std::vector<QuotaConfig> quotas;
  LeaseConfig leases;
  LimitsConfig limits;
  // Threads that run requests off twd's reactor (get, put, exists, delete, admin
  // operations, lookups of more than 4096 keys); 0 = one per hardware thread, clamped to
  // [4, 32]. Needs a restart.
  uint32_t workers = 0;
  // On SIGTERM: time to finish requests and write back memory-durability chunks.
  Duration shutdown_grace = std::chrono::seconds(20);
  // uid/gid → tenant map; empty = one tenant, every local client may use every namespace.
  std::vector<TenantConfig> tenants;
  MeshConfig mesh;
  GpuConfig gpu;

  friend bool operator==(const Config&, const Config&) = default;
};

// Checks ranges and cross-field rules; the message names the field ("dram.capacity: ...").
Status Validate(const Config& config);

// Parses YAML (missing fields keep defaults, unknown fields are errors), then Validate().
StatusOr<Config> ParseYaml(std::string_view yaml);
// Reads and parses a file; errors name the file.
StatusOr<Config> LoadFile(const std::string& path);
// Renders every field, in a fixed order, sizes and durations with units. ParseYaml() of the
// result gives back an equal Config.
std::string RenderYaml(const Config& config);

}  // namespace tw::config
