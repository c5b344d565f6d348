// CRC32C (Castagnoli), the checksum of every on-disk record. Backed by ISA-L's
// crc32_iscsi (SSE4.2 / PCLMUL); never a byte-table loop. Pure and thread-safe.
#pragma once

#include <cstddef>
#include <cstdint>

namespace tw {

// CRC32C of `n` bytes at `p`, continuing from `crc` (0 to start). Standard reflected CRC32C
// with initial and final inversion: Crc32c("123456789") == 0xE3069283.
uint32_t Crc32c(const void* p, size_t n, uint32_t crc = 0);

}  // namespace tw
