// tw-csi's gRPC services through a real gRPC channel on a temporary Unix socket, with real
// read-only bind mounts in a temporary directory. The mount tests need root (CAP_SYS_ADMIN)
// and skip with a message otherwise; the argument checks run as any user.
#include "tw/csi/csi_server.h"

#include <grpcpp/grpcpp.h>
#include <gtest/gtest.h>
#include <sys/mount.h>
#include <sys/socket.h>
#include <sys/statvfs.h>
#include <sys/un.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "csi/csi.grpc.pb.h"
#include "tw/csi/mounter.h"

namespace tw::csi {
namespace {
namespace fs = std::filesystem;
using ::csi::v1::VolumeCapability;

// How many times `path` appears as a mount point in this process's mount table.
int MountCount(const std::string& path) {
  std::ifstream in("/proc/self/mountinfo");
  std::ostringstream text;
  text << in.rdbuf();
  auto points = ParseMountPoints(text.str());
  if (!points.ok()) return -1;
  return static_cast<int>(std::count(points->begin(), points->end(), path));
}

// The mount points at or below `dir`, deepest first.
std::vector<std::string> MountsUnder(const std::string& dir) {
  std::ifstream in("/proc/self/mountinfo");
  std::ostringstream text;
  text << in.rdbuf();
  auto points = ParseMountPoints(text.str());
  std::vector<std::string> out;
  if (!points.ok()) return out;
  for (const auto& p : *points) {
    if (p == dir || p.starts_with(dir + "/")) out.push_back(p);
  }
  std::reverse(out.begin(), out.end());
  return out;
}

// True when this process may make bind mounts (root with CAP_SYS_ADMIN).
bool CanMount(const fs::path& scratch) {
  if (::geteuid() != 0) return false;
  fs::create_directories(scratch);
  if (::mount(scratch.c_str(), scratch.c_str(), nullptr, MS_BIND, nullptr) != 0) return false;
  ::umount2(scratch.c_str(), MNT_DETACH);
  fs::remove(scratch);
  return true;
}

// A listening Unix socket, standing in for twd's.
int Listen(const std::string& path) {
  int fd = ::socket(AF_UNIX, SOCK_STREAM, 0);
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  std::snprintf(addr.sun_path, sizeof(addr.sun_path), "%s", path.c_str());
  if (::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0 || ::listen(fd, 4) != 0) {
    ::close(fd);
    return -1;
  }
  return fd;
}

// 0 when a client can connect to the Unix socket at `path`, else errno.
int ConnectErrno(const std::string& path) {
  int fd = ::socket(AF_UNIX, SOCK_STREAM, 0);
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  std::snprintf(addr.sun_path, sizeof(addr.sun_path), "%s", path.c_str());
  int rc = ::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) == 0 ? 0 : errno;
  ::close(fd);
  return rc;
}

VolumeCapability MountCapability() {
  VolumeCapability cap;
  cap.mutable_mount();
  cap.mutable_access_mode()->set_mode(VolumeCapability::AccessMode::SINGLE_NODE_WRITER);
  return cap;
}

class CsiServerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/tw-csi-test-XXXXXX";
    ASSERT_NE(::mkdtemp(tmpl), nullptr);
    dir_ = fs::canonical(tmpl);
    root_ = dir_ / "root";
    fs::create_directories(root_ / "inference/cache");
    fs::create_directories(root_ / "inference/other");
    twd_fd_ = Listen((root_ / "inference/cache/twd.sock").string());
    ASSERT_GE(twd_fd_, 0);

