"""The shard reader: role-assigned windows, normalisation, exact coverage in eval, exact resume in training."""
from __future__ import annotations

from collections import Counter

import numpy as np
import pytest
import torch

from reactdiff import config
from reactdiff.data.layout import ClipPath, read_pair_list
from reactdiff.data.make_shards import make_shards
from reactdiff.data.reader import BatchStream


def data_cfg(shards, *overrides):
    return config.load(None, [f"data.shards={shards}", "data.window=16", "data.history=8", "data.batch_size=4",
                              "data.windows_per_clip=2", "data.shuffle_buffer=8", "data.num_workers=0",
                              "data.eval_frames=120", *overrides]).data


def take(stream, n):
    out = []
    for batch in stream:
        out.append(batch)
        if len(out) == n:
            break
    return out


def same_batches(xs, ys):
    assert len(xs) == len(ys)
    for x, y in zip(xs, ys):
        assert x.keys() == y.keys()
        for k in x:
            if isinstance(x[k], torch.Tensor):
                assert torch.equal(x[k], y[k]), k
            else:
                assert x[k] == y[k], k


def source(tiny_react, key_row: int, person: str) -> np.ndarray:
    row = read_pair_list(tiny_react / "train.csv")[key_row]
    return np.load(ClipPath.parse(row.a if person == "a" else row.b).fv(tiny_react / "train")).reshape(-1, 58)


@pytest.mark.parametrize("convention", ["zscore", "center", "none"])
def test_windows_hold_the_right_frames_for_each_role(tiny_react, tiny_shards, convention):
    cfg = data_cfg(tiny_shards, f"data.normalisation={convention}")
    mean, std = np.load(tiny_shards / "mean_face.npy"), np.load(tiny_shards / "std_face.npy")
    norm = {"zscore": lambda x: (x - mean) / std, "center": lambda x: x - mean, "none": lambda x: x}[convention]
    batches = take(BatchStream(cfg), 6)
    roles = set()
    for batch in batches:
        assert batch["speaker_fv"].shape == (4, 24, 58) and batch["speaker_feat"].shape == (4, 24, 80)
        for i in range(4):
            row, start = int(batch["key"][i][:5]), int(batch["start"][i])
            spk, lis = batch["role"][i].split("->")
            roles.add(batch["role"][i])
            assert batch["matrix_row"][i] == row + (6 if spk == "b" else 0)
            lo = start - 8
            valid = batch["valid"][i].numpy()
            assert valid.sum() == 24 - max(0, -lo) and not valid[: max(0, -lo)].any()
            real = slice(max(0, -lo), 24)
            want_s = norm(source(tiny_react, row, spk))[max(lo, 0):start + 16]
            want_l = norm(source(tiny_react, row, lis))[max(lo, 0):start + 16]
            np.testing.assert_allclose(batch["speaker_fv"][i].numpy()[real], want_s, rtol=0, atol=1e-6)
            np.testing.assert_allclose(batch["listener_fv"][i].numpy()[real], want_l, rtol=0, atol=1e-6)
            assert (batch["listener_fv"][i].numpy()[~valid] == 0).all()
    assert roles == {"a->b", "b->a"}


def test_raw_audio_and_emotion_streams(tiny_shards):
    cfg = data_cfg(tiny_shards, "data.audio=raw", "data.emotion=true")
    batch = take(BatchStream(cfg), 1)[0]
    assert batch["speaker_audio"].shape == (4, 24 * 640)
    assert batch["speaker_emotion"].shape == (4, 24, 25) and batch["listener_emotion"].shape == (4, 24, 25)
    assert "speaker_feat" not in batch


@pytest.mark.parametrize("world_size,workers", [(1, 0), (1, 2), (2, 0), (3, 1), (2, 2)])
def test_eval_yields_every_role_sample_once_in_a_known_order(tiny_shards, world_size, workers):
    cfg = data_cfg(tiny_shards, f"data.num_workers={workers}", "data.batch_size=3")
    seen = []
    for rank in range(world_size):
        for batch in BatchStream(cfg, rank=rank, world_size=world_size, train=False):
            assert batch["speaker_fv"].shape[1:] == (120, 58) and bool(batch["valid"].all())
            assert (batch["start"] == 0).all()
            seen += batch["matrix_row"].tolist()
    assert sorted(seen) == list(range(12))
    if workers <= 1:  # ranks hold contiguous stretches of the manifest order, both roles of a sample together
        assert seen == [r for k in range(6) for r in (k, k + 6)]


@pytest.mark.parametrize("workers", [0, 2])
@pytest.mark.parametrize("stop_at", [1, 4, 7])
def test_resume_sees_exactly_the_batches_it_would_have_seen(tiny_shards, workers, stop_at):
    cfg = data_cfg(tiny_shards, f"data.num_workers={workers}")
    straight = take(BatchStream(cfg), 10)
    first = BatchStream(cfg)
    head = take(first, stop_at)
    state = first.state_dict()
    resumed = BatchStream(cfg)
    resumed.load_state_dict(state)
    same_batches(head + take(resumed, 10 - stop_at), straight)
    assert first.batches_per_epoch < 10  # the comparison crosses an epoch boundary


def windows_of(batches) -> list[tuple]:
    return [(k, r, int(st)) for b in batches for k, r, st in zip(b["key"], b["role"], b["start"])]


@pytest.mark.parametrize("layouts", [[(4, 0, 2), (2, 0, 1), (3, 0, None)],   # 4 ranks -> 2 -> 3
                                     [(2, 2, 3), (1, 0, 2), (3, 2, None)],   # and other dataloader workers
                                     [(2, 0, 0), (3, 0, None)]])             # a change at an epoch boundary
