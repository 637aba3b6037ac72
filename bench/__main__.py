"""``python -m bench [lane ...]``: run each lane's suite (``bench/<lane>/__main__.py``)."""

from __future__ import annotations

import runpy
import sys
from pathlib import Path

HERE = Path(__file__).parent


def main(argv: list[str]) -> int:
    lanes = argv or sorted(
        p.name for p in HERE.iterdir() if p.is_dir() and (p / "__main__.py").exists()
    )
    for lane in lanes:
        print(f"== bench/{lane}", flush=True)
        saved = sys.argv
        sys.argv = [f"bench.{lane}"]
        try:
            runpy.run_module(f"bench.{lane}", run_name="__main__")
        finally:
            sys.argv = saved
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
