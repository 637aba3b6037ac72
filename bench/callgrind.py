"""Callgrind's client requests for benches that count instructions per request.

A child process running under ``valgrind --tool=callgrind --instr-atstart=no`` loads
the shared library :func:`build_helper` compiles (with ``ctypes``) to start counting
after its set-up and to dump the count after each side of a comparison.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

HELPER = r"""
#include <valgrind/callgrind.h>
void cg_start(void) { CALLGRIND_START_INSTRUMENTATION; }
void cg_dump(const char *s) { CALLGRIND_DUMP_STATS_AT(s); }
"""


def build_helper(directory: Path) -> Path:
    """Compile the helper into ``directory``; needs ``cc`` and valgrind's headers."""
    source, library = directory / "cg.c", directory / "libcg.so"
    source.write_text(HELPER)
    subprocess.run(["cc", "-O1", "-shared", "-fPIC", "-o", str(library), str(source)], check=True)
    return library
