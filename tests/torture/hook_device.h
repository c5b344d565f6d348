// Test-only device hooks for the torture harness (tests/torture/), used by `torture_twd`, the
// twd daemon over the real storage engine whose data paths are wrapped by HookDeviceFactory.
// Production twd never links this code.
//
// What a hooked device adds to the real one (each knob is off unless its option is set):
//   - power-cut journal: before each write, the bytes it overwrites are appended to
//     "<data path>.undo" (plain write(2): the page cache keeps them across SIGKILL); a
//     successful Sync() empties the journal. After killing twd, ApplyPowerCut() undoes, keeps
//     or tears (512-byte sectors) each write still in the journal: what a power cut does to
//     writes that were never fdatasync'ed.
//   - stall: while the file `stall_file` exists every request waits (slow and stalled I/O).
//   - delay: every request and sync takes at least `delay`; every sync at least `sync_delay`
//     (writes then wait longer unsynced: more of them for a power cut to undo or tear).
//   - out of space: while the file `enospc_file` exists every write fails with ENOSPC.
//
// Threading: the devices are thread-safe; writes and syncs are serialised against each
// other only where the journal needs it (a sync waits for writes in progress). Lifetime: the
// factory wraps a real factory and must outlive nothing but its devices.
#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <string>

#include "tw/common/status.h"
#include "tw/store/device.h"

namespace tw::torture {

struct HookOptions {
  bool undo_journal = false;  // keep "<path>.undo" for ApplyPowerCut()
  std::string stall_file;     // "" = never stall
  std::chrono::microseconds delay{0};
  std::chrono::microseconds sync_delay{0};
  std::string enospc_file;  // "" = never fail writes with ENOSPC
};

// Reads the options from the environment: TW_TORTURE_UNDO=1, TW_TORTURE_STALL_FILE,
// TW_TORTURE_DELAY_US, TW_TORTURE_SYNC_DELAY_US, TW_TORTURE_ENOSPC_FILE.
HookOptions HookOptionsFromEnv();

std::shared_ptr<store::DeviceFactory> MakeHookDeviceFactory(
    std::shared_ptr<store::DeviceFactory> real, HookOptions options);

// What ApplyPowerCut() did.
struct PowerCutReport {
  uint64_t writes = 0;  // unsynced writes found in the journal
  uint64_t kept = 0;
  uint64_t lost = 0;
  uint64_t torn = 0;
};

// With twd dead: undoes the journal of `data_path` newest first. `drop_all`: every unsynced
// write is lost; otherwise each is kept, lost or torn (seeded). Empties the journal.
// A journal record cut short (twd killed while appending it) is ignored: its write had not
// started.
StatusOr<PowerCutReport> ApplyPowerCut(const std::string& data_path, bool drop_all, uint64_t seed);

}  // namespace tw::torture
