#!/usr/bin/env python
"""Submit training, evaluation or rendering to SLURM: `python launch/slurm.py --help` (the same command as
`reactdiff launch`; the code is reactdiff/cluster/launch_cli.py)."""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from reactdiff.cluster.launch_cli import *  # noqa: E402,F401,F403 (the tests and benchmarks reach its functions here)
from reactdiff.cluster.launch_cli import main  # noqa: E402

if __name__ == "__main__":
    raise SystemExit(main(prog="launch/slurm.py"))
