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
