"""tools/make_shards.py on real files: round trip, plain-tar/WebDataset readability, determinism, resume, rejects."""
from __future__ import annotations

import io
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
import torchaudio.functional as AF

from reactdiff.data import shard_folder as mf
from reactdiff.data.layout import ClipPath, read_pair_list
from reactdiff.data.make_shards import ShardingError, make_shards
from reactdiff.data.sample_format import decode_audio, decode_json, decode_npy
from reactdiff.data.shards_cli import EXIT_REJECTS, main as shards_main
from reactdiff.data.tario import iter_samples

from conftest import make_react

REPO = Path(__file__).resolve().parent.parent


def all_samples(folder: Path) -> list[dict]:
    index = mf.load_index(folder)
    out = []
    for e in index["shards"]:
        if e["file"]:
            with open(folder / e["file"], "rb") as f:
                out += list(iter_samples(f))
    return out


def tar_hashes(folder: Path) -> dict:
    return {p.name: mf.sha256_file(p) for p in sorted(folder.glob("*.tar"))}


def test_round_trip_values_equal_the_source(tiny_react, tiny_shards):
    rows = read_pair_list(tiny_react / "train.csv")
    samples = all_samples(tiny_shards)
    assert [decode_json(s["meta.json"])["csv_row"] for s in samples] == [r.row for r in rows]
    split_dir = tiny_react / "train"
    for s, row in zip(samples, rows):
        meta = decode_json(s["meta.json"])
        assert meta["frames"] == 120 and meta["fps"] == 25 and meta["audio_rate"] == 16000
        assert meta["matrix_rows"] == {"a": row.row, "b": len(rows) + row.row}
        assert meta["features"]["kind"] == "logmel" and meta["features"]["fps"] == 25
        for person, rel in (("a", row.a), ("b", row.b)):
            clip = ClipPath.parse(rel)
            assert meta["paths"][person] == rel and meta["persons"][person] == clip.person
            src_fv = np.load(clip.fv(split_dir)).reshape(-1, 58)
            assert np.array_equal(decode_npy(s[f"{person}.fv.npy"]), src_fv)  # bit-exact
            src_em = np.loadtxt(clip.emotion(split_dir), delimiter=",", skiprows=1, dtype=np.float32)
            assert np.array_equal(decode_npy(s[f"{person}.emotion.npy"]), src_em)
            wav, rate = sf.read(clip.audio(split_dir), dtype="float32", always_2d=True)
            want = AF.resample(torch.from_numpy(wav.mean(1)), rate, 16000).numpy()
            got = decode_audio(s[f"{person}.audio.flac"])
            assert got.shape == want.shape and np.abs(got - want).max() <= 1.0 / 32768 + 1e-6
            assert s[f"{person}.ref.png"] == (clip.video_frames(split_dir) / "1.png").read_bytes()
            feat = decode_npy(s[f"{person}.feat.npy"])
            assert feat.dtype == np.float16 and feat.shape == (120, 80)


def test_shards_are_plain_tars_readable_without_our_code(tiny_shards):
    import webdataset as wds

    index = mf.load_index(tiny_shards)
    first = tiny_shards / index["shards"][0]["file"]
    names = subprocess.run(["tar", "-tf", str(first)], capture_output=True, text=True, check=True).stdout.split()
    assert names[0].endswith(".a.audio.flac") and any(n.endswith(".meta.json") for n in names)
    urls = [str(tiny_shards / e["file"]) for e in index["shards"]]
    keys = [s["__key__"] for s in wds.WebDataset(urls, shardshuffle=False)]
    assert keys == [k for e in index["shards"] for k in e["keys"]]
    assert index["totals"]["samples"] == 6 and index["complete"]
    assert set(index["side_files"]) == {"mean_face.npy", "std_face.npy", "neighbours.npy"}
    assert np.load(tiny_shards / "neighbours.npy").shape == (12, 12)
    for e in index["shards"]:
        assert mf.sha256_file(tiny_shards / e["file"]) == e["sha256"]
        assert (tiny_shards / e["file"]).stat().st_size == e["bytes"]


