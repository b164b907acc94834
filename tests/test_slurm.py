"""launch/slurm.py against a real SLURM cluster (tools/slurm_local.sh: 2 simulated nodes; .ci/run starts it)."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
from reactdiff.cluster import launch_cli as launcher  # noqa: E402
from conftest import sample_random_init  # noqa: E402

CLUSTER = REPO / "configs/cluster/local.yaml"
FRAMES = 120


def cluster_up() -> bool:
    if not os.environ.get("SLURM_CONF") or not shutil.which("sinfo"):
        return False
    return subprocess.run(["sinfo", "-h"], capture_output=True).returncode == 0


needs_slurm = pytest.mark.skipif(not cluster_up(), reason="no SLURM cluster (bash tools/slurm_local.sh up; "
                                                        "eval \"$(bash tools/slurm_local.sh env)\")")


def train_args(shards, out, name, *extra):
    return ["train", "--cluster", str(CLUSTER), "--config", str(REPO / "configs/demo.yaml"), f"data.shards={shards}",
            f"train.out={out}", f"name={name}", "data.window=16", "data.history=8", "data.batch_size=4",
            "data.windows_per_clip=2", "data.num_workers=0", "model.size=tiny", "train.warmup_steps=0",
            "train.schedule=constant", "train.wandb=disabled", "train.zero_stage=0", *extra]


def submit(argv):
    args = launcher.parse(argv)
    from reactdiff import config

    return launcher.submit_train(args, config.load(CLUSTER, schema=config.ClusterConfig)) if args.what == "train" \
        else launcher.submit_eval(args, config.load(CLUSTER, schema=config.ClusterConfig))


def test_dry_run_submits_nothing(tiny_shards, tmp_path, capsys):
    assert launcher.main(train_args(tiny_shards, tmp_path, "dry", "--dry-run", "train.steps=3")) == 0
    out = capsys.readouterr().out
    assert "2 node(s) x 1 task(s) = 2 ranks on slurm" in out and "slurm_partition': 'debug'" in out
    assert "steps: 3" in out and not (tmp_path / "dry").exists()
    assert launcher.main(["train", "--cluster", str(tmp_path / "none.yaml"), "--dry-run"]) == 2


def test_render_grid_dry_run_plans_one_video_per_row(tiny_shards, tmp_path, capsys):
    samples = sample_random_init(tiny_shards, tmp_path / "samples", 30, k=2, window=16)
    argv = ["render", "--cluster", str(CLUSTER), "--samples", str(samples), "--faceverse", "fv.npy", "--out",
            str(tmp_path / "render"), "--rows", "0,1,2", "--grid", "--dry-run"]
    assert launcher.main([*argv, "--shards", str(tiny_shards)]) == 0
    assert "render: 3 videos in 1 tasks" in capsys.readouterr().out
    assert launcher.main(argv) == 2 and "--grid needs --shards" in capsys.readouterr().err


@needs_slurm
def test_two_node_training_ranks_agree(tiny_shards, tmp_path):
    (job,) = submit(train_args(tiny_shards, tmp_path, "two", "train.steps=4", "train.log_every=1"))
    results = job.results()
    assert sorted(r["rank"] for r in results) == [0, 1] and {r["world_size"] for r in results} == {2}
    assert all(r["exit"] == 0 for r in results)
    rows = [json.loads(line) for line in (tmp_path / "two/metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == [1, 2, 3, 4]
    assert (tmp_path / "two/export/model.safetensors").is_file()
    # the cluster hands out one node next time: the run continues on it, the global batch kept
    (job,) = submit([*train_args(tiny_shards, tmp_path, "two", "train.steps=6", "train.log_every=1"), "--nodes", "1"])
    assert [r["exit"] for r in job.results()] == [0]
    log = "".join(p.read_text() for p in (tmp_path / "two/submitit").glob(f"{job.job_id}/*_log.out"))
    assert "at step 4" in log and "from 2 rank(s) ZeRO 0 to 1 rank(s) ZeRO 0, 8 windows/step (was 8)" in log
    rows = [json.loads(line) for line in (tmp_path / "two/metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == [1, 2, 3, 4, 5, 6]


@needs_slurm
def test_preemption_requeues_and_resumes(tiny_shards, tmp_path):
    (job,) = submit(train_args(tiny_shards, tmp_path, "pre", "train.steps=60", "train.log_every=1",
                               "train.checkpoint_every=0"))
    deadline = time.time() + 180
    metrics = tmp_path / "pre/metrics.jsonl"
    while time.time() < deadline and not (metrics.is_file() and len(metrics.read_text().splitlines()) >= 3):
        time.sleep(0.5)
    job._interrupt()  # SIGTERM + SIGUSR2 to the job, as a preemption does
    results = job.results()
    assert all(r["exit"] == 0 for r in results)
    log = "".join(p.read_text() for p in (tmp_path / "pre/submitit").glob("*/*_0_log.out"))
    assert "preempted: checkpoint at step" in log and "resumed" in log
    at = int(log.split("preempted: checkpoint at step ")[1].split()[0])
    assert f"at step {at} " in log
    steps = [json.loads(line)["step"] for line in metrics.read_text().splitlines()]
    assert steps[-1] == 60 and max(steps) == 60 and at < 60


def _export(tmp_path, shards):
    from reactdiff import config
    from reactdiff.model.export import build_model, save_export

    cfg = config.load(REPO / "configs/demo.yaml", ["model.size=tiny", "data.history=8", f"data.shards={shards}"])
    import torch

    torch.manual_seed(0)
    return save_export(tmp_path / "export", build_model(cfg).eval(), cfg, kind="test")


EVAL_OVERRIDES = [f"data.eval_frames={FRAMES}", "sample.window=32", "sample.steps=2", "sample.k=2"]


def shards_and_export(tiny_react, tmp_path, samples_per_shard: int):
    from reactdiff.data.make_shards import make_shards

    shards = tmp_path / "shards"
    make_shards(tiny_react, "train", shards, samples_per_shard=samples_per_shard, audio_features="logmel",
                progress=False)
    return shards, _export(tmp_path, shards)


def submit_eval(export, shards, out, tasks: int, overrides) -> list:
    return submit(["eval", "--cluster", str(CLUSTER), "--export", str(export), "--shards", str(shards), "--out",
                   str(out), "--tasks", str(tasks), "--no-baselines", *overrides])


def one_process_metrics(export, shards, out, overrides) -> dict:
    """The same reactions made and scored by one process: what a fan-out must equal."""
    from reactdiff.eval.evaluate import evaluate
    from reactdiff.sampling.cli import main as sample_main

    assert sample_main(["--export", str(export), "--shards", str(shards), "--out", str(out), "--quiet",
                        *overrides]) == 0
    return evaluate(out, shards, with_baselines=False)["results"]["model"]


@needs_slurm
def test_eval_fan_out_matches_one_process_and_reruns_only_missing(tiny_react, tmp_path):
    from reactdiff.sampling.writer import reaction_path

    shards, export = shards_and_export(tiny_react, tmp_path, samples_per_shard=1)
    out = tmp_path / "fan"
    jobs = submit_eval(export, shards, out, 4, EVAL_OVERRIDES)
    assert len(jobs) == 5
    fan = jobs[-1].result()["metrics"]
    single = one_process_metrics(export, shards, tmp_path / "one", EVAL_OVERRIDES)
    for m in ("FRCorr", "FRDist", "FRDiv", "FRDvs", "FRVar", "FRSyn"):
        assert fan[m] == pytest.approx(single[m], rel=1e-9)
    report = json.loads((out / "metrics.json").read_text())
    assert report["rows"] == 12 and (out / "report.md").is_file()
    # lose task 2's rows: a rerun submits that task only, then aggregates again
    for r in (3, 9):  # task 2 of 4 holds dyadic sample 3 (row 3 and its mirror 9)
        reaction_path(out, r).unlink()
    from reactdiff.data.shard_index import ShardIndex

    assert launcher.missing_tasks(out, ShardIndex.open(shards), 4) == [2]
    jobs = submit_eval(export, shards, out, 4, EVAL_OVERRIDES)
    assert len(jobs) == 2
    assert jobs[-1].result()["metrics"]["FRDist"] == pytest.approx(fan["FRDist"], rel=1e-9)


@needs_slurm
def test_a_preempted_eval_task_is_requeued_and_resumes_from_its_rows(tiny_react, tmp_path):
    shards, export = shards_and_export(tiny_react, tmp_path, samples_per_shard=3)
    out = tmp_path / "pre"
    slow = [f"data.eval_frames={FRAMES}", "sample.window=32", "sample.steps=40", "sample.k=2", "sample.batch_size=1"]
    jobs = submit_eval(export, shards, out, 2, slow)
    deadline = time.time() + 300
    while time.time() < deadline and not list((out / "reactions").glob("*.npy")):
        time.sleep(0.1)
    assert list((out / "reactions").glob("*.npy")), "task 0 wrote nothing"
    written_before = {p.name: p.stat().st_mtime_ns for p in (out / "reactions").glob("*.npy")}
    jobs[0]._interrupt()  # SIGTERM + SIGUSR2, as a preemption: submitit requeues the task
    fan = jobs[-1].result()["metrics"]
    log0 = "".join(p.read_text() for p in (out / "submitit").glob(f"{jobs[0].job_id}/*_log.out"))
    assert "Requeued job" in log0 and log0.count("Starting with JobEnvironment") == 2, log0[-3000:]
    for name, mtime in written_before.items():  # rows written before the preemption were kept, not redone
        assert (out / "reactions" / name).stat().st_mtime_ns == mtime, name
    agg = "".join(p.read_text() for p in (out / "submitit").glob(f"{jobs[-1].job_id}/*_log.out"))
    assert agg.count("Starting with JobEnvironment") == 1  # the aggregation ran once, after every task
    single = one_process_metrics(export, shards, tmp_path / "one", slow)
    for m in ("FRCorr", "FRDist", "FRDiv", "FRVar", "FRSyn"):
        assert fan[m] == pytest.approx(single[m], rel=1e-9), m


@needs_slurm
def test_a_failing_task_surfaces_a_clear_error(tiny_react, tiny_shards, tmp_path):
    import submitit

    export = _export(tmp_path, tiny_shards)
    jobs = submit(["eval", "--cluster", str(CLUSTER), "--export", str(export), "--shards", str(tiny_shards),
                   "--out", str(tmp_path / "bad"), "--tasks", "2", "--no-baselines", "model.size=small",
                   *EVAL_OVERRIDES])
    # the task calls the library, so the job's error is the reason itself (it was "sample exited with 2, see the log")
    with pytest.raises(submitit.core.utils.FailedJobError, match="does not fit model.size=small"):
        jobs[0].result()
    with pytest.raises(submitit.core.utils.UncompletedJobError):
        jobs[-1].result()  # the aggregation never runs on a failed array


@needs_slurm
def test_bench_cluster_prints_efficiency(capsys):
    from reactdiff.cli import main as cli_main

    assert cli_main(["bench", "cluster", "--sessions", "1", "--size", "tiny", "--k", "2", "--steps", "2"]) == 0
    out = capsys.readouterr().out
    assert "efficiency" in out and "1.00x" in out


@needs_slurm
def test_render_fan_out_and_rerun_of_missing_videos(tiny_shards, tmp_path):
    from reactdiff import config
    from reactdiff.render.synthetic_model import write_model
    samples = tmp_path / "samples"
    sample_random_init(tiny_shards, samples, 30, k=2, window=16)
    model = write_model(tmp_path / "fv.npy", rings=10, segments=12)
    out = tmp_path / "render"
    argv = ["render", "--cluster", str(CLUSTER), "--samples", str(samples), "--faceverse", str(model), "--out",
            str(out), "--shards", str(tiny_shards), "--ground-truth", "--rows", "0,1", "--size", "16", "--tasks", "2"]
    cluster = config.load(CLUSTER, schema=config.ClusterConfig)
    jobs = launcher.submit_render(launcher.parse(argv), cluster)
    assert len(jobs) == 3 and jobs[-1].result()["videos"] == 6
    doc = json.loads((out / "render.json").read_text())
    assert sorted(v["video"] for v in doc["videos"]) == sorted(str(p.relative_to(out)) for p in out.rglob("*.mp4"))
    (out / "00001/k0.mp4").unlink()  # video 3 of the plan (0-based): task 1 of 2 only
    jobs = launcher.submit_render(launcher.parse(argv), cluster)
    assert len(jobs) == 2 and jobs[-1].result()["videos"] == 6 and (out / "00001/k0.mp4").is_file()
