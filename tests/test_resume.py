"""Reruns of a run folder with real DeepSpeed engines on gloo: other numbers of ranks and ZeRO stages, edited
configs, corrupt checkpoints."""
from __future__ import annotations

import json
import shutil

import pytest
from test_train import base_args, initial_probe, launch, losses, probe_loss

LAYOUT = ("data.batch_size=2", "train.grad_accum=3")  # 12 windows per step: 1, 2, 3 or 6 ranks can make it
FIRST = 3  # steps before the move: 9 batches per rank, part way through the second epoch (6 per epoch on 2 ranks)


def steps(args: list[str], n: int) -> list[str]:
    return [*args, f"train.steps={n}"]


def starts(run) -> list[dict]:
    return [json.loads(line) for line in (run / "starts.jsonl").read_text().splitlines()]


@pytest.fixture(scope="module")
def moved_from(tiny_shards, tmp_path_factory):
    """Per ZeRO stage: a straight 2-rank run of 8 steps, and the same run stopped after FIRST steps."""
    out = tmp_path_factory.mktemp("resume")
    runs = {}
    for stage in (2, 3):
        for name, n in ((f"straight{stage}", 8), (f"first{stage}", FIRST)):
            res = launch(steps(base_args(tiny_shards, out, name, f"train.zero_stage={stage}", *LAYOUT), n), nproc=2)
            assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
        runs[stage] = (out / f"straight{stage}", out / f"first{stage}")
    return runs


@pytest.mark.parametrize("stage", [2, 3])
@pytest.mark.parametrize("nproc", [1, 3])
def test_resume_on_another_number_of_ranks_continues_the_run(tiny_shards, tmp_path, moved_from, stage, nproc):
    straight, first = moved_from[stage]
    shutil.copytree(first, tmp_path / "moved")
    res = launch(steps(base_args(tiny_shards, tmp_path, "moved", f"train.zero_stage={stage}", *LAYOUT), 8), nproc)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    assert (f"resumed {tmp_path / 'moved'} at step {FIRST}" in res.stdout
            and f"from 2 rank(s) ZeRO {stage} to {nproc} rank(s) ZeRO {stage}, 12 windows/step (was 12)" in res.stdout)
    run = tmp_path / "moved"
    got, ref = losses(run), losses(straight)
    assert sorted(got) == list(range(1, 9)) and all(got[s] == ref[s] for s in range(1, FIRST + 1))
    row = starts(run)[-1]
    assert (row["world_size"], row["grad_accum"], row["train_batch_size"], row["universal"]) == (nproc, 6 // nproc,
                                                                                                 12, True)
    assert not (run / "checkpoints/universal").exists()  # the re-partitioned copy is gone once loaded
    # the loss continues: the moved run's final EMA weights are as good as the straight run's
    from reactdiff.model.export import load_export

    batch, before = initial_probe(straight)
    after_ref = probe_loss(load_export(straight / "export")[0], batch)
    after = probe_loss(load_export(run / "export")[0], batch)
    assert after < 0.95 * before and abs(after - after_ref) < 0.1 * after_ref, (before, after_ref, after)
    # and its data position is the one the partition implies: every rank took the same batches of the epoch
    states = [json.loads((run / f"checkpoints/step00000008/rank{r:05d}.json").read_text())["state"]["data"]
              for r in range(nproc)]
    assert all(s == states[0] for s in states) and states[0]["layout"] == [nproc, 1]
    # ... the one the reader's pure plan gives (tests/test_reader.py: that plan reads no window of an epoch twice)
    from reactdiff import config
    from reactdiff.data.reader import BatchStream

    before = json.loads((first / f"checkpoints/step{FIRST:08d}/rank00000.json").read_text())["state"]["data"]
    stream = BatchStream(config.load(run / "config.yaml").data, 0, nproc)
    stream.load_state_dict(before)
    for i, _ in enumerate(stream, 1):
        if i == (8 - FIRST) * 6 // nproc:  # steps x grad_accum batches per rank
            break
    assert stream.state_dict() == states[0]


def test_unsupported_stage_change_names_the_command_that_works(tiny_shards, tmp_path, moved_from):
    shutil.copytree(moved_from[2][1], tmp_path / "z2")
    res = launch(steps(base_args(tiny_shards, tmp_path, "z2", "train.zero_stage=3", *LAYOUT), 8), nproc=1)
    assert res.returncode == 2
    assert "written with ZeRO 2 on 2 rank(s); it cannot be resumed with ZeRO 3" in res.stderr
    assert "train.zero_stage=2" in res.stderr
    res = launch(steps(base_args(tiny_shards, tmp_path, "z2", "train.zero_stage=2", "data.batch_size=2"), 8), nproc=1)
    assert res.returncode == 2 and "train.grad_accum: 3 -> 1" in res.stderr  # the global batch is what is trained


