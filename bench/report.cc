#include "report.h"

#include <cstdio>
#include <nlohmann/json.hpp>

namespace tw::bench {

void Print(const std::vector<Result>& results, bool json) {
  if (json) {
    for (const Result& r : results) {
      nlohmann::ordered_json j;
      j["name"] = r.name;
      j["value"] = r.value;
      j["unit"] = r.unit;
      j["reference"] =
          r.reference ? nlohmann::ordered_json(*r.reference) : nlohmann::ordered_json(nullptr);
      j["ratio"] = r.reference && *r.reference > 0 ? nlohmann::ordered_json(r.value / *r.reference)
                                                   : nlohmann::ordered_json(nullptr);
      std::printf("%s\n", j.dump().c_str());
    }
    return;
  }
  std::printf("%-34s %14s %-8s %14s %7s\n", "name", "value", "unit", "reference", "ratio");
  for (const Result& r : results) {
    if (r.reference) {
      std::printf("%-34s %14.3f %-8s %14.3f %7.2f\n", r.name.c_str(), r.value, r.unit.c_str(),
                  *r.reference, *r.reference > 0 ? r.value / *r.reference : 0.0);
    } else {
      std::printf("%-34s %14.3f %-8s %14s %7s\n", r.name.c_str(), r.value, r.unit.c_str(), "-",
                  "-");
    }
  }
}

}  // namespace tw::bench
