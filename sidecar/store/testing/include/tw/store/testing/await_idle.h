// AwaitBackgroundIdle: lets a test wait for the store's background threads by condition, not
// by sleeping: it returns once nothing waits for write-back and a whole pass of the reclaim
// thread, begun after that, found nothing to reclaim (tw_store_testing).
//
// Threading: call from the test's thread while no other thread puts; the store keeps working
// meanwhile. Lifetime: `store` must be a store Store::Open() made.
#pragma once

#include <chrono>

#include "tw/store/store.h"

namespace tw::store {

// False when the store did not become idle within `max` (a test should fail then).
bool AwaitBackgroundIdle(Store& store, std::chrono::milliseconds max = std::chrono::seconds(30));

}  // namespace tw::store
