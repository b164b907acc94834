"""One live run per run folder: the lock's rules, and a second launch against a real training run."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import time

import pytest

from reactdiff.train.run_lock import NAME, RunLock, RunLocked
from test_train import base_args, launch, read_until


def plant(folder, **holder) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / NAME).write_text(json.dumps({"host": "other-node", "pid": 1, "job": None, "token": "theirs",
                                           "beat": time.time(), **holder}))


def test_a_live_holder_is_named_and_a_released_lock_is_free(tmp_path):
    first = RunLock(tmp_path, beat_s=0.2)
    first.acquire()
    with pytest.raises(RunLocked, match=rf"in use by another run \(host \S+ pid {os.getpid()}, last heartbeat"):
        RunLock(tmp_path, beat_s=0.2).acquire()
    time.sleep(0.5)
    assert json.loads((tmp_path / NAME).read_text())["beat"] > time.time() - 0.5  # it beats
    first.release()
    assert not (tmp_path / NAME).exists()
    second = RunLock(tmp_path, beat_s=0.2)
    second.acquire()
    second.release()


def test_takeover_rules(tmp_path, monkeypatch):
    sleeper = subprocess.Popen(["sleep", "60"])
    try:
        import socket

        here = socket.gethostname()
        plant(tmp_path, host=here, pid=sleeper.pid)  # a live process on this host
        with pytest.raises(RunLocked, match=f"pid {sleeper.pid}"):
            RunLock(tmp_path, beat_s=1).acquire()
        plant(tmp_path, host="other-node", pid=sleeper.pid)  # another host, beating: can't tell, so live
        with pytest.raises(RunLocked, match="host other-node"):
            RunLock(tmp_path, beat_s=1).acquire()
    finally:
        sleeper.kill()
        sleeper.wait()
    plant(tmp_path, host=here, pid=sleeper.pid)  # its process is gone
    lock = RunLock(tmp_path, beat_s=1)
    lock.acquire()
    lock.release()
    plant(tmp_path, host="other-node", beat=time.time() - 10)  # stale: 4 beats missed
    lock = RunLock(tmp_path, beat_s=1)
    lock.acquire()
    lock.release()
    monkeypatch.setenv("SLURM_JOB_ID", "4242")
    plant(tmp_path, host="other-node", job="4242")  # a requeued job takes over its own lock
    lock = RunLock(tmp_path, beat_s=1)
    lock.acquire()
    assert json.loads((tmp_path / NAME).read_text())["job"] == "4242"
    lock.release()


def test_a_holder_notices_that_it_lost_the_lock(tmp_path):
    lock = RunLock(tmp_path, beat_s=0.1)
    lock.acquire()
    plant(tmp_path, host="other-node")
    time.sleep(0.5)
    assert lock.lost is not None and lock.lost["host"] == "other-node"
    lock.release()
    assert (tmp_path / NAME).exists()  # not ours to delete


def test_second_launch_into_a_running_folder_fails_fast_and_a_killed_run_restarts(tiny_shards, tmp_path,
                                                                                   monkeypatch):
    import wandb

    monkeypatch.setenv("WANDB_SILENT", "true")
    here = wandb.init(mode="offline", dir=str(tmp_path), project="launcher")  # a wandb service in the launching
    assert "WANDB_SERVICE" in os.environ  # process: the runs below inherit its address and must not use it
    args = base_args(tiny_shards, tmp_path, "busy", "train.zero_stage=0", "train.steps=400",
                     "train.checkpoint_every=2")
    first = launch(args, nproc=1, wait=False)
    read_until(first, "step 3 ")
    t0 = time.time()
    second = launch(args, nproc=1)
    assert second.returncode == 2 and f"pid {first.pid}" in second.stderr, second.stderr[-2000:]
    assert time.time() - t0 < 90
    os.killpg(first.pid, signal.SIGKILL)
    first.wait()
    third = launch([*args, "train.steps=6"], nproc=1)  # the dead run's lock is no obstacle
    assert third.returncode == 0, third.stdout[-2000:]
    assert "took over" in third.stdout and "resumed" in third.stdout
    assert not (tmp_path / "busy" / NAME).exists()  # released at the end
    here.finish()
