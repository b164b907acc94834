"""`reactdiff launch sweep`: the grid's points, the folder's plan checks, a 2 x 2 sweep on submitit's local executor
(trains 4 runs, evaluates each on the validation shards, tabulates, tests the best; a rerun redoes only what is
missing) and the same sweep on the real local SLURM cluster (a job array of trainings, afterok evaluation fan-outs;
a point whose job is killed is the only one a rerun redoes, and one still queued is not submitted twice)."""
from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path

import pytest

from reactdiff.cluster import launch_cli as launcher
from reactdiff.cluster.sweep_plan import SweepError, check_plan, load_file, make_points, parse_grid
from reactdiff.data.make_shards import make_shards

from conftest import make_react
from test_slurm import needs_slurm

REPO = Path(__file__).resolve().parent.parent
LOCAL = REPO / "configs/cluster/local_executor.yaml"


def test_grid_points_are_typed_named_and_multiplied(tmp_path):
    axes = parse_grid(["train.lr=1e-3,3e-4", "model.size=tiny,small"])
    points = make_points(axes, seeds=2)
    assert len(points) == 8 and len({p.name for p in points}) == 8
    assert points[0].settings == (("train.lr", 0.001), ("model.size", "tiny"), ("seed", 0))
    assert points[0].overrides == ["train.lr=0.001", "model.size=tiny", "seed=0", "data.seed=0", "sample.seed=0"]
    assert make_points(parse_grid(["train.lr=1e-3,3e-4", "model.size=tiny,small"]), 2)[3].name == points[3].name
    swapped = make_points(parse_grid(["model.size=tiny,small", "train.lr=1e-3,3e-4"]), 2)
    assert {p.name for p in swapped} == {p.name for p in points}  # the axes' order does not rename the points
    (tmp_path / "s.yaml").write_text("grid:\n  train.lr: [1e-3, 0.0003]\nzip:\n  - {data.window: [32, 64], "
                                     "data.history: [16, 32]}\nseeds: 3\n")
    axes, seeds = load_file(tmp_path / "s.yaml")
    points = make_points(axes, seeds)
    assert len(points) == 2 * 2 * 3
    assert dict(points[0].settings) == {"train.lr": 0.001, "data.window": 32, "data.history": 16, "seed": 0}
    for bad, msg in [(["train.lr"], "key=v1,v2"), (["train.lr=1,1"], "twice")]:
        with pytest.raises(SweepError, match=msg):
            parse_grid(bad)
    with pytest.raises(SweepError, match="swept twice"):
        make_points(parse_grid(["seed=1,2"]), 2)
    (tmp_path / "z.yaml").write_text("zip:\n  - {data.window: [32, 64], data.history: [16]}\n")
    with pytest.raises(SweepError, match="same length"):
        load_file(tmp_path / "z.yaml")


def test_a_changed_grid_is_refused_unless_extended(tmp_path):
    base = {"config": "demo", "overrides": []}
    old = make_points(parse_grid(["train.lr=1e-3,3e-4"]), None)
    (tmp_path / "sweep.json").write_text(json.dumps({"plan": {"base": base, "points": [p.describe() for p in old]}}))
    assert check_plan(tmp_path, old, base, extend=False) == old
    new = make_points(parse_grid(["train.lr=1e-4"]), None)
    with pytest.raises(SweepError, match="--extend"):
        check_plan(tmp_path, new, base, extend=False)
    assert {p.name for p in check_plan(tmp_path, new, base, extend=True)} == {p.name for p in old + new}
    with pytest.raises(SweepError, match="another base"):
        check_plan(tmp_path, old, {"config": "paper", "overrides": []}, extend=False)


@pytest.fixture(scope="module")
def sweep_shards(tmp_path_factory):
    root = make_react(tmp_path_factory.mktemp("sweep") / "react", train=2, val=1, test=1)
    for split in ("train", "val", "test"):
        make_shards(root, split, root.parent / "shards" / split, samples_per_shard=2, audio_features="logmel",
                    progress=False)
    return root.parent / "shards"


