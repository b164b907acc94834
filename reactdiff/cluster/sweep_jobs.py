"""A sweep's jobs: the jobs.json record of what was submitted for each point, and which of those jobs SLURM still holds.

A rerun leaves alone a point whose training or evaluation is still queued or running (submitting it again would
train the same run twice, into the same folder); everything else that is not finished is submitted again.
"""
from __future__ import annotations

import getpass
import json
import shutil
import subprocess
from pathlib import Path

from .. import atomic

JOBS = "jobs.json"


def read(folder: Path) -> dict:
    """{point name: {"train": job id or None, "eval": [task job ids], "score": job id}} of earlier submissions."""
    path = Path(folder) / JOBS
    return json.loads(path.read_text()) if path.is_file() else {}


def record(folder: Path, point: str, jobs: dict) -> None:
    doc = read(folder)
    doc[point] = jobs
    atomic.write_json(Path(folder) / JOBS, doc)


def active_slurm_jobs() -> set[str]:
    """The ids SLURM still holds for this user (pending, running, requeued), one per array element ("123_4")."""
    if not shutil.which("squeue"):
        return set()
    res = subprocess.run(["squeue", "-h", "-r", "-u", getpass.getuser(), "-o", "%i"], capture_output=True,
                         text=True)
    if res.returncode != 0:
        raise RuntimeError(f"squeue failed ({res.stderr.strip()}): cannot tell which of the sweep's jobs are still "
                           f"queued, so nothing is submitted again")
    return {line.strip() for line in res.stdout.splitlines() if line.strip()}


def still_queued(jobs: dict, active: set[str]) -> list[str]:
    """The point's recorded jobs that SLURM still holds."""
    ids = [jobs.get("train"), *jobs.get("eval", []), jobs.get("score")]
    return [i for i in ids if i and i in active]
