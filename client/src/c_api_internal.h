// Helpers shared by the C ABI's translation units: the tw_client struct, the thread-local
// last-error message and
// the conversion of tw::Status into a C error code, tw_namespace ↔ tw::Namespace, and the
// guard that keeps C++ exceptions from crossing the C ABI.
//
// Every extern "C" function is a function-try-block closed by TW_C_CATCH (or
// TW_C_CATCH_RETURN / TW_C_CATCH_VOID): an exception escaping its body (std::bad_alloc, a
// std::system_error from a thread that could not start, a bug) becomes TW_E_INTERNAL with the
// exception's message in tw_last_error(), never a std::terminate in the caller's process.
//
// Threading: the last-error message is thread-local; everything else is pure.
#pragma once

#include <memory>

#include "tw/client/client.h"
#include "tw/common/keys.h"
#include "tw/common/status.h"
#include "tw/gpu/pinned_host_range.h"
#include "tw_client.h"

// A connection of the C ABI. `pinned` (tw_client_pin_arena) is declared after `impl` so that it
// is destroyed first: the arena is unregistered before the client unmaps it.
struct tw_client {
  std::unique_ptr<tw::client::Client> impl;
  std::unique_ptr<tw::gpu::PinnedHostRange> pinned;
};

namespace tw::client::capi {

// Records `s` as this thread's last error (when not OK) and returns its C code.
int Fail(const Status& s);
// This thread's last error message.
const char* LastError();
// Shortcut: Fail(InvalidArgumentError(message)).
int FailInvalid(std::string message);
// Converts (NULL fields are empty strings).
Namespace FromC(const tw_namespace& ns);
// Records the exception being handled as this thread's last error ("ENTRY: what()") and
// returns TW_E_INTERNAL. REQUIRES: called from a catch handler. Never throws.
int FailCurrentException(const char* entry) noexcept;

}  // namespace tw::client::capi

// Closes an entry point's function-try-block (see the top of this file).
#define TW_C_CATCH(entry)                                   \
  catch (...) {                                             \
    return ::tw::client::capi::FailCurrentException(entry); \
  }
#define TW_C_CATCH_RETURN(entry, value)              \
  catch (...) {                                      \
    ::tw::client::capi::FailCurrentException(entry); \
    return value;                                    \
  }
#define TW_C_CATCH_VOID(entry)                       \
  catch (...) {                                      \
    ::tw::client::capi::FailCurrentException(entry); \
  }
