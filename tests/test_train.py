"""DeepSpeed training on CPU with real engines: 2 processes over gloo, ZeRO 0-3, resume, preemption, exports."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from reactdiff.train.run_log import read_rows

REPO = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
STEPS = 8


def base_args(shards: Path, out: Path, name: str, *extra: str) -> list[str]:
    return ["--config", str(REPO / "configs/demo.yaml"), f"data.shards={shards}", f"train.out={out}", f"name={name}",
            "data.window=16", "data.history=8", "data.batch_size=4", "data.windows_per_clip=2", "data.num_workers=0",
            "model.size=tiny", f"train.steps={STEPS}", "train.log_every=1", "train.checkpoint_every=4",
            "train.lr=3e-3", "train.warmup_steps=0", "train.schedule=constant", "train.wandb=offline", *extra]


def launch(args: list[str], nproc: int, env_extra: dict | None = None, wait: bool = True):
    out = next((a.split("=", 1)[1] for a in args if a.startswith("train.out=")), "")
    env = {**os.environ, "OMP_NUM_THREADS": "1", "WANDB_SILENT": "true", "REACTDIFF_TEST_RUN": out,
           **(env_extra or {})}
    if nproc == 1:
        cmd = [sys.executable, "-m", "reactdiff.train", *args]
    else:
        cmd = [str(BIN / "torchrun"), "--nnodes", "1", "--nproc_per_node", str(nproc), "--rdzv_backend", "c10d",
               "--rdzv_endpoint", "127.0.0.1:0", "-m", "reactdiff.train", *args]
    if not wait:
        return subprocess.Popen(cmd, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                start_new_session=True)
    return subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=600)


def read_until(proc: subprocess.Popen, prefix: str, lines: list[str] | None = None, timeout: float = 300) -> list:
    """Read a launched run's output up to the first line starting with `prefix` (into `lines`)."""
    lines = [] if lines is None else lines
    deadline = time.time() + timeout
    for line in proc.stdout:
        lines.append(line)
        if line.startswith(prefix):
            return lines
        assert time.time() < deadline, "".join(lines)[-3000:]
    raise AssertionError(f"never saw {prefix!r}:\n" + "".join(lines)[-3000:])


def losses(run: Path) -> dict[int, float]:
    return {r["step"]: r["loss"] for r in read_rows(run / "metrics.jsonl")}


@pytest.fixture(scope="module")
def runs(tiny_shards, tmp_path_factory):
    """ZeRO 0, 1, 2 and 3, each 2 ranks over gloo, 8 steps from the same seed."""
    out = tmp_path_factory.mktemp("runs")
    done = {}
    for stage in (0, 1, 2, 3):
        res = launch(base_args(tiny_shards, out, f"zero{stage}", f"train.zero_stage={stage}"), nproc=2)
        assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
        done[stage] = out / f"zero{stage}"
    return done


def probe_loss(model, batch) -> float:
    """The training loss on a fixed batch at 8 fixed noise draws (the per-step loss is too noisy to compare)."""
    with torch.no_grad():
        return float(np.mean([model.training_loss(batch, 8, torch.Generator().manual_seed(s))["loss"].item()
                              for s in range(8)]))


def initial_probe(run: Path):
    """A fixed batch of the run's data and the probe loss of the run's initial weights."""
    from reactdiff import config
    from reactdiff.data.reader import BatchStream
    from reactdiff.model.export import build_model
    from reactdiff.data.normalise import FaceStats

    cfg = config.load(run / "config.yaml", ["data.batch_size=8"])
    stream = BatchStream(cfg.data)
    batch = next(iter(stream))
    torch.manual_seed(cfg.seed)  # the trainer's initial weights
    initial = build_model(cfg, FaceStats.from_normaliser(stream.dataset.normaliser))
    return batch, probe_loss(initial, batch)


@pytest.fixture(scope="module")
def probe(runs):
    return initial_probe(runs[0])


