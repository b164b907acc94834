"""The MARS layout (REACT 2025/2026): discovery and pairing by stem, the protocols' directions, the session-level
appropriate sets. The tests write small files of MARS's format."""
from __future__ import annotations

import json
import random

import numpy as np
import pytest

from reactdiff.data import mars_layout as M


def write_clip(root, split, session, stem, roles=M.ROLES, frames=40):
    for role in roles:
        path = M.MarsClip(session, stem).path(root / split, M.COEFFS_DIR, role)
        path.parent.mkdir(parents=True, exist_ok=True)
        np.save(path, np.zeros((frames, 58), np.float32))


@pytest.fixture
def mars(tmp_path):
    for s, n in (("session2", 12), ("session10", 3), ("session0", 1)):
        for i in range(n):
            write_clip(tmp_path, "train", s, f"Camera-2024-06-{21 + i:02d}-103121-103102")
    write_clip(tmp_path, "train", "session2", "Camera-orphan-speaker", roles=("speaker",))
    write_clip(tmp_path, "train", "session10", "Camera-orphan-listener", roles=("listener",))
    return tmp_path


def test_discover_pairs_by_stem_in_session_order_and_rejects_orphans(mars, tmp_path):
    assert M.is_mars(mars, "train") and not M.is_mars(mars, "val")
    clips, rejects = M.discover(mars, "train")
    assert len(clips) == 16
    assert [c.session for c in clips] == ["session0"] + ["session2"] * 12 + ["session10"] * 3  # numeric order
    assert clips[1].stem < clips[2].stem and clips[1].key == f"session2/{clips[1].stem}"
    assert sorted(r["clip"] for r in rejects) == ["session10/Camera-orphan-listener", "session2/Camera-orphan-speaker"]
    assert any("speaker coefficients session2/Camera-orphan-speaker.npy have no listener partner" in r["reason"]
               for r in rejects)
    with pytest.raises(M.MarsLayoutError, match="coefficients.*speaker"):
        M.discover(mars, "val")
    (tmp_path / "test" / M.COEFFS_DIR / "speaker").mkdir(parents=True)
    (tmp_path / "test" / M.COEFFS_DIR / "listener").mkdir(parents=True)
    with pytest.raises(M.MarsLayoutError, match="no clip has coefficients for both roles"):
        M.discover(mars, "test")


def test_protocol_directions(mars):
    clips, _ = M.discover(mars, "train")
    both, one = M.inputs(clips, "react2025"), M.inputs(clips, "react2026")
    assert len(both) == 2 * len(clips) and [r for _, r in both] == ["speaker"] * 16 + ["listener"] * 16
    assert one == [(c, "speaker") for c in clips]
    with pytest.raises(ValueError, match="react2025, react2026"):
        M.inputs(clips, "react2024")


def test_appropriate_sets_are_per_session_seeded_and_order_free(mars):
    clips, _ = M.discover(mars, "train")
    sets = M.appropriate_sets(clips)
    assert len(sets) == 2 * len(clips)
    stems = {s: {c.stem for c in clips if c.session == s} for s in ("session0", "session2", "session10")}
    for c in clips:
        for role in M.ROLES:
            got = sets[(c.key, role)]
            assert got[0] == c.stem and set(got) <= stems[c.session]
            if c.session == "session2":  # 11 others: 9 distinct, never the paired one again
                assert len(got) == 10 and len(set(got)) == 10
            elif c.session == "session10":  # 2 others: drawn with replacement
                assert len(got) == 10 and c.stem not in got[1:]
            else:  # alone in its session: the paired reaction only
                assert got == [c.stem]
    shuffled = clips[:]
    random.Random(0).shuffle(shuffled)
    assert M.appropriate_sets(shuffled) == sets
    assert M.appropriate_sets(clips, seed=7) != sets
    key = (clips[1].key, "speaker")
    assert sets[key] != sets[(clips[1].key, "listener")] or len(stems["session2"]) < 3


# ---------------------------------------------------------------- one person's recording (mars_source)

