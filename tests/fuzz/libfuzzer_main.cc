// libFuzzer entry point of one fuzz target (clang builds only): TW_FUZZ_FN names the body
// (fuzz_targets.h). scripts/fuzz.sh builds and runs every target.
#include <google/protobuf/stubs/logging.h>

#include "fuzz_targets.h"

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  // Invalid UTF-8 in string fields is a parse failure; protobuf's log line about it is noise.
  google::protobuf::SetLogHandler(nullptr);
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  TW_FUZZ_FN(data, size);
  return 0;
}
