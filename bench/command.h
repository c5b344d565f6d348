// How tw-bench subcommands plug in: each source file (engine_bench.cc, later service_bench.cc)
// registers its CLI11 subcommand and returns what to run when it was chosen.
#pragma once

#include <CLI/CLI.hpp>
#include <functional>

namespace tw::bench {

struct Command {
  CLI::App* app = nullptr;   // the registered subcommand
  std::function<int()> run;  // runs it; returns the exit code
};

// `tw-bench engine`: the storage engine against raw O_DIRECT and memcpy.
Command AddEngineCommand(CLI::App& parent);
// `tw-bench service`: twd (a separate process) against memcpy, Unix sockets, raw O_DIRECT
// and redis-server (service_bench.cc).
Command AddServiceCommand(CLI::App& parent);
// `tw-bench placement`: rendezvous placement over virtual nodes (placement_bench.cc).
Command AddPlacementCommand(CLI::App& parent);
// `tw-bench mesh`: two twd in two network namespaces against TCP between them (mesh_bench.cc).
Command AddMeshCommand(CLI::App& parent);
// `tw-bench gpu`: paged KV transfers against plain copies of the same bytes (gpu_bench.cc).
Command AddGpuCommand(CLI::App& parent);

}  // namespace tw::bench
