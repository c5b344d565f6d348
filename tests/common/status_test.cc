#include "tw/common/status.h"

#include <gtest/gtest.h>

#include <cerrno>
#include <memory>

#include "tw/common/crc32c.h"
#include "tw/common/log.h"
#include "tw/common/strings.h"

namespace tw {
namespace {

StatusOr<int> Half(int v) {
  if (v % 2 != 0) return InvalidArgumentError(StrCat("value: ", v, " is odd"));
  return v / 2;
}

StatusOr<int> Quarter(int v) {
  TW_ASSIGN_OR_RETURN(int h, Half(v));
  TW_ASSIGN_OR_RETURN(int q, Half(h));
  return q;
}

Status CheckQuarter(int v) {
  TW_RETURN_IF_ERROR(Quarter(v).status());
  return OkStatus();
}

TEST(Status, OkAndErrors) {
  Status ok;
  EXPECT_TRUE(ok.ok());
  EXPECT_EQ(ok.ToString(), "OK");
  Status e = DataLossError("record 7: checksum");
  EXPECT_FALSE(e.ok());
  EXPECT_EQ(e.code(), StatusCode::kDataLoss);
  EXPECT_EQ(e.ToString(), "DATA_LOSS: record 7: checksum");
  Status copy = e;
  EXPECT_EQ(copy, e);
  EXPECT_EQ(e.WithPrefix("/data/x").message(), "/data/x: record 7: checksum");
}

TEST(Status, MacrosPropagate) {
  EXPECT_EQ(*Quarter(8), 2);
  EXPECT_EQ(Quarter(6).status().message(), "value: 3 is odd");
  EXPECT_TRUE(CheckQuarter(4).ok());
  EXPECT_EQ(CheckQuarter(2).code(), StatusCode::kInvalidArgument);
}

TEST(StatusOr, HoldsMoveOnlyValues) {
  StatusOr<std::unique_ptr<int>> p = std::make_unique<int>(5);
  ASSERT_TRUE(p.ok());
  std::unique_ptr<int> v = std::move(p).value();
  EXPECT_EQ(*v, 5);
  StatusOr<std::unique_ptr<int>> err = NotFoundError("x");
  EXPECT_EQ(err.status().code(), StatusCode::kNotFound);
  StatusOr<int> from_ok = OkStatus();  // a bug: becomes an internal error
  EXPECT_EQ(from_ok.status().code(), StatusCode::kInternal);
}

TEST(Status, ErrnoMapping) {
  EXPECT_EQ(ErrnoStatus(ENOSPC, "write /d").code(), StatusCode::kResourceExhausted);
  EXPECT_EQ(ErrnoStatus(ENOENT, "open /d").code(), StatusCode::kNotFound);
  EXPECT_EQ(ErrnoStatus(EIO, "read /d").code(), StatusCode::kInternal);
  EXPECT_EQ(ErrnoStatus(EACCES, "open /d").code(), StatusCode::kPermissionDenied);
  EXPECT_NE(ErrnoStatus(EIO, "read /d").message().find("read /d: "), std::string_view::npos);
}

TEST(Crc32c, KnownValuesAndChaining) {
  EXPECT_EQ(Crc32c("123456789", 9), 0xE3069283u);
  EXPECT_EQ(Crc32c("", 0), 0u);
  uint32_t part = Crc32c("12345", 5);
  EXPECT_EQ(Crc32c("6789", 4, part), 0xE3069283u);
  std::string zeros(32, '\0');
  EXPECT_EQ(Crc32c(zeros.data(), zeros.size()), 0x8A9136AAu);  // RFC 3720 B.4
}

TEST(Log, AuditLinesIgnoreTheLevel) {
  std::string sink;
  log::SetSinkForTest(&sink);
  log::SetLevel(log::Level::kError);
  TW_LOG(kWarn, "hidden");
  log::Audit("admin operation", {{"op", "admin_export"}, {"uid", 0}});
  log::SetLevel(log::Level::kInfo);
  log::SetSinkForTest(nullptr);
  EXPECT_EQ(sink.find("hidden"), std::string::npos);
  EXPECT_NE(sink.find("Z AUDIT msg=\"admin operation\" op=admin_export uid=0\n"), std::string::npos)
      << sink;
}

TEST(Log, KeyValueLinesAndLevels) {
  std::string sink;
  log::SetSinkForTest(&sink);
  log::SetLevel(log::Level::kInfo);
  TW_LOG(kDebug, "hidden");
  TW_LOG(kInfo, "client connected", {{"uid", 1000}, {"path", "/run/a b"}, {"ok", true}});
  TW_LOG(kWarn, "bad frame", {{"status", InvalidArgumentError("magic")}});
  log::SetSinkForTest(nullptr);
  EXPECT_EQ(sink.find("hidden"), std::string::npos);
  EXPECT_NE(sink.find(" INFO msg=\"client connected\" uid=1000 path=\"/run/a b\" ok=true\n"),
            std::string::npos)
      << sink;
  EXPECT_NE(sink.find(" WARN msg=\"bad frame\" status=\"INVALID_ARGUMENT: magic\""),
            std::string::npos)
      << sink;
  // Each line opens with its UTC time to the millisecond: 2026-01-02T03:04:05.678Z.
  const std::string shape = "dddd-dd-ddTdd:dd:dd.dddZ INFO msg=";
  ASSERT_GE(sink.size(), shape.size());
  for (size_t i = 0; i < shape.size(); ++i) {
    if (shape[i] == 'd') {
      EXPECT_TRUE(sink[i] >= '0' && sink[i] <= '9') << i << ": " << sink;
    } else {
      EXPECT_EQ(sink[i], shape[i]) << i << ": " << sink;
    }
  }
  EXPECT_EQ(*log::ParseLevel("WARNING"), log::Level::kWarn);
  EXPECT_FALSE(log::ParseLevel("loud").ok());
}

TEST(Strings, SplitAndFriends) {
  EXPECT_EQ(Split("a,,b", ','), (std::vector<std::string_view>{"a", "", "b"}));
  EXPECT_EQ(SplitOnce("k=v=w", '='), (std::vector<std::string_view>{"k", "v=w"}));
  EXPECT_EQ(StripWhitespace("  x y \n"), "x y");
  EXPECT_EQ(ToLower("AbC"), "abc");
  EXPECT_EQ(StrCat("a", 1, '-', 2.5, true), "a1-2.5true");
}

}  // namespace
}  // namespace tw