def write_person(root, clip, role, frames, feat_rows=None, attr_rows=None, seconds=None, rate=16000):
    import soundfile as sf

    split_dir = root / "train"
    rng = np.random.default_rng(len(clip.stem) + M.ROLES.index(role))
    data = {M.COEFFS_DIR: rng.normal(size=(frames, 58)).astype(np.float32),
            M.ATTRS_DIR: rng.random((attr_rows or frames, 25)).astype(np.float32),
            M.FEATS_DIR: rng.normal(size=(feat_rows or frames, 768)).astype(np.float32)}
    for modality, arr in data.items():
        path = clip.path(split_dir, modality, role)
        path.parent.mkdir(parents=True, exist_ok=True)
        np.save(path, arr)
    wav = clip.path(split_dir, M.AUDIO_DIR, role)
    wav.parent.mkdir(parents=True, exist_ok=True)
    sf.write(wav, 0.1 * rng.normal(size=int((seconds or frames / M.FPS) * rate)).astype(np.float32), rate)
    return split_dir, data


def test_a_person_reads_back_exactly_and_bad_files_are_rejected_with_reasons(tmp_path):
    from reactdiff.data import mars_source as S
    from reactdiff.data.react_source import ClipRejected

    clip = M.MarsClip("session1", "Camera-2024-06-21-103121-103102")
    split_dir, data = write_person(tmp_path, clip, "speaker", 90, feat_rows=91, rate=44100)
    face = S.load_coefficients(clip, split_dir, "speaker")
    assert np.array_equal(face, data[M.COEFFS_DIR])
    assert np.array_equal(S.load_attributes(clip, split_dir, "speaker", 90), data[M.ATTRS_DIR])
    audio, info = S.load_audio(clip, split_dir, "speaker", 90)
    assert info == {"rate": 44100, "channels": 1} and abs(len(audio) - 3 * 16000) <= 1
    feats, facts = S.load_features(clip, split_dir, "speaker", 90)
    assert feats.shape == (90, 768) and feats.dtype == np.float16 and facts == {"rows": 91, "aligned_to": 90}
    np.testing.assert_array_equal(feats, data[M.FEATS_DIR][:90].astype(np.float16))

    split_dir, data = write_person(tmp_path, clip, "listener", 90, feat_rows=89)
    feats, _ = S.load_features(clip, split_dir, "listener", 90)
    np.testing.assert_array_equal(feats[-2:], np.repeat(data[M.FEATS_DIR][-1:], 2, 0).astype(np.float16))

    bad = M.MarsClip("session1", "Camera-bad")
    write_person(tmp_path, bad, "speaker", 90, feat_rows=80, attr_rows=88, seconds=2.0)
    with pytest.raises(ClipRejected, match=r"facial-attributes file train/facial-attributes/speaker/session1/"
                                           r"Camera-bad.npy has 88 rows; the 3DMM track has 90 frames"):
        S.load_attributes(bad, split_dir, "speaker", 90)
    with pytest.raises(ClipRejected, match="audio-features .* has 80 rows; the 3DMM track has 90 frames"):
        S.load_features(bad, split_dir, "speaker", 90)
    with pytest.raises(ClipRejected, match=r"truncated audio file .*Camera-bad.wav: 2.00 s, the 3DMM track needs "
                                           r"3.00 s"):
        S.load_audio(bad, split_dir, "speaker", 90)
    with pytest.raises(ClipRejected, match="missing 3DMM file"):
        S.load_coefficients(M.MarsClip("session1", "nope"), split_dir, "speaker")


