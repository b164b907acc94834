#!/usr/bin/env python
"""FRDist's DTW: ours (batched torch) vs tslearn in a multiprocessing pool: `python tools/bench_metrics.py --help`."""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from reactdiff.bench.dtw_speed import main  # noqa: E402

if __name__ == "__main__":
    raise SystemExit(main())