@pytest.mark.parametrize("stage", [0, 1, 2, 3])
def test_every_zero_stage_trains_and_the_loss_falls(runs, probe, stage):
    from reactdiff.model.export import load_export

    run = runs[stage]
    assert sorted(losses(run)) == list(range(1, STEPS + 1))
    batch, before = probe
    after = probe_loss(load_export(run / "export")[0], batch)  # the EMA weights (gathered under ZeRO-3)
    assert after < 0.95 * before, (before, after)
    assert (run / "loss.png").is_file() and (run / "config.yaml").is_file()
    assert json.loads((run / "deepspeed.json").read_text())["zero_optimization"]["stage"] == stage
    assert all((run / f"checkpoints/step0000000{s}/COMPLETE").is_file() for s in (4, 8))
    assert list((run / "wandb").glob("offline-run-*"))  # wandb ran, offline


@pytest.mark.parametrize("stage", [1, 2, 3])
def test_sharded_stages_follow_the_zero0_trajectory(runs, stage):
    ref, got = losses(runs[0]), losses(runs[stage])
    np.testing.assert_allclose([got[s] for s in sorted(got)], [ref[s] for s in sorted(ref)], rtol=2e-3)


def test_export_holds_ema_weights_and_samples(runs, tiny_shards, tmp_path):
    from reactdiff.model.export import load_export
    from reactdiff.sampling.cli import main as sample_main

    model, cfg, meta = load_export(runs[2] / "export")
    assert meta["weights"] == "ema" and cfg.model.size.value == "tiny"
    raw = torch.load(runs[2] / "checkpoints/step00000008/mp_rank_00_model_states.pt", weights_only=False)["module"]
    ema = model.state_dict()
    name = "denoiser.net.inp.weight"
    assert not torch.equal(ema[name], raw[f"model.{name}"])  # an average, not the last weights
    assert sample_main(["--export", str(runs[2] / "export"), "--shards", str(tiny_shards), "--out", str(tmp_path / "s"),
                        "--quiet", "--limit", "2", "data.eval_frames=120", "sample.k=2", "sample.steps=2"]) == 0


def test_export_command_from_any_checkpoint(runs, tmp_path):
    from reactdiff.cli import main as cli_main
    from reactdiff.model.export import load_export

    assert cli_main(["export", "--run", str(runs[3]), "--step", "4", "--out", str(tmp_path / "e4")]) == 0
    model4, _, meta = load_export(tmp_path / "e4")
    assert meta["weights"] == "ema@step00000004"
    final, _, _ = load_export(runs[3] / "export")
    name = "denoiser.net.inp.weight"
    assert not torch.equal(model4.state_dict()[name], final.state_dict()[name])
    assert cli_main(["export", "--run", str(runs[3]), "--out", str(tmp_path / "e8")]) == 0
    last, _, _ = load_export(tmp_path / "e8")
    for k, v in final.state_dict().items():  # the latest checkpoint's EMA == what training exported at the end
        assert torch.equal(v, last.state_dict()[k]), k
    assert cli_main(["export", "--run", str(runs[3]), "--step", "5"]) == 2


