"""ReactDiff: the EDM denoiser over listener windows, its speaker conditioning, audio frontend and priors.

    model = ReactDiff.from_config(cfg.model, face_stats)      # face_stats: normalisation mean/std (+ convention)
    out = model.training_loss(batch, history=cfg.data.history) # {"loss", "denoise", "velocity", ...}
    x0_hat = model.denoise(x, sigma, cond)                    # what the samplers call
"""
from __future__ import annotations

import torch
from torch import nn

from ..data import frame_layout as fv
from ..data.audio_features import LogMel, Wav2Vec2, parse_spec
from .denoiser import Denoiser, SigmaDensity
from .past_regression import PastRegression
from ..data.normalise import FaceStats
from .priors import ReactionPriors
from .covariance import TemporalCovariance
from .spectrum import TemporalSpectrum, band_coefficients
from .unet import PRESETS, TemporalUNet


class AudioFrontend(nn.Module):
    """Turns a batch's speaker audio into per-frame features: shard features as they are, or a frozen frontend
    (logmel / wav2vec2) run on the 16 kHz waveform window."""

    def __init__(self, spec: str, feat_dim: int) -> None:
        super().__init__()
        self.kind, path = parse_spec(spec, feat=True)
        self.frontend = None
        if self.kind == "logmel":
            self.frontend = LogMel()
        elif self.kind == "wav2vec2":
            self.frontend = Wav2Vec2(path)
            self.frontend.model.requires_grad_(False)
        self.dim = {"feat": feat_dim, "none": 0}.get(self.kind) or getattr(self.frontend, "dim", 0)

    def forward(self, batch: dict, frames: int) -> torch.Tensor | None:
        if self.kind == "none":
            return None
        if self.kind == "feat":
            feat = batch.get("speaker_feat")
            if feat is None:
                raise ValueError("model.audio=feat needs speaker_feat in the batch (data.audio=feat)")
            if feat.shape[-1] != self.dim:
                raise ValueError(f"the shards' audio features have {feat.shape[-1]} dims; model.audio_dim is "
                                 f"{self.dim}")
            return feat
        audio = batch.get("speaker_audio")
        if audio is None:
            raise ValueError(f"model.audio={self.kind} needs speaker_audio in the batch (data.audio=raw)")
        with torch.no_grad():
            return self.frontend.batch(audio, frames)


def group_loss_scale(dim: int, weight: dict[str, float]) -> torch.Tensor:
    """(dim,) sqrt of each dim's loss weight: its stream group's (fv.STREAM_GROUPS; dims past the 58-d, the emotion
    stream, weigh 1), normalised to mean 1 over the dims so the loss keeps its scale."""
    unknown = set(weight) - set(fv.STREAM_GROUPS)
    if unknown:
        raise ValueError(f"loss group weight: unknown groups {sorted(unknown)} (expected {list(fv.STREAM_GROUPS)})")
    w = torch.ones(dim)
    for group, value in weight.items():
        if value <= 0:
            raise ValueError(f"loss group weight {group}: must be > 0, got {value}")
        w[fv.STREAM_GROUPS[group]] = float(value)
    return (w / w.mean()).sqrt()


def group_loss_power(dim: int, power: float, group_power: dict[str, float | None]) -> float | tuple[float, ...]:
    """The noise model's loss weight power: `power` for every dim, or one per dim where a stream group has its own
    (model.loss_group_power; dims past the 58-d, the emotion stream, keep `power`)."""
    own = {g: float(v) for g, v in group_power.items() if v is not None}
    unknown = set(own) - set(fv.STREAM_GROUPS)
    if unknown:
        raise ValueError(f"loss group power: unknown groups {sorted(unknown)} (expected {list(fv.STREAM_GROUPS)})")
    if not own:
        return float(power)
    p = [float(power)] * dim
    for group, value in own.items():
        for i in range(dim)[fv.STREAM_GROUPS[group]]:
            p[i] = value
    return tuple(p)


def band_loss_scale(w: int, dim: int, band: dict | None) -> torch.Tensor | None:
    """(w, dim) sqrt of each loss coordinate's band weight (model.loss_band: `weight` on the DCT coefficients in
    [low_hz, high_hz] of one stream group's dims or one head-rotation channel's, fv.STREAMS), normalised to mean 1 so
    the loss keeps its scale; None when off (weight 1)."""
    if not band or float(band.get("weight", 1.0)) == 1.0:
        return None
    if band["group"] not in fv.STREAMS:
        raise ValueError(f"loss band: unknown group {band['group']!r} (expected one of {list(fv.STREAMS)})")
    if band["weight"] <= 0:
        raise ValueError(f"loss band weight: must be > 0, got {band['weight']}")
    w_kd = torch.ones(int(w), dim)
    rows = band_coefficients(w, band["fps"], band["low_hz"], band["high_hz"])
    if not rows.any():
        raise ValueError(f"loss band {band['low_hz']}-{band['high_hz']} Hz holds no DCT coefficient of a {w}-frame "
                         f"window at {band['fps']} fps (resolution {band['fps'] / (2 * w):.3f} Hz)")
    dims = torch.arange(dim)[fv.STREAMS[band["group"]]]
    w_kd[rows.nonzero()[:, 0][:, None], dims[None]] = float(band["weight"])
    return (w_kd / w_kd.mean()).sqrt()


