// twctl — Token Warehouse's command-line tool. See `twctl --help` and docs/.
#include <CLI/CLI.hpp>
#include <set>
#include <string>
#include <vector>

#include "commands.h"
#include "inputs.h"

int main(int argc, char** argv) {
  CLI::App app{"twctl: inspect and operate a Token Warehouse (keys, cache contents, admin)"};
  app.require_subcommand(1);
  app.footer(
      "The common options --socket, --admin-socket, --timeout-ms and --json may come before the "
      "subcommand as well as after it: twctl --socket S stat.");
  int exit_code = 0;
  tw::twctl::RegisterKeysCommand(app, &exit_code);
  tw::twctl::RegisterSocketCommands(app, &exit_code);
  tw::twctl::RegisterAdminCommands(app, &exit_code);
  std::set<std::string> names;
  for (const CLI::App* sub : app.get_subcommands({})) names.insert(sub->get_name());
  std::vector<std::string> args =
      tw::twctl::HoistCommonOptions(std::vector<std::string>(argv, argv + argc), names);
  std::vector<char*> av;
  for (std::string& a : args) av.push_back(a.data());
  try {
    app.parse(static_cast<int>(av.size()), av.data());
  } catch (const CLI::ParseError& e) {
    int rc = app.exit(e);
    return rc == 0 ? 0 : 2;
  }
  return exit_code;
}