    CsiServerOptions options;
    options.endpoint = "unix://" + (dir_ / "csi.sock").string();
    options.node_id = "node-a";
    options.socket_root = root_.string();
    options.vendor_version = "9.9.9";
    auto server = CsiServer::Start(options, &mounter_);
    ASSERT_TRUE(server.ok()) << server.status().ToString();
    server_ = std::move(*server);
    auto channel = grpc::CreateChannel(options.endpoint, grpc::InsecureChannelCredentials());
    identity_ = ::csi::v1::Identity::NewStub(channel);
    node_ = ::csi::v1::Node::NewStub(channel);
  }

  void TearDown() override {
    server_.reset();
    if (twd_fd_ >= 0) ::close(twd_fd_);
    // Never delete through a mount that a failed test left behind.
    for (const auto& point : MountsUnder(dir_.string())) ::umount2(point.c_str(), MNT_DETACH);
    std::error_code ec;
    fs::remove_all(dir_, ec);
  }

  std::string Target() const { return (dir_ / "pods/uid-1/volumes/tw/mount").string(); }

  ::csi::v1::NodePublishVolumeRequest PublishRequest(const std::string& warehouse = "") {
    ::csi::v1::NodePublishVolumeRequest req;
    req.set_volume_id("csi-0123");
    req.set_target_path(Target());
    *req.mutable_volume_capability() = MountCapability();
    auto& ctx = *req.mutable_volume_context();
    ctx["csi.storage.k8s.io/ephemeral"] = "true";
    ctx["csi.storage.k8s.io/pod.namespace"] = "inference";
    ctx["csi.storage.k8s.io/pod.name"] = "engine-0";
    if (!warehouse.empty()) ctx["warehouse"] = warehouse;
    return req;
  }

  grpc::Status Publish(const ::csi::v1::NodePublishVolumeRequest& req) {
    grpc::ClientContext ctx;
    ::csi::v1::NodePublishVolumeResponse resp;
    return node_->NodePublishVolume(&ctx, req, &resp);
  }

  grpc::Status Unpublish(const std::string& volume_id, const std::string& target) {
    grpc::ClientContext ctx;
    ::csi::v1::NodeUnpublishVolumeRequest req;
    req.set_volume_id(volume_id);
    req.set_target_path(target);
    ::csi::v1::NodeUnpublishVolumeResponse resp;
    return node_->NodeUnpublishVolume(&ctx, req, &resp);
  }

  fs::path dir_, root_;
  int twd_fd_ = -1;
  SystemMounter mounter_;
  std::unique_ptr<CsiServer> server_;
  std::unique_ptr<::csi::v1::Identity::Stub> identity_;
  std::unique_ptr<::csi::v1::Node::Stub> node_;
};

TEST_F(CsiServerTest, IdentityNamesTheDriverAndDeclaresNoService) {
  grpc::ClientContext c1, c2, c3;
  ::csi::v1::GetPluginInfoResponse info;
  ASSERT_TRUE(identity_->GetPluginInfo(&c1, {}, &info).ok());
  EXPECT_EQ(info.name(), "csi.tokenwarehouse.io");
  EXPECT_EQ(info.vendor_version(), "9.9.9");
  ::csi::v1::GetPluginCapabilitiesResponse caps;
  ASSERT_TRUE(identity_->GetPluginCapabilities(&c2, {}, &caps).ok());
  EXPECT_EQ(caps.capabilities_size(), 0);
  ::csi::v1::ProbeResponse probe;
  ASSERT_TRUE(identity_->Probe(&c3, {}, &probe).ok());
  EXPECT_TRUE(probe.ready().value());
}

TEST_F(CsiServerTest, NodeInfoAndNoCapabilities) {
  grpc::ClientContext c1, c2;
  ::csi::v1::NodeGetInfoResponse info;
  ASSERT_TRUE(node_->NodeGetInfo(&c1, {}, &info).ok());
  EXPECT_EQ(info.node_id(), "node-a");
  ::csi::v1::NodeGetCapabilitiesResponse caps;
  ASSERT_TRUE(node_->NodeGetCapabilities(&c2, {}, &caps).ok());
  EXPECT_EQ(caps.capabilities_size(), 0);
}

