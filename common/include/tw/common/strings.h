// Small string helpers used across the project (std::string_view based).
#pragma once

#include <fmt/format.h>

#include <charconv>
#include <concepts>
#include <string>
#include <string_view>
#include <vector>

namespace tw {

namespace strings_internal {
inline void Append(std::string& out, std::string_view s) { out.append(s); }
inline void Append(std::string& out, const char* s) { out.append(s); }
inline void Append(std::string& out, const std::string& s) { out.append(s); }
inline void Append(std::string& out, char c) { out.push_back(c); }
inline void Append(std::string& out, bool b) { out.append(b ? "true" : "false"); }
template <typename T>
requires(std::integral<T> && !std::same_as<T, char> &&
         !std::same_as<T, bool>) void Append(std::string& out, T v) {
  char buf[24];
  auto r = std::to_chars(buf, buf + sizeof buf, v);
  out.append(buf, r.ptr);
}
template <typename T>
requires std::floating_point<T>
void Append(std::string& out, T v) { out.append(fmt::format("{}", v)); }
}  // namespace strings_internal

// Concatenates strings, characters, integers and floating-point numbers.
template <typename... Args>
std::string StrCat(const Args&... args) {
  std::string out;
  (strings_internal::Append(out, args), ...);
  return out;
}

// Appends to `out`.
template <typename... Args>
void StrAppend(std::string* out, const Args&... args) {
  (strings_internal::Append(*out, args), ...);
}

// Splits on every `sep`; empty pieces are kept ("a,,b" → "a", "", "b"; "" → one "").
std::vector<std::string_view> Split(std::string_view s, char sep);
// Splits on the first `sep` only; one piece when `sep` is absent.
std::vector<std::string_view> SplitOnce(std::string_view s, char sep);
std::string_view StripWhitespace(std::string_view s);
std::string ToLower(std::string_view s);
// Joins with `sep`.
std::string Join(const std::vector<std::string>& parts, std::string_view sep);
// True when `s` is well-formed UTF-8 (no overlong forms, surrogates or code points past
// U+10FFFF).
bool IsValidUtf8(std::string_view s);

}  // namespace tw
