"""A Mooncake Store node holding the benchmark's chunks (mooncake_system.py starts it):
a MooncakeDistributedStore that mounts a memory segment of SIZE bytes, then waits until
SIGTERM. Writes READY_FILE once set up.

    python mooncake_holder.py METADATA_URL MASTER_ADDR SIZE READY_FILE
"""

import signal
import sys
import threading

from mooncake.store import MooncakeDistributedStore


def main():
    meta, master, size, ready = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    s = MooncakeDistributedStore()
    rc = s.setup("127.0.0.1", meta, size, 16 << 20, "tcp", "", master)
    if rc != 0:
        print(f"MooncakeDistributedStore.setup: {rc}", file=sys.stderr)
        return 1
    open(ready, "w").close()
    stop.wait()
    s.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
