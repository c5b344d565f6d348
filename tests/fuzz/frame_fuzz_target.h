// The body of the protocol fuzz target, shared by the libFuzzer binary (clang builds) and the
// corpus replay test (every build): feeds bytes through the frame decoder — as twd reads them
// and as a client reads them — and every decoded body through ParseRequest.
#pragma once

#include <cstddef>
#include <cstdint>

namespace tw::protocol::fuzz {

// Never crashes, never reads outside [data, data + size); returns the frames decoded.
int FuzzOne(const uint8_t* data, size_t size);

}  // namespace tw::protocol::fuzz
