// twctl — Token Warehouse's command-line tool. See `twctl --help` and docs/.
#include <CLI/CLI.hpp>

#include "commands.h"

int main(int argc, char** argv) {
  CLI::App app{"twctl: inspect and operate a Token Warehouse (keys, cache contents, admin)"};
  app.require_subcommand(1);
  int exit_code = 0;
  tw::twctl::RegisterKeysCommand(app, &exit_code);
  tw::twctl::RegisterSocketCommands(app, &exit_code);
  tw::twctl::RegisterAdminCommands(app, &exit_code);
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    int rc = app.exit(e);
    return rc == 0 ? 0 : 2;
  }
  return exit_code;
}