def test_stock_webdataset_decodes_every_member_with_our_audio_handler(tiny_shards):
    import webdataset as wds

    from reactdiff.data.sample_format import wds_audio
    from reactdiff.data.shard_index import ShardIndex

    index = ShardIndex.open(tiny_shards)
    samples = list(wds.WebDataset([str(f) for f in index.files], shardshuffle=False).decode(wds_audio, "rgb8"))
    assert len(samples) == index.num_samples
    raw = index.read(0, 0)
    first = samples[0]
    assert first["__key__"] == index.keys[0][0] and first["meta.json"]["frames"] > 0
    for name, value in first.items():
        if name.startswith("__"):
            continue
        assert not isinstance(value, bytes), f"{name} left undecoded"
        if name.endswith(".npy"):
            np.testing.assert_array_equal(value, decode_npy(raw[name]))
        elif name.endswith(".flac"):
            np.testing.assert_array_equal(value, decode_audio(raw[name]))
        elif name.endswith(".png"):
            assert value.dtype == np.uint8 and value.ndim == 3


def test_same_input_same_bytes_whatever_the_worker_count(tiny_react, tiny_shards, tmp_path):
    make_shards(tiny_react, "train", tmp_path / "w2", samples_per_shard=2, audio_features="logmel", workers=2,
                progress=False)
    assert tar_hashes(tmp_path / "w2") == tar_hashes(tiny_shards)
    a, b = mf.load_index(tmp_path / "w2"), mf.load_index(tiny_shards)
    assert a["shards"] == b["shards"]


def test_output_in_the_way_and_changed_settings_are_refused(tiny_react, tiny_shards, tmp_path, capsys):
    out = tmp_path / "s"
    make_shards(tiny_react, "train", out, samples_per_shard=3, progress=False)
    with pytest.raises(ShardingError, match="--resume"):
        make_shards(tiny_react, "train", out, samples_per_shard=3, progress=False)
    with pytest.raises(ShardingError, match="samples_per_shard: was 3, now 2"):
        make_shards(tiny_react, "train", out, samples_per_shard=2, resume=True, progress=False)
    assert shards_main(["--react-root", str(tiny_react), "--split", "train", "--out", str(out), "--quiet"]) == 2
    assert "already holds shards" in capsys.readouterr().err
    with pytest.raises(ShardingError, match="split folder"):
        make_shards(tiny_react, "val", tmp_path / "v", progress=False)


def test_a_neighbour_matrix_of_the_wrong_size_is_refused(react_copy, tmp_path):
    np.save(react_copy / "neighbour_emotion_test.npy", np.ones((3, 3), np.uint8))  # 2 test rows: needs (4, 4)
    with pytest.raises(ShardingError, match=r"shape \(3, 3\); expected \(4, 4\)"):
        make_shards(react_copy, "test", tmp_path / "t", progress=False)


def test_resume_keeps_verified_shards_and_redoes_the_rest(tiny_react, tiny_shards, tmp_path):
    out = tmp_path / "r"
    make_shards(tiny_react, "train", out, samples_per_shard=2, audio_features="logmel", progress=False)
    # a crash state: shard 0 recorded; shard 1 written but not recorded; shard 2 missing; a half-written temp file
    index = mf.load_index(out)
    index["shards"], index["complete"] = index["shards"][:1], False
    mf.write_index(out, index)
    (out / "train-000002.tar").unlink()
    (out / ".train-000002.tar.abc.tmp").write_bytes(b"partial")
    kept = (out / "train-000000.tar").stat()
    result = make_shards(tiny_react, "train", out, samples_per_shard=2, audio_features="logmel", resume=True,
                         progress=False)
    assert result["run"]["shards_kept"] == 1 and result["run"]["shards_written"] == 2
    after = (out / "train-000000.tar").stat()
    assert (after.st_ino, after.st_mtime_ns) == (kept.st_ino, kept.st_mtime_ns)  # not redone
    assert not list(out.glob(".*.tmp"))
    assert tar_hashes(out) == tar_hashes(tiny_shards)
    assert mf.load_index(out)["shards"] == mf.load_index(tiny_shards)["shards"]  # no duplicates, same content
    # a corrupted recorded shard is detected and rewritten
    (out / "train-000001.tar").write_bytes(b"garbage")
    make_shards(tiny_react, "train", out, samples_per_shard=2, audio_features="logmel", resume=True, progress=False)
    assert tar_hashes(out) == tar_hashes(tiny_shards)


