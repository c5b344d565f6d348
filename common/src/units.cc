#include "tw/common/units.h"

#include <cctype>
#include <limits>

#include "tw/common/strings.h"

namespace tw {
namespace {

bool IsDigit(char c) { return c >= '0' && c <= '9'; }

struct Number {
  uint64_t whole = 0;     // integer part
  uint64_t frac = 0;      // fractional digits as an integer
  uint64_t frac_div = 1;  // 10^(number of fractional digits)
};

Status Bad(std::string_view field, std::string_view text, std::string_view what) {
  return InvalidArgumentError(StrCat(field, ": \"", text, "\" is not ", what));
}

// Parses the leading [0-9]+(.[0-9]+)? of `s`; advances `s` past it.
bool ParseNumber(std::string_view& s, Number& n, bool& overflow) {
  size_t i = 0;
  overflow = false;
  if (i >= s.size() || !IsDigit(s[i])) return false;
  while (i < s.size() && IsDigit(s[i])) {
    uint64_t d = static_cast<uint64_t>(s[i] - '0');
    if (n.whole > (std::numeric_limits<uint64_t>::max() - d) / 10) overflow = true;
    n.whole = n.whole * 10 + d;
    ++i;
  }
  if (i < s.size() && s[i] == '.') {
    ++i;
    if (i >= s.size() || !IsDigit(s[i])) return false;
    while (i < s.size() && IsDigit(s[i])) {
      if (n.frac_div >= 1'000'000'000'000ULL) return false;  // more precision than we take
      n.frac = n.frac * 10 + static_cast<uint64_t>(s[i] - '0');
      n.frac_div *= 10;
      ++i;
    }
  }
  s.remove_prefix(i);
  return true;
}

// value = n * mult, exactly; false on overflow or a fractional result.
bool Scale(const Number& n, uint64_t mult, uint64_t& out, bool& inexact) {
  inexact = false;
  unsigned __int128 whole = static_cast<unsigned __int128>(n.whole) * mult;
  unsigned __int128 fnum = static_cast<unsigned __int128>(n.frac) * mult;
  if (fnum % n.frac_div != 0) {
    inexact = true;
    return false;
  }
  unsigned __int128 total = whole + fnum / n.frac_div;
  if (total > std::numeric_limits<uint64_t>::max()) return false;
  out = static_cast<uint64_t>(total);
  return true;
}

}  // namespace

StatusOr<uint64_t> ParseByteSize(std::string_view text, std::string_view field) {
  std::string_view s = StripWhitespace(text);
  constexpr std::string_view kWhat =
      "a byte size (a non-negative number with an optional unit: B, KB, MB, GB, TB, KiB, MiB, "
      "GiB, TiB, Ki, Mi, Gi, Ti)";
  if (!s.empty() && (s[0] == '-' || s[0] == '+')) {
    return Bad(field, text, "a byte size (it must not be negative or signed)");
  }
  Number n;
  bool overflow = false;
  if (!ParseNumber(s, n, overflow)) return Bad(field, text, kWhat);
  if (overflow) return Bad(field, text, "a byte size that fits in 64 bits");
  s = StripWhitespace(s);
  std::string unit = ToLower(s);
  if (s == "m") return Bad(field, text, kWhat);  // Kubernetes milli-bytes make no sense
  uint64_t mult = 0;
  static constexpr struct {
    std::string_view name;
    uint64_t mult;
  } kUnits[] = {
      {"", 1},
      {"b", 1},
      {"k", 1000ULL},
      {"kb", 1000ULL},
      {"m", 1000ULL * 1000},
      {"mb", 1000ULL * 1000},
      {"g", 1000ULL * 1000 * 1000},
      {"gb", 1000ULL * 1000 * 1000},
      {"t", 1000ULL * 1000 * 1000 * 1000},
      {"tb", 1000ULL * 1000 * 1000 * 1000},
      {"p", 1000ULL * 1000 * 1000 * 1000 * 1000},
      {"pb", 1000ULL * 1000 * 1000 * 1000 * 1000},
      {"ki", 1ULL << 10},
      {"kib", 1ULL << 10},
      {"mi", 1ULL << 20},
      {"mib", 1ULL << 20},
      {"gi", 1ULL << 30},
      {"gib", 1ULL << 30},
      {"ti", 1ULL << 40},
      {"tib", 1ULL << 40},
      {"pi", 1ULL << 50},
      {"pib", 1ULL << 50},
  };
  for (const auto& u : kUnits) {
    if (unit == u.name) {
      mult = u.mult;
      break;
    }
  }
  if (mult == 0) return Bad(field, text, kWhat);
  uint64_t out = 0;
  bool inexact = false;
  if (!Scale(n, mult, out, inexact)) {
    if (inexact) return Bad(field, text, "a whole number of bytes");
    return Bad(field, text, "a byte size that fits in 64 bits");
  }
  return out;
}

StatusOr<std::chrono::nanoseconds> ParseDuration(std::string_view text, std::string_view field) {
  std::string_view s = StripWhitespace(text);
  constexpr std::string_view kWhat =
      "a duration (a non-negative number with a unit: ns, us, ms, s, m, h — e.g. \"250ms\")";
  if (!s.empty() && (s[0] == '-' || s[0] == '+')) {
    return Bad(field, text, "a duration (it must not be negative or signed)");
  }
  Number n;
  bool overflow = false;
  if (!ParseNumber(s, n, overflow)) return Bad(field, text, kWhat);
  if (overflow) return Bad(field, text, "a duration that fits in 64 bits of nanoseconds");
  s = StripWhitespace(s);
  uint64_t mult = 0;
  if (s.empty()) {
    if (n.whole == 0 && n.frac == 0) return std::chrono::nanoseconds(0);
    return Bad(field, text, kWhat);
  }
  if (s == "ns")
    mult = 1;
  else if (s == "us" || s == "\xC2\xB5s")
    mult = 1000;
  else if (s == "ms")
    mult = 1000'000;
  else if (s == "s")
    mult = 1000'000'000;
  else if (s == "m")
    mult = 60ULL * 1000'000'000;
  else if (s == "h")
    mult = 3600ULL * 1000'000'000;
  else
    return Bad(field, text, kWhat);
  uint64_t out = 0;
  bool inexact = false;
  if (!Scale(n, mult, out, inexact)) {
    if (inexact) return Bad(field, text, "a whole number of nanoseconds");
    return Bad(field, text, "a duration that fits in 64 bits of nanoseconds");
  }
  if (out > static_cast<uint64_t>(std::numeric_limits<int64_t>::max())) {
    return Bad(field, text, "a duration that fits in 64 bits of nanoseconds");
  }
  return std::chrono::nanoseconds(static_cast<int64_t>(out));
}

std::string FormatByteSize(uint64_t bytes) {
  static constexpr struct {
    const char* name;
    int shift;
  } kUnits[] = {{"PiB", 50}, {"TiB", 40}, {"GiB", 30}, {"MiB", 20}, {"KiB", 10}};
  if (bytes == 0) return "0";
  for (const auto& u : kUnits) {
    uint64_t m = 1ULL << u.shift;
    if (bytes % m == 0) return StrCat(bytes / m, u.name);
  }
  return StrCat(bytes);
}

std::string FormatDuration(std::chrono::nanoseconds d) {
  int64_t ns = d.count();
  if (ns == 0) return "0s";
  static constexpr struct {
    const char* name;
    int64_t mult;
  } kUnits[] = {{"h", 3600LL * 1000'000'000},
                {"m", 60LL * 1000'000'000},
                {"s", 1000'000'000},
                {"ms", 1000'000},
                {"us", 1000},
                {"ns", 1}};
  for (const auto& u : kUnits) {
    if (ns % u.mult == 0) return StrCat(ns / u.mult, u.name);
  }
  return StrCat(ns, "ns");
}

}  // namespace tw
