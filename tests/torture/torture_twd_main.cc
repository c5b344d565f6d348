// torture_twd: the twd daemon over the real storage engine, with the data paths' devices
// wrapped by the torture harness's test-only hooks (hook_device.h: power-cut journal, stalls,
// delays, out of space), chosen by environment variables. Test code only: it exists so the
// harness can cut the power under a real twd process; production twd never links the hooks.
#include "hook_device.h"
#include "tw/store/store.h"
#include "tw/twd/daemon.h"

int main(int argc, char** argv) {
  tw::twd::StoreHooks hooks;
  const tw::torture::HookOptions hook_options = tw::torture::HookOptionsFromEnv();
  hooks.open = [hook_options](const tw::config::Config& c) {
    tw::store::Options o = tw::twd::StoreOptionsFromConfig(c);
    o.device_factory =
        tw::torture::MakeHookDeviceFactory(tw::store::MakeUringDeviceFactory(), hook_options);
    return tw::store::Store::Open(o);
  };
  hooks.reconfigure = [](tw::store::Store& store, const tw::config::Config& c) {
    return store.Reconfigure(tw::twd::StoreOptionsFromConfig(c));
  };
  return tw::twd::RunDaemon(argc, argv, std::move(hooks));
}
