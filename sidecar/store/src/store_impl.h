// StoreImpl: the Store facade. It owns the index (key → where the chunk lives), the DRAM tier,
// the NVMe engine, namespaces and quotas, the ghost set, admission and leases, and two
// background threads: write-back (memory-durability chunks → NVMe) and reclaim (frees NVMe
// regions before puts need them; expires leases).
//
// Locking: one mutex `mu_` guards every field below it. Data movement (memcpy into or out of
// the arena, NVMe I/O) happens outside `mu_`, under a pin: a pinned entry's DRAM extent is
// neither freed nor reused, and its NVMe region is not reclaimed. Lock order: mu_ before the
// engine's internal mutex; the engine never calls back into the Store while holding its own.
//
// Entry life: kFilling (invisible to readers; its key answers `exists` to other puts) →
// kReady. Removing an entry that is pinned marks it `doomed` (invisible) and the last unpin
// removes it.
#pragma once

#include <condition_variable>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <thread>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/container/flat_hash_set.h"
#include "dram_tier.h"
#include "nvme_engine.h"
#include "record_format.h"
#include "tw/store/store.h"

namespace tw::store {

class StoreImpl final : public Store {
 public:
  static StatusOr<std::unique_ptr<Store>> Create(const StoreOptions& options);
  ~StoreImpl() override;

  PutResult Put(const PutRequest& request) override;
  GetResult Get(const Key& key, std::span<const ScatterEntry> ranges, Deadline deadline,
                LeaseId lease) override;
  LookupResult Lookup(std::span<const Key> chain, bool take_lease) override;
  void ReleaseLease(LeaseId lease) override;
  std::optional<ChunkMeta> Stat(const Key& key) override;
  bool Delete(const Key& key) override;
  uint64_t EvictNamespace(const Key& namespace_digest) override;
  std::vector<NamespaceUsage> Namespaces() override;
  void Export(const std::function<bool(const ChunkMeta&)>& fn) override;
  StoreStats Stats() override;
  Status Reconfigure(const StoreOptions& options) override;
  Status Close(std::chrono::nanoseconds grace) override;

  // For tests: bytes the NVMe devices have read and written since Open.
  uint64_t nvme_bytes_read();

 private:
  static constexpr uint64_t kNoNvme = ~uint64_t{0};
  static constexpr uint32_t kNoDram = ~uint32_t{0};
  enum class State : uint8_t {
    kFilling = 0,  // being put; invisible to readers
    kReady = 1,    // readable
  };
  struct Entry {
    uint64_t nvme_off = kNoNvme;  // logical offset of the NVMe record
    uint32_t record_4k = 0;       // record length in 4 KiB units
    uint32_t header_len = 0;      // bytes
    uint32_t dram = kNoDram;      // DRAM object id
    uint32_t ns = 0;              // namespace id
    uint32_t pins = 0;
    State state = State::kFilling;
    bool dirty = false;      // in DRAM only, queued for write-back
    bool unwritten = false;  // in DRAM only, not admitted to NVMe (dropping it loses it)
    bool hit = false;        // read since it was written (reinsertion on reclaim)
    bool doomed = false;     // removed while pinned
    bool disk = false;       // put with durability `disk` (reclaim drops such chunks last)
  };
  struct DramObj {
    Key key;
    uint64_t off = 0;
    uint64_t len = 0;
  };
  struct Ns {
    Key digest;
    uint64_t chunks = 0;
    uint64_t bytes = 0;
    uint64_t quota = 0;
  };
  struct Lease {
    Clock::time_point expiry;
    std::vector<Key> keys;
  };
  // Where a pinned read goes.
  struct ReadPlan {
    Tier tier = Tier::kNone;
    uint8_t* dram = nullptr;  // record start in the arena
    uint64_t nvme_off = 0;
    uint64_t header_len = 0;
    uint64_t record_len = 0;
  };

  explicit StoreImpl(const StoreOptions& o);
  Status Init();

