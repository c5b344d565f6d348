// NvmeEngine: sealing a region (its dense summary, then the header "sealed") and the
// superblock checkpoint that restarts the journal. Both run on the committer thread.
#include <algorithm>

#include "aligned_buffer.h"
#include "nvme_engine.h"
#include "record_format.h"
#include "tw/common/crc32c.h"
#include "tw/common/log.h"

namespace tw::store {

Status NvmeEngine::SealRegion(uint32_t r, const std::vector<SummaryEntry>& entries,
                              uint64_t epoch) {
  if (entries.size() > sb_.max_entries) return InternalError("region summary overflow");
  uint64_t len = AlignUp(std::max<uint64_t>(entries.size(), 1) * kEntryBytes, kBlock);
  AlignedBuffer buf(len);
  for (size_t i = 0; i < entries.size(); ++i) EncodeEntry(entries[i], buf.data() + i * kEntryBytes);
  RegionHeader h;
  h.state = RegionState::kSealed;
  h.region = r;
  h.epoch = epoch;
  h.count = uint32_t(entries.size());
  h.entries_crc = Crc32c(buf.data(), entries.size() * kEntryBytes);
  AlignedBuffer hb(kBlock);
  EncodeRegionHeader(h, sb_.store_id, hb.data());
  // Summary and header in one batch and one sync: if only the header lands, its entries CRC
  // fails and recovery falls back to the journal, which is restarted only after this.
  IoRequest ios[2] = {{true, sb_.dense_off + uint64_t(r) * dense_bytes_, len, buf.data()},
                      {true, sb_.header_off + uint64_t(r) * kBlock, kBlock, hb.data()}};
  Device& d0 = volume_->device(0);
  TW_RETURN_IF_ERROR(d0.Submit(ios));
  return d0.Sync();
}

Status NvmeEngine::WriteCheckpoint() {
  {
    std::lock_guard<std::mutex> l(mu_);
    sb_.seq_floor = seq_;
  }
  sb_.generation += 1;
  Superblock s = sb_;
  s.device_index = 0;
  AlignedBuffer b(kBlock);
  EncodeSuperblock(s, b.data());
  Device& d0 = volume_->device(0);
  TW_RETURN_IF_ERROR(d0.Write((s.generation % 2) * kBlock, b.data(), kBlock));
  return d0.Sync();
}

}  // namespace tw::store
