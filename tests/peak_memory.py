"""Peak memory of the current process, for tests that parse in a fresh interpreter."""

from __future__ import annotations

import resource


def peak_kb() -> int:
    # Not ru_maxrss: Linux carries the parent's (pytest's) peak into a child
    # across fork and exec. VmHWM is this address space's own high-water mark.
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
