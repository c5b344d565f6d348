// store::Options::Validate(): the checks the engine relies on. twd's configuration checks
// more (arena multiples, the other tiers' sections); these are what any caller must meet.
#include "tw/store/options.h"

#include <set>

#include "tw/common/keys.h"
#include "tw/common/strings.h"

namespace tw::store {
namespace {

Status FieldError(const std::string& field, const std::string& why) {
  return InvalidArgumentError(StrCat("store option ", field, ": ", why));
}

Status CheckWatermarks(const char* tier, double high, double low) {
  if (!(high > 0 && high <= 1)) return FieldError(StrCat(tier, ".high_watermark"), "not in (0, 1]");
  if (!(low > 0 && low <= high)) {
    return FieldError(StrCat(tier, ".low_watermark"), "not in (0, high_watermark]");
  }
  return OkStatus();
}

bool PowerOfTwo(uint64_t v) { return v != 0 && (v & (v - 1)) == 0; }

}  // namespace

Status Options::Validate() const {
  TW_RETURN_IF_ERROR(CheckWatermarks("dram", dram.high_watermark, dram.low_watermark));
  TW_RETURN_IF_ERROR(CheckWatermarks("nvme", nvme.high_watermark, nvme.low_watermark));
  std::set<std::string> paths;
  for (size_t i = 0; i < nvme.paths.size(); ++i) {
    const std::string f = StrCat("nvme.paths[", i, "].path");
    if (nvme.paths[i].path.empty()) return FieldError(f, "empty");
    if (!paths.insert(nvme.paths[i].path).second) return FieldError(f, "listed twice");
  }
  if (!nvme.paths.empty()) {
    if (!PowerOfTwo(nvme.region_size) || nvme.region_size < (uint64_t{1} << 20) ||
        nvme.region_size > (uint64_t{4} << 30)) {
      return FieldError("nvme.region_size", "not a power of two between 1 MiB and 4 GiB");
    }
    if (!PowerOfTwo(nvme.stripe_unit) || nvme.stripe_unit < 4096 ||
        nvme.stripe_unit > nvme.region_size) {
      return FieldError("nvme.stripe_unit",
                        "not a power of two between 4 KiB and nvme.region_size");
    }
    if (nvme.queue_depth < 1 || nvme.queue_depth > 4096) {
      return FieldError("nvme.queue_depth", "not in 1..4096");
    }
  }
  if (admission.policy == AdmissionPolicy::kWriteBudget && admission.write_budget == 0) {
    return FieldError("admission.write_budget", "0 with policy write_budget");
  }
  std::set<std::string> namespaces;
  for (size_t i = 0; i < quotas.size(); ++i) {
    const std::string f = StrCat("quotas[", i, "]");
    if (!Key::FromHex(quotas[i].namespace_digest).ok()) {
      return FieldError(f + ".namespace_digest", "not 64 hex digits");
    }
    if (!namespaces.insert(quotas[i].namespace_digest).second) {
      return FieldError(f + ".namespace_digest", "listed twice");
    }
    if (quotas[i].bytes == 0) return FieldError(f + ".bytes", "0");
  }
  if (lease_duration <= std::chrono::nanoseconds::zero()) {
    return FieldError("lease_duration", "not positive");
  }
  if (!now) return FieldError("now", "no clock");
  return OkStatus();
}

}  // namespace tw::store
