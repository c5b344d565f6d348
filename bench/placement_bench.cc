// `tw-bench placement`: the placement simulation (placement_sim.h) for each node count asked
// for, printed as figures: for a join, a leave and a weight change, the fraction of keys whose
// home moved (in parts per million) next to the fraction rendezvous hashing moves in
// expectation (the ratio should be near 1), and the directory load (max over mean keys homed per
// node). Two counts must be 0: sample keys whose home differs from what tw_mesh::Placement computes
// from scratch, and sample keys moved between two nodes the change did not touch; the command exits
// 1 when either is not. No processes, no network.
#include <cstdio>
#include <string>
#include <vector>

#include "command.h"
#include "placement_sim.h"
#include "report.h"
#include "tw/common/strings.h"

namespace tw::bench {
namespace {

struct PlacementBenchOptions {
  std::vector<size_t> nodes = {100, 1000, 10000};
  PlacementSimOptions sim;
  bool json = false;
};

int RunPlacement(const PlacementBenchOptions& o) {
  std::vector<Result> results;
  bool wrong = false;
  for (size_t n : o.nodes) {
    PlacementSimOptions sim = o.sim;
    sim.nodes = n;
    StatusOr<PlacementSimResult> r = SimulatePlacement(sim);
    if (!r.ok()) {
      std::fprintf(stderr, "tw-bench placement: %s\n", r.status().ToString().c_str());
      return 2;
    }
    const std::string p = StrCat("n", n, "_");
    results.push_back({p + "keys", static_cast<double>(r->keys), "keys", std::nullopt});
    results.push_back(
        {p + "initial_load_max/mean", r->initial_max_over_mean_load, "ratio", std::nullopt});
    size_t mismatches = r->initial_sample_mismatches, between = 0;
    for (const PlacementChange& c : r->changes) {
      // Parts per million: the fractions are small (1/N), the table prints three decimals.
      results.push_back(
          {p + c.name + "_moved", c.moved_fraction * 1e6, "ppm", c.expected_fraction * 1e6});
      results.push_back(
          {p + c.name + "_load_max/mean", c.max_over_mean_load, "ratio", std::nullopt});
      mismatches += c.sample_mismatches;
      between += c.sample_moved_between_others;
    }
    results.push_back({p + "sample_checked", static_cast<double>(r->sample), "keys", std::nullopt});
    results.push_back(
        {p + "sample_mismatches", static_cast<double>(mismatches), "keys", std::nullopt});
    results.push_back(
        {p + "sample_moved_elsewhere", static_cast<double>(between), "keys", std::nullopt});
    results.push_back({p + "seconds", r->seconds, "s", std::nullopt});
    wrong = wrong || mismatches > 0 || between > 0;
  }
  Print(results, o.json);
  if (wrong) {
    std::fprintf(stderr,
                 "tw-bench placement: the simulation disagrees with tw_mesh::Placement "
                 "(sample_mismatches or sample_moved_elsewhere above 0)\n");
    return 1;
  }
  return 0;
}

}  // namespace

Command AddPlacementCommand(CLI::App& parent) {
  auto o = std::make_shared<PlacementBenchOptions>();
  CLI::App* app = parent.add_subcommand(
      "placement",
      "simulate placement over virtual nodes: homes moved by a join, a leave and a weight "
      "change, and the directory load");
  app->add_option("--nodes", o->nodes, "node counts to simulate (each >= 2)")
      ->delimiter(',')
      ->capture_default_str();
  app->add_option("--keys", o->sim.keys, "keys placed per node count")->capture_default_str();
  app->add_option("--new-weight", o->sim.new_weight, "the weight one node changes to (from 1)")
      ->capture_default_str();
  app->add_option("--sample", o->sim.sample,
                  "keys re-placed from scratch by tw_mesh::Placement per change, to check")
      ->capture_default_str();
  app->add_option("--seed", o->sim.seed, "seed of the random keys")->capture_default_str();
  app->add_option("--threads", o->sim.threads, "threads (0: one per CPU)")->capture_default_str();
  app->add_flag("--json", o->json, "one JSON object per figure");
  return Command{app, [o] { return RunPlacement(*o); }};
}

}  // namespace tw::bench
