"""The synthetic REACT generator: exact layout, formats, determinism, neighbour matrices, the planted coupling, CLI."""
from __future__ import annotations

import csv
import hashlib
import json
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from PIL import Image

from reactdiff.data.frame_layout import EMOTION_COLUMNS, EXP, FV_DIM
from reactdiff.data.layout import MODALITY_DIRS, SPLITS, ClipPath, read_pair_list
from reactdiff.data.synthetic import generate_dataset
from reactdiff.data.synthetic.behaviour import behave, draw_style, smile_curve
from reactdiff.data.synthetic.cli import build_parser, main
from reactdiff.data.synthetic.script import jitter, make_template, plan_syllables
from reactdiff.data.synthetic.seeding import rng_for

REPO = Path(__file__).resolve().parents[1]
SMALL = dict(seed=0, sessions={"train": 2, "val": 1, "test": 1}, clips_per_session=2, frames=150, video="png",
             video_size=32, templates=2, progress=False)
SMILE = [EXP["mouthSmileLeft"], EXP["mouthSmileRight"]]


def tree_hashes(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


def pairs_of(root: Path, split: str) -> list[tuple[ClipPath, ClipPath]]:
    return [(ClipPath.parse(r.a), ClipPath.parse(r.b)) for r in read_pair_list(root / f"{split}.csv")]


@pytest.fixture(scope="module")
def small(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("small")
    summary = generate_dataset(root, workers=1, **SMALL)
    assert summary["splits"]["train"] == {"sessions": 2, "clips": 4, "pairs": 4, "samples": 8}
    assert summary["bytes"] == sum(p.stat().st_size for p in root.rglob("*") if p.is_file())
    return root


# ---------------------------------------------------------------- layout and formats

def test_layout_is_exact(small):
    sessions = {}
    for split in SPLITS:
        rows = pairs_of(small, split)
        assert len(rows) == SMALL["sessions"][split] * SMALL["clips_per_session"]
        for a, b in rows:
            assert (a.site, a.session, a.clip) == (b.site, b.session, b.clip) and a.person != b.person
            sessions.setdefault((a.site, a.session), set()).add(split)
            if a.site == "NoXI":
                assert re.fullmatch(r"\d{3}_\d{4}-\d{2}-\d{2}_(Paris|Nottingham|Augsburg)", a.session)
                assert {a.person, b.person} == {"Expert_video", "Novice_video"}
            else:
                assert a.site == "RECOLA" and re.fullmatch(r"group-\d+", a.session)
                assert re.fullmatch(r"P\d+", a.person) and re.fullmatch(r"P\d+", b.person)
            for cp in (a, b):
                d = small / split
                assert cp.fv(d).is_file() and cp.audio(d).is_file() and cp.emotion(d).is_file()
                assert cp.video_frames(d).is_dir()
        clips = sorted({a.clip for a, _ in rows}, key=int)
        assert clips == [str(c) for c in range(1, SMALL["clips_per_session"] + 1)]
        assert sorted(p.name for p in (small / split).iterdir()) == sorted(MODALITY_DIRS)
    assert {site for site, _ in sessions} == {"NoXI", "RECOLA"}
    assert all(len(v) == 1 for v in sessions.values())  # session names unique across splits
    top = sorted(p.name for p in small.iterdir())
    assert top == sorted([*SPLITS, *(f"{s}.csv" for s in SPLITS), *(f"neighbour_emotion_{s}.npy" for s in SPLITS),
                          "mean_face.npy", "std_face.npy", "synthetic.json"])
    assert not [p for p in small.rglob(".*")], "temp files left behind"


def test_formats_shapes_and_ranges(small):
    T = SMALL["frames"]
    for split in SPLITS:
        for a, b in pairs_of(small, split):
            refs = []
            for cp in (a, b):
                d = small / split
                fv = np.load(cp.fv(d))
                assert fv.dtype == np.float32 and fv.shape == (T, 1, FV_DIM)
                fv = fv[:, 0]
                assert fv[:, :52].min() >= 0 and fv[:, :52].max() <= 1
                assert abs(fv[:, 52].mean() - np.pi) < 0.6 and abs(fv[:, 57].mean() - 1.84) < 1.2
                assert np.isfinite(fv).all() and fv[:, 52:].std(0).min() > 1e-4
                info = sf.info(str(cp.audio(d)))
                assert (info.samplerate, info.frames, info.subtype) == (44100, round(T / 25 * 44100), "PCM_16")
                assert info.channels == (2 if cp.site == "NoXI" else 1)
                with open(cp.emotion(d), newline="") as f:
                    rows = list(csv.reader(f))
                assert tuple(rows[0]) == EMOTION_COLUMNS and len(rows) == T + 1
                em = np.asarray(rows[1:], float)
                assert em.shape == (T, 25) and em[:, :15].min() >= 0 and em[:, :15].max() <= 1
                assert np.abs(em[:, 15:17]).max() <= 1 and np.allclose(em[:, 17:].sum(1), 1, atol=1e-5)
                pngs = sorted(p.name for p in cp.video_frames(d).iterdir())
                assert pngs == sorted(f"{i}.png" for i in range(1, T + 1))
                with Image.open(cp.video_frames(d) / "1.png") as im:
                    assert im.size == (32, 32) and im.mode == "RGB"
                    refs.append(np.asarray(im))
            assert not np.array_equal(*refs), "both persons look the same"


def test_mean_std_and_json(small):
    frames = np.concatenate([np.load(cp.fv(small / "train"))[:, 0] for pair in pairs_of(small, "train")
                             for cp in pair]).astype(np.float64)
    mean, std = np.load(small / "mean_face.npy"), np.load(small / "std_face.npy")
    assert mean.shape == std.shape == (58,) and mean.dtype == std.dtype == np.float32
    np.testing.assert_allclose(mean, frames.mean(0), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(std, np.maximum(frames.std(0), 1e-6), rtol=1e-4, atol=1e-6)
    assert 3.0 < mean[52] < 3.4 and 1.0 < mean[57] < 2.7 and mean[:52].max() == mean[:5].max()
    meta = json.loads((small / "synthetic.json").read_text())
    assert meta["seed"] == 0 and meta["args"]["frames"] == SMALL["frames"] and meta["version"] >= 1
    for split in SPLITS:
        rows = read_pair_list(small / f"{split}.csv")
        assert [(c["speaker"], c["listener"]) for c in meta["splits"][split]["clips"]] == [(r.a, r.b) for r in rows]


def test_neighbour_matrix_matches_templates(small):
    meta = json.loads((small / "synthetic.json").read_text())
    off_diagonal = 0
    for split in SPLITS:
        clips = meta["splits"][split]["clips"]
        L = len(clips)
        m = np.load(small / f"neighbour_emotion_{split}.npy")
        assert m.shape == (2 * L, 2 * L) and m.dtype == np.uint8 and set(np.unique(m)) <= {0, 1}
        assert (np.diag(m) == 1).all() and (m == m.T).all()
        speaker = [c["speaker"] for c in clips] + [c["listener"] for c in clips]  # mirrored order
        keys = [(c["template_id"], c["roles"][s.split("/")[2]]) for c, s in zip(clips + clips, speaker)]
        expect = np.array([[ki == kj for kj in keys] for ki in keys], np.uint8)
        np.testing.assert_array_equal(m, expect)
        for i, c in enumerate(clips):  # a clip's two directions are the two roles: never neighbours
            assert m[i, L + i] == 0 and set(c["roles"].values()) == {0, 1}
        off_diagonal += int(m.sum() - 2 * L)
    assert off_diagonal > 0, "no two clips share a template and role: the matrices test nothing"


# ---------------------------------------------------------------- determinism

def test_deterministic_across_runs_and_workers(small, tmp_path):
    generate_dataset(tmp_path / "w2", workers=2, **SMALL)
    assert tree_hashes(small) == tree_hashes(tmp_path / "w2")
    other = dict(SMALL, seed=1, video="none")
    generate_dataset(tmp_path / "s1", **other)
    fv = lambda h: {v for k, v in h.items() if "3D_FV_files" in k}  # noqa: E731
    assert not fv(tree_hashes(small)) & fv(tree_hashes(tmp_path / "s1")), "a different seed gave identical 3DMM files"


def test_mp4_video(tmp_path):
    import av

    kw = dict(seed=3, sessions={"train": 1, "val": 0, "test": 0}, clips_per_session=1, frames=40, video="mp4",
              video_size=32, progress=False)
    generate_dataset(tmp_path / "a", **kw)
    generate_dataset(tmp_path / "b", **kw)
    assert tree_hashes(tmp_path / "a") == tree_hashes(tmp_path / "b")
    for a, b in pairs_of(tmp_path / "a", "train"):
        for cp in (a, b):
            path = cp.video_mp4(tmp_path / "a" / "train")
            assert path.is_file() and not cp.video_frames(tmp_path / "a" / "train").exists()
            with av.open(str(path)) as c:
                frames = [f.to_ndarray(format="rgb24") for f in c.decode(video=0)]
                assert c.streams.video[0].average_rate == 25
            assert len(frames) == 40 and frames[0].shape == (32, 32, 3)
    with pytest.raises(ValueError, match="even"):
        generate_dataset(tmp_path / "odd", **dict(kw, video_size=33))


def test_real_length_single_session(tmp_path):
    generate_dataset(tmp_path, seed=5, sessions={"train": 1, "val": 0, "test": 0}, clips_per_session=1,
                     video="png", video_size=16, progress=False)
    (a, b), = pairs_of(tmp_path, "train")
    for cp in (a, b):
        d = tmp_path / "train"
        assert np.load(cp.fv(d)).shape == (751, 1, 58)
        assert sf.info(str(cp.audio(d))).frames == 751 * 1764
        assert len(list(cp.video_frames(d).iterdir())) == 751
        assert len(cp.emotion(d).read_text().splitlines()) == 752


# ---------------------------------------------------------------- the planted coupling

def voice_activity(path: Path, T: int, threshold: float = -1.9) -> np.ndarray:
    """Frame voice activity from the wav alone: log10 frame RMS above a threshold, gaps of <= 4 frames closed."""
    a, _ = sf.read(str(path), dtype="float32", always_2d=True)
    hop = len(a) // T
    on = np.log10(np.sqrt((a[:T * hop, 0].reshape(T, hop) ** 2).mean(1)) + 1e-6) > threshold
    k, windows = 2, np.lib.stride_tricks.sliding_window_view
    dilated = windows(np.pad(on, k), 2 * k + 1).max(1)
    return windows(np.pad(dilated, k, constant_values=True), 2 * k + 1).min(1).astype(float)


def smooth(x: np.ndarray, w: int) -> np.ndarray:
    return np.convolve(x, np.ones(w) / w, mode="same")


def pooled_lag_corr(xs, ys, masks, lag: int) -> float:
    """corr(x(t - lag), y(t)) over all clips, at the frames t where the mask holds."""
    a, b = [], []
    for x, y, m in zip(xs, ys, masks):
        T = len(x)
        sx, sy, sm = (x[:T - lag], y[lag:], m[lag:]) if lag >= 0 else (x[-lag:], y[:T + lag], m[:T + lag])
        a.append(sx[sm])
        b.append(sy[sm])
    return float(np.corrcoef(np.concatenate(a), np.concatenate(b))[0, 1])


@pytest.fixture(scope="module")
def coupled(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("coupled")
    generate_dataset(root, seed=11, sessions={"train": 3, "val": 0, "test": 0}, clips_per_session=2, frames=500,
                     video="none", templates=4, progress=False)
    return root


def test_listener_nods_follow_speaker_phrase_ends(coupled):
    d = coupled / "train"
    meta = json.loads((coupled / "synthetic.json").read_text())["splits"]["train"]["clips"]
    samples = [(a, b, c["template_id"]) for (a, b), c in zip(pairs_of(coupled, "train"), meta)]
    samples += [(b, a, t) for a, b, t in samples]
    T = 500

    def signals(speakers):
        offs, nods, masks = [], [], []
        for (_, listener, _), speaker in zip(samples, speakers):
            va = voice_activity(speaker.audio(d), T)
            offs.append(smooth(np.maximum(0.0, np.r_[0.0, va[:-1] - va[1:]]), 15))  # speaker phrase ends
            pitch = np.load(listener.fv(d))[:, 0, 52]
            nods.append(smooth(np.r_[0.0, np.diff(pitch)] ** 2, 15))  # listener head-pitch velocity energy
            masks.append(voice_activity(listener.audio(d), T) < 0.5)  # while the listener is silent
        return offs, nods, masks

    def best(sig, lags):
        return max(pooled_lag_corr(*sig, lag) for lag in lags)

    real = signals([s for s, _, _ in samples])
    # control: the speaker of another clip built from a different template (no coupling to this listener)
    control = signals([next(s for s, _, t in samples[i + 1:] + samples[:i] if t != samples[i][2])
                       for i in range(len(samples))])
    planted = best(real, range(8, 29, 2))  # lag 8-12 plus half a nod (1-3 cycles at ~2 Hz)
    reversed_ = best(real, range(-28, -7, 2))
    unrelated = best(control, range(8, 29, 2))
    assert planted > 0.12 and planted > reversed_ + 0.08 and planted > unrelated + 0.08, (planted, reversed_, unrelated)


def test_listener_smiles_mimic_speaker_with_lag(coupled):
    d = coupled / "train"
    T = 500
    xs, ys, masks = [], [], []
    for a, b in pairs_of(coupled, "train"):
        for speaker, listener in ((a, b), (b, a)):
            xs.append(np.r_[0.0, np.diff(np.load(speaker.fv(d))[:, 0, SMILE].mean(1))])
            ys.append(np.r_[0.0, np.diff(np.load(listener.fv(d))[:, 0, SMILE].mean(1))])
            # the speaker holds the floor (its turn), the listener does not
            masks.append((smooth(voice_activity(speaker.audio(d), T), 25) > 0.5)
                         & (smooth(voice_activity(listener.audio(d), T), 25) < 0.5))
    at = {lag: pooled_lag_corr(xs, ys, masks, lag) for lag in (-10, 0, 8, 10, 12)}
    planted = max(at[8], at[10], at[12])
    assert planted > 0.25 and planted > at[0] + 0.15 and planted > at[-10] + 0.15, at


def test_coupling_off_removes_the_lagged_smile():
    """The lagged smile correlation comes from the planted reactions, not from shared scripts."""
    T, gains = 751, {}
    for coupling in (1.0, 0.0):
        x, y = [], []
        for k in range(6):
            tpl = make_template(rng_for(k, "t"), T)
            scripts = [jitter(tpl[r], rng_for(k, "j", str(r)), T) for r in (0, 1)]
            syl = plan_syllables(scripts[1], rng_for(k, "s"))
            style = draw_style(rng_for(k, "p"))
            fv = behave(scripts[1], scripts[0], syl, style, T, rng_for(k, "b"), coupling=coupling).fv
            drive = smile_curve(np.arange(T, dtype=float), scripts[0].smiles)  # role 0's own (scripted) smiles
            x.append(np.r_[0.0, np.diff(drive)])
            y.append(np.r_[0.0, np.diff(fv[:, SMILE].mean(1))])
        gains[coupling] = max(pooled_lag_corr(x, y, [np.ones(T, bool)] * 6, lag) for lag in range(8, 16))
    assert gains[1.0] > 0.3 and gains[0.0] < 0.1, gains


# ---------------------------------------------------------------- CLI

def test_refuses_non_empty_folder_and_force(tmp_path, capsys):
    out = tmp_path / "data"
    out.mkdir()
    (out / "keep.txt").write_text("not ours")
    with pytest.raises(FileExistsError, match=re.escape(str(out))):
        generate_dataset(out, frames=30, video="none", sessions={"train": 1}, progress=False)
    args = ["--out", str(out), "--frames", "30", "--video", "none", "--train-sessions", "1", "--val-sessions", "0",
            "--test-sessions", "0", "--clips-per-session", "1", "--quiet"]
    assert main(args) == 2
    assert str(out) in capsys.readouterr().err
    assert main(args + ["--force"]) == 0
    assert (out / "keep.txt").read_text() == "not ours" and (out / "train.csv").is_file()
    assert main(args + ["--force", "--seed", "1"]) == 0  # replaces its own files
    assert json.loads((out / "synthetic.json").read_text())["seed"] == 1


def test_cli_help_and_wrapper(tmp_path):
    with pytest.raises(SystemExit) as e:
        build_parser().parse_args(["--help"])
    assert e.value.code == 0
    ns = build_parser().parse_args(["--out", "x"])
    assert (ns.seed, ns.train_sessions, ns.val_sessions, ns.test_sessions, ns.clips_per_session, ns.frames,
            ns.video, ns.video_size, ns.templates, ns.workers) == (0, 3, 1, 2, 2, 751, "png", 64, 4, 1)
    r = subprocess.run([sys.executable, str(REPO / "tools" / "make_synthetic_react.py"), "--out", str(tmp_path / "d"),
                        "--frames", "30", "--video", "none", "--train-sessions", "1", "--val-sessions", "0",
                        "--test-sessions", "0", "--clips-per-session", "1"],
                       capture_output=True, text=True, cwd=tmp_path, timeout=120)
    assert r.returncode == 0, r.stderr
    assert "Wrote a synthetic REACT dataset" in r.stdout and (tmp_path / "d" / "train.csv").is_file()
    r = subprocess.run([sys.executable, str(REPO / "tools" / "make_synthetic_react.py"), "--help"],
                       capture_output=True, text=True, cwd=tmp_path, timeout=120)
    assert r.returncode == 0 and "--clips-per-session" in r.stdout
