#!/usr/bin/env python
"""The quality benchmark (model vs honest baselines on planted couplings): `python tools/bench_quality.py --help`."""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from reactdiff.bench.quality import main  # noqa: E402

if __name__ == "__main__":
    raise SystemExit(main())
