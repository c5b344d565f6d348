#include <iostream>
#include <memory>

#include "commands.h"
#include "inputs.h"
#include "tw/common/keys.h"

namespace tw::twctl {
namespace {

struct KeysOptions {
  std::string namespace_file;
  std::string tokens_file;
  std::string extras_file;
  bool digest_only = false;
};

int RunKeys(const KeysOptions& o) {
  auto ns = ReadNamespaceFile(o.namespace_file);
  if (!ns.ok()) {
    std::cerr << "twctl keys: " << ns.status().message() << "\n";
    return 1;
  }
  auto canonical = NormalizeNamespace(*ns);
  if (!canonical.ok()) {
    std::cerr << "twctl keys: " << o.namespace_file << ": " << canonical.status().message() << "\n";
    return 1;
  }
  if (o.digest_only) {
    std::cout << NamespaceDigest(*canonical).Hex() << "\n";
    return 0;
  }
  auto tokens = ReadTokensFile(o.tokens_file);
  if (!tokens.ok()) {
    std::cerr << "twctl keys: " << tokens.status().message() << "\n";
    return 1;
  }
  std::vector<std::string> extras;
  if (!o.extras_file.empty()) {
    auto e = ReadExtrasFile(o.extras_file);
    if (!e.ok()) {
      std::cerr << "twctl keys: " << e.status().message() << "\n";
      return 1;
    }
    extras = std::move(*e);
  }
  auto keys = ChunkKeys(*canonical, *tokens, extras);
  if (!keys.ok()) {
    std::cerr << "twctl keys: " << keys.status().message() << "\n";
    return 1;
  }
  std::string out;
  for (const Key& k : *keys) {
    out += k.Hex();
    out += '\n';
  }
  std::cout << out << std::flush;
  return 0;
}

}  // namespace

void RegisterKeysCommand(CLI::App& app, int* exit_code) {
  auto opts = std::make_shared<KeysOptions>();
  CLI::App* cmd = app.add_subcommand(
      "keys",
      "Print the chunk key of every full chunk of a token sequence, one hex key per line "
      "(the namespace is normalised first, as every client does; see docs/keys.md)");
  cmd->add_option("--namespace", opts->namespace_file,
                  "JSON file with the nine namespace fields (\"-\" = stdin)")
      ->required();
  cmd->add_option("--tokens", opts->tokens_file, "file of whitespace-separated token ids");
  cmd->add_option("--extras", opts->extras_file,
                  "file with one hex string of extra bytes per chunk per line (blank = none)");
  cmd->add_flag("--digest", opts->digest_only, "print only the namespace digest");
  cmd->callback([opts, cmd, exit_code] {
    if (!opts->digest_only && opts->tokens_file.empty()) {
      throw CLI::RequiredError("--tokens");
    }
    (void)cmd;
    *exit_code = RunKeys(*opts);
  });
}

}  // namespace tw::twctl
