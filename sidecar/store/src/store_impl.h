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
// Entry life: filling (invisible to readers; its key answers `exists` to other puts) →
// ready. Removing an entry that is pinned marks it `doomed` (invisible) and the last unpin
// removes it.
//
// The index is keyed by a chunk's 8-byte tag (the first 8 bytes of its SHA-256-derived key)
// and holds a packed 24-byte entry: 32 bytes a slot. The full key is verified wherever bytes
// are served: against the DRAM object's key, or the record header read from NVMe. Two live
// keys with one tag (probability about n^2 / 2^65) never serve each other's bytes: the second
// key's put answers `exists` and its reads miss (`absent`); see docs/storage.md. The ghost
// set, the admission set, the write-back queue, leases and pins hold tags too.
//
// Time: lease expiry and admission read the store's clock (opts_.now, injectable); deadlines
// and the background threads' polling are real time.
//
// Where the methods are: store_open_close.cc, store_put.cc, store_get.cc,
// lookup_and_leases.cc, delete.cc, store_stat_export.cc, store_index.cc (bookkeeping),
// eviction.cc (quota and DRAM eviction), write_back.cc, reclaim_executor.cc (the policy is
// reclaim_planner.h); docs/storage.md has the map.
#pragma once

#include <condition_variable>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <thread>
#include <type_traits>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/container/flat_hash_set.h"
#include "admission.h"
#include "aligned_buffer.h"
#include "dram_tier.h"
#include "nvme_engine.h"
#include "reclaim_planner.h"
#include "record_format.h"
#include "tw/store/store.h"

namespace tw::store {

class StoreImpl final : public Store {
 public:
  static StatusOr<std::unique_ptr<Store>> Create(const Options& options);
  ~StoreImpl() override;

  PutResult Put(const PutRequest& request) override;
  GetResult Get(const Key& key, std::span<const ScatterEntry> ranges, Deadline deadline,
                LeaseId lease) override;
  GetResult Get(const Key& key, std::span<const ScatterEntry> ranges,
                const GetOptions& options) override;
  std::optional<ChunkPeek> Peek(const Key& key) override;
  LookupResult Lookup(std::span<const Key> chain, bool take_lease) override;
  void ReleaseLease(LeaseId lease) override;
  std::optional<ChunkMeta> Stat(const Key& key) override;
  bool Delete(const Key& key) override;
  std::vector<bool> DeleteMany(std::span<const Key> keys) override;
  uint64_t EvictNamespace(const Key& namespace_digest) override;
  std::vector<NamespaceUsage> Namespaces() override;
  void Export(const std::function<bool(const ChunkMeta&)>& fn) override;
  StoreStats Stats() override;
  std::vector<EvictedChunk> TakeEvicted(size_t max) override;
  Status Reconfigure(const Options& options) override;
  Status Close(std::chrono::nanoseconds grace) override;

  // For tests (tw_store_testing's AwaitBackgroundIdle): waits until nothing waits for
  // write-back and a whole pass of the reclaim thread, begun after that, found nothing to
  // reclaim. False when that did not happen within `max` (real time).
  bool AwaitIdle(std::chrono::milliseconds max);

  // A chunk's tag is its key's first 8 bytes (keys are SHA-256 outputs: uniform). A lookup
  // relies on it: a DRAM object found under tag t has a key whose first 8 bytes are t, so only
  // the other 24 are compared (SameKeyPastTag).
  using Tag = uint64_t;
  static constexpr size_t kTagBytes = sizeof(Tag);
  static_assert(kTagBytes == 8 && sizeof(Key) == 32);
  static Tag TagOf(const Key& k) {
    uint64_t v;
    __builtin_memcpy(&v, k.bytes.data(), kTagBytes);
    return v;
  }
  // Whether a and b agree past their tags: the full-key compare of two keys of the same tag.
  // Word by word in scalars (an array of three words is spilled to the stack by GCC 12).
  static bool SameKeyPastTag(const Key& a, const Key& b) {
    return ((Word(a, 1) ^ Word(b, 1)) | (Word(a, 2) ^ Word(b, 2)) | (Word(a, 3) ^ Word(b, 3))) == 0;
  }
  static uint64_t Word(const Key& k, size_t i) {
    uint64_t v;
    __builtin_memcpy(&v, k.bytes.data() + i * sizeof v, sizeof v);
    return v;
  }

