// tw-bench: benchmarks that measure the warehouse and its references side by side in one
// run. One subcommand per subject; see command.h for how to add one.
#include <vector>

#include "command.h"

int main(int argc, char** argv) {
  CLI::App app{"tw-bench: Token Warehouse benchmarks (figures, not pass/fail)"};
  app.require_subcommand(1);
  std::vector<tw::bench::Command> commands;
  commands.push_back(tw::bench::AddEngineCommand(app));
  commands.push_back(tw::bench::AddServiceCommand(app));
  commands.push_back(tw::bench::AddPlacementCommand(app));
  commands.push_back(tw::bench::AddMeshCommand(app));
  commands.push_back(tw::bench::AddGpuCommand(app));
  CLI11_PARSE(app, argc, argv);
  for (auto& c : commands) {
    if (c.app->parsed()) return c.run();
  }
  return 2;
}
