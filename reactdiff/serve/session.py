"""Live reaction sessions: a speaker arrives chunk by chunk (16 kHz PCM and FaceVerse 3DMM frames) and listener
frames come back window by window, each window conditioned on exactly what has arrived before its end.

    live = LiveModel.load("runs/x/export")                          # one model, shared by every session
    session = ReactionSession(live, k=2, seed=0, key="clip", role="a->b")
    update = session.push(pcm_chunk, fv_chunk)                       # frames [update.start, update.end), raw 3DMM
    update = session.finish()                                        # the clip ended: the last window(s)

The windows are `reactdiff sample`'s (reactdiff.sampling.online): same starts, same conditioning, same noise per
(seed, key, role, k), same cross-fades, so a whole clip fed in chunks of any size gives `reactdiff sample`'s
reactions. A frame is sent once the next window can no longer cross-fade it, except at the end: the clip's last
window starts flush with its end (as sampling's does), so `finish` may send again frames sent before (`start`
before what was sent: the client overwrites them).
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from ..data import frame_layout as fv
from ..data.audio_features import streaming_frontend
from ..data.normalise import FaceNormaliser
from ..model.export import load_export
from ..sampling.noise import per_sample_generators
from ..sampling.online import (WindowSampler, place_window, reaction_seed, window_condition,
                               window_settings)


class SessionError(ValueError):
    """Input a session cannot take: the message says what was expected."""


@dataclass
class LiveModel:
    """An export ready for live sessions: the model on its device, its settings, how its audio is made."""
    model: torch.nn.Module
    cfg: object
    recipe: dict | None
    device: torch.device
    source: str = ""

    @classmethod
    def load(cls, export: str | Path, device: str = "cpu", overrides=()) -> "LiveModel":
        model, cfg, meta = load_export(export, list(overrides))
        recipe = meta.get("audio")
        if recipe is None:  # exported before the recipe was recorded: what the config alone says
            from ..data.audio_features import pcm_recipe
            recipe = pcm_recipe(cfg)
        dev = torch.device(device)
        return cls(model.to(dev).eval(), cfg, recipe, dev, str(export))

    @property
    def fps(self) -> int:
        return int((self.recipe or {}).get("fps", fv.FPS))

    @property
    def audio_only(self) -> bool:
        """Whether the model knows a "no face" speaker (trained with model.face_dropout)."""
        return getattr(self.model.unet.context, "null_face", None) is not None

    def frontend(self):
        """A fresh causal audio frontend for one session (SessionError when the export's features cannot be made
        from live PCM)."""
        try:
            return streaming_frontend(self.recipe)
        except ValueError as exc:
            raise SessionError(str(exc)) from None


@dataclass
class Update:
    """Listener frames [start, start + n) of every reaction: raw FaceVerse 3DMM (K, n, 58) (+ emotion (K, n, 25))."""
    start: int
    face: np.ndarray
    emotion: np.ndarray | None = None
    windows: list = field(default_factory=list)  # (window start, compute seconds) of the windows it completes
    final: bool = False

    @property
    def end(self) -> int:
        return self.start + self.face.shape[1]


@dataclass
class Pending:
    """A window due for sampling: its conditioning and its rows' generators (rows of sessions can be batched)."""
    session: "ReactionSession"
    start: int
    cond: dict
    gens: list


