// Replays every fuzz target's committed corpus (tests/fuzz/corpus/<target>/) in every build,
// with truncations and deterministic byte flips of each input: the gcc build's stand-in for
// the libFuzzer runs, and the regression test of every input that once found a defect. A
// crash, a trap or a sanitizer report fails the test.
#include <gtest/gtest.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <random>
#include <string>
#include <vector>

#include "fuzz_targets.h"

namespace tw::fuzz {
namespace {

std::vector<std::string> Corpus(const std::string& target) {
  std::vector<std::string> out;
  const std::string dir = std::string(TW_SOURCE_DIR) + "/tests/fuzz/corpus/" + target;
  for (const auto& e : std::filesystem::directory_iterator(dir)) {
    std::ifstream in(e.path(), std::ios::binary);
    out.emplace_back(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
  }
  return out;
}

class CorpusReplayTest : public testing::TestWithParam<Target> {
 protected:
  int Feed(const std::string& s) {
    return GetParam().fn(reinterpret_cast<const uint8_t*>(s.data()), s.size());
  }
};

TEST_P(CorpusReplayTest, SeedsAreAccepted) {
  std::vector<std::string> corpus = Corpus(GetParam().name);
  ASSERT_GE(corpus.size(), 5u) << GetParam().name;
  int accepted = 0;
  for (const auto& s : corpus) accepted += Feed(s);
  // The corpus holds valid inputs, so the paths behind the first rejection are exercised.
  EXPECT_GT(accepted, 0) << GetParam().name;
}

TEST_P(CorpusReplayTest, TruncationsAndFlips) {
  std::mt19937 rng(12345);
  std::vector<std::string> corpus = Corpus(GetParam().name);
  // A budget per target keeps the test short whatever the corpus size.
  const size_t per_seed = std::max<size_t>(8, 20000 / std::max<size_t>(corpus.size(), 1));
  for (const auto& seed : corpus) {
    const size_t cuts = std::min(seed.size(), per_seed / 2);
    for (size_t i = 0; i <= cuts; ++i) Feed(seed.substr(0, seed.size() * i / (cuts + 1)));
    for (size_t i = 0; i < per_seed / 4 && !seed.empty(); ++i) {
      std::string m = seed;
      const int flips = 1 + static_cast<int>(rng() % 4);
      for (int f = 0; f < flips; ++f) m[rng() % m.size()] ^= static_cast<char>(1 + rng() % 255);
      Feed(m);
      Feed(m + m);  // two inputs back to back
    }
  }
}

INSTANTIATE_TEST_SUITE_P(Targets, CorpusReplayTest,
                         testing::ValuesIn(AllTargets().begin(), AllTargets().end()),
                         [](const testing::TestParamInfo<Target>& p) { return p.param.name; });

}  // namespace
}  // namespace tw::fuzz
