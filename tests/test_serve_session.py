"""Live sessions (reactdiff.serve.session): a clip fed in chunks of any size gives `reactdiff sample`'s reactions."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from reactdiff import config
from reactdiff.data.audio_features import LogMel, StreamingLogMel
from reactdiff.data.normalise import FaceStats
from reactdiff.data.reader import make_normaliser
from reactdiff.model.export import build_model, save_export
from reactdiff.sampling.job import SampleJob
from reactdiff.sampling.run import sample
from reactdiff.sampling.writer import load_manifest, reaction_path
from reactdiff.serve.clips import ClipCatalogue
from reactdiff.serve.session import LiveModel, ReactionSession, SessionError, merge

WINDOW, OVERLAP = 32, 8


def make_export(shards, out, overrides=()):
    cfg = config.load(None, [f"data.shards={shards}", "data.history=8", "data.num_workers=0", "data.eval_frames=0",
                             "model.size=tiny", f"sample.window={WINDOW}", f"sample.overlap={OVERLAP}",
                             "sample.steps=3", "sample.k=2", *overrides])
    torch.manual_seed(0)
    model = build_model(cfg, FaceStats.from_normaliser(make_normaliser(cfg.data, shards))).eval()
    for p in model.unet.parameters():  # switch on the zero-initialised output layers
        if p.dim() > 1 and not p.detach().any():
            torch.nn.init.normal_(p, std=0.05)
    reg = model.past_regression
    if reg is not None and reg.uses_memory:  # an unfitted regression ignores the memory: make it count
        reg.beta.fill_(0.3), reg.gamma.fill_(0.6)
    return save_export(out, model, cfg, kind="random-init")


def speaker_of(shards, row: int):
    """The raw speaker streams of a role row, as a live client sends them: 3DMM (T, 58), 16 kHz audio, key, role."""
    return ClipCatalogue(shards).speaker(row)


def stream(session, face, audio, rng, max_frames: int = 40):
    """Feed a clip in random chunk sizes (audio and 3DMM out of step) and assemble the updates by overwriting."""
    out = np.zeros((session.k, len(face), 58), np.float32)
    updates, f, a = [], 0, 0
    while f < len(face) or a < len(audio):
        n = int(rng.integers(1, max_frames))
        m = int(rng.integers(1, max_frames * 640))
        u = session.push(audio[a:a + m] if a < len(audio) else None, face[f:f + n] if f < len(face) else None)
        f, a = f + n, a + m
        if u is not None:
            updates.append(u)
    updates.append(session.finish())
    for u in updates:
        out[:, u.start:u.end] = u.face
    return out, updates


@pytest.mark.parametrize("audio", ["feat", "logmel", "memory", "gate", "inpaint"])
def test_a_clip_streamed_in_chunks_equals_reactdiff_sample(tiny_shards, tmp_path, audio):
    # memory: the anchor's memory (40 frames) reaches further back than the history (8): what the session keeps;
    # gate: a band gate with its own view of the speaker reaching the whole history back (span 9); inpaint: each
    # window sampled holding the frames the one before made (sample.join)
    overrides = {"feat": [], "logmel": ["data.audio=raw", "model.audio=logmel"],
                 "memory": ["model.anchor_memory=40"],
                 "gate": ["model.band_gate.edges_hz=[0.5,1.5,2.6,5.0]", "model.band_gate.group=rotation",
                          "model.band_gate.span=9"],
                 "inpaint": ["sample.join=inpaint"]}[audio]
    export = make_export(tiny_shards, tmp_path / "export", overrides)
    assert json.loads((export / "export.json").read_text())["audio"]["features"] == "logmel"
    sample(SampleJob(shards=str(tiny_shards), out=str(tmp_path / "out"), export=str(export), quiet=True,
                     device="cpu"))
    manifest = load_manifest(tmp_path / "out")
    live = LiveModel.load(export)
    rng = np.random.default_rng(0)
    for entry in manifest["entries"][:2]:
        face, wav, key, role = speaker_of(tiny_shards, entry["row"])
        want = np.load(reaction_path(tmp_path / "out", entry["row"]))
        session = ReactionSession(live, k=2, key=key, role=role)
        got, updates = stream(session, face, wav, rng)
        assert got.shape == want.shape
        np.testing.assert_allclose(got, want, atol=2e-4, rtol=0)
        assert updates[-1].final and sum(len(u.windows) for u in updates) == 5  # 120 frames: starts 0,24,48,72,88
        # frames are sent in order; only the last update reaches back (the last window starts flush with the end)
        assert all(b.start == a.end for a, b in zip(updates[:-2], updates[1:-1]))


def test_streaming_logmel_equals_the_whole_clip():
    rng = np.random.default_rng(1)
    for n, frames, chunk in [(751 * 640 + 300, 751, 1000), (750 * 640, 751, 640), (100 * 640, 100, 7), (3000, 5, 100),
                             (25600, 40, 25600)]:
        a = (rng.standard_normal(n) * 0.1).astype(np.float32)
        s = StreamingLogMel()
        got = np.concatenate([s.push(a[i:i + chunk]) for i in range(0, n, chunk)] + [s.finish(frames)])
        np.testing.assert_allclose(got, LogMel()(a, frames), atol=1e-5, rtol=0)
        assert s._audio.shape[0] < 2000 or n < 2000  # only the samples later frames need are kept


def test_a_window_waits_for_the_speaker(tiny_shards, tmp_path):
    live = LiveModel.load(make_export(tiny_shards, tmp_path / "export"))
    face, wav, key, role = speaker_of(tiny_shards, 0)
    session = ReactionSession(live, k=1)
    assert session.push(wav[:WINDOW * 640 + 512], face[:WINDOW - 1]) is None  # one 3DMM frame short
    u = session.push(None, face[WINDOW - 1:WINDOW])
    assert (u.start, u.end) == (0, WINDOW - OVERLAP) and len(u.windows) == 1
    assert session.push(None, face[WINDOW:WINDOW + 30]) is None  # the audio has not come yet


def test_bad_input_is_refused_clearly(tiny_shards, tmp_path):
    live = LiveModel.load(make_export(tiny_shards, tmp_path / "export"))
    session = ReactionSession(live)
    for audio, face, msg in [(np.zeros(10, np.float64), None, "float32"), (np.zeros((2, 5), np.float32), None, "1-D"),
                             (None, np.zeros((3, 57), np.float32), "58"),
                             (np.array([np.nan], np.float32), None, "NaN"),
                             (None, np.full((3, 58), np.inf, np.float32), "NaN")]:
        with pytest.raises(SessionError, match=msg):
            session.feed(audio, face)
    with pytest.raises(SessionError, match="face_dropout"):
        ReactionSession(live, face=False)
    with pytest.raises(SessionError, match="overlap"):
        ReactionSession(live, overlap=WINDOW)
    with pytest.raises(SessionError, match="before any"):
        ReactionSession(live).finish()


def test_audio_only_sessions_need_face_dropout_and_use_the_no_face(tiny_shards, tmp_path):
    live = LiveModel.load(make_export(tiny_shards, tmp_path / "export", ["model.face_dropout=0.2"]))
    assert live.audio_only
    _, wav, _, _ = speaker_of(tiny_shards, 0)
    session = ReactionSession(live, face=False)
    u = session.push(wav)
    last = session.finish()
    face = merge(u, last).face if u is not None else last.face
    assert face.shape == (1, len(wav) // 640, 58) and np.isfinite(face).all()
    with pytest.raises(SessionError, match="audio-only"):
        ReactionSession(live, face=False).feed(None, np.zeros((2, 58), np.float32))
    # the "no face" is not the zero face: the learned vector enters the conditioning
    live.model.unet.context.null_face.data.normal_()
    again = ReactionSession(live, face=False)
    first = again.push(wav)
    assert not np.allclose(merge(first, again.finish()).face[:, :24], face[:, :24])


def test_exports_that_cannot_stream_pcm_say_why(tiny_shards, tmp_path):
    export = make_export(tiny_shards, tmp_path / "export")
    meta = json.loads((export / "export.json").read_text())
    meta["audio"]["features"] = "wav2vec2:/models/w2v"
    (export / "export.json").write_text(json.dumps(meta))
    with pytest.raises(SessionError, match="whole clip"):
        ReactionSession(LiveModel.load(export))
    meta["audio"]["features"], meta["audio"]["fps"] = "logmel", 30
    (export / "export.json").write_text(json.dumps(meta))
    with pytest.raises(SessionError, match="30 fps"):
        ReactionSession(LiveModel.load(export))


def test_face_dropout_trains_the_no_face(tiny_shards):
    from reactdiff.data.reader import BatchStream

    cfg = config.load(None, [f"data.shards={tiny_shards}", "data.history=8", "data.window=32", "data.num_workers=0",
                             "model.size=tiny", "model.face_dropout=0.5"])
    stream = BatchStream(cfg.data, train=True)
    model = build_model(cfg, FaceStats.from_normaliser(stream.dataset.normaliser)).train()
    for p in model.unet.parameters():  # switch on the zero-initialised output layers, so gradients reach the input
        if p.dim() > 1 and not p.detach().any():
            torch.nn.init.normal_(p, std=0.05)
    loss = model.training_loss(next(iter(stream)), history=8, generator=torch.Generator().manual_seed(0))["loss"]
    loss.backward()
    assert model.unet.context.null_face.grad is not None and model.unet.context.null_face.grad.abs().sum() > 0
    with pytest.raises(config.ConfigError, match="face_dropout"):
        config.load(None, ["model.face_dropout=1.5"])


def test_windows_whose_audio_ends_early_still_follow_the_sampling_grid(tiny_shards, tmp_path):
    from reactdiff.sampling.online import window_starts

    live = LiveModel.load(make_export(tiny_shards, tmp_path / "export"))
    face, wav, _, _ = speaker_of(tiny_shards, 0)
    for audio_frames in (60, 3):  # the audio stops a window (or nearly the whole clip) before the face does
        session = ReactionSession(live)
        first = session.push(wav[:audio_frames * 640], face)
        last = session.finish()
        starts = [w[0] for u in (first, last) if u is not None for w in u.windows]
        assert starts == window_starts(len(face), WINDOW, OVERLAP)
        out = merge(first, last) if first is not None else last
        assert out.start == 0 and out.face.shape[1] == len(face)
        assert (np.abs(out.face).sum(-1) > 0).all()  # no frame left unmade


def test_audio_only_sessions_end_on_whole_frames(tiny_shards, tmp_path):
    live = LiveModel.load(make_export(tiny_shards, tmp_path / "export", ["model.face_dropout=0.2", "sample.overlap=0"]))
    _, wav, _, _ = speaker_of(tiny_shards, 0)
    session = ReactionSession(live, face=False)
    u = session.push(wav[:WINDOW * 640 + 600])  # 600 samples into frame 32: frame 32 is not whole yet
    assert u is None or u.end <= WINDOW
    last = session.finish()
    assert last.end == WINDOW and last.final
