// libFuzzer entry point for the twd protocol parser (built with clang only).
#include <google/protobuf/stubs/logging.h>

#include "frame_fuzz_target.h"

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  // Invalid UTF-8 in string fields is a parse failure; protobuf's log line about it is noise.
  google::protobuf::SetLogHandler(nullptr);
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  tw::protocol::fuzz::FuzzOne(data, size);
  return 0;
}
