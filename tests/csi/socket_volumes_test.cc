// SocketVolumes and ParseMountPoints without real mounts: warehouse resolution over a temporary
// socket root, and publish/unpublish against a recording Mounter (runs as any user).
#include "tw/csi/socket_volumes.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <set>

#include "tw/csi/mounter.h"

namespace tw::csi {
namespace {
namespace fs = std::filesystem;

// Records mounts in a set instead of making them.
class RecordingMounter final : public Mounter {
 public:
  StatusOr<bool> IsMountPoint(const std::string& path) override { return mounted.count(path) > 0; }
  Status BindReadOnly(const std::string& source, const std::string& target) override {
    if (fail_next) return PermissionDeniedError("bind-mount " + source + ": injected");
    mounted.insert(target);
    sources.push_back(source);
    return OkStatus();
  }
  Status Unmount(const std::string& target) override {
    mounted.erase(target);
    return OkStatus();
  }
  std::set<std::string> mounted;
  std::vector<std::string> sources;
  bool fail_next = false;
};

class SocketVolumesTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/tw-csi-unit-XXXXXX";
    ASSERT_NE(::mkdtemp(tmpl), nullptr);
    dir_ = fs::canonical(tmpl);
    root_ = dir_ / "root";
    fs::create_directories(root_);
  }
  void TearDown() override { fs::remove_all(dir_); }
  void AddWarehouse(const std::string& ns_name) { fs::create_directories(root_ / ns_name); }

  fs::path dir_, root_;
  RecordingMounter mounter_;
};

TEST_F(SocketVolumesTest, ResolvesNamedWarehouses) {
  AddWarehouse("inference/cache");
  AddWarehouse("other/cache");
  SocketVolumes v(root_, &mounter_);
  EXPECT_EQ(*v.ResolveWarehouse("inference/cache", ""), (root_ / "inference/cache").string());
  EXPECT_EQ(*v.ResolveWarehouse("cache", "other"), (root_ / "other/cache").string());
  auto missing = v.ResolveWarehouse("inference/nope", "");
  EXPECT_EQ(missing.status().code(), StatusCode::kNotFound);
  EXPECT_NE(missing.status().message().find("inference/cache, other/cache"), std::string::npos)
      << missing.status().ToString();
  // A bare name needs the pod's namespace.
  EXPECT_EQ(v.ResolveWarehouse("cache", "").status().code(), StatusCode::kInvalidArgument);
}

TEST_F(SocketVolumesTest, RejectsNamesThatEscapeTheRoot) {
  AddWarehouse("inference/cache");
  SocketVolumes v(root_, &mounter_);
  for (const char* bad : {"../etc", "inference/..", "..", "/inference/cache", "a/b/c", "Cache",
                          "inference/", "inference/ca che"}) {
    auto r = v.ResolveWarehouse(bad, "inference");
    EXPECT_EQ(r.status().code(), StatusCode::kInvalidArgument) << bad;
  }
}

TEST_F(SocketVolumesTest, DefaultIsTheOnlyWarehouseOrTheOnlyOneOfThePodsNamespace) {
  SocketVolumes v(root_, &mounter_);
  auto none = v.ResolveWarehouse("", "inference");
  EXPECT_EQ(none.status().code(), StatusCode::kFailedPrecondition);
  EXPECT_NE(none.status().message().find("no warehouse"), std::string::npos);

  AddWarehouse("tw/shared");
  EXPECT_EQ(*v.ResolveWarehouse("", "inference"), (root_ / "tw/shared").string());
  AddWarehouse("inference/cache");
  EXPECT_EQ(*v.ResolveWarehouse("", "inference"), (root_ / "inference/cache").string());
  auto several = v.ResolveWarehouse("", "batch");
  EXPECT_EQ(several.status().code(), StatusCode::kFailedPrecondition);
  EXPECT_NE(several.status().message().find("inference/cache, tw/shared"), std::string::npos)
      << several.status().ToString();
}

TEST_F(SocketVolumesTest, PublishCreatesTargetAndUnpublishRemovesIt) {
  AddWarehouse("inference/cache");
  SocketVolumes v(root_, &mounter_);
  std::string target = (dir_ / "pod/volumes/mount").string();
  ASSERT_TRUE(v.Publish({"vol-1", target, "", "inference"}).ok());
  EXPECT_TRUE(fs::is_directory(target));
  EXPECT_EQ(mounter_.mounted, std::set<std::string>{target});
  ASSERT_EQ(mounter_.sources.size(), 1u);
  EXPECT_EQ(mounter_.sources[0], (root_ / "inference/cache").string());

  ASSERT_TRUE(v.Unpublish("vol-1", target).ok());
  EXPECT_TRUE(mounter_.mounted.empty());
  EXPECT_FALSE(fs::exists(target));
  EXPECT_TRUE(v.Unpublish("vol-1", target).ok()) << "absent target: already unpublished";
}

TEST_F(SocketVolumesTest, FailedMountLeavesNoTargetBehind) {
  AddWarehouse("inference/cache");
  SocketVolumes v(root_, &mounter_);
  mounter_.fail_next = true;
  std::string target = (dir_ / "t").string();
  Status s = v.Publish({"vol-1", target, "", ""});
  EXPECT_EQ(s.code(), StatusCode::kPermissionDenied);
  EXPECT_FALSE(fs::exists(target));
}

TEST_F(SocketVolumesTest, BadTargetsAndForeignContentAreErrors) {
  AddWarehouse("inference/cache");
  SocketVolumes v(root_, &mounter_);
  EXPECT_EQ(v.Publish({"vol-1", "relative/path", "", ""}).code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(v.Publish({"", (dir_ / "t").string(), "", ""}).code(), StatusCode::kInvalidArgument);
  fs::create_directories(dir_ / "file-parent");
  { std::ofstream(dir_ / "file-parent/f") << "x"; }
  EXPECT_EQ(v.Publish({"vol-1", (dir_ / "file-parent/f").string(), "", ""}).code(),
            StatusCode::kFailedPrecondition);
  // A directory with someone's files in it, not mounted: never deleted.
  Status s = v.Unpublish("vol-1", (dir_ / "file-parent").string());
  EXPECT_EQ(s.code(), StatusCode::kFailedPrecondition) << s.ToString();
  EXPECT_TRUE(fs::exists(dir_ / "file-parent/f"));
}

TEST(ParseMountPointsTest, ReadsFieldFiveAndUndoesEscapes) {
  auto points = ParseMountPoints(
      "22 1 8:1 / / rw,relatime shared:1 - ext4 /dev/sda1 rw\n"
      "97 22 8:1 /run/tw/a /var/lib/kubelet/pods/x/with\\040space rw - ext4 /dev/sda1 rw\n"
      "\n");
  ASSERT_TRUE(points.ok()) << points.status().ToString();
  EXPECT_EQ(*points, (std::vector<std::string>{"/", "/var/lib/kubelet/pods/x/with space"}));
  auto bad = ParseMountPoints("22 1 8:1 /\n");
  EXPECT_EQ(bad.status().code(), StatusCode::kInvalidArgument);
  EXPECT_NE(bad.status().message().find("line 1"), std::string::npos);
}

}  // namespace
}  // namespace tw::csi
