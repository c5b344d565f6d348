#include "fuzz_targets.h"

namespace tw::fuzz {

std::span<const Target> AllTargets() {
  static constexpr Target kTargets[] = {
      {"frame", FuzzFrame},
      {"config_yaml", FuzzConfigYaml},
      {"peers_json", FuzzPeersJson},
      {"twctl_inputs", FuzzTwctlInputs},
      {"store_record", FuzzStoreRecord},
      {"store_metadata", FuzzStoreMetadata},
      {"operator_json", FuzzOperatorJson},
  };
  return kTargets;
}

}  // namespace tw::fuzz
