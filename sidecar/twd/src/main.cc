// twd: the Token Warehouse per-node KV-cache service (docs/protocol.md, docs/config.md).
#include "tw/store/store.h"
#include "tw/twd/daemon.h"

int main(int argc, char** argv) {
  tw::twd::StoreHooks hooks;
  hooks.open = [](const tw::config::Config& c) {
    return tw::store::Store::Open(tw::twd::StoreOptionsFromConfig(c));
  };
  hooks.reconfigure = [](tw::store::Store& store, const tw::config::Config& c) {
    return store.Reconfigure(tw::twd::StoreOptionsFromConfig(c));
  };
  return tw::twd::RunDaemon(argc, argv, std::move(hooks));
}
