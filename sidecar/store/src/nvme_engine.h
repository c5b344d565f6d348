// NvmeEngine: the NVMe tier's space and durability manager. It owns the devices (through a
// StripedVolume), lays out large log-structured regions, hands out append-only space in the
// open region, commits records (group commit: one data sync and one journal write+sync for
// every record that arrived meanwhile), seals full regions with a dense summary, and recovers
// the set of committed records after any stop from the summaries and the journal alone.
//
// It knows nothing about keys beyond the summary entries it persists: the Store keeps the
// index, decides what to reclaim, and calls ReleaseRegion() once no index entry points into a
// region. A record is findable after a crash iff Commit() of it returned OK with wait = true
// (or its journal block happened to be synced before the stop).
//
// Crash safety, in order of events for a region: open (header "open" at a fresh epoch,
// synced, before any data lands) → records written → data synced → journal blocks written and
// synced (then the puts are acknowledged) → region full, all its records committed → dense
// summary + header "sealed" written and synced → superblock checkpoint restarts the journal.
// Recovery trusts a record only if its region's newest epoch is the one it was written in,
// and a multi-region record only if every region it covers still carries that epoch.
//
// Threading: every public method is thread-safe. One internal committer thread does the
// journal and seal I/O. Reads take no lock. Lifetime: Open() → ... → Close() (clean: seals
// and checkpoints) → destroy; destroying without Close() is a crash as far as the media is
// concerned.
#pragma once

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <functional>
#include <future>
#include <map>
#include <memory>
#include <mutex>
#include <span>
#include <thread>
#include <vector>

#include "metadata_format.h"
#include "striped_volume.h"
#include "tw/common/status.h"
#include "tw/store/device.h"
#include "tw/store/options.h"

namespace tw::store {

class NvmeEngine {
 public:
  struct Options {
    NvmeOptions config;
    std::shared_ptr<DeviceFactory> factory;  // required
    // Called (from the committer thread, no engine lock held) for each record whose
    // Commit(wait = false) failed: it was written but will not be found after a restart.
    std::function<void(const SummaryEntry&)> on_lost;
  };

  // Space for one record.
  struct Allocation {
    uint64_t offset = 0;  // logical
    uint64_t length = 0;
    uint32_t region = 0;  // first region of the record
    uint64_t epoch = 0;   // the region's epoch
    uint64_t seq = 0;     // the record's sequence number
  };

  // Counters for stats.
  struct Counters {
    uint64_t regions = 0;
    uint64_t free_regions = 0;
    uint64_t region_size = 0;
    uint64_t capacity = 0;
    uint64_t commits = 0;  // journal writes (group commits)
    uint64_t seals = 0;
    uint64_t io_errors = 0;
    uint64_t bytes_read = 0;  // device bytes, all I/O
    uint64_t bytes_written = 0;
  };

  // Opens the paths: formats empty ones, recovers ours, refuses anything else unless
  // config.force_format. `recovered` receives every committed record (newest per key).
  static StatusOr<std::unique_ptr<NvmeEngine>> Open(const Options& options,
                                                    std::vector<SummaryEntry>* recovered);
  ~NvmeEngine();

  // Reserves `length` bytes (4 KiB multiple) of append-only space. ResourceExhausted when no
  // free region is left but the one kept for reclaim (kReclaimReserve; the Store then
  // reclaims and retries).
  StatusOr<Allocation> Allocate(uint64_t length);
  // Reserves a summary slot without bytes in the open region, for a tombstone: its sequence
  // number is larger than that of every record allocated before and smaller than that of
  // every record allocated after. Commit() it (entry.kind != kRecord) or Abort() it.
  StatusOr<Allocation> AllocateEntry() { return AllocateImpl(0); }
  // Gives up an allocation whose write failed (or was abandoned).
  void Abort(const Allocation& a);
  // Writes the whole record (length bytes at a kIoAlign-aligned `buf`).
  Status Write(const Allocation& a, const void* buf);
  // Writes the record from two aligned pieces: its header, and the rest.
  Status Write(const Allocation& a, const void* header, uint64_t header_len, const void* rest);
  // Makes the written record findable after a crash. With `wait`, returns once its journal
  // entry and data are durable; without, returns at once (the commit happens in the
  // background). Every allocation ends in exactly one Commit() or Abort().
  Status Commit(const Allocation& a, const SummaryEntry& entry, bool wait);
  // Commit(wait = true) without the wait: the future holds what Commit would have returned.
  // Many of these in a row share group commits.
  std::future<Status> CommitAsync(const Allocation& a, const SummaryEntry& entry);

