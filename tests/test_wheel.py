"""`pip install .` without a clone: a built wheel in a fresh venv (from a folder outside the repository) has the
console commands, the packaged configs and the launcher, and runs the demo end to end.

The fresh venv reaches the already installed dependencies (torch, deepspeed, ...) through a .pth line naming this
venv's site-packages: nothing is downloaded, and reactdiff itself can only come from the wheel (the editable
install's finder lives in a .pth file there, which a .pth *line* does not run)."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
import sysconfig
import venv
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def wheel_env(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("wheel")
    # built from a copy: a build/ folder left in the checkout by an older build would ship files renamed since
    source = tmp / "source"
    shutil.copytree(REPO, source, symlinks=True, ignore=shutil.ignore_patterns(
        ".git", ".venv", "build", "dist", "runs", "shards", "*.egg-info", "__pycache__", ".pytest_cache"))
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w",
                    str(tmp / "dist"), str(source)], check=True, cwd=tmp)
    [whl] = (tmp / "dist").glob("reactdiff-*.whl")
    env_dir = tmp / "venv"
    venv.EnvBuilder(with_pip=False).create(env_dir)
    python = env_dir / "bin" / "python"
    site = Path(subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                               capture_output=True, text=True, check=True).stdout.strip())
    (site / "deps.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    subprocess.run([sys.executable, "-m", "pip", "--python", str(python), "install", "--no-deps", "-q", str(whl)],
                   check=True, cwd=tmp)
    work = tmp / "work"
    work.mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "VIRTUAL_ENV"))}
    env["PATH"] = f"{env_dir / 'bin'}:{env['PATH']}"
    return {"whl": whl, "bin": env_dir / "bin", "python": python, "work": work, "env": env}


def run(wheel_env, *cmd, timeout=900):
    return subprocess.run([str(c) for c in cmd], cwd=wheel_env["work"], env=wheel_env["env"], capture_output=True,
                          text=True, timeout=timeout)


def test_wheel_holds_the_configs_and_no_repository_paths(wheel_env):
    names = zipfile.ZipFile(wheel_env["whl"]).namelist()
    for config in ("demo", "paper", "quality", "data_react", "cluster/local", "cluster/local_executor"):
        assert f"reactdiff/configs/{config}.yaml" in names, config
    assert not any(n.startswith(("tests/", "tools/", "launch/")) for n in names)
    assert "reactdiff/data/frame_layout.py" in names and "reactdiff/data/faceverse.py" not in names
    where = run(wheel_env, wheel_env["python"], "-c", "import reactdiff, reactdiff.config as c; "
                "print(reactdiff.__file__); print(c.locate('demo'))")
    assert where.returncode == 0, where.stderr
    module, demo = where.stdout.split()
    assert str(REPO) not in module and Path(demo).is_file() and str(REPO) not in demo


def test_console_commands_from_the_wheel(wheel_env):
    bin_ = wheel_env["bin"]
    out = run(wheel_env, bin_ / "reactdiff", "--help")
    assert out.returncode == 0 and "launch" in out.stdout
    out = run(wheel_env, bin_ / "reactdiff", "config", "--config", "paper", "train.steps=3")
    assert out.returncode == 0 and "name: reactdiff-paper" in out.stdout and "steps: 3" in out.stdout, out.stderr
    out = run(wheel_env, bin_ / "reactdiff", "launch", "train", "--cluster", "cluster/local", "--config", "demo",
              "--dry-run")
    assert out.returncode == 0 and "[launch] train demo" in out.stdout, out.stderr
    out = run(wheel_env, bin_ / "reactdiff-make-shards", "--help")
    assert out.returncode == 0 and "deprecated name; use `reactdiff shards`" in out.stderr


def test_demo_from_the_wheel(wheel_env):
    out = run(wheel_env, wheel_env["bin"] / "reactdiff", "demo", "--sessions", "2,0,1", "--frames", "160",
              "--video-size", "16", "--batches", "4", "--quiet", "data.window=32", "data.history=16", "train.steps=4",
              "train.checkpoint_every=2", "train.log_every=2", "train.warmup_steps=2")
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    assert "[demo] 7/9 metrics" in out.stdout and "8/9 rendering" in out.stdout and "[demo] 9/9 live" in out.stdout
    assert (wheel_env["work"] / "runs" / "demo" / "render").is_dir()