 private:
  static constexpr uint64_t kNoNvme = ~uint64_t{0};
  static constexpr uint64_t kNvmeBits = 38;  // 4 KiB units: 1 PiB of logical space
  static constexpr uint64_t kNoNvme4k = (uint64_t{1} << kNvmeBits) - 1;
  static constexpr uint64_t kMaxRecord4k = (uint64_t{1} << 26) - 1;  // 256 GiB records
  static constexpr uint64_t kMaxHeader4k = (uint64_t{1} << 12) - 1;  // 16 MiB headers
  static constexpr uint32_t kMaxNamespaces = (uint32_t{1} << 20) - 1;
  static constexpr uint8_t kChildrenSticky = reclaim::kChildrenSticky;
  // One index slot's value: 24 bytes. Pins and DRAM object ids live in side tables (few
  // chunks are pinned or in DRAM at once); the flags say whether there is one.
  struct Entry {
    uint64_t parent = 0;  // tag of the parent chunk; 0 for a first chunk (parent = namespace)
    uint64_t nvme_4k : kNvmeBits = kNoNvme4k;  // NVMe record offset in 4 KiB units
    uint64_t record_4k : 64 - kNvmeBits = 0;   // record length in 4 KiB units
    uint32_t ns : 20 = 0;                      // namespace id
    uint32_t header_4k : 12 = 0;               // header length in 4 KiB units
    uint8_t children = 0;        // stored chunks naming this one as parent (255: at least that)
    bool ready : 1 = false;      // readable (else being put)
    bool dirty : 1 = false;      // in DRAM only, queued for write-back
    bool unwritten : 1 = false;  // in DRAM only, not admitted to NVMe (dropping it loses it)
    bool hit : 1 = false;        // read since it was written (reinsertion on reclaim)
    bool doomed : 1 = false;     // removed while pinned
    bool in_dram : 1 = false;    // has a DRAM object (dram_ids_)
    bool pinned : 1 = false;     // has pins (pins_)
    bool counted : 1 = false;    // counted in its parent's `children`
    bool qref : 1 = false;       // read since the quota order last looked at it
    bool nvme_read : 1 = false;  // served from NVMe once (promotion on the second time)
    bool disk : 1 = false;       // put with durability `disk` (reclaim drops such chunks last)

    uint64_t nvme_off() const { return nvme_4k == kNoNvme4k ? kNoNvme : nvme_4k * 4096; }
    void set_nvme_off(uint64_t off) { nvme_4k = off == kNoNvme ? kNoNvme4k : off / 4096; }
    bool on_nvme() const { return nvme_4k != kNoNvme4k; }
    uint64_t record_len() const { return uint64_t(record_4k) * 4096; }
    uint64_t header_len() const { return uint64_t(header_4k) * 4096; }
  };
  static_assert(sizeof(Entry) <= 24);
  static_assert(sizeof(std::pair<const Tag, Entry>) <= 32);
  struct DramObj {
    Key key;  // the full key: reads from DRAM verify it
    uint64_t off = 0;
    uint64_t len = 0;
  };
  struct Ns {
    Key digest;
    uint64_t chunks = 0;
    uint64_t bytes = 0;
    uint64_t quota = 0;
    // Quota eviction order (kept while quota > 0): tags in insertion order, scanned like a
    // clock (read chunks and chunks with stored children get another round). May hold tags
    // of removed chunks; they are skipped.
    std::deque<Tag> order;
  };
  struct Lease {
    Clock::time_point expiry;
    std::vector<Tag> tags;
  };
  // Where a pinned read goes.
  struct ReadPlan {
    Tier tier = Tier::kNone;
    uint8_t* dram = nullptr;  // record start in the arena
    uint64_t nvme_off = 0;
    uint64_t header_len = 0;
    uint64_t record_len = 0;
    bool promote = false;  // an NVMe read that may copy the chunk into DRAM
  };
  // A record header as read for a get: decoded, plus its raw bytes when read from NVMe.
  struct HeaderRead {
    RecordHeader h;
    AlignedBuffer raw;  // empty when read from DRAM
  };

  explicit StoreImpl(const Options& o);
  Status Init();

