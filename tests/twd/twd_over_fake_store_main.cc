// twd_over_fake_store: the twd daemon (flags, config, signals, reload, shutdown) over a FakeStore,
// so the process-level behaviour is tested without the storage engine. Test code only.
//
// Environment knobs: TW_FAKE_GET_STARTED=PATH (each Get creates PATH first, then sleeps
// TW_FAKE_GET_DELAY_MS), TW_FAKE_CLOSED=PATH (Close() writes PATH).
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <memory>
#include <thread>

#include "fake_store.h"
#include "tw/twd/daemon.h"

namespace {

class SignallingStore : public tw::twd::testing::FakeStore {
 public:
  tw::store::GetResult Get(const tw::Key& key, std::span<const tw::store::ScatterEntry> ranges,
                           tw::store::Deadline deadline, tw::store::LeaseId lease) override {
    if (const char* p = std::getenv("TW_FAKE_GET_STARTED")) std::ofstream(p) << "started\n";
    if (const char* d = std::getenv("TW_FAKE_GET_DELAY_MS")) {
      std::this_thread::sleep_for(std::chrono::milliseconds(std::atoi(d)));
    }
    return FakeStore::Get(key, ranges, deadline, lease);
  }
  tw::Status Close(std::chrono::nanoseconds grace) override {
    if (const char* p = std::getenv("TW_FAKE_CLOSED")) std::ofstream(p) << "closed\n";
    return FakeStore::Close(grace);
  }
};

}  // namespace

int main(int argc, char** argv) {
  tw::twd::StoreHooks hooks;
  hooks.open = [](const tw::config::Config&) -> tw::StatusOr<std::unique_ptr<tw::store::Store>> {
    return std::unique_ptr<tw::store::Store>(new SignallingStore());
  };
  hooks.reconfigure = [](tw::store::Store&, const tw::config::Config&) { return tw::OkStatus(); };
  return tw::twd::RunDaemon(argc, argv, std::move(hooks));
}
