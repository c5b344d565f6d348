// The fuzz targets: one body per parser that takes bytes from outside twd's trust boundary
// (docs/reliability.md "Fuzzing"). Each body is shared by its libFuzzer binary (clang builds,
// scripts/fuzz.sh) and by the corpus replay test that runs in every build under ASan
// (tests/fuzz/corpus/<name>/ holds each target's corpus).
//
// A body never crashes, never reads outside [data, data + size) and never throws; where a
// parser promises a property (a config that parses renders back to an equal one, a validated
// layout lies inside its record) the body checks it and traps when it does not hold, so the
// fuzzer reports it like a crash. The return value is a count of inputs the parser accepted
// (the replay test checks that its seeds reach past the first rejection). Bodies keep no
// state between calls; no threading rules.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>

namespace tw::fuzz {

// Client protocol: frames as twd and as a client read them, then every request body.
int FuzzFrame(const uint8_t* data, size_t size);
// twd's YAML configuration (tw_config ParseYaml, then RenderYaml round trip).
int FuzzConfigYaml(const uint8_t* data, size_t size);
// The mesh peers file (JSON) and the membership built from it.
int FuzzPeersJson(const uint8_t* data, size_t size);
// twctl's input files: a namespace as JSON, token ids, hex extras; and argument hoisting.
int FuzzTwctlInputs(const uint8_t* data, size_t size);
// A chunk record's on-disk header (and the layout it names).
int FuzzStoreRecord(const uint8_t* data, size_t size);
// The NVMe tier's metadata: superblocks, region headers, summary entries, journal blocks.
int FuzzStoreMetadata(const uint8_t* data, size_t size);
// The operator's reading of API-server JSON: a TokenWarehouse (spec, metadata), its
// DaemonSet and pods, error bodies; and everything rendered from an accepted spec.
int FuzzOperatorJson(const uint8_t* data, size_t size);

struct Target {
  const char* name;  // corpus folder under tests/fuzz/corpus/ and suffix of the binary
  int (*fn)(const uint8_t*, size_t);
};
// Every target, in a fixed order.
std::span<const Target> AllTargets();

}  // namespace tw::fuzz