  // All REQUIRES mu_ held. (Find and DramId are inline: a lookup calls them per chunk.)
  Entry* Find(Tag tag) {
    auto it = index_.find(tag);
    return it == index_.end() ? nullptr : &it->second;
  }
  // The same with the tag's hash given (TagHash): a lookup hashes each tag once for both maps.
  Entry* Find(Tag tag, size_t hash) {
    auto it = index_.find(tag, hash);
    return it == index_.end() ? nullptr : &it->second;
  }
  size_t TagHash(Tag tag) const { return index_.hash_function()(tag); }
  uint32_t NsId(const Key& digest);
  uint32_t DramId(Tag tag) const {
    auto it = dram_ids_.find(tag);
    return it == dram_ids_.end() ? ~uint32_t{0} : it->second;
  }
  uint32_t DramId(Tag tag, size_t hash) const {
    auto it = dram_ids_.find(tag, hash);
    return it == dram_ids_.end() ? ~uint32_t{0} : it->second;
  }
  uint32_t Pins(Tag tag) const;
  void Pin(Tag tag, Entry& e);
  void Unpin(Tag tag);
  void RemoveEntry(Tag tag, bool to_ghost);
  // Records an eviction for TakeEvicted() (with report_evictions): `key` when the caller knows
  // it, else the DRAM object's. REQUIRES mu_ held.
  void NoteEvicted(Tag tag, const Entry& e, const Key* key);
  void FreeDram(Tag tag, Entry& e);
  // Files the DRAM object under TagOf(key) (the tag is derived here, never passed: a lookup
  // relies on an object's key starting with the tag it is filed under).
  void AttachDram(Entry& e, const Key& key, uint64_t off, uint64_t len);
  // True when the chunk's parent chunk is not stored: no prefix lookup reaches it.
  bool Orphan(const Entry& e);
  void AddGhost(Tag tag);
  bool MakeRoomInNamespace(uint32_t ns, uint64_t need);
  void NoteInNamespace(uint32_t ns, Tag tag);
  void RebuildOrder(uint32_t ns);
  // Picks a DRAM victim among objects for which `evictable` holds: leaves and orphans first.
  std::optional<uint32_t> PickDramVictim(const std::function<bool(const Entry&)>& evictable);
  std::optional<uint64_t> AllocateDram(uint64_t len, Deadline deadline,
                                       std::unique_lock<std::mutex>& l);
  void ExpireLeases();
  MissReason AbsentReason(Tag tag) const;
  void CountMiss(MissReason r);
  uint64_t QuotaFor(const Key& digest) const;
  ReadPlan PlanRead(Tag tag, Entry& e);

  // Copies a chunk just read whole from NVMe into DRAM when there is room without evicting.
  // The entry is pinned by the caller's read. No lock held on entry.
  void Promote(Tag tag, const Key& key, const ReadPlan& p, const HeaderRead& hr,
               const RecordLayout& l, std::span<const ScatterEntry> ranges);
  // Reads (pinned) and verifies the header of the chunk `tag`; nullopt when absent, when the
  // header fails, or when `expect` is given and the full key differs. No lock held on entry.
  std::optional<ChunkMeta> StatTag(Tag tag, const Key* expect);

  // Writes a whole record to NVMe: `header` (final CRCs; its sequence number is set here)
  // and the rest of the record at `record + header_len`. Sets the entry's NVMe location
  // before committing. No lock held on entry.
  StatusOr<NvmeEngine::Allocation> WriteRecord(Tag tag, const ChunkInfo& info, uint8_t* header,
                                               const uint8_t* record, const RecordLayout& layout,
                                               bool wait, Deadline deadline);
  // Reads the header of a planned read and checks its key. kNone, or why not.
  MissReason ReadHeaderFor(const Key& key, const ReadPlan& p, HeaderRead* out);
  // Reads the requested ranges of an NVMe record into caller memory, verifying CRCs.
  MissReason ReadNvme(const ReadPlan& p, const RecordHeader& h, const RecordLayout& l,
                      std::span<const ScatterEntry> ranges, Deadline deadline, uint64_t* bytes);
  MissReason ReadDram(const ReadPlan& p, const RecordLayout& l,
                      std::span<const ScatterEntry> ranges, uint64_t* bytes);
  StatusOr<RecordHeader> ReadHeader(const ReadPlan& p);

