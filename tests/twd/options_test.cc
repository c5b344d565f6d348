// twd's flags: where the admin socket goes when only --socket is given, socket directories
// checked before the store is opened (so a bad socket path never costs a format), and --help
// showing every default.
#include "tw/twd/options.h"

#include <gtest/gtest.h>
#include <stdlib.h>

#include <filesystem>
#include <fstream>
#include <sstream>

#include "tw/twd/daemon.h"

namespace tw::twd {
namespace {

class OptionsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/twdoptions.XXXXXX";
    ASSERT_NE(::mkdtemp(tmpl), nullptr);
    dir_ = tmpl;
  }
  void TearDown() override { std::filesystem::remove_all(dir_); }

  StatusOr<DaemonOptions> Parse(std::vector<std::string> args) {
    args.insert(args.begin(), "twd");
    std::vector<char*> argv;
    for (auto& a : args) argv.push_back(a.data());
    return ParseFlags(static_cast<int>(argv.size()), argv.data());
  }

  std::string dir_;
};

TEST_F(OptionsTest, AdminSocketFollowsTheClientSocket) {
  auto o = Parse({"--socket", dir_ + "/x/twd.sock", "--data-dir", dir_ + "/x/data"});
  ASSERT_TRUE(o.ok()) << o.status().ToString();
  auto c = BuildConfig(*o);
  ASSERT_TRUE(c.ok()) << c.status().ToString();
  EXPECT_EQ(c->socket.path, dir_ + "/x/twd.sock");
  EXPECT_EQ(c->admin_socket.path, dir_ + "/x/twd-admin.sock");

  // --admin-socket wins.
  o = Parse({"--socket", dir_ + "/twd.sock", "--admin-socket", dir_ + "/a/adm.sock"});
  ASSERT_TRUE(o.ok()) << o.status().ToString();
  c = BuildConfig(*o);
  ASSERT_TRUE(c.ok()) << c.status().ToString();
  EXPECT_EQ(c->admin_socket.path, dir_ + "/a/adm.sock");

  // So does an admin socket the config file names; a socket the file moves takes the default
  // admin socket along, as the flag does.
  std::ofstream(dir_ + "/both.yaml") << "socket:\n  path: " << dir_ << "/s.sock\n"
                                     << "admin_socket:\n  path: " << dir_ << "/adm.sock\n";
  std::ofstream(dir_ + "/one.yaml") << "socket:\n  path: " << dir_ << "/s.sock\n";
  o = Parse({"--config", dir_ + "/both.yaml"});
  ASSERT_TRUE(o.ok()) << o.status().ToString();
  c = BuildConfig(*o);
  ASSERT_TRUE(c.ok()) << c.status().ToString();
  EXPECT_EQ(c->admin_socket.path, dir_ + "/adm.sock");
  o = Parse({"--config", dir_ + "/one.yaml"});
  ASSERT_TRUE(o.ok()) << o.status().ToString();
  c = BuildConfig(*o);
  ASSERT_TRUE(c.ok()) << c.status().ToString();
  EXPECT_EQ(c->admin_socket.path, dir_ + "/twd-admin.sock");

  // Without --socket both keep their defaults, side by side.
  o = Parse({});
  ASSERT_TRUE(o.ok()) << o.status().ToString();
  c = BuildConfig(*o);
  ASSERT_TRUE(c.ok()) << c.status().ToString();
  EXPECT_EQ(c->admin_socket.path, AdminSocketNextTo(c->socket.path));
  EXPECT_EQ(AdminSocketNextTo("twd.sock"), "twd-admin.sock");
}

// Start with a store hook that records whether the store was opened.
Status StartRecordingOpen(const DaemonOptions& o, bool* opened) {
  StoreHooks hooks;
  hooks.open = [opened](const config::Config&) -> StatusOr<std::unique_ptr<store::Store>> {
    *opened = true;
    return UnavailableError("the test's store hook opens nothing");
  };
  auto d = Daemon::Start(o, std::move(hooks));
  return d.status();
}

