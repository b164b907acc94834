#!/usr/bin/env python
"""Live sessions served in real time, batched vs one window per call: `python tools/bench_stream.py --help`."""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from reactdiff.bench.stream import main  # noqa: E402

if __name__ == "__main__":
    raise SystemExit(main())
