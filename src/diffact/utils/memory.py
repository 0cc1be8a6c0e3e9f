"""The C allocator's policy for processes that extract features.

A hooked U-Net forward keeps every captured activation alive until the features are written, so the forward's
later temporaries cannot reuse that memory and take fresh memory instead. glibc's malloc by default returns
freed memory to the kernel (it trims the top of the heap and unmaps every block above its mmap threshold, at
most 32 MiB), so the next image's forward gets it back as fresh pages: one page fault, and a zeroed 4 KiB page,
for every page, every image. On the full-size SD1.5 U-Net with its 165 non-map activations kept (556 MiB)
that was 10⁵–6·10⁵ page faults per forward and most of the hooks' overhead over a bare forward; the 165 Python
hooks themselves cost about 0.1 % (issue #19 point 4; ``benchmarks/bench_extraction.py`` reports the faults).

:func:`reuse_freed_memory` makes malloc keep what it frees for the process's next allocations: the memory an
image's features and temporaries used is reused by the next image without any page fault. The price is that
the process's resident memory stays at its peak (which an extraction process reaches on every image anyway)
instead of shrinking between images. It changes no value: only where the allocator finds memory.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
import platform

log = logging.getLogger(__name__)

# mallopt parameters (glibc's malloc.h).
M_TRIM_THRESHOLD = -1
M_MMAP_THRESHOLD = -3
# Free memory at the top of the heap is returned to the kernel only above this (mallopt takes an int).
KEEP_FREE_UP_TO = 2**31 - 1
# Blocks above this still get their own mapping (and give it back when freed): larger than any activation or
# temporary of an extraction forward at the paper's sizes (SDXL at 1024 px: a few hundred MiB at most).
OWN_MAPPING_ABOVE = 2**30


def reuse_freed_memory() -> bool:
    """Make glibc's malloc keep freed memory for reuse (module docstring); True if it did, False where the C
    library is not glibc (nothing to do: other allocators have other policies)."""
    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        return False
    libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
    done = bool(libc.mallopt(M_MMAP_THRESHOLD, OWN_MAPPING_ABOVE)) and bool(libc.mallopt(M_TRIM_THRESHOLD, KEEP_FREE_UP_TO))
    if not done:
        log.warning("mallopt refused the extraction's memory policy; freed memory goes back to the kernel")
    return done