def test_a_global_batch_the_ranks_cannot_make_is_refused_unless_allowed(tiny_shards, tmp_path):
    args = base_args(tiny_shards, tmp_path, "batch", "train.zero_stage=0")  # 2 ranks x 4 = 8 windows per step
    assert launch(steps(args, 2), nproc=2).returncode == 0
    res = launch(steps(args, 4), nproc=3)
    assert res.returncode != 0  # torchrun reports a worker's 2 as 1
    assert "8 windows per step (2 rank(s) x micro-batch 4 x grad_accum 1); 3 rank(s) cannot make 8" in res.stderr
    assert "Resume on 1, 2 rank(s)" in res.stderr and "train.lr=0.0045" in res.stderr  # the linear lr rule
    res = launch(steps([*args, "train.allow_config_change=true", "train.lr=4.5e-3"], 4), nproc=3)
    assert res.returncode == 0, res.stdout[-3000:]
    row = starts(tmp_path / "batch")[-1]
    assert (row["step"], row["train_batch_size"], row["universal"]) == (2, 12, False)  # ZeRO 0: no re-partition
    assert row["changed"]["train.lr"] == [3e-3, 4.5e-3]


def test_rerun_with_an_edited_config_is_refused_unless_allowed(tiny_shards, tmp_path):
    args = base_args(tiny_shards, tmp_path, "edited", "train.zero_stage=0")
    assert launch(steps(args, 2), nproc=1).returncode == 0
    res = launch(steps([*args, "model.size=small", "train.lr=1e-3", "train.log_every=2"], 4), nproc=1)
    assert res.returncode == 2, res.stdout[-2000:]
    assert "model.size: 'tiny' -> 'small'" in res.stderr and "train.lr: 0.003 -> 0.001" in res.stderr
    assert "train.steps" not in res.stderr and "log_every" not in res.stderr  # free to change
    assert "size: tiny" in (tmp_path / "edited/config.yaml").read_text()  # the recorded config is untouched
    res = launch(steps([*args, "train.lr=1e-3", "train.allow_config_change=true"], 4), nproc=1)
    assert res.returncode == 0, res.stdout[-2000:]
    row = starts(tmp_path / "edited")[-1]
    assert row["step"] == 2 and row["changed"]["train.lr"] == [3e-3, 1e-3] and row["changed"]["train.steps"] == [2, 4]
    assert "lr: 0.001" in (tmp_path / "edited/config.yaml").read_text()


def test_corrupt_latest_checkpoint_falls_back_to_the_previous_one(tiny_shards, tmp_path):
    args = base_args(tiny_shards, tmp_path, "corrupt", "train.zero_stage=0", "train.checkpoint_every=2")
    assert launch(steps(args, 4), nproc=1).returncode == 0
    ckpts = tmp_path / "corrupt/checkpoints"
    weights = ckpts / "step00000004/mp_rank_00_model_states.pt"
    data = bytearray(weights.read_bytes())
    data[len(data) // 2:len(data) // 2 + 64] = b"\xff" * 64  # same size, other bytes
    weights.write_bytes(bytes(data))
    res = launch(steps(args, 6), nproc=1)
    assert res.returncode == 0, res.stdout[-3000:]
    assert "checkpoint step00000004 is corrupt" in res.stdout and "does not match its sha256" in res.stdout
    assert "at step 2" in res.stdout  # the previous complete checkpoint, not step 0
    assert len(list(ckpts.glob("step00000004.corrupt-*"))) == 1  # set aside, not deleted
    rows = [json.loads(line) for line in (tmp_path / "corrupt/metrics.jsonl").read_text().splitlines()]
    by_step = {}
    for r in rows:
        if r.get("kind", "train") == "train" and "loss" in r:
            by_step.setdefault(r["step"], []).append(r["loss"])
    assert by_step[3] == [by_step[3][0]] * 2 and by_step[4] == [by_step[4][0]] * 2  # redone exactly


def test_pickled_rank_state_is_refused(tiny_shards, tmp_path):
    args = base_args(tiny_shards, tmp_path, "pickled", "train.zero_stage=0")
    assert launch(steps(args, 2), nproc=1).returncode == 0
    ckpt = tmp_path / "pickled/checkpoints/step00000002"
    (ckpt / "rank00000.safetensors").unlink()
    (ckpt / "rank00000.json").unlink()
    (ckpt / "rank00000.pt").write_bytes(b"\x80\x04K\x01.")  # a pickle
    doc = json.loads((ckpt / "COMPLETE").read_text())  # keep the manifest true to the folder
    from reactdiff.train.checkpoint import manifest

    doc["files"] = manifest(ckpt)
    (ckpt / "COMPLETE").write_text(json.dumps(doc))
    res = launch(steps(args, 4), nproc=1)
    assert res.returncode == 2 and "old pickled format; it is not unpickled" in res.stderr
