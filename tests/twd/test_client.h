// TestClient: a minimal, blocking client of the twd protocol for the service tests. It
// speaks raw frames so tests can also send hostile bytes. Not thread-safe.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "tw/common/keys.h"
#include "tw/common/status.h"
#include "tw/protocol/fd_passing.h"
#include "tw/protocol/frame.h"
#include "tw/protocol/messages.h"

namespace tw::twd::testing {

namespace pb = ::tokenwarehouse::v1;

struct Reply {
  protocol::FrameHeader header;
  std::string body;
};

class TestClient {
 public:
  // Connects (blocking, 10 s receive timeout).
  static StatusOr<TestClient> Connect(const std::string& path);

  // HELLO with a fresh sealed memfd arena of `arena_size` bytes (0 = none), offering protocol
  // versions 1..`max_version`.
  StatusOr<pb::HelloResponse> Hello(const std::vector<Namespace>& namespaces, uint64_t arena_size,
                                    uint32_t max_version = 1);

  // Sends raw bytes (optionally with a descriptor).
  Status SendRaw(std::string_view bytes, int fd = -1);
  // Reads one reply frame; UNAVAILABLE when the peer closed.
  StatusOr<Reply> ReadReply();
  // True when the peer closed the connection (reads until EOF; errors count as closed).
  bool WaitClosed();

  // One request, one reply; an ERROR reply becomes its Status.
  template <typename Resp>
  StatusOr<Resp> Call(protocol::Opcode op, const google::protobuf::MessageLite& request) {
    TW_RETURN_IF_ERROR(SendRaw(protocol::EncodeRequest(op, ++next_id_, request)));
    TW_ASSIGN_OR_RETURN(Reply r, ReadReply());
    if (r.header.flags & protocol::kFlagError) {
      pb::ErrorReply e;
      TW_RETURN_IF_ERROR(protocol::ParseBody(r.body, &e));
      return protocol::ErrorReplyToStatus(e);
    }
    Resp resp;
    TW_RETURN_IF_ERROR(protocol::ParseBody(r.body, &resp));
    return resp;
  }

  uint8_t* arena() { return arena_.data(); }
  uint64_t arena_size() const { return arena_.size(); }
  int fd() const { return fd_.get(); }

 private:
  protocol::UniqueFd fd_;
  protocol::Arena arena_;
  std::string buf_;
  uint64_t next_id_ = 0;
};

// A canonical test namespace with `chunk_tokens` tokens per chunk.
Namespace TestNamespace(std::string tenant = "", uint32_t chunk_tokens = 4,
                        std::string parallel = "tp=0/1,pp=0/1");

// Builds a PUT item storing `value` (one segment per `segment_sizes`, taken from the arena
// at `arena_offset` contiguously) for the chunk with `tokens` after `parent`.
pb::PutItem MakePutItem(const Key& ns, const Key& parent, const std::vector<uint32_t>& tokens,
                        const std::vector<uint64_t>& segment_sizes, uint64_t arena_offset,
                        std::string extra = "");

}  // namespace tw::twd::testing