def test_eeg_and_personality(tmp_path):
    from reactdiff.data import mars_source as S
    from reactdiff.data.react_source import ClipRejected

    clip, split_dir = M.MarsClip("session4", "Camera-x"), tmp_path / "train"
    assert S.load_eeg(clip, split_dir, "listener") is None and S.load_personality(split_dir, "listener") == {}
    path = clip.path(split_dir, M.EEG_DIR, "listener")
    path.parent.mkdir(parents=True)
    header = ["timestamp", *S.EEG_COLUMNS]
    rows = [header, ["0", *[str(i) for i in range(14)]], ["1", "", "x", *["2.5"] * 12]]
    path.write_text("\n".join(",".join(r) for r in rows) + "\n")
    values, mask = S.load_eeg(clip, split_dir, "listener")
    assert values.shape == mask.shape == (2, 14) and values[0, 13] == 13 and mask[0].all()
    assert mask[1, :2].tolist() == [0, 0] and values[1, :2].tolist() == [0, 0] and values[1, 2] == 2.5
    path.write_text("timestamp,TP9\n0,1\n")
    with pytest.raises(ClipRejected, match="lacks the columns"):
        S.load_eeg(clip, split_dir, "listener")
    (split_dir / M.PERSONALITY_DIR).mkdir()
    (split_dir / M.PERSONALITY_DIR / "listener.csv").write_text(
        "video_name,session," + ",".join(S.TRAITS) + "\nCamera-x.mp4,4,1,2,3,4,5\n")
    assert S.load_personality(split_dir, "listener") == {("session4", "Camera-x"): [1.0, 2.0, 3.0, 4.0, 5.0]}


# ---------------------------------------------------------------- MARS -> shards

@pytest.fixture
def mars_split(tmp_path):
    """train: 5 good clips of 60-140 frames in 2 sessions, one with bad attributes, one orphan recording."""
    root = tmp_path / "mars"
    lengths = {("session0", "Camera-a"): 60, ("session0", "Camera-b"): 97, ("session0", "Camera-c"): 75,
               ("session1", "Camera-d"): 140, ("session1", "Camera-e"): 64}
    for (session, stem), frames in lengths.items():
        for role in M.ROLES:
            write_person(root, M.MarsClip(session, stem), role, frames, feat_rows=frames + (role == "speaker"))
    write_person(root, M.MarsClip("session1", "Camera-bad"), "speaker", 80, attr_rows=70)
    write_person(root, M.MarsClip("session1", "Camera-bad"), "listener", 80)
    write_person(root, M.MarsClip("session1", "Camera-alone"), "listener", 80)
    return root, lengths


def shard_samples(folder):
    import io
    import tarfile

    out = {}
    for tar in sorted(folder.glob("*.tar")):
        with tarfile.open(tar) as t:
            for m in t.getmembers():
                key, member = m.name.split(".", 1)
                out.setdefault(key, {})[member] = t.extractfile(m).read()
    return {k: {n: (json.loads(v) if n.endswith(".json") else np.load(io.BytesIO(v)) if n.endswith(".npy") else v)
                for n, v in members.items()} for k, members in out.items()}


