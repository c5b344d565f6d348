#include "fetch_wire.h"

#include <grpc/slice.h>
#include <grpcpp/support/slice.h>

#include <vector>

#include "tw/common/strings.h"

namespace tw::mesh::net {

namespace {

size_t PutVarint(uint8_t* out, uint64_t v) {
  size_t n = 0;
  while (v >= 0x80) {
    out[n++] = static_cast<uint8_t>(v | 0x80);
    v >>= 7;
  }
  out[n++] = static_cast<uint8_t>(v);
  return n;
}

void ReleaseOwner(void* p) { delete static_cast<std::shared_ptr<const void>*>(p); }

// A byte cursor over a message's slices.
class Cursor {
 public:
  explicit Cursor(const std::vector<grpc::Slice>& slices) : slices_(slices) { Settle(); }

  bool done() const { return i_ == slices_.size(); }

  bool Byte(uint8_t* b) {
    if (done()) return false;
    *b = static_cast<uint8_t>(slices_[i_].begin()[off_]);
    ++off_;
    Settle();
    return true;
  }

  bool Varint(uint64_t* v) {
    *v = 0;
    for (int shift = 0; shift < 64; shift += 7) {
      uint8_t b = 0;
      if (!Byte(&b)) return false;
      *v |= uint64_t{b & 0x7fu} << shift;
      if ((b & 0x80) == 0) return true;
    }
    return false;
  }

  // Hands the next `n` bytes to `f` in contiguous runs; false when fewer remain or f failed
  // (*st says which).
  template <typename F>
  bool Take(uint64_t n, F&& f, Status* st) {
    while (n > 0) {
      if (done()) {
        *st = InvalidArgumentError("fetch stream: a field runs past its message");
        return false;
      }
      const size_t avail = slices_[i_].size() - off_;
      const size_t k = n < avail ? static_cast<size_t>(n) : avail;
      *st = f(reinterpret_cast<const std::byte*>(slices_[i_].begin() + off_), k);
      if (!st->ok()) return false;
      off_ += k;
      n -= k;
      Settle();
    }
    return true;
  }

 private:
  void Settle() {
    while (i_ < slices_.size() && off_ == slices_[i_].size()) {
      ++i_;
      off_ = 0;
    }
  }

  const std::vector<grpc::Slice>& slices_;
  size_t i_ = 0;
  size_t off_ = 0;
};

}  // namespace

void AppendVarint(std::string* out, uint64_t v) {
  uint8_t buf[10];
  out->append(reinterpret_cast<const char*>(buf), PutVarint(buf, v));
}

bool ReadVarint(std::string_view* in, uint64_t* v) {
  *v = 0;
  for (int shift = 0; shift < 64 && !in->empty(); shift += 7) {
    const uint8_t b = static_cast<uint8_t>(in->front());
    in->remove_prefix(1);
    *v |= uint64_t{b & 0x7fu} << shift;
    if ((b & 0x80) == 0) return true;
  }
  return false;
}

grpc::ByteBuffer DataMessage(const std::byte* data, size_t n, std::shared_ptr<const void> owner) {
  uint8_t head[1 + 10];
  head[0] = static_cast<uint8_t>((kFetchDataField << 3) | 2);  // length-delimited
  const size_t h = 1 + PutVarint(head + 1, n);
  grpc::Slice parts[2] = {
      grpc::Slice(head, h),
      grpc::Slice(grpc_slice_new_with_user_data(const_cast<std::byte*>(data), n, ReleaseOwner,
                                                new std::shared_ptr<const void>(std::move(owner))),
                  grpc::Slice::STEAL_REF),
  };
  return grpc::ByteBuffer(parts, n == 0 ? 1 : 2);
}

grpc::ByteBuffer SerializedMessage(const std::string& serialized) {
  grpc::Slice s(serialized);
  return grpc::ByteBuffer(&s, 1);
}

Status WalkFetchChunk(const grpc::ByteBuffer& message, std::optional<std::string>* header,
                      const std::function<Status(const std::byte*, size_t)>& on_data) {
  std::vector<grpc::Slice> slices;
  if (!message.Dump(&slices).ok()) return InternalError("fetch stream: unreadable message");
  Cursor c(slices);
  Status st;
  while (!c.done()) {
    uint64_t tag = 0;
    if (!c.Varint(&tag)) return InvalidArgumentError("fetch stream: truncated field tag");
    const uint32_t field = static_cast<uint32_t>(tag >> 3);
    const uint32_t type = static_cast<uint32_t>(tag & 7);
    uint64_t skip = 0;
    switch (type) {
      case 0: {  // varint
        uint64_t v = 0;
        if (!c.Varint(&v)) return InvalidArgumentError("fetch stream: truncated varint");
        continue;
      }
      case 1:
        skip = 8;
        break;
      case 5:
        skip = 4;
        break;
      case 2:
        if (!c.Varint(&skip)) return InvalidArgumentError("fetch stream: truncated length");
        break;
      default:
        return InvalidArgumentError(StrCat("fetch stream: wire type ", type, " of field ", field));
    }
    auto ignore = [](const std::byte*, size_t) { return OkStatus(); };
    if (type == 2 && field == kFetchDataField) {
      if (!c.Take(skip, on_data, &st)) return st;
    } else if (type == 2 && field == kFetchHeaderField) {
      if (header == nullptr) return InvalidArgumentError("fetch stream: a second header");
      if (!header->has_value()) header->emplace();
      auto append = [header](const std::byte* p, size_t n) {
        (*header)->append(reinterpret_cast<const char*>(p), n);
        return OkStatus();
      };
      if (!c.Take(skip, append, &st)) return st;
    } else if (!c.Take(skip, ignore, &st)) {
      return st;
    }
  }
  return OkStatus();
}

}  // namespace tw::mesh::net
