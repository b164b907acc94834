"""The synthetic generator as a reaction model (bench quality's oracle row): it rebuilds the recorded listeners
exactly from the dataset's own random streams, in the neighbour matrix's row order, and its fresh draws differ."""
from __future__ import annotations

import numpy as np

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
