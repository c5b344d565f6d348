// tw::Status and tw::StatusOr<T>: the one error convention of Token Warehouse.
//
// Both are [[nodiscard]]. An OK Status costs one null pointer; an error carries a code and a
// message. Ignoring a status must be explicit (`.IgnoreError()`), so it can be grepped.
// Exceptions thrown by third-party libraries (yaml-cpp, cpprestsdk, nlohmann-json) are caught
// at the adapter and turned into a Status; they never cross a module boundary.
//
// Values are plain: copy and move freely; no threading rules beyond those of a value type.
#pragma once

#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>

namespace tw {

// The codes we use, and what each means here. The numbering matches gRPC/absl, so a code
// crosses an RPC boundary unchanged.
enum class StatusCode : int {
  kOk = 0,                  // success
  kCancelled = 1,           // the operation was abandoned (shutdown)
  kDeadlineExceeded = 4,    // the request's deadline passed before it could be served
  kInvalidArgument = 3,     // the caller's input is malformed; retrying will not help
  kNotFound = 5,            // the named thing is not there (a cache miss is a result, not this)
  kAlreadyExists = 6,       // the thing is already there
  kPermissionDenied = 7,    // the caller may not do this (tenant isolation, file modes)
  kResourceExhausted = 8,   // out of space, quota, slots or budget; retry later or smaller
  kFailedPrecondition = 9,  // wrong state: a foreign store, a path locked by another process
  kUnimplemented = 12,      // a feature not built into or not available to this binary
  kInternal = 13,           // a bug or an unclassified I/O error (the message says which)
  kUnavailable = 14,        // transient: a peer or device is unreachable; retry may succeed
  kDataLoss = 15,           // stored bytes failed their checksum (corruption)
};
std::string_view ToString(StatusCode code);

class [[nodiscard]] Status {
 public:
  Status() = default;
  Status(StatusCode code, std::string message);
  Status(const Status& other);
  Status& operator=(const Status& other);
  Status(Status&&) noexcept = default;
  Status& operator=(Status&&) noexcept = default;

  bool ok() const { return rep_ == nullptr; }
  StatusCode code() const { return rep_ ? rep_->code : StatusCode::kOk; }
  std::string_view message() const { return rep_ ? std::string_view(rep_->message) : ""; }
  // "OK" or "INVALID_ARGUMENT: dram.capacity: ...".
  std::string ToString() const;
  // Marks a deliberately ignored status.
  void IgnoreError() const {}
  // A copy with `prefix: ` put before the message (OK stays OK).
  Status WithPrefix(std::string_view prefix) const;

  friend bool operator==(const Status& a, const Status& b) {
    return a.code() == b.code() && a.message() == b.message();
  }

 private:
  struct Rep {
    StatusCode code;
    std::string message;
  };
  std::unique_ptr<Rep> rep_;
};

inline Status OkStatus() { return Status(); }
Status CancelledError(std::string message);
Status DeadlineExceededError(std::string message);
Status InvalidArgumentError(std::string message);
Status NotFoundError(std::string message);
Status AlreadyExistsError(std::string message);
Status PermissionDeniedError(std::string message);
Status ResourceExhaustedError(std::string message);
Status FailedPreconditionError(std::string message);
Status UnimplementedError(std::string message);
Status InternalError(std::string message);
Status UnavailableError(std::string message);
Status DataLossError(std::string message);

// Builds a status from errno: ENOSPC/EDQUOT/ENOMEM → kResourceExhausted, ENOENT → kNotFound,
// EACCES/EPERM → kPermissionDenied, EAGAIN/ECONNREFUSED/EPIPE → kUnavailable, EINVAL →
// kInvalidArgument, others (EIO) → kInternal. `what` names the operation and its object.
Status ErrnoStatus(int err, std::string_view what);

// A value or an error. REQUIRES: constructed from a non-OK Status or from a value.
template <typename T>
class [[nodiscard]] StatusOr {
 public:
  StatusOr(const Status& s) : status_(s) { CheckNotOk(); }        // NOLINT: implicit by design
  StatusOr(Status&& s) : status_(std::move(s)) { CheckNotOk(); }  // NOLINT
  StatusOr(const T& v) : value_(v) {}                             // NOLINT
  StatusOr(T&& v) : value_(std::move(v)) {}                       // NOLINT
  template <typename U>
  requires(std::is_constructible_v<T, U&&> && !std::is_same_v<std::decay_t<U>, T> &&
           !std::is_same_v<std::decay_t<U>, Status> && !std::is_same_v<std::decay_t<U>, StatusOr>)
      StatusOr(U&& v)
      : value_(std::forward<U>(v)) {}  // NOLINT

  bool ok() const { return status_.ok(); }
  const Status& status() const& { return status_; }
  Status status() && { return std::move(status_); }

  // REQUIRES: ok().
  const T& value() const& { return *value_; }
  T& value() & { return *value_; }
  T&& value() && { return std::move(*value_); }
  const T& operator*() const& { return *value_; }
  T& operator*() & { return *value_; }
  T&& operator*() && { return std::move(*value_); }
  const T* operator->() const { return &*value_; }
  T* operator->() { return &*value_; }
  template <typename U>
  T value_or(U&& fallback) const& {
    return ok() ? *value_ : static_cast<T>(std::forward<U>(fallback));
  }
  void IgnoreError() const {}

 private:
  void CheckNotOk() {
    if (status_.ok()) status_ = InternalError("StatusOr constructed from an OK status");
  }
  Status status_;
  std::optional<T> value_;
};

}  // namespace tw

#define TW_STATUS_CONCAT_INNER_(a, b) a##b
#define TW_STATUS_CONCAT_(a, b) TW_STATUS_CONCAT_INNER_(a, b)

// Returns from the current function when `expr` (a tw::Status) is not OK.
#define TW_RETURN_IF_ERROR(expr)             \
  do {                                       \
    ::tw::Status tw_status_ = (expr);        \
    if (!tw_status_.ok()) return tw_status_; \
  } while (0)

// `lhs = value of expr` (a tw::StatusOr<T>), or returns its error from the current function.
// `lhs` may declare a variable: TW_ASSIGN_OR_RETURN(auto fd, OpenFile(path));
#define TW_ASSIGN_OR_RETURN(lhs, expr) \
  TW_ASSIGN_OR_RETURN_IMPL_(TW_STATUS_CONCAT_(tw_statusor_, __LINE__), lhs, expr)
#define TW_ASSIGN_OR_RETURN_IMPL_(tmp, lhs, expr) \
  auto tmp = (expr);                              \
  if (!tmp.ok()) return std::move(tmp).status();  \
  lhs = std::move(tmp).value()
