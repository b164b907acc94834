#!/usr/bin/env python
"""End-to-end training throughput per size and process count: `python tools/bench_train.py --help`."""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from reactdiff.bench.train import main  # noqa: E402

if __name__ == "__main__":
    raise SystemExit(main())
