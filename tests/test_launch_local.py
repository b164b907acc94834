"""launch/local.sh with both launchers: the trainer's exit code, requeue on preemption, no orphaned workers."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from test_train import BIN, REPO, base_args, losses, read_until

pytestmark = pytest.mark.skipif(not Path("/proc").is_dir(), reason="needs Linux /proc to find the workers")


def start(cmd: list[str]) -> subprocess.Popen:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "WANDB_SILENT": "true", "REACTDIFF_PYTHON": sys.executable}
    return subprocess.Popen(cmd, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            start_new_session=True)


def local_sh(args: list[str], launcher: str, *opts: str) -> subprocess.Popen:
    return start(["bash", "launch/local.sh", "-n", "2", "-l", launcher, *opts, "--", *args])


def trainers(marker: str) -> list[int]:
    """PIDs of the reactdiff.train processes whose environment holds `marker` (e.g. REACTDIFF_WATCH_PID=123)."""
    found = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            cmd = (proc / "cmdline").read_bytes()
            env = (proc / "environ").read_bytes().split(b"\0")
        except OSError:
            continue
        if b"reactdiff.train" in cmd and b"--config" in cmd and marker.encode() in env:
            if (proc / "stat").read_text().rsplit(")", 1)[1].split()[0] != "Z":
                found.append(int(proc.name))
    return found


def workers(marker: str) -> list[int]:
    """The training processes themselves (not the launchers), found by the rank their launcher gave them."""
    return [p for p in trainers(marker) if b"LOCAL_RANK=" in Path(f"/proc/{p}/environ").read_bytes()
            and b"-m\0reactdiff.train" in Path(f"/proc/{p}/cmdline").read_bytes()
            and Path(f"/proc/{p}/cmdline").read_bytes().split(b"\0")[0].endswith(b"python")]


def gone_within(marker: str, seconds: float) -> bool:
    deadline = time.time() + seconds
    while time.time() < deadline:
        if not trainers(marker):
            return True
        time.sleep(0.5)
    return False


def args_for(shards: Path, out: Path, name: str, steps: int) -> list[str]:
    return [*base_args(shards, out, name, "train.zero_stage=0", "train.checkpoint_every=0", "train.sync_every=1"),
            f"train.steps={steps}"]


@pytest.mark.parametrize("launcher", ["torchrun", "deepspeed"])
def test_preempted_workers_exit_75_through_either_launcher_and_retry(tiny_shards, tmp_path, launcher):
    proc = local_sh(args_for(tiny_shards, tmp_path, "pre", 12), launcher, "--retries", "1")
    lines: list[str] = []
    read_until(proc, "step 2 ", lines)
    pids = workers(f"REACTDIFF_WATCH_PID={proc.pid}")
    assert len(pids) == 2, pids
    for pid in pids:  # as SLURM or a node agent would: the workers, not the launcher
        os.kill(pid, signal.SIGUSR2)
    out = "".join(lines) + proc.stdout.read()
    assert proc.wait(timeout=300) == 0, out[-3000:]
    assert "preempted (exit 75, checkpoint saved): run 2 of up to 2" in out
    assert "resumed" in out and sorted(losses(tmp_path / "pre")) == list(range(1, 13))


def test_without_retries_the_shell_gets_75(tiny_shards, tmp_path):
    proc = local_sh(args_for(tiny_shards, tmp_path, "pre", 400), "torchrun")
    lines: list[str] = []
    read_until(proc, "step 2 ", lines)
    proc.send_signal(signal.SIGUSR2)  # to the shell: forwarded to every worker, and no rerun
    out = "".join(lines) + proc.stdout.read()
    assert proc.wait(timeout=300) == 75, out[-3000:]
    assert list((tmp_path / "pre/checkpoints").glob("step*/COMPLETE"))


@pytest.mark.parametrize("victim", ["launcher", "shell"])
def test_killing_the_launcher_or_the_shell_leaves_no_worker_running(tiny_shards, tmp_path, victim):
    proc = local_sh(args_for(tiny_shards, tmp_path, "k", 400), "deepspeed")
    lines: list[str] = []
    read_until(proc, "step 2 ", lines)
    marker = f"REACTDIFF_WATCH_PID={proc.pid}"
    if victim == "launcher":  # the `deepspeed` runner: the shell's child, leader of the workers' process group
        launcher = next(p for p in trainers(marker) if Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()[1]
                        == str(proc.pid))
        os.kill(launcher, signal.SIGKILL)
    else:
        os.kill(proc.pid, signal.SIGKILL)
    assert gone_within(marker, 120), [Path(f"/proc/{p}/cmdline").read_bytes()[:200] for p in trainers(marker)]
    out = "".join(lines) + (proc.stdout.read() if victim == "launcher" else "")
    assert list((tmp_path / "k/checkpoints").glob("step*/COMPLETE")), out[-3000:]  # saved on the way out
    proc.wait(timeout=60)


def test_killing_a_bare_deepspeed_launcher_stops_its_workers(tiny_shards, tmp_path):
    marker = f"REACTDIFF_TEST_RUN={tmp_path.name}"
    env_cmd = ["env", marker, str(BIN / "deepspeed"), "--num_accelerators", "2", "--master_port", "29733",
               "--no_local_rank", "--module", "reactdiff.train", *args_for(tiny_shards, tmp_path, "bare", 400)]
    proc = start(env_cmd)
    lines: list[str] = []
    read_until(proc, "step 2 ", lines)
    os.kill(proc.pid, signal.SIGKILL)  # the runner; deepspeed.launcher.launch and the workers live on
    assert gone_within(marker, 120), "workers outlived their launcher"
