#include "key_area.h"

namespace tw::client {

KeyArea::KeyArea(uint8_t* base, uint64_t arena_offset, uint64_t bytes)
    : base_(base),
      arena_offset_(arena_offset),
      slots_(bytes / kSlotBytes),
      list_(std::make_shared<FreeList>()) {
  // Handed out from the back: slot 0 first.
  for (size_t i = slots_; i-- > 0;) list_->free.push_back(static_cast<uint32_t>(i));
}

std::shared_ptr<const KeyArea::Slot> KeyArea::Take(uint64_t bytes) {
  if (bytes > kSlotBytes) return nullptr;
  uint32_t i;
  {
    std::lock_guard<std::mutex> l(list_->mu);
    if (list_->free.empty()) return nullptr;
    i = list_->free.back();
    list_->free.pop_back();
  }
  auto* slot = new Slot{base_ + i * kSlotBytes, arena_offset_ + i * kSlotBytes};
  return std::shared_ptr<const Slot>(slot, [list = list_, i](const Slot* s) {
    delete s;
    std::lock_guard<std::mutex> l(list->mu);
    list->free.push_back(i);
  });
}

}  // namespace tw::client
