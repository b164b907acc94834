"""The synthetic generator as a reaction model (bench quality's oracle row, `reactdiff oracle`, the demo's reference
row): it rebuilds the recorded listeners exactly from the dataset's own random streams, in the neighbour matrix's row
order, its fresh draws differ, and `reactdiff evaluate --reference` scores them next to a model."""
from __future__ import annotations

import json

import numpy as np
import pytest

from reactdiff.data.synthetic.oracle import oracle_reactions, recorded_listeners
from reactdiff.eval.ground_truth import load_ground_truth

FRAMES = 100


def test_the_oracle_rebuilds_the_recorded_listeners_in_row_order(tiny_react, tiny_test_shards):
    gt = load_ground_truth(tiny_test_shards, frames=FRAMES)
    np.testing.assert_allclose(recorded_listeners(tiny_react, "test", FRAMES), gt.listener_fv, atol=1e-6)


def test_fresh_draws_react_to_the_same_speaker_but_differ(tiny_react):
    new = oracle_reactions(tiny_react, "test", k=3, frames=FRAMES)
    same = oracle_reactions(tiny_react, "test", k=3, frames=FRAMES, same_person=True)
    rec = recorded_listeners(tiny_react, "test", FRAMES)
    assert new.shape == same.shape == (rec.shape[0], 3, FRAMES, 58)
    assert np.isfinite(new).all() and not np.allclose(new[:, 0], new[:, 1])
    # the same person keeps its identity: its clip means lie nearer the recorded listener's than a new person's
    level = lambda x: x[..., 52:].mean(-2)  # noqa: E731 - head pose level per reaction
    near = np.abs(level(same) - level(rec)[:, None]).mean()
    far = np.abs(level(new) - level(rec)[:, None]).mean()
    assert near < far
    np.testing.assert_array_equal(oracle_reactions(tiny_react, "test", k=3, frames=FRAMES), new)  # deterministic


def test_oracle_folder_is_scored_as_a_reference_row(tiny_react, tiny_test_shards, tmp_path, capsys):
    """`reactdiff oracle` writes the generator's listeners as a reactions folder; `reactdiff evaluate --reference`
    scores it on the same ground truth as the model, says what it is, and a rerun of the oracle reuses it."""
    from reactdiff.cli import main as cli_main
    from reactdiff.eval.metrics import compute_all
    from reactdiff.sampling.writer import reaction_path, write_manifest, write_reaction

    oracle = tmp_path / "oracle"
    assert cli_main(["oracle", "--root", str(tiny_react), "--out", str(oracle), "--k", "3", "--frames",
                     str(FRAMES)]) == 0
    first = reaction_path(oracle, 0).stat().st_mtime_ns
    assert cli_main(["oracle", "--root", str(tiny_react), "--out", str(oracle), "--k", "3", "--frames",
                     str(FRAMES)]) == 0
    assert reaction_path(oracle, 0).stat().st_mtime_ns == first  # same dataset and settings: kept
    model = tmp_path / "model"  # a "model": the mean listener frame drifting slowly
    gt = load_ground_truth(tiny_test_shards, frames=FRAMES)
    rows = gt.rows
    still = np.broadcast_to(gt.listener_fv.mean((0, 1)), (3, FRAMES, 58)) + np.linspace(0, 1, FRAMES)[:, None]
    for row in range(rows):
        write_reaction(model, row, np.ascontiguousarray(still, dtype=np.float32))
    write_manifest(model, [{"row": r} for r in range(rows)], {"frames": FRAMES, "k": 3, "rows": rows}, True)
    capsys.readouterr()
    assert cli_main(["evaluate", "--reactions", str(model), "--shards", str(tiny_test_shards), "--no-baselines",
                     "--wandb", "disabled", "--reference", f"new person={oracle}"]) == 0
    report = json.loads((model / "metrics.json").read_text())
    direct = compute_all(oracle_reactions(tiny_react, "test", k=3, frames=FRAMES), gt.listener_fv, gt.speaker_fv,
                         gt.neighbours, kind="3dmm")
    assert report["results"]["reference: new person"]["FRDist"] == pytest.approx(direct["FRDist"], rel=1e-9)
    assert "rotation" in report["results"]["reference: new person"]["motion"]
    text = (model / "report.md").read_text()
    assert f"**reference: new person**: reactions from `{oracle}` (the synthetic generator's own listeners, a new " \
           f"person each)" in text
    # wrong K: refused, naming the folder; a malformed option: refused, naming the option
    assert cli_main(["evaluate", "--reactions", str(oracle), "--shards", str(tiny_test_shards), "--out",
                     str(tmp_path / "x"), "--no-baselines", "--wandb", "disabled", "--reference",
                     f"m={_with_k(model, tmp_path / 'k2', 2)}"]) == 2
    err = capsys.readouterr().err
    assert "k2: 2 reactions x" in err and "the model's 3 x" in err
    assert cli_main(["evaluate", "--reactions", str(model), "--shards", str(tiny_test_shards), "--reference",
                     str(oracle)]) == 2
    assert "expected NAME=DIR" in capsys.readouterr().err


def _with_k(like, out, k: int):
    from reactdiff.sampling.writer import load_manifest, reaction_path, write_manifest, write_reaction

    manifest = load_manifest(like)
    for e in manifest["entries"]:
        write_reaction(out, e["row"], np.load(reaction_path(like, e["row"]))[:k])
    write_manifest(out, [{"row": e["row"]} for e in manifest["entries"]], {**manifest["settings"], "k": k}, True)
    return out
