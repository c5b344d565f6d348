// The torture harness's workload (tests/torture/): the chunks a client process stores, how
// their bytes derive from key and version (so any reader verifies without shared state), the
// log through which a client tells the harness which chunks were acknowledged `disk`, and the
// client process itself (RunWorker).
//
// A chunk's value has kSegments segments whose sizes derive from its key; 8-byte word i of
// segment s is Mix(key, version, s, i) for a version in [0, kVersions). A reader checks a
// range against each version in turn: bytes that match none are wrong bytes.
//
// Threading: the functions are pure, except RunWorker (one process, one thread). Lifetime:
// WorkerStats lives in a file the harness and the worker both map.
#pragma once

#include <array>
#include <cstdint>
#include <string>
#include <vector>

#include "tw_client.h"

namespace tw::torture {

inline constexpr int kSegments = 4;
inline constexpr uint64_t kVersions = 4;
inline constexpr int kChunkTokens = 16;
inline constexpr int kRanks = 2;  // tensor-parallel ranks: one namespace each

inline constexpr int kLatencyBuckets = 128;

using KeyBytes = std::array<uint8_t, TW_KEY_SIZE>;

// The namespace of rank `rank` in epoch `epoch` (epochs give the full-disk scenario new
// namespaces to register).
struct NamespaceFields {
  std::string parallel, adapter;
  tw_namespace Fields() const;
};
NamespaceFields NamespaceOf(uint32_t epoch, int rank);

// Segment sizes of a chunk's value (multiples of 8, 1–4 pages plus a tail).
std::array<uint64_t, kSegments> SegmentSizes(const KeyBytes& key);
uint64_t ValueSize(const KeyBytes& key);
// Fills `out` with bytes [offset, offset + length) of segment `segment` (offset and length
// multiples of 8).
void FillRange(const KeyBytes& key, uint64_t version, int segment, uint64_t offset, uint64_t length,
               uint8_t* out);
// True when `data` is bytes [offset, offset + length) of the segment under some version.
bool CheckRange(const KeyBytes& key, int segment, uint64_t offset, uint64_t length,
                const uint8_t* data);
// The same for the whole value laid out contiguously (what a get without a scatter list
// writes).
bool CheckValue(const KeyBytes& key, const uint8_t* data, uint64_t length);

std::string Hex(const KeyBytes& k);
bool FromHex(const std::string& s, KeyBytes* k);

// Counters one worker keeps in a file mapped by it and the harness (a SIGKILLed worker's
// counts survive it).
struct WorkerStats {
  uint64_t ops = 0;              // calls answered by twd
  uint64_t chunks_verified = 0;  // chunk reads whose bytes were checked
  uint64_t bytes_verified = 0;
  uint64_t wrong_bytes = 0;  // chunk reads with bytes other than the ones put
  uint64_t late_writes = 0;  // arena ranges written after their request was answered
  uint64_t misses[8] = {};   // get misses by TW_MISS_*
  uint64_t puts[8] = {};     // put results by TW_PUT_*
  uint64_t reconnects = 0;
  uint64_t call_errors = 0;  // calls that failed (twd gone, deadline, ...)
  uint64_t leases_taken = 0;
  // Latency of lookups and gets as the client sees them: bucket b holds calls that took
  // [2^(b/4), 2^((b+1)/4)) microseconds (LatencyBucket).
  uint64_t lookup_us[kLatencyBuckets] = {};
  uint64_t get_us[kLatencyBuckets] = {};
};

// The bucket of a latency in microseconds, and the lower bound of a bucket.
int LatencyBucket(double us);
double BucketMicros(int bucket);

// What the harness tells a worker process.
struct WorkerConfig {
  std::string socket;
  std::string log_path;    // acknowledgement log ("A epoch rank keyhex" / "D epoch rank keyhex")
  std::string stats_path;  // WorkerStats file (created by the harness)
  uint32_t id = 0;
  uint32_t epoch = 0;
  uint64_t seed = 1;
  uint32_t chains = 6;               // chains of this worker per rank
  uint32_t chain_length = 4;         // chunks per chain
  bool flood = false;                // send many requests, then stop itself and never read
  uint32_t short_deadline_pct = 15;  // gets with a deadline of a few ms
};

// The worker's main loop: runs until SIGTERM. Returns the exit code.
int RunWorker(const WorkerConfig& config);

// Parses "--worker k=v ..." arguments (the harness re-executes itself).
bool ParseWorkerArgs(int argc, char** argv, WorkerConfig* out);
std::vector<std::string> WorkerArgs(const WorkerConfig& c);

}  // namespace tw::torture