def test_kill_9_then_resume(tmp_path):
    react = make_react(tmp_path / "react", frames=751, train=3, test=0, video="png")
    out = tmp_path / "out"
    cmd = [sys.executable, str(REPO / "tools/make_shards.py"), "--react-root", str(react), "--split", "train",
           "--out", str(out), "--samples-per-shard", "1", "--audio-features", "logmel", "--workers", "1", "--quiet"]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    while time.time() < deadline and proc.poll() is None:
        try:
            if 1 <= len(json.loads((out / "index.json").read_text())["shards"]) < 6:
                break
        except (FileNotFoundError, json.JSONDecodeError, KeyError):
            pass
        time.sleep(0.002)
    killed = proc.poll() is None
    if killed:
        os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    if killed:
        assert not mf.load_index(out)["complete"]
    print("killed mid-run:", killed)
    before = {p.name: p.stat().st_mtime_ns for p in out.glob("*.tar")}
    recorded = {e["file"] for e in mf.load_index(out)["shards"]}
    res = subprocess.run(cmd + ["--resume"], capture_output=True, text=True)
    assert res.returncode == 0, res.stderr
    final = mf.load_index(out)
    assert final["complete"] and final["totals"]["samples"] == 6 and len(final["shards"]) == 6
    keys = [k for e in final["shards"] for k in e["keys"]]
    assert len(keys) == len(set(keys)) == 6
    for name in recorded:  # verified shards were kept, not rewritten
        assert (out / name).stat().st_mtime_ns == before[name]
    fresh = tmp_path / "fresh"
    make_shards(react, "train", fresh, samples_per_shard=1, audio_features="logmel", progress=False)
    assert tar_hashes(out) == tar_hashes(fresh)


