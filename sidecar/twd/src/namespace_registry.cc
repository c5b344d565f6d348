#include "namespace_registry.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstring>

#include "tw/common/crc32c.h"
#include "tw/common/log.h"
#include "tw/common/strings.h"

namespace tw::twd {
namespace {

constexpr char kMagic[8] = {'T', 'W', 'N', 'S', 'R', 'E', 'G', '1'};
constexpr size_t kRecordHeader = 8;  // crc32c + length

void PutU32(std::string* out, uint32_t v) {
  for (int i = 0; i < 4; ++i) out->push_back(char((v >> (8 * i)) & 0xff));
}

uint32_t GetU32(const char* p) {
  uint32_t v = 0;
  for (int i = 0; i < 4; ++i) v |= uint32_t(uint8_t(p[i])) << (8 * i);
  return v;
}

// The payload's nine fields, or nullopt when it does not parse exactly.
std::optional<Namespace> DecodePayload(const char* p, size_t n) {
  Namespace ns;
  size_t at = 0;
  for (auto field : kNamespaceFields) {
    if (n - at < 4) return std::nullopt;
    const uint32_t len = GetU32(p + at);
    at += 4;
    if (n - at < len) return std::nullopt;
    (ns.*field).assign(p + at, len);
    at += len;
  }
  if (at != n) return std::nullopt;
  return ns;
}

Status WriteAll(int fd, const std::string& bytes, const std::string& path) {
  size_t done = 0;
  while (done < bytes.size()) {
    const ssize_t w = ::write(fd, bytes.data() + done, bytes.size() - done);
    if (w < 0 && errno == EINTR) continue;
    if (w < 0) return ErrnoStatus(errno, StrCat("write ", path));
    done += size_t(w);
  }
  if (::fdatasync(fd) != 0) return ErrnoStatus(errno, StrCat("fdatasync ", path));
  return OkStatus();
}

}  // namespace

std::string EncodeNamespaceRecord(const Namespace& fields) {
  std::string payload;
  for (auto field : kNamespaceFields) {
    PutU32(&payload, uint32_t((fields.*field).size()));
    payload += fields.*field;
  }
  std::string body;
  PutU32(&body, uint32_t(payload.size()));
  body += payload;
  std::string record;
  PutU32(&record, Crc32c(body.data(), body.size()));
  record += body;
  return record;
}

StatusOr<std::unique_ptr<NamespaceRegistry>> NamespaceRegistry::Open(const std::string& path,
                                                                     size_t max_entries) {
  int fd = -1;
  if (!path.empty()) {
    fd = ::open(path.c_str(), O_RDWR | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
    if (fd < 0) return ErrnoStatus(errno, StrCat("open namespace registry ", path));
  }
  std::unique_ptr<NamespaceRegistry> r(new NamespaceRegistry(path, fd, max_entries));
  if (fd >= 0) TW_RETURN_IF_ERROR(r->Load());
  return r;
}

NamespaceRegistry::NamespaceRegistry(std::string path, int fd, size_t max_entries)
    : path_(std::move(path)), fd_(fd), max_entries_(max_entries) {}

NamespaceRegistry::~NamespaceRegistry() {
  if (fd_ >= 0) ::close(fd_);
}

Status NamespaceRegistry::Load() {
  struct stat st {};
  if (::fstat(fd_, &st) != 0) return ErrnoStatus(errno, StrCat("stat ", path_));
  std::string data(size_t(st.st_size), '\0');
  size_t got = 0;
  while (got < data.size()) {
    const ssize_t n = ::pread(fd_, data.data() + got, data.size() - got, off_t(got));
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return ErrnoStatus(errno, StrCat("read ", path_));
    if (n == 0) break;
    got += size_t(n);
  }
  data.resize(got);
  if (data.size() < sizeof(kMagic)) {
    // New, or a crash before the magic reached the disk: nothing can have followed it.
    if (std::memcmp(data.data(), kMagic, data.size()) != 0) {
      return FailedPreconditionError(StrCat(path_, " is not a namespace registry (bad magic)"));
    }
    if (::ftruncate(fd_, 0) != 0) return ErrnoStatus(errno, StrCat("truncate ", path_));
    return WriteAll(fd_, std::string(kMagic, sizeof(kMagic)), path_);
  }
  if (std::memcmp(data.data(), kMagic, sizeof(kMagic)) != 0) {
    return FailedPreconditionError(StrCat(path_, " is not a namespace registry (bad magic)"));
  }
  size_t at = sizeof(kMagic);
  std::lock_guard lock(mu_);
  while (at < data.size()) {
    if (data.size() - at < kRecordHeader) break;  // torn header
    const uint32_t crc = GetU32(data.data() + at);
    const uint32_t len = GetU32(data.data() + at + 4);
    if (len > kMaxRecordBytes || data.size() - at - kRecordHeader < len) break;  // torn
    const char* body = data.data() + at + 4;
    const char* payload = data.data() + at + kRecordHeader;
    at += kRecordHeader + len;
    std::optional<Namespace> ns;
    if (Crc32c(body, 4 + len) == crc) ns = DecodePayload(payload, len);
    if (!ns) {
      load_stats_.corrupt++;
      continue;
    }
    if (known_.size() >= max_entries_) {
      load_stats_.over_cap++;
      continue;
    }
    if (known_.emplace(NamespaceDigest(*ns), std::move(*ns)).second) load_stats_.loaded++;
  }
  if (at < data.size()) {
    // A record cut short (by a crash mid-append): cut it off so that appends follow the
    // last whole record.
    load_stats_.torn_bytes = data.size() - at;
    if (::ftruncate(fd_, off_t(at)) != 0) return ErrnoStatus(errno, StrCat("truncate ", path_));
  }
  if (load_stats_.corrupt > 0 || load_stats_.torn_bytes > 0 || load_stats_.over_cap > 0) {
    TW_LOG(kWarn, "namespace registry: records skipped",
           {{"file", path_},
            {"loaded", load_stats_.loaded},
            {"corrupt", load_stats_.corrupt},
            {"over_cap", load_stats_.over_cap},
            {"torn_bytes", load_stats_.torn_bytes}});
  }
  return OkStatus();
}

void NamespaceRegistry::Add(const Key& digest, const Namespace& fields) {
  std::lock_guard lock(mu_);
  // Bounded: clients that declare ever new namespaces must not grow twd (or the file)
  // without limit. Past the cap the admin listing simply lacks the fields of the newest ones.
  if (known_.size() >= max_entries_ || known_.contains(digest)) return;
  known_.emplace(digest, fields);
  if (fd_ < 0) return;
  const std::string record = EncodeNamespaceRecord(fields);
  if (record.size() - kRecordHeader > kMaxRecordBytes) {
    TW_LOG(kWarn, "namespace registry: fields too long to keep across restarts",
           {{"namespace", digest.Hex()}});
    return;
  }
  struct stat st {};
  Status s = ::fstat(fd_, &st) == 0 ? WriteAll(fd_, record, path_)
                                    : ErrnoStatus(errno, StrCat("stat ", path_));
  if (!s.ok()) {
    // A part-written record would misalign the ones appended after it.
    if (st.st_size > 0) (void)!::ftruncate(fd_, st.st_size);
    TW_LOG(kWarn, "namespace registry: append failed; fields kept until twd stops",
           {{"namespace", digest.Hex()}, {"error", s}});
  }
}

std::optional<Namespace> NamespaceRegistry::Find(const Key& digest) const {
  std::lock_guard lock(mu_);
  auto it = known_.find(digest);
  if (it == known_.end()) return std::nullopt;
  return it->second;
}

std::map<Key, Namespace> NamespaceRegistry::Snapshot() const {
  std::lock_guard lock(mu_);
  return known_;
}

size_t NamespaceRegistry::size() const {
  std::lock_guard lock(mu_);
  return known_.size();
}

}  // namespace tw::twd
