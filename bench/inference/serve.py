"""Run one lanewise gateway in its own process for the benchmarks.

``python -m bench.inference.serve --port 8123 --models '{"m": {"kind": "extractive"}}'``
"""

from __future__ import annotations

import argparse
import json
import tempfile

import uvicorn
from lanewise.core.gateway.app import create_app
from lanewise.core.settings import load_settings


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--models", required=True, help="JSON of the [models] table")
    args = parser.parse_args()
    settings = load_settings(
        None, models=json.loads(args.models), data_dir=tempfile.mkdtemp(prefix="lanewise-bench-")
    )
    uvicorn.run(
        create_app(settings),
        host="127.0.0.1",
        port=args.port,
        log_level="warning",
        access_log=False,
    )


if __name__ == "__main__":
    main()