TEST_F(OptionsTest, MissingSocketDirectoryFailsBeforeTheStoreOpens) {
  auto o = Parse({"--socket", dir_ + "/missing/twd.sock", "--data-dir", dir_ + "/data",
                  "--metrics-address", ""});
  ASSERT_TRUE(o.ok()) << o.status().ToString();
  bool opened = false;
  Status s = StartRecordingOpen(*o, &opened);
  EXPECT_FALSE(opened) << "the store was opened (and could have been formatted) first";
  EXPECT_EQ(s.code(), StatusCode::kFailedPrecondition) << s.ToString();
  EXPECT_NE(s.message().find("--socket " + dir_ + "/missing/twd.sock"), std::string::npos)
      << s.ToString();
  EXPECT_FALSE(std::filesystem::exists(dir_ + "/data"));

  // An admin socket in a missing directory names --admin-socket.
  o = Parse({"--socket", dir_ + "/twd.sock", "--admin-socket", dir_ + "/nope/adm.sock",
             "--metrics-address", ""});
  ASSERT_TRUE(o.ok()) << o.status().ToString();
  s = StartRecordingOpen(*o, &opened);
  EXPECT_FALSE(opened);
  EXPECT_NE(s.message().find("--admin-socket"), std::string::npos) << s.ToString();

  // A path the config file set is named as the file's field.
  std::ofstream(dir_ + "/twd.yaml") << "socket:\n  path: " << dir_ << "/gone/twd.sock\n";
  o = Parse({"--config", dir_ + "/twd.yaml", "--metrics-address", ""});
  ASSERT_TRUE(o.ok()) << o.status().ToString();
  s = StartRecordingOpen(*o, &opened);
  EXPECT_FALSE(opened);
  EXPECT_NE(s.message().find("socket.path in " + dir_ + "/twd.yaml"), std::string::npos)
      << s.ToString();

  // A directory that exists: the sockets pass and the store is next.
  o = Parse({"--socket", dir_ + "/twd.sock", "--metrics-address", ""});
  ASSERT_TRUE(o.ok()) << o.status().ToString();
  s = StartRecordingOpen(*o, &opened);
  EXPECT_TRUE(opened) << s.ToString();
}

TEST_F(OptionsTest, HelpShowsEveryDefault) {
  ::testing::internal::CaptureStdout();
  auto o = Parse({"--help"});
  const std::string help = ::testing::internal::GetCapturedStdout();
  ASSERT_TRUE(o.ok()) << o.status().ToString();
  EXPECT_TRUE(o->help);
  for (const char* want :
       {"(default: /run/tokenwarehouse/twd.sock)", "(default: twd-admin.sock next to --socket)",
        "(default: 1GiB)", "(default: 4GiB per --data-dir)", "(default: 0.0.0.0:9400)",
        "(default: info)", "(default: none, a DRAM tier only)", "(default: 0)"}) {
    EXPECT_NE(help.find(want), std::string::npos) << want << " missing from:\n" << help;
  }
  // Every option that takes a value shows its default (an option's text may wrap).
  int options = 0;
  size_t at = help.find("\n  --");
  while (at != std::string::npos) {
    const size_t next = help.find("\n  --", at + 1);
    const std::string entry = help.substr(at, next == std::string::npos ? next : next - at);
    at = next;
    if (entry.find("--version") != std::string::npos) continue;
    ++options;
    EXPECT_NE(entry.find("(default: "), std::string::npos) << "no default shown:" << entry;
  }
  EXPECT_EQ(options, 9) << help;
}

}  // namespace
}  // namespace tw::twd

namespace tw::twd {
namespace {

// The store's option defaults and tw_config's are written twice (the store must not depend on
// twd's configuration); what twd hands the store from a default config must be the store's
// own defaults, or one of the two copies has drifted.
TEST(StoreOptionsFromConfigTest, DefaultConfigGivesTheStoreDefaults) {
  const store::Options want;
  const store::Options got = StoreOptionsFromConfig(config::Config{});
  EXPECT_EQ(got.dram.capacity, want.dram.capacity);
  EXPECT_EQ(got.dram.hugepages, want.dram.hugepages);
  EXPECT_EQ(got.dram.pinned, want.dram.pinned);
  EXPECT_EQ(got.dram.eviction, want.dram.eviction);
  EXPECT_EQ(got.dram.high_watermark, want.dram.high_watermark);
  EXPECT_EQ(got.dram.low_watermark, want.dram.low_watermark);
  EXPECT_EQ(got.nvme.paths.size(), want.nvme.paths.size());
  EXPECT_EQ(got.nvme.region_size, want.nvme.region_size);
  EXPECT_EQ(got.nvme.stripe_unit, want.nvme.stripe_unit);
  EXPECT_EQ(got.nvme.queue_depth, want.nvme.queue_depth);
  EXPECT_EQ(got.nvme.reclaim, want.nvme.reclaim);
  EXPECT_EQ(got.nvme.high_watermark, want.nvme.high_watermark);
  EXPECT_EQ(got.nvme.low_watermark, want.nvme.low_watermark);
  EXPECT_EQ(got.nvme.force_format, want.nvme.force_format);
  EXPECT_EQ(got.admission.policy, want.admission.policy);
  EXPECT_EQ(got.admission.write_budget, want.admission.write_budget);
  EXPECT_EQ(got.quotas.size(), want.quotas.size());
  EXPECT_EQ(got.default_namespace_quota, want.default_namespace_quota);
  EXPECT_EQ(got.lease_duration, want.lease_duration);
  EXPECT_TRUE(got.Validate().ok()) << got.Validate().ToString();
}

}  // namespace
}  // namespace tw::twd
