#include "tw/common/crc32c.h"

#include <isa-l/crc.h>

namespace tw {

uint32_t Crc32c(const void* p, size_t n, uint32_t crc) {
  // ISA-L's crc32_iscsi takes and returns the un-inverted register; invert around it so that
  // chained calls compose like the standard definition.
  return ~crc32_iscsi(static_cast<unsigned char*>(const_cast<void*>(p)), static_cast<int>(n), ~crc);
}

}  // namespace tw