def test_mars_split_shards_exactly_with_lengths_fps_sets_and_rejects(mars_split, tmp_path):
    import hashlib

    import webdataset as wds

    from reactdiff.data import mars_shards
    from reactdiff.data.sample_format import wds_audio
    from reactdiff.data.shards_cli import EXIT_REJECTS, main

    root, lengths = mars_split
    out = tmp_path / "shards"
    args = ["--react-root", str(root), "--split", "train", "--out", str(out), "--samples-per-shard", "2",
            "--audio-features", "provided", "--workers", "1", "--quiet"]
    assert main(args) == EXIT_REJECTS
    index = json.loads((out / "index.json").read_text())
    assert index["layout"] == "mars" and index["complete"] and index["totals"]["samples"] == 5
    assert index["totals"]["rejects"] == 2
    rejects = [json.loads(line) for line in (out / "rejects.jsonl").read_text().splitlines()]
    reasons = {r["clip"]: r["reason"] for r in rejects}
    assert "has 70 rows; the 3DMM track has 80 frames" in reasons["session1/Camera-bad"]
    assert "no speaker partner" in reasons["session1/Camera-alone"]
    clips, _ = M.discover(root, "train")
    sets = M.appropriate_sets(clips)
    samples = shard_samples(out)
    assert len(samples) == 5
    for s in samples.values():
        meta = s["meta.json"]
        clip = M.MarsClip(meta["session"], meta["clip"])
        assert meta["fps"] == 30 and meta["frames"] == lengths[(clip.session, clip.stem)]
        assert meta["appropriate"] == {"a": sets[(clip.key, "speaker")], "b": sets[(clip.key, "listener")]}
        for person, role in (("a", "speaker"), ("b", "listener")):
            assert np.array_equal(s[f"{person}.fv.npy"], np.load(clip.path(root / "train", M.COEFFS_DIR, role)))
            assert np.array_equal(s[f"{person}.emotion.npy"], np.load(clip.path(root / "train", M.ATTRS_DIR, role)))
            feats = np.load(clip.path(root / "train", M.FEATS_DIR, role))[:meta["frames"]].astype(np.float16)
            assert np.array_equal(s[f"{person}.feat.npy"], feats)
    assert meta["features"]["kind"] == "provided" and meta["features"]["fps"] == 30
    mean = np.load(out / "mean_face.npy")
    every = np.concatenate([np.load(c.path(root / "train", M.COEFFS_DIR, r)) for c in clips for r in M.ROLES])
    np.testing.assert_allclose(mean, every.mean(0), atol=1e-5)
    # stock webdataset reads the shards, decoding every member
    first = next(iter(wds.WebDataset([str(p) for p in sorted(out.glob("*.tar"))], shardshuffle=False,
                                     empty_check=False).decode(wds_audio)))
    assert first["a.audio.flac"].dtype == np.float32 and first["meta.json"]["layout"] == "mars"
    # deterministic bytes, and --resume redoes only what is missing
    again = tmp_path / "again"
    assert main([*args[:5], str(again), *args[6:], "--allow-rejects"]) == 0
    digest = lambda d: {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in d.glob("*.tar")}  # noqa: E731
    assert digest(out) == digest(again)
    victim = sorted(out.glob("*.tar"))[1]
    victim.unlink()
    index = mars_shards.make_mars_shards(root, "train", out, samples_per_shard=2, audio_features="provided",
                                         resume=True, progress=False)
    assert index["run"]["shards_written"] == 1 and digest(out) == digest(again)
    with pytest.raises(Exception, match="other settings"):
        mars_shards.make_mars_shards(root, "train", out, samples_per_shard=3, audio_features="provided",
                                     resume=True, progress=False)
    # logmel's 25 fps hops are brought to each clip's 30 fps frames: one feature row per face frame
    mel = mars_shards.make_mars_shards(root, "train", tmp_path / "x", audio_features="logmel", progress=False)
    from reactdiff.data.sample_format import decode_json, decode_npy
    from reactdiff.data.shard_index import ShardIndex

    assert mel["complete"]
    idx = ShardIndex.open(tmp_path / "x")
    raw = idx.read(0, 0)
    meta = decode_json(raw["meta.json"])
    assert meta["features"]["fps"] == 30 and decode_npy(raw["a.feat.npy"]).shape == (meta["frames"], 80)


def test_training_windows_from_mars_shards_stay_inside_each_clip(mars_split, tmp_path):
    from reactdiff import config
    from reactdiff.data.mars_shards import make_mars_shards
    from reactdiff.data.reader import BatchStream

    root, lengths = mars_split
    index = make_mars_shards(root, "train", tmp_path / "sh", samples_per_shard=2, audio_features="provided",
                             progress=False)
    n = index["source"]["clips"]
    frames = {}
    for c in index["clips"]:  # every discovered clip has a row; the rejected one has no sample
        frames[c["row"]] = frames[n + c["row"]] = lengths.get((c["session"], c["stem"]))
    cfg = config.load(None, [f"data.shards={tmp_path / 'sh'}", "data.window=48", "data.history=16",
                             "data.batch_size=4", "data.num_workers=0", "data.audio=feat"])
    seen = set()
    for _, batch in zip(range(6), BatchStream(cfg.data)):
        assert batch["speaker_feat"].shape[1:] == (64, 768)
        for row, start in zip(batch["matrix_row"].tolist(), batch["start"].tolist()):
            assert 0 <= start and start + 48 <= frames[row]
            seen.add(row)
    assert len(seen) > 4
