"""Rendering: the FaceVerse model file and mesh maths against direct transcriptions, the rasteriser against a
per-pixel brute force, shading values, mp4 output, and `reactdiff render` end to end (resume, fan-out, errors)."""
from __future__ import annotations

import json
import math

import av
import numpy as np
import pytest
import torch
from scipy.spatial.transform import Rotation

from reactdiff.media import write_mp4
from reactdiff.render import faceverse as F
from reactdiff.render import rasterize as R
from reactdiff.render import synthetic_model
from reactdiff.render.cli import main as render_main
from reactdiff.render.grey import GreyRenderer
from conftest import sample_random_init

FRAMES = 40


@pytest.fixture(scope="module")
def model_file(tmp_path_factory):
    return synthetic_model.write_model(tmp_path_factory.mktemp("fv") / "faceverse_synthetic.npy", rings=12,
                                       segments=16)


def react_pose(n: int, seed: int = 0) -> np.ndarray:
    """Coefficients like REACT's: expressions in [0, 1], rot_x near pi, the face ~8 units from the camera."""
    rng = np.random.default_rng(seed)
    c = np.zeros((n, 58), np.float32)
    c[:, :52] = rng.uniform(0, 0.6, (n, 52))
    c[:, 52:55] = [math.pi, 0, 0] + rng.normal(0, 0.1, (n, 3))
    c[:, 55:58] = [0, 0, 1.84] + rng.normal(0, 0.03, (n, 3))
    return c


# ---------------------------------------------------------------- the model file


def test_model_file_round_trip(model_file):
    d = np.load(model_file, allow_pickle=True).item()
    m = F.FaceVerseModel.load(model_file)
    v = m.num_vertices
    assert d["meanshape"].shape == (v, 3) and d["idBase"].shape == (3 * v, 150) and d["exBase"].shape == (3 * v, 52)
    assert m.exp_base.shape == (v, 3, 52) and m.tri.dtype == torch.long and int(m.tri.max()) < v
    assert m.exp_names[24] == "jawOpen"
    # xyz interleaved per vertex: row 3i + 1 of exBase is vertex i's y
    np.testing.assert_array_equal(m.exp_base[7, 1].numpy(), d["exBase"][3 * 7 + 1])


@pytest.mark.parametrize("change,match", [
    (lambda d: d.pop("exBase"), r"missing keys \['exBase'\]"),
    (lambda d: d.update(idBase=d["idBase"][:, :100]), r"idBase has shape .*expected \(3V, 150\)"),
    (lambda d: d.update(tri=d["tri"] + 10_000), r"tri indexes vertices"),
    (lambda d: d.update(tri=d["tri"] + 0.5), r"tri must hold integer indices"),
    (lambda d: d.update(tri=d["tri"][:, :2]), r"tri must be an array of shape \('F', 3\)"),
    (lambda d: d.update(exp_name_list=np.asarray(["a", "b"])), r"exp_name_list has 2 names"),
])
def test_model_file_errors_name_the_file_and_key(model_file, tmp_path, change, match):
    d = np.load(model_file, allow_pickle=True).item()
    change(d)
    bad = tmp_path / "bad.npy"
    np.save(bad, d, allow_pickle=True)
    with pytest.raises(F.FaceVerseError, match=match) as err:
        F.FaceVerseModel.load(bad)
    assert str(bad) in str(err.value)


def test_model_file_with_float_indices_loads(model_file, tmp_path):
    d = np.load(model_file, allow_pickle=True).item()
    d["tri"] = d["tri"].astype(np.float64)  # whole numbers stored as floats
    np.save(tmp_path / "f.npy", d, allow_pickle=True)
    assert torch.equal(F.FaceVerseModel.load(tmp_path / "f.npy").tri, F.FaceVerseModel.load(model_file).tri)


