// Fuzz body of twctl's input files: the same bytes as a namespace JSON file, a token-ids file
// and an extras file; then split on NUL bytes as a command line for HoistCommonOptions.
// Accepted inputs keep their promises: token ids and extras count what the text holds.
#include <set>
#include <string>
#include <string_view>
#include <vector>

#include "fuzz_targets.h"
#include "inputs.h"

namespace tw::fuzz {

int FuzzTwctlInputs(const uint8_t* data, size_t size) {
  std::string_view text(reinterpret_cast<const char*>(data), size);
  int accepted = 0;
  accepted += twctl::ParseNamespaceJson(text).ok();
  if (auto tokens = twctl::ParseTokens(text); tokens.ok()) {
    ++accepted;
    if (tokens->size() > size) __builtin_trap();  // one digit at least per id
  }
  if (auto extras = twctl::ParseExtras(text); extras.ok()) {
    ++accepted;
    size_t bytes = 0;
    for (const auto& e : *extras) bytes += e.size();
    if (bytes * 2 > size) __builtin_trap();  // two hex digits per byte
  }
  std::vector<std::string> args;
  size_t start = 0;
  for (size_t i = 0; i <= size; ++i) {
    if (i == size || data[i] == 0) {
      args.emplace_back(text.substr(start, i - start));
      start = i + 1;
    }
  }
  static const std::set<std::string> kSubcommands = {"stat",  "lookup", "get",  "put",
                                                     "evict", "export", "keys", "namespaces"};
  std::vector<std::string> out = twctl::HoistCommonOptions(args, kSubcommands);
  if (out.size() != args.size()) __builtin_trap();  // hoisting moves, never adds or drops
  return accepted;
}

}  // namespace tw::fuzz
