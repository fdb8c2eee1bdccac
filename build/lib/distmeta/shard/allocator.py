"""Keep freed memory in the process between tasks (glibc's ``malloc``, through ``mallopt``).

A per-task loop allocates and frees the same activations for every task. With glibc's defaults,
blocks above the (dynamic) mmap threshold are unmapped when freed and the heap top is trimmed
back to the kernel, so the next task faults every page in again (the measured cost is in
docs/performance.md). Trimming alone off is worse (setting any of these freezes the mmap threshold at 128 KiB), so the
threshold is fixed at glibc's maximum too.
"""

from __future__ import annotations

import ctypes
import logging
import sys

log = logging.getLogger(__name__)

# mallopt parameters (malloc.h)
M_TRIM_THRESHOLD, M_TOP_PAD, M_MMAP_THRESHOLD = -1, -2, -3
SETTINGS = {
    M_MMAP_THRESHOLD: 32 << 20,  # glibc's largest: blocks up to 32 MiB come from the heap
    M_TRIM_THRESHOLD: 1 << 30,  # give the heap top back only above 1 GiB free
    M_TOP_PAD: 256 << 20,  # grow the heap in large steps (address space; pages come on use)
}

_applied = False


def retain_freed_memory() -> bool:
    """Apply :data:`SETTINGS` to this process's ``malloc`` once. Returns whether they are in
    effect: False where the C library is not glibc (macOS, musl) or refuses them."""
    global _applied
    if _applied:
        return True
    if not sys.platform.startswith("linux"):
        return False
    try:
        mallopt = ctypes.CDLL("libc.so.6").mallopt
    except (OSError, AttributeError):  # not glibc
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    refused = [k for k, v in SETTINGS.items() if mallopt(k, v) != 1]
    if refused:
        log.warning("mallopt refused parameters %s; freed memory goes back to the kernel as usual", refused)
        return False
    _applied = True
    return True
