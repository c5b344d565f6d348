#include "inputs.h"

#include <fstream>
#include <iostream>
#include <nlohmann/json.hpp>
#include <sstream>

#include "tw/common/strings.h"

namespace tw::twctl {

StatusOr<Namespace> ParseNamespaceJson(std::string_view json) {
  nlohmann::json doc;
  try {
    doc = nlohmann::json::parse(json);
  } catch (const nlohmann::json::exception& e) {
    return InvalidArgumentError(StrCat("namespace: not valid JSON: ", e.what()));
  }
  if (!doc.is_object()) return InvalidArgumentError("namespace: must be a JSON object");
  Namespace ns;
  for (const auto& [name, value] : doc.items()) {
    size_t i = 0;
    while (i < kNamespaceFieldCount && kNamespaceFieldNames[i] != name) ++i;
    if (i == kNamespaceFieldCount) {
      return InvalidArgumentError(StrCat("namespace: unknown field \"", name,
                                         "\" (fields: model, model_revision, tokenizer, "
                                         "kv_dtype, kv_layout, parallel, adapter, tenant, "
                                         "chunk_tokens)"));
    }
    if (value.is_string()) {
      ns.*kNamespaceFields[i] = value.get<std::string>();
    } else if (value.is_number_unsigned() && name == "chunk_tokens") {
      ns.*kNamespaceFields[i] = StrCat(value.get<uint64_t>());
    } else {
      return InvalidArgumentError(StrCat("namespace: field \"", name, "\" must be a string"));
    }
  }
  return ns;
}

StatusOr<std::vector<uint32_t>> ParseTokens(std::string_view text) {
  std::vector<uint32_t> out;
  size_t i = 0, index = 0;
  while (i < text.size()) {
    char c = text[i];
    if (c == ' ' || c == '\t' || c == '\n' || c == '\r') {
      ++i;
      continue;
    }
    size_t start = i;
    uint64_t v = 0;
    bool ok = true;
    while (i < text.size() &&
           !(text[i] == ' ' || text[i] == '\t' || text[i] == '\n' || text[i] == '\r')) {
      char d = text[i++];
      if (d < '0' || d > '9') ok = false;
      if (ok) {
        v = v * 10 + static_cast<uint64_t>(d - '0');
        if (v > UINT32_MAX) ok = false;
      }
    }
    if (!ok) {
      return InvalidArgumentError(StrCat("tokens: item ", index, " \"",
                                         text.substr(start, i - start),
                                         "\" is not a token id in 0..4294967295"));
    }
    out.push_back(static_cast<uint32_t>(v));
    ++index;
  }
  return out;
}

StatusOr<std::vector<std::string>> ParseExtras(std::string_view text) {
  std::vector<std::string> out;
  if (text.empty()) return out;
  std::vector<std::string_view> lines = Split(text, '\n');
  if (!lines.empty() && lines.back().empty()) lines.pop_back();  // trailing newline
  for (size_t i = 0; i < lines.size(); ++i) {
    std::string_view line = StripWhitespace(lines[i]);
    auto bytes = HexDecode(line);
    if (!bytes.ok()) {
      return InvalidArgumentError(StrCat("extras: line ", i + 1, ": ", bytes.status().message()));
    }
    out.emplace_back(bytes->begin(), bytes->end());
  }
  return out;
}

StatusOr<std::string> ReadFile(const std::string& path) {
  std::stringstream ss;
  if (path == "-") {
    ss << std::cin.rdbuf();
    return ss.str();
  }
  std::ifstream in(path, std::ios::binary);
  if (!in) return NotFoundError(StrCat("cannot read \"", path, "\""));
  ss << in.rdbuf();
  return ss.str();
}

StatusOr<Namespace> ReadNamespaceFile(const std::string& path) {
  TW_ASSIGN_OR_RETURN(std::string text, ReadFile(path));
  auto ns = ParseNamespaceJson(text);
  if (!ns.ok()) return ns.status().WithPrefix(path);
  return ns;
}

StatusOr<std::vector<uint32_t>> ReadTokensFile(const std::string& path) {
  TW_ASSIGN_OR_RETURN(std::string text, ReadFile(path));
  auto tokens = ParseTokens(text);
  if (!tokens.ok()) return tokens.status().WithPrefix(path);
  return tokens;
}

StatusOr<std::vector<std::string>> ReadExtrasFile(const std::string& path) {
  TW_ASSIGN_OR_RETURN(std::string text, ReadFile(path));
  auto extras = ParseExtras(text);
  if (!extras.ok()) return extras.status().WithPrefix(path);
  return extras;
}

namespace {

constexpr std::string_view kValueOptions[] = {"--socket", "--admin-socket", "--timeout-ms"};

bool TakesValue(std::string_view arg) {
  for (std::string_view o : kValueOptions) {
    if (arg == o) return true;
  }
  return false;
}

}  // namespace

bool IsCommonOption(std::string_view arg) {
  if (arg == "--json" || TakesValue(arg)) return true;
  for (std::string_view o : kValueOptions) {
    if (arg.size() > o.size() && arg.substr(0, o.size()) == o && arg[o.size()] == '=') {
      return true;
    }
  }
  return false;
}

std::vector<std::string> HoistCommonOptions(std::vector<std::string> args,
                                            const std::set<std::string>& subcommands) {
  std::vector<std::string> before, hoisted;
  size_t i = args.empty() ? 0 : 1;
  for (; i < args.size(); ++i) {
    const std::string& a = args[i];
    if (subcommands.count(a) != 0) break;
    if (IsCommonOption(a)) {
      hoisted.push_back(a);
      if (TakesValue(a) && i + 1 < args.size()) hoisted.push_back(args[++i]);
    } else {
      before.push_back(a);
    }
  }
  if (i == args.size() || hoisted.empty()) return args;  // no subcommand, or nothing to move
  std::vector<std::string> out;
  out.push_back(args[0]);
  out.insert(out.end(), before.begin(), before.end());
  out.push_back(args[i]);
  out.insert(out.end(), hoisted.begin(), hoisted.end());
  out.insert(out.end(), args.begin() + static_cast<long>(i) + 1, args.end());
  return out;
}

}  // namespace tw::twctl
