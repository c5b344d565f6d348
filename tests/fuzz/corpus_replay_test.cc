// Replays the fuzz corpus (tests/fuzz/corpus) through the protocol parser in every build,
// with every truncation and deterministic byte flips of each input: the gcc build's stand-in
// for the libFuzzer run. A crash or sanitizer report fails the test.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <iterator>
#include <random>
#include <string>
#include <vector>

#include "frame_fuzz_target.h"

namespace tw::protocol::fuzz {
namespace {

std::vector<std::string> Corpus() {
  std::vector<std::string> out;
  for (const auto& e :
       std::filesystem::directory_iterator(std::string(TW_SOURCE_DIR) + "/tests/fuzz/corpus")) {
    std::ifstream in(e.path(), std::ios::binary);
    out.emplace_back(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
  }
  return out;
}

int Feed(const std::string& s) {
  return FuzzOne(reinterpret_cast<const uint8_t*>(s.data()), s.size());
}

TEST(CorpusReplayTest, SeedsDecode) {
  std::vector<std::string> corpus = Corpus();
  ASSERT_GE(corpus.size(), 10u);
  int frames = 0;
  for (const auto& s : corpus) frames += Feed(s);
  EXPECT_GT(frames, 0);  // the seeds hold real frames, so the parser paths are exercised
}

TEST(CorpusReplayTest, TruncationsAndFlips) {
  std::mt19937 rng(12345);
  for (const auto& seed : Corpus()) {
    for (size_t n = 0; n <= seed.size(); ++n) Feed(seed.substr(0, n));
    for (int i = 0; i < 300 && !seed.empty(); ++i) {
      std::string m = seed;
      const int flips = 1 + static_cast<int>(rng() % 4);
      for (int f = 0; f < flips; ++f) m[rng() % m.size()] ^= static_cast<char>(1 + rng() % 255);
      Feed(m);
      Feed(m + m);  // two frames back to back
    }
  }
}

}  // namespace
}  // namespace tw::protocol::fuzz
