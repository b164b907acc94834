"""Audio frontends that turn 16 kHz mono audio into per-video-frame features (25 fps).

`logmel`: torchaudio log-mel spectrogram, no weights. `wav2vec2:/path`: a local Hugging Face Wav2Vec2 folder
(config + weights, loaded with transformers; never downloaded), last hidden state, 50 fps resampled to 25 fps.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from . import frame_layout as fv


def align_frames(feat: torch.Tensor, frames: int) -> torch.Tensor:
    """(N, D) features at any rate -> (frames, D) by linear interpolation over the clip's time span."""
    if feat.shape[0] == frames:
        return feat
    return F.interpolate(feat.T[None], size=frames, mode="linear", align_corners=False)[0].T


class LogMel:
    """80 log-mel bands, one 64 ms window per 40 ms video frame (hop 640 samples at 16 kHz)."""

    kind = "logmel"

    def __init__(self, n_mels: int = 80) -> None:
        import torchaudio

        self.dim = n_mels
        self._mel = torchaudio.transforms.MelSpectrogram(
            sample_rate=fv.AUDIO_RATE, n_fft=1024, win_length=1024, hop_length=fv.SAMPLES_PER_FRAME,
            n_mels=n_mels, center=True, power=2.0)

    def batch(self, audio: torch.Tensor, frames: int) -> torch.Tensor:
        """(B, samples) 16 kHz -> (B, frames, n_mels); frame i is centred at i * 40 ms. Audio covering `frames`
        video frames at another rate than 25 fps gets its 40 ms hops interpolated to those frames."""
        self._mel = self._mel.to(audio.device)
        feat = torch.log(self._mel(audio.float()) + 1e-6).transpose(1, 2)
        per_frame = audio.shape[1] / max(frames, 1)
        if abs(per_frame - fv.SAMPLES_PER_FRAME) > 1:  # video at another rate (MARS: 30 fps): hops over the span
            hops = max(1, round(audio.shape[1] / fv.SAMPLES_PER_FRAME))
            return torch.stack([align_frames(f[:hops], frames) for f in feat])
        if feat.shape[1] >= frames:
            return feat[:, :frames]
        # audio a little shorter than the 3DMM track: repeat the last frame
        return torch.cat([feat, feat[:, -1:].expand(-1, frames - feat.shape[1], -1)], dim=1)

    @torch.no_grad()
    def __call__(self, audio: np.ndarray, frames: int) -> np.ndarray:
        return self.batch(torch.from_numpy(audio)[None], frames)[0].numpy()

    def describe(self) -> dict:
        return {"kind": self.kind, "dim": self.dim, "fps": fv.FPS}


