#!/usr/bin/env python
"""Pack a REACT split into WebDataset shards: `python tools/make_shards.py --help`."""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from reactdiff.data.shards_cli import main  # noqa: E402

if __name__ == "__main__":
    raise SystemExit(main())
