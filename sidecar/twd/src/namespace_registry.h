// NamespaceRegistry: the namespace fields twd has learnt from clients (HELLO and DECLARE),
// keyed by their digest, kept in a small append-only file so that they survive a restart.
// The store keys chunks by the namespace digest only; with the registry, the admin listing,
// export and `twctl get/delete --key K` (which resolves K's namespace through the admin
// socket) name the namespace's fields after a restart too, before any client declares it.
//
// File format (little-endian): an 8-byte magic "TWNSREG1", then records, each
//   u32 crc32c  over the next two parts
//   u32 length  of the payload
//   payload     the nine fields in hashing order (keys.h), each as u32 length + bytes
// A record is appended (write + fdatasync) the first time a digest is added. On load a torn
// tail (a record cut short by a crash) is ignored and cut off; a record whose checksum or
// fields do not check is skipped and counted; records past the cap are ignored. The file
// therefore holds at most `max_entries` records of at most kMaxRecordBytes.
//
// Threading: every method is thread-safe. Lifetime: owns the file descriptor.
#pragma once

#include <cstddef>
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>

#include "tw/common/keys.h"
#include "tw/common/status.h"

namespace tw::twd {

class NamespaceRegistry {
 public:
  static constexpr uint32_t kMaxRecordBytes = 64 * 1024;

  struct LoadStats {
    uint64_t loaded = 0;      // records kept
    uint64_t corrupt = 0;     // records skipped: bad checksum or fields
    uint64_t over_cap = 0;    // records ignored past max_entries
    uint64_t torn_bytes = 0;  // bytes of a torn tail cut off
  };

  // Opens the registry file at `path` (created when absent) and loads it. An empty `path`
  // keeps the registry in memory only. Fails on a file that is not a registry (never
  // overwriting it) and on I/O errors.
  static StatusOr<std::unique_ptr<NamespaceRegistry>> Open(const std::string& path,
                                                           size_t max_entries);
  ~NamespaceRegistry();
  NamespaceRegistry(const NamespaceRegistry&) = delete;
  NamespaceRegistry& operator=(const NamespaceRegistry&) = delete;

  // Records `fields` under `digest` (== NamespaceDigest(fields)) unless known already or the
  // registry is full. A failed append is logged; the fields stay known until twd stops.
  void Add(const Key& digest, const Namespace& fields);
  std::optional<Namespace> Find(const Key& digest) const;
  std::map<Key, Namespace> Snapshot() const;
  size_t size() const;

  const LoadStats& load_stats() const { return load_stats_; }
  const std::string& path() const { return path_; }

 private:
  NamespaceRegistry(std::string path, int fd, size_t max_entries);
  Status Load();

  const std::string path_;
  const int fd_;  // -1: in memory only
  const size_t max_entries_;
  LoadStats load_stats_;  // written by Open() only

  mutable std::mutex mu_;
  std::map<Key, Namespace> known_;  // GUARDED_BY(mu_)
};

// The record encoding, exposed for tests.
std::string EncodeNamespaceRecord(const Namespace& fields);

}  // namespace tw::twd