@pytest.mark.parametrize("stage", [2, 3])
def test_zero_to_fp32_converts_our_checkpoints(runs, stage, tmp_path):
    from reactdiff.model.export import build_model
    from reactdiff import config
    from reactdiff.train.loop import TrainStep

    run = runs[stage]
    res = subprocess.run([sys.executable, "-m", "deepspeed.utils.zero_to_fp32", str(run / "checkpoints"),
                          str(tmp_path / "fp32"), "--safe_serialization"], capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr[-2000:]
    from safetensors.torch import load_file

    state = {}
    for f in sorted((tmp_path / "fp32").glob("*.safetensors")):
        state.update(load_file(str(f)))
    cfg = config.load(run / "config.yaml")
    wrapper = TrainStep(build_model(cfg), history=8)
    buffers = {k: v for k, v in wrapper.state_dict().items() if k not in state}
    wrapper.load_state_dict({**state, **buffers}, strict=True)
    # the same weights as the ZeRO-0 run's final module state (identical trajectories up to reduction order)
    ref = torch.load(runs[0] / "checkpoints/step00000008/mp_rank_00_model_states.pt", weights_only=False)["module"]
    for k, v in state.items():
        torch.testing.assert_close(v.float(), ref[k].float(), rtol=1e-3, atol=1e-4)


def test_resume_is_bit_exact(tiny_shards, tmp_path, runs):
    args = base_args(tiny_shards, tmp_path, "resumed", "train.zero_stage=0")
    first = launch([a if a != f"train.steps={STEPS}" else "train.steps=4" for a in args], nproc=2)
    assert first.returncode == 0, first.stdout[-2000:]
    second = launch(args, nproc=2)
    assert second.returncode == 0, second.stdout[-2000:]
    assert "resumed" in second.stdout and "at step 4" in second.stdout
    assert losses(tmp_path / "resumed") == losses(runs[0])  # exactly the straight run's losses
    wandb_runs = {p.name.rsplit("-", 1)[1] for p in (tmp_path / "resumed/wandb").glob("offline-run-*")}
    assert len(wandb_runs) == 1  # the same wandb run id across the resume


def test_sigusr2_checkpoints_and_exits_for_requeue(tiny_shards, tmp_path, runs):
    args = base_args(tiny_shards, tmp_path, "preempted", "train.checkpoint_every=0", "train.steps=400")
    proc = launch(args, nproc=1, wait=False)
    lines = []
    for line in proc.stdout:
        lines.append(line)
        if line.startswith("step 2 "):
            os.kill(proc.pid, signal.SIGUSR2)
    assert proc.wait(timeout=300) == 75, "".join(lines)[-2000:]
    ckpts = sorted(p.name for p in (tmp_path / "preempted/checkpoints").glob("step*") if (p / "COMPLETE").is_file())
    assert len(ckpts) == 1 and int(ckpts[0][4:]) >= 2
    assert not (tmp_path / "preempted/export").exists()


def test_kill_9_mid_run_leaves_a_usable_checkpoint(tiny_shards, tmp_path, runs):
    args = base_args(tiny_shards, tmp_path, "killed", "train.checkpoint_every=1", "train.zero_stage=0")
    proc = launch(args, nproc=2, wait=False)
    ckpts = tmp_path / "killed/checkpoints"
    deadline = time.time() + 300
    while time.time() < deadline and proc.poll() is None:
        if ckpts.is_dir() and any((p / "COMPLETE").is_file() for p in ckpts.glob("step*")):
            break
        time.sleep(0.01)
    os.killpg(proc.pid, signal.SIGKILL)  # torchrun and both ranks, wherever they are (maybe inside a save)
    proc.wait()
    res = launch(args, nproc=2)
    assert res.returncode == 0, res.stdout[-2000:]
    got, ref = losses(tmp_path / "killed"), losses(runs[0])
    assert got == ref  # steps logged twice (before the kill and after the resume) agree too


def test_kill_9_of_one_rank_mid_step_loses_nothing(tiny_shards, tmp_path, runs):
    args = base_args(tiny_shards, tmp_path, "one", "train.checkpoint_every=2", "train.zero_stage=0")
    proc = launch(args, nproc=2, wait=False)
    read_until(proc, "step 3 ")
    rank1 = [int(p.name) for p in Path("/proc").iterdir() if p.name.isdigit() and _env_has(p, b"LOCAL_RANK=1")
             and _env_has(p, f"REACTDIFF_TEST_RUN={tmp_path}".encode())]
    assert len(rank1) == 1, rank1
    os.kill(rank1[0], signal.SIGKILL)  # one rank dies mid-step: torchrun stops the other
    rest = proc.stdout.read()
    assert proc.wait(timeout=300) != 0, rest[-2000:]
    res = launch(args, nproc=2)
    assert res.returncode == 0 and "resumed" in res.stdout, res.stdout[-2000:]
    assert losses(tmp_path / "one") == losses(runs[0])  # the straight run's losses, exactly


def _env_has(proc: Path, entry: bytes) -> bool:
    try:
        return entry in (proc / "environ").read_bytes().split(b"\0")
    except OSError:
        return False


def test_wrong_config_fails_fast(tiny_shards, tmp_path):
    t0 = time.time()
    res = launch(base_args(tiny_shards, tmp_path, "bad", "train.zero_stage=5"), nproc=1)
    assert res.returncode == 2 and "train.zero_stage" in res.stderr
    res = launch(base_args(tiny_shards, tmp_path, "bad", "train.precision=bf16"), nproc=1)
    assert res.returncode == 2 and "needs a GPU" in res.stderr
    res = launch(base_args(tiny_shards, tmp_path, "bad", "train.stpes=3"), nproc=1)
    assert res.returncode == 2 and "train.stpes" in res.stderr
    assert time.time() - t0 < 120


_BF16_ON_CPU = """
import sys
import reactdiff.train.loop as loop
loop.resolve_precision = lambda requested, device_type: "bf16"  # the trainer refuses half precision on CPU (slow)
from reactdiff.train import cli
sys.exit(cli.main(sys.argv[1:]))
"""


def test_bf16_engine_path_on_cpu(tiny_shards, tmp_path):
    """DeepSpeed's bf16 engine (parameters cast, buffers and batches left in fp32) through the real trainer; on CPU,
    which the trainer otherwise refuses, so that a dtype slip fails here and not first on a GPU."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "WANDB_SILENT": "true"}
    args = base_args(tiny_shards, tmp_path, "bf16", "train.zero_stage=2", "train.wandb=disabled")
    res = subprocess.run([sys.executable, "-c", _BF16_ON_CPU, *args], cwd=REPO, env=env, capture_output=True,
                         text=True, timeout=600)
    assert res.returncode == 0, res.stdout[-2000:] + res.stderr[-3000:]
    assert "ZeRO 2, bf16" in res.stdout
    assert set(losses(tmp_path / "bf16")) == set(range(1, STEPS + 1))
    assert (tmp_path / "bf16" / "export").is_dir()


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_gpu_bf16_zero2(tiny_shards, tmp_path):
    from reactdiff.model.export import load_export

    res = launch(base_args(tiny_shards, tmp_path, "gpu", "train.zero_stage=2", "train.precision=bf16",
                           "train.steps=24", "train.log_every=4", "train.checkpoint_every=0"), nproc=1)
    assert res.returncode == 0, res.stdout[-3000:]
    print(res.stdout[-2000:])  # the step log with MFU, shown by pytest -rP
    assert "ZeRO 2, bf16" in res.stdout and "MFU" in res.stdout
    batch, before = initial_probe(tmp_path / "gpu")
    after = probe_loss(load_export(tmp_path / "gpu" / "export")[0], batch)  # fp32 EMA weights, on the CPU
    assert after < 0.95 * before, (before, after)


def test_compiled_training_follows_eager(tiny_shards, tmp_path):
    """torch.compile of the U-Net (train.compile) inside the DeepSpeed engine: the same losses as eager, 2 ranks."""
    got = {}
    for name, extra in (("eager", []), ("compiled", ["train.compile=true"])):
        res = launch(base_args(tiny_shards, tmp_path, name, "train.zero_stage=2", "train.steps=20",
                               "train.checkpoint_every=0", *extra), nproc=2)
        assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
        got[name] = losses(tmp_path / name)
    assert sorted(got["eager"]) == list(range(1, 21))
    for step, eager in got["eager"].items():
        assert got["compiled"][step] == pytest.approx(eager, rel=2e-3), step
    res = launch(base_args(tiny_shards, tmp_path, "z3", "train.zero_stage=3", "train.compile=true"), nproc=1)
    assert res.returncode == 2 and "train.compile=true with train.zero_stage=3" in res.stderr
