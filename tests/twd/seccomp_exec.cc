// seccomp_exec PROFILE PROGRAM [ARG ...]: loads a container seccomp profile (the JSON a
// Kubernetes Localhost profile or `docker run --security-opt seccomp=` takes) into this
// process with libseccomp, then execs PROGRAM under it: what a container runtime does with
// spec.seccompProfile, without a runtime. A test tool for twd_seccomp_profile_test.
//
// Supported: defaultAction (SCMP_ACT_ERRNO, SCMP_ACT_KILL*, SCMP_ACT_LOG, SCMP_ACT_ALLOW),
// defaultErrnoRet, and rules {names, action, errnoRet, args} with argument comparisons (op
// SCMP_CMP_*; for MASKED_EQ `value` is the mask and `valueTwo` the datum, as runtimes read
// it). The filter covers the native architecture (`architectures` is not read). Names this
// kernel and libseccomp do not know are skipped, as runtimes skip them. Exits 2 on a bad
// profile.
#include <errno.h>
#include <seccomp.h>
#include <unistd.h>

#include <cstdio>
#include <fstream>
#include <iterator>
#include <nlohmann/json.hpp>
#include <string>
#include <utility>
#include <vector>

namespace {

bool ParseAction(const std::string& name, uint32_t errno_ret, uint32_t* out) {
  if (name == "SCMP_ACT_ALLOW")
    *out = SCMP_ACT_ALLOW;
  else if (name == "SCMP_ACT_ERRNO")
    *out = SCMP_ACT_ERRNO(errno_ret);
  else if (name == "SCMP_ACT_KILL" || name == "SCMP_ACT_KILL_THREAD")
    *out = SCMP_ACT_KILL;
  else if (name == "SCMP_ACT_KILL_PROCESS")
    *out = SCMP_ACT_KILL_PROCESS;
  else if (name == "SCMP_ACT_LOG")
    *out = SCMP_ACT_LOG;
  else
    return false;
  return true;
}

bool ParseOp(const std::string& name, scmp_compare* out) {
  static const std::pair<const char*, scmp_compare> kOps[] = {
      {"SCMP_CMP_NE", SCMP_CMP_NE},
      {"SCMP_CMP_LT", SCMP_CMP_LT},
      {"SCMP_CMP_LE", SCMP_CMP_LE},
      {"SCMP_CMP_EQ", SCMP_CMP_EQ},
      {"SCMP_CMP_GE", SCMP_CMP_GE},
      {"SCMP_CMP_GT", SCMP_CMP_GT},
      {"SCMP_CMP_MASKED_EQ", SCMP_CMP_MASKED_EQ}};
  for (const auto& [n, op] : kOps) {
    if (name == n) {
      *out = op;
      return true;
    }
  }
  return false;
}

int Fail(const std::string& why) {
  std::fprintf(stderr, "seccomp_exec: %s\n", why.c_str());
  return 2;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 3) return Fail("usage: seccomp_exec PROFILE PROGRAM [ARG ...]");
  std::ifstream in(argv[1]);
  if (!in) return Fail(std::string("cannot read ") + argv[1]);
  nlohmann::json profile = nlohmann::json::parse(in, nullptr, /*allow_exceptions=*/false);
  if (!profile.is_object()) return Fail("the profile is not a JSON object");
  const uint32_t errno_ret = profile.value("defaultErrnoRet", uint32_t{EPERM});
  uint32_t default_action;
  if (!ParseAction(profile.value("defaultAction", ""), errno_ret, &default_action)) {
    return Fail("unknown defaultAction");
  }
  scmp_filter_ctx ctx = seccomp_init(default_action);
  if (ctx == nullptr) return Fail("seccomp_init failed");
  int rules = 0;
  for (const auto& rule : profile.value("syscalls", nlohmann::json::array())) {
    std::vector<scmp_arg_cmp> args;
    for (const auto& a : rule.value("args", nlohmann::json::array())) {
      scmp_compare op;
      if (!ParseOp(a.value("op", ""), &op)) return Fail("unknown argument comparison");
      args.push_back({a.value("index", 0u), op, a.value("value", uint64_t{0}),
                      a.value("valueTwo", uint64_t{0})});
    }
    uint32_t action;
    if (!ParseAction(rule.value("action", ""), rule.value("errnoRet", errno_ret), &action)) {
      return Fail("unknown rule action");
    }
    for (const auto& name : rule.value("names", nlohmann::json::array())) {
      const int nr = seccomp_syscall_resolve_name(name.get<std::string>().c_str());
      if (nr == __NR_SCMP_ERROR) continue;  // not on this architecture
      if (seccomp_rule_add_array(ctx, action, nr, static_cast<unsigned>(args.size()),
                                 args.data()) != 0) {
        return Fail("seccomp_rule_add " + name.get<std::string>());
      }
      ++rules;
    }
  }
  if (rules == 0) return Fail("the profile allows no system call");
  if (seccomp_load(ctx) != 0) return Fail("seccomp_load failed");
  seccomp_release(ctx);
  ::execv(argv[2], argv + 2);
  std::perror("seccomp_exec: execv");
  return 127;
}
