// Fuzz body of twd's YAML configuration: ParseYaml never throws (yaml-cpp's exceptions stop at
// tw_config), and whatever it accepts renders back to text that parses to an equal Config.
#include <cstdio>
#include <string>
#include <string_view>

#include "fuzz_targets.h"
#include "tw/common/config.h"

namespace tw::fuzz {

int FuzzConfigYaml(const uint8_t* data, size_t size) {
  std::string_view text(reinterpret_cast<const char*>(data), size);
  auto parsed = config::ParseYaml(text);
  if (!parsed.ok()) return 0;
  const std::string rendered = config::RenderYaml(*parsed);
  auto again = config::ParseYaml(rendered);
  if (!again.ok() || !(*again == *parsed)) {  // the round trip is a promise
    std::fprintf(stderr, "config round trip broke: %s\n--- input\n%.*s\n--- rendered\n%s\n",
                 again.ok() ? "parsed to another config" : again.status().ToString().c_str(),
                 static_cast<int>(size), reinterpret_cast<const char*>(data), rendered.c_str());
    __builtin_trap();
  }
  return 1;
}

}  // namespace tw::fuzz
