// Structured logging: one line per event on stderr, `TIME LEVEL msg="..." key=value ...`,
// written through spdlog (common/src/log.cc).
//
// Thread-safe: lines from different threads never interleave. The level is process-wide and
// may change at any time (twd reloads it on SIGHUP). Values that contain spaces, quotes or
// '=' are quoted, so every line splits cleanly into fields.
//
//   TW_LOG(kInfo, "client connected", {{"uid", uid}, {"pid", pid}});
#pragma once

#include <concepts>
#include <initializer_list>
#include <string>
#include <string_view>

#include "tw/common/status.h"
#include "tw/common/strings.h"

namespace tw::log {

enum class Level {
  kDebug = 0,  // detail for developers; off by default
  kInfo = 1,   // lifecycle events: start, stop, client connect, reload
  kWarn = 2,   // something went wrong and was handled (a bad frame, a corrupt record)
  kError = 3,  // something went wrong that an operator should look at
};
std::string_view ToString(Level level);
// Accepts debug|info|warn|warning|error (case-insensitive); `field` names the config field.
StatusOr<Level> ParseLevel(std::string_view text, std::string_view field = "log_level");

void SetLevel(Level level);
Level GetLevel();
inline bool Enabled(Level level) { return static_cast<int>(level) >= static_cast<int>(GetLevel()); }

// One key=value pair. The value is formatted at construction.
struct Field {
  template <typename T>
  requires std::convertible_to<T, std::string_view> Field(std::string_view k, const T& v)
      : key(k), value(std::string_view(v)) {}
  template <typename T>
  requires(std::integral<T> || std::floating_point<T>) Field(std::string_view k, T v)
      : key(k), value(StrCat(v)) {}
  Field(std::string_view k, bool v) : key(k), value(v ? "true" : "false") {}
  Field(std::string_view k, const Status& s) : key(k), value(s.ToString()) {}

  std::string_view key;
  std::string value;
};

// Writes one line if `level` is enabled.
void Write(Level level, std::string_view message, std::initializer_list<Field> fields = {});
// Writes one audit line, `TIME AUDIT msg="..." key=value ...`, whatever the level: log_level
// never hides it, and `grep ' AUDIT '` finds every one (twd writes one per admin operation,
// docs/security.md).
void Audit(std::string_view message, std::initializer_list<Field> fields = {});

// Redirects output (tests). nullptr restores stderr. Not thread-safe with concurrent Write.
void SetSinkForTest(std::string* sink);

}  // namespace tw::log

#define TW_LOG(level, ...)                                    \
  do {                                                        \
    if (::tw::log::Enabled(::tw::log::Level::level))          \
      ::tw::log::Write(::tw::log::Level::level, __VA_ARGS__); \
  } while (0)