def band_gate_dims(group: str) -> slice:
    """The dims model.band_gate gains: every dim ("all") or one stream group's / head-rotation channel's."""
    if group == "all":
        return slice(None)
    if group not in fv.STREAMS:
        raise ValueError(f"band gate: unknown group {group!r} (expected all or one of {list(fv.STREAMS)})")
    return fv.STREAMS[group]


class ReactDiff(nn.Module):
    def __init__(self, shape, audio: str = "feat", audio_dim: int = 80, predict_emotion: bool = False,
                 sigma_data: float = 0.5, density: SigmaDensity | None = None, stats: FaceStats | None = None,
                 velocity_weight: float = 1.0, au_weight: float = 0.01, lags=(1, 8), kinematics: str = "raw_pose",
                 acceleration_weight: float = 0.0, cond_dropout: float = 0.0, noise: str = "white",
                 window: int = 64, anchor: str = "none", aligned_speaker: bool = False,
                 loss_weight_power: float = 0.0, face_dropout: float = 0.0, speaker_filter: int = 0,
                 anchor_memory: int = 0, loss_group_weight: dict[str, float] | None = None,
                 speaker_film: bool = False, loss_band: dict | None = None,
                 band_gate: tuple[float, ...] = (), band_gate_group: str = "all", band_gate_span: int = 0,
                 aligned_norm: str = "frame", loss_group_power: dict[str, float | None] | None = None) -> None:
        super().__init__()
        self.dim = fv.FV_DIM + (fv.EMOTION_DIM if predict_emotion else 0)
        self.predict_emotion, self.cond_dropout = predict_emotion, float(cond_dropout)
        self.face_dropout = float(face_dropout)
        if anchor not in ("none", "last_frame", "regression"):
            raise ValueError(f"anchor {anchor!r}: expected none, last_frame or regression")
        self.anchored = anchor != "none"
        if anchor_memory and anchor != "regression":
            raise ValueError("anchor_memory needs anchor=regression: the memory mean joins the window's regression")
        # the listener frames before a window whose mean joins its prediction (0: the last frame alone)
        self.anchor_memory = int(anchor_memory)
        # the window's prediction from the last known frame, fitted from the shards (past_regression.py)
        self.past_regression = (PastRegression(window, self.dim, memory=self.anchor_memory > 0)
                                if anchor == "regression" else None)
        self.audio = AudioFrontend(audio, audio_dim)
        self.denoiser = Denoiser(TemporalUNet(self.dim, self.dim, fv.FV_DIM, self.audio.dim, shape,
                                              null_speaker=cond_dropout > 0, aligned_speaker=aligned_speaker,
                                              null_face=face_dropout > 0, speaker_filter=speaker_filter,
                                              speaker_film=speaker_film, band_gate=band_gate,
                                              band_gate_dims=band_gate_dims(band_gate_group),
                                              band_gate_span=band_gate_span, aligned_norm=aligned_norm),
                                 sigma_data)
        self.density = density or SigmaDensity(sigma_data=sigma_data)
        noises = {"white": None, "spectral": TemporalSpectrum, "covariance": TemporalCovariance}
        if noise not in noises:
            raise ValueError(f"noise {noise!r}: expected one of {list(noises)}")
        # the noise's temporal model, its DCT spectrum or its full covariance over the window (fitted from the
        # shards when training starts): see spectrum.py, covariance.py
        power = group_loss_power(self.dim, loss_weight_power, loss_group_power or {})
        if noise == "white" and isinstance(power, tuple):
            raise ValueError("loss_group_power needs noise=spectral or covariance: it weighs their coordinates")
        self.spectrum = noises[noise] and noises[noise](window, self.dim, sigma_data, power)
        # each loss coordinate's weight by its dim's stream group (mean 1 over dims); not saved: the config says it
        self.register_buffer("loss_dim_scale", group_loss_scale(self.dim, loss_group_weight or {}), persistent=False)
        # ...and by its DCT coefficient's frequency band (model.loss_band), for the training window; not saved
        band_scale = band_loss_scale(window, self.dim, loss_band)
        self.loss_band = dict(loss_band) if band_scale is not None else None
        if band_scale is not None and self.spectrum is None:
            raise ValueError("loss_band needs noise=spectral or covariance: the band is a set of the window's DCT "
                             "coefficients")
        self.register_buffer("loss_band_scale", band_scale, persistent=False)
        self.priors = ReactionPriors(stats or FaceStats.identity(), lags=tuple(lags),
                                     velocity_weight=velocity_weight, au_weight=au_weight, sigma_data=sigma_data,
                                     kinematics=kinematics, acceleration_weight=acceleration_weight)

    # one owner per submodule, so the state dict names every tensor once
    @property
    def unet(self) -> TemporalUNet:
        return self.denoiser.net

    @property
    def stats(self) -> FaceStats:
        """Normalisation mean/std (buffers, saved with the weights) and convention."""
        return self.priors.stats

    @classmethod
    def from_config(cls, cfg, stats: FaceStats | None = None, window: int = 64) -> "ReactDiff":
        """cfg: the model section; window: the training window (data.window), the spectrum's length."""
        size = cfg.size.value
        shape = PRESETS[size]
        if cfg.dropout:
            import dataclasses

            shape = dataclasses.replace(shape, dropout=float(cfg.dropout))
        kind = cfg.sigma_density.value
        return cls(shape, audio=cfg.audio, audio_dim=cfg.audio_dim, predict_emotion=cfg.predict_emotion,
                   sigma_data=cfg.sigma_data, stats=stats,
                   density=SigmaDensity(kind, cfg.p_mean, cfg.p_std, cfg.sigma_data),
                   velocity_weight=cfg.velocity_weight, au_weight=cfg.au_weight, lags=tuple(cfg.kinematics_lags),
                   kinematics=cfg.kinematics.value,
                   acceleration_weight=cfg.acceleration_weight, cond_dropout=cfg.cond_dropout,
                   noise=cfg.noise.value, window=window,
                   anchor=cfg.anchor.value, aligned_speaker=cfg.aligned_speaker,
                   loss_weight_power=cfg.loss_weight_power, face_dropout=cfg.face_dropout,
                   speaker_filter=cfg.speaker_filter, anchor_memory=cfg.anchor_memory,
                   loss_group_weight=dict(cfg.loss_group_weight), speaker_film=cfg.speaker_film,
                   loss_band=dict(cfg.loss_band),
                   band_gate=tuple(hz / cfg.band_gate.fps for hz in cfg.band_gate.edges_hz),
                   band_gate_group=cfg.band_gate.group, band_gate_span=cfg.band_gate.span,
                   aligned_norm=cfg.aligned_norm.value, loss_group_power=dict(cfg.loss_group_power))

    @property
    def dtype(self) -> torch.dtype:
        """The compute dtype (fp32 on CPU; bf16/fp16 when DeepSpeed runs the model in half precision)."""
        return self.unet.inp.weight.dtype

    def listener_stream(self, batch: dict) -> torch.Tensor:
        """(B, H+W, dim): the listener's 3DMM (+ emotion when predicted), normalised."""
        x = batch["listener_fv"]
        return torch.cat([x, batch["listener_emotion"]], dim=-1) if self.predict_emotion else x

    def listener_memory(self, batch: dict) -> torch.Tensor | None:
        """(B, dim): the mean of the listener's memory frames before each window (model.anchor_memory), or None."""
        if not self.anchor_memory:
            return None
        if "listener_memory" not in batch:
            raise ValueError(f"model.anchor_memory={self.anchor_memory} needs the listener's memory mean in the batch "
                             f"(a reader made with memory={self.anchor_memory})")
        m = batch["listener_memory"]
        return torch.cat([m, batch["listener_emotion_memory"]], dim=-1) if self.predict_emotion else m

    def condition(self, batch: dict, past_listener: torch.Tensor, drop: torch.Tensor | None = None) -> dict:
        """The network's conditioning for windows of a batch: speaker streams over [history, window]; `drop` (B,)
        bool marks samples whose speaker streams the learned "no speaker" replaces."""
        audio = self.audio(batch, batch["speaker_fv"].shape[1])
        return self.conditioning(batch["speaker_fv"], audio, past_listener, batch["valid"], drop)

    def conditioning(self, speaker_fv: torch.Tensor, audio: torch.Tensor | None, past_listener: torch.Tensor,
                     valid: torch.Tensor, drop: torch.Tensor | None = None) -> dict:
        """The network's conditioning dict from its streams, in the network's dtype (training and online
        generation both build it here)."""
        dtype = self.dtype
        cond = {"speaker_fv": speaker_fv.to(dtype), "audio": None if audio is None else audio.to(dtype),
                "past_listener": past_listener.to(dtype), "valid": valid}
        if drop is not None:
            cond["drop"] = drop
        return cond

    def anchor(self, past_listener: torch.Tensor, w: int, memory: torch.Tensor | None = None) -> torch.Tensor | None:
        """What a window of w frames is denoised relative to: (B, 1 or w, dim), or None for absolute windows.
        model.anchor=last_frame: the last known listener frame; regression: its least-squares prediction of the window
        from that frame and, with model.anchor_memory, the memory mean (B, dim) (past_regression.py). Before the clip
        starts the past is the zero (mean) face."""
        if not self.anchored:
            return None
        last = (past_listener[:, -1] if past_listener.shape[1] else
                past_listener.new_zeros(past_listener.shape[0], self.dim))
        if self.past_regression is not None:
            return self.past_regression(last, w, memory)
        return last[:, None]

    def colour_noise(self, eps: torch.Tensor) -> torch.Tensor:
        """White noise (B, W, dim) -> the diffusion's noise (the data's spectrum with model.noise=spectral)."""
        return eps if self.spectrum is None else self.spectrum.colour(eps)

    def denoise(self, x: torch.Tensor, sigma: torch.Tensor, **cond) -> torch.Tensor:
        return self.denoiser(x, sigma, **cond)

    def training_loss(self, batch: dict, history: int, generator: torch.Generator | None = None) -> dict:
        b, frames = batch["listener_fv"].shape[:2]
        device = batch["listener_fv"].device
        # drawn on the CPU in fp32 from the trainer's generator: the same values on every device and precision
        sigma = self.density.sample(b, generator=generator).to(device)
        noise = torch.randn(b, frames - history, self.dim, generator=generator).to(device=device, dtype=self.dtype)
        drop = None
        if self.training and self.cond_dropout > 0:  # classifier-free guidance's unconditional mode; never in eval
            drop = (torch.rand(b, generator=generator) < self.cond_dropout).to(device)
        drop_face = None
        if self.training and self.face_dropout > 0:  # the "no face" speaker of audio-only live sessions
            drop_face = (torch.rand(b, generator=generator) < self.face_dropout).to(device)
        per_sample, terms = self.denoising_loss(batch, history, sigma, noise, drop, drop_face)
        denoise = per_sample.mean()
        return {"loss": denoise + terms["prior_total"], "denoise": denoise, **terms}

    def denoising_loss(self, batch: dict, history: int, sigma: torch.Tensor, white: torch.Tensor,
                       drop: torch.Tensor | None = None,
                       drop_face: torch.Tensor | None = None) -> tuple[torch.Tensor, dict]:
        """The per-window EDM loss (B,) at noise levels sigma (B,) with white noise (B, W, dim) (coloured here),
        and the prior terms; training draws sigma and the noise, validation fixes them."""
        stream = self.listener_stream(batch).to(self.dtype)
        x0, past = stream[:, history:], stream[:, :history]
        noise = self.colour_noise(white.to(self.dtype))
        cond = self.condition(batch, past, drop)
        if drop_face is not None:
            cond["drop_face"] = drop_face
        whiten = self.loss_coordinates
        anchor = self.anchor(past, x0.shape[1], self.listener_memory(batch))
        anchor = 0 if anchor is None else anchor  # the denoiser sees x0 - anchor, the priors the absolute estimate
        real = batch["valid"][:, history:]
        real = None if bool(real.all()) else real  # a window past a short clip's end: padding stays out of the loss
        per_sample, x0_hat = self.denoiser.loss(x0 - anchor, sigma, noise, whiten=whiten, frames=real, **cond)
        x0_hat = x0_hat + anchor
        if real is not None:  # the priors see the padding as the data's own (held) frames
            x0_hat = torch.where(real[..., None], x0_hat, x0)
        terms = self.priors(x0_hat, x0, sigma, history=past, history_valid=batch["valid"][:, :history])
        return per_sample, terms

    def loss_coordinates(self, err: torch.Tensor) -> torch.Tensor:
        """The error (B, W, dim) -> the coordinates the denoising loss is the mean square of: the spectrum's or the
        covariance's (model.noise), each dim scaled by the square root of its group's weight (and with
        model.loss_band each DCT coefficient of the band by the square root of the band's)."""
        band = self.loss_band_scale
        if band is not None and band.shape[0] != err.shape[1]:  # another window length than training's
            band = band_loss_scale(err.shape[1], self.dim, self.loss_band).to(band)
        if self.spectrum is not None:  # the band needs a temporal noise model (checked in __init__)
            err = self.spectrum.loss_coordinates(err, band)
        return err * self.loss_dim_scale.to(err.dtype)

    def num_parameters(self) -> int:
        """U-Net parameters (ZeRO-3 partitions them: ds_numel is the full size)."""
        return sum(getattr(p, "ds_numel", p.numel()) for p in self.unet.parameters())
