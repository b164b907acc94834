"""Shared fixtures: a tiny synthetic REACT dataset (real layout) and its shards, made once per test session."""
from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from reactdiff.data.make_shards import make_shards
from reactdiff.data.synthetic import generate_dataset

TINY_FRAMES = 120


def make_react(root: Path, frames: int = TINY_FRAMES, train: int = 3, val: int = 0, test: int = 1, video: str = "png",
               seed: int = 0) -> Path:
    generate_dataset(root, seed=seed, sessions={"train": train, "val": val, "test": test}, clips_per_session=2,
                     frames=frames, video=video, video_size=16, workers=1, progress=False)
    return root


@pytest.fixture(scope="session")
def tiny_react(tmp_path_factory) -> Path:
    """3 train sessions x 2 clips (6 pair rows, NoXI + RECOLA), 1 test session; 120 frames, 16x16 video."""
    return make_react(tmp_path_factory.mktemp("react") / "react")


@pytest.fixture(scope="session")
def tiny_shards(tiny_react, tmp_path_factory) -> Path:
    """The train split in 3 shards of 2 samples, with logmel features."""
    out = tmp_path_factory.mktemp("shards") / "train"
    make_shards(tiny_react, "train", out, samples_per_shard=2, audio_features="logmel", progress=False)
    return out


@pytest.fixture
def react_copy(tiny_react, tmp_path) -> Path:
    """A private copy of the tiny dataset that a test may damage."""
    dst = tmp_path / "react"
    shutil.copytree(tiny_react, dst)
    return dst


def sample_random_init(shards: Path, out: Path, frames: int, k: int, window: int = 32) -> Path:
    """`reactdiff sample` from an untrained tiny model: reactions in the real output format, in seconds."""
    from reactdiff.sampling.cli import main as sample_main

    assert sample_main(["--random-init", "--shards", str(shards), "--out", str(out), "--quiet", "model.size=tiny",
                        "data.history=8", f"data.eval_frames={frames}", f"sample.window={window}", "sample.steps=2",
                        f"sample.k={k}"]) == 0
    return out


@pytest.fixture(scope="session")
def tiny_test_shards(tiny_react, tiny_shards) -> Path:
    """The test split (2 dyadic clips), a sibling `test` folder next to `tiny_shards` (whose folder is `train`)."""
    out = tiny_shards.parent / "test"
    make_shards(tiny_react, "test", out, samples_per_shard=2, audio_features="logmel", progress=False)
    return out


def assert_denoise_loss_is(model, anchor_of, whiten, h: int = 8, w: int = 32, extra: dict | None = None) -> None:
    """model.training_loss's denoising term equals the EDM loss computed by hand on x0 - anchor_of(x, h) (the window
    relative to what the model anchors it to), with the same sigma and noise draws and `whiten`; `extra`: more
    batch entries (e.g. the listener memory)."""
    import torch

    b = 2
    g = torch.Generator().manual_seed(0)
    batch = {"speaker_fv": torch.randn(b, h + w, 58, generator=g),
             "listener_fv": torch.randn(b, h + w, 58, generator=g),
             "speaker_feat": torch.randn(b, h + w, 80, generator=g), "valid": torch.ones(b, h + w, dtype=torch.bool),
             **(extra or {})}
    out = model.training_loss(batch, h, torch.Generator().manual_seed(5))
    g = torch.Generator().manual_seed(5)
    sigma = model.density.sample(b, generator=g)
    noise = model.colour_noise(torch.randn(b, w, 58, generator=g))
    x = batch["listener_fv"]
    manual, _ = model.denoiser.loss(x[:, h:] - anchor_of(x, h), sigma, noise, whiten=whiten,
                                    **model.condition(batch, x[:, :h]))
    torch.testing.assert_close(out["denoise"], manual.mean())