class ReactionSession:
    """One live speaker -> K listener reactions. `live`: a LiveModel (shared by sessions) or an export folder
    (loaded on `device`). Settings default to the export's config (sample.window / overlap / steps / seed ...)."""

    def __init__(self, live: LiveModel | str | Path, k: int = 1, window: int | None = None, overlap: int | None = None,
                 seed: int | None = None, key: str = "live", role: str = "speaker->listener", face: bool = True,
                 steps: int | None = None, sampler: str | None = None, guidance: float | None = None,
                 temperature: float | None = None, device: str = "cpu") -> None:
        if not isinstance(live, LiveModel):
            live = LiveModel.load(live, device)
        s, d = live.cfg.sample, live.cfg.data
        self.live, self.model, self.device = live, live.model, live.device
        self.k, self.key, self.role = int(k), str(key), str(role)
        self.window = int(window if window is not None else s.window)
        self.overlap = int(overlap if overlap is not None else s.overlap)
        self.history, self.seed = int(d.history), int(seed if seed is not None else s.seed)
        if not 1 <= self.k <= 64:
            raise SessionError(f"k={k}: expected 1..64 reactions")
        if not 0 <= self.overlap < self.window:
            raise SessionError(f"overlap={self.overlap} must be in [0, window={self.window})")
        self.hop = self.window - self.overlap
        self.settings = window_settings(s, sampler=sampler or s.sampler.value, steps=int(steps or s.steps),
                                        guidance=float(guidance if guidance is not None else s.guidance),
                                        temperature=float(temperature if temperature is not None else s.temperature))
        self.face = bool(face)
        if not self.face and not live.audio_only:
            raise SessionError("this export does not support audio-only sessions: it was trained without "
                               "model.face_dropout (no learned 'no face' speaker); send the speaker's 3DMM frames")
        if not self.face and self.model.audio.kind == "none":
            raise SessionError("audio-only session on a model that takes no audio: it would see no speaker at all")
        self.audio = live.frontend() if self.model.audio.kind != "none" else None
        self.stored_half = (live.recipe or {}).get("stored") == "float16"  # features the model read as fp16
        self.normaliser = FaceNormaliser.of_model(self.model.stats)
        self.gens = per_sample_generators([reaction_seed(self.seed, self.key, self.role, j) for j in range(self.k)])
        dim = self.model.dim
        self._spk = np.zeros((0, fv.FV_DIM), np.float32)  # normalised speaker frames from self._base on
        self._feat = np.zeros((0, self.audio.dim if self.audio else 0), np.float32)
        self._out = torch.zeros(self.k, 0, dim, device=self.device)  # generated listener frames from self._base on
        self._base = 0
        self.faces, self.samples = 0, 0  # speaker 3DMM frames / audio samples received
        self.next_start, self.done, self.sent = 0, 0, 0  # next window; frames [0, done) generated, [0, sent) sent
        self.last_start: int | None = None
        self.finished, self._final_sent = False, False
        self._windows: list = []

    # ---- input
    def feed(self, audio: np.ndarray | None = None, face: np.ndarray | None = None) -> None:
        """Take the next speaker audio samples (float32, 16 kHz mono) and/or 3DMM frames (n, 58) raw."""
        if self.finished:
            raise SessionError("the session has finished: open a new one")
        if face is not None:
            if not self.face:
                raise SessionError("this is an audio-only session: it takes no 3DMM frames")
            face = np.asarray(face)
            if face.ndim != 2 or face.shape[1] != fv.FV_DIM:
                raise SessionError(f"speaker 3DMM frames: expected (frames, {fv.FV_DIM}), got {face.shape}")
            if not np.isfinite(face).all():
                raise SessionError("speaker 3DMM frames hold NaN or infinite values")
            self._spk = np.concatenate([self._spk, self.normaliser.normalise(face).astype(np.float32)])
            self.faces += len(face)
        if audio is not None:
            audio = np.asarray(audio)
            if audio.ndim != 1 or audio.dtype != np.float32:
                raise SessionError(f"speaker audio: expected 1-D float32 samples at {fv.AUDIO_RATE} Hz, got "
                                   f"{audio.dtype} of shape {audio.shape}")
            if not np.isfinite(audio).all():
                raise SessionError("speaker audio holds NaN or infinite values")
            self.samples += len(audio)
            if self.audio is not None:
                self._add_features(self.audio.push(audio))

    def _add_features(self, made: np.ndarray) -> None:
        if self.stored_half:
            made = made.astype(np.float16)
        self._feat = np.concatenate([self._feat, made.astype(np.float32)])

    @property
    def frames_in(self) -> int:
        """Speaker frames the model can use: 3DMM frames, and audio features when the model takes audio."""
        if not self.face:  # the clip's frames are the audio's whole 40 ms
            return min(self.audio.frames, self.samples // fv.SAMPLES_PER_FRAME)
        return self.faces if self.audio is None else min(self.faces, self.audio.frames)

    # ---- windows
    def due(self) -> Pending | None:
        """The next window whose speaker streams have all arrived, or None."""
        if self.finished or self.next_start + self.window > self.frames_in:
            return None
        return self._pending(self.next_start, self.next_start + self.window)

    def _pending(self, start: int, rows_frames: int) -> Pending:
        rep = lambda a: torch.from_numpy(a).to(self.device)[None].expand(self.k, -1, -1)  # noqa: E731
        spk = rep(self._spk[:rows_frames - self._base]) if self.face else \
            torch.zeros(self.k, rows_frames - self._base, fv.FV_DIM, device=self.device)
        feat = rep(self._feat[:rows_frames - self._base]) if self.audio is not None else None
        valid = torch.zeros(self.k, rows_frames - self._base, dtype=torch.bool, device=self.device)
        valid[:, :self._real_end - self._base] = True
        cond = window_condition(self.model, spk, feat, self._out, valid, start - self._base, self.history,
                                self.window, self.done - self._base)
        if not self.face:
            cond["drop_face"] = torch.ones(self.k, dtype=torch.bool, device=self.device)
        return Pending(self, start, cond, self.gens)

    @property
    def _real_end(self) -> int:
        return self._clip_frames if self.finished else self.frames_in

    def accept(self, pending: Pending, new: torch.Tensor, seconds: float = 0.0) -> Update | None:
        """Place a sampled window; -> the frames it makes final (None when none)."""
        start = pending.start
        if self._out.shape[1] < start + self.window - self._base:
            grow = start + self.window - self._base - self._out.shape[1]
            self._out = torch.cat([self._out, self._out.new_zeros(self.k, grow, self.model.dim)], dim=1)
        self.done = self._base + place_window(self._out, new, start - self._base, self.done - self._base)
        self.last_start, self.next_start = start, start + self.hop
        self._windows.append((start, seconds))
        if self.finished and start + self.window >= self._total:  # the last window: everything left, final
            return self._send(min(self.sent, start), self._clip_frames, final=True)
        hi = start + self.hop  # frames no later window cross-fades
        update = self._send(self.sent, min(hi, self._clip_frames) if self.finished else hi)
        # what later windows read: their history and the anchor's memory (the last window may start one frame
        # after this one)
        self._trim(start + 1 - max(self.history, self.model.anchor_memory))
        return update

    def _send(self, lo: int, hi: int, final: bool = False) -> Update | None:
        if hi <= lo and not final:
            return None
        y = self._out[:, lo - self._base:hi - self._base]
        face = self.model.stats.denormalise(y[..., :fv.FV_DIM]).cpu().numpy()
        emotion = y[..., fv.FV_DIM:].cpu().numpy() if self.model.predict_emotion else None
        self.sent = max(self.sent, hi)
        self._final_sent = self._final_sent or final
        windows, self._windows = self._windows, []
        return Update(lo, face, emotion, windows, final)

    def _trim(self, keep_from: int) -> None:
        """Drop what no later window reads (bounded memory for sessions of any length)."""
        cut = min(keep_from, self.sent) - self._base
        if cut <= 0:
            return
        self._spk, self._feat = self._spk[cut:], self._feat[cut:] if len(self._feat) else self._feat
        self._out = self._out[:, cut:]
        self._base += cut

    def finish_pending(self) -> Pending | None:
        """The clip has ended: -> its next window, or None when none is left. The windows after the end are those
        `reactdiff sample` has: the grid windows whose inputs only the end completed, then the last one, flush with
        the clip's end. Call `due()` until None first."""
        if not self.finished:
            self._end()
        total = self._total
        if self.next_start < total - self.window:  # grid windows (their last audio features came with the end)
            return self._pending(self.next_start, self.next_start + self.window)
        if self.last_start is None or self.last_start + self.window < total:
            return self._pending(total - self.window, total)
        return None

    def _end(self) -> None:
        """The clip's end: its last audio features, its length, the padding of a clip shorter than a window."""
        frames = self.faces if self.face else self.samples // fv.SAMPLES_PER_FRAME
        if frames == 0:
            raise SessionError("the session ended before any speaker frame arrived")
        if self.audio is not None:
            # stored features were made over the clip's whole audio; a raw-audio model's eval window is cut to
            # the clip's frames
            cut = None if self.stored_half or not self.face else frames
            try:
                self._add_features(self.audio.finish(frames, cut))
            except ValueError as exc:
                raise SessionError(str(exc)) from None
            self._feat = self._feat[:frames - self._base]
        self._clip_frames = frames
        self.finished = True
        total = max(frames, self.window)  # a clip shorter than a window is generated padded to it, then cut
        if total > frames:
            pad = total - frames
            self._spk = np.concatenate([self._spk[:frames - self._base], np.zeros((pad, fv.FV_DIM), np.float32)])
            if self.audio is not None:
                self._feat = np.concatenate([self._feat, np.zeros((pad, self._feat.shape[1]), np.float32)])
        self._total = total

    def remaining(self) -> Update:
        """After the last window: the frames not sent yet (final)."""
        return self._send(self.sent, self.clip_frames, final=True)

    @property
    def final_sent(self) -> bool:
        return self._final_sent

    @property
    def clip_frames(self) -> int | None:
        """The clip's length once it has finished, else None."""
        return self._clip_frames if self.finished else None

    # ---- one session on its own (the server batches sessions instead)
    def push(self, audio: np.ndarray | None = None, face: np.ndarray | None = None) -> Update | None:
        """feed + sample every window now due; -> the frames made final (None when none)."""
        self.feed(audio, face)
        return self._run(self.due)

    def finish(self) -> Update:
        """The speaker has ended: sample what is due and the last window; -> the remaining frames (final)."""
        first = self._run(self.due)
        last = self._run(self.finish_pending)
        if not self.final_sent:  # the windows so far reach the end: send what is left
            last = self.remaining() if last is None else merge(last, self.remaining())
        return last if first is None else merge(first, last)

    def _run(self, next_pending) -> Update | None:
        sampler = window_sampler(self.live, self.settings)
        update = None
        while (p := next_pending()) is not None:
            t0 = time.perf_counter()
            with torch.inference_mode():
                new = sampler(p.cond, p.gens, self.window)
            u = self.accept(p, new, time.perf_counter() - t0)
            update = u if update is None else merge(update, u) if u is not None else update
        return update


def merge(a: Update, b: Update) -> Update:
    """Two consecutive updates as one (b overwrites where they overlap)."""
    if b.start < a.start:
        raise ValueError("updates out of order")
    keep = b.start - a.start
    face = np.concatenate([a.face[:, :keep], b.face], axis=1)
    emotion = None if a.emotion is None else np.concatenate([a.emotion[:, :keep], b.emotion], axis=1)
    return Update(a.start, face, emotion, a.windows + b.windows, b.final)


_SAMPLERS: dict = {}


def window_sampler(live: LiveModel, settings: dict) -> WindowSampler:
    """One WindowSampler per (model, settings): sessions with equal settings share it (and a batch)."""
    key = (id(live.model), tuple(sorted(settings.items())))
    if key not in _SAMPLERS:
        _SAMPLERS[key] = WindowSampler(live.model, device=live.device, **settings)
    return _SAMPLERS[key]