  Status Read(uint64_t offset, void* buf, uint64_t length) {
    return volume_->Read(offset, buf, length);
  }
  Status Read(std::span<const VolumeIo> ios) { return volume_->Read(ios); }

  uint32_t RegionOf(uint64_t offset) const { return uint32_t(offset / sb_.region_size); }
  // The first region of the run holding `offset` (a run is a region extended over the
  // regions after it so that records need not stop at region boundaries).
  uint32_t HeadOf(uint64_t offset) const;
  uint32_t region_count() const { return sb_.region_count; }
  // Where reclaim stands with a run: full runs are sealed, or closed and still waiting for
  // their records' commits (then they become candidates once the committer seals them).
  enum class RunState : uint8_t { kNotFull = 0, kSealing = 1, kSealed = 2 };
  struct RegionView {
    uint32_t head;  // the first region of its run (itself unless covered by a longer run)
    RunState run;   // the state of that run
  };
  // Every region, under one lock: HeadOf() for many offsets, plus the runs' states.
  std::vector<RegionView> Regions() const;
  // Waits until the run at `head` is no longer waiting to be sealed, at most `max`. True when
  // it is not (sealed, or never was waiting).
  bool AwaitSealed(uint32_t head, std::chrono::milliseconds max);
  uint64_t region_size() const { return sb_.region_size; }
  uint32_t free_regions() const;
  // A sealed region: the candidates of reclaim, which orders them (reclaim_planner.h).
  struct SealedRegion {
    uint32_t region = 0;
    uint64_t seal_seq = 0;     // when it was sealed
    uint64_t last_access = 0;  // when it was last read (0 unless reads are tracked: LRU)
  };
  std::vector<SealedRegion> SealedRegions() const;
  // The records a sealed region holds, read from its dense summary.
  StatusOr<std::vector<SummaryEntry>> RegionEntries(uint32_t region);
  // Frees a sealed region (and the regions its run covers) once the Store has dropped every
  // index entry into it. `entries` is what RegionEntries() returned (empty when unreadable):
  // its tombstones that may still cover a record elsewhere on media are committed again into
  // the open region first; then the region's header is rewritten ("open" at a fresh epoch),
  // so none of its records can come back after a restart. Then, before any other allocation
  // can take the freed space, allocates `then_allocate` (record lengths: the reclaimed
  // region's records to rewrite) into `allocations`, one result each (none when the release
  // fails). Does I/O; call without Store locks.
  Status ReleaseRegion(uint32_t region, std::span<const SummaryEntry> entries,
                       std::span<const uint64_t> then_allocate = {},
                       std::vector<StatusOr<Allocation>>* allocations = nullptr);
  // Writes "open" headers at fresh epochs to free regions ahead of need (up to `want` such
  // regions), so opening a region on the put path costs no I/O. Called by a background
  // thread.
  Status PrepareRegions(uint32_t want);
  // Notes a read of the record at `offset`. Only LRU reclaim orders regions by reads: under
  // FIFO this returns at once, taking no lock.
  void Touch(uint64_t offset) { Touch(std::span<const uint64_t>(&offset, 1)); }
  // The same for many records under one lock, in the given order (the last is the most
  // recent).
  void Touch(std::span<const uint64_t> offsets);
  // Whether Touch() records anything (LRU reclaim); fixed at Open(). A lookup skips gathering
  // the offsets when it does not.
  bool tracks_reads() const { return track_reads_; }

  // Seals the open region and checkpoints, so the next Open() reads no journal. Waits for
  // pending commits.
  Status Close();

  Counters counters() const;
  StripedVolume& volume() { return *volume_; }

