"""`reactdiff launch sweep`: the grid's points, the folder's plan checks, and a 2 x 2 sweep on submitit's local
executor (trains 4 runs, evaluates each on the validation shards, tabulates; a rerun redoes only what is missing)."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from reactdiff.cluster import launch_cli as launcher
from reactdiff.cluster.sweep_plan import SweepError, check_plan, load_file, make_points, parse_grid
from reactdiff.data.make_shards import make_shards

from conftest import make_react

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
    root = make_react(tmp_path_factory.mktemp("sweep") / "react", train=2, val=1, test=0)
    for split in ("train", "val"):
        make_shards(root, split, root.parent / "shards" / split, samples_per_shard=2, audio_features="logmel",
                    progress=False)
    return root.parent / "shards"


def sweep_args(shards: Path, out: Path, *extra):
    one_rank = out / "local_1.yaml"  # submitit's local executor, one training process per point (faster)
    one_rank.write_text(LOCAL.read_text().replace("tasks_per_node: 2", "tasks_per_node: 1"))
    return ["sweep", "--cluster", str(one_rank), "--config", str(REPO / "configs/demo.yaml"), "--name", "s",
            "--grid", "train.lr=1e-3,3e-4", "--grid", "model.size=tiny", "--seeds", "2",
            f"data.shards={shards / 'train'}", f"train.out={out}", "data.window=16", "data.history=8",
            "data.batch_size=4", "data.windows_per_clip=2", "data.num_workers=0", "data.eval_frames=120",
            "train.steps=4", "train.checkpoint_every=2", "train.log_every=2", "train.warmup_steps=0",
            "train.val_every=2", "train.val_windows=8", "train.val_levels=2", "train.sample_every=0",
            "train.wandb=disabled", "train.zero_stage=0", "sample.window=32", "sample.steps=2", "sample.k=2", *extra]


def test_a_sweep_trains_evaluates_and_tabulates_and_reruns_only_what_is_missing(sweep_shards, tmp_path, capsys):
    from reactdiff.eval.evaluate import evaluate

    assert launcher.main(sweep_args(sweep_shards, tmp_path, "--dry-run")) == 0
    out = capsys.readouterr().out
    assert "4 points (4 to run)" in out and not (tmp_path / "s").exists()
    assert launcher.main(sweep_args(sweep_shards, tmp_path)) == 0
    folder = tmp_path / "s"
    doc = json.loads((folder / "sweep.json").read_text())
    assert len(doc["points"]) == 4 and set(doc["baselines"]) >= {"baseline: mean", "baseline: random"}
    assert len(doc["groups"]) == 2 and all(len(g["points"]) == 2 for g in doc["groups"])
    md = (folder / "sweep.md").read_text()
    assert "| point | train.lr | model.size | seed | FRCorr" in md and "Mean ± std over seeds" in md
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
    assert launcher.main(sweep_args(sweep_shards, tmp_path)) == 0
    out = capsys.readouterr().out
    assert "4 points (1 to run)" in out and f"{row['name']} todo" in out
    assert f"{row['name']}: training job (done before)" in out  # its training was complete: only evaluated again
    for name, mtime in kept.items():
        if name != row["name"]:
            assert (folder / "evals" / name / "metrics.json").stat().st_mtime_ns == mtime
    assert (folder / "evals" / row["name"] / "metrics.json").is_file()
    # another grid on the same folder is refused
    assert launcher.main([*sweep_args(sweep_shards, tmp_path), "--grid", "data.window=32"]) == 2
    assert "--extend" in capsys.readouterr().err
