// twctl's command families. Each Register* function adds its subcommands to the app; the
// subcommand's callback sets `*exit_code` (0 success, 1 error, 2 usage, 3 miss) and prints
// errors to stderr. Standard output carries only the command's result, so it can be piped.
#pragma once

#include <CLI/CLI.hpp>

namespace tw::twctl {

// `twctl keys`: chunk keys of a token sequence (no daemon needed).
void RegisterKeysCommand(CLI::App& app, int* exit_code);
// `twctl stat|lookup|put|get|delete` on twd's client socket.
void RegisterSocketCommands(CLI::App& app, int* exit_code);
// `twctl namespaces|evict|export` on twd's admin socket.
void RegisterAdminCommands(CLI::App& app, int* exit_code);

}  // namespace tw::twctl
