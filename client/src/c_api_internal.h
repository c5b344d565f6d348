// Helpers shared by the C ABI's translation units: the thread-local last-error message and
// the conversion of tw::Status into a C error code, and tw_namespace ↔ tw::Namespace.
//
// Threading: the last-error message is thread-local; everything else is pure.
#pragma once

#include "tw/common/keys.h"
#include "tw/common/status.h"
#include "tw_client.h"

namespace tw::client::capi {

// Records `s` as this thread's last error (when not OK) and returns its C code.
int Fail(const Status& s);
// This thread's last error message.
const char* LastError();
// Shortcut: Fail(InvalidArgumentError(message)).
int FailInvalid(std::string message);
// Converts (NULL fields are empty strings).
Namespace FromC(const tw_namespace& ns);

}  // namespace tw::client::capi