def sweep_args(shards: Path, out: Path, *extra, cluster: Path | None = None, grid: str = "train.lr=1e-3,3e-4"):
    one_rank = out / "local_1.yaml"  # submitit's local executor, one training process per point (faster)
    one_rank.write_text(LOCAL.read_text().replace("tasks_per_node: 2", "tasks_per_node: 1"))
    return ["sweep", "--cluster", str(cluster or one_rank), "--config", str(REPO / "configs/demo.yaml"), "--name", "s",
            "--grid", grid, "--grid", "model.size=tiny", "--seeds", "2",
            f"data.shards={shards / 'train'}", f"train.out={out}", "data.window=16", "data.history=8",
            "data.batch_size=4", "data.windows_per_clip=2", "data.num_workers=0", "data.eval_frames=120",
            "train.steps=4", "train.checkpoint_every=2", "train.log_every=2", "train.warmup_steps=0",
            "train.val_every=2", "train.val_windows=8", "train.val_levels=2", "train.sample_every=0",
            "train.wandb=disabled", "train.zero_stage=0", "sample.window=32", "sample.steps=2", "sample.k=2", *extra]


def test_a_sweep_trains_evaluates_and_tabulates_and_reruns_only_what_is_missing(sweep_shards, tmp_path, capsys):
    """Sampling settings (sample.temperature) are swept over shared trainings: 4 points, 2 training runs."""
    from reactdiff.eval.evaluate import evaluate

    args = lambda *extra: sweep_args(sweep_shards, tmp_path, *extra, grid="sample.temperature=0.5,1")  # noqa: E731
    assert launcher.main(args("--dry-run")) == 0
    out = capsys.readouterr().out
    assert "4 points (4 to run, 0 of them still queued) from 2 training runs" in out
    assert not (tmp_path / "s").exists()
    assert launcher.main(args("--test", "--best", "FRDist")) == 0
    folder = tmp_path / "s"
    doc = json.loads((folder / "sweep.json").read_text())
    runs = {p["run"] for p in doc["plan"]["points"]}
    assert len(runs) == 2 and sorted(p.name for p in (folder / "runs").iterdir()) == sorted(runs)
    temps = {json.loads((folder / "evals" / p["name"] / "metrics.json").read_text())["sampling"].get("temperature")
             for p in doc["plan"]["points"]}
    assert temps == {0.5, None}  # each point sampled with its own temperature (1: the plain sampler, not recorded)
    # --test: the settings with the lowest mean validation FRDist, their first point scored on the test shards
    best = min(doc["groups"], key=lambda g: g["FRDist"]["mean"])
    assert doc["test"]["point"] == best["points"][0] and doc["test"]["selected_by"] == "FRDist"
    tested = evaluate(folder / "test" / best["points"][0], sweep_shards / "test", None,
                      baseline_shards=sweep_shards / "train")["results"]
    assert doc["test"]["model"]["FRCorr"] == pytest.approx(tested["model"]["FRCorr"], rel=1e-9)
    assert "baseline: random" in doc["test"]["baselines"]
    assert f"Test ({sweep_shards / 'test'}): point {best['points'][0]}" in (folder / "sweep.md").read_text()
    assert len(doc["points"]) == 4 and set(doc["baselines"]) >= {"baseline: mean", "baseline: random"}
    assert len(doc["groups"]) == 2 and all(len(g["points"]) == 2 for g in doc["groups"])
    md = (folder / "sweep.md").read_text()
    assert "| point | sample.temperature | model.size | seed | FRCorr" in md and "Mean ± std over seeds" in md
    assert (folder / "sweep_val.png").stat().st_size > 1000
    # the table's numbers are `reactdiff evaluate`'s on each point's reactions
    row = doc["points"][1]
    by_hand = evaluate(folder / "evals" / row["name"], sweep_shards / "val", None,
                       baseline_shards=sweep_shards / "train")["results"]["model"]
    assert all(row[m] == pytest.approx(by_hand[m], rel=1e-9) for m in ("FRCorr", "FRDist", "FRDiv", "FRVar"))
    assert row["val_curve"] and row["val_curve"][-1][0] == 4
    # a point whose evaluation is lost is redone alone; the others are kept as they are
    kept = {p["name"]: (folder / "evals" / p["name"] / "metrics.json").stat().st_mtime_ns for p in doc["points"]}
    (folder / "evals" / row["name"] / "metrics.json").unlink()
    assert launcher.main(args()) == 0
    out = capsys.readouterr().out
    assert "4 points (1 to run, 0 of them still queued)" in out and f"{row['name']} todo" in out
    assert f"{row['name']}: training job (done before)" in out  # its training was complete: only evaluated again
    for name, mtime in kept.items():
        if name != row["name"]:
            assert (folder / "evals" / name / "metrics.json").stat().st_mtime_ns == mtime
    assert (folder / "evals" / row["name"] / "metrics.json").is_file()
    # another grid on the same folder is refused
    assert launcher.main([*args(), "--grid", "data.window=32"]) == 2
    assert "--extend" in capsys.readouterr().err


