// The Fetch stream's messages (peer.proto FetchChunk) on the wire without protobuf message
// objects in the data path: the holder sends each data message as two gRPC slices, a few bytes
// of field header and a slice that references the holder's value buffer (no copy in user
// space); the requester walks a received message's slices and copies the `data` field's bytes
// straight into the destination span (one copy), parsing only the small header message with
// protobuf. The encoding is exactly FetchChunk's, so either side may be a generated-code peer.
//
// Threading: free functions, no shared state. Lifetime: a slice made by DataMessage holds a
// reference to the buffer's owner until gRPC releases the slice (after the bytes were sent).
#pragma once

#include <grpcpp/support/byte_buffer.h>

#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>

#include "tw/common/status.h"

namespace tw::mesh::net {

// FetchChunk's field numbers.
inline constexpr uint32_t kFetchHeaderField = 1;
inline constexpr uint32_t kFetchDataField = 2;

// Protobuf's base-128 varint, appended to / read from `*in` (false: truncated or too long;
// the packed Locate answer).
void AppendVarint(std::string* out, uint64_t v);
bool ReadVarint(std::string_view* in, uint64_t* v);

// A message carrying `n` bytes at `data` as FetchChunk.data; `owner` keeps them alive until
// gRPC lets go of the slice.
grpc::ByteBuffer DataMessage(const std::byte* data, size_t n, std::shared_ptr<const void> owner);

// A message whose bytes are `serialized` (a whole FetchChunk, e.g. the header one).
grpc::ByteBuffer SerializedMessage(const std::string& serialized);

// Walks one received FetchChunk: the header field's bytes are appended to `*header` (set when
// the field is present; a null `header`: a header is an error), each run of data bytes is passed to
// `on_data` in order (a status other than OK stops the walk and is returned). Unknown fields are
// skipped; malformed wire data is an error.
Status WalkFetchChunk(const grpc::ByteBuffer& message, std::optional<std::string>* header,
                      const std::function<Status(const std::byte*, size_t)>& on_data);

}  // namespace tw::mesh::net