TEST_F(CsiServerTest, BadPublishRequestsGetClearErrors) {
  auto expect = [&](::csi::v1::NodePublishVolumeRequest req, grpc::StatusCode code,
                    const std::string& words) {
    grpc::Status s = Publish(req);
    EXPECT_EQ(s.error_code(), code) << s.error_message();
    EXPECT_NE(s.error_message().find(words), std::string::npos) << s.error_message();
  };
  auto req = PublishRequest();
  req.clear_volume_id();
  expect(req, grpc::StatusCode::INVALID_ARGUMENT, "volume_id");
  req = PublishRequest();
  req.clear_target_path();
  expect(req, grpc::StatusCode::INVALID_ARGUMENT, "target_path");
  req = PublishRequest();
  req.clear_volume_capability();
  expect(req, grpc::StatusCode::INVALID_ARGUMENT, "volume_capability");
  req = PublishRequest();
  req.mutable_volume_capability()->mutable_block();
  expect(req, grpc::StatusCode::INVALID_ARGUMENT, "block");
  req = PublishRequest();
  req.mutable_volume_capability()->clear_access_mode();
  expect(req, grpc::StatusCode::INVALID_ARGUMENT, "access_mode");
  req = PublishRequest();
  (*req.mutable_volume_context())["warehous"] = "cache";
  expect(req, grpc::StatusCode::INVALID_ARGUMENT, "unknown volume attribute \"warehous\"");
  expect(PublishRequest("missing"), grpc::StatusCode::NOT_FOUND, "inference/missing");
  req = PublishRequest();
  req.set_target_path("relative");
  expect(req, grpc::StatusCode::INVALID_ARGUMENT, "absolute");
  // Two warehouses in the pod's namespace and none named: the pod must say which.
  expect(PublishRequest(), grpc::StatusCode::FAILED_PRECONDITION, "inference/cache");
  EXPECT_FALSE(fs::exists(Target()));
}

