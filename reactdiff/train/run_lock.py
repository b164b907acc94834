"""One live run per run folder: `<run>/LOCK`, held by rank 0 of the running job, with a heartbeat.

The lock file names its holder (host, pid, SLURM job id) and the time of its last beat; rank 0 rewrites it every
`beat_s` seconds. A second launch into the folder fails fast naming the holder, unless the lock is

- its own job's (a requeued SLURM job takes over the lock of its previous attempt),
- held by a process on this host that no longer exists (a crashed run never blocks its own restart), or
- stale: no beat for `stale_s` (default 4 beats; the holder's node died or hangs), wherever it was taken.

Creating the file uses O_EXCL and every rewrite is a rename, both atomic on local disks and on the shared file
systems clusters use (NFSv3+, Lustre, GPFS). A holder whose lock was taken over (it hung past stale_s) sees a
foreign token at its next beat and stops before it writes another checkpoint.
"""
from __future__ import annotations

import json
import os
import socket
import threading
import time
import uuid
from pathlib import Path

from .. import atomic
from .launcher_watch import pid_alive

NAME = "LOCK"


class RunLocked(ValueError):
    """The run folder is in use by another live run."""


def _beat_s() -> float:
    return float(os.environ.get("REACTDIFF_LOCK_BEAT_S", "30"))


class RunLock:
    def __init__(self, run_dir: Path, beat_s: float | None = None, stale_s: float | None = None) -> None:
        self.path = Path(run_dir) / NAME
        self.beat_s = beat_s or _beat_s()
        self.stale_s = stale_s or 4 * self.beat_s
        self.me = {"host": socket.gethostname(), "pid": os.getpid(), "job": os.environ.get("SLURM_JOB_ID"),
                   "token": uuid.uuid4().hex, "started": time.time()}
        self.lost: dict | None = None  # the holder that took the lock from us
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def _read(self) -> dict | None:
        try:
            return json.loads(self.path.read_text())
        except FileNotFoundError:
            return None
        except (OSError, ValueError):  # half written by a non-atomic writer: judge it by its age
            return {"host": "?", "pid": -1, "job": None, "token": "?", "beat": self.path.stat().st_mtime}

    def _write(self) -> None:
        atomic.write_json(self.path, {**self.me, "beat": time.time()})

    def describe(self, holder: dict) -> str:
        age = time.time() - float(holder.get("beat", 0))
        job = f", SLURM job {holder['job']}" if holder.get("job") else ""
        return f"host {holder.get('host')} pid {holder.get('pid')}{job}, last heartbeat {age:.0f} s ago"

    def why_free(self, holder: dict) -> str | None:
        """Why `holder`'s lock may be taken over (None: it is live)."""
        if self.me["job"] and holder.get("job") == self.me["job"]:
            return "held by an earlier attempt of this job"
        if holder.get("host") == self.me["host"] and not pid_alive(int(holder.get("pid", -1))):
            return "its process is gone"
        if time.time() - float(holder.get("beat", 0)) > self.stale_s:
            return f"no heartbeat for more than {self.stale_s:.0f} s"
        return None

    def acquire(self) -> None:
        """Take the lock or raise RunLocked naming the holder; then beat from a daemon thread."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            with os.fdopen(fd, "w") as f:
                json.dump({**self.me, "beat": time.time()}, f)
        except FileExistsError:
            holder = self._read()
            reason = self.why_free(holder) if holder is not None else "it was just released"
            if reason is None:
                raise RunLocked(f"{self.path.parent} is in use by another run ({self.describe(holder)}). Wait for it "
                                f"to finish or stop it; if it is certainly gone, delete {self.path}") from None
            self._write()
            print(f"[train] took over {self.path} ({reason})", flush=True)
        time.sleep(min(0.2, self.beat_s / 10))  # two launches taking over at once: the last rename wins
        if (self._read() or {}).get("token") != self.me["token"]:
            raise RunLocked(f"{self.path.parent}: another launch took the lock at the same moment "
                            f"({self.describe(self._read() or {})})")
        self._thread = threading.Thread(target=self._beat, name="run-lock", daemon=True)
        self._thread.start()

    def _beat(self) -> None:
        while not self._stop.wait(self.beat_s):
            holder = self._read()
            if holder is None or holder.get("token") != self.me["token"]:
                self.lost = holder or {"host": "?", "pid": "?", "beat": time.time()}
                return
            self._write()

    def release(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        holder = self._read()
        if holder is not None and holder.get("token") == self.me["token"]:
            self.path.unlink(missing_ok=True)
