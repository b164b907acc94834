"""Workers that outlive their launcher: notice, checkpoint, exit.

A launcher killed with SIGKILL cannot stop its workers; they would train on as orphans and write into the run
folder. Each worker started by a launcher (RANK set) watches the process that launched it: REACTDIFF_WATCH_PID when
set (launch/local.sh sets it to itself), else its parent, and for the deepspeed launcher also the parent's parent
(`deepspeed` runs
`deepspeed.launcher.launch`, which runs the workers). When it is gone the worker sends itself SIGTERM: the trainer
saves at the next step boundary and exits as if preempted; after `grace_s` it exits regardless.
Linux /proc only; elsewhere nothing is watched.
"""
from __future__ import annotations

import os
import signal
import threading
import time
from pathlib import Path


def _parent_of(pid: int) -> int | None:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return int(stat.rsplit(")", 1)[1].split()[1])  # the field after the state; the name may hold spaces or ')'


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


def watched_pids(environ=os.environ) -> list[int]:
    """The launcher processes this worker lives under."""
    if environ.get("REACTDIFF_WATCH_PID"):
        return [int(environ["REACTDIFF_WATCH_PID"])]
    if "RANK" not in environ:  # a process started by hand (or by srun): its parent is a shell, not a launcher
        return []
    parent = os.getppid()
    if parent <= 1:
        return []
    pids = [parent]
    if "deepspeed.launcher.launch" in _cmdline(parent):
        grand = _parent_of(parent)
        if grand and grand > 1:
            pids.append(grand)
    return pids


def pid_alive(pid: int) -> bool:
    """Whether process `pid` exists and has not exited (a zombie not yet reaped counts as gone)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return True


def start(every_s: float = 1.0, grace_s: float = 300.0) -> threading.Thread | None:
    """Watch the launcher from a daemon thread; returns it (None when there is nothing to watch)."""
    if not Path("/proc").is_dir():
        return None
    pids = watched_pids()
    if not pids:
        return None

    def run() -> None:
        while all(pid_alive(p) for p in pids):
            time.sleep(every_s)
        gone = next(p for p in pids if not pid_alive(p))
        print(f"[train] launcher process {gone} is gone: checkpoint at the next step boundary, then exit", flush=True)
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(grace_s)
        print(f"[train] still running {grace_s:.0f} s after the launcher died: exiting now", flush=True)
        os._exit(1)

    thread = threading.Thread(target=run, name="launcher-watch", daemon=True)
    thread.start()
    return thread
