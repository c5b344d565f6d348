// twctl's common options before the subcommand: HoistCommonOptions moves them after it.
#include <gtest/gtest.h>

#include "inputs.h"

namespace tw::twctl {
namespace {

const std::set<std::string> kSubs = {"stat", "get", "namespaces", "keys"};

TEST(HoistCommonOptions, MovesCommonOptionsAfterTheSubcommand) {
  using V = std::vector<std::string>;
  EXPECT_EQ(HoistCommonOptions({"twctl", "--socket", "S", "stat"}, kSubs),
            (V{"twctl", "stat", "--socket", "S"}));
  EXPECT_EQ(HoistCommonOptions(
                {"twctl", "--socket=S", "--json", "--timeout-ms", "5", "stat", "--json"}, kSubs),
            (V{"twctl", "stat", "--socket=S", "--json", "--timeout-ms", "5", "--json"}));
  // A value that names a subcommand is a value.
  EXPECT_EQ(HoistCommonOptions({"twctl", "--admin-socket", "get", "namespaces"}, kSubs),
            (V{"twctl", "namespaces", "--admin-socket", "get"}));
  // After the subcommand nothing moves; without one nothing moves either.
  const V after = {"twctl", "get", "--socket", "S", "--key", "k"};
  EXPECT_EQ(HoistCommonOptions(after, kSubs), after);
  const V none = {"twctl", "--socket", "S"};
  EXPECT_EQ(HoistCommonOptions(none, kSubs), none);
  // Unknown options before the subcommand stay before it, for the parser to refuse.
  EXPECT_EQ(HoistCommonOptions({"twctl", "--bogus", "--json", "stat"}, kSubs),
            (V{"twctl", "--bogus", "stat", "--json"}));
  EXPECT_FALSE(IsCommonOption("--socketx"));
  EXPECT_TRUE(IsCommonOption("--timeout-ms=3"));
}

}  // namespace
}  // namespace tw::twctl
