// fake_twd: FakeTwd as a process, for the script tests of twctl and the Python package when
// the real twd is not built. Usage: fake_twd --socket PATH [--admin-socket PATH]
// [--reverse-window N]. Prints "ready" once listening; exits on SIGTERM/SIGINT.
#include <signal.h>
#include <unistd.h>

#include <cstdlib>
#include <cstring>
#include <iostream>
#include <string>

#include "fake_twd.h"

int main(int argc, char** argv) {
  std::string socket, admin;
  int window = 0;
  for (int i = 1; i + 1 < argc; i += 2) {
    if (std::strcmp(argv[i], "--socket") == 0) {
      socket = argv[i + 1];
    } else if (std::strcmp(argv[i], "--admin-socket") == 0) {
      admin = argv[i + 1];
    } else if (std::strcmp(argv[i], "--reverse-window") == 0) {
      window = std::atoi(argv[i + 1]);
    } else {
      std::cerr << "fake_twd: unknown flag " << argv[i] << "\n";
      return 2;
    }
  }
  if (socket.empty()) {
    std::cerr << "usage: fake_twd --socket PATH [--admin-socket PATH] [--reverse-window N]\n";
    return 2;
  }
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGTERM);
  sigaddset(&set, SIGINT);
  pthread_sigmask(SIG_BLOCK, &set, nullptr);
  // One instance serves both sockets, so admin export sees what clients put.
  tw::client::testing::FakeTwd fake;
  fake.reverse_window = window;
  tw::Status s = fake.Start(socket, admin);
  if (!s.ok()) {
    std::cerr << "fake_twd: " << s.ToString() << "\n";
    return 1;
  }
  std::cout << "ready" << std::endl;
  int sig = 0;
  sigwait(&set, &sig);
  return 0;
}
