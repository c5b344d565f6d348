#include "test_client.h"

#include <errno.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/un.h>
#include <unistd.h>

#include <cstring>

#include "tw/common/strings.h"

namespace tw::twd::testing {

StatusOr<TestClient> TestClient::Connect(const std::string& path) {
  TestClient c;
  c.fd_.Reset(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
  if (!c.fd_.valid()) return ErrnoStatus(errno, "socket");
  struct sockaddr_un addr;
  std::memset(&addr, 0, sizeof addr);
  addr.sun_family = AF_UNIX;
  std::memcpy(addr.sun_path, path.data(), std::min(path.size(), sizeof addr.sun_path - 1));
  if (::connect(c.fd_.get(), reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) {
    return ErrnoStatus(errno, StrCat("connect ", path));
  }
  struct timeval tv = {10, 0};
  ::setsockopt(c.fd_.get(), SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  return c;
}

StatusOr<pb::HelloResponse> TestClient::Hello(const std::vector<Namespace>& namespaces,
                                              uint64_t arena_size, uint32_t max_version) {
  pb::HelloRequest req;
  req.set_min_version(1);
  req.set_max_version(max_version);
  req.set_client_name("test");
  for (const auto& ns : namespaces) *req.add_namespaces() = protocol::ToProto(ns);
  req.set_arena_size(arena_size);
  protocol::UniqueFd memfd;
  if (arena_size > 0) {
    TW_ASSIGN_OR_RETURN(memfd, protocol::CreateArenaMemfd("test-arena", arena_size));
    TW_ASSIGN_OR_RETURN(arena_, protocol::Arena::Map(memfd.get(), arena_size, true));
  }
  TW_RETURN_IF_ERROR(
      SendRaw(protocol::EncodeRequest(protocol::Opcode::kHello, ++next_id_, req), memfd.get()));
  TW_ASSIGN_OR_RETURN(Reply r, ReadReply());
  if (r.header.flags & protocol::kFlagError) {
    pb::ErrorReply e;
    TW_RETURN_IF_ERROR(protocol::ParseBody(r.body, &e));
    return protocol::ErrorReplyToStatus(e);
  }
  pb::HelloResponse resp;
  TW_RETURN_IF_ERROR(protocol::ParseBody(r.body, &resp));
  return resp;
}

Status TestClient::SendRaw(std::string_view bytes, int fd) {
  return protocol::SendWithFd(fd_.get(), bytes, fd);
}

StatusOr<Reply> TestClient::ReadReply() {
  protocol::DecodeLimits limits;
  limits.expect_response = true;
  limits.max_body = protocol::kAbsoluteMaxBody;
  for (;;) {
    auto d = protocol::DecodeFrame(buf_, limits);
    if (d.state == protocol::DecodeState::kFrame) {
      Reply r{d.header, std::string(d.body)};
      buf_.erase(0, d.consumed);
      return r;
    }
    if (d.state == protocol::DecodeState::kError) return d.error;
    char tmp[65536];
    ssize_t n = ::recv(fd_.get(), tmp, sizeof tmp, 0);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return ErrnoStatus(errno, "recv");
    if (n == 0) return UnavailableError("twd closed the connection");
    buf_.append(tmp, static_cast<size_t>(n));
  }
}

bool TestClient::WaitClosed() {
  char tmp[65536];
  for (;;) {
    ssize_t n = ::recv(fd_.get(), tmp, sizeof tmp, 0);
    if (n == 0) return true;
    if (n < 0) return errno != EINTR && errno != EAGAIN;
  }
}

Namespace TestNamespace(std::string tenant, uint32_t chunk_tokens, std::string parallel) {
  Namespace ns;
  ns.model = "test/model";
  ns.model_revision = "r1";
  ns.tokenizer = "tok";
  ns.kv_dtype = "bf16";
  ns.kv_layout = "test/layout";
  ns.parallel = std::move(parallel);
  ns.tenant = std::move(tenant);
  ns.chunk_tokens = StrCat(chunk_tokens);
  return ns;
}

pb::PutItem MakePutItem(const Key& ns, const Key& parent, const std::vector<uint32_t>& tokens,
                        const std::vector<uint64_t>& segment_sizes, uint64_t arena_offset,
                        std::string extra) {
  pb::PutItem item;
  const Key key = ChunkKey(
      parent,
      std::span<const uint8_t>(reinterpret_cast<const uint8_t*>(extra.data()), extra.size()),
      tokens);
  item.mutable_ref()->set_key(std::string(key.View()));
  item.mutable_ref()->set_namespace_digest(std::string(ns.View()));
  item.set_parent(std::string(parent.View()));
  item.set_extra(extra);
  for (uint32_t t : tokens) item.add_tokens(t);
  uint64_t off = arena_offset;
  for (size_t s = 0; s < segment_sizes.size(); ++s) {
    item.add_segment_sizes(segment_sizes[s]);
    pb::ScatterEntry* e = item.add_ranges();
    e->set_segment(static_cast<uint32_t>(s));
    e->set_offset(0);
    e->set_length(segment_sizes[s]);
    e->set_arena_offset(off);
    off += segment_sizes[s];
  }
  return item;
}

}  // namespace tw::twd::testing