 private:
  enum class RState : uint8_t {
    kFree = 0,      // available; gets a fresh epoch when opened
    kOpen = 1,      // taking allocations
    kClosing = 2,   // full; waiting for its records' commits, then sealed
    kSealed = 3,    // holds records; may be reclaimed
    kCont = 4,      // covered by a multi-region record of `owner`
    kPrepared = 5,  // free, and its header already says "open" at `epoch`: opens without I/O
  };
  static bool Usable(RState s) { return s == RState::kFree || s == RState::kPrepared; }
  struct Region {
    RState state = RState::kFree;
    uint64_t epoch = 0;
    uint32_t span = 1;
    uint32_t owner = 0;
    uint64_t write_off = 0;
    uint32_t reserved = 0;
    uint32_t inflight = 0;
    std::vector<SummaryEntry> entries;  // committed, until sealed
    uint64_t seal_seq = 0;
    uint64_t last_access = 0;
  };
  struct Pending {
    SummaryEntry entry;
    uint32_t region;
    std::shared_ptr<std::promise<Status>> done;  // null: nobody waits
  };

  NvmeEngine() = default;
  // Free regions that only reclaim may open: releasing a region first carries its live
  // tombstones into the open region, which takes a slot, and so a fresh region when the open
  // one is full. Were puts to take the last free region, no region could be released again
  // and the tier would answer `busy` for good.
  static constexpr uint32_t kReclaimReserve = 1;
  // length 0: a tombstone's slot. `reclaim`: the allocation may open the reserve.
  StatusOr<Allocation> AllocateImpl(uint64_t length, bool reclaim = false);
  // REQUIRES: alloc_mu_ held.
  StatusOr<Allocation> AllocateAllocLocked(uint64_t length, bool reclaim = false);
  uint32_t UsableLocked() const;  // REQUIRES: mu_ held
  // The usable region where a new run of `span` regions should start: the one with the most
  // usable regions after it (so the run can grow), prepared ones first. -1 when none fits.
  int64_t PickRunStartLocked(uint32_t span) const;
  // The oldest epoch of a region holding records outside the run at `except` (UINT64_MAX if
  // none): a tombstone issued after it may still cover a record on media.
  uint64_t OldestLiveEpochLocked(uint32_t except) const;
  Status Format(const Options& o);
  Status Recover(std::vector<SummaryEntry>* recovered);
  Status WriteCheckpoint();  // REQUIRES: committer thread or single-threaded
  Status SealRegion(uint32_t r, const std::vector<SummaryEntry>& entries, uint64_t epoch);
  Status OpenRegionLocked(uint32_t first, uint32_t span, std::unique_lock<std::mutex>& l);
  // Writes "open" markers at `epoch` for regions [first, first + n). Unlocks `l` meanwhile.
  Status WriteMarkersLocked(uint32_t first, uint32_t n, uint64_t epoch,
                            std::unique_lock<std::mutex>& l);
  void CloseOpenLocked();
  void CommitterLoop();
  void Finish(std::vector<Pending>& batch, const Status& s);

  Superblock sb_;
  std::unique_ptr<StripedVolume> volume_;
  uint64_t dense_bytes_ = 0;  // per region

  mutable std::mutex mu_;
  std::condition_variable cv_;
  std::mutex alloc_mu_;                 // serializes Allocate (region opens do I/O)
  std::vector<Region> regions_;         // guarded by mu_
  int64_t open_ = -1;                   // the open region, guarded by mu_
  std::deque<uint32_t> journal_order_;  // regions with records not yet sealed, oldest first
  std::vector<Pending> pending_;        // guarded by mu_
  std::map<uint32_t, std::vector<Pending>> held_;  // committer only
  uint64_t seq_ = 0;                               // guarded by mu_
  uint64_t access_clock_ = 0;                      // guarded by mu_
  uint64_t seal_clock_ = 0;                        // guarded by mu_
  uint32_t journal_pos_ = 0;                       // committer only
  bool stop_ = false;                              // guarded by mu_
  Counters counters_;                              // guarded by mu_
  std::function<void(const SummaryEntry&)> on_lost_;
  bool track_reads_ = false;  // reclaim is LRU: Touch() records read times
  std::thread committer_;
};

}  // namespace tw::store
