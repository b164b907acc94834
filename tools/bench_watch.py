#!/usr/bin/env python
"""What watching a run costs (validation + samples vs training time): `python tools/bench_watch.py --help`."""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from reactdiff.bench.watch import main  # noqa: E402

if __name__ == "__main__":
    raise SystemExit(main())