class StreamingLogMel:
    """LogMel computed while 16 kHz audio arrives, for live sessions: frame i (centred at i * 640 samples; its
    1024-sample window reaches 512 samples ahead) is made as soon as its window is complete, and `finish` makes the
    last frames as LogMel pads them at the clip's end (reflect). The frames equal LogMel's over the whole clip."""

    lookahead = 512  # samples past a frame's centre its window needs

    def __init__(self, logmel: LogMel | None = None) -> None:
        import torchaudio.functional as AF

        self.logmel = logmel or LogMel()
        spec = self.logmel._mel.spectrogram
        self._spectrogram = lambda x: AF.spectrogram(  # noqa: E731 - MelSpectrogram's, without its centring pad
            x, 0, spec.window, spec.n_fft, spec.hop_length, spec.win_length, spec.power, spec.normalized,
            center=False)
        self.dim, self.frames = self.logmel.dim, 0  # frames [0, self.frames) are made
        self._audio = np.zeros(0, np.float32)  # received samples from self._offset on
        self._offset, self._received = 0, 0
        self._head = np.zeros(0, np.float32)  # the clip's first samples: frame 0's window reflects them
        self._last = np.zeros((0, self.dim), np.float32)

    def push(self, pcm: np.ndarray) -> np.ndarray:
        """Append samples (float32 in [-1, 1]); -> the (n, dim) frames their arrival completes."""
        pcm = np.asarray(pcm, np.float32).reshape(-1)
        self._audio = np.concatenate([self._audio, pcm])
        self._received += len(pcm)
        if len(self._head) <= self.lookahead:
            self._head = np.concatenate([self._head, pcm[:self.lookahead + 1 - len(self._head)]])
        if self._received <= self.lookahead:  # frame 0 reflects samples 1..512
            return np.zeros((0, self.dim), np.float32)
        ready = (self._received - self.lookahead) // fv.SAMPLES_PER_FRAME + 1  # frames whose window is complete
        return self._make(ready, self._received)

    def finish(self, frames: int, audio_frames: int | None = None) -> np.ndarray:
        """The frames up to `frames` the clip's end completes: the audio ends where it ended, or (audio_frames) it is
        cut or zero-padded to that many frames' samples first, as a reader's eval window is."""
        end = self._received
        if audio_frames is not None:
            end = audio_frames * fv.SAMPLES_PER_FRAME
            if end > self._received:
                self._audio = np.concatenate([self._audio, np.zeros(end - self._received, np.float32)])
        if end <= self.lookahead:
            raise ValueError(f"audio of {end} samples is too short for one log-mel frame (it needs more than "
                             f"{self.lookahead}, as LogMel's reflect padding does)")
        made = self._make(min(frames, 1 + end // fv.SAMPLES_PER_FRAME), end, tail=True)
        if self.frames < frames:  # audio shorter than the 3DMM track: the last frame repeats (as LogMel does)
            last = made[-1:] if len(made) else self._last
            made = np.concatenate([made, np.repeat(last, frames - self.frames, axis=0)])
            self.frames = frames
        return made

    def _make(self, upto: int, end: int, tail: bool = False) -> np.ndarray:
        """Frames [self.frames, upto) from the samples before `end` (tail: reflected past it, the clip's end)."""
        if upto <= self.frames:
            return np.zeros((0, self.dim), np.float32)
        hop, half = fv.SAMPLES_PER_FRAME, self.lookahead
        lo, hi = self.frames * hop - half, (upto - 1) * hop + half  # the original samples the windows cover
        segment = self._audio[max(lo, 0) - self._offset:min(hi, end) - self._offset]
        if lo < 0:  # frame 0: LogMel's reflect padding of the clip's first samples
            segment = np.concatenate([self._head[1:1 - lo][::-1], segment])
        if tail and hi > end:
            clip = self._audio[:end - self._offset]
            segment = np.concatenate([segment, clip[len(clip) - 1 - (hi - end):len(clip) - 1][::-1]])
        with torch.no_grad():
            spec = self._spectrogram(torch.from_numpy(np.ascontiguousarray(segment))[None])
            made = torch.log(self.logmel._mel.mel_scale(spec) + 1e-6)[0].T.numpy()
        self.frames = upto
        keep = self.frames * hop - half - 1  # the next frame's first sample, and the one before (the end's reflect)
        if keep > self._offset:
            self._audio, self._offset = self._audio[keep - self._offset:], keep
        self._last = made[-1:]
        return made


class Wav2Vec2:
    """Frozen `Wav2Vec2Model` from a local folder written by `save_pretrained`; last hidden state at 25 fps."""

    kind = "wav2vec2"

    def __init__(self, folder: str | Path) -> None:
        from transformers import Wav2Vec2Model

        folder = Path(folder)
        if not (folder / "config.json").is_file():
            raise FileNotFoundError(f"wav2vec2 folder {folder} has no config.json (expected a Hugging Face "
                                    f"folder made by save_pretrained, e.g. facebook/wav2vec2-base-960h)")
        self.folder = folder
        self.model = Wav2Vec2Model.from_pretrained(str(folder), local_files_only=True).eval()
        self.dim = int(self.model.config.hidden_size)
        pre = folder / "preprocessor_config.json"
        self.normalize = json.loads(pre.read_text()).get("do_normalize", True) if pre.is_file() else True

    def batch(self, audio: torch.Tensor, frames: int) -> torch.Tensor:
        """(B, samples) 16 kHz -> (B, frames, hidden)."""
        self.model = self.model.to(audio.device)
        x = audio.float()
        if self.normalize:  # what Wav2Vec2FeatureExtractor does: zero mean, unit variance per utterance
            x = (x - x.mean(1, keepdim=True)) / torch.sqrt(x.var(1, keepdim=True) + 1e-7)
        hidden = self.model(x).last_hidden_state  # (B, N, D) at ~50 fps
        return torch.stack([align_frames(h, frames) for h in hidden])

    @torch.no_grad()
    def __call__(self, audio: np.ndarray, frames: int) -> np.ndarray:
        return self.batch(torch.from_numpy(audio)[None], frames)[0].numpy()

    def describe(self) -> dict:
        return {"kind": self.kind, "dim": self.dim, "fps": fv.FPS, "model": self.folder.name}


def parse_spec(spec: str, feat: bool = False) -> tuple[str, str | None]:
    """The one parser of an audio spec: 'none' | 'logmel' | 'wav2vec2:/path/to/folder' (and with feat=True, the
    model's 'feat': the shards' stored features) -> (kind, path)."""
    kind, _, path = str(spec).partition(":")
    if kind in ("none", "logmel", *(("feat",) if feat else ())) and not path:
        return kind, None
    if kind == "wav2vec2" and path:
        return kind, path
    expected = "feat, logmel, wav2vec2:/path or none" if feat else "none, logmel or wav2vec2:/path/to/hf_folder"
    raise ValueError(f"unknown audio spec {spec!r}; expected {expected}")


def make_frontend(spec: str):
    """Build the frontend named by `spec`, or None for 'none'."""
    kind, path = parse_spec(spec)
    if kind == "none":
        return None
    if kind == "logmel":
        return LogMel()
    return Wav2Vec2(path)


def pcm_recipe(cfg) -> dict:
    """How a model's audio features are made from 16 kHz PCM, recorded in its export (live sessions need it):
    model.audio, the shards' feature spec when the model reads stored features (model.audio=feat), their fps."""
    from .shard_folder import load_index, shard_fps

    kind, _ = parse_spec(cfg.model.audio, feat=True)
    recipe = {"model_audio": str(cfg.model.audio), "features": None if kind == "feat" else str(cfg.model.audio),
              "fps": fv.FPS}
    try:
        settings = load_index(cfg.data.shards).get("settings", {})
        recipe["fps"] = shard_fps(cfg.data.shards)
        if kind == "feat":
            recipe["features"], recipe["stored"] = settings.get("audio_features"), "float16"
    except (FileNotFoundError, ValueError, OSError):
        pass  # the training shards are not here: features stay unknown (live PCM is then refused, saying why)
    return recipe


def streaming_frontend(recipe: dict | None):
    """The causal frontend that makes a model's features from live PCM (None: the model takes no audio);
    a ValueError says why when they cannot be made from a live stream."""
    if recipe is None:
        raise ValueError("the export records no audio recipe (exported before live serving existed): re-export it "
                         "(reactdiff export) to record how its audio features are made")
    spec = recipe.get("features")
    if recipe.get("model_audio") == "none":
        return None
    if spec is None:
        raise ValueError(f"model.audio={recipe.get('model_audio')} reads the training shards' stored features, and "
                         f"the export does not know how they were made (its shards were not readable at export time)")
    kind = str(spec).partition(":")[0]
    if kind != "logmel":
        why = {"wav2vec2": "wav2vec2 runs its transformer over the whole clip at once",
               "provided": "they are the dataset's own wav2vec features, not computed here",
               "none": "the shards hold no audio features"}.get(kind, f"{spec!r} is not a known causal frontend")
        raise ValueError(f"this export's audio features ({spec}) cannot be computed causally from a live audio "
                         f"stream: {why}")
    if recipe.get("fps", fv.FPS) != fv.FPS:
        raise ValueError(f"this export's log-mel features are at {recipe['fps']} fps, made by interpolating 40 ms "
                         f"hops over each whole clip: not causal; live sessions need a {fv.FPS} fps export")
    return StreamingLogMel()
