// Readers for the input files twctl commands take: a namespace as JSON, token ids as
// whitespace-separated integers, extra bytes as one hex line per chunk; and the rewrite of the
// command line that lets common options come before the subcommand. Pure functions over file
// contents and arguments (and thin file-reading wrappers), so they are tested without files.
#pragma once

#include <cstdint>
#include <set>
#include <string>
#include <string_view>
#include <vector>

#include "tw/common/keys.h"
#include "tw/common/status.h"

namespace tw::twctl {

// A JSON object with the nine namespace fields (docs/keys.md). Values are strings; a number
// is accepted for chunk_tokens. Missing fields are empty; unknown fields are errors.
StatusOr<Namespace> ParseNamespaceJson(std::string_view json);
// Whitespace-separated decimal token ids, each in 0..2^32-1.
StatusOr<std::vector<uint32_t>> ParseTokens(std::string_view text);
// One line per chunk: the chunk's extra bytes in hex, or an empty line for none.
StatusOr<std::vector<std::string>> ParseExtras(std::string_view text);

// Reads a whole file; the error names the path. "-" reads standard input.
StatusOr<std::string> ReadFile(const std::string& path);
StatusOr<Namespace> ReadNamespaceFile(const std::string& path);
StatusOr<std::vector<uint32_t>> ReadTokensFile(const std::string& path);
StatusOr<std::vector<std::string>> ReadExtrasFile(const std::string& path);

// The options every socket and admin command takes: --socket, --admin-socket, --timeout-ms
// (with a value, as `--opt V` or `--opt=V`) and --json.
bool IsCommonOption(std::string_view arg);

// `twctl --socket S stat` as `twctl stat --socket S`: the common options found before the first
// argument that names a subcommand move to just after it, in order. Anything else before the
// subcommand stays where it is (the parser then reports it). args[0] is the program.
std::vector<std::string> HoistCommonOptions(std::vector<std::string> args,
                                            const std::set<std::string>& subcommands);

}  // namespace tw::twctl
