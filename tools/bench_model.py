#!/usr/bin/env python
"""Generation and training-step speed of the model sizes: `python tools/bench_model.py --help`."""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from reactdiff.bench.model import main  # noqa: E402

if __name__ == "__main__":
    raise SystemExit(main())