def test_resume_on_other_ranks_reads_no_window_of_the_epoch_twice(tiny_shards, layouts):
    """(world size, workers, batches each rank takes; None: the rest of the epoch), resuming from rank 0's state."""
    state, seen, dropped = None, [], 0
    for world, workers, n in layouts:
        cfg = data_cfg(tiny_shards, "data.batch_size=1", f"data.num_workers={workers}")
        streams = [BatchStream(cfg, rank, world) for rank in range(world)]
        for stream in streams:
            if state is not None:
                stream.load_state_dict(state)
        if state is not None and state["batch"]:
            dropped += world - 1  # equal shares of the rest drop at most world - 1 windows
        n = streams[0].batches_per_epoch if n is None else n
        for stream in streams:
            seen += windows_of(take(stream, n)) if n else []
        states = [stream.state_dict() for stream in streams]
        assert all(st == states[0] for st in states)  # one global position
        state = states[0]
    assert (state["epoch"], state["batch"], state["segments"]) == (1, 0, [])
    cfg = data_cfg(tiny_shards, "data.batch_size=1")
    whole = windows_of(take(BatchStream(cfg), BatchStream(cfg).batches_per_epoch))  # every window of the epoch
    assert not Counter(seen) - Counter(whole)  # no window twice, none from outside the epoch
    first = layouts[0]
    straight = BatchStream(data_cfg(tiny_shards, "data.batch_size=1", f"data.num_workers={first[1]}"), 0, first[0])
    assert len(seen) >= straight.batches_per_epoch * first[0] - dropped  # a straight epoch's windows, all but a few


def test_resume_refuses_other_shards(tiny_shards):
    cfg = data_cfg(tiny_shards)
    state = BatchStream(cfg).state_dict()
    with pytest.raises(ValueError, match="cannot resume the data position"):
        BatchStream(data_cfg(tiny_shards, "data.window=20")).load_state_dict(state)


def test_epochs_differ_and_ranks_split_the_data(tiny_shards):
    cfg = data_cfg(tiny_shards, "data.batch_size=2")
    stream = BatchStream(cfg)
    per_epoch = stream.batches_per_epoch
    batches = take(stream, 2 * per_epoch)
    keys0 = [(k, r) for b in batches[:per_epoch] for k, r in zip(b["key"], b["role"])]
    keys1 = [(k, r) for b in batches[per_epoch:] for k, r in zip(b["key"], b["role"])]
    assert keys0 != keys1
    assert stream.state_dict()["epoch"] == 2 and stream.state_dict()["batch"] == 0
    ranks = [{k for b in take(BatchStream(cfg, rank=r, world_size=2), BatchStream(cfg, 0, 2).batches_per_epoch)
              for k in b["key"]} for r in range(2)]
    assert not ranks[0] & ranks[1]


def test_clear_errors(tiny_react, tiny_shards, tmp_path):
    make_shards(tiny_react, "train", tmp_path / "nofeat", samples_per_shard=6, progress=False)
    with pytest.raises(ValueError, match="no audio features"):
        BatchStream(data_cfg(tmp_path / "nofeat"))
    with pytest.raises(ValueError, match="too few"):
        BatchStream(data_cfg(tiny_shards, "data.batch_size=64"))
    with pytest.raises(FileNotFoundError, match="index.json"):
        BatchStream(data_cfg(tmp_path))
    with pytest.raises(FileNotFoundError, match="mean_face"):
        BatchStream(data_cfg(tiny_shards, f"data.mean_face={tmp_path / 'nope.npy'}"))


def test_truncated_or_corrupt_shard_is_named(tiny_react, tmp_path, capsys):
    from reactdiff.data.inspect_cli import main as inspect_main
    from reactdiff.data.shard_index import ShardIndex

    folder = tmp_path / "train"
    make_shards(tiny_react, "train", folder, samples_per_shard=3, audio_features="logmel", progress=False)
    index = ShardIndex.open(folder)
    damaged, offset = index.files[1], index.offsets[1][1]
    data = bytearray(damaged.read_bytes())
    data[offset:offset + 512] = b"\x00" * 512  # the second sample's tar header, same size
    damaged.write_bytes(bytes(data))
    with pytest.raises(ValueError, match=rf"{damaged.name}.*is corrupt: its sha256"):
        ShardIndex.open(folder).read(1, 1)
    assert inspect_main(["--verify", f"data.shards={folder}"]) == 1
    assert f"shard {damaged} is corrupt" in capsys.readouterr().err
    damaged.write_bytes(bytes(data[:offset]))  # truncated
    with pytest.raises(FileNotFoundError, match=rf"{damaged}.*wrong size \(index.json says {len(data)} bytes\)"):
        ShardIndex.open(folder)


def test_fingerprints_write_enums_as_they_always_did():
    """Checkpoints record the data fingerprint; it wrote enum settings as Python's str() of a plain enum
    ("AudioInput.feat") before config.Choice made enums print as their value: it must keep doing so, or every
    existing run would refuse to resume its data position."""
    import enum

    from reactdiff import config
    from reactdiff.data.reader import _as_recorded

    class AudioInput(str, enum.Enum):  # how the schema's enums were declared before Choice
        feat = "feat"

    assert str(config.AudioInput.feat) == "feat"
    assert _as_recorded(config.AudioInput.feat) == str(AudioInput.feat) == "AudioInput.feat"
    assert _as_recorded(64) == "64" and _as_recorded("zscore") == "zscore"
