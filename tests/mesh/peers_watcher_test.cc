#include "tw/mesh/peers_watcher.h"

#include <gtest/gtest.h>
#include <stdlib.h>
#include <unistd.h>

#include <condition_variable>
#include <filesystem>
#include <fstream>
#include <mutex>

namespace tw::mesh {
namespace {

namespace fs = std::filesystem;

std::string PeersJson(std::initializer_list<const char*> nodes) {
  std::string s = R"({"peers":[)";
  bool first = true;
  for (const char* n : nodes) {
    if (!first) s += ",";
    first = false;
    s += std::string(R"({"node":")") + n + R"(","address":"10.0.0.1","port":7470})";
  }
  return s + "]}\n";
}

// A directory laid out as the kubelet lays out a ConfigMap volume: the file is a symlink through
// `..data`, which the kubelet swaps atomically to a new timestamped directory on each update.
class ConfigMapDir {
 public:
  ConfigMapDir() {
    char tmpl[] = "/tmp/tw_peers_XXXXXX";
    root_ = mkdtemp(tmpl);
    fs::create_symlink("..data/peers.json", root_ / "peers.json");
  }
  ~ConfigMapDir() { fs::remove_all(root_); }
  std::string path() const { return (root_ / "peers.json").string(); }

  // Writes a new timestamped directory and swaps ..data to it (rename of a symlink).
  void Update(const std::string& content) {
    const std::string dir = "..2026_12_06_" + std::to_string(++generation_);
    fs::create_directory(root_ / dir);
    std::ofstream(root_ / dir / "peers.json") << content;
    fs::create_symlink(dir, root_ / "..data_tmp");
    fs::rename(root_ / "..data_tmp", root_ / "..data");
  }

 private:
  fs::path root_;
  int generation_ = 0;
};

TEST(PeersWatcher, StartsEmptyAndKeepsItWhileTheFileIsMissing) {
  ConfigMapDir dir;
  PeersWatcher w({dir.path()});
  EXPECT_EQ(w.Current()->version(), 0u);
  EXPECT_TRUE(w.Current()->empty());
  Status s = w.Poll();
  EXPECT_FALSE(s.ok());
  EXPECT_EQ(w.GetStats().errors, 1u);
  EXPECT_EQ(w.Current()->version(), 0u);
}

TEST(PeersWatcher, PublishesEachChangeThroughTheSymlinkSwap) {
  ConfigMapDir dir;
  dir.Update(PeersJson({"a", "b"}));
  PeersWatcher w({dir.path()});
  std::vector<PeersWatcher::Snapshot> seen;
  w.Subscribe([&](const PeersWatcher::Snapshot& s) { seen.push_back(s); });

  ASSERT_TRUE(w.Poll().ok());
  ASSERT_EQ(seen.size(), 1u);
  EXPECT_EQ(seen[0]->version(), 1u);
  EXPECT_EQ(seen[0]->size(), 2u);
  EXPECT_EQ(w.Current(), seen[0]);

  // Unchanged file: nothing published.
  ASSERT_TRUE(w.Poll().ok());
  EXPECT_EQ(seen.size(), 1u);

  // A node joins: the kubelet swaps ..data.
  dir.Update(PeersJson({"a", "b", "c"}));
  ASSERT_TRUE(w.Poll().ok());
  ASSERT_EQ(seen.size(), 2u);
  EXPECT_EQ(seen[1]->version(), 2u);
  EXPECT_TRUE(seen[1]->Contains("c"));
  // The old snapshot is untouched (immutable).
  EXPECT_FALSE(seen[0]->Contains("c"));

  // Same peers, different bytes (order, spacing): no new version.
  dir.Update(R"({"peers": [{"node":"c","address":"10.0.0.1","port":7470},)"
             R"( {"node":"b","address":"10.0.0.1","port":7470},)"
             R"( {"node":"a","address":"10.0.0.1","port":7470}]})");
  ASSERT_TRUE(w.Poll().ok());
  EXPECT_EQ(seen.size(), 2u);
  EXPECT_EQ(w.GetStats().version, 2u);
  EXPECT_EQ(w.GetStats().changes, 2u);
}

TEST(PeersWatcher, ABrokenFileKeepsTheLastGoodMembership) {
  ConfigMapDir dir;
  dir.Update(PeersJson({"a"}));
  PeersWatcher w({dir.path()});
  ASSERT_TRUE(w.Poll().ok());
  dir.Update(R"({"peers":[{"node":"a","address":"h","port":0}]})");
  Status s = w.Poll();
  ASSERT_FALSE(s.ok());
  EXPECT_NE(s.message().find("peers[0].port"), std::string_view::npos) << s.ToString();
  EXPECT_NE(s.message().find(dir.path()), std::string_view::npos) << s.ToString();
  EXPECT_EQ(w.Current()->version(), 1u);
  EXPECT_TRUE(w.Current()->Contains("a"));
  EXPECT_FALSE(w.GetStats().last_error.ok());
  // Read again: still an error (a broken file is not remembered as seen).
  EXPECT_FALSE(w.Poll().ok());
  EXPECT_EQ(w.GetStats().errors, 2u);
  // Fixed: published, error cleared.
  dir.Update(PeersJson({"a", "d"}));
  ASSERT_TRUE(w.Poll().ok());
  EXPECT_EQ(w.Current()->version(), 2u);
  EXPECT_TRUE(w.GetStats().last_error.ok());
}

TEST(PeersWatcher, APlainFileEditedInPlaceToo) {
  char tmpl[] = "/tmp/tw_peers_plain_XXXXXX";
  fs::path root = mkdtemp(tmpl);
  const std::string path = (root / "peers.json").string();
  std::ofstream(path) << PeersJson({"a"});
  PeersWatcher w({path});
  ASSERT_TRUE(w.Poll().ok());
  std::ofstream(path, std::ios::trunc) << PeersJson({"x", "y"});
  ASSERT_TRUE(w.Poll().ok());
  EXPECT_TRUE(w.Current()->Contains("y"));
  EXPECT_FALSE(w.Current()->Contains("a"));
  fs::remove_all(root);
}

TEST(PeersWatcher, UnsubscribedSubscribersAreNotCalled) {
  ConfigMapDir dir;
  dir.Update(PeersJson({"a"}));
  PeersWatcher w({dir.path()});
  int calls = 0;
  uint64_t id = w.Subscribe([&](const PeersWatcher::Snapshot&) { ++calls; });
  ASSERT_TRUE(w.Poll().ok());
  w.Unsubscribe(id);
  dir.Update(PeersJson({"b"}));
  ASSERT_TRUE(w.Poll().ok());
  EXPECT_EQ(calls, 1);
}

TEST(PeersWatcher, StartPollsAtOnceThenOnItsThread) {
  ConfigMapDir dir;
  dir.Update(PeersJson({"a"}));
  PeersWatcher w({dir.path(), std::chrono::milliseconds(1)});
  std::mutex mu;
  std::condition_variable cv;
  uint64_t last_version = 0;
  w.Subscribe([&](const PeersWatcher::Snapshot& s) {
    std::lock_guard<std::mutex> l(mu);
    last_version = s->version();
    cv.notify_all();
  });
  ASSERT_TRUE(w.Start().ok());
  EXPECT_EQ(w.Current()->version(), 1u);  // the first poll ran on this thread
  dir.Update(PeersJson({"a", "b"}));
  {
    // Waits for the event, not for a time: the bound only keeps a broken build from hanging.
    std::unique_lock<std::mutex> l(mu);
    ASSERT_TRUE(cv.wait_for(l, std::chrono::seconds(60), [&] { return last_version == 2; }));
  }
  w.Stop();
  w.Stop();  // idempotent
  EXPECT_TRUE(w.Current()->Contains("b"));
}

}  // namespace
}  // namespace tw::mesh
