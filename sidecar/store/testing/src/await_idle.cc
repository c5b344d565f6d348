#include "tw/store/testing/await_idle.h"

#include "store_impl.h"

namespace tw::store {

bool AwaitBackgroundIdle(Store& store, std::chrono::milliseconds max) {
  auto* impl = dynamic_cast<StoreImpl*>(&store);
  return impl != nullptr && impl->AwaitIdle(max);
}

}  // namespace tw::store
