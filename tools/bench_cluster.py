#!/usr/bin/env python
"""Evaluation fan-out wall time on 1 vs 2 SLURM nodes: `python tools/bench_cluster.py --help`."""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from reactdiff.bench.cluster import main  # noqa: E402

if __name__ == "__main__":
    raise SystemExit(main())