TEST_F(CsiServerTest, BadUnpublishRequestsAndUnofferedCalls) {
  EXPECT_EQ(Unpublish("", Target()).error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_EQ(Unpublish("csi-0123", "").error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  grpc::ClientContext c1, c2;
  ::csi::v1::NodeStageVolumeResponse stage;
  EXPECT_EQ(node_->NodeStageVolume(&c1, {}, &stage).error_code(), grpc::StatusCode::UNIMPLEMENTED);
  ::csi::v1::NodeGetVolumeStatsResponse stats;
  EXPECT_EQ(node_->NodeGetVolumeStats(&c2, {}, &stats).error_code(),
            grpc::StatusCode::UNIMPLEMENTED);
}

TEST_F(CsiServerTest, PublishBindsTheSocketDirectoryReadOnlyAndUnpublishUndoesIt) {
  if (!CanMount(dir_ / "probe")) GTEST_SKIP() << "needs root with CAP_SYS_ADMIN for bind mounts";
  grpc::Status s = Publish(PublishRequest("cache"));
  ASSERT_TRUE(s.ok()) << s.error_message();
  EXPECT_EQ(MountCount(Target()), 1);
  // The pod sees twd's socket and can connect to it through the read-only mount...
  EXPECT_EQ(ConnectErrno(Target() + "/twd.sock"), 0);
  // ...but can change nothing there.
  struct statvfs vfs {};
  ASSERT_EQ(::statvfs(Target().c_str(), &vfs), 0);
  EXPECT_TRUE(vfs.f_flag & ST_RDONLY);
  EXPECT_TRUE(vfs.f_flag & ST_NOSUID);
  { std::ofstream(Target() + "/planted") << "x"; }
  EXPECT_FALSE(fs::exists(root_ / "inference/cache/planted"));
  EXPECT_FALSE(fs::exists(Target() + "/planted"));

  // Idempotent: publishing again mounts nothing more.
  s = Publish(PublishRequest("inference/cache"));
  EXPECT_TRUE(s.ok()) << s.error_message();
  EXPECT_EQ(MountCount(Target()), 1);
  // Another warehouse at the same target is a conflict.
  s = Publish(PublishRequest("other"));
  EXPECT_EQ(s.error_code(), grpc::StatusCode::ALREADY_EXISTS) << s.error_message();

  s = Unpublish("csi-0123", Target());
  ASSERT_TRUE(s.ok()) << s.error_message();
  EXPECT_EQ(MountCount(Target()), 0);
  EXPECT_FALSE(fs::exists(Target()));
  EXPECT_TRUE(fs::exists(root_ / "inference/cache/twd.sock")) << "the source is untouched";
  s = Unpublish("csi-0123", Target());
  EXPECT_TRUE(s.ok()) << "an absent target is already unpublished: " << s.error_message();
}

TEST_F(CsiServerTest, SocketRecreatedByARestartedTwdIsSeenThroughTheMount) {
  if (!CanMount(dir_ / "probe")) GTEST_SKIP() << "needs root with CAP_SYS_ADMIN for bind mounts";
  ASSERT_TRUE(Publish(PublishRequest("cache")).ok());
  ::close(twd_fd_);
  fs::remove(root_ / "inference/cache/twd.sock");
  EXPECT_NE(ConnectErrno(Target() + "/twd.sock"), 0);
  twd_fd_ = Listen((root_ / "inference/cache/twd.sock").string());
  ASSERT_GE(twd_fd_, 0);
  EXPECT_EQ(ConnectErrno(Target() + "/twd.sock"), 0);
  ASSERT_TRUE(Unpublish("csi-0123", Target()).ok());
}

// Kubelet folders are often symlinks (/var/lib/kubelet -> /data/kubelet): the mount table
// lists the resolved path, so idempotence and unpublish must look the target up by it.
TEST_F(CsiServerTest, TargetUnderASymlinkIsPublishedOnceAndUnpublished) {
  if (!CanMount(dir_ / "probe")) GTEST_SKIP() << "needs root with CAP_SYS_ADMIN for bind mounts";
  fs::create_directories(dir_ / "data/kubelet/pods/uid-2");
  fs::create_directory_symlink(dir_ / "data/kubelet", dir_ / "kubelet");
  const std::string target = (dir_ / "kubelet/pods/uid-2/mount").string();
  const std::string real = (dir_ / "data/kubelet/pods/uid-2/mount").string();
  auto req = PublishRequest("cache");
  req.set_target_path(target);
  ASSERT_TRUE(Publish(req).ok());
  ASSERT_TRUE(Publish(req).ok());
  EXPECT_EQ(MountCount(real), 1) << "a repeated publish stacked a second mount";
  EXPECT_EQ(ConnectErrno(target + "/twd.sock"), 0);
  grpc::Status s = Unpublish("csi-0123", target);
  EXPECT_TRUE(s.ok()) << s.error_message();
  EXPECT_EQ(MountCount(real), 0);
  EXPECT_FALSE(fs::exists(real));
}

TEST(CsiServerOptionsTest, InvalidOptionsAreNamed) {
  CsiServerOptions o{"unix:///run/csi/csi.sock", "node-a", "/run/tokenwarehouse", "1"};
  EXPECT_TRUE(o.Validate().ok());
  auto bad = o;
  bad.endpoint = "tcp://0.0.0.0:1";
  EXPECT_NE(bad.Validate().message().find("--endpoint"), std::string::npos);
  bad = o;
  bad.endpoint = "unix://relative.sock";
  EXPECT_NE(bad.Validate().message().find("absolute"), std::string::npos);
  bad = o;
  bad.node_id = "";
  EXPECT_NE(bad.Validate().message().find("--node-id"), std::string::npos);
  bad = o;
  bad.socket_root = "run";
  EXPECT_NE(bad.Validate().message().find("--socket-root"), std::string::npos);
  SystemMounter m;
  EXPECT_FALSE(CsiServer::Start(bad, &m).ok());
}

}  // namespace
}  // namespace tw::csi