  // All REQUIRES mu_ held.
  Entry* Find(const Key& key);
  uint32_t NsId(const Key& digest);
  void Pin(Entry& e);
  void Unpin(const Key& key);
  void RemoveEntry(const Key& key, bool to_ghost);
  void FreeDram(Entry& e);
  void AddGhost(const Key& key);
  bool Admit(const Key& key, uint64_t bytes);
  bool MakeRoomInNamespace(uint32_t ns, uint64_t need);
  std::optional<uint64_t> AllocateDram(uint64_t len, Deadline deadline,
                                       std::unique_lock<std::mutex>& l);
  void ExpireLeases();
  MissReason AbsentReason(const Key& key) const;
  void CountMiss(MissReason r);
  uint64_t QuotaFor(const Key& digest) const;
  ReadPlan PlanRead(Entry& e);

  // Writes a whole record to NVMe: `header` (final CRCs; its sequence number is set here)
  // and the rest of the record at `record + header_len`. Sets the entry's NVMe location
  // before committing. No lock held on entry.
  StatusOr<NvmeEngine::Allocation> WriteRecord(const Key& key, const ChunkInfo& info,
                                               uint8_t* header, const uint8_t* record,
                                               const RecordLayout& layout, bool wait,
                                               Deadline deadline);
  // Reads header + requested ranges of an NVMe record into caller memory, verifying CRCs.
  MissReason ReadNvme(const Key& key, const ReadPlan& p, std::span<const ScatterEntry> ranges,
                      Deadline deadline, uint64_t* bytes);
  MissReason ReadDram(const ReadPlan& p, std::span<const ScatterEntry> ranges, uint64_t* bytes);
  StatusOr<RecordHeader> ReadHeader(const ReadPlan& p);

  // Evicts clean DRAM chunks above dram.high_watermark down to dram.low_watermark.
  void TrimDram();
  void WritebackLoop();
  void ReclaimLoop();
  // What reclaiming each region would lose: 0 nothing (its chunks are gone or also in DRAM),
  // 1 memory-durability chunks, 2 disk-acknowledged chunks. One pass over the index.
  std::vector<uint8_t> ReclaimCosts();
  // Reclaims the cheapest unpinned sealed region (by `cost`, then the configured order).
  bool ReclaimOne(const std::vector<uint8_t>& cost);
  void OnLost(const SummaryEntry& e);
  // Makes a delete or namespace eviction survive restarts: a tombstone of `kind` for `key` or
  // `ns`, durable on return. `sequenced` runs (no lock held) once the tombstone has its
  // sequence number, before the wait for durability. Retries for space like puts do.
  // REQUIRES: mu_ not held.
  Status PersistTombstone(EntryKind kind, const Key& key, const Key& ns,
                          const std::function<void()>& sequenced);

  StoreOptions opts_;
  std::unique_ptr<DramTier> dram_;
  std::unique_ptr<NvmeEngine> nvme_;

  std::mutex mu_;
  std::condition_variable cv_;       // space freed, write-back done, unpinned
  std::condition_variable work_cv_;  // wakes the background threads
  absl::flat_hash_map<Key, Entry> index_;
  std::vector<DramObj> dram_objs_;
  std::vector<uint32_t> free_objs_;
  absl::flat_hash_map<Key, uint32_t> ns_ids_;
  std::vector<Ns> ns_;
  std::deque<Key> ghost_fifo_;
  absl::flat_hash_set<Key> ghost_;
  std::deque<Key> seen_fifo_;  // admission on second sight
  absl::flat_hash_set<Key> seen_;
  double budget_tokens_ = 0;
  Clock::time_point budget_at_;
  std::deque<Key> writeback_q_;
  std::vector<uint32_t> region_pins_;
  std::map<LeaseId, Lease> leases_;
  LeaseId next_lease_ = 1;
  bool closing_ = false;
  bool closed_ = false;
  bool wb_busy_ = false;  // the write-back thread is writing a chunk
  bool stop_ = false;
  bool reclaim_wanted_ = false;
  StoreStats stats_;

  std::thread writeback_;
  std::thread reclaim_;
};

}  // namespace tw::store