  // Evicts clean DRAM chunks above dram.high_watermark down to dram.low_watermark.
  void TrimDram();
  void WritebackLoop();
  void ReclaimLoop();
  // One pass of the reclaim thread over the NVMe tier; true when nothing needed reclaiming.
  bool ReclaimPass(bool wanted);
  // Reclaim, the executor (reclaim_executor.cc; the policy is reclaim_planner.h). No lock
  // held on entry to any of these.
  // Prices every run: one pass over the index.
  reclaim::Prices ReclaimCosts();
  enum class ReclaimStep : uint8_t {
    kReclaimed = 0,  // a region was reclaimed
    kNone = 1,       // no candidate
    kReprice = 2,    // the prices are out of date: call ReclaimCosts() and try again
  };
  // Reclaims the first candidate in the planner's order that no read or lease pins, unless a
  // run still waiting for its commits would lose less: then it waits for that run's seal and
  // asks for new prices.
  ReclaimStep ReclaimOne(const reclaim::Prices& cost);
  // False when `cost` should be made anew before reclaiming a candidate that costs `best`
  // (then this may have waited, up to a second, for a cheaper run's seal).
  bool PricesHold(const reclaim::Prices& cost, uint8_t best);
  bool RegionPinned(uint32_t region);
  // Reclaims one region; false when it was pinned meanwhile or could not be released.
  bool ReclaimRegion(uint32_t region);
  // Asks the planner about the region's live chunks and applies what needs no I/O; returns
  // the chunks to rewrite in `rewrite`. False when the region is pinned.
  bool PlanAndDrop(uint32_t region, const std::vector<SummaryEntry>* recs,
                   std::vector<std::pair<Tag, SummaryEntry>>* rewrite);
  bool DetachForRewrite(uint32_t region, const std::vector<std::pair<Tag, SummaryEntry>>& rewrite,
                        const std::vector<AlignedBuffer>& bufs, std::vector<bool>* moving);
  std::vector<size_t> FinishRewrites(const std::vector<std::pair<Tag, SummaryEntry>>& rewrite,
                                     const std::vector<bool>& moving,
                                     const std::vector<StatusOr<NvmeEngine::Allocation>>& to,
                                     const std::vector<Status>& wrote);
  void OnLost(const SummaryEntry& e);
  // Makes a delete or namespace eviction survive restarts: a tombstone of `kind` for `key` or
  // `ns`, durable on return. `sequenced` runs (no lock held) once the tombstone has its
  // sequence number, before the wait for durability. Retries for space like puts do.
  // REQUIRES: mu_ not held.
  Status PersistTombstone(EntryKind kind, const Key& key, const Key& ns,
                          const std::function<void()>& sequenced);
  // PersistTombstone without waiting for durability: the future says when (and whether) it
  // is durable. `sequenced` has run when this returns.
  StatusOr<std::future<Status>> StartTombstone(EntryKind kind, const Key& key, const Key& ns,
                                               const std::function<void()>& sequenced);
  // What removing `key` for a delete did (REQUIRES: mu_ not held).
  enum class Removal : uint8_t {
    kAbsent = 0,     // not stored (or another key with its tag)
    kRemoved = 1,    // removed; no tombstone needed (no NVMe tier)
    kTombstone = 2,  // removed and pinned (doomed): unpin once its tombstone is sequenced
  };
  Removal RemoveForDelete(const Key& key);

  Options opts_;
  std::unique_ptr<DramTier> dram_;
  std::unique_ptr<NvmeEngine> nvme_;

  std::mutex mu_;
  std::condition_variable cv_;       // space freed, write-back done, unpinned
  std::condition_variable work_cv_;  // wakes the background threads
  absl::flat_hash_map<Tag, Entry> index_;
  absl::flat_hash_map<Tag, uint32_t> dram_ids_;  // chunks in DRAM → DRAM object id
  // One hash of a tag serves both maps (Find and DramId with a hash).
  static_assert(std::is_same_v<decltype(index_)::hasher, decltype(dram_ids_)::hasher>);
  absl::flat_hash_map<Tag, uint32_t> pins_;  // pinned chunks → pin count
  std::vector<DramObj> dram_objs_;
  std::vector<uint32_t> free_objs_;
  absl::flat_hash_map<Key, uint32_t> ns_ids_;
  std::vector<Ns> ns_;
  std::deque<Tag> ghost_fifo_;
  absl::flat_hash_set<Tag> ghost_;
  Admission admission_;
  std::deque<Tag> writeback_q_;
  std::vector<uint32_t> region_pins_;
  std::map<LeaseId, Lease> leases_;
  // Lookup's scratch (the tiers found, the DRAM ids and NVMe offsets to touch), kept to save
  // allocations per lookup.
  std::vector<Tier> lookup_tiers_;
  std::vector<uint32_t> lookup_dram_ids_;
  std::vector<uint64_t> lookup_nvme_offs_;
  LeaseId next_lease_ = 1;
  bool closing_ = false;
  bool closed_ = false;
  bool wb_busy_ = false;  // the write-back thread is writing a chunk
  bool stop_ = false;
  bool reclaim_wanted_ = false;
  uint64_t reclaim_passes_ = 0;      // passes of the reclaim thread (AwaitIdle)
  bool reclaim_idle_ = false;        // the last pass found nothing to reclaim
  std::condition_variable idle_cv_;  // a reclaim pass ended (AwaitIdle)
  StoreStats stats_;
  std::vector<EvictedChunk> evicted_;  // GUARDED_BY(mu_): for TakeEvicted(), bounded

  std::thread writeback_;
  std::thread reclaim_;
};

}  // namespace tw::store
