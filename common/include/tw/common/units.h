// Parsing and formatting of byte sizes ("64GiB", "512MB", "4096") and durations ("250ms",
// "15s") as they appear in YAML config and on command lines.
//
// Errors name the offending field and value: `dram.capacity: "12XB" is not a byte size ...`.
// Negative values and values that overflow 64 bits are rejected. Pure functions, thread-safe.
#pragma once

#include <chrono>
#include <cstdint>
#include <string>
#include <string_view>

#include "tw/common/status.h"

namespace tw {

// Accepts a non-negative integer or decimal number followed by an optional unit:
// B; KB, MB, GB, TB, PB (powers of 1000); KiB, MiB, GiB, TiB, PiB and the Kubernetes
// spellings Ki, Mi, Gi, Ti, Pi (powers of 1024); K, M, G, T, P (powers of 1000, as in
// Kubernetes quantities). Unit letters are case-insensitive except that a lone "m" is not a
// unit (it would be Kubernetes' milli). Spaces between number and unit are allowed.
// A fractional value must come out to a whole number of bytes ("1.5KiB" = 1536).
StatusOr<uint64_t> ParseByteSize(std::string_view text, std::string_view field);

// Accepts a non-negative integer or decimal number followed by a unit:
// ns, us (or µs), ms, s, m, h. A bare "0" is accepted; any other number needs a unit.
StatusOr<std::chrono::nanoseconds> ParseDuration(std::string_view text, std::string_view field);

// The shortest exact spelling in binary units: 1073741824 → "1GiB", 2048 → "2KiB", 1536 →
// "1536". Only whole multiples of a unit are used, so ParseByteSize(FormatByteSize(n)) == n.
std::string FormatByteSize(uint64_t bytes);
// Exact, with the largest unit that divides: 250ms → "250ms", 15s → "15s", 90s → "90s".
std::string FormatDuration(std::chrono::nanoseconds d);

}  // namespace tw
