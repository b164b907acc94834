"""The pytorch3d backend (FaceVerse's ModelRenderer, as the REACT renderer builds it) against our torch rasteriser:
silhouettes, grey levels and depth order on the synthetic FaceVerse-format head; backend resolution and recording."""
from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

from reactdiff.render import p3d
from reactdiff.render import rasterize as R
from reactdiff.render import synthetic_model
from reactdiff.render.faceverse import FaceVerseModel, project
from reactdiff.render.grey import GreyRenderer

needs_p3d = pytest.mark.skipif(p3d.unavailable() is not None, reason=f"{p3d.unavailable()}")
SIZE = 224


@pytest.fixture(scope="module")
def head(tmp_path_factory):
    return FaceVerseModel.load(synthetic_model.write_model(tmp_path_factory.mktemp("fv") / "head.npy"))


def poses(n: int, seed: int = 0, yaw: float | None = None) -> torch.Tensor:
    """REACT-like coefficients: expressions in [0, 0.7], the head near rot_x = pi, random turns and shifts."""
    g = np.random.default_rng(seed)
    c = np.zeros((n, 58), np.float32)
    c[:, :52] = g.uniform(0, 0.7, (n, 52))
    c[:, 52:55] = np.array([math.pi, 0, 0]) + g.normal(0, [0.2, 0.35, 0.15], (n, 3))
    if yaw is not None:
        c[:, 53] = yaw
    c[:, 55:58] = np.array([0, 0, 1.84]) + g.normal(0, [0.04, 0.04, 0.1], (n, 3))
    return torch.from_numpy(c)


def erode(mask: torch.Tensor) -> torch.Tensor:
    """Pixels whose 3 x 3 neighbourhood is inside the mask (away from silhouette edges)."""
    m = mask.float()[:, None]
    return torch.nn.functional.max_pool2d(1 - m, 3, 1, 1)[:, 0] == 0


@needs_p3d
def test_backends_agree_on_silhouettes_and_grey_levels(head):
    world = head.vertices(poses(12))
    ours = R.shade(R.rasterize(project(world, SIZE), head.tri, SIZE)[0], R.face_shading(world, head.tri))
    theirs = p3d.Pytorch3dGrey(head.tri, SIZE, "cpu").render(world)
    a, b = ours[..., 0] > 0, theirs[..., 0] > 0
    iou = (a & b).flatten(1).sum(1) / (a | b).flatten(1).sum(1)
    assert iou.min() >= 0.99, iou
    inner = erode(a) & erode(b)
    diff = (ours[..., 0].float() - theirs[..., 0].float()).abs()
    per_frame = torch.stack([diff[i][inner[i]].mean() for i in range(len(diff))])
    assert per_frame.max() <= 3.0, per_frame
    assert torch.equal(ours[..., 0], ours[..., 2]) and torch.equal(theirs[..., 0], theirs[..., 2])  # grey


@needs_p3d
def test_backends_agree_on_depth_order_of_a_turned_head(head):
    world = head.vertices(poses(4, seed=1, yaw=math.radians(60)))  # the nose and the far cheek overlap
    ours, _ = R.rasterize(project(world, SIZE), head.tri, SIZE)
    theirs = p3d.Pytorch3dGrey(head.tri, SIZE, "cpu").face_index(world)
    both = (ours >= 0) & (theirs >= 0)
    same = (ours == theirs) & both
    assert (same.sum() / both.sum()) >= 0.99
    # where they differ it is a tie between neighbouring faces at a shared edge, never the far side of the head:
    # the depth of the winner under the other backend's face is the same to a hair
    flat = world.flatten(0, 1)
    def depth_of(face_index, i):  # noqa: E306 - the mean depth of the faces a frame shows
        f = face_index[i][both[i] & ~same[i]]
        return (10 - flat[i * world.shape[1] + head.tri[f]][..., 2]).mean(-1)
    for i in range(4):
        if (both[i] & ~same[i]).any():
            assert (depth_of(ours, i) - depth_of(theirs, i)).abs().max() < 0.05


@needs_p3d
def test_grey_renderer_draws_the_same_with_either_backend(head):
    c = poses(5, seed=2).numpy()
    a = np.concatenate(list(GreyRenderer(head, 64, chunk=2, rasteriser="torch").frames(c)))
    b = np.concatenate(list(GreyRenderer(head, 64, chunk=3, rasteriser="pytorch3d").frames(c)))
    assert a.shape == b.shape == (5, 64, 64, 3)
    assert ((a[..., 0] > 0) != (b[..., 0] > 0)).mean() < 0.01 and np.abs(a.astype(int) - b.astype(int)).mean() < 2


def test_auto_resolves_to_what_imports_and_suits_the_device(monkeypatch):
    assert p3d.resolve("torch") == "torch" and p3d.resolve("auto", "cpu") == "torch"  # the CPU: ours is faster
    assert p3d.resolve("auto", "cuda") == ("torch" if p3d.unavailable() else "pytorch3d")
    with pytest.raises(ValueError, match="expected one of auto, torch, pytorch3d"):
        p3d.resolve("opengl")
    monkeypatch.setattr(p3d, "unavailable", lambda: "pytorch3d does not import (ImportError: no module)")
    assert p3d.resolve("auto", "cuda") == "torch"
    with pytest.raises(ValueError, match="--rasteriser pytorch3d: pytorch3d does not import"):
        p3d.resolve("pytorch3d")


@needs_p3d
def test_render_records_the_backend_and_never_mixes(tiny_shards, tmp_path, capsys):
    from conftest import sample_random_init
    from reactdiff.render.cli import main as render_main

    samples = sample_random_init(tiny_shards, tmp_path / "samples", 20, k=1, window=16)
    model = synthetic_model.write_model(tmp_path / "fv.npy", rings=12, segments=16)
    out = tmp_path / "render"
    args = ["--samples", str(samples), "--faceverse", str(model), "--out", str(out), "--rows", "0", "--size", "32",
            "--quiet"]
    assert render_main([*args, "--rasteriser", "pytorch3d"]) == 0
    assert json.loads((out / "settings.json").read_text())["renderer"] == "grey mesh (pytorch3d)"
    assert render_main(args) == 2  # auto on the CPU: torch -- not into a pytorch3d folder
    assert "renderer: 'grey mesh (pytorch3d)' -> 'grey mesh (torch)'" in capsys.readouterr().err
