"""Per-rank checkpoint state without pickles: RNGs, the noise generator and the data position round-trip exactly
through safetensors + JSON; a rank file in the old pickled format is refused, never unpickled."""
from __future__ import annotations

import pickle
import random

import numpy as np
import pytest
import torch

from reactdiff.train.checkpoint import load_rank_state, save_rank_state


def draws(gen: torch.Generator) -> tuple:
    return random.random(), float(np.random.rand()), float(torch.rand(1)), float(torch.rand(1, generator=gen))


def test_rank_state_round_trips_every_rng_exactly(tmp_path):
    random.seed(1), np.random.seed(2), torch.manual_seed(3)
    np.random.randn()  # a cached Gaussian in numpy's state
    gen = torch.Generator().manual_seed(4)
    torch.rand(5, generator=gen)
    save_rank_state(tmp_path, 0, {"generator": gen.get_state(), "data": {"epoch": 2, "batch": 7, "fingerprint": "ab"}})
    expected = draws(gen)
    random.seed(9), np.random.seed(9), torch.manual_seed(9)  # anything else
    state = load_rank_state(tmp_path, 0, 1)
    assert state["data"] == {"epoch": 2, "batch": 7, "fingerprint": "ab"}
    restored = torch.Generator()
    restored.set_state(state["generator"])
    assert draws(restored) == expected
    assert sorted(p.name for p in tmp_path.iterdir()) == ["rank00000.json", "rank00000.safetensors"]


class Trap:
    """Unpickling this would write a file: proof that nothing was unpickled."""

    def __init__(self, path):
        self.path = path

    def __reduce__(self):
        return (open, (str(self.path), "w"))


def test_a_pickled_rank_file_is_refused_and_not_unpickled(tmp_path):
    step = tmp_path / "run" / "checkpoints" / "step00000004"
    step.mkdir(parents=True)
    marker = tmp_path / "unpickled"
    (step / "rank00000.pt").write_bytes(pickle.dumps({"rng": Trap(marker)}))
    with pytest.raises(ValueError, match="old pickled format; it is not unpickled.*reactdiff export --run"):
        load_rank_state(step, 0, 1)
    assert not marker.exists()
    with pytest.raises(FileNotFoundError, match="different world size"):
        load_rank_state(step, 1, 2)