def test_model_file_not_a_dict_or_missing(tmp_path, model_file):
    np.save(tmp_path / "arr.npy", np.zeros(3))
    with pytest.raises(F.FaceVerseError, match="np.save'd dict"):
        F.FaceVerseModel.load(tmp_path / "arr.npy")
    with pytest.raises(F.FaceVerseError, match="not found"):
        F.FaceVerseModel.load(tmp_path / "nope.npy")
    with pytest.raises(F.FaceVerseError, match="select_id and tri_select"):
        F.FaceVerseModel.load(model_file, simplified=True)
    d = np.load(model_file, allow_pickle=True).item()
    d["select_id"], d["tri_select"] = np.array([0, 1, 10 ** 6]), np.array([[0, 1, 2]])
    np.save(tmp_path / "sel.npy", d, allow_pickle=True)
    with pytest.raises(F.FaceVerseError, match="select_id must hold vertex indices"):
        F.FaceVerseModel.load(tmp_path / "sel.npy", simplified=True)


class _RunsCode:  # what a hostile "model file" could hold
    def __reduce__(self):
        import os

        return (os.system, ("touch pwned",))


def test_model_file_that_asks_to_run_code_is_refused(model_file, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    d = np.load(model_file, allow_pickle=True).item()
    d["payload"] = _RunsCode()
    np.save(tmp_path / "hostile.npy", np.array(d, dtype=object), allow_pickle=True)
    with pytest.raises(F.FaceVerseError, match="refusing to build posix.system"):
        F.FaceVerseModel.load(tmp_path / "hostile.npy")
    assert not (tmp_path / "pwned").exists()
    assert F.FaceVerseModel.load(model_file).num_vertices > 0  # the real format still loads


def test_simplified_mesh_selects_vertices(model_file, tmp_path):
    d = np.load(model_file, allow_pickle=True).item()
    d["select_id"] = np.arange(0, 40)
    d["tri_select"] = np.array([[0, 1, 2], [2, 3, 39]])
    np.save(tmp_path / "s.npy", d, allow_pickle=True)
    m = F.FaceVerseModel.load(tmp_path / "s.npy", simplified=True)
    assert m.num_vertices == 40 and m.tri.shape == (2, 3)
    np.testing.assert_array_equal(m.meanshape.numpy(), d["meanshape"][:40])


# ---------------------------------------------------------------- mesh maths


def test_vertices_match_the_transcription(model_file):
    d = np.load(model_file, allow_pickle=True).item()
    m = F.FaceVerseModel.load(model_file)
    c = react_pose(3, seed=1)
    identity = np.random.default_rng(2).normal(0, 1, 200).astype(np.float32)
    got = m.vertices(torch.from_numpy(c), torch.from_numpy(identity)).numpy()
    for n in range(3):
        shape = d["meanshape"].reshape(-1) + d["idBase"] @ identity[:150] + d["exBase"] @ c[n, :52]
        x, y, z = c[n, 52:55]
        rx = np.array([[1, 0, 0], [0, np.cos(x), -np.sin(x)], [0, np.sin(x), np.cos(x)]])
        ry = np.array([[np.cos(y), 0, np.sin(y)], [0, 1, 0], [-np.sin(y), 0, np.cos(y)]])
        rz = np.array([[np.cos(z), -np.sin(z), 0], [np.sin(z), np.cos(z), 0], [0, 0, 1]])
        want = shape.reshape(-1, 3) @ (rz @ ry @ rx).T + c[n, 55:58]
        np.testing.assert_allclose(got[n], want, rtol=1e-4, atol=1e-5)


def test_euler_order_is_rz_ry_rx():
    angles = torch.tensor([[0.3, -1.1, 2.0], [math.pi, 0.05, 0.0]], dtype=torch.float64)
    got = F.euler_to_matrix(angles).numpy()
    want = Rotation.from_euler("xyz", angles.numpy()).as_matrix()  # extrinsic x, then y, then z = Rz Ry Rx
    np.testing.assert_allclose(got, want, atol=1e-12)


def test_projection_follows_the_react_camera():
    world = torch.tensor([[[0.0, 0.0, 0.0], [0.5, 0.0, 0.0], [0.0, 0.5, 0.0], [0.0, 0.0, 2.0]]])
    p = F.project(world, 224)[0]
    assert p[0].tolist() == pytest.approx([112, 112, 10])
    assert p[1, 0].item() == pytest.approx(112 + 1315 * 0.5 / 10)  # +x to the right
    assert p[2, 1].item() == pytest.approx(112 - 1315 * 0.5 / 10)  # +y up: a smaller row
    assert p[3, 2].item() == pytest.approx(8.0)  # nearer the camera at z = 10
    assert F.project(world, 112)[0, 1, 0].item() == pytest.approx(56 + 1315 / 2 * 0.5 / 10)  # focal scales


def test_react_pose_faces_the_camera_upright(model_file):
    m = F.FaceVerseModel.load(model_file)
    c = react_pose(1)
    c[:, :52] = 0
    c[:, 52:58] = [math.pi, 0, 0, 0, 0, 1.84]
    p = F.project(m.vertices(torch.from_numpy(c)), 224)[0]
    mean = m.meanshape
    chin, top = int(mean[:, 1].argmax()), int(mean[:, 1].argmin())  # model space: y down
    assert p[chin, 1] > p[top, 1]  # the chin is lower in the image
    nose = int(mean[:, 2].argmin())  # model space: the face looks to -z
    assert p[nose, 2] < p[:, 2].mean()  # ... so the nose is nearest the camera


# ---------------------------------------------------------------- rasteriser


def brute_force(screen: np.ndarray, tri: np.ndarray, size: int) -> np.ndarray:
    """Per pixel, per triangle: inside test at the pixel centre and perspective-correct depth; nearest wins."""
    out = np.full((size, size), -1)
    best = np.full((size, size), np.inf)
    for f, (a, b, c) in enumerate(tri):
        (xa, ya, za), (xb, yb, zb), (xc, yc, zc) = screen[a], screen[b], screen[c]
        area = (xb - xa) * (yc - ya) - (xc - xa) * (yb - ya)
        if abs(area) < 1e-12:
            continue
        for r in range(size):
            for col in range(size):
                px, py = col + 0.5, r + 0.5
                w0 = ((xc - xb) * (py - yb) - (yc - yb) * (px - xb)) / area
                w1 = ((xa - xc) * (py - yc) - (ya - yc) * (px - xc)) / area
                w2 = ((xb - xa) * (py - ya) - (yb - ya) * (px - xa)) / area
                if min(w0, w1, w2) < 0:
                    continue
                depth = 1 / (w0 / za + w1 / zb + w2 / zc)
                if depth < best[r, col] or (depth == best[r, col] and f > out[r, col]):
                    best[r, col], out[r, col] = depth, f
    return out


@pytest.mark.parametrize("candidates", [None, 5])
def test_rasteriser_matches_brute_force(monkeypatch, candidates):
    if candidates:  # batches of a few triangles each: the memory bound must not change the picture
        monkeypatch.setattr(R, "CANDIDATES", candidates)
    rng = np.random.default_rng(0)
    size = 20
    verts = np.concatenate([rng.uniform(-4, size + 4, (30, 2)), rng.uniform(5, 15, (30, 1))], 1)
    tri = np.stack([rng.choice(30, 3, replace=False) for _ in range(25)])
    tri[0] = [0, 1, 2]
    verts[[0, 1, 2], :2] = [[-30, -30], [60, -20], [-10, 70]]  # one triangle larger than the image
    got, depth = R.rasterize(torch.from_numpy(verts)[None], torch.from_numpy(tri), size)
    want = brute_force(verts, tri, size)
    np.testing.assert_array_equal(got[0].numpy(), want)
    assert torch.isinf(depth[0][got[0] < 0]).all() and torch.isfinite(depth[0][got[0] >= 0]).all()


def test_nearer_triangle_wins_whatever_the_order():
    square = [[2, 2], [14, 2], [2, 14]]
    verts = torch.tensor([[*p, 9.0] for p in square] + [[*p, 5.0] for p in square])
    for tri in ([[0, 1, 2], [3, 4, 5]], [[3, 4, 5], [0, 1, 2]]):
        index, depth = R.rasterize(verts[None], torch.tensor(tri), 16)
        near = tri.index([3, 4, 5])
        assert (index[0][index[0] >= 0] == near).all() and depth[0][4, 4].item() == pytest.approx(5.0)


def test_triangles_behind_the_camera_are_dropped():
    verts = torch.tensor([[[0.0, 0, -1], [16, 0, -1], [0, 16, -1]]])
    index, _ = R.rasterize(verts, torch.tensor([[0, 1, 2]]), 16)
    assert (index < 0).all()


def test_flat_grey_shading_levels():
    # one triangle facing the camera, one tilted by 60 degrees about x
    s = math.sin(math.radians(60))
    world = torch.tensor([[[0.0, 0, 0], [1, 0, 0], [0, 1, 0], [0, 0, 0], [1, 0, 0], [0, 0.5, s]]])
    levels = R.face_shading(world, torch.tensor([[0, 1, 2], [3, 4, 5], [0, 2, 1]]))[0]
    # the third is the first wound the other way: its normal points away from the light -> ambient only
    assert levels.tolist() == pytest.approx([200 * (0.1 + 0.95), 200 * (0.1 + 0.95 * 0.5), 200 * 0.1], abs=1e-3)
    levels = levels[:2]
    frames = R.shade(torch.tensor([[[0, 1], [-1, 0]]]), levels[None])
    assert frames.shape == (1, 2, 2, 3) and frames.dtype == torch.uint8
    assert frames[0, :, :, 0].tolist() == [[210, 115], [0, 210]] and (frames[..., 0] == frames[..., 2]).all()


def test_grey_renderer_chunks_and_checks(model_file):
    m = F.FaceVerseModel.load(model_file)
    c = react_pose(10)
    a = np.concatenate(list(GreyRenderer(m, 64, chunk=3).frames(c)))
    b = np.concatenate(list(GreyRenderer(m, 64, chunk=32).frames(c)))
    assert a.shape == (10, 64, 64, 3) and np.array_equal(a, b)
    assert 0.15 < (a[..., 0] > 0).mean() < 0.8  # a head, not an empty or full frame
    assert not np.array_equal(a[0], a[5])  # it moves
    with pytest.raises(ValueError, match="even number"):
        GreyRenderer(m, 63)
    c[3, 10] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        list(GreyRenderer(m, 64).frames(c))


# ---------------------------------------------------------------- mp4


def test_mp4_frames_fps_and_audio(tmp_path):
    ramp = np.linspace(0, 1, 48)[None, None, :, None] * np.linspace(0.2, 1, 32)[None, :, None, None]
    frames = (ramp * [200, 120, 60] + np.arange(30)[:, None, None, None] * 1.5).astype(np.uint8)  # smooth pictures
    audio = np.sin(np.arange(16000) / 7).astype(np.float32) * 0.5
    assert write_mp4(tmp_path / "v.mp4", [frames[:7], frames[7:]], audio=audio) == 30
    with av.open(str(tmp_path / "v.mp4")) as c:
        video = c.streams.video[0]
        assert (video.width, video.height, video.average_rate) == (48, 32, 25)
        assert c.streams.audio[0].codec_context.name == "aac"
        decoded = [f.to_ndarray(format="rgb24") for f in c.decode(video=0)]
    assert len(decoded) == 30
    assert np.abs(decoded[0].astype(int) - frames[0]).mean() < 4  # lossy, but the same picture
    assert [p.name for p in tmp_path.iterdir()] == ["v.mp4"]  # no temp file left
    with pytest.raises(ValueError, match="even size"):
        write_mp4(tmp_path / "odd.mp4", frames[:, :31])
    with pytest.raises(ValueError, match="no frames"):
        write_mp4(tmp_path / "none.mp4", [])
    assert not (tmp_path / "odd.mp4").exists() and not (tmp_path / "none.mp4").exists()


# ---------------------------------------------------------------- reactdiff render


@pytest.fixture(scope="module")
def samples(tiny_shards, tmp_path_factory):
    out = tmp_path_factory.mktemp("samples")
    sample_random_init(tiny_shards, out, FRAMES, k=2, window=32)
    return out


def videos(folder):
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*.mp4"))


def test_render_command_resumes_and_fans_out(samples, tiny_shards, model_file, tmp_path, capsys):
    out = tmp_path / "render"
    args = ["--samples", str(samples), "--faceverse", str(model_file), "--out", str(out), "--shards", str(tiny_shards),
            "--ground-truth", "--rows", "0,3", "--size", "32", "--quiet"]
    assert render_main(args) == 0
    assert videos(out) == ["00000/gt.mp4", "00000/k0.mp4", "00000/k1.mp4", "00003/gt.mp4", "00003/k0.mp4",
                           "00003/k1.mp4"]
    with av.open(str(out / "00003/k1.mp4")) as c:
        assert (c.streams.video[0].width, c.streams.video[0].height) == (64, 32)  # speaker | listener
        assert len(c.streams.audio) == 1 and sum(1 for _ in c.decode(video=0)) == FRAMES
    doc = json.loads((out / "render.json").read_text())
    assert len(doc["videos"]) == 6 and doc["settings"]["speaker_beside"] is True
    stamp = (out / "00000/k0.mp4").stat().st_mtime_ns
    (out / "00003/k1.mp4").unlink()  # a lost video: the rerun makes only that one
    assert render_main(args[:-1]) == 0
    assert "6 videos for this task (5 already there)" in capsys.readouterr().out
    assert (out / "00000/k0.mp4").stat().st_mtime_ns == stamp and (out / "00003/k1.mp4").is_file()
    # two fan-out tasks split the videos between them and write their own part files
    fan = tmp_path / "fan"
    for rank in (0, 1):
        assert render_main([*args[:-1], "--out", str(fan), "--rank", str(rank), "--world-size", "2", "--quiet"]) == 0
        assert (fan / "render.json").is_file() == (rank == 1)  # written once the set is complete
    names = [v["video"] for v in json.loads((fan / "render.json").read_text())["videos"]]
    assert sorted(names) == videos(fan) == videos(out) and len(set(names)) == 6
    # an interrupted run (videos, settings.json, no render.json yet) resumed with other settings: refused too
    (out / "render.json").unlink()
    assert render_main([*args, "--size", "16"]) == 2
    assert "holds videos rendered with other settings (size: 32 -> 16)" in capsys.readouterr().err
    # other settings into the same folder: refused, unless --overwrite
    assert render_main([*args, "--size", "16"]) == 2
    assert "holds videos rendered with other settings (size: 32 -> 16)" in capsys.readouterr().err
    assert render_main([*args, "--size", "16", "--overwrite"]) == 0
    with av.open(str(out / "00000/gt.mp4")) as c:
        assert c.streams.video[0].height == 16


def test_render_without_shards_and_errors(samples, tiny_shards, model_file, tmp_path, capsys):
    out = tmp_path / "alone"
    assert render_main(["--samples", str(samples), "--faceverse", str(model_file), "--out", str(out), "--k", "1",
                        "--rows", "1", "--size", "16", "--frames", "5", "--batch", "2", "--quiet"]) == 0
    with av.open(str(out / "00001/k0.mp4")) as c:
        assert c.streams.video[0].width == 16 and not c.streams.audio and sum(1 for _ in c.decode(video=0)) == 5
    base = ["--samples", str(samples), "--out", str(tmp_path / "x"), "--quiet"]
    assert render_main([*base, "--faceverse", str(tmp_path / "missing.npy")]) == 2
    assert "missing.npy: FaceVerse model file not found" in capsys.readouterr().err
    assert render_main([*base, "--faceverse", str(model_file), "--rows", "0,999"]) == 2
    assert "rows [999] are not in" in capsys.readouterr().err
    assert render_main([*base, "--faceverse", str(model_file), "--ground-truth"]) == 2
    assert "--ground-truth needs --shards" in capsys.readouterr().err
    assert render_main([*base, "--faceverse", str(model_file), "--frames", "0"]) == 2
    assert "--frames must be >= 1" in capsys.readouterr().err
    assert not (tmp_path / "x").exists()


def test_render_grid_shows_speaker_true_listener_and_reactions(samples, tiny_shards, model_file, tmp_path, capsys):
    out = tmp_path / "grid"
    args = ["--samples", str(samples), "--faceverse", str(model_file), "--out", str(out), "--shards",
            str(tiny_shards), "--grid", "--rows", "1", "--size", "32", "--quiet"]
    assert render_main(args) == 0
    assert videos(out) == ["00001/grid.mp4"]
    with av.open(str(out / "00001/grid.mp4")) as c:
        assert (c.streams.video[0].width, c.streams.video[0].height) == (4 * 32, 32 + 16)  # labels over 4 panels
        assert len(c.streams.audio) == 1
        decoded = [f.to_ndarray(format="rgb24") for f in c.decode(video=0)]
    assert len(decoded) == FRAMES
    # each panel is what the plain render draws of its sequence: the true listener's panel is gt.mp4's listener half
    single = tmp_path / "single"
    assert render_main(["--samples", str(samples), "--faceverse", str(model_file), "--out", str(single),
                        "--shards", str(tiny_shards), "--ground-truth", "--rows", "1", "--k", "1", "--size", "32",
                        "--quiet"]) == 0
    with av.open(str(single / "00001/gt.mp4")) as c:
        gt = [f.to_ndarray(format="rgb24") for f in c.decode(video=0)]
    with av.open(str(single / "00001/k0.mp4")) as c:
        k0 = [f.to_ndarray(format="rgb24") for f in c.decode(video=0)]
    for t in (0, FRAMES - 1):
        assert np.abs(decoded[t][16:, 32:64].astype(int) - gt[t][:, 32:].astype(int)).mean() < 6
        assert np.abs(decoded[t][16:, 64:96].astype(int) - k0[t][:, 32:].astype(int)).mean() < 6
        assert np.abs(decoded[t][16:, :32].astype(int) - gt[t][:, :32].astype(int)).mean() < 6  # the speaker
    strip = decoded[0][:16].astype(int)
    assert strip.max() > 150 and np.median(strip) < 50  # light labels on a dark strip, on top of every frame
    assert np.abs(decoded[-1][:16].astype(int) - strip).mean() < 3
    assert json.loads((out / "render.json").read_text())["videos"][0]["video"] == "00001/grid.mp4"
    assert render_main([a for a in args if a not in ("--shards", str(tiny_shards))]) == 2
    assert "--grid needs --shards" in capsys.readouterr().err


def test_a_render_folder_of_the_old_settings_name_still_resumes():
    from reactdiff.render.plan import row_selection, upgrade_settings

    old = {"samples": "/x", "rows": "0,3", "k": 2}
    assert upgrade_settings(old) == {"samples": "/x", "row_selection": "0,3", "k": 2}
    assert row_selection(old) == row_selection(upgrade_settings(old)) == "0,3"
    assert upgrade_settings({"row_selection": None}) == {"row_selection": None}
