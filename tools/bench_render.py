#!/usr/bin/env python
"""Rendering speed (grey meshes, PIRender), batched vs one frame per call: `python tools/bench_render.py --help`."""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from reactdiff.bench.render import main  # noqa: E402

if __name__ == "__main__":
    raise SystemExit(main())
