"""The denoiser's gain on head pitch's nod band, after the speaker's phrase ends vs elsewhere (teacher-forced).

A nod after a phrase end has its own phase and speed, so what the speaker predicts is how much the listener's head
pitch moves at ~2 Hz, not its sign. For a denoiser that is a gain on the noisy window's nod band that depends on the
speaker: a linear estimate of a band with signal power s and noise power n keeps s / (s + n) of the noisy input, so
where the data nods more (after phrase ends) the ideal gain is larger. EDM's skip path alone gives c_skip
everywhere -- the right gain for the data's marginal spectrum, and what a network that ignores the cue does.

    gains = band_gain(model, cfg, test_shards, sigmas=(1.0, 3.0))
    # {sigma: {"c_skip", "after": {"gain", "ideal", "power"}, "elsewhere": {...}, "ratio", "ideal_ratio"}}

Measured on validation-style windows of a shard folder (true past, the model's own noise spectrum, fixed seeds): the
band-passed x0-hat projected on the band-passed noisy input, over the window frames whose speaker cue
(`motion.PHRASE_END`, peaking 10-40 frames before the frame) is in its top quarter ("after") or bottom half
("elsewhere"). A ratio after / elsewhere of 1.0 is a network that does not use the cue for the band's gain.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from ..data import frame_layout as fv
from ..model.denoiser import preconditioning
from ..model.spectrum import band_coefficients, dct_matrix
from .motion import PHRASE_END, PITCH

NOD_HZ = (1.5, 2.6)
CUE_FRAMES = (10, 40)  # a frame is "after" a phrase end when the cue peaks this many frames before it


def band_projection(w: int, fps: float, hz: tuple[float, float] = NOD_HZ) -> torch.Tensor:
    """(w, w) float64: the band-pass over a w-frame window (its DCT coefficients in the band, back to frames)."""
    c = dct_matrix(w, dtype=torch.float64)
    return (c.T * band_coefficients(w, fps, *hz).double()) @ c


def cue_strength(cue: np.ndarray, history: int, w: int, cue_frames: tuple[int, int] = CUE_FRAMES) -> np.ndarray:
    """cue (N, history + w) -> (N, w): for each window frame, the cue's peak 10-40 frames (at 25 fps) before it (of
    the frames the history holds: before them the cue's minimum)."""
    lo, hi = cue_frames
    cue = np.concatenate([np.full((len(cue), hi), cue.min()), cue], axis=1)
    return np.stack([cue[:, hi + history + t - hi:hi + history + t - lo + 1].max(1) for t in range(w)], 1)


def frame_classes(cue: np.ndarray, history: int, w: int, fps: float = fv.FPS) -> tuple[torch.Tensor, torch.Tensor]:
    """(after, elsewhere) bool (N, w): the frames whose cue_strength is in its top quarter / bottom half."""
    strength = cue_strength(cue, history, w, tuple(int(round(f * fps / fv.FPS)) for f in CUE_FRAMES))
    return (torch.from_numpy(strength >= np.quantile(strength, 0.75)),
            torch.from_numpy(strength <= np.quantile(strength, 0.5)))


def gains(noisy: torch.Tensor, denoised: torch.Tensor, clean: torch.Tensor, noise: torch.Tensor,
          classes: dict[str, torch.Tensor], proj: torch.Tensor) -> dict[str, dict[str, float]]:
    """Per frame class: the gain sum(P x0-hat * P x) / sum(P x * P x) of the band-passed (P) denoised estimate on the
    noisy input, and the ideal linear gain s / (s + n) from the clean signal's and the noise's band power there.
    noisy, denoised, clean, noise: (N, w) of one channel; classes: name -> (N, w) bool."""
    px, ph, p0, pe = (v.double() @ proj.T for v in (noisy, denoised, clean, noise))  # frame t: sum_s P[t, s] v[s]
    out = {}
    for name, m in classes.items():
        s, n = p0[m].square().mean().item(), pe[m].square().mean().item()
        out[name] = {"gain": ((ph * px)[m].sum() / (px * px)[m].sum()).item(), "ideal": s / (s + n), "power": s}
    return out


@torch.no_grad()
def band_gain(model, cfg, shards: str | Path, sigmas=(1.0, 3.0), windows: int = 512, seed: int = 1,
              batch: int = 64, fps: float = fv.FPS) -> dict[float, dict]:
    """The model's and the ideal gains on head pitch's nod band at each noise level (see the module docstring);
    fps: the shards' frame rate (the band is in Hz, the cue's delay in seconds)."""
    from ..train.validation import ValidationSet

    vs = ValidationSet.from_shards(cfg, model.dim, model.density, Path(shards), windows=windows, levels=1)
    b, h = vs.batch, vs.history
    w = b["listener_fv"].shape[1] - h
    proj = band_projection(w, fps)
    after, elsewhere = frame_classes(PHRASE_END(model.stats.denormalise(b["speaker_fv"][..., :fv.FV_DIM]).numpy()),
                                     h, w, fps)
    x = model.listener_stream(b)
    x0, past = x[:, h:], x[:, :h]
    anchor = model.anchor(past, w, model.listener_memory(b))
    rel = x0 - (0 if anchor is None else anchor)  # what the denoiser sees
    cond = model.condition(b, past)
    (dim,) = PITCH.dims
    out = {}
    for sigma in sigmas:
        noise = model.colour_noise(torch.randn(rel.shape, generator=torch.Generator().manual_seed(seed))) * sigma
        noisy = rel + noise
        denoised = torch.cat([model.denoise(noisy[i:i + batch], torch.full((len(noisy[i:i + batch]),), float(sigma)),
                                            **{k: v[i:i + batch] if isinstance(v, torch.Tensor) else v
                                               for k, v in cond.items()})
                              for i in range(0, len(noisy), batch)])
        g = gains(noisy[..., dim], denoised[..., dim], rel[..., dim], noise[..., dim],
                  {"after": after, "elsewhere": elsewhere}, proj)
        out[float(sigma)] = {"c_skip": preconditioning(torch.tensor(float(sigma)), model.denoiser.sigma_data)[0].item(),
                             **g, "ratio": g["after"]["gain"] / g["elsewhere"]["gain"],
                             "ideal_ratio": g["after"]["ideal"] / g["elsewhere"]["ideal"]}
    return out