def slurm_profile(out: Path) -> Path:
    """The local SLURM cluster's profile with one node x one task per training (the 4 points share the 2 nodes)."""
    path = out / "slurm_1.yaml"
    path.write_text((REPO / "configs/cluster/local.yaml").read_text().replace("nodes: 2", "nodes: 1"))
    return path


def wait_for(jobs, timeout: float = 600.0) -> None:
    """Until SLURM holds none of the jobs (done, failed or cancelled: an array element cancelled while pending
    leaves no accounting record, so submitit's state would stay UNKNOWN)."""
    from reactdiff.cluster.sweep_jobs import active_slurm_jobs

    ids, deadline = {j.job_id for j in jobs}, time.time() + timeout
    while ids & active_slurm_jobs():
        assert time.time() < deadline, f"jobs still running after {timeout} s: {sorted(ids & active_slurm_jobs())}"
        time.sleep(2)


@needs_slurm
def test_a_sweep_on_slurm_redoes_only_the_point_whose_job_was_killed(sweep_shards, tmp_path, capsys):
    from reactdiff import config
    from reactdiff.eval.evaluate import evaluate

    profile = slurm_profile(tmp_path)
    argv = sweep_args(sweep_shards, tmp_path, "--eval-tasks", "2", cluster=profile)
    cluster = config.load(profile, schema=config.ClusterConfig)
    from reactdiff.cluster.sweep import submit_sweep

    jobs = submit_sweep(launcher.parse(argv), cluster)
    folder = tmp_path / "s"
    records = json.loads((folder / "jobs.json").read_text())
    trains = [r["train"] for r in records.values()]
    assert len(trains) == 4 and len({t.split("_")[0] for t in trains}) == 1  # one job array of 4 trainings
    assert all(len(r["eval"]) == 2 for r in records.values())  # each point's evaluation: 2 sampling tasks
    victim = next(iter(records))
    subprocess.run(["scancel", records[victim]["train"]], check=True)
    # meanwhile a rerun submits nothing twice: the other points' jobs are still queued or running
    capsys.readouterr()
    assert launcher.main([*argv, "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "of them still queued" in out and out.count(" queued: ") >= 1
    wait_for(jobs)
    kept = {n: (folder / "evals" / n / "metrics.json").stat().st_mtime_ns for n in records if n != victim}
    assert not (folder / "evals" / victim / "metrics.json").exists() and not (folder / "sweep.md").exists()
    # the rerun redoes the killed point alone (its evaluation and the table were cancelled with it)
    assert launcher.main([*argv, "--wait"]) == 0
    out = capsys.readouterr().out
    assert "4 points (1 to run, 0 of them still queued)" in out and f"{victim} todo" in out
    for name, mtime in kept.items():
        assert (folder / "evals" / name / "metrics.json").stat().st_mtime_ns == mtime
    doc = json.loads((folder / "sweep.json").read_text())
    assert len(doc["points"]) == 4 and (folder / "sweep.md").is_file()
    row = next(r for r in doc["points"] if r["name"] == victim)
    by_hand = evaluate(folder / "evals" / victim, sweep_shards / "val", None,
                       baseline_shards=sweep_shards / "train")["results"]["model"]
    assert all(row[m] == pytest.approx(by_hand[m], rel=1e-9) for m in ("FRCorr", "FRDist", "FRDiv", "FRVar"))
