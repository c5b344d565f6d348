// Benchmark results and their output: a table for people, or one JSON object per line
// ({"name":…, "value":…, "unit":…, "reference":…, "ratio":…}) for machines. A result measured
// against a reference carries the reference's value and the ratio value / reference.
#pragma once

#include <optional>
#include <string>
#include <vector>

namespace tw::bench {

struct Result {
  std::string name;
  double value = 0;
  std::string unit;
  std::optional<double> reference;  // the reference measured in the same run
};

void Print(const std::vector<Result>& results, bool json);

}  // namespace tw::bench
