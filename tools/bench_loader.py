#!/usr/bin/env python
"""Training windows/s from shards vs the raw REACT layout: `python tools/bench_loader.py --help`."""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from reactdiff.bench.loader import main  # noqa: E402

if __name__ == "__main__":
    raise SystemExit(main())