def _damage(react: Path) -> dict[int, str]:
    """Break one clip per pair-list row in a different way; returns row -> expected words in the reason."""
    rows = read_pair_list(react / "train.csv")
    split = react / "train"
    clips = [ClipPath.parse(r.b) for r in rows]
    clips[0].fv(split).unlink()
    clips[1].fv(split).write_bytes(b"not a numpy file")
    np.save(clips[2].fv(split), np.zeros((120, 57), np.float32))
    bad = np.load(clips[3].fv(split))
    bad[5, 0, 3] = np.nan
    np.save(clips[3].fv(split), bad)
    wav = clips[4].audio(split).read_bytes()
    clips[4].audio(split).write_bytes(wav[: len(wav) // 2])
    lines = clips[5].emotion(split).read_text().splitlines()
    clips[5].emotion(split).write_text("\n".join(",".join(row.split(",")[:24]) for row in lines) + "\n")
    (react / "neighbour_emotion_train.npy").unlink()  # it no longer matches the longer pair list
    with open(react / "train.csv", "a") as f:
        f.write(f"{len(rows)},NoXI/999_2099-01-01_Nowhere/Expert_video/1,NoXI/999_2099-01-01_Nowhere/Novice_video/1\n")
    return {0: "missing 3DMM", 1: "unreadable 3DMM", 2: "shape (120, 57)", 3: "NaN", 4: "truncated audio",
            5: "24 columns", 6: "points nowhere"}


def test_every_bad_input_is_rejected_with_a_reason(react_copy, tmp_path, capsys):
    expected = _damage(react_copy)
    # the damaged rows are spread over all shards; a good clip is added so something is written
    out = tmp_path / "out"
    args = ["--react-root", str(react_copy), "--split", "train", "--out", str(out), "--samples-per-shard", "3",
            "--workers", "2", "--quiet"]
    assert shards_main(args) == EXIT_REJECTS
    assert "7 clip(s) rejected" in capsys.readouterr().err
    rejects = [json.loads(line) for line in (out / "rejects.jsonl").read_text().splitlines()]
    assert {r["row"]: r["reason"] for r in rejects}.keys() == expected.keys()
    for r in rejects:
        assert expected[r["row"]] in r["reason"], r
    index = mf.load_index(out)
    assert index["complete"] and index["totals"]["rejects"] == 7 and index["totals"]["samples"] == 0
    assert shards_main(args[:-1] + ["--quiet", "--overwrite", "--allow-rejects"]) == 0


def test_some_rejects_do_not_stop_the_good_clips(react_copy, tmp_path):
    rows = read_pair_list(react_copy / "train.csv")
    ClipPath.parse(rows[2].a).emotion(react_copy / "train").unlink()
    index = make_shards(react_copy, "train", tmp_path / "o", samples_per_shard=4, progress=False)
    assert index["totals"]["samples"] == 5 and index["totals"]["rejects"] == 1
    assert [k[:5] for e in index["shards"] for k in e["keys"]] == ["00000", "00001", "00003", "00004", "00005"]
    # the neighbour-matrix rows of every sample are recorded in the index (row k, and L + k mirrored), and the
    # index of an older run (without them) gives the same from the samples' meta.json
    from reactdiff.data.shard_index import ShardIndex

    expected = [(0, 6), (1, 7), (3, 9), (4, 10), (5, 11)]
    assert [tuple(r) for e in index["shards"] for r in e["matrix_rows"]] == expected
    assert ShardIndex.open(tmp_path / "o").matrix_rows() == expected
    doc = json.loads((tmp_path / "o" / "index.json").read_text())
    for e in doc["shards"]:
        e.pop("matrix_rows", None)
    (tmp_path / "o" / "index.json").write_text(json.dumps(doc))
    old = ShardIndex.open(tmp_path / "o")
    assert old.recorded_rows is None and old.matrix_rows() == expected
    # the eval launcher checks a task's rows, not its sample positions
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "launch"))
    import slurm as launcher
    from reactdiff.sampling.writer import reaction_path

    out = tmp_path / "eval"
    assert launcher.missing_tasks(out, old, 2) == [0, 1]
    for r in (0, 6, 1, 7, 3, 9):  # task 0 of 2: samples 0-2 = pair rows 0, 1, 3 and their mirrors
        reaction_path(out, r).parent.mkdir(parents=True, exist_ok=True)
        reaction_path(out, r).write_bytes(b"x")
    assert launcher.missing_tasks(out, old, 2) == [1]


def test_wav2vec2_features_from_a_local_folder(tiny_react, tmp_path):
    from transformers import Wav2Vec2Config, Wav2Vec2Model

    cfg = Wav2Vec2Config(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=37,
                         conv_dim=(16, 16, 16, 16, 16, 16, 16), num_feat_extract_layers=7,
                         num_conv_pos_embeddings=16, num_conv_pos_embedding_groups=2)
    torch.manual_seed(0)
    Wav2Vec2Model(cfg).save_pretrained(tmp_path / "w2v")
    out = tmp_path / "s"
    index = make_shards(tiny_react, "train", out, samples_per_shard=6, audio_features=f"wav2vec2:{tmp_path / 'w2v'}",
                        limit=2, progress=False)
    s = all_samples(out)[0]
    feat = decode_npy(s["a.feat.npy"])
    assert feat.shape == (120, 32) and feat.dtype == np.float16 and np.isfinite(feat).all()
    meta = decode_json(s["meta.json"])
    assert meta["features"] == {"kind": "wav2vec2", "dim": 32, "fps": 25, "model": "w2v", "dtype": "float16"}
    assert index["settings"]["audio_features"].startswith("wav2vec2:")
    with pytest.raises(FileNotFoundError, match="config.json"):
        make_shards(tiny_react, "train", tmp_path / "x", audio_features=f"wav2vec2:{tmp_path}", progress=False)


def test_mp4_videos_give_the_reference_frame(tmp_path):
    from PIL import Image

    react = make_react(tmp_path / "react", frames=60, train=1, test=0, video="mp4")
    out = tmp_path / "s"
    make_shards(react, "train", out, progress=False)
    s = all_samples(out)[0]
    image = Image.open(io.BytesIO(s["a.ref.png"]))
    assert image.size == (16, 16)
    assert decode_json(s["meta.json"])["source"]["a"]["video"] == "mp4"
